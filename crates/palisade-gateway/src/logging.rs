//! Logs through `tracing`, as the config says: text or JSON, to stderr, stdout or a file, and
//! **every line through one redacting writer** ([`palisade_redact::RedactingMakeWriter`]):
//! the access log, security events, errors, and Pingora's own `log` records (bridged into the
//! same subscriber). No code path can write a log line that skips it.
//!
//! A log file is reopened on SIGUSR1 (`logrotate`'s `postrotate` sends it), so rotation never
//! loses lines or keeps writing to a deleted file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use palisade_config::{LogFormat, LogOutput, Logging};
use palisade_redact::{RedactingMakeWriter, Redactor};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Registry};

use crate::metrics::{HandshakeFailureLayer, PINGORA_LISTENER_TARGET};

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
            RedactingMakeWriter::new(std::io::stderr, redactor),
        ),
        LogOutput::Stdout => install(
            cfg.format,
            filter,
            RedactingMakeWriter::new(std::io::stdout, redactor),
        ),
        LogOutput::File(path) => {
            let file = Arc::new(ReopenableFile::open(path)?);
            let _ = LOG_FILE.set(file.clone());
            install(
                cfg.format,
                filter,
                RedactingMakeWriter::new(SharedFile(file), redactor),
            )
        }
    }
    Ok(())
}

fn install<W>(format: LogFormat, filter: EnvFilter, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(false);
    let _ = match format {
        LogFormat::Json => Registry::default()
            .with(fmt.json().flatten_event(true).with_filter(filter))
            .with(counting())
            .try_init(),
        LogFormat::Text => Registry::default()
            .with(fmt.with_filter(filter))
            .with(counting())
            .try_init(),
    };
}

/// Counts TLS handshake failures whatever the log level says.
fn counting<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    HandshakeFailureLayer
        .with_filter(Targets::new().with_target(PINGORA_LISTENER_TARGET, tracing::Level::ERROR))
}

/// An append-only log file that can be reopened in place.
pub struct ReopenableFile {
    path: PathBuf,
    file: Mutex<File>,
}

impl ReopenableFile {
    fn open(path: &Path) -> Result<Self, LoggingError> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let file = Self::open_file(path).map_err(|source| LoggingError::Open {
            path: path.display().to_string(),
            source,
        })?;
        Ok(ReopenableFile {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    fn open_file(path: &Path) -> std::io::Result<File> {
        OpenOptions::new().create(true).append(true).open(path)
    }

    fn reopen(&self) -> std::io::Result<()> {
        let new = Self::open_file(&self.path)?;
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let _ = guard.flush();
        *guard = new;
        Ok(())
    }
}

/// One event's bytes are written with one `write_all` under the lock (the redacting writer
/// buffers a whole line first), so lines from different threads never interleave.
pub struct FileWriter<'a>(&'a ReopenableFile);

impl Write for FileWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut f = self.0.file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let mut f = self.0.file.lock().unwrap_or_else(|p| p.into_inner());
        f.flush()
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
