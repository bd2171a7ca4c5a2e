//! The bounded keyed state store behind every [`Limiter`](crate::Limiter).
//!
//! governor runs the GCRA arithmetic; this store only keeps one 64-bit theoretical arrival time
//! (TAT) per key, the way governor's own in-memory store does, but with a hard cap:
//!
//! * the table is split into shards (a power of two, at most 64), each an `RwLock<HashMap>`;
//!   a known key costs a read lock and one compare-and-swap;
//! * the whole store holds at most `max_keys` keys (a global counter; concurrent inserts into
//!   different shards may overshoot by at most one key per shard), and one shard at most 125 % of
//!   its share so that a single hot shard cannot take the whole budget;
//! * **eviction policy**: when a new key finds no room, its shard is pruned of keys
//!   whose TAT lies in the past (their state is indistinguishable from a fresh key, so dropping
//!   them changes no decision). Pruning a shard happens at most once per 100 ms, and when the
//!   whole store is full every shard is pruned at most once per 2 s, so a flood of new keys
//!   cannot turn every request into a table scan. If there is still no room, the new key is
//!   **not** tracked on its own: it is limited in one of 1024 shared overflow buckets chosen by
//!   its /24 (IPv4) or /64 (IPv6) network. A flood therefore makes limits stricter for the
//!   newcomers, never absent, and memory stays fixed.
//!
//! Each entry is a 16-byte key and an 8-byte TAT (24 bytes) plus one hashbrown control byte; see
//! [`KeyStore::memory_bytes`]. Counts waiting for a cluster sync sit in a separate small map per
//! shard, so a limiter without a cluster pays nothing for them.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::nanos::Nanos;
use governor::state::StateStore;
use parking_lot::{Mutex, RwLock};

use crate::clock::Clock;
use crate::key::{LimitKey, OVERFLOW_GROUPS};

const MAX_SHARDS: usize = 64;
const KEYS_PER_SHARD_MIN: usize = 1024;
const PRUNE_EVERY: Duration = Duration::from_millis(100);
/// A full store prunes every shard at most this often on its own (the gateway's periodic
/// `retain_recent` is the normal path; this is the safety net when it is not called).
const GLOBAL_PRUNE_EVERY: Duration = Duration::from_secs(2);
/// Keys waiting to be pushed to the cluster, per limiter (the rest are counted as dropped).
const DIRTY_MAX: usize = 65_536;

/// One key's theoretical arrival time (nanoseconds since the limiter's start; 0 = fresh).
#[derive(Default)]
pub(crate) struct Slot {
    tat: AtomicU64,
}

struct Shard {
    map: RwLock<Map<Slot>>,
    last_prune: AtomicU64,
    /// Allowed decisions per key since the last cluster sync (only with a cluster).
    dirty: Mutex<Map<u32>>,
}

pub(crate) struct KeyStore {
    shards: Box<[Shard]>,
    max_keys: usize,
    len: AtomicUsize,
    last_global_prune: AtomicU64,
    shard_cap: usize,
    dirty_cap: usize,
    overflow: Box<[AtomicU64]>,
    hasher: KeyHash,
    clock: Clock,
    start: Duration,
    pub(crate) track_pending: AtomicBool,
    pub(crate) overflowed: AtomicU64,
    pub(crate) dirty_dropped: AtomicU64,
}

/// The handle governor owns; the limiter keeps another one for housekeeping and sync.
#[derive(Clone)]
pub(crate) struct StoreRef(pub(crate) Arc<KeyStore>);

impl KeyStore {
    pub(crate) fn new(max_keys: usize, clock: Clock, start: Duration) -> Self {
        let max_keys = max_keys.max(1);
        let shards = (max_keys / KEYS_PER_SHARD_MIN)
            .clamp(1, MAX_SHARDS)
            .next_power_of_two()
            .min(MAX_SHARDS);
        // Keys do not spread perfectly: a shard may hold 25 % more than its share, the total
        // never more than `max_keys`.
        let shard_cap = max_keys.div_ceil(shards) + max_keys.div_ceil(shards) / 4;
        let hasher = KeyHash::random();
        Self {
            max_keys,
            len: AtomicUsize::new(0),
            last_global_prune: AtomicU64::new(0),
            shards: (0..shards)
                .map(|_| Shard {
                    map: RwLock::new(HashMap::with_hasher(hasher.clone())),
                    last_prune: AtomicU64::new(0),
                    dirty: Mutex::new(HashMap::with_hasher(hasher.clone())),
                })
                .collect(),
            shard_cap,
            dirty_cap: (DIRTY_MAX / shards).max(64),
            overflow: (0..OVERFLOW_GROUPS).map(|_| AtomicU64::new(0)).collect(),
            hasher,
            clock,
            start,
            track_pending: AtomicBool::new(false),
            overflowed: AtomicU64::new(0),
            dirty_dropped: AtomicU64::new(0),
        }
    }

    fn shard(&self, id: &[u64; 2]) -> &Shard {
        let h = self.hasher.hash_one(id);
        // Shard count is a power of two. Bits 32.. are used: hashbrown takes the bucket from the
        // low bits and its control tag from the top 7, so shard members still spread over both.
        &self.shards[(h >> 32) as usize & (self.shards.len() - 1)]
    }

    /// Nanoseconds since the limiter's start, the unit of stored TATs.
    pub(crate) fn now_rel(&self) -> u64 {
        u64::try_from(self.clock.elapsed().saturating_sub(self.start).as_nanos())
            .unwrap_or(u64::MAX)
    }

    fn after_allow(&self, shard: &Shard, id: &[u64; 2]) {
        if self.track_pending.load(Ordering::Relaxed) {
            let mut dirty = shard.dirty.lock();
            if let Some(n) = dirty.get_mut(id) {
                *n = n.saturating_add(1);
            } else if dirty.len() < self.dirty_cap {
                dirty.insert(*id, 1);
            } else {
                // Queue full (a long Redis outage): this count stays local only.
                self.dirty_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn prune(&self, shard: &Shard, map: &mut Map<Slot>, force: bool) {
        let now = self.now_rel();
        let last = shard.last_prune.load(Ordering::Relaxed);
        let every = u64::try_from(PRUNE_EVERY.as_nanos()).unwrap_or(u64::MAX);
        if !force && last != 0 && now.saturating_sub(last) < every {
            return;
        }
        shard.last_prune.store(now.max(1), Ordering::Relaxed);
        let before = map.len();
        // Counts waiting for the cluster live in `dirty`, so pruning loses nothing.
        map.retain(|_, s| s.tat.load(Ordering::Relaxed) > now);
        self.len.fetch_sub(before - map.len(), Ordering::Relaxed);
    }

    /// The store is full in total and no global prune ran recently (claims the slot if so).
    fn global_prune_due(&self) -> bool {
        if self.len.load(Ordering::Relaxed) < self.max_keys {
            return false;
        }
        let now = self.now_rel().max(1);
        let last = self.last_global_prune.load(Ordering::Relaxed);
        let every = u64::try_from(GLOBAL_PRUNE_EVERY.as_nanos()).unwrap_or(u64::MAX);
        (last == 0 || now.saturating_sub(last) >= every)
            && self
                .last_global_prune
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// Room for one more key in this shard (and in total)?
    fn has_room(&self, map: &Map<Slot>) -> bool {
        map.len() < self.shard_cap && self.len.load(Ordering::Relaxed) < self.max_keys
    }

    fn insert<'m>(&self, map: &'m mut Map<Slot>, id: [u64; 2]) -> &'m Slot {
        map.entry(id).or_insert_with(|| {
            self.len.fetch_add(1, Ordering::Relaxed);
            Slot::default()
        })
    }

    /// Drops every key whose state is indistinguishable from a fresh one; shrinks tables that
    /// are mostly empty. The gateway calls this periodically (e.g. every 10 s).
    pub(crate) fn retain_recent(&self) {
        for shard in self.shards.iter() {
            let mut map = shard.map.write();
            self.prune(shard, &mut map, true);
            if map.capacity() > 4 * map.len() + 64 {
                map.shrink_to_fit();
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Bytes held by the key tables, computed from their capacities (hashbrown layout: one slot
    /// and one control byte per bucket, buckets a power of two at 7/8 load).
    pub(crate) fn memory_bytes(&self) -> usize {
        let slot = std::mem::size_of::<([u64; 2], Slot)>() + 1;
        let tables: usize = self
            .shards
            .iter()
            .map(|s| {
                let cap = s.map.read().capacity();
                if cap == 0 {
                    0
                } else {
                    let buckets = if cap < 8 {
                        (cap + 1).next_power_of_two()
                    } else {
                        (cap * 8 / 7).next_power_of_two()
                    };
                    buckets * slot + 16
                }
            })
            .sum();
        tables
            + self.overflow.len() * 8
            + self.shards.len() * std::mem::size_of::<Shard>()
            + self
                .shards
                .iter()
                .map(|s| s.dirty.lock().capacity() * 25)
                .sum::<usize>()
    }

    /// Takes the keys allowed since the last sync with their counts.
    pub(crate) fn drain_pending(&self) -> Vec<([u64; 2], u32)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            // `drain` keeps the table's capacity: the next interval does not regrow it.
            out.extend(shard.dirty.lock().drain());
        }
        out
    }

    /// Puts counts back after a failed push (bounded like new ones).
    pub(crate) fn restore_pending(&self, counts: &[([u64; 2], u32)]) {
        for (id, n) in counts {
            let mut dirty = self.shard(id).dirty.lock();
            if let Some(m) = dirty.get_mut(id) {
                *m = m.saturating_add(*n);
            } else if dirty.len() < self.dirty_cap {
                dirty.insert(*id, *n);
            } else {
                self.dirty_dropped
                    .fetch_add(u64::from(*n), Ordering::Relaxed);
            }
        }
    }

    /// Raises a key's TAT to `now + backlog` (what the cluster as a whole has consumed).
    pub(crate) fn apply_backlog(&self, id: &[u64; 2], backlog: Duration) {
        let target = self
            .now_rel()
            .saturating_add(u64::try_from(backlog.as_nanos()).unwrap_or(u64::MAX));
        let shard = self.shard(id);
        {
            let map = shard.map.read();
            if let Some(slot) = map.get(id) {
                slot.tat.fetch_max(target, Ordering::AcqRel);
                return;
            }
        }
        if backlog.is_zero() {
            return;
        }
        let mut map = shard.map.write();
        if map.contains_key(id) || self.has_room(&map) {
            self.insert(&mut map, *id)
                .tat
                .fetch_max(target, Ordering::AcqRel);
        }
    }
}

type Map<V> = HashMap<[u64; 2], V, KeyHash>;

/// A keyed hash for 128-bit keys: a folded 64×64→128-bit multiply per word, seeded per store
/// from the OS RNG. Keys can be chosen by clients (addresses), so the seed keeps bucket placement
/// unpredictable; it costs a few nanoseconds where SipHash costs about twenty, and it is
/// computed three times per decision (shard, table, cluster queue).
#[derive(Clone)]
pub(crate) struct KeyHash {
    seed: u64,
    mul: u64,
}

impl KeyHash {
    fn random() -> Self {
        // An odd multiplier with about as many ones as zeros: a sparse or dense one (about 1 in
        // 20 draws falls outside 24..=40 ones) spreads neighbouring keys measurably worse.
        let mut mul = rand::random::<u64>() | 1;
        while !(24..=40).contains(&mul.count_ones()) {
            mul = rand::random::<u64>() | 1;
        }
        Self {
            seed: rand::random(),
            mul,
        }
    }
}

impl BuildHasher for KeyHash {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher {
            h: self.seed,
            mul: self.mul,
        }
    }
}

pub(crate) struct KeyHasher {
    h: u64,
    mul: u64,
}

impl KeyHasher {
    fn mix(&mut self, x: u64) {
        let p = u128::from(self.h ^ x) * u128::from(self.mul);
        self.h = (p as u64) ^ ((p >> 64) as u64);
    }
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.mix(x);
    }
    fn write_usize(&mut self, x: usize) {
        self.mix(x as u64);
    }
    fn finish(&self) -> u64 {
        // One more folded multiply, by a fixed odd constant (2^64 / golden ratio): with the
        // random multiplier alone, about one store in 40 placed neighbouring keys up to 70 %
        // off their share of some bins.
        let p = u128::from(self.h) * 0x9e37_79b9_7f4a_7c15;
        (p as u64) ^ ((p >> 64) as u64)
    }
}

/// governor's compare-and-swap loop over one TAT.
fn measure<T, F, E>(cell: &AtomicU64, f: &F) -> Result<T, E>
where
    F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
{
    let mut prev = cell.load(Ordering::Acquire);
    loop {
        let seen = (prev != 0).then(|| Nanos::from(prev));
        let (result, next) = f(seen)?;
        match cell.compare_exchange_weak(
            prev,
            next.as_u64().max(1),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return Ok(result),
            Err(actual) => prev = actual,
        }
    }
}

impl StateStore for StoreRef {
    type Key = LimitKey;

    fn measure_and_replace<T, F, E>(&self, key: &LimitKey, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let store = &*self.0;
        let shard = store.shard(&key.id);
        {
            let map = shard.map.read();
            if let Some(slot) = map.get(&key.id) {
                let r = measure(&slot.tat, &f);
                if r.is_ok() {
                    store.after_allow(shard, &key.id);
                }
                return r;
            }
        }
        let mut map = shard.map.write();
        let known = map.contains_key(&key.id);
        if !known && !store.has_room(&map) {
            store.prune(shard, &mut map, false);
        }
        if !known && !store.has_room(&map) && store.global_prune_due() {
            // The whole store is full: idle keys may sit in other shards. Prune them all (no
            // shard lock held meanwhile), then look again.
            drop(map);
            store.retain_recent();
            map = shard.map.write();
        }
        if map.contains_key(&key.id) || store.has_room(&map) {
            let slot = store.insert(&mut map, key.id);
            let r = measure(&slot.tat, &f);
            if r.is_ok() {
                store.after_allow(shard, &key.id);
            }
            return r;
        }
        drop(map);
        // Full: share the overflow bucket of this client's network (see the module docs).
        store.overflowed.fetch_add(1, Ordering::Relaxed);
        let cell = &store.overflow[usize::from(key.group) % store.overflow.len()];
        measure(cell, &f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Neighbouring addresses (the keys an attacker controls best) spread evenly over shards,
    /// over hashbrown's bucket bits and over its control-tag bits: no bin more than 25 % off
    /// its share (5.6 standard deviations for the smallest bins: chance alone, about once in
    /// 200,000 runs; the multiplier alone, before the final round, failed about once in 40).
    #[test]
    fn key_hash_spreads_neighbouring_keys() {
        let h = KeyHash::random();
        let n = 65_536u64;
        for shape in [|i: u64| [0, 0xffff_0000_0000 | i], |i: u64| [i << 48, 0]] {
            let mut shards = [0u32; 64];
            let mut low = [0u32; 64];
            let mut tags = [0u32; 128];
            for i in 0..n {
                let x = h.hash_one(shape(i));
                shards[((x >> 32) & 63) as usize] += 1;
                low[(x & 63) as usize] += 1;
                tags[(x >> 57) as usize] += 1;
            }
            let check = |counts: &[u32]| {
                let mean = n as f64 / counts.len() as f64;
                for c in counts {
                    let r = f64::from(*c) / mean;
                    assert!((0.75..1.25).contains(&r), "{r}");
                }
            };
            check(&shards);
            check(&low);
            check(&tags);
        }
    }
}
