//! Response hardening: what Palisade changes on every response before the client sees it.
//!
//! The key design decision: a site's policy is compiled once (header names and values parsed,
//! HSTS and CSP strings built) into a [`Hardening`], and applied through the small [`HeaderStore`]
//! trait, so the same code hardens an `http::HeaderMap` in tests and benchmarks and Pingora's
//! case-preserving `ResponseHeader` in the gateway. No Pingora here: it tests and benches in
//! microseconds.
//!
//! Order of work on a response (the gateway's `response_filter`):
//! 1. remove fingerprint headers (`Server`, `X-Powered-By`, …);
//! 2. add HSTS (https only) and the security headers the upstream did not set itself
//!    (or replace them when the site says `override_upstream`);
//! 3. add `Secure`/`HttpOnly`/`SameSite` to upstream cookies that lack them;
//! 4. rewrite `Location: http://<own host>/…` to https.

pub mod error_page;

use http::header::{
    HeaderName, HeaderValue, CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_REPORT_ONLY,
    LOCATION, REFERRER_POLICY, SET_COOKIE, STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use palisade_config::{CookieFlags, CookiePolicy, CspMode, HostPattern, Site};

pub const PERMISSIONS_POLICY: HeaderName = HeaderName::from_static("permissions-policy");

/// Where hardening reads and writes headers. Implemented for `http::HeaderMap` here and for
/// Pingora's `ResponseHeader` in the gateway (which must keep its own case map in sync).
pub trait HeaderStore {
    fn get_all_values(&self, name: &HeaderName) -> Vec<HeaderValue>;
    fn contains(&self, name: &HeaderName) -> bool;
    fn set(&mut self, name: HeaderName, value: HeaderValue);
    fn append(&mut self, name: HeaderName, value: HeaderValue);
    fn remove(&mut self, name: &HeaderName);
    /// Calls `f` once per distinct header name present.
    fn for_each_name(&self, f: &mut dyn FnMut(&HeaderName));
    /// [`HeaderStore::set`] with the name as it is to be sent (`X-Frame-Options`): a store that
    /// keeps the case of names (Pingora's) uses it instead of building one.
    fn set_titled(&mut self, name: &HeaderName, _titled: &'static str, value: HeaderValue) {
        self.set(name.clone(), value);
    }
}

impl HeaderStore for http::HeaderMap {
    fn get_all_values(&self, name: &HeaderName) -> Vec<HeaderValue> {
        self.get_all(name).iter().cloned().collect()
    }
    fn contains(&self, name: &HeaderName) -> bool {
        self.contains_key(name)
    }
    fn set(&mut self, name: HeaderName, value: HeaderValue) {
        self.insert(name, value);
    }
    fn append(&mut self, name: HeaderName, value: HeaderValue) {
        http::HeaderMap::append(self, name, value);
    }
    fn remove(&mut self, name: &HeaderName) {
        http::HeaderMap::remove(self, name);
    }
    fn for_each_name(&self, f: &mut dyn FnMut(&HeaderName)) {
        self.keys().for_each(f);
    }
}

/// The name of a header Palisade adds, as sent on the wire.
fn titled(name: &HeaderName) -> Option<&'static str> {
    Some(match *name {
        X_CONTENT_TYPE_OPTIONS => "X-Content-Type-Options",
        X_FRAME_OPTIONS => "X-Frame-Options",
        REFERRER_POLICY => "Referrer-Policy",
        CONTENT_SECURITY_POLICY => "Content-Security-Policy",
        CONTENT_SECURITY_POLICY_REPORT_ONLY => "Content-Security-Policy-Report-Only",
        STRICT_TRANSPORT_SECURITY => "Strict-Transport-Security",
        _ if *name == PERMISSIONS_POLICY => "Permissions-Policy",
        _ => return None,
    })
}

fn length_bit(name: &HeaderName) -> u64 {
    1u64 << name.as_str().len().min(63)
}

fn lengths(names: &[HeaderName]) -> u64 {
    names.iter().fold(0, |m, n| m | length_bit(n))
}

/// A site's response policy, compiled once per config generation.
#[derive(Debug, Clone)]
pub struct Hardening {
    hsts: Option<HeaderValue>,
    /// Security headers in the order they are added, with their names as sent.
    security: Vec<(HeaderName, Option<&'static str>, HeaderValue)>,
    override_upstream: bool,
    upgrade_insecure_requests: bool,
    remove: Vec<HeaderName>,
    /// Bit `n` set when a name of `remove` is `n` bytes long (63: longer): most response
    /// headers are ruled out by their length alone.
    remove_lengths: u64,
    cookies: CookiePolicy,
    hosts: Vec<HostPattern>,
    /// The port clients reach the https listener on, for rewritten `Location`s.
    https_port: u16,
}

impl Hardening {
    /// Compile a site's policy. `https_port` is the public port of the TLS listener.
    pub fn new(site: &Site, https_port: u16) -> Self {
        let h = &site.headers;
        let mut security = Vec::new();
        let mut push = |name: HeaderName, v: &Option<String>| {
            if let Some(v) = v.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
                security.push((name, v));
            }
        };
        push(X_CONTENT_TYPE_OPTIONS, &h.x_content_type_options);
        push(X_FRAME_OPTIONS, &h.x_frame_options);
        push(REFERRER_POLICY, &h.referrer_policy);
        push(PERMISSIONS_POLICY, &h.permissions_policy);
        let csp = match (&h.content_security_policy, h.upgrade_insecure_requests) {
            (Some(p), true) if !p.contains("upgrade-insecure-requests") => Some(format!(
                "{}; upgrade-insecure-requests",
                p.trim_end_matches(';')
            )),
            (Some(p), _) => Some(p.clone()),
            (None, true) => Some("upgrade-insecure-requests".to_string()),
            (None, false) => None,
        };
        if let Some(csp) = csp.and_then(|c| HeaderValue::from_str(&c).ok()) {
            // upgrade-insecure-requests only works in an enforced policy.
            let report_only =
                h.csp_mode == CspMode::ReportOnly && h.content_security_policy.is_some();
            if report_only {
                security.push((CONTENT_SECURITY_POLICY_REPORT_ONLY, csp));
                if h.upgrade_insecure_requests {
                    security.push((
                        CONTENT_SECURITY_POLICY,
                        HeaderValue::from_static("upgrade-insecure-requests"),
                    ));
                }
            } else {
                security.push((CONTENT_SECURITY_POLICY, csp));
            }
        }
        let security = security
            .into_iter()
            .map(|(n, v)| {
                let t = titled(&n);
                (n, t, v)
            })
            .collect();
        let remove: Vec<HeaderName> = h
            .remove
            .iter()
            .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            .collect();
        Hardening {
            hsts: site
                .hsts
                .header_value()
                .and_then(|v| HeaderValue::from_str(&v).ok()),
            security,
            override_upstream: h.override_upstream,
            upgrade_insecure_requests: h.upgrade_insecure_requests,
            remove_lengths: lengths(&remove),
            remove,
            cookies: site.cookies.clone(),
            hosts: site.hosts.clone(),
            https_port,
        }
    }

    /// The policy for responses that belong to no site (a 421 for an unknown Host, a 400 for a
    /// request without one): the default security headers and HSTS, nothing site-specific.
    pub fn baseline(https_port: u16) -> Self {
        let defaults = palisade_config::HeaderPolicy::default();
        let pairs = [
            (X_CONTENT_TYPE_OPTIONS, &defaults.x_content_type_options),
            (X_FRAME_OPTIONS, &defaults.x_frame_options),
            (REFERRER_POLICY, &defaults.referrer_policy),
            (PERMISSIONS_POLICY, &defaults.permissions_policy),
        ];
        Hardening {
            hsts: palisade_config::Hsts::default()
                .header_value()
                .and_then(|v| HeaderValue::from_str(&v).ok()),
            security: pairs
                .into_iter()
                .filter_map(|(n, v)| {
                    let t = titled(&n);
                    Some((n, t, HeaderValue::from_str(v.as_deref()?).ok()?))
                })
                .collect(),
            override_upstream: false,
            upgrade_insecure_requests: false,
            remove: Vec::new(),
            remove_lengths: 0,
            cookies: palisade_config::CookiePolicy::default(),
            hosts: Vec::new(),
            https_port,
        }
    }

    /// Harden an upstream response. `https` is whether the client talks to us over TLS
    /// (directly or through a trusted TLS-terminating proxy).
    pub fn apply<H: HeaderStore>(&self, headers: &mut H, https: bool) {
        // One pass over the response's few names rather than a lookup per listed name.
        let mut doomed: Vec<HeaderName> = Vec::new();
        headers.for_each_name(&mut |name| {
            if self.remove_lengths & length_bit(name) != 0 && self.remove.contains(name) {
                doomed.push(name.clone());
            }
        });
        for name in &doomed {
            headers.remove(name);
        }
        self.add_security_headers(headers, https);
        self.harden_cookies(headers, https);
        if headers.contains(&LOCATION) {
            if let Some(loc) = headers.get_all_values(&LOCATION).first() {
                if let Some(new) = loc
                    .to_str()
                    .ok()
                    .and_then(|l| self.rewrite_location(l))
                    .and_then(|l| HeaderValue::from_str(&l).ok())
                {
                    headers.set(LOCATION, new);
                }
            }
        }
    }

    /// Security headers (and HSTS over https) for a response Palisade wrote itself: a
    /// redirect, a block or an error page.
    pub fn apply_own<H: HeaderStore>(&self, headers: &mut H, https: bool) {
        self.add_security_headers(headers, https);
    }

    fn add_security_headers<H: HeaderStore>(&self, headers: &mut H, https: bool) {
        if https {
            if let Some(hsts) = &self.hsts {
                if self.override_upstream || !headers.contains(&STRICT_TRANSPORT_SECURITY) {
                    headers.set_titled(
                        &STRICT_TRANSPORT_SECURITY,
                        "Strict-Transport-Security",
                        hsts.clone(),
                    );
                }
            }
        }
        for (name, title, value) in &self.security {
            if self.override_upstream || !headers.contains(name) {
                match title {
                    Some(t) => headers.set_titled(name, t, value.clone()),
                    None => headers.set(name.clone(), value.clone()),
                }
            } else if *name == CONTENT_SECURITY_POLICY && self.upgrade_insecure_requests {
                // The shop has its own policy: keep it, but still ask for the upgrade.
                let values = headers.get_all_values(name);
                if let Some(v) = values.first().and_then(|v| v.to_str().ok()) {
                    if !v.contains("upgrade-insecure-requests") {
                        let merged =
                            format!("{}; upgrade-insecure-requests", v.trim_end_matches(';'));
                        if let Ok(merged) = HeaderValue::from_str(&merged) {
                            headers.set(name.clone(), merged);
                        }
                    }
                }
            }
        }
    }

    fn harden_cookies<H: HeaderStore>(&self, headers: &mut H, https: bool) {
        if !headers.contains(&SET_COOKIE) {
            return;
        }
        let cookies = headers.get_all_values(&SET_COOKIE);
        let mut changed = false;
        let rewritten: Vec<HeaderValue> = cookies
            .into_iter()
            .map(|v| {
                let new = v.to_str().ok().and_then(|s| {
                    let flags = self.cookies.flags_for(cookie_name(s));
                    harden_set_cookie(s, flags, https)
                });
                match new.and_then(|n| HeaderValue::from_str(&n).ok()) {
                    Some(n) => {
                        changed = true;
                        n
                    }
                    None => v,
                }
            })
            .collect();
        if changed {
            headers.remove(&SET_COOKIE);
            for v in rewritten {
                headers.append(SET_COOKIE, v);
            }
        }
    }

    /// `http://<own host>[:port]/rest` -> `https://<host>[:https_port]/rest`. Other URLs,
    /// relative ones and foreign hosts are left alone (`None`).
    pub fn rewrite_location(&self, location: &str) -> Option<String> {
        let scheme = location.get(..7)?;
        if !scheme.eq_ignore_ascii_case("http://") {
            return None;
        }
        let rest = &location[7..];
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.contains('@') {
            return None;
        }
        let host = strip_port(authority).to_ascii_lowercase();
        if !self.hosts.iter().any(|p| p.matches(&host)) {
            return None;
        }
        let tail = if tail.is_empty() { "/" } else { tail };
        Some(if self.https_port == 443 {
            format!("https://{host}{tail}")
        } else {
            format!("https://{host}:{}{tail}", self.https_port)
        })
    }
}

/// The host part of a `Host` header or URL authority, without port or IPv6 brackets' port.
pub fn strip_port(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        // [v6]:port
        return match rest.find(']') {
            Some(i) => &authority[..i + 2],
            None => authority,
        };
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
}

fn cookie_name(set_cookie: &str) -> &str {
    let first = set_cookie.split(';').next().unwrap_or("");
    first.split('=').next().unwrap_or("").trim()
}

/// Add the missing flags to one `Set-Cookie` value; `None` when nothing needs adding.
///
/// `Secure` is only added over https: a browser drops a `Secure` cookie set over plain http,
/// which would log customers out of a TLS-offloaded site that serves some plain pages.
pub fn harden_set_cookie(value: &str, flags: CookieFlags, https: bool) -> Option<String> {
    let mut has_secure = false;
    let mut has_http_only = false;
    let mut same_site: Option<&str> = None;
    for attr in value.split(';').skip(1) {
        let attr = attr.trim();
        let (k, v) = match attr.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (attr, None),
        };
        if k.eq_ignore_ascii_case("secure") {
            has_secure = true;
        } else if k.eq_ignore_ascii_case("httponly") {
            has_http_only = true;
        } else if k.eq_ignore_ascii_case("samesite") {
            same_site = Some(v.unwrap_or(""));
        }
    }
    let mut out = String::with_capacity(value.len() + 40);
    out.push_str(value.trim_end().trim_end_matches(';'));
    let start = out.len();
    let same_site_none = same_site.is_some_and(|s| s.eq_ignore_ascii_case("none"))
        || (same_site.is_none() && flags.same_site == Some(palisade_config::SameSite::None));
    if https && !has_secure && (flags.secure || same_site_none) {
        out.push_str("; Secure");
    }
    if !has_http_only && flags.http_only {
        out.push_str("; HttpOnly");
    }
    if same_site.is_none() {
        if let Some(ss) = flags.same_site {
            // SameSite=None without Secure is rejected by browsers; over plain http use Lax.
            let ss = if ss == palisade_config::SameSite::None && !https {
                palisade_config::SameSite::Lax
            } else {
                ss
            };
            out.push_str("; SameSite=");
            out.push_str(ss.as_str());
        }
    }
    (out.len() > start).then_some(out)
}

#[cfg(test)]
mod tests;
