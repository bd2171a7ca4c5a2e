//! Properties: the limiter never admits more than GCRA allows, and no input makes the parsers or
//! the key extraction panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use palisade_limits::{
    cookie_value, form_value, Clock, Decision, Limiter, LimiterOptions, RateLimitSettings,
    SimpleRequest,
};
use proptest::prelude::*;
use toml::Spanned;

fn sp<T>(v: T) -> Spanned<T> {
    Spanned::new(0..0, v)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Over any schedule, admitted ≤ burst + elapsed / emission interval.
    #[test]
    fn never_admits_more_than_the_quota(
        count in 1u32..50,
        per in prop::sample::select(vec!["s", "min", "hour"]),
        burst in 1i64..20,
        steps in prop::collection::vec((0u64..3_000, 0usize..8), 1..60),
    ) {
        let clock = Clock::fake();
        let l = Limiter::with_options(
            "p",
            &RateLimitSettings {
                key: sp("ip".into()),
                rate: sp(format!("{count}/{per}")),
                burst: Some(sp(burst)),
                mode: None,
            },
            LimiterOptions { max_keys: 16, clock: clock.clone() },
        )
        .unwrap();
        let period = match per { "s" => 1_000_000_000u128, "min" => 60_000_000_000, _ => 3_600_000_000_000 };
        let t = period / u128::from(count);
        let r = SimpleRequest::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        let (mut elapsed, mut admitted) = (0u128, 0u128);
        for (advance_ms, n) in steps {
            clock.advance(Duration::from_millis(advance_ms));
            elapsed += u128::from(advance_ms) * 1_000_000;
            for _ in 0..n {
                match l.check(&r) {
                    Decision::Allow => admitted += 1,
                    Decision::Limited { retry_after, .. } => {
                        prop_assert!(retry_after > Duration::ZERO);
                        prop_assert!(retry_after.as_nanos() <= t);
                    }
                }
            }
            prop_assert!(admitted <= burst as u128 + elapsed / t, "{admitted} admitted in {elapsed} ns");
        }
    }

    #[test]
    fn parsers_and_key_extraction_never_panic(
        key in "[a-z_:.+A-Z0-9-]{0,40}",
        rate in "\\PC{0,12}",
        body in prop::collection::vec(any::<u8>(), 0..200),
        cookie in prop::collection::vec(any::<u8>(), 0..100),
        json in any::<bool>(),
    ) {
        let s = RateLimitSettings { key: sp(key.clone()), rate: sp(rate), burst: None, mode: None };
        let _ = s.validate();
        let _ = cookie_value(&cookie, b"session");
        let _ = form_value(&body, b"username");
        for key in [key.as_str(), "ip+form:username+cookie:session", "json:user.email+header:x-k"] {
            let s = RateLimitSettings { key: sp(key.into()), rate: sp("5/s".into()), burst: None, mode: None };
            if let Ok(l) = Limiter::with_options("p", &s, LimiterOptions { max_keys: 8, clock: Clock::fake() }) {
                let ct = if json { "application/json" } else { "application/x-www-form-urlencoded" };
                let r = SimpleRequest::new(IpAddr::V4(Ipv4Addr::LOCALHOST))
                    .header("cookie", cookie.clone())
                    .body(ct, body.clone());
                let _ = l.check(&r);
            }
        }
    }
}
