//! Prometheus metrics on the admin listener move with what the gateway does, carry no
//! unbounded labels, and pass `promtool check metrics`.

use std::process::{Command, Stdio};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

async fn scrape(gw: &Gateway) -> String {
    reqwest::get(format!("http://{}/metrics", gw.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the sample whose name and labels start with `series`.
fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_allowed_redirected_rejected_and_failed_requests() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let extra = format!(
        // No health check: the request itself finds the backend down (a connect error).
        "\n[[sites]]\nname = \"down\"\nhosts = [\"a.other.test\"]\nupstreams = [\"http://{}\"]\n[sites.upstream.health_check]\nenabled = false\n",
        Upstream::dead_addr()
    );
    let gw = Gateway::start(&pki, &shop_config(&[shop.addr], &extra)).await;
    let client = gw.client(&pki).http1_only().build();

    for _ in 0..3 {
        assert_eq!(
            client
                .get(gw.https_url("shop.test", "/"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    assert_eq!(
        client
            .get(gw.http_url("shop.test", "/"))
            .send()
            .await
            .unwrap()
            .status(),
        308
    );
    let r = client
        .get(gw.https_url("shop.test", "/"))
        .header("host", "unknown.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421);
    assert_eq!(
        client
            .get(gw.https_url("a.other.test", "/"))
            .send()
            .await
            .unwrap()
            .status(),
        502
    );
    // A TLS 1.0-only client: the handshake fails.
    let mut tcp = tokio::net::TcpStream::connect(gw.https).await.unwrap();
    tcp.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00])
        .await
        .unwrap();
    let mut sink = Vec::new();
    let _ = tcp.read_to_end(&mut sink).await;

    // Requests are counted in the logging phase, just after each response, and a failed
    // handshake when Pingora logs it, just after closing the connection. Each worker thread
    // counts its own connections, in its own time: wait for every one.
    for sample in [
        "palisade_requests_total{action=\"allow\",site=\"shop\",status_class=\"2xx\"} 3",
        "palisade_requests_total{action=\"redirect\",site=\"shop\",status_class=\"3xx\"} 1",
        "palisade_requests_total{action=\"reject\",site=\"-\",status_class=\"4xx\"} 1",
        "palisade_requests_total{action=\"upstream_error\",site=\"down\",status_class=\"5xx\"} 1",
    ] {
        gw.metrics_with(sample).await;
    }
    let m = gw
        .metrics_until("a failed handshake", |m| {
            value(m, "palisade_tls_handshake_failures_total") >= 1.0
        })
        .await;

    assert_eq!(
        value(
            &m,
            "palisade_requests_total{action=\"allow\",site=\"shop\",status_class=\"2xx\"}"
        ),
        3.0,
        "{m}"
    );
    assert_eq!(
        value(
            &m,
            "palisade_requests_total{action=\"redirect\",site=\"shop\",status_class=\"3xx\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "palisade_requests_total{action=\"reject\",site=\"-\",status_class=\"4xx\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "palisade_requests_total{action=\"upstream_error\",site=\"down\",status_class=\"5xx\"}"
        ),
        1.0
    );
    assert_eq!(
        value(&m, "palisade_https_redirects_total{site=\"shop\"}"),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "palisade_upstream_errors_total{kind=\"connect\",site=\"down\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "palisade_upstream_duration_seconds_count{site=\"shop\"}"
        ),
        3.0
    );
    assert!(value(&m, "palisade_tls_handshakes_total") >= 1.0, "{m}");
    assert!(
        value(&m, "palisade_tls_handshake_failures_total") >= 1.0,
        "{m}"
    );
    assert!(
        value(
            &m,
            "palisade_certificate_expiry_timestamp_seconds{name=\"shop\"}"
        ) > 1.7e9
    );
    assert_eq!(value(&m, "palisade_config_generation"), 1.0);
    assert_eq!(value(&m, "palisade_build_info{version="), 1.0);
    // No label carries an address, a path or a client-chosen host.
    for forbidden in ["127.0.0.1", "unknown.test", "/"] {
        assert!(
            m.lines()
                .filter(|l| !l.starts_with('#'))
                .all(|l| !l.contains(forbidden)),
            "a label carries `{forbidden}`"
        );
    }
}

/// `promtool`, or `None` outside CI when it is not installed (`./dev test` installs it).
fn promtool() -> Option<Command> {
    if Command::new("promtool").arg("--version").output().is_ok() {
        return Some(Command::new("promtool"));
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "promtool must be installed in CI (./dev test does)"
    );
    eprintln!("promtool not installed: skipped (./dev test installs it)");
    None
}

#[test]
fn shipped_alert_rules_and_scrape_config_pass_promtool() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus");
    for args in [
        vec!["check", "rules", "palisade-alerts.yml"],
        vec!["check", "config", "prometheus.yml"],
        vec!["test", "rules", "palisade-alerts.test.yml"],
    ] {
        let Some(mut cmd) = promtool() else { return };
        let out = cmd.args(&args).current_dir(&dir).output().unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn promtool_accepts_the_live_metrics() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let gw = Gateway::start(&pki, &shop_config(&[shop.addr], "")).await;
    let client = gw.client(&pki).build();
    client
        .get(gw.https_url("shop.test", "/"))
        .send()
        .await
        .unwrap();

    let m = scrape(&gw).await;
    let Ok(mut promtool) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool must be installed in CI (./dev test does)"
        );
        eprintln!("promtool not installed: skipped (./dev test installs it)");
        return;
    };
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(m.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_can_require_a_bearer_token() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let config = shop_config(&[shop.addr], "").replace(
        "shutdown_grace",
        "admin_token = \"s3cr3t-scrape-t0ken\"\nshutdown_grace",
    );
    let gw = Gateway::start(&pki, &config).await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/metrics", gw.admin);

    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(
        http.get(&url)
            .bearer_auth("wrong-token-value!!")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let ok = http
        .get(&url)
        .bearer_auth("s3cr3t-scrape-t0ken")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.unwrap().contains("palisade_build_info"));
    let health = http
        .get(format!("http://{}/healthz", gw.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "health stays open for probes");
}

#[test]
fn grafana_dashboard_queries_parse_and_use_only_registered_metrics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana");
    let dashboard: serde_json::Value = serde_json::from_str(&read(&dir.join("palisade.json")))
        .expect("the dashboard is valid JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(exprs.len() >= 15);

    // Every metric a panel reads is one the gateway registers (vectors without observations
    // are not in a fresh scrape, so the registry's source is the reference).
    let registered = read(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("crates/palisade-gateway/src/metrics.rs"),
    );
    for expr in &exprs {
        for name in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if name.starts_with("palisade_") {
                let base = name.trim_end_matches("_bucket");
                assert!(
                    registered.contains(&format!("\"{base}\"")),
                    "the dashboard reads `{name}`, which the gateway does not register"
                );
            }
        }
    }
    let pki = Pki::new();

    // Every query is valid PromQL (with Grafana's variables filled in).
    let Some(mut cmd) = promtool() else { return };
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        let e = e
            .replace("$__rate_interval", "5m")
            .replace("$instance", ".*")
            .replace("$site", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:q{i}\n        expr: {}\n",
            serde_json::to_string(&e).unwrap()
        ));
    }
    let file = pki.path("dashboard-rules.yml");
    std::fs::write(&file, rules).unwrap();
    let out = cmd.args(["check", "rules"]).arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
