//! A cross-site scripting detector for normalised (decoded, lower-case)
//! values: HTML tags that run script, event-handler attributes, and
//! script-bearing URLs. Harmless markup (`<b>`, `<p>`, `<a href="https://…">`)
//! and text with `<` or quotes passes.

/// Tags that execute or load active content by themselves.
const ACTIVE_TAGS: &[&[u8]] = &[
    b"script",
    b"iframe",
    b"frame",
    b"frameset",
    b"object",
    b"embed",
    b"applet",
    b"meta",
    b"base",
    b"link",
    b"style",
    b"svg",
    b"math",
    b"xml",
    b"import",
    b"isindex",
    b"bgsound",
    b"layer",
    b"ilayer",
    b"portal",
    b"xss",
    b"animate",
    b"set",
    b"handler",
    b"listener",
    b"vmlframe",
    b"xmp",
    b"plaintext",
    b"noembed",
    b"noframes",
    b"template",
    b"x",
];

/// URL schemes that run script.
const SCRIPT_SCHEMES: &[&[u8]] = &[
    b"javascript:",
    b"vbscript:",
    b"livescript:",
    b"data:text/html",
    b"data:image/svg",
    b"data:application/",
];

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b':' | b'_')
}

/// An `on…=` event handler attribute at `i` (which is at `o` of `on`).
fn handler_at(s: &[u8], i: usize) -> bool {
    if !s[i..].starts_with(b"on") {
        return false;
    }
    let mut j = i + 2;
    let start = j;
    while j < s.len() && s[j].is_ascii_alphabetic() {
        j += 1;
    }
    if j - start < 3 {
        return false;
    }
    while j < s.len() && matches!(s[j], b' ' | b'\t' | b'\n' | b'\r' | 0x0c | b'/') {
        j += 1;
    }
    s.get(j) == Some(&b'=')
}

fn attr_dangerous(attrs: &[u8]) -> bool {
    for i in 0..attrs.len() {
        let b = attrs[i];
        let sep_before = i == 0
            || matches!(
                attrs[i - 1],
                b' ' | b'\t' | b'\n' | b'\r' | 0x0c | b'/' | b'"' | b'\'' | b'`'
            );
        if b == b'o' && sep_before && handler_at(attrs, i) {
            return true;
        }
        if sep_before
            && (attrs[i..].starts_with(b"formaction")
                || attrs[i..].starts_with(b"srcdoc")
                || attrs[i..].starts_with(b"xlink:href")
                || attrs[i..].starts_with(b"background=")
                || attrs[i..].starts_with(b"dynsrc")
                || attrs[i..].starts_with(b"lowsrc"))
        {
            return true;
        }
    }
    has_script_url(attrs)
        || memchr::memmem::find(attrs, b"expression(").is_some()
        || memchr::memmem::find(attrs, b"-moz-binding").is_some()
        || memchr::memmem::find(attrs, b"behavior:").is_some()
}

fn has_script_url(s: &[u8]) -> bool {
    // Tabs and newlines inside a scheme are ignored by browsers.
    let squeezed: std::borrow::Cow<'_, [u8]> =
        if s.iter().any(|&b| matches!(b, b'\t' | b'\n' | b'\r')) {
            std::borrow::Cow::Owned(
                s.iter()
                    .copied()
                    .filter(|b| !matches!(b, b'\t' | b'\n' | b'\r'))
                    .collect(),
            )
        } else {
            std::borrow::Cow::Borrowed(s)
        };
    SCRIPT_SCHEMES
        .iter()
        .any(|p| memchr::memmem::find(&squeezed, p).is_some())
}

/// Is `s` (normalised, lower case) an XSS attempt?
pub fn is_xss(s: &[u8]) -> bool {
    let n = s.len();
    // 1. Tags.
    let mut from = 0;
    while let Some(p) = memchr::memchr(b'<', &s[from..]) {
        let i = from + p;
        from = i + 1;
        let mut j = i + 1;
        if s.get(j) == Some(&b'/') {
            j += 1;
        }
        let start = j;
        while j < n && is_name_byte(s[j]) {
            j += 1;
        }
        if j == start || !s[start].is_ascii_alphabetic() {
            continue;
        }
        let name = &s[start..j];
        let name = name.split(|&b| b == b':').next_back().unwrap_or(name);
        let end = memchr::memchr(b'>', &s[j..]).map_or(n, |e| j + e);
        let end = end.min(j + 2048);
        let attrs = &s[j..end];
        if ACTIVE_TAGS.contains(&name) {
            // `<x` is only active with a handler; `<set`, `<template` too.
            if matches!(name, b"x" | b"set" | b"template") {
                if attr_dangerous(attrs) {
                    return true;
                }
                continue;
            }
            // The tag must be a tag: followed by space, '/', '>' or the end.
            if j >= n || matches!(s[j], b' ' | b'\t' | b'\n' | b'\r' | 0x0c | b'/' | b'>') {
                return true;
            }
            continue;
        }
        if attr_dangerous(attrs) {
            return true;
        }
    }
    // 2a. A bare handler assignment that calls code: ` onerror=alert(1)`.
    for i in 0..n {
        if s[i] == b'o'
            && (i == 0
                || matches!(
                    s[i - 1],
                    b' ' | b'\t' | b'\n' | b'\r' | 0x0c | b'/' | b';' | b'>'
                ))
            && handler_at(s, i)
        {
            let eq = i + memchr::memchr(b'=', &s[i..]).unwrap_or(0);
            let rest = &s[eq + 1..n.min(eq + 128)];
            let rest = rest.trim_ascii_start();
            let rest = rest
                .strip_prefix(b"\"")
                .or_else(|| rest.strip_prefix(b"'"))
                .unwrap_or(rest);
            let ident = rest
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$' | b'.'))
                .count();
            if ident > 0 && matches!(rest.get(ident), Some(b'(' | b'`' | b'=' | b'[')) {
                return true;
            }
        }
    }
    // 2. Breaking out of an attribute value into a handler: `" onfocus=`.
    for (i, &b) in s.iter().enumerate() {
        if matches!(b, b'"' | b'\'' | b'`') {
            let mut j = i + 1;
            while j < n && matches!(s[j], b' ' | b'\t' | b'\n' | b'\r' | 0x0c | b'/') {
                j += 1;
            }
            if j < n && s[j] == b'o' && handler_at(s, j) {
                return true;
            }
            if (s[j.min(n)..].starts_with(b"style=") || s[j.min(n)..].starts_with(b"src="))
                && attr_dangerous(&s[j..n.min(j + 512)])
            {
                return true;
            }
        }
    }
    // 3. A script URL outside a tag: the scheme must be followed by code
    // (a call, an assignment, a template, an encoded byte), so that text
    // such as "JavaScript: the basics" passes.
    // Every scheme ends in `script:` or starts with `data:` (tabs and
    // newlines inside are dropped below); most texts have neither.
    let scheme_at = |p: usize| {
        // The (up to) six bytes before the colon, last first.
        let mut before = [0u8; 6];
        let mut n = 0;
        for &b in s[..p].iter().rev() {
            if matches!(b, b'\t' | b'\n' | b'\r') {
                continue;
            }
            before[n] = b;
            n += 1;
            if n == before.len() {
                break;
            }
        }
        before[..n].starts_with(b"tpircs") || before[..n].starts_with(b"atad")
    };
    if !memchr::memchr_iter(b':', s).any(scheme_at) {
        return false;
    }
    let squeezed: std::borrow::Cow<'_, [u8]> = if memchr::memchr3(b'\t', b'\n', b'\r', s).is_some()
    {
        s.iter()
            .copied()
            .filter(|b| !matches!(b, b'\t' | b'\n' | b'\r'))
            .collect::<Vec<u8>>()
            .into()
    } else {
        s.into()
    };
    for p in SCRIPT_SCHEMES {
        let mut from = 0;
        while let Some(pos) = memchr::memmem::find(&squeezed[from..], p) {
            let at = from + pos;
            from = at + 1;
            let before_ok = at == 0
                || matches!(
                    squeezed[at - 1],
                    b'=' | b'"' | b'\'' | b'(' | b'`' | b' ' | b'>' | b'[' | b','
                );
            if !before_ok {
                continue;
            }
            let rest = &squeezed[at + p.len()..];
            let rest = &rest[..rest.len().min(256)];
            if p.starts_with(b"data:")
                || rest
                    .iter()
                    .any(|b| matches!(b, b'(' | b'=' | b'`' | b'[' | b'%' | b';' | b'{' | b'\\'))
                || rest.starts_with(b"//")
            {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attacks() {
        for a in [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "<svg/onload=alert(1)>",
            "\"><img src=x onerror=prompt(1)>",
            "\" onmouseover=\"alert(1)",
            "javascript:alert(1)",
            "&gt; src onerror=confirm(1)",
            "<a href=\"javascript:alert(1)\">x</a>",
            "<body onload=alert(1)>",
            "<iframe src=//evil.example>",
            "<div style=\"background:url(javascript:alert(1))\">",
            "<a href=\"java\tscript:alert(1)\">",
            "<details open ontoggle=alert(1)>",
            "<x onclick=alert(1)>click",
        ] {
            assert!(is_xss(a.as_bytes()), "missed {a}");
        }
    }

    #[test]
    fn benign() {
        for b in [
            "<b>bold</b> and <i>italic</i>",
            "<p>Nice <a href=\"https://shop.example/p/1\">product</a></p>",
            "5 < 6 and 7 > 3",
            "I <3 this",
            "the one on the left",
            "Don't \"quote\" me",
            "online store",
            "JavaScript: Basics of JavaScript Language",
        ] {
            assert!(
                !is_xss(b.to_ascii_lowercase().as_bytes()),
                "false positive {b}"
            );
        }
    }
}
