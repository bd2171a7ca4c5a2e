//! Palisade's gateway: the config, the TLS store and the hardening engine wired into Pingora.
//!
//! The key design decision: Palisade binds its listening sockets itself and hands the file
//! descriptors to Pingora's services, which run on Palisade's own tokio runtimes. That is what
//! lets it listen on port 0 and report the real addresses (tests, `palisade demo`), reload config
//! and certificates on SIGHUP without a restart, and drain cleanly on Ctrl-C/SIGTERM, while every
//! request still goes through Pingora's HTTP/1.1, h2 and rustls stacks.
//!
//! The proxy listeners are served by `server.threads` [`worker`] threads, each a current-thread
//! runtime with its own Pingora services on its own `SO_REUSEPORT` socket (the nginx worker
//! model); the admin listener and everything that is not request serving (signals, reloads,
//! health checks, the certificate watcher, the cluster link) stay on the control runtime
//! [`Gateway::start`] is called from.
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
mod worker;

use std::net::SocketAddr;
use std::os::fd::IntoRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use palisade_config::{Config, ConfigError, Diagnostic};
use pingora::apps::http_app::HttpServer;
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::proxy::HttpProxy;
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
    #[error("cannot start worker thread {index}: {source}")]
    Worker {
        index: usize,
        source: std::io::Error,
    },
}

/// After the last in-flight request, how long connections get to write their final bytes.
const FLUSH_GRACE: Duration = Duration::from_millis(250);

/// Once the shutdown grace is over, how long the worker threads get at least to drop their
/// runtimes (closing the connections left) and end.
const STOP_GRACE: Duration = Duration::from_secs(1);

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
    /// The worker threads serving the proxy listeners (none if both are off).
    workers: Vec<worker::Worker>,
    /// The admin listener's service, on the control runtime.
    admin: Option<JoinHandle<()>>,
    watcher: Option<JoinHandle<()>>,
    draining: Arc<AtomicBool>,
    /// `server.threads` as started (a reload cannot change it).
    threads: usize,
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

/// The admin listener's socket: one, served on the control runtime.
fn bind_admin(addr: SocketAddr) -> Result<(SocketAddr, std::net::TcpListener), GatewayError> {
    let err = |source| GatewayError::Bind {
        what: "admin",
        addr,
        source,
    };
    let listener = std::net::TcpListener::bind(addr).map_err(err)?;
    listener.set_nonblocking(true).map_err(err)?;
    let bound = listener.local_addr().map_err(err)?;
    Ok((bound, listener))
}

/// The plain listener's Pingora service: one per worker.
type PlainService = ListeningService<HttpProxy<EdgeProxy>>;
/// The TLS listener's Pingora service: one per worker, all with the same rustls config.
type TlsService = ListeningService<tls::TlsTerminator<HttpProxy<EdgeProxy>>>;

/// What every worker's proxy services are built from (all shared, all thread-safe).
struct ProxyParts {
    conf: Arc<ServerConf>,
    generation: Arc<ArcSwap<Generation>>,
}

impl ProxyParts {
    fn proxy(
        &self,
        listener: Listener,
        worker: usize,
        inflight: &Arc<proxy::InFlight>,
    ) -> EdgeProxy {
        EdgeProxy {
            listener,
            generation: self.generation.clone(),
            inflight: inflight.clone(),
            worker_requests: metrics::metrics()
                .map(|m| m.worker_requests.with_label_values(&[&worker.to_string()])),
        }
    }

    /// Worker `worker`'s service for the plain listener, whose socket the fd table names `key`.
    fn plain_service(
        &self,
        worker: usize,
        inflight: &Arc<proxy::InFlight>,
        key: &str,
    ) -> PlainService {
        let proxy = self.proxy(Listener::Plain, worker, inflight);
        let mut svc =
            pingora::proxy::http_proxy_service_with_name(&self.conf, proxy, "palisade-http");
        svc.add_listener(ListenerConfig::tcp(key).l4_buffer(l4_buffer()));
        svc
    }

    /// Worker `worker`'s service for the TLS listener: the TCP connections Pingora accepts get
    /// their handshake with `tls_config`, the one every worker shares (one session cache; the
    /// certificates come from the shared resolver, so a reload reaches every worker at once).
    fn tls_service(
        &self,
        worker: usize,
        inflight: &Arc<proxy::InFlight>,
        key: &str,
        tls_config: &Arc<rustls::ServerConfig>,
    ) -> TlsService {
        let mut proxy = HttpProxy::new(
            self.proxy(Listener::Tls, worker, inflight),
            self.conf.clone(),
        );
        proxy.handle_init_modules();
        let app = tls::TlsTerminator::new(tls_config.clone(), proxy);
        let mut svc = ListeningService::new("palisade-https".into(), app);
        svc.add_listener(ListenerConfig::tcp(key).l4_buffer(l4_buffer()));
        svc
    }
}

impl Gateway {
    /// Bind the listeners, load certificates, compile the config, start the worker threads and
    /// return once every one of them serves. Must be called from within the control runtime (a
    /// multi-threaded tokio runtime): the admin listener, health checks, the certificate watcher
    /// and the cluster link are spawned on it.
    pub async fn start(config: Config) -> Result<Gateway, GatewayError> {
        let config = Arc::new(config);
        let threads = config.server.threads.max(1);
        let http = config
            .server
            .http
            .map(|a| worker::bind_group("http", a, threads))
            .transpose()?;
        let https = config
            .server
            .https
            .map(|a| worker::bind_group("https", a, threads))
            .transpose()?;
        let admin = config.server.admin.map(bind_admin).transpose()?;
        let addrs = BoundAddrs {
            http: http.as_ref().map(|g| g.addr),
            https: https.as_ref().map(|g| g.addr),
            admin: admin.as_ref().map(|b| b.0),
        };

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

        let resolver = if https.is_some() {
            Some(Arc::new(SniResolver::new(CertStore::load(&config.tls)?)))
        } else {
            None
        };
        let tls_config = match &resolver {
            Some(resolver) => {
                let verifier = config
                    .tls
                    .client_ca
                    .as_deref()
                    .map(tls::client_verifier)
                    .transpose()?;
                let tls_config = tls::server_config(resolver.clone(), verifier).map_err(|e| {
                    palisade_config::tls::CertError::BadCertificate {
                        path: PathBuf::new(),
                        reason: e.to_string(),
                    }
                })?;
                Some(tls_config)
            }
            None => None,
        };
        let parts = ProxyParts {
            conf: Arc::new(ServerConf::default()),
            generation: generation.clone(),
        };

        // Worker n serves the n-th socket of each listener with services of its own. The fd
        // tables name a socket by the address it is bound to.
        let mut http_sockets = http.map(|g| g.sockets).unwrap_or_default().into_iter();
        let mut https_sockets = https.map(|g| g.sockets).unwrap_or_default().into_iter();
        let mut workers = Vec::with_capacity(threads);
        for index in 0..threads {
            let inflight = Arc::new(proxy::InFlight::default());
            let mut plan = worker::Plan::new(index);
            if let (Some(addr), Some(socket)) = (addrs.http, http_sockets.next()) {
                let key = addr.to_string();
                plan.serve(parts.plain_service(index, &inflight, &key), key, socket);
            }
            if let (Some(addr), Some(socket), Some(tls_config)) =
                (addrs.https, https_sockets.next(), &tls_config)
            {
                let key = addr.to_string();
                let svc = parts.tls_service(index, &inflight, &key, tls_config);
                plan.serve(svc, key, socket);
            }
            if plan.is_empty() {
                break;
            }
            workers.push(worker::Worker::spawn(plan, inflight, shutdown_rx.clone())?);
        }
        // `ready` is announced once this returns: every worker must serve by then.
        for w in &mut workers {
            w.serving().await?;
        }

        let admin = admin.map(|(addr, socket)| {
            let app = admin::AdminApp {
                generation: generation.clone(),
                draining: draining.clone(),
            };
            let mut svc = ListeningService::new("palisade-admin".into(), HttpServer::new_app(app));
            let key = addr.to_string();
            svc.add_tcp(&key);
            // Pingora adopts an already-bound socket when its address is in the fd table.
            let mut fds = Fds::new();
            fds.add(key, socket.into_raw_fd());
            let fds: ListenFds = Arc::new(parking_lot::Mutex::new(fds));
            spawn_service(svc, fds, shutdown_rx.clone())
        });

        let mut gw = Gateway {
            addrs,
            generation,
            resolver,
            shutdown_tx,
            workers,
            admin,
            watcher: None,
            draining,
            threads,
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
        if new.server.threads != self.threads {
            tracing::warn!(
                event = "config_threads_unchanged",
                running = self.threads,
                "server.threads changed in the config: it takes effect after a restart"
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

    /// Stop accepting on every worker and the admin listener, let in-flight requests on every
    /// worker finish for up to `grace`, then stop the worker threads (closing what is left) and
    /// return. Only stopping the threads may run past `grace`, by at most [`STOP_GRACE`].
    pub async fn shutdown(mut self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        self.draining.store(true, Ordering::Relaxed);
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
        let _ = self.shutdown_tx.send(true);
        let mut workers = std::mem::take(&mut self.workers);
        let admin = self.admin.take();
        let drained = async {
            for w in &mut workers {
                w.drained().await;
            }
            if let Some(admin) = admin {
                let _ = admin.await;
            }
            for w in &workers {
                w.inflight.wait_idle().await;
            }
            // A finished request's last bytes may still sit in its connection task (h2 frames
            // are written by the connection driver): let them reach the socket before the
            // worker runtimes go away.
            tokio::time::sleep(FLUSH_GRACE).await;
        };
        if tokio::time::timeout_at(deadline, drained).await.is_err() {
            tracing::warn!(
                event = "shutdown_timeout",
                "grace period over: closing remaining connections"
            );
        }
        let by = deadline.max(tokio::time::Instant::now() + STOP_GRACE);
        for w in &mut workers {
            w.request_stop();
        }
        for w in workers {
            let index = w.index;
            if !w.join(by).await {
                tracing::warn!(
                    event = "worker_stop_timeout",
                    worker = index,
                    "a worker thread did not stop in time; it ends with the process"
                );
            }
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load().id
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
