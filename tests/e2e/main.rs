//! End-to-end tests: a real upstream, the real `palisade` binary on port-0 listeners, and real
//! clients (rustls trusting a test CA, raw sockets where a client library would be too polite).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod cli;
mod forwarding;
mod hardening;
mod https_redirect;
mod limits;
mod logs;
mod metrics;
mod tls;
mod upstreams;
mod waf;
mod workers;
