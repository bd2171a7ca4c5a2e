//! Logs through `tracing`, as the config says: text or JSON, to stderr, stdout or a file, and
//! **every line through one redacting writer** ([`palisade_redact::RedactingMakeWriter`]):
//! the access log, security events, errors, and Pingora's own `log` records (bridged into the
//! same subscriber). No code path can write a log line that skips it; the one exception to the
//! whole-line scan is the JSON access line, whose formatter ([`AccessJson`]) redacts every value
//! that is not Palisade's own with the same redactor before writing it, which the writer is told for that target only.
//!
//! A log file is written by its own thread from a bounded buffer (see [`ReopenableFile`]); the
//! process calls [`flush`] before it exits. A log file is reopened on SIGUSR1 (`logrotate`'s `postrotate` sends it), so rotation never
//! loses lines or keeps writing to a deleted file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use palisade_config::{LogFormat, LogOutput, Logging};
use palisade_redact::{RedactingMakeWriter, Redactor};

use tracing::field::{Field, Visit};
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Registry};

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("cannot open log file {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid log level `{0}`")]
    Level(String),
    #[error("redaction: {0}")]
    Redaction(#[from] palisade_redact::RedactError),
}

static REDACTOR: OnceLock<Arc<Redactor>> = OnceLock::new();
static LOG_FILE: OnceLock<Arc<ReopenableFile>> = OnceLock::new();
static ACCESS_LOG: OnceLock<bool> = OnceLock::new();

/// The redactor every log line goes through (a default one before `init`).
pub fn redactor() -> &'static Redactor {
    REDACTOR.get_or_init(|| Arc::new(Redactor::default()))
}

/// Whether the per-request access line is written.
pub fn access_log_enabled() -> bool {
    *ACCESS_LOG.get().unwrap_or(&true)
}

/// Reopen the log file (after logrotate moved it). A no-op when logging to stdout/stderr.
pub fn reopen() -> std::io::Result<()> {
    match LOG_FILE.get() {
        Some(f) => f.reopen(),
        None => Ok(()),
    }
}

/// Install the global subscriber. Call once, before the gateway starts.
pub fn init(cfg: &Logging) -> Result<(), LoggingError> {
    let redactor = Arc::new(Redactor::new(&cfg.redaction)?);
    let _ = REDACTOR.set(redactor.clone());
    let _ = ACCESS_LOG.set(cfg.access_log);
    // Pingora is chatty about individual client connection errors at `error`; keep it at `warn`
    // unless the operator's filter says otherwise.
    let directive = if cfg.level.contains("pingora") {
        cfg.level.clone()
    } else {
        format!("{},pingora_core=warn,pingora_proxy=warn", cfg.level)
    };
    let filter =
        EnvFilter::try_new(&directive).map_err(|_| LoggingError::Level(cfg.level.clone()))?;
    match &cfg.output {
        LogOutput::Stderr => install(
            cfg.format,
            filter,
            RedactingMakeWriter::new(std::io::stderr, redactor.clone()),
            redactor,
        ),
        LogOutput::Stdout => install(
            cfg.format,
            filter,
            RedactingMakeWriter::new(std::io::stdout, redactor.clone()),
            redactor,
        ),
        LogOutput::File(path) => {
            let file = Arc::new(ReopenableFile::open(path)?);
            let _ = LOG_FILE.set(file.clone());
            install(
                cfg.format,
                filter,
                RedactingMakeWriter::new(SharedFile(file), redactor.clone()),
                redactor,
            )
        }
    }
    Ok(())
}

fn install<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: RedactingMakeWriter<W>,
    redactor: Arc<Redactor>,
) where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let _ = match format {
        // Access lines are redacted value by value by their formatter (below), so the writer
        // does not scan them again; every other line it scans whole.
        LogFormat::Json => Registry::default()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer.with_pre_redacted_target(ACCESS_TARGET))
                    .with_ansi(false)
                    .json()
                    .event_format(AccessJson::new(redactor))
                    .with_filter(filter),
            )
            .try_init(),
        LogFormat::Text => Registry::default()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .with_ansi(false)
                    .with_filter(filter),
            )
            .try_init(),
    };
}

/// The JSON formatter, with a fast path for the one line every request writes.
///
/// Access lines (`palisade::access`) are written field by field straight into the line buffer:
/// same keys, order and values as `tracing-subscriber`'s flattened JSON (which still formats
/// every other line), without its per-field map and strings (a third of the logging cost per
/// request in the profile). **Every value of an access line is redacted here**, one by one, with
/// the writer's redactor (but the few of [`OWN_FIELDS`], which Palisade writes itself), so the writer does not rescan the line (a whole-line scan cost twice
/// the formatting: ~20 JSON keys to classify for the few values a client chose).
struct AccessJson<F> {
    inner: F,
    redactor: Arc<Redactor>,
}

type StockJson = format::Format<format::Json>;

impl AccessJson<StockJson> {
    fn new(redactor: Arc<Redactor>) -> Self {
        AccessJson {
            inner: tracing_subscriber::fmt::format().json().flatten_event(true),
            redactor,
        }
    }
}

impl<S, N, F> FormatEvent<S, N> for AccessJson<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        if meta.target() != ACCESS_TARGET {
            return self.inner.format_event(ctx, w, event);
        }
        // The line is built in a `String` (static calls, inlined copies) and handed to the
        // writer in one piece; through `Writer` every small write was a dynamic call.
        let mut line = String::with_capacity(512);
        line.push_str("{\"timestamp\":\"");
        push_timestamp(&mut line, std::time::SystemTime::now());
        line.push_str("\",\"level\":\"");
        line.push_str(meta.level().as_str());
        line.push('"');
        let mut fields = JsonFields {
            line: &mut line,
            red: &self.redactor,
        };
        event.record(&mut fields);
        line.push_str(",\"target\":\"");
        line.push_str(ACCESS_TARGET);
        line.push_str("\"}\n");
        w.write_str(&line)
    }
}

/// `2026-11-21T10:47:50.987212Z`: UTC, microseconds, as `tracing-subscriber`'s `SystemTime`
/// writes it (RFC 3339). A time before 1970 (a clock set wrong) is written as the epoch.
fn push_timestamp(line: &mut String, now: std::time::SystemTime) {
    let since = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (y, m, d) = civil_from_days(secs / 86_400);
    let t = secs % 86_400;
    push_digits(line, y, 4);
    line.push('-');
    push_digits(line, m, 2);
    line.push('-');
    push_digits(line, d, 2);
    line.push('T');
    push_digits(line, t / 3600, 2);
    line.push(':');
    push_digits(line, t / 60 % 60, 2);
    line.push(':');
    push_digits(line, t % 60, 2);
    line.push('.');
    push_digits(line, u64::from(since.subsec_micros()), 6);
    line.push('Z');
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, on eras of 400 years).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Decimal digits of `n`, zero-padded to `width` (at most 20), without the `fmt` machinery.
fn push_digits(line: &mut String, mut n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    let floor = buf.len() - width.min(buf.len());
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 && i <= floor {
            break;
        }
    }
    for &b in &buf[i..] {
        line.push(char::from(b));
    }
}

/// The target of the per-request access line.
pub const ACCESS_TARGET: &str = "palisade::access";

/// Fields of the access line whose values Palisade writes itself and no client chooses: the site
/// name and rule ids (from the config), the client address as the redactor already wrote it,
/// and fixed words (HTTP and TLS versions, the action, the error kind). Every other string value
/// is redacted, so a field added to the access line is redacted unless it is listed here.
const OWN_FIELDS: &[&str] = &[
    "site",
    "client_ip",
    "http_version",
    "tls_version",
    "action",
    "waf_rules",
    "error",
];

/// Writes `,"name":value` per field, JSON-escaped like `serde_json` does, every string value
/// but those of [`OWN_FIELDS`] redacted first.
struct JsonFields<'a> {
    line: &'a mut String,
    red: &'a Redactor,
}

impl JsonFields<'_> {
    fn key(&mut self, field: &Field) {
        // Field names are Rust identifiers written in `proxy.rs`: nothing to escape.
        self.line.push_str(",\"");
        self.line.push_str(field.name());
        self.line.push_str("\":");
    }
    fn number(&mut self, field: &Field, negative: bool, n: u64) {
        self.key(field);
        if negative {
            self.line.push('-');
        }
        push_digits(self.line, n, 1);
    }
}

impl Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let value = if value.is_empty() || OWN_FIELDS.contains(&field.name()) {
            std::borrow::Cow::Borrowed(value)
        } else {
            self.red.redact(value)
        };
        self.key(field);
        self.line.push('"');
        push_escaped(self.line, &value);
        self.line.push('"');
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.number(field, false, value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.number(field, value < 0, value.unsigned_abs());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.line.push_str(if value { "true" } else { "false" });
    }
}

/// Bytes a JSON string cannot hold as they are.
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// `s` escaped for a JSON string, as `serde_json` escapes it.
fn push_escaped(line: &mut String, s: &str) {
    // Nearly every value is plain: one tight scan, one copy.
    if !s.bytes().any(needs_escape) {
        line.push_str(s);
        return;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        line.push_str(&s[plain..i]);
        if esc.is_empty() {
            line.push_str("\\u00");
            line.push(char::from(HEX[usize::from(b >> 4)]));
            line.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            line.push_str(esc);
        }
        plain = i + 1;
    }
    line.push_str(&s[plain..]);
}

/// The writer thread wakes this often to write what has accumulated (nginx's `flush=` idea):
/// request threads never wake it per line, which cost more than the write itself.
const FLUSH_INTERVAL: Duration = Duration::from_millis(20);
/// Past this many buffered bytes a request thread wakes the writer early.
const HIGH_WATER: usize = 256 * 1024;
/// The buffer's bound: past it request threads wait for the writer (a slow disk slows requests
/// down rather than losing lines); after 5 s of a stuck disk lines are dropped, never memory grown.
const MAX_BUFFERED: usize = 8 * 1024 * 1024;
static STALL_REPORTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// How long `reopen` and `flush` wait for the writer thread (a stuck disk must not hang shutdown).
const WAIT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Pending {
    /// Finished (already redacted) lines, in the order they were logged.
    buf: Vec<u8>,
    /// Reopen / flush requests: the writer has served every ticket up to `served`.
    reopen_ticket: u64,
    flush_ticket: u64,
    served_reopen: u64,
    served_flush: u64,
    last_reopen: Option<std::io::ErrorKind>,
}

impl Pending {
    /// A reopen or flush the writer has not served yet.
    fn requested(&self) -> bool {
        self.served_reopen < self.reopen_ticket || self.served_flush < self.flush_ticket
    }
}

struct Shared {
    pending: Mutex<Pending>,
    /// Signalled to wake the writer (high water, reopen, flush).
    wake: Condvar,
    /// Signalled by the writer after each batch (space freed, tickets served).
    written: Condvar,
}

impl Shared {
    /// The buffer; a thread that panicked holding it left nothing half-done worth refusing.
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `cv.wait_timeout`, keeping the guard when another thread panicked.
fn wait<'a>(cv: &Condvar, guard: MutexGuard<'a, Pending>, d: Duration) -> MutexGuard<'a, Pending> {
    match cv.wait_timeout(guard, d) {
        Ok((g, _)) => g,
        Err(poison) => poison.into_inner().0,
    }
}

/// An append-only log file written by its own thread. Request threads append finished lines to a
/// bounded buffer under a short lock; the thread writes whatever has accumulated every 20 ms (or
/// sooner past 256 KiB) with one `write(2)`. Reopen (logrotate) and flush are requests the
/// thread serves between batches, so every line logged before `reopen` returns lands in the old
/// file and every line after it in the new one.
pub struct ReopenableFile {
    shared: Arc<Shared>,
}

impl ReopenableFile {
    fn open(path: &Path) -> Result<Self, LoggingError> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let file = open_file(path).map_err(|source| LoggingError::Open {
            path: path.display().to_string(),
            source,
        })?;
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            written: Condvar::new(),
        });
        let thread_shared = shared.clone();
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name("palisade-log".into())
            .spawn(move || write_loop(&path, file, &thread_shared))
            .map_err(|source| LoggingError::Open {
                path: "log writer thread".into(),
                source,
            })?;
        Ok(ReopenableFile { shared })
    }

    fn append(&self, line: &[u8]) {
        let mut p = self.shared.lock();
        let deadline = std::time::Instant::now() + WAIT;
        while p.buf.len() + line.len() > MAX_BUFFERED && !p.buf.is_empty() {
            self.shared.wake.notify_one();
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                // The writer is stuck (a dead disk): keep the bound; stderr says so once, the
                // metric counts every line.
                if !STALL_REPORTED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    eprintln!("palisade: the log file is not being written; dropping log lines");
                }
                lines_lost("stalled", 1);
                return;
            }
            p = wait(&self.shared.written, p, left);
        }
        p.buf.extend_from_slice(line);
        if p.buf.len() >= HIGH_WATER {
            self.shared.wake.notify_one();
        }
    }

    /// Ask the writer for something and wait (bounded) until it has been done.
    fn request(&self, reopen: bool) -> std::io::Result<()> {
        let mut p = self.shared.lock();
        let ticket = if reopen {
            p.reopen_ticket += 1;
            p.reopen_ticket
        } else {
            p.flush_ticket += 1;
            p.flush_ticket
        };
        self.shared.wake.notify_one();
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let served = if reopen {
                p.served_reopen
            } else {
                p.served_flush
            };
            if served >= ticket {
                return match (reopen, p.last_reopen) {
                    (true, Some(kind)) => Err(std::io::Error::from(kind)),
                    _ => Ok(()),
                };
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(std::io::Error::other("the log writer did not answer"));
            }
            p = wait(&self.shared.written, p, left);
        }
    }

    fn reopen(&self) -> std::io::Result<()> {
        self.request(true)
    }

    fn flush(&self) {
        let _ = self.request(false);
    }
}

fn lines_lost(reason: &str, n: usize) {
    if let Some(m) = crate::metrics::metrics() {
        m.log_lines_lost
            .with_label_values(&[reason])
            .inc_by(n as u64);
    }
}

fn line_count(batch: &[u8]) -> usize {
    batch.iter().filter(|&&b| b == b'\n').count()
}

fn open_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn write_loop(path: &Path, mut file: File, shared: &Shared) {
    let mut batch = Vec::new();
    // A write error (disk full) is not fatal: later lines are tried again; stderr says it once.
    let mut failing = false;
    let mut p = shared.lock();
    loop {
        if !p.requested() && p.buf.len() < HIGH_WATER {
            p = wait(&shared.wake, p, FLUSH_INTERVAL);
        }
        if !p.requested() && p.buf.is_empty() {
            continue;
        }
        std::mem::swap(&mut batch, &mut p.buf);
        let (reopen, flush) = (p.reopen_ticket, p.flush_ticket);
        drop(p);
        shared.written.notify_all();

        if !batch.is_empty() {
            match file.write_all(&batch) {
                Ok(()) => failing = false,
                Err(e) => {
                    // (a partial write may have kept some of them; count the batch as lost)
                    lines_lost("write_error", line_count(&batch));
                    if !failing {
                        eprintln!(
                            "palisade: cannot write the log file {}: {e}",
                            path.display()
                        );
                    }
                    failing = true;
                }
            }
            batch.clear();
            // Keep the spare buffer from pinning a burst's worth of memory forever.
            batch.shrink_to(HIGH_WATER);
        }
        p = shared.lock();
        if p.served_reopen < reopen {
            p.last_reopen = match open_file(path) {
                Ok(f) => {
                    file = f;
                    None
                }
                Err(e) => Some(e.kind()),
            };
            p.served_reopen = reopen;
        }
        p.served_flush = flush;
        shared.written.notify_all();
    }
}

/// Wait until every line logged so far is in the log file (call before the process exits).
/// A no-op when logging to stdout/stderr, which are written synchronously.
pub fn flush() {
    if let Some(f) = LOG_FILE.get() {
        f.flush();
    }
}

/// One event's bytes are appended as one piece (the redacting writer hands over a whole line),
/// so lines from different threads never interleave.
pub struct FileWriter<'a>(&'a ReopenableFile);

impl Write for FileWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.append(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The log file as the subscriber's writer factory.
pub struct SharedFile(Arc<ReopenableFile>);

impl<'a> MakeWriter<'a> for SharedFile {
    type Writer = FileWriter<'a>;
    fn make_writer(&'a self) -> Self::Writer {
        FileWriter(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }

    fn access_event() {
        let ua = "Mozilla/5.0 \"quoted\" back\\slash \u{1} tab\t é";
        tracing::info!(
            target: "palisade::access",
            request_id = %"abc",
            site = "shop",
            path = %"/cart",
            status = 200u16,
            upstream_us = -1i64,
            big = i64::MIN,
            zero = 0u64,
            flag = true,
            user_agent = %ua,
            waf_score = 3u32,
            error = "",
        );
    }

    fn without_timestamp(line: &str) -> serde_json::Value {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        v.as_object_mut().unwrap().remove("timestamp").unwrap();
        v
    }

    /// The fast path writes what `tracing-subscriber`'s JSON formatter writes: same keys in the
    /// same order, same values, same escaping (a SIEM parser must not notice the difference).
    #[test]
    fn the_access_fast_path_matches_the_stock_json_formatter() {
        let stock = Capture::default();
        let fast = Capture::default();
        let stock_sub = Registry::default().with(
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_writer(stock.clone()),
        );
        let fast_sub = Registry::default().with(
            tracing_subscriber::fmt::layer()
                .json()
                .event_format(AccessJson::new(Arc::new(Redactor::default())))
                .with_writer(fast.clone()),
        );
        tracing::subscriber::with_default(stock_sub, access_event);
        tracing::subscriber::with_default(fast_sub, access_event);
        let stock = String::from_utf8(stock.0.lock().unwrap().clone()).unwrap();
        let fast = String::from_utf8(fast.0.lock().unwrap().clone()).unwrap();
        assert!(fast.ends_with("\n") && fast.lines().count() == 1, "{fast}");
        let (s, f) = (without_timestamp(&stock), without_timestamp(&fast));
        assert_eq!(s, f);
        // Key order too (serde_json::Value compares maps without order).
        let keys = |line: &str| -> Vec<String> {
            let skip = line.find("\"level\"").unwrap();
            line[skip..]
                .split("\":")
                .filter_map(|k| k.rsplit('"').next().map(str::to_string))
                .collect()
        };
        assert_eq!(keys(&stock), keys(&fast));
        assert!(
            fast.contains("\\u0001") && fast.contains("\\\"quoted\\\""),
            "{fast}"
        );
        // A timestamp of the same shape: 2026-11-21T10:47:50.987212Z
        let ts = |line: &str| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["timestamp"]
                .as_str()
                .unwrap()
                .len()
        };
        assert_eq!(ts(&stock), ts(&fast));
    }

    /// The writer does not rescan access lines, so the formatter must mask every value itself:
    /// a secret in any string field of an access line (whatever its name) is redacted, with
    /// the writer set up exactly as `install` sets it up; other lines are still scanned whole.
    #[test]
    fn every_value_of_an_access_line_is_redacted_by_its_formatter() {
        let sink = Capture::default();
        let red = Arc::new(Redactor::default());
        let writer = RedactingMakeWriter::new(sink.clone(), red.clone())
            .with_pre_redacted_target(ACCESS_TARGET);
        let sub = Registry::default().with(
            tracing_subscriber::fmt::layer()
                .json()
                .event_format(AccessJson::new(red))
                .with_writer(writer),
        );
        let card = "4111111111111111";
        tracing::subscriber::with_default(sub, || {
            tracing::info!(
                target: "palisade::access",
                request_id = card,
                method = "GET",
                path = format!("/order/{card}").as_str(),
                query = "email=bob.smith@example.org&password=hunter2",
                user_agent = %format_args!("agent card {card}"),
                a_field_added_later = "mail bob.smith@example.org",
                status = 200u16,
            );
            tracing::info!(target: "palisade::security", detail = "password=swordfish");
        });
        let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let mut lines = out.lines();
        let access: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(access["method"], "GET");
        assert_eq!(access["status"], 200);
        for leak in [card, "bob.smith", "hunter2"] {
            assert!(!out.contains(leak), "{leak} in {out}");
        }
        assert!(
            access["path"].as_str().unwrap().starts_with("/order/"),
            "{out}"
        );
        assert!(!out.contains("swordfish"), "{out}");
    }

    /// The access line's own timestamp writer agrees with a calendar, leap days and centuries
    /// included.
    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let at = |secs: u64, micros: u64| {
            let mut s = String::new();
            let t = std::time::UNIX_EPOCH + Duration::from_micros(secs * 1_000_000 + micros);
            push_timestamp(&mut s, t);
            s
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
        assert_eq!(at(1_732_186_070, 987_212), "2024-11-21T10:47:50.987212Z");
        assert_eq!(at(1_798_761_599, 999_999), "2026-12-31T23:59:59.999999Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000000Z");
        assert_eq!(at(253_402_300_799, 0), "9999-12-31T23:59:59.000000Z");
    }

    /// Lines queued before a reopen land in the old file, lines after it in the new one, and
    /// `flush` returns once everything queued is on disk.
    #[test]
    fn the_writer_thread_keeps_order_across_reopen_and_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.log");
        let file = ReopenableFile::open(&path).unwrap();
        let mut w = FileWriter(&file);
        for i in 0..1000 {
            w.write_all(format!("before {i}\n").as_bytes()).unwrap();
        }
        std::fs::rename(&path, dir.path().join("gw.log.1")).unwrap();
        file.reopen().unwrap();
        w.write_all(b"after\n").unwrap();
        file.flush();
        let old = std::fs::read_to_string(dir.path().join("gw.log.1")).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(old.lines().count(), 1000);
        assert!(old.ends_with("before 999\n"));
        assert_eq!(new, "after\n");
    }

    /// A file that refuses writes (disk full) loses lines; the loss is counted, not silent, and
    /// the writer keeps serving flushes instead of hanging.
    #[test]
    fn lines_a_full_disk_refuses_are_counted() {
        let lost = || {
            crate::metrics::metrics()
                .unwrap()
                .log_lines_lost
                .with_label_values(&["write_error"])
                .get()
        };
        let before = lost();
        let file = ReopenableFile::open(Path::new("/dev/full")).unwrap();
        let mut w = FileWriter(&file);
        for i in 0..3 {
            w.write_all(format!("line {i}\n").as_bytes()).unwrap();
        }
        file.flush();
        assert_eq!(lost() - before, 3);
    }
}
