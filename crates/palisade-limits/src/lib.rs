//! Palisade's abuse-control engine: keyed rate limits, ban escalation, CIDR access lists, basic
//! auth, API keys, and sharing all of it between gateway instances through Redis. No Pingora: the
//! gateway adapts its request to [`KeySource`] and turns [`Decision`]s into responses.
//!
//! # Key design decision
//!
//! Every decision is local and lock-light. governor does the GCRA arithmetic over a state store
//! of our own (sharded `RwLock<HashMap>`, one 64-bit "theoretical arrival time" per key) that
//! governor's stores lack: a hard cap with an eviction policy, a seeded fast hash, and counts of
//! admissions awaiting cluster sync. Redis never sits on the hot path in `sync` mode. Keys are reduced to 128 bits once per
//! request (the address itself for `ip`, otherwise a SHA-256 digest salted with the limiter id),
//! so login names, API keys and session cookies never sit in memory or in Redis in clear text.
//!
//! # Pipeline
//!
//! `config.toml → *Settings (serde, Spanned) → Limiter / Bans / AccessList / BasicAuth / ApiKeys /
//! Cluster (validated, compiled) → decisions per request`. Constructors return
//! [`LimitsConfigError`] `{ span, message }`, the span being the byte range of the bad value.
//!
//! # What the gateway calls, in request order
//!
//! ```text
//! let ip = client_ip_after_trusted_proxies;
//! match admission(&access, Some(&bans), ip, SystemTime::now()) {
//!     Admission::AllowListed => skip bans and limits,
//!     Admission::Denied | Admission::Banned(_) => 403,
//!     Admission::Continue => {
//!         match route_limiter.check(&request_view) {           // or .check_async(..).await
//!             Decision::Allow => {}
//!             Decision::Limited { retry_after, detect_only: false } => {
//!                 bans.record_violation(ip, now);                // may return a new BanInfo
//!                 429 + Retry-After: decision.retry_after_secs()  // whole seconds, rounded up
//!             }
//!             Decision::Limited { detect_only: true, .. } => count, log, continue,
//!         }
//!     }
//! }
//! admin path: basic_auth.verify(authorization) -> Option<user>, else 401 + basic_auth.challenge()
//! API route:  api_keys.check(header) -> Some((name, Some(limiter))) -> limiter.check(..)
//! response:   if bans.counts_status(status) { bans.record_violation(ip, now) }
//! housekeeping every ~10 s: limiter.retain_recent(); bans.expire(now)
//! cluster:    Cluster::new(&settings)?; cluster.attach_limiter(&l); cluster.attach_bans(&b);
//!             tokio::spawn(cluster.clone().run()); metrics: cluster.stats()
//! ```
//!
//! * [`Limiter::new`]`(id, &RateLimitSettings)` / [`Limiter::with_options`]`(id, &settings,
//!   LimiterOptions { max_keys, clock })`; [`Limiter::check`]`(&dyn KeySource) -> Decision`;
//!   [`Limiter::check_async`] for cluster `exact` mode; [`Limiter::retain_recent`],
//!   [`Limiter::stats`].
//! * [`Bans::new`]`(&EscalationSettings)`: [`Bans::record_violation`], [`Bans::is_banned`],
//!   [`Bans::lift`], [`Bans::list`], [`Bans::ban`], [`Bans::counts_status`], [`Bans::expire`].
//! * [`AccessList::new`]`(&AccessSettings)`: [`AccessList::check`] → [`Access`]; [`admission`]
//!   applies "allow list, then deny list, then bans".
//! * [`BasicAuth::new`]`(&BasicAuthSettings)`: [`BasicAuth::verify`] (also [`verify_basic_auth`]).
//! * [`ApiKeys::new`]`(id, &ApiKeySettings)`: [`ApiKeys::check`]`(value) -> Option<(name,
//!   Option<&Limiter>)>`.
//! * [`Cluster::new`]`(&ClusterSettings)` / [`Cluster::with_options`], [`Cluster::attach_limiter`],
//!   [`Cluster::attach_bans`], [`Cluster::run`], [`Cluster::sync_now`], [`Cluster::stats`].
//! * `palisade check`: every settings struct has `validate() -> Result<(), LimitsConfigError>`.
//! * Reload: [`Limiter::is_configured_as`] tells whether an existing limiter (and its state) can
//!   be kept; [`Bans`] does not depend on the routes and can be kept as is.
//!
//! ```
//! use std::net::IpAddr;
//! use palisade_limits::{Clock, Decision, KeySource, Limiter, LimiterOptions, RateLimitSettings};
//!
//! // The gateway's request, seen through the three methods the limiter needs.
//! struct Req { ip: IpAddr, headers: Vec<(&'static str, &'static [u8])>, body: &'static [u8] }
//! impl KeySource for Req {
//!     fn client_ip(&self) -> IpAddr { self.ip }
//!     fn header(&self, name: &str) -> Option<&[u8]> {
//!         self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
//!     }
//!     fn body(&self) -> Option<&[u8]> { Some(self.body) }
//! }
//!
//! let settings: RateLimitSettings =
//!     toml::from_str(r#"key = "ip+form:username"
//!                       rate = "5/min""#).unwrap();
//! let clock = Clock::fake();
//! let login = Limiter::with_options("shop/login", &settings,
//!     LimiterOptions { clock: clock.clone(), ..LimiterOptions::default() }).unwrap();
//! let req = Req {
//!     ip: "192.0.2.1".parse().unwrap(),
//!     headers: vec![("content-type", b"application/x-www-form-urlencoded")],
//!     body: b"username=alice&password=guess",
//! };
//! for _ in 0..5 {
//!     assert_eq!(login.check(&req), Decision::Allow);
//! }
//! match login.check(&req) {
//!     Decision::Limited { retry_after, detect_only: false } => {
//!         assert_eq!(retry_after.as_secs(), 12) // send `Retry-After: 12` with the 429
//!     }
//!     other => panic!("{other:?}"),
//! }
//! ```
//!
//! # Keys
//!
//! `ip`, `ip_prefix` (/24, /64), `header:NAME`, `cookie:NAME`, `form:FIELD`, `json:a.b.c`, or
//! several joined by `+`. A missing part is replaced by the client address: never "unlimited".
//! Form and JSON values are trimmed and ASCII-lower-cased, then hashed with the rest.
//!
//! # Bounded memory
//!
//! * Limiter: at most `max_keys` (default 1 000 000) keys. Idle keys (state equal to a fresh
//!   key's) are dropped by [`Limiter::retain_recent`] and, for a full shard, on insertion (at
//!   most every 100 ms per shard). If a shard is still full, a new key is limited in one of 1024
//!   shared overflow buckets picked by its /24 or /64: stricter, never unlimited.
//!   Each key costs a 24-byte slot (16-byte key, 8-byte TAT) plus one control byte in a
//!   hashbrown table: 29 B at 7/8 load, 57 B just after a resize. Measured at exactly 1 M keys:
//!   52 B/key by allocated table size (39–53 B/key by RSS growth), about 52 MB in total
//!   (`tests/memory.rs`, `benches/limits.rs`).
//! * Bans: at most 100 000 clients; stale entries are dropped first, then the oldest unbanned
//!   counter, then the ban ending first.
//! * Basic-auth cache: 64 entries, 5 minutes. Cluster queues: 65 536 keys per limiter, 10 000
//!   ban changes, 10 000 clients with unshared violations.
//!
//! # Consistency in cluster mode
//!
//! * `sync` (default): each instance decides alone and pushes, every `sync_interval`, how many
//!   requests it allowed per key; Redis adds them to the key's cluster-wide GCRA state and each
//!   instance adopts the cluster state when it is further ahead than its own. A key limited on one
//!   instance is limited on every instance that sees it, at the latest one interval after that
//!   instance first sees it. Over-admission is bounded and repaid: within one interval each of N
//!   instances may admit what its own stale bucket allows (at worst `N × burst` for a key new
//!   everywhere, then about `N × rate × interval` per interval), but every admission is added to
//!   the cluster-wide state, so the excess is debt that delays the key's next admissions
//!   everywhere. Over a longer period the cluster admits `burst + rate × time` plus at most one
//!   interval's excess, not N times the rate. Requests are charged at sync time (up to one
//!   interval late, which errs on the strict side); debt is capped at 16 full buckets.
//! * `exact`: [`Limiter::check_async`] evaluates GCRA atomically in Redis (one Lua script,
//!   Redis's clock): the limit holds exactly across instances, at the cost of one round trip per
//!   decision (≤ 50 ms, then local).
//! * Bans are pushed and pulled every interval: a ban (or lift) on one instance is visible on
//!   the others within one interval (compared against each instance's wall clock, so keep the
//!   clocks NTP-synchronised). Violations are also added to cluster-wide counters (Redis keys with
//!   the window as TTL) every interval; the instance whose increment reaches the threshold bans
//!   the client. Ban doubling (strikes) is remembered per instance. Redis restarting empty
//!   does not lift bans: instances push their active bans again.
//! * Redis down: every decision stays local (each instance enforces the limit on its own, as
//!   without a cluster), `redis_errors` counts failures, `degraded` is true; the sync loop
//!   reconnects by itself, pushes what was counted meanwhile (up to 65 536 keys per limiter),
//!   and clears `degraded`. In `exact` mode a failed or slow (> 50 ms) script falls back to the
//!   local decision for that request, and no further script runs until a sync round succeeds.
//!
//! # Architecture invariants
//!
//! * No clear-text header, cookie, form or JSON value is stored: keys are digests.
//! * No `Debug` or error message prints a password hash, an API key digest or a credential.
//! * Every map and queue has a cap.
//! * `Limiter::check` never waits on the network.

mod auth;
mod bans;
mod clock;
mod cluster;
mod config;
mod key;
mod limiter;
mod store;

pub use auth::{verify_basic_auth, ApiKeys, BasicAuth, AUTH_CACHE_MAX, AUTH_CACHE_TTL};
pub use bans::{admission, Access, AccessList, Admission, BanInfo, Bans, DEFAULT_MAX_CLIENTS};
pub use clock::Clock;
pub use cluster::{
    Cluster, ClusterError, ClusterMode, ClusterOptions, ClusterStats, EXACT_TIMEOUT,
    MAX_DEBT_BUCKETS,
};
pub use config::{
    parse_duration, parse_rate, AccessSettings, ApiKeyEntry, ApiKeySettings, BasicAuthSettings,
    BasicAuthUser, ClusterSettings, EscalationSettings, LimitMode, LimitsConfigError, Rate,
    RateLimitSettings,
};
pub use key::{cookie_value, form_value, KeyPart, KeySource, KeySpec, LimitKey, SimpleRequest};
pub use limiter::{Decision, Limiter, LimiterOptions, LimiterStats, DEFAULT_MAX_KEYS};

#[cfg(test)]
mod send_sync {
    fn assert_send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn shared_types_are_send_and_sync() {
        assert_send_sync::<crate::Limiter>();
        assert_send_sync::<crate::Bans>();
        assert_send_sync::<crate::AccessList>();
        assert_send_sync::<crate::BasicAuth>();
        assert_send_sync::<crate::ApiKeys>();
        assert_send_sync::<crate::Cluster>();
    }
}
