//! Compilation of settings and rules into an [`Engine`], and inspection.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use regex::bytes::{RegexSet, RegexSetBuilder};

use crate::detect::{sqli, xss};
use crate::memo::{self, EngineId, Memo};
use crate::normalize::{self, View, VIEW_COUNT};
use crate::request::{self, Class, Item, Origin, Request, CLASS_COUNT};
use crate::scan::LitDfa;
use crate::settings::{CustomRule, RuleFile, WafSettings};

/// Attack classes, as shown in logs and metrics (`Display`: `"sqli"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// SQL injection.
    Sqli,
    /// Cross-site scripting.
    Xss,
    /// Path traversal and local file inclusion.
    Lfi,
    /// Remote file inclusion.
    Rfi,
    /// OS command injection.
    Rce,
    /// PHP code injection.
    Php,
    /// Java / expression-language injection.
    Java,
    /// Node.js / JavaScript server-side injection.
    Node,
    /// Server-side template injection.
    Ssti,
    /// Server-side request forgery.
    Ssrf,
    /// NoSQL injection.
    Nosqli,
    /// LDAP injection.
    Ldapi,
    /// Log4Shell / JNDI lookups.
    Log4shell,
    /// CRLF / header injection, response splitting.
    Crlf,
    /// Scanners and attack tools.
    Scanner,
    /// Requests for sensitive files.
    SensitiveFile,
    /// HTTP protocol violations and smuggling.
    Protocol,
    /// XML external entities.
    Xxe,
    /// Server-side includes.
    Ssi,
    /// Mail header / IMAP / SMTP command injection.
    Mail,
    /// Session fixation (session ids or cookies set through parameters).
    SessionFixation,
    /// Site-specific custom rules.
    Custom,
}

impl Category {
    /// All categories.
    pub const ALL: [Category; 22] = [
        Category::Sqli,
        Category::Xss,
        Category::Lfi,
        Category::Rfi,
        Category::Rce,
        Category::Php,
        Category::Java,
        Category::Node,
        Category::Ssti,
        Category::Ssrf,
        Category::Nosqli,
        Category::Ldapi,
        Category::Log4shell,
        Category::Crlf,
        Category::Scanner,
        Category::SensitiveFile,
        Category::Protocol,
        Category::Xxe,
        Category::Ssi,
        Category::Mail,
        Category::SessionFixation,
        Category::Custom,
    ];

    /// The name used in configs, logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Category::Sqli => "sqli",
            Category::Xss => "xss",
            Category::Lfi => "lfi",
            Category::Rfi => "rfi",
            Category::Rce => "rce",
            Category::Php => "php",
            Category::Java => "java",
            Category::Node => "node",
            Category::Ssti => "ssti",
            Category::Ssrf => "ssrf",
            Category::Nosqli => "nosqli",
            Category::Ldapi => "ldapi",
            Category::Log4shell => "log4shell",
            Category::Crlf => "crlf",
            Category::Scanner => "scanner",
            Category::SensitiveFile => "sensitive-file",
            Category::Protocol => "protocol",
            Category::Xxe => "xxe",
            Category::Ssi => "ssi",
            Category::Mail => "mail",
            Category::SessionFixation => "session-fixation",
            Category::Custom => "custom",
        }
    }

    /// Parses a category name.
    pub fn parse(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Block, or only detect (log and count what would have been blocked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Matches count towards blocking.
    Block,
    /// Matches are reported but never block.
    Detect,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Block => "block",
            Mode::Detect => "detect",
        })
    }
}

/// What to do with bodies longer than the inspection limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyOverflow {
    /// Inspect the first `body_limit` bytes and let the request through.
    InspectPrefix,
    /// Refuse the request (the gateway answers 413).
    Reject,
}

/// The outcome for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Below the threshold.
    Allow,
    /// At or above the threshold with blocking rules: answer 403.
    Block,
    /// Would have been blocked, but the matching rules (or the site) are in
    /// detect mode: let it through, log and count.
    Detect,
}

/// One rule that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// The rule id (`"sqli-100"`, or a custom rule's id).
    pub rule_id: String,
    /// The rule's category.
    pub category: Category,
    /// The rule's anomaly score.
    pub score: u32,
    /// Where it matched: `path`, `uri`, `method`, `args:NAME`, `args_names`,
    /// `header:NAME`, `header_names`, `cookie:NAME`, `cookie_names`,
    /// `body`, `body:form:NAME`, `body:json:PATH`, `body:json_keys:PATH`,
    /// `body:multipart:NAME[:filename]`, `body:xml:ELEMENT`, or `request`.
    /// Names only: never the matched value.
    pub location: String,
    /// Whether this match counts towards blocking.
    pub mode: Mode,
}

/// The verdict so far for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Sum of the scores of the distinct rules that matched (all modes).
    pub score: u32,
    /// What the gateway should do.
    pub action: Action,
    /// The rules that matched, each once, in the order found.
    pub matches: Vec<Match>,
}

impl Verdict {
    fn allow() -> Verdict {
        Verdict {
            score: 0,
            action: Action::Allow,
            matches: Vec::new(),
        }
    }
}

/// A configuration error with its byte span in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WafConfigError {
    /// Byte range in the config file (from `toml::Spanned`); `0..0` for
    /// errors in built-in rules (a bug).
    pub span: Range<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for WafConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for WafConfigError {}

/// Request-level checks implemented in code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    Method,
    MissingHost,
    HostIsIp,
    Smuggling,
    ContentLength,
    Version,
    TargetChars,
    NulByte,
    HeaderCtl,
    GetWithBody,
    BodyOverflow,
    ItemOverflow,
    ContentType,
}

impl Proto {
    fn parse(s: &str) -> Option<Proto> {
        Some(match s {
            "method" => Proto::Method,
            "missing-host" => Proto::MissingHost,
            "host-is-ip" => Proto::HostIsIp,
            "smuggling" => Proto::Smuggling,
            "content-length" => Proto::ContentLength,
            "version" => Proto::Version,
            "target-chars" => Proto::TargetChars,
            "nul-byte" => Proto::NulByte,
            "header-ctl" => Proto::HeaderCtl,
            "get-with-body" => Proto::GetWithBody,
            "body-overflow" => Proto::BodyOverflow,
            "item-overflow" => Proto::ItemOverflow,
            "content-type" => Proto::ContentType,
            _ => return None,
        })
    }
}

/// Compiles a rule's regex: case-insensitive, ASCII classes, any bytes.
/// The regex's own literal prefilter is off: a rule's regex only runs on a
/// text its (proved) prefilter selected, so looking for literals again
/// would only cost.
fn rule_regex(pattern: &str) -> Result<Regex, String> {
    use regex_automata::{meta, util::syntax, MatchKind};
    // As `regex::bytes::RegexBuilder` configures it, without the prefilter.
    let re = meta::Builder::new()
        .configure(
            meta::Config::new()
                .match_kind(MatchKind::LeftmostFirst)
                .utf8_empty(false)
                .auto_prefilter(false)
                .nfa_size_limit(Some(4 << 20))
                .hybrid_cache_capacity(4 << 20),
        )
        .syntax(
            syntax::Config::new()
                .case_insensitive(true)
                .unicode(false)
                .utf8(false),
        )
        .build(pattern)
        .map_err(|e| match e.syntax_error() {
            Some(s) => s.to_string(),
            None => e.to_string(),
        })?;
    Ok(Regex {
        re,
        src: pattern.to_owned(),
    })
}

/// A rule regex and its source (unprefiltered rules join a `RegexSet`).
#[derive(Debug)]
struct Regex {
    re: regex_automata::meta::Regex,
    src: String,
}

impl Regex {
    fn as_str(&self) -> &str {
        &self.src
    }

    fn is_match(&self, text: &[u8]) -> bool {
        self.re.is_match(text)
    }
}

#[derive(Debug)]
enum Op {
    Regex(Regex),
    /// Matched by the class automaton itself.
    Literals,
    Sqli,
    Xss,
    LengthGt(usize),
    CountGt(usize),
    Proto(Proto),
}

#[derive(Debug)]
struct Rule {
    id: String,
    category: Category,
    score: u32,
    mode: Mode,
    classes: u16,
    views: u8,
    /// For `headers:NAME` targets: lower-case names.
    header_names: Vec<String>,
    /// The rule also reads every header (not only the named ones).
    all_headers: bool,
    /// A literal of its `prefilter_also` group must occur in the text too.
    needs_also: bool,
    op: Op,
}

/// The rules one kind of value is checked against: a class, or for headers
/// a class and a header name (so that rules naming one header are never
/// tried on the others, and no per-value name test is left).
#[derive(Debug, Default)]
struct ClassIndex {
    /// Views read by any rule of the index.
    views: u8,
    /// Some rule of the index has a literal prefilter.
    prefiltered: bool,
    /// When every multi-byte literal of the index's rules starts with one of
    /// at most three bytes: its own DFA, scanned from needle to needle
    /// instead of byte by byte through the shared one.
    sparse: Option<Sparse>,
    /// Per view, `words` words: the prefiltered rules of the index that
    /// read it.
    view_rules: Vec<u64>,
    /// Per set of views (a `u8` mask below 128), `words` words: the
    /// prefiltered rules of the index that read one of them.
    allowed: Vec<u64>,
    /// The single-byte literal bits that select a rule of the index.
    sb_useful: u64,
    /// Rules without a prefilter, tried on every value (regex rules are in
    /// `sets` instead).
    always: Vec<u16>,
    /// Per view: a set of unprefiltered regex rules.
    sets: Vec<(View, RegexSet, Vec<u16>)>,
    /// `length_gt` rules: rule and limit, checked on the value's length.
    lengths: Vec<(u16, usize)>,
}

/// A literal DFA with, per match state, `words` words each: the rules its
/// literals select, and those whose `prefilter_also` group they belong to.
#[derive(Debug, Default)]
struct LitTables {
    dfa: Option<LitDfa>,
    state_rules: Vec<u64>,
    state_also: Vec<u64>,
}

impl LitTables {
    /// Folds match state `m` into a text's rule bitmaps.
    fn fold(&self, m: usize, w: usize, rules: Option<&mut [u64]>, also: Option<&mut [u64]>) {
        or_into(rules, self.state_rules.get(m * w..(m + 1) * w));
        or_into(also, self.state_also.get(m * w..(m + 1) * w));
    }
}

/// An index's own literal DFA (see `ClassIndex::sparse`).
#[derive(Debug)]
struct Sparse {
    tables: LitTables,
    /// The first bytes of its literals, both cases.
    needles: Vec<u8>,
}

#[derive(Debug)]
struct CExclusion {
    path_prefix: Option<Vec<u8>>,
    rules: Vec<String>,
    categories: Vec<Category>,
    args: Vec<Vec<u8>>,
}

/// A compiled WAF for one site. Cheap to share (`Send + Sync`); nothing is
/// compiled or allocated per rule at inspection time.
#[derive(Debug)]
pub struct Engine {
    enabled: bool,
    mode: Mode,
    threshold: u32,
    body_limit: usize,
    body_overflow: BodyOverflow,
    rules: Vec<Rule>,
    /// One index per class, then one per header name a rule targets.
    classes: Vec<ClassIndex>,
    /// Lower-case header name -> its index in `classes`.
    named: Vec<(Vec<u8>, usize)>,
    /// Request-level rules: protocol checks and counts.
    request_rules: Vec<u16>,
    exclusions: Vec<CExclusion>,
    /// Words of a rule bitmap (`rules.len()` bits).
    words: usize,
    /// The rules with a `prefilter_also` group, as a bitmap.
    needs_also: Vec<u64>,
    /// Every rule's prefilter literals of two bytes or more in one
    /// case-folding DFA, with the rules per match state (an index keeps its
    /// own with `allowed`).
    lits: LitTables,
    /// Single-byte literals: per byte, its literal's bit (low 48 bits) and
    /// the byte's `BYTE_FLAGS` (high 16 bits), so one pass over a value
    /// finds both.
    byte_bits: Box<[u64; 256]>,
    /// Per single-byte literal bit, `words` words: the rules it selects and
    /// those whose second group it belongs to.
    sb_rules: Vec<u64>,
    sb_also: Vec<u64>,
    /// This engine's key in the per-thread memo (unique per compilation).
    memo_id: EngineId,
}

/// Every compiled engine's memo key is the next of these.
static NEXT_ENGINE_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The built-in rule files, embedded at build time.
pub const BUILTIN_RULES: &[(&str, &str)] = &[
    ("sqli.toml", include_str!("../rules/sqli.toml")),
    ("xss.toml", include_str!("../rules/xss.toml")),
    ("lfi.toml", include_str!("../rules/lfi.toml")),
    ("rfi.toml", include_str!("../rules/rfi.toml")),
    ("rce.toml", include_str!("../rules/rce.toml")),
    ("code.toml", include_str!("../rules/code.toml")),
    ("ssti.toml", include_str!("../rules/ssti.toml")),
    ("ssrf.toml", include_str!("../rules/ssrf.toml")),
    ("injection.toml", include_str!("../rules/injection.toml")),
    ("scanner.toml", include_str!("../rules/scanner.toml")),
    (
        "sensitive-file.toml",
        include_str!("../rules/sensitive-file.toml"),
    ),
    ("protocol.toml", include_str!("../rules/protocol.toml")),
];

const DEFAULT_BODY_LIMIT: usize = 131_072;
const MAX_BODY_LIMIT: i64 = 64 * 1024 * 1024;

fn parse_mode(s: &str) -> Option<Option<Mode>> {
    match s {
        "block" => Some(Some(Mode::Block)),
        "detect" => Some(Some(Mode::Detect)),
        "off" => Some(None),
        _ => None,
    }
}

fn parse_targets(targets: &[String]) -> Result<(u16, Vec<String>, bool), String> {
    let mut mask = 0u16;
    let mut names = Vec::new();
    let mut all_headers = false;
    for t in targets {
        let bits = match t.as_str() {
            "path" => Class::Path.bit(),
            "uri" => Class::Uri.bit(),
            "method" => Class::Method.bit(),
            "args" => Class::Arg.bit() | Class::ArgName.bit(),
            "arg_values" => Class::Arg.bit(),
            "arg_names" => Class::ArgName.bit(),
            "headers" => {
                all_headers = true;
                Class::HeaderUser.bit() | Class::HeaderStd.bit()
            }
            "user_headers" => {
                all_headers = true;
                Class::HeaderUser.bit()
            }
            "header_names" => Class::HeaderName.bit(),
            "cookies" => Class::Cookie.bit(),
            "cookie_names" => Class::CookieName.bit(),
            "filenames" => Class::Filename.bit(),
            "body" => Class::Body.bit(),
            other => match other.strip_prefix("headers:") {
                Some(n) if !n.is_empty() => {
                    names.push(n.to_ascii_lowercase());
                    Class::HeaderUser.bit() | Class::HeaderStd.bit()
                }
                _ => return Err(format!("unknown target {other:?}")),
            },
        };
        mask |= bits;
    }
    Ok((mask, names, all_headers))
}

/// What [`Builder::finish`] produces.
struct Compiled {
    rules: Vec<Rule>,
    /// One index per class, then one per named header.
    classes: Vec<ClassIndex>,
    /// Lower-case header name -> its index in `classes`.
    named: Vec<(Vec<u8>, usize)>,
    /// Request-level rules.
    request_rules: Vec<u16>,
    /// Words of a rule bitmap.
    words: usize,
    /// Rules with a `prefilter_also` group.
    needs_also: Vec<u64>,
    /// Prefilter literals: see `Engine`.
    lits: Lits,
}

/// Every rule's prefilter literals, compiled (fields as in `Engine`).
struct Lits {
    tables: LitTables,
    byte_bits: Box<[u64; 256]>,
    sb_rules: Vec<u64>,
    sb_also: Vec<u64>,
}

struct Builder {
    rules: Vec<Rule>,
    /// Prefilter literals per rule (parallel to `rules`).
    prefilters: Vec<Vec<String>>,
    /// `prefilter_also` literals per rule (parallel to `rules`).
    also: Vec<Vec<String>>,
}

/// Everything `compile` resolved from the site settings.
struct SiteOptions {
    mode: Mode,
    paranoia: i64,
    overrides: Vec<(Option<String>, Option<Category>, Option<Mode>)>,
}

/// Why a rule's prefilter groups are not sound, one message per group; none
/// for a rule without a regex (detectors and literal sets need no proof).
fn unsound_prefilters(def: &CustomRule) -> Vec<String> {
    let Some(re) = &def.regex else {
        return Vec::new();
    };
    [
        ("prefilter", &def.prefilter),
        ("prefilter_also", &def.prefilter_also),
    ]
    .into_iter()
    .filter(|(_, group)| !group.is_empty())
    .filter_map(|(key, group)| {
        crate::prefilter::prefilter_covers(re, group).err().map(|why| {
            format!(
                "rule {:?}: {key} is not sound ({why}); add literals every match contains, or remove it to run the regex on every value",
                def.id
            )
        })
    })
    .collect()
}

/// A rule and its two prefilter groups.
type BuiltRule = (Rule, Vec<String>, Vec<String>);

fn build_rule(def: &CustomRule, site: &SiteOptions) -> Result<Option<BuiltRule>, String> {
    let category = Category::parse(&def.category)
        .ok_or_else(|| format!("rule {:?}: unknown category {:?}", def.id, def.category))?;
    let paranoia = def.paranoia.unwrap_or(1);
    if !(1..=4).contains(&paranoia) {
        return Err(format!("rule {:?}: paranoia must be 1..=4", def.id));
    }
    let score = def.score.unwrap_or(5);
    if !(0..=1000).contains(&score) {
        return Err(format!("rule {:?}: score must be 0..=1000", def.id));
    }
    let (classes, header_names, all_headers) =
        parse_targets(&def.targets).map_err(|e| format!("rule {:?}: {e}", def.id))?;
    let mut views = 0u8;
    for v in &def.views {
        views |= View::parse(v)
            .ok_or_else(|| format!("rule {:?}: unknown view {v:?}", def.id))?
            .bit();
    }
    if views == 0 {
        views = View::Norm.bit();
    }
    let ops = [
        def.regex.is_some(),
        !def.literals.is_empty(),
        def.detector.is_some(),
        def.length_gt.is_some(),
        def.count_gt.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if ops != 1 {
        return Err(format!(
            "rule {:?}: exactly one of regex, literals, detector, length_gt, count_gt is needed",
            def.id
        ));
    }
    let mut prefilter = def.prefilter.clone();
    let op = if let Some(re) = &def.regex {
        Op::Regex(rule_regex(re).map_err(|e| format!("rule {:?}: invalid regex: {e}", def.id))?)
    } else if !def.literals.is_empty() {
        prefilter = def.literals.clone();
        Op::Literals
    } else if let Some(d) = &def.detector {
        match d.as_str() {
            "sqli" => Op::Sqli,
            "xss" => Op::Xss,
            other => match other.strip_prefix("protocol:").and_then(Proto::parse) {
                Some(p) => Op::Proto(p),
                None => return Err(format!("rule {:?}: unknown detector {other:?}", def.id)),
            },
        }
    } else if let Some(n) = def.length_gt {
        Op::LengthGt(
            usize::try_from(n).map_err(|_| format!("rule {:?}: length_gt must be >= 0", def.id))?,
        )
    } else if let Some(n) = def.count_gt {
        Op::CountGt(
            usize::try_from(n).map_err(|_| format!("rule {:?}: count_gt must be >= 0", def.id))?,
        )
    } else {
        return Err(format!("rule {:?}: no operator", def.id));
    };
    if classes == 0 && !matches!(op, Op::Proto(_)) {
        return Err(format!("rule {:?}: targets must not be empty", def.id));
    }
    if prefilter
        .iter()
        .chain(&def.prefilter_also)
        .any(|p| p.is_empty())
    {
        return Err(format!("rule {:?}: empty prefilter literal", def.id));
    }
    if !def.prefilter_also.is_empty()
        && (def.prefilter.is_empty() || !matches!(op, Op::Regex(_) | Op::Sqli | Op::Xss))
    {
        return Err(format!(
            "rule {:?}: prefilter_also needs a regex or detector with a prefilter",
            def.id
        ));
    }
    // Mode: rule id override beats category override beats the site.
    let mut mode = Some(site.mode);
    for (rid, cat, m) in &site.overrides {
        if rid.is_none() && *cat == Some(category) {
            mode = *m;
        }
    }
    for (rid, _, m) in &site.overrides {
        if rid.as_deref() == Some(def.id.as_str()) {
            mode = *m;
        }
    }
    let Some(mode) = mode else { return Ok(None) };
    if paranoia > site.paranoia {
        return Ok(None);
    }
    Ok(Some((
        Rule {
            id: def.id.clone(),
            category,
            score: u32::try_from(score).unwrap_or(0),
            mode,
            classes,
            views,
            header_names,
            all_headers: all_headers || def.targets.is_empty(),
            needs_also: !def.prefilter_also.is_empty(),
            op,
        },
        prefilter,
        def.prefilter_also.clone(),
    )))
}

impl Builder {
    /// Builds the index of one class (and, for header classes, one header
    /// name: `None` is every header no rule names).
    fn index(&self, class: Class, header: Option<&str>) -> Result<ClassIndex, String> {
        let is_header = matches!(class, Class::HeaderUser | Class::HeaderStd);
        let words = self.rules.len().div_ceil(64);
        let mut ci = ClassIndex {
            view_rules: vec![0; VIEW_COUNT * words],
            ..ClassIndex::default()
        };
        let mut set_patterns: Vec<(View, Vec<String>, Vec<u16>)> = Vec::new();
        // The prefiltered rules of this index.
        let mut local: Vec<u16> = Vec::new();
        for (idx, rule) in self.rules.iter().enumerate() {
            let idx = u16::try_from(idx).map_err(|_| "too many rules".to_owned())?;
            if rule.classes & class.bit() == 0 {
                continue;
            }
            if matches!(rule.op, Op::CountGt(_) | Op::Proto(_)) {
                continue;
            }
            if is_header
                && !rule.all_headers
                && !header.is_some_and(|h| rule.header_names.iter().any(|n| n == h))
            {
                continue;
            }
            if let Op::LengthGt(n) = rule.op {
                ci.lengths.push((idx, n));
                continue;
            }
            ci.views |= rule.views;
            if !self.prefilters[idx as usize].is_empty() {
                ci.prefiltered = true;
                local.push(idx);
                for v in View::ALL {
                    if rule.views & v.bit() != 0 {
                        bit_set(&mut ci.view_rules[v as usize * words..], idx as usize);
                    }
                }
                continue;
            }
            if let Op::Regex(r) = &rule.op {
                for v in View::ALL {
                    if rule.views & v.bit() != 0 {
                        match set_patterns.iter_mut().find(|(sv, _, _)| *sv == v) {
                            Some((_, pats, ids)) => {
                                pats.push(r.as_str().to_owned());
                                ids.push(idx);
                            }
                            None => set_patterns.push((v, vec![r.as_str().to_owned()], vec![idx])),
                        }
                    }
                }
            } else {
                ci.always.push(idx);
            }
        }
        ci.sparse = self.sparse(&local, words)?;
        ci.allowed = vec![0; (1 << VIEW_COUNT) * words];
        for mask in 0..1usize << VIEW_COUNT {
            for v in 0..VIEW_COUNT {
                if mask & (1 << v) != 0 {
                    for word in 0..words {
                        ci.allowed[mask * words + word] |= ci.view_rules[v * words + word];
                    }
                }
            }
        }
        for (v, pats, ids) in set_patterns {
            let set = RegexSetBuilder::new(&pats)
                .case_insensitive(true)
                .unicode(false)
                .size_limit(16 << 20)
                .dfa_size_limit(16 << 20)
                .build()
                .map_err(|e| format!("regex set: {e}"))?;
            ci.sets.push((v, set, ids));
        }
        Ok(ci)
    }

    fn finish(self) -> Result<Compiled, String> {
        let mut classes = Vec::with_capacity(CLASS_COUNT);
        for class in Class::ALL {
            classes.push(self.index(class, None)?);
        }
        // Header names some rule targets: their own pair of indexes.
        let mut names: Vec<String> = Vec::new();
        for rule in &self.rules {
            for n in &rule.header_names {
                if !names.contains(n) {
                    names.push(n.clone());
                }
            }
        }
        // A header's class follows from its name, so each name needs the
        // index of that class only.
        let mut named = Vec::with_capacity(names.len());
        for n in names {
            let class = if request::is_structural(&n) {
                Class::HeaderStd
            } else {
                Class::HeaderUser
            };
            named.push((n.as_bytes().to_vec(), classes.len()));
            classes.push(self.index(class, Some(&n))?);
        }
        let words = self.rules.len().div_ceil(64);
        let lits = self.literals(words)?;
        for ci in &mut classes {
            let all = &ci.allowed[((1 << VIEW_COUNT) - 1) * words..];
            for bit in 0..SB_BITS {
                let sel = &lits.sb_rules[bit * words..(bit + 1) * words];
                if sel.iter().zip(all).any(|(a, b)| a & b != 0) {
                    ci.sb_useful |= 1 << bit;
                }
            }
        }
        let mut needs_also = vec![0; words];
        for (idx, rule) in self.rules.iter().enumerate() {
            if rule.needs_also {
                bit_set(&mut needs_also, idx);
            }
        }
        let mut request_rules = Vec::new();
        for (idx, rule) in self.rules.iter().enumerate() {
            if matches!(rule.op, Op::CountGt(_) | Op::Proto(_)) {
                request_rules.push(u16::try_from(idx).map_err(|_| "too many rules".to_owned())?);
            }
        }
        Ok(Compiled {
            rules: self.rules,
            classes,
            named,
            request_rules,
            words,
            needs_also,
            lits,
        })
    }

    /// The literals of `rules` (lower case, each once), with the rules each
    /// selects and those whose second group holds it.
    #[allow(clippy::type_complexity)]
    fn collect_literals(
        &self,
        rules: impl Iterator<Item = u16>,
    ) -> (Vec<String>, Vec<Vec<u16>>, Vec<Vec<u16>>) {
        let mut lits: Vec<String> = Vec::new();
        let mut lit_rules: Vec<Vec<u16>> = Vec::new();
        let mut lit_also: Vec<Vec<u16>> = Vec::new();
        for idx in rules {
            let groups = [
                (&self.prefilters[idx as usize], false),
                (&self.also[idx as usize], true),
            ];
            for (group, is_also) in groups {
                for l in group {
                    let l = l.to_ascii_lowercase();
                    let id = match lits.iter().position(|x| *x == l) {
                        Some(i) => i,
                        None => {
                            lits.push(l);
                            lit_rules.push(Vec::new());
                            lit_also.push(Vec::new());
                            lits.len() - 1
                        }
                    };
                    let list = if is_also {
                        &mut lit_also[id]
                    } else {
                        &mut lit_rules[id]
                    };
                    if !list.contains(&idx) {
                        list.push(idx);
                    }
                }
            }
        }
        (lits, lit_rules, lit_also)
    }

    /// A DFA of the multi-byte literals among `lits` (by position in
    /// `multi`), with per match state the rules selected and those whose
    /// second group is met.
    fn multi_dfa(
        lits: &[String],
        multi: &[usize],
        lit_rules: &[Vec<u16>],
        lit_also: &[Vec<u16>],
        words: usize,
    ) -> Result<LitTables, String> {
        if multi.is_empty() {
            return Ok(LitTables::default());
        }
        // Literals are lower case; the DFA folds the case of texts.
        let dfa_lits: Vec<String> = multi.iter().map(|&i| lits[i].clone()).collect();
        let dfa = LitDfa::build(&dfa_lits)?;
        let states = dfa.match_literals().len();
        let mut state_rules = vec![0; states * words];
        let mut state_also = vec![0; states * words];
        for (m, ids) in dfa.match_literals().iter().enumerate() {
            for &k in ids {
                let lit = multi[k as usize];
                for &r in &lit_rules[lit] {
                    bit_set(&mut state_rules[m * words..], r as usize);
                }
                for &r in &lit_also[lit] {
                    bit_set(&mut state_also[m * words..], r as usize);
                }
            }
        }
        Ok(LitTables {
            dfa: Some(dfa),
            state_rules,
            state_also,
        })
    }

    /// An index's own DFA when its multi-byte literals start with at most
    /// three distinct bytes (both cases of a letter count).
    fn sparse(&self, rules: &[u16], words: usize) -> Result<Option<Sparse>, String> {
        let (lits, lit_rules, lit_also) = self.collect_literals(rules.iter().copied());
        let multi: Vec<usize> = (0..lits.len()).filter(|&i| lits[i].len() > 1).collect();
        let mut needles: Vec<u8> = Vec::new();
        for &i in &multi {
            let b = lits[i].as_bytes()[0];
            for c in [b, b.to_ascii_uppercase()] {
                if !needles.contains(&c) {
                    needles.push(c);
                }
            }
        }
        if needles.len() > 3 {
            return Ok(None);
        }
        Ok(Some(Sparse {
            tables: Self::multi_dfa(&lits, &multi, &lit_rules, &lit_also, words)?,
            needles,
        }))
    }

    /// Every rule's prefilter literals: single bytes as bits of
    /// `byte_bits`, the others in one case-folding DFA; per match state and
    /// per byte bit, the rules its literals select (`words` words each) and
    /// those whose second group they belong to. An index keeps the rules
    /// that are its own by masking with its `view_rules`.
    fn literals(&self, words: usize) -> Result<Lits, String> {
        let prefiltered = (0..self.rules.len()).filter(|&i| {
            !matches!(
                self.rules[i].op,
                Op::CountGt(_) | Op::Proto(_) | Op::LengthGt(_)
            ) && !self.prefilters[i].is_empty()
        });
        let (lits, lit_rules, lit_also) =
            self.collect_literals(prefiltered.filter_map(|i| u16::try_from(i).ok()));
        // Up to 48 single-byte literals become byte bits; the rest, and
        // every longer literal, go to the DFA.
        let mut byte_bits = Box::new([0u64; 256]);
        for (b, bits) in byte_bits.iter_mut().enumerate() {
            *bits = u64::from(BYTE_FLAGS[b]) << SB_BITS;
        }
        let mut sb_rules = vec![0; SB_BITS * words];
        let mut sb_also = vec![0; SB_BITS * words];
        let mut multi: Vec<usize> = Vec::new();
        let mut next_bit = 0;
        for (id, l) in lits.iter().enumerate() {
            let &[b] = l.as_bytes() else {
                multi.push(id);
                continue;
            };
            if next_bit == SB_BITS {
                multi.push(id);
                continue;
            }
            let bit = next_bit;
            next_bit += 1;
            byte_bits[b as usize] |= 1 << bit;
            if b.is_ascii_lowercase() {
                byte_bits[b.to_ascii_uppercase() as usize] |= 1 << bit;
            }
            for &r in &lit_rules[id] {
                bit_set(&mut sb_rules[bit * words..], r as usize);
            }
            for &r in &lit_also[id] {
                bit_set(&mut sb_also[bit * words..], r as usize);
            }
        }
        Ok(Lits {
            tables: Self::multi_dfa(&lits, &multi, &lit_rules, &lit_also, words)?,
            byte_bits,
            sb_rules,
            sb_also,
        })
    }
}

/// How many single-byte literals are bits of `Engine::byte_bits`.
const SB_BITS: usize = 48;
const SB_MASK: u64 = (1 << SB_BITS) - 1;

fn span_of<T>(s: &toml::Spanned<T>) -> Range<usize> {
    s.span()
}

/// Builds the engine for one site: built-in rules plus the site's custom
/// rules, with modes, paranoia and exclusions applied. All regexes and
/// automata are compiled here, once.
pub fn compile(settings: &WafSettings) -> Result<Engine, Vec<WafConfigError>> {
    let mut errors = Vec::new();
    let err = |span: Range<usize>, message: String| WafConfigError { span, message };

    let mode = match &settings.mode {
        None => Mode::Block,
        Some(m) => match m.get_ref().as_str() {
            "block" => Mode::Block,
            "detect" => Mode::Detect,
            other => {
                errors.push(err(
                    span_of(m),
                    format!("waf mode must be \"block\" or \"detect\", not {other:?}"),
                ));
                Mode::Block
            }
        },
    };
    let paranoia = match &settings.paranoia {
        None => 1,
        Some(p) => {
            let v = *p.get_ref();
            if !(1..=4).contains(&v) {
                errors.push(err(
                    span_of(p),
                    format!("waf paranoia must be 1..=4, not {v}"),
                ));
            }
            v
        }
    };
    let threshold = match &settings.threshold {
        None => 5,
        Some(t) => {
            let v = *t.get_ref();
            if !(1..=10_000).contains(&v) {
                errors.push(err(
                    span_of(t),
                    format!("waf threshold must be 1..=10000, not {v}"),
                ));
            }
            u32::try_from(v).unwrap_or(5)
        }
    };
    let body_limit = match &settings.body_limit {
        None => DEFAULT_BODY_LIMIT,
        Some(b) => {
            let v = *b.get_ref();
            if !(0..=MAX_BODY_LIMIT).contains(&v) {
                errors.push(err(
                    span_of(b),
                    format!("waf body_limit must be 0..={MAX_BODY_LIMIT}, not {v}"),
                ));
            }
            usize::try_from(v).unwrap_or(DEFAULT_BODY_LIMIT)
        }
    };
    let body_overflow = match &settings.body_overflow {
        None => BodyOverflow::InspectPrefix,
        Some(b) => {
            match b.get_ref().as_str() {
                "inspect-prefix" => BodyOverflow::InspectPrefix,
                "reject" => BodyOverflow::Reject,
                other => {
                    errors.push(err(
                    span_of(b),
                    format!("waf body_overflow must be \"inspect-prefix\" or \"reject\", not {other:?}"),
                ));
                    BodyOverflow::InspectPrefix
                }
            }
        }
    };

    // Rule definitions: built-in first, then custom.
    let mut defs: Vec<(CustomRule, Range<usize>, bool)> = Vec::new();
    for (file, text) in BUILTIN_RULES {
        match toml::from_str::<RuleFile>(text) {
            Ok(f) => defs.extend(f.rule.into_iter().map(|r| (r, 0..0, true))),
            Err(e) => errors.push(err(0..0, format!("built-in rules {file}: {e}"))),
        }
    }
    for r in &settings.rules {
        defs.push((r.get_ref().clone(), span_of(r), false));
    }
    {
        let mut seen = std::collections::HashSet::new();
        for (d, span, _) in &defs {
            if !seen.insert(d.id.clone()) {
                errors.push(err(span.clone(), format!("duplicate rule id {:?}", d.id)));
            }
        }
    }

    let mut overrides = Vec::new();
    for rm in &settings.rule_modes {
        let r = rm.get_ref();
        let m = match parse_mode(&r.mode) {
            Some(m) => m,
            None => {
                errors.push(err(
                    span_of(rm),
                    format!("rule mode must be block, detect or off, not {:?}", r.mode),
                ));
                continue;
            }
        };
        match (&r.rule, &r.category) {
            (Some(id), None) => {
                if !defs.iter().any(|(d, _, _)| d.id == *id) {
                    errors.push(err(
                        span_of(rm),
                        format!("rule_modes: unknown rule id {id:?}"),
                    ));
                }
                overrides.push((Some(id.clone()), None, m));
            }
            (None, Some(c)) => match Category::parse(c) {
                Some(cat) => overrides.push((None, Some(cat), m)),
                None => errors.push(err(
                    span_of(rm),
                    format!("rule_modes: unknown category {c:?}"),
                )),
            },
            _ => errors.push(err(
                span_of(rm),
                "rule_modes: give exactly one of rule or category".to_owned(),
            )),
        }
    }
    let site = SiteOptions {
        mode,
        paranoia,
        overrides,
    };

    let mut builder = Builder {
        rules: Vec::new(),
        prefilters: Vec::new(),
        also: Vec::new(),
    };
    for (def, span, builtin) in &defs {
        let built = build_rule(def, &site);
        // A custom prefilter must be sound (the built-in ones are proved by
        // a test): otherwise the regex silently never runs on some attacks.
        if !*builtin && built.is_ok() {
            for e in unsound_prefilters(def) {
                errors.push(err(span.clone(), e));
            }
        }
        match built {
            Ok(Some((rule, pf, also))) => {
                builder.rules.push(rule);
                builder.prefilters.push(pf);
                builder.also.push(also);
            }
            Ok(None) => {}
            Err(e) => errors.push(err(
                span.clone(),
                if *builtin { format!("built-in {e}") } else { e },
            )),
        }
    }

    let mut exclusions = Vec::new();
    for ex in &settings.exclusions {
        let e = ex.get_ref();
        let mut cats = Vec::new();
        for c in &e.categories {
            match Category::parse(c) {
                Some(cat) => cats.push(cat),
                None => errors.push(err(
                    span_of(ex),
                    format!("exclusion: unknown category {c:?}"),
                )),
            }
        }
        for r in &e.rules {
            if !defs.iter().any(|(d, _, _)| d.id == *r) {
                errors.push(err(
                    span_of(ex),
                    format!("exclusion: unknown rule id {r:?}"),
                ));
            }
        }
        if let Some(p) = &e.path_prefix {
            if !p.starts_with('/') {
                errors.push(err(
                    span_of(ex),
                    format!("exclusion: path_prefix must start with '/', not {p:?}"),
                ));
            }
        }
        exclusions.push(CExclusion {
            path_prefix: e
                .path_prefix
                .as_ref()
                .map(|p| p.to_ascii_lowercase().into_bytes()),
            rules: e.rules.clone(),
            categories: cats,
            args: e.args.iter().map(|a| a.as_bytes().to_vec()).collect(),
        });
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    let Compiled {
        rules,
        classes,
        named,
        request_rules,
        words,
        needs_also,
        lits,
    } = builder.finish().map_err(|m| vec![err(0..0, m)])?;
    Ok(Engine {
        enabled: settings.enabled.unwrap_or(true),
        mode,
        threshold,
        body_limit,
        body_overflow,
        rules,
        classes,
        named,
        request_rules,
        exclusions,
        words,
        needs_also,
        lits: lits.tables,
        byte_bits: lits.byte_bits,
        sb_rules: lits.sb_rules,
        sb_also: lits.sb_also,
        memo_id: NEXT_ENGINE_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
    })
}

/// Per-inspection scratch state.
struct State {
    fired: Vec<u64>,
    matches: Vec<(u16, String)>,
    sqli: sqli::Scratch,
    /// A lower-cased copy of a text, for the detectors.
    lower: Vec<u8>,
    path_norm: Option<Vec<u8>>,
}

/// Buffers reused across inspections on one thread, so that a warm
/// inspection allocates little; trimmed after a large request.
#[derive(Default)]
struct Scratch {
    /// The values of the last request (emptied: only the allocation).
    items: Vec<Item<'static>>,
    /// The rules that fired (a bitmap), for the next request.
    fired: Vec<u64>,
    /// Its JSON paths (see `Parsed::names`).
    names: Vec<u8>,
    /// The texts waiting to be scanned.
    jobs: Vec<JobMeta>,
    /// Views computed for them (the texts of jobs not `VALUE`).
    arena: Vec<u8>,
    /// Per job, `words` words each: the rules its literals selected, and
    /// the rules whose second literal group occurred.
    bits: Vec<u64>,
    also: Vec<u64>,
    /// Per match state of any index: the stamp of the last job that
    /// reported it (a repeated literal is folded in once per text).
    seen: Vec<u32>,
    /// The last stamp used on this thread.
    stamp: u32,
    sqli: sqli::Scratch,
    lower: Vec<u8>,
    /// What this thread's rules found in the path, query, header and cookie
    /// values it has seen (see `memo`).
    memo: Memo,
    /// Set while the item being collected is to be remembered: its jobs
    /// are marked `CAPTURE`.
    capturing: bool,
    /// The remembered rules of the queued `REPLAY` jobs.
    replay: Vec<u16>,
    /// The queued items to remember once their jobs are checked.
    pending: Vec<Pending>,
    /// What the queued `CAPTURE` jobs matched: (item, rule), in job order.
    hits: Vec<(u32, u16)>,
}

/// An item whose rule matches are to be remembered.
#[derive(Clone, Copy)]
struct Pending {
    item: u32,
    idx: u16,
    hash: u64,
}

/// `JobMeta::memo`: an ordinary job.
const PLAIN: u8 = 0;
/// A text of an item being remembered: every rule it selects is tried,
/// even one an earlier value already fired, and what matches is noted.
const CAPTURE: u8 = 1;
/// No text: the remembered rules `replay[start..end]` of its item, to be
/// recorded in the order a fresh check would have found them.
const REPLAY: u8 = 2;

/// Whether a value is remembered: the parts of a request that repeat from
/// request to request (headers, cookies, the path, the query's names and
/// values: `page=2`, `sort=price`, a campaign's `utm_` tags), not a body's,
/// which rarely do and can hold thousands of values.
fn memo_origin(origin: Origin) -> bool {
    matches!(
        origin,
        Origin::Path | Origin::Uri | Origin::Query | Origin::Header | Origin::Cookie
    )
}

// A remembered text is always checked with the others of its batch, never
// by itself (`check_now`), so its matches reach `hits`.
const _: () = assert!(memo::MAX_TEXT < BIG_TEXT);

/// Above this many bytes, a buffer is given back after the request.
const SCRATCH_KEEP: usize = 64 * 1024;

/// Pending texts are scanned as soon as their views take this much room
/// (so a request of many large values never holds all their views), or
/// there are this many of them.
const ARENA_FLUSH: usize = 256 * 1024;
const JOBS_FLUSH: usize = 1024;

impl Scratch {
    fn trim(&mut self) {
        if self.arena.capacity() > SCRATCH_KEEP {
            self.arena = Vec::new();
        }
        if self.jobs.capacity() * std::mem::size_of::<JobMeta>() > SCRATCH_KEEP {
            self.jobs = Vec::new();
        }
        if self.bits.capacity() * 8 > SCRATCH_KEEP {
            self.bits = Vec::new();
            self.also = Vec::new();
        }
        if self.lower.capacity() > SCRATCH_KEEP {
            self.lower = Vec::new();
        }
        if self.items.capacity() * std::mem::size_of::<Item<'_>>() > SCRATCH_KEEP {
            self.items = Vec::new();
        }
        if self.replay.capacity() * 2 > SCRATCH_KEEP {
            self.replay = Vec::new();
        }
        if self.pending.capacity() * std::mem::size_of::<Pending>() > SCRATCH_KEEP {
            self.pending = Vec::new();
        }
        if self.hits.capacity() * std::mem::size_of::<(u32, u16)>() > SCRATCH_KEEP {
            self.hits = Vec::new();
        }
        if self.names.capacity() > SCRATCH_KEEP {
            self.names = Vec::new();
        }
        self.sqli.trim(SCRATCH_KEEP);
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// One text to check: a distinct view of a value, for the rules of an index.
/// Small and plain (it is written once per text, read twice).
#[derive(Clone, Copy)]
struct JobMeta {
    /// The single-byte literals it holds (bits of `Engine::byte_bits`).
    sb: u64,
    /// The value in `Parsed::items`.
    item: u32,
    /// Where the text is in the scratch arena; `VALUE` for the value itself.
    start: u32,
    end: u32,
    /// The index in `Engine::classes`.
    idx: u16,
    /// The views this text stands for.
    views: u8,
    /// `PLAIN`, `CAPTURE` or `REPLAY`.
    memo: u8,
}

/// `JobMeta::start` of a text that is its value, as parsed.
const VALUE: u32 = u32::MAX;

/// Texts longer than this are checked as soon as they are computed instead
/// of waiting with the others (a big body's views are not kept together).
const BIG_TEXT: usize = 16 * 1024;

/// A text lower-cased into `buf` when it has upper case (the detectors
/// read lower case), or the text itself.
fn lowered<'t>(text: &'t [u8], buf: &'t mut Vec<u8>) -> &'t [u8] {
    if !text.iter().any(u8::is_ascii_uppercase) {
        return text;
    }
    buf.clear();
    buf.extend_from_slice(text);
    buf.make_ascii_lowercase();
    buf
}

/// `dst |= src`, word by word.
#[inline]
fn or_into(dst: Option<&mut [u64]>, src: Option<&[u64]>) {
    if let (Some(dst), Some(src)) = (dst, src) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d |= s;
        }
    }
}

fn bit_test(v: &[u64], i: usize) -> bool {
    v.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
}

fn bit_set(v: &mut [u64], i: usize) {
    if let Some(w) = v.get_mut(i / 64) {
        *w |= 1 << (i % 64);
    }
}

/// Byte flags: what a byte can change in the views of a value.
/// `normalize::norm_special`: `norm` may decode or fold something.
const F_NORM: u16 = 1;
const F_UPPER: u16 = 2;
/// Whitespace and control bytes: `compact` and `strip` may differ.
const F_SPACE: u16 = 4;
/// What `cmd` removes or replaces.
const F_CMD: u16 = 8;
/// `/`: `path` may collapse something.
const F_SLASH: u16 = 16;
/// `*` and `!`: comment markers (`/*`, `*/`, `<!--`).
const F_COMMENT: u16 = 32;
/// Outside the Base64 alphabet (with space and `=`).
const F_NOT_B64: u16 = 64;
const F_LOWER: u16 = 128;
/// A digit or one of `+ / - _` and space (Base64 beyond letters).
const F_DIGIT_SYM: u16 = 256;

const fn byte_flags() -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut f = 0;
        if normalize::norm_special(b) {
            f |= F_NORM;
        }
        if b.is_ascii_uppercase() {
            f |= F_UPPER;
        }
        // Same set as `normalize::is_space`.
        if b <= 0x20 || b == 0x7f {
            f |= F_SPACE;
        }
        if matches!(
            b,
            b'\'' | b'"' | b'\\' | b'^' | b'$' | b'\t' | b'\n' | b'\r' | b'+'
        ) {
            f |= F_CMD;
        }
        if b == b'/' {
            f |= F_SLASH;
        }
        if b == b'*' || b == b'!' {
            f |= F_COMMENT;
        }
        if !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_' | b' ' | b'=')) {
            f |= F_NOT_B64;
        }
        if b.is_ascii_lowercase() {
            f |= F_LOWER;
        }
        if b.is_ascii_digit() || matches!(b, b'+' | b'/' | b'-' | b'_' | b' ') {
            f |= F_DIGIT_SYM;
        }
        t[i] = f;
        i += 1;
    }
    t
}

static BYTE_FLAGS: [u16; 256] = byte_flags();

/// At most this many distinct rules are reported per request.
const MAX_MATCHES: usize = 64;

impl Engine {
    /// The site's mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// How many body bytes the gateway should buffer for inspection.
    pub fn body_limit(&self) -> usize {
        self.body_limit
    }

    /// What to do with bodies longer than [`Engine::body_limit`].
    pub fn body_overflow(&self) -> BodyOverflow {
        self.body_overflow
    }

    /// The anomaly threshold.
    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// Number of rules loaded (after paranoia and `off` modes).
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Inspects a request. Call it with `body: None` in the header phase,
    /// and again with the body prefix once it is buffered: the second call
    /// re-inspects everything and returns the complete verdict.
    ///
    /// Path, query, header and cookie values this thread has seen before are
    /// not checked again: the rules they matched then are recorded as if
    /// found now (see the `memo` module), which gives the same verdict.
    pub fn inspect(&self, req: &Request<'_>) -> Verdict {
        self.inspect_memo(req, true)
    }

    /// [`Engine::inspect`] with every value checked afresh, as if this
    /// thread had seen none of them before (for benchmarks and tests: the
    /// verdict is the same).
    pub fn inspect_uncached(&self, req: &Request<'_>) -> Verdict {
        self.inspect_memo(req, false)
    }

    fn inspect_memo(&self, req: &Request<'_>, memo: bool) -> Verdict {
        if !self.enabled {
            return Verdict::allow();
        }
        // Reuse this thread's buffers; a fresh set if they are unavailable
        // (thread teardown).
        SCRATCH
            .try_with(|cell| match cell.try_borrow_mut() {
                Ok(mut s) => self.inspect_with(req, &mut s, memo),
                Err(_) => self.inspect_with(req, &mut Scratch::default(), memo),
            })
            .unwrap_or_else(|_| self.inspect_with(req, &mut Scratch::default(), memo))
    }

    fn inspect_with(&self, req: &Request<'_>, sc: &mut Scratch, memo: bool) -> Verdict {
        let parsed = request::parse(
            req,
            request::recycle(std::mem::take(&mut sc.items)),
            std::mem::take(&mut sc.names),
        );
        let mut st = State {
            fired: {
                let mut f = std::mem::take(&mut sc.fired);
                f.clear();
                f.resize(self.words, 0);
                f
            },
            matches: Vec::new(),
            sqli: std::mem::take(&mut sc.sqli),
            lower: std::mem::take(&mut sc.lower),
            path_norm: None,
        };
        let hdrs = crate::protocol::headers(req);
        for &r in &self.request_rules {
            self.eval_request_rule(r, req, &parsed, &hdrs, &mut st);
        }
        sc.jobs.clear();
        sc.arena.clear();
        sc.replay.clear();
        sc.pending.clear();
        sc.hits.clear();
        for (i, item) in parsed.items.iter().enumerate() {
            let memo = memo && memo_origin(item.origin);
            self.collect_item(i, item, self.index_of(item), memo, &parsed, &mut st, sc);
            if sc.arena.len() > ARENA_FLUSH || sc.jobs.len() >= JOBS_FLUSH {
                self.run_jobs(&parsed, &mut st, sc);
            }
        }
        self.run_jobs(&parsed, &mut st, sc);
        sc.sqli = std::mem::take(&mut st.sqli);
        sc.lower = std::mem::take(&mut st.lower);
        sc.fired = std::mem::take(&mut st.fired);
        sc.names = parsed.names;
        sc.items = request::recycle(parsed.items);
        sc.trim();
        self.verdict(st)
    }

    fn verdict(&self, st: State) -> Verdict {
        let mut score = 0u32;
        let mut blocking = 0u32;
        let mut matches = Vec::with_capacity(st.matches.len());
        for (r, location) in st.matches {
            let rule = &self.rules[r as usize];
            score = score.saturating_add(rule.score);
            if rule.mode == Mode::Block {
                blocking = blocking.saturating_add(rule.score);
            }
            matches.push(Match {
                rule_id: rule.id.clone(),
                category: rule.category,
                score: rule.score,
                location,
                mode: rule.mode,
            });
        }
        let action = if blocking >= self.threshold {
            Action::Block
        } else if score >= self.threshold {
            Action::Detect
        } else {
            Action::Allow
        };
        Verdict {
            score,
            action,
            matches,
        }
    }

    fn path_norm<'s>(&self, parsed: &request::Parsed<'_>, st: &'s mut State) -> &'s [u8] {
        if st.path_norm.is_none() {
            let n = normalize::norm(parsed.path_raw);
            st.path_norm = Some(normalize::collapse_path(&n).into_owned());
        }
        st.path_norm.as_deref().unwrap_or(b"")
    }

    fn excluded(
        &self,
        r: u16,
        item: Option<&Item<'_>>,
        parsed: &request::Parsed<'_>,
        st: &mut State,
    ) -> bool {
        if self.exclusions.is_empty() {
            return false;
        }
        let rule = &self.rules[r as usize];
        for ex in &self.exclusions {
            let rule_ok = (ex.rules.is_empty() && ex.categories.is_empty())
                || ex.rules.contains(&rule.id)
                || ex.categories.contains(&rule.category);
            if !rule_ok {
                continue;
            }
            if let Some(p) = &ex.path_prefix {
                if !self.path_norm(parsed, st).starts_with(p) {
                    continue;
                }
            }
            if !ex.args.is_empty() {
                let Some(name) = item.and_then(|i| i.arg_name(parsed)) else {
                    continue;
                };
                let last = name.rsplit(|&b| b == b'.').next().unwrap_or(name);
                if !ex
                    .args
                    .iter()
                    .any(|a| a.as_slice() == name || a.as_slice() == last)
                {
                    continue;
                }
            }
            return true;
        }
        false
    }

    fn record(
        &self,
        r: u16,
        item: Option<&Item<'_>>,
        location: impl FnOnce() -> String,
        parsed: &request::Parsed<'_>,
        st: &mut State,
    ) {
        if bit_test(&st.fired, r as usize) || st.matches.len() >= MAX_MATCHES {
            return;
        }
        if self.excluded(r, item, parsed, st) {
            return;
        }
        bit_set(&mut st.fired, r as usize);
        st.matches.push((r, location()));
    }

    fn eval_request_rule(
        &self,
        r: u16,
        req: &Request<'_>,
        parsed: &request::Parsed<'_>,
        hdrs: &crate::protocol::Headers<'_>,
        st: &mut State,
    ) {
        let rule = &self.rules[r as usize];
        let hit: Option<&'static str> = match &rule.op {
            Op::CountGt(n) => {
                let header_bits = Class::HeaderUser.bit() | Class::HeaderStd.bit();
                let mut count: usize = Class::ALL
                    .iter()
                    .filter(|c| rule.classes & c.bit() & !header_bits != 0)
                    .map(|&c| parsed.counts[c as usize] as usize)
                    .sum();
                if rule.classes & header_bits != 0 {
                    count += if rule.all_headers {
                        [Class::HeaderUser, Class::HeaderStd]
                            .iter()
                            .filter(|c| rule.classes & c.bit() != 0)
                            .map(|&c| parsed.counts[c as usize] as usize)
                            .sum::<usize>()
                    } else {
                        // Headers by name: each header once, however it is read.
                        parsed
                            .items
                            .iter()
                            .filter(|i| {
                                i.class == Class::HeaderName
                                    && rule
                                        .header_names
                                        .iter()
                                        .any(|n| n.as_bytes().eq_ignore_ascii_case(&i.value))
                            })
                            .count()
                    };
                }
                (count > *n).then_some("request")
            }
            Op::Proto(p) => crate::protocol::check(*p, req, parsed, hdrs),
            _ => None,
        };
        if let Some(loc) = hit {
            self.record(r, None, || loc.to_owned(), parsed, st);
        }
    }

    /// The index a value is checked with: its class, or its header's own.
    fn index_of(&self, item: &Item<'_>) -> usize {
        if matches!(item.class, Class::HeaderUser | Class::HeaderStd) {
            for (name, at) in &self.named {
                if request::eq_lower(&item.name, name) {
                    return *at;
                }
            }
        }
        item.class as usize
    }

    /// Computes the views of one value that its index reads and appends
    /// each distinct one to the index's batch.
    #[allow(clippy::too_many_arguments)]
    fn collect_item(
        &self,
        i: usize,
        item: &Item<'_>,
        idx: usize,
        memo: bool,
        parsed: &request::Parsed<'_>,
        st: &mut State,
        sc: &mut Scratch,
    ) {
        sc.capturing = false;
        let ci = &self.classes[idx];
        for &(r, n) in &ci.lengths {
            if item.value.len() > n {
                self.record(r, Some(item), || item.location(parsed), parsed, st);
            }
        }
        let needed = ci.views;
        if needed == 0 {
            return;
        }
        let raw: &[u8] = &item.value;
        let item_no = u32::try_from(i).unwrap_or(u32::MAX);
        if memo && raw.len() <= memo::MAX_TEXT {
            let idx16 = idx as u16;
            let hash = sc.memo.hash(self.memo_id, idx16, raw);
            if let Some(rules) = sc.memo.get(hash, self.memo_id, idx16, raw) {
                // Seen before: its matches are recorded with the batch's
                // other results, in their place (none, usually).
                if !rules.is_empty() {
                    let start = sc.replay.len();
                    sc.replay.extend_from_slice(rules);
                    sc.jobs.push(JobMeta {
                        sb: 0,
                        item: item_no,
                        start: u32::try_from(start).unwrap_or(0),
                        end: u32::try_from(sc.replay.len()).unwrap_or(0),
                        idx: idx16,
                        views: 0,
                        memo: REPLAY,
                    });
                }
                return;
            }
            sc.pending.push(Pending {
                item: item_no,
                idx: idx16,
                hash,
            });
            sc.capturing = true;
        }
        // One pass decides which views can differ from `norm`: most benign
        // values are words, numbers, dates, tokens, and every derived view
        // then borrows `norm` (or `norm` is `raw` lower-cased).
        let all = raw
            .iter()
            .fold(0u64, |a, &b| a | self.byte_bits[b as usize]);
        let flags = (all >> SB_BITS) as u16;
        let raw_sb = all & SB_MASK;
        let decode = flags & F_NORM != 0;
        let derived = View::Compact.bit() | View::Strip.bit() | View::Path.bit() | View::Cmd.bit();
        // `base64_text` turns down a value outside the alphabet, and one of
        // letters of a single case or without letters (`/path` values are
        // judged on their last segment there).
        let (upper, lower) = (flags & F_UPPER != 0, flags & F_LOWER != 0);
        let b64_shape = flags & F_NOT_B64 == 0
            && ((upper && lower) || (flags & F_DIGIT_SYM != 0 && (upper || lower)));
        let b64: Option<Vec<u8>> = (needed & View::Base64.bit() != 0
            && raw.len() >= normalize::BASE64_MIN
            && (b64_shape || raw.first() == Some(&b'/')))
        .then(|| normalize::base64_text(raw).map(|d| normalize::norm(&d).into_owned()))
        .flatten();
        // The usual case: nothing to decode, no space, slash, comment or
        // shell character, so every view but `base64` is the value in lower
        // case. One text, copied lower-cased, no grouping.
        if !decode
            && flags & (F_SPACE | F_COMMENT | F_SLASH | F_CMD) == 0
            && raw.first() != Some(&b'.')
        {
            let idx = idx as u16;
            let views = needed & !View::Base64.bit();
            self.emit(idx, item_no, views, raw_sb, raw, raw, parsed, st, sc);
            if let Some(b) = &b64 {
                let sb = self.single_bytes(b);
                self.emit(idx, item_no, View::Base64.bit(), sb, b, raw, parsed, st, sc);
            }
            return;
        }
        // Without anything to decode, `norm` is the value itself: the
        // literal DFA folds case, the regexes ignore it and the detectors
        // lower what they read, so a lower-cased copy would change nothing.
        let norm: Option<Cow<'_, [u8]>> = (needed & (View::Norm.bit() | derived) != 0).then(|| {
            if decode {
                normalize::norm(raw)
            } else {
                Cow::Borrowed(raw)
            }
        });
        let n: &[u8] = norm.as_deref().unwrap_or(raw);
        let view = |bit: View, may_change: bool, f: fn(&[u8]) -> Cow<'_, [u8]>| {
            (needed & bit.bit() != 0).then(|| {
                if decode || may_change {
                    f(n)
                } else {
                    Cow::Borrowed(n)
                }
            })
        };
        let compact = view(
            View::Compact,
            flags & (F_SPACE | F_COMMENT) != 0,
            normalize::compact,
        );
        let strip = view(
            View::Strip,
            flags & (F_SPACE | F_COMMENT) != 0,
            normalize::strip,
        );
        let path = view(
            View::Path,
            flags & F_SLASH != 0 || n.first() == Some(&b'.'),
            normalize::collapse_path,
        );
        let cmd = view(View::Cmd, flags & F_CMD != 0, normalize::cmd);
        let texts: [Option<&[u8]>; VIEW_COUNT] = [
            (needed & View::Raw.bit() != 0).then_some(raw),
            norm.as_deref(),
            compact.as_deref(),
            strip.as_deref(),
            path.as_deref(),
            cmd.as_deref(),
            b64.as_deref(),
        ];
        // Group identical views: each distinct text is scanned once. All
        // regexes are case-insensitive, so the raw view joins the `norm`
        // group when they differ only in case (the group then reads `norm`,
        // which the detectors need in lower case).
        const ORDER: [usize; VIEW_COUNT] = [1, 2, 3, 4, 5, 0, 6];
        let mut leader = [usize::MAX; VIEW_COUNT];
        let mut members = [0u8; VIEW_COUNT];
        for (k, &v) in ORDER.iter().enumerate() {
            let Some(t) = texts[v] else { continue };
            let mut l = v;
            for &u in &ORDER[..k] {
                if leader[u] == u {
                    if let Some(tu) = texts[u] {
                        let same = (tu.as_ptr() == t.as_ptr() && tu.len() == t.len())
                            || if v == View::Raw as usize {
                                tu.eq_ignore_ascii_case(t)
                            } else {
                                tu == t
                            };
                        if same {
                            l = u;
                            break;
                        }
                    }
                }
            }
            leader[v] = l;
            members[l] |= 1 << v;
        }
        for l in 0..VIEW_COUNT {
            if leader[l] != l {
                continue;
            }
            if let Some(text) = texts[l] {
                let same = text.as_ptr() == raw.as_ptr() && text.len() == raw.len();
                let sb = if same {
                    raw_sb
                } else {
                    self.single_bytes(text)
                };
                self.emit(
                    idx as u16, item_no, members[l], sb, text, raw, parsed, st, sc,
                );
            }
        }
    }

    /// The single-byte literals a text holds.
    fn single_bytes(&self, text: &[u8]) -> u64 {
        text.iter()
            .fold(0u64, |a, &b| a | self.byte_bits[b as usize])
            & SB_MASK
    }

    /// Queues a text: the value itself when it is one, else a copy in the
    /// arena; a large one is checked at once instead (a big body's views
    /// are not kept together).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &self,
        idx: u16,
        item: u32,
        views: u8,
        sb: u64,
        text: &[u8],
        raw: &[u8],
        parsed: &request::Parsed<'_>,
        st: &mut State,
        sc: &mut Scratch,
    ) {
        let memo = if sc.capturing { CAPTURE } else { PLAIN };
        if text.len() > BIG_TEXT {
            let job = JobMeta {
                sb,
                item,
                start: VALUE,
                end: 0,
                idx,
                views,
                memo,
            };
            self.check_now(job, text, parsed, st, sc);
            return;
        }
        let (start, end) = if text.as_ptr() == raw.as_ptr() && text.len() == raw.len() {
            (VALUE, 0)
        } else {
            let start = sc.arena.len();
            sc.arena.extend_from_slice(text);
            (
                u32::try_from(start).unwrap_or(VALUE - 1),
                u32::try_from(sc.arena.len()).unwrap_or(VALUE - 1),
            )
        };
        sc.jobs.push(JobMeta {
            sb,
            item,
            start,
            end,
            idx,
            views,
            memo,
        });
    }

    /// Checks one large text by itself, now.
    #[inline(never)]
    fn check_now(
        &self,
        job: JobMeta,
        text: &[u8],
        parsed: &request::Parsed<'_>,
        st: &mut State,
        sc: &mut Scratch,
    ) {
        self.check_texts(
            &[job],
            |_| text,
            parsed,
            st,
            &mut sc.bits,
            &mut sc.also,
            &mut sc.seen,
            &mut sc.stamp,
            &sc.replay,
            &mut sc.hits,
        );
    }

    /// Checks the queued texts and clears the queue.
    fn run_jobs(&self, parsed: &request::Parsed<'_>, st: &mut State, sc: &mut Scratch) {
        if sc.jobs.is_empty() {
            self.remember(parsed, sc);
            return;
        }
        let Scratch {
            jobs,
            arena,
            bits,
            also,
            seen,
            stamp,
            replay,
            hits,
            ..
        } = sc;
        let pending: &[u8] = arena;
        // Never asked for a `REPLAY` job's text: it has none.
        let text_of = |j: &JobMeta| -> &[u8] {
            if j.start == VALUE {
                parsed
                    .items
                    .get(j.item as usize)
                    .map_or(&b""[..], |i| &i.value[..])
            } else {
                pending.get(j.start as usize..j.end as usize).unwrap_or(b"")
            }
        };
        self.check_texts(
            jobs, text_of, parsed, st, bits, also, seen, stamp, replay, hits,
        );
        jobs.clear();
        arena.clear();
        replay.clear();
        self.remember(parsed, sc);
    }

    /// Puts what the checked `CAPTURE` jobs matched in the memo, per item.
    fn remember(&self, parsed: &request::Parsed<'_>, sc: &mut Scratch) {
        let Scratch {
            pending,
            hits,
            memo,
            ..
        } = sc;
        // Both are in item order: an item's jobs are queued together.
        let mut h = 0;
        for p in pending.iter() {
            while hits.get(h).is_some_and(|&(item, _)| item < p.item) {
                h += 1;
            }
            let mut rules = [0u16; memo::MAX_RULES];
            let mut n = 0;
            let mut fits = true;
            while let Some(&(item, r)) = hits.get(h) {
                if item != p.item {
                    break;
                }
                h += 1;
                if rules[..n].contains(&r) {
                    continue;
                }
                match rules.get_mut(n) {
                    Some(slot) => {
                        *slot = r;
                        n += 1;
                    }
                    None => fits = false,
                }
            }
            if let (true, Some(item)) = (fits, parsed.items.get(p.item as usize)) {
                memo.put(p.hash, self.memo_id, p.idx, &item.value, &rules[..n]);
            }
        }
        pending.clear();
        hits.clear();
    }

    /// Runs every text through its index's literal DFA (four at a time),
    /// then on each text the rules its literals selected, and the
    /// unprefiltered rules.
    #[allow(clippy::too_many_arguments)]
    fn check_texts<'t>(
        &self,
        jobs: &[JobMeta],
        text_of: impl Fn(&JobMeta) -> &'t [u8],
        parsed: &request::Parsed<'_>,
        st: &mut State,
        bits: &mut Vec<u64>,
        also: &mut Vec<u64>,
        seen: &mut Vec<u32>,
        stamp: &mut u32,
        replay: &[u16],
        hits: &mut Vec<(u32, u16)>,
    ) {
        let w = self.words;
        // Stamps only grow, so `seen` needs no clearing between texts;
        // start over long before they could wrap.
        if *stamp > u32::MAX / 2 {
            *stamp = 0;
            seen.iter_mut().for_each(|x| *x = 0);
        }
        let base = *stamp;
        *stamp = stamp.saturating_add(u32::try_from(jobs.len()).unwrap_or(u32::MAX));
        bits.clear();
        bits.resize(jobs.len() * w, 0);
        also.clear();
        also.resize(jobs.len() * w, 0);
        if let Some(dfa) = &self.lits.dfa {
            if seen.len() < dfa.match_literals().len() {
                seen.resize(dfa.match_literals().len(), 0);
            }
            let scan_texts = jobs.iter().enumerate().filter_map(|(k, j)| {
                let ci = self.classes.get(j.idx as usize)?;
                (ci.prefiltered && ci.sparse.is_none() && j.memo != REPLAY).then(|| (text_of(j), k))
            });
            dfa.scan(scan_texts, &mut |k, m| {
                let job_stamp = base.saturating_add(u32::try_from(k).unwrap_or(u32::MAX)) + 1;
                match seen.get_mut(m) {
                    Some(x) if *x == job_stamp => return,
                    Some(x) => *x = job_stamp,
                    None => {}
                }
                self.lits.fold(
                    m,
                    w,
                    bits.get_mut(k * w..(k + 1) * w),
                    also.get_mut(k * w..(k + 1) * w),
                );
            });
        }
        // Texts of sparse indexes, with their index's own DFA.
        for (k, j) in jobs.iter().enumerate() {
            if j.memo == REPLAY {
                continue;
            }
            let Some(sp) = self
                .classes
                .get(j.idx as usize)
                .and_then(|c| c.sparse.as_ref())
            else {
                continue;
            };
            let Some(dfa) = &sp.tables.dfa else { continue };
            dfa.scan_sparse(text_of(j), &sp.needles, k, &mut |k, m| {
                sp.tables.fold(
                    m,
                    w,
                    bits.get_mut(k * w..(k + 1) * w),
                    also.get_mut(k * w..(k + 1) * w),
                );
            });
        }
        for (k, j) in jobs.iter().enumerate() {
            let (Some(ci), Some(item)) = (
                self.classes.get(j.idx as usize),
                parsed.items.get(j.item as usize),
            ) else {
                continue;
            };
            if j.memo == REPLAY {
                for &r in replay.get(j.start as usize..j.end as usize).unwrap_or(&[]) {
                    self.record(r, Some(item), || item.location(parsed), parsed, st);
                }
                continue;
            }
            let text = text_of(j);
            // A text being remembered tries every rule it selects: what an
            // earlier value fired must be remembered for this one too.
            let capture = j.memo == CAPTURE;
            let selected = bits.get_mut(k * w..(k + 1) * w).unwrap_or(&mut []);
            let useful_sb = j.sb & ci.sb_useful;
            if ci.prefiltered && (useful_sb != 0 || selected.iter().any(|&x| x != 0)) {
                let second = also.get_mut(k * w..(k + 1) * w).unwrap_or(&mut []);
                // The second group of a selected rule may be any single byte.
                let mut sb = j.sb;
                while sb != 0 {
                    let bit = sb.trailing_zeros() as usize;
                    sb &= sb - 1;
                    or_into(Some(selected), self.sb_rules.get(bit * w..(bit + 1) * w));
                    or_into(Some(second), self.sb_also.get(bit * w..(bit + 1) * w));
                }
                let allowed = ci
                    .allowed
                    .get(j.views as usize * w..(j.views as usize + 1) * w)
                    .unwrap_or(&[]);
                for (word, (((&sel, &sec), &ok), &needs)) in selected
                    .iter()
                    .zip(second.iter())
                    .zip(allowed)
                    .zip(&self.needs_also)
                    .enumerate()
                {
                    let fired = if capture {
                        0
                    } else {
                        st.fired.get(word).copied().unwrap_or(0)
                    };
                    let mut c = sel & ok & !(needs & !sec) & !fired;
                    while c != 0 {
                        let r = word * 64 + c.trailing_zeros() as usize;
                        c &= c - 1;
                        self.try_rule(r as u16, item, text, parsed, st, j, hits);
                    }
                }
            }
            for &r in &ci.always {
                if self.rules[r as usize].views & j.views != 0 {
                    self.try_rule(r, item, text, parsed, st, j, hits);
                }
            }
            for (v, set, ids) in &ci.sets {
                if j.views & v.bit() == 0 {
                    continue;
                }
                for m in set.matches(text).iter() {
                    if capture {
                        hits.push((j.item, ids[m]));
                    }
                    self.record(ids[m], Some(item), || item.location(parsed), parsed, st);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn try_rule(
        &self,
        r: u16,
        item: &Item<'_>,
        text: &[u8],
        parsed: &request::Parsed<'_>,
        st: &mut State,
        job: &JobMeta,
        hits: &mut Vec<(u32, u16)>,
    ) {
        let capture = job.memo == CAPTURE;
        if !capture && bit_test(&st.fired, r as usize) {
            return;
        }
        let rule = &self.rules[r as usize];
        let hit = match &rule.op {
            Op::Regex(re) => re.is_match(text),
            Op::Literals => true,
            Op::Sqli => {
                let mut lower = std::mem::take(&mut st.lower);
                let hit = sqli::is_sqli(lowered(text, &mut lower), &mut st.sqli);
                st.lower = lower;
                hit
            }
            Op::Xss => {
                let mut lower = std::mem::take(&mut st.lower);
                let hit = xss::is_xss(lowered(text, &mut lower));
                st.lower = lower;
                hit
            }
            Op::LengthGt(n) => item.value.len() > *n,
            Op::CountGt(_) | Op::Proto(_) => false,
        };
        if hit {
            if capture {
                hits.push((job.item, r));
            }
            self.record(r, Some(item), || item.location(parsed), parsed, st);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This thread's memo lookups so far: (hits, misses).
    fn memo_counts() -> (u64, u64) {
        SCRATCH.with(|c| {
            let s = c.borrow();
            (s.memo.hits, s.memo.misses)
        })
    }

    #[test]
    fn a_repeated_request_reads_all_but_its_body_from_the_memo() {
        let engine = compile(&WafSettings::default()).unwrap();
        let headers: [(&str, &[u8]); 5] = [
            ("Host", b"shop.example"),
            (
                "User-Agent",
                b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            ),
            (
                "Cookie",
                b"PHPSESSID=8f14e45fceea167a5a36dedd4bea2543; store=fr",
            ),
            ("Content-Type", b"application/x-www-form-urlencoded"),
            ("Content-Length", b"27"),
        ];
        let post = |body: &'static [u8]| Request {
            method: "POST",
            target: b"/newsletter/subscriber/new/?source=footer",
            version: "HTTP/1.1",
            headers: &headers,
            body: Some(body),
            body_truncated: false,
        };
        let req = post(b"email=anne%40example.fr&x=1");
        let start = memo_counts();
        let first = engine.inspect(&req);
        let seen = memo_counts();
        // First sight: every header and cookie value and name, the path and
        // the query are looked up and missed.
        assert_eq!(seen.0, start.0);
        let lookups = seen.1 - start.1;
        assert!(lookups >= 10, "{lookups} lookups");
        // The repeat finds every one of them, and gets the same verdict.
        let again = engine.inspect(&req);
        let end = memo_counts();
        assert_eq!((end.0 - seen.0, end.1 - seen.1), (lookups, 0));
        assert_eq!(again, first);
        // A body is not remembered: another one is not even looked up.
        let other = post(b"email=paul%40example.fr&x=2");
        engine.inspect(&other);
        let after = memo_counts();
        assert_eq!((after.0 - end.0, after.1 - end.1), (lookups, 0));
        // Without the memo nothing is looked up.
        assert_eq!(engine.inspect_uncached(&req), first);
        assert_eq!(memo_counts(), after);
    }
}
