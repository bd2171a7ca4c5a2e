//! Replays requests recorded by `waf_server` (`WAF_DUMP=FILE`) through the
//! engine and prints one line per request: its number, the action, the score
//! and the matched rules with their locations, sorted. Two builds of the
//! engine give two files that `diff` compares case by case.
//!
//! ```text
//! cargo run -p palisade-waf --release --example verdicts -- FILE [paranoia] > verdicts.txt
//! ```
//!
//! `MEMO=off` inspects every request afresh (`Engine::inspect_uncached`): the
//! two outputs of one build show whether its memo changed any verdict.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use palisade_waf::{compile, Request, WafSettings};

fn fields(rec: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= rec.len() {
        let n = u32::from_le_bytes(rec[at..at + 4].try_into().unwrap()) as usize;
        out.push(&rec[at + 4..at + 4 + n]);
        at += 4 + n;
    }
    out
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: verdicts FILE [paranoia]");
    let paranoia: i64 = args.next().map_or(1, |p| p.parse().expect("paranoia 1..4"));
    let settings: WafSettings = toml::from_str(&format!("paranoia = {paranoia}")).unwrap();
    let engine = compile(&settings).unwrap_or_else(|e| panic!("{e:?}"));
    let fresh = std::env::var("MEMO").as_deref() == Ok("off");
    let data = std::fs::read(path).expect("dump file");
    let mut at = 0;
    let mut n = 0;
    let mut out = String::new();
    while at + 4 <= data.len() {
        let len = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        let f = fields(&data[at + 4..at + 4 + len]);
        at += 4 + len;
        let method = std::str::from_utf8(f[0]).unwrap_or("");
        let version = std::str::from_utf8(f[2]).unwrap_or("");
        let headers: Vec<(&str, &[u8])> = f[5..]
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (std::str::from_utf8(c[0]).unwrap_or(""), c[1]))
            .collect();
        let req = Request {
            method,
            target: f[1],
            version,
            headers: &headers,
            body: if f[4].is_empty() { None } else { Some(f[4]) },
            body_truncated: f[3] == b"1",
        };
        let v = if fresh {
            engine.inspect_uncached(&req)
        } else {
            engine.inspect(&req)
        };
        let mut ids: Vec<String> = v
            .matches
            .iter()
            .map(|m| format!("{}@{}", m.rule_id, m.location))
            .collect();
        ids.sort();
        out.push_str(&format!(
            "{n} {:?} {} {}\n",
            v.action,
            v.score,
            ids.join(" ")
        ));
        n += 1;
    }
    print!("{out}");
}
