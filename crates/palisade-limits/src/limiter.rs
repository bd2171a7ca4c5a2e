//! One keyed GCRA limiter per route.

use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use governor::clock::Clock as _;
use governor::middleware::NoOpMiddleware;
use governor::{Quota, RateLimiter};

use crate::clock::Clock;
use crate::cluster::ClusterShared;
use crate::config::{
    parse_burst, parse_mode, parse_rate, LimitMode, LimitsConfigError, Rate, RateLimitSettings,
};
use crate::key::{KeySource, KeySpec, LimitKey};
use crate::store::{KeyStore, StoreRef};

/// Default hard cap on keys tracked by one limiter (≈ 30–57 MB at the cap, see the crate docs).
pub const DEFAULT_MAX_KEYS: usize = 1_000_000;

/// The outcome of one rate-limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Under the limit.
    Allow,
    /// Over the limit. `retry_after` is when the next cell becomes available (send it as
    /// `Retry-After`, rounded up to whole seconds). With `detect_only` the gateway logs and
    /// counts but lets the request through.
    Limited {
        /// Time until one more request would be allowed.
        retry_after: Duration,
        /// The route is in `detect` mode.
        detect_only: bool,
    },
}

impl Decision {
    /// `true` when the gateway must answer 429.
    pub fn blocks(&self) -> bool {
        matches!(
            self,
            Decision::Limited {
                detect_only: false,
                ..
            }
        )
    }
    /// The `Retry-After` value in whole seconds, rounded up (at least 1), when limited.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Decision::Allow => None,
            Decision::Limited { retry_after, .. } => {
                let s = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                Some(s.max(1))
            }
        }
    }
}

/// Options that are not part of the TOML settings.
#[derive(Debug, Clone)]
pub struct LimiterOptions {
    /// Hard cap on tracked keys (default [`DEFAULT_MAX_KEYS`]).
    pub max_keys: usize,
    /// Time source (default [`Clock::real`]; tests use [`Clock::fake`]).
    pub clock: Clock,
}

impl Default for LimiterOptions {
    fn default() -> Self {
        Self {
            max_keys: DEFAULT_MAX_KEYS,
            clock: Clock::real(),
        }
    }
}

/// Counters of one limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LimiterStats {
    /// Keys currently tracked.
    pub keys: usize,
    /// Estimated bytes held by the key tables.
    pub memory_bytes: usize,
    /// Decisions taken in a shared overflow bucket because the table was full.
    pub overflowed: u64,
    /// Allowed-request counts that could not be queued for the cluster (queue full).
    pub sync_dropped: u64,
}

type Gov = RateLimiter<LimitKey, StoreRef, Clock, NoOpMiddleware<Duration>>;

/// A keyed rate limiter for one route: `Send + Sync`, cheap to clone (shared state).
#[derive(Clone)]
pub struct Limiter {
    pub(crate) inner: Arc<LimiterInner>,
}

pub(crate) struct LimiterInner {
    pub(crate) id: String,
    spec: KeySpec,
    mode: LimitMode,
    rate: Rate,
    burst: u32,
    /// Emission interval (one cell).
    pub(crate) t: Duration,
    /// Burst tolerance: `t * (burst - 1)`.
    pub(crate) tau: Duration,
    gov: Gov,
    pub(crate) store: Arc<KeyStore>,
    pub(crate) cluster: OnceLock<Arc<ClusterShared>>,
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("id", &self.inner.id)
            .field("key", &self.inner.spec)
            .field("rate", &self.inner.rate)
            .field("burst", &self.inner.burst)
            .field("mode", &self.inner.mode)
            .finish()
    }
}

impl Limiter {
    /// Builds the limiter of route `id` (e.g. `"shop/login"`; it also names the route's keys in
    /// Redis) with the default options.
    pub fn new(id: &str, settings: &RateLimitSettings) -> Result<Self, LimitsConfigError> {
        Self::with_options(id, settings, LimiterOptions::default())
    }

    /// Builds a limiter with explicit options (key cap, clock).
    pub fn with_options(
        id: &str,
        settings: &RateLimitSettings,
        options: LimiterOptions,
    ) -> Result<Self, LimitsConfigError> {
        let spec = KeySpec::parse(&settings.key)?;
        let rate = parse_rate(&settings.rate)?;
        let burst = parse_burst(settings.burst.as_ref(), rate)?;
        let mode = parse_mode(settings.mode.as_ref())?;
        Self::from_parts(id, spec, rate, burst, mode, options).ok_or_else(|| {
            LimitsConfigError::at(
                &settings.rate,
                "rate is too fast (more than one per nanosecond)",
            )
        })
    }

    pub(crate) fn from_parts(
        id: &str,
        spec: KeySpec,
        rate: Rate,
        burst: u32,
        mode: LimitMode,
        options: LimiterOptions,
    ) -> Option<Self> {
        let t = rate.per / rate.count;
        let quota = Quota::with_period(t)?.allow_burst(NonZeroU32::new(burst)?);
        let start = options.clock.now();
        let store = Arc::new(KeyStore::new(
            options.max_keys,
            options.clock.clone(),
            start,
        ));
        let gov = RateLimiter::new(quota, StoreRef(store.clone()), options.clock);
        Some(Self {
            inner: Arc::new(LimiterInner {
                id: id.to_owned(),
                spec,
                mode,
                rate,
                burst,
                t,
                tau: t * (burst - 1),
                gov,
                store,
                cluster: OnceLock::new(),
            }),
        })
    }

    /// `true` when `settings` describe exactly this limiter (same id, key, rate, burst, mode):
    /// on a config reload the gateway can keep this limiter, and its state, instead of building a
    /// new one.
    pub fn is_configured_as(&self, id: &str, settings: &RateLimitSettings) -> bool {
        let Ok(spec) = KeySpec::parse(&settings.key) else {
            return false;
        };
        let Ok(rate) = parse_rate(&settings.rate) else {
            return false;
        };
        id == self.inner.id
            && spec == self.inner.spec
            && rate == self.inner.rate
            && parse_burst(settings.burst.as_ref(), rate).ok() == Some(self.inner.burst)
            && parse_mode(settings.mode.as_ref()).ok() == Some(self.inner.mode)
    }

    /// The route id given at construction.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The parsed key spec.
    pub fn key_spec(&self) -> &KeySpec {
        &self.inner.spec
    }

    /// Reduces a request to its key (hashing header/cookie/form/JSON values).
    pub fn key(&self, req: &dyn KeySource) -> LimitKey {
        self.inner.spec.key_for(self.inner.id.as_bytes(), req)
    }

    /// Decides locally, without waiting on anything: the hot-path call. In cluster `sync` mode
    /// allowed requests are also queued for the next sync.
    pub fn check(&self, req: &dyn KeySource) -> Decision {
        self.check_key(&self.key(req))
    }

    /// [`Limiter::check`] for a key computed with [`Limiter::key`].
    pub fn check_key(&self, key: &LimitKey) -> Decision {
        match self.inner.gov.check_key(key) {
            Ok(()) => Decision::Allow,
            Err(not_until) => Decision::Limited {
                retry_after: not_until.wait_time_from(self.inner.gov.clock().now()),
                detect_only: self.inner.mode == LimitMode::Detect,
            },
        }
    }

    /// Like [`Limiter::check`], but when the limiter is attached to a cluster in `exact` mode the
    /// decision is taken by one atomic Lua script in Redis (one round trip, bounded by a short
    /// timeout). Without a cluster, in `sync` mode, or while Redis is unreachable, this is
    /// [`Limiter::check`]. The request is read before the first `.await`, so the future holds no
    /// borrow of it.
    pub fn check_async(
        &self,
        req: &dyn KeySource,
    ) -> impl Future<Output = Decision> + Send + 'static {
        let key = self.key(req);
        let this = self.clone();
        async move {
            if let Some(cluster) = this.inner.cluster.get() {
                if let Some(d) = cluster.exact_decision(&this, &key).await {
                    return d;
                }
            }
            this.check_key(&key)
        }
    }

    pub(crate) fn mode(&self) -> LimitMode {
        self.inner.mode
    }

    /// Drops keys whose state equals a fresh key's and shrinks sparse tables. Call periodically
    /// (every few seconds); the cap also triggers it for a full shard.
    pub fn retain_recent(&self) {
        self.inner.store.retain_recent();
    }

    /// Keys currently tracked.
    pub fn len(&self) -> usize {
        self.inner.store.len()
    }

    /// `true` when no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counters and memory estimate.
    pub fn stats(&self) -> LimiterStats {
        LimiterStats {
            keys: self.len(),
            memory_bytes: self.inner.store.memory_bytes(),
            overflowed: self.inner.store.overflowed.load(Ordering::Relaxed),
            sync_dropped: self.inner.store.dirty_dropped.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::SimpleRequest;
    use std::net::IpAddr;
    use toml::Spanned;

    fn settings(
        key: &str,
        rate: &str,
        burst: Option<i64>,
        mode: Option<&str>,
    ) -> RateLimitSettings {
        RateLimitSettings {
            key: Spanned::new(0..0, key.to_owned()),
            rate: Spanned::new(0..0, rate.to_owned()),
            burst: burst.map(|b| Spanned::new(0..0, b)),
            mode: mode.map(|m| Spanned::new(0..0, m.to_owned())),
        }
    }

    fn limiter(key: &str, rate: &str, burst: Option<i64>, max_keys: usize) -> (Limiter, Clock) {
        let clock = Clock::fake();
        let l = Limiter::with_options(
            "test/route",
            &settings(key, rate, burst, None),
            LimiterOptions {
                max_keys,
                clock: clock.clone(),
            },
        )
        .unwrap();
        (l, clock)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn req(s: &str) -> SimpleRequest {
        SimpleRequest::new(ip(s))
    }

    /// (request, expected) rows checked in order.
    fn check(l: &Limiter, rows: &[(&SimpleRequest, bool)]) {
        for (i, (r, allowed)) in rows.iter().enumerate() {
            let d = l.check(*r);
            assert_eq!(d == Decision::Allow, *allowed, "row {i}: {d:?}");
        }
    }

    #[test]
    fn five_per_minute_sixth_is_limited_with_retry_after() {
        let (l, clock) = limiter("ip", "5/min", None, 1000);
        let a = req("192.0.2.1");
        for _ in 0..5 {
            assert_eq!(l.check(&a), Decision::Allow);
        }
        assert_eq!(
            l.check(&a),
            Decision::Limited {
                retry_after: Duration::from_secs(12),
                detect_only: false
            }
        );
        assert_eq!(l.check(&a).retry_after_secs(), Some(12));
        assert_eq!(Decision::Allow.retry_after_secs(), None);
        clock.advance(Duration::from_millis(4_500));
        assert_eq!(l.check(&a).retry_after_secs(), Some(8), "7.5 s rounds up");
        clock.advance(Duration::from_millis(500));
        match l.check(&a) {
            Decision::Limited { retry_after, .. } => {
                assert_eq!(retry_after, Duration::from_secs(7))
            }
            d => panic!("{d:?}"),
        }
        clock.advance(Duration::from_secs(7));
        assert_eq!(l.check(&a), Decision::Allow);
        assert!(l.check(&a).blocks());
    }

    #[test]
    fn burst_is_independent_of_count() {
        let (l, clock) = limiter("ip", "10/s", Some(2), 1000);
        let a = req("192.0.2.1");
        check(&l, &[(&a, true), (&a, true), (&a, false)]);
        clock.advance(Duration::from_millis(100));
        check(&l, &[(&a, true), (&a, false)]);
        clock.advance(Duration::from_secs(10));
        check(&l, &[(&a, true), (&a, true), (&a, false)]);
    }

    #[test]
    fn keys_are_independent_and_prefix_keys_are_shared() {
        let (l, _) = limiter("ip", "1/min", None, 1000);
        let (a, b) = (req("192.0.2.1"), req("192.0.2.2"));
        check(&l, &[(&a, true), (&a, false), (&b, true), (&b, false)]);
        let (p, _) = limiter("ip_prefix", "1/min", None, 1000);
        let c = req("198.51.100.1");
        check(&p, &[(&a, true), (&b, false), (&c, true)]);
    }

    #[test]
    fn detect_mode_reports_but_does_not_block() {
        let clock = Clock::fake();
        let l = Limiter::with_options(
            "r",
            &settings("ip", "1/min", None, Some("detect")),
            LimiterOptions {
                max_keys: 10,
                clock,
            },
        )
        .unwrap();
        let a = req("192.0.2.1");
        assert_eq!(l.check(&a), Decision::Allow);
        let d = l.check(&a);
        assert!(matches!(
            d,
            Decision::Limited {
                detect_only: true,
                ..
            }
        ));
        assert!(!d.blocks());
    }

    #[test]
    fn header_and_cookie_keys_fall_back_to_ip() {
        let (l, _) = limiter("header:X-Api-Key", "1/min", None, 1000);
        let k1 = req("192.0.2.1").header("x-api-key", "k1");
        let k2 = req("192.0.2.1").header("x-api-key", "k2");
        let none_a = req("192.0.2.1");
        let none_b = req("192.0.2.9");
        check(
            &l,
            &[
                (&k1, true),
                (&k1, false),
                (&k2, true),
                (&none_a, true),
                (&none_a, false),
                (&none_b, true),
            ],
        );
        let (c, _) = limiter("cookie:session", "1/min", None, 1000);
        let s1 = req("192.0.2.1").header("cookie", "a=b; session=s1");
        let s1_other_ip = req("192.0.2.7").header("cookie", "session=s1");
        check(
            &c,
            &[
                (&s1, true),
                (&s1_other_ip, false),
                (&none_a, true),
                (&none_a, false),
            ],
        );
    }

    #[test]
    fn composite_key_ip_plus_login_name() {
        let (l, _) = limiter("ip+form:username", "2/min", None, 1000);
        let form = "application/x-www-form-urlencoded";
        let alice = req("192.0.2.1").body(form, "username=alice&password=1");
        let alice_again = req("192.0.2.1").body(form, "username=ALICE&password=2");
        let bob = req("192.0.2.1").body(form, "username=bob&password=1");
        let alice_elsewhere = req("192.0.2.2").body(form, "username=alice&password=1");
        let no_name = req("192.0.2.1").body(form, "password=1");
        check(
            &l,
            &[
                (&alice, true),
                (&alice_again, true),
                (&alice, false),
                (&bob, true),
                (&alice_elsewhere, true),
                (&no_name, true),
                (&no_name, true),
                (&no_name, false),
            ],
        );
        let (j, _) = limiter("json:user.email", "1/min", None, 1000);
        let e1 = req("192.0.2.1").body("application/json", r#"{"user":{"email":"a@x"}}"#);
        let e1_other_ip = req("192.0.2.5").body("application/json", r#"{"user":{"email":"A@X"}}"#);
        let broken = req("192.0.2.1").body("application/json", "{not json");
        check(
            &j,
            &[
                (&e1, true),
                (&e1_other_ip, false),
                (&broken, true),
                (&broken, false),
            ],
        );
    }

    #[test]
    fn idle_keys_are_pruned() {
        let (l, clock) = limiter("ip", "10/s", None, 100_000);
        for i in 0..1000u32 {
            let r = SimpleRequest::new(IpAddr::V4(i.into()));
            // Half the keys use their whole burst (TAT one second ahead), half one cell.
            for _ in 0..(if i % 2 == 0 { 10 } else { 1 }) {
                l.check(&r);
            }
        }
        assert_eq!(l.len(), 1000);
        clock.advance(Duration::from_millis(500));
        l.retain_recent();
        assert_eq!(
            l.len(),
            500,
            "only keys whose state equals a fresh key's are dropped"
        );
        clock.advance(Duration::from_millis(600));
        l.retain_recent();
        assert_eq!(l.len(), 0);
    }

    #[test]
    fn cap_prunes_then_overflows_into_network_buckets_never_unlimited() {
        let (l, clock) = limiter("ip", "1/min", None, 100);
        for i in 0..100u32 {
            assert_eq!(
                l.check(&SimpleRequest::new(IpAddr::V4(
                    (0x0a00_0000 + (i << 8)).into()
                ))),
                Decision::Allow
            );
        }
        assert_eq!(l.len(), 100);
        // Full of active keys: a newcomer is limited in its network's overflow bucket.
        let n1 = req("203.0.113.1");
        let n2 = req("203.0.113.2");
        check(&l, &[(&n1, true), (&n1, false), (&n2, false)]);
        assert_eq!(l.len(), 100);
        assert_eq!(l.stats().overflowed, 3);
        // Once the old keys are idle, a full shard is pruned and newcomers get their own bucket.
        clock.advance(Duration::from_secs(61));
        let n3 = req("203.0.113.3");
        check(&l, &[(&n3, true), (&n3, false)]);
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn concurrent_checks_never_exceed_the_burst() {
        let (l, _) = limiter("ip", "100/hour", None, 1000);
        let allowed = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let r = req("192.0.2.1");
                    for _ in 0..1000 {
                        if l.check(&r) == Decision::Allow {
                            allowed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(allowed.into_inner(), 100);
    }

    #[test]
    fn reload_can_keep_an_unchanged_limiter() {
        let (l, _) = limiter("ip+form:username", "5/min", None, 10);
        assert!(l.is_configured_as(
            "test/route",
            &settings("ip+form:username", "5/min", Some(5), None)
        ));
        assert!(!l.is_configured_as(
            "test/route",
            &settings("ip+form:username", "6/min", None, None)
        ));
        assert!(!l.is_configured_as("other", &settings("ip+form:username", "5/min", None, None)));
        assert!(!l.is_configured_as("test/route", &settings("ip", "5/min", None, None)));
        assert!(!l.is_configured_as(
            "test/route",
            &settings("ip+form:username", "5/min", None, Some("detect"))
        ));
        assert!(settings("ip", "5/min", None, None).validate().is_ok());
        assert!(settings("ip", "5/min", Some(0), None).validate().is_err());
    }

    #[test]
    fn memory_per_key_is_under_200_bytes() {
        let (l, _) = limiter("ip", "1/min", None, 2_000_000);
        for i in 0..200_000u32 {
            l.check(&SimpleRequest::new(IpAddr::V4(i.into())));
        }
        let s = l.stats();
        assert_eq!(s.keys, 200_000);
        let per_key = s.memory_bytes / s.keys;
        assert!(per_key <= 200, "{per_key} bytes per key");
    }
}
