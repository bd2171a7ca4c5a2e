//! Palisade's gateway: the config, the TLS store and the hardening engine wired into Pingora.
//!
//! The key design decision: Palisade binds its listening sockets itself and hands the file
//! descriptors to Pingora's services, which run on Palisade's own tokio runtime. That is what lets
//! it listen on port 0 and report the real addresses (tests, `palisade demo`), reload config and
//! certificates on SIGHUP without a restart, and drain cleanly on Ctrl-C/SIGTERM, while every
//! request still goes through Pingora's HTTP/1.1, h2 and rustls stacks.
//!
//! A config is compiled into a [`site::Generation`] held in an `ArcSwap`; a reload builds the
//! next generation beside the running one and swaps it in only when it is complete, so a bad
//! config never replaces a good one and no request sees half of each.

pub mod admin;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod site;
pub mod tls;
pub mod waf;

use std::net::SocketAddr;
use std::os::fd::IntoRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use palisade_config::{Config, ConfigError, Diagnostic};
use pingora::apps::http_app::HttpServer;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::configuration::ServerConf;
use pingora::server::{Fds, ListenFds};
use pingora::services::listening::Service as ListeningService;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::proxy::{EdgeProxy, Listener};
use crate::site::Generation;
use crate::tls::{CertStore, SniResolver};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("certificates: {0}")]
    Certificates(#[from] palisade_config::tls::CertError),
    #[error(transparent)]
    Build(#[from] site::BuildError),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// After the last in-flight request, how long connections get to write their final bytes.
const FLUSH_GRACE: Duration = Duration::from_millis(250);

/// The addresses the gateway actually listens on (port 0 resolved).
#[derive(Debug, Clone, Copy)]
pub struct BoundAddrs {
    pub http: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
}

impl std::fmt::Display for BoundAddrs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |a: Option<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_else(|| "off".into());
        write!(
            f,
            "http={} https={} admin={}",
            show(self.http),
            show(self.https),
            show(self.admin)
        )
    }
}

/// A running gateway.
pub struct Gateway {
    pub addrs: BoundAddrs,
    generation: Arc<ArcSwap<Generation>>,
    resolver: Option<Arc<SniResolver>>,
    shutdown_tx: watch::Sender<bool>,
    services: Vec<JoinHandle<()>>,
    watcher: Option<JoinHandle<()>>,
    draining: Arc<AtomicBool>,
    inflight: Arc<proxy::InFlight>,
    next_generation: AtomicU64,
    /// Reload and the certificate watcher both swap certificates; one at a time.
    reload_lock: tokio::sync::Mutex<()>,
}

/// Per-connection socket buffers of the client listeners. Pingora's default write buffer (1460
/// bytes) sends a response's header on its own and then its body: two `send`s where one does for
/// every page up to 16 KiB. Responses with a Content-Length are flushed when complete, chunked ones
/// after every chunk, so a bigger buffer never holds back a streamed response.
fn l4_buffer() -> L4BufferSettings {
    L4BufferSettings::default().write(16 * 1024)
}

fn bind(
    what: &'static str,
    addr: SocketAddr,
    fds: &mut Fds,
) -> Result<(SocketAddr, String), GatewayError> {
    let err = |source| GatewayError::Bind { what, addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(err)?;
    listener.set_nonblocking(true).map_err(err)?;
    let bound = listener.local_addr().map_err(err)?;
    let key = bound.to_string();
    // Pingora adopts an already-bound socket when its address is in the fd table.
    fds.add(key.clone(), listener.into_raw_fd());
    Ok((bound, key))
}

impl Gateway {
    /// Bind the listeners, load certificates, compile the config and start serving.
    /// Must be called from within a multi-threaded tokio runtime.
    pub async fn start(config: Config) -> Result<Gateway, GatewayError> {
        let config = Arc::new(config);
        let mut fds = Fds::new();
        let http = config
            .server
            .http
            .map(|a| bind("http", a, &mut fds))
            .transpose()?;
        let https = config
            .server
            .https
            .map(|a| bind("https", a, &mut fds))
            .transpose()?;
        let admin = config
            .server
            .admin
            .map(|a| bind("admin", a, &mut fds))
            .transpose()?;
        let addrs = BoundAddrs {
            http: http.as_ref().map(|b| b.0),
            https: https.as_ref().map(|b| b.0),
            admin: admin.as_ref().map(|b| b.0),
        };
        let fds: ListenFds = Arc::new(parking_lot::Mutex::new(fds));

        let https_port = addrs.https.map(|a| a.port()).unwrap_or(443);
        let limits_state = limits::LimitsState::new(&config).map_err(site::BuildError::from)?;
        let generation = Arc::new(ArcSwap::from_pointee(Generation::build(
            1,
            config.clone(),
            https_port,
            limits_state,
        )?));
        let draining = Arc::new(AtomicBool::new(false));
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let conf = Arc::new(ServerConf::default());
        let inflight = Arc::new(proxy::InFlight::default());
        let mut services = Vec::new();

        let resolver = if https.is_some() {
            Some(Arc::new(SniResolver::new(CertStore::load(&config.tls)?)))
        } else {
            None
        };

        if let Some((_, key)) = &http {
            let proxy = EdgeProxy {
                listener: Listener::Plain,
                generation: generation.clone(),
                inflight: inflight.clone(),
            };
            let mut svc =
                pingora::proxy::http_proxy_service_with_name(&conf, proxy, "palisade-http");
            svc.add_listener(ListenerConfig::tcp(key.as_str()).l4_buffer(l4_buffer()));
            services.push(spawn_service(svc, fds.clone(), shutdown_rx.clone()));
        }
        if let (Some((_, key)), Some(resolver)) = (&https, &resolver) {
            let proxy = EdgeProxy {
                listener: Listener::Tls,
                generation: generation.clone(),
                inflight: inflight.clone(),
            };
            let mut svc =
                pingora::proxy::http_proxy_service_with_name(&conf, proxy, "palisade-https");
            let mut settings = TlsSettings::with_callbacks(Box::new(tls::HandshakeCounter))
                .map_err(|e| {
                    GatewayError::Certificates(palisade_config::tls::CertError::BadCertificate {
                        path: PathBuf::new(),
                        reason: e.to_string(),
                    })
                })?;
            settings.set_cert_resolver(resolver.clone());
            if let Some(ca) = &config.tls.client_ca {
                settings.set_client_cert_verifier(tls::client_verifier(ca)?);
            }
            settings.enable_h2();
            svc.add_listener(
                ListenerConfig::tcp(key.as_str())
                    .tls(settings)
                    .l4_buffer(l4_buffer()),
            );
            services.push(spawn_service(svc, fds.clone(), shutdown_rx.clone()));
        }
        if let Some((_, key)) = &admin {
            let app = admin::AdminApp {
                generation: generation.clone(),
                draining: draining.clone(),
            };
            let mut svc = ListeningService::new("palisade-admin".into(), HttpServer::new_app(app));
            svc.add_tcp(key);
            services.push(spawn_service(svc, fds.clone(), shutdown_rx.clone()));
        }

        let mut gw = Gateway {
            addrs,
            generation,
            resolver,
            shutdown_tx,
            services,
            watcher: None,
            draining,
            inflight,
            next_generation: AtomicU64::new(2),
            reload_lock: tokio::sync::Mutex::new(()),
        };
        gw.watcher = gw.spawn_cert_watcher(config.tls.watch_interval);
        if let Some(m) = metrics::metrics() {
            m.config_generation.set(1);
            m.config_last_reload.set(metrics::unix_now());
        }
        Ok(gw)
    }

    fn spawn_cert_watcher(&self, interval: Option<Duration>) -> Option<JoinHandle<()>> {
        let interval = interval?;
        let resolver = self.resolver.clone()?;
        let generation = self.generation.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // A broken pair is reported once, not at every tick, until the files change again.
            let mut refused: Option<Vec<Option<tls::FileStamp>>> = None;
            loop {
                tick.tick().await;
                if !resolver.current().files_changed() {
                    continue;
                }
                let tls = generation.load().config.tls.clone();
                let stamps = tls::file_stamps(&tls);
                if refused.as_ref() == Some(&stamps) {
                    continue;
                }
                match CertStore::load(&tls) {
                    Ok(store) => {
                        refused = None;
                        let names: Vec<String> =
                            store.info.iter().map(|i| i.name.clone()).collect();
                        resolver.swap(store);
                        tracing::info!(event = "certificates_reloaded", certificates = ?names, "certificate files changed on disk: reloaded");
                        announce(&format!("certificates reloaded names={}", names.join(",")));
                    }
                    Err(e) => {
                        refused = Some(stamps);
                        tracing::warn!(event = "certificates_reload_failed", "certificate files changed but cannot be loaded, keeping the current ones: {e}");
                        announce("certificates reload failed");
                    }
                }
            }
        }))
    }

    /// Re-read the config file, validate it, and swap it in. On any error the running config
    /// stays. Listener addresses cannot change without a restart.
    pub async fn reload(&self, path: &std::path::Path) -> Result<u64, ReloadError> {
        let _guard = self.reload_lock.lock().await;
        let loaded = palisade_config::load(path)?;
        for w in &loaded.warnings {
            tracing::warn!(event = "config_warning", "{w}");
        }
        let new = loaded.config;
        let old = self.generation.load_full();
        if new.server.http != old.config.server.http
            || new.server.https != old.config.server.https
            || new.server.admin != old.config.server.admin
        {
            tracing::warn!(
                event = "config_listeners_unchanged",
                "listener addresses changed in the config: they take effect after a restart"
            );
        }
        let store = match (&self.resolver, new.server.https) {
            (Some(_), Some(_)) => {
                Some(CertStore::load(&new.tls).map_err(ReloadError::Certificates)?)
            }
            _ => None,
        };
        let id = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let https_port = self.addrs.https.map(|a| a.port()).unwrap_or(443);
        let gen = Generation::build(id, Arc::new(new), https_port, old.limits_state.clone())
            .map_err(ReloadError::Build)?;
        if let (Some(resolver), Some(store)) = (&self.resolver, store) {
            resolver.swap(store);
        }
        self.generation.store(Arc::new(gen));
        Ok(id)
    }

    /// Stop accepting, let in-flight requests finish for up to `grace`, then return.
    pub async fn shutdown(mut self, grace: Duration) {
        self.draining.store(true, Ordering::Relaxed);
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
        let _ = self.shutdown_tx.send(true);
        let services = std::mem::take(&mut self.services);
        let inflight = self.inflight.clone();
        let all = async move {
            futures_join(services).await;
            inflight.wait_idle().await;
            // A finished request's last bytes may still sit in its connection task (h2 frames
            // are written by the connection driver): let them reach the socket before the
            // runtime goes away.
            tokio::time::sleep(FLUSH_GRACE).await;
        };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!(
                event = "shutdown_timeout",
                "grace period over: closing remaining connections"
            );
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load().id
    }
}

async fn futures_join(handles: Vec<JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}

fn spawn_service<S>(mut svc: S, fds: ListenFds, shutdown: watch::Receiver<bool>) -> JoinHandle<()>
where
    S: pingora::services::Service + 'static,
{
    tokio::spawn(async move {
        svc.start_service(Some(fds), shutdown, 1).await;
    })
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("certificates: {0}")]
    Certificates(palisade_config::tls::CertError),
    #[error(transparent)]
    Build(site::BuildError),
}

impl ReloadError {
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ReloadError::Config(c) => c.diagnostics(),
            _ => &[],
        }
    }
}

/// A line on stdout for whoever supervises the process (an operator, a test, a script):
/// `ready …`, `reloaded …`, `certificates reloaded …`. Logs go elsewhere.
pub fn announce(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The signals the gateway obeys, installed before it announces `ready` so that a signal sent
/// right after that line is never lost to the default action (which would kill the process).
pub struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
}

impl Signals {
    /// Must be called inside the tokio runtime.
    pub fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            usr1: signal(SignalKind::user_defined1())?,
        })
    }
}

/// Run until SIGINT/SIGTERM, reloading `config_path` on SIGHUP and reopening the log on SIGUSR1.
pub async fn serve_until_signal(
    gw: Gateway,
    signals: Signals,
    config_path: Option<PathBuf>,
    grace: Duration,
) {
    let Signals {
        mut hup,
        mut term,
        mut int,
        mut usr1,
    } = signals;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                let Some(path) = &config_path else {
                    tracing::info!("SIGHUP ignored: no config file to reload");
                    continue;
                };
                let result = gw.reload(path).await;
                if let Some(m) = metrics::metrics() {
                    let label = if result.is_ok() { "success" } else { "failure" };
                    m.config_reloads.with_label_values(&[label]).inc();
                    if let Ok(id) = &result {
                        m.config_generation.set(*id as i64);
                        m.config_last_reload.set(metrics::unix_now());
                    }
                }
                match result {
                    Ok(id) => {
                        tracing::info!(event = "config_reloaded", generation = id, "config reloaded");
                        announce(&format!("reloaded generation={id}"));
                    }
                    Err(e) => {
                        tracing::error!(event = "config_reload_failed", "reload refused, still serving generation {}: {e}", gw.generation());
                        announce(&format!("reload failed generation={}", gw.generation()));
                    }
                }
            }
            _ = usr1.recv() => {
                match logging::reopen() {
                    Ok(()) => {
                        tracing::info!(event = "log_reopened", "log file reopened");
                        announce("log reopened");
                    }
                    Err(e) => tracing::error!(event = "log_reopen_failed", "cannot reopen the log file: {e}"),
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!(event = "shutdown", "shutting down");
    gw.shutdown(grace).await;
}
