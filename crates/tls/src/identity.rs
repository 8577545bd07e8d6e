//! Who a client certificate names: the subject fields Thanos can take a tenant from
//! (`--receive.tenant-certificate-field`).

use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::AttributeTypeAndValue;

/// The subject fields of the certificate a client presented (the first of each kind).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// `O`.
    pub organization: Option<String>,
    /// `OU`.
    pub organizational_unit: Option<String>,
    /// `CN`.
    pub common_name: Option<String>,
}

impl Identity {
    /// The identity in the leaf certificate the client of `stream` presented, if it presented
    /// one (only asked for when a client CA is configured) that parses.
    pub fn of_client<IO>(stream: &tokio_rustls::server::TlsStream<IO>) -> Option<Identity> {
        let der = stream.get_ref().1.peer_certificates()?.first()?;
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let subject = cert.subject();
        let text = |a: Option<&AttributeTypeAndValue<'_>>| a.and_then(|a| a.as_str().ok()).map(str::to_string);
        Some(Identity {
            organization: text(subject.iter_organization().next()),
            organizational_unit: text(subject.iter_organizational_unit().next()),
            common_name: text(subject.iter_common_name().next()),
        })
    }
}
