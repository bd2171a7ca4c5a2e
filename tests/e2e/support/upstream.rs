//! A real HTTP/1.1 upstream that tells the test what it received.
//!
//! `GET /anything` answers 200 with a JSON echo: which backend answered, the method, the path
//! and query, every header and the body. A few paths behave like a careless shop so the tests
//! can check what the gateway changes on the way back.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub struct Upstream {
    pub addr: SocketAddr,
    /// `GET /hold` arrives here and waits until the test releases it.
    pub hold: Arc<Hold>,
    task: JoinHandle<()>,
}

#[derive(Default)]
pub struct Hold {
    pub arrived: Notify,
    pub release: Notify,
    /// `GET /hold` requests that have arrived so far, released or not.
    pub held: std::sync::atomic::AtomicUsize,
    /// Another way out for held requests: once it is open, none waits.
    pub gate: tokio::sync::watch::Sender<bool>,
    /// Every complete request (headers and whole body) that reached this upstream.
    pub requests: std::sync::atomic::AtomicUsize,
}

impl Upstream {
    /// How many complete requests reached this upstream so far.
    pub fn requests(&self) -> usize {
        self.hold.requests.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Wait (bounded) until `n` `GET /hold` requests have arrived.
    pub async fn held(&self, n: usize) {
        let arrived = async {
            while self.hold.held.load(std::sync::atomic::Ordering::SeqCst) < n {
                self.hold.arrived.notified().await;
            }
        };
        tokio::time::timeout(super::EVENT_TIMEOUT, arrived)
            .await
            .unwrap_or_else(|_| panic!("fewer than {n} held requests arrived"));
    }

    /// Release every held request, now and to come.
    pub fn release_all(&self) {
        self.hold.gate.send_replace(true);
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    /// Start an upstream on 127.0.0.1:0 that reports itself as `name`.
    pub async fn start(name: &'static str) -> Upstream {
        Self::serve(name, None).await
    }

    /// Start an upstream that speaks TLS with `cert` (issued by the test CA).
    pub async fn start_tls(name: &'static str, cert: &palisade_demo::pki::Issued) -> Upstream {
        let chain = vec![rustls::pki_types::CertificateDer::from(
            cert.cert_der.clone(),
        )];
        let key = rustls_pemfile::private_key(&mut cert.key_pem.as_bytes())
            .unwrap()
            .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        Self::serve(
            name,
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        )
        .await
    }

    async fn serve(name: &'static str, tls: Option<tokio_rustls::TlsAcceptor>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hold = Arc::new(Hold::default());
        let h = hold.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (tls, h) = (tls.clone(), h.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(req, name, h.clone()));
                    let conn = http1::Builder::new();
                    let _ = match tls {
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(s) => conn.serve_connection(TokioIo::new(s), svc).await,
                            Err(_) => return,
                        },
                        None => conn.serve_connection(TokioIo::new(stream), svc).await,
                    };
                });
            }
        });
        Upstream { addr, hold, task }
    }

    /// An address where nothing listens (bound, then released).
    pub fn dead_addr() -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }
}

async fn handle(
    req: Request<Incoming>,
    name: &'static str,
    hold: Arc<Hold>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let resp = Response::builder();
    let resp = match path.as_str() {
        "/hold" => {
            hold.held.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            hold.arrived.notify_one();
            let mut gate = hold.gate.subscribe();
            tokio::select! {
                _ = hold.release.notified() => {}
                _ = gate.wait_for(|open| *open) => {}
            }
            resp
        }
        "/slow" => {
            // Never answers: the gateway's read timeout must turn this into a 504.
            std::future::pending::<()>().await;
            resp.status(200)
        }
        "/fingerprint" => resp
            .header("server", "Apache/2.2.15 (CentOS)")
            .header("x-powered-by", "PHP/5.6.40")
            .header("x-aspnet-version", "4.0.30319")
            .header("x-aspnetmvc-version", "5.2")
            .header("x-generator", "Drupal 7"),
        "/cookies" => resp
            .header("set-cookie", "session=s3cr3t; path=/")
            .header("set-cookie", "cart=42; path=/")
            .header(
                "set-cookie",
                "pref=dark; Path=/; Secure; HttpOnly; SameSite=Strict",
            ),
        "/redirect" => resp
            .status(302)
            .header("location", "http://shop.test/next?x=1"),
        "/redirect-foreign" => resp
            .status(302)
            .header("location", "http://elsewhere.test/"),
        "/own-frame-options" => resp.header("x-frame-options", "DENY"),
        "/boom" => resp
            .status(500)
            .header("content-type", "text/plain")
            .header("server", "Apache/2.2.15 (CentOS)"),
        _ => resp,
    };
    let method = req.method().to_string();
    let target = req.uri().to_string();
    let mut headers = serde_json::Map::new();
    for (k, v) in req.headers() {
        let entry = headers
            .entry(k.as_str().to_string())
            .or_insert_with(|| serde_json::Value::Array(vec![]));
        if let serde_json::Value::Array(a) = entry {
            a.push(serde_json::Value::String(
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            ));
        }
    }
    let body = match Limited::new(req.into_body(), 1 << 20).collect().await {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
        // An aborted body: the request never completed, so it does not count as received.
        Err(_) => return Ok(Response::new(Full::new(Bytes::new()))),
    };
    hold.requests
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let echo = serde_json::json!({
        "backend": name,
        "method": method,
        "target": target,
        "headers": headers,
        "body": body,
    });
    Ok(resp
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(echo.to_string())))
        .unwrap_or_default())
}

/// The upstream's echo, parsed.
pub struct Echo(pub serde_json::Value);

impl Echo {
    pub async fn of(resp: reqwest::Response) -> Echo {
        let text = resp.text().await.unwrap();
        Echo(serde_json::from_str(&text).unwrap_or_else(|_| panic!("not an echo: {text}")))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.0["headers"][name].as_array().map(|a| {
            a.iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
    }

    pub fn str(&self, key: &str) -> &str {
        self.0[key].as_str().unwrap_or_default()
    }
}
