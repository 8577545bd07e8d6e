//! `--http.config`: the ops port's web configuration, in the format of Prometheus'
//! exporter-toolkit that Thanos uses (`tls_server_config`, `http_server_config`, `rate_limit`,
//! `basic_auth_users`), parsed as strictly.
//!
//! - TLS: certificate and key files (read again when they change), client certificates
//!   (`client_auth_type` `RequireAndVerifyClientCert` or `VerifyClientCertIfGiven` with
//!   `client_ca_file`), versions, cipher suites and curves by Go's names. What rustls cannot do
//!   (TLS 1.0 and 1.1, accepting certificates without verifying them) and what ringest does not
//!   implement yet (inline PEM, `client_allowed_sans`) stop the start-up, naming the key.
//! - Basic auth: users with bcrypt hashes. The presented password is checked against the hash
//!   on every request; only a successful or failed check of that very user, hash and password
//!   is remembered (100 of them, as exporter-toolkit), never a user alone. An unknown user is
//!   checked against a dummy hash, so that the answer takes as long. One check runs at a time,
//!   on a blocking thread.
//! - `http_server_config.headers` (the few security headers exporter-toolkit allows) on every
//!   answer, `rate_limit` (429 past it), `http2`.
//!
//! The file is read again when it changes (checked on each request); users, headers and the
//! rate limit apply at once, TLS settings other than the certificate files at the next start.
//! A change that does not parse keeps the configuration in force, and is logged.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http::{HeaderName, HeaderValue, StatusCode, header};
use parking_lot::{Mutex, RwLock};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// exporter-toolkit's dummy hash, checked for unknown users.
const DUMMY_HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

/// Checks remembered (exporter-toolkit's cache size).
const CACHE_SIZE: usize = 100;

/// Headers that may be set, with the values allowed (none listed: any).
const EXTRA_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// Why a web configuration is refused.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    /// The file could not be read.
    #[error("read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Not YAML, an unknown key, or a value of the wrong type.
    #[error("{0}")]
    Parse(String),
    /// A value exporter-toolkit refuses, or one ringest cannot honour.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> WebConfigError {
    WebConfigError::Invalid(msg.into())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    tls_server_config: Option<RawTls>,
    #[serde(default)]
    http_server_config: Option<RawHttp>,
    #[serde(default)]
    rate_limit: Option<RawRate>,
    #[serde(default)]
    basic_auth_users: Option<HashMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default)]
    cert: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    client_ca: Option<String>,
    #[serde(default)]
    cert_file: Option<String>,
    #[serde(default)]
    key_file: Option<String>,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<String>,
    #[serde(default)]
    cipher_suites: Option<Vec<String>>,
    #[serde(default)]
    curve_preferences: Option<Vec<String>>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
    #[serde(default)]
    prefer_server_cipher_suites: Option<bool>,
    #[serde(default)]
    client_allowed_sans: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default)]
    http2: Option<bool>,
    #[serde(default)]
    headers: Option<HashMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    #[serde(default)]
    burst: Option<u64>,
    #[serde(default)]
    interval: Option<serde_yaml_ng::Value>,
}

/// A parsed web configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct WebConfig {
    /// TLS of the port (`None`: plain HTTP).
    pub tls: Option<ringest_tls::ServerOptions>,
    /// `http_server_config.http2` (default true).
    pub http2: bool,
    /// Headers set on every answer.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `basic_auth_users`: user → bcrypt hash (empty: no authentication).
    pub users: HashMap<String, String>,
    /// `rate_limit`: at most `burst` requests at once, one more per `interval`.
    pub rate: Option<(u64, Duration)>,
}

/// A Go version name (`TLS12`) as ringest-tls names it (`1.2`).
fn version(key: &str, v: &str) -> Result<String, WebConfigError> {
    match v {
        "TLS10" | "TLS11" => Err(invalid(format!(
            "tls_server_config.{key}: {v} cannot be offered by ringest (rustls speaks TLS 1.2 and 1.3)"
        ))),
        "TLS12" => Ok("1.2".into()),
        "TLS13" => Ok("1.3".into()),
        other => Err(invalid(format!("tls_server_config.{key}: unknown TLS version: {other}"))),
    }
}

/// A path relative to the configuration file's directory, as exporter-toolkit joins them.
fn join(dir: &Path, p: &str) -> String {
    if p.is_empty() || Path::new(p).is_absolute() { p.to_string() } else { dir.join(p).display().to_string() }
}

/// A Go duration from YAML: a string (`1m`) or an integer of nanoseconds.
fn go_duration(v: &serde_yaml_ng::Value) -> Result<Duration, WebConfigError> {
    match v {
        serde_yaml_ng::Value::Number(n) => {
            n.as_u64().map(Duration::from_nanos).ok_or_else(|| invalid(format!("rate_limit.interval: {n} is negative")))
        }
        serde_yaml_ng::Value::String(s) => {
            humantime::parse_duration(s).map_err(|e| invalid(format!("rate_limit.interval: {s:?}: {e}")))
        }
        other => Err(invalid(format!("rate_limit.interval: {other:?} is not a duration"))),
    }
}

fn tls_options(t: RawTls, dir: &Path) -> Result<Option<ringest_tls::ServerOptions>, WebConfigError> {
    // Go has ignored it since 1.18 (its own order is always used); so does ringest (rustls').
    if t.prefer_server_cipher_suites.is_some() {
        tracing::debug!("tls_server_config.prefer_server_cipher_suites is ignored, as Go ignores it");
    }
    let given = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    if !given(&t.cert)
        && !given(&t.key)
        && !given(&t.cert_file)
        && !given(&t.key_file)
        && !given(&t.client_ca)
        && !given(&t.client_ca_file)
        && !given(&t.client_auth_type)
    {
        return Ok(None);
    }
    for (key, v) in [("cert", &t.cert), ("key", &t.key), ("client_ca", &t.client_ca)] {
        if given(v) {
            return Err(invalid(format!(
                "tls_server_config.{key} (inline PEM) is not supported by ringest yet: use {key}_file"
            )));
        }
    }
    if t.client_allowed_sans.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(invalid("tls_server_config.client_allowed_sans is not supported by ringest yet"));
    }
    if !given(&t.cert_file) {
        return Err(invalid("missing one of cert or cert_file"));
    }
    if !given(&t.key_file) {
        return Err(invalid("missing one of key or key_file"));
    }
    let has_ca = given(&t.client_ca_file);
    let optional = match t.client_auth_type.as_deref().unwrap_or("") {
        "" | "NoClientCert" if has_ca => {
            return Err(invalid("client CA's have been configured without a Client Auth Policy"));
        }
        "" | "NoClientCert" => false,
        "RequireAndVerifyClientCert" => false,
        "VerifyClientCertIfGiven" => true,
        "RequestClientCert" | "RequireAnyClientCert" | "RequireClientCert" => {
            return Err(invalid(format!(
                "tls_server_config.client_auth_type {}: ringest always verifies client certificates; use \
                 RequireAndVerifyClientCert or VerifyClientCertIfGiven with client_ca_file",
                t.client_auth_type.unwrap_or_default()
            )));
        }
        other => return Err(invalid(format!("invalid ClientAuth: {other}"))),
    };
    if !has_ca && t.client_auth_type.as_deref().is_some_and(|a| a != "NoClientCert") {
        return Err(invalid("tls_server_config.client_auth_type verifies client certificates: set client_ca_file"));
    }
    Ok(Some(ringest_tls::ServerOptions {
        cert: join(dir, t.cert_file.as_deref().unwrap_or("")),
        key: join(dir, t.key_file.as_deref().unwrap_or("")),
        client_ca: join(dir, t.client_ca_file.as_deref().unwrap_or("")),
        client_cert_optional: optional,
        min_version: version("min_version", t.min_version.as_deref().unwrap_or("TLS12"))?,
        max_version: version("max_version", t.max_version.as_deref().unwrap_or("TLS13"))?,
        ciphers: t.cipher_suites.unwrap_or_default(),
        curves: t.curve_preferences.unwrap_or_default(),
    }))
}

impl WebConfig {
    /// Parses `yaml`, the content of the file at `path` (relative file names in it are relative
    /// to its directory).
    pub fn parse(yaml: &str, path: &Path) -> Result<WebConfig, WebConfigError> {
        let raw: Raw = if yaml.trim().is_empty() {
            Raw::default()
        } else {
            serde_yaml_ng::from_str::<Option<Raw>>(yaml)
                .map_err(|e| WebConfigError::Parse(e.to_string()))?
                .unwrap_or_default()
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let tls = tls_options(raw.tls_server_config.unwrap_or_default(), dir)?;
        let http = raw.http_server_config.unwrap_or_default();
        let mut headers = Vec::new();
        for (k, v) in http.headers.unwrap_or_default() {
            let Some((name, allowed)) = EXTRA_HEADERS.iter().find(|(n, _)| *n == k) else {
                return Err(invalid(format!("HTTP header {k:?} can not be configured")));
            };
            if !allowed.is_empty() && !allowed.contains(&v.as_str()) {
                return Err(invalid(format!("invalid value for {name}. Expected one of: {allowed:?}, but got: {v:?}")));
            }
            let value = HeaderValue::from_str(&v).map_err(|e| invalid(format!("HTTP header {k}: {e}")))?;
            headers.push((HeaderName::from_static(static_lower(name)), value));
        }
        let users = raw.basic_auth_users.unwrap_or_default();
        for (user, hash) in &users {
            hash.parse::<bcrypt::HashParts>()
                .map_err(|e| invalid(format!("basic_auth_users.{user}: not a bcrypt hash: {e}")))?;
        }
        let rate = match raw.rate_limit {
            None => None,
            Some(r) => {
                let interval = r.interval.as_ref().map(go_duration).transpose()?.unwrap_or_default();
                (!interval.is_zero()).then_some((r.burst.unwrap_or(0), interval))
            }
        };
        Ok(WebConfig { tls, http2: http.http2.unwrap_or(true), headers, users, rate })
    }

    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let yaml = std::fs::read_to_string(path)
            .map_err(|source| WebConfigError::Read { path: path.to_path_buf(), source })?;
        WebConfig::parse(&yaml, path)
    }
}

/// The lower-case name of one of [`EXTRA_HEADERS`] (header names are lower case on the wire).
fn static_lower(name: &str) -> &'static str {
    match name {
        "Strict-Transport-Security" => "strict-transport-security",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-Frame-Options" => "x-frame-options",
        "X-XSS-Protection" => "x-xss-protection",
        _ => "content-security-policy",
    }
}

/// The token bucket of `rate_limit`.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Applies a web configuration to the ops port's requests, reading its file again when it
/// changes.
#[derive(Debug)]
pub struct WebGuard {
    path: PathBuf,
    current: RwLock<(Stamp, Arc<WebConfig>)>,
    /// Checks done: SHA-256 of (user, hash, password) → whether it matched.
    checked: Mutex<HashMap<[u8; 32], bool>>,
    bcrypt: tokio::sync::Semaphore,
    bucket: Mutex<Option<Bucket>>,
}

/// What tells a file changed: its modification time (several writes within a few
/// milliseconds may share one), inode (a file renamed in is a new one) and length.
type Stamp = Option<(SystemTime, u64, u64)>;

fn modified(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).and_then(|m| Ok((m.modified()?, m.ino(), m.len()))).ok()
}

impl WebGuard {
    /// The guard of the configuration in the file at `path`; an error stops the start-up.
    pub fn load(path: &Path) -> Result<WebGuard, WebConfigError> {
        let mtime = modified(path);
        let config = WebConfig::load(path)?;
        Ok(WebGuard {
            path: path.to_path_buf(),
            current: RwLock::new((mtime, Arc::new(config))),
            checked: Mutex::new(HashMap::new()),
            bcrypt: tokio::sync::Semaphore::new(1),
            bucket: Mutex::new(None),
        })
    }

    /// The configuration in force (read again if the file changed).
    pub fn config(&self) -> Arc<WebConfig> {
        let mtime = modified(&self.path);
        {
            let cur = self.current.read();
            if cur.0 == mtime {
                return cur.1.clone();
            }
        }
        let mut cur = self.current.write();
        if cur.0 != mtime {
            cur.0 = mtime;
            match WebConfig::load(&self.path) {
                Ok(new) => {
                    if new.tls != cur.1.tls {
                        tracing::warn!(file = %self.path.display(), "the TLS settings of --http.config changed: they apply at the next start (certificate and key files are read again when they change)");
                    }
                    if new.rate != cur.1.rate {
                        *self.bucket.lock() = None;
                    }
                    tracing::info!(file = %self.path.display(), "reloaded the web configuration (--http.config)");
                    cur.1 = Arc::new(new);
                }
                Err(e) => tracing::error!(
                    file = %self.path.display(),
                    err = %e,
                    "the web configuration (--http.config) does not parse: the one in force is kept"
                ),
            }
        }
        cur.1.clone()
    }

    /// Whether the rate limit lets one more request through.
    fn allow(&self, burst: u64, interval: Duration) -> bool {
        let now = Instant::now();
        let mut b = self.bucket.lock();
        let b = b.get_or_insert(Bucket { tokens: burst as f64, at: now });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() / interval.as_secs_f64()).min(burst as f64);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether `authorization` names a user of `config` with the right password.
    async fn authorized(&self, config: &WebConfig, authorization: Option<&HeaderValue>) -> bool {
        let Some((user, pass)) = authorization.and_then(basic_credentials) else { return false };
        let (hash, known) = match config.users.get(&user) {
            Some(h) => (h.clone(), true),
            None => (DUMMY_HASH.to_string(), false),
        };
        let mut key = Sha256::new();
        for part in [user.as_bytes(), hash.as_bytes(), pass.as_bytes()] {
            key.update((part.len() as u64).to_le_bytes());
            key.update(part);
        }
        let key: [u8; 32] = key.finalize().into();
        if let Some(&ok) = self.checked.lock().get(&key) {
            return ok && known;
        }
        let Ok(_one) = self.bcrypt.acquire().await else { return false };
        let matched =
            tokio::task::spawn_blocking(move || bcrypt::verify(pass, &hash).unwrap_or(false)).await.unwrap_or(false);
        let ok = matched && known;
        let mut checked = self.checked.lock();
        if checked.len() < CACHE_SIZE {
            checked.insert(key, ok);
        }
        ok
    }
}

/// The user and password of a `Basic` authorization header (Go's `Request.BasicAuth`).
fn basic_credentials(v: &HeaderValue) -> Option<(String, String)> {
    let v = v.to_str().ok()?;
    let (scheme, rest) = v.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case("basic ") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

fn plain(code: StatusCode) -> Response {
    let text = format!("{}\n", code.canonical_reason().unwrap_or(""));
    (code, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

/// The middleware: the rate limit, the headers, then basic auth, as exporter-toolkit orders
/// them.
pub async fn guard(State(g): State<Arc<WebGuard>>, req: Request, next: Next) -> Response {
    let config = g.config();
    let mut resp = if let Some((burst, interval)) = config.rate
        && !g.allow(burst, interval)
    {
        plain(StatusCode::TOO_MANY_REQUESTS)
    } else if config.users.is_empty() || g.authorized(&config, req.headers().get(header::AUTHORIZATION)).await {
        next.run(req).await
    } else {
        let mut r = plain(StatusCode::UNAUTHORIZED);
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
        r
    };
    for (k, v) in &config.headers {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<WebConfig, WebConfigError> {
        WebConfig::parse(yaml, Path::new("/etc/web/web.yml"))
    }

    #[test]
    fn exporter_toolkit_examples() {
        let c = parse(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: /abs/server.key\n  client_auth_type: \
             RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  min_version: TLS13\nhttp_server_config:\n  \
             headers:\n    X-Frame-Options: deny\nbasic_auth_users:\n  alice: \
             $2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi\nrate_limit:\n  burst: 5\n  interval: 1s\n",
        )
        .unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.cert, "/etc/web/server.crt");
        assert_eq!(tls.key, "/abs/server.key");
        assert_eq!(tls.client_ca, "/etc/web/ca.crt");
        assert!(!tls.client_cert_optional);
        assert_eq!((tls.min_version.as_str(), tls.max_version.as_str()), ("1.3", "1.3"));
        assert!(c.http2);
        assert_eq!(c.headers[0].0, "x-frame-options");
        assert_eq!(c.users.len(), 1);
        assert_eq!(c.rate, Some((5, Duration::from_secs(1))));
        let plain =
            parse("basic_auth_users:\n  bob: $2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi\n").unwrap();
        assert_eq!(plain.tls, None, "no TLS keys: plain HTTP with basic auth");
        assert_eq!(parse("").unwrap().tls, None);
    }

    #[test]
    fn refused_by_name() {
        for (yaml, want) in [
            ("tls_server_config:\n  cert_fil: a\n", "cert_fil"),
            ("tls_server_config:\n  cert_file: a\n", "missing one of key or key_file"),
            ("tls_server_config:\n  key_file: a\n", "missing one of cert or cert_file"),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n",
                "without a Client Auth Policy",
            ),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS11\n", "cannot be offered"),
            ("tls_server_config:\n  cert: abc\n  key_file: b\n", "inline PEM"),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n",
                "always verifies",
            ),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Whatever\n", "invalid ClientAuth"),
            ("http_server_config:\n  headers:\n    Server: x\n", "can not be configured"),
            ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", "Expected one of"),
            ("basic_auth_users:\n  alice: secret\n", "not a bcrypt hash"),
        ] {
            let e = parse(yaml).unwrap_err().to_string();
            assert!(e.contains(want), "{yaml:?}: {e}");
        }
    }

    #[test]
    fn basic_credentials_as_go_reads_them() {
        let v = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(basic_credentials(&v("Basic YWxpY2U6czpl")), Some(("alice".into(), "s:e".into())));
        assert_eq!(basic_credentials(&v("basic YWxpY2U6czpl")), Some(("alice".into(), "s:e".into())));
        assert_eq!(basic_credentials(&v("Bearer YWxpY2U6czpl")), None);
        assert_eq!(basic_credentials(&v("Basic !!!")), None);
    }
}
