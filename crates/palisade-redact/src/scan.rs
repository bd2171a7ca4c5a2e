//! The detectors. Each one walks the line once, left to right, and offers the spans it wants to mask
//! in increasing order; a span that overlaps one taken by an earlier detector (or by itself) is
//! dropped. Detectors run by priority: named fields, auth schemes, JWTs, cards and IBANs, e-mails.
//! All work is linear in the length of the line (every backward look is bounded).

use memchr::{memchr, memchr2, memchr2_iter, memchr3_iter};

use crate::fields::{classify_scanned, hex_val, name_byte, MAX_NAME};
use crate::{Kind, Redactor, REDACTED};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Repl {
    /// `[REDACTED]`
    Redacted,
    /// `"[REDACTED]"`: an unquoted JSON value (a number) becomes a string.
    RedactedQuoted,
    /// `****` + the last four digits.
    Card([u8; 4]),
    /// country code + `****` + the last four characters.
    Iban([u8; 2], [u8; 4]),
    /// first character of the local part (or `*`) + `***@***.` + the TLD found at `tld` in the input.
    Email { first: u8, tld: (usize, usize) },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: usize,
    pub end: usize,
    pub kind: Kind,
    pub repl: Repl,
}

/// Accepted spans (sorted, disjoint) and the current detector's offers.
#[derive(Default)]
struct Spans {
    acc: Vec<Span>,
    pending: Vec<Span>,
    cursor: usize,
}

impl Spans {
    /// Is `pos` inside a span already taken? `pos` must not decrease within one detector.
    fn blocked(&mut self, pos: usize) -> bool {
        while self.cursor < self.acc.len() && self.acc[self.cursor].end <= pos {
            self.cursor += 1;
        }
        if self.cursor < self.acc.len() && self.acc[self.cursor].start <= pos {
            return true;
        }
        matches!(self.pending.last(), Some(l) if l.end > pos)
    }

    /// Offer a span; starts must not decrease within one detector.
    fn offer(&mut self, sp: Span) -> bool {
        if sp.start >= sp.end {
            return false;
        }
        while self.cursor < self.acc.len() && self.acc[self.cursor].end <= sp.start {
            self.cursor += 1;
        }
        if self.cursor < self.acc.len() && self.acc[self.cursor].start < sp.end {
            return false;
        }
        if matches!(self.pending.last(), Some(l) if l.end > sp.start) {
            return false;
        }
        self.pending.push(sp);
        true
    }

    /// End of a detector: merge its spans into the accepted ones.
    fn commit(&mut self) {
        self.cursor = 0;
        if self.pending.is_empty() {
            return;
        }
        if self.acc.is_empty() {
            std::mem::swap(&mut self.acc, &mut self.pending);
            return;
        }
        let mut merged = Vec::with_capacity(self.acc.len() + self.pending.len());
        let (mut i, mut j) = (0, 0);
        while i < self.acc.len() && j < self.pending.len() {
            if self.acc[i].start < self.pending[j].start {
                merged.push(self.acc[i]);
                i += 1;
            } else {
                merged.push(self.pending[j]);
                j += 1;
            }
        }
        merged.extend_from_slice(&self.acc[i..]);
        merged.extend_from_slice(&self.pending[j..]);
        self.acc = merged;
        self.pending.clear();
    }
}

/// Slots of the per-thread memo (direct-mapped by a hash of the name).
const MEMO_SLOTS: usize = 64;

#[derive(Clone, Copy)]
struct MemoEntry {
    /// The redactor whose rules classified the name (0: empty slot).
    owner: u64,
    len: u8,
    name: [u8; MAX_NAME],
    kind: Option<Kind>,
}

thread_local! {
    static MEMO: std::cell::RefCell<[MemoEntry; MEMO_SLOTS]> = const {
        std::cell::RefCell::new(
            [MemoEntry { owner: 0, len: 0, name: [0; MAX_NAME], kind: None }; MEMO_SLOTS],
        )
    };
}

/// [`classify_scanned`], remembered per thread: the names in log lines are mostly the same few
/// keys line after line (`"status":`, `"path":`), and classifying one costs hundreds of
/// instructions while looking it up costs tens. The result depends only on the name's bytes and
/// the redactor's rules, which is the key. Bounded: 64 slots per thread.
fn classify_memo(raw: &[u8], mask: u64, had_pct: bool, r: &Redactor) -> Option<Kind> {
    let classify = || classify_scanned(raw, mask, had_pct, r.extra_fields());
    if raw.len() > MAX_NAME {
        return classify();
    }
    // FNV-1a
    let mut h: u32 = 0x811c_9dc5;
    for &c in raw {
        h = (h ^ u32::from(c)).wrapping_mul(0x0100_0193);
    }
    let slot = (h as usize ^ (h >> 16) as usize) % MEMO_SLOTS;
    let owner = r.id();
    MEMO.try_with(|memo| {
        let Ok(mut memo) = memo.try_borrow_mut() else {
            return classify();
        };
        let e = &mut memo[slot];
        if e.owner == owner && usize::from(e.len) == raw.len() && &e.name[..raw.len()] == raw {
            return e.kind;
        }
        let kind = classify();
        e.owner = owner;
        e.len = raw.len() as u8;
        e.name[..raw.len()].copy_from_slice(raw);
        e.kind = kind;
        kind
    })
    .unwrap_or_else(|_| classify())
}

/// No detector masks anything in a text shorter than this: a named field needs a name of three
/// bytes, a separator and a value; a URL password `://`, `:` and `@`; an auth scheme its word;
/// an e-mail `x@y.z`; a card twelve digits. Tested exhaustively below it (`swar_tests`).
pub(crate) const SHORTEST_MASKED: usize = 5;

/// Every span to mask in `b`, sorted and disjoint. Empty (and unallocated) when nothing was found.
pub(crate) fn find(b: &[u8], r: &Redactor) -> Vec<Span> {
    let mut spans = Spans::default();
    fields(b, r, &mut spans);
    spans.commit();
    url_credentials(b, &mut spans);
    spans.commit();
    auth_schemes(b, &mut spans);
    spans.commit();
    jwts(b, &mut spans);
    spans.commit();
    numbers(b, &mut spans);
    spans.commit();
    if r.masks_emails() {
        emails(b, &mut spans);
        spans.commit();
    }
    spans.acc
}

/// `b` with every span replaced.
pub(crate) fn apply(b: &[u8], spans: &[Span]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len() + 16);
    let mut last = 0;
    for sp in spans {
        // spans are disjoint by construction; never slice backwards if that ever failed
        if sp.end <= last {
            continue;
        }
        out.extend_from_slice(&b[last..sp.start.max(last)]);
        match sp.repl {
            Repl::Redacted => out.extend_from_slice(REDACTED.as_bytes()),
            Repl::RedactedQuoted => {
                out.push(b'"');
                out.extend_from_slice(REDACTED.as_bytes());
                out.push(b'"');
            }
            Repl::Card(last4) => {
                out.extend_from_slice(b"****");
                out.extend_from_slice(&last4);
            }
            Repl::Iban(cc, last4) => {
                out.extend_from_slice(&cc);
                out.extend_from_slice(b"****");
                out.extend_from_slice(&last4);
            }
            Repl::Email { first, tld } => {
                out.push(first);
                out.extend_from_slice(b"***@***.");
                out.extend_from_slice(&b[tld.0..tld.1]);
            }
        }
        last = sp.end;
    }
    out.extend_from_slice(&b[last..]);
    out
}

// ---------------------------------------------------------------------------------------------
// byte helpers

fn is_hex(b: u8) -> bool {
    b.is_ascii_hexdigit()
}

/// May a token start at `pos`? (nothing alphanumeric before it, looking through `\n`-style JSON
/// escapes and `%XX` URL escapes)
fn left_boundary(b: &[u8], pos: usize) -> bool {
    if pos == 0 {
        return true;
    }
    let p = b[pos - 1];
    if !p.is_ascii_alphanumeric() {
        return true;
    }
    if pos >= 2 && b[pos - 2] == b'\\' && matches!(p, b'n' | b'r' | b't' | b'b' | b'f') {
        return true;
    }
    if pos >= 3 && b[pos - 3] == b'%' && is_hex(b[pos - 2]) && is_hex(p) {
        return true;
    }
    p == b'm' && ansi_back(b, pos) < pos
}

/// Start of the ANSI SGR sequence (`ESC [ 0-9; m`) that ends at `pos`, or `pos` if there is none.
fn ansi_back(b: &[u8], pos: usize) -> usize {
    if pos < 3 || b[pos - 1] != b'm' {
        return pos;
    }
    let mut i = pos - 1;
    let floor = pos.saturating_sub(20);
    while i > floor && (b[i - 1].is_ascii_digit() || b[i - 1] == b';') {
        i -= 1;
    }
    if i >= 2 && b[i - 1] == b'[' && b[i - 2] == 0x1b {
        i - 2
    } else {
        pos
    }
}

/// End of the ANSI SGR sequence that starts at `pos`, or `pos` if there is none.
fn ansi_fwd(b: &[u8], pos: usize) -> usize {
    if pos + 2 >= b.len() || b[pos] != 0x1b || b[pos + 1] != b'[' {
        return pos;
    }
    let mut i = pos + 2;
    while i < b.len() && i < pos + 20 && (b[i].is_ascii_digit() || b[i] == b';') {
        i += 1;
    }
    if i < b.len() && b[i] == b'm' {
        i + 1
    } else {
        pos
    }
}

fn right_boundary(b: &[u8], pos: usize) -> bool {
    pos >= b.len() || !b[pos].is_ascii_alphanumeric()
}

fn starts_with_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len() && hay[..needle.len()].eq_ignore_ascii_case(needle)
}

fn line_end(b: &[u8], from: usize) -> usize {
    match memchr2(b'\n', b'\r', &b[from..]) {
        Some(i) => from + i,
        None => b.len(),
    }
}

// ---------------------------------------------------------------------------------------------
// named fields: `name=value`, `name: value`, `"name":"value"`, URL-encoded and JSON-escaped forms

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    /// `"` preceded by this many backslashes (0 = plain JSON, 1 = JSON inside a JSON string, …)
    Json(usize),
    Single,
    Pct,
    None,
}

#[inline(never)]
fn fields(b: &[u8], r: &Redactor, spans: &mut Spans) {
    let n = b.len();
    for p in memchr3_iter(b'=', b':', b'%', b) {
        let sep_end = if b[p] == b'%' {
            if p + 2 < n && b[p + 1] == b'3' && matches!(b[p + 2], b'D' | b'd' | b'A' | b'a') {
                p + 3
            } else {
                continue;
            }
        } else {
            p + 1
        };
        // the name, before optional colour codes, spaces and a closing quote
        let mut ne = p;
        for _ in 0..3 {
            ne = ansi_back(b, ne);
        }
        let mut ws = 0;
        while ne > 0 && ws < 8 && matches!(b[ne - 1], b' ' | b'\t') {
            ne -= 1;
            ws += 1;
        }
        let mut name_json = false;
        if ne > 0 && b[ne - 1] == b'"' {
            ne -= 1;
            name_json = true;
            let mut k = 0;
            while ne > 0 && k < 8 && b[ne - 1] == b'\\' {
                ne -= 1;
                k += 1;
                name_json = false;
            }
        } else if ne > 0 && b[ne - 1] == b'\'' {
            ne -= 1;
        } else if ne >= 3
            && b[ne - 3] == b'%'
            && b[ne - 2] == b'2'
            && matches!(b[ne - 1], b'2' | b'7')
        {
            ne -= 3;
        }
        let mut ns = ne;
        let mut mask = 0u64;
        let mut had_pct = false;
        while ns > 0 && ne - ns < MAX_NAME {
            let (class, bit) = name_byte(b[ns - 1]);
            if class == 0 {
                break;
            }
            mask |= bit;
            had_pct |= class == 2;
            ns -= 1;
        }
        if ns > 0 && b[ns - 1] == 0x1b {
            // `ESC[3mpassword`: the colour code is not part of the name
            if let Some(m) = memchr(b'm', &b[ns..ne]) {
                ns += m + 1;
            }
        }
        if ne - ns < 3 {
            continue;
        }
        let Some(kind) = classify_memo(&b[ns..ne], mask, had_pct, r) else {
            continue;
        };
        // the value, after optional colour codes, spaces and an opening quote
        let mut vs = sep_end;
        for _ in 0..3 {
            vs = ansi_fwd(b, vs);
        }
        let mut ws = 0;
        while vs < n && ws < 8 && matches!(b[vs], b' ' | b'\t') {
            vs += 1;
            ws += 1;
        }
        if vs >= n {
            continue;
        }
        let mut k = 0;
        while vs + k < n && k < 8 && b[vs + k] == b'\\' {
            k += 1;
        }
        let (quote, start) = if vs + k < n && b[vs + k] == b'"' {
            (Quote::Json(k), vs + k + 1)
        } else if b[vs] == b'\'' {
            (Quote::Single, vs + 1)
        } else if b[vs..].starts_with(b"%22") {
            (Quote::Pct, vs + 3)
        } else {
            (Quote::None, vs)
        };
        // a value that starts inside the previous masked value (`Cookie: a=b; password="x"`,
        // where the cookie stopped at the quote) is masked from where that one ended; scanning
        // from there also keeps the work linear
        let prev_end = spans.pending.last().map_or(0, |l| l.end);
        let clamped = start < prev_end;
        let start = start.max(prev_end);
        let end = value_end(b, start, quote, kind);
        if end <= start {
            continue;
        }
        let value = &b[start..end];
        if value == REDACTED.as_bytes() {
            continue;
        }
        let mut repl = Repl::Redacted;
        if quote == Quote::None {
            if matches!(value[0], b'{' | b'[') || matches!(value, b"null" | b"true" | b"false") {
                continue;
            }
            if name_json && b[p] == b':' && !clamped {
                repl = Repl::RedactedQuoted;
            }
        }
        spans.offer(Span {
            start,
            end,
            kind,
            repl,
        });
    }
}

fn value_end(b: &[u8], start: usize, quote: Quote, kind: Kind) -> usize {
    let n = b.len();
    if start >= n {
        return start;
    }
    match quote {
        Quote::Json(k) => {
            let mut pos = start;
            while let Some(i) = memchr(b'"', &b[pos..]) {
                let q = pos + i;
                let mut run = 0;
                while q - run > start && b[q - run - 1] == b'\\' {
                    run += 1;
                }
                if run <= k {
                    return q - run;
                }
                pos = q + 1;
            }
            line_end(b, start)
        }
        Quote::Single => match memchr2(b'\'', b'\n', &b[start..]) {
            Some(i) => start + i,
            None => n,
        },
        Quote::Pct => {
            let mut e = start;
            while e < n && !matches!(b[e], b'&' | b'"' | b' ' | b'\t' | b'\n' | b'\r') {
                if b[e..].starts_with(b"%22") {
                    break;
                }
                e += 1;
            }
            e
        }
        Quote::None => {
            let header = matches!(kind, Kind::AuthHeader | Kind::Cookie);
            let mut e = start;
            while e < n {
                let c = b[e];
                let stop = match c {
                    b'\n' | b'\r' | b'"' | b'&' => true,
                    b' ' | b'\t' | b',' | b';' | b'}' | b')' | b']' | b'<' | b'>' => !header,
                    b'\\' => matches!(b.get(e + 1), Some(b'"' | b'n' | b'r' | b't')),
                    b'%' => b[e..].starts_with(b"%26") || b[e..].starts_with(b"%22"),
                    _ => false,
                };
                if stop {
                    break;
                }
                e += 1;
            }
            // `card=4111 1111 1111 1111`: a number split by separators is one value
            while e > start && b[e - 1].is_ascii_digit() && e < n {
                let sl = if matches!(b[e], b' ' | b'-' | b'+') {
                    1
                } else if b[e..].starts_with(b"%20") {
                    3
                } else {
                    break;
                };
                if e + sl >= n || !b[e + sl].is_ascii_digit() {
                    break;
                }
                e += sl;
                while e < n && b[e].is_ascii_digit() {
                    e += 1;
                }
            }
            e
        }
    }
}

// ---------------------------------------------------------------------------------------------
// passwords in URLs: `scheme://user:password@host`

/// Built once: `memmem::find_iter` builds its searcher on every call, which cost more than the
/// search itself on the short values of an access line.
static SCHEME_SEP: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"://"));

#[inline(never)]
fn url_credentials(b: &[u8], spans: &mut Spans) {
    for p in SCHEME_SEP.find_iter(b) {
        let user = p + 3;
        let mut colon = None;
        let mut q = user;
        while q < b.len() && q - user < 256 {
            match b[q] {
                b':' if colon.is_none() => colon = Some(q),
                b'@' => break,
                b'/' | b'?' | b'#' | b' ' | b'\t' | b'"' | b'\'' | b'\n' | b'\r' | b'<' | b'>'
                | b'\\' => {
                    q = b.len();
                    break;
                }
                _ => {}
            }
            q += 1;
        }
        if q >= b.len() || b[q] != b'@' {
            continue;
        }
        if let Some(c) = colon {
            spans.offer(Span {
                start: c + 1,
                end: q,
                kind: Kind::Secret,
                repl: Repl::Redacted,
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// `Bearer <token>`, `Basic <base64 of user:password>`

fn is_token_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
}

#[inline(never)]
fn auth_schemes(b: &[u8], spans: &mut Spans) {
    let n = b.len();
    for p in memchr2_iter(b'b', b'B', b) {
        if p > 0 && b[p - 1].is_ascii_alphanumeric() {
            continue;
        }
        let rest = &b[p..];
        let (kind, wl) = if starts_with_ci(rest, b"bearer") {
            (Kind::Bearer, 6)
        } else if starts_with_ci(rest, b"basic") {
            (Kind::AuthHeader, 5)
        } else {
            continue;
        };
        if spans.blocked(p) {
            continue;
        }
        let mut q = p + wl;
        let mut seps = 0;
        while q < n && seps < 8 {
            if matches!(b[q], b' ' | b'\t' | b'+') {
                q += 1;
            } else if b[q..].starts_with(b"%20") {
                q += 3;
            } else {
                break;
            }
            seps += 1;
        }
        if seps == 0 {
            continue;
        }
        let ts = q;
        while q < n {
            if is_token_byte(b[q]) {
                q += 1;
            } else if b[q] == b'%' && q + 2 < n && is_hex(b[q + 1]) && is_hex(b[q + 2]) {
                q += 3;
            } else {
                break;
            }
        }
        if q == ts {
            continue;
        }
        if kind == Kind::AuthHeader && !base64_has_colon(&b[ts..q]) {
            continue;
        }
        spans.offer(Span {
            start: ts,
            end: q,
            kind,
            repl: Repl::Redacted,
        });
    }
}

/// Does this standard base64 text decode to something with a `:` (HTTP Basic credentials)?
fn base64_has_colon(s: &[u8]) -> bool {
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in s {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return false,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            if (acc >> bits) & 0xff == u32::from(b':') {
                return true;
            }
            acc &= (1 << bits) - 1;
        }
    }
    false
}

// ---------------------------------------------------------------------------------------------
// JWTs: `eyJ<header>.<payload>[.<signature>]` in base64url

fn is_b64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

fn b64url_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_b64url(b[i]) {
        i += 1;
    }
    i
}

#[inline(never)]
fn jwts(b: &[u8], spans: &mut Spans) {
    let n = b.len();
    for j in memchr::memchr_iter(b'J', b) {
        if j < 2 || b[j - 2] != b'e' || b[j - 1] != b'y' {
            continue;
        }
        let p = j - 2;
        if p > 0 && is_b64url(b[p - 1]) {
            continue;
        }
        if spans.blocked(p) {
            continue;
        }
        let e1 = b64url_end(b, p);
        if e1 - p < 10 || e1 >= n || b[e1] != b'.' {
            continue;
        }
        let e2 = b64url_end(b, e1 + 1);
        if e2 - (e1 + 1) < 2 {
            continue;
        }
        let end = if e2 < n && b[e2] == b'.' {
            b64url_end(b, e2 + 1)
        } else {
            e2
        };
        spans.offer(Span {
            start: p,
            end,
            kind: Kind::Jwt,
            repl: Repl::Redacted,
        });
    }
}

// ---------------------------------------------------------------------------------------------
// payment cards and IBANs

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The bytes of this 8-byte word that are ASCII digits or `%`, as a mask of high bits (SWAR: a
/// byte is `%` when `w ^ '%'` is zero, a digit when `w ^ '0'` is below 10). Only the lowest set
/// bit is exact (a borrow can flag a byte above a real hit), which is all the caller uses.
fn digit_or_pct_flags(w: u64) -> u64 {
    let pct = w ^ (LO * u64::from(b'%'));
    let pct = pct.wrapping_sub(LO) & !pct & HI;
    let dig = w ^ (LO * u64::from(b'0'));
    let dig = dig.wrapping_sub(LO * 10) & !dig & HI;
    pct | dig
}

/// Index of the next ASCII digit or `%` at or after `i` (or `b.len()`).
fn next_digit_or_pct(b: &[u8], mut i: usize) -> usize {
    let n = b.len();
    while i + 8 <= n {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i..i + 8]);
        let f = digit_or_pct_flags(u64::from_le_bytes(w));
        if f != 0 {
            return i + (f.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && !(b[i].is_ascii_digit() || b[i] == b'%') {
        i += 1;
    }
    i
}

#[inline(never)]
fn numbers(b: &[u8], spans: &mut Spans) {
    let n = b.len();
    let mut i = 0;
    while i < n {
        i = next_digit_or_pct(b, i);
        if i >= n {
            break;
        }
        let c = b[i];
        if c == b'%' {
            i += if i + 2 < n && is_hex(b[i + 1]) && is_hex(b[i + 2]) {
                3
            } else {
                1
            };
            continue;
        }
        if !c.is_ascii_digit() {
            i += 1;
            continue;
        }
        if i >= 2
            && b[i - 1].is_ascii_uppercase()
            && b[i - 2].is_ascii_uppercase()
            && left_boundary(b, i - 2)
        {
            if let Some((end, cc, last4)) = iban_at(b, i - 2) {
                if spans.offer(Span {
                    start: i - 2,
                    end,
                    kind: Kind::Iban,
                    repl: Repl::Iban(cc, last4),
                }) {
                    i = end;
                    continue;
                }
            }
        }
        i = card_chain(b, i, spans);
    }
}

/// Groups looked at in one go; a longer chain is resumed where a card could still start.
const MAX_GROUPS: usize = 12;
/// Most groups one card can have (4 digits at least in every group but the last: 4+4+4+4+3).
const CARD_GROUPS: usize = 5;

/// Parse the chain of digit groups starting at `i` (groups split by one ` `, `-`, `+` or `%20`),
/// offer every card found in it, and return where to go on scanning.
fn card_chain(b: &[u8], i: usize, spans: &mut Spans) -> usize {
    let n = b.len();
    // fast path: most digit chains in a log line (timestamps, sizes, ids) hold under 13 digits
    {
        let mut p = i;
        let mut digits = 0;
        loop {
            while p < n && b[p].is_ascii_digit() {
                p += 1;
                digits += 1;
            }
            if digits >= 13 {
                break;
            }
            let sl = if p < n && matches!(b[p], b' ' | b'-' | b'+') {
                1
            } else if b[p..].starts_with(b"%20") {
                3
            } else {
                return p;
            };
            if p + sl >= n || !b[p + sl].is_ascii_digit() {
                return p;
            }
            p += sl;
        }
    }
    let mut groups = [(0u32, 0u32); MAX_GROUPS];
    let mut g = 0;
    let mut p = i;
    let mut full = false;
    loop {
        let gs = p;
        while p < n && b[p].is_ascii_digit() {
            p += 1;
        }
        groups[g] = (gs as u32, p as u32);
        g += 1;
        if g == MAX_GROUPS {
            full = true;
            break;
        }
        let sl = if p < n && matches!(b[p], b' ' | b'-' | b'+') {
            1
        } else if b[p..].starts_with(b"%20") {
            3
        } else {
            0
        };
        if sl == 0 || p + sl >= n || !b[p + sl].is_ascii_digit() {
            break;
        }
        p += sl;
    }
    let groups = &groups[..g];
    let at = |k: usize| (groups[k].0 as usize, groups[k].1 as usize);
    let len = |k: usize| at(k).1 - at(k).0;
    let chain_end = at(g - 1).1;
    let first_ok = left_boundary(b, at(0).0);
    let last_ok = !full && right_boundary(b, chain_end);
    // a full buffer is resumed from the group a card could still start at
    let resume = if full {
        at(g - CARD_GROUPS).0
    } else {
        chain_end
    };
    let mut a = 0;
    while a < g {
        if (a == 0 && !first_ok) || (full && at(a).0 >= resume) {
            a += 1;
            continue;
        }
        let la = len(a);
        let mut best = None;
        if la >= 13 {
            if la <= 19 && (a + 1 < g || last_ok) && card_ok(b, groups, a, a).is_some() {
                best = Some(a);
            }
        } else if (4..=6).contains(&la) {
            let mut total = la;
            for j in a + 1..g {
                let lj = len(j);
                total += lj;
                if total > 19 {
                    break;
                }
                if total >= 13
                    && (1..=7).contains(&lj)
                    && (j + 1 < g || last_ok)
                    && card_ok(b, groups, a, j).is_some()
                {
                    best = Some(j);
                }
                if !(4..=6).contains(&lj) {
                    break;
                }
            }
        }
        match best {
            Some(j) => {
                if let Some(last4) = card_ok(b, groups, a, j) {
                    spans.offer(Span {
                        start: at(a).0,
                        end: at(j).1,
                        kind: Kind::Card,
                        repl: Repl::Card(last4),
                    });
                }
                a = j + 1;
            }
            None => a += 1,
        }
    }
    // never go backwards past what was offered
    let last_offered = spans.pending.last().map_or(0, |l| l.end);
    resume.max(last_offered).max(i + 1)
}

/// The last four digits if `groups[a..=j]` form a plausible, Luhn-valid card number.
fn card_ok(b: &[u8], groups: &[(u32, u32)], a: usize, j: usize) -> Option<[u8; 4]> {
    let mut d = [0u8; 19];
    let mut m = 0;
    for &(s, e) in &groups[a..=j] {
        for &c in &b[s as usize..e as usize] {
            if m == 19 {
                return None;
            }
            d[m] = c - b'0';
            m += 1;
        }
    }
    if !(13..=19).contains(&m) {
        return None;
    }
    let iin4 =
        u32::from(d[0]) * 1000 + u32::from(d[1]) * 100 + u32::from(d[2]) * 10 + u32::from(d[3]);
    let prefix_ok = match d[0] {
        3 | 5 | 6 => m >= 14,
        4 => true,
        8 | 9 => m >= 16,
        2 => m >= 16 && ((2221..=2720).contains(&iin4) || (2200..=2204).contains(&iin4)),
        _ => false,
    };
    if !prefix_ok || !luhn(&d[..m]) {
        return None;
    }
    Some([
        d[m - 4] + b'0',
        d[m - 3] + b'0',
        d[m - 2] + b'0',
        d[m - 1] + b'0',
    ])
}

pub(crate) fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum % 10 == 0
}

/// The IBAN starting at `p` (two letters there, a digit after): its end, country and last four.
fn iban_at(b: &[u8], p: usize) -> Option<(usize, [u8; 2], [u8; 4])> {
    let n = b.len();
    let cc = [b[p], b[p + 1]];
    let len = iban_len(cc)?;
    let mut chars = [0u8; 34];
    let mut m = 0;
    let mut q = p;
    while m < len {
        if q >= n {
            return None;
        }
        let c = b[q];
        if c.is_ascii_alphanumeric() {
            chars[m] = c.to_ascii_uppercase();
            m += 1;
            q += 1;
        } else if m % 4 == 0 && m > 0 && matches!(c, b' ' | b'+') {
            q += 1;
            if q >= n || !b[q].is_ascii_alphanumeric() {
                return None;
            }
        } else if m % 4 == 0 && m > 0 && b[q..].starts_with(b"%20") {
            q += 3;
            if q >= n || !b[q].is_ascii_alphanumeric() {
                return None;
            }
        } else {
            return None;
        }
    }
    if !chars[2].is_ascii_digit() || !chars[3].is_ascii_digit() || !right_boundary(b, q) {
        return None;
    }
    // mod 97 of BBAN + country + check digits, letters as 10..35
    let mut rem: u32 = 0;
    for &c in chars[4..len].iter().chain(chars[..4].iter()) {
        if c.is_ascii_digit() {
            rem = (rem * 10 + u32::from(c - b'0')) % 97;
        } else {
            rem = (rem * 100 + u32::from(c - b'A') + 10) % 97;
        }
    }
    if rem != 1 {
        return None;
    }
    Some((
        q,
        cc,
        [
            chars[len - 4],
            chars[len - 3],
            chars[len - 2],
            chars[len - 1],
        ],
    ))
}

/// IBAN length by country (the IBAN registry).
fn iban_len(cc: [u8; 2]) -> Option<usize> {
    Some(match &cc {
        b"NO" => 15,
        b"BE" => 16,
        b"DK" | b"FI" | b"FO" | b"GL" | b"NL" => 18,
        b"MK" | b"SI" => 19,
        b"AT" | b"BA" | b"EE" | b"KZ" | b"LT" | b"LU" | b"XK" => 20,
        b"CH" | b"HR" | b"LI" | b"LV" => 21,
        b"BG" | b"BH" | b"CR" | b"DE" | b"GB" | b"GE" | b"IE" | b"ME" | b"RS" | b"VA" => 22,
        b"AE" | b"GI" | b"IL" | b"IQ" | b"TL" => 23,
        b"AD" | b"CZ" | b"ES" | b"MD" | b"PK" | b"RO" | b"SA" | b"SE" | b"SK" | b"TN" | b"VG" => 24,
        b"PT" | b"ST" => 25,
        b"IS" | b"TR" => 26,
        b"FR" | b"GR" | b"IT" | b"MC" | b"MR" | b"SM" => 27,
        b"AL" | b"AZ" | b"BY" | b"CY" | b"DO" | b"GT" | b"HU" | b"LB" | b"PL" | b"SV" => 28,
        b"BR" | b"EG" | b"PS" | b"QA" | b"UA" => 29,
        b"JO" | b"KW" | b"MU" => 30,
        b"MT" | b"SC" => 31,
        b"LC" => 32,
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// e-mail addresses, also `%40`-encoded

fn is_local_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'+' | b'-')
}

#[inline(never)]
fn emails(b: &[u8], spans: &mut Spans) {
    let has_pct = memchr(b'%', b).is_some();
    let mut pos = 0;
    while pos < b.len() {
        let found = if has_pct {
            memchr2(b'@', b'%', &b[pos..])
        } else {
            memchr(b'@', &b[pos..])
        };
        let Some(i) = found else {
            break;
        };
        let p = pos + i;
        pos = p + 1;
        let dom = if b[p] == b'@' {
            p + 1
        } else if b[p..].starts_with(b"%40") {
            p + 3
        } else if b[p..].starts_with(b"%2540") {
            // encoded twice
            p + 5
        } else {
            continue;
        };
        email_at(b, p, dom, spans);
    }
}

fn email_at(b: &[u8], at: usize, dom: usize, spans: &mut Spans) {
    let n = b.len();
    let mut ls = at;
    while ls > 0 && at - ls < 128 {
        // a `%XX` escape belongs to the local part only if it encodes a local-part character
        if ls >= 3 && b[ls - 3] == b'%' {
            if let (Some(h), Some(l)) = (hex_val(b[ls - 2]), hex_val(b[ls - 1])) {
                let v = (h << 4) | l;
                if v != b'%' && is_local_byte(v) {
                    ls -= 3;
                    continue;
                }
                break;
            }
        }
        if b[ls - 1] != b'%' && is_local_byte(b[ls - 1]) {
            ls -= 1;
        } else {
            break;
        }
    }
    while ls < at && b[ls] == b'.' {
        ls += 1;
    }
    if ls == at {
        return;
    }
    let mut q = dom;
    let mut last_dot = None;
    let mut label = 0;
    while q < n && q - dom < 255 {
        let c = b[q];
        if c.is_ascii_alphanumeric() || c == b'-' {
            label += 1;
            q += 1;
        } else if c == b'.' && label > 0 && q + 1 < n && b[q + 1].is_ascii_alphanumeric() {
            last_dot = Some(q);
            label = 0;
            q += 1;
        } else {
            break;
        }
    }
    let Some(dot) = last_dot else {
        return;
    };
    let tld = &b[dot + 1..q];
    if tld.len() < 2 || !tld.iter().all(u8::is_ascii_alphabetic) {
        return;
    }
    let first = if b[ls].is_ascii_alphanumeric() {
        b[ls]
    } else {
        b'*'
    };
    spans.offer(Span {
        start: ls,
        end: q,
        kind: Kind::Email,
        repl: Repl::Email {
            first,
            tld: (dot + 1, q),
        },
    });
}

#[cfg(test)]
mod short_text_tests {
    use super::*;

    /// Every text shorter than [`SHORTEST_MASKED`] over the bytes the detectors look for (and a
    /// few others) yields no span, with e-mails and extra field names on.
    #[test]
    fn nothing_shorter_than_the_shortest_mask_is_masked() {
        let settings = crate::RedactSettings {
            extra_fields: vec!["pin".into(), "ab".into()],
            ..Default::default()
        };
        let r = Redactor::new(&settings).unwrap();
        let alphabet = b"0149abeyJBpinP@.:=/%\\\"' -_;&?#";
        let mut text = Vec::new();
        let mut checked = 0u64;
        for len in 0..SHORTEST_MASKED {
            let mut idx = vec![0usize; len];
            loop {
                text.clear();
                text.extend(idx.iter().map(|&i| alphabet[i]));
                assert!(
                    find(&text, &r).is_empty(),
                    "{:?}",
                    String::from_utf8_lossy(&text)
                );
                checked += 1;
                // next index vector (odometer)
                let mut k = 0;
                while k < len {
                    idx[k] += 1;
                    if idx[k] < alphabet.len() {
                        break;
                    }
                    idx[k] = 0;
                    k += 1;
                }
                if k == len {
                    break;
                }
            }
        }
        assert!(checked > 800_000);
    }
}

#[cfg(test)]
mod swar_tests {
    use super::*;

    #[test]
    fn swar_matches_bytewise() {
        let hit = |c: u8| c.is_ascii_digit() || c == b'%';
        for x in 0u32..=255 {
            for pos in 0..8 {
                for filler in [b'a', 0u8, 0xff, b'/', b':'] {
                    let mut w = [filler; 8];
                    w[pos] = x as u8;
                    let want = w.iter().position(|&c| hit(c));
                    let f = digit_or_pct_flags(u64::from_le_bytes(w));
                    let got = (f != 0).then(|| (f.trailing_zeros() / 8) as usize);
                    assert_eq!(got, want, "{x} at {pos} in {filler}");
                }
            }
        }
        let s = b"abc/:;@AZaz%x 12 \xff\x80 and a long tail without any 9";
        for i in 0..=s.len() {
            let want = (i..s.len()).find(|&j| hit(s[j])).unwrap_or(s.len());
            assert_eq!(next_digit_or_pct(s, i), want);
        }
    }
}
