//! Thanos' object storage configuration (`--objstore.config-file` / `--objstore.config`),
//! parsed as strictly as Thanos does (`client.NewBucket`, `yaml.UnmarshalStrict`) and turned into
//! an `object_store` store.
//!
//! ```yaml
//! type: S3            # S3, GCS, AZURE or FILESYSTEM, any case
//! config:             # provider specific, see the provider modules
//!   bucket: thanos
//!   endpoint: 127.0.0.1:9000
//!   insecure: true
//! prefix: tenant-a    # optional
//! ```
//!
//! * Every key Thanos documents is accepted. Keys ringest cannot honour are accepted only at
//!   their default ("off") value; any other value is refused at start-up with the key's name
//!   ([`ConfigError::Unsupported`]). Pure tuning keys without an object_store equivalent are
//!   accepted and have no effect; each provider module lists them with the reason.
//! * Unknown keys are refused at every level, naming the key and the section
//!   (`objstore config: S3 config: http_config: unknown field ...`). Unlike Thanos, this includes
//!   the FILESYSTEM section, which Thanos reads leniently.
//! * Omitted keys take Thanos' defaults; a key with an empty value takes the Go zero value, as
//!   yaml.v2 does (see [`de`]).
//! * The other Thanos providers (SWIFT, COS, ALIYUNOSS, BOS, OCI, OBS) are refused as not
//!   supported by ringest; an unknown type gets Thanos' own message.
//!
//! [`parse`] does what Thanos' `parseConfig` does plus every check that needs no file and no
//! required key (unsupported values, enumerations, part size), so that the key listings in
//! Thanos' README parse. [`BucketConfig::build`] applies Thanos' validation (required keys,
//! mutually exclusive credentials), reads the files the configuration names (CA bundle, SSE-C
//! key) and builds the store; it does no network I/O.
//!
//! `prefix` is normalised as Thanos' `NewPrefixedBucket` does: leading and trailing `/` are
//! removed, and a prefix made only of `/` is no prefix. The built store is not prefixed; the
//! caller applies [`BucketConfig::prefix`].

pub mod azure;
pub mod de;
pub mod filesystem;
pub mod gcs;
pub mod http;
pub mod s3;

use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::IgnoredAny;

pub use de::Secret;

/// A parsed bucket configuration.
#[derive(Debug, Clone)]
pub struct BucketConfig {
    /// The provider and its settings.
    pub provider: Provider,
    /// The prefix under which all objects live, without leading or trailing `/`; empty for none.
    pub prefix: String,
}

/// The provider section of a bucket configuration.
#[derive(Debug, Clone)]
pub enum Provider {
    /// `type: S3`.
    S3(s3::S3Config),
    /// `type: GCS`.
    Gcs(gcs::GcsConfig),
    /// `type: AZURE`.
    Azure(azure::AzureConfig),
    /// `type: FILESYSTEM`.
    Filesystem(filesystem::FilesystemConfig),
}

/// Errors of parsing or building a bucket configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The document holds nothing (only whitespace or comments).
    #[error("bucket configuration is empty")]
    Empty,
    /// The document is not valid YAML or its top level is wrong (unknown key, wrong type).
    #[error("objstore config: {0}")]
    Parse(String),
    /// The top-level `type` key is missing or empty.
    #[error("objstore config: missing bucket type: set `type` to one of S3, GCS, AZURE, FILESYSTEM")]
    MissingType,
    /// A Thanos provider that ringest does not implement.
    #[error("bucket type {0} is not supported by ringest (supported: S3, GCS, AZURE, FILESYSTEM)")]
    UnsupportedType(String),
    /// A type Thanos does not know either (Thanos' message).
    #[error("bucket with type {0} is not supported")]
    UnknownType(String),
    /// A provider section is invalid: unknown key, wrong type, bad value, missing required key.
    #[error("objstore config: {provider} config: {message}")]
    Invalid {
        /// `S3`, `GCS`, `AZURE` or `FILESYSTEM`.
        provider: &'static str,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A documented Thanos key is set to a value ringest cannot honour.
    #[error("objstore config: {provider} config: {key}: {value} is not supported by ringest: {reason}")]
    Unsupported {
        /// `S3`, `GCS`, `AZURE` or `FILESYSTEM`.
        provider: &'static str,
        /// The key, dotted for nested sections (`http_config.tls_config.cert_file`).
        key: String,
        /// The refused value as written, or a description of it for secrets.
        value: String,
        /// Why, and what to do instead.
        reason: String,
    },
    /// A file or directory the configuration names cannot be used.
    #[error("objstore config: {provider} config: {key}: {path}: {message}")]
    File {
        /// `S3`, `GCS`, `AZURE` or `FILESYSTEM`.
        provider: &'static str,
        /// The key naming the file.
        key: &'static str,
        /// The file as configured.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// object_store refused to build the client.
    #[error("create {provider} client: {source}")]
    Build {
        /// `S3`, `GCS`, `AZURE` or `FILESYSTEM`.
        provider: &'static str,
        /// object_store's error.
        #[source]
        source: object_store::Error,
    },
}

/// What the shipper needs to talk to the bucket.
pub struct BuiltBucket {
    /// The store, NOT prefixed: the caller applies [`BucketConfig::prefix`] itself.
    pub store: Arc<dyn object_store::ObjectStore>,
    /// Thanos' bucket name for the `bucket` metric label: S3/GCS bucket name, Azure container,
    /// `fs: <directory>` for FILESYSTEM.
    pub name: String,
    /// Human-readable endpoint for error messages (`http://127.0.0.1:9000`,
    /// `https://s3.eu-west-1.amazonaws.com`, the directory for FILESYSTEM).
    pub endpoint: String,
    /// Multipart: `None` = never; `Some(part_size)` = files larger than `part_size` are uploaded
    /// in parts of that size.
    pub multipart_part_size: Option<usize>,
    /// Attributes to attach to every upload (S3 `put_user_metadata`).
    pub attributes: object_store::Attributes,
}

impl fmt::Debug for BuiltBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuiltBucket")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .field("multipart_part_size", &self.multipart_part_size)
            .field("attributes", &self.attributes)
            .finish_non_exhaustive()
    }
}

/// The Thanos providers that ringest does not implement.
const UNSUPPORTED_TYPES: [&str; 6] = ["SWIFT", "COS", "ALIYUNOSS", "BOS", "OCI", "OBS"];

/// The top level, read first to learn the type; `config` is skipped.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with the keys type, config and prefix")]
struct Head {
    #[serde(rename = "type", default, deserialize_with = "de::nullable")]
    kind: String,
    #[serde(default)]
    #[allow(dead_code)]
    config: IgnoredAny,
    #[serde(default, deserialize_with = "de::nullable")]
    prefix: String,
}

/// The top level again, this time decoding `config` as the provider's section, so that errors
/// carry the path and line of the offending key.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with the keys type, config and prefix",
    bound = "T: Deserialize<'de> + Default"
)]
struct Typed<T> {
    #[serde(rename = "type")]
    #[allow(dead_code)]
    kind: IgnoredAny,
    #[serde(default, deserialize_with = "de::nullable")]
    config: T,
    #[serde(default)]
    #[allow(dead_code)]
    prefix: IgnoredAny,
}

/// Parses a bucket configuration (the content of `--objstore.config-file`).
///
/// Checks the syntax, every key and value type, and refuses values ringest cannot honour.
/// Required keys and Thanos' other validation rules are checked by [`BucketConfig::build`].
pub fn parse(yaml: &str) -> Result<BucketConfig, ConfigError> {
    let document: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(yaml).map_err(|e| ConfigError::Parse(format!("parsing config YAML file: {e}")))?;
    if document.is_null() {
        return Err(ConfigError::Empty);
    }
    let head: Head =
        serde_yaml_ng::from_str(yaml).map_err(|e| ConfigError::Parse(format!("parsing config YAML file: {e}")))?;
    let kind = head.kind.to_uppercase();
    let provider = match kind.as_str() {
        "S3" => {
            let mut config: s3::S3Config = section(yaml, "S3")?;
            config.prepare()?;
            Provider::S3(config)
        }
        "GCS" => {
            let mut config: gcs::GcsConfig = section(yaml, "GCS")?;
            config.prepare()?;
            Provider::Gcs(config)
        }
        "AZURE" => {
            let mut config: azure::AzureConfig = section(yaml, "AZURE")?;
            config.prepare()?;
            Provider::Azure(config)
        }
        "FILESYSTEM" => {
            let mut config: filesystem::FilesystemConfig = section(yaml, "FILESYSTEM")?;
            config.prepare()?;
            Provider::Filesystem(config)
        }
        "" => return Err(ConfigError::MissingType),
        other if UNSUPPORTED_TYPES.contains(&other) => {
            return Err(ConfigError::UnsupportedType(head.kind));
        }
        _ => return Err(ConfigError::UnknownType(head.kind)),
    };
    Ok(BucketConfig { provider, prefix: normalize_prefix(&head.prefix) })
}

/// Decodes the `config` section of `yaml` as `T`, naming the provider in errors.
fn section<T>(yaml: &str, provider: &'static str) -> Result<T, ConfigError>
where
    T: for<'de> Deserialize<'de> + Default,
{
    match serde_yaml_ng::from_str::<Typed<T>>(yaml) {
        Ok(typed) => Ok(typed.config),
        Err(e) => {
            let message = e.to_string();
            // serde_yaml_ng prefixes the path of the offending value: `config: ...` for the
            // section itself, `config.http_config: ...` below it. The provider is named already.
            let message = message
                .strip_prefix("config: ")
                .or_else(|| message.strip_prefix("config."))
                .map(str::to_owned)
                .unwrap_or(message);
            Err(ConfigError::Invalid { provider, message })
        }
    }
}

/// Thanos' `NewPrefixedBucket`: trim `/` at both ends; only slashes means no prefix.
fn normalize_prefix(prefix: &str) -> String {
    prefix.trim_matches('/').to_owned()
}

impl BucketConfig {
    /// `S3`, `GCS`, `AZURE` or `FILESYSTEM`.
    pub fn kind(&self) -> &'static str {
        match self.provider {
            Provider::S3(_) => s3::PROVIDER,
            Provider::Gcs(_) => gcs::PROVIDER,
            Provider::Azure(_) => azure::PROVIDER,
            Provider::Filesystem(_) => filesystem::PROVIDER,
        }
    }

    /// Validates the configuration as Thanos does when it creates the client (required keys,
    /// credentials), reads the files it names and builds the store. No network I/O.
    ///
    /// FILESYSTEM creates its directory if missing.
    pub fn build(&self) -> Result<BuiltBucket, ConfigError> {
        match &self.provider {
            Provider::S3(config) => config.build(),
            Provider::Gcs(config) => config.build(),
            Provider::Azure(config) => config.build(),
            Provider::Filesystem(config) => config.build(),
        }
    }
}

/// Retry settings shared by the providers: `attempts` total tries (Go clients count attempts),
/// `0` or negative meaning `default_retries`.
fn retries_from_attempts(attempts: i64, default_retries: usize) -> usize {
    if attempts > 0 { usize::try_from(attempts - 1).unwrap_or(usize::MAX) } else { default_retries }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(yaml: &str) -> String {
        match parse(yaml) {
            Ok(config) => panic!("{yaml:?} parsed: {config:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn empty_documents_are_refused_as_empty() {
        for yaml in ["", "   \n\n", "# only a comment\n", "---\n", "~\n"] {
            assert!(matches!(parse(yaml), Err(ConfigError::Empty)), "{yaml:?}: {:?}", parse(yaml));
        }
        assert_eq!(ConfigError::Empty.to_string(), "bucket configuration is empty");
    }

    #[test]
    fn type_is_case_insensitive() {
        for kind in ["S3", "s3", "\"s3\""] {
            let config = parse(&format!("type: {kind}\nconfig:\n  bucket: b\n")).unwrap();
            assert_eq!(config.kind(), "S3");
        }
        for (kind, want) in
            [("gcs", "GCS"), ("Azure", "AZURE"), ("filesystem", "FILESYSTEM"), ("FileSystem", "FILESYSTEM")]
        {
            let config = parse(&format!("type: {kind}\nconfig: {{}}\n")).unwrap();
            assert_eq!(config.kind(), want);
        }
    }

    #[test]
    fn other_thanos_types_are_not_supported_by_ringest() {
        for kind in ["SWIFT", "cos", "ALIYUNOSS", "BOS", "OCI", "obs"] {
            let err = parse_err(&format!("type: {kind}\nconfig: {{}}\n"));
            assert_eq!(
                err,
                format!("bucket type {kind} is not supported by ringest (supported: S3, GCS, AZURE, FILESYSTEM)")
            );
        }
    }

    #[test]
    fn unknown_types_get_thanos_message() {
        assert_eq!(parse_err("type: FTP\nconfig: {}\n"), "bucket with type FTP is not supported");
        assert_eq!(parse_err("type: MEMORY\n"), "bucket with type MEMORY is not supported");
        assert!(matches!(parse("config:\n  bucket: b\n"), Err(ConfigError::MissingType)));
    }

    #[test]
    fn unknown_top_level_key_is_named() {
        let err = parse_err("type: S3\nconfig: {}\nprefixx: a\n");
        assert!(err.starts_with("objstore config: ") && err.contains("unknown field `prefixx`"), "{err}");
    }

    #[test]
    fn unknown_provider_keys_name_the_section() {
        let err = parse_err("type: S3\nconfig:\n  bucket_nam: b\n");
        assert!(err.starts_with("objstore config: S3 config: unknown field `bucket_nam`"), "{err}");
        let err = parse_err("type: S3\nconfig:\n  http_config:\n    idle_timeout: 1m\n");
        assert!(err.starts_with("objstore config: S3 config: http_config: unknown field `idle_timeout`"), "{err}");
        let err = parse_err("type: s3\nconfig:\n  sse_config:\n    kind: SSE-S3\n");
        assert!(err.starts_with("objstore config: S3 config: sse_config: unknown field `kind`"), "{err}");
        let err = parse_err("type: GCS\nconfig:\n  bucket: b\n  no_auth: true\n");
        assert!(err.starts_with("objstore config: GCS config: unknown field `no_auth`"), "{err}");
        let err = parse_err("type: AZURE\nconfig:\n  pipeline_config:\n    tries: 1\n");
        assert!(err.starts_with("objstore config: AZURE config: pipeline_config: unknown field `tries`"), "{err}");
        let err = parse_err("type: FILESYSTEM\nconfig:\n  directory: /x\n  dir: /y\n");
        assert!(err.starts_with("objstore config: FILESYSTEM config: unknown field `dir`"), "{err}");
    }

    #[test]
    fn wrong_value_types_are_named() {
        let err = parse_err("type: S3\nconfig:\n  part_size: big\n");
        assert!(err.starts_with("objstore config: S3 config: part_size: invalid type"), "{err}");
        let err = parse_err("type: S3\nconfig: [1]\n");
        assert!(err.starts_with("objstore config: S3 config: "), "{err}");
        let err = parse_err("type: S3\nconfig:\n  bucket: b\n  insecure: maybe\n");
        assert!(err.contains("insecure"), "{err}");
    }

    #[test]
    fn invalid_yaml_is_refused() {
        let err = parse_err("type: S3\nconfig: {bucket: \n");
        assert!(err.starts_with("objstore config: parsing config YAML file:"), "{err}");
    }

    #[test]
    fn prefix_is_normalised_like_thanos() {
        for (prefix, want) in
            [("", ""), ("/", ""), ("///", ""), ("a", "a"), ("/a/b/", "a/b"), ("tenant-a/", "tenant-a")]
        {
            let config =
                parse(&format!("type: FILESYSTEM\nconfig:\n  directory: /tmp/x\nprefix: \"{prefix}\"\n")).unwrap();
            assert_eq!(config.prefix, want, "{prefix:?}");
        }
        let config = parse("type: FILESYSTEM\nconfig:\n  directory: /tmp/x\nprefix:\n").unwrap();
        assert_eq!(config.prefix, "");
    }

    #[test]
    fn missing_config_section_uses_defaults() {
        let config = parse("type: FILESYSTEM\n").unwrap();
        let err = config.build().unwrap_err().to_string();
        assert_eq!(err, "objstore config: FILESYSTEM config: missing directory for filesystem bucket");
    }

    #[test]
    fn built_bucket_debug_skips_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let config = parse(&format!("type: FILESYSTEM\nconfig:\n  directory: {}\n", dir.path().display())).unwrap();
        let built = config.build().unwrap();
        let debug = format!("{built:?}");
        assert!(debug.starts_with("BuiltBucket {"), "{debug}");
        assert!(debug.contains("fs: "), "{debug}");
        assert!(!debug.contains("store"), "{debug}");
    }

    #[test]
    fn retries_count_attempts() {
        assert_eq!(retries_from_attempts(0, 9), 9);
        assert_eq!(retries_from_attempts(-3, 9), 9);
        assert_eq!(retries_from_attempts(1, 9), 0);
        assert_eq!(retries_from_attempts(5, 9), 4);
    }
}
