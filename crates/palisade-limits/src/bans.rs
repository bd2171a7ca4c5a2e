//! Escalation of repeated violations to timed bans, and operator allow/deny lists.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use parking_lot::{Mutex, RwLock};

use crate::cluster::ClusterShared;
use crate::config::{parse_duration, AccessSettings, EscalationSettings, LimitsConfigError};

/// Default cap on clients tracked by [`Bans`] (violation counters and bans together).
pub const DEFAULT_MAX_CLIENTS: usize = 100_000;
/// Clients remember earlier bans (for doubling) this long after the last one ends.
const STRIKE_MEMORY: Duration = Duration::from_secs(24 * 3600);
/// Ban changes waiting to be pushed to the cluster.
pub(crate) const PENDING_MAX: usize = 10_000;

/// One active ban (serialises as `{"ip": "192.0.2.1", "until": 1800000900, "reason": "..."}`
/// for the admin listener).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BanInfo {
    /// The banned client.
    pub ip: IpAddr,
    /// End of the ban, unix seconds.
    pub until: u64,
    /// Why (no request data: e.g. `"5 violations within 600s"`, `"manual"`).
    pub reason: String,
}

#[derive(Debug, Clone)]
struct Client {
    violations: u32,
    window_start_ms: u64,
    strikes: u32,
    ban_until_ms: u64,
    reason: Arc<str>,
    /// The ban is known to Redis (pushed by us or pulled from there).
    synced: bool,
}

impl Client {
    /// A client with no violation, strike or ban yet.
    fn fresh(now_ms: u64, synced: bool) -> Client {
        Client {
            violations: 0,
            window_start_ms: now_ms,
            strikes: 0,
            ban_until_ms: 0,
            reason: Arc::from(""),
            synced,
        }
    }

    fn keep(&self, now_ms: u64, window_ms: u64) -> bool {
        self.ban_until_ms > now_ms
            || (self.violations > 0 && self.window_start_ms + window_ms > now_ms)
            || (self.strikes > 0 && self.ban_until_ms + STRIKE_MEMORY.as_millis() as u64 > now_ms)
    }
}

pub(crate) enum BanOp {
    Ban(BanInfo),
    Lift(IpAddr),
}

/// Violation counters and bans, bounded and `Send + Sync`.
#[derive(Clone)]
pub struct Bans {
    pub(crate) inner: Arc<BansInner>,
}

pub(crate) struct BansInner {
    threshold: u32,
    window: Duration,
    ban: Duration,
    max_ban: Duration,
    statuses: Vec<u16>,
    max_clients: usize,
    clients: RwLock<HashMap<IpAddr, Client>>,
    active: AtomicUsize,
    pub(crate) pending: Mutex<Vec<BanOp>>,
    /// Violations not yet added to the cluster-wide counters.
    pub(crate) pending_violations: Mutex<HashMap<IpAddr, u32>>,
    /// `{prefix}:bans:ver` at the last full pull (`u64::MAX`: never).
    pub(crate) remote_version: std::sync::atomic::AtomicU64,
    pub(crate) cluster: OnceLock<Arc<ClusterShared>>,
}

impl fmt::Debug for Bans {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bans")
            .field("threshold", &self.inner.threshold)
            .field("window", &self.inner.window)
            .field("ban", &self.inner.ban)
            .field("max_ban", &self.inner.max_ban)
            .field("clients", &self.inner.clients.read().len())
            .finish()
    }
}

pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Bans {
    /// Validates the settings and builds an empty table with [`DEFAULT_MAX_CLIENTS`].
    pub fn new(settings: &EscalationSettings) -> Result<Self, LimitsConfigError> {
        Self::with_capacity(settings, DEFAULT_MAX_CLIENTS)
    }

    /// Like [`Bans::new`] with an explicit cap on tracked clients.
    pub fn with_capacity(
        settings: &EscalationSettings,
        max_clients: usize,
    ) -> Result<Self, LimitsConfigError> {
        let threshold = match u32::try_from(*settings.violations.get_ref()) {
            Ok(v) if (1..=1_000_000).contains(&v) => v,
            _ => {
                return Err(LimitsConfigError::at(
                    &settings.violations,
                    "violations must be between 1 and 1000000",
                ))
            }
        };
        let window = parse_duration(&settings.window)?;
        let ban = parse_duration(&settings.ban)?;
        let max_ban = match &settings.max_ban {
            Some(m) => {
                let d = parse_duration(m)?;
                if d < ban {
                    return Err(LimitsConfigError::at(m, "max_ban is shorter than ban"));
                }
                d
            }
            None => ban,
        };
        let mut statuses = Vec::new();
        for s in &settings.statuses {
            match u16::try_from(*s.get_ref()) {
                Ok(v) if (100..=599).contains(&v) => statuses.push(v),
                _ => {
                    return Err(LimitsConfigError::at(
                        s,
                        format!("invalid HTTP status {}", s.get_ref()),
                    ))
                }
            }
        }
        Ok(Self {
            inner: Arc::new(BansInner {
                threshold,
                window,
                ban,
                max_ban,
                statuses,
                max_clients: max_clients.max(1),
                clients: RwLock::new(HashMap::new()),
                active: AtomicUsize::new(0),
                pending: Mutex::new(Vec::new()),
                pending_violations: Mutex::new(HashMap::new()),
                remote_version: std::sync::atomic::AtomicU64::new(u64::MAX),
                cluster: OnceLock::new(),
            }),
        })
    }

    /// `true` when an upstream status counts as a violation (`statuses` in the settings).
    pub fn counts_status(&self, status: u16) -> bool {
        self.inner.statuses.contains(&status)
    }

    /// Records one violation (a 429, a WAF block, a counted status). Returns the new ban when this
    /// violation crosses the threshold within the window. Every ban after the first (while the
    /// client is remembered, 24 h after its last ban) doubles, up to `max_ban`.
    pub fn record_violation(&self, ip: IpAddr, now: SystemTime) -> Option<BanInfo> {
        self.violation(ip, now, 1, true)
    }

    /// Adds `n` violations; `share` queues them for the cluster-wide count. With `n` equal to
    /// the threshold (the cluster count crossed it) the client is banned at once.
    pub(crate) fn violation(
        &self,
        ip: IpAddr,
        now: SystemTime,
        n: u32,
        share: bool,
    ) -> Option<BanInfo> {
        let now_ms = unix_ms(now);
        let window_ms = self.inner.window.as_millis() as u64;
        let mut clients = self.inner.clients.write();
        let c = self.client_entry(&mut clients, ip, now_ms, false);
        if c.ban_until_ms > now_ms {
            // Already banned: nothing to escalate.
            return None;
        }
        if c.violations == 0 || c.window_start_ms + window_ms <= now_ms {
            c.violations = 0;
            c.window_start_ms = now_ms;
        }
        c.violations = c.violations.saturating_add(n);
        if c.violations < self.inner.threshold {
            drop(clients);
            if share && self.inner.cluster.get().is_some() {
                let mut p = self.inner.pending_violations.lock();
                if p.len() < PENDING_MAX || p.contains_key(&ip) {
                    *p.entry(ip).or_insert(0) += n;
                }
            }
            return None;
        }
        let shift = c.strikes.min(20);
        let len = self
            .inner
            .ban
            .saturating_mul(1u32 << shift)
            .min(self.inner.max_ban);
        c.violations = 0;
        c.strikes = c.strikes.saturating_add(1);
        c.ban_until_ms = now_ms + len.as_millis() as u64;
        c.reason = Arc::from(format!(
            "{} violations within {}s",
            self.inner.threshold,
            self.inner.window.as_secs()
        ));
        c.synced = false;
        let info = BanInfo {
            ip,
            until: c.ban_until_ms.div_ceil(1000),
            reason: c.reason.to_string(),
        };
        // Counted before the lock is released, so `is_banned`'s lock-free fast path never
        // misses a ban that is already in the table.
        self.inner.active.fetch_add(1, Ordering::Relaxed);
        drop(clients);
        self.queue(BanOp::Ban(info.clone()));
        Some(info)
    }

    pub(crate) fn threshold(&self) -> u32 {
        self.inner.threshold
    }

    pub(crate) fn window(&self) -> Duration {
        self.inner.window
    }

    /// Bans `ip` for `duration` (operator action).
    pub fn ban(&self, ip: IpAddr, now: SystemTime, duration: Duration, reason: &str) -> BanInfo {
        let now_ms = unix_ms(now);
        let until_ms = now_ms + duration.as_millis() as u64;
        self.insert_ban(ip, until_ms, reason, now_ms, false);
        let info = BanInfo {
            ip,
            until: until_ms.div_ceil(1000),
            reason: reason.to_owned(),
        };
        self.queue(BanOp::Ban(info.clone()));
        info
    }

    pub(crate) fn insert_ban(
        &self,
        ip: IpAddr,
        until_ms: u64,
        reason: &str,
        now_ms: u64,
        synced: bool,
    ) {
        let mut clients = self.inner.clients.write();
        let c = self.client_entry(&mut clients, ip, now_ms, synced);
        if c.ban_until_ms <= now_ms {
            self.inner.active.fetch_add(1, Ordering::Relaxed);
            c.strikes = c.strikes.saturating_add(1);
        }
        if until_ms >= c.ban_until_ms {
            c.ban_until_ms = until_ms;
            c.reason = Arc::from(reason);
        }
        c.synced = synced;
    }

    /// Remaining ban time of `ip`, if banned. Lock-free when no ban is active.
    pub fn is_banned(&self, ip: IpAddr, now: SystemTime) -> Option<Duration> {
        if self.inner.active.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let now_ms = unix_ms(now);
        let clients = self.inner.clients.read();
        let c = clients.get(&ip)?;
        (c.ban_until_ms > now_ms).then(|| Duration::from_millis(c.ban_until_ms - now_ms))
    }

    /// Lifts a ban (and forgets the client's violations and strikes). `true` if it was banned.
    pub fn lift(&self, ip: IpAddr) -> bool {
        let now_ms = unix_ms(SystemTime::now());
        let was = self.remove_local(ip, now_ms);
        self.queue(BanOp::Lift(ip));
        was
    }

    pub(crate) fn remove_local(&self, ip: IpAddr, now_ms: u64) -> bool {
        let removed = self.inner.clients.write().remove(&ip);
        match removed {
            Some(c) if c.ban_until_ms > now_ms => {
                // Saturating: the count is a fast-path hint, recomputed by `expire`.
                let _ = self
                    .inner
                    .active
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                        Some(n.saturating_sub(1))
                    });
                true
            }
            _ => false,
        }
    }

    /// Active bans, soonest expiry first. Expired entries are dropped on the way.
    pub fn list(&self) -> Vec<BanInfo> {
        self.list_at(SystemTime::now())
    }

    /// [`Bans::list`] as seen at `now`.
    pub fn list_at(&self, now: SystemTime) -> Vec<BanInfo> {
        let now_ms = unix_ms(now);
        self.expire(now);
        let clients = self.inner.clients.read();
        let mut out: Vec<BanInfo> = clients
            .iter()
            .filter(|(_, c)| c.ban_until_ms > now_ms)
            .map(|(ip, c)| BanInfo {
                ip: *ip,
                until: c.ban_until_ms.div_ceil(1000),
                reason: c.reason.to_string(),
            })
            .collect();
        out.sort_by_key(|b| (b.until, b.ip));
        out
    }

    /// Forgets expired bans and stale counters and recounts active bans. Called by `list`, by
    /// the cluster sync, and when the table is full; the gateway may call it periodically.
    pub fn expire(&self, now: SystemTime) {
        let now_ms = unix_ms(now);
        let window_ms = self.inner.window.as_millis() as u64;
        let mut clients = self.inner.clients.write();
        clients.retain(|_, c| c.keep(now_ms, window_ms));
        let active = clients.values().filter(|c| c.ban_until_ms > now_ms).count();
        self.inner.active.store(active, Ordering::Relaxed);
    }

    /// Number of tracked clients (counters and bans).
    pub fn tracked(&self) -> usize {
        self.inner.clients.read().len()
    }

    /// The table is full: drop stale entries; if none are stale, drop the non-banned entry
    /// with the oldest window, and only if every entry is banned, the ban ending first.
    /// The client's record, created fresh (after making room when the table is full).
    fn client_entry<'m>(
        &self,
        clients: &'m mut HashMap<IpAddr, Client>,
        ip: IpAddr,
        now_ms: u64,
        synced: bool,
    ) -> &'m mut Client {
        if !clients.contains_key(&ip) && clients.len() >= self.inner.max_clients {
            self.make_room(clients, now_ms);
        }
        clients
            .entry(ip)
            .or_insert_with(|| Client::fresh(now_ms, synced))
    }

    fn make_room(&self, clients: &mut HashMap<IpAddr, Client>, now_ms: u64) {
        let window_ms = self.inner.window.as_millis() as u64;
        clients.retain(|_, c| c.keep(now_ms, window_ms));
        if clients.len() < self.inner.max_clients {
            let active = clients.values().filter(|c| c.ban_until_ms > now_ms).count();
            self.inner.active.store(active, Ordering::Relaxed);
            return;
        }
        let victim = clients
            .iter()
            .filter(|(_, c)| c.ban_until_ms <= now_ms)
            .min_by_key(|(_, c)| c.window_start_ms)
            .or_else(|| clients.iter().min_by_key(|(_, c)| c.ban_until_ms))
            .map(|(ip, _)| *ip);
        if let Some(ip) = victim {
            clients.remove(&ip);
        }
        let active = clients.values().filter(|c| c.ban_until_ms > now_ms).count();
        self.inner.active.store(active, Ordering::Relaxed);
    }

    fn queue(&self, op: BanOp) {
        if self.inner.cluster.get().is_some() {
            let mut p = self.inner.pending.lock();
            if p.len() < PENDING_MAX {
                p.push(op);
            }
        }
    }

    /// Bans synced from Redis that are no longer there were lifted elsewhere (or expired).
    ///
    /// Linear in the size of both tables: expired entries are dropped once, then remote bans are
    /// merged while there is room (never evicting local entries for them, so a huge remote table
    /// cannot make every insert scan the local one). Returns how many did not fit.
    pub(crate) fn merge_remote(
        &self,
        remote: &HashMap<IpAddr, (u64, String)>,
        now_ms: u64,
    ) -> usize {
        let window_ms = self.inner.window.as_millis() as u64;
        let mut skipped = 0;
        {
            let mut clients = self.inner.clients.write();
            clients.retain(|_, c| c.keep(now_ms, window_ms));
            for (ip, (until_ms, reason)) in remote {
                if *until_ms <= now_ms {
                    continue;
                }
                if !clients.contains_key(ip) && clients.len() >= self.inner.max_clients {
                    skipped += 1;
                    continue;
                }
                let c = clients
                    .entry(*ip)
                    .or_insert_with(|| Client::fresh(now_ms, true));
                if c.ban_until_ms <= now_ms {
                    c.strikes = c.strikes.saturating_add(1);
                }
                if *until_ms >= c.ban_until_ms {
                    c.ban_until_ms = *until_ms;
                    c.reason = Arc::from(reason.as_str());
                }
                c.synced = true;
            }
            let active = clients.values().filter(|c| c.ban_until_ms > now_ms).count();
            self.inner.active.store(active, Ordering::Relaxed);
        }
        let gone: Vec<IpAddr> = self
            .inner
            .clients
            .read()
            .iter()
            .filter(|(ip, c)| c.synced && c.ban_until_ms > now_ms && !remote.contains_key(ip))
            .map(|(ip, _)| *ip)
            .collect();
        for ip in gone {
            self.remove_local(ip, now_ms);
        }
        skipped
    }

    /// Queues every active ban for the cluster again (Redis lost its state).
    pub(crate) fn requeue_active(&self, now: SystemTime) {
        for info in self.list_at(now) {
            self.queue(BanOp::Ban(info));
        }
    }

    pub(crate) fn mark_synced(&self, ip: IpAddr) {
        if let Some(c) = self.inner.clients.write().get_mut(&ip) {
            c.synced = true;
        }
    }
}

/// Operator CIDR tables. One hash set per prefix length present, so a lookup costs at most one
/// hash probe per distinct prefix length in the list (typically 1–4).
#[derive(Debug, Clone, Default)]
pub struct AccessList {
    allow: CidrSet,
    deny: CidrSet,
}

/// The result of [`AccessList::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// In the allow list: skip bans and limits.
    Allowed,
    /// In the deny list (and not allowed): answer 403.
    Denied,
    /// In neither list.
    Neutral,
}

impl AccessList {
    /// Parses and validates both lists; errors point at the bad entry.
    pub fn new(settings: &AccessSettings) -> Result<Self, LimitsConfigError> {
        Ok(Self {
            allow: CidrSet::parse(&settings.allow)?,
            deny: CidrSet::parse(&settings.deny)?,
        })
    }

    /// Allow wins over deny.
    pub fn check(&self, ip: IpAddr) -> Access {
        if self.allow.contains(ip) {
            Access::Allowed
        } else if self.deny.contains(ip) {
            Access::Denied
        } else {
            Access::Neutral
        }
    }
}

#[derive(Debug, Clone, Default)]
struct CidrSet {
    v4: Vec<(u8, std::collections::HashSet<u32>)>,
    v6: Vec<(u8, std::collections::HashSet<u128>)>,
}

impl CidrSet {
    fn parse(list: &[toml::Spanned<String>]) -> Result<Self, LimitsConfigError> {
        let mut set = Self::default();
        for entry in list {
            let text = entry.get_ref().trim();
            let net: IpNet = match text.parse::<IpNet>() {
                Ok(n) => n,
                Err(_) => match text.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => {
                        return Err(LimitsConfigError::at(
                            entry,
                            format!("invalid address or CIDR {text:?}"),
                        ))
                    }
                },
            };
            if net.addr() != net.network() {
                return Err(LimitsConfigError::at(
                    entry,
                    format!("{text:?} has host bits set; did you mean {}?", net.trunc()),
                ));
            }
            match net {
                IpNet::V4(n) => {
                    let len = n.prefix_len();
                    let bits = u32::from(n.network());
                    match set.v4.iter_mut().find(|(l, _)| *l == len) {
                        Some((_, s)) => {
                            s.insert(bits);
                        }
                        None => set.v4.push((len, [bits].into_iter().collect())),
                    }
                }
                IpNet::V6(n) => {
                    let len = n.prefix_len();
                    let bits = u128::from(n.network());
                    match set.v6.iter_mut().find(|(l, _)| *l == len) {
                        Some((_, s)) => {
                            s.insert(bits);
                        }
                        None => set.v6.push((len, [bits].into_iter().collect())),
                    }
                }
            }
        }
        Ok(set)
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            },
            v4 => v4,
        };
        match ip {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                self.v4.iter().any(|(len, s)| {
                    let mask = if *len == 0 { 0 } else { u32::MAX << (32 - len) };
                    s.contains(&(bits & mask))
                })
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                self.v6.iter().any(|(len, s)| {
                    let mask = if *len == 0 {
                        0
                    } else {
                        u128::MAX << (128 - len)
                    };
                    s.contains(&(bits & mask))
                })
            }
        }
    }
}

/// What the gateway does with a client before any limit: the order of the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Allow-listed: skip bans and limits.
    AllowListed,
    /// Deny-listed: 403.
    Denied,
    /// Banned for this long: 403.
    Banned(Duration),
    /// Go on to the rate limits.
    Continue,
}

/// Applies the precedence rules in one place: allow list, then deny list, then bans.
pub fn admission(
    access: &AccessList,
    bans: Option<&Bans>,
    ip: IpAddr,
    now: SystemTime,
) -> Admission {
    match access.check(ip) {
        Access::Allowed => Admission::AllowListed,
        Access::Denied => Admission::Denied,
        Access::Neutral => match bans.and_then(|b| b.is_banned(ip, now)) {
            Some(left) => Admission::Banned(left),
            None => Admission::Continue,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use toml::Spanned;

    fn esc(violations: i64, window: &str, ban: &str, max_ban: Option<&str>) -> EscalationSettings {
        EscalationSettings {
            violations: Spanned::new(0..0, violations),
            window: Spanned::new(0..0, window.into()),
            ban: Spanned::new(0..0, ban.into()),
            max_ban: max_ban.map(|m| Spanned::new(0..0, m.into())),
            statuses: vec![Spanned::new(0..0, 401), Spanned::new(0..0, 403)],
        }
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn escalates_after_n_violations_in_window_and_expires() {
        let b = Bans::new(&esc(3, "10m", "15m", None)).unwrap();
        let a = ip("192.0.2.1");
        assert!(b.counts_status(401) && !b.counts_status(404));
        assert_eq!(b.record_violation(a, at(0)), None);
        assert_eq!(b.record_violation(a, at(10)), None);
        assert_eq!(b.is_banned(a, at(10)), None);
        let info = b.record_violation(a, at(20)).unwrap();
        assert_eq!(info.until, 1_800_000_000 + 20 + 900);
        assert_eq!(info.reason, "3 violations within 600s");
        assert_eq!(b.is_banned(a, at(20)), Some(Duration::from_secs(900)));
        assert_eq!(b.is_banned(ip("192.0.2.2"), at(20)), None);
        assert_eq!(b.list_at(at(21)), vec![info]);
        assert_eq!(b.is_banned(a, at(920)), None, "expired");
        assert!(b.list_at(at(920)).is_empty());
    }

    #[test]
    fn violations_outside_the_window_do_not_add_up() {
        let b = Bans::new(&esc(3, "10m", "15m", None)).unwrap();
        let a = ip("192.0.2.1");
        b.record_violation(a, at(0));
        b.record_violation(a, at(100));
        assert_eq!(b.record_violation(a, at(700)), None, "window restarted");
        assert_eq!(b.record_violation(a, at(710)), None);
        assert!(b.record_violation(a, at(720)).is_some());
    }

    #[test]
    fn repeated_bans_double_up_to_max_ban() {
        let b = Bans::new(&esc(1, "1m", "10m", Some("25m"))).unwrap();
        let a = ip("2001:db8::1");
        let mut t = 0;
        let mut lens = vec![];
        for _ in 0..4 {
            let info = b.record_violation(a, at(t)).unwrap();
            let len = info.until - (1_800_000_000 + t);
            lens.push(len);
            t += len;
        }
        assert_eq!(lens, vec![600, 1200, 1500, 1500]);
    }

    #[test]
    fn lift_removes_a_ban() {
        let b = Bans::new(&esc(1, "1m", "10m", None)).unwrap();
        let a = ip("192.0.2.1");
        b.record_violation(a, SystemTime::now()).unwrap();
        assert!(b.is_banned(a, SystemTime::now()).is_some());
        assert!(b.lift(a));
        assert!(!b.lift(a));
        assert_eq!(b.is_banned(a, SystemTime::now()), None);
        assert!(b.list().is_empty());
    }

    #[test]
    fn table_is_bounded() {
        let b = Bans::with_capacity(&esc(1, "1m", "10m", None), 10).unwrap();
        for i in 0..100u32 {
            b.record_violation(IpAddr::V4(i.into()), at(0));
        }
        assert_eq!(b.tracked(), 10);
        // The table holds the bans that fit; newer ones replace those ending first.
        assert_eq!(b.list_at(at(1)).len(), 10);
        assert!(b.is_banned(IpAddr::V4(99.into()), at(1)).is_some());
    }

    #[test]
    fn merging_a_huge_cluster_table_stays_bounded_and_linear() {
        let b = Bans::with_capacity(&esc(1, "1m", "10m", None), 10).unwrap();
        let now_ms = unix_ms(at(0));
        let remote: HashMap<IpAddr, (u64, String)> = (0..1000u32)
            .map(|i| {
                (
                    IpAddr::V4(i.into()),
                    (now_ms + 60_000, "cluster".to_owned()),
                )
            })
            .collect();
        assert_eq!(b.merge_remote(&remote, now_ms), 990);
        assert_eq!(b.tracked(), 10);
        assert_eq!(b.list_at(at(1)).len(), 10);
        // A synced ban that disappeared from the cluster was lifted elsewhere.
        let kept: HashMap<IpAddr, (u64, String)> = HashMap::new();
        b.merge_remote(&kept, now_ms);
        assert!(b.list_at(at(1)).is_empty());
    }

    #[test]
    fn invalid_settings_point_at_the_value() {
        let mut s = esc(3, "10m", "15m", None);
        s.window = Spanned::new(40..45, "ten".into());
        assert_eq!(Bans::new(&s).unwrap_err().span, 40..45);
        let mut s = esc(0, "10m", "15m", None);
        s.violations = Spanned::new(7..8, 0);
        assert_eq!(Bans::new(&s).unwrap_err().span, 7..8);
        let s = esc(3, "10m", "15m", Some("1m"));
        assert!(Bans::new(&s).is_err());
    }

    fn access(allow: &[&str], deny: &[&str]) -> AccessList {
        let sp = |v: &[&str]| {
            v.iter()
                .map(|s| Spanned::new(0..0, s.to_string()))
                .collect()
        };
        AccessList::new(&AccessSettings {
            allow: sp(allow),
            deny: sp(deny),
        })
        .unwrap()
    }

    #[test]
    fn access_lists() {
        let a = access(
            &["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"],
            &["0.0.0.0/0", "203.0.113.0/24"],
        );
        for (addr, want) in [
            ("10.1.2.3", Access::Allowed),
            ("192.0.2.7", Access::Allowed),
            ("::ffff:10.9.9.9", Access::Allowed),
            ("2001:db8:5::1", Access::Allowed),
            ("192.0.2.8", Access::Denied),
            ("2001:db9::1", Access::Neutral),
        ] {
            assert_eq!(a.check(ip(addr)), want, "{addr}");
        }
        let bad = AccessList::new(&AccessSettings {
            allow: vec![Spanned::new(5..17, "10.0.0.1/8".into())],
            deny: vec![],
        })
        .unwrap_err();
        assert_eq!(bad.span, 5..17);
        assert!(bad.message.contains("10.0.0.0/8"));
        assert!(AccessList::new(&AccessSettings {
            allow: vec![],
            deny: vec![Spanned::new(0..0, "nope".into())],
        })
        .is_err());
    }

    #[test]
    fn allow_list_wins_over_ban_and_deny_blocks() {
        let acl = access(&["192.0.2.0/24"], &["198.51.100.0/24"]);
        let b = Bans::new(&esc(1, "1m", "10m", None)).unwrap();
        let op = ip("192.0.2.10");
        let other = ip("203.0.113.5");
        b.record_violation(op, at(0)).unwrap();
        b.record_violation(other, at(0)).unwrap();
        assert_eq!(admission(&acl, Some(&b), op, at(1)), Admission::AllowListed);
        assert_eq!(
            admission(&acl, Some(&b), other, at(1)),
            Admission::Banned(Duration::from_secs(599))
        );
        assert_eq!(
            admission(&acl, Some(&b), ip("198.51.100.1"), at(1)),
            Admission::Denied
        );
        assert_eq!(
            admission(&acl, None, ip("8.8.8.8"), at(1)),
            Admission::Continue
        );
    }
}
