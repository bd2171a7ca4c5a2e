//! Table-driven verdict tests: every `tests/fixtures/*.toml` file holds rows
//! of (request, expected verdict, rule or category). One `check` helper runs
//! a row; all failures of all files are reported together.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use palisade_waf::{compile, Action, Engine, Request, WafSettings};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// Settings for every row of the file (`[settings]`), default settings otherwise.
    #[serde(default)]
    settings: Option<toml::Value>,
    #[serde(rename = "case")]
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default = "get")]
    method: String,
    target: String,
    #[serde(default = "http11")]
    version: String,
    /// Extra headers, after the default browser headers.
    #[serde(default)]
    headers: Vec<(String, String)>,
    /// Replace the default headers entirely.
    #[serde(default)]
    raw_headers: bool,
    content_type: Option<String>,
    body: Option<String>,
    /// "block", "allow" or "detect".
    expect: String,
    rule: Option<String>,
    category: Option<String>,
}

fn get() -> String {
    "GET".into()
}
fn http11() -> String {
    "HTTP/1.1".into()
}

const BROWSER: &[(&str, &str)] = &[
    ("Host", "shop.example"),
    ("User-Agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"),
    ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("Accept-Language", "fr-FR,fr;q=0.9,en;q=0.8"),
    ("Accept-Encoding", "gzip, deflate, br"),
];

fn check(engine: &Engine, file: &str, case: &Case) -> Result<(), String> {
    let mut headers: Vec<(String, String)> = if case.raw_headers {
        Vec::new()
    } else {
        BROWSER
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    };
    headers.extend(case.headers.iter().cloned());
    if let Some(ct) = &case.content_type {
        headers.push(("Content-Type".into(), ct.clone()));
    }
    if let Some(b) = &case.body {
        headers.push(("Content-Length".into(), b.len().to_string()));
    }
    let hdrs: Vec<(&str, &[u8])> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect();
    let req = Request {
        method: &case.method,
        target: case.target.as_bytes(),
        version: &case.version,
        headers: &hdrs,
        body: case.body.as_deref().map(str::as_bytes),
        body_truncated: false,
    };
    let v = engine.inspect(&req);
    // The same verdict whether this thread's memo knew the headers and
    // cookies (every row repeats the browser's) or not, and on a repeat.
    let cold = engine.inspect_uncached(&req);
    let again = engine.inspect(&req);
    if v != cold || again != cold {
        return Err(format!(
            "{file}: {}: memo changed the verdict: {v:?} / repeat {again:?} / uncached {cold:?}",
            case.name
        ));
    }
    let want = match case.expect.as_str() {
        "block" => Action::Block,
        "allow" => Action::Allow,
        "detect" => Action::Detect,
        other => return Err(format!("{file}: {}: bad expect {other:?}", case.name)),
    };
    let ids: Vec<String> = v
        .matches
        .iter()
        .map(|m| format!("{}({})@{}", m.rule_id, m.category, m.location))
        .collect();
    if v.action != want {
        return Err(format!(
            "{file}: {}: expected {want:?}, got {:?} score {} {ids:?}",
            case.name, v.action, v.score
        ));
    }
    if let Some(r) = &case.rule {
        if !v.matches.iter().any(|m| &m.rule_id == r) {
            return Err(format!(
                "{file}: {}: rule {r} did not match: {ids:?}",
                case.name
            ));
        }
    }
    if let Some(c) = &case.category {
        if !v.matches.iter().any(|m| m.category.as_str() == c) {
            return Err(format!("{file}: {}: no {c} match: {ids:?}", case.name));
        }
    }
    // Locations never carry the matched value.
    for m in &v.matches {
        if m.location.len() > 100 || m.location.contains('<') || m.location.contains('\'') {
            return Err(format!(
                "{file}: {}: suspicious location {:?}",
                case.name, m.location
            ));
        }
    }
    Ok(())
}

#[test]
fn fixtures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let default_engine = compile(&WafSettings::default()).unwrap();
    let mut failures = Vec::new();
    let mut rows = 0;
    for path in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
    {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(path).unwrap();
        let file: File = toml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let custom;
        let engine = match &file.settings {
            Some(s) => {
                let settings: WafSettings = toml::from_str(&toml::to_string(s).unwrap()).unwrap();
                custom = compile(&settings).unwrap_or_else(|e| panic!("{name}: {e:?}"));
                &custom
            }
            None => &default_engine,
        };
        for case in &file.cases {
            rows += 1;
            if let Err(e) = check(engine, &name, case) {
                failures.push(e);
            }
        }
    }
    assert!(rows > 100, "only {rows} fixture rows");
    assert!(
        failures.is_empty(),
        "{} of {rows} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
