//! The body parsers (form, JSON, multipart, XML, sniffing) on arbitrary
//! bodies; the first byte picks the content type.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_waf::{fuzzing, Request};

const TYPES: &[&[u8]] = &[
    b"application/x-www-form-urlencoded",
    b"application/json",
    b"multipart/form-data; boundary=b",
    b"application/xml",
    b"text/plain",
    b"",
];

fuzz_target!(|data: &[u8]| {
    let Some((&k, body)) = data.split_first() else {
        return;
    };
    let ct = TYPES[k as usize % TYPES.len()];
    let headers = [("Host", &b"h"[..]), ("Content-Type", ct)];
    let req = Request {
        method: "POST",
        target: b"/",
        version: "HTTP/1.1",
        headers: &headers,
        body: Some(body),
        body_truncated: false,
    };
    assert!(fuzzing::parse_request(&req) <= 4096);
});
