//! The whole engine on arbitrary targets, a header and a body.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use palisade_waf::{compile, Engine, Request, WafSettings};

fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| match compile(&WafSettings::default()) {
        Ok(e) => e,
        Err(e) => panic!("built-in rules: {e:?}"),
    })
}

fuzz_target!(|data: &[u8]| {
    let third = data.len() / 3;
    let (target, rest) = data.split_at(third);
    let (header, body) = rest.split_at(third);
    let headers = [("Host", &b"h"[..]), ("X-Data", header), ("Cookie", header)];
    let req = Request {
        method: "POST",
        target,
        version: "HTTP/1.1",
        headers: &headers,
        body: Some(body),
        body_truncated: false,
    };
    let _ = engine().inspect(&req);
});
