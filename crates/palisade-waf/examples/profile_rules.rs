//! Times the engine on a benign request with each rule turned off in turn,
//! to find the expensive rules. `cargo run --release --example profile_rules`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use palisade_waf::{compile, Engine, Request, Verdict, WafSettings, BUILTIN_RULES};
use std::time::Instant;

#[path = "../benches/common/mod.rs"]
mod common;
use common::{
    browser_headers, chrome_headers, get_request, json_cart, text_body, visitor_cookie, wire_size,
    with_cookie, COOKIE, TARGET_2K, VISITORS,
};

/// `MEMO=off`: every value checked afresh (`inspect_uncached`), as on a first sight.
fn memo_off() -> bool {
    std::env::var("MEMO").as_deref() == Ok("off")
}

/// One inspection, through the memo unless `cold`.
fn inspect(e: &Engine, req: &Request<'_>, cold: bool) -> Verdict {
    if cold {
        e.inspect_uncached(req)
    } else {
        e.inspect(req)
    }
}

fn time(settings: &WafSettings, req: &Request<'_>) -> f64 {
    let e = compile(settings).unwrap();
    let cold = memo_off();
    let run = |r: &Request<'_>| inspect(&e, r, cold);
    for _ in 0..2000 {
        std::hint::black_box(run(req));
    }
    let n = 20_000;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(run(req));
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    let headers: Vec<(&str, &[u8])> = vec![
        ("Host", b"shop.example"),
        ("User-Agent", b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
        ("Accept", b"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"),
        ("Accept-Language", b"fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7"),
        ("Accept-Encoding", b"gzip, deflate, br, zstd"),
        ("Referer", b"https://shop.example/collections/chaussures?page=2&sort=price-asc"),
        ("Cookie", b"PHPSESSID=8f14e45fceea167a5a36dedd4bea2543; form_key=Zx81kQpL0aVb3nTe; mage-cache-storage=%7B%7D; section_data_ids=%7B%22cart%22%3A1732190000%7D; _ga=GA1.1.1234567890.1732190000; store=fr; currency=EUR"),
    ];
    let req = Request {
        method: "GET",
        target: b"/catalogsearch/result/index/?q=chaussures+de+randonn%C3%A9e+femme&cat=42&price=50-120&color=bleu&size=38&sort=relevance&dir=desc&page=2&utm_source=newsletter&utm_campaign=black-friday-2026&gclid=Cj0KCQiA1ZGcBhCoARIsAGQ0kkqfY3bN8rV2c5lT1xWmE0x4",
        version: "HTTP/1.1",
        headers: &headers,
        body: None,
        body_truncated: false,
    };
    // `REQ=bench`: the criterion benchmark's 2 KiB GET instead.
    let bench_headers = browser_headers(COOKIE);
    let bench_req = get_request(TARGET_2K, &bench_headers);
    // `REQ=get2k`: the benchmark's 2,048-byte Chrome GET.
    let chrome = chrome_headers();
    assert_eq!(wire_size("GET", TARGET_2K, &chrome), 2048);
    let get2k_req = get_request(TARGET_2K, &chrome);
    // `REQ=body64`: the benchmark's 64 KiB text body.
    let body = text_body(64);
    let mut body_headers = bench_headers.clone();
    body_headers.push(("Content-Type", b"text/plain"));
    let body_req = Request {
        method: "POST",
        target: b"/contact/index/post/",
        version: "HTTP/1.1",
        headers: &body_headers,
        body: Some(&body),
        body_truncated: false,
    };
    // `REQ=json10k`: the benchmark's 10 KiB JSON cart.
    let json = json_cart();
    let mut json_headers = bench_headers.clone();
    json_headers.push(("Content-Type", b"application/json"));
    let json_req = Request {
        method: "POST",
        target: b"/rest/V1/carts/mine/items",
        version: "HTTP/1.1",
        headers: &json_headers,
        body: Some(json.as_bytes()),
        body_truncated: false,
    };
    let req = match std::env::var("REQ").as_deref() {
        Ok("bench") => bench_req,
        Ok("get2k") => get2k_req,
        Ok("body64") => body_req,
        Ok("json10k") => json_req,
        _ => req,
    };
    if let Some(n) = std::env::var("ITER")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        // Fixed work for instruction counting (valgrind --tool=callgrind).
        let e = compile(&WafSettings::default()).unwrap();
        let cold = memo_off();
        // `REQ=visitors`: the 2,048-byte GET of `VISITORS` visitors in turn (the engine bench's
        // `benign_get_2k_new_visitors`).
        if std::env::var("REQ").as_deref() == Ok("visitors") {
            let jars: Vec<Vec<u8>> = (0..VISITORS).map(visitor_cookie).collect();
            let visitors: Vec<_> = jars.iter().map(|j| with_cookie(&chrome, j)).collect();
            for k in 0..n {
                let req = get_request(TARGET_2K, &visitors[k % visitors.len()]);
                std::hint::black_box(inspect(&e, &req, cold));
            }
            return;
        }
        for _ in 0..n {
            std::hint::black_box(inspect(&e, &req, cold));
        }
        return;
    }
    // `OFF=rule,rule`: those rules turned off (to time what they cost).
    let settings: WafSettings = match std::env::var("OFF") {
        Ok(off) => toml::from_str(&format!(
            "rule_modes = [{}]",
            off.split(',')
                .map(|id| format!("{{ rule = \"{id}\", mode = \"off\" }}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .unwrap(),
        Err(_) => WafSettings::default(),
    };
    let base = time(&settings, &req);
    println!("all rules: {base:.0} ns");
    if std::env::var_os("ONLY_BASE").is_some() {
        let e = compile(&settings).unwrap();
        for _ in 0..200_000 {
            std::hint::black_box(e.inspect(&req));
        }
        return;
    }
    let mut ids = Vec::new();
    for (_, text) in BUILTIN_RULES {
        for line in text.lines() {
            if let Some(id) = line.strip_prefix("id = \"") {
                ids.push(id.trim_end_matches('"').to_owned());
            }
        }
    }
    let mut rows = Vec::new();
    for id in ids {
        let s: WafSettings = toml::from_str(&format!(
            "rule_modes = [{{ rule = \"{id}\", mode = \"off\" }}]"
        ))
        .unwrap();
        let t = time(&s, &req);
        rows.push((base - t, id));
    }
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (d, id) in rows.iter().take(15) {
        println!("{id}: saves {d:.0} ns");
    }
}
