//! The validated configuration the gateway runs on.
//!
//! Nothing here can be invalid: addresses are parsed, durations are `Duration`s, host patterns are
//! lower-cased and checked, header values are valid HTTP header values, certificate files were read
//! and their keys matched when this was built.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from (for messages and reloads).
    pub source: PathBuf,
    pub server: Server,
    pub tls: Tls,
    pub sites: Vec<Site>,
    pub logging: Logging,
    pub cluster: Option<palisade_limits::ClusterSettings>,
}

#[derive(Debug, Clone)]
pub struct Server {
    /// Plain-HTTP listener: redirects to https, serves ACME http-01 and TLS-offloaded sites.
    pub http: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    /// Worker threads; defaults to the number of CPUs.
    pub threads: usize,
    pub trusted_proxies: TrustedProxies,
    /// Header that carries the request id to the upstream and back to the client.
    pub request_id_header: String,
    /// How long in-flight requests get to finish on shutdown.
    pub shutdown_grace: Duration,
    /// When set, `/metrics` requires `Authorization: Bearer <token>`.
    pub admin_token: Option<String>,
}

/// Peers whose `X-Forwarded-*`, `X-Real-IP` and request-id headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self { nets }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, as dual-stack sockets report them) compare as IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownSni {
    /// Serve the default certificate (the browser then shows a name mismatch).
    Default,
    /// Abort the handshake.
    Reject,
}

#[derive(Debug, Clone)]
pub struct Tls {
    pub unknown_sni: UnknownSni,
    /// How often certificate files are checked for changes; `None` turns watching off (SIGHUP
    /// still reloads).
    pub watch_interval: Option<Duration>,
    pub certificates: Vec<CertificateSpec>,
    /// CA for optional client certificates (routes with `client_cert = true` require one).
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct CertificateSpec {
    pub name: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Names this certificate answers for: exact (`shop.example`) or wildcard (`*.shop.example`).
    pub hosts: Vec<HostPattern>,
    pub default: bool,
}

/// A host name or a one-label wildcard, lower-case, without port or trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    Exact(String),
    /// `*.shop.example` stored as `shop.example`: matches exactly one more label.
    Wildcard(String),
}

impl HostPattern {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim().trim_end_matches('.').to_ascii_lowercase();
        if let Some(rest) = s.strip_prefix("*.") {
            check_hostname(rest)?;
            if !rest.contains('.') {
                return Err(format!(
                    "wildcard `*.{rest}` is too broad: it needs at least two labels after `*.`"
                ));
            }
            Ok(HostPattern::Wildcard(rest.to_string()))
        } else {
            check_hostname(&s)?;
            Ok(HostPattern::Exact(s))
        }
    }

    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Wildcard(suffix) => host
                .strip_suffix(suffix.as_str())
                .and_then(|p| p.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Wildcard(s) => write!(f, "*.{s}"),
        }
    }
}

fn check_hostname(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 {
        return Err("host name must be 1 to 253 characters".into());
    }
    if s.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    for label in s.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!(
                "`{s}` is not a valid host name (empty or long label)"
            ));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Err(format!("`{s}` is not a valid host name"));
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct Site {
    pub name: String,
    pub hosts: Vec<HostPattern>,
    /// Plain-HTTP requests get a 308 to https (ACME http-01 challenges excepted).
    pub https_redirect: bool,
    pub upstream: Upstream,
    pub hsts: Hsts,
    pub headers: HeaderPolicy,
    pub cookies: CookiePolicy,
    /// The site's compiled WAF (`None` when `[sites.waf] enabled = false`).
    pub waf: Option<WafEngine>,
    pub access: Option<palisade_limits::AccessSettings>,
    pub bans: Option<palisade_limits::EscalationSettings>,
    pub routes: Vec<Route>,
}

/// Limits and access rules for the requests whose normalised path starts with `path`.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    /// Lower-case, percent-decoded, dot segments resolved: see [`normalize_path`].
    pub path: String,
    /// Upper-case; empty means every method.
    pub methods: Vec<String>,
    pub rate_limit: Option<palisade_limits::RateLimitSettings>,
    pub basic_auth: Option<palisade_limits::BasicAuthSettings>,
    /// When not empty, only these client addresses may use the route.
    pub allow: Vec<IpNet>,
    pub api_keys: Option<palisade_limits::ApiKeySettings>,
    /// Require a client certificate verified against `[tls] client_ca`.
    pub client_cert: bool,
}

impl Route {
    /// Does this route cover a request? `path` must come from [`normalize_path`].
    pub fn matches(&self, method: &str, path: &str) -> bool {
        path.starts_with(self.path.as_str())
            && (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
    }
}

/// The form of a path that access rules are matched against, so `/Admin`, `//admin`,
/// `/%61dmin`, `/x/../admin` and `/admin/./` all count as `/admin…`: percent-decoded (once per
/// pass, until stable, bounded), backslashes as slashes, duplicate slashes collapsed, `.` and
/// `..` segments resolved, lower-cased. Bounded work: at most 4 decoding passes.
pub fn normalize_path(raw: &str) -> String {
    if already_normal(raw) {
        return raw.to_string();
    }
    normalize_path_fully(raw)
}

fn normalize_path_fully(raw: &str) -> String {
    let mut s = raw.to_string();
    for _ in 0..4 {
        let decoded = percent_decode(&s);
        if decoded == s {
            break;
        }
        s = decoded;
    }
    let s = s.replace('\\', "/").to_ascii_lowercase();
    let mut out: Vec<&str> = Vec::new();
    for seg in s.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    let mut path = String::with_capacity(s.len() + 1);
    for seg in &out {
        path.push('/');
        path.push_str(seg);
    }
    if path.is_empty() || s.ends_with('/') {
        path.push('/');
    }
    path
}

/// A path `normalize_path` would hand back unchanged (most requests' paths): it starts with `/`,
/// has nothing to decode, fold or collapse (`%`, `\`, upper case, `//`, `.` and `..` segments).
fn already_normal(raw: &str) -> bool {
    let b = raw.as_bytes();
    b.first() == Some(&b'/')
        && !b
            .iter()
            .any(|&c| c == b'%' || c == b'\\' || c.is_ascii_uppercase())
        && !raw.contains("//")
        && !raw.contains("/./")
        && !raw.contains("/../")
        && !raw.ends_with("/.")
        && !raw.ends_with("/..")
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A compiled rule set, shared by every request of a config generation.
#[derive(Clone)]
pub struct WafEngine(pub std::sync::Arc<palisade_waf::Engine>);

impl std::fmt::Debug for WafEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "WafEngine({} rules, {})",
            self.0.rule_count(),
            self.0.mode()
        )
    }
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub backends: Vec<Backend>,
    pub tls_verify: bool,
    pub tls_ca: Option<PathBuf>,
    pub tls_sni: Option<String>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub health_check: Option<HealthCheck>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub addr: SocketAddr,
    pub tls: bool,
    /// The name as written (for SNI and certificate verification when it is a name).
    pub host: String,
}

#[derive(Debug, Clone)]
pub struct HealthCheck {
    /// `None`: a TCP connect check. `Some(path)`: an HTTP GET that must answer 2xx/3xx.
    pub path: Option<String>,
    pub host: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Hsts {
    pub enabled: bool,
    pub max_age: u64,
    pub include_subdomains: bool,
    pub preload: bool,
}

impl Hsts {
    /// The `Strict-Transport-Security` value, or `None` when disabled.
    pub fn header_value(&self) -> Option<String> {
        if !self.enabled {
            return None;
        }
        let mut v = format!("max-age={}", self.max_age);
        if self.include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if self.preload {
            v.push_str("; preload");
        }
        Some(v)
    }
}

impl Default for Hsts {
    /// One year, no subdomains, no preload: safe for any site.
    fn default() -> Self {
        Hsts {
            enabled: true,
            max_age: 31_536_000,
            include_subdomains: false,
            preload: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CspMode {
    Enforce,
    ReportOnly,
}

#[derive(Debug, Clone)]
pub struct HeaderPolicy {
    pub x_content_type_options: Option<String>,
    pub x_frame_options: Option<String>,
    pub referrer_policy: Option<String>,
    pub permissions_policy: Option<String>,
    pub content_security_policy: Option<String>,
    pub csp_mode: CspMode,
    pub upgrade_insecure_requests: bool,
    /// Replace values the upstream set itself (default: keep them).
    pub override_upstream: bool,
    /// Fingerprint headers removed from every response (lower-case).
    pub remove: Vec<String>,
}

impl Default for HeaderPolicy {
    fn default() -> Self {
        HeaderPolicy {
            x_content_type_options: Some("nosniff".into()),
            x_frame_options: Some("SAMEORIGIN".into()),
            referrer_policy: Some("strict-origin-when-cross-origin".into()),
            permissions_policy: Some(
                "camera=(), microphone=(), geolocation=(), usb=(), interest-cohort=()".into(),
            ),
            content_security_policy: None,
            csp_mode: CspMode::Enforce,
            upgrade_insecure_requests: false,
            override_upstream: false,
            remove: DEFAULT_FINGERPRINT_HEADERS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

/// Fingerprint headers removed by default: they tell an attacker which software and version to aim at.
pub const DEFAULT_FINGERPRINT_HEADERS: &[&str] = &[
    "server",
    "x-powered-by",
    "x-aspnet-version",
    "x-aspnetmvc-version",
    "x-generator",
    "x-drupal-cache",
    "x-drupal-dynamic-cache",
    "x-varnish",
    "x-runtime",
    "x-version",
    "x-magento-tags",
    "x-magento-debug",
    "x-magento-cache-debug",
    "x-litespeed-cache",
    "x-turbo-charged-by",
    "x-pingback",
    "x-backend-server",
    "x-served-by",
    "x-mod-pagespeed",
    "x-page-speed",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

impl SameSite {
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

/// The flags added to upstream cookies that lack them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieFlags {
    pub secure: bool,
    pub http_only: bool,
    /// `None`: leave SameSite alone.
    pub same_site: Option<SameSite>,
}

impl Default for CookieFlags {
    fn default() -> Self {
        CookieFlags {
            secure: true,
            http_only: true,
            same_site: Some(SameSite::Lax),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct CookiePolicy {
    pub default: CookieFlags,
    /// Per cookie name (exact, case-sensitive as cookies are).
    pub exceptions: Vec<(String, CookieFlags)>,
}

impl CookiePolicy {
    pub fn flags_for(&self, name: &str) -> CookieFlags {
        self.exceptions
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, f)| *f)
            .unwrap_or(self.default)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogOutput {
    Stderr,
    Stdout,
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Logging {
    pub format: LogFormat,
    pub output: LogOutput,
    /// A tracing `EnvFilter` directive such as `info` or `palisade=debug,pingora=warn`.
    pub level: String,
    /// One JSON (or text) line per request on target `palisade::access`.
    pub access_log: bool,
    /// What every log line is cleaned of; always applied.
    pub redaction: palisade_redact::RedactSettings,
}

#[cfg(test)]
mod path_tests {
    use super::{already_normal, normalize_path_fully};

    /// The shortcut is taken only where the full normalisation would change nothing: every path
    /// of up to six bytes over the bytes that matter.
    #[test]
    fn the_shortcut_agrees_with_the_full_normalisation() {
        let alphabet = b"/.aA%2\\-";
        let mut taken = 0;
        for len in 0..=6u32 {
            for mut n in 0..alphabet.len().pow(len) {
                let mut p = String::new();
                for _ in 0..len {
                    p.push(char::from(alphabet[n % alphabet.len()]));
                    n /= alphabet.len();
                }
                if already_normal(&p) {
                    taken += 1;
                    assert_eq!(normalize_path_fully(&p), p);
                }
            }
        }
        assert!(taken > 1000);
    }
}
