//! Certificates made on the fly for TLS tests: a CA, server and client pairs it signs (valid
//! for `localhost` and `127.0.0.1`), and a second CA whose certificates the first does not
//! trust.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

/// PEM files in a directory.
pub struct Pki {
    /// The CA's certificate.
    pub ca: PathBuf,
    /// A pair the CA signed for servers and clients alike.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// A pair signed by another CA.
    pub rogue_cert: PathBuf,
    /// Its key.
    pub rogue_key: PathBuf,
    dir: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A leaf pair signed by `issuer`, named `cn`, as PEM (certificate, key).
fn leaf(issuer: &CertifiedIssuer<'static, KeyPair>, cn: &str) -> (String, String) {
    leaf_with(issuer, cn, |_| {})
}

/// [`leaf`] with its parameters changed by `edit` first.
fn leaf_with(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    cn: &str,
    edit: impl FnOnce(&mut CertificateParams),
) -> (String, String) {
    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    edit(&mut params);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    /// Writes a CA, a pair it signs and a rogue pair into `dir`.
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let issuer = ca("ringest test CA");
        let path = |name: &str| dir.join(name);
        std::fs::write(path("ca.pem"), issuer.as_ref().pem()).unwrap();
        let (cert, key) = leaf(&issuer, "node");
        std::fs::write(path("cert.pem"), cert).unwrap();
        std::fs::write(path("key.pem"), key).unwrap();
        let (cert, key) = leaf(&ca("rogue CA"), "rogue");
        std::fs::write(path("rogue-cert.pem"), cert).unwrap();
        std::fs::write(path("rogue-key.pem"), key).unwrap();
        Pki {
            ca: path("ca.pem"),
            cert: path("cert.pem"),
            key: path("key.pem"),
            rogue_cert: path("rogue-cert.pem"),
            rogue_key: path("rogue-key.pem"),
            dir: dir.to_path_buf(),
            issuer,
        }
    }

    /// Replaces the pair with a new one the same CA signs, named `cn` (as a renewal would);
    /// returns the new certificate's DER.
    pub fn renew(&self, cn: &str) -> Vec<u8> {
        let (cert, key) = leaf(&self.issuer, cn);
        // Written beside and renamed, as certificate managers do.
        for (pem, to) in [(&key, &self.key), (&cert, &self.cert)] {
            let tmp = self.dir.join("renewal.tmp");
            std::fs::write(&tmp, pem).unwrap();
            std::fs::rename(&tmp, to).unwrap();
        }
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap().to_vec()
    }

    /// Another pair the CA signs, named `cn`, written as `<cn>-cert.pem` and `<cn>-key.pem`;
    /// their paths.
    pub fn pair(&self, cn: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = leaf(&self.issuer, cn);
        let paths = (self.dir.join(format!("{cn}-cert.pem")), self.dir.join(format!("{cn}-key.pem")));
        std::fs::write(&paths.0, cert).unwrap();
        std::fs::write(&paths.1, key).unwrap();
        paths
    }

    /// A pair the CA signed that expired in 2001, named `cn`; the paths of its certificate and
    /// key.
    pub fn expired(&self, cn: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = leaf_with(&self.issuer, cn, |p| {
            p.not_before = rcgen::date_time_ymd(2000, 1, 1);
            p.not_after = rcgen::date_time_ymd(2001, 1, 1);
        });
        let paths = (self.dir.join(format!("{cn}-cert.pem")), self.dir.join(format!("{cn}-key.pem")));
        std::fs::write(&paths.0, cert).unwrap();
        std::fs::write(&paths.1, key).unwrap();
        paths
    }

    /// Path arguments as strings.
    pub fn s(p: &Path) -> String {
        p.display().to_string()
    }
}
