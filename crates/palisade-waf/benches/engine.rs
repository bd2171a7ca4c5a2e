//! Criterion benchmarks of the WAF engine.
//!
//! `cargo bench -p palisade-waf --bench engine`
//!
//! Results are recorded in `benches/RESULTS.md` with machine and date.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use palisade_waf::{compile, Action, Request, WafSettings};

mod common;
use common::{
    browser_headers, chrome_headers, get_request, json_cart, text_body, visitor_cookie, wire_size,
    with_cookie, COOKIE, TARGET_2K, VISITORS,
};

fn bench(c: &mut Criterion) {
    let engine = compile(&WafSettings::default()).unwrap();
    let headers = browser_headers(COOKIE);
    let size: usize = TARGET_2K.len()
        + headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum::<usize>();

    let get = get_request(TARGET_2K, &headers);
    assert_eq!(
        engine.inspect(&get).action,
        Action::Allow,
        "{:?}",
        engine.inspect(&get)
    );
    percentiles("benign_get", || {
        black_box(engine.inspect(black_box(&get)));
    });
    // The "benign 2 KiB request": Chrome's headers with a grown cookie jar, 2,048 bytes
    // on the wire. (`benign_get` above is the older, smaller Firefox request, 1.4 KiB, kept so
    // that its figures stay comparable with the earlier ones in RESULTS.md.)
    let chrome = chrome_headers();
    let get_2k = get_request(TARGET_2K, &chrome);
    let size_2k = wire_size("GET", TARGET_2K, &chrome);
    assert_eq!(
        size_2k, 2048,
        "the 2 KiB GET is {size_2k} bytes on the wire"
    );
    assert_eq!(
        engine.inspect(&get_2k).action,
        Action::Allow,
        "{:?}",
        engine.inspect(&get_2k)
    );
    // The same request three ways. `benign_get_2k`: a repeat visitor, every header and cookie
    // already in this thread's memo. `benign_get_2k_uncached`: every value checked afresh, as
    // on a thread that has seen none of them. `benign_get_2k_new_visitors`: 4,096 visitors of the
    // same browser, each with their own session, analytics ids and visit times (~12 of the 19
    // cookie values), taken in turn: the browser's headers and the cookie names repeat, the
    // visitors' values do not.
    percentiles("benign_get_2k", || {
        black_box(engine.inspect(black_box(&get_2k)));
    });
    percentiles("benign_get_2k_uncached", || {
        black_box(engine.inspect_uncached(black_box(&get_2k)));
    });
    let jars: Vec<Vec<u8>> = (0..VISITORS).map(visitor_cookie).collect();
    let visitors: Vec<Vec<(&str, &[u8])>> = jars.iter().map(|j| with_cookie(&chrome, j)).collect();
    for v in &visitors {
        assert_eq!(wire_size("GET", TARGET_2K, v), 2048);
        let verdict = engine.inspect(&get_request(TARGET_2K, v));
        assert_eq!(verdict.action, Action::Allow, "{verdict:?}");
    }
    let mut turn = 0usize;
    let mut next_visitor = || {
        turn = (turn + 1) % visitors.len();
        get_request(TARGET_2K, &visitors[turn])
    };
    percentiles("benign_get_2k_new_visitors", || {
        let req = next_visitor();
        black_box(engine.inspect(black_box(&req)));
    });
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Bytes(size as u64));
    g.bench_function(BenchmarkId::new("benign_get", size), |b| {
        b.iter(|| engine.inspect(black_box(&get)))
    });
    g.throughput(Throughput::Bytes(size_2k as u64));
    g.bench_function(BenchmarkId::new("benign_get_2k", size_2k), |b| {
        b.iter(|| engine.inspect(black_box(&get_2k)))
    });
    g.bench_function(BenchmarkId::new("benign_get_2k_uncached", size_2k), |b| {
        b.iter(|| engine.inspect_uncached(black_box(&get_2k)))
    });
    g.bench_function(
        BenchmarkId::new("benign_get_2k_new_visitors", size_2k),
        |b| {
            b.iter(|| {
                let req = next_visitor();
                engine.inspect(black_box(&req))
            })
        },
    );

    let form = b"form_key=Zx81kQpL0aVb3nTe&firstname=Fran%C3%A7oise&lastname=O%27Reilly&email=francoise.oreilly%40example.fr&telephone=%2B33+6+12+34+56+78&street%5B0%5D=12+rue+de+l%27%C3%89glise&street%5B1%5D=B%C3%A2timent+B%2C+3e+%C3%A9tage&city=Saint-%C3%89tienne&postcode=42000&country_id=FR&region=Loire&company=Caf%C3%A9+%26+Th%C3%A9+SARL&vat_id=FR12345678901&comment=Livraison+apr%C3%A8s+18h+svp%2C+sonner+2+fois+%28code+1234%29";
    let mut form_headers = headers.clone();
    form_headers.push(("Content-Type", b"application/x-www-form-urlencoded"));
    let post = Request {
        method: "POST",
        target: b"/checkout/onepage/saveBilling/",
        version: "HTTP/1.1",
        headers: &form_headers,
        body: Some(form),
        body_truncated: false,
    };
    assert_eq!(
        engine.inspect(&post).action,
        Action::Allow,
        "{:?}",
        engine.inspect(&post)
    );
    g.bench_function("benign_form_post", |b| {
        b.iter(|| engine.inspect(black_box(&post)))
    });

    let json = json_cart();
    let mut json_headers = headers.clone();
    json_headers.push(("Content-Type", b"application/json"));
    let jreq = Request {
        method: "POST",
        target: b"/rest/V1/carts/mine/items",
        version: "HTTP/1.1",
        headers: &json_headers,
        body: Some(json.as_bytes()),
        body_truncated: false,
    };
    assert_eq!(
        engine.inspect(&jreq).action,
        Action::Allow,
        "{:?}",
        engine.inspect(&jreq)
    );
    g.throughput(Throughput::Bytes(json.len() as u64));
    g.bench_function("benign_json_10k", |b| {
        b.iter(|| engine.inspect(black_box(&jreq)))
    });

    let attack = Request {
        method: "GET",
        target: b"/catalog/product/view/?id=1%27%20UNION%20ALL%20SELECT%20username%2Cpassword%20FROM%20admin_user--%20-&ref=%3Cscript%3Ealert(document.cookie)%3C%2Fscript%3E",
        version: "HTTP/1.1",
        headers: &headers,
        body: None,
        body_truncated: false,
    };
    assert_eq!(engine.inspect(&attack).action, Action::Block);
    g.throughput(Throughput::Elements(1));
    g.bench_function("attack_get", |b| {
        b.iter(|| engine.inspect(black_box(&attack)))
    });
    g.finish();

    // Linearity: one large text body (inspected as a single raw value, so
    // the value cap on parsed items does not hide the work) at growing sizes.
    let mut g = c.benchmark_group("body_linear");
    g.sample_size(20);
    let mut text_headers = headers.clone();
    text_headers.push(("Content-Type", b"text/plain"));
    for kib in [64usize, 256, 1024] {
        let body = text_body(kib);
        let big = Request {
            method: "POST",
            target: b"/contact/index/post/",
            version: "HTTP/1.1",
            headers: &text_headers,
            body: Some(&body),
            body_truncated: false,
        };
        assert_eq!(
            engine.inspect(&big).action,
            Action::Allow,
            "{:?}",
            engine.inspect(&big)
        );
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("text_body", format!("{kib}KiB")),
            &big,
            |b, r| b.iter(|| engine.inspect(black_box(r))),
        );
    }
    g.finish();
}

/// Criterion reports means and medians; the p99 target needs the tail, so
/// time single calls too (after a warm-up) and print median and p99.
fn percentiles(name: &str, mut f: impl FnMut()) {
    for _ in 0..20_000 {
        f();
    }
    let mut samples: Vec<u128> = (0..200_000)
        .map(|_| {
            let t = std::time::Instant::now();
            f();
            t.elapsed().as_nanos()
        })
        .collect();
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    println!(
        "{name}: single-call latency over {} calls: median {} ns, p90 {} ns, p99 {} ns, p99.9 {} ns",
        samples.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        at(0.999)
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
