//! A real tracing subscriber writing through `RedactingMakeWriter`: nothing sensitive reaches the
//! buffer, whatever the format, and JSON lines stay valid JSON.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io;
use std::sync::{Arc, Mutex};

use palisade_redact::{Kind, RedactingMakeWriter, Redactor};
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl io::Write for Buf {
    fn write(&mut self, d: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(d);
        Ok(d.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buf {
    type Writer = Buf;
    fn make_writer(&'a self) -> Buf {
        self.clone()
    }
}

impl Buf {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[derive(Debug)]
#[allow(dead_code)]
struct LoginForm {
    email: String,
    password: String,
}

const SENSITIVE: &[&str] = &[
    "4111111111111111",
    "4111 1111 1111",
    "5555-5555-5555",
    "hunter2",
    "s3cr3t-t0ken",
    "john.doe",
    "jane",
    "dXNlcjpwYXNz",
    "eyJzdWIiOiIxMjM0NTY3ODkwIn0",
    "0532013000",
    "PHPSESSID=abc",
];

fn emit_events() {
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    tracing::info!(
        card = "4111 1111 1111 1111",
        password = "hunter2",
        email = "john.doe@example.com",
        "checkout by {} paid with {}",
        "jane@shop.example",
        "5555-5555-5555-4444"
    );
    tracing::warn!(
        authorization = "Basic dXNlcjpwYXNz",
        cookie = "PHPSESSID=abc; cart=1",
        query = "user=bob&password=hunter2&token=s3cr3t-t0ken",
        "suspicious request"
    );
    let form = LoginForm {
        email: "john.doe@example.com".into(),
        password: "hunter2".into(),
    };
    tracing::error!(?form, pan = 4111111111111111u64, "login failed");
    tracing::info!(
        token = jwt,
        iban = "DE89 3704 0044 0532 0130 00",
        "upstream said Bearer {}",
        jwt
    );
    tracing::debug!(body = r#"{"password":"hunter2","cvv":"123"}"#, "form body");
    tracing::info!(
        status = 200,
        path = "/catalog/product/view/id/42",
        "plain event"
    );
}

fn check(out: &str) {
    assert!(!out.is_empty());
    for s in SENSITIVE {
        assert!(!out.contains(s), "{s:?} leaked into:\n{out}");
    }
    assert!(out.contains("plain event"), "{out}");
    assert!(out.contains("/catalog/product/view/id/42"), "{out}");
}

#[test]
fn json_subscriber_writes_no_secrets_and_valid_json() {
    let buf = Buf::default();
    let redactor = Arc::new(Redactor::default());
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(RedactingMakeWriter::new(buf.clone(), redactor.clone()))
        .finish();
    tracing::subscriber::with_default(subscriber, emit_events);
    let out = buf.text();
    check(&out);
    let mut lines = 0;
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON after redaction ({e}): {line}"));
        assert!(v.get("fields").is_some());
        lines += 1;
    }
    assert_eq!(lines, 6);
    let counts = redactor.counts();
    let n = |k: Kind| counts.iter().find(|(kk, _)| *kk == k).unwrap().1;
    assert!(n(Kind::Card) + n(Kind::Secret) >= 4, "{counts:?}");
    assert!(n(Kind::Email) >= 2, "{counts:?}");
    assert!(
        n(Kind::Cookie) >= 1 && n(Kind::AuthHeader) >= 1,
        "{counts:?}"
    );
}

#[test]
fn text_subscriber_writes_no_secrets() {
    for ansi in [false, true] {
        let buf = Buf::default();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(ansi)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(RedactingMakeWriter::new(
                buf.clone(),
                Arc::new(Redactor::default()),
            ))
            .finish();
        tracing::subscriber::with_default(subscriber, emit_events);
        let out = buf.text();
        check(&out);
        assert_eq!(out.lines().count(), 6, "{out}");
    }
}
