//! # palisade-waf: the request rule engine
//!
//! A WAF engine with no Pingora dependency: the gateway builds a [`Request`]
//! from borrowed parts, calls [`Engine::inspect`], and acts on the
//! [`Verdict`].
//!
//! ```text
//! WafSettings ──compile()──▶ Engine (Arc, shared by all requests)
//! Request ──parse──▶ values (path, args, headers, cookies, body fields)
//!         ──views──▶ raw / norm / compact / strip / path / cmd / base64
//!         ──rules──▶ literal prefilter (Aho-Corasick) → regex / detector
//!         ──score──▶ Verdict { score, action, matches }
//! ```
//!
//! ## Key design decision: prefilter, then confirm
//!
//! Every value is normalised into at most seven *views*, each computed once
//! and only if a rule of that value's index reads it; views that come out
//! identical are kept once, and a *plain* value (nothing to decode, no
//! space, slash, comment or shell character: most benign values) skips the
//! view machinery and is its own text. Rules are indexed per class of value
//! (path, argument, header, cookie, ...) and, for headers, per header name a
//! rule targets, so no rule is ever tried on a header it does not name.
//!
//! Every rule's prefilter literals are compiled into one flat,
//! case-folding DFA (`scan`): texts are never lower-cased to be scanned,
//! and one comparison per byte tells a match. The texts of a request are
//! walked through it four at a time, side by side, so that the processor
//! overlaps four chains of dependent loads (a long text is cut into four
//! overlapping pieces for the same reason). Single-byte literals are not in
//! the DFA: they are bits of a per-byte table that the pass deciding a
//! value's views already reads. A match state, or a byte bit, maps to a
//! bitmap of the rules it selects; an index keeps its own rules with a
//! mask per set of views, so each text ends with a small bitmap of the
//! rules to run on it. An index whose literals all start with at most three
//! bytes (the raw `uri`) has its own small DFA and is scanned from needle
//! to needle with `memchr`.
//!
//! Only the rules selected (and, with `prefilter_also`, whose second group
//! occurred in the same text too) run their regex or detector. A prefilter
//! is only an optimisation if it is sound: [`prefilter_covers`] proves that
//! every match of the regex contains a literal, for custom rules at
//! [`compile`] and for the built-in ones in a test; a rule's regex then runs
//! without a literal prefilter of its own. Rules without a prefilter are
//! grouped into one `RegexSet` per index and view (one built-in rule, the
//! scanner User-Agent list, has none). Nothing is compiled after
//! [`compile`], all matching is linear-time (`regex-automata`,
//! `aho-corasick`, hand-written tokenizers), and every parser and buffer is
//! bounded; the buffers of one inspection are reused by the next on the
//! same thread.
//!
//! ## Calling it from the gateway
//!
//! ```
//! use palisade_waf::{compile, Request, WafSettings, Action};
//! let engine = compile(&WafSettings::default()).expect("built-in rules compile");
//! let headers = [("Host", &b"shop.example"[..]), ("User-Agent", &b"Mozilla/5.0"[..])];
//! let req = Request {
//!     method: "GET",
//!     target: b"/search?q=O%27Reilly",
//!     version: "HTTP/1.1",
//!     headers: &headers,
//!     body: None,
//!     body_truncated: false,
//! };
//! assert_eq!(engine.inspect(&req).action, Action::Allow);
//! ```
//!
//! Call `inspect` once in the header phase with `body: None`. When the
//! request has a body, buffer at most [`Engine::body_limit`] bytes and call
//! `inspect` again with `body: Some(prefix)` and `body_truncated` set when
//! the body was longer: the second call re-inspects the whole request and
//! its verdict replaces the first. If `body_truncated` and
//! [`Engine::body_overflow`] is [`BodyOverflow::Reject`], the gateway answers
//! 413 without inspecting.
//!
//! ## Scoring and modes
//!
//! Each distinct rule that matches adds its score once. A request is
//! [`Action::Block`] when the scores of the matching rules whose mode is
//! `block` reach the threshold, [`Action::Detect`] when all matching rules
//! together reach it but the blocking ones do not. A rule's mode is, in
//! order of precedence: a `rule_modes` entry for its id, one for its
//! category, the site's mode. `off` removes the rule.
//!
//! ## Exclusions
//!
//! `{ path_prefix, rules, categories, args }`: a match is dropped when the
//! request path (decoded, collapsed, lower-cased) starts with `path_prefix`,
//! the rule is listed (by id or category; neither means every rule), and,
//! when `args` is given, the match is in one of those arguments (query,
//! form, JSON path or its last segment, multipart, XML element).
//!
//! ## Rules
//!
//! Built-in rules live in `rules/*.toml`, embedded with `include_str!`;
//! custom rules in `[[sites.waf.rules]]` have the same shape
//! ([`CustomRule`]). Every built-in rule was written for Palisade from the
//! attack classes it covers.
//!
//! Rule files: `sqli`, `xss`, `lfi`, `rfi`, `rce` (unix, windows, SSI),
//! `code` (PHP, Java, Node), `ssti`, `ssrf`, `injection` (NoSQL, LDAP,
//! Log4Shell, CRLF, mail, XXE, session fixation), `scanner`,
//! `sensitive-file`, `protocol`. Categories beyond the gateway's first list:
//! `xxe`, `ssi`, `mail`, `session-fixation`, `custom`.
//!
//! ## Views
//!
//! `raw` (query/form values are URL-decoded once), `norm` (repeated URL,
//! `%uXXXX`, HTML entity and `\uXXXX`/`\xHH` decoding, NUL removal,
//! full-width folding, lower case), `compact` (comments removed, spaces
//! collapsed), `strip` (no comments, no whitespace), `path` (`\` to `/`,
//! `//`, `./`, `../` collapsed), `cmd` (shell quoting tricks removed),
//! `base64` (`norm` of the decoding, only when the value plausibly is
//! Base64 text). See [`normalize`].
//!
//! ## Structured values
//!
//! A cookie whose value is JSON (an object or an array, after URL
//! decoding) is inspected key by key (as cookie names) and leaf by leaf (as
//! values of that cookie), as a JSON body is; broken JSON stays one value.
//! A `Referer` or `Origin` header that is a plain `http(s)` URL is
//! inspected part by part, as the request target is: `scheme://host`, the
//! path, each query name and value (URL-decoded) and the fragment, all as
//! values of that header; anything else stays one value. Count rules count
//! such a header once.
//!
//! ## Match locations
//!
//! [`Match::location`] names where a rule matched (`args:q`,
//! `header:user-agent`, `body:json:user.name`, ...), never the value.
//!
//! ## Bounds
//!
//! At most 4096 values per request (`proto-150` fires beyond), JSON/XML
//! nesting followed to depth 32, three decoding rounds, no view longer than
//! its input (the `path` view: one byte more), at most 64 matches reported.
//! Bodies are whatever prefix the gateway passes (`body_limit`).
//!
//! ## Measuring
//!
//! `examples/waf_server.rs` serves the engine over raw HTTP/1.1 for
//! `wafbench`; `benches/engine.rs` holds the criterion benchmarks and
//! `benches/RESULTS.md` the figures; `fuzz/` the `cargo fuzz` targets.

mod body;
mod detect;
mod engine;
mod memo;
pub mod normalize;
mod prefilter;
mod protocol;
mod request;
mod scan;
mod settings;

pub use detect::{sqli, xss};
pub use engine::{
    compile, Action, BodyOverflow, Category, Engine, Match, Mode, Verdict, WafConfigError,
    BUILTIN_RULES,
};
pub use prefilter::prefilter_covers;
pub use request::Request;
pub use settings::{CustomRule, Exclusion, RuleMode, WafSettings};

/// Fuzzing entry points: parse a request (all body parsers) without rules.
#[doc(hidden)]
pub mod fuzzing {
    /// Parses the request into values and returns how many were found.
    pub fn parse_request(req: &crate::Request<'_>) -> usize {
        crate::request::parse(req, Vec::new(), Vec::new())
            .items
            .len()
    }
}
