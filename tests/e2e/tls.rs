//! TLS termination: SNI certificate choice, unknown names, protocol versions, ALPN, and
//! certificates replaced on disk while connections stay open.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::support::upstream::Echo;
use crate::support::*;

/// Handshake with `sni`; returns the stream and the leaf certificate the gateway presented.
async fn handshake(
    gw: &Gateway,
    pki: &Pki,
    sni: &str,
) -> std::io::Result<(TlsStream<TcpStream>, Vec<u8>)> {
    let connector = TlsConnector::from(Arc::new(pki.client_tls(&[b"http/1.1"])));
    let tcp = TcpStream::connect(gw.https).await?;
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let tls = connector.connect(name, tcp).await?;
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    Ok((tls, leaf))
}

fn sans(der: &[u8]) -> Vec<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => d.to_string(),
            other => format!("{other:?}"),
        })
        .collect()
}

/// One HTTP/1.1 request on an open TLS stream; returns the status line.
async fn get_on(tls: &mut TlsStream<TcpStream>, host: &str) -> String {
    tls.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = Vec::new();
    // Read until the echo body (JSON) is complete: it ends with `}`.
    loop {
        let n = tls.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed");
        got.extend_from_slice(&buf[..n]);
        if got.ends_with(b"}") {
            break;
        }
    }
    String::from_utf8_lossy(&got)
        .lines()
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn sni_picks_exact_then_wildcard_then_default() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let gw = Gateway::start(&pki, &shop_config(&[shop.addr], "")).await;

    let (_, leaf) = handshake(&gw, &pki, "www.shop.test").await.unwrap();
    assert_eq!(sans(&leaf), ["shop.test", "www.shop.test"]);
    let (_, leaf) = handshake(&gw, &pki, "a.other.test").await.unwrap();
    assert_eq!(sans(&leaf), ["*.other.test"]);

    // An unknown name gets the default (the first certificate); the client then refuses the
    // name mismatch, which is the point of the default: it never impersonates anything.
    let err = handshake(&gw, &pki, "unknown.test")
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("not valid for name \"unknown.test\""), "{err}");
    assert!(
        err.contains("DnsName(\"shop.test\")"),
        "the default certificate was shown: {err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_sni_can_be_refused() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let config =
        shop_config(&[shop.addr], "").replace("[tls]\n", "[tls]\nunknown_sni = \"reject\"\n");
    let gw = Gateway::start(&pki, &config).await;

    let err = handshake(&gw, &pki, "unknown.test").await.err().unwrap();
    assert!(
        !err.to_string().contains("not valid for name"),
        "refused by the server: {err}"
    );
    assert!(handshake(&gw, &pki, "shop.test").await.is_ok());
}

/// A minimal ClientHello offering `version`, with the extensions a TLS 1.2 server needs.
fn client_hello(version: [u8; 2], sni: &str) -> Vec<u8> {
    fn ext(id: u16, data: &[u8]) -> Vec<u8> {
        let mut v = id.to_be_bytes().to_vec();
        v.extend((data.len() as u16).to_be_bytes());
        v.extend(data);
        v
    }
    let mut sni_data = ((sni.len() + 3) as u16).to_be_bytes().to_vec();
    sni_data.push(0);
    sni_data.extend((sni.len() as u16).to_be_bytes());
    sni_data.extend(sni.as_bytes());
    let mut exts = ext(0x0000, &sni_data);
    exts.extend(ext(0x000a, &[0, 4, 0x00, 0x1d, 0x00, 0x17])); // x25519, secp256r1
    exts.extend(ext(0x000b, &[1, 0])); // uncompressed points
    exts.extend(ext(0x000d, &[0, 6, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01])); // ecdsa, pss, pkcs1
    let mut body = version.to_vec();
    body.extend([7u8; 32]); // random
    body.push(0); // no session id
    let suites: [u16; 6] = [0xc02b, 0xc02f, 0xc013, 0xc014, 0x002f, 0x0035];
    body.extend(((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend(s.to_be_bytes());
    }
    body.extend([1, 0]); // null compression
    body.extend((exts.len() as u16).to_be_bytes());
    body.extend(exts);
    let mut hs = vec![1u8]; // client_hello
    hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend(body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend((hs.len() as u16).to_be_bytes());
    record.extend(hs);
    record
}

async fn first_record(gw: &Gateway, hello: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(gw.https).await.unwrap();
    tcp.write_all(hello).await.unwrap();
    let mut buf = vec![0u8; 7];
    tcp.read_exact(&mut buf).await.unwrap();
    buf
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_1_1_is_refused_and_1_2_accepted() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let gw = Gateway::start(&pki, &shop_config(&[shop.addr], "")).await;

    let reply = first_record(&gw, &client_hello([3, 2], "shop.test")).await;
    assert_eq!(reply[0], 0x15, "an alert record: {reply:?}");
    assert_eq!(
        (reply[5], reply[6]),
        (2, 70),
        "fatal protocol_version: {reply:?}"
    );

    // The same hello offering TLS 1.2 gets a ServerHello: the refusal above is about the version.
    let reply = first_record(&gw, &client_hello([3, 3], "shop.test")).await;
    assert_eq!(reply[0], 0x16, "a handshake record: {reply:?}");
    assert_eq!(reply[5], 2, "server_hello: {reply:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn h2_and_http1_are_both_proxied() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let gw = Gateway::start(&pki, &shop_config(&[shop.addr], "")).await;

    let h2 = gw.client(&pki).build();
    let resp = h2
        .get(gw.https_url("shop.test", "/h2"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(Echo::of(resp).await.str("target"), "/h2");

    let h1 = gw.client(&pki).http1_only().build();
    let resp = h1
        .get(gw.https_url("shop.test", "/h1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    assert_eq!(Echo::of(resp).await.str("target"), "/h1");
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_replaced_on_disk_is_served_without_restart_or_dropped_connections() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let mut gw = Gateway::start(&pki, &shop_config(&[shop.addr], "")).await;
    let (mut open, before) = handshake(&gw, &pki, "shop.test").await.unwrap();
    assert!(get_on(&mut open, "shop.test").await.contains("200"));

    let renewed = pki.issue("shop", &["shop.test", "www.shop.test", "new.shop.test"]);
    gw.wait_for("certificates reloaded").await;

    let (_, after) = handshake(&gw, &pki, "shop.test").await.unwrap();
    assert_ne!(after, before);
    assert_eq!(
        after, renewed.cert_der,
        "new handshakes get the renewed certificate"
    );
    assert!(
        get_on(&mut open, "shop.test").await.contains("200"),
        "the connection opened before the reload still works"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_certificate_on_disk_keeps_the_old_one() {
    let shop = Upstream::start("shop").await;
    let pki = Pki::new();
    let mut gw = Gateway::start(&pki, &shop_config(&[shop.addr], "")).await;
    let (_, before) = handshake(&gw, &pki, "shop.test").await.unwrap();

    // A key that does not match the certificate, as a half-done renewal would leave.
    let other = pki.ca.issue(&["shop.test"], 30).unwrap();
    std::fs::write(pki.path("shop.key"), &other.key_pem).unwrap();
    gw.wait_for("certificates reload failed").await;
    let (_, during) = handshake(&gw, &pki, "shop.test").await.unwrap();
    assert_eq!(during, before, "the working certificate stays");

    let fixed = pki.issue("shop", &["shop.test", "www.shop.test"]);
    gw.wait_for("certificates reloaded").await;
    let (_, after) = handshake(&gw, &pki, "shop.test").await.unwrap();
    assert_eq!(after, fixed.cert_der);
}
