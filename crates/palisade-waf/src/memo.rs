//! The header and cookie memo: what the rules found in a text, kept per
//! thread for the next request that carries the same text.
//!
//! A shop's requests repeat most of their bytes: every request of one
//! browser sends the same `User-Agent`, `Accept`, client hints and header
//! names, every request of one visitor the same cookies, and the paths and
//! query parameters of a shop's pages (`page=2`, `sort=price`, campaign
//! tags) come back from visitor to visitor. Bodies are not remembered. What the rules
//! make of a value depends only on the engine, the index the value is read
//! with and the value itself (its views, the literals in them and the rules
//! those select are all computed from it), so the rules a value matched can
//! be remembered and replayed instead of computed again. Replaying goes
//! through the same recording step as a fresh match (exclusions, the
//! first-match order, the match cap), so a verdict is the same with the
//! memo as without it; `tests/memo.rs` checks that request by request.
//!
//! Bounded by construction: a fixed number of slots, direct-mapped by a
//! seeded hash (a collision only evicts), texts of at most [`MAX_TEXT`]
//! bytes and at most [`MAX_RULES`] rules per text. A hit compares the whole
//! text, never the hash alone.

use std::hash::BuildHasher;

/// Slots per thread (a power of two).
pub(crate) const SLOTS: usize = 2048;
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
    engine: EngineId,
    idx: u16,
    hash: u64,
    text: Vec<u8>,
    rules: Vec<u16>,
}

/// One thread's memo (see the module documentation).
#[derive(Default)]
pub(crate) struct Memo {
    /// Allocated on first use.
    slots: Vec<Slot>,
    hasher: foldhash::fast::RandomState,
    /// Lookups answered from the memo, and those that were not.
    pub(crate) hits: u64,
    pub(crate) misses: u64,
}

impl Memo {
    /// The key of a text read with index `idx` of engine `engine`.
    pub(crate) fn hash(&self, engine: EngineId, idx: u16, text: &[u8]) -> u64 {
        self.hasher.hash_one((engine, idx, text))
    }

    fn slot(hash: u64) -> usize {
        (hash as usize) & (SLOTS - 1)
    }

    /// The rules `text` matched when it was last seen, if it is remembered.
    pub(crate) fn get(
        &mut self,
        hash: u64,
        engine: EngineId,
        idx: u16,
        text: &[u8],
    ) -> Option<&[u16]> {
        let found = self.slots.get(Self::slot(hash)).filter(|s| {
            s.used && s.hash == hash && s.engine == engine && s.idx == idx && s.text == text
        });
        match found {
            Some(s) => {
                self.hits += 1;
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
        let Some(s) = self.slots.get_mut(Self::slot(hash)) else {
            return;
        };
        s.used = true;
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
