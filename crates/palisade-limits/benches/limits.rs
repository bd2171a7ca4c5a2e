//! Cost of one rate-limit decision, locally and in a cluster, and memory per tracked key.
//!
//! Run: `cargo bench -p palisade-limits --bench limits` (starts its own `redis-server` for the
//! cluster groups; they are skipped when it is not installed). The memory lines are printed, not
//! timed.
//!
//! Results, 2026-11-21, `cargo bench -p palisade-limits --bench limits`, 2 shared vCPUs (AMD
//! EPYC, KVM, Linux; load average 3.7–4.5 from other builds during the runs), rustc 1.95,
//! redis-server 7.0.15 on loopback. Criterion medians of the last two runs of the same code
//! (the spread is the shared machine, not the code):
//!
//! | case                                            | per decision    |
//! |-------------------------------------------------|-----------------|
//! | local/ip (10 k clients taking turns)            | 78–85 ns        |
//! | local/ip_prefix                                 | 107–128 ns      |
//! | local/composite `ip+form:username` (SHA-256)    | 352–521 ns      |
//! | local/`json:user.email` (parses the body)       | 644–791 ns      |
//! | local/new_key (insert into a growing table)     | 0.56–0.94 µs    |
//! | cluster/sync/ip `check` (sync loop running)     | 103–175 ns      |
//! | cluster/exact/ip `check_async` (Lua round trip) | 96–123 µs       |
//! | 100 k checks, then `retain_recent` over them    | 11–13 ms        |
//!
//! Memory at 1 000 000 keys: 52 445 696 bytes of tables (52 B/key) for both `ip` and
//! `ip+form:username` keys; RSS grew 39–48 B/key (untouched table pages are not resident).
//!
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/redis.rs"]
mod redis_support;

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use palisade_limits::{
    Cluster, ClusterSettings, Limiter, LimiterOptions, RateLimitSettings, SimpleRequest,
};
use toml::Spanned;

fn sp<T>(v: T) -> Spanned<T> {
    Spanned::new(0..0, v)
}

fn limiter(key: &str, rate: &str) -> Limiter {
    Limiter::new(
        "shop/login",
        &RateLimitSettings {
            key: sp(key.into()),
            rate: sp(rate.into()),
            burst: None,
            mode: None,
        },
    )
    .unwrap()
}

/// 10 000 clients taking turns.
fn clients() -> Vec<SimpleRequest> {
    (0..10_000u32)
        .map(|i| SimpleRequest::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i * 7))))
        .collect()
}

fn local(c: &mut Criterion) {
    let mut g = c.benchmark_group("local");
    let reqs = clients();
    for key in ["ip", "ip_prefix"] {
        let l = limiter(key, "1000/s");
        let mut i = 0;
        g.bench_function(key, |b| {
            b.iter(|| {
                i = (i + 1) % reqs.len();
                black_box(l.check(&reqs[i]))
            })
        });
    }
    let form: Vec<SimpleRequest> = reqs
        .iter()
        .enumerate()
        .map(|(n, r)| {
            r.clone().body(
                "application/x-www-form-urlencoded",
                format!("username=customer{n}%40example.com&password=hunter2&form_key=abc"),
            )
        })
        .collect();
    let l = limiter("ip+form:username", "1000/s");
    let mut i = 0;
    g.bench_function("composite ip+form:username", |b| {
        b.iter(|| {
            i = (i + 1) % form.len();
            black_box(l.check(&form[i]))
        })
    });
    let json: Vec<SimpleRequest> = reqs
        .iter()
        .enumerate()
        .map(|(n, r)| {
            r.clone().body(
                "application/json",
                format!(r#"{{"user":{{"email":"customer{n}@example.com","password":"x"}}}}"#),
            )
        })
        .collect();
    let l = limiter("json:user.email", "1000/s");
    let mut i = 0;
    g.bench_function("json:user.email", |b| {
        b.iter(|| {
            i = (i + 1) % json.len();
            black_box(l.check(&json[i]))
        })
    });
    // A fresh key each time (insert path), in a table kept well below its cap.
    let l = Limiter::with_options(
        "shop/new",
        &RateLimitSettings {
            key: sp("ip".into()),
            rate: sp("5/min".into()),
            burst: None,
            mode: None,
        },
        LimiterOptions {
            max_keys: 50_000_000,
            ..LimiterOptions::default()
        },
    )
    .unwrap();
    let mut n: u32 = 0;
    let mut r = SimpleRequest::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    g.bench_function("new_key", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            r.client_ip = Some(IpAddr::V4(Ipv4Addr::from(n)));
            black_box(l.check(&r))
        })
    });
    g.finish();
}

fn cluster(c: &mut Criterion) {
    let Some(redis) = redis_support::start() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let reqs = clients();
    let mut g = c.benchmark_group("cluster");
    for mode in ["sync", "exact"] {
        let cl = Cluster::new(&ClusterSettings {
            redis: sp(redis.url()),
            sync_interval: Some(sp("250ms".into())),
            mode: Some(sp(mode.into())),
            prefix: Some(format!("bench-{mode}")),
        })
        .unwrap();
        let l = limiter("ip", "1000/s");
        cl.attach_limiter(&l);
        rt.block_on(cl.sync_now()).unwrap();
        let task = rt.spawn(cl.clone().run());
        let mut i = 0;
        if mode == "sync" {
            // The hot path: local decision + one counter bump; the sync loop runs beside it.
            g.bench_function("sync/ip check", |b| {
                b.iter(|| {
                    i = (i + 1) % reqs.len();
                    black_box(l.check(&reqs[i]))
                })
            });
        } else {
            g.measurement_time(Duration::from_secs(5));
            g.bench_function("exact/ip check_async (Redis round trip)", |b| {
                b.iter(|| {
                    i = (i + 1) % reqs.len();
                    black_box(rt.block_on(l.check_async(&reqs[i])))
                })
            });
        }
        assert!(!cl.degraded(), "redis went away during the bench");
        task.abort();
    }
    g.finish();
    drop(redis);
}

/// Memory per tracked key at 1 M keys (table estimate and RSS growth), printed once.
fn memory(c: &mut Criterion) {
    let rss = || -> Option<usize> {
        let s = std::fs::read_to_string("/proc/self/status").ok()?;
        let l = s.lines().find(|l| l.starts_with("VmRSS:"))?;
        Some(l.split_whitespace().nth(1)?.parse::<usize>().ok()? * 1024)
    };
    for key in ["ip", "ip+form:username"] {
        let l = limiter(key, "5/min");
        let before = rss();
        let mut r = SimpleRequest::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        for n in 0..1_000_000u32 {
            r.client_ip = Some(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)));
            l.check(&r);
        }
        let after = rss();
        let s = l.stats();
        let grew = after.zip(before).map(|(a, b)| a.saturating_sub(b));
        println!(
            "memory/{key}: {} keys, table estimate {} bytes ({} B/key), RSS grew {:?} bytes ({:?} B/key)",
            s.keys,
            s.memory_bytes,
            s.memory_bytes / s.keys.max(1),
            grew,
            grew.map(|g| g / s.keys.max(1))
        );
    }
    // Keep criterion's report shape: time the housekeeping pass over 1 M idle keys.
    let l = limiter("ip", "1000/s");
    let mut r = SimpleRequest::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    c.bench_function("memory/retain_recent over 100k keys", |b| {
        b.iter(|| {
            for n in 0..100_000u32 {
                r.client_ip = Some(IpAddr::V4(Ipv4Addr::from(n)));
                l.check(&r);
            }
            l.retain_recent();
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3));
    targets = local, cluster, memory
}
criterion_main!(benches);
