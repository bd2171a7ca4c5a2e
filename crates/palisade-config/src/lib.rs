//! Palisade's configuration: `palisade.toml -> FileConfig -> (validate) -> Config`.
//!
//! * [`raw::FileConfig`] is the file as written. Every table rejects unknown keys and keeps the
//!   position of the values that are checked later, so every problem is reported as
//!   `file:line:col: message`.
//! * [`load`] validates everything that can be known before the gateway starts (addresses, CIDRs,
//!   durations, header values, host names, unique names, readable files, certificates that parse
//!   and match their keys) and collects *all* errors instead of stopping at the first one.
//! * [`model::Config`] is what the gateway runs on; it cannot be invalid.
//!
//! Defaults are the secure choice, so a minimal file (one certificate, one site) is safe.
//! This crate has no Pingora dependency: it is tested in milliseconds and shared by `palisade
//! check`, startup and reload.

pub mod model;
pub mod raw;
pub mod tls;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
pub use model::*;
use raw::*;

/// One problem in a config file, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read config: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", render(.0))]
    Invalid(Vec<Diagnostic>),
}

fn render(diags: &[Diagnostic]) -> String {
    diags
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ConfigError::Invalid(d) => d,
            ConfigError::Read { .. } => &[],
        }
    }
}

/// A valid config and the security lints it raised (weak but legal settings).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
}

/// Read and validate a config file. Relative paths inside it are relative to its directory.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Validate config text as if it had been read from `path`.
pub fn parse(text: &str, path: &Path) -> Result<Loaded, ConfigError> {
    let mut cx = Ctx::new(text, path);
    let file: FileConfig = match toml::from_str(text) {
        Ok(f) => f,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            cx.err(&span, e.message().trim_end());
            return Err(ConfigError::Invalid(cx.errors));
        }
    };
    let config = cx.compile(file);
    if cx.errors.is_empty() {
        Ok(Loaded {
            config,
            warnings: cx.warnings,
        })
    } else {
        Err(ConfigError::Invalid(cx.errors))
    }
}

/// Parse `250ms`, `5s`, `2m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (use e.g. `250ms`, `5s`, `2m`, `1h`)"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => {
            return Err(format!(
                "`{s}` is not a duration (use e.g. `250ms`, `5s`, `2m`, `1h`)"
            ))
        }
    };
    Ok(d)
}

struct Ctx {
    file: PathBuf,
    base: PathBuf,
    line_starts: Vec<usize>,
    text: String,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl Ctx {
    fn new(text: &str, path: &Path) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ctx {
            file: path.to_path_buf(),
            base,
            line_starts,
            text: text.to_string(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn diag(&self, span: &Range<usize>, message: impl Into<String>) -> Diagnostic {
        let offset = span.start.min(self.text.len());
        let line_idx = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let line_start = self.line_starts.get(line_idx).copied().unwrap_or(0);
        let col = self
            .text
            .get(line_start..offset)
            .map(|s| s.chars().count())
            .unwrap_or(0)
            + 1;
        Diagnostic {
            file: self.file.clone(),
            line: line_idx + 1,
            col,
            message: message.into(),
        }
    }

    fn err(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let d = self.diag(span, message);
        self.errors.push(d);
    }

    fn warn(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let d = self.diag(span, format!("warning: {}", message.into()));
        self.warnings.push(d);
    }

    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn duration(&mut self, v: &Option<S<String>>, default: Duration) -> Duration {
        match v {
            None => default,
            Some(s) => match parse_duration(s.get_ref()) {
                Ok(d) => d,
                Err(e) => {
                    self.err(&s.span(), e);
                    default
                }
            },
        }
    }

    fn listen(&mut self, v: &Option<S<String>>, default: &str) -> Option<SocketAddr> {
        let (text, span) = match v {
            Some(s) => (s.get_ref().as_str(), s.span()),
            None => (default, 0..0),
        };
        if text == "off" {
            return None;
        }
        match text.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    &span,
                    format!("`{text}` is not a listen address (use `IP:PORT`, e.g. `0.0.0.0:443`, or `off`)"),
                );
                None
            }
        }
    }

    fn header_value(&mut self, v: &Option<S<String>>, default: Option<&str>) -> Option<String> {
        match v {
            None => default.map(str::to_string),
            Some(s) if s.get_ref().is_empty() || s.get_ref() == "off" => None,
            Some(s) => {
                let val = s.get_ref();
                if http_header_value_ok(val) {
                    Some(val.clone())
                } else {
                    self.err(
                        &s.span(),
                        "not a valid HTTP header value (control characters or non-ASCII)",
                    );
                    None
                }
            }
        }
    }

    fn compile(&mut self, file: FileConfig) -> Config {
        let server = self.compile_server(&file.server);
        let tls = self.compile_tls(&file.tls, &file.certificates);
        let has_client_ca = tls.client_ca.is_some();
        let mut sites = Vec::new();
        let mut names: HashMap<String, Range<usize>> = HashMap::new();
        let mut hosts: HashMap<HostPattern, String> = HashMap::new();
        for site in &file.sites {
            let span = site.span();
            let site = site.get_ref();
            let name = site.name.get_ref().clone();
            if names.insert(name.clone(), site.name.span()).is_some() {
                self.err(
                    &site.name.span(),
                    format!("site name `{name}` is used twice; names must be unique"),
                );
            }
            if let Some(compiled) = self.compile_site(site, &span, has_client_ca) {
                for (h, hs) in compiled.hosts.iter().zip(site.hosts.get_ref()) {
                    if let Some(other) = hosts.insert(h.clone(), compiled.name.clone()) {
                        self.err(
                            &hs.span(),
                            format!("host `{h}` is already served by site `{other}`"),
                        );
                    }
                }
                sites.push(compiled);
            }
        }
        if file.sites.is_empty() {
            self.err(
                &(0..0),
                "no [[sites]]: Palisade needs at least one site to protect",
            );
        }
        if server.https.is_some() && file.certificates.is_empty() {
            self.err(
                &file.server.https.as_ref().map(|s| s.span()).unwrap_or(0..0),
                "the https listener needs at least one [[certificates]] entry (or set `https = \"off\"`)",
            );
        }
        if server.https.is_none() {
            for site in &file.sites {
                if site.get_ref().https_redirect != Some(false) {
                    self.warn(
                        &site.get_ref().name.span(),
                        "https listener is off but this site redirects to https: make sure a TLS terminator in front of Palisade serves it",
                    );
                }
            }
        }
        let logging = self.compile_logging(&file.logging);
        let cluster = file.cluster.as_ref().map(|c| {
            let fallback = c.span();
            self.limits(c.get_ref().validate(), &fallback);
            c.get_ref().clone()
        });
        Config {
            source: self.file.clone(),
            server,
            tls,
            sites,
            logging,
            cluster,
        }
    }

    fn compile_server(&mut self, raw: &RawServer) -> Server {
        let http = self.listen(&raw.http, "0.0.0.0:80");
        let https = self.listen(&raw.https, "0.0.0.0:443");
        let admin = self.listen(&raw.admin, "127.0.0.1:9901");
        if let (Some(a), Some(s)) = (admin, raw.admin.as_ref()) {
            if !a.ip().is_loopback() {
                self.warn(
                    &s.span(),
                    "the admin listener is reachable from the network; keep it on loopback or firewall it",
                );
            }
        }
        let listeners = [
            ("http", http, &raw.http),
            ("https", https, &raw.https),
            ("admin", admin, &raw.admin),
        ];
        for (i, (n1, a1, _)) in listeners.iter().enumerate() {
            for (n2, a2, s2) in &listeners[i + 1..] {
                if let (Some(a1), Some(a2)) = (a1, a2) {
                    if a1 == a2 && a1.port() != 0 {
                        let span = s2.as_ref().map(|s| s.span()).unwrap_or(0..0);
                        self.err(&span, format!("`{n2}` listens on {a2}, like `{n1}`"));
                    }
                }
            }
        }
        let threads = match &raw.threads {
            None => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            Some(t) if (1..=1024).contains(t.get_ref()) => *t.get_ref() as usize,
            Some(t) => {
                self.err(&t.span(), "threads must be between 1 and 1024");
                1
            }
        };
        let mut nets = Vec::new();
        for p in &raw.trusted_proxies {
            match parse_cidr(p.get_ref()) {
                Ok(n) => {
                    if n.prefix_len() == 0 {
                        self.warn(
                            &p.span(),
                            "trusting every address as a proxy lets any client forge its IP and scheme",
                        );
                    }
                    nets.push(n)
                }
                Err(e) => self.err(&p.span(), e),
            }
        }
        let request_id_header = match &raw.request_id_header {
            None => "x-request-id".to_string(),
            Some(h) => {
                let v = h.get_ref().to_ascii_lowercase();
                if v.is_empty()
                    || !v
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    self.err(&h.span(), "not a valid header name");
                }
                v
            }
        };
        let shutdown_grace = self.duration(&raw.shutdown_grace, Duration::from_secs(10));
        let admin_token = raw.admin_token.as_ref().and_then(|t| {
            let v = t.get_ref();
            if v.len() < 16 || !v.bytes().all(|b| b.is_ascii_graphic()) {
                self.err(
                    &t.span(),
                    "admin_token must be at least 16 printable characters",
                );
                None
            } else {
                Some(v.clone())
            }
        });
        Server {
            http,
            https,
            admin,
            threads,
            trusted_proxies: TrustedProxies::new(nets),
            request_id_header,
            shutdown_grace,
            admin_token,
        }
    }

    fn compile_tls(&mut self, raw: &RawTls, certs: &[S<RawCertificate>]) -> Tls {
        let unknown_sni = match raw
            .unknown_sni
            .as_ref()
            .map(|s| (s.get_ref().as_str(), s.span()))
        {
            None | Some(("default", _)) => UnknownSni::Default,
            Some(("reject", _)) => UnknownSni::Reject,
            Some((other, span)) => {
                self.err(
                    &span,
                    format!("unknown_sni must be `default` or `reject`, not `{other}`"),
                );
                UnknownSni::Default
            }
        };
        let watch = self.duration(&raw.watch_interval, Duration::from_secs(5));
        let watch_interval = (!watch.is_zero()).then_some(watch);

        let mut certificates = Vec::new();
        let mut names: HashMap<String, ()> = HashMap::new();
        let mut defaults = 0;
        for (i, c) in certs.iter().enumerate() {
            let span = c.span();
            let c = c.get_ref();
            let cert_path = self.path(c.cert.get_ref());
            let key_path = self.path(c.key.get_ref());
            let loaded = match tls::load_cert_and_key(&cert_path, &key_path) {
                Ok(l) => l,
                Err(e) => {
                    let span = match &e {
                        tls::CertError::Read { path, .. }
                        | tls::CertError::NoKey { path }
                        | tls::CertError::BadPem { path }
                            if *path == key_path =>
                        {
                            c.key.span()
                        }
                        tls::CertError::KeyMismatch { .. } => c.key.span(),
                        _ => c.cert.span(),
                    };
                    self.err(&span, e.to_string());
                    continue;
                }
            };
            let name = c
                .name
                .as_ref()
                .map(|n| n.get_ref().clone())
                .or_else(|| loaded.names.first().cloned())
                .unwrap_or_else(|| format!("certificate-{}", i + 1));
            if names.insert(name.clone(), ()).is_some() {
                let sp = c.name.as_ref().map(|n| n.span()).unwrap_or(span.clone());
                self.err(&sp, format!("certificate name `{name}` is used twice"));
            }
            let mut hosts = Vec::new();
            match &c.hosts {
                Some(list) => {
                    for h in list {
                        match HostPattern::parse(h.get_ref()) {
                            Ok(p) => hosts.push(p),
                            Err(e) => self.err(&h.span(), e),
                        }
                    }
                }
                None => {
                    for n in &loaded.names {
                        if let Ok(p) = HostPattern::parse(n) {
                            hosts.push(p);
                        }
                    }
                }
            }
            let now = unix_now();
            if loaded.not_after < now {
                self.warn(&c.cert.span(), format!("certificate `{name}` has expired"));
            } else if loaded.not_after < now + 14 * 86_400 {
                self.warn(
                    &c.cert.span(),
                    format!("certificate `{name}` expires within 14 days"),
                );
            }
            if c.default {
                defaults += 1;
                if defaults > 1 {
                    self.err(&span, "only one certificate can be `default = true`");
                }
            }
            certificates.push(CertificateSpec {
                name,
                cert: cert_path,
                key: key_path,
                hosts,
                default: c.default,
            });
        }
        // Without an explicit default, the first certificate is the default.
        if defaults == 0 {
            if let Some(first) = certificates.first_mut() {
                first.default = true;
            }
        }
        let client_ca = raw.client_ca.as_ref().and_then(|p| {
            let path = self.path(p.get_ref());
            match std::fs::read(&path) {
                Ok(pem) if rustls_pemfile::certs(&mut pem.as_slice()).any(|c| c.is_ok()) => {
                    Some(path)
                }
                Ok(_) => {
                    self.err(
                        &p.span(),
                        format!("{}: no PEM certificate found", path.display()),
                    );
                    None
                }
                Err(e) => {
                    self.err(&p.span(), format!("cannot read {}: {e}", path.display()));
                    None
                }
            }
        });
        Tls {
            unknown_sni,
            watch_interval,
            certificates,
            client_ca,
        }
    }

    /// Report a limits-crate validation error at its own span (or `fallback` when it has none).
    fn limits(
        &mut self,
        r: Result<(), palisade_limits::LimitsConfigError>,
        fallback: &Range<usize>,
    ) {
        if let Err(e) = r {
            let at = if e.span.is_empty() {
                fallback.clone()
            } else {
                e.span.clone()
            };
            self.err(&at, e.message);
        }
    }

    fn compile_routes(&mut self, site: &RawSite, has_client_ca: bool) -> Vec<Route> {
        let mut routes = Vec::new();
        let mut names: HashMap<String, ()> = HashMap::new();
        for r in &site.routes {
            let span = r.span();
            let r = r.get_ref();
            let name = r.name.get_ref().clone();
            if names.insert(name.clone(), ()).is_some() {
                self.err(
                    &r.name.span(),
                    format!("route name `{name}` is used twice in this site"),
                );
            }
            if !r.path.get_ref().starts_with('/') {
                self.err(&r.path.span(), "route path must start with `/`");
            }
            let mut methods = Vec::new();
            for m in &r.methods {
                let v = m.get_ref().to_ascii_uppercase();
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_uppercase()) {
                    self.err(
                        &m.span(),
                        format!("`{}` is not an HTTP method", m.get_ref()),
                    );
                }
                methods.push(v);
            }
            if let Some(rl) = &r.rate_limit {
                self.limits(rl.validate(), &span);
            }
            if let Some(b) = &r.basic_auth {
                let fallback = b.span();
                self.limits(b.get_ref().validate(), &fallback);
            }
            if let Some(k) = &r.api_keys {
                let fallback = k.span();
                self.limits(k.get_ref().validate(), &fallback);
            }
            let mut allow = Vec::new();
            for a in &r.allow {
                match parse_cidr(a.get_ref()) {
                    Ok(n) => allow.push(n),
                    Err(e) => self.err(&a.span(), e),
                }
            }
            let client_cert = r.client_cert.as_ref().is_some_and(|c| *c.get_ref());
            if let (true, false, Some(c)) = (client_cert, has_client_ca, &r.client_cert) {
                self.err(&c.span(), "client_cert = true needs `[tls] client_ca` (the CA client certificates are verified against)");
            }
            routes.push(Route {
                name,
                path: normalize_path(r.path.get_ref()),
                methods,
                rate_limit: r.rate_limit.clone(),
                basic_auth: r.basic_auth.as_ref().map(|b| b.get_ref().clone()),
                allow,
                api_keys: r.api_keys.as_ref().map(|k| k.get_ref().clone()),
                client_cert,
            });
        }
        routes
    }

    fn compile_site(
        &mut self,
        site: &RawSite,
        span: &Range<usize>,
        has_client_ca: bool,
    ) -> Option<Site> {
        let name = site.name.get_ref().clone();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            self.err(
                &site.name.span(),
                "site name must be non-empty and use only letters, digits, `-`, `_` and `.`",
            );
        }
        let mut hosts = Vec::new();
        for h in site.hosts.get_ref() {
            match HostPattern::parse(h.get_ref()) {
                Ok(p) => hosts.push(p),
                Err(e) => self.err(&h.span(), e),
            }
        }
        if site.hosts.get_ref().is_empty() {
            self.err(&site.hosts.span(), format!("site `{name}` lists no hosts"));
        }

        let u = &site.upstream;
        let mut backends = Vec::new();
        for b in site.upstreams.get_ref() {
            match parse_backend(b.get_ref()) {
                Ok(be) => backends.push(be),
                Err(e) => self.err(&b.span(), e),
            }
        }
        if site.upstreams.get_ref().is_empty() {
            self.err(
                &site.upstreams.span(),
                format!("site `{name}` lists no upstreams"),
            );
        }
        if backends.iter().any(|b| b.tls) && backends.iter().any(|b| !b.tls) {
            self.err(
                &site.upstreams.span(),
                format!(
                    "site `{name}` mixes http:// and https:// upstreams; use one scheme per site"
                ),
            );
        }
        let tls_verify = u.tls_verify.unwrap_or(true);
        if !tls_verify && backends.iter().any(|b| b.tls) {
            self.warn(
                span,
                format!(
                    "site `{name}`: upstream certificates are not verified (tls_verify = false)"
                ),
            );
        }
        let tls_ca = u.tls_ca.as_ref().and_then(|p| {
            let path = self.path(p.get_ref());
            match std::fs::read(&path) {
                Ok(pem) => {
                    let n = rustls_pemfile::certs(&mut pem.as_slice())
                        .filter(|c| c.is_ok())
                        .count();
                    if n == 0 {
                        self.err(
                            &p.span(),
                            format!("{}: no PEM certificate found", path.display()),
                        );
                    }
                    Some(path)
                }
                Err(e) => {
                    self.err(&p.span(), format!("cannot read {}: {e}", path.display()));
                    None
                }
            }
        });
        let hc = &u.health_check;
        let health_check = if hc.enabled.unwrap_or(true) {
            let path = hc.path.as_ref().map(|p| {
                let v = p.get_ref().clone();
                if !v.starts_with('/') || !v.bytes().all(|b| b.is_ascii_graphic()) {
                    self.err(
                        &p.span(),
                        "health check path must start with `/` and contain no spaces",
                    );
                }
                v
            });
            Some(HealthCheck {
                path,
                host: hc.host.as_ref().map(|h| h.get_ref().clone()),
                interval: self.duration(&hc.interval, Duration::from_secs(5)),
                timeout: self.duration(&hc.timeout, Duration::from_secs(2)),
            })
        } else {
            None
        };
        let upstream = Upstream {
            backends,
            tls_verify,
            tls_ca,
            tls_sni: u.tls_sni.as_ref().map(|s| s.get_ref().clone()),
            connect_timeout: self.duration(&u.connect_timeout, Duration::from_secs(3)),
            read_timeout: self.duration(&u.read_timeout, Duration::from_secs(30)),
            write_timeout: self.duration(&u.write_timeout, Duration::from_secs(30)),
            health_check,
        };

        let h = &site.hsts;
        let hsts_default = Hsts::default();
        let max_age = match &h.max_age {
            None => hsts_default.max_age,
            Some(m) if *m.get_ref() >= 0 => *m.get_ref() as u64,
            Some(m) => {
                self.err(&m.span(), "max_age cannot be negative");
                0
            }
        };
        let include_subdomains = h
            .include_subdomains
            .unwrap_or(hsts_default.include_subdomains);
        let preload = h
            .preload
            .as_ref()
            .map(|p| *p.get_ref())
            .unwrap_or(hsts_default.preload);
        if let Some(p) = &h.preload {
            if *p.get_ref() && (!include_subdomains || max_age < 31_536_000) {
                self.err(
                    &p.span(),
                    "HSTS preload requires include_subdomains = true and max_age >= 31536000",
                );
            }
        }
        let hsts = Hsts {
            enabled: h.enabled.unwrap_or(hsts_default.enabled),
            max_age,
            include_subdomains,
            preload,
        };
        if !hsts.enabled {
            self.warn(span, format!("site `{name}`: HSTS is disabled"));
        }

        let headers = self.compile_headers(&site.headers);
        let cookies = self.compile_cookies(&site.cookies);
        let waf = if site.waf.enabled == Some(false) {
            self.warn(span, format!("site `{name}`: the WAF is disabled"));
            None
        } else {
            match palisade_waf::compile(&site.waf) {
                Ok(engine) => Some(WafEngine(std::sync::Arc::new(engine))),
                Err(errors) => {
                    for e in errors {
                        let at = if e.span.is_empty() {
                            site.name.span()
                        } else {
                            e.span.clone()
                        };
                        self.err(&at, format!("waf: {}", e.message));
                    }
                    None
                }
            }
        };
        let access = site.access.as_ref().map(|a| {
            let fallback = a.span();
            self.limits(a.get_ref().validate(), &fallback);
            a.get_ref().clone()
        });
        let bans = site.bans.as_ref().map(|b| {
            let fallback = b.span();
            self.limits(b.get_ref().validate(), &fallback);
            b.get_ref().clone()
        });
        let routes = self.compile_routes(site, has_client_ca);
        Some(Site {
            name,
            hosts,
            https_redirect: site.https_redirect.unwrap_or(true),
            upstream,
            hsts,
            headers,
            cookies,
            waf,
            access,
            bans,
            routes,
        })
    }

    fn compile_headers(&mut self, h: &RawHeaders) -> HeaderPolicy {
        let csp_mode = match h
            .csp_mode
            .as_ref()
            .map(|s| (s.get_ref().as_str(), s.span()))
        {
            None | Some(("enforce", _)) => CspMode::Enforce,
            Some(("report-only", _)) => CspMode::ReportOnly,
            Some((other, span)) => {
                self.err(
                    &span,
                    format!("csp_mode must be `enforce` or `report-only`, not `{other}`"),
                );
                CspMode::Enforce
            }
        };
        let d = HeaderPolicy::default();
        let mut remove = d.remove.clone();
        for r in &h.remove {
            let v = r.get_ref().to_ascii_lowercase();
            if !valid_header_name(&v) {
                self.err(&r.span(), "not a valid header name");
            } else if !remove.contains(&v) {
                remove.push(v);
            }
        }
        for k in &h.keep {
            let v = k.get_ref().to_ascii_lowercase();
            if !valid_header_name(&v) {
                self.err(&k.span(), "not a valid header name");
            }
            remove.retain(|r| *r != v);
        }
        HeaderPolicy {
            x_content_type_options: self.header_value(
                &h.x_content_type_options,
                d.x_content_type_options.as_deref(),
            ),
            x_frame_options: self.header_value(&h.x_frame_options, d.x_frame_options.as_deref()),
            referrer_policy: self.header_value(&h.referrer_policy, d.referrer_policy.as_deref()),
            permissions_policy: self
                .header_value(&h.permissions_policy, d.permissions_policy.as_deref()),
            content_security_policy: self.header_value(&h.content_security_policy, None),
            csp_mode,
            upgrade_insecure_requests: h
                .upgrade_insecure_requests
                .unwrap_or(d.upgrade_insecure_requests),
            override_upstream: h.override_upstream.unwrap_or(d.override_upstream),
            remove,
        }
    }

    fn same_site(&mut self, v: &Option<S<String>>, default: Option<SameSite>) -> Option<SameSite> {
        match v
            .as_ref()
            .map(|s| (s.get_ref().to_ascii_lowercase(), s.span()))
        {
            None => default,
            Some((s, _)) if s == "strict" => Some(SameSite::Strict),
            Some((s, _)) if s == "lax" => Some(SameSite::Lax),
            Some((s, _)) if s == "none" => Some(SameSite::None),
            Some((s, _)) if s == "off" => None,
            Some((s, span)) => {
                self.err(
                    &span,
                    format!("same_site must be `strict`, `lax`, `none` or `off`, not `{s}`"),
                );
                default
            }
        }
    }

    fn compile_cookies(&mut self, c: &RawCookies) -> CookiePolicy {
        let d = CookieFlags::default();
        let default = CookieFlags {
            secure: c.secure.unwrap_or(d.secure),
            http_only: c.http_only.unwrap_or(d.http_only),
            same_site: self.same_site(&c.same_site, d.same_site),
        };
        let mut exceptions = Vec::new();
        for (name, ex) in &c.exceptions {
            let span = ex.span();
            let ex = ex.get_ref();
            let flags = CookieFlags {
                secure: ex.secure.unwrap_or(default.secure),
                http_only: ex.http_only.unwrap_or(default.http_only),
                same_site: self.same_site(&ex.same_site, default.same_site),
            };
            if flags.same_site == Some(SameSite::None) && !flags.secure {
                self.err(&span, format!("cookie `{name}`: SameSite=None requires secure = true (browsers drop it otherwise)"));
            }
            exceptions.push((name.clone(), flags));
        }
        if default.same_site == Some(SameSite::None) && !default.secure {
            let span = c.same_site.as_ref().map(|s| s.span()).unwrap_or(0..0);
            self.err(
                &span,
                "SameSite=None requires secure = true (browsers drop it otherwise)",
            );
        }
        CookiePolicy {
            default,
            exceptions,
        }
    }

    fn compile_logging(&mut self, l: &RawLogging) -> Logging {
        let format = match l.format.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
            None | Some(("text", _)) => LogFormat::Text,
            Some(("json", _)) => LogFormat::Json,
            Some((other, span)) => {
                self.err(
                    &span,
                    format!("format must be `text` or `json`, not `{other}`"),
                );
                LogFormat::Text
            }
        };
        let output = match l.output.as_ref().map(|s| s.get_ref().as_str()) {
            None | Some("stderr") => LogOutput::Stderr,
            Some("stdout") => LogOutput::Stdout,
            Some(p) => LogOutput::File(self.path(p)),
        };
        let level = l
            .level
            .as_ref()
            .map(|s| s.get_ref().clone())
            .unwrap_or_else(|| "info".to_string());
        let redaction = match &l.redaction {
            None => palisade_redact::RedactSettings::default(),
            Some(r) => {
                if let Err(e) = palisade_redact::Redactor::new(r.get_ref()) {
                    self.err(&r.span(), format!("redaction: {e}"));
                }
                r.get_ref().clone()
            }
        };
        Logging {
            format,
            output,
            level,
            access_log: l.access_log.unwrap_or(true),
            redaction,
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn valid_header_name(v: &str) -> bool {
    !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn http_header_value_ok(v: &str) -> bool {
    v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a /32 or /128).
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    if let Ok(n) = s.parse::<IpNet>() {
        return Ok(n.trunc());
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("`{s}` is not an IP address or CIDR (e.g. `10.0.0.0/8`)"))
}

/// `http://10.0.0.5:8080`, `https://backend.internal:8443`, or `10.0.0.5:8080` (plain http).
pub fn parse_backend(s: &str) -> Result<Backend, String> {
    let (tls, rest) = if let Some(r) = s.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = s.strip_prefix("http://") {
        (false, r)
    } else if s.contains("://") {
        return Err(format!(
            "upstream `{s}`: only http:// and https:// are supported"
        ));
    } else {
        (false, s)
    };
    let rest = rest.trim_end_matches('/');
    if rest.contains('/') {
        return Err(format!(
            "upstream `{s}`: give scheme, host and port only (no path)"
        ));
    }
    let with_port = if has_port(rest) {
        rest.to_string()
    } else {
        format!("{rest}:{}", if tls { 443 } else { 80 })
    };
    let host = match with_port.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']').to_string(),
        None => with_port.clone(),
    };
    let addr = match with_port.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => with_port
            .to_socket_addrs()
            .map_err(|e| format!("upstream `{s}`: cannot resolve: {e}"))?
            .next()
            .ok_or_else(|| format!("upstream `{s}`: name resolves to no address"))?,
    };
    Ok(Backend { addr, tls, host })
}

fn has_port(hostport: &str) -> bool {
    if let Some(rest) = hostport.strip_prefix('[') {
        return rest.contains("]:");
    }
    hostport.matches(':').count() == 1
}

#[cfg(test)]
mod tests;
