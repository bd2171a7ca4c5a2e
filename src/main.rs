//! `palisade`: the command line. Parse arguments, read the config, hand over to the gateway.
//!
//! Exit codes: 0 success, 78 (`EX_CONFIG`) invalid config, 1 any other failure.

mod bans;
mod demo;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use palisade_gateway::{announce, serve_until_signal, Gateway, Signals};

pub(crate) const EX_CONFIG: u8 = 78;

/// mimalloc instead of glibc's allocator: the profile showed glibc malloc/free at 12-13 % of the
/// gateway's CPU (about 110 small allocations per proxied request, freed on other threads).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "palisade",
    version,
    about = "A security gateway for online shops, built on Pingora"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway with a config file (SIGHUP reloads it, SIGTERM/Ctrl-C drains and stops).
    Run {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Validate a config file: every error as `file:line:col: message`, non-zero exit if any.
    Check {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Run a demo: a careless legacy shop on loopback with Palisade in front of it.
    Demo(demo::DemoArgs),
    /// List or lift bans on a running gateway (through its admin listener).
    Bans(bans::BansArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Check { config } => check(&config),
        Command::Run { config } => run(&config),
        Command::Demo(args) => demo::run(args),
        Command::Bans(args) => bans::run(args),
    };
    // Log files are written by their own thread: every line logged so far lands before exit.
    palisade_gateway::logging::flush();
    code
}

fn check(path: &std::path::Path) -> ExitCode {
    match palisade_config::load(path) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("{w}");
            }
            println!(
                "{}: ok ({} sites, {} certificates, {} warnings)",
                path.display(),
                loaded.config.sites.len(),
                loaded.config.tls.certificates.len(),
                loaded.warnings.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(EX_CONFIG)
        }
    }
}

fn run(path: &std::path::Path) -> ExitCode {
    let loaded = match palisade_config::load(path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    if let Err(e) = palisade_gateway::logging::init(&loaded.config.logging) {
        eprintln!("palisade: {e}");
        return ExitCode::from(EX_CONFIG);
    }
    for w in &loaded.warnings {
        tracing::warn!(event = "config_warning", "{w}");
    }
    let grace = loaded.config.server.shutdown_grace;
    let rt = match control_runtime(1) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(serve(loaded.config, Some(path.to_path_buf()), grace))
}

/// The control runtime: signals, reloads, the admin listener, health checks, the certificate
/// watcher and the cluster link (and, in the demo, the shop). Requests are not served here but
/// on the gateway's `server.threads` worker threads, each with a runtime of its own. `workers`
/// threads run its tasks; `block_on` runs the signal loop and reloads beside them, so a slow
/// reload never holds up a health check or the admin listener.
pub(crate) fn control_runtime(workers: usize) -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .thread_name("palisade-control")
        .build()
        .map_err(|e| {
            eprintln!("palisade: cannot start the runtime: {e}");
            ExitCode::FAILURE
        })
}

/// Start the gateway and serve until a stop signal; announces `ready …` on stdout.
async fn serve(
    config: palisade_config::Config,
    config_path: Option<PathBuf>,
    grace: Duration,
) -> ExitCode {
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("palisade: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    match Gateway::start(config).await {
        Ok(gw) => {
            tracing::info!(event = "ready", addrs = %gw.addrs, "palisade is serving");
            announce(&format!("ready {}", gw.addrs));
            serve_until_signal(gw, signals, config_path, grace).await;
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("palisade: {e}");
            tracing::error!("cannot start: {e}");
            ExitCode::FAILURE
        }
    }
}
