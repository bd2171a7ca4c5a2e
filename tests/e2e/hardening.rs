//! Every https response leaves hardened: fingerprints gone, HSTS and security headers in,
//! cookie flags added (with exceptions), Location upgraded, request id returned.

use crate::support::upstream::Echo;
use crate::support::*;

const CART_EXCEPTION: &str = "\n[sites.cookies.exceptions]\ncart = { http_only = false }\n";

#[tokio::test(flavor = "multi_thread")]
async fn fingerprints_are_removed_and_security_headers_added() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let gw = Gateway::start(&pki, &shop_config(&[shop.addr], "")).await;
    let client = gw.client(&pki).build();

    let resp = client
        .get(gw.https_url("shop.test", "/fingerprint"))
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status(), 200);
    for gone in [
        "server",
        "x-powered-by",
        "x-aspnet-version",
        "x-aspnetmvc-version",
        "x-generator",
    ] {
        assert!(header_values(&resp, gone).is_empty(), "{gone} leaked");
    }
    assert_eq!(
        header_values(&resp, "strict-transport-security"),
        ["max-age=31536000"]
    );
    assert_eq!(header_values(&resp, "x-content-type-options"), ["nosniff"]);
    assert_eq!(header_values(&resp, "x-frame-options"), ["SAMEORIGIN"]);
    assert_eq!(
        header_values(&resp, "referrer-policy"),
        ["strict-origin-when-cross-origin"]
    );
    assert_eq!(header_values(&resp, "permissions-policy").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_on_every_response_including_upstream_errors() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let gw = Gateway::start(&pki, &shop_config(&[shop.addr], "")).await;
    let client = gw.client(&pki).build();

    for path in ["/", "/boom", "/redirect", "/missing"] {
        let resp = client
            .get(gw.https_url("shop.test", path))
            .send()
            .await
            .unwrap();
        assert_eq!(
            header_values(&resp, "strict-transport-security"),
            ["max-age=31536000"],
            "{path}"
        );
        assert_eq!(
            header_values(&resp, "x-content-type-options"),
            ["nosniff"],
            "{path}"
        );
        assert!(header_values(&resp, "server").is_empty(), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn csp_and_hsts_options_are_applied() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let extra = "\n[sites.hsts]\ninclude_subdomains = true\npreload = true\n\n[sites.headers]\ncontent_security_policy = \"default-src 'self'\"\ncsp_mode = \"report-only\"\n";
    let gw = Gateway::start(&pki, &shop_config(&[shop.addr], extra)).await;
    let client = gw.client(&pki).build();

    let resp = client
        .get(gw.https_url("shop.test", "/"))
        .send()
        .await
        .unwrap();

    assert_eq!(
        header_values(&resp, "strict-transport-security"),
        ["max-age=31536000; includeSubDomains; preload"]
    );
    assert_eq!(
        header_values(&resp, "content-security-policy-report-only"),
        ["default-src 'self'"]
    );
    assert!(header_values(&resp, "content-security-policy").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_security_headers_are_kept() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let gw = Gateway::start(&pki, &shop_config(&[shop.addr], "")).await;
    let client = gw.client(&pki).build();

    let resp = client
        .get(gw.https_url("shop.test", "/own-frame-options"))
        .send()
        .await
        .unwrap();

    assert_eq!(header_values(&resp, "x-frame-options"), ["DENY"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn cookies_get_secure_httponly_samesite_with_per_name_exceptions() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let gw = Gateway::start(&pki, &shop_config(&[shop.addr], CART_EXCEPTION)).await;
    let client = gw.client(&pki).build();

    let resp = client
        .get(gw.https_url("shop.test", "/cookies"))
        .send()
        .await
        .unwrap();

    assert_eq!(
        header_values(&resp, "set-cookie"),
        [
            "session=s3cr3t; path=/; Secure; HttpOnly; SameSite=Lax",
            "cart=42; path=/; Secure; SameSite=Lax",
            "pref=dark; Path=/; Secure; HttpOnly; SameSite=Strict",
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn location_to_own_host_is_rewritten_to_https_and_foreign_left_alone() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let gw = Gateway::start(&pki, &shop_config(&[shop.addr], "")).await;
    let client = gw.client(&pki).build();

    let resp = client
        .get(gw.https_url("shop.test", "/redirect"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(
        header_values(&resp, "location"),
        [format!("https://shop.test:{}/next?x=1", gw.https.port())]
    );

    let resp = client
        .get(gw.https_url("shop.test", "/redirect-foreign"))
        .send()
        .await
        .unwrap();
    assert_eq!(header_values(&resp, "location"), ["http://elsewhere.test/"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn request_id_reaches_the_shop_and_comes_back() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let gw = Gateway::start(&pki, &shop_config(&[shop.addr], "")).await;
    let client = gw.client(&pki).build();

    let resp = client
        .get(gw.https_url("shop.test", "/"))
        .header("x-request-id", "forged-by-client")
        .send()
        .await
        .unwrap();

    let returned = header_values(&resp, "x-request-id");
    assert_eq!(returned.len(), 1);
    assert_ne!(
        returned[0], "forged-by-client",
        "an untrusted client cannot choose its id"
    );
    assert_eq!(returned[0].len(), 32);
    let echo = Echo::of(resp).await;
    assert_eq!(
        echo.header("x-request-id").as_deref(),
        Some(returned[0].as_str())
    );
}
