//! Certificates chosen by SNI, swapped atomically on reload.
//!
//! rustls asks [`SniResolver`] for a certificate during every handshake; the resolver reads the
//! current [`CertStore`] through an `ArcSwap`, so a reload (SIGHUP, or a certificate file changed
//! on disk) replaces the whole store at once without touching open connections: handshakes in
//! flight finish with the certificate they started with, new ones get the new certificate.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use palisade_config::tls::{load_cert_and_key, CertError};
use palisade_config::{HostPattern, Tls, UnknownSni};
use pingora::apps::ServerApp;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, Stream};
use pingora::server::ShutdownWatch;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

/// One loaded certificate, for lookups and for the expiry metric.
#[derive(Debug, Clone)]
pub struct CertInfo {
    pub name: String,
    pub not_after: i64,
}

/// Every certificate of one config generation, indexed by the names it serves.
#[derive(Debug, Default)]
pub struct CertStore {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the part after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
    unknown_sni: Option<UnknownSni>,
    pub info: Vec<CertInfo>,
    /// What the files looked like when loaded, to notice changes.
    stamps: Vec<Option<FileStamp>>,
    paths: Vec<PathBuf>,
}

/// What a certificate or key file looks like on disk (not its content).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

/// The stamps of every certificate and key file of `tls`, in order.
pub fn file_stamps(tls: &Tls) -> Vec<Option<FileStamp>> {
    tls.certificates
        .iter()
        .flat_map(|c| [stamp(&c.cert), stamp(&c.key)])
        .collect()
}

fn stamp(path: &PathBuf) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    // `metadata` follows symlinks, so a renewal that repoints a symlink counts as a change.
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: m.modified().ok(),
        len: m.len(),
        inode: m.ino(),
    })
}

impl CertStore {
    /// Read every certificate file of `tls`. Fails on the first unreadable or mismatched pair,
    /// so a half-written renewal never replaces a working store.
    pub fn load(tls: &Tls) -> Result<CertStore, CertError> {
        let mut store = CertStore {
            unknown_sni: Some(tls.unknown_sni),
            ..CertStore::default()
        };
        // Stamp before reading: a change during the read is seen on the next check.
        store.stamps = file_stamps(tls);
        store.paths = tls
            .certificates
            .iter()
            .flat_map(|c| [c.cert.clone(), c.key.clone()])
            .collect();
        for spec in &tls.certificates {
            let loaded = load_cert_and_key(&spec.cert, &spec.key)?;
            for host in &spec.hosts {
                let map = match host {
                    HostPattern::Exact(h) => store.exact.entry(h.clone()),
                    HostPattern::Wildcard(h) => store.wildcard.entry(h.clone()),
                };
                // The first certificate listed for a name wins.
                map.or_insert_with(|| loaded.key.clone());
            }
            if spec.default {
                store.default = Some(loaded.key.clone());
            }
            store.info.push(CertInfo {
                name: spec.name.clone(),
                not_after: loaded.not_after,
            });
        }
        Ok(store)
    }

    /// Exact name, then wildcard, then (unless unknown names are rejected) the default.
    pub fn lookup(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = server_name {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Some(k) = self.exact.get(&name) {
                return Some(k.clone());
            }
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(k) = self.wildcard.get(parent) {
                    return Some(k.clone());
                }
            }
        }
        match self.unknown_sni {
            Some(UnknownSni::Reject) => None,
            _ => self.default.clone(),
        }
    }

    /// Publish each certificate's notAfter (a certificate no longer configured disappears).
    fn export_expiry(&self) {
        if let Some(m) = crate::metrics::metrics() {
            m.certificate_expiry.reset();
            for c in &self.info {
                m.certificate_expiry
                    .with_label_values(&[c.name.as_str()])
                    .set(c.not_after);
            }
        }
    }

    /// Has any certificate or key file changed since this store was loaded?
    pub fn files_changed(&self) -> bool {
        self.paths
            .iter()
            .zip(&self.stamps)
            .any(|(p, s)| stamp(p) != *s)
    }
}

/// The rustls hook: picks the certificate for each handshake from the current store.
#[derive(Debug)]
pub struct SniResolver {
    store: ArcSwap<CertStore>,
}

impl SniResolver {
    pub fn new(store: CertStore) -> Self {
        store.export_expiry();
        SniResolver {
            store: ArcSwap::from_pointee(store),
        }
    }

    pub fn swap(&self, store: CertStore) {
        store.export_expiry();
        self.store.store(Arc::new(store));
    }

    pub fn current(&self) -> Arc<CertStore> {
        self.store.load_full()
    }
}

/// Optional client certificates: a client may present one (verified against `ca`) or none;
/// routes with `client_cert = true` then require that one was presented and verified.
pub fn client_verifier(
    ca: &std::path::Path,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, CertError> {
    let pem = std::fs::read(ca).map_err(|source| CertError::Read {
        path: ca.to_path_buf(),
        source,
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
        let _ = roots.add(cert);
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| CertError::BadCertificate {
        path: ca.to_path_buf(),
        reason: e.to_string(),
    })
}

/// How long a client gets to complete its TLS handshake (what Pingora's listener allows).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// The TLS listener's rustls config, built once and shared by every worker's TLS service: one
/// session cache, so a returning client resumes its session whichever worker the kernel hands
/// its new connection to. (Pingora's `TlsSettings` builds a config, and so a session cache, per
/// listener; with a listener per worker, a client would resume only on the worker it first
/// met.) TLS 1.2 and 1.3, ALPN h2 then http/1.1, certificates by SNI from `resolver`.
pub fn server_config(
    resolver: Arc<SniResolver>,
    client_verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let builder =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])?;
    let builder = match client_verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The TLS listener's application. Pingora accepts the TCP connection; this makes the TLS
/// handshake with the shared [`server_config`], through Pingora's own `Acceptor` (so the stream,
/// its TLS digest and its ALPN are what a Pingora TLS listener makes), counts it, and hands the
/// stream to the HTTP application `A` for as many requests as the connection carries.
pub struct TlsTerminator<A> {
    acceptor: Acceptor,
    app: Arc<A>,
}

impl<A> TlsTerminator<A> {
    pub fn new(config: Arc<ServerConfig>, app: A) -> Self {
        TlsTerminator {
            acceptor: Acceptor::from_server_config(config),
            app: Arc::new(app),
        }
    }
}

#[async_trait::async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for TlsTerminator<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // The listener is plain TCP: its streams are Pingora's L4 streams.
        let Ok(l4) = stream.into_any().downcast::<L4Stream>() else {
            tracing::error!("TLS listener: the accepted stream is not a TCP stream");
            return None;
        };
        let peer = l4
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.tls_handshake(*l4));
        let tls = match handshake.await {
            Ok(Ok(tls)) => tls,
            failed => {
                if let Some(m) = crate::metrics::metrics() {
                    m.tls_handshake_failures.inc();
                }
                let reason = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".to_string(),
                };
                let client_ip = peer
                    .map(|ip| crate::logging::redactor().client_ip(ip))
                    .unwrap_or_default();
                tracing::warn!(
                    event = "tls_handshake_failed",
                    client_ip = client_ip.as_str(),
                    "TLS handshake failed: {reason}"
                );
                return None;
            }
        };
        if let Some(m) = crate::metrics::metrics() {
            m.tls_handshakes.inc();
        }
        let mut next = self.app.process_new(Box::new(tls), shutdown).await;
        while let Some(stream) = next {
            next = self.app.process_new(stream, shutdown).await;
        }
        None
    }

    async fn cleanup(&self) {
        self.app.cleanup().await;
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let found = self.store.load().lookup(hello.server_name());
        if found.is_none() {
            tracing::debug!(
                event = "tls_unknown_sni",
                "handshake refused: no certificate for the requested name"
            );
        }
        found
    }
}
