//! Redaction cost per log line: `cargo bench -p palisade-redact --bench redact`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use std::io::Write;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use palisade_redact::{RedactingMakeWriter, Redactor};
use tracing_subscriber::fmt::MakeWriter;

/// A typical access-log line (~400 bytes) without anything sensitive.
const TYPICAL: &str = r#"{"timestamp":"2026-11-21T08:14:05.123456Z","request_id":"3f2a9c7d1e8b4a6f9c0d2e4b6a8c0e1f","site":"shop","route":"product","method":"GET","path":"/catalog/product/view/id/123456","query":"sku=AB-1234-XL&color=blue&qty=2","status":200,"bytes_in":512,"bytes_out":48213,"duration_ms":12.345,"client_ip":"203.0.113.0","user_agent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36","tls":"TLSv1.3","action":"allow"}"#;

/// The same shape carrying a card number, a password and an e-mail.
const SENSITIVE: &str = r#"{"timestamp":"2026-11-21T08:14:05.123456Z","request_id":"3f2a9c7d1e8b4a6f9c0d2e4b6a8c0e1f","site":"shop","route":"checkout","method":"POST","path":"/checkout/pay","query":"email=john.doe%40example.com&password=hunter2&cc=4111%201111%201111%201111","status":200,"bytes_in":512,"bytes_out":48213,"duration_ms":12.345,"client_ip":"203.0.113.0","user_agent":"Mozilla/5.0 (X11; Linux x86_64)","tls":"TLSv1.3","action":"allow"}"#;

fn bench(c: &mut Criterion) {
    let r = Redactor::default();
    assert!(matches!(r.redact(TYPICAL), std::borrow::Cow::Borrowed(_)));
    let red = r.redact(SENSITIVE);
    assert!(!red.contains("hunter2") && !red.contains("john.doe") && !red.contains("4111%20"));

    // 16 KiB: typical lines glued together (benign)
    let mut big = String::new();
    while big.len() + TYPICAL.len() < 16 * 1024 {
        big.push_str(TYPICAL);
        big.push(' ');
    }

    let mut g = c.benchmark_group("redact");
    g.throughput(Throughput::Elements(1));
    g.bench_function("typical_400B_clean", |b| {
        b.iter(|| r.redact(black_box(TYPICAL)).len())
    });
    g.bench_function("card_password_email_400B", |b| {
        b.iter(|| r.redact(black_box(SENSITIVE)).len())
    });
    g.bench_function("benign_16KiB", |b| {
        b.iter(|| r.redact(black_box(&big)).len())
    });
    // the whole choke point: one event written through the MakeWriter into a sink
    let mw = RedactingMakeWriter::new(std::io::sink, Arc::new(Redactor::default()));
    let line = format!("{TYPICAL}\n");
    g.bench_function("make_writer_typical_400B", |b| {
        b.iter(|| {
            let mut w = mw.make_writer();
            w.write_all(black_box(line.as_bytes())).unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
