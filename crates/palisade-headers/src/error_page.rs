//! Neutral pages for responses Palisade writes itself (errors, blocks, misdirected requests).
//!
//! They say what happened in words a customer understands and carry the request id so support
//! can find the request in the logs. They never carry internals: no upstream address, no error
//! text, no rule, no software name or version.

/// Does this `Accept` header prefer JSON over HTML? (An API client, not a browser.)
pub fn wants_json(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    let mut json_q = None;
    let mut html_q = None;
    for part in accept.split(',') {
        let mut it = part.split(';');
        let media = it.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = it
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if media == "application/json" || media.ends_with("+json") {
            json_q = Some(json_q.map_or(q, |old: f32| old.max(q)));
        } else if media == "text/html" {
            html_q = Some(html_q.map_or(q, |old: f32| old.max(q)));
        }
    }
    match (json_q, html_q) {
        (Some(j), Some(h)) => j > h,
        (Some(j), None) => j > 0.0,
        _ => false,
    }
}

/// Title and explanation for a status Palisade answers with.
pub fn reason(status: u16) -> (&'static str, &'static str) {
    match status {
        400 => ("Bad Request", "The request could not be understood."),
        403 => (
            "Forbidden",
            "This request was blocked for security reasons.",
        ),
        404 => ("Not Found", "There is nothing here."),
        408 => ("Request Timeout", "The request took too long to arrive."),
        413 => (
            "Payload Too Large",
            "The request is larger than this site accepts.",
        ),
        421 => (
            "Misdirected Request",
            "This server does not serve the requested site.",
        ),
        429 => (
            "Too Many Requests",
            "Too many requests in a short time. Please wait a moment and try again.",
        ),
        502 => (
            "Bad Gateway",
            "The shop is temporarily unavailable. Please try again in a moment.",
        ),
        503 => (
            "Service Unavailable",
            "The shop is temporarily unavailable. Please try again in a moment.",
        ),
        504 => (
            "Gateway Timeout",
            "The shop took too long to answer. Please try again in a moment.",
        ),
        _ => ("Error", "Something went wrong. Please try again later."),
    }
}

/// The page: `(content type, body)`. The request id is escaped (it may come from a trusted proxy).
pub fn render(status: u16, request_id: &str, json: bool) -> (&'static str, String) {
    let (title, text) = reason(status);
    let id: String = request_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        .take(128)
        .collect();
    if json {
        (
            "application/json",
            format!(
                "{{\"status\":{status},\"error\":\"{title}\",\"message\":\"{text}\",\"request_id\":\"{id}\"}}\n"
            ),
        )
    } else {
        (
            "text/html; charset=utf-8",
            format!(
                "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{status} {title}</title>\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<style>body{{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;color:#222}}\
code{{background:#f3f3f3;padding:.1em .3em}}</style></head>\n<body><h1>{title}</h1><p>{text}</p>\
<p>If this keeps happening, contact the shop and quote this reference: <code>{id}</code></p></body></html>\n"
            ),
        )
    }
}
