//! Request-level protocol checks (`detector = "protocol:..."`).

use crate::engine::Proto;
use crate::request::{Class, Parsed, Request};

const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

fn header<'a, 'n>(
    req: &Request<'a>,
    name: &'n str,
) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
    req.headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

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

/// Runs one check; returns the match location when it fires.
pub(crate) fn check(p: Proto, req: &Request<'_>, parsed: &Parsed<'_>) -> Option<&'static str> {
    let hit = match p {
        Proto::Method => !METHODS.contains(&req.method),
        Proto::MissingHost => {
            let http11 = req.version.eq_ignore_ascii_case("HTTP/1.1");
            let absolute = req.target.first() != Some(&b'/') && req.target != b"*";
            http11
                && !absolute
                && header(req, "host")
                    .next()
                    .is_none_or(|h| h.trim_ascii().is_empty())
        }
        Proto::HostIsIp => header(req, "host").any(is_ip_literal),
        Proto::Smuggling => {
            let te: Vec<&[u8]> = header(req, "transfer-encoding").collect();
            let cl: Vec<&[u8]> = header(req, "content-length").collect();
            let te_bad = te.len() > 1
                || te
                    .iter()
                    .any(|v| !v.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            let cl_conflict =
                cl.len() > 1 && cl.iter().any(|v| v.trim_ascii() != cl[0].trim_ascii());
            (!te.is_empty() && !cl.is_empty()) || te_bad || cl_conflict
        }
        Proto::ContentLength => header(req, "content-length")
            .any(|v| v.trim_ascii().is_empty() || !v.trim_ascii().iter().all(u8::is_ascii_digit)),
        Proto::Version => !matches!(
            req.version,
            "HTTP/1.0" | "HTTP/1.1" | "HTTP/2" | "HTTP/2.0" | "HTTP/3" | "HTTP/3.0"
        ),
        Proto::TargetChars => {
            req.target.is_empty()
                || req.target.iter().any(|&b| b < 0x21 || b == 0x7f)
                || bad_percent(req.target)
        }
        Proto::NulByte => {
            parsed.items.iter().any(|i| {
                matches!(
                    i.class,
                    Class::Arg | Class::ArgName | Class::Path | Class::Filename
                ) && memchr::memchr(0, &i.value).is_some()
            }) || memchr::memmem::find(parsed.path_raw, b"%00").is_some()
        }
        Proto::HeaderCtl => req.headers.iter().any(|(n, v)| {
            v.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
                || n.bytes().any(|b| b <= 0x20 || b == b':')
        }),
        Proto::GetWithBody => {
            matches!(req.method, "GET" | "HEAD")
                && header(req, "content-length").any(|v| v.trim_ascii().iter().any(|b| *b != b'0'))
        }
        Proto::BodyOverflow => req.body_truncated,
        Proto::ContentType => content_type_bad(req),
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
fn content_type_bad(req: &Request<'_>) -> bool {
    let has_body = req.body.is_some_and(|b| !b.is_empty())
        || header(req, "content-length").any(|v| v.trim_ascii().iter().any(|b| *b != b'0'))
        || header(req, "transfer-encoding").next().is_some();
    let cts: Vec<&[u8]> = header(req, "content-type").collect();
    if cts.len() > 1 {
        return true;
    }
    let Some(ct) = cts.first() else {
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
