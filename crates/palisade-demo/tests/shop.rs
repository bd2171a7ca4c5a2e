//! Drives the demo shop over real TCP with a tiny raw HTTP/1.1 client.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;

use palisade_demo::shop::DemoShop;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn cookie(&self, name: &str) -> &str {
        let prefix = format!("{name}=");
        self.all("set-cookie")
            .into_iter()
            .find(|c| c.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no {name} cookie in {:?}", self.headers))
    }
}

async fn send_raw(addr: SocketAddr, raw: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw).await.unwrap();
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.unwrap();
    String::from_utf8(buf).unwrap()
}

fn parse(text: &str) -> Reply {
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut parts = status_line.splitn(3, ' ');
    assert_eq!(parts.next(), Some("HTTP/1.1"));
    let status = parts.next().unwrap().parse().unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

async fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Reply {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(body) = body {
        raw.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        raw.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    } else {
        raw.push_str("\r\n");
    }
    let reply = parse(&send_raw(addr, raw.as_bytes()).await);
    // Fingerprints on every response.
    assert_eq!(reply.header("server"), Some("Apache/2.2.15 (CentOS)"));
    assert_eq!(reply.header("x-powered-by"), Some("PHP/5.6.40"));
    if method != "HEAD" {
        let len: usize = reply.header("content-length").unwrap().parse().unwrap();
        assert_eq!(len, reply.body.len());
    }
    reply
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, None).await
}

async fn start() -> DemoShop {
    DemoShop::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test]
async fn home_sets_flagless_cookies() {
    let shop = start().await;
    let addr = shop.addr();
    assert_ne!(addr.port(), 0);

    let r = get(addr, "/").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=UTF-8"));
    assert!(r.body.contains("Ye Olde Shoppe"));
    assert!(r.body.contains("£12.50"));

    let session = r.cookie("session");
    let value = session
        .strip_prefix("session=")
        .unwrap()
        .strip_suffix("; path=/")
        .unwrap();
    assert_eq!(value.len(), 32);
    assert!(is_hex(value));
    let lower = session.to_ascii_lowercase();
    for flag in ["secure", "httponly", "samesite"] {
        assert!(!lower.contains(flag), "{session}");
    }

    let cart = r.cookie("cart");
    let value = cart
        .strip_prefix("cart=")
        .unwrap()
        .strip_suffix("; path=/")
        .unwrap();
    assert!(is_hex(value));
    assert!(r.body.contains("document.cookie"));

    // A new session every time.
    let again = get(addr, "/").await;
    assert_ne!(again.cookie("session"), session);

    shop.shutdown().await;
}

#[tokio::test]
async fn search_reflects_unescaped() {
    let shop = start().await;
    let r = get(shop.addr(), "/search?q=%3Cb%3Ehi%3C%2Fb%3E").await;
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("<p>Results for: <b>hi</b></p>"),
        "{}",
        r.body
    );

    let r = get(shop.addr(), "/search?q=goose+quill").await;
    assert!(r.body.contains("Results for: goose quill"));

    let r = get(shop.addr(), "/search?q=horse").await;
    assert!(r.body.contains("Hand-forged horseshoe"));

    let r = get(shop.addr(), "/search").await;
    assert_eq!(r.status, 200);
    shop.shutdown().await;
}

#[tokio::test]
async fn login() {
    let shop = start().await;
    let r = get(shop.addr(), "/login").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("name=\"username\""));
    assert!(r.body.contains("name=\"password\""));
    assert!(r.body.contains("action=\"/login\""));

    let r = request(
        shop.addr(),
        "POST",
        "/login",
        Some("username=jane&password=hunter2"),
    )
    .await;
    assert_eq!(r.status, 200);
    let auth = r.cookie("auth");
    let value = auth
        .strip_prefix("auth=")
        .unwrap()
        .strip_suffix("; path=/")
        .unwrap();
    assert!(is_hex(value));
    assert!(r.body.contains("Welcome back, jane"));
    assert!(!r.body.contains("hunter2"));
    shop.shutdown().await;
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let shop = start().await;
    let raw = "POST /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
               Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 70000\r\n\r\n";
    let r = parse(&send_raw(shop.addr(), raw.as_bytes()).await);
    assert_eq!(r.status, 413);
    assert_eq!(r.header("server"), Some("Apache/2.2.15 (CentOS)"));
    shop.shutdown().await;
}

#[tokio::test]
async fn redirect_to_plain_http() {
    let shop = start().await;
    let r = get(shop.addr(), "/old").await;
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("http://localhost/"));
    shop.shutdown().await;
}

#[tokio::test]
async fn checkout() {
    let shop = start().await;
    let r = get(shop.addr(), "/checkout").await;
    assert_eq!(r.status, 200);
    for field in ["card_number", "expiry", "cvv"] {
        assert!(r.body.contains(&format!("name=\"{field}\"")), "{field}");
    }
    let r = request(
        shop.addr(),
        "POST",
        "/checkout",
        Some("card_number=4111+1111+1111+9876&expiry=12%2F29&cvv=321"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("Order placed"));
    assert!(r.body.contains("9876"));
    assert!(!r.body.contains("4111"));
    assert!(!r.body.contains("321"));
    shop.shutdown().await;
}

#[tokio::test]
async fn leaky_pages() {
    let shop = start().await;
    let r = get(shop.addr(), "/order/42").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("4111 1111 1111 1111"));
    assert!(r.body.contains("jane.doe@example.com"));

    let r = get(shop.addr(), "/admin").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("Back office"));

    let r = get(shop.addr(), "/error").await;
    assert_eq!(r.status, 500);
    assert!(r.body.contains("SQLSTATE"));
    assert!(r.body.contains("Fatal error: Uncaught PDOException"));
    assert!(r.body.contains("/var/www/shop/lib/db.php:42"));
    assert!(r.body.contains("Stack trace:"));
    shop.shutdown().await;
}

#[tokio::test]
async fn health_not_found_and_wrong_method() {
    let shop = start().await;
    let r = get(shop.addr(), "/healthz").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "ok");
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));

    let r = request(shop.addr(), "HEAD", "/healthz", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "");

    let r = get(shop.addr(), "/nope").await;
    assert_eq!(r.status, 404);
    assert!(r.body.contains("Not Found"));

    let r = request(shop.addr(), "DELETE", "/", None).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));

    let r = request(shop.addr(), "PUT", "/login", None).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, POST"));
    shop.shutdown().await;
}

#[tokio::test]
async fn keep_alive_pipelined_requests() {
    let shop = start().await;
    let raw = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n\
               GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let text = send_raw(shop.addr(), raw.as_bytes()).await;
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    shop.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_accepting() {
    let shop = start().await;
    let addr = shop.addr();
    // An idle keep-alive connection does not hold up shutdown.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");

    shop.shutdown().await;
    assert!(TcpStream::connect(addr).await.is_err());

    // The idle connection is closed by the server.
    let mut rest = Vec::new();
    idle.read_to_end(&mut rest).await.unwrap();
}

#[tokio::test]
async fn drop_stops_accepting() {
    let shop = start().await;
    let addr = shop.addr();
    get(addr, "/healthz").await;
    drop(shop);
    // No sleeping: retry until the accept loop has noticed (it will, promptly).
    loop {
        if TcpStream::connect(addr).await.is_err() {
            break;
        }
        tokio::task::yield_now().await;
    }
}
