//! The file as written: serde structs that mirror the TOML one to one.
//!
//! Every struct rejects unknown keys, so a misspelt `burts` or `hsts.max_agee` is an error with its
//! line and column, never a silently ignored setting. Values that are checked after parsing (an
//! address, a CIDR, a file path, a duration) are kept as `Spanned` so their errors can point at them.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

pub type S<T> = Spanned<T>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub tls: RawTls,
    #[serde(default)]
    pub certificates: Vec<S<RawCertificate>>,
    #[serde(default)]
    pub sites: Vec<S<RawSite>>,
    #[serde(default)]
    pub logging: RawLogging,
    /// Share limits and bans with other instances through Redis.
    pub cluster: Option<S<palisade_limits::ClusterSettings>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub http: Option<S<String>>,
    pub https: Option<S<String>>,
    pub admin: Option<S<String>>,
    pub threads: Option<S<i64>>,
    #[serde(default)]
    pub trusted_proxies: Vec<S<String>>,
    pub request_id_header: Option<S<String>>,
    pub shutdown_grace: Option<S<String>>,
    pub admin_token: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub unknown_sni: Option<S<String>>,
    pub watch_interval: Option<S<String>>,
    /// CA whose client certificates are accepted (optional mTLS; routes opt in).
    pub client_ca: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    pub name: Option<S<String>>,
    pub cert: S<String>,
    pub key: S<String>,
    pub hosts: Option<Vec<S<String>>>,
    #[serde(default)]
    pub default: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSite {
    pub name: S<String>,
    pub hosts: S<Vec<S<String>>>,
    pub upstreams: S<Vec<S<String>>>,
    pub https_redirect: Option<bool>,
    #[serde(default)]
    pub upstream: RawUpstream,
    #[serde(default)]
    pub hsts: RawHsts,
    #[serde(default)]
    pub headers: RawHeaders,
    #[serde(default)]
    pub cookies: RawCookies,
    /// The WAF's own settings table (validated by `palisade_waf::compile`).
    #[serde(default)]
    pub waf: palisade_waf::WafSettings,
    /// Operator allow/deny CIDR lists for the site.
    pub access: Option<S<palisade_limits::AccessSettings>>,
    /// Escalation of repeated violations to timed bans.
    pub bans: Option<S<palisade_limits::EscalationSettings>>,
    #[serde(default)]
    pub routes: Vec<S<RawRoute>>,
}

/// A part of a site with its own limits and access rules, matched by path prefix (and method).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: S<String>,
    pub path: S<String>,
    #[serde(default)]
    pub methods: Vec<S<String>>,
    pub rate_limit: Option<palisade_limits::RateLimitSettings>,
    pub basic_auth: Option<S<palisade_limits::BasicAuthSettings>>,
    #[serde(default)]
    pub allow: Vec<S<String>>,
    pub api_keys: Option<S<palisade_limits::ApiKeySettings>>,
    pub client_cert: Option<S<bool>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub tls_verify: Option<bool>,
    pub tls_ca: Option<S<String>>,
    pub tls_sni: Option<S<String>>,
    pub connect_timeout: Option<S<String>>,
    pub read_timeout: Option<S<String>>,
    pub write_timeout: Option<S<String>>,
    #[serde(default)]
    pub health_check: RawHealthCheck,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    pub enabled: Option<bool>,
    pub path: Option<S<String>>,
    pub host: Option<S<String>>,
    pub interval: Option<S<String>>,
    pub timeout: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHsts {
    pub enabled: Option<bool>,
    pub max_age: Option<S<i64>>,
    pub include_subdomains: Option<bool>,
    pub preload: Option<S<bool>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaders {
    pub x_content_type_options: Option<S<String>>,
    pub x_frame_options: Option<S<String>>,
    pub referrer_policy: Option<S<String>>,
    pub permissions_policy: Option<S<String>>,
    pub content_security_policy: Option<S<String>>,
    pub csp_mode: Option<S<String>>,
    pub upgrade_insecure_requests: Option<bool>,
    pub override_upstream: Option<bool>,
    #[serde(default)]
    pub remove: Vec<S<String>>,
    #[serde(default)]
    pub keep: Vec<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCookies {
    pub secure: Option<bool>,
    pub http_only: Option<bool>,
    pub same_site: Option<S<String>>,
    #[serde(default)]
    pub exceptions: BTreeMap<String, S<RawCookieException>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCookieException {
    pub secure: Option<bool>,
    pub http_only: Option<bool>,
    pub same_site: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogging {
    pub format: Option<S<String>>,
    pub output: Option<S<String>>,
    pub level: Option<S<String>>,
    pub access_log: Option<bool>,
    /// What is masked in every log line (validated by `palisade_redact::Redactor::new`).
    pub redaction: Option<S<palisade_redact::RedactSettings>>,
}
