//! The command line: `check`, `run` with reloads, and `demo`, as an operator uses them.

use std::process::{Command, Stdio};

use crate::support::upstream::Echo;
use crate::support::*;

fn palisade() -> Command {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
}

#[test]
fn check_reports_a_misspelt_key_with_file_line_and_column() {
    let pki = Pki::new();
    let path = pki.path("palisade.toml");
    let text = shop_config(
        &["127.0.0.1:9".parse().unwrap()],
        "\n[sites.hsts]\nmax_agee = 600\n",
    );
    std::fs::write(&path, &text).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("max_agee"))
        .unwrap()
        + 1;

    let out = palisade()
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();

    assert_eq!(out.status.code(), Some(78), "EX_CONFIG");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with(&format!(
            "{}:{line}:1: unknown field `max_agee`",
            path.display()
        )),
        "{stderr}"
    );
}

#[test]
fn check_accepts_a_valid_config_and_prints_lints() {
    let pki = Pki::new();
    let path = pki.path("palisade.toml");
    let text = shop_config(
        &["127.0.0.1:9".parse().unwrap()],
        "\n[sites.hsts]\nenabled = false\n",
    );
    std::fs::write(&path, text).unwrap();

    let out = palisade()
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();

    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains(": ok (1 sites, 2 certificates, 1 warnings)"));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("warning: site `shop`: HSTS is disabled"));
}

#[test]
fn version_and_help() {
    let out = palisade().arg("--version").output().unwrap();
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .starts_with("palisade "));
    let out = palisade().arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for cmd in ["run", "check", "demo"] {
        assert!(help.contains(cmd), "{help}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_a_good_config_and_keeps_serving_on_a_bad_one() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let pki = Pki::new();
    let mut gw = Gateway::start(&pki, &shop_config(&[a.addr], "")).await;
    let client = gw.client(&pki).build();
    let backend = |resp| async { Echo::of(resp).await.str("backend").to_string() };

    // A broken config is refused; the running one keeps serving.
    std::fs::write(&gw.config, "[[sites]]\nname = 1\n").unwrap();
    gw.signal("HUP");
    gw.wait_for("reload failed generation=1").await;
    let resp = client
        .get(gw.https_url("shop.test", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(backend(resp).await, "a");
    assert!(!gw.stderr_text().contains("panicked"));

    // A good one is swapped in.
    std::fs::write(&gw.config, shop_config(&[b.addr], "")).unwrap();
    gw.signal("HUP");
    gw.wait_for("reloaded generation=2").await;
    let resp = client
        .get(gw.https_url("shop.test", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(backend(resp).await, "b");

    assert!(gw.stop().success(), "stops cleanly on SIGINT");
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_starts_answers_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let child = palisade()
        .args([
            "demo",
            "--http",
            "127.0.0.1:0",
            "--https",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ])
        .arg("--dir")
        .arg(dir.path())
        .arg("--log-dir")
        .arg(dir.path().join("logs"))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let gw = Gateway::attach(
        child,
        dir.path().join("palisade.toml"),
        dir.path().join("stderr"),
    )
    .await;

    let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .resolve("localhost", gw.https)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = format!("https://localhost:{}", gw.https.port());

    let home = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(home.status(), 200);
    assert!(
        header_values(&home, "server").is_empty(),
        "Apache fingerprint removed"
    );
    assert!(
        header_values(&home, "x-powered-by").is_empty(),
        "PHP fingerprint removed"
    );
    assert_eq!(
        header_values(&home, "strict-transport-security"),
        ["max-age=31536000"]
    );
    let cookies = header_values(&home, "set-cookie");
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("session=") && c.ends_with("; Secure; HttpOnly; SameSite=Lax")),
        "{cookies:?}"
    );
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("cart=") && !c.contains("HttpOnly")),
        "{cookies:?}"
    );

    let xss = client
        .get(format!("{base}/search?q=%3Cscript%3Ealert(1)%3C/script%3E"))
        .send()
        .await
        .unwrap();
    assert_eq!(xss.status(), 403, "the demo runs the WAF in block mode");

    let old = client.get(format!("{base}/old")).send().await.unwrap();
    assert_eq!(header_values(&old, "location"), [format!("{base}/")]);

    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("http://{}/search?q=shoes", gw.http))
        .header("host", "localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 308);
    assert_eq!(
        header_values(&plain, "location"),
        [format!("{base}/search?q=shoes")]
    );

    // The back office is behind basic auth; the demo printed the password.
    let password = gw
        .banner
        .iter()
        .find_map(|l| l.split("-u admin:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the banner prints the admin password")
        .to_string();
    let admin = client.get(format!("{base}/admin")).send().await.unwrap();
    assert_eq!(admin.status(), 401);
    assert!(header_values(&admin, "www-authenticate")[0].starts_with("Basic realm="));
    let admin = client
        .get(format!("{base}/admin"))
        .basic_auth("admin", Some(&password))
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);

    let login = client
        .post(format!(
            "{base}/login?next=%2Faccount&password=Sup3rS3cretPw"
        ))
        .form(&[("username", "jane"), ("password", "Sup3rS3cretPw")])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    // Five logins per minute per client: the sixth within the minute gets 429.
    let mut statuses = vec![login.status().as_u16()];
    for _ in 0..5 {
        let r = client
            .post(format!("{base}/login"))
            .form(&[("username", "jane"), ("password", "guess")])
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429]);

    let log = dir.path().join("logs").join("palisade.log");
    assert!(gw.stop().success(), "stops cleanly on Ctrl-C");
    let log = read(&log);
    assert!(
        log.contains("\"request_id\""),
        "logs were written where the demo said"
    );
    assert!(log.contains("\"path\":\"/login\""));
    assert!(
        !log.contains("Sup3rS3cretPw"),
        "the password never reaches the log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_in_flight_requests_finish() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let gw = Gateway::start(
        &pki,
        &shop_config(&[shop.addr], "")
            .replace("shutdown_grace = \"1s\"", "shutdown_grace = \"20s\""),
    )
    .await;
    let client = gw.client(&pki).build();
    let url = gw.https_url("shop.test", "/hold");
    let in_flight = tokio::spawn(async move { client.get(url).send().await });
    shop.hold.arrived.notified().await;

    gw.signal("TERM");
    // Shutdown has begun once readiness says so (or the admin listener is gone).
    let admin = reqwest::Client::new();
    loop {
        match admin
            .get(format!("http://{}/readyz", gw.admin))
            .send()
            .await
        {
            Ok(r) if r.status() == 503 => break,
            Err(_) => break,
            Ok(_) => tokio::task::yield_now().await,
        }
    }
    shop.hold.release.notify_one();

    let resp = in_flight.await.unwrap().unwrap();
    assert_eq!(
        resp.status(),
        200,
        "the request in flight at SIGTERM completed"
    );
    assert!(gw.exited().await.success());
}
