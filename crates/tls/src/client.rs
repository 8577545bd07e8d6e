//! The client side: the peer links' TLS, as `--remote-write.client-tls-*` sets it.

use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite};

use super::keypair::{KeyPair, certificates};
use super::{TlsError, names, versions};

/// The peer client's TLS flags, as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientOptions {
    /// Certificate file (PEM) presented to peers; empty: none.
    pub cert: String,
    /// Its key file.
    pub key: String,
    /// CA file that signs the peers' certificates; empty: the system's roots.
    pub ca: String,
    /// The name peers' certificates are checked against; empty: each peer's host.
    pub server_name: String,
    /// Accept any peer certificate (the handshake's signatures are still checked).
    pub skip_verify: bool,
    /// Minimum version: `1.0` to `1.3`.
    pub min_version: String,
}

/// Opens TLS connections to peers.
#[derive(Clone)]
pub struct Connector {
    inner: tokio_rustls::TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Resolver(KeyPair);

impl ResolvesClientCert for Resolver {
    fn resolve(&self, _: &[&[u8]], _: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.get())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// `--remote-write.client-tls-skip-verify`: any certificate is taken.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl Connector {
    /// The connector `opts` describe, asking for `alpn` protocols.
    pub fn new(opts: &ClientOptions, alpn: &[&[u8]]) -> Result<Connector, TlsError> {
        if opts.cert.is_empty() != opts.key.is_empty() {
            return Err(TlsError::HalfPair { side: "client" });
        }
        let provider = names::provider(&[], &[])?;
        let mut roots = rustls::RootCertStore::empty();
        if opts.ca.is_empty() {
            let native = rustls_native_certs::load_native_certs();
            for e in &native.errors {
                tracing::debug!(err = %e, "reading the system's certificate roots");
            }
            roots.add_parsable_certificates(native.certs);
        } else {
            for c in certificates(opts.ca.as_ref())? {
                roots.add(c).map_err(|source| TlsError::Rustls { what: "client TLS CA", source })?;
            }
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions(&opts.min_version)?)
            .map_err(|source| TlsError::Rustls { what: "client TLS", source })?
            .with_root_certificates(roots);
        let mut config = if opts.cert.is_empty() {
            builder.with_no_client_auth()
        } else {
            let pair = KeyPair::load(&opts.cert, &opts.key, provider.clone())?;
            builder.with_client_cert_resolver(Arc::new(Resolver(pair)))
        };
        if opts.skip_verify {
            config.dangerous().set_certificate_verifier(Arc::new(AnyCertificate(provider)));
        }
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let server_name = match opts.server_name.as_str() {
            "" => None,
            name => Some(
                ServerName::try_from(name.to_string())
                    .map_err(|e| TlsError::ServerName { name: name.to_string(), reason: e.to_string() })?,
            ),
        };
        Ok(Connector { inner: tokio_rustls::TlsConnector::from(Arc::new(config)), server_name })
    }

    /// Runs the client side of a handshake on `io`, to the peer at `host` (checked against its
    /// certificate unless a server name is configured).
    pub async fn connect<IO>(&self, host: &str, io: IO) -> std::io::Result<tokio_rustls::client::TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => ServerName::try_from(host.to_string()).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("server name {host}: {e}"))
            })?,
        };
        self.inner.connect(name, io).await
    }
}
