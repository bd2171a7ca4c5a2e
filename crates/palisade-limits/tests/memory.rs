//! Memory per tracked key, measured at 1 M keys (its own test binary, so RSS is ours alone).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr};

use palisade_limits::{Limiter, LimiterOptions, RateLimitSettings, SimpleRequest};
use toml::Spanned;

/// Resident set size in bytes (Linux; `None` elsewhere).
fn rss() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[test]
fn one_million_keys_stay_under_200_bytes_each_and_the_cap_holds() {
    const KEYS: u32 = 1_000_000;
    let limiter = Limiter::with_options(
        "shop/login",
        &RateLimitSettings {
            key: Spanned::new(0..0, "ip".into()),
            rate: Spanned::new(0..0, "5/hour".into()),
            burst: None,
            mode: None,
        },
        LimiterOptions {
            max_keys: KEYS as usize,
            ..LimiterOptions::default()
        },
    )
    .unwrap();
    let mut req = SimpleRequest::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let before = rss();
    for i in 0..KEYS {
        req.client_ip = Some(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)));
        limiter.check(&req);
    }
    let after = rss();
    let stats = limiter.stats();
    assert_eq!(stats.keys, KEYS as usize);
    let estimate = stats.memory_bytes / stats.keys;
    eprintln!(
        "1M keys: table estimate {} bytes ({} bytes/key)",
        stats.memory_bytes, estimate
    );
    assert!(estimate <= 200, "{estimate} bytes per key (estimate)");
    if let (Some(b), Some(a)) = (before, after) {
        let per_key = a.saturating_sub(b) / KEYS as usize;
        eprintln!(
            "1M keys: RSS grew {} bytes ({per_key} bytes/key)",
            a.saturating_sub(b)
        );
        assert!(per_key <= 200, "{per_key} bytes per key (RSS)");
    }

    // 200 000 more clients while all 1 M are still active: the table does not grow, the
    // newcomers are limited in the shared overflow buckets.
    for i in 0..200_000u32 {
        req.client_ip = Some(IpAddr::V4(Ipv4Addr::from(0x6400_0000 + i)));
        limiter.check(&req);
    }
    let stats = limiter.stats();
    assert!(stats.keys <= KEYS as usize, "{}", stats.keys);
    assert!(stats.overflowed >= 190_000, "{}", stats.overflowed);
}
