//! The floor the load harness compares Palisade with: Pingora's own server running a `ProxyHttp`
//! that only picks the upstream, nothing else (no site lookup, no headers, no logging).
//!
//! `bare_pingora LISTEN UPSTREAM [THREADS]`, e.g. `bare_pingora 127.0.0.1:18081 127.0.0.1:18080 2`.
//! Prints `ready` on stdout once the listener is bound.

use std::net::{SocketAddr, TcpListener};

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

struct Bare {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();
    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(upstream)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: bare_pingora LISTEN UPSTREAM [THREADS]");
        std::process::exit(2);
    };
    let threads = args.get(3).and_then(|t| t.parse().ok()).unwrap_or(2);
    let Ok(upstream) = upstream.parse::<SocketAddr>() else {
        eprintln!("bare_pingora: bad upstream address {upstream}");
        std::process::exit(2);
    };
    // Fail early (and visibly) when the port is taken; Pingora binds again itself.
    if let Err(e) = TcpListener::bind(listen) {
        eprintln!("bare_pingora: cannot bind {listen}: {e}");
        std::process::exit(1);
    }
    let conf = ServerConf {
        threads,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    let mut svc = http_proxy_service(&server.configuration, Bare { upstream });
    svc.add_tcp(listen);
    server.add_service(svc);
    server.bootstrap();
    println!("ready");
    server.run_forever();
}
