//! Fixed-work loop for `perf stat` (cycles and instructions do not depend on the machine's load):
//! `cargo run --release -p palisade-redact --example redact_loop -- typical 200000`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use palisade_redact::Redactor;

const TYPICAL: &str = r#"{"timestamp":"2026-11-21T08:14:05.123456Z","request_id":"3f2a9c7d1e8b4a6f9c0d2e4b6a8c0e1f","site":"shop","route":"product","method":"GET","path":"/catalog/product/view/id/123456","query":"sku=AB-1234-XL&color=blue&qty=2","status":200,"bytes_in":512,"bytes_out":48213,"duration_ms":12.345,"client_ip":"203.0.113.0","user_agent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36","tls":"TLSv1.3","action":"allow"}"#;
const SENSITIVE: &str = r#"{"timestamp":"2026-11-21T08:14:05.123456Z","request_id":"3f2a9c7d1e8b4a6f9c0d2e4b6a8c0e1f","site":"shop","route":"checkout","method":"POST","path":"/checkout/pay","query":"email=john.doe%40example.com&password=hunter2&cc=4111%201111%201111%201111","status":200,"bytes_in":512,"bytes_out":48213,"duration_ms":12.345,"client_ip":"203.0.113.0","user_agent":"Mozilla/5.0 (X11; Linux x86_64)","tls":"TLSv1.3","action":"allow"}"#;

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "typical".into());
    let n: usize = args.next().map(|s| s.parse().unwrap()).unwrap_or(200_000);
    let line = match which.as_str() {
        "sensitive" => SENSITIVE.to_string(),
        "16k" => {
            let mut big = String::new();
            while big.len() + TYPICAL.len() < 16 * 1024 {
                big.push_str(TYPICAL);
                big.push(' ');
            }
            big
        }
        _ => TYPICAL.to_string(),
    };
    let r = Redactor::default();
    let t = std::time::Instant::now();
    let mut total = 0usize;
    for _ in 0..n {
        total += r.redact(black_box(&line)).len();
    }
    let el = t.elapsed();
    println!(
        "{which}: {} bytes, {:.1} ns/line wall ({total})",
        line.len(),
        el.as_nanos() as f64 / n as f64
    );
}
