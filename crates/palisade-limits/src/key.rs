//! Rate-limit keys: what identifies "one client" for a limit.
//!
//! A key spec such as `ip+form:username` is parsed once at load. Per request it is reduced to a
//! fixed 128-bit [`LimitKey`]:
//!
//! * `ip` alone: the client address itself (IPv4 mapped into IPv6), no hashing;
//! * `ip_prefix` alone: the address masked to /24 (IPv4) or /64 (IPv6);
//! * anything else: the first 16 bytes of SHA-256 over the limiter id and every part. Header,
//!   cookie, form and JSON values therefore never sit in memory or in Redis in clear text.
//!   Form and JSON values (login names, e-mail addresses) are trimmed and ASCII-lower-cased
//!   first so `Alice@Shop` and `alice@shop ` share a bucket.
//!
//! A part that is missing from the request is replaced by the client IP: a client that omits the
//! `username` field is limited per address, never unlimited.

use std::borrow::Cow;
use std::net::IpAddr;

use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::config::LimitsConfigError;

/// Where the limiter reads request data from. The gateway implements it over its request
/// header and (for buffered POST bodies) the body bytes.
pub trait KeySource {
    /// The client address (after trusted-proxy resolution).
    fn client_ip(&self) -> IpAddr;
    /// The first value of a request header; `name` is lower-case ASCII.
    fn header(&self, name: &str) -> Option<&[u8]>;
    /// The buffered request body, when the gateway buffered it. `form:` and `json:` parts read
    /// it according to the `content-type` header.
    fn body(&self) -> Option<&[u8]> {
        None
    }
}

/// A self-contained [`KeySource`] for tests, benchmarks and callers that already own the data.
#[derive(Clone, Default)]
pub struct SimpleRequest {
    /// Client address.
    pub client_ip: Option<IpAddr>,
    /// Headers as (lower-case name, value).
    pub headers: Vec<(String, Vec<u8>)>,
    /// Buffered body.
    pub body: Option<Vec<u8>>,
}

impl std::fmt::Debug for SimpleRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values and bodies may hold credentials: only their names and sizes are shown.
        f.debug_struct("SimpleRequest")
            .field("client_ip", &self.client_ip)
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("body_len", &self.body.as_ref().map(Vec::len))
            .finish()
    }
}

impl SimpleRequest {
    /// A request from `ip` with no headers and no body.
    pub fn new(ip: IpAddr) -> Self {
        Self {
            client_ip: Some(ip),
            ..Self::default()
        }
    }

    /// Adds a header (the name is lower-cased).
    #[must_use]
    pub fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// Sets the body and its content type.
    #[must_use]
    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self = self.header("content-type", content_type);
        self.body = Some(body.into());
        self
    }
}

impl KeySource for SimpleRequest {
    fn client_ip(&self) -> IpAddr {
        self.client_ip
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
    fn body(&self) -> Option<&[u8]> {
        self.body.as_deref()
    }
}

/// One part of a key spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    /// The client address.
    Ip,
    /// The client network: /24 for IPv4, /64 for IPv6.
    IpPrefix,
    /// A request header (lower-cased name).
    Header(String),
    /// A cookie by name.
    Cookie(String),
    /// An `application/x-www-form-urlencoded` body field.
    Form(String),
    /// A JSON body value by dotted path (`user.email`, `items.0.sku`).
    Json(Vec<String>),
}

/// A parsed key spec (`ip+form:username`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    parts: Vec<KeyPart>,
}

/// The reduced key of one request: 128 bits plus the overflow group used when the limiter is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LimitKey {
    pub(crate) id: [u64; 2],
    pub(crate) group: u16,
}

impl LimitKey {
    /// Hex form used in Redis key names (a digest or an address, never a clear value).
    pub(crate) fn hex(&self) -> String {
        format!("{:016x}{:016x}", self.id[0], self.id[1])
    }
}

const MAX_PARTS: usize = 8;

impl KeySpec {
    /// Parses a key spec; errors point at the spec.
    pub fn parse(spec: &Spanned<String>) -> Result<Self, LimitsConfigError> {
        let text = spec.get_ref();
        let mut parts = Vec::new();
        for raw in text.split('+') {
            let raw = raw.trim();
            let part = match raw.split_once(':') {
                None if raw == "ip" => KeyPart::Ip,
                None if raw == "ip_prefix" => KeyPart::IpPrefix,
                Some((kind, name)) if valid_name(name) => match kind {
                    "header" => KeyPart::Header(name.to_ascii_lowercase()),
                    "cookie" => KeyPart::Cookie(name.to_owned()),
                    "form" => KeyPart::Form(name.to_owned()),
                    "json" => {
                        let path: Vec<String> = name.split('.').map(str::to_owned).collect();
                        if path.iter().any(String::is_empty) {
                            return Err(LimitsConfigError::at(
                                spec,
                                format!("invalid JSON path {name:?} in key {text:?}"),
                            ));
                        }
                        KeyPart::Json(path)
                    }
                    _ => return Err(bad_part(spec, raw)),
                },
                _ => return Err(bad_part(spec, raw)),
            };
            if parts.contains(&part) {
                return Err(LimitsConfigError::at(
                    spec,
                    format!("key part {raw:?} appears twice in {text:?}"),
                ));
            }
            parts.push(part);
        }
        if parts.len() > MAX_PARTS {
            return Err(LimitsConfigError::at(
                spec,
                format!("key {text:?} has more than {MAX_PARTS} parts"),
            ));
        }
        Ok(Self { parts })
    }

    pub(crate) fn from_parts(parts: Vec<KeyPart>) -> Self {
        Self { parts }
    }

    /// The parts in configuration order.
    pub fn parts(&self) -> &[KeyPart] {
        &self.parts
    }

    /// Reduces a request to its key. `salt` separates limiters (the limiter id).
    pub(crate) fn key_for(&self, salt: &[u8], req: &dyn KeySource) -> LimitKey {
        let ip = req.client_ip();
        let group = overflow_group(ip);
        match self.parts.as_slice() {
            [KeyPart::Ip] => LimitKey {
                id: split(ip_bits(ip)),
                group,
            },
            [KeyPart::IpPrefix] => LimitKey {
                id: split(prefix_bits(ip)),
                group,
            },
            parts => {
                let mut h = Sha256::new();
                h.update((salt.len() as u32).to_le_bytes());
                h.update(salt);
                let mut ctx = BodyCtx::default();
                for (i, part) in parts.iter().enumerate() {
                    h.update([i as u8]);
                    let addr = match part {
                        KeyPart::Ip => Some(ip_bits(ip)),
                        KeyPart::IpPrefix => Some(prefix_bits(ip)),
                        _ => None,
                    };
                    if let Some(bits) = addr {
                        h.update([2]);
                        h.update(bits.to_le_bytes());
                        continue;
                    }
                    match extract(part, req, &mut ctx) {
                        Some(value) => {
                            h.update([1]);
                            h.update((value.len() as u64).to_le_bytes());
                            h.update(&*value);
                        }
                        // Missing: fall back to the client address, never to "unlimited".
                        None => {
                            h.update([0]);
                            h.update(ip_bits(ip).to_le_bytes());
                        }
                    }
                }
                let d = h.finalize();
                let mut a = [0u8; 8];
                let mut b = [0u8; 8];
                a.copy_from_slice(&d[0..8]);
                b.copy_from_slice(&d[8..16]);
                LimitKey {
                    id: [u64::from_le_bytes(a), u64::from_le_bytes(b)],
                    group,
                }
            }
        }
    }
}

fn bad_part(spec: &Spanned<String>, raw: &str) -> LimitsConfigError {
    LimitsConfigError::at(
        spec,
        format!(
            "invalid key part {raw:?}: expected ip, ip_prefix, header:NAME, cookie:NAME, form:FIELD or json:PATH, joined by '+'"
        ),
    )
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.[]".contains(&b))
}

fn split(v: u128) -> [u64; 2] {
    [(v >> 64) as u64, v as u64]
}

pub(crate) fn ip_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn prefix_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()) & !0xffu128,
        IpAddr::V6(v6) => u128::from(v6) & !(u64::MAX as u128),
    }
}

/// Number of overflow buckets shared by clients when a limiter's key table is full.
pub(crate) const OVERFLOW_GROUPS: usize = 1024;

/// The overflow bucket of a client: its /24 (IPv4) or /64 (IPv6) folded to 10 bits.
fn overflow_group(ip: IpAddr) -> u16 {
    let p = prefix_bits(ip);
    // A fixed multiplicative fold: spreads neighbouring networks over the groups. Collisions only
    // make two networks share a bucket, which errs on the strict side.
    let x = ((p >> 64) as u64 ^ (p as u64)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 54) as u16 % OVERFLOW_GROUPS as u16
}

#[derive(Default)]
struct BodyCtx {
    json: Option<Option<serde_json::Value>>,
}

fn extract<'a>(part: &KeyPart, req: &'a dyn KeySource, ctx: &mut BodyCtx) -> Option<Cow<'a, [u8]>> {
    match part {
        // Addresses are hashed directly by the caller.
        KeyPart::Ip | KeyPart::IpPrefix => None,
        KeyPart::Header(name) => req
            .header(name)
            .filter(|v| !v.is_empty())
            .map(Cow::Borrowed),
        KeyPart::Cookie(name) => req
            .header("cookie")
            .and_then(|c| cookie_value(c, name.as_bytes()))
            .filter(|v| !v.is_empty())
            .map(Cow::Borrowed),
        KeyPart::Form(name) => {
            if !content_type_is(req, b"application/x-www-form-urlencoded") {
                return None;
            }
            form_value(req.body()?, name.as_bytes()).map(|v| Cow::Owned(normalise(&v)))
        }
        KeyPart::Json(path) => {
            if !content_type_is(req, b"json") {
                return None;
            }
            let doc = ctx
                .json
                .get_or_insert_with(|| req.body().and_then(|b| serde_json::from_slice(b).ok()));
            let mut v = doc.as_ref()?;
            for seg in path {
                v = match v {
                    serde_json::Value::Object(m) => m.get(seg)?,
                    serde_json::Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
                    _ => return None,
                };
            }
            let bytes = match v {
                serde_json::Value::String(s) => s.as_bytes().to_vec(),
                serde_json::Value::Number(n) => n.to_string().into_bytes(),
                serde_json::Value::Bool(b) => b.to_string().into_bytes(),
                _ => return None,
            };
            Some(Cow::Owned(normalise(&bytes)))
        }
    }
    .filter(|v| !v.is_empty())
}

fn content_type_is(req: &dyn KeySource, needle: &[u8]) -> bool {
    req.header("content-type").is_some_and(|ct| {
        let ct = ct.to_ascii_lowercase();
        ct.windows(needle.len()).any(|w| w == needle)
    })
}

fn normalise(v: &[u8]) -> Vec<u8> {
    v.trim_ascii().to_ascii_lowercase()
}

/// The value of cookie `name` in a `Cookie:` header.
pub fn cookie_value<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        (pair[..eq].trim_ascii() == name).then(|| {
            let v = pair[eq + 1..].trim_ascii();
            v.strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(v)
        })
    })
}

/// The percent-decoded value of field `name` in an `application/x-www-form-urlencoded` body.
pub fn form_value(body: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    body.split(|&b| b == b'&').find_map(|pair| {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &[][..]),
        };
        let matches = if k.iter().any(|&b| b == b'%' || b == b'+') {
            percent_decode(k) == name
        } else {
            k == name
        };
        matches.then(|| percent_decode(v))
    })
}

fn percent_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => match (hex_val(s.get(i + 1)), hex_val(s.get(i + 2))) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn hex_val(b: Option<&u8>) -> Option<u8> {
    match *b? {
        b @ b'0'..=b'9' => Some(b - b'0'),
        b @ b'a'..=b'f' => Some(b - b'a' + 10),
        b @ b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> KeySpec {
        KeySpec::parse(&Spanned::new(0..0, s.to_owned())).unwrap()
    }

    #[test]
    fn parses_parts() {
        assert_eq!(
            spec("ip+form:username").parts(),
            &[KeyPart::Ip, KeyPart::Form("username".into())]
        );
        assert_eq!(
            spec("header:X-Api-Key").parts(),
            &[KeyPart::Header("x-api-key".into())]
        );
        assert_eq!(
            spec("json:user.email").parts(),
            &[KeyPart::Json(vec!["user".into(), "email".into()])]
        );
        for bad in [
            "",
            "ipx",
            "header:",
            "form:a b",
            "ip+ip",
            "json:a..b",
            "query:x",
        ] {
            assert!(
                KeySpec::parse(&Spanned::new(0..0, bad.to_owned())).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn decoding_helpers() {
        assert_eq!(
            cookie_value(b"a=1; session=\"xyz\"; b=2", b"session"),
            Some(&b"xyz"[..])
        );
        assert_eq!(cookie_value(b"a=1", b"session"), None);
        assert_eq!(
            form_value(b"user%6eame=Al+ice%40x&pw=1", b"username"),
            Some(b"Al ice@x".to_vec())
        );
        assert_eq!(form_value(b"x=%4", b"x"), Some(b"%4".to_vec()));
        assert_eq!(form_value(b"x=%", b"x"), Some(b"%".to_vec()));
        assert_eq!(form_value(b"x=1", b"y"), None);
    }

    #[test]
    fn form_and_json_values_are_normalised_and_hashed() {
        let s = spec("form:username");
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = SimpleRequest::new(ip).body(
            "application/x-www-form-urlencoded",
            "username=Alice%40Shop&password=x",
        );
        let b = SimpleRequest::new(ip).body(
            "application/x-www-form-urlencoded",
            "username=alice@shop+&password=y",
        );
        assert_eq!(s.key_for(b"r", &a).id, s.key_for(b"r", &b).id);
        let j = spec("json:user.email");
        let c =
            SimpleRequest::new(ip).body("application/json", r#"{"user":{"email":"ALICE@shop"}}"#);
        let d = SimpleRequest::new(ip).body("application/json", r#"{"user":{"email":"bob@shop"}}"#);
        assert_ne!(j.key_for(b"r", &c).id, j.key_for(b"r", &d).id);
        // The clear value is not in the key.
        let k = s.key_for(b"r", &a).hex();
        assert!(!k.contains("616c696365"));
    }

    #[test]
    fn prefix_keys_group_neighbours() {
        let s = spec("ip_prefix");
        let a = SimpleRequest::new("198.51.100.1".parse().unwrap());
        let b = SimpleRequest::new("198.51.100.200".parse().unwrap());
        let c = SimpleRequest::new("198.51.101.1".parse().unwrap());
        assert_eq!(s.key_for(b"", &a), s.key_for(b"", &b));
        assert_ne!(s.key_for(b"", &a).id, s.key_for(b"", &c).id);
        let v6 = spec("ip_prefix");
        let x = SimpleRequest::new("2001:db8:1:2::1".parse().unwrap());
        let y = SimpleRequest::new("2001:db8:1:2:ffff::9".parse().unwrap());
        assert_eq!(v6.key_for(b"", &x), v6.key_for(b"", &y));
    }
}
