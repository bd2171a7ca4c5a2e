//! A throwaway PKI for demos and tests.
//!
//! [`Ca::new`] creates a self-signed certificate authority whose private key
//! only ever lives in memory; [`Ca::issue`] signs server (leaf) certificates
//! with it, and [`Issued::write`] puts a leaf certificate and its key on disk
//! atomically (temporary file in the same directory, then rename).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a [`Ca`] is valid: ten years (counted from now).
const CA_VALIDITY_DAYS: u32 = 3650;

/// Errors from generating or signing certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Key generation, parameter validation or signing failed in `rcgen`.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// An I/O error (for example reading the system clock's files or writing output).
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// [`Ca::issue`] was called with an empty list of names.
    #[error("a certificate needs at least one name")]
    NoNames,
    /// The system clock is set before the Unix epoch.
    #[error("the system clock is before 1970")]
    Clock,
}

/// A self-signed certificate authority whose key only lives in memory.
pub struct Ca {
    key: KeyPair,
    cert: Certificate,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Ca")
            .field("subject", &self.cert.params().distinguished_name)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// A self-signed CA (basic constraints CA, key usage cert sign + CRL
    /// sign) with `common_name` as the subject's CN, valid from yesterday
    /// until ten years from now. The key is ECDSA P-256.
    pub fn new(common_name: &str) -> Result<Ca, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, "Palisade demo");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial());
        set_validity(&mut params, CA_VALIDITY_DAYS)?;
        let cert = params.self_signed(&key)?;
        Ok(Ca { key, cert })
    }

    /// The CA certificate in PEM form (one `CERTIFICATE` block).
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// The CA certificate in DER form (for a rustls `RootCertStore` in tests).
    pub fn cert_der(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }

    /// A leaf certificate signed by this CA for `names`.
    ///
    /// Each name is a DNS name (`shop.test`), a wildcard (`*.a.test`) or an
    /// IP address string (`127.0.0.1`, `::1`), which becomes an IP SAN. The
    /// subject CN is the first name. The certificate carries extended key
    /// usage serverAuth and is valid from yesterday until `days` days from
    /// now. Each leaf gets a fresh ECDSA P-256 key.
    pub fn issue(&self, names: &[&str], days: u32) -> Result<Issued, PkiError> {
        self.issue_for(names, days, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate (extended key usage clientAuth) for `name`, as an operator's
    /// browser would present to an mTLS-protected back office.
    pub fn issue_client(&self, name: &str, days: u32) -> Result<Issued, PkiError> {
        self.issue_for(&[name], days, ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue_for(
        &self,
        names: &[&str],
        days: u32,
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<Issued, PkiError> {
        let first = names.first().ok_or(PkiError::NoNames)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, *first);
        params.distinguished_name = dn;
        params.subject_alt_names = names
            .iter()
            .map(|name| match name.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName((*name).try_into()?)),
            })
            .collect::<Result<Vec<_>, rcgen::Error>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        set_validity(&mut params, days)?;

        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
        })
    }
}

/// A leaf certificate and its private key.
#[derive(Clone)]
pub struct Issued {
    /// The leaf certificate alone, PEM (the CA certificate is not appended).
    pub cert_pem: String,
    /// The leaf's private key, PKCS#8 PEM (`PRIVATE KEY`).
    pub key_pem: String,
    /// The leaf certificate, DER.
    pub cert_der: Vec<u8>,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Issued {
    /// Writes the certificate PEM to `cert_path` and the key PEM to `key_path`.
    ///
    /// The certificate file holds the leaf certificate only (not the CA), the
    /// same bytes as [`Issued::cert_pem`]. Missing parent directories are
    /// created. Each file is written to a temporary file in the same
    /// directory, flushed to disk and then renamed over the target, so a
    /// watcher never reads a half-written file. The certificate is written
    /// first, then the key. On unix the key file gets mode `0o600`.
    pub fn write(&self, cert_path: &Path, key_path: &Path) -> io::Result<()> {
        write_atomic(cert_path, self.cert_pem.as_bytes(), false)?;
        write_atomic(key_path, self.key_pem.as_bytes(), true)
    }
}

/// Sets `not_before` to 24 hours ago and `not_after` to `days` days from now.
fn set_validity(params: &mut CertificateParams, days: u32) -> Result<(), PkiError> {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| PkiError::Clock)?;
    // rcgen does not re-export `time`, but its epoch plus a std Duration is "now".
    let now = rcgen::date_time_ymd(1970, 1, 1) + since_epoch;
    params.not_before = now - DAY;
    params.not_after = now + DAY * days;
    Ok(())
}

/// A random positive 16-byte serial number.
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::thread_rng().gen();
    // Keep it positive and without a leading zero byte (DER INTEGER rules).
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from(bytes.to_vec())
}

fn write_atomic(path: &Path, contents: &[u8], private: bool) -> io::Result<()> {
    let file_name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no file name", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir)?;

    let suffix: u64 = rand::thread_rng().gen();
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".{}.{suffix:016x}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);

    let result = (|| {
        let mut file = create_new(&tmp, private)?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(unix)]
fn create_new(path: &Path, private: bool) -> io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mode = if private { 0o600 } else { 0o644 };
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    if private {
        // The umask can only remove bits, but be explicit anyway.
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

#[cfg(not(unix))]
fn create_new(path: &Path, _private: bool) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::*;

    #[test]
    fn ca_is_a_ca() {
        let ca = Ca::new("Palisade Test CA").unwrap();
        assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let der = ca.cert_der();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(cert.subject(), cert.issuer());
        let cn = cert.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "Palisade Test CA");
        let bc = cert.basic_constraints().unwrap().unwrap().value;
        assert!(bc.ca);
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign());
        assert!(ku.crl_sign());
        assert!(cert.validity().is_valid());
        let not_after = cert.validity().not_after.timestamp();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(not_after > now + 9 * 365 * 86400);
    }

    #[test]
    fn issues_leaf_with_dns_wildcard_and_ip_sans() {
        let ca = Ca::new("Palisade Test CA").unwrap();
        let leaf = ca.issue(&["a.test", "*.b.test", "127.0.0.1"], 7).unwrap();
        assert!(leaf.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(leaf.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));

        // The PEM and the DER are the same certificate.
        let (_, pem) = parse_x509_pem(leaf.cert_pem.as_bytes()).unwrap();
        assert_eq!(pem.contents, leaf.cert_der);

        let (_, cert) = X509Certificate::from_der(&leaf.cert_der).unwrap();
        let cn = cert.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "a.test");

        let ca_der = ca.cert_der();
        let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
        assert_eq!(cert.issuer(), ca_cert.subject());

        let san = cert.subject_alternative_name().unwrap().unwrap().value;
        let mut dns = Vec::new();
        let mut ips = Vec::new();
        for name in &san.general_names {
            match name {
                GeneralName::DNSName(d) => dns.push(d.to_string()),
                GeneralName::IPAddress(ip) => ips.push(ip.to_vec()),
                other => panic!("unexpected SAN {other:?}"),
            }
        }
        assert_eq!(dns, ["a.test", "*.b.test"]);
        assert_eq!(ips, [vec![127u8, 0, 0, 1]]);

        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth);
        assert!(!cert.is_ca());

        let validity = cert.validity();
        assert!(validity.is_valid());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let not_before = validity.not_before.timestamp();
        let not_after = validity.not_after.timestamp();
        assert!((now - 86400 - 60..=now - 86400 + 60).contains(&not_before));
        assert!((now + 7 * 86400 - 60..=now + 7 * 86400 + 60).contains(&not_after));
    }

    #[test]
    fn issue_needs_a_name() {
        let ca = Ca::new("Palisade Test CA").unwrap();
        assert!(matches!(ca.issue(&[], 1), Err(PkiError::NoNames)));
    }

    #[test]
    fn serials_differ() {
        let ca = Ca::new("Palisade Test CA").unwrap();
        let a = ca.issue(&["a.test"], 1).unwrap();
        let b = ca.issue(&["a.test"], 1).unwrap();
        let (_, a) = X509Certificate::from_der(&a.cert_der).unwrap();
        let (_, b) = X509Certificate::from_der(&b.cert_der).unwrap();
        assert_ne!(a.raw_serial(), b.raw_serial());
    }

    #[test]
    fn write_creates_files_atomically() {
        let ca = Ca::new("Palisade Test CA").unwrap();
        let leaf = ca.issue(&["a.test"], 1).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cert_path = dir.path().join("tls/cert.pem");
        let key_path = dir.path().join("tls/key.pem");
        leaf.write(&cert_path, &key_path).unwrap();
        assert_eq!(fs::read_to_string(&cert_path).unwrap(), leaf.cert_pem);
        assert_eq!(fs::read_to_string(&key_path).unwrap(), leaf.key_pem);

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&key_path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        // Overwriting works and leaves no temporary files behind.
        let again = ca.issue(&["b.test"], 1).unwrap();
        again.write(&cert_path, &key_path).unwrap();
        assert_eq!(fs::read_to_string(&cert_path).unwrap(), again.cert_pem);
        assert_eq!(fs::read_to_string(&key_path).unwrap(), again.key_pem);
        let mut names: Vec<_> = fs::read_dir(dir.path().join("tls"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["cert.pem", "key.pem"]);
    }

    #[test]
    fn debug_does_not_print_keys() {
        let ca = Ca::new("Palisade Test CA").unwrap();
        let leaf = ca.issue(&["a.test"], 1).unwrap();
        assert!(!format!("{leaf:?}").contains("PRIVATE KEY"));
        assert!(!format!("{ca:?}").contains("PRIVATE KEY"));
    }
}
