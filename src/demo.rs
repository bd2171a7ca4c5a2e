//! `palisade demo`: the embedded default. A throwaway CA and a certificate for `localhost`, the
//! careless demo shop on a loopback port, and Palisade in front of it with every protection
//! that exists switched on, configured through an ordinary config file written beside the
//! certificates (so what the demo runs is what `palisade run` would run).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use palisade_demo::pki::Ca;
use palisade_demo::shop::DemoShop;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Where the demo writes its CA, certificate, config and logs
    /// [default: $TMPDIR/palisade-demo].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Plain-HTTP listener.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// TLS listener.
    #[arg(long, default_value = "127.0.0.1:8443")]
    https: SocketAddr,
    /// Admin listener (health, readiness, metrics).
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin: SocketAddr,
    /// Where the demo writes all its logs [default: the demo directory].
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
}

pub fn run(args: DemoArgs) -> ExitCode {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("palisade-demo"));
    if let Err(e) = write_pki(&dir) {
        eprintln!(
            "palisade demo: cannot write the demo certificates in {}: {e}",
            dir.display()
        );
        return ExitCode::FAILURE;
    }
    // The shop runs on the control runtime beside the gateway's control tasks: two threads.
    let rt = match crate::control_runtime(2) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    // The back office's basic-auth password, hashed for the config and printed for the user.
    let admin_password: String = {
        use rand::Rng;
        const A: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        let mut rng = rand::thread_rng();
        (0..16)
            .map(|_| A[rng.gen_range(0..A.len())] as char)
            .collect()
    };
    let admin_hash = match bcrypt::hash(&admin_password, 10) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("palisade demo: cannot hash the demo password: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let shop = match DemoShop::start(SocketAddr::from(([127, 0, 0, 1], 0))).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("palisade demo: cannot start the demo shop: {e}");
                return ExitCode::FAILURE;
            }
        };
        let config_path = dir.join("palisade.toml");
        let log_dir = args.log_dir.clone().unwrap_or_else(|| dir.clone());
        if let Err(e) = std::fs::write(
            &config_path,
            config_text(&args, shop.addr(), &log_dir, &admin_hash),
        ) {
            eprintln!("palisade demo: cannot write {}: {e}", config_path.display());
            return ExitCode::FAILURE;
        }
        let loaded = match palisade_config::load(&config_path) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("palisade demo: the generated config is invalid (a bug):\n{e}");
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = palisade_gateway::logging::init(&loaded.config.logging) {
            eprintln!("palisade demo: {e}");
            return ExitCode::FAILURE;
        }
        print_banner(&args, shop.addr(), &dir, &log_dir, &admin_password);
        let code = crate::serve(loaded.config, Some(config_path), Duration::from_secs(2)).await;
        shop.shutdown().await;
        println!("palisade demo stopped.");
        code
    })
}

fn write_pki(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let ca = Ca::new("Palisade Demo CA")?;
    std::fs::write(dir.join("ca.pem"), ca.cert_pem())?;
    let leaf = ca.issue(&["localhost", "127.0.0.1", "::1"], 30)?;
    leaf.write(&dir.join("localhost.pem"), &dir.join("localhost.key"))?;
    Ok(())
}

fn config_text(args: &DemoArgs, shop: SocketAddr, log_dir: &Path, admin_hash: &str) -> String {
    format!(
        r#"# Written by `palisade demo`; every protection that exists is on.
[server]
http = "{http}"
https = "{https}"
admin = "{admin}"
threads = 2
shutdown_grace = "2s"

[tls]
unknown_sni = "default"
watch_interval = "2s"

[[certificates]]
name = "localhost"
cert = "localhost.pem"
key = "localhost.key"
hosts = ["localhost"]

[[sites]]
name = "demo-shop"
hosts = ["localhost", "127.0.0.1"]
upstreams = ["http://{shop}"]

[sites.upstream]
connect_timeout = "2s"
read_timeout = "10s"

[sites.upstream.health_check]
path = "/healthz"
interval = "5s"

# Five violations (429s, WAF blocks, failed logins) within ten minutes: banned for two minutes.
[sites.bans]
violations = 5
window = "10m"
ban = "2m"
statuses = [401]

# Card testing and credential stuffing: five login attempts per minute per client.
[[sites.routes]]
name = "login"
path = "/login"
methods = ["POST"]
rate_limit = {{ key = "ip", rate = "5/min", burst = 5 }}

# The back office, behind basic auth (the password is printed by the demo).
[[sites.routes]]
name = "admin"
path = "/admin"
basic_auth = {{ realm = "Ye Olde Back Office", users = [{{ name = "admin", hash = "{admin_hash}" }}] }}

[sites.waf]
# The built-in rule set, blocking (403) at the default paranoia level and anomaly threshold.
mode = "block"

[sites.headers]
content_security_policy = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'self'"
upgrade_insecure_requests = true

[sites.cookies.exceptions]
# The shop's JavaScript reads the cart cookie, so it must stay readable (no HttpOnly).
cart = {{ http_only = false }}

[logging]
format = "json"
output = "{log}"
level = "info"
"#,
        http = args.http,
        https = args.https,
        admin = args.admin,
        log = log_dir.join("palisade.log").display(),
    )
}

fn print_banner(
    args: &DemoArgs,
    shop: SocketAddr,
    dir: &Path,
    log_dir: &Path,
    admin_password: &str,
) {
    let https_port = args.https.port();
    let base = if https_port == 443 {
        "https://localhost".to_string()
    } else {
        format!("https://localhost:{https_port}")
    };
    let ca = dir.join("ca.pem");
    let ca = ca.display();
    println!(
        r#"Palisade demo
  demo shop (upstream, a careless legacy shop)  http://{shop}
  gateway, plain HTTP (redirects to https)     http://localhost:{http_port}
  gateway, HTTPS                                {base}
  admin (health, readiness, metrics)            http://{admin}/healthz  /readyz  /metrics
  CA certificate to trust                       {ca}
  config                                        {config}
  logs (JSON, redacted)                         {log}

Try:
  curl -i http://localhost:{http_port}/search?q=shoes          # 308 to https, same path and query
  curl -i --cacert {ca} {base}/                # no Server/X-Powered-By, HSTS, cookie flags
  curl -i --cacert {ca} {base}/old             # Location rewritten to https
  curl -i --cacert {ca} {base}/login -d 'username=jane&password=secret'
  curl -i --cacert {ca} "{base}/search?q=%3Cscript%3Ealert(1)%3C/script%3E"   # 403: the WAF
  curl -i --cacert {ca} "{base}/search?q=1'+UNION+SELECT+password+FROM+users--"  # 403
  curl -i --cacert {ca} -u admin:{admin_password} {base}/admin    # basic auth (401 without)
  for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{{http_code}} ' --cacert {ca} {base}/login -d 'username=a&password=b'; done   # 6th: 429
Ctrl-C stops it."#,
        http_port = args.http.port(),
        admin = args.admin,
        config = dir.join("palisade.toml").display(),
        log = log_dir.join("palisade.log").display(),
    );
}
