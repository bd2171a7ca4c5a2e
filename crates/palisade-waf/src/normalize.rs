//! Normalisation: the views a rule can read.
//!
//! Every transformation here is bounded: none of them makes its input
//! longer (a `%uXXXX` or an HTML entity always decodes to fewer bytes than
//! it was written with), loops are capped, and nothing recurses. Each view
//! is computed at most once per value, and only when a rule reads it; when a
//! transformation changes nothing the view borrows its input.

use std::borrow::Cow;

/// How many rounds of URL / HTML / JS decoding are applied at most.
pub const DECODE_ROUNDS: usize = 3;

/// The views a rule can read (a bit each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum View {
    /// The value as extracted (query/form values are URL-decoded once).
    Raw = 0,
    /// Repeated URL (+`%uXXXX`), HTML entity and JS/backslash decoding,
    /// null bytes removed, full-width ASCII folded, ASCII lower case.
    Norm = 1,
    /// `Norm` with comments (`/* */`, `<!-- -->`) removed and whitespace
    /// runs collapsed to one space.
    Compact = 2,
    /// `Norm` with every comment, whitespace and control character removed.
    Strip = 3,
    /// `Norm` as a path: `\` to `/`, `//`, `./` and `../` collapsed.
    Path = 4,
    /// `Norm` with shell quoting tricks removed (`'`, `"`, `\`, `^`, `$@`,
    /// `${IFS}`).
    Cmd = 5,
    /// `Norm` of the Base64 decoding, when the value plausibly is Base64.
    Base64 = 6,
}

/// Number of views.
pub const VIEW_COUNT: usize = 7;

impl View {
    /// All views, in computation order.
    pub const ALL: [View; VIEW_COUNT] = [
        View::Raw,
        View::Norm,
        View::Compact,
        View::Strip,
        View::Path,
        View::Cmd,
        View::Base64,
    ];

    /// Parses a view name used in rule files.
    pub fn parse(s: &str) -> Option<View> {
        Some(match s {
            "raw" => View::Raw,
            "norm" => View::Norm,
            "compact" => View::Compact,
            "strip" => View::Strip,
            "path" => View::Path,
            "cmd" => View::Cmd,
            "base64" => View::Base64,
            _ => return None,
        })
    }

    /// The bit of this view in a view mask.
    pub const fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn push_char(out: &mut Vec<u8>, cp: u32) {
    let c = char::from_u32(cp).unwrap_or('\u{fffd}');
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// One round of URL decoding: `%XX`, `%uXXXX`, and `+` as space when asked.
/// Invalid escapes are kept as they are.
pub fn url_decode(input: &[u8], plus_as_space: bool) -> Cow<'_, [u8]> {
    let needs = if plus_as_space {
        memchr::memchr2(b'%', b'+', input).is_some()
    } else {
        memchr::memchr(b'%', input).is_some()
    };
    if !needs {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut changed = false;
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b'%' {
            if let (Some(h), Some(l)) = (
                input.get(i + 1).and_then(|&c| hex_val(c)),
                input.get(i + 2).and_then(|&c| hex_val(c)),
            ) {
                out.push(h << 4 | l);
                changed = true;
                i += 3;
                continue;
            }
            if matches!(input.get(i + 1), Some(b'u' | b'U')) && i + 6 <= input.len() {
                let digits = &input[i + 2..i + 6];
                if digits.iter().all(|&c| hex_val(c).is_some()) {
                    let cp = digits
                        .iter()
                        .fold(0u32, |a, &c| a << 4 | u32::from(hex_val(c).unwrap_or(0)));
                    push_char(&mut out, cp);
                    changed = true;
                    i += 6;
                    continue;
                }
            }
            out.push(b);
        } else if b == b'+' && plus_as_space {
            out.push(b' ');
            changed = true;
        } else {
            out.push(b);
        }
        i += 1;
    }
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(input)
    }
}

fn named_entity(name: &[u8]) -> Option<u32> {
    let lower: [u8; 8] = {
        let mut a = [0u8; 8];
        if name.len() > 8 {
            return None;
        }
        for (d, s) in a.iter_mut().zip(name) {
            *d = s.to_ascii_lowercase();
        }
        a
    };
    let n = &lower[..name.len()];
    Some(match n {
        b"lt" => '<' as u32,
        b"gt" => '>' as u32,
        b"amp" => '&' as u32,
        b"quot" => '"' as u32,
        b"apos" => '\'' as u32,
        b"nbsp" => ' ' as u32,
        b"tab" => '\t' as u32,
        b"newline" => '\n' as u32,
        b"colon" => ':' as u32,
        b"semi" => ';' as u32,
        b"comma" => ',' as u32,
        b"period" => '.' as u32,
        b"sol" => '/' as u32,
        b"bsol" => '\\' as u32,
        b"lpar" => '(' as u32,
        b"rpar" => ')' as u32,
        b"lsqb" | b"lbrack" => '[' as u32,
        b"rsqb" | b"rbrack" => ']' as u32,
        b"lcub" | b"lbrace" => '{' as u32,
        b"rcub" | b"rbrace" => '}' as u32,
        b"excl" => '!' as u32,
        b"quest" => '?' as u32,
        b"equals" => '=' as u32,
        b"plus" => '+' as u32,
        b"num" => '#' as u32,
        b"dollar" => '$' as u32,
        b"percnt" => '%' as u32,
        b"grave" => '`' as u32,
        b"verbar" | b"vert" => '|' as u32,
        b"ast" => '*' as u32,
        b"hat" => '^' as u32,
        b"lowbar" => '_' as u32,
        b"commat" => '@' as u32,
        _ => return None,
    })
}

/// Decodes HTML character references: named (a useful subset), decimal and
/// hexadecimal, with or without the closing `;` as browsers do.
pub fn html_decode(input: &[u8]) -> Cow<'_, [u8]> {
    if memchr::memchr(b'&', input).is_none() {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut changed = false;
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b != b'&' {
            out.push(b);
            i += 1;
            continue;
        }
        let rest = &input[i + 1..];
        if rest.first() == Some(&b'#') {
            let (hex, start) = match rest.get(1) {
                Some(b'x' | b'X') => (true, 2),
                _ => (false, 1),
            };
            let mut j = start;
            let mut cp: u32 = 0;
            while j < rest.len() && j - start < 8 {
                let d = if hex {
                    hex_val(rest[j])
                } else {
                    rest[j].is_ascii_digit().then(|| rest[j] - b'0')
                };
                match d {
                    Some(d) => {
                        cp = cp.saturating_mul(if hex { 16 } else { 10 }) + u32::from(d);
                        j += 1;
                    }
                    None => break,
                }
            }
            if j > start {
                // Skip leading-zero padding beyond 8 digits too.
                while j < rest.len() && rest[j] == b'0' && cp == 0 {
                    j += 1;
                }
                push_char(&mut out, if cp > 0x10ffff { 0xfffd } else { cp });
                if rest.get(j) == Some(&b';') {
                    j += 1;
                }
                changed = true;
                i += 1 + j;
                continue;
            }
        } else {
            let len = rest
                .iter()
                .take(9)
                .take_while(|c| c.is_ascii_alphabetic())
                .count();
            if len >= 2 {
                if let Some(cp) = named_entity(&rest[..len]) {
                    push_char(&mut out, cp);
                    let mut j = len;
                    if rest.get(j) == Some(&b';') {
                        j += 1;
                    }
                    changed = true;
                    i += 1 + j;
                    continue;
                }
            }
        }
        out.push(b);
        i += 1;
    }
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(input)
    }
}

/// Decodes the backslash escapes JavaScript, CSS and JSON use to hide
/// characters: `\uXXXX`, `\u{X..}`, `\xHH` and three-digit octal `\NNN`. Other
/// backslashes stay, so Windows paths survive.
pub fn backslash_decode(input: &[u8]) -> Cow<'_, [u8]> {
    if memchr::memchr(b'\\', input).is_none() {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    // Every decoded escape is shorter than it was written, so an output
    // as long as the input decoded nothing.
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b != b'\\' || i + 1 >= input.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let n = input[i + 1];
        match n {
            b'u' | b'U' => {
                if input.get(i + 2) == Some(&b'{') {
                    let digits: Vec<u8> = input[i + 3..]
                        .iter()
                        .take(7)
                        .take_while(|c| hex_val(**c).is_some())
                        .copied()
                        .collect();
                    if !digits.is_empty() && input.get(i + 3 + digits.len()) == Some(&b'}') {
                        let cp = digits
                            .iter()
                            .fold(0u32, |a, &c| a << 4 | u32::from(hex_val(c).unwrap_or(0)));
                        push_char(&mut out, cp);
                        i += 4 + digits.len();
                        continue;
                    }
                } else if i + 6 <= input.len()
                    && input[i + 2..i + 6].iter().all(|&c| hex_val(c).is_some())
                {
                    let cp = input[i + 2..i + 6]
                        .iter()
                        .fold(0u32, |a, &c| a << 4 | u32::from(hex_val(c).unwrap_or(0)));
                    push_char(&mut out, cp);
                    i += 6;
                    continue;
                }
                out.push(b);
                i += 1;
            }
            b'x' | b'X' => {
                if let (Some(h), Some(l)) = (
                    input.get(i + 2).and_then(|&c| hex_val(c)),
                    input.get(i + 3).and_then(|&c| hex_val(c)),
                ) {
                    push_char(&mut out, u32::from(h << 4 | l));
                    i += 4;
                    continue;
                }
                out.push(b);
                i += 1;
            }
            b'0'..=b'7'
                if input.len() >= i + 4
                    && input[i + 2..i + 4]
                        .iter()
                        .all(|c| (b'0'..=b'7').contains(c)) =>
            {
                // Three-digit octal (`\074`); shorter forms are left alone
                // so that Windows paths keep their backslashes.
                let v = input[i + 1..i + 4]
                    .iter()
                    .fold(0u32, |a, &c| a * 8 + u32::from(c - b'0'));
                push_char(&mut out, v.min(0xff));
                i += 4;
            }
            _ => {
                // Not an escape we decode: keep the backslash (Windows paths,
                // regex-like text, shell escapes are read by other views).
                out.push(b);
                i += 1;
            }
        }
    }
    if out.len() == input.len() {
        Cow::Borrowed(input)
    } else {
        Cow::Owned(out)
    }
}

/// Whether `b` can start something `norm` decodes or folds: a percent,
/// HTML or backslash escape, a NUL, the lead byte of full-width ASCII, or
/// the lead byte of an overlong UTF-8 form of ASCII. `norm`'s fast path and
/// the engine's byte flags both read this set.
pub(crate) const fn norm_special(b: u8) -> bool {
    matches!(b, b'%' | b'&' | b'\\' | 0 | 0xc0 | 0xc1 | 0xe0 | 0xef)
}

/// Folds to ASCII what a lenient UTF-8 decoder or a full-width-aware
/// backend reads as ASCII, and drops NUL bytes:
/// - full-width ASCII (U+FF01..U+FF5E, `EF BC 81`..`EF BD 9E`);
/// - overlong UTF-8 encodings of ASCII (`C0 AE` and `E0 80 AE` are `.`,
///   `C0 AF` is `/`, `C0 BC` is `<`): invalid UTF-8 that old decoders
///   (IIS, some Java and PHP stacks) accept, the classic way to slip
///   `../` or `<script>` past a filter that reads the bytes.
fn fold_and_strip_nul(input: &[u8]) -> Cow<'_, [u8]> {
    if !input
        .iter()
        .any(|&b| matches!(b, 0 | 0xc0 | 0xc1 | 0xe0 | 0xef))
    {
        return Cow::Borrowed(input);
    }
    let cont = |i: usize| input.get(i).copied().filter(|c| (0x80..=0xbf).contains(c));
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        match b {
            0 => {
                i += 1;
                continue;
            }
            // Two bytes for a code point below U+0080.
            0xc0 | 0xc1 => {
                if let Some(c1) = cont(i + 1) {
                    let cp = (b & 0x1f) << 6 | (c1 & 0x3f);
                    if cp != 0 {
                        out.push(cp);
                    }
                    i += 2;
                    continue;
                }
            }
            // Three bytes for a code point below U+0080 (`E0 80..81 xx`).
            0xe0 => {
                if let (Some(c1 @ 0x80..=0x81), Some(c2)) = (cont(i + 1), cont(i + 2)) {
                    let cp = (c1 & 0x3f) << 6 | (c2 & 0x3f);
                    if cp != 0 {
                        out.push(cp);
                    }
                    i += 3;
                    continue;
                }
            }
            // U+FF01..U+FF5E is EF BC 81..EF BD 9E in UTF-8.
            0xef if i + 2 < input.len() => {
                let (b1, b2) = (input[i + 1], input[i + 2]);
                let cp = match b1 {
                    0xbc if (0x81..=0xbf).contains(&b2) => Some(u32::from(b2) - 0x80),
                    0xbd if (0x80..=0x9e).contains(&b2) => Some(u32::from(b2) - 0x80 + 0x40),
                    _ => None,
                };
                if let Some(off) = cp {
                    // U+FF00 + off maps to U+0020 + off.
                    out.push((0x20 + off) as u8);
                    i += 3;
                    continue;
                }
            }
            _ => {}
        }
        out.push(b);
        i += 1;
    }
    // A fold or a dropped NUL always shortens the text.
    if out.len() == input.len() {
        Cow::Borrowed(input)
    } else {
        Cow::Owned(out)
    }
}

/// Applies `f` to `cur`, replacing it when `f` changed something.
fn step(cur: &mut Cow<'_, [u8]>, f: fn(&[u8]) -> Cow<'_, [u8]>) -> bool {
    let next = match f(cur) {
        Cow::Borrowed(_) => None,
        Cow::Owned(v) => Some(v),
    };
    match next {
        Some(v) => {
            *cur = Cow::Owned(v);
            true
        }
        None => false,
    }
}

fn url_decode_plain(input: &[u8]) -> Cow<'_, [u8]> {
    url_decode(input, false)
}

/// The `norm` view: decoding rounds until nothing changes (at most
/// [`DECODE_ROUNDS`]), then NUL removal, full-width folding, lower case.
pub fn norm(input: &[u8]) -> Cow<'_, [u8]> {
    // Fast path, one pass: nothing to decode, fold or strip.
    let mut upper = false;
    let mut special = false;
    for &b in input {
        match b {
            _ if norm_special(b) => {
                special = true;
                break;
            }
            b'A'..=b'Z' => upper = true,
            _ => {}
        }
    }
    if !special {
        if !upper {
            return Cow::Borrowed(input);
        }
        return Cow::Owned(input.to_ascii_lowercase());
    }
    let mut cur: Cow<'_, [u8]> = Cow::Borrowed(input);
    for _ in 0..DECODE_ROUNDS {
        let mut changed = step(&mut cur, url_decode_plain);
        changed |= step(&mut cur, html_decode);
        changed |= step(&mut cur, backslash_decode);
        if !changed {
            break;
        }
    }
    step(&mut cur, fold_and_strip_nul);
    if cur.iter().any(|b| b.is_ascii_uppercase()) {
        let mut v = cur.into_owned();
        v.make_ascii_lowercase();
        cur = Cow::Owned(v);
    }
    cur
}

/// Whitespace and control bytes.
fn is_space(b: u8) -> bool {
    b <= 0x20 || b == 0x7f
}

/// Removes comments: `/* ... */` (an unterminated one runs to the end; the
/// MySQL `/*! ... */` form keeps its content), `<!-- ... -->`, and replaces
/// each by `repl` (`Some(b' ')` or nothing).
fn remove_comments(input: &[u8], out: &mut Vec<u8>, space: bool) {
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b'/' && input.get(i + 1) == Some(&b'*') {
            if input.get(i + 2) == Some(&b'!') {
                // MySQL executable comment: keep the content, drop the version.
                i += 3;
                while i < input.len() && input[i].is_ascii_digit() {
                    i += 1;
                }
                if space {
                    out.push(b' ');
                }
                continue;
            }
            match memchr::memmem::find(&input[i + 2..], b"*/") {
                Some(e) => i = i + 2 + e + 2,
                None => i = input.len(),
            }
            if space {
                out.push(b' ');
            }
            continue;
        }
        if b == b'*' && input.get(i + 1) == Some(&b'/') {
            // Closing half of a versioned comment.
            i += 2;
            if space {
                out.push(b' ');
            }
            continue;
        }
        if b == b'<' && input[i..].starts_with(b"<!--") {
            match memchr::memmem::find(&input[i + 4..], b"-->") {
                Some(e) => i = i + 4 + e + 3,
                None => i = input.len(),
            }
            continue;
        }
        out.push(b);
        i += 1;
    }
}

/// The `compact` view of a `norm` value.
pub fn compact(norm: &[u8]) -> Cow<'_, [u8]> {
    let mut interesting = false;
    let mut prev = 0u8;
    for &b in norm {
        if (is_space(b) && (b != b' ' || prev == b' '))
            || (b == b'*' && prev == b'/')
            || (b == b'/' && prev == b'*')
            || (b == b'!' && prev == b'<')
        {
            interesting = true;
            break;
        }
        prev = b;
    }
    if !interesting {
        return Cow::Borrowed(norm);
    }
    let collapse = |input: &[u8], out: &mut Vec<u8>| {
        let mut prev_space = false;
        for &b in input {
            if is_space(b) {
                if !prev_space {
                    out.push(b' ');
                }
                prev_space = true;
            } else {
                out.push(b);
                prev_space = false;
            }
        }
    };
    let mut out = Vec::with_capacity(norm.len());
    if memchr::memchr2(b'*', b'!', norm).is_none() {
        // No comment can open or close: only whitespace to collapse.
        collapse(norm, &mut out);
    } else {
        let mut tmp = Vec::with_capacity(norm.len());
        remove_comments(norm, &mut tmp, true);
        collapse(&tmp, &mut out);
    }
    Cow::Owned(out)
}

/// The `strip` view of a `norm` value.
pub fn strip(norm: &[u8]) -> Cow<'_, [u8]> {
    let mut interesting = false;
    let mut prev = 0u8;
    for &b in norm {
        if is_space(b) || (b == b'*' && prev == b'/') || (b == b'!' && prev == b'<') {
            interesting = true;
            break;
        }
        prev = b;
    }
    if !interesting {
        return Cow::Borrowed(norm);
    }
    let mut tmp = Vec::with_capacity(norm.len());
    if memchr::memchr2(b'*', b'!', norm).is_none() {
        // No comment can open or close: only whitespace to drop.
        tmp.extend(norm.iter().copied().filter(|&b| !is_space(b)));
    } else {
        remove_comments(norm, &mut tmp, false);
        tmp.retain(|&b| !is_space(b));
    }
    Cow::Owned(tmp)
}

/// The `path` view of a `norm` value: `\` becomes `/`, repeated slashes
/// collapse, `.` segments go, `..` pops a segment (and stays when there is
/// nothing to pop, so traversal out of the root remains visible).
pub fn collapse_path(norm: &[u8]) -> Cow<'_, [u8]> {
    // Something to collapse: a leading `.`, a `\\`, or a `/` followed by `/` or `.`.
    let interesting = norm.starts_with(b".")
        || memchr::memchr(b'\\', norm).is_some()
        || memchr::memchr_iter(b'/', norm).any(|i| matches!(norm.get(i + 1), Some(b'/' | b'.')));
    if !interesting {
        return Cow::Borrowed(norm);
    }
    let absolute = matches!(norm.first(), Some(b'/' | b'\\'));
    let mut segs: Vec<&[u8]> = Vec::new();
    let mut leading_up = 0usize;
    let trailing = matches!(norm.last(), Some(b'/' | b'\\'));
    for seg in norm.split(|&b| b == b'/' || b == b'\\') {
        match seg {
            b"" | b"." => {}
            b".." => {
                if segs.pop().is_none() {
                    leading_up += 1;
                }
            }
            s => segs.push(s),
        }
    }
    let mut out = Vec::with_capacity(norm.len());
    if absolute {
        out.push(b'/');
    }
    for _ in 0..leading_up {
        out.extend_from_slice(b"../");
    }
    for (k, s) in segs.iter().enumerate() {
        if k > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(s);
    }
    if trailing && !segs.is_empty() {
        out.push(b'/');
    }
    Cow::Owned(out)
}

/// The `cmd` view of a `norm` value: removes the characters shells ignore or
/// join (`'`, `"`, `\`, `^`, `$@`, empty `''`), and turns `${IFS}`/`$IFS` and
/// `<` redirections used as spaces into spaces. Case is kept (and `$IFS`
/// found in any case), so it may also be given a value that needed no
/// decoding, as it is.
pub fn cmd(norm: &[u8]) -> Cow<'_, [u8]> {
    let interesting = norm.iter().any(|&b| {
        matches!(
            b,
            b'\'' | b'"' | b'\\' | b'^' | b'$' | b'\t' | b'\n' | b'\r' | b'+'
        )
    });
    if !interesting {
        return Cow::Borrowed(norm);
    }
    let mut out = Vec::with_capacity(norm.len());
    let mut i = 0;
    while i < norm.len() {
        let b = norm[i];
        match b {
            b'\'' | b'"' | b'\\' | b'^' => i += 1,
            b'\t' | b'\n' | b'\r' | b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'$' => {
                let rest = &norm[i..];
                let starts = |p: &[u8]| {
                    rest.get(..p.len())
                        .is_some_and(|r| r.eq_ignore_ascii_case(p))
                };
                if starts(b"${ifs}") {
                    out.push(b' ');
                    i += 6;
                } else if starts(b"$ifs") {
                    out.push(b' ');
                    i += 4;
                } else if rest.starts_with(b"$@")
                    || rest.starts_with(b"$*")
                    || (rest.len() >= 2 && rest[1].is_ascii_digit())
                {
                    i += 2;
                } else {
                    out.push(b);
                    i += 1;
                }
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

const B64_INVALID: u8 = 0xff;

/// Base64 digit values (standard and URL-safe alphabets), with a space read
/// as `+` (form decoding turned a `+` into a space).
static B64: [u8; 256] = {
    let mut t = [B64_INVALID; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' | b' ' => 62,
            b'/' | b'_' => 63,
            _ => B64_INVALID,
        };
        i += 1;
    }
    t
};

/// Minimum length of a value tried as Base64.
pub const BASE64_MIN: usize = 8;

/// Decodes `raw` as Base64 (standard or URL-safe alphabet, padding
/// optional) when it plausibly is Base64 and decodes to mostly printable
/// text. Returns `None` otherwise: binary tokens and plain words are left
/// alone.
pub fn base64_text(raw: &[u8]) -> Option<Vec<u8>> {
    // A path is tried on its last segment (`/PHNjcmlwdD4`).
    let raw = match raw.first() {
        Some(b'/') => memchr::memrchr(b'/', raw).map_or(raw, |i| &raw[i + 1..]),
        _ => raw,
    };
    let trimmed = {
        let mut end = raw.len();
        while end > 0 && raw[end - 1] == b'=' {
            end -= 1;
        }
        &raw[..end]
    };
    if trimmed.len() < BASE64_MIN || raw.len() - trimmed.len() > 2 || trimmed.len() % 4 == 1 {
        return None;
    }
    // The decoded text must be at least 95 % printable ASCII (and UTF-8):
    // at most `n / 20` other bytes among the `n` it decodes to. A random
    // token breaks that within a few characters, so the first pass, which
    // decodes without storing, usually stops early.
    let n = trimmed.len() * 6 / 8;
    let mut upper = false;
    let mut lower = false;
    let mut digit_or_sym = false;
    let mut bad = 0usize;
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in trimmed {
        let v = B64[b as usize];
        if v == B64_INVALID {
            return None;
        }
        upper |= b.is_ascii_uppercase();
        lower |= b.is_ascii_lowercase();
        // A space is a `+` that form decoding turned into a space.
        digit_or_sym |= !b.is_ascii_alphabetic();
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            let c = (acc >> bits) as u8;
            acc &= (1 << bits) - 1;
            if !is_text_byte(c) {
                bad += 1;
                if bad * 100 > n * 5 {
                    return None;
                }
            }
        }
    }
    // A word made only of letters is more likely a word than Base64.
    if !(upper && lower) && !(digit_or_sym && (upper || lower)) {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in trimmed {
        acc = acc << 6 | u32::from(B64[b as usize]);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    std::str::from_utf8(&out).is_ok().then_some(out)
}

/// Printable ASCII, the usual whitespace, and NUL (a decoded text may end
/// with padding zeros).
fn is_text_byte(c: u8) -> bool {
    (0x20..0x7f).contains(&c) || matches!(c, b'\n' | b'\r' | b'\t' | 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(c: Cow<'_, [u8]>) -> String {
        String::from_utf8_lossy(&c).into_owned()
    }

    #[test]
    fn url_decoding() {
        assert_eq!(s(url_decode(b"a%20b+c", true)), "a b c");
        assert_eq!(s(url_decode(b"a%2", false)), "a%2");
        assert_eq!(s(url_decode(b"%u003cscript", false)), "<script");
        assert!(matches!(url_decode(b"plain", true), Cow::Borrowed(_)));
    }

    #[test]
    fn overlong_utf8_reads_as_the_ascii_it_encodes() {
        // `..%c0%af` and its three-byte form: the IIS traversal.
        assert_eq!(
            s(norm(b"%C0%AE%C0%AE%C0%AFetc%C0%AFpasswd")),
            "../etc/passwd"
        );
        assert_eq!(s(norm(b"%e0%80%ae%e0%80%ae/boot.ini")), "../boot.ini");
        assert_eq!(s(norm(b"%c0%bcscript%c0%be")), "<script>");
        // `C1 81` is an overlong `A`, read in lower case like the rest.
        assert_eq!(s(norm(b"%c1%81")), "a");
        // Real UTF-8 stays: `é`, a Devanagari letter (`E0 A4 95`), an
        // emoji; and a lead byte without its continuation is left alone.
        assert_eq!(s(norm("é क 🙂".as_bytes())), "é क 🙂");
        assert_eq!(norm(b"a\xc0b").as_ref(), b"a\xc0b");
        assert_eq!(norm(b"\xe0\x80").as_ref(), b"\xe0\x80");
        // An overlong NUL is dropped like a NUL.
        assert_eq!(s(norm(b"a%c0%80b")), "ab");
    }

    #[test]
    fn norm_repeats_and_folds() {
        assert_eq!(s(norm(b"%253Cscript%253E")), "<script>");
        assert_eq!(s(norm(b"&lt;SCRIPT&gt;")), "<script>");
        assert_eq!(s(norm(b"&#x3c;&#60;&#0000060")), "<<<");
        assert_eq!(s(norm(b"\\u003cimg\\x20src")), "<img src");
        assert_eq!(
            s(norm(b"..\\..\\users\\x\\win.ini")),
            "..\\..\\users\\x\\win.ini"
        );
        assert_eq!(s(norm(b"a\0b")), "ab");
        assert_eq!(s(norm("\u{ff1c}script\u{ff1e}".as_bytes())), "<script>");
        assert!(matches!(norm(b"red shoes 42"), Cow::Borrowed(_)));
    }

    #[test]
    fn decoding_is_capped() {
        // Four levels of encoding: three rounds decode three of them.
        let v = norm(b"%25252541");
        assert_eq!(s(v), "%41");
    }

    #[test]
    fn comments_and_spaces() {
        assert_eq!(s(compact(b"union/**/select\t\n 1")), "union select 1");
        assert_eq!(
            s(compact(b"/*!50000union*/ select")),
            " union  select".replace("  ", " ")
        );
        assert_eq!(s(strip(b"java<!-- x -->script :")), "javascript:");
        assert_eq!(s(strip(b"un/*x*/ion")), "union");
    }

    #[test]
    fn paths() {
        assert_eq!(s(collapse_path(b"/a/./b//../.env")), "/a/.env");
        assert_eq!(
            s(collapse_path(b"..\\..\\windows\\win.ini")),
            "../../windows/win.ini"
        );
        assert_eq!(s(collapse_path(b"/../../etc/passwd")), "/../../etc/passwd");
        assert_eq!(s(collapse_path(b"/shop/item")), "/shop/item");
    }

    #[test]
    fn shell_view() {
        assert_eq!(s(cmd(b"c'a't /e\"t\"c/pa\\ss\\wd")), "cat /etc/passwd");
        assert_eq!(s(cmd(b"cat${ifs}/etc/passwd")), "cat /etc/passwd");
    }

    #[test]
    fn base64_plausibility() {
        assert_eq!(
            base64_text(b"PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==").as_deref(),
            Some(&b"<script>alert(1)</script>"[..])
        );
        assert_eq!(
            base64_text(b"PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg").as_deref(),
            Some(&b"<script>alert(1)</script>"[..])
        );
        assert_eq!(base64_text(b"hello"), None);
        assert_eq!(base64_text(b"passwordpassword"), None);
        assert_eq!(base64_text(b"9f86d081884c7d659a2feaa0c55ad015"), None);
    }
}
