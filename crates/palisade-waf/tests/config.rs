//! Settings validation: errors carry the span of the offending value.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use palisade_waf::{compile, BodyOverflow, Category, Mode, WafSettings};

fn errors(toml_text: &str) -> Vec<(String, String)> {
    let s: WafSettings = toml::from_str(toml_text).unwrap();
    match compile(&s) {
        Ok(_) => Vec::new(),
        Err(errs) => errs
            .into_iter()
            .map(|e| (toml_text[e.span.clone()].to_owned(), e.message))
            .collect(),
    }
}

#[test]
fn defaults() {
    let e = compile(&WafSettings::default()).unwrap();
    assert_eq!(e.mode(), Mode::Block);
    assert_eq!(e.body_limit(), 131_072);
    assert_eq!(e.body_overflow(), BodyOverflow::InspectPrefix);
    assert_eq!(e.threshold(), 5);
    assert!(e.rule_count() > 50);
}

#[test]
fn paranoia_adds_rules() {
    let p1 = compile(&toml::from_str("paranoia = 1").unwrap()).unwrap();
    let p2 = compile(&toml::from_str("paranoia = 2").unwrap()).unwrap();
    assert!(p2.rule_count() > p1.rule_count());
}

#[test]
fn bad_values_point_at_their_span() {
    let e = errors("mode = \"blok\"\nparanoia = 9\nbody_overflow = \"drop\"\n");
    assert_eq!(e.len(), 3, "{e:?}");
    assert_eq!(e[0].0, "\"blok\"");
    assert_eq!(e[1].0, "9");
    assert_eq!(e[2].0, "\"drop\"");
}

#[test]
fn bad_custom_rule_is_reported() {
    let text = "[[rules]]\nid = \"x-1\"\ncategory = \"custom\"\ntargets = [\"args\"]\nregex = \"(unclosed\"\n";
    let e = errors(text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].1.contains("invalid regex"), "{e:?}");
    // The span covers the rule's table, so the config crate can print its line.
    assert!(e[0].0.starts_with("[[rules]]"), "{e:?}");
}

#[test]
fn unknown_rule_and_category_in_modes() {
    let e = errors("rule_modes = [{ rule = \"nope-1\", mode = \"off\" }, { category = \"sqlx\", mode = \"detect\" }]");
    assert_eq!(e.len(), 2, "{e:?}");
}

#[test]
fn unknown_fields_are_rejected() {
    assert!(toml::from_str::<WafSettings>("paranoya = 2").is_err());
}

#[test]
fn categories_round_trip() {
    for c in Category::ALL {
        assert_eq!(Category::parse(c.as_str()), Some(c));
    }
}

#[test]
fn detect_site_never_blocks() {
    let e = compile(&toml::from_str("mode = \"detect\"").unwrap()).unwrap();
    let headers = [("Host", &b"h"[..])];
    let req = palisade_waf::Request {
        method: "GET",
        target: b"/?q=%3Cscript%3Ealert(1)%3C/script%3E",
        version: "HTTP/1.1",
        headers: &headers,
        body: None,
        body_truncated: false,
    };
    let v = e.inspect(&req);
    assert_eq!(v.action, palisade_waf::Action::Detect);
    assert!(v.matches.iter().all(|m| m.mode == Mode::Detect));
}

#[test]
fn engine_is_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<palisade_waf::Engine>();
}

#[test]
fn custom_rule_prefilters_must_be_sound() {
    // Every match contains "wp-" or "xmlrpc": accepted.
    let ok = "[[rules]]\nid = \"shop-1\"\ncategory = \"custom\"\ntargets = [\"path\"]\nregex = '/(?:wp-login|xmlrpc)\\.php'\nprefilter = [\"wp-\", \"xmlrpc\"]\n";
    assert!(errors(ok).is_empty(), "{:?}", errors(ok));
    // `/xmlrpc.php` has none of the literals: the regex would never run on
    // it, so the rule is refused, with a counterexample, at its table.
    let bad = "[[rules]]\nid = \"shop-2\"\ncategory = \"custom\"\ntargets = [\"path\"]\nregex = '/(?:wp-login|xmlrpc)\\.php'\nprefilter = [\"wp-\"]\n";
    let e = errors(bad);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].0.starts_with("[[rules]]"), "{e:?}");
    assert!(e[0].1.contains("prefilter is not sound"), "{e:?}");
    assert!(e[0].1.contains("/xmlrpc.php"), "{e:?}");
    // The second group is held to the same rule.
    let also = "[[rules]]\nid = \"shop-3\"\ncategory = \"custom\"\ntargets = [\"args\"]\nregex = 'union\\s+select'\nprefilter = [\"union\"]\nprefilter_also = [\"select \"]\n";
    let e = errors(also);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].1.contains("prefilter_also is not sound"), "{e:?}");
}
