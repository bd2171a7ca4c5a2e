//! The demo's login limit, without a gateway: `POST /login` 5 per minute per client, then a ban
//! after repeated 429s.
//!
//! `cargo run -p palisade-limits --example login_limit`
//! With a cluster: `REDIS_URL=redis://127.0.0.1:6379 cargo run -p palisade-limits --example login_limit`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::SystemTime;

use palisade_limits::{
    admission, AccessList, AccessSettings, Admission, Bans, Cluster, ClusterSettings, Decision,
    EscalationSettings, Limiter, RateLimitSettings, SimpleRequest,
};

const CONFIG: &str = r#"
[rate_limit]
key = "ip+form:username"
rate = "5/min"

[escalation]
violations = 3
window = "10m"
ban = "15m"
max_ban = "4h"
statuses = [401]

[access]
allow = ["10.0.0.0/8"]
deny = ["203.0.113.0/24"]
"#;

#[derive(serde::Deserialize)]
struct Config {
    rate_limit: RateLimitSettings,
    escalation: EscalationSettings,
    access: AccessSettings,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cfg: Config = toml::from_str(CONFIG).unwrap();
    let limiter = Limiter::new("demo/login", &cfg.rate_limit).unwrap();
    let bans = Bans::new(&cfg.escalation).unwrap();
    let access = AccessList::new(&cfg.access).unwrap();
    if let Ok(url) = std::env::var("REDIS_URL") {
        let cluster = Cluster::new(&ClusterSettings {
            redis: toml::Spanned::new(0..0, url),
            sync_interval: None,
            mode: None,
            prefix: Some("example".into()),
        })
        .unwrap();
        cluster.attach_limiter(&limiter);
        cluster.attach_bans(&bans);
        match cluster.sync_now().await {
            Ok(()) => println!("cluster: connected"),
            Err(e) => println!("cluster: {e} (limits stay local)"),
        }
        tokio::spawn(cluster.run());
    }
    let ip = "192.0.2.10".parse().unwrap();
    let login = SimpleRequest::new(ip).body(
        "application/x-www-form-urlencoded",
        "username=alice%40example.com&password=guess",
    );
    for n in 1..=10 {
        let now = SystemTime::now();
        let verdict = match admission(&access, Some(&bans), ip, now) {
            Admission::AllowListed => "allow-listed".to_owned(),
            Admission::Denied => "403 denied".to_owned(),
            Admission::Banned(left) => format!("403 banned for {}s", left.as_secs()),
            Admission::Continue => match limiter.check(&login) {
                Decision::Allow => "200".to_owned(),
                Decision::Limited { retry_after, .. } => {
                    let ban = bans.record_violation(ip, now);
                    format!(
                        "429 Retry-After: {}{}",
                        retry_after.as_secs_f64().ceil(),
                        ban.map(|b| format!(" -> banned until {} ({})", b.until, b.reason))
                            .unwrap_or_default()
                    )
                }
            },
        };
        println!("POST /login #{n}: {verdict}");
    }
}
