//! Which field names carry secrets.
//!
//! A raw name (the bytes before a `=` or `:`) is percent-decoded, cut to its trailing run of name
//! characters, split into lower-case words (on `_`, `-`, `.`, `[`, `]` and camelCase) and then:
//! * a suffix of its words, concatenated, equal to a *name* (`pass`, `x_api_key`, `card_cvv`, …), or
//! * any word or pair of adjacent words equal to a *strong word* (`password`, `token`, `api`+`key`, …)
//!
//! makes it secret. `customer[password]`, `newPassword`, `password_confirmation`, `X-Auth-Token` and
//! `pass%77ord` are secret; `compass`, `author`, `shipping`, `company`, `discard` are not.

use std::collections::HashSet;

use crate::Kind;

/// Longest raw name looked at (bytes before decoding); a longer one is judged by its tail.
pub(crate) const MAX_NAME: usize = 64;
const MAX_WORDS: usize = 16;

/// Percent-decode `raw` (at most [`MAX_NAME`] bytes).
fn decode(raw: &[u8]) -> ([u8; MAX_NAME], usize) {
    let mut dec = [0u8; MAX_NAME];
    let mut n = 0;
    let mut i = 0;
    while i < raw.len() && n < MAX_NAME {
        let b = raw[i];
        if b == b'%' && i + 2 < raw.len() {
            if let (Some(h), Some(l)) = (hex_val(raw[i + 1]), hex_val(raw[i + 2])) {
                dec[n] = (h << 4) | l;
                n += 1;
                i += 3;
                continue;
            }
        }
        dec[n] = b;
        n += 1;
        i += 1;
    }
    (dec, n)
}

/// The kind of secret a field name announces, if any.
#[cfg(test)]
pub(crate) fn classify(raw: &[u8], extra: &ExtraFields) -> Option<Kind> {
    let raw = if raw.len() > MAX_NAME {
        &raw[raw.len() - MAX_NAME..]
    } else {
        raw
    };
    let mut mask = 0u64;
    let mut had_pct = false;
    for &c in raw {
        mask |= CHAR_BITS[usize::from(c)];
        had_pct |= c == b'%';
    }
    classify_scanned(raw, mask, had_pct, extra)
}

/// [`classify`] for a caller that already has the characters of `raw` (at most [`MAX_NAME`]
/// bytes): `mask` must cover them (a superset is fine), `had_pct` tells whether a `%` is in it.
pub(crate) fn classify_scanned(
    raw: &[u8],
    mask: u64,
    had_pct: bool,
    extra: &ExtraFields,
) -> Option<Kind> {
    if raw.len() < 3 {
        return None;
    }
    // 1. percent-decode (only when there is something to decode)
    let decoded: ([u8; MAX_NAME], usize);
    let dec: &[u8] = if had_pct {
        decoded = decode(raw);
        &decoded.0[..decoded.1]
    } else {
        // cheap early exit for the common case: no keyword can hide in these characters
        if !extra.may_match(mask) {
            return None;
        }
        raw
    };
    // 2. trailing run of name characters
    let mut start = dec.len();
    while start > 0 && is_decoded_name_byte(dec[start - 1]) {
        start -= 1;
    }
    let name = &dec[start..];
    if had_pct && !extra.may_match(char_mask_fast(name)) {
        return None;
    }
    // 3. words, lower-cased and concatenated into `cat`; `bounds[k]` is where word k starts
    let mut cat = [0u8; MAX_NAME];
    let mut clen = 0;
    let mut bounds = [0u8; MAX_WORDS + 1];
    let mut words = 0;
    let mut in_word = false;
    let mut prev_lower = false;
    for &b in name {
        if b.is_ascii_alphanumeric() {
            let camel = prev_lower && b.is_ascii_uppercase();
            if !in_word || camel {
                if words == MAX_WORDS {
                    return None;
                }
                bounds[words] = clen as u8;
                words += 1;
                in_word = true;
            }
            cat[clen] = b.to_ascii_lowercase();
            clen += 1;
            prev_lower = b.is_ascii_lowercase() || b.is_ascii_digit();
        } else {
            in_word = false;
            prev_lower = false;
        }
    }
    if words == 0 {
        return None;
    }
    bounds[words] = clen as u8;
    let cat = &cat[..clen];
    let at = |k: usize| usize::from(bounds[k]);
    // 4. suffixes against the name list (and the operator's extra names)
    for k in 0..words {
        let suffix = &cat[at(k)..];
        if let Some(k) = extra.name_kind(suffix) {
            return Some(k);
        }
        if extra.contains(suffix) {
            return Some(Kind::Secret);
        }
    }
    // 5. words and pairs of words against the strong words
    for w in 0..words {
        if let Some(k) = extra.strong_kind(&cat[at(w)..at(w + 1)]) {
            return Some(k);
        }
        if w + 2 <= words {
            if let Some(k) = extra.strong_kind(&cat[at(w)..at(w + 2)]) {
                return Some(k);
            }
        }
    }
    None
}

/// Normalise an operator-supplied field name the way names are matched: lower-case alphanumerics.
pub(crate) fn normalize_extra(name: &str) -> Vec<u8> {
    name.bytes()
        .filter(u8::is_ascii_alphanumeric)
        .map(|b| b.to_ascii_lowercase())
        .collect()
}

use Kind::{ApiKey, AuthHeader, Card, Cookie, Cvv, Iban, Secret};

/// Whole names, or the last words of a name (lower-case, separators removed).
const NAMES: &[(&str, Kind)] = &[
    ("authorization", AuthHeader),
    ("proxyauthorization", AuthHeader),
    ("cookie", Cookie),
    ("cookies", Cookie),
    ("setcookie", Cookie),
    ("apikey", ApiKey),
    ("xapikey", ApiKey),
    ("xauthtoken", ApiKey),
    ("authtoken", ApiKey),
    ("xaccesstoken", ApiKey),
    ("apitoken", ApiKey),
    ("xapitoken", ApiKey),
    ("accesskey", ApiKey),
    ("secretkey", ApiKey),
    ("privatekey", ApiKey),
    ("cvv", Cvv),
    ("cvc", Cvv),
    ("cvv2", Cvv),
    ("cvc2", Cvv),
    ("ccv", Cvv),
    ("csc", Cvv),
    ("cvn", Cvv),
    ("cardcvv", Cvv),
    ("cardcvc", Cvv),
    ("cardcode", Cvv),
    ("securitycode", Cvv),
    ("cardsecuritycode", Cvv),
    ("cccid", Cvv),
    ("cccvv", Cvv),
    ("verificationcode", Cvv),
    ("card", Card),
    ("cardnumber", Card),
    ("cardno", Card),
    ("cardnum", Card),
    ("ccnumber", Card),
    ("ccnum", Card),
    ("ccno", Card),
    ("creditcard", Card),
    ("creditcardnumber", Card),
    ("pan", Card),
    ("accountnumber", Iban),
    ("iban", Iban),
    ("bankaccount", Iban),
    ("password", Secret),
    ("passwd", Secret),
    ("passe", Secret),
    ("motdepasse", Secret),
    ("mdp", Secret),
    ("passwort", Secret),
    ("kennwort", Secret),
    ("wachtwoord", Secret),
    ("contrasena", Secret),
    ("contrasenya", Secret),
    ("senha", Secret),
    ("pwd", Secret),
    ("pass", Secret),
    ("passphrase", Secret),
    ("passcode", Secret),
    ("secret", Secret),
    ("clientsecret", Secret),
    ("token", Secret),
    ("accesstoken", Secret),
    ("refreshtoken", Secret),
    ("idtoken", Secret),
    ("otp", Secret),
    ("totp", Secret),
    ("otpcode", Secret),
    ("mfacode", Secret),
    ("pin", Secret),
    ("session", Secret),
    ("sessionid", Secret),
    ("sessid", Secret),
    ("phpsessid", Secret),
    ("jsessionid", Secret),
    ("sid", Secret),
    ("auth", Secret),
    ("credential", Secret),
    ("credentials", Secret),
    ("signature", Secret),
];

/// Words (or two adjacent words) that make any name secret, wherever they stand in it.
const STRONG: &[(&str, Kind)] = &[
    ("authorization", AuthHeader),
    ("cookie", Cookie),
    ("apikey", ApiKey),
    ("cvv", Cvv),
    ("cvc", Cvv),
    ("cvv2", Cvv),
    ("cvc2", Cvv),
    ("securitycode", Cvv),
    ("cardnumber", Card),
    ("ccnumber", Card),
    ("creditcard", Card),
    ("password", Secret),
    ("passwd", Secret),
    ("pwd", Secret),
    ("passphrase", Secret),
    ("secret", Secret),
    ("token", Secret),
];

/// Bit of a letter (case-insensitive: a = bit 0 … z = bit 25) or digit (0 = bit 26 …), 0 otherwise.
const fn char_bit(c: u8) -> u64 {
    if c >= b'a' && c <= b'z' {
        1 << (c - b'a')
    } else if c >= b'A' && c <= b'Z' {
        1 << (c - b'A')
    } else if c >= b'0' && c <= b'9' {
        1 << (26 + c - b'0')
    } else {
        0
    }
}

static CHAR_BITS: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = char_bit(i as u8);
        i += 1;
    }
    t
};

/// Which letters and digits occur in `s`.
const fn char_mask(s: &[u8]) -> u64 {
    let mut m = 0u64;
    let mut i = 0;
    while i < s.len() {
        m |= char_bit(s[i]);
        i += 1;
    }
    m
}

fn char_mask_fast(s: &[u8]) -> u64 {
    s.iter().fold(0u64, |m, &c| m | CHAR_BITS[usize::from(c)])
}

const N_NAMES: usize = NAMES.len();
const N_ALL: usize = NAMES.len() + STRONG.len();

/// The characters of every keyword (names, then strong words).
static KEYWORD_MASKS: [u64; N_ALL] = {
    let mut out = [0u64; N_ALL];
    let mut i = 0;
    while i < N_ALL {
        let kw = if i < N_NAMES {
            NAMES[i].0
        } else {
            STRONG[i - N_NAMES].0
        };
        assert!(kw.len() <= MAX_KEYWORD);
        out[i] = char_mask(kw.as_bytes());
        i += 1;
    }
    out
};

/// Longest keyword (bytes).
const MAX_KEYWORD: usize = 24;
const FIXED_MASKS: usize = 24;
/// A mask no name covers (bit 63 is never set by a character).
const NEVER: u64 = u64::MAX;

fn fixed(masks: &[u64]) -> Option<[u64; FIXED_MASKS]> {
    if masks.len() > FIXED_MASKS {
        return None;
    }
    let mut a = [NEVER; FIXED_MASKS];
    a[..masks.len()].copy_from_slice(masks);
    Some(a)
}

/// The keywords indexed for fast lookup, plus the operator's extra names. Built once per
/// [`crate::Redactor`].
#[derive(Debug, Clone)]
pub(crate) struct ExtraFields {
    extra: HashSet<Vec<u8>>,
    /// Character masks of every keyword and extra name, reduced to the minimal ones: a name that
    /// lacks the characters of all of them cannot hold any keyword.
    min_masks: Vec<u64>,
    /// The same in a fixed array (padded with masks no name can cover) when they fit: the check
    /// then runs without branches.
    min_fixed: Option<[u64; FIXED_MASKS]>,
    names_by_len: Vec<Vec<(&'static [u8], Kind)>>,
    strong_by_len: Vec<Vec<(&'static [u8], Kind)>>,
}

fn by_len(table: &[(&'static str, Kind)]) -> Vec<Vec<(&'static [u8], Kind)>> {
    let mut v = vec![Vec::new(); MAX_KEYWORD + 1];
    for &(k, kind) in table {
        if let Some(slot) = v.get_mut(k.len()) {
            slot.push((k.as_bytes(), kind));
        }
    }
    v
}

fn minimal(masks: &mut Vec<u64>) {
    masks.sort_unstable_by_key(|m| m.count_ones());
    masks.dedup();
    let mut keep: Vec<u64> = Vec::new();
    for &m in masks.iter() {
        // `m` is redundant if a kept mask is a subset of it
        if !keep.iter().any(|&k| k & !m == 0) {
            keep.push(m);
        }
    }
    *masks = keep;
}

impl Default for ExtraFields {
    fn default() -> Self {
        let mut min_masks: Vec<u64> = KEYWORD_MASKS.to_vec();
        minimal(&mut min_masks);
        ExtraFields {
            extra: HashSet::new(),
            min_fixed: fixed(&min_masks),
            min_masks,
            names_by_len: by_len(NAMES),
            strong_by_len: by_len(STRONG),
        }
    }
}

impl ExtraFields {
    pub(crate) fn insert(&mut self, norm: Vec<u8>) {
        self.min_masks.push(char_mask(&norm));
        minimal(&mut self.min_masks);
        self.min_fixed = fixed(&self.min_masks);
        self.extra.insert(norm);
    }

    pub(crate) fn len(&self) -> usize {
        self.extra.len()
    }

    fn contains(&self, s: &[u8]) -> bool {
        !self.extra.is_empty() && self.extra.contains(s)
    }

    /// Could a name with these characters hold any keyword? (a keyword needs all its characters)
    #[inline]
    fn may_match(&self, name_mask: u64) -> bool {
        match &self.min_fixed {
            Some(a) => {
                // branch-free: the top bit of `v | -v` is set exactly when `v != 0`
                let missing = !name_mask;
                let mut all_missing_something = u64::MAX;
                for &m in a {
                    let v = m & missing;
                    all_missing_something &= v | v.wrapping_neg();
                }
                all_missing_something >> 63 == 0
            }
            None => self.min_masks.iter().any(|&m| m & !name_mask == 0),
        }
    }

    fn name_kind(&self, s: &[u8]) -> Option<Kind> {
        lookup(&self.names_by_len, s)
    }

    fn strong_kind(&self, s: &[u8]) -> Option<Kind> {
        lookup(&self.strong_by_len, s)
    }
}

fn lookup(index: &[Vec<(&'static [u8], Kind)>], s: &[u8]) -> Option<Kind> {
    index
        .get(s.len())?
        .iter()
        .find(|(k, _)| k.first() == s.first() && k.iter().zip(s).all(|(a, b)| a == b))
        .map(|&(_, kind)| kind)
}

/// Class of a byte in a name (bit 0: decoded name byte, bit 1: raw name byte, `%` included) and its
/// character bit.
pub(crate) fn name_byte(c: u8) -> (u8, u64) {
    (NAME_BYTE[usize::from(c)], CHAR_BITS[usize::from(c)])
}

/// Bytes of a (decoded) name, and of a raw name (`%` too).
static NAME_BYTE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        if c.is_ascii_alphanumeric()
            || c == b'_'
            || c == b'-'
            || c == b'.'
            || c == b'['
            || c == b']'
        {
            t[i] = 3;
        } else if c == b'%' {
            t[i] = 2;
        }
        i += 1;
    }
    t
};

fn is_decoded_name_byte(b: u8) -> bool {
    NAME_BYTE[usize::from(b)] & 1 != 0
}

pub(crate) fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(name: &str) -> Option<Kind> {
        classify(name.as_bytes(), &ExtraFields::default())
    }

    #[test]
    fn secret_names() {
        for n in [
            "password",
            "Password",
            "PASSWD",
            "pwd",
            "pass",
            "secret",
            "token",
            "api_key",
            "apikey",
            "access_token",
            "refresh_token",
            "client_secret",
            "otp",
            "pin",
            "session",
            "auth",
            "customer[password]",
            "login[pass]",
            "newPassword",
            "password_confirmation",
            "pass%77ord",
            "%26password",
            "customer%5Bpassword%5D",
            "user.password",
            "csrf_token",
        ] {
            assert!(k(n).is_some(), "{n} should be secret");
        }
        assert_eq!(k("cvv"), Some(Kind::Cvv));
        assert_eq!(k("card_cvv"), Some(Kind::Cvv));
        assert_eq!(k("security_code"), Some(Kind::Cvv));
        assert_eq!(k("payment[cc_cid]"), Some(Kind::Cvv));
        assert_eq!(k("card_number"), Some(Kind::Card));
        assert_eq!(k("cardNumber"), Some(Kind::Card));
        assert_eq!(k("pan"), Some(Kind::Card));
        assert_eq!(k("Authorization"), Some(Kind::AuthHeader));
        assert_eq!(k("Proxy-Authorization"), Some(Kind::AuthHeader));
        assert_eq!(k("Cookie"), Some(Kind::Cookie));
        assert_eq!(k("Set-Cookie"), Some(Kind::Cookie));
        assert_eq!(k("X-Api-Key"), Some(Kind::ApiKey));
        assert_eq!(k("X-Auth-Token"), Some(Kind::ApiKey));
    }

    #[test]
    fn benign_names() {
        for n in [
            "compass",
            "author",
            "shipping",
            "company",
            "discard",
            "span",
            "path",
            "timestamp",
            "status",
            "2026-11-21T08",
            "https",
            "card_type_label_x",
            "passport_country",
            "user",
            "email",
            "id",
            "ab",
        ] {
            assert_eq!(k(n), None, "{n} should not be secret");
        }
    }

    #[test]
    fn extra_names() {
        let mut extra = ExtraFields::default();
        extra.insert(normalize_extra("National-ID"));
        assert_eq!(classify(b"national_id", &extra), Some(Kind::Secret));
        assert_eq!(
            classify(b"customer[nationalId]", &extra),
            Some(Kind::Secret)
        );
        assert_eq!(classify(b"nation", &extra), None);
    }
}

#[cfg(test)]
mod table_tests {
    use super::*;

    #[test]
    fn every_keyword_is_found_as_a_name() {
        for (kw, kind) in NAMES.iter().chain(STRONG.iter()) {
            let got = classify(kw.as_bytes(), &ExtraFields::default());
            assert_eq!(got, Some(*kind), "{kw}");
            let upper = kw.to_ascii_uppercase();
            assert!(
                classify(upper.as_bytes(), &ExtraFields::default()).is_some(),
                "{upper}"
            );
        }
    }

    #[test]
    fn keywords_are_normalised() {
        for (kw, _) in NAMES.iter().chain(STRONG.iter()) {
            assert!(
                kw.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
                "{kw}"
            );
        }
    }
}
