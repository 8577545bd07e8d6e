//! A certificate and key read from files, read again when either file changes (its
//! modification time, inode or length; checked at each handshake).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

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
    /// The pair as last read, with the files' stamps then, and when a change could not be
    /// used (it is tried again a second later, whatever the stamps).
    current: parking_lot::Mutex<(Stamp, Arc<CertifiedKey>, Option<Instant>)>,
}

/// What tells that a file changed: modification time (the kernel's coarse clock: several
/// writes within a few milliseconds share one), inode (a renamed-in file is a new one) and
/// length.
type FileStamp = Option<(SystemTime, u64, u64)>;

/// The stamps of the certificate and the key.
type Stamp = (FileStamp, FileStamp);

/// How long an unusable change is kept before the files are read again.
const RETRY: Duration = Duration::from_secs(1);

impl KeyPair {
    /// Reads the pair; an error names the file and what is wrong with it.
    pub(crate) fn load(cert: &str, key: &str, provider: Arc<CryptoProvider>) -> Result<KeyPair, TlsError> {
        let (cert, key) = (PathBuf::from(cert), PathBuf::from(key));
        let stamp = stamp(&cert, &key);
        let pair = read(&cert, &key, &provider)?;
        Ok(KeyPair { cert, key, provider, current: parking_lot::Mutex::new((stamp, Arc::new(pair), None)) })
    }

    /// The pair, read again first if its files changed. A change that cannot be used keeps the
    /// pair in use (a renewal may be half done: the key renamed in, not yet the certificate),
    /// logged once per change, and is tried again a second later.
    pub(crate) fn get(&self) -> Arc<CertifiedKey> {
        let now = stamp(&self.cert, &self.key);
        let mut current = self.current.lock();
        let retry = current.2.is_some_and(|at| at.elapsed() >= RETRY);
        if current.0 != now || retry {
            let changed = current.0 != now;
            current.0 = now;
            match read(&self.cert, &self.key, &self.provider) {
                Ok(pair) => {
                    tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                    current.1 = Arc::new(pair);
                    current.2 = None;
                }
                Err(e) => {
                    if changed {
                        tracing::error!(err = %e, "TLS certificate changed but cannot be used: keeping the previous one");
                    }
                    current.2 = Some(Instant::now());
                }
            }
        }
        current.1.clone()
    }
}

fn stamp(cert: &Path, key: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let file = |p: &Path| std::fs::metadata(p).and_then(|m| Ok((m.modified()?, m.ino(), m.len()))).ok();
    (file(cert), file(key))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed pair for `name`, as PEM.
    fn pair(name: &str) -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    /// Writes `pem` beside `to` and renames it over `to`, with the modification time `mtime`.
    fn rename_in(to: &Path, pem: &str, mtime: SystemTime) {
        let tmp = to.with_extension("tmp");
        std::fs::write(&tmp, pem).unwrap();
        std::fs::File::options().write(true).open(&tmp).unwrap().set_modified(mtime).unwrap();
        std::fs::rename(&tmp, to).unwrap();
    }

    #[test]
    fn a_renewal_within_one_clock_tick_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let (a_cert, a_key) = pair("a");
        rename_in(&cert, &a_cert, t);
        rename_in(&key, &a_key, t);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let kp = KeyPair::load(cert.to_str().unwrap(), key.to_str().unwrap(), provider).unwrap();
        let a = kp.get();
        // A renewal whose files carry the same modification times (the kernel's coarse clock):
        // the key first (the pair does not match: the old one is kept), then the certificate.
        let (b_cert, b_key) = pair("b");
        rename_in(&key, &b_key, t);
        assert_eq!(kp.get().cert, a.cert, "half renewed: the pair in force is kept");
        rename_in(&cert, &b_cert, t);
        assert_ne!(kp.get().cert, a.cert, "renewed: the new pair");
    }
}
