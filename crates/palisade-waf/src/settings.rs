//! Site-level WAF settings as written in the config file (`[sites.waf]`).
//!
//! These are the *raw* settings: every field that can be wrong keeps its
//! [`toml::Spanned`] position so that [`crate::compile`] can report
//! `file:line:col` errors through the config crate.

use serde::Deserialize;
use toml::Spanned;

/// `[sites.waf]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WafSettings {
    /// Inspect requests at all (default `true`).
    pub enabled: Option<bool>,
    /// `"block"` (default) or `"detect"`.
    pub mode: Option<Spanned<String>>,
    /// Paranoia level 1..=4 (default 1): rules above it are not loaded.
    pub paranoia: Option<Spanned<i64>>,
    /// Anomaly score at which a request is blocked (default 5).
    pub threshold: Option<Spanned<i64>>,
    /// Bytes of body inspected (default 131072).
    pub body_limit: Option<Spanned<i64>>,
    /// `"inspect-prefix"` (default) or `"reject"`.
    pub body_overflow: Option<Spanned<String>>,
    /// Per-rule or per-category mode overrides.
    #[serde(default)]
    pub rule_modes: Vec<Spanned<RuleMode>>,
    /// Scoped exclusions for known false positives.
    #[serde(default)]
    pub exclusions: Vec<Spanned<Exclusion>>,
    /// Custom rules, same shape as the built-in TOML rules.
    #[serde(default)]
    pub rules: Vec<Spanned<CustomRule>>,
}

/// `{ rule = "sqli-100", mode = "detect" }` or `{ category = "xss", mode = "off" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleMode {
    /// A rule id.
    pub rule: Option<String>,
    /// A category name (`"sqli"`, `"xss"`, ...).
    pub category: Option<String>,
    /// `"block"`, `"detect"` or `"off"`.
    pub mode: String,
}

/// `{ path_prefix = "/admin/cms", categories = ["xss"], args = ["content"] }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exclusion {
    /// Only requests whose (decoded, collapsed) path starts with this.
    /// Absent: every path.
    pub path_prefix: Option<String>,
    /// Rule ids excluded. Empty together with `categories`: every rule.
    #[serde(default)]
    pub rules: Vec<String>,
    /// Categories excluded.
    #[serde(default)]
    pub categories: Vec<String>,
    /// Only matches in these argument names (query, form, JSON, multipart,
    /// XML); empty: matches anywhere.
    #[serde(default)]
    pub args: Vec<String>,
}

/// A rule as written in TOML, built-in or custom.
///
/// Exactly one operator must be given: `regex`, `literals`, `detector` or
/// `length_gt`/`count_gt`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomRule {
    /// Unique id, e.g. `"sqli-100"` or `"shop-1"`.
    pub id: String,
    /// One of the category names (see [`crate::Category`]).
    pub category: String,
    /// What the rule is about (for operators; never shown to clients).
    #[serde(default)]
    pub description: String,
    /// Where to look: `path`, `uri`, `method`, `args`, `arg_values`,
    /// `arg_names`, `headers`, `user_headers`, `header_names`,
    /// `headers:<name>`, `cookies`, `cookie_names`, `filenames`, `body`.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Which normalised views the operator reads: `raw`, `norm`, `compact`,
    /// `strip`, `path`, `cmd`, `base64`. Default `["norm"]`.
    #[serde(default)]
    pub views: Vec<String>,
    /// A linear-time regular expression (Rust `regex` syntax).
    pub regex: Option<String>,
    /// Literals (ASCII case-insensitive) that must occur for the regex to
    /// be tried; without one the regex runs on every value. The list must
    /// be sound: every text the regex matches contains one of them.
    /// [`crate::compile`] proves it for custom rules and refuses the rule
    /// otherwise (a test proves it for the built-in ones).
    #[serde(default)]
    pub prefilter: Vec<String>,
    /// A second group of literals, one of which must also occur in the
    /// same text (for regexes that need two things, such as a word and a
    /// symbol). Needs `prefilter`; sound and proved in the same sense.
    #[serde(default)]
    pub prefilter_also: Vec<String>,
    /// A literal set: matches when any literal occurs (ASCII
    /// case-insensitive).
    #[serde(default)]
    pub literals: Vec<String>,
    /// A built-in detector: `sqli`, `xss`, or a protocol check.
    pub detector: Option<String>,
    /// Numeric check: a value longer than this many bytes.
    pub length_gt: Option<i64>,
    /// Numeric check: more than this many values in the targets.
    pub count_gt: Option<i64>,
    /// Paranoia level 1..=4 (default 1).
    pub paranoia: Option<i64>,
    /// Anomaly score (default 5).
    pub score: Option<i64>,
}

/// A file of built-in rules: `[[rule]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleFile {
    #[serde(default)]
    pub rule: Vec<CustomRule>,
}
