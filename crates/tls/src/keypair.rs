//! A certificate and key read from files, read again when either file's modification time
//! changes (checked at each handshake).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use super::TlsError;

/// A key pair kept in step with its files.
#[derive(Debug)]
pub(crate) struct KeyPair {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    /// The pair as last read, with the files' modification times then.
    current: parking_lot::Mutex<(Stamp, Arc<CertifiedKey>)>,
}

type Stamp = (Option<SystemTime>, Option<SystemTime>);

impl KeyPair {
    /// Reads the pair; an error names the file and what is wrong with it.
    pub(crate) fn load(cert: &str, key: &str, provider: Arc<CryptoProvider>) -> Result<KeyPair, TlsError> {
        let (cert, key) = (PathBuf::from(cert), PathBuf::from(key));
        let stamp = stamp(&cert, &key);
        let pair = read(&cert, &key, &provider)?;
        Ok(KeyPair { cert, key, provider, current: parking_lot::Mutex::new((stamp, Arc::new(pair))) })
    }

    /// The pair, read again first if its files changed. A change that cannot be read keeps the
    /// pair in use (a renewal may be half written), logged once per change.
    pub(crate) fn get(&self) -> Arc<CertifiedKey> {
        let now = stamp(&self.cert, &self.key);
        let mut current = self.current.lock();
        if current.0 != now {
            current.0 = now;
            match read(&self.cert, &self.key, &self.provider) {
                Ok(pair) => {
                    tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                    current.1 = Arc::new(pair);
                }
                Err(e) => {
                    tracing::error!(err = %e, "TLS certificate changed but cannot be used: keeping the previous one")
                }
            }
        }
        current.1.clone()
    }
}

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (mtime(cert), mtime(key))
}

/// Reads the certificates of a PEM file (at least one).
pub(crate) fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem { path: path.to_path_buf(), reason: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::Pem { path: path.to_path_buf(), reason: "no certificate in the file".into() });
    }
    Ok(certs)
}

fn read(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let chain = certificates(cert)?;
    let bytes = std::fs::read(key).map_err(|source| TlsError::Read { path: key.to_path_buf(), source })?;
    let der = PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| TlsError::Pem { path: key.to_path_buf(), reason: format!("no private key: {e}") })?;
    CertifiedKey::from_der(chain, der, provider).map_err(|source| TlsError::Rustls { what: "key pair", source })
}
