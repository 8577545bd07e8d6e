//! Certificates for the bench's TLS receivers, made on the fly: a CA and one pair it signs for
//! `127.0.0.1`, used by the receivers (server and peer client) and by the load generator
//! (client), and the load generator's rustls configuration.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// PEM files of a CA and a pair it signed.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA certificate.
    pub ca: PathBuf,
    /// The pair's certificate (server and client use).
    pub cert: PathBuf,
    /// The pair's key.
    pub key: PathBuf,
}

impl Pki {
    /// Writes a fresh CA and pair into `dir`.
    pub fn new(dir: &Path) -> anyhow::Result<Pki> {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        };
        std::fs::create_dir_all(dir)?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "bench CA");
        let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
        let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
        leaf.distinguished_name.push(DnType::CommonName, "bench");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate()?;
        let cert = leaf.signed_by(&key, &issuer)?;
        let pki = Pki { ca: dir.join("ca.pem"), cert: dir.join("cert.pem"), key: dir.join("key.pem") };
        std::fs::write(&pki.ca, issuer.as_ref().pem())?;
        std::fs::write(&pki.cert, cert.pem())?;
        std::fs::write(&pki.key, key.serialize_pem())?;
        Ok(pki)
    }

    /// A client configuration trusting the CA and presenting the pair.
    pub fn client(&self) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_file(&self.ca)?)?;
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(&self.cert)?.collect::<Result<_, _>>()?;
        let config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(&self.key)?)?;
        Ok(Arc::new(config))
    }

    /// The flags of a receiver serving mutual TLS on its remote-write port.
    pub fn remote_write_flags(&self) -> Vec<String> {
        vec![
            format!("--remote-write.server-tls-cert={}", self.cert.display()),
            format!("--remote-write.server-tls-key={}", self.key.display()),
            format!("--remote-write.server-tls-client-ca={}", self.ca.display()),
        ]
    }

    /// The flags of a ring node speaking mutual TLS to its peers, both ways.
    pub fn peer_flags(&self) -> Vec<String> {
        vec![
            format!("--grpc-server-tls-cert={}", self.cert.display()),
            format!("--grpc-server-tls-key={}", self.key.display()),
            format!("--grpc-server-tls-client-ca={}", self.ca.display()),
            "--remote-write.client-tls-secure".into(),
            format!("--remote-write.client-tls-cert={}", self.cert.display()),
            format!("--remote-write.client-tls-key={}", self.key.display()),
            format!("--remote-write.client-tls-ca={}", self.ca.display()),
        ]
    }
}
