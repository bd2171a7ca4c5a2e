//! Rate limits, bans and access control through the real gateway: 429 with Retry-After,
//! per-key independence, trusted and untrusted X-Forwarded-For, escalation to bans and their
//! expiry, allow-lists over bans, basic auth, client certificates, API keys, and a cluster of
//! two gateways sharing limits through a real Redis.

use std::net::IpAddr;
use std::process::Command;

use sha2::Digest;

use crate::support::redis::Redis;
use crate::support::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The shop site with 127.0.0.2 as a trusted proxy, plus `extra` site settings.
fn config(shop: &Upstream, extra: &str) -> String {
    shop_config(&[shop.addr], extra).replace(
        "shutdown_grace",
        "trusted_proxies = [\"127.0.0.2/32\"]\nshutdown_grace",
    )
}

async fn statuses(client: &reqwest::Client, url: &str, n: usize) -> Vec<u16> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(client.get(url).send().await.unwrap().status().as_u16());
    }
    v
}

const SEARCH_3_PER_MIN: &str = "\n[[sites.routes]]\nname = \"search\"\npath = \"/search\"\nrate_limit = { key = \"ip\", rate = \"3/min\" }\n";

#[tokio::test(flavor = "multi_thread")]
async fn over_the_limit_gets_429_with_retry_after_and_clients_are_independent() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let gw = Gateway::start(&pki, &config(&shop, SEARCH_3_PER_MIN)).await;
    let a = gw.client(&pki).source_ip(ip("127.0.0.1")).build();
    let b = gw.client(&pki).source_ip(ip("127.0.0.3")).build();
    let url = gw.https_url("shop.test", "/search?q=shoes");

    assert_eq!(statuses(&a, &url, 3).await, [200, 200, 200]);
    let limited = a
        .get(&url)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    let retry: u64 = header_values(&limited, "retry-after")[0].parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        limited.json::<serde_json::Value>().await.unwrap()["status"],
        429
    );
    assert_eq!(
        statuses(&b, &url, 3).await,
        [200, 200, 200],
        "another client has its own budget"
    );
    assert_eq!(
        statuses(&a, &gw.https_url("shop.test", "/cart"), 1).await,
        [200],
        "other routes are not limited"
    );
    assert_eq!(
        shop.requests(),
        7,
        "the limited request never reached the shop"
    );

    let m = gw
        .metrics_with(
            "palisade_requests_total{action=\"limit\",site=\"shop\",status_class=\"4xx\"} 1",
        )
        .await;
    assert!(
        m.contains("palisade_rate_limited_total{mode=\"block\",route=\"search\",site=\"shop\"} 1"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_key_falls_back_to_the_client_ip_never_to_unlimited() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let route = "\n[[sites.routes]]\nname = \"api\"\npath = \"/api\"\nrate_limit = { key = \"header:x-customer-id\", rate = \"2/min\" }\n";
    let gw = Gateway::start(&pki, &config(&shop, route)).await;
    let client = gw.client(&pki).build();
    let url = gw.https_url("shop.test", "/api/cart");
    let with = |id: &'static str| {
        let c = client.clone();
        let u = url.clone();
        async move {
            c.get(&u)
                .header("x-customer-id", id)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };

    assert_eq!(
        [
            with("alice").await,
            with("alice").await,
            with("alice").await
        ],
        [200, 200, 429]
    );
    assert_eq!(with("bob").await, 200, "per-key independence");
    assert_eq!(
        statuses(&client, &url, 3).await,
        [200, 200, 429],
        "no header: keyed by IP, still limited"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_for_identifies_clients_only_behind_a_trusted_proxy() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let route = "\n[[sites.routes]]\nname = \"login\"\npath = \"/login\"\nrate_limit = { key = \"ip\", rate = \"2/min\" }\n";
    let gw = Gateway::start(&pki, &config(&shop, route)).await;
    let url = gw.https_url("shop.test", "/login");

    // Behind the trusted proxy, each real client has its own budget.
    let proxy = gw.client(&pki).source_ip(ip("127.0.0.2")).build();
    let via = |client: &reqwest::Client, xff: &str| {
        client
            .get(&url)
            .header("x-forwarded-for", xff.to_string())
            .send()
    };
    for expected in [200, 200, 429] {
        assert_eq!(via(&proxy, "203.0.113.1").await.unwrap().status(), expected);
    }
    assert_eq!(via(&proxy, "203.0.113.2").await.unwrap().status(), 200);

    // A client that forges X-Forwarded-For is still itself: rotating the header does not help.
    let forger = gw.client(&pki).source_ip(ip("127.0.0.1")).build();
    let mut got = Vec::new();
    for i in 0..3 {
        got.push(
            via(&forger, &format!("198.51.100.{i}"))
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(got, [200, 200, 429]);
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_violations_ban_the_client_until_lifted_or_expired() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let extra = "\n[sites.bans]\nviolations = 2\nwindow = \"1m\"\nban = \"2s\"\n\n[[sites.routes]]\nname = \"login\"\npath = \"/login\"\nrate_limit = { key = \"ip\", rate = \"1/min\" }\n";
    let gw = Gateway::start(&pki, &config(&shop, extra)).await;
    let client = gw.client(&pki).build();
    let login = gw.https_url("shop.test", "/login");
    let home = gw.https_url("shop.test", "/");

    assert_eq!(
        statuses(&client, &login, 3).await,
        [200, 429, 429],
        "two violations"
    );
    let banned = client.get(&home).send().await.unwrap();
    assert_eq!(banned.status(), 403, "banned from the whole site");
    assert!(!header_values(&banned, "retry-after").is_empty());

    // Operators see and lift bans from the command line.
    let admin = gw.admin.to_string();
    let list = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["bans", "list", "--admin", &admin])
        .output()
        .unwrap();
    let list = String::from_utf8(list.stdout).unwrap();
    assert!(
        list.contains("\"ip\":\"127.0.0.1\"") && list.contains("\"site\":\"shop\""),
        "{list}"
    );
    let lift = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["bans", "lift", "127.0.0.1", "--admin", &admin])
        .output()
        .unwrap();
    assert!(lift.status.success());
    assert_eq!(
        client.get(&home).send().await.unwrap().status(),
        200,
        "lifted"
    );

    // Banned again, the ban expires by itself (2 s).
    assert_eq!(statuses(&client, &login, 2).await, [429, 429]);
    assert_eq!(client.get(&home).send().await.unwrap().status(), 403);
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    while client.get(&home).send().await.unwrap().status() == 403 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ban never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn allow_list_wins_over_limits_and_bans_and_deny_list_blocks() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let extra = format!(
        "\n[sites.access]\nallow = [\"127.0.0.4/32\"]\ndeny = [\"127.0.0.3/32\"]\n\n[sites.bans]\nviolations = 1\nwindow = \"1m\"\nban = \"10m\"\n{SEARCH_3_PER_MIN}"
    );
    let gw = Gateway::start(&pki, &config(&shop, &extra)).await;
    let url = gw.https_url("shop.test", "/search?q=x");

    let operator = gw.client(&pki).source_ip(ip("127.0.0.4")).build();
    assert_eq!(
        statuses(&operator, &url, 6).await,
        [200; 6],
        "allow-listed: never limited or banned"
    );
    let attack = operator
        .get(gw.https_url("shop.test", "/search?q=%3Cscript%3Ealert(1)%3C/script%3E"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        attack.status(),
        403,
        "the WAF still applies to allow-listed clients"
    );
    assert_eq!(
        statuses(&operator, &url, 1).await,
        [200],
        "and a WAF block does not ban them"
    );

    let denied = gw.client(&pki).source_ip(ip("127.0.0.3")).build();
    assert_eq!(
        statuses(&denied, &gw.https_url("shop.test", "/"), 1).await,
        [403]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_guards_the_back_office_whatever_the_path_spelling() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let hash = bcrypt::hash("c0rrect-horse", 4).unwrap();
    let extra = format!(
        "\n[[sites.routes]]\nname = \"admin\"\npath = \"/admin\"\nbasic_auth = {{ realm = \"Back office\", users = [{{ name = \"ops\", hash = \"{hash}\" }}] }}\n"
    );
    let gw = Gateway::start(&pki, &config(&shop, &extra)).await;
    let client = gw.client(&pki).http1_only().build();

    for path in [
        "/admin",
        "/admin/orders",
        "/Admin",
        "//admin",
        "/%61dmin",
        "/shop/../admin",
        "/admin%2f",
    ] {
        let r = client
            .get(gw.https_url("shop.test", path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert!(
            header_values(&r, "www-authenticate")[0].starts_with("Basic realm=\"Back office\""),
            "{path}"
        );
    }
    let wrong = client
        .get(gw.https_url("shop.test", "/admin"))
        .basic_auth("ops", Some("guess"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = client
        .get(gw.https_url("shop.test", "/admin"))
        .basic_auth("ops", Some("c0rrect-horse"))
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    assert_eq!(
        statuses(&client, &gw.https_url("shop.test", "/"), 1).await,
        [200],
        "the shop stays public"
    );
    assert_eq!(shop.requests(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_back_office_can_require_a_client_certificate() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let config = config(
        &shop,
        "\n[[sites.routes]]\nname = \"admin\"\npath = \"/admin\"\nclient_cert = true\n",
    )
    .replace("[tls]\n", "[tls]\nclient_ca = \"ca.pem\"\n");
    let gw = Gateway::start(&pki, &config).await;
    let admin = gw.https_url("shop.test", "/admin");

    let anonymous = gw.client(&pki).build();
    assert_eq!(statuses(&anonymous, &admin, 1).await, [403]);
    assert_eq!(
        statuses(&anonymous, &gw.https_url("shop.test", "/"), 1).await,
        [200],
        "the shop needs no certificate"
    );

    let operator_cert = pki.ca.issue_client("operator@shop.test", 30).unwrap();
    let operator = gw.client(&pki).client_cert(&pki, &operator_cert).build();
    assert_eq!(statuses(&operator, &admin, 1).await, [200]);

    let stranger_ca = palisade_demo::pki::Ca::new("Someone Else").unwrap();
    let stranger_cert = stranger_ca.issue_client("mallory", 30).unwrap();
    let stranger = gw.client(&pki).client_cert(&pki, &stranger_cert).build();
    assert!(
        stranger.get(&admin).send().await.is_err(),
        "a certificate from another CA fails the handshake"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn api_keys_are_checked_against_hashes_and_have_their_own_limits() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let sha = |k: &str| hex(&sha2::Sha256::digest(k.as_bytes()));
    let extra = format!(
        "\n[[sites.routes]]\nname = \"api\"\npath = \"/api\"\napi_keys = {{ keys = [{{ name = \"partner\", sha256 = \"{}\", rate = \"2/min\" }}, {{ name = \"internal\", sha256 = \"{}\" }}] }}\n",
        sha("k-partner-7f3a9"),
        sha("k-internal-c21d0")
    );
    let gw = Gateway::start(&pki, &config(&shop, &extra)).await;
    let client = gw.client(&pki).build();
    let url = gw.https_url("shop.test", "/api/orders");
    let with = |key: &'static str| client.get(&url).header("x-api-key", key).send();

    assert_eq!(statuses(&client, &url, 1).await, [401], "no key");
    assert_eq!(with("k-guess").await.unwrap().status(), 401, "unknown key");
    let mut partner = Vec::new();
    for _ in 0..3 {
        partner.push(with("k-partner-7f3a9").await.unwrap().status().as_u16());
    }
    assert_eq!(
        partner,
        [200, 200, 429],
        "the partner key has its own limit"
    );
    for _ in 0..4 {
        assert_eq!(
            with("k-internal-c21d0").await.unwrap().status(),
            200,
            "no limit on the internal key"
        );
    }
}

/// Wait (bounded) until `gw` has completed `n` more sync rounds with Redis.
async fn wait_syncs(gw: &Gateway, n: u64) {
    let read = || async {
        let m = gw.metrics_with("palisade_cluster_syncs_total ").await;
        m.lines()
            .find_map(|l| l.strip_prefix("palisade_cluster_syncs_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let target = read().await + n;
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    while read().await < target {
        assert!(tokio::time::Instant::now() < deadline, "no sync with Redis");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_shares_limits_and_survives_redis_going_away() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let cluster = format!(
        "\n[cluster]\nredis = \"{}\"\nsync_interval = \"50ms\"\n",
        redis.url()
    );
    let text = format!("{}{}", config(&shop, SEARCH_3_PER_MIN), "")
        .replace("[logging]", &format!("{cluster}\n[logging]"));
    let one = Gateway::start_named(&pki, "one.toml", &text).await;
    let two = Gateway::start_named(&pki, "two.toml", &text).await;
    let c1 = one.client(&pki).build();
    let c2 = two.client(&pki).build();
    let url1 = one.https_url("shop.test", "/search?q=a");
    let url2 = two.https_url("shop.test", "/search?q=a");

    // The budget spent through the first instance counts on the second. The second may admit
    // one request for a key it has never seen (the documented consistency of `sync` mode);
    // after its next sync rounds it refuses.
    assert_eq!(statuses(&c1, &url1, 3).await, [200, 200, 200]);
    wait_syncs(&one, 2).await;
    let first = statuses(&c2, &url2, 1).await[0];
    assert!(first == 200 || first == 429, "{first}");
    wait_syncs(&two, 2).await;
    assert_eq!(
        statuses(&c2, &url2, 2).await,
        [429, 429],
        "limited through the other instance"
    );

    // Redis goes away: both keep deciding locally, no request fails.
    redis.kill();
    let metrics = format!("http://{}/metrics", one.admin);
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    loop {
        for (c, u) in [(&c1, &url1), (&c2, &url2)] {
            let s = c.get(u).send().await.unwrap().status().as_u16();
            assert!(
                s == 200 || s == 429,
                "a request failed while Redis was down: {s}"
            );
        }
        let m = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
        if m.contains("palisade_cluster_degraded 1") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "degradation never reported"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // It comes back, and so does the cluster.
    redis.restart().await;
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    loop {
        let m = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
        if m.contains("palisade_cluster_degraded 0") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
