//! "Ye Olde Shoppe" — the demo shop the gateway protects.
//!
//! A deliberately careless legacy PHP-style shop served over plain HTTP/1.1
//! (hyper 1). Everything that is wrong with it is wrong on purpose, so the
//! gateway in front of it has something to fix:
//!
//! * every response advertises `Server: Apache/2.2.15 (CentOS)` and
//!   `X-Powered-By: PHP/5.6.40`;
//! * `GET /` sets a `session` cookie (and a JavaScript-readable `cart`
//!   cookie) without `Secure`, `HttpOnly` or `SameSite`;
//! * `GET /search?q=` reflects the query without escaping (reflected XSS);
//! * `POST /login` accepts any credentials and sets a flagless `auth` cookie;
//! * `GET /old` redirects to `http://localhost/`;
//! * `GET /order/42` shows a full card number and the customer's e-mail;
//! * `GET /error` leaks a PHP stack trace with an SQL error.
//!
//! `GET /healthz` answers `ok` for the gateway's health checks. Request
//! bodies are limited to 64 KiB (413 beyond). Unknown paths get 404, known
//! paths with the wrong method get 405 with an `Allow` header. `HEAD` is
//! accepted wherever `GET` is.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rand::Rng;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// The largest request body the shop reads (64 KiB).
const BODY_LIMIT: usize = 64 * 1024;
const SERVER: &str = "Apache/2.2.15 (CentOS)";
const POWERED_BY: &str = "PHP/5.6.40";
const HTML: &str = "text/html; charset=UTF-8";
const TEXT: &str = "text/plain; charset=UTF-8";

type Body = Full<Bytes>;

/// A running demo shop. Stops on [`DemoShop::shutdown`] or when dropped.
#[derive(Debug)]
pub struct DemoShop {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl DemoShop {
    /// Binds `addr` (port 0 picks a free port) and serves the shop in a tokio
    /// task until [`DemoShop::shutdown`] is called or the `DemoShop` is
    /// dropped. Returns once the listener is bound, so the address from
    /// [`DemoShop::addr`] accepts connections immediately.
    pub async fn start(addr: SocketAddr) -> io::Result<DemoShop> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(serve(listener, rx));
        tracing::info!(%addr, "demo shop listening");
        Ok(DemoShop {
            addr,
            shutdown: Some(tx),
            task,
        })
    }

    /// The address the shop is bound to (with the real port if 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections and waits for the accept loop to end.
    /// Open connections are asked to close gracefully: a request in flight
    /// still gets its response, idle keep-alive connections are closed.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Err(err) = (&mut self.task).await {
            tracing::warn!(%err, "demo shop task ended abnormally");
        }
    }
}

// Dropping `DemoShop` drops the oneshot sender, which ends the accept loop
// exactly like `shutdown()` does (without waiting for it).

async fn serve(listener: TcpListener, mut shutdown: oneshot::Receiver<()>) {
    let (closing_tx, closing_rx) = watch::channel(false);
    loop {
        tokio::select! {
            // Fires on an explicit shutdown and when the sender is dropped.
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(serve_connection(stream, peer, closing_rx.clone()));
                }
                Err(err) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!(%err, "demo shop accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    let _ = closing_tx.send(true);
    tracing::info!("demo shop stopped accepting connections");
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, mut closing: watch::Receiver<bool>) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(Duration::from_secs(30));
    let conn = builder.serve_connection(TokioIo::new(stream), service_fn(handle));
    tokio::pin!(conn);
    let closing = async move {
        // Drop the watch guard at once; an error (sender gone) also means closing.
        let _ = closing.wait_for(|closing| *closing).await.map(drop);
    };
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = closing => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(%peer, %err, "demo shop connection error");
    }
}

async fn handle(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let mut resp = route(req).await;
    let headers = resp.headers_mut();
    headers.insert(header::SERVER, HeaderValue::from_static(SERVER));
    headers.insert(
        HeaderName::from_static("x-powered-by"),
        HeaderValue::from_static(POWERED_BY),
    );
    Ok(resp)
}

/// Which methods a known path accepts; `None` for unknown paths.
fn allowed_methods(path: &str) -> Option<&'static [Method]> {
    const GET: &[Method] = &[Method::GET, Method::HEAD];
    const GET_POST: &[Method] = &[Method::GET, Method::HEAD, Method::POST];
    match path {
        "/" | "/search" | "/admin" | "/old" | "/order/42" | "/error" | "/healthz" => Some(GET),
        "/login" | "/checkout" => Some(GET_POST),
        _ => None,
    }
}

async fn route(req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let Some(allowed) = allowed_methods(&path) else {
        return not_found();
    };
    if !allowed.contains(req.method()) {
        return method_not_allowed(allowed);
    }
    let post = req.method() == Method::POST;
    match path.as_str() {
        "/" => home(),
        "/search" => search(req.uri().query().unwrap_or("")),
        "/login" if post => match read_form(req).await {
            Ok(form) => login_post(&form),
            Err(resp) => resp,
        },
        "/login" => login_form(),
        "/admin" => admin(),
        "/old" => old(),
        "/checkout" if post => match read_form(req).await {
            Ok(form) => checkout_post(&form),
            Err(resp) => resp,
        },
        "/checkout" => checkout_form(),
        "/order/42" => order(),
        "/error" => error_page(),
        "/healthz" => text(StatusCode::OK, "ok"),
        _ => not_found(),
    }
}

// ---------------------------------------------------------------------------
// Pages

struct Product {
    name: &'static str,
    price: &'static str,
    blurb: &'static str,
}

const PRODUCTS: &[Product] = &[
    Product {
        name: "Hand-forged horseshoe",
        price: "£12.50",
        blurb: "Brings luck, or at least keeps the horse shod.",
    },
    Product {
        name: "Genuine goose-quill pen",
        price: "£3.20",
        blurb: "Ink not included. Goose not included.",
    },
    Product {
        name: "Tallow candles (a dozen)",
        price: "£4.99",
        blurb: "For reading thy receipts after dark.",
    },
];

fn home() -> Response<Body> {
    let mut body = String::from(
        "<h2>Welcome, good traveller!</h2>\n\
         <p>Finest wares since 1999. Best viewed in Internet Explorer 6.</p>\n\
         <p id=\"cart\">Cart: loading&hellip;</p>\n",
    );
    product_list(&mut body, PRODUCTS.iter());
    // The shop's own JavaScript reads the cart cookie, so it must stay
    // readable from scripts (no HttpOnly).
    body.push_str(
        "<script>\n\
         var m = document.cookie.match(/(?:^|; )cart=([^;]*)/);\n\
         document.getElementById('cart').textContent = m ? 'Cart: ' + m[1].slice(0, 8) : 'Cart: empty';\n\
         </script>\n",
    );
    let mut resp = html(StatusCode::OK, &page("Home", &body));
    add_cookie(&mut resp, &format!("session={}; path=/", random_hex(16)));
    add_cookie(&mut resp, &format!("cart={}; path=/", random_hex(8)));
    resp
}

fn search(query: &str) -> Response<Body> {
    let q = query_param(query, "q").unwrap_or_default();
    let needle = q.to_lowercase();
    // Deliberately NOT escaped: reflected XSS, like careless shops do.
    let mut body = format!("<h2>Search</h2>\n<p>Results for: {q}</p>\n");
    let hits: Vec<&Product> = PRODUCTS
        .iter()
        .filter(|p| !needle.is_empty() && p.name.to_lowercase().contains(needle.trim()))
        .collect();
    if hits.is_empty() {
        body.push_str("<p>No wares matched thy search.</p>\n");
    } else {
        product_list(&mut body, hits.into_iter());
    }
    html(StatusCode::OK, &page("Search", &body))
}

fn login_form() -> Response<Body> {
    let body = "<h2>Log in</h2>\n\
        <form method=\"post\" action=\"/login\">\n\
        <p><label>Username <input type=\"text\" name=\"username\"></label></p>\n\
        <p><label>Password <input type=\"password\" name=\"password\"></label></p>\n\
        <p><button type=\"submit\">Enter</button></p>\n\
        </form>\n";
    html(StatusCode::OK, &page("Log in", body))
}

fn login_post(form: &[(String, String)]) -> Response<Body> {
    // Any credentials are accepted; the password is read and ignored.
    let username = form_value(form, "username")
        .filter(|u| !u.is_empty())
        .unwrap_or("stranger");
    let body = format!(
        "<h2>Welcome back, {username}</h2>\n<p>Thou art now logged in. \
         <a href=\"/admin\">Back office</a></p>\n"
    );
    let mut resp = html(StatusCode::OK, &page("Welcome", &body));
    add_cookie(&mut resp, &format!("auth={}; path=/", random_hex(16)));
    resp
}

fn admin() -> Response<Body> {
    let body = "<h2>Back office</h2>\n\
        <table border=\"1\">\n\
        <tr><th>Order</th><th>Customer</th><th>Total</th><th>Status</th></tr>\n\
        <tr><td><a href=\"/order/42\">#42</a></td><td>Jane Doe</td><td>£20.69</td><td>Shipped</td></tr>\n\
        <tr><td>#41</td><td>John Smith</td><td>£12.50</td><td>Paid</td></tr>\n\
        <tr><td>#40</td><td>Ada Lovelace</td><td>£3.20</td><td>Refunded</td></tr>\n\
        </table>\n";
    html(StatusCode::OK, &page("Back office", body))
}

fn old() -> Response<Body> {
    let body = "<h2>Found</h2>\n<p>The shop hath moved to <a href=\"http://localhost/\">http://localhost/</a>.</p>\n";
    let mut resp = html(StatusCode::FOUND, &page("Moved", body));
    resp.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_static("http://localhost/"),
    );
    resp
}

fn checkout_form() -> Response<Body> {
    let body = "<h2>Checkout</h2>\n\
        <form method=\"post\" action=\"/checkout\">\n\
        <p><label>Card number <input type=\"text\" name=\"card_number\"></label></p>\n\
        <p><label>Expiry <input type=\"text\" name=\"expiry\" placeholder=\"MM/YY\"></label></p>\n\
        <p><label>CVV <input type=\"text\" name=\"cvv\"></label></p>\n\
        <p><button type=\"submit\">Pay</button></p>\n\
        </form>\n";
    html(StatusCode::OK, &page("Checkout", body))
}

fn checkout_post(form: &[(String, String)]) -> Response<Body> {
    let digits: Vec<char> = form_value(form, "card_number")
        .unwrap_or("")
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let last4: String = digits[digits.len().saturating_sub(4)..].iter().collect();
    let body = if last4.is_empty() {
        "<h2>Order placed</h2>\n<p>Thank thee for thy custom.</p>\n".to_owned()
    } else {
        format!(
            "<h2>Order placed</h2>\n<p>Thank thee for thy custom. \
             Charged to the card ending in {last4}.</p>\n"
        )
    };
    html(StatusCode::OK, &page("Order placed", &body))
}

fn order() -> Response<Body> {
    let body = "<h2>Order #42</h2>\n\
        <p>Customer: Jane Doe &lt;jane.doe@example.com&gt;</p>\n\
        <p>Ship to: 1 Pudding Lane, London</p>\n\
        <p>Paid with card: 4111 1111 1111 1111 (expires 12/29)</p>\n\
        <table border=\"1\">\n\
        <tr><th>Item</th><th>Price</th></tr>\n\
        <tr><td>Hand-forged horseshoe</td><td>£12.50</td></tr>\n\
        <tr><td>Genuine goose-quill pen</td><td>£3.20</td></tr>\n\
        <tr><td>Tallow candles (a dozen)</td><td>£4.99</td></tr>\n\
        </table>\n\
        <p>Questions? Write to jane.doe@example.com's favourite shop.</p>\n";
    html(StatusCode::OK, &page("Order #42", body))
}

fn error_page() -> Response<Body> {
    let body = "<pre>\n\
        Fatal error: Uncaught PDOException: SQLSTATE[42000]: Syntax error or access violation: \
        1064 You have an error in your SQL syntax; check the manual that corresponds to your \
        MySQL server version for the right syntax to use near '' at line 1 \
        in /var/www/shop/lib/db.php:42\n\
        Stack trace:\n\
        #0 /var/www/shop/index.php(17): PDO-&gt;query('SELECT * FROM orders WHERE id=...')\n\
        #1 {main}\n  \
        thrown in /var/www/shop/lib/db.php on line 42\n\
        </pre>\n";
    html(StatusCode::INTERNAL_SERVER_ERROR, &page("Error", body))
}

fn not_found() -> Response<Body> {
    let body = "<h2>Not Found</h2>\n<p>The requested URL was not found on this server.</p>\n";
    html(StatusCode::NOT_FOUND, &page("Not Found", body))
}

fn method_not_allowed(allowed: &[Method]) -> Response<Body> {
    let allow = allowed
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let body = "<h2>Method Not Allowed</h2>\n<p>That method is not allowed for this URL.</p>\n";
    let mut resp = html(
        StatusCode::METHOD_NOT_ALLOWED,
        &page("Method Not Allowed", body),
    );
    if let Ok(value) = HeaderValue::try_from(allow) {
        resp.headers_mut().insert(header::ALLOW, value);
    }
    resp
}

fn payload_too_large() -> Response<Body> {
    let body = "<h2>Request Entity Too Large</h2>\n<p>Thy parcel is too heavy.</p>\n";
    let mut resp = html(StatusCode::PAYLOAD_TOO_LARGE, &page("Too Large", body));
    // The rest of the body is never read, so the connection cannot be reused.
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

fn bad_request() -> Response<Body> {
    let body = "<h2>Bad Request</h2>\n<p>Thy request could not be read.</p>\n";
    let mut resp = html(StatusCode::BAD_REQUEST, &page("Bad Request", body));
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

// ---------------------------------------------------------------------------
// Helpers

/// The shared page layout: header, navigation, content, footer.
fn page(title: &str, content: &str) -> String {
    format!(
        "<!DOCTYPE html>\n\
         <html>\n<head>\n<meta charset=\"UTF-8\">\n\
         <title>{title} - Ye Olde Shoppe</title>\n\
         <style>body{{font-family:Georgia,serif;background:#f5ecd7;color:#3b2f1e;margin:2em}}\
         nav a{{margin-right:1em}}h1{{font-variant:small-caps}}</style>\n\
         </head>\n<body>\n\
         <h1>Ye Olde Shoppe</h1>\n\
         <nav>\n\
         <a href=\"/\">Home</a>\n\
         <a href=\"/search\">Search</a>\n\
         <a href=\"/login\">Log in</a>\n\
         <a href=\"/checkout\">Checkout</a>\n\
         <a href=\"/order/42\">My order</a>\n\
         <a href=\"/admin\">Back office</a>\n\
         <form method=\"get\" action=\"/search\" style=\"display:inline\">\
         <input type=\"text\" name=\"q\"> <button type=\"submit\">Seek</button></form>\n\
         </nav>\n<hr>\n\
         {content}\
         <hr>\n<footer>&copy; 1999 Ye Olde Shoppe. Powered by PHP.</footer>\n\
         </body>\n</html>\n"
    )
}

fn product_list<'a>(out: &mut String, products: impl Iterator<Item = &'a Product>) {
    out.push_str("<ul>\n");
    for p in products {
        let _ = writeln!(
            out,
            "<li><b>{}</b> &mdash; {} <i>{}</i></li>",
            p.name, p.price, p.blurb
        );
    }
    out.push_str("</ul>\n");
}

fn html(status: StatusCode, body: &str) -> Response<Body> {
    respond(status, HTML, body)
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    respond(status, TEXT, body)
}

fn respond(status: StatusCode, content_type: &'static str, body: &str) -> Response<Body> {
    let bytes = Bytes::copy_from_slice(body.as_bytes());
    let len = bytes.len();
    let mut resp = Response::new(Full::new(bytes));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

fn add_cookie(resp: &mut Response<Body>, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        resp.headers_mut().append(header::SET_COOKIE, value);
    }
}

fn random_hex(bytes: usize) -> String {
    let mut rng = rand::thread_rng();
    let mut out = String::with_capacity(bytes * 2);
    for _ in 0..bytes {
        let _ = write!(out, "{:02x}", rng.gen::<u8>());
    }
    out
}

/// Reads an `application/x-www-form-urlencoded` body of at most 64 KiB.
async fn read_form(req: Request<Incoming>) -> Result<Vec<(String, String)>, Response<Body>> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > BODY_LIMIT as u64) {
        return Err(payload_too_large());
    }
    match Limited::new(req.into_body(), BODY_LIMIT).collect().await {
        Ok(collected) => Ok(parse_form(&collected.to_bytes())),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => Err(payload_too_large()),
        Err(err) => {
            tracing::debug!(%err, "demo shop could not read a request body");
            Err(bad_request())
        }
    }
}

fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    parse_pairs(&String::from_utf8_lossy(body))
}

fn parse_pairs(input: &str) -> Vec<(String, String)> {
    input
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (url_decode(name), url_decode(value))
        })
        .collect()
}

fn form_value<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn query_param(query: &str, name: &str) -> Option<String> {
    parse_pairs(query)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

/// Decodes `+` as a space and `%XX` escapes; invalid escapes are kept as is.
/// Invalid UTF-8 after decoding becomes U+FFFD.
fn url_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (
                bytes.get(i + 1).copied().and_then(hex_value),
                bytes.get(i + 2).copied().and_then(hex_value),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_urls() {
        assert_eq!(url_decode("%3Cb%3Ehi%3C%2Fb%3E"), "<b>hi</b>");
        assert_eq!(url_decode("a+b%20c"), "a b c");
        assert_eq!(url_decode("100%"), "100%");
        assert_eq!(url_decode("%zz%4"), "%zz%4");
        assert_eq!(url_decode("%C3%A9t%C3%A9"), "été");
        assert_eq!(url_decode("%ff"), "\u{fffd}");
        assert_eq!(url_decode(""), "");
    }

    #[test]
    fn parses_forms() {
        let form = parse_form(b"username=jane+doe&password=s%3Dcret&flag&=x");
        assert_eq!(form_value(&form, "username"), Some("jane doe"));
        assert_eq!(form_value(&form, "password"), Some("s=cret"));
        assert_eq!(form_value(&form, "flag"), Some(""));
        assert_eq!(form_value(&form, "missing"), None);
        assert_eq!(query_param("a=1&q=x%2By&q=z", "q").as_deref(), Some("x+y"));
    }

    #[test]
    fn random_hex_has_the_right_shape() {
        let a = random_hex(16);
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(a, random_hex(16));
    }

    #[test]
    fn checkout_mentions_only_last_four_digits() {
        let form = parse_form(b"card_number=4111+1111+1111+1234&expiry=12%2F29&cvv=123");
        let resp = checkout_post(&form);
        let body = String::from_utf8(futures_body(resp.into_body())).unwrap();
        assert!(body.contains("Order placed"));
        assert!(body.contains("1234"));
        assert!(!body.contains("4111"));
    }

    fn futures_body(body: Body) -> Vec<u8> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async { body.collect().await.unwrap().to_bytes().to_vec() })
    }
}
