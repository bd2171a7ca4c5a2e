//! Threat and health metrics for Prometheus, served on the admin listener at `/metrics`.
//!
//! Every label is bounded by the config or by code: site and certificate names come from the
//! config file, `worker` is a number below `server.threads`, `action`, `status_class`, `kind`,
//! `reason` and `result` are fixed sets. No label ever carries an IP, a path, a header value or
//! anything a client chose.

use std::sync::OnceLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// What Palisade did with a request (the `action` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Proxied to the shop.
    Allow,
    /// Plain HTTP answered with a 308 to https.
    Redirect,
    /// Refused before the shop: unknown Host (421), no Host or malformed (400).
    Reject,
    /// The shop failed or was too slow: neutral 502/504.
    UpstreamError,
    /// The WAF blocked it (403).
    Block,
    /// The WAF would have blocked it, but it is in detect-only mode: proxied, logged, counted.
    Detect,
    /// Over a rate limit: 429.
    Limit,
    /// The client is banned: 403.
    Ban,
    /// A deny-list, a route's IP allow-list or a missing client certificate: 403.
    Deny,
    /// Basic auth or API key missing or wrong: 401.
    Unauthorized,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Redirect => "redirect",
            Action::Reject => "reject",
            Action::UpstreamError => "upstream_error",
            Action::Block => "block",
            Action::Detect => "detect",
            Action::Limit => "limit",
            Action::Ban => "ban",
            Action::Deny => "deny",
            Action::Unauthorized => "unauthorized",
        }
    }
}

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub worker_requests: IntCounterVec,
    pub https_redirects: IntCounterVec,
    pub tls_handshakes: IntCounter,
    pub tls_handshake_failures: IntCounter,
    pub tls_unknown_sni: IntCounter,
    pub certificate_expiry: IntGaugeVec,
    pub upstream_duration: HistogramVec,
    pub upstream_errors: IntCounterVec,
    pub backends_healthy: IntGaugeVec,
    pub config_reloads: IntCounterVec,
    pub config_last_reload: IntGauge,
    pub config_generation: IntGauge,
    pub waf_matches: IntCounterVec,
    pub redactions: IntCounterVec,
    pub log_lines_lost: IntCounterVec,
    pub rate_limited: IntCounterVec,
    pub access_denied: IntCounterVec,
    pub bans_issued: IntCounterVec,
    pub bans_active: IntGauge,
    pub cluster_degraded: IntGauge,
    pub cluster_redis_errors: IntCounter,
    pub cluster_syncs: IntCounter,
}

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new();
    let requests = IntCounterVec::new(
        Opts::new(
            "palisade_requests_total",
            "Requests by site, what Palisade did, and response status class.",
        ),
        &["site", "action", "status_class"],
    )?;
    let worker_requests = IntCounterVec::new(
        Opts::new(
            "palisade_worker_requests_total",
            "Requests served by each worker thread (0 to server.threads - 1): how the kernel spread the connections over the workers.",
        ),
        &["worker"],
    )?;
    let https_redirects = IntCounterVec::new(
        Opts::new(
            "palisade_https_redirects_total",
            "Plain-HTTP requests redirected to https.",
        ),
        &["site"],
    )?;
    let tls_handshakes = IntCounter::new(
        "palisade_tls_handshakes_total",
        "TLS handshakes completed on the https listener.",
    )?;
    let tls_handshake_failures = IntCounter::new(
        "palisade_tls_handshake_failures_total",
        "TLS handshakes that failed (protocol version, no shared cipher, refused name, client abort).",
    )?;
    let tls_unknown_sni = IntCounter::new(
        "palisade_tls_unknown_sni_total",
        "Handshakes for a name no certificate lists, refused because unknown_sni = \"reject\".",
    )?;
    let certificate_expiry = IntGaugeVec::new(
        Opts::new(
            "palisade_certificate_expiry_timestamp_seconds",
            "notAfter of each loaded certificate, as Unix time.",
        ),
        &["name"],
    )?;
    let upstream_duration = HistogramVec::new(
        HistogramOpts::new(
            "palisade_upstream_duration_seconds",
            "Time from choosing a backend to its response header.",
        )
        .buckets(vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]),
        &["site"],
    )?;
    let upstream_errors = IntCounterVec::new(
        Opts::new(
            "palisade_upstream_errors_total",
            "Requests the shop could not answer: connect, timeout, no_backend, other.",
        ),
        &["site", "kind"],
    )?;
    let backends_healthy = IntGaugeVec::new(
        Opts::new(
            "palisade_upstream_backends_healthy",
            "Backends currently passing health checks.",
        ),
        &["site"],
    )?;
    let config_reloads = IntCounterVec::new(
        Opts::new(
            "palisade_config_reloads_total",
            "Config reloads by result (success, failure).",
        ),
        &["result"],
    )?;
    let config_last_reload = IntGauge::new(
        "palisade_config_last_reload_success_timestamp_seconds",
        "When the running config was loaded, as Unix time.",
    )?;
    let config_generation = IntGauge::new(
        "palisade_config_generation",
        "The generation number of the running config (1 at start, +1 per successful reload).",
    )?;
    let waf_matches = IntCounterVec::new(
        Opts::new(
            "palisade_waf_matches_total",
            "WAF rule matches by site, rule category and mode (block: counts towards blocking; detect: reported only).",
        ),
        &["site", "category", "mode"],
    )?;
    let redactions = IntCounterVec::new(
        Opts::new(
            "palisade_redactions_total",
            "Sensitive values masked in log lines, by kind (card, cvv, secret, bearer, jwt, auth_header, cookie, api_key, email, iban).",
        ),
        &["kind"],
    )?;
    for kind in palisade_redact::Kind::ALL {
        redactions.with_label_values(&[kind.as_str()]);
    }
    let log_lines_lost = IntCounterVec::new(
        Opts::new(
            "palisade_log_lines_lost_total",
            "Log lines that never reached the log file, by reason (write_error: the file refused a batch, e.g. disk full; stalled: the file had not been written for 5 s and the bounded buffer was full).",
        ),
        &["reason"],
    )?;
    for r in ["write_error", "stalled"] {
        log_lines_lost.with_label_values(&[r]);
    }
    let rate_limited = IntCounterVec::new(
        Opts::new(
            "palisade_rate_limited_total",
            "Requests over a route's rate limit, by site, route and mode (block: 429; detect: counted only).",
        ),
        &["site", "route", "mode"],
    )?;
    let access_denied = IntCounterVec::new(
        Opts::new(
            "palisade_access_denied_total",
            "Requests refused by access rules: deny_list, banned, route_allow, client_cert, basic_auth, api_key.",
        ),
        &["site", "reason"],
    )?;
    let bans_issued = IntCounterVec::new(
        Opts::new(
            "palisade_bans_total",
            "Bans issued after repeated violations, by site.",
        ),
        &["site"],
    )?;
    let bans_active = IntGauge::new(
        "palisade_bans_active",
        "Clients currently banned (all sites).",
    )?;
    let cluster_degraded = IntGauge::new(
        "palisade_cluster_degraded",
        "1 while Redis is unreachable and limits and bans are local only.",
    )?;
    let cluster_redis_errors = IntCounter::new(
        "palisade_cluster_redis_errors_total",
        "Failed exchanges with the cluster's Redis.",
    )?;
    let cluster_syncs = IntCounter::new(
        "palisade_cluster_syncs_total",
        "Completed exchanges of limit and ban state with the cluster's Redis.",
    )?;
    let build_info = IntGaugeVec::new(
        Opts::new(
            "palisade_build_info",
            "Always 1; the labels tell the version.",
        ),
        &["version"],
    )?;
    build_info
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
    registry.register(Box::new(requests.clone()))?;
    registry.register(Box::new(worker_requests.clone()))?;
    registry.register(Box::new(https_redirects.clone()))?;
    registry.register(Box::new(tls_handshakes.clone()))?;
    registry.register(Box::new(tls_handshake_failures.clone()))?;
    registry.register(Box::new(tls_unknown_sni.clone()))?;
    registry.register(Box::new(certificate_expiry.clone()))?;
    registry.register(Box::new(upstream_duration.clone()))?;
    registry.register(Box::new(upstream_errors.clone()))?;
    registry.register(Box::new(backends_healthy.clone()))?;
    registry.register(Box::new(config_reloads.clone()))?;
    registry.register(Box::new(config_last_reload.clone()))?;
    registry.register(Box::new(config_generation.clone()))?;
    registry.register(Box::new(waf_matches.clone()))?;
    registry.register(Box::new(redactions.clone()))?;
    registry.register(Box::new(log_lines_lost.clone()))?;
    registry.register(Box::new(rate_limited.clone()))?;
    registry.register(Box::new(access_denied.clone()))?;
    registry.register(Box::new(bans_issued.clone()))?;
    registry.register(Box::new(bans_active.clone()))?;
    registry.register(Box::new(cluster_degraded.clone()))?;
    registry.register(Box::new(cluster_redis_errors.clone()))?;
    registry.register(Box::new(cluster_syncs.clone()))?;
    registry.register(Box::new(build_info))?;
    // Pre-create the fixed label sets so a counter that never moved still reads 0
    // (alerts on rate() need the series to exist).
    for r in ["success", "failure"] {
        config_reloads.with_label_values(&[r]);
    }
    Ok(Metrics {
        registry,
        requests,
        worker_requests,
        https_redirects,
        tls_handshakes,
        tls_handshake_failures,
        tls_unknown_sni,
        certificate_expiry,
        upstream_duration,
        upstream_errors,
        backends_healthy,
        config_reloads,
        config_last_reload,
        config_generation,
        waf_matches,
        redactions,
        log_lines_lost,
        rate_limited,
        access_denied,
        bans_issued,
        bans_active,
        cluster_degraded,
        cluster_redis_errors,
        cluster_syncs,
    })
}

static METRICS: OnceLock<Option<Metrics>> = OnceLock::new();

/// The process-wide metrics; `None` only if registration failed (a bug, logged once).
pub fn metrics() -> Option<&'static Metrics> {
    METRICS
        .get_or_init(|| match build() {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::error!("metrics disabled: {e}");
                None
            }
        })
        .as_ref()
}

pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "none",
    }
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The text exposition format.
pub fn render() -> String {
    let Some(m) = metrics() else {
        return String::new();
    };
    // The redactor counts with its own atomics (it sits below the logging layer); bring the
    // counters up to date. One scrape at a time, so a delta is never added twice.
    static SYNC: std::sync::Mutex<()> = std::sync::Mutex::new(());
    {
        let _guard = SYNC.lock().unwrap_or_else(|p| p.into_inner());
        for (kind, total) in crate::logging::redactor().counts() {
            let c = m.redactions.with_label_values(&[kind.as_str()]);
            c.inc_by(total.saturating_sub(c.get()));
        }
    }
    let mut buf = Vec::new();
    if TextEncoder::new()
        .encode(&m.registry.gather(), &mut buf)
        .is_err()
    {
        return String::new();
    }
    String::from_utf8(buf).unwrap_or_default()
}
