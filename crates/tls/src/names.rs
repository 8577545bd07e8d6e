//! Go's names of cipher suites and Thanos' names of curves, and what rustls offers of them.

use std::sync::Arc;

use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::{NamedGroup, SupportedCipherSuite};

use super::TlsError;

/// Every name `crypto/tls.CipherSuites()` lists (Go's secure suites, which Thanos accepts).
const GO_CIPHERS: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
];

/// Thanos' curve names and the groups they mean.
const CURVES: &[(&str, NamedGroup)] = &[
    ("CurveP256", NamedGroup::secp256r1),
    ("CurveP384", NamedGroup::secp384r1),
    ("CurveP521", NamedGroup::secp521r1),
    ("SecP256r1MLKEM768", NamedGroup::secp256r1MLKEM768),
    ("SecP384r1MLKEM1024", NamedGroup::Unknown(0x11ed)),
    ("X25519", NamedGroup::X25519),
    ("X25519MLKEM768", NamedGroup::X25519MLKEM768),
];

/// Go's name of a suite rustls offers.
fn go_name(s: &SupportedCipherSuite) -> String {
    format!("{:?}", s.suite()).replace("TLS13_", "TLS_")
}

/// The provider ringest uses, with the TLS 1.2 suites and the groups the flags name (none:
/// rustls' defaults). TLS 1.3 suites are always offered, as Go does (its setting only applies
/// to TLS 1.2).
pub(crate) fn provider(ciphers: &[String], curves: &[String]) -> Result<Arc<CryptoProvider>, TlsError> {
    let mut p = rustls::crypto::aws_lc_rs::default_provider();
    if !ciphers.is_empty() {
        let offered = || p.cipher_suites.iter().map(go_name).collect::<Vec<_>>().join(", ");
        for name in ciphers {
            if !GO_CIPHERS.contains(&name.as_str()) {
                return Err(TlsError::UnknownCipher { name: name.clone(), valid: GO_CIPHERS.join(", ") });
            }
            if !p.cipher_suites.iter().any(|s| go_name(s) == *name) {
                return Err(TlsError::Cipher { name: name.clone(), offered: offered() });
            }
        }
        p.cipher_suites.retain(|s| matches!(s, SupportedCipherSuite::Tls13(_)) || ciphers.contains(&go_name(s)));
    }
    if !curves.is_empty() {
        let all = rustls::crypto::aws_lc_rs::ALL_KX_GROUPS;
        let offered = || {
            CURVES
                .iter()
                .filter(|(_, g)| all.iter().any(|k| k.name() == *g))
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut groups: Vec<&'static dyn SupportedKxGroup> = Vec::new();
        for name in curves {
            let Some(&(_, group)) = CURVES.iter().find(|(n, _)| n == name) else {
                let valid = CURVES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
                return Err(TlsError::UnknownCurve { name: name.clone(), valid });
            };
            let Some(k) = all.iter().find(|k| k.name() == group) else {
                return Err(TlsError::Curve { name: name.clone(), offered: offered() });
            };
            groups.push(*k);
        }
        p.kx_groups = groups;
    }
    Ok(Arc::new(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_names_pick_suites_and_curves_and_the_rest_is_refused_by_name() {
        let p = provider(&["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into()], &["X25519".into(), "CurveP256".into()])
            .unwrap();
        let names: Vec<String> = p.cipher_suites.iter().map(go_name).collect();
        assert!(names.contains(&"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".to_string()), "{names:?}");
        assert!(names.contains(&"TLS_AES_128_GCM_SHA256".to_string()), "TLS 1.3 suites stay: {names:?}");
        assert!(!names.contains(&"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384".to_string()), "{names:?}");
        assert_eq!(
            p.kx_groups.iter().map(|k| k.name()).collect::<Vec<_>>(),
            [NamedGroup::X25519, NamedGroup::secp256r1]
        );

        let e = provider(&["TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA".into()], &[]).unwrap_err().to_string();
        assert!(e.starts_with("cipher suite TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA cannot be offered"), "{e}");
        let e = provider(&["TLS_RSA_WITH_RC4_128_SHA".into()], &[]).unwrap_err().to_string();
        assert!(e.starts_with("invalid cipher suite: TLS_RSA_WITH_RC4_128_SHA, valid values are"), "{e}");
        let e = provider(&[], &["CurveP521".into()]).unwrap_err().to_string();
        assert!(e.starts_with("curve CurveP521 cannot be offered by ringest; it offers"), "{e}");
        let e = provider(&[], &["P256".into()]).unwrap_err().to_string();
        assert!(e.starts_with("invalid curve: P256, valid values are CurveP256"), "{e}");
    }
}
