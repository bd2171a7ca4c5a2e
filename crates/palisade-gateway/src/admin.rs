//! The admin listener: `/healthz` (the process answers) and `/readyz` (a config is loaded and
//! the gateway is not draining), with per-site healthy-backend counts. Loopback by default.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::site::Generation;

pub struct AdminApp {
    pub generation: Arc<ArcSwap<Generation>>,
    pub draining: Arc<AtomicBool>,
}

/// Compare without an early exit, so timing does not reveal how much of a token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl AdminApp {
    fn list_bans(&self) -> Response<Vec<u8>> {
        let gen = self.generation.load();
        let now = std::time::SystemTime::now();
        let mut bans = Vec::new();
        for (site, list) in gen.limits_state.all_bans() {
            for b in list.list_at(now) {
                bans.push(serde_json::json!({
                    "site": site,
                    "ip": b.ip.to_string(),
                    "until": b.until,
                    "reason": b.reason,
                }));
            }
        }
        reply(
            200,
            "application/json",
            format!("{}\n", serde_json::json!({ "bans": bans })),
        )
    }

    fn lift_ban(&self, ip: &str) -> Response<Vec<u8>> {
        let Ok(ip) = ip.parse::<std::net::IpAddr>() else {
            return reply(400, "text/plain", "not an IP address\n".into());
        };
        let gen = self.generation.load();
        let lifted = gen
            .limits_state
            .all_bans()
            .iter()
            .filter(|(_, b)| b.lift(ip))
            .count();
        tracing::info!(
            event = "ban_lifted",
            sites = lifted,
            "ban lifted through the admin listener"
        );
        reply(
            200,
            "application/json",
            format!("{}\n", serde_json::json!({ "lifted": lifted })),
        )
    }
}

fn reply(status: u16, content_type: &str, body: String) -> Response<Vec<u8>> {
    let body = body.into_bytes();
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .header("cache-control", "no-store")
        .header("x-content-type-options", "nosniff")
        .body(body)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        let method = session.req_header().method.clone();
        // Everything but the probes needs the admin token when one is configured.
        if path != "/healthz" && path != "/readyz" {
            let token = self.generation.load().config.server.admin_token.clone();
            if let Some(token) = token {
                let given = session
                    .req_header()
                    .headers
                    .get(http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .unwrap_or("");
                if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
                    let mut r = reply(401, "text/plain", "unauthorized\n".into());
                    if let Ok(v) = http::HeaderValue::from_str("Bearer realm=\"palisade-admin\"") {
                        r.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
                    }
                    return r;
                }
            }
        }
        if path == "/bans" && method == http::Method::GET {
            return self.list_bans();
        }
        if let Some(ip) = path.strip_prefix("/bans/") {
            if method == http::Method::DELETE {
                return self.lift_ban(ip);
            }
            return reply(405, "text/plain", "use DELETE to lift a ban\n".into());
        }
        match path.as_str() {
            "/healthz" => reply(200, "text/plain", "ok\n".into()),
            "/metrics" => {
                if let Some(m) = crate::metrics::metrics() {
                    let gen = self.generation.load();
                    let now = std::time::SystemTime::now();
                    let active: usize = gen
                        .limits_state
                        .all_bans()
                        .iter()
                        .map(|(_, b)| b.list_at(now).len())
                        .sum();
                    m.bans_active.set(active as i64);
                    if let Some(c) = &gen.limits_state.cluster {
                        let stats = c.stats();
                        m.cluster_degraded.set(i64::from(stats.degraded));
                        m.cluster_redis_errors.inc_by(
                            stats
                                .redis_errors
                                .saturating_sub(m.cluster_redis_errors.get()),
                        );
                        m.cluster_syncs
                            .inc_by(stats.syncs.saturating_sub(m.cluster_syncs.get()));
                    }
                    m.backends_healthy.reset();
                    for s in &gen.sites {
                        m.backends_healthy
                            .with_label_values(&[s.config.name.as_str()])
                            .set(s.healthy_backends() as i64);
                    }
                }
                reply(
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    crate::metrics::render(),
                )
            }
            "/readyz" => {
                let gen = self.generation.load();
                let draining = self.draining.load(Ordering::Relaxed);
                let sites: Vec<serde_json::Value> = gen
                    .sites
                    .iter()
                    .map(|s| {
                        serde_json::json!({
                            "site": s.config.name,
                            "backends": s.config.upstream.backends.len(),
                            "healthy": s.healthy_backends(),
                        })
                    })
                    .collect();
                let body = serde_json::json!({
                    "ready": !draining,
                    "generation": gen.id,
                    "sites": sites,
                });
                reply(
                    if draining { 503 } else { 200 },
                    "application/json",
                    format!("{body}\n"),
                )
            }
            _ => reply(404, "text/plain", "not found\n".into()),
        }
    }
}
