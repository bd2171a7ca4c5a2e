//! Access rules, rate limits and bans in the request path, and the state that outlives reloads.
//!
//! Order (the request path of the product): client IP (trusted proxies) → site → route →
//! operator allow/deny lists → ban list → route access (IP allow-list, client certificate,
//! basic auth, API key) → rate limit → WAF. An allow-listed client skips bans and limits,
//! never the WAF.
//!
//! Limiters and ban lists live in [`LimitsState`], outside any config generation: a reload that
//! keeps a route's limit unchanged keeps its counters (`Limiter::is_configured_as`), and a
//! site's bans survive every reload. When `[cluster]` is configured, every limiter and ban list
//! is attached to one Redis-backed [`Cluster`] (see `palisade-limits` for the consistency it
//! offers; decisions stay local unless `mode = "exact"`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use palisade_config::{Config, Route, Site};
use palisade_limits::{
    AccessList, ApiKeys, Bans, BasicAuth, Cluster, KeyPart, KeySource, Limiter, LimitsConfigError,
};
use pingora::http::RequestHeader;

#[derive(Debug, thiserror::Error)]
#[error("site `{site}`: {message}")]
pub struct LimitsError {
    pub site: String,
    pub message: String,
}

fn err(site: &str, e: LimitsConfigError) -> LimitsError {
    LimitsError {
        site: site.to_string(),
        message: e.message,
    }
}

/// Limiters, ban lists and the cluster link: created once, shared by every generation.
pub struct LimitsState {
    limiters: Mutex<HashMap<String, Limiter>>,
    bans: Mutex<HashMap<String, Bans>>,
    pub cluster: Option<Cluster>,
}

impl LimitsState {
    /// Must run inside the tokio runtime when `[cluster]` is set (its sync loop is spawned).
    pub fn new(config: &Config) -> Result<Arc<LimitsState>, LimitsError> {
        let cluster = match &config.cluster {
            Some(c) => {
                let cluster = Cluster::new(c).map_err(|e| err("cluster", e))?;
                tokio::spawn(cluster.clone().run());
                Some(cluster)
            }
            None => None,
        };
        let state = Arc::new(LimitsState {
            limiters: Mutex::new(HashMap::new()),
            bans: Mutex::new(HashMap::new()),
            cluster,
        });
        let weak = Arc::downgrade(&state);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(state) = weak.upgrade() else { break };
                state.maintain();
            }
        });
        Ok(state)
    }

    /// Prune idle keys and expired bans (the crate's own pruning is only a safety net).
    fn maintain(&self) {
        let limiters: Vec<Limiter> = lock(&self.limiters).values().cloned().collect();
        for l in limiters {
            l.retain_recent();
        }
        let now = SystemTime::now();
        let bans: Vec<Bans> = lock(&self.bans).values().cloned().collect();
        for b in bans {
            b.expire(now);
        }
    }

    /// The limiter for `id`, kept from the previous generation when its settings are unchanged.
    fn limiter(
        &self,
        id: &str,
        settings: &palisade_limits::RateLimitSettings,
    ) -> Result<Limiter, LimitsConfigError> {
        let mut map = lock(&self.limiters);
        if let Some(existing) = map.get(id) {
            if existing.is_configured_as(id, settings) {
                return Ok(existing.clone());
            }
        }
        let limiter = Limiter::new(id, settings)?;
        if let Some(c) = &self.cluster {
            c.attach_limiter(&limiter);
        }
        map.insert(id.to_string(), limiter.clone());
        Ok(limiter)
    }

    /// A site's ban list. It survives reloads; changed escalation settings take effect at the
    /// next restart (so that no ban is ever dropped by a reload).
    fn bans(
        &self,
        site: &str,
        settings: &palisade_limits::EscalationSettings,
    ) -> Result<Bans, LimitsConfigError> {
        let mut map = lock(&self.bans);
        if let Some(existing) = map.get(site) {
            return Ok(existing.clone());
        }
        let bans = Bans::new(settings)?;
        if let Some(c) = &self.cluster {
            c.attach_bans(&bans);
        }
        map.insert(site.to_string(), bans.clone());
        Ok(bans)
    }

    /// Every site's ban list, for the admin listener.
    pub fn all_bans(&self) -> Vec<(String, Bans)> {
        let mut v: Vec<(String, Bans)> = lock(&self.bans)
            .iter()
            .map(|(k, b)| (k.clone(), b.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub struct RouteRuntime {
    pub config: Route,
    pub limiter: Option<Limiter>,
    pub basic_auth: Option<BasicAuth>,
    pub api_keys: Option<ApiKeys>,
}

impl RouteRuntime {
    /// Does this route's limit key read the body (`form:` or `json:` parts)?
    pub fn key_needs_body(&self) -> bool {
        self.limiter.as_ref().is_some_and(|l| {
            l.key_spec()
                .parts()
                .iter()
                .any(|p| matches!(p, KeyPart::Form(_) | KeyPart::Json(_)))
        })
    }
}

/// One site's compiled access rules, limits and bans.
pub struct SiteLimits {
    pub access: AccessList,
    pub bans: Option<Bans>,
    pub routes: Vec<RouteRuntime>,
}

impl SiteLimits {
    pub fn build(site: &Site, state: &LimitsState) -> Result<SiteLimits, LimitsError> {
        let name = site.name.as_str();
        let access =
            AccessList::new(&site.access.clone().unwrap_or_default()).map_err(|e| err(name, e))?;
        let bans = site
            .bans
            .as_ref()
            .map(|b| state.bans(name, b))
            .transpose()
            .map_err(|e| err(name, e))?;
        let mut routes = Vec::new();
        for r in &site.routes {
            let id = format!("{name}/{}", r.name);
            let limiter = r
                .rate_limit
                .as_ref()
                .map(|s| state.limiter(&id, s))
                .transpose()
                .map_err(|e| err(name, e))?;
            let basic_auth = r
                .basic_auth
                .as_ref()
                .map(BasicAuth::new)
                .transpose()
                .map_err(|e| err(name, e))?;
            let api_keys = r
                .api_keys
                .as_ref()
                .map(|k| ApiKeys::new(&format!("{id}/api-keys"), k))
                .transpose()
                .map_err(|e| err(name, e))?;
            routes.push(RouteRuntime {
                config: r.clone(),
                limiter,
                basic_auth,
                api_keys,
            });
        }
        Ok(SiteLimits {
            access,
            bans,
            routes,
        })
    }

    /// The first route (in config order) covering this request.
    pub fn route_for(&self, method: &str, normalized_path: &str) -> Option<usize> {
        self.routes
            .iter()
            .position(|r| r.config.matches(method, normalized_path))
    }
}

/// The request as the limiter's key extraction sees it.
pub struct View<'a> {
    pub ip: IpAddr,
    pub req: &'a RequestHeader,
    pub body: Option<&'a [u8]>,
}

impl KeySource for View<'_> {
    fn client_ip(&self) -> IpAddr {
        self.ip
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.req.headers.get(name).map(|v| v.as_bytes())
    }
    fn body(&self) -> Option<&[u8]> {
        self.body
    }
}
