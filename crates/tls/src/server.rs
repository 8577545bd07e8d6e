//! The server side: a listener's TLS, as `--grpc-server-tls-*` and
//! `--remote-write.server-tls-*` set it.

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite};

use super::keypair::{KeyPair, certificates};
use super::{TlsError, names, versions_between};

/// A listener's TLS flags, as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerOptions {
    /// Certificate file (PEM); empty: no TLS.
    pub cert: String,
    /// Key file (PEM); empty: no TLS.
    pub key: String,
    /// CA file of client certificates; set: every client must present one it signed (unless
    /// `client_cert_optional`).
    pub client_ca: String,
    /// With a client CA: a client may also connect without a certificate (one it presents is
    /// still verified).
    pub client_cert_optional: bool,
    /// Minimum version: `1.0` to `1.3`.
    pub min_version: String,
    /// Maximum version: `1.2` or `1.3` (empty: 1.3).
    pub max_version: String,
    /// TLS 1.2 cipher suites by Go name (none: rustls' defaults).
    pub ciphers: Vec<String>,
    /// Curves by Thanos' name (none: rustls' defaults).
    pub curves: Vec<String>,
}

/// Accepts TLS connections with a listener's configuration.
#[derive(Clone)]
pub struct Acceptor(tokio_rustls::TlsAcceptor);

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Acceptor")
    }
}

#[derive(Debug)]
struct Resolver(KeyPair);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.get())
    }
}

impl Acceptor {
    /// The acceptor `opts` describe, offering `alpn` protocols; `None` when no certificate and
    /// key are given (TLS off).
    pub fn new(opts: &ServerOptions, alpn: &[&[u8]]) -> Result<Option<Acceptor>, TlsError> {
        match (opts.cert.is_empty(), opts.key.is_empty()) {
            (true, true) if opts.client_ca.is_empty() => return Ok(None),
            (true, true) => return Err(TlsError::CaWithoutPair),
            (false, false) => {}
            _ => return Err(TlsError::HalfPair { side: "server" }),
        }
        let provider = names::provider(&opts.ciphers, &opts.curves)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions_between(&opts.min_version, &opts.max_version)?)
            .map_err(|source| TlsError::Rustls { what: "server TLS", source })?;
        let builder = if opts.client_ca.is_empty() {
            builder.with_no_client_auth()
        } else {
            let mut roots = rustls::RootCertStore::empty();
            for c in certificates(opts.client_ca.as_ref())? {
                roots.add(c).map_err(|source| TlsError::Rustls { what: "client CA", source })?;
            }
            let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            if opts.client_cert_optional {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier.build().map_err(|e| TlsError::ClientCa(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        };
        let pair = KeyPair::load(&opts.cert, &opts.key, provider)?;
        let mut config = builder.with_cert_resolver(Arc::new(Resolver(pair)));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Some(Acceptor(tokio_rustls::TlsAcceptor::from(Arc::new(config)))))
    }

    /// Runs the server side of a handshake on `io`.
    pub async fn accept<IO>(&self, io: IO) -> std::io::Result<tokio_rustls::server::TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        self.0.accept(io).await
    }
}
