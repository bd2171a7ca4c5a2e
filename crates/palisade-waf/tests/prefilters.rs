//! Every built-in rule's prefilter is sound: no text its regex matches lacks
//! all the literals of its `prefilter` (or of its `prefilter_also`) group.
//! An unsound prefilter silently lets some attacks through, so this is a
//! proof over all texts (`palisade_waf::prefilter_covers`), not a sample.
//! (Custom rules get the same check when they are compiled.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use palisade_waf::{prefilter_covers, CustomRule, BUILTIN_RULES};
use serde::Deserialize;

#[derive(Deserialize)]
struct RuleFile {
    rule: Vec<CustomRule>,
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
                match prefilter_covers(re, lits) {
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
    assert!(proved > 80, "only {proved} prefilter groups checked");
}
