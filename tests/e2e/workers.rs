//! Worker threads: with `threads = 2` (as in every test config) both workers serve, since the
//! kernel spreads the connections over their sockets; a reload reaches every one of them
//! mid-load; a stop waits for requests in flight on any of them; and a returning TLS client
//! resumes its session whichever worker its new connection lands on.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::support::upstream::Echo;
use crate::support::*;

/// Enough keep-alive connections that both workers get some: the kernel hashes each by its
/// 4-tuple to one of the two sockets, so all of them on one worker has odds of 2^-31.
const CONNECTIONS: usize = 32;

/// `palisade_worker_requests_total` per worker, in worker order.
fn worker_requests(metrics: &str) -> Vec<f64> {
    let mut per_worker: Vec<(usize, f64)> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("palisade_worker_requests_total{worker=\""))
        .filter_map(|rest| {
            let (worker, value) = rest.split_once("\"} ")?;
            Some((worker.parse().ok()?, value.parse().ok()?))
        })
        .collect();
    per_worker.sort_by_key(|(w, _)| *w);
    per_worker.into_iter().map(|(_, v)| v).collect()
}

/// One client per connection, so that each keeps its own keep-alive connection to the gateway
/// (and so to one worker) for the whole test.
fn clients(gw: &Gateway, pki: &Pki) -> Vec<reqwest::Client> {
    (0..CONNECTIONS)
        .map(|_| gw.client(pki).http1_only().build())
        .collect()
}

/// The worker each client's connection lives on: one request at a time, seen in the counters.
async fn worker_of_each(gw: &Gateway, clients: &[reqwest::Client]) -> Vec<usize> {
    let mut before = vec![0.0, 0.0];
    let mut workers = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        let resp = client
            .get(gw.https_url("shop.test", "/"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let m = gw
            .metrics_until("the request counted", |m| {
                worker_requests(m).iter().sum::<f64>() == (i + 1) as f64
            })
            .await;
        let now = worker_requests(&m);
        workers.push((0..now.len()).find(|w| now[*w] > before[*w]).unwrap());
        before = now;
    }
    workers
}

#[tokio::test(flavor = "multi_thread")]
async fn both_workers_serve_and_a_reload_under_load_reaches_every_one() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let pki = Pki::new();
    let mut gw = Gateway::start(&pki, &shop_config(&[a.addr], "")).await;
    let url = gw.https_url("shop.test", "/");

    // Every connection asks again and again until told to stop, wants a 200 every time, and
    // says when it first reaches backend b.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let (switched_tx, mut switched) = tokio::sync::mpsc::unbounded_channel();
    let load: Vec<_> = clients(&gw, &pki)
        .into_iter()
        .map(|client| {
            let (stop, sent, url) = (stop.clone(), sent.clone(), url.clone());
            let switched_tx = switched_tx.clone();
            tokio::spawn(async move {
                let mut on_b = false;
                while !stop.load(Ordering::SeqCst) {
                    let resp = client.get(&url).send().await.unwrap();
                    assert_eq!(resp.status(), 200);
                    let backend = Echo::of(resp).await.str("backend").to_string();
                    sent.fetch_add(1, Ordering::SeqCst);
                    assert!(!on_b || backend == "b", "back on the old config");
                    if backend == "b" && !on_b {
                        on_b = true;
                        let _ = switched_tx.send(());
                    }
                }
            })
        })
        .collect();

    // Both workers serve some of the connections.
    gw.metrics_until("requests on both workers", |m| {
        let per_worker = worker_requests(m);
        per_worker.len() == 2 && per_worker.iter().all(|n| *n > 0.0)
    })
    .await;

    // Mid-load, the config moves the shop to backend b: every connection, on whichever worker,
    // goes there, and no request fails on the way.
    std::fs::write(&gw.config, shop_config(&[b.addr], "")).unwrap();
    gw.signal("HUP");
    gw.wait_for("reloaded generation=2").await;
    for _ in 0..CONNECTIONS {
        tokio::time::timeout(EVENT_TIMEOUT, switched.recv())
            .await
            .expect("every connection reaches backend b");
    }
    stop.store(true, Ordering::SeqCst);
    for task in load {
        task.await.expect("every request was answered with a 200");
    }

    // Each request was counted once, by the worker that served it.
    let sent = sent.load(Ordering::SeqCst) as f64;
    let m = gw
        .metrics_until("every request counted by a worker", |m| {
            worker_requests(m).iter().sum::<f64>() == sent
        })
        .await;
    let per_worker = worker_requests(&m);
    assert!(per_worker.iter().all(|n| *n > 0.0), "{per_worker:?}");
    assert!(gw.stop().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_waits_for_requests_in_flight_on_any_worker() {
    // Once with requests held on worker 0 only, once on worker 1 only: the drain waits for
    // them whichever worker is busy, while the other has nothing left to do.
    for busy in 0..2 {
        let shop = Upstream::start("shop").await;
        let pki = Pki::new();
        let gw = Gateway::start(
            &pki,
            &shop_config(&[shop.addr], "")
                .replace("shutdown_grace = \"1s\"", "shutdown_grace = \"20s\"")
                .replace("read_timeout = \"1s\"", "read_timeout = \"10s\""),
        )
        .await;
        let clients = clients(&gw, &pki);
        let workers = worker_of_each(&gw, &clients).await;
        let held: Vec<_> = clients
            .into_iter()
            .zip(&workers)
            .filter(|(_, w)| **w == busy)
            .map(|(client, _)| {
                let url = gw.https_url("shop.test", "/hold");
                tokio::spawn(async move { client.get(url).send().await })
            })
            .collect();
        assert!(
            !held.is_empty(),
            "worker {busy} got connections: {workers:?}"
        );
        shop.held(held.len()).await;

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
        // Not a wait for readiness: the requests stay in flight well past the gateway's 250 ms
        // flush grace, so a drain that forgot worker {busy} would have stopped it by now.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        shop.release_all();

        for request in held {
            let resp = request.await.unwrap().unwrap();
            assert_eq!(
                resp.status(),
                200,
                "held on worker {busy} at SIGTERM, completed"
            );
        }
        assert!(gw.exited().await.success());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_returning_client_resumes_its_tls_session_on_any_worker() {
    use rustls::HandshakeKind;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let gw = Gateway::start(&pki, &shop_config(&[shop.addr], "")).await;

    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        // One client config, so one session cache: what a browser remembers between visits.
        let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(pki.roots())
        .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));

        // Every visit is a new connection (a new source port: the kernel picks a worker for
        // each); after the first, every one resumes the session instead of a full handshake.
        let mut kinds = Vec::new();
        for _ in 0..CONNECTIONS / 2 {
            let tcp = tokio::net::TcpStream::connect(gw.https).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("shop.test").unwrap();
            let mut stream = connector.connect(name, tcp).await.unwrap();
            kinds.push(stream.get_ref().1.handshake_kind());
            // A whole request and response, so that TLS 1.3's session tickets arrive too.
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await.unwrap();
            assert!(response.starts_with(b"HTTP/1.1 200"), "{version:?}");
        }
        assert_eq!(kinds[0], Some(HandshakeKind::Full), "{version:?}");
        assert!(
            kinds[1..]
                .iter()
                .all(|k| *k == Some(HandshakeKind::Resumed)),
            "{version:?}: {kinds:?}"
        );
    }
}
