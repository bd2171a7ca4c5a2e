//! Certificates chosen by SNI, swapped atomically on reload.
//!
//! rustls asks [`SniResolver`] for a certificate during every handshake; the resolver reads the
//! current [`CertStore`] through an `ArcSwap`, so a reload (SIGHUP, or a certificate file changed
//! on disk) replaces the whole store at once without touching open connections: handshakes in
//! flight finish with the certificate they started with, new ones get the new certificate.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use palisade_config::tls::{load_cert_and_key, CertError};
use palisade_config::{HostPattern, Tls, UnknownSni};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

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

/// Counts completed handshakes (Pingora calls this once per successful handshake).
pub struct HandshakeCounter;

#[async_trait::async_trait]
impl pingora::listeners::TlsAccept for HandshakeCounter {
    async fn handshake_complete_callback(
        &self,
        _tls: &pingora::protocols::tls::TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        if let Some(m) = crate::metrics::metrics() {
            m.tls_handshakes.inc();
        }
        None
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
