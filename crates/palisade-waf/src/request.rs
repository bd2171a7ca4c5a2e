//! The request model: what the gateway hands over, and the list of values
//! the rules inspect, built once per call.

use std::borrow::Cow;

use crate::body;
use crate::normalize::url_decode;

/// A request as the gateway saw it. Everything is borrowed: building it
/// costs nothing.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Method as received (`GET`, `POST`, ...).
    pub method: &'a str,
    /// Raw request-target (`/path?query`, or absolute-form), undecoded.
    pub target: &'a [u8],
    /// `HTTP/1.0`, `HTTP/1.1`, `HTTP/2`...
    pub version: &'a str,
    /// Headers in order, names as received.
    pub headers: &'a [(&'a str, &'a [u8])],
    /// The body prefix read so far (at most `Engine::body_limit` bytes), or
    /// `None` when there is no body or it was not read yet.
    pub body: Option<&'a [u8]>,
    /// The real body was longer than `body`.
    pub body_truncated: bool,
}

/// Which part of the request a value comes from; rules target classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Path = 0,
    Uri = 1,
    Method = 2,
    Arg = 3,
    ArgName = 4,
    /// Headers an application reads as data: `User-Agent`, `Referer`, custom
    /// `X-...` headers, anything not in the structural list.
    HeaderUser = 5,
    /// Structural headers (`Accept`, `Host`, `Content-Length`, ...).
    HeaderStd = 6,
    HeaderName = 7,
    Cookie = 8,
    CookieName = 9,
    Filename = 10,
    /// An unparsed body (unknown content type, or invalid JSON).
    Body = 11,
}

pub(crate) const CLASS_COUNT: usize = 12;

impl Class {
    pub(crate) const ALL: [Class; CLASS_COUNT] = [
        Class::Path,
        Class::Uri,
        Class::Method,
        Class::Arg,
        Class::ArgName,
        Class::HeaderUser,
        Class::HeaderStd,
        Class::HeaderName,
        Class::Cookie,
        Class::CookieName,
        Class::Filename,
        Class::Body,
    ];

    pub(crate) const fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// Where a value was found, for the match location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Path,
    Uri,
    Method,
    Query,
    Form,
    Json,
    Multipart,
    Xml,
    Header,
    Cookie,
    Body,
}

/// One inspected value.
#[derive(Debug, Clone)]
pub(crate) struct Item<'a> {
    pub class: Class,
    pub origin: Origin,
    /// A JSON value's path: its span in [`Parsed::names`] (`NO_PATH`
    /// otherwise). Paths are written there, not allocated one by one.
    pub path: u32,
    /// Argument / header / cookie name, element name.
    pub name: Cow<'a, [u8]>,
    pub value: Cow<'a, [u8]>,
}

/// `Item::path` of a value that has none.
pub(crate) const NO_PATH: u32 = u32::MAX;

/// At most this many values are extracted from one request; the
/// `protocol` count rules fire long before.
pub(crate) const MAX_ITEMS: usize = 4096;

/// The extracted values of one request.
pub(crate) struct Parsed<'a> {
    pub items: Vec<Item<'a>>,
    pub path_raw: &'a [u8],
    /// Items were dropped because of [`MAX_ITEMS`].
    pub overflow: bool,
    /// How many values of each class the request has; for the two header
    /// classes, how many headers (a URL header read in parts is one).
    pub counts: [u32; CLASS_COUNT],
    /// JSON paths, back to back; `spans` has one (start, end) per path.
    pub names: Vec<u8>,
    pub spans: Vec<(u32, u32)>,
}

impl<'a> Parsed<'a> {
    /// Records a path in [`Parsed::names`] and returns its `Item::path`.
    pub(crate) fn add_path(&mut self, path: &[u8]) -> u32 {
        let start = self.names.len();
        self.names.extend_from_slice(path);
        let span = (
            u32::try_from(start).unwrap_or(u32::MAX),
            u32::try_from(self.names.len()).unwrap_or(u32::MAX),
        );
        // Consecutive values often share their path (a key and its value).
        if self
            .spans
            .last()
            .is_some_and(|&(a, b)| self.names.get(a as usize..b as usize) == Some(path))
        {
            self.names.truncate(start);
        } else {
            self.spans.push(span);
        }
        u32::try_from(self.spans.len() - 1).unwrap_or(NO_PATH)
    }

    /// An item's name: its path when it has one.
    pub(crate) fn name_of<'s>(&'s self, item: &'s Item<'_>) -> &'s [u8] {
        match self.spans.get(item.path as usize) {
            Some(&(a, b)) if item.path != NO_PATH => {
                self.names.get(a as usize..b as usize).unwrap_or(b"")
            }
            _ => &item.name,
        }
    }

    pub(crate) fn push(&mut self, item: Item<'a>) {
        if self.items.len() < MAX_ITEMS {
            if !matches!(item.class, Class::HeaderUser | Class::HeaderStd) {
                self.counts[item.class as usize] += 1;
            }
            self.items.push(item);
        } else {
            self.overflow = true;
        }
    }
}

/// Headers whose values are protocol structure rather than application
/// data; only rules that target `headers` (all) or name them read them.
/// (Looked up through [`STRUCTURAL_BY_LEN`], which a test checks against it.)
#[cfg(test)]
const STRUCTURAL: &[&str] = &[
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "cache-control",
    "connection",
    "content-length",
    "content-type",
    "date",
    "dnt",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "keep-alive",
    "pragma",
    "priority",
    "range",
    "sec-ch-ua",
    "sec-ch-ua-mobile",
    "sec-ch-ua-platform",
    "sec-fetch-dest",
    "sec-fetch-mode",
    "sec-fetch-site",
    "sec-fetch-user",
    "te",
    "transfer-encoding",
    "upgrade-insecure-requests",
    "authorization",
];

/// The structural headers by length, so a name is compared with few of
/// them (`STRUCTURAL`, in the tests, is the same list).
const STRUCTURAL_BY_LEN: [&[&str]; 26] = [
    &[],
    &[],
    &["te"],
    &["dnt"],
    &["date", "host"],
    &["range"],
    &["accept", "pragma"],
    &[],
    &["if-match", "if-range", "priority"],
    &["sec-ch-ua"],
    &["connection", "keep-alive"],
    &[],
    &["content-type"],
    &["cache-control", "if-none-match", "authorization"],
    &[
        "accept-charset",
        "content-length",
        "sec-fetch-dest",
        "sec-fetch-mode",
        "sec-fetch-site",
        "sec-fetch-user",
    ],
    &["accept-encoding", "accept-language"],
    &["sec-ch-ua-mobile"],
    &["if-modified-since", "transfer-encoding"],
    &["sec-ch-ua-platform"],
    &["if-unmodified-since"],
    &[],
    &[],
    &[],
    &[],
    &[],
    &["upgrade-insecure-requests"],
];

/// Whether a header name (any case) is in [`STRUCTURAL`].
pub(crate) fn is_structural(name: &str) -> bool {
    let n = name.as_bytes();
    let first = n.first().map_or(0, |b| b | 0x20);
    STRUCTURAL_BY_LEN.get(n.len()).is_some_and(|c| {
        c.iter()
            .any(|s| s.as_bytes().first() == Some(&first) && eq_lower(n, s.as_bytes()))
    })
}

/// A header name, any case, equal to a lower-case one.
fn named(name: &str, lower: &str) -> bool {
    eq_lower(name.as_bytes(), lower.as_bytes())
}

/// `text.eq_ignore_ascii_case(lower)` when `lower` has no upper-case
/// letter (it returns the same for every `text`).
#[inline(always)]
pub(crate) fn eq_lower(text: &[u8], lower: &[u8]) -> bool {
    text.len() == lower.len() && eq_lower_words(text, lower)
}

/// Eight bytes at a time: a byte of `text` matches a lower-case letter of
/// `lower` when it is that letter once bit 0x20 is set, and any other byte
/// only when it is equal. (Equal lengths.)
fn eq_lower_words(text: &[u8], lower: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let same = |a: u64, b: u64| {
        if b & HIGH != 0 {
            // A byte of 0x80 or more: the byte arithmetic below would
            // carry; compare byte by byte.
            return a.to_le_bytes().eq_ignore_ascii_case(&b.to_le_bytes());
        }
        // The bytes of `b` in `a..=z` (no carry between bytes: all are
        // below 0x80 and so are the added constants).
        let from_a = b.wrapping_add(ONES * (0x80 - u64::from(b'a')));
        let past_z = b.wrapping_add(ONES * (0x80 - u64::from(b'z') - 1));
        let letters = from_a & !past_z & HIGH;
        // Bit 0x20 set where `b` has a letter: upper case folds.
        (a | letters >> 2) == b
    };
    let load = |s: &[u8], at: usize| {
        s.get(at..at + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            .map_or(0, u64::from_le_bytes)
    };
    let n = lower.len().min(text.len());
    if n < 8 {
        let short = |s: &[u8]| {
            s.iter()
                .take(8)
                .rev()
                .fold(0u64, |w, &b| w << 8 | u64::from(b))
        };
        return same(short(text), short(lower));
    }
    let mut at = 0;
    while at + 8 < n {
        if !same(load(text, at), load(lower, at)) {
            return false;
        }
        at += 8;
    }
    // The last eight bytes (overlapping the previous word if need be).
    same(load(text, n - 8), load(lower, n - 8))
}

/// Splits a request-target into path and query, skipping the scheme and
/// authority of an absolute-form target.
pub(crate) fn split_target(target: &[u8]) -> (&[u8], &[u8]) {
    let mut t = target;
    let lower_starts =
        |t: &[u8], p: &[u8]| t.len() >= p.len() && t[..p.len()].eq_ignore_ascii_case(p);
    if lower_starts(t, b"http://") || lower_starts(t, b"https://") {
        let after = memchr::memmem::find(t, b"://").map_or(0, |i| i + 3);
        let rest = &t[after..];
        t = match memchr::memchr2(b'/', b'?', rest) {
            Some(i) => &rest[i..],
            None => b"",
        };
    }
    let end = memchr::memchr(b'#', t).unwrap_or(t.len());
    let t = &t[..end];
    match memchr::memchr(b'?', t) {
        Some(i) => (&t[..i], &t[i + 1..]),
        None => (t, b""),
    }
}

/// What a byte means to [`parse_urlencoded`]: 1 ends a pair, 2 ends a name,
/// 3 needs URL decoding.
static FORM_BYTES: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b'&' as usize] = 1;
    t[b'=' as usize] = 2;
    t[b'%' as usize] = 3;
    t[b'+' as usize] = 3;
    t
};

/// URL-decodes (`+` as space) when the scan saw something to decode.
fn decoded(s: &[u8], encoded: bool) -> Cow<'_, [u8]> {
    if encoded {
        url_decode(s, true)
    } else {
        Cow::Borrowed(s)
    }
}

/// Parses `a=1&b=2` (query strings and form bodies), URL-decoding names and
/// values once (`+` as space). One pass finds the separators and what needs
/// decoding.
pub(crate) fn parse_urlencoded<'a>(parsed: &mut Parsed<'a>, s: &'a [u8], origin: Origin) {
    let mut start = 0;
    while start < s.len() {
        let mut eq = None;
        let (mut enc_name, mut enc_value) = (false, false);
        let mut i = start;
        while let Some(&b) = s.get(i) {
            match FORM_BYTES[b as usize] {
                0 => {}
                1 => break,
                2 if eq.is_none() => eq = Some(i),
                2 => {}
                _ if eq.is_none() => enc_name = true,
                _ => enc_value = true,
            }
            i += 1;
        }
        let (name, value) = match eq {
            Some(e) => (&s[start..e], &s[e + 1..i]),
            None => (&s[start..i], &b""[..]),
        };
        start = i + 1;
        if name.is_empty() && value.is_empty() {
            continue;
        }
        let name = decoded(name, enc_name);
        let value = decoded(value, enc_value);
        if !name.is_empty() {
            parsed.push(Item {
                class: Class::ArgName,
                origin,
                name: Cow::Borrowed(b""),
                value: name.clone(),
                path: NO_PATH,
            });
        }
        if !value.is_empty() {
            parsed.push(Item {
                class: Class::Arg,
                origin,
                name,
                value,
                path: NO_PATH,
            });
        }
    }
}

fn parse_cookies<'a>(parsed: &mut Parsed<'a>, header: &'a [u8]) {
    for part in memchr::memchr_iter(b';', header)
        .chain(std::iter::once(header.len()))
        .scan(0, |start, end| {
            let part = header.get(*start..end).unwrap_or(b"");
            *start = end + 1;
            Some(part)
        })
    {
        let part = part.trim_ascii();
        if part.is_empty() {
            continue;
        }
        let (name, value) = match memchr::memchr(b'=', part) {
            Some(i) => (part[..i].trim_ascii(), part[i + 1..].trim_ascii()),
            None => (part, &b""[..]),
        };
        parsed.push(Item {
            class: Class::CookieName,
            origin: Origin::Cookie,
            name: Cow::Borrowed(b""),
            value: Cow::Borrowed(name),
            path: NO_PATH,
        });
        if !value.is_empty() {
            let value = url_decode(value, false);
            // A JSON value is inspected key by key and leaf by leaf, as a
            // JSON body is; anything else (or broken JSON) as it is.
            if !body::parse_json_cookie(parsed, name, &value) {
                parsed.push(Item {
                    class: Class::Cookie,
                    origin: Origin::Cookie,
                    name: Cow::Borrowed(name),
                    value,
                    path: NO_PATH,
                });
            }
        }
    }
}

/// The parts of a URL-valued header (see [`url_parts`]).
#[derive(Debug, PartialEq, Eq)]
struct UrlParts<'a> {
    origin: &'a [u8],
    path: &'a [u8],
    query: &'a [u8],
    fragment: &'a [u8],
}

/// A `Referer` or `Origin` value that is a plain `http(s)` URL, in parts:
/// `scheme://host[:port]`, the path, the query and the fragment. `None`
/// when it is anything else (no scheme, user info, spaces, control bytes):
/// such a value is inspected whole.
fn url_parts(v: &[u8]) -> Option<UrlParts<'_>> {
    let scheme = if v.len() > 8 && v[..8].eq_ignore_ascii_case(b"https://") {
        8
    } else if v.len() > 7 && v[..7].eq_ignore_ascii_case(b"http://") {
        7
    } else {
        return None;
    };
    if v.iter().any(|&b| b <= 0x20 || b >= 0x7f) {
        return None;
    }
    let end = memchr::memchr3(b'/', b'?', b'#', &v[scheme..]).map_or(v.len(), |i| scheme + i);
    let host = &v[scheme..end];
    if host.is_empty()
        || !host
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
    {
        return None;
    }
    let rest = &v[end..];
    let (rest, fragment) = match memchr::memchr(b'#', rest) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b""[..]),
    };
    let (path, query) = match memchr::memchr(b'?', rest) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b""[..]),
    };
    Some(UrlParts {
        origin: &v[..end],
        path,
        query,
        fragment,
    })
}

/// Pushes a URL-valued header part by part (see [`url_parts`]), each a
/// value of that header: the origin, the path, every query name and value
/// (URL-decoded), the fragment. The request target's own query is read the
/// same way.
fn push_url_header<'a>(parsed: &mut Parsed<'a>, class: Class, name: &'a [u8], parts: UrlParts<'a>) {
    let UrlParts {
        origin,
        path,
        query,
        fragment,
    } = parts;
    let value = |parsed: &mut Parsed<'a>, v: Cow<'a, [u8]>| {
        if !v.is_empty() {
            parsed.push(Item {
                class,
                origin: Origin::Header,
                name: Cow::Borrowed(name),
                value: v,
                path: NO_PATH,
            });
        }
    };
    value(parsed, Cow::Borrowed(origin));
    value(parsed, Cow::Borrowed(path));
    for pair in query.split(|&b| b == b'&') {
        let (n, v) = match memchr::memchr(b'=', pair) {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        value(parsed, url_decode(n, true));
        value(parsed, url_decode(v, true));
    }
    value(parsed, Cow::Borrowed(fragment));
}

/// An empty list of items for another request, in the allocation of `v`
/// (a vector's lifetime cannot outlive its request, its buffer can).
// `filter` cannot change the item type's lifetime: `filter_map` to
// nothing can, and collects in place into the same buffer.
#[allow(clippy::unnecessary_filter_map)]
pub(crate) fn recycle<'b>(mut v: Vec<Item<'_>>) -> Vec<Item<'b>> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

/// Builds the list of values to inspect, in `items` (emptied first).
pub(crate) fn parse<'a>(req: &Request<'a>, items: Vec<Item<'a>>, names: Vec<u8>) -> Parsed<'a> {
    let (path, query) = split_target(req.target);
    let mut parsed = Parsed {
        items: {
            let mut items = items;
            items.clear();
            items
        },
        path_raw: path,
        overflow: false,
        counts: [0; CLASS_COUNT],
        names: {
            let mut names = names;
            names.clear();
            names
        },
        spans: Vec::new(),
    };
    parsed.push(Item {
        class: Class::Method,
        origin: Origin::Method,
        name: Cow::Borrowed(b""),
        value: Cow::Borrowed(req.method.as_bytes()),
        path: NO_PATH,
    });
    parsed.push(Item {
        class: Class::Path,
        origin: Origin::Path,
        name: Cow::Borrowed(b""),
        value: Cow::Borrowed(path),
        path: NO_PATH,
    });
    parsed.push(Item {
        class: Class::Uri,
        origin: Origin::Uri,
        name: Cow::Borrowed(b""),
        value: Cow::Borrowed(req.target),
        path: NO_PATH,
    });
    parse_urlencoded(&mut parsed, query, Origin::Query);
    for &(name, value) in req.headers {
        // Names are compared ignoring case (HTTP/2 and the gateway's header
        // map hand them over in lower case; the item keeps them as sent).
        if named(name, "cookie") {
            parse_cookies(&mut parsed, value);
            continue;
        }
        let class = if is_structural(name) {
            Class::HeaderStd
        } else {
            Class::HeaderUser
        };
        parsed.push(Item {
            class: Class::HeaderName,
            origin: Origin::Header,
            name: Cow::Borrowed(b""),
            value: Cow::Borrowed(name.as_bytes()),
            path: NO_PATH,
        });
        parsed.counts[class as usize] += 1;
        let referer = named(name, "referer");
        if referer || named(name, "origin") {
            if let Some(parts) = url_parts(value) {
                let lower: &'static [u8] = if referer { b"referer" } else { b"origin" };
                push_url_header(&mut parsed, class, lower, parts);
                continue;
            }
        }
        parsed.push(Item {
            class,
            origin: Origin::Header,
            name: Cow::Borrowed(name.as_bytes()),
            value: Cow::Borrowed(value),
            path: NO_PATH,
        });
    }
    if let Some(b) = req.body {
        if !b.is_empty() {
            let ct_full = req
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
                .map(|(_, v)| *v);
            body::parse_body(&mut parsed, ct_full, b);
        }
    }
    parsed
}

/// A printable, bounded form of a name for match locations: never a value.
pub(crate) fn clean_name(name: &[u8]) -> String {
    name.iter()
        .take(64)
        .map(|&b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'[' | b']' | b'@') {
                b as char
            } else {
                '_'
            }
        })
        .collect()
}

impl Item<'_> {
    /// The match location: names only, never the matched value.
    pub(crate) fn location(&self, parsed: &Parsed<'_>) -> String {
        let name = parsed.name_of(self);
        let names_of = |prefix: &str| format!("{prefix}_names");
        match (self.origin, self.class) {
            (Origin::Path, _) => "path".to_owned(),
            (Origin::Uri, _) => "uri".to_owned(),
            (Origin::Method, _) => "method".to_owned(),
            (Origin::Query, Class::ArgName) => names_of("args"),
            (Origin::Query, _) => format!("args:{}", clean_name(name)),
            (Origin::Form, Class::ArgName) => names_of("body:form"),
            (Origin::Form, _) => format!("body:form:{}", clean_name(name)),
            (Origin::Json, Class::ArgName) => format!("body:json_keys:{}", clean_name(name)),
            (Origin::Json, _) => format!("body:json:{}", clean_name(name)),
            (Origin::Multipart, Class::Filename) => {
                format!("body:multipart:{}:filename", clean_name(name))
            }
            (Origin::Multipart, Class::ArgName) => names_of("body:multipart"),
            (Origin::Multipart, _) => format!("body:multipart:{}", clean_name(name)),
            (Origin::Xml, _) => format!("body:xml:{}", clean_name(name)),
            (Origin::Header, Class::HeaderName) => "header_names".to_owned(),
            (Origin::Header, _) => {
                format!("header:{}", clean_name(&name.to_ascii_lowercase()))
            }
            (Origin::Cookie, Class::CookieName) => "cookie_names".to_owned(),
            (Origin::Cookie, _) => format!("cookie:{}", clean_name(name)),
            (Origin::Body, _) => "body".to_owned(),
        }
    }

    /// The argument name an exclusion's `args` list is compared with.
    pub(crate) fn arg_name<'s>(&'s self, parsed: &'s Parsed<'_>) -> Option<&'s [u8]> {
        let name = parsed.name_of(self);
        match (self.origin, self.class) {
            (
                Origin::Query | Origin::Form | Origin::Json | Origin::Multipart | Origin::Xml,
                Class::Arg | Class::Filename,
            ) => Some(name),
            (Origin::Json, Class::ArgName) => Some(name),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split() {
        assert_eq!(split_target(b"/a/b?x=1#f"), (&b"/a/b"[..], &b"x=1"[..]));
        assert_eq!(
            split_target(b"http://h.example:8080/p?q"),
            (&b"/p"[..], &b"q"[..])
        );
        assert_eq!(split_target(b"HTTPS://h"), (&b""[..], &b""[..]));
    }

    #[test]
    fn query_and_cookies() {
        let headers = [
            ("Cookie", &b"sid=abc%20d; cart=1"[..]),
            ("User-Agent", &b"x"[..]),
        ];
        let req = Request {
            method: "GET",
            target: b"/s?q=red+shoes&empty=&flag",
            version: "HTTP/1.1",
            headers: &headers,
            body: None,
            body_truncated: false,
        };
        let p = parse(&req, Vec::new(), Vec::new());
        let args: Vec<(String, String)> = p
            .items
            .iter()
            .filter(|i| matches!(i.class, Class::Arg | Class::Cookie))
            .map(|i| {
                (
                    String::from_utf8_lossy(&i.name).into_owned(),
                    String::from_utf8_lossy(&i.value).into_owned(),
                )
            })
            .collect();
        assert_eq!(
            args,
            vec![
                ("q".into(), "red shoes".into()),
                ("sid".into(), "abc d".into()),
                ("cart".into(), "1".into())
            ]
        );
        assert_eq!(
            p.items.iter().filter(|i| i.class == Class::ArgName).count(),
            3
        );
    }

    fn cookie_items(cookie: &str) -> Vec<(Class, String, String)> {
        let headers = [("Cookie", cookie.as_bytes())];
        let req = Request {
            method: "GET",
            target: b"/",
            version: "HTTP/1.1",
            headers: &headers,
            body: None,
            body_truncated: false,
        };
        parse(&req, Vec::new(), Vec::new())
            .items
            .iter()
            .filter(|i| matches!(i.class, Class::Cookie | Class::CookieName))
            .map(|i| {
                (
                    i.class,
                    String::from_utf8_lossy(&i.name).into_owned(),
                    String::from_utf8_lossy(&i.value).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn eq_lower_is_eq_ignore_ascii_case() {
        // Every pair of bytes at every position of a few lengths, against
        // lower-case texts with letters, digits, punctuation and high bytes.
        let lowers: [&[u8]; 6] = [
            b"sec-fetch-dest",
            b"a",
            b"upgrade-insecure-requests",
            b"x_y.z:0129@[`{~\x7f",
            b"caf\xc3\xa9-\xff\x80",
            b"",
        ];
        for lower in lowers {
            assert!(eq_lower(lower, lower), "{lower:?} against itself");
            for at in 0..lower.len() {
                for b in 0..=255u8 {
                    let mut t = lower.to_vec();
                    t[at] = b;
                    assert_eq!(
                        eq_lower(&t, lower),
                        t.eq_ignore_ascii_case(lower),
                        "{t:?} {lower:?}"
                    );
                }
            }
            let mut longer = lower.to_vec();
            longer.push(b'a');
            assert!(!eq_lower(&longer, lower));
        }
        assert!(eq_lower(b"Sec-Fetch-DEST", b"sec-fetch-dest"));
        assert!(!eq_lower(b"Sec-Fetch\rDEST", b"sec-fetch-dest"));
    }

    #[test]
    fn structural_names_by_length() {
        for n in STRUCTURAL {
            assert!(
                is_structural(n) && is_structural(&n.to_ascii_uppercase()),
                "{n}"
            );
        }
        let listed: usize = STRUCTURAL_BY_LEN.iter().map(|c| c.len()).sum();
        assert_eq!(listed, STRUCTURAL.len());
        assert!(!is_structural("user-agent") && !is_structural("referer") && !is_structural(""));
    }

    #[test]
    fn url_headers_are_read_in_parts() {
        let headers = [
            (
                "Referer",
                &b"https://Shop.example:8443/p/a%20b?x=1&q=red+shoes&flag#top"[..],
            ),
            ("Origin", &b"javascript:alert(1)"[..]),
        ];
        let req = Request {
            method: "GET",
            target: b"/",
            version: "HTTP/1.1",
            headers: &headers,
            body: None,
            body_truncated: false,
        };
        let p = parse(&req, Vec::new(), Vec::new());
        let values: Vec<(String, String)> = p
            .items
            .iter()
            .filter(|i| i.class == Class::HeaderUser)
            .map(|i| {
                (
                    String::from_utf8_lossy(&i.name).into_owned(),
                    String::from_utf8_lossy(&i.value).into_owned(),
                )
            })
            .collect();
        let r = |v: &str| ("referer".to_owned(), v.to_owned());
        assert_eq!(
            values,
            vec![
                r("https://Shop.example:8443"),
                r("/p/a%20b"),
                r("x"),
                r("1"),
                r("q"),
                r("red shoes"),
                r("flag"),
                r("top"),
                ("Origin".to_owned(), "javascript:alert(1)".to_owned()),
            ]
        );
        for v in [
            &b"https://user@host/"[..],
            b"https://host/a b",
            b"ftp://host/",
            b"https://",
            b"/relative",
        ] {
            assert_eq!(url_parts(v), None, "{:?}", String::from_utf8_lossy(v));
        }
    }

    #[test]
    fn json_cookies_are_parsed() {
        let items =
            cookie_items("c=%7B%22cart%22%3A%7B%22note%22%3A%22a%5Cu0027b%22%7D%2C%22n%22%3A1%7D");
        assert_eq!(
            items,
            vec![
                (Class::CookieName, String::new(), "c".into()),
                (Class::CookieName, String::new(), "cart".into()),
                (Class::CookieName, String::new(), "note".into()),
                (Class::Cookie, "c".into(), "a'b".into()),
                (Class::CookieName, String::new(), "n".into()),
            ]
        );
        // Not JSON, or broken JSON: the value as it is.
        assert_eq!(
            cookie_items("c={\"a\":1}'x"),
            vec![
                (Class::CookieName, String::new(), "c".into()),
                (Class::Cookie, "c".into(), "{\"a\":1}'x".into()),
            ]
        );
    }
}
