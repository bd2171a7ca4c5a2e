//! Operational logs through `tracing`, as the config says: text or JSON, to stderr, stdout or a
//! file. Pingora's own `log` records are bridged into the same subscriber.
//!
//! What is logged is chosen so that no customer data reaches it: request lines carry the request
//! id, site, method and status, never the path, query, headers or body (the redaction layer that
//! makes richer access logs safe is a separate piece of work).

use std::fs::OpenOptions;
use std::sync::Mutex;

use palisade_config::{LogFormat, LogOutput, Logging};
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
}

/// Install the global subscriber. Call once, before the gateway starts.
pub fn init(cfg: &Logging) -> Result<(), LoggingError> {
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
        LogOutput::Stderr => install(cfg.format, filter, std::io::stderr),
        LogOutput::Stdout => install(cfg.format, filter, std::io::stdout),
        LogOutput::File(path) => {
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| LoggingError::Open {
                    path: path.display().to_string(),
                    source,
                })?;
            install(cfg.format, filter, Mutex::new(file))
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
