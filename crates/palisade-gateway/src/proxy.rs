//! The request path, as Pingora phases.
//!
//! | phase | what Palisade does |
//! |---|---|
//! | `request_filter` | request id, client IP (trusted proxies), site by Host, plain listener: 308 to https (ACME excepted) or TLS-offloaded scheme |
//! | `upstream_peer` | round-robin over the site's healthy backends, timeouts and TLS verification |
//! | `upstream_request_filter` | `X-Forwarded-For/-Proto/-Host`, `X-Real-IP`, request id; client copies dropped unless from a trusted proxy |
//! | `response_filter` | fingerprints out, HSTS and security headers in, cookie flags, https `Location`, request id |
//! | `fail_to_proxy` | neutral 502/504 page (HTML or JSON by `Accept`) with the request id, never internals |
//! | `logging` | one `palisade::access` line per request (schema in `docs/logging.md`; every value redacted by its formatter), request counters, statuses counted as violations |

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use palisade_config::canonical_ip;
use palisade_headers::{error_page, strip_port, Hardening, HeaderStore};
use palisade_redact::ip_text;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::ErrorType;

use crate::metrics::{metrics, status_class, Action};
use crate::site::Generation;
use crate::waf::{self, BodyPlan, Hold};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
const ACME_PREFIX: &str = "/.well-known/acme-challenge/";

/// Which listener a proxy instance serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Plain,
    Tls,
}

/// One per listener and worker thread: a worker's proxies share its `InFlight` and its request
/// counter; every proxy shares the generation.
pub struct EdgeProxy {
    pub listener: Listener,
    pub generation: Arc<ArcSwap<Generation>>,
    pub inflight: Arc<InFlight>,
    /// `palisade_worker_requests_total` for this proxy's worker.
    pub worker_requests: Option<prometheus::IntCounter>,
}

/// Requests between `new_ctx` and the end of `logging`, so shutdown can wait for them (one per
/// worker thread, so that requests on different threads never write the same counter).
#[derive(Default)]
pub struct InFlight {
    count: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

impl InFlight {
    fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InFlightGuard(self.clone())
    }

    /// Resolves once no request is in flight.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self
            .0
            .count
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            self.0.idle.notify_waiters();
        }
    }
}

/// Per-request state.
pub struct Ctx {
    gen: Option<Arc<Generation>>,
    site: Option<usize>,
    request_id: String,
    started: Instant,
    /// The scheme the client used (over TLS here, or through a trusted TLS-terminating proxy).
    https: bool,
    peer_ip: Option<IpAddr>,
    peer_trusted: bool,
    client_ip: Option<IpAddr>,
    host: String,
    action: Action,
    upstream_started: Option<Instant>,
    /// A body held back for inspection (large or chunked bodies).
    hold: Option<Hold>,
    /// The WAF's rule ids and score, for the access line.
    waf_rules: String,
    waf_score: u32,
    /// Time to the shop's response header, in whole microseconds.
    upstream_us: Option<u64>,
    /// The matched route of the site, if any.
    route: Option<usize>,
    /// On the site's operator allow-list: bans and limits do not apply.
    allow_listed: bool,
    /// A small request body read before the shop is contacted (limits and WAF share it).
    body: Option<Bytes>,
    _inflight: InFlightGuard,
}

impl Ctx {
    fn site(&self) -> Option<&crate::site::SiteRuntime> {
        self.gen.as_ref()?.sites.get(self.site?)
    }
}

/// Implements [`HeaderStore`] for Pingora's response header, which keeps a case map of its
/// own and must be edited through its methods.
struct PingoraHeaders<'a>(&'a mut ResponseHeader);

impl HeaderStore for PingoraHeaders<'_> {
    fn get_all_values(&self, name: &HeaderName) -> Vec<HeaderValue> {
        self.0.headers.get_all(name).iter().cloned().collect()
    }
    fn contains(&self, name: &HeaderName) -> bool {
        self.0.headers.contains_key(name)
    }
    fn set(&mut self, name: HeaderName, value: HeaderValue) {
        let _ = self.0.insert_header(name, value);
    }
    fn append(&mut self, name: HeaderName, value: HeaderValue) {
        let _ = self.0.append_header(name, value);
    }
    fn remove(&mut self, name: &HeaderName) {
        let _ = self.0.remove_header(name);
    }
    fn for_each_name(&self, f: &mut dyn FnMut(&HeaderName)) {
        self.0.headers.keys().for_each(f);
    }
    fn set_titled(&mut self, _name: &HeaderName, titled: &'static str, value: HeaderValue) {
        // A `&'static str` name is kept as it is; a `HeaderName` would be copied into a
        // title-cased (or, for most security headers, lower-case) name per insert.
        let _ = self.0.insert_header(titled, value);
    }
}

/// `s` for the access line: as it is when short enough (the access formatter or the log writer
/// redacts it), else redacted first and then cut at `max` bytes, marked with `…`.
fn capped<'a>(red: &palisade_redact::Redactor, s: &'a str, max: usize) -> Cow<'a, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let red = red.redact(s);
    let mut end = max.min(red.len());
    while !red.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &red[..end]))
}

/// 32 lower-case hex digits of a random 128-bit number (written without the `fmt` machinery:
/// one per request).
pub fn new_request_id() -> String {
    hex128(rand::random::<u128>())
}

fn hex128(n: u128) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    (0..32)
        .rev()
        .map(|i| char::from(HEX[((n >> (i * 4)) & 0xf) as usize]))
        .collect()
}

/// A request id from a trusted proxy is kept if it looks like one.
fn valid_request_id(v: &str) -> bool {
    (1..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The client behind a chain of trusted proxies: the rightmost address in `X-Forwarded-For`
/// that is not itself a trusted proxy.
fn client_from_xff(xff: &str, gen: &Generation) -> Option<IpAddr> {
    let mut last = None;
    for part in xff.rsplit(',') {
        let ip: IpAddr = part.trim().parse().ok()?;
        let ip = canonical_ip(ip);
        last = Some(ip);
        if !gen.trusted.contains(ip) {
            return Some(ip);
        }
    }
    last
}

fn header_str<'a>(session: &'a Session, name: &HeaderName) -> Option<&'a str> {
    session
        .req_header()
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
}

impl EdgeProxy {
    /// Write a response Palisade generates itself (redirect, 421, error page).
    async fn respond(
        &self,
        session: &mut Session,
        ctx: &Ctx,
        status: u16,
        extra: &[(HeaderName, String)],
        body: Option<(&'static str, String)>,
    ) -> Result<()> {
        let len = body.as_ref().map(|(_, b)| b.len()).unwrap_or(0);
        let mut resp = ResponseHeader::build(status, Some(6))?;
        for (n, v) in extra {
            resp.insert_header(n.clone(), v.as_str())?;
        }
        if let Some((ct, _)) = &body {
            resp.insert_header(header::CONTENT_TYPE, *ct)?;
            resp.insert_header(header::CACHE_CONTROL, "no-store")?;
        }
        resp.insert_header(header::CONTENT_LENGTH, len.to_string())?;
        if let Some(gen) = &ctx.gen {
            resp.insert_header(gen.request_id_wire.clone(), ctx.request_id.as_str())?;
            let hardening: &Hardening = match ctx.site() {
                Some(s) => &s.hardening,
                None => &gen.baseline,
            };
            hardening.apply_own(&mut PingoraHeaders(&mut resp), ctx.https);
        }
        let head_only = session.req_header().method == http::Method::HEAD || body.is_none();
        session
            .write_response_header(Box::new(resp), head_only)
            .await?;
        if !head_only {
            if let Some((_, b)) = body {
                session
                    .write_response_body(Some(Bytes::from(b)), true)
                    .await?;
            }
        }
        Ok(())
    }

    /// Run the site's WAF on the request; `Ok(true)` when a response was written (403/413).
    async fn waf_request(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let Some(engine) = ctx
            .site()
            .and_then(|s| s.config.waf.as_ref())
            .map(|w| w.0.clone())
        else {
            return Ok(false);
        };
        let verdict = match waf::plan_body(session, &engine) {
            BodyPlan::TooLarge => {
                ctx.action = Action::Reject;
                self.respond_page(session, ctx, 413).await?;
                return Ok(true);
            }
            BodyPlan::None => waf::inspect(&engine, session, None, false),
            BodyPlan::ReadNow => {
                let body = match ctx.body.clone() {
                    Some(b) => b,
                    None => waf::read_small_body(session).await?,
                };
                waf::inspect(&engine, session, Some(&body), false)
            }
            BodyPlan::Hold(limit) => {
                // Headers alone may already be enough to block; otherwise the body phase
                // inspects everything again (and reports it once).
                let verdict = waf::inspect(&engine, session, None, false);
                if verdict.action != palisade_waf::Action::Block {
                    ctx.hold = Some(Hold {
                        buf: bytes::BytesMut::new(),
                        limit,
                    });
                    return Ok(false);
                }
                verdict
            }
        };
        if self.enforce(ctx, &verdict) {
            self.respond_page(session, ctx, 403).await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Record a verdict; true when the request must be blocked.
    fn enforce(&self, ctx: &mut Ctx, verdict: &palisade_waf::Verdict) -> bool {
        let site = ctx.site().map(|s| s.config.name.as_str()).unwrap_or("-");
        let block = waf::record(verdict, site, &ctx.request_id);
        if block {
            self.violation(ctx, "waf_block");
        }
        if !verdict.matches.is_empty() {
            ctx.waf_score = verdict.score;
            ctx.waf_rules = verdict
                .matches
                .iter()
                .map(|m| m.rule_id.as_str())
                .collect::<Vec<_>>()
                .join(",");
        }
        if block {
            ctx.action = Action::Block;
        } else if verdict.action == palisade_waf::Action::Detect {
            ctx.action = Action::Detect;
        }
        block
    }

    async fn respond_page(&self, session: &mut Session, ctx: &Ctx, status: u16) -> Result<()> {
        self.respond_page_with(session, ctx, status, &[]).await
    }

    async fn respond_page_with(
        &self,
        session: &mut Session,
        ctx: &Ctx,
        status: u16,
        extra: &[(HeaderName, String)],
    ) -> Result<()> {
        let json = error_page::wants_json(header_str(session, &header::ACCEPT));
        let page = error_page::render(status, &ctx.request_id, json);
        self.respond(session, ctx, status, extra, Some(page)).await
    }

    /// Count a violation towards the client's ban (429s, WAF blocks, configured statuses).
    fn violation(&self, ctx: &Ctx, why: &'static str) {
        if ctx.allow_listed {
            return;
        }
        let (Some(gen), Some(i), Some(ip)) = (ctx.gen.as_ref(), ctx.site, ctx.client_ip) else {
            return;
        };
        let Some(site) = gen.sites.get(i) else { return };
        let Some(bans) = &site.limits.bans else {
            return;
        };
        if let Some(ban) = bans.record_violation(ip, std::time::SystemTime::now()) {
            if let Some(m) = metrics() {
                m.bans_issued
                    .with_label_values(&[site.config.name.as_str()])
                    .inc();
            }
            tracing::warn!(
                target: "palisade::security",
                event = "ban",
                request_id = %ctx.request_id,
                site = %site.config.name,
                client_ip = %crate::logging::redactor().client_ip(ip),
                until = ban.until,
                reason = %ban.reason,
                trigger = why,
            );
        }
    }

    /// Refuse a request with `status` for an access rule, counting it under `reason`.
    async fn refuse(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        action: Action,
        reason: &'static str,
        status: u16,
        extra: &[(HeaderName, String)],
    ) -> Result<bool> {
        ctx.action = action;
        if let (Some(m), Some(site)) = (metrics(), ctx.site()) {
            m.access_denied
                .with_label_values(&[site.config.name.as_str(), reason])
                .inc();
        }
        self.respond_page_with(session, ctx, status, extra).await?;
        Ok(true)
    }

    /// Allow/deny lists, bans, route access rules and rate limits; `Ok(true)` when answered.
    async fn access_phase(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        use palisade_limits::{admission, Admission, Decision};
        let (Some(gen), Some(site_idx)) = (ctx.gen.clone(), ctx.site) else {
            return Ok(false);
        };
        let Some(site) = gen.sites.get(site_idx) else {
            return Ok(false);
        };
        let ip = ctx
            .client_ip
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let now = std::time::SystemTime::now();
        match admission(&site.limits.access, site.limits.bans.as_ref(), ip, now) {
            Admission::AllowListed => ctx.allow_listed = true,
            Admission::Denied => {
                return self
                    .refuse(session, ctx, Action::Deny, "deny_list", 403, &[])
                    .await
            }
            Admission::Banned(left) => {
                let retry = (header::RETRY_AFTER, left.as_secs().max(1).to_string());
                return self
                    .refuse(session, ctx, Action::Ban, "banned", 403, &[retry])
                    .await;
            }
            Admission::Continue => {}
        }
        if site.limits.routes.is_empty() {
            return Ok(false); // no route: nothing to normalise the path for
        }
        let path = palisade_config::normalize_path(session.req_header().uri.path());
        ctx.route = site
            .limits
            .route_for(session.req_header().method.as_str(), &path);
        let Some(route) = ctx.route.and_then(|i| site.limits.routes.get(i)) else {
            return Ok(false);
        };
        let allow = &route.config.allow;
        if !allow.is_empty()
            && !allow
                .iter()
                .any(|n| n.contains(&palisade_config::canonical_ip(ip)))
        {
            return self
                .refuse(session, ctx, Action::Deny, "route_allow", 403, &[])
                .await;
        }
        if route.config.client_cert {
            let verified = session
                .digest()
                .and_then(|d| d.ssl_digest.as_ref())
                .is_some_and(|s| !s.cert_digest.is_empty());
            if !verified {
                return self
                    .refuse(session, ctx, Action::Deny, "client_cert", 403, &[])
                    .await;
            }
        }
        if let Some(auth) = &route.basic_auth {
            let given = session
                .req_header()
                .headers
                .get(header::AUTHORIZATION)
                .map(|v| v.as_bytes())
                .unwrap_or_default();
            if auth.verify(given).is_none() {
                let challenge = (header::WWW_AUTHENTICATE, auth.challenge());
                return self
                    .refuse(
                        session,
                        ctx,
                        Action::Unauthorized,
                        "basic_auth",
                        401,
                        &[challenge],
                    )
                    .await;
            }
        }
        let mut limiters = Vec::new();
        if let Some(keys) = &route.api_keys {
            let given = session
                .req_header()
                .headers
                .get(keys.header())
                .map(|v| v.as_bytes());
            match given.and_then(|v| keys.check(v)) {
                None => {
                    return self
                        .refuse(session, ctx, Action::Unauthorized, "api_key", 401, &[])
                        .await
                }
                Some((_, Some(limiter))) => limiters.push(limiter.clone()),
                Some((_, None)) => {}
            }
        }
        if let Some(l) = &route.limiter {
            limiters.push(l.clone());
        }
        if ctx.allow_listed || limiters.is_empty() {
            return Ok(false);
        }
        if route.key_needs_body() && ctx.body.is_none() && waf::small_body(session) {
            ctx.body = Some(waf::read_small_body(session).await?);
        }
        for limiter in limiters {
            let decision = {
                let view = crate::limits::View {
                    ip,
                    req: session.req_header(),
                    body: ctx.body.as_deref(),
                };
                limiter.check_async(&view)
            }
            .await;
            if let Decision::Limited {
                retry_after,
                detect_only,
            } = decision
            {
                let mode = if detect_only { "detect" } else { "block" };
                if let Some(m) = metrics() {
                    m.rate_limited
                        .with_label_values(&[
                            site.config.name.as_str(),
                            route.config.name.as_str(),
                            mode,
                        ])
                        .inc();
                }
                tracing::warn!(
                    target: "palisade::security",
                    event = "rate_limit",
                    request_id = %ctx.request_id,
                    site = %site.config.name,
                    route = %route.config.name,
                    mode,
                    client_ip = %crate::logging::redactor().client_ip(ip),
                );
                if !detect_only {
                    ctx.action = Action::Limit;
                    self.violation(ctx, "rate_limit");
                    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                    let retry = (header::RETRY_AFTER, secs.max(1).to_string());
                    self.respond_page_with(session, ctx, 429, &[retry]).await?;
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}

#[async_trait]
impl ProxyHttp for EdgeProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            gen: None,
            site: None,
            request_id: String::new(),
            started: Instant::now(),
            https: self.listener == Listener::Tls,
            peer_ip: None,
            peer_trusted: false,
            client_ip: None,
            host: String::new(),
            action: Action::Allow,
            upstream_started: None,
            hold: None,
            waf_rules: String::new(),
            waf_score: 0,
            upstream_us: None,
            route: None,
            allow_listed: false,
            body: None,
            _inflight: self.inflight.enter(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let gen = self.generation.load_full();
        ctx.peer_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| canonical_ip(a.ip()));
        ctx.peer_trusted = ctx.peer_ip.is_some_and(|ip| gen.trusted.contains(ip));
        ctx.client_ip = ctx.peer_ip;
        if ctx.peer_trusted {
            if let Some(ip) =
                header_str(session, &X_FORWARDED_FOR).and_then(|x| client_from_xff(x, &gen))
            {
                ctx.client_ip = Some(ip);
            }
        }
        ctx.request_id = match header_str(session, &gen.request_id_header) {
            Some(id) if ctx.peer_trusted && valid_request_id(id) => id.to_string(),
            _ => new_request_id(),
        };
        ctx.gen = Some(gen.clone());

        // The site, by the authority of the request (h2 / absolute form) or its Host header.
        let req = session.req_header();
        let authority = req
            .uri
            .authority()
            .map(|a| a.as_str().to_string())
            .or_else(|| header_str(session, &header::HOST).map(str::to_string));
        let Some(authority) = authority.filter(|a| !a.is_empty()) else {
            ctx.action = Action::Reject;
            self.respond_page(session, ctx, 400).await?;
            return Ok(true);
        };
        ctx.host = strip_port(&authority)
            .trim_end_matches('.')
            .to_ascii_lowercase();
        ctx.site = gen.site_for(&ctx.host);
        let Some(site_idx) = ctx.site else {
            // Never redirect to (or proxy for) a host we do not serve: no open redirect. An
            // attack sent that way is still reported as one.
            let verdict = gen
                .default_waf
                .as_ref()
                .map(|engine| waf::inspect(engine, session, None, false));
            if verdict.as_ref().is_some_and(|v| self.enforce(ctx, v)) {
                self.respond_page(session, ctx, 403).await?;
                return Ok(true);
            }
            ctx.action = Action::Reject;
            self.respond_page(session, ctx, 421).await?;
            return Ok(true);
        };

        if self.listener == Listener::Plain {
            let forwarded_https = ctx.peer_trusted
                && header_str(session, &X_FORWARDED_PROTO)
                    .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
            ctx.https = forwarded_https;
            let path = session.req_header().uri.path();
            let acme = path.starts_with(ACME_PREFIX);
            let redirect = gen
                .sites
                .get(site_idx)
                .is_some_and(|s| s.config.https_redirect);
            if !ctx.https && !acme && redirect {
                let pq = session
                    .req_header()
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .filter(|p| p.starts_with('/'))
                    .unwrap_or("/");
                let location = if gen.https_port == 443 {
                    format!("https://{}{}", ctx.host, pq)
                } else {
                    format!("https://{}:{}{}", ctx.host, gen.https_port, pq)
                };
                // A request body is not read: close the connection rather than parse it as the
                // next request.
                let has_body = session
                    .req_header()
                    .headers
                    .contains_key(header::CONTENT_LENGTH)
                    || session
                        .req_header()
                        .headers
                        .contains_key(header::TRANSFER_ENCODING);
                if has_body {
                    session.set_keepalive(None);
                }
                ctx.action = Action::Redirect;
                if let (Some(m), Some(site)) = (metrics(), ctx.site()) {
                    m.https_redirects
                        .with_label_values(&[site.config.name.as_str()])
                        .inc();
                }
                self.respond(session, ctx, 308, &[(header::LOCATION, location)], None)
                    .await?;
                return Ok(true);
            }
        }
        if self.access_phase(session, ctx).await? {
            return Ok(true);
        }
        self.waf_request(session, ctx).await
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let Some(hold) = ctx.hold.as_mut() else {
            return Ok(());
        };
        if let Some(chunk) = body.take() {
            hold.buf.extend_from_slice(&chunk);
        }
        if hold.buf.len() < hold.limit && !end_of_stream {
            // Keep holding: nothing goes to the shop yet. (An empty chunk, not `None`, which
            // Pingora would take for the end of the body.)
            *body = Some(Bytes::new());
            return Ok(());
        }
        let Some(hold) = ctx.hold.take() else {
            return Ok(());
        };
        let Some(engine) = ctx
            .site()
            .and_then(|s| s.config.waf.as_ref())
            .map(|w| w.0.clone())
        else {
            *body = Some(hold.buf.freeze());
            return Ok(());
        };
        let truncated = hold.buf.len() > hold.limit || !end_of_stream;
        if truncated && engine.body_overflow() == palisade_waf::BodyOverflow::Reject {
            ctx.action = Action::Reject;
            return Error::e_explain(ErrorType::HTTPStatus(413), "body over the inspection limit");
        }
        let inspected = hold.buf.len().min(hold.limit);
        let verdict = waf::inspect(&engine, session, hold.buf.get(..inspected), truncated);
        if self.enforce(ctx, &verdict) {
            return Error::e_explain(ErrorType::HTTPStatus(403), "blocked by the WAF");
        }
        *body = Some(hold.buf.freeze());
        Ok(())
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let site = ctx
            .site()
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(421), "no site"))?;
        let peer = site.peer();
        if peer.is_none() {
            if let Some(m) = metrics() {
                m.upstream_errors
                    .with_label_values(&[site.config.name.as_str(), "no_backend"])
                    .inc();
            }
        }
        ctx.upstream_started = Some(Instant::now());
        peer.ok_or_else(|| Error::explain(ErrorType::HTTPStatus(502), "no healthy backend"))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        req: &mut pingora::http::RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let peer = ctx.peer_ip.map(ip_text).unwrap_or_default();
        let incoming_xff = req
            .headers
            .get(&X_FORWARDED_FOR)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if !ctx.peer_trusted {
            // What an untrusted client says about itself is not passed on.
            for h in [
                &X_FORWARDED_FOR,
                &X_FORWARDED_PROTO,
                &X_FORWARDED_HOST,
                &X_REAL_IP,
                &FORWARDED,
            ] {
                // (a lookup is cheaper than Pingora's remove from both of its header maps)
                if req.headers.contains_key(h) {
                    req.remove_header(h);
                }
            }
        }
        // The client is the peer unless a trusted proxy said otherwise: format it once.
        let real_ip = match ctx.client_ip {
            Some(ip) if Some(ip) == ctx.peer_ip => Some(peer.clone()),
            Some(ip) => Some(ip_text(ip)),
            None => None,
        };
        let xff = match (ctx.peer_trusted, incoming_xff) {
            (true, Some(chain)) if !chain.trim().is_empty() => format!("{chain}, {peer}"),
            _ => peer,
        };
        // Names as `&'static str` in the case they are sent with: Pingora keeps them as they are
        // instead of building a title-cased copy of a `HeaderName` per insert.
        req.insert_header("X-Forwarded-For", xff)?;
        if let Some(ip) = real_ip {
            req.insert_header("X-Real-IP", ip)?;
        }
        req.insert_header(
            "X-Forwarded-Proto",
            if ctx.https { "https" } else { "http" },
        )?;
        if !ctx.peer_trusted || !req.headers.contains_key(&X_FORWARDED_HOST) {
            req.insert_header("X-Forwarded-Host", ctx.host.as_str())?;
        }
        if let Some(gen) = &ctx.gen {
            req.insert_header(gen.request_id_wire.clone(), ctx.request_id.as_str())?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let upstream_secs = ctx
            .upstream_started
            .take()
            .map(|t| t.elapsed().as_secs_f64());
        ctx.upstream_us = upstream_secs.map(|s| (s * 1e6) as u64);
        if let Some(site) = ctx.site() {
            site.hardening.apply(&mut PingoraHeaders(resp), ctx.https);
            if let (Some(m), Some(secs)) = (metrics(), upstream_secs) {
                m.upstream_duration
                    .with_label_values(&[site.config.name.as_str()])
                    .observe(secs);
            }
        }
        if let Some(gen) = &ctx.gen {
            resp.insert_header(gen.request_id_wire.clone(), ctx.request_id.as_str())?;
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let code = match e.etype() {
            ErrorType::HTTPStatus(c) => *c,
            ErrorType::ReadTimedout | ErrorType::WriteTimedout
                if e.esource() == &ErrorSource::Upstream =>
            {
                504
            }
            ErrorType::ConnectTimedout => 504,
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 502,
            },
        };
        if ctx.gen.is_none() {
            ctx.gen = Some(self.generation.load_full());
            ctx.request_id = new_request_id();
        }
        if e.esource() == &ErrorSource::Upstream && code >= 500 {
            ctx.action = Action::UpstreamError;
            let kind = match e.etype() {
                ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
                    "timeout"
                }
                ErrorType::ConnectRefused
                | ErrorType::ConnectNoRoute
                | ErrorType::ConnectError
                | ErrorType::TLSHandshakeFailure
                | ErrorType::InvalidCert => "connect",
                _ => "other",
            };
            if let (Some(m), Some(site)) = (metrics(), ctx.site()) {
                m.upstream_errors
                    .with_label_values(&[site.config.name.as_str(), kind])
                    .inc();
            }
        } else if code == 502 {
            // No healthy backend (counted in upstream_peer).
            ctx.action = Action::UpstreamError;
        } else if (400..500).contains(&code) && ctx.action == Action::Allow {
            ctx.action = Action::Reject;
        }
        if code > 0 && session.response_written().is_none() {
            if let Err(err) = self.respond_page(session, ctx, code).await {
                tracing::debug!(request_id = %ctx.request_id, "could not send the error page: {err}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    fn request_summary(&self, session: &Session, ctx: &Ctx) -> String {
        // Pingora's default summary carries the path and query, which may hold secrets.
        let site = ctx.site().map(|s| s.config.name.as_str()).unwrap_or("-");
        format!(
            "{} site={} request_id={}",
            session.req_header().method,
            site,
            ctx.request_id
        )
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let site = ctx.site().map(|s| s.config.name.as_str()).unwrap_or("-");
        // Whole microseconds: a float's digits (7.123000000000005) could read as a card number.
        let duration_us = ctx.started.elapsed().as_micros() as u64;
        // Statuses the site counts as violations (e.g. 401s on a login form).
        let counted = ctx
            .site()
            .and_then(|s| s.limits.bans.as_ref())
            .is_some_and(|b| b.counts_status(status));
        if counted && matches!(ctx.action, Action::Allow | Action::Unauthorized) {
            self.violation(ctx, "status");
        }
        if let Some(m) = metrics() {
            m.requests
                .with_label_values(&[site, ctx.action.as_str(), status_class(status)])
                .inc();
        }
        if let Some(c) = &self.worker_requests {
            c.inc();
        }
        if !crate::logging::access_log_enabled() {
            return;
        }
        // One event per request at one level, so an access log never has holes; the error kind
        // (never its text, which may quote the request) says what went wrong. Values a client
        // chose are redacted by the access formatter (JSON) or the writer (text); one that is too long is
        // redacted here first and then cut, so a cut can never leave half a card number behind.
        let red = crate::logging::redactor();
        let req = session.req_header();
        let path = capped(red, req.uri.path(), 1024);
        let query = capped(red, req.uri.query().unwrap_or(""), 2048);
        let user_agent = req
            .headers
            .get(header::USER_AGENT)
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
            .unwrap_or_default();
        let user_agent = capped(red, &user_agent, 512);
        let client_ip = ctx
            .client_ip
            .map(|ip| red.client_ip(ip))
            .unwrap_or_default();
        let tls = session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .map(|s| s.version.replace('_', "."))
            .unwrap_or_default();
        let http_version = match req.version {
            http::Version::HTTP_09 => "HTTP/0.9",
            http::Version::HTTP_10 => "HTTP/1.0",
            http::Version::HTTP_11 => "HTTP/1.1",
            http::Version::HTTP_2 => "HTTP/2.0",
            http::Version::HTTP_3 => "HTTP/3.0",
            _ => "-",
        };
        // Plain `&str` fields: the formatter writes them without the `fmt` machinery.
        tracing::info!(
            target: crate::logging::ACCESS_TARGET,
            request_id = ctx.request_id.as_str(),
            site,
            client_ip = client_ip.as_str(),
            method = req.method.as_str(),
            path = path.as_ref(),
            query = query.as_ref(),
            http_version,
            status,
            bytes_in = session.body_bytes_read(),
            bytes_out = session.body_bytes_sent(),
            duration_us,
            upstream_us = ctx.upstream_us.map(|u| u as i64).unwrap_or(-1),
            user_agent = user_agent.as_ref(),
            tls_version = tls.as_str(),
            action = ctx.action.as_str(),
            waf_rules = ctx.waf_rules.as_str(),
            waf_score = ctx.waf_score,
            error = e.map(|e| e.etype().as_str()).unwrap_or(""),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_checked() {
        assert!(valid_request_id("abc-123_X.y:z"));
        assert!(!valid_request_id(""));
        assert!(!valid_request_id("a b"));
        assert!(!valid_request_id(&"a".repeat(129)));
        assert_eq!(new_request_id().len(), 32);
        assert_ne!(new_request_id(), new_request_id());
        for n in [0, 1, 0xabc, u128::MAX, u128::MAX / 3, 1 << 127] {
            assert_eq!(hex128(n), format!("{n:032x}"));
        }
    }
}
