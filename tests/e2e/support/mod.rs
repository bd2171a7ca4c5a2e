//! The cast of every end-to-end test: a test PKI, a real upstream, the real `palisade` binary,
//! and real clients (reqwest over rustls trusting the test CA, or raw sockets).
//!
//! Everything listens on port 0; the gateway announces its real addresses on stdout
//! (`ready http=… https=… admin=…`) and the tests wait for that line, never for a timer.

pub mod redis;
pub mod upstream;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use palisade_demo::pki::{Ca, Issued};
use tokio::sync::mpsc;

pub use upstream::Upstream;

/// How long a test waits for an announced event before it fails (a bound, not a sleep).
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A temporary directory with a test CA and certificates for `shop.test` (+ `www.shop.test`)
/// and `*.other.test`.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: Ca,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("Palisade Test CA").unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
        let pki = Pki { dir, ca };
        pki.issue("shop", &["shop.test", "www.shop.test"]);
        pki.issue("other", &["*.other.test"]);
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Issue `<stem>.pem` / `<stem>.key` for `names` (replacing files atomically).
    pub fn issue(&self, stem: &str, names: &[&str]) -> Issued {
        let issued = self.ca.issue(names, 30).unwrap();
        issued
            .write(
                &self.path(&format!("{stem}.pem")),
                &self.path(&format!("{stem}.key")),
            )
            .unwrap();
        issued
    }

    /// The test CA, as the only root a client trusts.
    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(self.ca.cert_der()))
            .unwrap();
        roots
    }

    /// A rustls client config trusting the test CA, offering `alpn`.
    pub fn client_tls(&self, alpn: &[&[u8]]) -> rustls::ClientConfig {
        let roots = self.roots();
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        cfg
    }
}

/// The `[[certificates]]` and a `[[sites]]` for shop.test pointing at `upstreams`, with the
/// listeners on port 0. `extra` is appended (more `[sites.*]` keys, more sites).
pub fn shop_config(upstreams: &[SocketAddr], extra: &str) -> String {
    let ups: Vec<String> = upstreams
        .iter()
        .map(|a| format!("\"http://{a}\""))
        .collect();
    format!(
        r#"[server]
http = "127.0.0.1:0"
https = "127.0.0.1:0"
admin = "127.0.0.1:0"
threads = 2
shutdown_grace = "1s"

[tls]
watch_interval = "100ms"

[[certificates]]
name = "shop"
cert = "shop.pem"
key = "shop.key"

[[certificates]]
name = "other"
cert = "other.pem"
key = "other.key"

[logging]
level = "info"

[[sites]]
name = "shop"
hosts = ["shop.test", "www.shop.test"]
upstreams = [{ups}]

[sites.upstream]
connect_timeout = "1s"
read_timeout = "1s"

[sites.upstream.health_check]
interval = "100ms"
timeout = "500ms"
{extra}"#,
        ups = ups.join(", ")
    )
}

/// The real `palisade run` process.
pub struct Gateway {
    child: Child,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub admin: SocketAddr,
    pub config: PathBuf,
    lines: mpsc::UnboundedReceiver<String>,
    stderr: PathBuf,
    /// What the process printed on stdout before `ready` (the demo's banner).
    pub banner: Vec<String>,
}

impl Gateway {
    /// Write `config` into the PKI directory and start the gateway on it; returns once it has
    /// announced `ready`.
    pub async fn start(pki: &Pki, config: &str) -> Gateway {
        Self::start_named(pki, "palisade.toml", config).await
    }

    pub async fn start_named(pki: &Pki, file: &str, config: &str) -> Gateway {
        let path = pki.path(file);
        std::fs::write(&path, config).unwrap();
        let stderr = pki.path(&format!("{file}.stderr"));
        let child = Command::new(env!("CARGO_BIN_EXE_palisade"))
            .arg("run")
            .arg("--config")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Self::attach(child, path, stderr).await
    }

    /// Follow a spawned `palisade` process's stdout until it announces `ready`.
    pub async fn attach(mut child: Child, config: PathBuf, stderr: PathBuf) -> Gateway {
        let stdout = child.stdout.take().unwrap();
        let (tx, mut lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut banner = Vec::new();
        let ready = loop {
            match tokio::time::timeout(EVENT_TIMEOUT, lines.recv()).await {
                Ok(Some(l)) if l.starts_with("ready ") => break l,
                Ok(Some(l)) => banner.push(l),
                _ => panic!(
                    "gateway did not become ready; stderr:\n{}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                ),
            }
        };
        let addr = |key: &str| -> SocketAddr {
            ready
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {key} address in `{ready}`"))
        };
        Gateway {
            http: addr("http"),
            https: addr("https"),
            admin: addr("admin"),
            child,
            config,
            lines,
            stderr,
            banner,
        }
    }

    /// Wait for the next stdout line starting with `prefix` (e.g. `certificates reloaded`).
    pub async fn wait_for(&mut self, prefix: &str) -> String {
        loop {
            match tokio::time::timeout(EVENT_TIMEOUT, self.lines.recv()).await {
                Ok(Some(l)) if l.starts_with(prefix) => return l,
                Ok(Some(_)) => continue,
                _ => panic!(
                    "no `{prefix}` from the gateway; stderr:\n{}",
                    self.stderr_text()
                ),
            }
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Ask the process to stop (SIGINT, like Ctrl-C) and return its exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal("INT");
        self.child.wait().unwrap()
    }

    /// Wait (bounded) for the process to exit by itself.
    pub async fn exited(mut self) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "gateway did not exit"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Scrape `/metrics` until it contains `sample` (requests are counted in Pingora's logging
    /// phase, which runs just after the response is sent), then return the scrape.
    pub async fn metrics_with(&self, sample: &str) -> String {
        self.metrics_until(sample, |m| m.contains(sample)).await
    }

    /// Scrape `/metrics` until `done` holds for the scrape (`what` names it if it never does).
    pub async fn metrics_until(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            let m = reqwest::get(format!("http://{}/metrics", self.admin))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if done(&m) {
                return m;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no `{what}` in:\n{m}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// `https://<host>:<https port><path>`
    pub fn https_url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.https.port())
    }

    pub fn http_url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.http.port())
    }

    /// A client that resolves the test host names to this gateway and trusts the test CA.
    pub fn client(&self, pki: &Pki) -> ClientBuilder {
        ClientBuilder::new(pki, self)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct ClientBuilder {
    inner: reqwest::ClientBuilder,
    tls: rustls::ClientConfig,
}

impl ClientBuilder {
    fn new(pki: &Pki, gw: &Gateway) -> Self {
        let mut inner = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(EVENT_TIMEOUT);
        for host in ["shop.test", "www.shop.test", "a.other.test", "unknown.test"] {
            inner = inner.resolve(host, SocketAddr::new(gw.https.ip(), 0));
        }
        ClientBuilder {
            inner,
            tls: pki.client_tls(&[b"h2", b"http/1.1"]),
        }
    }

    pub fn http1_only(mut self) -> Self {
        self.tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        self.inner = self.inner.http1_only();
        self
    }

    /// Present `cert` (issued by the test CA) as a client certificate.
    pub fn client_cert(mut self, pki: &Pki, cert: &Issued) -> Self {
        let chain = vec![rustls::pki_types::CertificateDer::from(
            cert.cert_der.clone(),
        )];
        let key = rustls_pemfile::private_key(&mut cert.key_pem.as_bytes())
            .unwrap()
            .unwrap();
        let alpn = self.tls.alpn_protocols.clone();
        let roots = pki.roots();
        let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
        tls.alpn_protocols = alpn;
        self.tls = tls;
        self
    }

    pub fn follow_redirects(mut self) -> Self {
        self.inner = self.inner.redirect(reqwest::redirect::Policy::limited(3));
        self
    }

    pub fn source_ip(mut self, ip: IpAddr) -> Self {
        self.inner = self.inner.local_address(ip);
        self
    }

    pub fn build(self) -> reqwest::Client {
        self.inner.use_preconfigured_tls(self.tls).build().unwrap()
    }
}

/// The response headers as `name: value` lines, for assertions that print well.
pub fn header_values(resp: &reqwest::Response, name: &str) -> Vec<String> {
    resp.headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}
