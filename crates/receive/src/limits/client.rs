//! `meta_monitoring_http_client`: the part of Prometheus' HTTP client configuration ringest
//! implements for the meta-monitoring queries: `basic_auth`, `authorization`, `bearer_token`
//! (inline or from files, read at each query), `tls_config` (CA, client certificate, server
//! name, `insecure_skip_verify`, minimum version), `follow_redirects` and `enable_http2`
//! (accepted: ringest speaks HTTP/1.1 and reports a redirect as a failed query). The other keys
//! Prometheus knows (`oauth2`, proxies, `http_headers`, inline PEM) are refused by name.

use std::path::PathBuf;

use serde::Deserialize;

use thiserror::Error;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    basic_auth: Option<RawBasic>,
    #[serde(default)]
    authorization: Option<RawAuthorization>,
    #[serde(default)]
    bearer_token: Option<String>,
    #[serde(default)]
    bearer_token_file: Option<String>,
    #[serde(default)]
    tls_config: Option<RawTls>,
    #[serde(default)]
    follow_redirects: Option<bool>,
    #[serde(default)]
    enable_http2: Option<bool>,
    #[serde(default)]
    oauth2: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    proxy_url: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    no_proxy: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    proxy_from_environment: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    proxy_connect_header: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    http_headers: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBasic {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    username_file: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    password_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthorization {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    credentials: Option<String>,
    #[serde(default)]
    credentials_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default)]
    ca: Option<String>,
    #[serde(default)]
    ca_file: Option<String>,
    #[serde(default)]
    cert: Option<String>,
    #[serde(default)]
    cert_file: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    key_file: Option<String>,
    #[serde(default)]
    server_name: Option<String>,
    #[serde(default)]
    insecure_skip_verify: Option<bool>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
}

/// A secret given inline or as a file read at each use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    /// The value.
    Inline(String),
    /// A file holding it (surrounding whitespace trimmed, as Prometheus does).
    File(PathBuf),
}

impl Secret {
    fn of(inline: Option<String>, file: Option<String>, key: &str) -> Result<Option<Secret>, ClientConfigError> {
        match (inline.filter(|s| !s.is_empty()), file.filter(|s| !s.is_empty())) {
            (Some(_), Some(_)) => Err(bad(format!("at most one of {key} and {key}_file must be configured"))),
            (Some(v), None) => Ok(Some(Secret::Inline(v))),
            (None, Some(f)) => Ok(Some(Secret::File(PathBuf::from(f)))),
            (None, None) => Ok(None),
        }
    }

    /// The value now.
    pub fn read(&self) -> std::io::Result<String> {
        match self {
            Secret::Inline(v) => Ok(v.clone()),
            Secret::File(p) => Ok(std::fs::read_to_string(p)?.trim().to_string()),
        }
    }
}

/// How a query authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// `basic_auth`.
    Basic {
        /// The user.
        username: Secret,
        /// The password (none: empty).
        password: Option<Secret>,
    },
    /// `authorization` (or `bearer_token`): `<scheme> <credentials>`.
    Header {
        /// `Bearer` unless given.
        scheme: String,
        /// The credentials.
        credentials: Secret,
    },
}

/// The meta-monitoring client's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaClient {
    /// Authentication (none: none).
    pub auth: Option<Auth>,
    /// TLS towards an `https` URL.
    pub tls: ringest_tls::ClientOptions,
}

/// A `meta_monitoring_http_client` that ringest cannot use, and why.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("meta_monitoring_http_client: {0}")]
pub struct ClientConfigError(String);

fn bad(msg: String) -> ClientConfigError {
    ClientConfigError(msg)
}

impl MetaClient {
    /// Reads `meta_monitoring_http_client` (`None` or null: the defaults).
    pub fn parse(v: Option<serde_yaml_ng::Value>) -> Result<MetaClient, ClientConfigError> {
        let Some(v) = v.filter(|v| !v.is_null()) else { return Ok(MetaClient::default()) };
        let raw: Raw = serde_yaml_ng::from_value(v).map_err(|e| bad(e.to_string()))?;
        let refused = [
            ("oauth2", raw.oauth2.is_some()),
            ("proxy_url", raw.proxy_url.is_some()),
            ("no_proxy", raw.no_proxy.is_some()),
            ("proxy_from_environment", raw.proxy_from_environment.is_some()),
            ("proxy_connect_header", raw.proxy_connect_header.is_some()),
            ("http_headers", raw.http_headers.is_some()),
        ];
        if let Some((key, _)) = refused.iter().find(|(_, given)| *given) {
            return Err(bad(format!("{key} is not supported by ringest yet")));
        }
        let _ = (raw.follow_redirects, raw.enable_http2);
        let bearer = Secret::of(raw.bearer_token, raw.bearer_token_file, "bearer_token")?;
        let mut auth = Vec::new();
        if let Some(b) = raw.basic_auth {
            let username = Secret::of(b.username, b.username_file, "basic_auth.username")?
                .ok_or_else(|| bad("basic_auth needs a username or username_file".into()))?;
            let password = Secret::of(b.password, b.password_file, "basic_auth.password")?;
            auth.push(Auth::Basic { username, password });
        }
        if let Some(a) = raw.authorization {
            let scheme = a.kind.filter(|k| !k.is_empty()).unwrap_or_else(|| "Bearer".into());
            if scheme.eq_ignore_ascii_case("basic") {
                return Err(bad("authorization type cannot be set to \"basic\", use \"basic_auth\" instead".into()));
            }
            let credentials = Secret::of(a.credentials, a.credentials_file, "authorization.credentials")?
                .ok_or_else(|| bad("authorization needs credentials or credentials_file".into()))?;
            auth.push(Auth::Header { scheme, credentials });
        }
        if let Some(credentials) = bearer {
            auth.push(Auth::Header { scheme: "Bearer".into(), credentials });
        }
        if auth.len() > 1 {
            return Err(bad("at most one of basic_auth, authorization and bearer_token must be configured".into()));
        }
        let t = raw.tls_config.unwrap_or_default();
        for (key, given) in [("ca", &t.ca), ("cert", &t.cert), ("key", &t.key)] {
            if given.as_deref().is_some_and(|s| !s.is_empty()) {
                return Err(bad(format!(
                    "tls_config.{key} (inline PEM) is not supported by ringest yet: use {key}_file"
                )));
            }
        }
        let version = |key: &str, v: Option<String>| match v.as_deref().unwrap_or("") {
            "" => Ok(String::new()),
            "TLS12" => Ok("1.2".into()),
            "TLS13" => Ok("1.3".into()),
            other => Err(bad(format!("tls_config.{key} {other}: ringest speaks TLS12 and TLS13"))),
        };
        let min_version = version("min_version", t.min_version)?;
        if version("max_version", t.max_version)? == "1.2" {
            return Err(bad("tls_config.max_version TLS12 is not supported by ringest yet".into()));
        }
        let tls = ringest_tls::ClientOptions {
            cert: t.cert_file.unwrap_or_default(),
            key: t.key_file.unwrap_or_default(),
            ca: t.ca_file.unwrap_or_default(),
            server_name: t.server_name.unwrap_or_default(),
            skip_verify: t.insecure_skip_verify.unwrap_or(false),
            min_version: if min_version.is_empty() { "1.2".into() } else { min_version },
        };
        Ok(MetaClient { auth: auth.pop(), tls })
    }
}
