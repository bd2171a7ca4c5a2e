//! The choke point: a `MakeWriter` that redacts every formatted log line before it is written.

use std::io::{self, Write};
use std::sync::Arc;

use tracing_subscriber::fmt::MakeWriter;

use crate::Redactor;

/// Longest line written by default; longer ones are cut and marked with [`TRUNCATED_MARKER`].
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

/// Appended (with a newline) to a line that was cut at the size limit.
pub const TRUNCATED_MARKER: &str = " [TRUNCATED]";

/// How far back a cut line is trimmed, so that the tail of a half-cut secret (a card number split at
/// the limit, an e-mail, a token) is dropped rather than written unrecognised.
const CUT_TRIM: usize = 256;

/// Wraps any `tracing-subscriber` [`MakeWriter`]: each writer it makes buffers the bytes of one
/// event, then redacts them and writes them to the inner writer in one piece when flushed or dropped.
/// A write that brings a whole line (`…\n`) into an empty buffer is redacted and written at once
/// (that is how `tracing-subscriber`'s fmt layer writes, one `write_all` per event).
#[derive(Debug, Clone)]
pub struct RedactingMakeWriter<M> {
    inner: M,
    redactor: Arc<Redactor>,
    max_line: usize,
    /// Events of this target are formatted by a formatter that passes every value through the
    /// same redactor itself (see [`RedactingMakeWriter::with_pre_redacted_target`]).
    pre_redacted: Option<&'static str>,
}

impl<M> RedactingMakeWriter<M> {
    pub fn new(inner: M, redactor: Arc<Redactor>) -> Self {
        RedactingMakeWriter {
            inner,
            redactor,
            max_line: DEFAULT_MAX_LINE,
            pre_redacted: None,
        }
    }

    /// Lines of events with this `target` are not scanned again here: the caller promises that
    /// the formatter it installed for them redacts **every** value of such an event that the program did not
    /// write itself with [`RedactingMakeWriter::redactor`] before writing it (keys, level,
    /// timestamp and fixed words being the program's own text). The size limit and its cut still apply. A fixed-shape line whose few
    /// client-chosen values are redacted one by one costs a fraction of a rescan of the whole
    /// line (the per-request access line: two thirds of its logging cost).
    pub fn with_pre_redacted_target(mut self, target: &'static str) -> Self {
        self.pre_redacted = Some(target);
        self
    }

    /// Change the per-event size limit (at least 1 KiB).
    pub fn with_max_line(mut self, max_line: usize) -> Self {
        self.max_line = max_line.max(1024);
        self
    }

    pub fn redactor(&self) -> &Arc<Redactor> {
        &self.redactor
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for RedactingMakeWriter<M> {
    type Writer = RedactingWriter<'a, M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter::new(self.inner.make_writer(), &self.redactor, self.max_line)
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        let mut w = RedactingWriter::new(
            self.inner.make_writer_for(meta),
            &self.redactor,
            self.max_line,
        );
        w.scan = self.pre_redacted != Some(meta.target());
        w
    }
}

/// One event's writer: see [`RedactingMakeWriter`].
pub struct RedactingWriter<'a, W: Write> {
    inner: W,
    redactor: &'a Redactor,
    buf: Vec<u8>,
    truncated: bool,
    max_line: usize,
    /// False for a line whose values its formatter has already redacted.
    scan: bool,
}

impl<'a, W: Write> RedactingWriter<'a, W> {
    /// `max_line` is the per-event size limit (at least 1 KiB is used).
    pub fn new(inner: W, redactor: &'a Redactor, max_line: usize) -> Self {
        RedactingWriter {
            inner,
            redactor,
            buf: Vec::new(),
            truncated: false,
            max_line: max_line.max(1024),
            scan: true,
        }
    }

    /// Redact and write what is buffered.
    fn emit(&mut self) -> io::Result<()> {
        if self.buf.is_empty() && !self.truncated {
            return Ok(());
        }
        let mut data = std::mem::take(&mut self.buf);
        let truncated = std::mem::replace(&mut self.truncated, false);
        if truncated {
            trim_cut(&mut data);
        }
        let redactor = self.scan.then_some(self.redactor);
        let res = write_redacted(&mut self.inner, redactor, &data, truncated);
        data.clear();
        self.buf = data; // keep the allocation if the writer is reused
        res
    }
}

/// `redactor` is `None` for a line its formatter has already redacted.
fn write_redacted<W: Write>(
    inner: &mut W,
    redactor: Option<&Redactor>,
    data: &[u8],
    truncated: bool,
) -> io::Result<()> {
    if redactor.is_none() && !truncated {
        return inner.write_all(data);
    }
    let text = String::from_utf8_lossy(data);
    let red = match redactor {
        Some(r) => r.redact(&text),
        None => text,
    };
    if truncated {
        let mut line = String::with_capacity(red.len() + TRUNCATED_MARKER.len() + 1);
        line.push_str(&red);
        line.push_str(TRUNCATED_MARKER);
        line.push('\n');
        inner.write_all(line.as_bytes())
    } else {
        inner.write_all(red.as_bytes())
    }
}

/// Drop the tail of a line cut at the limit back to the last byte that cannot be inside a token,
/// a card number or an e-mail (at most [`CUT_TRIM`] bytes; all of them if none is found).
fn trim_cut(data: &mut Vec<u8>) {
    let floor = data.len().saturating_sub(CUT_TRIM);
    let mut end = data.len();
    while end > floor {
        let c = data[end - 1];
        let tokenish = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b' ' | b'-' | b'+' | b'%' | b'.' | b'_' | b'@' | b'~' | b'/' | b'=' | b':' | b'\\'
            )
            || c >= 0x80;
        if !tokenish {
            break;
        }
        end -= 1;
    }
    data.truncate(end);
}

impl<W: Write> Write for RedactingWriter<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.is_empty()
            && !self.truncated
            && data.len() <= self.max_line
            && data.last() == Some(&b'\n')
        {
            let redactor = self.scan.then_some(self.redactor);
            write_redacted(&mut self.inner, redactor, data, false)?;
            return Ok(data.len());
        }
        let room = self.max_line.saturating_sub(self.buf.len());
        if data.len() > room {
            self.buf.extend_from_slice(&data[..room]);
            self.truncated = true;
        } else {
            self.buf.extend_from_slice(data);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.emit()?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for RedactingWriter<'_, W> {
    fn drop(&mut self) {
        let _ = self.emit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, d: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(d);
            Ok(d.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Shared {
        type Writer = Shared;
        fn make_writer(&'a self) -> Shared {
            self.clone()
        }
    }

    fn out(s: &Shared) -> String {
        String::from_utf8(s.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn pieces_are_joined_before_redaction() {
        let sink = Shared::default();
        let mw = RedactingMakeWriter::new(sink.clone(), Arc::new(Redactor::default()));
        {
            let mut w = mw.make_writer();
            w.write_all(b"card=4111 1111 ").unwrap();
            w.write_all(b"1111 1111 password=").unwrap();
            w.write_all(b"hunter2\n").unwrap();
        }
        let o = out(&sink);
        assert_eq!(o, "card=[REDACTED] password=[REDACTED]\n");
    }

    #[test]
    fn whole_line_fast_path() {
        let sink = Shared::default();
        let mw = RedactingMakeWriter::new(sink.clone(), Arc::new(Redactor::default()));
        let mut w = mw.make_writer();
        w.write_all(b"paid with 4111-1111-1111-1111 ok\n").unwrap();
        w.write_all(b"mail bob@example.org\n").unwrap();
        drop(w);
        assert_eq!(out(&sink), "paid with ****1111 ok\nmail b***@***.org\n");
    }

    /// Only the target whose formatter redacts its own values skips the scan; every other line
    /// of the same subscriber is still redacted here, and a cut pre-redacted line keeps its cut.
    #[test]
    fn only_the_pre_redacted_target_skips_the_scan() {
        let sink = Shared::default();
        let mw = RedactingMakeWriter::new(sink.clone(), Arc::new(Redactor::default()))
            .with_pre_redacted_target("app::own")
            .with_max_line(1024);
        let sub = tracing_subscriber::fmt()
            .with_writer(mw)
            .with_ansi(false)
            .without_time()
            .finish();
        let long = "y".repeat(2000);
        tracing::subscriber::with_default(sub, || {
            tracing::info!(target: "app::own", "password=as-its-formatter-wrote-it");
            tracing::info!(target: "app::other", "password=hunter2");
            tracing::info!(target: "app::own", "{long}");
        });
        let o = out(&sink);
        assert!(o.contains("password=as-its-formatter-wrote-it"), "{o}");
        assert!(!o.contains("hunter2"), "{o}");
        assert!(o.contains("password=[REDACTED]"), "{o}");
        let cut = o.lines().last().unwrap();
        assert!(cut.ends_with(TRUNCATED_MARKER) && cut.len() <= 1024 + TRUNCATED_MARKER.len());
    }

    #[test]
    fn overflow_is_truncated_and_cut_secrets_dropped() {
        let sink = Shared::default();
        let mw = RedactingMakeWriter::new(sink.clone(), Arc::new(Redactor::default()))
            .with_max_line(1024);
        let mut line = "x\"".repeat(500); // 1000 bytes of non-token text
        line.push_str(" pan 4111 1111 1111 1111 and more text after it\n");
        {
            let mut w = mw.make_writer();
            w.write_all(line.as_bytes()).unwrap();
        }
        let o = out(&sink);
        assert!(o.ends_with(" [TRUNCATED]\n"), "{o}");
        assert!(o.len() <= 1024 + TRUNCATED_MARKER.len() + 1);
        assert!(!o.contains("4111"), "{o}");
        assert!(!o.contains("1111 11"), "{o}");
    }
}
