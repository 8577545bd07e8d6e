//! `type: GCS` — Thanos' `gcs.Config` mapped onto object_store's
//! [`GoogleCloudStorageBuilder`].
//!
//! Implemented keys:
//!
//! | key | effect |
//! |---|---|
//! | `bucket` | required ("missing Google Cloud Storage bucket name for stored blocks") |
//! | `service_account` | inline service account key (JSON); empty = application default credentials: the file named by `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's well-known file, then the metadata server |
//! | `chunk_size_bytes` | multipart part size (Thanos: bytes sent per request); 0 or negative = the Go client's 16 MiB; raised to GCS' 5 MiB part minimum |
//! | `max_retries` | total attempts (`1` disables retries, as in Thanos); 0 or negative = object_store's default (10 retries within 3 min) |
//! | `http_config` | see [`super::http`]; as in Thanos, `idle_conn_timeout` also bounds each whole request (Thanos sets it as the `http.Client` timeout) |
//!
//! Accepted only at their default (any other value is refused at start-up):
//!
//! * `use_grpc: false` — object_store talks to GCS over HTTP (JSON and XML APIs) only.
//!
//! Accepted, no effect:
//!
//! * `grpc_conn_pool_size` — only used with gRPC.
//! * `http_config.max_idle_conns`, `max_conns_per_host`, `expect_continue_timeout`,
//!   `disable_compression` — see [`super::http`].
//!
//! Inline service accounts must be of type `service_account` (object_store cannot use other
//! credential documents inline; name such a file with `GOOGLE_APPLICATION_CREDENTIALS`).

use std::sync::Arc;

use object_store::RetryConfig;
use object_store::gcp::GoogleCloudStorageBuilder;
use serde::Deserialize;

use super::de as yaml;
use super::http::HttpConfig;
use super::{BuiltBucket, ConfigError, Secret, retries_from_attempts};

/// The provider name used in messages.
pub const PROVIDER: &str = "GCS";

/// The Go client's default upload chunk size (`googleapi.DefaultUploadChunkSize`).
const DEFAULT_CHUNK_SIZE: usize = 16 * 1024 * 1024;

/// GCS' smallest multipart part (XML API), all parts but the last.
const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// The endpoint object_store talks to.
const GCS_ENDPOINT: &str = "https://storage.googleapis.com";

/// `type: GCS` configuration (Thanos' `gcs.Config`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a mapping of GCS settings")]
pub struct GcsConfig {
    /// Bucket name (required).
    #[serde(deserialize_with = "yaml::nullable")]
    pub bucket: String,
    /// Inline service account key (JSON).
    #[serde(deserialize_with = "yaml::nullable")]
    pub service_account: Secret,
    /// Only `false`.
    #[serde(deserialize_with = "yaml::boolean")]
    pub use_grpc: bool,
    /// Accepted, no effect.
    #[serde(deserialize_with = "yaml::nullable")]
    pub grpc_conn_pool_size: i64,
    /// HTTP transport.
    #[serde(deserialize_with = "yaml::nullable")]
    pub http_config: HttpConfig,
    /// Bytes per upload request.
    #[serde(deserialize_with = "yaml::nullable")]
    pub chunk_size_bytes: i64,
    /// Total attempts per request; 0 = default.
    #[serde(deserialize_with = "yaml::nullable")]
    pub max_retries: i64,
}

impl Default for GcsConfig {
    /// Thanos' `gcs.DefaultConfig`.
    fn default() -> Self {
        Self {
            bucket: String::new(),
            service_account: Secret::default(),
            use_grpc: false,
            grpc_conn_pool_size: 0,
            http_config: HttpConfig::default(),
            chunk_size_bytes: 0,
            max_retries: 0,
        }
    }
}

impl GcsConfig {
    /// Parse-time checks.
    pub(crate) fn prepare(&mut self) -> Result<(), ConfigError> {
        if self.use_grpc {
            return Err(ConfigError::Unsupported {
                provider: PROVIDER,
                key: "use_grpc".to_owned(),
                value: "true".to_owned(),
                reason: "object_store talks to GCS over HTTP only".to_owned(),
            });
        }
        self.http_config.check(PROVIDER)
    }

    /// The multipart part size the shipper should use.
    pub fn multipart_part_size(&self) -> Option<usize> {
        let chunk =
            usize::try_from(self.chunk_size_bytes).ok().filter(|chunk| *chunk > 0).unwrap_or(DEFAULT_CHUNK_SIZE);
        Some(chunk.max(MIN_PART_SIZE))
    }

    /// The object_store retry policy.
    fn retry_config(&self) -> RetryConfig {
        let default = RetryConfig::default();
        RetryConfig { max_retries: retries_from_attempts(self.max_retries, default.max_retries), ..default }
    }

    /// Checks the inline service account document (never echoing its content).
    fn check_service_account(&self) -> Result<(), ConfigError> {
        let document: serde_json::Value = serde_json::from_str(self.service_account.expose())
            .map_err(|e| invalid(format!("service_account: not a valid JSON document: {e}")))?;
        let Some(object) = document.as_object() else {
            return Err(invalid("service_account: not a JSON object".to_owned()));
        };
        match object.get("type").and_then(serde_json::Value::as_str) {
            None | Some("service_account") => Ok(()),
            Some(other) => Err(ConfigError::Unsupported {
                provider: PROVIDER,
                key: "service_account".to_owned(),
                value: format!("credentials of type {other:?}"),
                reason: "only service account keys can be given inline; name other credential files with GOOGLE_APPLICATION_CREDENTIALS".to_owned(),
            }),
        }
    }

    /// Validates and builds the store (no network I/O).
    pub(crate) fn build(&self) -> Result<BuiltBucket, ConfigError> {
        if self.bucket.is_empty() {
            return Err(invalid("missing Google Cloud Storage bucket name for stored blocks".to_owned()));
        }
        let options = self.http_config.client_options(PROVIDER, Some(self.http_config.idle_conn_timeout))?;
        let mut builder = GoogleCloudStorageBuilder::new()
            .with_bucket_name(&self.bucket)
            .with_client_options(options)
            .with_retry(self.retry_config());
        if !self.service_account.is_empty() {
            self.check_service_account()?;
            builder = builder.with_service_account_key(self.service_account.expose());
        } else if let Some(path) = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS")
            .and_then(|path| path.into_string().ok())
            .filter(|path| !path.is_empty())
        {
            builder = builder.with_application_credentials(path);
        }
        let store = builder.build().map_err(|source| ConfigError::Build { provider: PROVIDER, source })?;
        Ok(BuiltBucket {
            store: Arc::new(store),
            name: self.bucket.clone(),
            endpoint: GCS_ENDPOINT.to_owned(),
            multipart_part_size: self.multipart_part_size(),
            attributes: object_store::Attributes::new(),
        })
    }
}

fn invalid(message: String) -> ConfigError {
    ConfigError::Invalid { provider: PROVIDER, message }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{Provider, parse};
    use super::*;

    fn gcs(config: &str) -> Result<GcsConfig, ConfigError> {
        parse(&format!("type: GCS\nconfig:\n{config}")).map(|c| match c.provider {
            Provider::Gcs(gcs) => gcs,
            other => panic!("not GCS: {other:?}"),
        })
    }

    /// Thanos README's GCS listing.
    const README: &str = r#"type: GCS
config:
  bucket: ""
  service_account: ""
  use_grpc: false
  grpc_conn_pool_size: 0
  http_config:
    idle_conn_timeout: 0s
    response_header_timeout: 0s
    insecure_skip_verify: false
    tls_handshake_timeout: 0s
    expect_continue_timeout: 0s
    max_idle_conns: 0
    max_idle_conns_per_host: 0
    max_conns_per_host: 0
    tls_config:
      ca_file: ""
      cert_file: ""
      key_file: ""
      server_name: ""
      insecure_skip_verify: false
    disable_compression: false
  chunk_size_bytes: 0
  max_retries: 0
prefix: ""
"#;

    /// Thanos README's inline service account example (the key is elided there).
    const README_INLINE: &str = r#"type: GCS
config:
  bucket: "thanos"
  service_account: |-
    {
      "type": "service_account",
      "project_id": "project",
      "private_key_id": "abcdefghijklmnopqrstuvwxyz12345678906666",
      "private_key": "-----BEGIN PRIVATE KEY-----\...\n-----END PRIVATE KEY-----\n",
      "client_email": "project@thanos.iam.gserviceaccount.com",
      "client_id": "123456789012345678901",
      "auth_uri": "https://accounts.google.com/o/oauth2/auth",
      "token_uri": "https://oauth2.googleapis.com/token",
      "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
      "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/thanos%40gitpods.iam.gserviceaccount.com"
    }
"#;

    #[test]
    fn readme_examples_parse() {
        let config = parse(README).unwrap();
        assert_eq!(config.kind(), "GCS");
        let Provider::Gcs(c) = &config.provider else { panic!("not GCS") };
        assert_eq!(c.http_config.idle_conn_timeout, Duration::ZERO);
        assert_eq!(c.http_config.max_idle_conns_per_host, 0);

        let config = parse(README_INLINE).unwrap();
        let Provider::Gcs(c) = &config.provider else { panic!("not GCS") };
        assert_eq!(c.bucket, "thanos");
        assert!(c.service_account.expose().contains("service_account"));
        assert!(!format!("{config:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn omitted_keys_take_thanos_defaults() {
        let c = gcs("  bucket: b\n").unwrap();
        assert_eq!(c, GcsConfig { bucket: "b".to_owned(), ..GcsConfig::default() });
        assert_eq!(c.http_config, HttpConfig::default());
        assert_eq!(c.multipart_part_size(), Some(16 * 1024 * 1024));
        assert_eq!(c.retry_config().max_retries, RetryConfig::default().max_retries);
    }

    #[test]
    fn tuning_keys() {
        let c = gcs("  bucket: b\n  chunk_size_bytes: 33554432\n  max_retries: 1\n  grpc_conn_pool_size: 4\n").unwrap();
        assert_eq!(c.multipart_part_size(), Some(32 * 1024 * 1024));
        assert_eq!(c.retry_config().max_retries, 0);
        let c = gcs("  bucket: b\n  chunk_size_bytes: 262144\n").unwrap();
        assert_eq!(c.multipart_part_size(), Some(5 * 1024 * 1024));
    }

    #[test]
    fn grpc_is_refused() {
        let err = gcs("  bucket: b\n  use_grpc: true\n").unwrap_err().to_string();
        assert!(err.starts_with("objstore config: GCS config: use_grpc: true is not supported by ringest"), "{err}");
    }

    #[test]
    fn bucket_is_required() {
        let err = gcs("  service_account: \"\"\n").unwrap().build().unwrap_err().to_string();
        assert_eq!(err, "objstore config: GCS config: missing Google Cloud Storage bucket name for stored blocks");
    }

    #[test]
    fn builds_without_network() {
        // object_store's `disable_oauth` lets a fake key build without signing anything.
        let c = gcs("  bucket: b\n  service_account: '{\"type\": \"service_account\", \"private_key\": \"k\", \"private_key_id\": \"i\", \"client_email\": \"a@b\", \"disable_oauth\": true}'\n").unwrap();
        let built = c.build().unwrap();
        assert_eq!(built.name, "b");
        assert_eq!(built.endpoint, "https://storage.googleapis.com");
        assert_eq!(built.multipart_part_size, Some(16 * 1024 * 1024));
        assert!(built.attributes.is_empty());
    }

    #[test]
    fn service_account_documents_are_checked() {
        let err = gcs("  bucket: b\n  service_account: 'not json'\n").unwrap().build().unwrap_err().to_string();
        assert!(err.contains("service_account: not a valid JSON document"), "{err}");
        assert!(!err.contains("not json"), "{err}");
        let err = gcs("  bucket: b\n  service_account: '{\"type\": \"authorized_user\", \"refresh_token\": \"r\"}'\n")
            .unwrap()
            .build()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("service_account")
                && err.contains("authorized_user")
                && err.contains("GOOGLE_APPLICATION_CREDENTIALS"),
            "{err}"
        );
        // The README example's elided key is not valid JSON: refused at build, like Thanos.
        assert!(parse(README_INLINE).unwrap().build().is_err());
    }
}
