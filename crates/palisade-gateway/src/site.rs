//! A config generation compiled for the request path: sites by host, their hardening policy,
//! their backends and health checks.
//!
//! A request takes one `Arc<Generation>` when it starts and uses it to the end, so a reload in
//! the middle of a request never mixes two configs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use palisade_config::{Config, HostPattern, Site, TrustedProxies};
use palisade_headers::Hardening;
use pingora::lb::health_check::{HttpHealthCheck, TcpHealthCheck};
use pingora::lb::selection::RoundRobin;
use pingora::lb::LoadBalancer;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::{parse_x509, WrappedX509};
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("site `{site}`: cannot set up upstreams: {reason}")]
    Upstream { site: String, reason: String },
    #[error(transparent)]
    Limits(#[from] crate::limits::LimitsError),
    #[error("site `{site}`: cannot read upstream CA {path}: {reason}")]
    Ca {
        site: String,
        path: String,
        reason: String,
    },
}

pub struct SiteRuntime {
    pub config: Site,
    pub hardening: Hardening,
    pub limits: crate::limits::SiteLimits,
    pub lb: Arc<LoadBalancer<RoundRobin>>,
    ca: Option<Arc<[WrappedX509]>>,
}

impl SiteRuntime {
    /// Pick a healthy backend (round robin) and describe how to reach it.
    pub fn peer(&self) -> Option<Box<HttpPeer>> {
        let chosen = self.lb.select(b"", 256)?;
        let addr = chosen.addr.as_inet().copied()?;
        let up = &self.config.upstream;
        let backend = up.backends.iter().find(|b| b.addr == addr)?;
        let sni = up.tls_sni.clone().unwrap_or_else(|| backend.host.clone());
        let mut peer = HttpPeer::new(addr, backend.tls, sni);
        let o = &mut peer.options;
        o.connection_timeout = Some(up.connect_timeout);
        o.read_timeout = Some(up.read_timeout);
        o.write_timeout = Some(up.write_timeout);
        o.idle_timeout = Some(Duration::from_secs(60));
        o.verify_cert = up.tls_verify;
        o.verify_hostname = up.tls_verify;
        o.ca = self.ca.clone();
        Some(Box::new(peer))
    }

    pub fn healthy_backends(&self) -> usize {
        self.lb
            .backends()
            .get_backend()
            .iter()
            .filter(|b| self.lb.backends().ready(b))
            .count()
    }
}

pub struct Generation {
    pub id: u64,
    pub config: Arc<Config>,
    pub sites: Vec<SiteRuntime>,
    exact: HashMap<String, usize>,
    wildcard: HashMap<String, usize>,
    pub request_id_header: HeaderName,
    /// The same name as sent (`X-Request-Id`), for Pingora's case-keeping header maps: a clone
    /// is a reference count, where a `HeaderName` is copied into a new name per insert.
    pub request_id_wire: bytes::Bytes,
    pub trusted: TrustedProxies,
    /// Hardening for responses that belong to no site (e.g. 421 for an unknown Host).
    pub baseline: Hardening,
    /// The port a redirect to https names (omitted when 443).
    pub https_port: u16,
    /// Limiters, bans and the cluster link, shared with the generations before and after.
    pub limits_state: std::sync::Arc<crate::limits::LimitsState>,
    /// The built-in rule set at its defaults, for requests whose Host no site lists: a scanner
    /// probing by IP address is reported as an attack (403) rather than only refused (421).
    pub default_waf: Option<Arc<palisade_waf::Engine>>,
    health_tasks: Vec<JoinHandle<()>>,
}

impl Drop for Generation {
    fn drop(&mut self) {
        for t in &self.health_tasks {
            t.abort();
        }
    }
}

impl Generation {
    /// Compile `config`. Must run inside the gateway's tokio runtime (health checks are spawned).
    pub fn build(
        id: u64,
        config: Arc<Config>,
        https_port: u16,
        limits_state: Arc<crate::limits::LimitsState>,
    ) -> Result<Generation, BuildError> {
        let mut sites = Vec::new();
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut health_tasks = Vec::new();
        for (i, site) in config.sites.iter().enumerate() {
            for h in &site.hosts {
                match h {
                    HostPattern::Exact(n) => exact.insert(n.clone(), i),
                    HostPattern::Wildcard(n) => wildcard.insert(n.clone(), i),
                };
            }
            let addrs: Vec<SocketAddr> = site.upstream.backends.iter().map(|b| b.addr).collect();
            let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(addrs).map_err(|e| {
                BuildError::Upstream {
                    site: site.name.clone(),
                    reason: e.to_string(),
                }
            })?;
            let ca = match &site.upstream.tls_ca {
                Some(path) => Some(load_ca(path).map_err(|reason| BuildError::Ca {
                    site: site.name.clone(),
                    path: path.display().to_string(),
                    reason,
                })?),
                None => None,
            };
            if let Some(hc) = &site.upstream.health_check {
                let tls = site.upstream.backends.iter().any(|b| b.tls);
                let check_host = hc
                    .host
                    .clone()
                    .or_else(|| {
                        site.hosts
                            .first()
                            .map(|h| h.to_string().replace("*.", "www."))
                    })
                    .unwrap_or_default();
                let sni = site
                    .upstream
                    .tls_sni
                    .clone()
                    .or_else(|| site.upstream.backends.first().map(|b| b.host.clone()))
                    .unwrap_or_default();
                match &hc.path {
                    Some(path) => {
                        let mut check = HttpHealthCheck::new(&check_host, tls);
                        if let Ok(req) =
                            pingora::http::RequestHeader::build("GET", path.as_bytes(), None)
                        {
                            let mut req = req;
                            let _ = req.insert_header("Host", &check_host);
                            let _ = req.insert_header("User-Agent", "palisade-health-check");
                            check.req = req;
                        }
                        check.peer_template.sni = sni;
                        check.peer_template.options.connection_timeout = Some(hc.timeout);
                        check.peer_template.options.read_timeout = Some(hc.timeout);
                        check.peer_template.options.verify_cert = site.upstream.tls_verify;
                        check.peer_template.options.verify_hostname = site.upstream.tls_verify;
                        check.peer_template.options.ca = ca.clone();
                        check.validator = Some(Box::new(|resp| {
                            let s = resp.status.as_u16();
                            if (200..400).contains(&s) {
                                Ok(())
                            } else {
                                pingora::Error::e_explain(
                                    pingora::ErrorType::CustomCode("unhealthy status", s),
                                    "health check",
                                )
                            }
                        }));
                        lb.set_health_check(Box::new(check));
                    }
                    None => {
                        let mut check = TcpHealthCheck::new();
                        check.peer_template.options.connection_timeout = Some(hc.timeout);
                        lb.set_health_check(check);
                    }
                }
                lb.health_check_frequency = Some(hc.interval);
            }
            let lb = Arc::new(lb);
            if let Some(hc) = &site.upstream.health_check {
                let lb = lb.clone();
                let interval = hc.interval;
                health_tasks.push(tokio::spawn(async move {
                    let mut tick = tokio::time::interval(interval);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tick.tick().await;
                        lb.backends().run_health_check(true).await;
                    }
                }));
            }
            sites.push(SiteRuntime {
                limits: crate::limits::SiteLimits::build(site, &limits_state)?,
                hardening: Hardening::new(site, https_port),
                config: site.clone(),
                lb,
                ca,
            });
        }
        let request_id_header = HeaderName::from_bytes(config.server.request_id_header.as_bytes())
            .unwrap_or_else(|_| HeaderName::from_static("x-request-id"));
        Ok(Generation {
            id,
            trusted: config.server.trusted_proxies.clone(),
            config,
            sites,
            exact,
            wildcard,
            request_id_wire: title_case(request_id_header.as_str()),
            request_id_header,
            baseline: Hardening::baseline(https_port),
            https_port,
            limits_state,
            default_waf: palisade_waf::compile(&palisade_waf::WafSettings::default())
                .ok()
                .map(Arc::new),
            health_tasks,
        })
    }

    /// The site serving `host` (lower-case, without port): exact names first, then wildcards.
    pub fn site_for(&self, host: &str) -> Option<usize> {
        if let Some(i) = self.exact.get(host) {
            return Some(*i);
        }
        let (_, parent) = host.split_once('.')?;
        self.wildcard.get(parent).copied()
    }
}

fn load_ca(path: &std::path::Path) -> Result<Arc<[WrappedX509]>, String> {
    let pem = std::fs::read(path).map_err(|e| e.to_string())?;
    let certs: Vec<WrappedX509> = rustls_pemfile::certs(&mut pem.as_slice())
        .filter_map(|c| c.ok())
        .map(|der| WrappedX509::new(der.to_vec(), parse_x509))
        .collect();
    if certs.is_empty() {
        return Err("no PEM certificate found".into());
    }
    Ok(Arc::from(certs.into_boxed_slice()))
}

/// `x-request-id` -> `X-Request-Id`: a letter at the start or after `-` or `_` in upper case.
fn title_case(name: &str) -> bytes::Bytes {
    let mut up = true;
    let titled: Vec<u8> = name
        .bytes()
        .map(|b| {
            let out = if up { b.to_ascii_uppercase() } else { b };
            up = matches!(b, b'-' | b'_');
            out
        })
        .collect();
    bytes::Bytes::from(titled)
}

#[cfg(test)]
mod tests {
    #[test]
    fn header_names_are_sent_title_cased() {
        assert_eq!(&super::title_case("x-request-id")[..], b"X-Request-Id");
        assert_eq!(&super::title_case("trace_id")[..], b"Trace_Id");
        assert_eq!(&super::title_case("x--b")[..], b"X--B");
    }
}
