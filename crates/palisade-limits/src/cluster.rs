//! Sharing limits and bans between gateway instances through Redis.
//!
//! Redis holds, per limited key, the cluster-wide GCRA theoretical arrival time in microseconds of
//! Redis's own clock (`TIME`), under `{prefix}:rl:{limiter id}:{key digest}` with a TTL of the
//! remaining backlog; every active ban in the hash `{prefix}:bans` (`ip → until_ms|reason`),
//! with `{prefix}:bans:ver` bumped on every change so the table is only read when it moved; and
//! cluster-wide violation counters `{prefix}:viol:{ip}` that expire with the escalation window.
//! Instances never compare their clocks with each other for limits: scripts return the backlog
//! (TAT − now) and each instance adds it to its own monotonic clock.
//!
//! * `sync` mode: decisions are local. Each allowed request bumps a per-key counter; every
//!   `sync_interval` a Lua script adds each counter to the key's cluster TAT and returns the
//!   backlog, which the instance adopts if it is ahead of its own. Admissions beyond the limit
//!   (made on stale local state) stay in the cluster TAT as debt, so over time the cluster admits
//!   the configured rate, not N times it. The debt is capped at [`MAX_DEBT_BUCKETS`] full buckets.
//! * `exact` mode: [`Limiter::check_async`](crate::Limiter::check_async) runs one atomic GCRA script
//!   per decision (timeout [`EXACT_TIMEOUT`]).
//!
//! Failures: any Redis error or timeout increments `redis_errors`, sets `degraded` and drops the
//! connection; decisions carry on locally. The sync loop reconnects on its next tick, pushes
//! what was counted meanwhile, and clears `degraded`.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Script};

use crate::bans::{unix_ms, BanOp, Bans, BansInner, PENDING_MAX};
use crate::config::{parse_duration, ClusterSettings, LimitMode, LimitsConfigError};
use crate::key::LimitKey;
use crate::limiter::{Decision, Limiter, LimiterInner};

/// Default longest wait for one exact-mode decision before falling back to the local limiter.
pub const EXACT_TIMEOUT: Duration = Duration::from_millis(50);
const IO_TIMEOUT: Duration = Duration::from_secs(1);

/// Options that are not part of the TOML settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterOptions {
    /// Longest wait for one exact-mode decision (default [`EXACT_TIMEOUT`]).
    pub exact_timeout: Duration,
    /// Connect and response timeout of sync rounds (default 1 s).
    pub io_timeout: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            exact_timeout: EXACT_TIMEOUT,
            io_timeout: IO_TIMEOUT,
        }
    }
}
const BATCH: usize = 512;
/// The cluster TAT never runs more than this many full buckets ahead of now.
pub const MAX_DEBT_BUCKETS: u32 = 16;

/// Adds n cells to each key's TAT; returns each backlog (µs). ARGV: t, largest backlog, n...
const SYNC_LUA: &str = r#"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local t = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local out = {}
for i, key in ipairs(KEYS) do
  local n = tonumber(ARGV[i + 2])
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  tat = tat + n * t
  if tat > now + cap then tat = now + cap end
  if tat > now then
    redis.call('SET', key, string.format('%.0f', tat), 'PX', math.floor((tat - now) / 1000) + 1000)
  end
  out[i] = tat - now
end
return out
"#;

/// Adds violations per client; a counter that reaches the threshold is reset and reported.
/// ARGV: window ms, threshold, n... Returns each new total (0 when it was reset).
const VIOLATIONS_LUA: &str = r#"
local window = tonumber(ARGV[1])
local threshold = tonumber(ARGV[2])
local out = {}
for i, key in ipairs(KEYS) do
  local n = tonumber(ARGV[i + 2])
  local v = redis.call('INCRBY', key, n)
  if v == n then redis.call('PEXPIRE', key, window) end
  if v >= threshold then
    redis.call('DEL', key)
    out[i] = v
  else
    out[i] = 0
  end
end
return out
"#;

/// One GCRA decision. ARGV: t, tau (µs). Returns {allowed, backlog µs}.
const EXACT_LUA: &str = r#"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local t = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
if tat - now > tau then
  return {0, tat - now}
end
tat = tat + t
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.floor((tat - now) / 1000) + 1000)
return {1, tat - now}
"#;

/// How limits are shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterMode {
    /// Local decisions, synchronised every interval (approximate, no Redis on the hot path).
    Sync,
    /// One atomic Redis script per decision (exact, one round trip per request).
    Exact,
}

/// Health counters of the Redis link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ClusterStats {
    /// Failed Redis operations since start.
    pub redis_errors: u64,
    /// Redis is unreachable (or not reached yet): limits are local only.
    pub degraded: bool,
    /// Successful sync rounds.
    pub syncs: u64,
}

/// Errors of one sync round (also counted in [`ClusterStats::redis_errors`]).
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Redis refused, timed out or answered something unexpected.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// The Redis link shared by the limiters and the ban table of one gateway instance.
/// Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    shared: Arc<ClusterShared>,
}

pub(crate) struct ClusterShared {
    client: redis::Client,
    endpoint: String,
    interval: Duration,
    mode: ClusterMode,
    prefix: String,
    options: ClusterOptions,
    conn: Mutex<Option<MultiplexedConnection>>,
    sync_lock: tokio::sync::Mutex<()>,
    limiters: Mutex<Vec<Weak<LimiterInner>>>,
    bans: Mutex<Vec<Weak<BansInner>>>,
    redis_errors: AtomicU64,
    degraded: AtomicBool,
    syncs: AtomicU64,
    sync_script: Script,
    exact_script: Script,
    violations_script: Script,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The endpoint is host:port only; credentials in the URL are never printed.
        f.debug_struct("Cluster")
            .field("endpoint", &self.shared.endpoint)
            .field("mode", &self.shared.mode)
            .field("interval", &self.shared.interval)
            .field("prefix", &self.shared.prefix)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Cluster {
    /// Validates the settings. Does no I/O: the link comes up on the first sync round
    /// ([`Cluster::run`] or [`Cluster::sync_now`]); until then [`ClusterStats::degraded`] is true.
    pub fn new(settings: &ClusterSettings) -> Result<Self, LimitsConfigError> {
        Self::with_options(settings, ClusterOptions::default())
    }

    /// Like [`Cluster::new`] with explicit timeouts.
    pub fn with_options(
        settings: &ClusterSettings,
        options: ClusterOptions,
    ) -> Result<Self, LimitsConfigError> {
        let url = settings.redis.get_ref().trim();
        if !(url.starts_with("redis://") || url.starts_with("unix://")) {
            return Err(LimitsConfigError::at(
                &settings.redis,
                "cluster.redis must be a redis:// URL (rediss:// is not supported by this build)",
            ));
        }
        let client = redis::Client::open(url).map_err(|_| {
            LimitsConfigError::at(&settings.redis, "cluster.redis is not a valid Redis URL")
        })?;
        let interval = match &settings.sync_interval {
            Some(s) => {
                let d = parse_duration(s)?;
                if d < Duration::from_millis(10) || d > Duration::from_secs(60) {
                    return Err(LimitsConfigError::at(
                        s,
                        "sync_interval must be between 10ms and 60s",
                    ));
                }
                d
            }
            None => Duration::from_millis(250),
        };
        let mode = match &settings.mode {
            None => ClusterMode::Sync,
            Some(m) => match m.get_ref().as_str() {
                "sync" => ClusterMode::Sync,
                "exact" => ClusterMode::Exact,
                other => {
                    return Err(LimitsConfigError::at(
                        m,
                        format!("invalid cluster mode {other:?}: expected \"sync\" or \"exact\""),
                    ))
                }
            },
        };
        let prefix = settings
            .prefix
            .clone()
            .unwrap_or_else(|| "palisade".to_owned());
        let after_at = url.rsplit_once('@').map_or(url, |(_, rest)| rest);
        let endpoint = after_at
            .trim_start_matches("redis://")
            .split('/')
            .next()
            .unwrap_or("")
            .to_owned();
        Ok(Self {
            shared: Arc::new(ClusterShared {
                client,
                endpoint,
                interval,
                mode,
                prefix,
                options,
                conn: Mutex::new(None),
                sync_lock: tokio::sync::Mutex::new(()),
                limiters: Mutex::new(Vec::new()),
                bans: Mutex::new(Vec::new()),
                redis_errors: AtomicU64::new(0),
                degraded: AtomicBool::new(true),
                syncs: AtomicU64::new(0),
                sync_script: Script::new(SYNC_LUA),
                exact_script: Script::new(EXACT_LUA),
                violations_script: Script::new(VIOLATIONS_LUA),
            }),
        })
    }

    /// The configured mode.
    pub fn mode(&self) -> ClusterMode {
        self.shared.mode
    }

    /// The configured sync interval.
    pub fn sync_interval(&self) -> Duration {
        self.shared.interval
    }

    /// Shares `limiter`'s state with the cluster. A limiter belongs to one cluster; attaching
    /// it again (or to another) is ignored and returns `false`.
    pub fn attach_limiter(&self, limiter: &Limiter) -> bool {
        if limiter.inner.cluster.set(self.shared.clone()).is_err() {
            return false;
        }
        limiter
            .inner
            .store
            .track_pending
            .store(true, Ordering::Relaxed);
        let mut l = self.shared.limiters.lock();
        l.retain(|w| w.strong_count() > 0);
        l.push(Arc::downgrade(&limiter.inner));
        true
    }

    /// Shares `bans` with the cluster (bans and lifts both ways).
    pub fn attach_bans(&self, bans: &Bans) -> bool {
        if bans.inner.cluster.set(self.shared.clone()).is_err() {
            return false;
        }
        let mut b = self.shared.bans.lock();
        b.retain(|w| w.strong_count() > 0);
        b.push(Arc::downgrade(&bans.inner));
        true
    }

    /// Counters for `/metrics` and readiness.
    pub fn stats(&self) -> ClusterStats {
        ClusterStats {
            redis_errors: self.shared.redis_errors.load(Ordering::Relaxed),
            degraded: self.shared.degraded.load(Ordering::Relaxed),
            syncs: self.shared.syncs.load(Ordering::Relaxed),
        }
    }

    /// Failed Redis operations since start.
    pub fn redis_errors(&self) -> u64 {
        self.stats().redis_errors
    }

    /// Redis is unreachable: limits are local only.
    pub fn degraded(&self) -> bool {
        self.stats().degraded
    }

    /// The sync loop: one round every `sync_interval`, forever. Spawn it on the runtime that
    /// should carry the Redis traffic (e.g. a Pingora background service):
    /// `tokio::spawn(cluster.clone().run())`. Abort the task to stop it. The Redis connection
    /// is driven by the runtime that runs this loop; `check_async` futures on other runtimes
    /// (Pingora's request threads) talk to it through a channel, so this runtime must stay up.
    pub async fn run(self) {
        let mut tick = tokio::time::interval(self.shared.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // Errors are counted and logged inside.
            let _ = self.sync_now().await;
        }
    }

    /// One sync round: (re)connect if needed, push local counts and ban changes, pull the
    /// cluster's backlogs and bans.
    pub async fn sync_now(&self) -> Result<(), ClusterError> {
        let _one_at_a_time = self.shared.sync_lock.lock().await;
        match self.sync_round().await {
            Ok(()) => {
                self.shared.syncs.fetch_add(1, Ordering::Relaxed);
                if self.shared.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!(endpoint = %self.shared.endpoint, "cluster: redis reachable, limits shared");
                }
                Ok(())
            }
            Err(e) => {
                self.shared.fail(&e);
                Err(e.into())
            }
        }
    }

    async fn sync_round(&self) -> redis::RedisResult<()> {
        let sh = &*self.shared;
        let mut conn = sh.connection().await?;
        let limiters: Vec<Arc<LimiterInner>> = sh
            .limiters
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for inner in limiters {
            let pending = inner.store.drain_pending();
            let t_us = micros(inner.t).max(1);
            let cap_us = micros((inner.tau + inner.t) * MAX_DEBT_BUCKETS);
            for (i, chunk) in pending.chunks(BATCH).enumerate() {
                let mut inv = sh.sync_script.prepare_invoke();
                inv.arg(t_us).arg(cap_us);
                for (id, n) in chunk {
                    inv.key(sh.limit_key(&inner.id, id)).arg(*n);
                }
                let backlogs: Vec<i64> = match inv.invoke_async(&mut conn).await {
                    Ok(b) => b,
                    Err(e) => {
                        // Keep the unsent counts for the round after the outage.
                        inner.store.restore_pending(&pending[i * BATCH..]);
                        return Err(e);
                    }
                };
                for ((id, _), b) in chunk.iter().zip(backlogs) {
                    inner
                        .store
                        .apply_backlog(id, Duration::from_micros(u64::try_from(b).unwrap_or(0)));
                }
            }
        }
        let bans: Vec<Arc<BansInner>> = sh.bans.lock().iter().filter_map(Weak::upgrade).collect();
        if bans.is_empty() {
            return Ok(());
        }
        let hash = format!("{}:bans", sh.prefix);
        let ver_key = format!("{}:bans:ver", sh.prefix);
        // Violations are counted cluster-wide: the instance whose increment reaches the threshold
        // bans the client, and the ban is pushed just below.
        for inner in &bans {
            let b = Bans {
                inner: inner.clone(),
            };
            let counts: Vec<(IpAddr, u32)> = inner.pending_violations.lock().drain().collect();
            for (i, chunk) in counts.chunks(BATCH).enumerate() {
                let mut inv = sh.violations_script.prepare_invoke();
                inv.arg(u64::try_from(b.window().as_millis()).unwrap_or(u64::MAX))
                    .arg(b.threshold());
                for (ip, n) in chunk {
                    inv.key(format!("{}:viol:{ip}", sh.prefix)).arg(*n);
                }
                let totals: Vec<i64> = match inv.invoke_async(&mut conn).await {
                    Ok(t) => t,
                    Err(e) => {
                        let mut p = inner.pending_violations.lock();
                        for (ip, n) in &counts[i * BATCH..] {
                            if p.len() < PENDING_MAX || p.contains_key(ip) {
                                *p.entry(*ip).or_insert(0) += n;
                            }
                        }
                        return Err(e);
                    }
                };
                for ((ip, _), total) in chunk.iter().zip(totals) {
                    if total > 0 {
                        b.violation(*ip, SystemTime::now(), b.threshold(), false);
                    }
                }
            }
        }
        for inner in &bans {
            let b = Bans {
                inner: inner.clone(),
            };
            let ops = std::mem::take(&mut *inner.pending.lock());
            if ops.is_empty() {
                continue;
            }
            let mut pipe = redis::pipe();
            for op in &ops {
                match op {
                    BanOp::Ban(info) => {
                        pipe.hset(
                            &hash,
                            info.ip.to_string(),
                            format!("{}|{}", info.until * 1000, info.reason),
                        )
                        .ignore();
                    }
                    BanOp::Lift(ip) => {
                        pipe.hdel(&hash, ip.to_string()).ignore();
                    }
                }
            }
            pipe.incr(&ver_key, 1).ignore();
            let r: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
            if let Err(e) = r {
                // Put the changes back for the next round.
                let mut p = inner.pending.lock();
                let mut ops = ops;
                ops.append(&mut p);
                ops.truncate(PENDING_MAX);
                *p = ops;
                return Err(e);
            }
            for op in &ops {
                if let BanOp::Ban(info) = op {
                    b.mark_synced(info.ip);
                }
            }
        }
        // Every change bumps `{prefix}:bans:ver`; the full table is read only when it moved.
        let ver: Option<u64> = redis::cmd("GET")
            .arg(&ver_key)
            .query_async(&mut conn)
            .await?;
        let now = SystemTime::now();
        let now_ms = unix_ms(now);
        let Some(ver) = ver else {
            // Redis has no ban state (fresh or restarted without persistence): it must not lift
            // our bans; push them again instead.
            for inner in bans {
                inner.remote_version.store(u64::MAX, Ordering::Relaxed);
                Bans { inner }.requeue_active(now);
            }
            return Ok(());
        };
        let stale: Vec<Arc<BansInner>> = bans
            .into_iter()
            .filter(|b| b.remote_version.load(Ordering::Relaxed) != ver)
            .collect();
        if stale.is_empty() {
            return Ok(());
        }
        let all: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(&hash)
            .query_async(&mut conn)
            .await?;
        let mut remote = HashMap::with_capacity(all.len());
        let mut expired = Vec::new();
        for (ip, v) in all {
            let Ok(addr) = ip.parse::<IpAddr>() else {
                expired.push(ip);
                continue;
            };
            let (until, reason) = v.split_once('|').unwrap_or((v.as_str(), "cluster"));
            match until.parse::<u64>() {
                Ok(u) if u > now_ms => {
                    remote.insert(addr, (u, reason.to_owned()));
                }
                _ => expired.push(ip),
            }
        }
        if !expired.is_empty() {
            let _: () = redis::cmd("HDEL")
                .arg(&hash)
                .arg(&expired)
                .query_async(&mut conn)
                .await?;
        }
        for inner in stale {
            inner.remote_version.store(ver, Ordering::Relaxed);
            let skipped = Bans { inner }.merge_remote(&remote, now_ms);
            if skipped > 0 {
                tracing::warn!(
                    skipped,
                    "cluster: local ban table full, some cluster bans not applied here"
                );
            }
        }
        Ok(())
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl ClusterShared {
    fn limit_key(&self, limiter: &str, id: &[u64; 2]) -> String {
        let k = LimitKey { id: *id, group: 0 };
        format!("{}:rl:{}:{}", self.prefix, limiter, k.hex())
    }

    async fn connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        if let Some(c) = self.conn.lock().clone() {
            return Ok(c);
        }
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(self.options.io_timeout)
            .set_response_timeout(self.options.io_timeout);
        let c = self
            .client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await?;
        *self.conn.lock() = Some(c.clone());
        Ok(c)
    }

    fn fail(&self, e: &redis::RedisError) {
        self.redis_errors.fetch_add(1, Ordering::Relaxed);
        *self.conn.lock() = None;
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(endpoint = %self.endpoint, error = %e, "cluster: redis unreachable, limits are local until it returns");
        }
    }

    /// The exact-mode decision, or `None` to decide locally (not exact mode, degraded, error).
    pub(crate) async fn exact_decision(
        &self,
        limiter: &Limiter,
        key: &LimitKey,
    ) -> Option<Decision> {
        if self.mode != ClusterMode::Exact || self.degraded.load(Ordering::Relaxed) {
            return None;
        }
        let mut conn = self.conn.lock().clone()?;
        let inner = &limiter.inner;
        let mut inv = self.exact_script.prepare_invoke();
        inv.key(self.limit_key(&inner.id, &key.id))
            .arg(micros(inner.t).max(1))
            .arg(micros(inner.tau));
        let r = tokio::time::timeout(
            self.options.exact_timeout,
            inv.invoke_async::<(i64, i64)>(&mut conn),
        )
        .await;
        match r {
            Ok(Ok((allowed, backlog))) => {
                let backlog = Duration::from_micros(u64::try_from(backlog).unwrap_or(0));
                inner.store.apply_backlog(&key.id, backlog);
                if allowed == 1 {
                    Some(Decision::Allow)
                } else {
                    Some(Decision::Limited {
                        retry_after: backlog.saturating_sub(inner.tau),
                        detect_only: limiter.mode() == LimitMode::Detect,
                    })
                }
            }
            Ok(Err(e)) => {
                self.fail(&e);
                None
            }
            Err(_) => {
                self.fail(&redis::RedisError::from((
                    redis::ErrorKind::IoError,
                    "exact decision timed out",
                )));
                None
            }
        }
    }
}
