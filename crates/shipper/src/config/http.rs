//! `http_config` — Thanos' `exthttp.HTTPConfig`, shared by S3, GCS and AZURE — and its mapping
//! onto object_store's [`ClientOptions`].
//!
//! Defaults are Thanos' `exthttp.DefaultHTTPConfig`: `idle_conn_timeout: 1m30s`,
//! `response_header_timeout: 2m`, `tls_handshake_timeout: 10s`, `expect_continue_timeout: 1s`,
//! `max_idle_conns: 100`, `max_idle_conns_per_host: 100`, `max_conns_per_host: 0`, everything
//! else off/empty.
//!
//! | key | effect in ringest |
//! |---|---|
//! | `idle_conn_timeout` | pool idle timeout; `0` (Go: no limit) keeps reqwest's 90 s |
//! | `response_header_timeout` | read timeout; `0` = none (see the note below) |
//! | `tls_handshake_timeout` | connect timeout = 30 s (Thanos' dial timeout) + this value |
//! | `max_idle_conns_per_host` | idle connections kept per host; `0` = 2 and negative = 0, as in Go |
//! | `insecure_skip_verify`, `tls_config.insecure_skip_verify` | either one turns off certificate verification |
//! | `tls_config.ca_file` | the PEM file's certificates replace the system roots, as in Go |
//! | `tls_config.cert_file`, `key_file`, `server_name` | only empty: client certificates and SNI overrides are not supported |
//! | `max_idle_conns` | accepted, no effect: reqwest has no global idle-pool cap |
//! | `max_conns_per_host` | accepted, no effect: reqwest cannot cap connections per host; the shipper's own concurrency bounds them |
//! | `expect_continue_timeout` | accepted, no effect: object_store never sends `Expect: 100-continue` |
//! | `disable_compression` | accepted, no effect: object_store does not ask for compressed responses (Thanos' transport ignores the key too) |
//!
//! The total request timeout (object_store's default is 30 s) is switched off, as Go's
//! `http.Client` has none, so that uploading a large part is not cut; providers that have a
//! per-request bound (GCS, Azure's `pipeline_config.try_timeout`) pass it in.
//!
//! Note on `response_header_timeout`: Go starts this timer once the request body is sent; reqwest's
//! read timeout starts with the request, so it also bounds the time to send one part. On slow links
//! with big parts, raise it above the time one part takes to upload.

use std::fmt;
use std::time::Duration;

use object_store::{Certificate, ClientOptions};
use serde::Deserialize;

use super::ConfigError;
use super::de;

/// Thanos' dialer timeout (`net.Dialer{Timeout: 30 * time.Second}` in exthttp).
const DIAL_TIMEOUT: Duration = Duration::from_secs(30);

/// Go's `http.DefaultMaxIdleConnsPerHost`, used when `max_idle_conns_per_host` is 0.
const GO_DEFAULT_MAX_IDLE_CONNS_PER_HOST: usize = 2;

/// `http_config`: the HTTP transport settings.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a mapping (http_config)")]
pub struct HttpConfig {
    /// How long an idle keep-alive connection stays in the pool.
    #[serde(deserialize_with = "de::duration")]
    pub idle_conn_timeout: Duration,
    /// How long to wait for the response headers.
    #[serde(deserialize_with = "de::duration")]
    pub response_header_timeout: Duration,
    /// Do not verify the server certificate.
    #[serde(deserialize_with = "de::boolean")]
    pub insecure_skip_verify: bool,
    /// TLS handshake timeout (added to the dial timeout).
    #[serde(deserialize_with = "de::duration")]
    pub tls_handshake_timeout: Duration,
    /// Accepted, no effect.
    #[serde(deserialize_with = "de::duration")]
    pub expect_continue_timeout: Duration,
    /// Accepted, no effect.
    #[serde(deserialize_with = "de::nullable")]
    pub max_idle_conns: i64,
    /// Idle connections kept per host.
    #[serde(deserialize_with = "de::nullable")]
    pub max_idle_conns_per_host: i64,
    /// Accepted, no effect.
    #[serde(deserialize_with = "de::nullable")]
    pub max_conns_per_host: i64,
    /// TLS settings.
    #[serde(deserialize_with = "de::nullable")]
    pub tls_config: TlsConfig,
    /// Accepted, no effect.
    #[serde(deserialize_with = "de::boolean")]
    pub disable_compression: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            idle_conn_timeout: Duration::from_secs(90),
            response_header_timeout: Duration::from_secs(120),
            insecure_skip_verify: false,
            tls_handshake_timeout: Duration::from_secs(10),
            expect_continue_timeout: Duration::from_secs(1),
            max_idle_conns: 100,
            max_idle_conns_per_host: 100,
            max_conns_per_host: 0,
            tls_config: TlsConfig::default(),
            disable_compression: false,
        }
    }
}

impl fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpConfig")
            .field("idle_conn_timeout", &de::format_duration(self.idle_conn_timeout))
            .field("response_header_timeout", &de::format_duration(self.response_header_timeout))
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .field("tls_handshake_timeout", &de::format_duration(self.tls_handshake_timeout))
            .field("expect_continue_timeout", &de::format_duration(self.expect_continue_timeout))
            .field("max_idle_conns", &self.max_idle_conns)
            .field("max_idle_conns_per_host", &self.max_idle_conns_per_host)
            .field("max_conns_per_host", &self.max_conns_per_host)
            .field("tls_config", &self.tls_config)
            .field("disable_compression", &self.disable_compression)
            .finish()
    }
}

/// `http_config.tls_config`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a mapping (tls_config)")]
pub struct TlsConfig {
    /// PEM file with the CA certificates to trust.
    #[serde(deserialize_with = "de::nullable")]
    pub ca_file: String,
    /// Client certificate: only empty is supported.
    #[serde(deserialize_with = "de::nullable")]
    pub cert_file: String,
    /// Client key: only empty is supported.
    #[serde(deserialize_with = "de::nullable")]
    pub key_file: String,
    /// TLS server name override: only empty is supported.
    #[serde(deserialize_with = "de::nullable")]
    pub server_name: String,
    /// Do not verify the server certificate.
    #[serde(deserialize_with = "de::boolean")]
    pub insecure_skip_verify: bool,
}

impl HttpConfig {
    /// Refuses the keys ringest cannot honour (parse time; reads no file).
    pub(crate) fn check(&self, provider: &'static str) -> Result<(), ConfigError> {
        let tls = &self.tls_config;
        let unsupported = [
            ("http_config.tls_config.cert_file", &tls.cert_file, "TLS client certificates are not supported"),
            ("http_config.tls_config.key_file", &tls.key_file, "TLS client certificates are not supported"),
            (
                "http_config.tls_config.server_name",
                &tls.server_name,
                "the TLS server name cannot be overridden; it is always the endpoint's host name",
            ),
        ];
        for (key, value, reason) in unsupported {
            if !value.is_empty() {
                return Err(ConfigError::Unsupported {
                    provider,
                    key: key.to_owned(),
                    value: format!("{value:?}"),
                    reason: reason.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// The object_store client options for this transport.
    ///
    /// `request_timeout` bounds a whole request (attempt) when the provider has such a bound;
    /// `None` disables object_store's default 30 s total timeout.
    pub(crate) fn client_options(
        &self,
        provider: &'static str,
        request_timeout: Option<Duration>,
    ) -> Result<ClientOptions, ConfigError> {
        let mut options = ClientOptions::new()
            .with_connect_timeout(DIAL_TIMEOUT + self.tls_handshake_timeout)
            .with_pool_max_idle_per_host(self.pool_max_idle_per_host());
        options = match request_timeout {
            Some(timeout) if !timeout.is_zero() => options.with_timeout(timeout),
            _ => options.with_timeout_disabled(),
        };
        if !self.idle_conn_timeout.is_zero() {
            options = options.with_pool_idle_timeout(self.idle_conn_timeout);
        }
        if !self.response_header_timeout.is_zero() {
            options = options.with_read_timeout(self.response_header_timeout);
        }
        if self.insecure_skip_verify || self.tls_config.insecure_skip_verify {
            options = options.with_allow_invalid_certificates(true);
        }
        if !self.tls_config.ca_file.is_empty() {
            for certificate in read_ca_file(provider, &self.tls_config.ca_file)? {
                options = options.with_root_certificate(certificate);
            }
            // Go's tls.Config.RootCAs replaces the system roots; do the same.
            options = options.with_no_system_certificates(true);
        }
        Ok(options)
    }

    /// Go's rule: 0 means 2, a negative value keeps no idle connection.
    fn pool_max_idle_per_host(&self) -> usize {
        match self.max_idle_conns_per_host {
            0 => GO_DEFAULT_MAX_IDLE_CONNS_PER_HOST,
            n if n < 0 => 0,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        }
    }
}

/// Reads the PEM certificates of `tls_config.ca_file`.
fn read_ca_file(provider: &'static str, path: &str) -> Result<Vec<Certificate>, ConfigError> {
    let file_error = |message: String| ConfigError::File {
        provider,
        key: "http_config.tls_config.ca_file",
        path: path.to_owned(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| file_error(format!("cannot read: {e}")))?;
    let certificates = Certificate::from_pem_bundle(&pem)
        .map_err(|e| file_error(format!("not a valid PEM certificate bundle: {e}")))?;
    if certificates.is_empty() {
        return Err(file_error("no PEM certificate found".to_owned()));
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<HttpConfig, String> {
        serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_thanos_defaults() {
        let config = parse("{}").unwrap();
        assert_eq!(config, HttpConfig::default());
        assert_eq!(config.idle_conn_timeout, Duration::from_secs(90));
        assert_eq!(config.response_header_timeout, Duration::from_secs(120));
        assert_eq!(config.tls_handshake_timeout, Duration::from_secs(10));
        assert_eq!(config.expect_continue_timeout, Duration::from_secs(1));
        assert_eq!(config.max_idle_conns, 100);
        assert_eq!(config.max_idle_conns_per_host, 100);
        assert_eq!(config.max_conns_per_host, 0);
        assert!(!config.insecure_skip_verify && !config.disable_compression);
        assert_eq!(config.tls_config, TlsConfig::default());
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = parse("idle_conn_timeout: 1m\nidle_timeout: 1m\n").unwrap_err();
        assert!(err.contains("unknown field `idle_timeout`"), "{err}");
        let err = parse("tls_config:\n  ca: x\n").unwrap_err();
        assert!(err.contains("tls_config") && err.contains("unknown field `ca`"), "{err}");
    }

    #[test]
    fn client_options_build() {
        let config = parse("max_idle_conns_per_host: 0\nidle_conn_timeout: 0s\nresponse_header_timeout: 0s\ninsecure_skip_verify: true\n").unwrap();
        assert_eq!(config.pool_max_idle_per_host(), 2);
        assert!(config.client_options("S3", None).is_ok());
        let config = parse("max_idle_conns_per_host: -1\n").unwrap();
        assert_eq!(config.pool_max_idle_per_host(), 0);
    }

    #[test]
    fn unreadable_ca_file_is_named() {
        let config = parse("tls_config:\n  ca_file: /nonexistent/ca.pem\n").unwrap();
        let err = config.client_options("S3", None).unwrap_err().to_string();
        assert!(err.contains("http_config.tls_config.ca_file") && err.contains("/nonexistent/ca.pem"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let config = HttpConfig {
            tls_config: TlsConfig { ca_file: path.display().to_string(), ..TlsConfig::default() },
            ..HttpConfig::default()
        };
        let err = config.client_options("S3", None).unwrap_err().to_string();
        assert!(err.contains("ca.pem"), "{err}");
    }

    /// A self-signed test CA (no private key needed to trust it).
    const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBijCCATGgAwIBAgIUF9/wMvaEYgDzRio/9Gt2fijEinkwCgYIKoZIzj0EAwIw
GjEYMBYGA1UEAwwPcmluZ2VzdC10ZXN0LWNhMCAXDTI2MTEyMTEwNDU1M1oYDzIx
MjYxMDI4MTA0NTUzWjAaMRgwFgYDVQQDDA9yaW5nZXN0LXRlc3QtY2EwWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAARgrRVPvp7tzjxokcWv5zalo7w2L9bq9PzbdmW8
dZKAFy/6ocaf0NRH1riXukRB2gzp95NzzIPhR37HVVnKbIS/o1MwUTAdBgNVHQ4E
FgQUpC5ZcCHJO7AX8NDWWyHwmrJyUVgwHwYDVR0jBBgwFoAUpC5ZcCHJO7AX8NDW
WyHwmrJyUVgwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNHADBEAiAvYF7B
UCEwAs6VeEb2dI3OmSdO7hug2zApN5nhNHc9pQIgHtq3pePHUHDT+W/Ktz6NQhhO
jblRJGkDHSaNajPXbvA=
-----END CERTIFICATE-----
";

    #[test]
    fn ca_file_is_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, TEST_CA).unwrap();
        let certificates = read_ca_file("S3", &path.display().to_string()).unwrap();
        assert_eq!(certificates.len(), 1);
        let config = HttpConfig {
            tls_config: TlsConfig { ca_file: path.display().to_string(), ..TlsConfig::default() },
            ..HttpConfig::default()
        };
        assert!(config.client_options("S3", None).is_ok());
    }

    #[test]
    fn client_certificates_are_refused() {
        for key in ["cert_file", "key_file", "server_name"] {
            let config = parse(&format!("tls_config:\n  {key}: x\n")).unwrap();
            let err = config.check("S3").unwrap_err().to_string();
            assert!(
                err.contains(&format!("http_config.tls_config.{key}")) && err.contains("not supported by ringest"),
                "{err}"
            );
        }
    }
}
