//! Cost of hardening one typical upstream response (fingerprints, security headers, two cookies,
//! a Location to rewrite). Run: `cargo bench -p palisade-headers`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue};
use palisade_headers::Hardening;

fn bench(c: &mut Criterion) {
    let text = "[server]\nhttps = \"off\"\n[[sites]]\nname = \"shop\"\nhosts = [\"shop.example\"]\nupstreams = [\"127.0.0.1:1\"]\n";
    let site = palisade_config::parse(text, std::path::Path::new("b.toml"))
        .unwrap()
        .config
        .sites
        .remove(0);
    let hard = Hardening::new(&site, 443);
    let mut base = HeaderMap::new();
    base.insert("server", HeaderValue::from_static("Apache/2.2.15 (CentOS)"));
    base.insert("x-powered-by", HeaderValue::from_static("PHP/5.6.40"));
    base.insert(
        "content-type",
        HeaderValue::from_static("text/html; charset=UTF-8"),
    );
    base.insert("content-length", HeaderValue::from_static("2048"));
    base.insert("cache-control", HeaderValue::from_static("no-store"));
    let plain = base.clone();
    base.append(
        "set-cookie",
        HeaderValue::from_static("session=0123456789abcdef; path=/"),
    );
    base.append("set-cookie", HeaderValue::from_static("cart=42; path=/"));
    base.insert(
        "location",
        HeaderValue::from_static("http://shop.example/checkout"),
    );

    let mut g = c.benchmark_group("harden");
    g.bench_function("page_no_cookies", |b| {
        b.iter(|| {
            let mut h = plain.clone();
            hard.apply(black_box(&mut h), true);
            h
        })
    });
    g.bench_function("redirect_with_two_cookies", |b| {
        b.iter(|| {
            let mut h = base.clone();
            hard.apply(black_box(&mut h), true);
            h
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
