//! Logs that never leak customer data: a seeded fuzz of requests carrying card numbers,
//! passwords, tokens and e-mails in every part, then every byte the gateway wrote is scanned.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::*;

/// A Luhn-valid 16-digit Visa-like number.
fn card(rng: &mut StdRng) -> String {
    let mut digits: Vec<u32> = vec![4];
    for _ in 0..14 {
        digits.push(rng.gen_range(0..10));
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    digits.push((10 - sum % 10) % 10);
    digits.iter().map(|d| d.to_string()).collect()
}

fn word(rng: &mut StdRng, n: usize) -> String {
    const A: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..n)
        .map(|_| A[rng.gen_range(0..A.len())] as char)
        .collect()
}

/// The values that must not appear anywhere the gateway writes.
struct Secrets {
    cards: Vec<String>,
    words: Vec<String>,
}

impl Secrets {
    fn leaks(&self, text: &str) -> Vec<String> {
        let digits: String = text.chars().filter(|c| c.is_ascii_digit()).collect();
        let mut found = Vec::new();
        for c in &self.cards {
            // The first twelve digits are never kept (at most the last four are).
            if text.contains(&c[..12]) || digits.contains(c.as_str()) {
                found.push(format!("card {c}"));
            }
        }
        for w in &self.words {
            if text.contains(w.as_str()) {
                found.push(format!("secret {w}"));
            }
        }
        found
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzzed_requests_leave_no_sensitive_value_in_any_output() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let config = shop_config(&[shop.addr], "").replace(
        "[logging]\nlevel = \"info\"",
        "[logging]\nlevel = \"debug\"\nformat = \"json\"\noutput = \"gateway.log\"",
    );
    let gw = Gateway::start(&pki, &config).await;
    let client = gw.client(&pki).http1_only().build();
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut secrets = Secrets {
        cards: vec![],
        words: vec![],
    };

    for i in 0..120 {
        let card = card(&mut rng);
        let spaced = format!(
            "{} {} {} {}",
            &card[..4],
            &card[4..8],
            &card[8..12],
            &card[12..]
        );
        let password = format!("pw{}", word(&mut rng, 14));
        let token = format!("tk{}", word(&mut rng, 24));
        let email_user = format!("u{}", word(&mut rng, 10).to_lowercase());
        let email = format!("{email_user}@example.com");
        secrets.cards.push(card.clone());
        secrets
            .words
            .extend([password.clone(), token.clone(), email_user.clone()]);
        // Every fifth request also carries an attack, so it is blocked and logged as an event.
        let attack = if i % 5 == 0 {
            "&x=%3Cscript%3Ealert(1)%3C%2Fscript%3E"
        } else {
            ""
        };
        let (path, body, content_type) = match i % 4 {
            0 => (
                format!("/order/{card}?email={email}&password={password}{attack}"),
                String::new(),
                "text/plain",
            ),
            1 => (
                format!(
                    "/checkout?card_number={}&cvv=123{attack}",
                    spaced.replace(' ', "%20")
                ),
                format!("card_number={card}&cvv=123&password={password}&email={email}"),
                "application/x-www-form-urlencoded",
            ),
            2 => (
                format!("/api/login?token={token}{attack}"),
                format!(
                    r#"{{"user":{{"email":"{email}","password":"{password}","card":"{spaced}"}}}}"#
                ),
                "application/json",
            ),
            _ => (
                format!("/search?q={}{attack}", spaced.replace(' ', "+")),
                String::new(),
                "text/plain",
            ),
        };
        let host = if i % 7 == 0 {
            gw.http_url("shop.test", &path)
        } else {
            gw.https_url("shop.test", &path)
        };
        let mut req = client
            .post(host)
            .header("authorization", format!("Bearer {token}"))
            .header("cookie", format!("session={token}; pref=dark"))
            .header("x-api-key", token.clone())
            .header(
                "user-agent",
                format!("Mozilla/5.0 card {card} mail {email}"),
            )
            .header("content-type", content_type);
        if !body.is_empty() {
            req = req.body(body);
        }
        let status = req.send().await.unwrap().status().as_u16();
        assert!([200, 308, 403].contains(&status), "request {i}: {status}");
    }

    let metrics = reqwest::get(format!("http://{}/metrics", gw.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let stderr = gw.stderr_text();
    assert!(gw.stop().success());
    let log = read(&pki.path("gateway.log"));
    assert!(
        log.lines().count() >= 120,
        "one access line per request at least"
    );
    assert!(
        log.contains("\"event\":\"waf\""),
        "blocked requests were logged as events"
    );

    for (name, text) in [
        ("log file", &log),
        ("stderr", &stderr),
        ("/metrics", &metrics),
    ] {
        let leaks = secrets.leaks(text);
        assert!(
            leaks.is_empty(),
            "{} sensitive values in the {name}, e.g. {:?}",
            leaks.len(),
            &leaks[..leaks.len().min(3)]
        );
    }
    let cards_masked: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("palisade_redactions_total{kind=\"card\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(
        cards_masked >= 120.0,
        "every card was masked and counted: {cards_masked}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn access_lines_follow_the_schema() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let config = shop_config(&[shop.addr], "").replace(
        "[logging]\nlevel = \"info\"",
        "[logging]\nlevel = \"info\"\nformat = \"json\"\noutput = \"gateway.log\"",
    );
    let gw = Gateway::start(&pki, &config).await;
    let client = gw.client(&pki).build();
    let resp = client
        .get(gw.https_url("shop.test", "/search?q=shoes&password=hunter2xyz"))
        .header("user-agent", "curl/8")
        .send()
        .await
        .unwrap();
    let id = header_values(&resp, "x-request-id").remove(0);
    // Benign traffic never trips the redactor (timings once produced card-like digit runs).
    for _ in 0..150 {
        client
            .get(gw.https_url("shop.test", "/product/42"))
            .send()
            .await
            .unwrap();
    }
    let m = gw
        .metrics_with("palisade_redactions_total{kind=\"card\"}")
        .await;
    assert!(
        m.contains("palisade_redactions_total{kind=\"card\"} 0"),
        "benign lines were redacted"
    );
    assert!(gw.stop().success());

    let log = read(&pki.path("gateway.log"));
    let line = log
        .lines()
        .find(|l| l.contains(&id) && l.contains("palisade::access"))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    for field in [
        "timestamp",
        "request_id",
        "site",
        "client_ip",
        "method",
        "path",
        "query",
        "http_version",
        "status",
        "bytes_in",
        "bytes_out",
        "duration_us",
        "upstream_us",
        "user_agent",
        "tls_version",
        "action",
        "waf_rules",
        "waf_score",
    ] {
        assert!(v.get(field).is_some(), "missing {field}: {line}");
    }
    assert_eq!(v["site"], "shop");
    assert!(
        v["duration_us"].is_u64() && v["upstream_us"].is_u64(),
        "timings are whole microseconds"
    );
    assert_eq!(v["status"], 200);
    assert_eq!(v["action"], "allow");
    assert_eq!(v["path"], "/search");
    assert_eq!(
        v["client_ip"], "127.0.0.0",
        "client IPs are truncated by default"
    );
    assert!(v["query"]
        .as_str()
        .unwrap()
        .starts_with("q=shoes&password="));
    assert!(!line.contains("hunter2xyz"));
    assert!(
        v["tls_version"].as_str().unwrap().starts_with("TLSv1."),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigusr1_reopens_the_log_file_for_logrotate() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let config = shop_config(&[shop.addr], "").replace(
        "[logging]\nlevel = \"info\"",
        "[logging]\nlevel = \"info\"\nformat = \"json\"\noutput = \"gateway.log\"",
    );
    let mut gw = Gateway::start(&pki, &config).await;
    let client = gw.client(&pki).build();
    client
        .get(gw.https_url("shop.test", "/before"))
        .send()
        .await
        .unwrap();

    std::fs::rename(pki.path("gateway.log"), pki.path("gateway.log.1")).unwrap();
    gw.signal("USR1");
    gw.wait_for("log reopened").await;
    client
        .get(gw.https_url("shop.test", "/after"))
        .send()
        .await
        .unwrap();
    assert!(gw.stop().success());

    let old = read(&pki.path("gateway.log.1"));
    let new = read(&pki.path("gateway.log"));
    assert!(old.contains("\"path\":\"/before\"") && !old.contains("\"path\":\"/after\""));
    assert!(new.contains("\"path\":\"/after\""));
}
