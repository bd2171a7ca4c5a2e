//! Certificate files: read, parse, match the key, and learn the names and expiry.
//!
//! Used twice: by validation (so `palisade check` refuses a certificate that does not match its
//! key) and by the gateway when it (re)loads certificates. Error messages name the file, never the
//! key material.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::ring::default_provider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate found")]
    NoCertificate { path: PathBuf },
    #[error("{path}: no PEM private key found (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: PathBuf },
    #[error("{path}: malformed PEM")]
    BadPem { path: PathBuf },
    #[error("{path}: certificate cannot be parsed: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{key}: private key is not supported or does not match the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
}

/// A certificate chain and key ready for rustls, with what Palisade needs to know about it.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    /// DNS names from the leaf's subjectAltName (lower-case), falling back to its CN.
    pub names: Vec<String>,
    /// The leaf's notAfter, as Unix seconds.
    pub not_after: i64,
}

pub fn load_cert_and_key(cert_path: &Path, key_path: &Path) -> Result<LoadedCert, CertError> {
    let cert_pem = std::fs::read(cert_path).map_err(|source| CertError::Read {
        path: cert_path.to_path_buf(),
        source,
    })?;
    let key_pem = std::fs::read(key_path).map_err(|source| CertError::Read {
        path: key_path.to_path_buf(),
        source,
    })?;

    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|_| CertError::BadPem {
            path: cert_path.to_path_buf(),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(CertError::NoCertificate {
            path: cert_path.to_path_buf(),
        });
    };
    let (names, not_after) = describe_leaf(leaf).map_err(|reason| CertError::BadCertificate {
        path: cert_path.to_path_buf(),
        reason,
    })?;

    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|_| CertError::BadPem {
            path: key_path.to_path_buf(),
        })?
        .ok_or_else(|| CertError::NoKey {
            path: key_path.to_path_buf(),
        })?;

    let certified = CertifiedKey::from_der(chain, key, &default_provider()).map_err(|_| {
        CertError::KeyMismatch {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
        }
    })?;

    Ok(LoadedCert {
        key: Arc::new(certified),
        names,
        not_after,
    })
}

fn describe_leaf(der: &CertificateDer<'_>) -> Result<(Vec<String>, i64), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                names.push(dns.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        if let Some(cn) = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
        {
            names.push(cn.to_ascii_lowercase());
        }
    }
    Ok((names, cert.validity().not_after.timestamp()))
}
