//! The literal scanner: an index's prefilter literals as one flat,
//! case-folding DFA, and a walk that runs four texts at once.
//!
//! Walking a DFA is a chain of dependent loads (the next state needs the
//! previous one), so one text at a time waits on memory latency at every
//! byte. Four independent texts walked in the same loop give the processor
//! four chains to overlap; the instructions are the same, the time is not.
//!
//! The table is built from `aho-corasick`'s DFA (standard semantics: every
//! literal ending at a byte is reported, overlapping ones included) and
//! re-laid out: byte classes are the distinct bytes of the literals plus
//! one class for every other byte, ASCII upper case shares the class of its
//! lower case (literals are lower case, so texts need not be lowered
//! first), and match states come first, so one comparison tells a match.

use std::collections::HashMap;

use aho_corasick::automaton::Automaton as _;
use aho_corasick::dfa::DFA;
use aho_corasick::{Anchored, MatchKind, StartKind};

/// Above this many states × classes the literal table is refused (a custom
/// rule set that large is a mistake; the built-in ones use a few hundred
/// thousand).
const MAX_CELLS: usize = 16 << 20;

/// A flat DFA over lower-case literals.
///
/// `classes[b]` is the class of byte `b`, and a state is an offset into
/// `trans` (premultiplied by the number of classes), so the next state is
/// `trans[state + classes[b]]`. Match states are numbered first and the
/// start state right after them: a state below `start` is a match.
#[derive(Debug)]
pub(crate) struct LitDfa {
    classes: [u8; 256],
    trans: Vec<u32>,
    stride: u32,
    start: u32,
    /// For match state `id / stride`: the literals that end there.
    lits: Vec<Vec<u32>>,
    /// The shortest literal: a shorter text holds none.
    min_len: usize,
    /// The longest literal.
    max_len: usize,
}

/// A text at least this long is walked as four overlapping pieces, so that
/// its four lanes run side by side too.
const SPLIT: usize = 1024;

/// The texts of a walk, as the lanes take them: texts shorter than the
/// shortest literal are skipped, and a long one is cut into four pieces
/// that overlap by `max_len - 1` bytes (every literal lies whole in one of
/// them; one found twice is reported twice, which the caller folds in
/// once).
struct Pieces<'t, I> {
    texts: I,
    /// Pieces of the last long text still to hand out, last first.
    pending: [(&'t [u8], usize); 3],
    left: usize,
    min_len: usize,
    max_len: usize,
}

impl<'t, I: Iterator<Item = (&'t [u8], usize)>> Iterator for Pieces<'t, I> {
    type Item = (&'t [u8], usize);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left > 0 {
            self.left -= 1;
            return self.pending.get(self.left).copied();
        }
        loop {
            let (text, job) = self.texts.next()?;
            let n = text.len();
            if n < self.min_len {
                continue;
            }
            if n < SPLIT {
                return Some((text, job));
            }
            let size = n.div_ceil(4);
            let back = self.max_len.saturating_sub(1);
            let piece = |i: usize| {
                let start = (i * size).saturating_sub(back);
                (text.get(start..((i + 1) * size).min(n)).unwrap_or(b""), job)
            };
            self.pending = [piece(3), piece(2), piece(1)];
            self.left = 3;
            return Some(piece(0));
        }
    }
}

impl LitDfa {
    /// Compiles lower-case literals (none empty).
    pub(crate) fn build(literals: &[String]) -> Result<LitDfa, String> {
        let ac = DFA::builder()
            .ascii_case_insensitive(false)
            .match_kind(MatchKind::Standard)
            .start_kind(StartKind::Unanchored)
            .prefilter(false)
            .build(literals)
            .map_err(|e| format!("literal automaton: {e}"))?;
        let start = ac
            .start_state(Anchored::No)
            .map_err(|e| format!("literal automaton: {e}"))?;
        // One class per byte that occurs in a literal; every other byte
        // leads back to the start state from anywhere, so they share class 0.
        let mut in_lit = [false; 256];
        for l in literals {
            for &b in l.as_bytes() {
                in_lit[b as usize] = true;
            }
        }
        let mut classes = [0u8; 256];
        let mut reps: Vec<u8> = vec![0];
        for b in 0..=255u8 {
            if in_lit[b as usize] {
                classes[b as usize] =
                    u8::try_from(reps.len()).map_err(|_| "too many byte classes")?;
                reps.push(b);
            }
        }
        // Upper case reads as lower case.
        for b in b'A'..=b'Z' {
            classes[b as usize] = classes[(b + 32) as usize];
        }
        // Class 0 needs a representative that occurs in no literal.
        let Some(other) = (0..=255u8).find(|&b| classes[b as usize] == 0 && !in_lit[b as usize])
        else {
            return Err("literal automaton: every byte occurs in a literal".to_owned());
        };
        reps[0] = other;
        let stride = reps.len();
        // Breadth-first over the states reachable from the start.
        let mut order = vec![start];
        let mut seen: HashMap<aho_corasick::automaton::StateID, usize> = HashMap::new();
        seen.insert(start, 0);
        let mut k = 0;
        while k < order.len() {
            let s = order[k];
            for &b in &reps {
                let n = ac.next_state(Anchored::No, s, b);
                if let std::collections::hash_map::Entry::Vacant(e) = seen.entry(n) {
                    e.insert(order.len());
                    order.push(n);
                }
            }
            k += 1;
            if order.len() * stride > MAX_CELLS {
                return Err("literal automaton too large".to_owned());
            }
        }
        // Match states first, then the start state (never a match: no
        // literal is empty), then the others.
        let is_match = |s| ac.is_special(s) && ac.is_match(s);
        let matches = order.iter().filter(|&&s| is_match(s)).count();
        let mut number = vec![0u32; order.len()];
        let mut next_match = 0u32;
        let mut next_other = u32::try_from(matches).map_err(|_| "too many states")?;
        for (i, &s) in order.iter().enumerate() {
            let slot = if is_match(s) {
                &mut next_match
            } else {
                &mut next_other
            };
            number[i] = *slot;
            *slot += 1;
        }
        let stride32 = u32::try_from(stride).map_err(|_| "too many byte classes")?;
        let id = |i: usize| number[i] * stride32;
        // A power-of-two length, so that `next` can mask its index into range
        // instead of checking it (the padding is never reached).
        let mut trans = vec![0u32; (order.len() * stride).next_power_of_two()];
        let mut lits = vec![Vec::new(); matches];
        for (i, &s) in order.iter().enumerate() {
            let at = id(i) as usize;
            for (c, &b) in reps.iter().enumerate() {
                trans[at + c] = id(seen[&ac.next_state(Anchored::No, s, b)]);
            }
            if is_match(s) {
                let slot = &mut lits[number[i] as usize];
                for m in 0..ac.match_len(s) {
                    slot.push(ac.match_pattern(s, m).as_u32());
                }
            }
        }
        Ok(LitDfa {
            classes,
            trans,
            stride: stride32,
            start: id(0),
            lits,
            min_len: literals.iter().map(String::len).min().unwrap_or(1),
            max_len: literals.iter().map(String::len).max().unwrap_or(1),
        })
    }

    /// The match states, in order: the literals ending at each.
    pub(crate) fn match_literals(&self) -> &[Vec<u32>] {
        &self.lits
    }

    /// Reports a match state (kept out of line: the walk rarely needs it).
    #[cold]
    #[inline(never)]
    fn report(&self, job: usize, sid: u32, hit: &mut impl FnMut(usize, usize)) {
        hit(job, (sid / self.stride) as usize);
    }

    #[inline(always)]
    fn next(&self, sid: u32, b: u8) -> u32 {
        let at = sid as usize + self.classes[b as usize] as usize;
        // Every state plus a class is inside the table, and the table's
        // length is a power of two: the mask changes nothing and lets the
        // compiler drop the bounds check.
        let t = &self.trans[..];
        t[at & t.len().wrapping_sub(1)]
    }

    /// Walks every text through the DFA from the start state and calls
    /// `hit(job, match_no)` at every byte where a match state is reached
    /// (the same match state may be reported many times). Four texts are
    /// walked side by side.
    pub(crate) fn scan<'t>(
        &self,
        texts: impl Iterator<Item = (&'t [u8], usize)>,
        hit: &mut impl FnMut(usize, usize),
    ) {
        let mut rest = Pieces {
            texts,
            pending: [(&b""[..], 0); 3],
            left: 0,
            min_len: self.min_len.max(1),
            max_len: self.max_len,
        };
        let first = [rest.next(), rest.next(), rest.next(), rest.next()];
        let [Some((mut ta, mut ja)), Some((mut tb, mut jb)), Some((mut tc, mut jc)), Some((mut td, mut jd))] =
            first
        else {
            // Fewer than four: one at a time.
            for (t, job) in first.into_iter().flatten() {
                self.walk_from(t, job, self.start, hit);
            }
            return;
        };
        let start = self.start;
        let (mut sa, mut sb, mut sc, mut sd) = (start, start, start, start);
        loop {
            let n = ta.len().min(tb.len()).min(tc.len()).min(td.len());
            let (xa, xb, xc, xd) = (&ta[..n], &tb[..n], &tc[..n], &td[..n]);
            for i in 0..n {
                sa = self.next(sa, xa[i]);
                sb = self.next(sb, xb[i]);
                sc = self.next(sc, xc[i]);
                sd = self.next(sd, xd[i]);
                if sa < start {
                    self.report(ja, sa, hit);
                }
                if sb < start {
                    self.report(jb, sb, hit);
                }
                if sc < start {
                    self.report(jc, sc, hit);
                }
                if sd < start {
                    self.report(jd, sd, hit);
                }
            }
            (ta, tb, tc, td) = (&ta[n..], &tb[n..], &tc[n..], &td[n..]);
            // Refill the lanes that ran out; when none is left, finish the
            // others one at a time.
            macro_rules! refill {
                ($t:ident, $j:ident, $s:ident, $others:expr) => {
                    if $t.is_empty() {
                        match rest.next() {
                            Some((t, j)) => {
                                ($t, $j, $s) = (t, j, start);
                            }
                            None => {
                                for (t, j, s) in $others {
                                    self.walk_from(t, j, s, hit);
                                }
                                return;
                            }
                        }
                    }
                };
            }
            refill!(ta, ja, sa, [(tb, jb, sb), (tc, jc, sc), (td, jd, sd)]);
            refill!(tb, jb, sb, [(ta, ja, sa), (tc, jc, sc), (td, jd, sd)]);
            refill!(tc, jc, sc, [(ta, ja, sa), (tb, jb, sb), (td, jd, sd)]);
            refill!(td, jd, sd, [(ta, ja, sa), (tb, jb, sb), (tc, jc, sc)]);
        }
    }

    /// Like [`LitDfa::scan`] for one text, when every literal starts with
    /// one of `needles` (at most three bytes): jumps from one needle to the
    /// next and walks only while a literal may be under way.
    pub(crate) fn scan_sparse(
        &self,
        text: &[u8],
        needles: &[u8],
        job: usize,
        hit: &mut impl FnMut(usize, usize),
    ) {
        if text.len() < self.min_len {
            return;
        }
        let find = |from: &[u8]| match *needles {
            [a] => memchr::memchr(a, from),
            [a, b] => memchr::memchr2(a, b, from),
            [a, b, c] => memchr::memchr3(a, b, c, from),
            _ => None,
        };
        let mut at = 0;
        while let Some(p) = text.get(at..).and_then(find) {
            let mut sid = self.start;
            let mut i = at + p;
            while let Some(&b) = text.get(i) {
                sid = self.next(sid, b);
                i += 1;
                if sid < self.start {
                    self.report(job, sid, hit);
                } else if sid == self.start {
                    break;
                }
            }
            at = i;
        }
    }

    fn walk_from(&self, text: &[u8], job: usize, mut sid: u32, hit: &mut impl FnMut(usize, usize)) {
        for &b in text {
            sid = self.next(sid, b);
            if sid < self.start {
                self.report(job, sid, hit);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(lits: &[&str], texts: &[&str]) -> Vec<Vec<String>> {
        let owned: Vec<String> = lits.iter().map(|s| s.to_string()).collect();
        let dfa = LitDfa::build(&owned).unwrap();
        let jobs = texts.iter().enumerate().map(|(job, t)| (t.as_bytes(), job));
        let mut out = vec![Vec::new(); texts.len()];
        dfa.scan(jobs, &mut |job, m| {
            for &l in &dfa.match_literals()[m] {
                let s = owned[l as usize].clone();
                if !out[job].contains(&s) {
                    out[job].push(s);
                }
            }
        });
        for o in &mut out {
            o.sort();
        }
        out
    }

    #[test]
    fn every_literal_every_text() {
        let lits = ["select", "sel", "lect", "'", "union", "<script", "x"];
        let texts = [
            "SELECT * FROM t",
            "a union b",
            "",
            "nothing here",
            "<ScRiPt>",
            "o'reilly",
            "xx",
            "sel",
            "nothing to find in here, none at all, for a while",
        ];
        let got = found(&lits, &texts);
        let want: Vec<Vec<&str>> = vec![
            vec!["lect", "sel", "select"],
            vec!["union"],
            vec![],
            vec![],
            vec!["<script"],
            vec!["'"],
            vec!["x"],
            vec!["sel"],
            vec![],
        ];
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, w);
        }
    }

    #[test]
    fn long_texts_in_pieces_miss_nothing() {
        let lits = ["<script", "union select", "ab"];
        // Literals straddling every piece boundary of a long text.
        let mut text = "x".repeat(5000);
        for at in [1245, 1250, 2496, 2500, 3745, 3751, 4993] {
            text.replace_range(at..at + 7, "<script");
        }
        text.replace_range(2490..2502, "union select");
        let got = found(&lits, &[&text, &text[1200..1300], "ab"]);
        assert_eq!(
            got[0],
            vec!["<script".to_owned(), "union select".to_owned()]
        );
        assert!(got[1].contains(&"<script".to_owned()));
        assert_eq!(got[2], vec!["ab".to_owned()]);
    }

    #[test]
    fn sparse_scan_finds_the_same() {
        let lits = ["%0d", "%0a", "%u000", "%25", ":/"];
        let owned: Vec<String> = lits.iter().map(|s| s.to_string()).collect();
        let dfa = LitDfa::build(&owned).unwrap();
        for text in [
            "/a?b=%0D%0a&c=%25%u000d",
            "x:/y",
            "nothing",
            "%%%0",
            "%0%0d",
            "",
        ] {
            let mut dense = Vec::new();
            dfa.scan([(text.as_bytes(), 0)].into_iter(), &mut |_, m| {
                dense.push(m)
            });
            let mut sparse = Vec::new();
            dfa.scan_sparse(text.as_bytes(), b"%:", 0, &mut |_, m| sparse.push(m));
            assert_eq!(dense, sparse, "{text:?}");
        }
    }

    #[test]
    fn agrees_with_a_naive_search() {
        // Pseudo-random texts over a small alphabet, many lanes of
        // different lengths.
        let lits = ["ab", "ba", "aab", "b", "ca", "abc"];
        let owned: Vec<String> = lits.iter().map(|s| s.to_string()).collect();
        let mut seed = 7u32;
        let mut texts = Vec::new();
        for n in 0..60 {
            let mut t = String::new();
            for _ in 0..(n * 7 % 23) {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                t.push(['a', 'B', 'c', 'd'][(seed >> 16) as usize % 4]);
            }
            texts.push(t);
        }
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let got = found(&lits, &refs);
        for (t, g) in texts.iter().zip(&got) {
            let lower = t.to_ascii_lowercase();
            let mut want: Vec<String> = owned
                .iter()
                .filter(|l| lower.contains(l.as_str()))
                .cloned()
                .collect();
            want.sort();
            assert_eq!(g, &want, "text {t:?}");
        }
    }
}
