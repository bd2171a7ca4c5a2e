//! The proof that a prefilter is sound: every text a rule's regex matches
//! contains one of its literals. The engine runs a regex on a text only
//! when one literal of each of its groups occurs somewhere in the text, and
//! texts are lower case when scanned. An unsound group would silently let
//! some attacks through, so custom rules are checked here when they are
//! compiled, and the built-in rules by a test (`tests/prefilters.rs`).
//!
//! A group is sound when the regex cannot match any lower-case text that
//! avoids all of the group's literals. That is decided by walking the
//! product of the regex's DFA (the lazy DFA `regex` itself uses) and the
//! literals' Aho-Corasick automaton: every reachable pair stands for texts
//! with no literal so far, and reaching a regex match from one is a
//! counterexample.

use std::collections::HashSet;

use aho_corasick::automaton::Automaton as _;
use aho_corasick::{dfa::DFA as LiteralDfa, Anchored as LitAnchored, MatchKind, StartKind};
use regex_automata::hybrid::dfa::DFA;
use regex_automata::nfa::thompson;
use regex_automata::util::{start, syntax};
use regex_automata::Anchored;

/// Above this many (regex, literal) state pairs the proof gives up.
const MAX_PAIRS: usize = 400_000;

/// Longest counterexample reported (the text itself is built up to here).
const MAX_EXAMPLE: usize = 64;

/// Checks that every text `regex` matches (compiled as the engine compiles
/// rule regexes: case-insensitive, ASCII classes, any bytes) contains one
/// of `literals` (compared lower-cased).
///
/// `Err` carries a counterexample (`matches "..."`, a text the regex
/// matches with none of the literals) or why the proof could not finish;
/// either way the prefilter cannot be trusted.
pub fn prefilter_covers<S: AsRef<str>>(regex: &str, literals: &[S]) -> Result<(), String> {
    let re = DFA::builder()
        .configure(
            DFA::config()
                .cache_capacity(64 << 20)
                .minimum_cache_clear_count(Some(0)),
        )
        .syntax(
            syntax::Config::new()
                .case_insensitive(true)
                .unicode(false)
                .utf8(false),
        )
        .thompson(thompson::Config::new().utf8(false))
        .build(regex)
        .map_err(|e| format!("regex: {e}"))?;
    let mut cache = re.create_cache();
    let lower: Vec<String> = literals
        .iter()
        .map(|l| l.as_ref().to_ascii_lowercase())
        .collect();
    if lower.iter().any(String::is_empty) {
        return Err("empty literal".to_owned());
    }
    let ac = LiteralDfa::builder()
        .match_kind(MatchKind::Standard)
        .start_kind(StartKind::Unanchored)
        .build(&lower)
        .map_err(|e| format!("literals: {e}"))?;
    let r0 = re
        .start_state(&mut cache, &start::Config::new().anchored(Anchored::No))
        .map_err(|e| format!("regex start: {e}"))?;
    let a0 = ac
        .start_state(LitAnchored::No)
        .map_err(|e| format!("literals start: {e}"))?;
    // Texts are lower case: upper-case ASCII never occurs.
    let bytes: Vec<u8> = (0..=255u8).filter(|b| !b.is_ascii_uppercase()).collect();
    let found = |text: &[u8]| {
        Err(format!(
            "the regex matches {:?}, which contains none of the literals",
            String::from_utf8_lossy(text)
        ))
    };
    // Depth first, each pair with the (capped) text that reached it.
    let mut seen = HashSet::from([(r0, a0)]);
    let mut todo = vec![(r0, a0, Vec::<u8>::new())];
    while let Some((r, a, text)) = todo.pop() {
        if seen.len() > MAX_PAIRS {
            return Err("the regex is too large to check its prefilter".to_owned());
        }
        let eoi = re
            .next_eoi_state(&mut cache, r)
            .map_err(|e| format!("regex: {e}"))?;
        if eoi.is_match() {
            return found(&text);
        }
        for &b in &bytes {
            let a2 = ac.next_state(LitAnchored::No, a, b);
            if ac.is_match(a2) {
                // A literal occurs: the engine runs the regex, as it must.
                continue;
            }
            let r2 = re
                .next_state(&mut cache, r, b)
                .map_err(|e| format!("regex: {e}"))?;
            // Matches are reported one byte late: a match here means
            // `text` (without `b`) matched.
            if r2.is_match() || r2.is_quit() {
                return found(&text);
            }
            if r2.is_dead() || !seen.insert((r2, a2)) {
                continue;
            }
            let mut t = text.clone();
            if t.len() < MAX_EXAMPLE {
                t.push(b);
            }
            todo.push((r2, a2, t));
        }
    }
    // A cleared cache would have reused state ids under the walk.
    if cache.clear_count() > 0 {
        return Err("the regex is too large to check its prefilter".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proof_finds_holes() {
        assert!(prefilter_covers(r"union\s+select", &["union"]).is_ok());
        assert!(prefilter_covers(r"union\s+select", &["select", "union"]).is_ok());
        // `union all select` does not contain "union select".
        assert!(prefilter_covers(r"union\s+(all\s+)?select", &["union select"]).is_err());
        // An optional literal is no prefilter.
        let e = prefilter_covers(r"<(script)?", &["script"]).unwrap_err();
        assert!(e.contains(r#"matches "<""#), "{e}");
        // Case: texts are lower case, literals are compared lower-cased.
        assert!(prefilter_covers(r"ONERROR\s*=", &["OnError"]).is_ok());
        // Anchors and the end of text count.
        assert!(prefilter_covers(r"^\s*id$", &["id"]).is_ok());
        assert!(prefilter_covers(r"a$|b", &["b"]).is_err());
        // An empty match needs no literal at all.
        assert!(prefilter_covers(r"x*", &["x"]).is_err());
        assert!(prefilter_covers(r"(", &["x"]).is_err());
        assert!(prefilter_covers(r"x", &[""]).is_err());
    }
}
