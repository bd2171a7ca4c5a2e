//! Two gateway instances (each a `Cluster` + `Limiter` + `Bans`) sharing one real `redis-server`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/redis.rs"]
mod redis_support;

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use palisade_limits::{
    Bans, Cluster, ClusterOptions, ClusterSettings, Decision, EscalationSettings, Limiter,
    RateLimitSettings, SimpleRequest,
};
use toml::Spanned;

fn sp<T>(v: T) -> Spanned<T> {
    Spanned::new(0..0, v)
}

struct Instance {
    cluster: Cluster,
    limiter: Limiter,
    bans: Bans,
}

fn instance(url: &str, prefix: &str, mode: &str, interval: &str) -> Instance {
    // A generous exact-mode timeout: a loaded CI machine must not turn a slow answer into a
    // local decision and a flaky assertion.
    let cluster = Cluster::with_options(
        &ClusterSettings {
            redis: sp(url.to_owned()),
            sync_interval: Some(sp(interval.to_owned())),
            mode: Some(sp(mode.to_owned())),
            prefix: Some(prefix.to_owned()),
        },
        ClusterOptions {
            exact_timeout: Duration::from_secs(2),
            ..ClusterOptions::default()
        },
    )
    .unwrap();
    let limiter = Limiter::new(
        "shop/login",
        &RateLimitSettings {
            key: sp("ip".into()),
            rate: sp("5/min".into()),
            burst: None,
            mode: None,
        },
    )
    .unwrap();
    let bans = Bans::new(&EscalationSettings {
        violations: sp(2),
        window: sp("10m".into()),
        ban: sp("15m".into()),
        max_ban: None,
        statuses: vec![],
    })
    .unwrap();
    assert!(cluster.attach_limiter(&limiter));
    assert!(cluster.attach_bans(&bans));
    Instance {
        cluster,
        limiter,
        bans,
    }
}

fn req(ip: &str) -> SimpleRequest {
    SimpleRequest::new(ip.parse().unwrap())
}

fn allowed(d: Decision) -> bool {
    d == Decision::Allow
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_mode_shares_limits_and_bans_between_instances() {
    let Some(redis) = redis_support::start() else {
        return;
    };
    let a = instance(&redis.url(), "t-sync", "sync", "250ms");
    let b = instance(&redis.url(), "t-sync", "sync", "250ms");
    assert!(a.cluster.degraded(), "not connected before the first sync");
    a.cluster.sync_now().await.unwrap();
    b.cluster.sync_now().await.unwrap();
    assert!(!a.cluster.degraded());

    // A client uses its whole burst on instance A.
    let x = req("192.0.2.10");
    for _ in 0..5 {
        assert!(allowed(a.limiter.check(&x)));
    }
    assert!(a.limiter.check(&x).blocks());
    a.cluster.sync_now().await.unwrap();

    // Instance B learns about the key on the first sync after it sees it (at most one interval):
    // the first request may pass, every one after the sync is limited.
    let first_on_b = allowed(b.limiter.check(&x));
    b.cluster.sync_now().await.unwrap();
    match b.limiter.check(&x) {
        Decision::Limited { retry_after, .. } => {
            assert!(retry_after > Duration::from_secs(10), "{retry_after:?}");
        }
        d => panic!("client limited on A must be limited on B, got {d:?}"),
    }
    // And B's extra admission went back to A too.
    a.cluster.sync_now().await.unwrap();
    assert!(a.limiter.check(&x).blocks());
    eprintln!("first request on B before its sync allowed: {first_on_b}");
    // Other clients are unaffected.
    assert!(allowed(b.limiter.check(&req("192.0.2.11"))));

    // A ban recorded on A is visible on B after one sync of each.
    let now = SystemTime::now();
    let ip: IpAddr = "198.51.100.7".parse().unwrap();
    assert!(a.bans.record_violation(ip, now).is_none());
    let ban = a
        .bans
        .record_violation(ip, now)
        .expect("second violation bans");
    assert_eq!(b.bans.is_banned(ip, now), None);
    a.cluster.sync_now().await.unwrap();
    b.cluster.sync_now().await.unwrap();
    assert!(b.bans.is_banned(ip, now).is_some());
    assert_eq!(
        b.bans.list().iter().map(|i| i.until).collect::<Vec<_>>(),
        vec![ban.until]
    );

    // Violations add up across instances: one on A and one on B make a ban (threshold 2).
    let spread: IpAddr = "198.51.100.8".parse().unwrap();
    assert!(a.bans.record_violation(spread, now).is_none());
    assert!(b.bans.record_violation(spread, now).is_none());
    a.cluster.sync_now().await.unwrap();
    b.cluster.sync_now().await.unwrap();
    assert!(
        b.bans.is_banned(spread, now).is_some(),
        "B's increment reached the threshold"
    );
    a.cluster.sync_now().await.unwrap();
    assert!(a.bans.is_banned(spread, now).is_some());

    // Lifting on B lifts it on A.
    assert!(b.bans.lift(ip));
    b.cluster.sync_now().await.unwrap();
    a.cluster.sync_now().await.unwrap();
    assert_eq!(a.bans.is_banned(ip, SystemTime::now()), None);
    assert_eq!(a.cluster.redis_errors(), 0);
}

/// Two instances both serving one client for two seconds admit about the limit, not twice it:
/// what one admits on stale state is repaid on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_mode_enforces_the_rate_cluster_wide_over_time() {
    let Some(redis) = redis_support::start() else {
        return;
    };
    let pair: Vec<(Cluster, Limiter)> = (0..2)
        .map(|_| {
            let c = Cluster::new(&ClusterSettings {
                redis: sp(redis.url()),
                sync_interval: Some(sp("50ms".into())),
                mode: None,
                prefix: Some("t-rate".into()),
            })
            .unwrap();
            let l = Limiter::new(
                "shop/api",
                &RateLimitSettings {
                    key: sp("ip".into()),
                    rate: sp("10/s".into()),
                    burst: Some(sp(2)),
                    mode: None,
                },
            )
            .unwrap();
            c.attach_limiter(&l);
            (c, l)
        })
        .collect();
    for (c, _) in &pair {
        c.sync_now().await.unwrap();
    }
    let x = req("192.0.2.40");
    let started = std::time::Instant::now();
    let mut admitted = 0u32;
    let mut last_sync = started;
    while started.elapsed() < Duration::from_secs(2) {
        for (_, l) in &pair {
            if allowed(l.check(&x)) {
                admitted += 1;
            }
        }
        if last_sync.elapsed() >= Duration::from_millis(50) {
            for (c, _) in &pair {
                c.sync_now().await.unwrap();
            }
            last_sync = std::time::Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // One limiter alone would admit 2 + 10/s × 2 s = 22; two unsynchronised ones about 44.
    eprintln!("admitted by two instances in 2 s: {admitted}");
    assert!((15..=32).contains(&admitted), "{admitted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_mode_limits_across_instances_immediately() {
    let Some(redis) = redis_support::start() else {
        return;
    };
    let a = instance(&redis.url(), "t-exact", "exact", "250ms");
    let b = instance(&redis.url(), "t-exact", "exact", "250ms");
    a.cluster.sync_now().await.unwrap();
    b.cluster.sync_now().await.unwrap();
    let x = req("192.0.2.20");
    // 3 on A, 2 on B: the burst of 5 is shared exactly.
    for _ in 0..3 {
        assert!(allowed(a.limiter.check_async(&x).await));
    }
    for _ in 0..2 {
        assert!(allowed(b.limiter.check_async(&x).await));
    }
    match b.limiter.check_async(&x).await {
        Decision::Limited { retry_after, .. } => {
            assert!(
                retry_after > Duration::from_secs(10) && retry_after <= Duration::from_secs(12)
            );
        }
        d => panic!("{d:?}"),
    }
    assert!(a.limiter.check_async(&x).await.blocks());
    assert!(allowed(a.limiter.check_async(&req("192.0.2.21")).await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_degrades_to_local_limits_and_recovers() {
    let Some(mut redis) = redis_support::start() else {
        return;
    };
    let a = instance(&redis.url(), "t-outage", "sync", "50ms");
    let e = instance(&redis.url(), "t-outage", "exact", "50ms");
    let sync_loop = tokio::spawn(a.cluster.clone().run());
    let exact_loop = tokio::spawn(e.cluster.clone().run());
    wait_until(|| !a.cluster.degraded() && !e.cluster.degraded()).await;

    // A ban made before the outage...
    let z: IpAddr = "198.51.100.99".parse().unwrap();
    a.bans.record_violation(z, SystemTime::now());
    a.bans.record_violation(z, SystemTime::now()).unwrap();
    wait_until(|| e.bans.is_banned(z, SystemTime::now()).is_some()).await;

    redis.kill();
    // Decisions keep coming, locally, with the limit still enforced per instance.
    let x = req("192.0.2.30");
    let y = req("192.0.2.31");
    for _ in 0..5 {
        assert!(allowed(a.limiter.check(&x)));
    }
    assert!(a.limiter.check(&x).blocks());
    let mut exact = Vec::new();
    for _ in 0..6 {
        exact.push(allowed(e.limiter.check_async(&y).await));
    }
    assert_eq!(exact, vec![true, true, true, true, true, false]);
    wait_until(|| a.cluster.degraded() && e.cluster.degraded()).await;
    assert!(a.cluster.redis_errors() > 0);
    assert!(e.cluster.redis_errors() > 0);

    // Redis returns: the loops reconnect by themselves.
    redis.restart();
    wait_until(|| !a.cluster.degraded() && !e.cluster.degraded()).await;
    let errors = a.cluster.redis_errors();
    a.cluster.sync_now().await.unwrap();
    assert_eq!(a.cluster.redis_errors(), errors);
    // ...survives a Redis that came back empty: the instances push it again, and it is not
    // mistaken for a lift.
    let late = instance(&redis.url(), "t-outage", "sync", "50ms");
    late.cluster.sync_now().await.unwrap();
    wait_until(|| {
        sync_in_background(&late.cluster);
        late.bans.is_banned(z, SystemTime::now()).is_some()
    })
    .await;
    assert!(a.bans.is_banned(z, SystemTime::now()).is_some());
    assert!(e.bans.is_banned(z, SystemTime::now()).is_some());
    // What A admitted locally during the outage reached the cluster after it: the late instance
    // learns that x used its burst on its first sync for x.
    assert!(allowed(late.limiter.check(&x)));
    late.cluster.sync_now().await.unwrap();
    assert!(late.limiter.check(&x).blocks());
    assert!(allowed(e.limiter.check_async(&req("192.0.2.32")).await));
    sync_loop.abort();
    exact_loop.abort();
}

/// Runs one sync round of `cluster` in the background (for instances without a loop).
fn sync_in_background(cluster: &Cluster) {
    let c = cluster.clone();
    tokio::spawn(async move {
        let _ = c.sync_now().await;
    });
}

/// Waits (bounded) for the background sync loop to reach a state.
async fn wait_until(cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached in 15 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
