//! Property tests: the normaliser and the parsers never panic, and every
//! view stays bounded by its input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use palisade_waf::normalize::{base64_text, cmd, collapse_path, compact, norm, strip, url_decode};
use palisade_waf::{compile, fuzzing, Request, WafSettings};
use proptest::prelude::*;

/// Bytes biased towards the characters the decoders care about.
fn tricky() -> impl Strategy<Value = Vec<u8>> {
    const ALPHABET: &[u8] = b"%&#;\\uxX/.*<>-\"'{}[]()$`|=+ \t\r\n0123456789abcdefABCDEF!?:@";
    let atom = prop_oneof![
        1 => any::<u8>(),
        3 => proptest::sample::select(ALPHABET),
    ];
    proptest::collection::vec(atom, 0..256)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn views_never_grow(input in tricky()) {
        let n = norm(&input);
        prop_assert!(n.len() <= input.len());
        prop_assert!(compact(&n).len() <= n.len());
        prop_assert!(strip(&n).len() <= n.len());
        prop_assert!(cmd(&n).len() <= n.len());
        // `..` becomes `../`: at most one byte more.
        prop_assert!(collapse_path(&n).len() <= n.len() + 1);
        prop_assert!(url_decode(&input, true).len() <= input.len());
        if let Some(d) = base64_text(&input) {
            prop_assert!(d.len() <= input.len());
        }
    }

    #[test]
    fn norm_is_lower_case(input in tricky()) {
        prop_assert!(!norm(&input).iter().any(u8::is_ascii_uppercase));
    }

    #[test]
    fn parsers_never_panic(body in tricky(), kind in 0usize..6) {
        let ct: &[u8] = match kind {
            0 => b"application/json",
            1 => b"application/x-www-form-urlencoded",
            2 => b"multipart/form-data; boundary=--x",
            3 => b"application/xml",
            4 => b"text/plain",
            _ => b"multipart/form-data",
        };
        let headers = [("Host", &b"h"[..]), ("Content-Type", ct)];
        let req = Request {
            method: "POST",
            target: b"/",
            version: "HTTP/1.1",
            headers: &headers,
            body: Some(&body),
            body_truncated: false,
        };
        prop_assert!(fuzzing::parse_request(&req) <= 4096);
    }
}

#[test]
fn engine_never_panics_on_random_requests() {
    let engine = compile(&WafSettings::default()).unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    });
    runner
        .run(&(tricky(), tricky(), tricky()), |(target, hv, body)| {
            let headers = [
                ("Host", &b"h"[..]),
                ("X-Data", &hv[..]),
                ("Cookie", &hv[..]),
                ("Content-Type", &b"application/json"[..]),
            ];
            let req = Request {
                method: "POST",
                target: &target,
                version: "HTTP/1.1",
                headers: &headers,
                body: Some(&body),
                body_truncated: false,
            };
            let v = engine.inspect(&req);
            prop_assert!(v.matches.len() <= 64);
            Ok(())
        })
        .unwrap();
}

#[test]
fn deep_json_is_bounded() {
    let engine = compile(&WafSettings::default()).unwrap();
    let body = "[".repeat(20_000);
    let headers = [
        ("Host", &b"h"[..]),
        ("Content-Type", &b"application/json"[..]),
    ];
    let req = Request {
        method: "POST",
        target: b"/",
        version: "HTTP/1.1",
        headers: &headers,
        body: Some(body.as_bytes()),
        body_truncated: false,
    };
    let _ = engine.inspect(&req);
}
