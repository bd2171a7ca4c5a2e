//! The WAF in the request path: when to inspect, how the body is read, what a verdict does.
//!
//! A request is inspected once its headers are in (`request_filter`). A request with a body is
//! inspected again with the body:
//!
//! * **small bodies** (a `Content-Length` up to [`REPLAY_LIMIT`]) are read in `request_filter`
//!   with Pingora's retry buffer on, inspected, and replayed to the shop from that buffer: a
//!   blocked request never reaches the shop at all;
//! * **larger or chunked bodies** are held back in `request_body_filter` until the inspection
//!   limit (or the end) is reached, inspected, then released. A blocked one has reached the shop
//!   only as headers and an unfinished body, which it never dispatches.
//!
//! A body past the limit follows the site's `body_overflow` policy: inspect the prefix and pass,
//! or 413. Matched values never leave the engine; events carry rule ids, categories and
//! locations (`args:q`, `body:json:user.name`), never what the client sent.

use bytes::{Bytes, BytesMut};
use palisade_waf::{Action as WafAction, BodyOverflow, Engine, Mode, Request, Verdict};
use pingora::proxy::Session;

use crate::metrics::metrics;

/// Bodies up to this size are read before the shop is contacted (Pingora's retry buffer size).
pub const REPLAY_LIMIT: usize = 64 * 1024;

/// A body being held back in `request_body_filter` until it can be inspected.
pub struct Hold {
    pub buf: BytesMut,
    pub limit: usize,
}

/// What `request_filter` decided about the body.
pub enum BodyPlan {
    /// No body: the headers-only verdict is final.
    None,
    /// Read now (small, declared length).
    ReadNow,
    /// Hold back in `request_body_filter` up to `limit` bytes.
    Hold(usize),
    /// Longer than the limit and the site refuses that: 413.
    TooLarge,
}

pub fn plan_body(session: &mut Session, engine: &Engine) -> BodyPlan {
    if session.as_mut().is_body_empty() {
        return BodyPlan::None;
    }
    let limit = engine.body_limit();
    match declared_length(session) {
        Some(0) => BodyPlan::None,
        Some(n) if n > limit && engine.body_overflow() == BodyOverflow::Reject => {
            BodyPlan::TooLarge
        }
        Some(n) if n <= REPLAY_LIMIT && n <= limit => BodyPlan::ReadNow,
        _ => BodyPlan::Hold(limit),
    }
}

/// The body length the request declares (`Content-Length`), if it declares one.
fn declared_length(session: &Session) -> Option<usize> {
    session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
}

/// Does the request declare a body small enough to read before contacting the shop?
pub fn small_body(session: &Session) -> bool {
    declared_length(session).is_some_and(|n| n > 0 && n <= REPLAY_LIMIT)
}

/// Read a small body with the retry buffer on, so Pingora replays it to the shop.
pub async fn read_small_body(session: &mut Session) -> pingora::Result<Bytes> {
    session.as_mut().enable_retry_buffering();
    let mut buf = BytesMut::new();
    while let Some(chunk) = session.as_mut().read_request_body().await? {
        buf.extend_from_slice(&chunk);
        if buf.len() > REPLAY_LIMIT {
            // The declared length lied; the retry buffer cannot hold this.
            return pingora::Error::e_explain(
                pingora::ErrorType::HTTPStatus(400),
                "body longer than its Content-Length",
            );
        }
    }
    Ok(buf.freeze())
}

/// Inspect `session`'s request with `body` (if any).
pub fn inspect(
    engine: &Engine,
    session: &Session,
    body: Option<&[u8]>,
    truncated: bool,
) -> Verdict {
    let req = session.req_header();
    let headers: Vec<(&str, &[u8])> = req
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect();
    let version = match req.version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    };
    engine.inspect(&Request {
        method: req.method.as_str(),
        target: req.raw_path(),
        version,
        headers: &headers,
        body,
        body_truncated: truncated,
    })
}

/// Count and log a verdict that matched anything. Returns true when the request must be blocked.
pub fn record(verdict: &Verdict, site: &str, request_id: &str) -> bool {
    if verdict.matches.is_empty() {
        return false;
    }
    if let Some(m) = metrics() {
        for hit in &verdict.matches {
            let mode = match hit.mode {
                Mode::Block => "block",
                Mode::Detect => "detect",
            };
            m.waf_matches
                .with_label_values(&[site, hit.category.as_str(), mode])
                .inc();
        }
    }
    let action = match verdict.action {
        WafAction::Allow => "allow",
        WafAction::Block => "block",
        WafAction::Detect => "detect",
    };
    if verdict.action != WafAction::Allow {
        let rules: Vec<&str> = verdict.matches.iter().map(|m| m.rule_id.as_str()).collect();
        let mut categories: Vec<&str> = verdict
            .matches
            .iter()
            .map(|m| m.category.as_str())
            .collect();
        categories.dedup();
        let locations: Vec<&str> = verdict
            .matches
            .iter()
            .map(|m| m.location.as_str())
            .collect();
        tracing::warn!(
            target: "palisade::security",
            event = "waf",
            request_id,
            site,
            action,
            score = verdict.score,
            rules = %rules.join(","),
            categories = %categories.join(","),
            locations = %locations.join(","),
        );
    }
    verdict.action == WafAction::Block
}
