//! A proof, for every built-in rule, that its prefilter is sound: no text
//! the rule's regex matches lacks all of its prefilter literals (and, with
//! `prefilter_also`, all of the second group). An unsound prefilter would
//! silently let some attacks through, so this is checked exhaustively
//! rather than on samples.
//!
//! The engine runs a regex on a text only when one literal of each group
//! occurs somewhere in it, and every text is lower case when scanned. So a
//! prefilter group is sound when the regex cannot match any lower-case text
//! that avoids all of the group's literals. That is decided by walking the
//! product of the regex's DFA and the literals' Aho-Corasick automaton:
//! every reachable pair stands for texts with no literal so far; reaching a
//! regex match there is a counterexample.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;

use aho_corasick::automaton::Automaton as _;
use aho_corasick::{dfa::DFA as LitDfa, Anchored as AcAnchored, MatchKind, StartKind};
use palisade_waf::{CustomRule, BUILTIN_RULES};
use regex_automata::hybrid::dfa::DFA;
use regex_automata::nfa::thompson;
use regex_automata::util::{start, syntax};
use regex_automata::Anchored;
use serde::Deserialize;

#[derive(Deserialize)]
struct RuleFile {
    rule: Vec<CustomRule>,
}

/// Above this many product states the proof gives up (and fails).
const MAX_PAIRS: usize = 400_000;

/// `Ok(())` when every text `pattern` matches (compiled as the engine does:
/// case-insensitive, ASCII classes, any bytes) contains one of `lits`;
/// otherwise a counterexample text, or why the proof could not finish.
fn covers(pattern: &str, lits: &[String]) -> Result<(), String> {
    let re = DFA::builder()
        .configure(
            DFA::config()
                .cache_capacity(256 << 20)
                .minimum_cache_clear_count(Some(0)),
        )
        .syntax(
            syntax::Config::new()
                .case_insensitive(true)
                .unicode(false)
                .utf8(false),
        )
        .thompson(thompson::Config::new().utf8(false))
        .build(pattern)
        .map_err(|e| format!("regex: {e}"))?;
    let mut cache = re.create_cache();
    let lower: Vec<String> = lits.iter().map(|l| l.to_ascii_lowercase()).collect();
    let ac = LitDfa::builder()
        .match_kind(MatchKind::Standard)
        .start_kind(StartKind::Unanchored)
        .build(&lower)
        .map_err(|e| format!("literals: {e}"))?;
    let r0 = re
        .start_state(&mut cache, &start::Config::new().anchored(Anchored::No))
        .map_err(|e| format!("start: {e}"))?;
    let a0 = ac
        .start_state(AcAnchored::No)
        .map_err(|e| format!("start: {e}"))?;
    // Texts are lower case: upper-case ASCII never occurs.
    let bytes: Vec<u8> = (0..=255u8).filter(|b| !b.is_ascii_uppercase()).collect();
    // Each pair with the text that reached it (for the report).
    let mut seen = HashSet::from([(r0, a0)]);
    let mut todo = vec![(r0, a0, Vec::<u8>::new())];
    while let Some((r, a, text)) = todo.pop() {
        if seen.len() > MAX_PAIRS {
            return Err("too many states to finish the proof".to_owned());
        }
        let eoi = re
            .next_eoi_state(&mut cache, r)
            .map_err(|e| format!("cache: {e}"))?;
        if eoi.is_match() {
            return Err(format!("matches {:?}", String::from_utf8_lossy(&text)));
        }
        for &b in &bytes {
            let a2 = ac.next_state(AcAnchored::No, a, b);
            if ac.is_match(a2) {
                // A literal occurs: the engine runs the regex, as it must.
                continue;
            }
            let r2 = re
                .next_state(&mut cache, r, b)
                .map_err(|e| format!("cache: {e}"))?;
            if r2.is_match() || r2.is_quit() {
                // (Matches are reported one byte late: `text` matched.)
                return Err(format!("matches {:?}", String::from_utf8_lossy(&text)));
            }
            if r2.is_dead() || !seen.insert((r2, a2)) {
                continue;
            }
            let mut t = text.clone();
            t.push(b);
            todo.push((r2, a2, t));
        }
    }
    if cache.clear_count() > 0 {
        return Err("DFA cache cleared during the proof".to_owned());
    }
    Ok(())
}

#[test]
fn every_builtin_prefilter_is_sound() {
    let mut failures = Vec::new();
    let mut proved = 0;
    for (file, text) in BUILTIN_RULES {
        let rules: RuleFile = toml::from_str(text).expect("built-in rules parse");
        for rule in rules.rule {
            let Some(re) = &rule.regex else { continue };
            for (group, lits) in [
                ("prefilter", &rule.prefilter),
                ("prefilter_also", &rule.prefilter_also),
            ] {
                if lits.is_empty() {
                    continue;
                }
                match covers(re, lits) {
                    Ok(()) => proved += 1,
                    Err(why) => failures.push(format!("{file} {} {group}: {why}", rule.id)),
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "unsound prefilters:\n{}",
        failures.join("\n")
    );
    assert!(proved > 50, "only {proved} prefilters checked");
}

#[test]
fn the_proof_finds_holes() {
    let lits = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert!(covers(r"union\s+select", &lits(&["union"])).is_ok());
    assert!(covers(r"union\s+select", &lits(&["select", "union"])).is_ok());
    // `union all select` does not contain "union select".
    assert!(covers(r"union\s+(all\s+)?select", &lits(&["union select"])).is_err());
    // An optional literal is no prefilter.
    assert!(covers(r"<(script)?", &lits(&["script"])).is_err());
    // Case: texts are lower case, literals are compared lower-cased.
    assert!(covers(r"ONERROR\s*=", &lits(&["OnError"])).is_ok());
    // Anchors and the end of text count.
    assert!(covers(r"^\s*id$", &lits(&["id"])).is_ok());
    assert!(covers(r"a$|b", &lits(&["b"])).is_err());
}
