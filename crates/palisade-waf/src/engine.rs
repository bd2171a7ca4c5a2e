//! Compilation of settings and rules into an [`Engine`], and inspection.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

use crate::detect::{sqli, xss};
use crate::normalize::{self, View, VIEW_COUNT};
use crate::request::{self, Class, Item, Request, CLASS_COUNT};
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
    op: Op,
}

impl Rule {
    fn applies_to(&self, item: &Item<'_>) -> bool {
        if matches!(item.class, Class::HeaderUser | Class::HeaderStd) && !self.all_headers {
            let name = std::str::from_utf8(&item.name).unwrap_or("");
            return self.header_names.iter().any(|n| n == name);
        }
        true
    }
}

#[derive(Debug, Default)]
struct ClassIndex {
    /// Views read by any rule of the class.
    views: u8,
    /// Multi-byte prefilter literals.
    ac: Option<AhoCorasick>,
    /// Literal id -> rules.
    lit_rules: Vec<Vec<u16>>,
    /// Single-byte prefilter literals: byte -> rules (both letter cases).
    byte_rules: Vec<Vec<u16>>,
    /// Any single-byte literal at all.
    has_bytes: bool,
    /// Rules without a prefilter, tried on every value (regex rules are in
    /// `sets` instead).
    always: Vec<u16>,
    /// Per view: a set of unprefiltered regex rules.
    sets: Vec<(View, RegexSet, Vec<u16>)>,
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
    classes: Vec<ClassIndex>,
    /// Request-level rules: protocol checks and counts.
    request_rules: Vec<u16>,
    exclusions: Vec<CExclusion>,
    literal_count: usize,
}

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

/// Rules, per-class indexes, request-level rule ids, widest literal set.
type Compiled = (Vec<Rule>, Vec<ClassIndex>, Vec<u16>, usize);

struct Builder {
    rules: Vec<Rule>,
    /// Prefilter literals per rule (parallel to `rules`).
    prefilters: Vec<Vec<String>>,
}

/// Everything `compile` resolved from the site settings.
struct SiteOptions {
    mode: Mode,
    paranoia: i64,
    overrides: Vec<(Option<String>, Option<Category>, Option<Mode>)>,
}

fn build_rule(def: &CustomRule, site: &SiteOptions) -> Result<Option<(Rule, Vec<String>)>, String> {
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
        let r = RegexBuilder::new(re)
            .case_insensitive(true)
            .unicode(false)
            .size_limit(4 << 20)
            .dfa_size_limit(4 << 20)
            .build()
            .map_err(|e| format!("rule {:?}: invalid regex: {e}", def.id))?;
        Op::Regex(r)
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
    if prefilter.iter().any(|p| p.is_empty()) {
        return Err(format!("rule {:?}: empty prefilter literal", def.id));
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
            op,
        },
        prefilter,
    )))
}

impl Builder {
    fn finish(self) -> Result<Compiled, String> {
        let mut classes: Vec<ClassIndex> =
            (0..CLASS_COUNT).map(|_| ClassIndex::default()).collect();
        let mut request_rules = Vec::new();
        let mut literal_count = 0;
        for class in Class::ALL {
            let ci = &mut classes[class as usize];
            let mut lits: Vec<String> = Vec::new();
            let mut lit_rules: Vec<Vec<u16>> = Vec::new();
            let mut set_patterns: Vec<(View, Vec<String>, Vec<u16>)> = Vec::new();
            for (idx, rule) in self.rules.iter().enumerate() {
                let idx = u16::try_from(idx).map_err(|_| "too many rules".to_owned())?;
                if rule.classes & class.bit() == 0 {
                    continue;
                }
                if matches!(rule.op, Op::CountGt(_) | Op::Proto(_)) {
                    continue;
                }
                ci.views |= rule.views;
                let pf = &self.prefilters[idx as usize];
                if !pf.is_empty() {
                    for l in pf {
                        let l = l.to_ascii_lowercase();
                        if l.len() == 1 {
                            // One byte: a table lookup instead of the automaton.
                            if ci.byte_rules.is_empty() {
                                ci.byte_rules = vec![Vec::new(); 256];
                            }
                            let b = l.as_bytes()[0];
                            for c in [b, b.to_ascii_uppercase()] {
                                if !ci.byte_rules[c as usize].contains(&idx) {
                                    ci.byte_rules[c as usize].push(idx);
                                }
                            }
                            ci.has_bytes = true;
                            continue;
                        }
                        let id = match lits.iter().position(|x| *x == l) {
                            Some(i) => i,
                            None => {
                                lits.push(l);
                                lit_rules.push(Vec::new());
                                lits.len() - 1
                            }
                        };
                        if !lit_rules[id].contains(&idx) {
                            lit_rules[id].push(idx);
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
                                None => {
                                    set_patterns.push((v, vec![r.as_str().to_owned()], vec![idx]))
                                }
                            }
                        }
                    }
                } else {
                    ci.always.push(idx);
                }
            }
            if !lits.is_empty() {
                let ac = AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .kind(Some(AhoCorasickKind::DFA))
                    .build(&lits)
                    .map_err(|e| format!("literal automaton: {e}"))?;
                literal_count = literal_count.max(lits.len());
                ci.ac = Some(ac);
                ci.lit_rules = lit_rules;
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
        }
        for (idx, rule) in self.rules.iter().enumerate() {
            if matches!(rule.op, Op::CountGt(_) | Op::Proto(_)) {
                request_rules.push(u16::try_from(idx).map_err(|_| "too many rules".to_owned())?);
            }
        }
        Ok((self.rules, classes, request_rules, literal_count))
    }
}

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
    };
    for (def, span, builtin) in &defs {
        match build_rule(def, &site) {
            Ok(Some((rule, pf))) => {
                builder.rules.push(rule);
                builder.prefilters.push(pf);
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
    let (rules, classes, request_rules, literal_count) =
        builder.finish().map_err(|m| vec![err(0..0, m)])?;
    Ok(Engine {
        enabled: settings.enabled.unwrap_or(true),
        mode,
        threshold,
        body_limit,
        body_overflow,
        rules,
        classes,
        request_rules,
        exclusions,
        literal_count,
    })
}

/// Per-inspection scratch state.
struct State {
    fired: Vec<u64>,
    matches: Vec<(u16, String)>,
    lit_seen: Vec<u64>,
    cand: Vec<u64>,
    sqli: sqli::Scratch,
    path_norm: Option<Vec<u8>>,
}

fn bit_test(v: &[u64], i: usize) -> bool {
    v.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
}

fn bit_set(v: &mut [u64], i: usize) {
    if let Some(w) = v.get_mut(i / 64) {
        *w |= 1 << (i % 64);
    }
}

/// Classifies a value in one pass: `plain` when it holds only letters,
/// digits, single spaces, `_ . , : @ -` and non-ASCII text (never the
/// full-width lead byte `0xEF`), so that no decoder, comment or path rule
/// can change it.
fn plain_value(v: &[u8]) -> (bool, bool, bool) {
    let mut upper = false;
    let mut space = false;
    let mut prev = 0u8;
    for &b in v {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b',' | b':' | b'@' | b'-' => {}
            b'A'..=b'Z' => upper = true,
            b' ' if prev != b' ' => space = true,
            0x80..=0xee | 0xf0..=0xff => {}
            _ => return (false, upper, space),
        }
        prev = b;
    }
    (true, upper, space)
}

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
    pub fn inspect(&self, req: &Request<'_>) -> Verdict {
        if !self.enabled {
            return Verdict::allow();
        }
        let parsed = request::parse(req);
        let words = self.rules.len().div_ceil(64);
        let mut st = State {
            fired: vec![0; words],
            matches: Vec::new(),
            lit_seen: vec![0; self.literal_count.div_ceil(64)],
            cand: vec![0; words],
            sqli: sqli::Scratch::default(),
            path_norm: None,
        };
        for &r in &self.request_rules {
            self.eval_request_rule(r, req, &parsed, &mut st);
        }
        for item in &parsed.items {
            self.eval_item(item, &parsed, &mut st);
        }
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
                let Some(name) = item.and_then(Item::arg_name) else {
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
        st: &mut State,
    ) {
        let rule = &self.rules[r as usize];
        let hit: Option<&'static str> = match &rule.op {
            Op::CountGt(n) => {
                let count = parsed
                    .items
                    .iter()
                    .filter(|i| rule.classes & i.class.bit() != 0 && rule.applies_to(i))
                    .count();
                (count > *n).then_some("request")
            }
            Op::Proto(p) => crate::protocol::check(*p, req, parsed),
            _ => None,
        };
        if let Some(loc) = hit {
            self.record(r, None, || loc.to_owned(), parsed, st);
        }
    }

    fn eval_item(&self, item: &Item<'_>, parsed: &request::Parsed<'_>, st: &mut State) {
        let ci = &self.classes[item.class as usize];
        let needed = ci.views;
        if needed == 0 {
            return;
        }
        // Compute the views this class needs, once.
        let raw: &[u8] = &item.value;
        let derived = View::Compact.bit() | View::Strip.bit() | View::Path.bit() | View::Cmd.bit();
        // Most benign values are words, numbers, dates and e-mail addresses:
        // then every derived view equals `norm` (or `norm` without spaces),
        // and one pass decides it.
        let (plain, upper, space) = plain_value(raw);
        let norm: Option<Cow<'_, [u8]>> = (needed & (View::Norm.bit() | derived) != 0).then(|| {
            if plain {
                if upper {
                    Cow::Owned(raw.to_ascii_lowercase())
                } else {
                    Cow::Borrowed(raw)
                }
            } else {
                normalize::norm(raw)
            }
        });
        let n: &[u8] = norm.as_deref().unwrap_or(raw);
        let same = |f: fn(&[u8]) -> Cow<'_, [u8]>| if plain { Cow::Borrowed(n) } else { f(n) };
        let compact = (needed & View::Compact.bit() != 0).then(|| same(normalize::compact));
        let strip = (needed & View::Strip.bit() != 0).then(|| {
            if plain && !space {
                Cow::Borrowed(n)
            } else {
                normalize::strip(n)
            }
        });
        let path = (needed & View::Path.bit() != 0).then(|| same(normalize::collapse_path));
        let cmd = (needed & View::Cmd.bit() != 0).then(|| same(normalize::cmd));
        let b64: Option<Vec<u8>> = (needed & View::Base64.bit() != 0)
            .then(|| normalize::base64_text(raw).map(|d| normalize::norm(&d).into_owned()))
            .flatten();
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
            let Some(text) = texts[l] else { continue };
            let mask = members[l];
            // Literal prefilters: single bytes through a byte set, longer
            // literals through the automaton.
            st.cand.iter_mut().for_each(|w| *w = 0);
            let mut any = false;
            if ci.has_bytes {
                let mut present = [0u64; 4];
                for &b in text {
                    present[(b >> 6) as usize] |= 1 << (b & 63);
                }
                for (w, word) in present.iter().enumerate() {
                    let mut bits = *word;
                    while bits != 0 {
                        let b = w * 64 + bits.trailing_zeros() as usize;
                        bits &= bits - 1;
                        for &r in &ci.byte_rules[b] {
                            if self.rules[r as usize].views & mask != 0
                                && !bit_test(&st.fired, r as usize)
                            {
                                bit_set(&mut st.cand, r as usize);
                                any = true;
                            }
                        }
                    }
                }
            }
            if let Some(ac) = &ci.ac {
                st.lit_seen.iter_mut().for_each(|w| *w = 0);
                for m in ac.find_overlapping_iter(text) {
                    let lit = m.pattern().as_usize();
                    if bit_test(&st.lit_seen, lit) {
                        continue;
                    }
                    bit_set(&mut st.lit_seen, lit);
                    for &r in &ci.lit_rules[lit] {
                        if self.rules[r as usize].views & mask != 0
                            && !bit_test(&st.fired, r as usize)
                        {
                            bit_set(&mut st.cand, r as usize);
                            any = true;
                        }
                    }
                }
            }
            {
                if any {
                    for w in 0..st.cand.len() {
                        let mut bits = st.cand[w];
                        while bits != 0 {
                            let b = bits.trailing_zeros() as usize;
                            bits &= bits - 1;
                            let r = (w * 64 + b) as u16;
                            self.try_rule(r, item, text, parsed, st);
                        }
                    }
                }
            }
            for &r in &ci.always {
                if self.rules[r as usize].views & mask != 0 {
                    self.try_rule(r, item, text, parsed, st);
                }
            }
            for (v, set, ids) in &ci.sets {
                if mask & v.bit() == 0 {
                    continue;
                }
                for m in set.matches(text).iter() {
                    let r = ids[m];
                    if self.rules[r as usize].applies_to(item) {
                        self.record(r, Some(item), || item.location(), parsed, st);
                    }
                }
            }
        }
    }

    fn try_rule(
        &self,
        r: u16,
        item: &Item<'_>,
        text: &[u8],
        parsed: &request::Parsed<'_>,
        st: &mut State,
    ) {
        if bit_test(&st.fired, r as usize) {
            return;
        }
        let rule = &self.rules[r as usize];
        if !rule.applies_to(item) {
            return;
        }
        let hit = match &rule.op {
            Op::Regex(re) => re.is_match(text),
            Op::Literals => true,
            Op::Sqli => sqli::is_sqli(text, &mut st.sqli),
            Op::Xss => xss::is_xss(text),
            Op::LengthGt(n) => item.value.len() > *n,
            Op::CountGt(_) | Op::Proto(_) => false,
        };
        if hit {
            self.record(r, Some(item), || item.location(), parsed, st);
        }
    }
}
