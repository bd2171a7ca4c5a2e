//! Property tests: sensitive values embedded anywhere, in any encoding, never survive; benign text is
//! returned as is (borrowed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::borrow::Cow;

use palisade_redact::Redactor;
use proptest::prelude::*;
use proptest::sample::select;

// ------------------------------------------------------------------------------ benign text

const WORDS: &[&str] = &[
    "GET",
    "POST",
    "checkout",
    "cart",
    "shop",
    "product",
    "catalog",
    "view",
    "allow",
    "block",
    "detect",
    "compass",
    "author",
    "company",
    "shipping",
    "discard",
    "span",
    "passport",
    "status",
    "Mozilla/5.0",
    "TLSv1.3",
    "h2",
    "http/1.1",
    "https://shop.example/catalog?page=2",
    "INFO",
    "WARN",
    "palisade::gateway",
    "upstream",
    "latency",
    "EUR",
    "qty",
    "€",
    "✓",
    "naïve",
    "ok",
    "-",
    "\"\"",
    "{}",
    "[]",
    "/",
    "\\n",
    "\\\"",
    "%20",
    "%2F",
    "+",
    "==",
    "::",
    "&&",
];

const BENIGN_NAMES: &[&str] = &[
    "status",
    "path",
    "qty",
    "order_id",
    "sku",
    "color",
    "page",
    "lang",
    "currency",
    "duration_ms",
    "bytes_out",
    "site",
    "route",
    "request_id",
    "author",
    "company",
    "shipping",
];

const JOINERS: &[&str] = &[
    ", ", "; ", " | ", "&", "\t", ",", " / ", "\n", "\"", " {", "} ", "?",
];

fn uuid(x: u128) -> String {
    let h = format!("{x:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn benign_token() -> impl Strategy<Value = String> {
    prop_oneof![
        select(WORDS).prop_map(String::from),
        (0u32..100_000_000).prop_map(|n| n.to_string()),
        (0u32..100_000, 0u32..100).prop_map(|(a, b)| format!("{a}.{b:02}")),
        (
            2000u32..2100,
            1u32..13,
            1u32..29,
            0u32..24,
            0u32..60,
            0u32..60,
            0u32..1_000_000
        )
            .prop_map(|(y, mo, d, h, mi, s, us)| format!(
                "{y}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{us:06}Z"
            )),
        any::<u128>().prop_map(uuid),
        any::<u128>().prop_map(|x| format!("{x:032x}")),
        (0u32..100_000).prop_map(|n| format!("{n}ms")),
        (select(&["AB", "XZ", "KL"][..]), 0u32..10_000).prop_map(|(p, n)| format!("{p}-{n:04}-XL")),
        (1u32..10, 0u32..100, 0u32..100, 0u32..100, 0u32..100)
            .prop_map(|(a, b, c, d, e)| format!("+33 {a} {b:02} {c:02} {d:02} {e:02}")),
        (select(BENIGN_NAMES), 0u32..100_000).prop_map(|(k, v)| format!("{k}={v}")),
        (select(BENIGN_NAMES), 0u32..100_000).prop_map(|(k, v)| format!("\"{k}\":\"{v}\"")),
        (select(BENIGN_NAMES), select(WORDS)).prop_map(|(k, v)| format!("{k}: {v}")),
    ]
}

fn benign_text() -> impl Strategy<Value = String> {
    prop::collection::vec((benign_token(), select(JOINERS)), 0..40)
        .prop_map(|v| v.into_iter().map(|(t, j)| t + j).collect())
}

// ------------------------------------------------------------------------------ sensitive values

const CARD_PREFIXES: &[(&str, usize)] = &[
    ("4", 16),
    ("4", 13),
    ("4", 19),
    ("51", 16),
    ("55", 16),
    ("2221", 16),
    ("2720", 16),
    ("34", 15),
    ("37", 15),
    ("6011", 16),
    ("65", 16),
    ("36", 14),
    ("35", 16),
    ("81", 16),
    ("62", 19),
];

fn luhn_check_digit(payload: &[u8]) -> u8 {
    let mut sum = 0u32;
    for (i, &d) in payload.iter().rev().enumerate() {
        let mut v = u32::from(d);
        if i % 2 == 0 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    ((10 - sum % 10) % 10) as u8
}

/// A Luhn-valid card number, digits only.
fn card_digits() -> impl Strategy<Value = String> {
    (select(CARD_PREFIXES), prop::collection::vec(0u8..10, 19)).prop_map(|((prefix, len), rnd)| {
        let mut d: Vec<u8> = prefix.bytes().map(|c| c - b'0').collect();
        d.extend_from_slice(&rnd[..len - prefix.len() - 1]);
        let c = luhn_check_digit(&d);
        d.push(c);
        d.iter().map(|x| char::from(b'0' + x)).collect()
    })
}

fn group(digits: &str, sep: &str) -> String {
    let sizes: Vec<usize> = if digits.len() == 15 {
        vec![4, 6, 5]
    } else {
        let mut v = vec![4; digits.len() / 4];
        if digits.len() % 4 != 0 {
            v.push(digits.len() % 4);
        }
        v
    };
    let mut out = Vec::new();
    let mut i = 0;
    for s in sizes {
        out.push(&digits[i..i + s]);
        i += s;
    }
    out.join(sep)
}

/// (formatted card, digits)
fn card() -> impl Strategy<Value = (String, String)> {
    (card_digits(), select(&["", " ", "-", "+", "%20"][..])).prop_map(|(d, sep)| {
        let f = if sep.is_empty() {
            d.clone()
        } else {
            group(&d, sep)
        };
        (f, d)
    })
}

const SECRET_NAMES: &[&str] = &[
    "password",
    "Password",
    "PASSWORD",
    "passwd",
    "pwd",
    "pass",
    "secret",
    "token",
    "api_key",
    "apikey",
    "access_token",
    "refresh_token",
    "client_secret",
    "cvv",
    "cvc",
    "card_cvv",
    "security_code",
    "otp",
    "pin",
    "session",
    "auth",
    "card_number",
    "pan",
    "customer[password]",
    "login[pass]",
    "newPassword",
    "user_password",
    "X-Api-Key",
    "X-Auth-Token",
    "Authorization",
    "Cookie",
];

fn pct_encode_all(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

fn pct_encode_some(s: &str, mask: u64) -> String {
    s.bytes()
        .enumerate()
        .map(|(i, b)| {
            if mask >> (i % 64) & 1 == 1 || !b.is_ascii_alphanumeric() {
                format!("%{b:02X}")
            } else {
                char::from(b).to_string()
            }
        })
        .collect()
}

fn alnum(min: usize, max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        select(&b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789"[..]),
        min..=max,
    )
    .prop_map(|v| v.into_iter().map(char::from).collect())
}

/// (text carrying the secret, the secret core that must not survive)
fn named_secret() -> impl Strategy<Value = (String, String)> {
    (
        select(SECRET_NAMES),
        alnum(8, 24),
        select(&["", "!", "-_.", "$*", "~"][..]),
        0usize..12,
        any::<u64>(),
    )
        .prop_map(|(name, core, special, form, mask)| {
            let v = format!("{core}{special}");
            let text = match form {
                0 => format!("{name}={}", pct_encode_some(&v, 0)),
                1 => format!("\"{name}\":\"{v}\""),
                2 => format!("\"{name}\": \"{v}\\\"x\""),
                3 => format!("\\\"{name}\\\":\\\"{v}\\\""),
                4 => format!("{name}: {v}"),
                5 => format!("{name}=\"{v}\""),
                6 => format!("'{name}': '{v}'"),
                7 => format!("{}%3D{}", name, pct_encode_some(&v, 0)),
                8 => format!("%22{name}%22%3A%22{}%22", pct_encode_some(&v, 0)),
                9 => format!("{}={v}", pct_encode_some(name, mask)),
                10 => format!("{} = {v}", name),
                _ => format!("{}={}", pct_encode_all(name), pct_encode_some(&v, mask)),
            };
            (text, core)
        })
}

fn b64url(min: usize, max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        select(&b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[..]),
        min..=max,
    )
    .prop_map(|v| v.into_iter().map(char::from).collect())
}

/// (text with a JWT, payload, signature)
fn jwt() -> impl Strategy<Value = (String, String, String)> {
    (b64url(10, 40), b64url(12, 200), b64url(12, 86), 0usize..6).prop_map(|(h, p, s, form)| {
        let payload = format!("eyJ{p}");
        let t = format!("eyJ{h}.{payload}.{s}");
        let text = match form {
            0 => t,
            1 => format!("Authorization: Bearer {t}"),
            2 => format!("\"id\":\"{t}\""),
            3 => format!("?x={t}&y=1"),
            4 => format!("\\\"note\\\":\\\"{t}\\\""),
            _ => format!("bearer%20{t}"),
        };
        (text, payload, s)
    })
}

/// (text with an e-mail, local part core, domain label)
fn email() -> impl Strategy<Value = (String, String, String)> {
    (
        alnum(6, 14),
        select(&["", ".x", "+tag", "-a", "_b"][..]),
        prop::collection::vec(select(&b"abcdefghijklmnopqrstuvwxyz"[..]), 5..12),
        select(&["com", "fr", "de", "co.uk", "shop", "org"][..]),
        0usize..7,
    )
        .prop_map(|(core, extra, dom, tld, form)| {
            let dom: String = dom.into_iter().map(char::from).collect();
            let e = format!("{core}{extra}@{dom}.{tld}");
            let text = match form {
                0 => e,
                1 => format!("\"email\":\"{e}\""),
                2 => format!("email={}", e.replace('@', "%40").replace('+', "%2B")),
                3 => format!("\\\"who\\\":\\\"{e}\\\""),
                4 => format!("mailto:{e}"),
                5 => format!("<{e}>"),
                _ => format!("user {e}, hi"),
            };
            (text, core, dom)
        })
}

const IBAN_COUNTRIES: &[(&str, usize, usize)] = &[
    // country, IBAN length, leading letters in the BBAN
    ("DE", 22, 0),
    ("FR", 27, 0),
    ("GB", 22, 4),
    ("NL", 18, 4),
    ("ES", 24, 0),
    ("IT", 27, 1),
    ("BE", 16, 0),
    ("AT", 20, 0),
    ("CH", 21, 0),
];

fn mod97(s: &str) -> u32 {
    let mut r = 0u32;
    for c in s.bytes() {
        if c.is_ascii_digit() {
            r = (r * 10 + u32::from(c - b'0')) % 97;
        } else {
            r = (r * 100 + u32::from(c - b'A') + 10) % 97;
        }
    }
    r
}

/// (text with an IBAN, its BBAN)
fn iban() -> impl Strategy<Value = (String, String)> {
    (
        select(IBAN_COUNTRIES),
        prop::collection::vec(0u8..10, 30),
        prop::collection::vec(select(&b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"[..]), 4),
        select(&["", " ", "+", "%20"][..]),
        0usize..5,
    )
        .prop_map(|((cc, len, letters), digits, lets, sep, form)| {
            let mut bban: String = lets[..letters].iter().map(|&c| char::from(c)).collect();
            for d in &digits[..len - 4 - letters] {
                bban.push(char::from(b'0' + d));
            }
            let check = 98 - mod97(&format!("{bban}{cc}00"));
            let compact = format!("{cc}{check:02}{bban}");
            let f = if sep.is_empty() {
                compact
            } else {
                compact
                    .as_bytes()
                    .chunks(4)
                    .map(|c| std::str::from_utf8(c).unwrap())
                    .collect::<Vec<_>>()
                    .join(sep)
            };
            let text = match form {
                0 => f,
                1 => format!("\"account\":\"{f}\""),
                2 => format!("acct={f}&x=1"),
                3 => format!("iban={f}&x=1"),
                _ => format!("\\\"note\\\":\\\"{f}\\\""),
            };
            (text, bban)
        })
}

fn windows(s: &str, n: usize) -> Vec<&str> {
    if s.len() < n {
        return vec![s];
    }
    (0..=s.len() - n).map(|i| &s[i..i + n]).collect()
}

fn assert_card_gone(out: &str, formatted: &str, digits: &str) {
    assert!(
        !out.contains(&digits[..digits.len() - 4]),
        "card digits survived: {out}"
    );
    assert!(
        !out.contains(&formatted[..formatted.len() - 4]),
        "card survived: {out}"
    );
    for w in windows(digits, 8) {
        assert!(!out.contains(w), "8 card digits {w} survived: {out}");
    }
}

/// 384 cases by default; `PROPTEST_CASES=20000` for a longer hunt.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(384)
}

fn redactor() -> Redactor {
    Redactor::default()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn benign_text_is_borrowed(text in benign_text()) {
        let r = redactor();
        let out = r.redact(&text);
        prop_assert!(matches!(out, Cow::Borrowed(_)), "changed:\n{}\n{}", text, out);
    }

    #[test]
    fn cards_never_survive(
        a in benign_text(), b in benign_text(), (f, d) in card(), ctx in 0usize..8
    ) {
        let piece = match ctx {
            0 => format!(" {f} "),
            1 => format!("\"note\":\"{f}\""),
            2 => format!("&num={f}&"),
            3 => format!("\\\"note\\\":\\\"{f}\\\""),
            4 => format!("card_number={f}"),
            5 => format!("\\n{f}\\n"),
            6 => format!("/pay/{f}/ok"),
            _ => format!("(card {f})"),
        };
        let text = format!("{a} {piece} {b}");
        let r = redactor();
        let out = r.redact(&text);
        assert_card_gone(&out, &f, &d);
        prop_assert!(matches!(r.redact(&out), Cow::Borrowed(_)), "not idempotent: {}", out);
    }

    #[test]
    fn named_secrets_never_survive(a in benign_text(), b in benign_text(), (piece, core) in named_secret()) {
        let text = format!("{a} {piece} {b}");
        let out = redactor().redact(&text);
        prop_assert!(!out.contains(&core), "secret survived:\n{}\n{}", text, out);
    }

    #[test]
    fn jwts_never_survive(a in benign_text(), b in benign_text(), (piece, payload, sig) in jwt()) {
        let text = format!("{a} {piece} {b}");
        let out = redactor().redact(&text);
        prop_assert!(!out.contains(&payload) && !out.contains(&sig), "jwt survived:\n{}\n{}", text, out);
    }

    #[test]
    fn emails_never_survive(a in benign_text(), b in benign_text(), (piece, local, dom) in email()) {
        let text = format!("{a} {piece} {b}");
        let out = redactor().redact(&text);
        prop_assert!(!out.contains(&local), "local part survived:\n{}\n{}", text, out);
        prop_assert!(!out.contains(&dom), "domain survived:\n{}\n{}", text, out);
    }

    #[test]
    fn ibans_never_survive(a in benign_text(), b in benign_text(), (piece, bban) in iban()) {
        let text = format!("{a} {piece} {b}");
        let out = redactor().redact(&text);
        prop_assert!(!out.contains(&bban[..bban.len() - 4]), "iban survived:\n{}\n{}", text, out);
        for w in windows(&bban, 8) {
            prop_assert!(!out.contains(w), "iban part {} survived:\n{}\n{}", w, text, out);
        }
    }

    #[test]
    fn everything_at_once(
        a in benign_text(),
        (f, d) in card(),
        (s, core) in named_secret(),
        (j, payload, sig) in jwt(),
        (e, local, _dom) in email(),
        (i, bban) in iban(),
        order in 0usize..5,
    ) {
        let mut parts = [format!(" {f} "), s, j, e, i];
        let k = order % parts.len();
        parts.rotate_left(k);
        let text = format!("{a}&{}", parts.join(" | "));
        let r = redactor();
        let out = r.redact(&text);
        assert_card_gone(&out, &f, &d);
        prop_assert!(!out.contains(&core));
        prop_assert!(!out.contains(&payload) && !out.contains(&sig));
        prop_assert!(!out.contains(&local));
        prop_assert!(!out.contains(&bban[..bban.len() - 4]));
    }

    #[test]
    fn never_panics_on_anything(s in any::<String>()) {
        let _ = redactor().redact(&s);
    }

    #[test]
    fn never_panics_on_nasty_ascii(
        v in prop::collection::vec(select(&b"=:%@ 0123456789aeyJBbearsicpwd\"\\'&;,-+.{}[]\x1bm\n"[..]), 0..400)
    ) {
        let s: String = v.into_iter().map(char::from).collect();
        let _ = redactor().redact(&s);
    }
}
