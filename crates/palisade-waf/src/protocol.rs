//! Request-level protocol checks (`detector = "protocol:..."`).

use crate::engine::Proto;
use crate::request::{Class, Parsed, Request};

const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

fn is_ip_literal(host: &[u8]) -> bool {
    let h = host.trim_ascii();
    if h.starts_with(b"[") {
        return true;
    }
    let h = match memchr::memrchr(b':', h) {
        Some(i) => &h[..i],
        None => h,
    };
    !h.is_empty()
        && h.iter().all(|b| b.is_ascii_digit() || *b == b'.')
        && h.iter().filter(|b| **b == b'.').count() == 3
}

/// What the protocol checks read from the headers, gathered in one pass.
#[derive(Debug, Default)]
pub(crate) struct Headers<'a> {
    host: Option<&'a [u8]>,
    host_is_ip: bool,
    te_count: usize,
    te_not_chunked: bool,
    cl_count: usize,
    cl_first: Option<&'a [u8]>,
    cl_conflict: bool,
    cl_bad: bool,
    cl_nonzero: bool,
    ct_count: usize,
    ct_first: Option<&'a [u8]>,
    ctl: bool,
}

/// One pass over the headers for every protocol check.
pub(crate) fn headers<'a>(req: &Request<'a>) -> Headers<'a> {
    let mut h = Headers::default();
    for (n, v) in req.headers {
        let v: &'a [u8] = v;
        // Branch-free folds: they vectorise.
        h.ctl |= v
            .iter()
            .fold(false, |a, &b| a | ((b < 0x20) & (b != b'\t')) | (b == 0x7f))
            | n.bytes().fold(false, |a, b| a | (b <= 0x20) | (b == b':'));
        let is = |name: &str| crate::request::eq_lower(n.as_bytes(), name.as_bytes());
        match n.len() {
            4 if is("host") => {
                if h.host.is_none() {
                    h.host = Some(v);
                }
                h.host_is_ip |= is_ip_literal(v);
            }
            17 if is("transfer-encoding") => {
                h.te_count += 1;
                h.te_not_chunked |= !v.trim_ascii().eq_ignore_ascii_case(b"chunked");
            }
            14 if is("content-length") => {
                let t = v.trim_ascii();
                h.cl_count += 1;
                match h.cl_first {
                    None => h.cl_first = Some(t),
                    Some(f) => h.cl_conflict |= f != t,
                }
                h.cl_bad |= t.is_empty() || !t.iter().all(u8::is_ascii_digit);
                h.cl_nonzero |= t.iter().any(|b| *b != b'0');
            }
            12 if is("content-type") => {
                h.ct_count += 1;
                if h.ct_first.is_none() {
                    h.ct_first = Some(v);
                }
            }
            _ => {}
        }
    }
    h
}

/// Runs one check; returns the match location when it fires.
pub(crate) fn check(
    p: Proto,
    req: &Request<'_>,
    parsed: &Parsed<'_>,
    h: &Headers<'_>,
) -> Option<&'static str> {
    let hit = match p {
        Proto::Method => !METHODS.contains(&req.method),
        Proto::MissingHost => {
            let http11 = req.version.eq_ignore_ascii_case("HTTP/1.1");
            let absolute = req.target.first() != Some(&b'/') && req.target != b"*";
            http11 && !absolute && h.host.is_none_or(|v| v.trim_ascii().is_empty())
        }
        Proto::HostIsIp => h.host_is_ip,
        Proto::Smuggling => {
            (h.te_count > 0 && h.cl_count > 0)
                || h.te_count > 1
                || h.te_not_chunked
                || h.cl_conflict
        }
        Proto::ContentLength => h.cl_bad,
        Proto::Version => !matches!(
            req.version,
            "HTTP/1.0" | "HTTP/1.1" | "HTTP/2" | "HTTP/2.0" | "HTTP/3" | "HTTP/3.0"
        ),
        Proto::TargetChars => {
            req.target.is_empty()
                || req
                    .target
                    .iter()
                    .fold(false, |a, &b| a | (b < 0x21) | (b == 0x7f))
                || bad_percent(req.target)
        }
        Proto::NulByte => {
            parsed.items.iter().any(|i| {
                matches!(
                    i.class,
                    Class::Arg | Class::ArgName | Class::Path | Class::Filename
                ) && has_nul(&i.value)
            }) || memchr::memchr_iter(b'%', parsed.path_raw)
                .any(|i| parsed.path_raw[i + 1..].starts_with(b"00"))
        }
        Proto::HeaderCtl => h.ctl,
        Proto::GetWithBody => matches!(req.method, "GET" | "HEAD") && h.cl_nonzero,
        Proto::BodyOverflow => req.body_truncated,
        Proto::ContentType => content_type_bad(req, h),
        Proto::ItemOverflow => parsed.overflow,
    };
    hit.then_some(match p {
        Proto::Method => "method",
        Proto::MissingHost | Proto::HostIsIp => "header:host",
        Proto::Smuggling | Proto::ContentLength | Proto::GetWithBody => "header:content-length",
        Proto::Version => "version",
        Proto::TargetChars => "uri",
        Proto::ContentType => "header:content-type",
        Proto::HeaderCtl => "header_names",
        _ => "request",
    })
}

/// A NUL byte in `v`. Most values are short, where a plain loop costs less
/// than setting up `memchr`'s vector search.
fn has_nul(v: &[u8]) -> bool {
    if v.len() <= 32 {
        v.iter().fold(false, |a, &b| a | (b == 0))
    } else {
        memchr::memchr(0, v).is_some()
    }
}

/// `%` not followed by two hex digits (or `u` + four) in the raw target.
fn bad_percent(t: &[u8]) -> bool {
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'%', &t[i..]) {
        let at = i + p;
        let hex2 = t.get(at + 1).is_some_and(u8::is_ascii_hexdigit)
            && t.get(at + 2).is_some_and(u8::is_ascii_hexdigit);
        let uni = matches!(t.get(at + 1), Some(b'u' | b'U'))
            && t.len() >= at + 6
            && t[at + 2..at + 6].iter().all(u8::is_ascii_hexdigit);
        if !hex2 && !uni {
            return true;
        }
        i = at + 1;
    }
    false
}

/// Media types a shop's clients send in request bodies.
const ALLOWED_TYPES: &[&[u8]] = &[
    b"application/x-www-form-urlencoded",
    b"multipart/form-data",
    b"multipart/related",
    b"multipart/mixed",
    b"application/json",
    b"application/xml",
    b"text/xml",
    b"application/soap+xml",
    b"text/plain",
    b"application/csp-report",
    b"application/octet-stream",
    b"application/graphql",
    b"application/x-ndjson",
];

const ALLOWED_CHARSETS: &[&[u8]] = &[
    b"utf-8",
    b"utf8",
    b"iso-8859-1",
    b"iso-8859-15",
    b"latin1",
    b"windows-1252",
    b"us-ascii",
    b"ascii",
    b"utf-16",
];

/// A request body with a missing, unknown or malformed `Content-Type`.
fn content_type_bad(req: &Request<'_>, h: &Headers<'_>) -> bool {
    let has_body = req.body.is_some_and(|b| !b.is_empty()) || h.cl_nonzero || h.te_count > 0;
    if h.ct_count > 1 {
        return true;
    }
    let Some(ct) = h.ct_first else {
        return has_body && !matches!(req.method, "GET" | "HEAD" | "OPTIONS" | "DELETE");
    };
    let lower = ct.to_ascii_lowercase();
    let mut parts = lower.split(|&b| b == b';');
    let media = parts.next().unwrap_or(b"").trim_ascii();
    let known = ALLOWED_TYPES.contains(&media)
        || (media.starts_with(b"application/")
            && (media.ends_with(b"+json") || media.ends_with(b"+xml")));
    if has_body && !known {
        return true;
    }
    let multipart = media.starts_with(b"multipart/");
    for p in parts {
        let p = p.trim_ascii();
        if p.is_empty() {
            continue;
        }
        let Some(eq) = memchr::memchr(b'=', p) else {
            return true;
        };
        let (k, v) = (p[..eq].trim_ascii(), p[eq + 1..].trim_ascii());
        let v = v
            .strip_prefix(b"\"")
            .and_then(|v| v.strip_suffix(b"\""))
            .or_else(|| v.strip_prefix(b"'").and_then(|v| v.strip_suffix(b"'")))
            .unwrap_or(v);
        match k {
            b"charset" if !ALLOWED_CHARSETS.contains(&v) => return true,
            b"boundary" if !multipart => return true,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::has_nul;

    #[test]
    fn nul_anywhere_in_any_length() {
        for n in 0..80 {
            let mut v = vec![b'a'; n];
            assert!(!has_nul(&v));
            for at in 0..n {
                v[at] = 0;
                assert!(has_nul(&v), "{n} {at}");
                v[at] = b'a';
            }
        }
    }
}
