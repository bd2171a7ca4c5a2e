//! X-Forwarded-* and X-Real-IP: set from the connection, believed only from trusted proxies.

use crate::support::upstream::Echo;
use crate::support::*;

fn config(shop: std::net::SocketAddr) -> String {
    shop_config(&[shop], "").replace(
        "shutdown_grace",
        "trusted_proxies = [\"127.0.0.2/32\"]\nshutdown_grace",
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn untrusted_client_cannot_forge_its_address_or_scheme() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let gw = Gateway::start(&pki, &config(shop.addr)).await;
    let client = gw
        .client(&pki)
        .source_ip("127.0.0.1".parse().unwrap())
        .build();

    let resp = client
        .get(gw.https_url("shop.test", "/"))
        .header("x-forwarded-for", "1.2.3.4")
        .header("x-real-ip", "1.2.3.4")
        .header("x-forwarded-proto", "http")
        .header("x-forwarded-host", "evil.test")
        .header("forwarded", "for=1.2.3.4")
        .send()
        .await
        .unwrap();

    let echo = Echo::of(resp).await;
    assert_eq!(echo.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(echo.header("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(echo.header("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(
        echo.header("x-forwarded-host").as_deref(),
        Some("shop.test")
    );
    assert_eq!(echo.header("forwarded"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn trusted_proxy_chain_is_extended_and_its_client_believed() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let gw = Gateway::start(&pki, &config(shop.addr)).await;
    let proxy = gw
        .client(&pki)
        .source_ip("127.0.0.2".parse().unwrap())
        .build();

    let resp = proxy
        .get(gw.https_url("shop.test", "/"))
        .header("x-forwarded-for", "203.0.113.9, 127.0.0.2")
        .header("x-request-id", "lb-7f3a")
        .send()
        .await
        .unwrap();

    assert_eq!(
        header_values(&resp, "x-request-id"),
        ["lb-7f3a"],
        "a trusted proxy's id is kept"
    );
    let echo = Echo::of(resp).await;
    assert_eq!(
        echo.header("x-forwarded-for").as_deref(),
        Some("203.0.113.9, 127.0.0.2, 127.0.0.2")
    );
    assert_eq!(echo.header("x-real-ip").as_deref(), Some("203.0.113.9"));
    assert_eq!(echo.header("x-request-id").as_deref(), Some("lb-7f3a"));
}
