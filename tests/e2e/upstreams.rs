//! Upstreams: round robin, health checks, and neutral pages when the shop is down or slow.

use std::collections::HashSet;

use crate::support::upstream::Echo;
use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn upstream_down_gets_a_neutral_502_with_request_id() {
    let pki = Pki::new();
    let dead = Upstream::dead_addr();
    let gw = Gateway::start(&pki, &shop_config(&[dead], "")).await;
    let client = gw.client(&pki).build();

    let resp = client
        .get(gw.https_url("shop.test", "/"))
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status(), 502);
    assert!(header_values(&resp, "content-type")[0].starts_with("text/html"));
    assert_eq!(
        header_values(&resp, "strict-transport-security"),
        ["max-age=31536000"]
    );
    let id = header_values(&resp, "x-request-id").remove(0);
    let body = resp.text().await.unwrap();
    assert!(body.contains(&id), "the page quotes the request id");
    let dead = dead.to_string();
    for internal in [
        dead.as_str(),
        "127.0.0.1",
        "refused",
        "Connect",
        "pingora",
        "Peer",
    ] {
        assert!(!body.contains(internal), "page leaks `{internal}`: {body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn api_clients_get_the_error_as_json() {
    let pki = Pki::new();
    let gw = Gateway::start(&pki, &shop_config(&[Upstream::dead_addr()], "")).await;
    let client = gw.client(&pki).build();

    let resp = client
        .get(gw.https_url("shop.test", "/api/cart"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status(), 502);
    assert_eq!(header_values(&resp, "content-type"), ["application/json"]);
    let id = header_values(&resp, "x-request-id").remove(0);
    let json: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(json["status"], 502);
    assert_eq!(json["request_id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_upstream_gets_a_504() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let gw = Gateway::start(&pki, &shop_config(&[shop.addr], "")).await;
    let client = gw.client(&pki).build();

    let resp = client
        .get(gw.https_url("shop.test", "/slow"))
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status(), 504);
    assert!(resp.text().await.unwrap().contains("took too long"));
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_are_spread_over_backends_and_dead_ones_are_skipped() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let dead = Upstream::dead_addr();
    let pki = Pki::new();
    let gw = Gateway::start(&pki, &shop_config(&[a.addr, b.addr, dead], "")).await;
    let http = reqwest::Client::new();

    // Wait until the health check has marked the dead backend down (readiness, not a timer).
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    loop {
        let ready: serde_json::Value = http
            .get(format!("http://{}/readyz", gw.admin))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if ready["sites"][0]["healthy"] == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "health check never ran: {ready}"
        );
        tokio::task::yield_now().await;
    }

    let client = gw.client(&pki).http1_only().build();
    let mut seen = HashSet::new();
    for _ in 0..6 {
        let resp = client
            .get(gw.https_url("shop.test", "/"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "a dead backend is never chosen");
        seen.insert(Echo::of(resp).await.str("backend").to_string());
    }
    assert_eq!(seen, HashSet::from(["a".to_string(), "b".to_string()]));
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_listener_answers_health_and_readiness() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let gw = Gateway::start(&pki, &shop_config(&[shop.addr], "")).await;
    let http = reqwest::Client::new();

    let health = http
        .get(format!("http://{}/healthz", gw.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = http
        .get(format!("http://{}/readyz", gw.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let ready: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["sites"][0]["site"], "shop");
}

#[tokio::test(flavor = "multi_thread")]
async fn https_backend_is_verified_against_the_configured_ca() {
    let pki = Pki::new();
    let backend_cert = pki.ca.issue(&["backend.internal"], 30).unwrap();
    let backend = Upstream::start_tls("tls-backend", &backend_cert).await;
    let site = |extra: &str| {
        shop_config(&[backend.addr], "")
            .replace("\"http://", "\"https://")
            .replace(
                "[sites.upstream]\n",
                &format!("[sites.upstream]\ntls_sni = \"backend.internal\"\n{extra}"),
            )
    };

    // Trusting the private CA: the backend's certificate verifies and the request goes through.
    let gw = Gateway::start(&pki, &site("tls_ca = \"ca.pem\"\n")).await;
    let resp = gw
        .client(&pki)
        .build()
        .get(gw.https_url("shop.test", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(Echo::of(resp).await.str("backend"), "tls-backend");
    drop(gw);

    // Without it, the system roots do not know the backend: a neutral 502, nothing proxied.
    let gw = Gateway::start_named(&pki, "no-ca.toml", &site("")).await;
    let resp = gw
        .client(&pki)
        .build()
        .get(gw.https_url("shop.test", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
}
