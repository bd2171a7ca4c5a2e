//! The value memo: what the rules found in a path, query, header or cookie
//! value, kept per thread for the next request that carries the same text.
//!
//! A shop's requests repeat most of their bytes: every request of one
//! browser sends the same `User-Agent`, `Accept`, client hints and header
//! names, every request of one visitor the same cookies, and the paths and
//! query parameters of a shop's pages (`page=2`, `sort=price`, campaign
//! tags) come back from visitor to visitor. Bodies are not remembered.
//!
//! What the rules make of a value depends only on the engine, the index
//! the value is read with and the value itself (its views, the literals in them and the rules
//! those select are all computed from it), so the rules a value matched can
//! be remembered and replayed instead of computed again. Replaying goes
//! through the same recording step as a fresh match (exclusions, the
//! first-match order, the match cap), so a verdict is the same with the
//! memo as without it; `tests/memo.rs` checks that request by request.
//!
//! Bounded by construction: a fixed number of slots in sets of [`WAYS`],
//! chosen by a seeded hash (a full set evicts its least recently used
//! text; collisions cost a miss, never a wrong answer), texts of at most
//! [`MAX_TEXT`] bytes and at most [`MAX_RULES`] rules per text. A hit
//! compares the whole text, never the hash alone.
//!
//! A hit answers a few microseconds sooner than a miss. All that could
//! tell a client is that some request on the same worker recently carried
//! the very same text, which it must already know to send; a session id or
//! a token is not learned that way.

use std::hash::BuildHasher;

/// Slots per thread (a power of two).
pub(crate) const SLOTS: usize = 2048;
/// Slots per set: a request's seventy-odd values rarely fill one, where
/// with one slot per set two of them would often evict each other.
pub(crate) const WAYS: usize = 4;
const SETS: usize = SLOTS / WAYS;
/// Longer values are not remembered (long cookies are rarely shared, and
/// the bound keeps a thread's memo under 1 MiB of text).
pub(crate) const MAX_TEXT: usize = 512;
/// A text that matched more rules than this is not remembered (it is an
/// attack, and attacks are not worth a slot).
pub(crate) const MAX_RULES: usize = 16;

/// Which engine built a memo entry: every compiled engine gets its own.
pub(crate) type EngineId = u64;

#[derive(Default)]
struct Slot {
    used: bool,
    /// `Memo::clock` when last found or stored (the set's least recent
    /// goes first).
    last: u64,
    engine: EngineId,
    idx: u16,
    hash: u64,
    text: Vec<u8>,
    rules: Vec<u16>,
}

impl Slot {
    /// Whether this slot remembers `text` as read with index `idx` of
    /// engine `engine`.
    fn holds(&self, hash: u64, engine: EngineId, idx: u16, text: &[u8]) -> bool {
        self.used
            && self.hash == hash
            && self.engine == engine
            && self.idx == idx
            && self.text == text
    }
}

/// One thread's memo (see the module documentation).
#[derive(Default)]
pub(crate) struct Memo {
    /// Allocated on first use.
    slots: Vec<Slot>,
    hasher: foldhash::fast::RandomState,
    clock: u64,
    /// Lookups answered from the memo, and those that were not.
    pub(crate) hits: u64,
    pub(crate) misses: u64,
}

impl Memo {
    /// The key of a text read with index `idx` of engine `engine`.
    #[inline(always)]
    pub(crate) fn hash(&self, engine: EngineId, idx: u16, text: &[u8]) -> u64 {
        self.hasher.hash_one((engine, idx, text))
    }

    /// The first slot of `hash`'s set.
    fn set(hash: u64) -> usize {
        ((hash as usize) & (SETS - 1)) * WAYS
    }

    /// The rules `text` matched when it was last seen, if it is remembered.
    pub(crate) fn get(
        &mut self,
        hash: u64,
        engine: EngineId,
        idx: u16,
        text: &[u8],
    ) -> Option<&[u16]> {
        self.clock += 1;
        let clock = self.clock;
        let base = Self::set(hash);
        let found = self
            .slots
            .get_mut(base..base + WAYS)
            .and_then(|set| set.iter_mut().find(|s| s.holds(hash, engine, idx, text)));
        match found {
            Some(s) => {
                self.hits += 1;
                s.last = clock;
                Some(&s.rules)
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    /// Remembers the rules `text` matched (in the order they were found),
    /// in place of whatever held its slot.
    pub(crate) fn put(
        &mut self,
        hash: u64,
        engine: EngineId,
        idx: u16,
        text: &[u8],
        rules: &[u16],
    ) {
        if text.len() > MAX_TEXT || rules.len() > MAX_RULES {
            return;
        }
        if self.slots.is_empty() {
            self.slots.resize_with(SLOTS, Slot::default);
        }
        self.clock += 1;
        let base = Self::set(hash);
        // The text's own slot when it is there already (two values of one
        // request can be the same text), else an empty slot of the set,
        // else its least recently used.
        let Some(set) = self.slots.get_mut(base..base + WAYS) else {
            return;
        };
        let same = set.iter().position(|s| s.holds(hash, engine, idx, text));
        let way = same.or_else(|| (0..WAYS).min_by_key(|&w| set.get(w).map(|s| (s.used, s.last))));
        let Some(s) = way.and_then(|w| set.get_mut(w)) else {
            return;
        };
        s.used = true;
        s.last = self.clock;
        s.engine = engine;
        s.idx = idx;
        s.hash = hash;
        s.text.clear();
        // Exact, so that a slot never holds more than `MAX_TEXT` bytes.
        s.text.reserve_exact(text.len());
        s.text.extend_from_slice(text);
        s.rules.clear();
        s.rules.extend_from_slice(rules);
    }

    /// Remembered texts (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.used).count()
    }

    /// Bytes of text held (for tests).
    #[cfg(test)]
    fn text_bytes(&self) -> usize {
        self.slots.iter().map(|s| s.text.capacity()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_is_found_only_under_its_own_engine_index_and_bytes() {
        let mut m = Memo::default();
        let h = m.hash(1, 5, b"Mozilla/5.0");
        m.put(h, 1, 5, b"Mozilla/5.0", &[3, 9]);
        assert_eq!(m.get(h, 1, 5, b"Mozilla/5.0"), Some(&[3u16, 9][..]));
        // Same slot and hash, other bytes: a miss, not a wrong answer.
        assert_eq!(m.get(h, 1, 5, b"Mozilla/5.1"), None);
        assert_eq!(
            m.get(m.hash(2, 5, b"Mozilla/5.0"), 2, 5, b"Mozilla/5.0"),
            None
        );
        assert_eq!(
            m.get(m.hash(1, 6, b"Mozilla/5.0"), 1, 6, b"Mozilla/5.0"),
            None
        );
        assert_eq!((m.hits, m.misses), (1, 3));
    }

    #[test]
    fn a_full_set_gives_up_its_least_recently_used_text() {
        let mut m = Memo::default();
        // Hashes of one set (equal low bits), made up for the test.
        let h = |k: u64| (k << 40) | 7;
        for k in 0..WAYS as u64 {
            m.put(h(k), 1, 0, format!("text {k}").as_bytes(), &[k as u16]);
        }
        // All four are kept side by side ...
        for k in 0..WAYS as u64 {
            let t = format!("text {k}");
            assert_eq!(m.get(h(k), 1, 0, t.as_bytes()), Some(&[k as u16][..]));
        }
        // ... and a fifth takes the place of the one used longest ago
        // (text 0 is used again first, so text 1 goes).
        assert!(m.get(h(0), 1, 0, b"text 0").is_some());
        m.put(h(9), 1, 0, b"text 9", &[9]);
        assert_eq!(m.get(h(1), 1, 0, b"text 1"), None);
        for k in [0, 2, 3, 9] {
            let t = format!("text {k}");
            assert!(m.get(h(k), 1, 0, t.as_bytes()).is_some(), "text {k}");
        }
        // Other sets are untouched.
        assert_eq!(m.len(), WAYS);
        // Storing a text that is there already replaces it, in its slot.
        m.put(h(2), 1, 0, b"text 2", &[2, 5]);
        assert_eq!(m.len(), WAYS);
        assert_eq!(m.get(h(2), 1, 0, b"text 2"), Some(&[2u16, 5][..]));
        assert!(m.get(h(9), 1, 0, b"text 9").is_some());
    }

    #[test]
    fn long_texts_and_attack_texts_are_not_remembered() {
        let mut m = Memo::default();
        let long = vec![b'a'; MAX_TEXT + 1];
        let h = m.hash(1, 0, &long);
        m.put(h, 1, 0, &long, &[]);
        assert_eq!(m.get(h, 1, 0, &long), None);
        let many: Vec<u16> = (0..=MAX_RULES as u16).collect();
        let h = m.hash(1, 0, b"x");
        m.put(h, 1, 0, b"x", &many);
        assert_eq!(m.get(h, 1, 0, b"x"), None);
        let exact = vec![b'a'; MAX_TEXT];
        let h = m.hash(1, 0, &exact);
        m.put(h, 1, 0, &exact, &many[..MAX_RULES]);
        assert_eq!(m.get(h, 1, 0, &exact).map(<[u16]>::len), Some(MAX_RULES));
    }

    #[test]
    fn the_memo_stays_within_its_slots_and_text_bound() {
        let mut m = Memo::default();
        for i in 0..SLOTS * 8 {
            // Sizes vary, so that slots are reused by longer texts.
            let text = format!("{i:0>width$}", width = 1 + (i * 37) % MAX_TEXT);
            let h = m.hash(7, 1, text.as_bytes());
            m.put(h, 7, 1, text.as_bytes(), &[1]);
        }
        assert!(m.len() <= SLOTS);
        // Most slots are taken by then, and no slot holds more text than
        // the bound however often it was reused.
        assert!(m.len() > SLOTS / 2, "{}", m.len());
        assert!(m.text_bytes() <= SLOTS * MAX_TEXT);
    }
}
