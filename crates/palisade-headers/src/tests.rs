use super::error_page::{render, wants_json};
use super::*;
use http::HeaderMap;
use palisade_config::SameSite;

fn site(extra: &str) -> Site {
    let text = format!(
        "[server]\nhttps = \"off\"\n[[sites]]\nname = \"shop\"\nhosts = [\"shop.example\", \"*.shop.example\"]\nupstreams = [\"127.0.0.1:1\"]\n{extra}"
    );
    palisade_config::parse(&text, std::path::Path::new("t.toml"))
        .unwrap()
        .config
        .sites
        .remove(0)
}

fn upstream_response() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("server", HeaderValue::from_static("Apache/2.2.15 (CentOS)"));
    h.insert("x-powered-by", HeaderValue::from_static("PHP/5.6.40"));
    h.insert("x-aspnet-version", HeaderValue::from_static("4.0.30319"));
    h.insert("content-type", HeaderValue::from_static("text/html"));
    h.append(
        "set-cookie",
        HeaderValue::from_static("session=abc; path=/"),
    );
    h.append("set-cookie", HeaderValue::from_static("cart=1; Path=/"));
    h
}

#[test]
fn fingerprints_go_and_security_headers_come() {
    let hard = Hardening::new(&site(""), 443);
    let mut h = upstream_response();
    hard.apply(&mut h, true);
    for gone in ["server", "x-powered-by", "x-aspnet-version"] {
        assert!(!h.contains_key(gone), "{gone} kept");
    }
    assert_eq!(h["strict-transport-security"], "max-age=31536000");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "SAMEORIGIN");
    assert_eq!(h["referrer-policy"], "strict-origin-when-cross-origin");
    assert!(h.contains_key("permissions-policy"));
    assert!(!h.contains_key("content-security-policy"), "CSP is opt-in");
    assert_eq!(h["content-type"], "text/html", "other headers untouched");
}

#[test]
fn no_hsts_over_plain_http() {
    let hard = Hardening::new(&site(""), 443);
    let mut h = upstream_response();
    hard.apply(&mut h, false);
    assert!(!h.contains_key("strict-transport-security"));
    assert_eq!(h["x-content-type-options"], "nosniff");
}

#[test]
fn upstream_values_are_kept_unless_overridden() {
    let mut h = HeaderMap::new();
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    Hardening::new(&site(""), 443).apply(&mut h, true);
    assert_eq!(h["x-frame-options"], "DENY");

    let mut h = HeaderMap::new();
    h.insert("x-frame-options", HeaderValue::from_static("ALLOWALL"));
    Hardening::new(&site("[sites.headers]\noverride_upstream = true\n"), 443).apply(&mut h, true);
    assert_eq!(h["x-frame-options"], "SAMEORIGIN");
}

#[test]
fn csp_enforced_report_only_and_upgrade() {
    let mut h = HeaderMap::new();
    Hardening::new(
        &site("[sites.headers]\ncontent_security_policy = \"default-src 'self'\"\nupgrade_insecure_requests = true\n"),
        443,
    )
    .apply(&mut h, true);
    assert_eq!(
        h["content-security-policy"],
        "default-src 'self'; upgrade-insecure-requests"
    );

    let mut h = HeaderMap::new();
    Hardening::new(
        &site("[sites.headers]\ncontent_security_policy = \"default-src 'self'\"\ncsp_mode = \"report-only\"\n"),
        443,
    )
    .apply(&mut h, true);
    assert_eq!(
        h["content-security-policy-report-only"],
        "default-src 'self'"
    );
    assert!(!h.contains_key("content-security-policy"));

    let mut h = HeaderMap::new();
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("img-src *"),
    );
    Hardening::new(
        &site("[sites.headers]\nupgrade_insecure_requests = true\n"),
        443,
    )
    .apply(&mut h, true);
    assert_eq!(
        h["content-security-policy"],
        "img-src *; upgrade-insecure-requests"
    );
}

#[test]
fn cookies_get_flags_with_exceptions() {
    let hard = Hardening::new(
        &site("[sites.cookies.exceptions]\ncart = { http_only = false }\n"),
        443,
    );
    let mut h = upstream_response();
    hard.apply(&mut h, true);
    let cookies: Vec<_> = h
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        cookies,
        [
            "session=abc; path=/; Secure; HttpOnly; SameSite=Lax",
            "cart=1; Path=/; Secure; SameSite=Lax"
        ]
    );
}

#[test]
fn cookie_flags_already_present_are_not_duplicated() {
    let f = CookieFlags {
        secure: true,
        http_only: true,
        same_site: Some(SameSite::Lax),
    };
    assert_eq!(
        harden_set_cookie("a=1; secure; HTTPONLY; samesite=Strict", f, true),
        None
    );
    assert_eq!(
        harden_set_cookie("a=1; SameSite=None", f, true).as_deref(),
        Some("a=1; SameSite=None; Secure; HttpOnly")
    );
    assert_eq!(
        harden_set_cookie("a=1", f, false).as_deref(),
        Some("a=1; HttpOnly; SameSite=Lax"),
        "no Secure over plain http: the browser would drop the cookie"
    );
}

#[test]
fn location_to_own_host_is_upgraded() {
    let hard = Hardening::new(&site(""), 8443);
    assert_eq!(
        hard.rewrite_location("http://shop.example/").as_deref(),
        Some("https://shop.example:8443/")
    );
    assert_eq!(
        hard.rewrite_location("HTTP://WWW.Shop.Example:8080/cart?x=1")
            .as_deref(),
        Some("https://www.shop.example:8443/cart?x=1")
    );
    assert_eq!(
        hard.rewrite_location("http://shop.example").as_deref(),
        Some("https://shop.example:8443/")
    );
    assert_eq!(hard.rewrite_location("http://evil.example/"), None);
    assert_eq!(
        hard.rewrite_location("http://shop.example@evil.example/"),
        None
    );
    assert_eq!(hard.rewrite_location("/relative"), None);
    assert_eq!(hard.rewrite_location("https://shop.example/"), None);
    let hard = Hardening::new(&site(""), 443);
    assert_eq!(
        hard.rewrite_location("http://shop.example/a").as_deref(),
        Some("https://shop.example/a")
    );
}

#[test]
fn strip_port_handles_ipv6() {
    assert_eq!(strip_port("shop.example:8443"), "shop.example");
    assert_eq!(strip_port("[::1]:8443"), "[::1]");
    assert_eq!(strip_port("shop.example"), "shop.example");
}

#[test]
fn error_pages_are_neutral_and_negotiated() {
    assert!(wants_json(Some("application/json")));
    assert!(wants_json(Some("application/problem+json, */*;q=0.1")));
    assert!(!wants_json(Some(
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    )));
    assert!(!wants_json(Some("text/html;q=1, application/json;q=0.5")));
    assert!(!wants_json(None));
    let (ct, body) = render(502, "abc-123<script>", false);
    assert!(ct.starts_with("text/html"));
    assert!(body.contains("abc-123script") && !body.contains("<script>"));
    let (ct, body) = render(504, "r1", true);
    assert_eq!(ct, "application/json");
    let v: Vec<&str> = body.split('"').collect();
    assert!(v.contains(&"request_id") && v.contains(&"r1"), "{body}");
}
