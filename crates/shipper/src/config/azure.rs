//! `type: AZURE` — Thanos' `azure.Config` mapped onto object_store's
//! [`MicrosoftAzureBuilder`].
//!
//! Implemented keys:
//!
//! | key | effect |
//! |---|---|
//! | `storage_account` | required ("storage_account_name is required but not configured") |
//! | `container` | required ("no container specified"); also the bucket name |
//! | `endpoint` | storage endpoint suffix (default `blob.core.windows.net`): requests go to `https://<storage_account>.<endpoint>`; empty = the default |
//! | `storage_account_key` | shared key authentication |
//! | `az_tenant_id`, `client_id`, `client_secret` | Azure AD client secret authentication (all three together, as Thanos requires) |
//! | `user_assigned_id` | managed identity with this client id |
//! | `max_retries` | copied into `pipeline_config.max_tries` and `reader_config.max_retry_requests` when those are 0, as Thanos does |
//! | `pipeline_config.max_tries` | retries per request (0 = the Azure SDK's 3) |
//! | `pipeline_config.try_timeout` | bound of each attempt (0 = none) |
//! | `pipeline_config.retry_delay` | first backoff (0 = the SDK's 4 s), doubling up to... |
//! | `pipeline_config.max_retry_delay` | ...this cap (0 = the SDK's 60 s) |
//! | `http_config` | see [`super::http`] |
//!
//! Without a key, client secret or `user_assigned_id`, credentials come from the environment as
//! with the Azure SDK's default chain (what Thanos uses): `AZURE_CLIENT_ID` / `AZURE_TENANT_ID`
//! with `AZURE_CLIENT_SECRET` or `AZURE_FEDERATED_TOKEN_FILE` (workload identity),
//! `AZURE_AUTHORITY_HOST`, else the managed identity endpoint (`IDENTITY_ENDPOINT` or instance
//! metadata). The Azure CLI is not tried.
//!
//! Accepted only at their default (any other value is refused at start-up):
//!
//! * `storage_connection_string: ""` — connection strings are not supported; use
//!   `storage_account` with `storage_account_key` or Azure AD credentials.
//!
//! Accepted, no effect:
//!
//! * `storage_create_container` (Thanos' default is `true`) — ringest never creates the
//!   container: object_store has no call for it. A missing container makes uploads fail with
//!   `ContainerNotFound`; create it beforehand. Refusing `true` would refuse Thanos' default.
//! * `msi_resource` — deprecated in Thanos, which ignores it too (a warning is logged).
//! * `reader_config.max_retry_requests` — object_store retries failed requests itself; ringest
//!   only uploads.
//! * `http_config.max_idle_conns`, `max_conns_per_host`, `expect_continue_timeout`,
//!   `disable_compression` — see [`super::http`].

use std::sync::Arc;
use std::time::Duration;

use object_store::azure::MicrosoftAzureBuilder;
use object_store::{BackoffConfig, RetryConfig};
use serde::Deserialize;

use super::de as yaml;
use super::http::HttpConfig;
use super::{BuiltBucket, ConfigError, Secret};

/// The provider name used in messages.
pub const PROVIDER: &str = "AZURE";

/// Thanos' default `endpoint`.
pub const DEFAULT_ENDPOINT: &str = "blob.core.windows.net";

/// Part (block) size for multipart uploads. Thanos stages 3 MiB blocks four at a time; the
/// shipper uploads parts one after the other, so bigger blocks keep the request count down.
const BLOCK_SIZE: usize = 16 * 1024 * 1024;

/// Azure SDK retry defaults (`policy.RetryOptions`).
const SDK_MAX_RETRIES: usize = 3;
const SDK_RETRY_DELAY: Duration = Duration::from_secs(4);
const SDK_MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// `type: AZURE` configuration (Thanos' `azure.Config`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a mapping of AZURE settings")]
pub struct AzureConfig {
    /// Azure AD tenant for client secret authentication.
    #[serde(deserialize_with = "yaml::nullable")]
    pub az_tenant_id: String,
    /// Azure AD application (client) id.
    #[serde(deserialize_with = "yaml::nullable")]
    pub client_id: String,
    /// Azure AD client secret.
    #[serde(deserialize_with = "yaml::nullable")]
    pub client_secret: Secret,
    /// Storage account name (required).
    #[serde(deserialize_with = "yaml::nullable")]
    pub storage_account: String,
    /// Storage account shared key.
    #[serde(deserialize_with = "yaml::nullable")]
    pub storage_account_key: Secret,
    /// Only empty.
    #[serde(deserialize_with = "yaml::nullable")]
    pub storage_connection_string: Secret,
    /// Accepted, no effect.
    #[serde(deserialize_with = "yaml::boolean")]
    pub storage_create_container: bool,
    /// Container name (required).
    #[serde(deserialize_with = "yaml::nullable")]
    pub container: String,
    /// Storage endpoint suffix.
    #[serde(deserialize_with = "yaml::nullable")]
    pub endpoint: String,
    /// Client id of a user-assigned managed identity.
    #[serde(deserialize_with = "yaml::nullable")]
    pub user_assigned_id: String,
    /// Generic retry count (see the module documentation).
    #[serde(deserialize_with = "yaml::nullable")]
    pub max_retries: i64,
    /// Download retries.
    #[serde(deserialize_with = "yaml::nullable")]
    pub reader_config: ReaderConfig,
    /// Request retries and timeouts.
    #[serde(deserialize_with = "yaml::nullable")]
    pub pipeline_config: PipelineConfig,
    /// HTTP transport.
    #[serde(deserialize_with = "yaml::nullable")]
    pub http_config: HttpConfig,
    /// Deprecated, no effect.
    #[serde(deserialize_with = "yaml::nullable")]
    pub msi_resource: String,
}

impl Default for AzureConfig {
    /// Thanos' `azure.DefaultConfig`.
    fn default() -> Self {
        Self {
            az_tenant_id: String::new(),
            client_id: String::new(),
            client_secret: Secret::default(),
            storage_account: String::new(),
            storage_account_key: Secret::default(),
            storage_connection_string: Secret::default(),
            storage_create_container: true,
            container: String::new(),
            endpoint: DEFAULT_ENDPOINT.to_owned(),
            user_assigned_id: String::new(),
            max_retries: 0,
            reader_config: ReaderConfig::default(),
            pipeline_config: PipelineConfig::default(),
            http_config: HttpConfig::default(),
            msi_resource: String::new(),
        }
    }
}

/// `reader_config`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a mapping (reader_config)")]
pub struct ReaderConfig {
    /// Accepted, no effect (must not be negative).
    #[serde(deserialize_with = "yaml::nullable")]
    pub max_retry_requests: i64,
}

/// `pipeline_config`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a mapping (pipeline_config)")]
pub struct PipelineConfig {
    /// Retries per request; 0 = 3 (must not be negative).
    #[serde(deserialize_with = "yaml::nullable")]
    pub max_tries: i32,
    /// Bound of each attempt; 0 = none.
    #[serde(deserialize_with = "yaml::duration")]
    pub try_timeout: Duration,
    /// First backoff; 0 = 4 s.
    #[serde(deserialize_with = "yaml::duration")]
    pub retry_delay: Duration,
    /// Backoff cap; 0 = 60 s.
    #[serde(deserialize_with = "yaml::duration")]
    pub max_retry_delay: Duration,
}

impl std::fmt::Debug for PipelineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineConfig")
            .field("max_tries", &self.max_tries)
            .field("try_timeout", &yaml::format_duration(self.try_timeout))
            .field("retry_delay", &yaml::format_duration(self.retry_delay))
            .field("max_retry_delay", &yaml::format_duration(self.max_retry_delay))
            .finish()
    }
}

impl AzureConfig {
    /// Thanos' `parseConfig` post-processing, then parse-time checks.
    pub(crate) fn prepare(&mut self) -> Result<(), ConfigError> {
        if self.max_retries > 0 {
            if self.pipeline_config.max_tries == 0 {
                self.pipeline_config.max_tries = i32::try_from(self.max_retries).map_err(|_| {
                    invalid(format!("max_retries: {} is too large for pipeline_config.max_tries", self.max_retries))
                })?;
            }
            if self.reader_config.max_retry_requests == 0 {
                self.reader_config.max_retry_requests = self.max_retries;
            }
        }
        if !self.storage_connection_string.is_empty() {
            return Err(ConfigError::Unsupported {
                provider: PROVIDER,
                key: "storage_connection_string".to_owned(),
                value: "a non-empty value".to_owned(),
                reason: "use storage_account with storage_account_key, or Azure AD credentials, instead".to_owned(),
            });
        }
        if self.endpoint.contains("://") || self.endpoint.contains('/') {
            return Err(invalid(format!(
                "endpoint: {:?}: must be the storage endpoint suffix such as blob.core.windows.net, without scheme or path",
                self.endpoint
            )));
        }
        self.http_config.check(PROVIDER)
    }

    /// Thanos' `validate()`: every problem, joined with ", ".
    fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if !self.user_assigned_id.is_empty() && !self.storage_account_key.is_empty() {
            problems.push("user_assigned_id cannot be set when using storage_account_key authentication");
        }
        if !self.user_assigned_id.is_empty() && !self.storage_connection_string.is_empty() {
            problems.push("user_assigned_id cannot be set when using storage_connection_string authentication");
        }
        if !self.user_assigned_id.is_empty() && !self.client_id.is_empty() {
            problems.push("user_assigned_id cannot be set when using client_id authentication");
        }
        let ad_keys = [!self.az_tenant_id.is_empty(), !self.client_secret.is_empty(), !self.client_id.is_empty()];
        if ad_keys.iter().any(|set| *set) && !ad_keys.iter().all(|set| *set) {
            problems.push("az_tenant_id, client_id, and client_secret must be set together");
        }
        if !self.storage_account_key.is_empty() && !self.storage_connection_string.is_empty() {
            problems.push("storage_account_key and storage_connection_string cannot both be set");
        }
        if self.storage_account.is_empty() {
            problems.push("storage_account_name is required but not configured");
        }
        if self.container.is_empty() {
            problems.push("no container specified");
        }
        if self.pipeline_config.max_tries < 0 {
            problems.push("The value of max_tries must be greater than or equal to 0 in the config file");
        }
        if self.reader_config.max_retry_requests < 0 {
            problems.push("The value of max_retry_requests must be greater than or equal to 0 in the config file");
        }
        if problems.is_empty() { Ok(()) } else { Err(invalid(problems.join(", "))) }
    }

    /// `https://<storage_account>.<endpoint>`.
    pub fn account_url(&self) -> String {
        let suffix = if self.endpoint.is_empty() { DEFAULT_ENDPOINT } else { &self.endpoint };
        format!("https://{}.{suffix}", self.storage_account)
    }

    /// The object_store retry policy (the Azure SDK's semantics).
    fn retry_config(&self) -> RetryConfig {
        let pipeline = &self.pipeline_config;
        let or = |value: Duration, default: Duration| {
            if value.is_zero() { default } else { value }
        };
        RetryConfig {
            backoff: BackoffConfig {
                init_backoff: or(pipeline.retry_delay, SDK_RETRY_DELAY),
                max_backoff: or(pipeline.max_retry_delay, SDK_MAX_RETRY_DELAY),
                base: 2.0,
            },
            max_retries: usize::try_from(pipeline.max_tries).ok().filter(|tries| *tries > 0).unwrap_or(SDK_MAX_RETRIES),
            ..RetryConfig::default()
        }
    }

    /// Validates and builds the store (no network I/O).
    pub(crate) fn build(&self) -> Result<BuiltBucket, ConfigError> {
        self.validate()?;
        if !self.msi_resource.is_empty() {
            tracing::warn!(
                "objstore config: the AZURE field msi_resource has been deprecated and should no longer be set; it is ignored"
            );
        }
        let account_url = self.account_url();
        let options = self.http_config.client_options(PROVIDER, Some(self.pipeline_config.try_timeout))?;
        let mut builder = MicrosoftAzureBuilder::new()
            .with_account(&self.storage_account)
            .with_container_name(&self.container)
            .with_endpoint(account_url.clone())
            .with_client_options(options)
            .with_retry(self.retry_config());
        builder = if !self.storage_account_key.is_empty() {
            builder.with_access_key(self.storage_account_key.expose()).with_credential_type("access_key")
        } else if !self.client_secret.is_empty() {
            builder
                .with_client_secret_authorization(&self.client_id, self.client_secret.expose(), &self.az_tenant_id)
                .with_credential_type("client_secret")
        } else if !self.user_assigned_id.is_empty() {
            with_msi_endpoint(builder).with_client_id(&self.user_assigned_id).with_credential_type("managed_identity")
        } else {
            with_environment_credentials(builder)
        };
        let store = builder.build().map_err(|source| ConfigError::Build { provider: PROVIDER, source })?;
        Ok(BuiltBucket {
            store: Arc::new(store),
            name: self.container.clone(),
            endpoint: account_url,
            multipart_part_size: Some(BLOCK_SIZE),
            attributes: object_store::Attributes::new(),
        })
    }
}

/// A non-empty environment variable.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// The managed identity endpoint of App Service and similar hosts, if any.
fn with_msi_endpoint(builder: MicrosoftAzureBuilder) -> MicrosoftAzureBuilder {
    match env("IDENTITY_ENDPOINT") {
        Some(endpoint) => builder.with_msi_endpoint(endpoint),
        None => builder,
    }
}

/// The Azure SDK's environment credentials (and only those).
fn with_environment_credentials(mut builder: MicrosoftAzureBuilder) -> MicrosoftAzureBuilder {
    if let Some(client_id) = env("AZURE_CLIENT_ID") {
        builder = builder.with_client_id(client_id);
    }
    if let Some(tenant_id) = env("AZURE_TENANT_ID") {
        builder = builder.with_tenant_id(tenant_id);
    }
    if let Some(client_secret) = env("AZURE_CLIENT_SECRET") {
        builder = builder.with_client_secret(client_secret);
    }
    if let Some(token_file) = env("AZURE_FEDERATED_TOKEN_FILE") {
        builder = builder.with_federated_token_file(token_file);
    }
    if let Some(authority_host) = env("AZURE_AUTHORITY_HOST") {
        builder = builder.with_authority_host(authority_host);
    }
    with_msi_endpoint(builder).with_credential_type("auto")
}

fn invalid(message: String) -> ConfigError {
    ConfigError::Invalid { provider: PROVIDER, message }
}

#[cfg(test)]
mod tests {
    use super::super::{Provider, parse};
    use super::*;

    fn azure(config: &str) -> Result<AzureConfig, ConfigError> {
        parse(&format!("type: AZURE\nconfig:\n{config}")).map(|c| match c.provider {
            Provider::Azure(azure) => azure,
            other => panic!("not AZURE: {other:?}"),
        })
    }

    /// A valid (base64) fake shared key.
    const KEY: &str = "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5";

    /// Thanos README's AZURE listing.
    const README: &str = r#"type: AZURE
config:
  az_tenant_id: ""
  client_id: ""
  client_secret: ""
  storage_account: ""
  storage_account_key: ""
  storage_connection_string: ""
  storage_create_container: false
  container: ""
  endpoint: ""
  user_assigned_id: ""
  max_retries: 0
  reader_config:
    max_retry_requests: 0
  pipeline_config:
    max_tries: 0
    try_timeout: 0s
    retry_delay: 0s
    max_retry_delay: 0s
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
  msi_resource: ""
prefix: ""
"#;

    #[test]
    fn readme_listing_parses() {
        let config = parse(README).unwrap();
        assert_eq!(config.kind(), "AZURE");
        let err = config.build().unwrap_err().to_string();
        assert_eq!(
            err,
            "objstore config: AZURE config: storage_account_name is required but not configured, no container specified"
        );
    }

    #[test]
    fn omitted_keys_take_thanos_defaults() {
        let c = azure("  storage_account: acct\n  container: c\n").unwrap();
        assert_eq!(c.endpoint, "blob.core.windows.net");
        assert!(c.storage_create_container);
        assert_eq!(c.http_config, HttpConfig::default());
        assert_eq!(c.pipeline_config, PipelineConfig::default());
        assert_eq!(c.account_url(), "https://acct.blob.core.windows.net");
        let retry = c.retry_config();
        assert_eq!(retry.max_retries, 3);
        assert_eq!(retry.backoff.init_backoff, Duration::from_secs(4));
        assert_eq!(retry.backoff.max_backoff, Duration::from_secs(60));
    }

    #[test]
    fn max_retries_fills_the_specific_settings() {
        let c = azure("  max_retries: 5\n").unwrap();
        assert_eq!(c.pipeline_config.max_tries, 5);
        assert_eq!(c.reader_config.max_retry_requests, 5);
        assert_eq!(c.retry_config().max_retries, 5);
        let c = azure("  max_retries: 5\n  pipeline_config:\n    max_tries: 2\n    retry_delay: 1s\n    max_retry_delay: 10s\n    try_timeout: 1m\n").unwrap();
        assert_eq!(c.pipeline_config.max_tries, 2);
        assert_eq!(c.pipeline_config.try_timeout, Duration::from_secs(60));
        let retry = c.retry_config();
        assert_eq!(retry.max_retries, 2);
        assert_eq!(retry.backoff.init_backoff, Duration::from_secs(1));
        assert_eq!(retry.backoff.max_backoff, Duration::from_secs(10));
    }

    #[test]
    fn full_config_builds() {
        let yaml = format!(
            "type: azure\nconfig:\n  storage_account: acct\n  storage_account_key: {KEY}\n  container: blocks\n  endpoint: blob.core.chinacloudapi.cn\n  storage_create_container: true\n  max_retries: 2\n  reader_config:\n    max_retry_requests: 1\n  pipeline_config:\n    max_tries: 1\n    try_timeout: 30s\n    retry_delay: 1s\n    max_retry_delay: 5s\n  http_config:\n    idle_conn_timeout: 1m\n  msi_resource: \"\"\nprefix: p\n"
        );
        let config = parse(&yaml).unwrap();
        assert!(!format!("{config:?}").contains(KEY));
        let built = config.build().unwrap();
        assert_eq!(built.name, "blocks");
        assert_eq!(built.endpoint, "https://acct.blob.core.chinacloudapi.cn");
        assert_eq!(built.multipart_part_size, Some(16 * 1024 * 1024));
    }

    #[test]
    fn other_credentials_build_without_network() {
        azure("  storage_account: a\n  container: c\n  az_tenant_id: t\n  client_id: i\n  client_secret: s\n")
            .unwrap()
            .build()
            .unwrap();
        azure("  storage_account: a\n  container: c\n  user_assigned_id: 00000000-0000-0000-0000-000000000000\n")
            .unwrap()
            .build()
            .unwrap();
        azure("  storage_account: a\n  container: c\n  endpoint: \"\"\n").unwrap().build().unwrap();
    }

    #[test]
    fn thanos_validation() {
        let err = azure(&format!(
            "  storage_account: a\n  container: c\n  storage_account_key: {KEY}\n  user_assigned_id: u\n"
        ))
        .unwrap()
        .build()
        .unwrap_err()
        .to_string();
        assert!(err.contains("user_assigned_id cannot be set when using storage_account_key authentication"), "{err}");
        let err =
            azure("  storage_account: a\n  container: c\n  client_id: i\n").unwrap().build().unwrap_err().to_string();
        assert!(err.contains("az_tenant_id, client_id, and client_secret must be set together"), "{err}");
        let err = azure("  storage_account: a\n  container: c\n  pipeline_config:\n    max_tries: -1\n")
            .unwrap()
            .build()
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_tries must be greater than or equal to 0"), "{err}");
    }

    #[test]
    fn unsupported_values_are_refused() {
        let err =
            azure("  storage_connection_string: \"DefaultEndpointsProtocol=https;AccountName=a;AccountKey=secret\"\n")
                .unwrap_err()
                .to_string();
        assert!(
            err.starts_with("objstore config: AZURE config: storage_connection_string: ")
                && err.contains("not supported by ringest")
                && !err.contains("secret"),
            "{err}"
        );
        let err = azure("  http_config:\n    tls_config:\n      cert_file: c\n").unwrap_err().to_string();
        assert!(err.contains("http_config.tls_config.cert_file"), "{err}");
        let err = azure("  endpoint: https://acct.blob.core.windows.net\n").unwrap_err().to_string();
        assert!(err.contains("endpoint") && err.contains("without scheme"), "{err}");
    }
}
