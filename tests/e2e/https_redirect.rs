//! HTTPS everywhere: the plain listener redirects, never to a host it does not serve.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::upstream::Echo;
use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn plain_get_gets_308_to_https_on_same_host_path_and_query() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let gw = Gateway::start(&pki, &shop_config(&[shop.addr], "")).await;
    let client = gw.client(&pki).build();

    let resp = client
        .get(gw.http_url("www.shop.test", "/search?q=red+shoes&page=2"))
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status(), 308);
    assert_eq!(
        header_values(&resp, "location"),
        [format!(
            "https://www.shop.test:{}/search?q=red+shoes&page=2",
            gw.https.port()
        )]
    );
    assert!(
        header_values(&resp, "strict-transport-security").is_empty(),
        "no HSTS over http"
    );
    assert_eq!(header_values(&resp, "x-content-type-options"), ["nosniff"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_post_keeps_method_and_body_through_the_308() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let gw = Gateway::start(&pki, &shop_config(&[shop.addr], "")).await;
    let client = gw.client(&pki).follow_redirects().build();

    let resp = client
        .post(gw.http_url("shop.test", "/checkout"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("qty=2&sku=A-1")
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status(), 200);
    assert_eq!(resp.url().scheme(), "https", "the client followed the 308");
    let echo = Echo::of(resp).await;
    assert_eq!(echo.str("method"), "POST");
    assert_eq!(echo.str("body"), "qty=2&sku=A-1");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_host_gets_421_and_no_redirect() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let gw = Gateway::start(&pki, &shop_config(&[shop.addr], "")).await;
    // Over TLS the handshake names a site we serve, but the Host header names another.
    let client = gw.client(&pki).http1_only().build();

    for url in [
        gw.http_url("shop.test", "/"),
        gw.https_url("shop.test", "/"),
    ] {
        let resp = client
            .get(&url)
            .header("host", "unknown.test")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 421, "{url}");
        assert!(
            header_values(&resp, "location").is_empty(),
            "{url}: no open redirect"
        );
        assert_eq!(header_values(&resp, "x-content-type-options"), ["nosniff"]);
        assert!(
            !resp.text().await.unwrap().contains("\"backend\""),
            "the shop was not asked"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn request_without_host_gets_400_without_reaching_the_shop() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let gw = Gateway::start(&pki, &shop_config(&[shop.addr], "")).await;

    let mut conn = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    conn.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).await.unwrap();

    assert!(
        reply.starts_with("HTTP/1.1 400") || reply.starts_with("HTTP/1.0 400"),
        "{reply}"
    );
    assert!(!reply.contains("\"backend\""), "the shop was not asked");
}

#[tokio::test(flavor = "multi_thread")]
async fn acme_challenge_passes_through_the_plain_listener() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let gw = Gateway::start(&pki, &shop_config(&[shop.addr], "")).await;
    let client = gw.client(&pki).build();

    let resp = client
        .get(gw.http_url("shop.test", "/.well-known/acme-challenge/tok3n"))
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status(), 200);
    let echo = Echo::of(resp).await;
    assert_eq!(echo.str("target"), "/.well-known/acme-challenge/tok3n");
    assert_eq!(echo.header("x-forwarded-proto").as_deref(), Some("http"));
}

#[tokio::test(flavor = "multi_thread")]
async fn site_behind_a_tls_load_balancer_trusts_its_forwarded_proto() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let config = shop_config(&[shop.addr], "")
        .replace(
            "shutdown_grace",
            "trusted_proxies = [\"127.0.0.2/32\"]\nshutdown_grace",
        )
        .replace("upstreams = [", "https_redirect = false\nupstreams = [");
    let gw = Gateway::start(&pki, &config).await;

    // The load balancer (a trusted proxy) says the client used https.
    let lb = gw
        .client(&pki)
        .source_ip("127.0.0.2".parse().unwrap())
        .build();
    let resp = lb
        .get(gw.http_url("shop.test", "/"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header_values(&resp, "strict-transport-security"),
        ["max-age=31536000"]
    );
    assert_eq!(
        Echo::of(resp).await.header("x-forwarded-proto").as_deref(),
        Some("https")
    );

    // Anyone else saying so is not believed: plain http, no HSTS.
    let stranger = gw.client(&pki).build();
    let resp = stranger
        .get(gw.http_url("shop.test", "/"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "redirect is off for this site");
    assert!(header_values(&resp, "strict-transport-security").is_empty());
    assert_eq!(
        Echo::of(resp).await.header("x-forwarded-proto").as_deref(),
        Some("http")
    );
}
