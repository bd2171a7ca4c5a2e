//! Worker threads: the proxy listeners served the way nginx serves them.
//!
//! `server.threads` workers, each an OS thread running a current-thread tokio runtime with its
//! own Pingora services for the plain and TLS listeners (so its own upstream connection pool) on
//! its own listening sockets. The sockets of one listener are bound to one address with
//! `SO_REUSEPORT`; the kernel hashes each new connection (by its 4-tuple) to one of them, and the
//! connection lives and dies on the thread that accepted it: no cross-thread wake-ups, no work
//! stealing. On this project's 2-vCPU test machine that served ~35 % more keep-alive requests
//! per second than Pingora on one multi-thread runtime.
//!
//! What is shared between workers is shared by reference and is already thread-safe: the config
//! generation (`ArcSwap`), the certificate resolver, limits, bans and metrics. Everything that is
//! not request serving (signals, reloads, the admin listener, health checks, the certificate
//! watcher, the cluster link) runs on the control runtime the gateway was started from.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::IntoRawFd;
use std::sync::Arc;
use std::time::Duration;

use pingora::server::{Fds, ListenFds};
use pingora::services::Service;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::proxy::InFlight;
use crate::GatewayError;

/// The listen backlog of a socket until Pingora adopts it (Pingora then raises it to 65535).
const BACKLOG: i32 = 1024;

/// When a worker's runtime is dropped, how long blocking work it started may take to finish.
const RUNTIME_STOP: Duration = Duration::from_millis(100);

/// One listener's sockets, all bound to `addr`: one per worker.
pub(crate) struct SocketGroup {
    pub addr: SocketAddr,
    pub sockets: Vec<TcpListener>,
}

/// Bind `count` listening sockets to `addr`. The first is bound as asked (port 0 picks a free
/// port); the others are bound to the address it got, so every socket of the group has the
/// same port. With more than one socket every socket has `SO_REUSEPORT` set before its bind;
/// with one it has not, as before workers existed.
pub(crate) fn bind_group(
    what: &'static str,
    addr: SocketAddr,
    count: usize,
) -> Result<SocketGroup, GatewayError> {
    let err = |addr| move |source| GatewayError::Bind { what, addr, source };
    let shared = count > 1;
    if shared && addr.port() != 0 {
        refuse_if_taken(addr).map_err(err(addr))?;
    }
    let first = listen_socket(addr, shared).map_err(err(addr))?;
    let bound = first.local_addr().map_err(err(addr))?;
    let mut sockets = Vec::with_capacity(count);
    sockets.push(first);
    for _ in 1..count {
        sockets.push(listen_socket(bound, true).map_err(err(bound))?);
    }
    Ok(SocketGroup {
        addr: bound,
        sockets,
    })
}

fn listen_socket(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // What std's `TcpListener::bind` sets: a restart does not wait for TIME_WAIT to clear.
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// A `SO_REUSEPORT` bind succeeds beside another process's `SO_REUSEPORT` sockets on the same
/// address when that process runs as the same user: a second gateway started by mistake would
/// silently take a share of the connections. A plain bind fails with "address in use" in that
/// case (and whenever anything else listens there), so one is tried first and released at once.
/// A window remains between the two binds; only a process of the same user can use it.
fn refuse_if_taken(addr: SocketAddr) -> std::io::Result<()> {
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into())
}

/// What one worker serves: its own Pingora services and the sockets their listeners adopt.
pub(crate) struct Plan {
    pub index: usize,
    services: Vec<Box<dyn Service>>,
    sockets: Vec<(String, TcpListener)>,
}

impl Plan {
    pub fn new(index: usize) -> Plan {
        Plan {
            index,
            services: Vec::new(),
            sockets: Vec::new(),
        }
    }

    /// Serve `service` on `socket`; the service's listener names the socket by `key`.
    pub fn serve(&mut self, service: impl Service + 'static, key: String, socket: TcpListener) {
        self.services.push(Box::new(service));
        self.sockets.push((key, socket));
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }
}

/// Where a worker thread is; only ever moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Starting,
    /// Its services run on its runtime and had one turn of its scheduler, in which they normally
    /// adopt its sockets and start accepting. (The sockets listen from their bind on: a
    /// connection made before the accept loop runs waits in the backlog and is then accepted.)
    Serving,
    /// Its accept loops have ended (shutdown); requests already in flight go on.
    Drained,
    /// Its runtime is gone, with every connection it still held.
    Exited,
}

/// A running worker thread, seen from the control runtime.
pub(crate) struct Worker {
    pub index: usize,
    /// This worker's requests between `new_ctx` and the end of `logging`.
    pub inflight: Arc<InFlight>,
    phase: watch::Receiver<Phase>,
    /// Dropped (or sent) to stop the worker's runtime; dropping the `Worker` does it too.
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    /// Start the worker thread. Its runtime is built here, so a failure is reported at once; the
    /// sockets become Pingora's (raw fds in the worker's own fd table) only on the thread.
    pub fn spawn(
        plan: Plan,
        inflight: Arc<InFlight>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Worker, GatewayError> {
        let index = plan.index;
        let err = |source| GatewayError::Worker { index, source };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(err)?;
        let (phase_tx, phase) = watch::channel(Phase::Starting);
        let (stop, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("palisade-worker-{index}"))
            .spawn(move || run(rt, plan, shutdown, phase_tx, stop_rx))
            .map_err(err)?;
        Ok(Worker {
            index,
            inflight,
            phase,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Resolves once the worker serves; an error if its thread ended before it did.
    pub async fn serving(&mut self) -> Result<(), GatewayError> {
        let reached = self.phase.wait_for(|p| *p >= Phase::Serving).await;
        match reached.map(|p| *p) {
            Ok(Phase::Serving) => Ok(()),
            _ => Err(GatewayError::Worker {
                index: self.index,
                source: std::io::Error::other("the worker thread stopped while starting"),
            }),
        }
    }

    /// Resolves once the worker no longer accepts connections (or its thread is gone).
    pub async fn drained(&mut self) {
        let _ = self.phase.wait_for(|p| *p >= Phase::Drained).await;
    }

    /// Stop the worker's runtime (closing whatever connection it still holds) without waiting.
    pub fn request_stop(&mut self) {
        self.stop.take();
    }

    /// Stop the worker and wait until its thread has ended, at most until `by`. `false` if it
    /// had not by then: the thread is left to end with the process.
    pub async fn join(mut self, by: Instant) -> bool {
        self.request_stop();
        let exited = tokio::time::timeout_at(by, self.phase.wait_for(|p| *p == Phase::Exited));
        if exited.await.is_err() {
            return false;
        }
        // The thread announced `Exited` as its last act: joining it returns at once.
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        true
    }
}

fn run(
    rt: tokio::runtime::Runtime,
    plan: Plan,
    shutdown: watch::Receiver<bool>,
    phase: watch::Sender<Phase>,
    stop: oneshot::Receiver<()>,
) {
    let index = plan.index;
    rt.block_on(async {
        let mut fds = Fds::new();
        for (key, socket) in plan.sockets {
            // Pingora adopts an already-bound socket when its address is in the fd table.
            fds.add(key, socket.into_raw_fd());
        }
        let fds: ListenFds = Arc::new(parking_lot::Mutex::new(fds));
        let services: Vec<_> = plan
            .services
            .into_iter()
            .map(|mut svc| {
                let (fds, shutdown) = (fds.clone(), shutdown.clone());
                tokio::spawn(async move { svc.start_service(Some(fds), shutdown, 1).await })
            })
            .collect();
        // One turn of the scheduler: the services adopt their sockets and start their accept
        // loops, or fail to (Pingora panics then): a worker that cannot serve fails the start.
        tokio::task::yield_now().await;
        if services.iter().any(|s| s.is_finished()) {
            tracing::error!(
                worker = index,
                "a listening service of this worker did not start"
            );
            return;
        }
        phase.send_replace(Phase::Serving);
        let serve = async {
            for svc in services {
                if let Err(e) = svc.await {
                    tracing::error!(
                        worker = index,
                        "a listening service of this worker failed: {e}"
                    );
                }
            }
            phase.send_replace(Phase::Drained);
            std::future::pending::<()>().await
        };
        tokio::select! {
            _ = serve => {}
            _ = stop => {}
        }
    });
    rt.shutdown_timeout(RUNTIME_STOP);
    phase.send_replace(Phase::Exited);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use socket2::SockRef;

    fn loopback() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    #[test]
    fn a_group_shares_one_real_port_with_reuseport_on_every_socket() {
        let group = bind_group("http", loopback(), 3).unwrap();
        assert_ne!(group.addr.port(), 0, "port 0 resolved");
        assert_eq!(group.sockets.len(), 3);
        for s in &group.sockets {
            assert_eq!(s.local_addr().unwrap(), group.addr);
            assert!(SockRef::from(s).reuse_port().unwrap());
        }
        // The kernel spreads connections over the group; every one lands on some socket.
        let clients: Vec<_> = (0..16)
            .map(|_| std::net::TcpStream::connect(group.addr).unwrap())
            .collect();
        // (The sockets do not block: poll them until every connection was taken, with a bound.)
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut accepted = 0;
        while accepted < clients.len() && std::time::Instant::now() < deadline {
            for s in &group.sockets {
                while s.accept().is_ok() {
                    accepted += 1;
                }
            }
            std::thread::yield_now();
        }
        assert_eq!(accepted, clients.len());
    }

    #[test]
    fn a_single_socket_does_not_set_reuseport() {
        let group = bind_group("http", loopback(), 1).unwrap();
        assert_eq!(group.sockets.len(), 1);
        assert!(!SockRef::from(&group.sockets[0]).reuse_port().unwrap());
    }

    #[test]
    fn a_second_group_on_a_taken_address_is_refused() {
        let first = bind_group("http", loopback(), 2).unwrap();
        for count in [1, 2] {
            match bind_group("http", first.addr, count) {
                Err(GatewayError::Bind { source, .. }) => {
                    assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse, "{count}")
                }
                Err(e) => panic!("{e}"),
                Ok(_) => panic!("a second group of {count} joined the first one"),
            }
        }
    }
}
