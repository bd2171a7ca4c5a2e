//! A tiny HTTP/1.1 server that runs the WAF engine on every request and
//! answers 403 (blocked) or 200, for measuring the rules with `wafbench`
//! before the gateway wiring exists.
//!
//! It reads requests as raw as possible (its own parser, so malformed
//! request lines still reach the engine), one request per connection.
//!
//! ```text
//! cargo run -p palisade-waf --release --example waf_server -- 127.0.0.1:18090 [paranoia]
//! python3 ../shared/tools/wafbench.py --target 127.0.0.1:18090 --summary-json /tmp/waf.json
//! ```
//! Set `WAF_LOG=1` to print the matches of each blocked request on stderr, and
//! `WAF_DUMP=FILE` to append every request it inspects to FILE (the format
//! `examples/verdicts.rs` reads back, to compare two engines case by case).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use palisade_waf::{compile, Action, Engine, Request, WafSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MAX_HEAD: usize = 64 * 1024;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18090".to_owned());
    let paranoia: i64 = args.next().map_or(1, |p| p.parse().expect("paranoia 1..4"));
    let settings: WafSettings = toml::from_str(&format!("paranoia = {paranoia}")).unwrap();
    let engine = Arc::new(compile(&settings).unwrap_or_else(|e| panic!("{e:?}")));
    let listener = TcpListener::bind(&addr).await.expect("bind");
    eprintln!(
        "waf_server on {} (paranoia {paranoia}, {} rules)",
        listener.local_addr().unwrap(),
        engine.rule_count()
    );
    let log = std::env::var_os("WAF_LOG").is_some();
    let dump = std::env::var_os("WAF_DUMP").map(|p| {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .expect("WAF_DUMP file");
        Arc::new(std::sync::Mutex::new(f))
    });
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            continue;
        };
        let engine = engine.clone();
        let dump = dump.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(
                Duration::from_secs(10),
                serve(sock, &engine, log, dump.as_deref()),
            )
            .await;
        });
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// Appends one request as length-prefixed fields: method, target, version,
/// truncated flag, body, then header names and values.
fn dump_request(out: &std::sync::Mutex<std::fs::File>, req: &Request<'_>) {
    use std::io::Write;
    let mut rec: Vec<u8> = Vec::new();
    let mut field = |f: &[u8]| {
        rec.extend_from_slice(&(f.len() as u32).to_le_bytes());
        rec.extend_from_slice(f);
    };
    field(req.method.as_bytes());
    field(req.target);
    field(req.version.as_bytes());
    field(if req.body_truncated { b"1" } else { b"0" });
    field(req.body.unwrap_or(b""));
    for (n, v) in req.headers {
        field(n.as_bytes());
        field(v);
    }
    let mut f = out.lock().unwrap();
    f.write_all(&(rec.len() as u32).to_le_bytes()).unwrap();
    f.write_all(&rec).unwrap();
}

async fn serve(
    mut sock: TcpStream,
    engine: &Engine,
    log: bool,
    dump: Option<&std::sync::Mutex<std::fs::File>>,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    // Read the head.
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return respond(&mut sock, 431).await;
        }
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            if buf.is_empty() {
                return Ok(());
            }
            break buf.len();
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = buf[..head_end].to_vec();
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next().unwrap_or(b"");
    let mut parts = request_line.splitn(3, |&b| b == b' ');
    let method = String::from_utf8_lossy(parts.next().unwrap_or(b"")).into_owned();
    let target = parts.next().unwrap_or(b"").to_vec();
    let version = String::from_utf8_lossy(parts.next().unwrap_or(b""))
        .trim()
        .to_owned();
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        match line.iter().position(|&b| b == b':') {
            Some(i) => headers.push((
                String::from_utf8_lossy(&line[..i]).into_owned(),
                line[i + 1..].trim_ascii().to_vec(),
            )),
            None => headers.push((String::from_utf8_lossy(line).into_owned(), Vec::new())),
        }
    }
    let limit = engine.body_limit();
    let mut body = buf[head_end..].to_vec();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding")
            && v.to_ascii_lowercase().windows(7).any(|w| w == b"chunked")
    });
    let cl: Option<usize> = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.trim().parse().ok());
    let mut truncated = false;
    if chunked {
        // Read until the terminating chunk (bounded), then de-chunk.
        while find(&body, b"0\r\n\r\n").is_none() && body.len() < limit + 64 * 1024 {
            let r = tokio::time::timeout(Duration::from_secs(2), sock.read(&mut chunk)).await;
            match r {
                Ok(Ok(n)) if n > 0 => body.extend_from_slice(&chunk[..n]),
                _ => break,
            }
        }
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(i) = find(rest, b"\r\n") {
            let size = std::str::from_utf8(&rest[..i]).ok().and_then(|s| {
                usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok()
            });
            let Some(size) = size else { break };
            if size == 0 {
                break;
            }
            let start = i + 2;
            let end = (start + size).min(rest.len());
            out.extend_from_slice(&rest[start..end]);
            rest = &rest[(end + 2).min(rest.len())..];
        }
        body = out;
    } else if let Some(cl) = cl {
        let want = cl.min(limit);
        while body.len() < want {
            let r = tokio::time::timeout(Duration::from_secs(2), sock.read(&mut chunk)).await;
            match r {
                Ok(Ok(n)) if n > 0 => body.extend_from_slice(&chunk[..n]),
                _ => break,
            }
        }
        truncated = cl > limit;
    }
    if body.len() > limit {
        body.truncate(limit);
        truncated = true;
    }
    let hdrs: Vec<(&str, &[u8])> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    let req = Request {
        method: &method,
        target: &target,
        version: &version,
        headers: &hdrs,
        body: if body.is_empty() { None } else { Some(&body) },
        body_truncated: truncated,
    };
    if let Some(out) = dump {
        dump_request(out, &req);
    }
    let verdict = engine.inspect(&req);
    if log && verdict.action != Action::Allow {
        let ids: Vec<String> = verdict
            .matches
            .iter()
            .map(|m| format!("{}@{}", m.rule_id, m.location))
            .collect();
        eprintln!(
            "{} {} {}",
            verdict.score,
            String::from_utf8_lossy(&target[..target.len().min(80)]),
            ids.join(" ")
        );
    }
    let status = if verdict.action == Action::Block {
        403
    } else {
        200
    };
    respond(&mut sock, status).await
}

async fn respond(sock: &mut TcpStream, status: u16) -> std::io::Result<()> {
    let reason = match status {
        403 => "Forbidden",
        431 => "Request Header Fields Too Large",
        _ => "OK",
    };
    let msg =
        format!("HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    sock.write_all(msg.as_bytes()).await?;
    sock.shutdown().await
}
