//! Log redaction for Palisade.
//!
//! Every log line the gateway writes goes through [`Redactor::redact`], usually via
//! [`RedactingMakeWriter`], the choke point that wraps the `tracing-subscriber` writer. Nothing here
//! depends on Pingora. All scanning is hand-written, linear in the line's length, and allocates
//! nothing when the line holds nothing sensitive (the result is then `Cow::Borrowed`).
//!
//! # What is masked, and how it looks afterwards
//!
//! | kind | detected as | written as |
//! |---|---|---|
//! | [`Kind::Card`] | 13–19 digits, Luhn-valid, card prefix (4; 3/5/6 with ≥ 14 digits; 8/9 with ≥ 16; 2221–2720 and 2200–2204 with ≥ 16; never 0, 1 or 7, so epoch timestamps stay), not glued to letters or digits; plain or in groups of 4–6 digits (last group 1–7) split by one space, `-`, `+` or `%20` | `****1111`: four stars, then the last four digits |
//! | [`Kind::Iban`] | upper-case country code + check digits + BBAN of that country's exact length, mod-97 valid, plain or in groups of four split by a space, `+` or `%20` | `DE****3000`: country code, four stars, last four characters |
//! | [`Kind::Email`] | `local@domain.tld` (TLD alphabetic), also with `%40` / `%2540` | `j***@***.com`: first character of the local part (`*` if not alphanumeric), then the TLD |
//! | [`Kind::Jwt`] | `eyJ…` + `.` + segment (+ `.` + signature), base64url | `[REDACTED]` |
//! | [`Kind::Bearer`] | `Bearer <token>` anywhere (space, `+` or `%20` after it) | `Bearer [REDACTED]` |
//! | [`Kind::AuthHeader`] | `Authorization` / `Proxy-Authorization` values; `Basic <base64 of user:pass>` anywhere | `[REDACTED]` |
//! | [`Kind::Cookie`] | `Cookie` / `Set-Cookie` values (the whole header value) | `[REDACTED]` |
//! | [`Kind::ApiKey`] | `X-Api-Key`, `api_key`, `X-Auth-Token`, `access_key`, … values | `[REDACTED]` |
//! | [`Kind::Cvv`] | `cvv`, `cvc`, `cvv2`, `card_cvv`, `security_code`, `cc_cid` (not a bare `cid`), … values | `[REDACTED]` |
//! | [`Kind::Secret`] | `password`, `passwd`, `pwd`, `pass`, `secret`, `token`, `access_token`, `refresh_token`, `client_secret`, `otp`, `pin`, `session`, `auth`, `mot_de_passe`, `mdp`, `passwort`, … and the configured `extra_fields` | `[REDACTED]` |
//!
//! A field named like a card (`card`, `card_number`, `pan`, …) or an account (`iban`,
//! `bank_account`, `account_number`) has its whole value replaced by `[REDACTED]` and is counted as that kind.
//!
//! Field values are found after `name=value`, `name: value`, `"name":"value"`, `'name': 'value'`,
//! `\"name\":\"value\"` (JSON inside a JSON string), `name="value"` (logfmt), ANSI-coloured
//! `tracing` text output, and the URL-encoded forms (`%3D`, `%3A`, `%22`). Names are
//! percent-decoded, case-folded and split into words (`_`, `-`, `.`, `[`, `]`, camelCase): a name
//! is secret when its last words spell a secret name (`customer[password]`, `login[pass]`,
//! `X-Api-Key`, `pass%77ord`) or when any word or pair of words is a strong one (`newPassword`,
//! `password_confirmation`, `csrf_token`); `compass`, `author`, `shipping`, `company` are not.
//! The name is kept and the value replaced. An unquoted JSON value (`"pin":1234`) becomes the string
//! `"[REDACTED]"` so the line stays valid JSON. A value split by separators
//! (`card=4111 1111 1111 1111`) is masked whole.
//!
//! Not detected (by design, to keep benign text untouched): card numbers glued to letters, split by
//! other characters (`.`) or in unusual groupings; lower-case IBANs outside an `iban` field; secrets
//! written without a name and separator (`password hunter2`). Client IPs are not searched for in
//! text: the access log passes them through [`Redactor::client_ip`], which truncates
//! (`203.0.113.0`, `2001:db8:85a3::`), hashes with a key (HMAC-SHA-256, first 8 bytes in hex) or
//! keeps them, as configured.

#![forbid(unsafe_code)]

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use sha2::Sha256;

mod fields;
mod scan;
mod writer;

pub use writer::{RedactingMakeWriter, RedactingWriter, DEFAULT_MAX_LINE, TRUNCATED_MARKER};

/// The marker that replaces secret values.
pub const REDACTED: &str = "[REDACTED]";

/// `[logging.redaction]` in the gateway configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactSettings {
    /// More secret field names on top of the built-in list (matched like the built-in ones:
    /// case-insensitive, ignoring `_`/`-`/`.`, also as the last words of a longer name).
    #[serde(default)]
    pub extra_fields: Vec<String>,
    /// `"truncate"` (default: IPv4 /24, IPv6 /48), `"hash"` (keyed, needs `ip_hash_key`) or `"full"`.
    pub client_ip: Option<String>,
    /// Key of the client-IP hash: at least 16 bytes. Required when `client_ip = "hash"`.
    pub ip_hash_key: Option<String>,
    /// Mask e-mail addresses (default `true`).
    pub emails: Option<bool>,
}

/// Why a [`RedactSettings`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedactError {
    #[error("logging.redaction.client_ip: unknown mode {0:?} (expected \"truncate\", \"hash\" or \"full\")")]
    UnknownIpMode(String),
    #[error("logging.redaction.client_ip = \"hash\" needs logging.redaction.ip_hash_key")]
    MissingIpHashKey,
    #[error("logging.redaction.ip_hash_key must be at least {min} bytes long (got {got})")]
    WeakIpHashKey { min: usize, got: usize },
    #[error("logging.redaction.extra_fields: {0:?} has no letter or digit")]
    InvalidField(String),
}

/// Minimum length of `ip_hash_key`.
pub const MIN_IP_HASH_KEY: usize = 16;

/// What was redacted, for the `palisade_redactions_total{kind}` metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Card,
    Cvv,
    Secret,
    Bearer,
    Jwt,
    AuthHeader,
    Cookie,
    ApiKey,
    Email,
    Iban,
}

impl Kind {
    /// Every kind, in metric order.
    pub const ALL: [Kind; 10] = [
        Kind::Card,
        Kind::Cvv,
        Kind::Secret,
        Kind::Bearer,
        Kind::Jwt,
        Kind::AuthHeader,
        Kind::Cookie,
        Kind::ApiKey,
        Kind::Email,
        Kind::Iban,
    ];

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Card => "card",
            Kind::Cvv => "cvv",
            Kind::Secret => "secret",
            Kind::Bearer => "bearer",
            Kind::Jwt => "jwt",
            Kind::AuthHeader => "auth_header",
            Kind::Cookie => "cookie",
            Kind::ApiKey => "api_key",
            Kind::Email => "email",
            Kind::Iban => "iban",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone)]
enum IpMode {
    Truncate,
    Hash(Box<Hmac<Sha256>>),
    Full,
}

/// The compiled redaction rules and their counters. Build once, share behind an `Arc`.
pub struct Redactor {
    extra: fields::ExtraFields,
    emails: bool,
    ip: IpMode,
    counts: [AtomicU64; 10],
    /// Distinguishes redactors in the per-thread memo of name classifications.
    id: u64,
}

static NEXT_REDACTOR_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> u64 {
    NEXT_REDACTOR_ID.fetch_add(1, Ordering::Relaxed)
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ip = match self.ip {
            IpMode::Truncate => "truncate",
            IpMode::Hash(_) => "hash",
            IpMode::Full => "full",
        };
        f.debug_struct("Redactor")
            .field("extra_fields", &self.extra.len())
            .field("emails", &self.emails)
            .field("client_ip", &ip)
            .finish_non_exhaustive()
    }
}

impl Default for Redactor {
    fn default() -> Self {
        Redactor {
            extra: fields::ExtraFields::default(),
            emails: true,
            ip: IpMode::Truncate,
            counts: Default::default(),
            id: next_id(),
        }
    }
}

impl Redactor {
    /// Compile the settings.
    pub fn new(settings: &RedactSettings) -> Result<Redactor, RedactError> {
        let mut extra = fields::ExtraFields::default();
        for name in &settings.extra_fields {
            let norm = fields::normalize_extra(name);
            if norm.is_empty() {
                return Err(RedactError::InvalidField(name.clone()));
            }
            extra.insert(norm);
        }
        let ip = match settings.client_ip.as_deref().map(str::trim) {
            None | Some("truncate") => IpMode::Truncate,
            Some("full") => IpMode::Full,
            Some("hash") => {
                let key = settings
                    .ip_hash_key
                    .as_deref()
                    .ok_or(RedactError::MissingIpHashKey)?;
                if key.len() < MIN_IP_HASH_KEY {
                    return Err(RedactError::WeakIpHashKey {
                        min: MIN_IP_HASH_KEY,
                        got: key.len(),
                    });
                }
                // HMAC accepts keys of any length; the error arm cannot happen.
                let mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes())
                    .map_err(|_| RedactError::MissingIpHashKey)?;
                IpMode::Hash(Box::new(mac))
            }
            Some(other) => return Err(RedactError::UnknownIpMode(other.to_string())),
        };
        Ok(Redactor {
            extra,
            emails: settings.emails.unwrap_or(true),
            ip,
            counts: Default::default(),
            id: next_id(),
        })
    }

    /// Mask everything sensitive in `s`. Borrows `s` when nothing was found (no allocation).
    pub fn redact<'a>(&self, s: &'a str) -> Cow<'a, str> {
        if s.len() < scan::SHORTEST_MASKED {
            return Cow::Borrowed(s);
        }
        let spans = scan::find(s.as_bytes(), self);
        if spans.is_empty() {
            return Cow::Borrowed(s);
        }
        let out = scan::apply(s.as_bytes(), &spans);
        for sp in &spans {
            self.counts[sp.kind.index()].fetch_add(1, Ordering::Relaxed);
        }
        match String::from_utf8(out) {
            Ok(o) => Cow::Owned(o),
            // Spans always start and end on ASCII bytes, so this is not reached; stay safe anyway.
            Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
        }
    }

    /// The client IP as the logs may show it: truncated to /24 (IPv4) or /48 (IPv6), replaced by a
    /// keyed hash (16 hex digits), or kept, as configured. IPv4-mapped IPv6 addresses count as IPv4.
    pub fn client_ip(&self, ip: IpAddr) -> String {
        let ip = ip.to_canonical();
        match &self.ip {
            IpMode::Full => ip_text(ip),
            IpMode::Truncate => match ip {
                IpAddr::V4(v4) => {
                    let [a, b, c, _] = v4.octets();
                    ip_text(IpAddr::V4(Ipv4Addr::new(a, b, c, 0)))
                }
                IpAddr::V6(v6) => {
                    let s = v6.segments();
                    Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0).to_string()
                }
            },
            IpMode::Hash(mac) => {
                let mut mac = (**mac).clone();
                match ip {
                    IpAddr::V4(v4) => mac.update(&v4.octets()),
                    IpAddr::V6(v6) => mac.update(&v6.octets()),
                }
                let tag = mac.finalize().into_bytes();
                let mut out = String::with_capacity(16);
                for b in tag.iter().take(8) {
                    out.push(hex_digit(b >> 4));
                    out.push(hex_digit(b & 0xf));
                }
                out
            }
        }
    }

    /// Redactions per kind since this redactor was built (every kind listed, zeros included).
    pub fn counts(&self) -> Vec<(Kind, u64)> {
        Kind::ALL
            .iter()
            .map(|k| (*k, self.counts[k.index()].load(Ordering::Relaxed)))
            .collect()
    }

    pub(crate) fn extra_fields(&self) -> &fields::ExtraFields {
        &self.extra
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn masks_emails(&self) -> bool {
        self.emails
    }
}

/// An address as text, exactly as `Display` writes it. IPv4 is written by hand: `Display` for
/// `Ipv4Addr` costs ~1,300 instructions (its padding support), and addresses are written for every
/// request (the access line here, forwarding headers in the gateway).
pub fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mut out = String::with_capacity(15);
            for (i, n) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if n >= 100 {
                    out.push(char::from(b'0' + n / 100));
                }
                if n >= 10 {
                    out.push(char::from(b'0' + n / 10 % 10));
                }
                out.push(char::from(b'0' + n % 10));
            }
            out
        }
        IpAddr::V6(v6) => v6.to_string(),
    }
}

fn hex_digit(n: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(n & 0xf)])
}

#[cfg(test)]
mod tests;
