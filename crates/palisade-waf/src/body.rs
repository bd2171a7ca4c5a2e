//! Body parsers: form, JSON, multipart, XML. All are single-pass scanners
//! over the (already size-limited) body prefix, never recursing deeper than
//! [`MAX_DEPTH`], never panicking on malformed input: what cannot be parsed
//! is inspected as a raw `body` value.

use std::borrow::Cow;

use crate::request::{parse_urlencoded, Class, Item, Origin, Parsed, NO_PATH};

/// Deepest JSON/XML nesting followed; deeper content is inspected raw.
pub const MAX_DEPTH: usize = 32;

/// Longest JSON path / XML name kept for locations.
const MAX_NAME: usize = 128;

fn raw_body<'a>(parsed: &mut Parsed<'a>, body: &'a [u8]) {
    parsed.push(Item {
        class: Class::Body,
        origin: Origin::Body,
        name: Cow::Borrowed(b""),
        value: Cow::Borrowed(body),
        path: NO_PATH,
    });
}

/// Dispatches on the content type. `ct` is the full `Content-Type` value.
pub(crate) fn parse_body<'a>(parsed: &mut Parsed<'a>, ct: Option<&'a [u8]>, body: &'a [u8]) {
    let ct_lower = ct.map(|c| c.to_ascii_lowercase()).unwrap_or_default();
    let has = |needle: &[u8]| memchr::memmem::find(&ct_lower, needle).is_some();
    if has(b"application/x-www-form-urlencoded") {
        parse_urlencoded(parsed, body, Origin::Form);
    } else if has(b"multipart/") {
        if !parse_multipart(parsed, &ct_lower, ct.unwrap_or(b""), body) {
            raw_body(parsed, body);
        }
    } else if has(b"json") {
        if !parse_json(parsed, body) {
            raw_body(parsed, body);
        }
    } else if has(b"xml") {
        parse_xml(parsed, body);
    } else {
        // Unknown or missing type: sniff, and always keep the raw body.
        let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
        match first {
            Some(b'{' | b'[') => {
                parse_json(parsed, body);
            }
            Some(b'<') => parse_xml(parsed, body),
            // `text/plain` and friends often carry form data.
            _ if memchr::memchr(b'=', body).is_some() => {
                parse_urlencoded(parsed, body, Origin::Form)
            }
            _ => {}
        }
        raw_body(parsed, body);
    }
}

// ------------------------------------------------------------------- JSON

/// Where the keys and string leaves of a JSON document go.
trait JsonSink<'s> {
    /// An object key, at `path` (the key included).
    fn key(&mut self, path: &[u8], key: Cow<'s, [u8]>);
    /// A string leaf (never empty), at `path`.
    fn leaf(&mut self, path: &[u8], value: Cow<'s, [u8]>);
}

/// A JSON body: keys and leaves as arguments named by their path.
struct BodySink<'p, 'a> {
    out: &'p mut Parsed<'a>,
}

impl<'a> JsonSink<'a> for BodySink<'_, 'a> {
    fn key(&mut self, path: &[u8], key: Cow<'a, [u8]>) {
        let path = self.out.add_path(path);
        self.out.push(Item {
            class: Class::ArgName,
            origin: Origin::Json,
            path,
            name: Cow::Borrowed(b""),
            value: key,
        });
    }

    fn leaf(&mut self, path: &[u8], value: Cow<'a, [u8]>) {
        let path = self.out.add_path(path);
        self.out.push(Item {
            class: Class::Arg,
            origin: Origin::Json,
            path,
            name: Cow::Borrowed(b""),
            value,
        });
    }
}

/// A JSON cookie value: keys as cookie names, leaves as values of the
/// cookie (copied: the decoded cookie does not outlive its parsing).
struct CookieSink<'p, 'a> {
    out: &'p mut Parsed<'a>,
    name: &'a [u8],
}

impl<'s> JsonSink<'s> for CookieSink<'_, '_> {
    fn key(&mut self, _path: &[u8], key: Cow<'s, [u8]>) {
        self.out.push(Item {
            class: Class::CookieName,
            origin: Origin::Cookie,
            name: Cow::Borrowed(b""),
            value: Cow::Owned(key.into_owned()),
            path: NO_PATH,
        });
    }

    fn leaf(&mut self, _path: &[u8], value: Cow<'s, [u8]>) {
        self.out.push(Item {
            class: Class::Cookie,
            origin: Origin::Cookie,
            name: Cow::Borrowed(self.name),
            value: Cow::Owned(value.into_owned()),
            path: NO_PATH,
        });
    }
}

struct Json<'s, K> {
    s: &'s [u8],
    i: usize,
    path: Vec<u8>,
    sink: K,
}

impl<'s, K: JsonSink<'s>> Json<'s, K> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    /// Parses a string at `self.i` (which is a `"`), returning its decoded
    /// content.
    fn string(&mut self) -> Option<Cow<'s, [u8]>> {
        let s = self.s;
        let start = self.i + 1;
        let mut j = start;
        let mut escaped = false;
        while j < s.len() {
            match s[j] {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    j += 2;
                }
                _ => j += 1,
            }
        }
        if j >= s.len() {
            return None;
        }
        self.i = j + 1;
        let raw = &s[start..j];
        if !escaped {
            return Some(Cow::Borrowed(raw));
        }
        let mut out = Vec::with_capacity(raw.len());
        let mut k = 0;
        while k < raw.len() {
            let b = raw[k];
            if b != b'\\' || k + 1 >= raw.len() {
                out.push(b);
                k += 1;
                continue;
            }
            let e = raw[k + 1];
            k += 2;
            match e {
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'r' => out.push(b'\r'),
                b'b' => out.push(8),
                b'f' => out.push(12),
                b'u' => {
                    let hex = |h: &[u8]| -> Option<u32> {
                        if h.len() < 4 {
                            return None;
                        }
                        std::str::from_utf8(&h[..4])
                            .ok()
                            .and_then(|t| u32::from_str_radix(t, 16).ok())
                    };
                    match hex(&raw[k..]) {
                        Some(hi) => {
                            k += 4;
                            let mut cp = hi;
                            if (0xd800..0xdc00).contains(&hi) && raw[k..].starts_with(b"\\u") {
                                if let Some(lo) = hex(&raw[k + 2..]) {
                                    if (0xdc00..0xe000).contains(&lo) {
                                        cp = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
                                        k += 6;
                                    }
                                }
                            }
                            let c = char::from_u32(cp).unwrap_or('\u{fffd}');
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                        None => out.push(b'u'),
                    }
                }
                other => out.push(other),
            }
        }
        Some(Cow::Owned(out))
    }

    fn push_path(&mut self, seg: &[u8]) -> usize {
        let len = self.path.len();
        if self.path.len() < MAX_NAME {
            if !self.path.is_empty() && seg != b"[]" {
                self.path.push(b'.');
            }
            let room = MAX_NAME.saturating_sub(self.path.len());
            self.path.extend_from_slice(&seg[..seg.len().min(room)]);
        }
        len
    }

    fn leaf(&mut self, value: Cow<'s, [u8]>) {
        if value.is_empty() {
            return;
        }
        self.sink.leaf(&self.path, value);
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        match *self.s.get(self.i)? {
            b'{' => {
                self.i += 1;
                loop {
                    self.ws();
                    match *self.s.get(self.i)? {
                        b'}' => {
                            self.i += 1;
                            return Some(());
                        }
                        b',' => {
                            self.i += 1;
                            continue;
                        }
                        b'"' => {}
                        _ => return None,
                    }
                    let key = self.string()?;
                    let saved = self.push_path(&key);
                    self.sink.key(&self.path, key);
                    self.ws();
                    if self.s.get(self.i) != Some(&b':') {
                        return None;
                    }
                    self.i += 1;
                    let r = self.value(depth + 1);
                    self.path.truncate(saved);
                    r?;
                }
            }
            b'[' => {
                self.i += 1;
                let saved = self.push_path(b"[]");
                loop {
                    self.ws();
                    match *self.s.get(self.i)? {
                        b']' => {
                            self.i += 1;
                            self.path.truncate(saved);
                            return Some(());
                        }
                        b',' => {
                            self.i += 1;
                        }
                        _ => self.value(depth + 1)?,
                    }
                }
            }
            b'"' => {
                let v = self.string()?;
                self.leaf(v);
                Some(())
            }
            _ => {
                // Numbers, true, false, null: scan the bare token.
                let start = self.i;
                while self.i < self.s.len()
                    && !matches!(
                        self.s[self.i],
                        b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t'
                    )
                {
                    self.i += 1;
                }
                let tok = &self.s[start..self.i];
                if tok.is_empty() {
                    return None;
                }
                let plain = tok
                    .iter()
                    .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
                    || matches!(tok, b"true" | b"false" | b"null");
                if !plain {
                    // Not JSON: let the caller fall back to the raw body.
                    return None;
                }
                Some(())
            }
        }
    }
}

/// Parses a JSON body into key and leaf-value items. Returns `false` when
/// the body is not (entirely) valid JSON; items found before the error are
/// kept.
pub(crate) fn parse_json<'a>(parsed: &mut Parsed<'a>, body: &'a [u8]) -> bool {
    json_into(body, BodySink { out: parsed })
}

fn json_into<'s, K: JsonSink<'s>>(text: &'s [u8], sink: K) -> bool {
    let mut p = Json {
        s: text,
        i: 0,
        path: Vec::new(),
        sink,
    };
    let ok = p.value(0).is_some();
    p.ws();
    ok && p.i == text.len()
}

/// Parses a cookie value that is a JSON object or array (shops keep carts,
/// consents and cache hints there) into its keys (as cookie names) and
/// string leaves (as values of the cookie). Returns `false`, with nothing
/// added, when the value is not valid JSON.
pub(crate) fn parse_json_cookie<'a>(parsed: &mut Parsed<'a>, name: &'a [u8], value: &[u8]) -> bool {
    if !matches!(value.first(), Some(b'{' | b'[')) {
        return false;
    }
    let before = parsed.items.len();
    let overflow = parsed.overflow;
    if json_into(value, CookieSink { out: parsed, name }) {
        return true;
    }
    parsed.items.truncate(before);
    parsed.overflow = overflow;
    false
}

// -------------------------------------------------------------- multipart

fn param<'b>(header: &'b [u8], lower: &[u8], key: &[u8]) -> Option<&'b [u8]> {
    let mut from = 0;
    while let Some(pos) = memchr::memmem::find(&lower[from..], key) {
        let at = from + pos;
        let before_ok = at == 0 || matches!(lower[at - 1], b';' | b' ' | b'\t');
        let mut j = at + key.len();
        from = j;
        if !before_ok {
            continue;
        }
        while j < header.len() && header[j] == b' ' {
            j += 1;
        }
        if header.get(j) != Some(&b'=') {
            continue;
        }
        j += 1;
        while j < header.len() && header[j] == b' ' {
            j += 1;
        }
        if header.get(j) == Some(&b'"') {
            let rest = &header[j + 1..];
            let end = memchr::memchr(b'"', rest).unwrap_or(rest.len());
            return Some(&rest[..end]);
        }
        let rest = &header[j..];
        let end = memchr::memchr(b';', rest).unwrap_or(rest.len());
        return Some(rest[..end].trim_ascii());
    }
    None
}

/// Parses `multipart/form-data`. Returns `false` when no boundary could be
/// used.
pub(crate) fn parse_multipart<'a>(
    parsed: &mut Parsed<'a>,
    ct_lower: &[u8],
    ct: &'a [u8],
    body: &'a [u8],
) -> bool {
    let Some(boundary) = param(ct, ct_lower, b"boundary") else {
        return false;
    };
    if boundary.is_empty() || boundary.len() > 200 {
        return false;
    }
    let mut delim = Vec::with_capacity(boundary.len() + 2);
    delim.extend_from_slice(b"--");
    delim.extend_from_slice(boundary);
    let finder = memchr::memmem::Finder::new(&delim);
    let positions: Vec<usize> = finder
        .find_iter(body)
        .take(crate::request::MAX_ITEMS)
        .collect();
    if positions.is_empty() {
        return false;
    }
    for w in 0..positions.len() {
        let start = positions[w] + delim.len();
        let end = positions.get(w + 1).copied().unwrap_or(body.len());
        if start >= end {
            continue;
        }
        let part = &body[start..end];
        if part.starts_with(b"--") {
            break;
        }
        // Part headers end at the first empty line.
        let (head, content) = match memchr::memmem::find(part, b"\r\n\r\n") {
            Some(i) => (&part[..i], &part[i + 4..]),
            None => match memchr::memmem::find(part, b"\n\n") {
                Some(i) => (&part[..i], &part[i + 2..]),
                None => (part, &b""[..]),
            },
        };
        let content = content
            .strip_suffix(b"\r\n")
            .or_else(|| content.strip_suffix(b"\n"))
            .unwrap_or(content);
        let mut name: &[u8] = b"";
        let mut filename: Option<&[u8]> = None;
        for line in head.split(|&b| b == b'\n') {
            let line = line.trim_ascii();
            let lower = line.to_ascii_lowercase();
            if lower.starts_with(b"content-disposition:") {
                name = param(line, &lower, b"name").unwrap_or(b"");
                filename = param(line, &lower, b"filename");
            }
        }
        if !name.is_empty() {
            parsed.push(Item {
                class: Class::ArgName,
                origin: Origin::Multipart,
                name: Cow::Borrowed(b""),
                value: Cow::Borrowed(name),
                path: NO_PATH,
            });
        }
        match filename {
            Some(f) => {
                // File contents are not inspected; the file name is.
                if !f.is_empty() {
                    parsed.push(Item {
                        class: Class::Filename,
                        origin: Origin::Multipart,
                        name: Cow::Borrowed(name),
                        value: Cow::Borrowed(f),
                        path: NO_PATH,
                    });
                }
            }
            None => {
                if !content.is_empty() {
                    parsed.push(Item {
                        class: Class::Arg,
                        origin: Origin::Multipart,
                        name: Cow::Borrowed(name),
                        value: Cow::Borrowed(content),
                        path: NO_PATH,
                    });
                }
            }
        }
    }
    true
}

// -------------------------------------------------------------------- XML

fn xml_name(s: &[u8]) -> &[u8] {
    let end = s
        .iter()
        .position(|b| b.is_ascii_whitespace() || matches!(b, b'/' | b'>'))
        .unwrap_or(s.len());
    &s[..end.min(MAX_NAME)]
}

/// Parses XML into text and attribute items (element names as names). A
/// `<!DOCTYPE>` is kept whole as a `body` value, where the XXE rules look.
pub(crate) fn parse_xml<'a>(parsed: &mut Parsed<'a>, body: &'a [u8]) {
    let mut i = 0;
    let mut stack: Vec<&'a [u8]> = Vec::new();
    let current = |stack: &Vec<&'a [u8]>| stack.last().copied().unwrap_or(b"");
    while i < body.len() {
        let Some(lt) = memchr::memchr(b'<', &body[i..]) else {
            let text = body[i..].trim_ascii();
            if !text.is_empty() {
                parsed.push(Item {
                    class: Class::Arg,
                    origin: Origin::Xml,
                    name: Cow::Borrowed(current(&stack)),
                    value: Cow::Borrowed(text),
                    path: NO_PATH,
                });
            }
            break;
        };
        let text = body[i..i + lt].trim_ascii();
        if !text.is_empty() {
            parsed.push(Item {
                class: Class::Arg,
                origin: Origin::Xml,
                name: Cow::Borrowed(current(&stack)),
                value: Cow::Borrowed(text),
                path: NO_PATH,
            });
        }
        let t = i + lt;
        let rest = &body[t..];
        if rest.starts_with(b"<!--") {
            i = memchr::memmem::find(&rest[4..], b"-->").map_or(body.len(), |e| t + 4 + e + 3);
        } else if rest.starts_with(b"<![CDATA[") || rest.starts_with(b"<![cdata[") {
            let end = memchr::memmem::find(&rest[9..], b"]]>");
            let content = &rest[9..9 + end.unwrap_or(rest.len() - 9)];
            if !content.trim_ascii().is_empty() {
                parsed.push(Item {
                    class: Class::Arg,
                    origin: Origin::Xml,
                    name: Cow::Borrowed(current(&stack)),
                    value: Cow::Borrowed(content),
                    path: NO_PATH,
                });
            }
            i = end.map_or(body.len(), |e| t + 9 + e + 3);
        } else if rest.starts_with(b"<!") {
            // DOCTYPE with an internal subset ends at "]>".
            let end = if memchr::memchr(b'[', &rest[..rest.len().min(512)]).is_some() {
                memchr::memmem::find(rest, b"]>").map(|e| e + 2)
            } else {
                memchr::memchr(b'>', rest).map(|e| e + 1)
            }
            .unwrap_or(rest.len());
            parsed.push(Item {
                class: Class::Body,
                origin: Origin::Xml,
                name: Cow::Borrowed(b"doctype"),
                value: Cow::Borrowed(&rest[..end]),
                path: NO_PATH,
            });
            i = t + end;
        } else if rest.starts_with(b"<?") {
            i = memchr::memmem::find(rest, b"?>").map_or(body.len(), |e| t + e + 2);
        } else if rest.starts_with(b"</") {
            stack.pop();
            i = memchr::memchr(b'>', rest).map_or(body.len(), |e| t + e + 1);
        } else {
            // A start tag: name, then attributes until '>' (quotes respected).
            let name = xml_name(&rest[1..]);
            let mut j = 1 + name.len();
            let mut self_closing = false;
            while j < rest.len() {
                let b = rest[j];
                if b == b'>' {
                    self_closing = rest[j - 1] == b'/';
                    j += 1;
                    break;
                }
                if b == b'"' || b == b'\'' {
                    let vstart = j + 1;
                    let vend =
                        memchr::memchr(b, &rest[vstart..]).map_or(rest.len(), |e| vstart + e);
                    let value = &rest[vstart..vend];
                    if !value.is_empty() {
                        parsed.push(Item {
                            class: Class::Arg,
                            origin: Origin::Xml,
                            name: Cow::Borrowed(name),
                            value: Cow::Borrowed(value),
                            path: NO_PATH,
                        });
                    }
                    j = vend + 1;
                    continue;
                }
                j += 1;
            }
            if !self_closing && stack.len() < MAX_DEPTH {
                stack.push(name);
            }
            i = t + j.max(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{parse, Request};

    fn items(ct: &str, body: &[u8]) -> Vec<(Class, String, String)> {
        let headers = [("Content-Type", ct.as_bytes())];
        let req = Request {
            method: "POST",
            target: b"/",
            version: "HTTP/1.1",
            headers: &headers,
            body: Some(body),
            body_truncated: false,
        };
        let p = parse(&req, Vec::new(), Vec::new());
        p.items
            .iter()
            .filter(|i| {
                matches!(
                    i.class,
                    Class::Arg | Class::ArgName | Class::Filename | Class::Body
                ) && i.origin != Origin::Query
            })
            .map(|i| {
                (
                    i.class,
                    String::from_utf8_lossy(p.name_of(i)).into_owned(),
                    String::from_utf8_lossy(&i.value).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn json_nested() {
        let v = items(
            "application/json",
            br#"{"user":{"name":"O\u0027Reilly","tags":["a",1,{"k":"v"}]},"n":null}"#,
        );
        assert!(v.contains(&(Class::Arg, "user.name".into(), "O'Reilly".into())));
        assert!(v.contains(&(Class::Arg, "user.tags[]".into(), "a".into())));
        assert!(v.contains(&(Class::Arg, "user.tags[].k".into(), "v".into())));
        assert!(v.contains(&(Class::ArgName, "n".into(), "n".into())));
        assert!(!v.iter().any(|(c, _, _)| *c == Class::Body));
    }

    #[test]
    fn json_invalid_falls_back_to_raw() {
        let v = items("application/json", b"{\"a\": 1 OR 1=1}");
        assert!(v.iter().any(|(c, _, _)| *c == Class::Body));
    }

    #[test]
    fn json_depth_is_bounded() {
        let deep = "[".repeat(10_000);
        let v = items("application/json", deep.as_bytes());
        assert!(v.iter().any(|(c, _, _)| *c == Class::Body));
    }

    #[test]
    fn multipart_fields_and_files() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"comment\"\r\n\r\nhello\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.php\"\r\nContent-Type: text/plain\r\n\r\n<?php evil ?>\r\n--XyZ--\r\n";
        let v = items("multipart/form-data; boundary=XyZ", body);
        assert!(v.contains(&(Class::Arg, "comment".into(), "hello".into())));
        assert!(v.contains(&(Class::Filename, "file".into(), "a.php".into())));
        assert!(!v.iter().any(|(_, _, val)| val.contains("evil")));
    }

    #[test]
    fn xml_text_attributes_doctype() {
        let body = b"<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><order id=\"7\"><note>&lt;b&gt;</note><![CDATA[raw]]></order>";
        let v = items("application/xml", body);
        assert!(v.contains(&(Class::Arg, "order".into(), "7".into())));
        assert!(v.contains(&(Class::Arg, "note".into(), "&lt;b&gt;".into())));
        assert!(v.contains(&(Class::Arg, "order".into(), "raw".into())));
        assert!(v
            .iter()
            .any(|(c, n, val)| *c == Class::Body && n == "doctype" && val.contains("ENTITY")));
    }

    #[test]
    fn form_body() {
        let v = items("application/x-www-form-urlencoded", b"a=1&b=O%27Reilly");
        assert!(v.contains(&(Class::Arg, "b".into(), "O'Reilly".into())));
    }
}
