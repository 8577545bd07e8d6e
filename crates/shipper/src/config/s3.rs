//! `type: S3` — Thanos' `s3.Config` (minio-go based) mapped onto object_store's
//! [`AmazonS3Builder`].
//!
//! Implemented keys:
//!
//! | key | effect |
//! |---|---|
//! | `bucket` | required ("no s3 bucket in config file") |
//! | `endpoint` | required, `host[:port]` without scheme; `https://` unless `insecure: true` |
//! | `region` | as given; empty = the region in an AWS endpoint (`s3.eu-west-1.amazonaws.com`), else `us-east-1` (minio would ask the bucket's location instead) |
//! | `insecure` | plain HTTP |
//! | `bucket_lookup_type` | `auto` (default: virtual-hosted for AWS, Google and Aliyun endpoints unless an HTTPS bucket name has a dot, path-style otherwise, as minio), `virtual-hosted`, `path` |
//! | `access_key`, `secret_key`, `session_token` | static credentials (both keys or neither, as Thanos) |
//! | `aws_sdk_auth` | use the environment / web identity / container / instance-metadata chain |
//! | `put_user_metadata` | attributes of every upload: plain keys and `X-Amz-Meta-*` become user metadata, `X-Amz-Storage-Class` the storage class, `Content-Type`, `Content-Encoding`, `Content-Disposition`, `Content-Language`, `Cache-Control` those headers; other `X-Amz-*` headers and `Expires` are refused |
//! | `part_size` | multipart part size (default 64 MiB; 0 = minio's automatic 128 MiB; 5 MiB to 5 GiB) |
//! | `disable_multipart` | upload every object in one request |
//! | `sse_config.type` | `SSE-S3` (AES256), `SSE-KMS` (`kms_key_id` required), `SSE-C` (`encryption_key` = path of a file holding the 32-byte key) |
//! | `max_retries` | total attempts, as minio counts them: `N` > 0 = N − 1 retries; 0 = minio's default of 10 attempts; retries stop after 30 s |
//! | `http_config` | see [`super::http`] |
//!
//! Credentials: with `access_key` set, only the static keys are used. Otherwise (or with
//! `aws_sdk_auth: true`) the chain Thanos uses is followed as far as object_store can:
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (or minio's `AWS_ACCESS_KEY`/`AWS_SECRET_KEY`) and
//! `AWS_SESSION_TOKEN`, web identity (`AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_ROLE_ARN`,
//! `AWS_ROLE_SESSION_NAME`, `AWS_ENDPOINT_URL_STS`), ECS/EKS container credentials, then the EC2
//! instance metadata service (IMDSv2, falling back to v1 like minio). Only these
//! credential variables are taken from the environment: other `AWS_*` variables (endpoint,
//! region, encryption, ...) cannot override the configuration file. `~/.aws/credentials` and
//! `AWS_PROFILE` are not read.
//!
//! Accepted only at their default (any other value is refused at start-up):
//!
//! * `signature_version2: false` — object_store signs with Signature Version 4 only.
//! * `trace.enable: false` — there is no request tracing.
//! * `sts_endpoint: ""` — use `AWS_ENDPOINT_URL_STS` for web identity instead.
//! * `sse_config.kms_encryption_context: {}` with `SSE-KMS` — object_store sends no encryption
//!   context (AWS then uses its default context).
//!
//! Accepted, no effect:
//!
//! * `disable_dualstack` — the endpoint is used exactly as configured; minio's automatic
//!   dual-stack rewriting of AWS endpoints does not exist here.
//! * `list_objects_version` (`""`, `v1`, `v2`; anything else is refused as by Thanos) —
//!   object_store lists with ListObjectsV2 only.
//! * `send_content_md5` — object_store sends no Content-MD5; the payload is signed (SigV4
//!   SHA-256) instead.
//! * `http_config.max_idle_conns`, `max_conns_per_host`, `expect_continue_timeout`,
//!   `disable_compression` — see [`super::http`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::{Attribute, Attributes, BackoffConfig, RetryConfig};
use serde::Deserialize;
use serde::de::Deserializer;

use super::de as yaml;
use super::http::HttpConfig;
use super::{BuiltBucket, ConfigError, Secret, retries_from_attempts};

/// The provider name used in messages.
pub const PROVIDER: &str = "S3";

/// Thanos' default `part_size`: 64 MiB.
pub const DEFAULT_PART_SIZE: u64 = 64 * 1024 * 1024;

/// The part size minio picks when `part_size` is 0.
const MINIO_AUTO_PART_SIZE: u64 = 128 * 1024 * 1024;

/// S3's smallest part (all but the last).
const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// S3's largest part.
const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// minio-go's default number of attempts (`MaxRetry`).
const MINIO_DEFAULT_ATTEMPTS: i64 = 10;

/// How long object_store keeps retrying one request.
const RETRY_TIMEOUT: Duration = Duration::from_secs(30);

/// SSE type names, as Thanos spells them (case-sensitive).
const SSE_S3: &str = "SSE-S3";
const SSE_KMS: &str = "SSE-KMS";
const SSE_C: &str = "SSE-C";

/// `type: S3` configuration (Thanos' `s3.Config`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a mapping of S3 settings")]
pub struct S3Config {
    /// Bucket name (required).
    #[serde(deserialize_with = "yaml::nullable")]
    pub bucket: String,
    /// `host[:port]` of the S3 API (required).
    #[serde(deserialize_with = "yaml::nullable")]
    pub endpoint: String,
    /// Signing region; empty = derived from the endpoint.
    #[serde(deserialize_with = "yaml::nullable")]
    pub region: String,
    /// Accepted, no effect.
    #[serde(deserialize_with = "yaml::boolean")]
    pub disable_dualstack: bool,
    /// Use the AWS credential chain.
    #[serde(deserialize_with = "yaml::boolean")]
    pub aws_sdk_auth: bool,
    /// Static access key id.
    #[serde(deserialize_with = "yaml::nullable")]
    pub access_key: String,
    /// Plain HTTP.
    #[serde(deserialize_with = "yaml::boolean")]
    pub insecure: bool,
    /// Only `false`.
    #[serde(deserialize_with = "yaml::boolean")]
    pub signature_version2: bool,
    /// Static secret access key.
    #[serde(deserialize_with = "yaml::nullable")]
    pub secret_key: Secret,
    /// Static session token.
    #[serde(deserialize_with = "yaml::nullable")]
    pub session_token: Secret,
    /// Headers / metadata for every upload.
    #[serde(deserialize_with = "yaml::nullable")]
    pub put_user_metadata: BTreeMap<String, String>,
    /// HTTP transport.
    #[serde(deserialize_with = "yaml::nullable")]
    pub http_config: HttpConfig,
    /// Only `enable: false`.
    #[serde(deserialize_with = "yaml::nullable")]
    pub trace: TraceConfig,
    /// `""`, `v1` or `v2`; no effect.
    #[serde(deserialize_with = "yaml::nullable")]
    pub list_objects_version: String,
    /// Virtual-hosted or path-style requests.
    #[serde(deserialize_with = "yaml::nullable")]
    pub bucket_lookup_type: BucketLookupType,
    /// Accepted, no effect.
    #[serde(deserialize_with = "yaml::boolean")]
    pub send_content_md5: bool,
    /// Never use multipart uploads.
    #[serde(deserialize_with = "yaml::boolean")]
    pub disable_multipart: bool,
    /// Multipart part size in bytes.
    #[serde(deserialize_with = "yaml::nullable")]
    pub part_size: u64,
    /// Server-side encryption.
    #[serde(deserialize_with = "yaml::nullable")]
    pub sse_config: SseConfig,
    /// Only empty.
    #[serde(deserialize_with = "yaml::nullable")]
    pub sts_endpoint: String,
    /// Total attempts per request; 0 = 10.
    #[serde(deserialize_with = "yaml::nullable")]
    pub max_retries: i64,
}

impl Default for S3Config {
    /// Thanos' `s3.DefaultConfig`.
    fn default() -> Self {
        Self {
            bucket: String::new(),
            endpoint: String::new(),
            region: String::new(),
            disable_dualstack: false,
            aws_sdk_auth: false,
            access_key: String::new(),
            insecure: false,
            signature_version2: false,
            secret_key: Secret::default(),
            session_token: Secret::default(),
            put_user_metadata: BTreeMap::new(),
            http_config: HttpConfig::default(),
            trace: TraceConfig::default(),
            list_objects_version: String::new(),
            bucket_lookup_type: BucketLookupType::Auto,
            send_content_md5: true,
            disable_multipart: false,
            part_size: DEFAULT_PART_SIZE,
            sse_config: SseConfig::default(),
            sts_endpoint: String::new(),
            max_retries: 0,
        }
    }
}

/// `trace`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a mapping (trace)")]
pub struct TraceConfig {
    /// Only `false`.
    #[serde(deserialize_with = "yaml::boolean")]
    pub enable: bool,
}

/// `sse_config`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a mapping (sse_config)")]
pub struct SseConfig {
    /// `""`, `SSE-S3`, `SSE-KMS` or `SSE-C`.
    #[serde(rename = "type", deserialize_with = "yaml::nullable")]
    pub kind: String,
    /// KMS key for `SSE-KMS`.
    #[serde(deserialize_with = "yaml::nullable")]
    pub kms_key_id: String,
    /// Only empty with `SSE-KMS`.
    #[serde(deserialize_with = "yaml::nullable")]
    pub kms_encryption_context: BTreeMap<String, String>,
    /// Path of the file holding the 32-byte `SSE-C` key.
    #[serde(deserialize_with = "yaml::nullable")]
    pub encryption_key: String,
}

/// `bucket_lookup_type`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BucketLookupType {
    /// Virtual-hosted for AWS (and Google, Aliyun) endpoints, path-style otherwise.
    #[default]
    Auto,
    /// `https://<bucket>.<endpoint>/<key>`.
    VirtualHosted,
    /// `https://<endpoint>/<bucket>/<key>`.
    Path,
}

impl<'de> Deserialize<'de> for BucketLookupType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Thanos' message for other words.
        let word = yaml::word(deserializer, &["auto", "virtual-hosted", "path"], "unsupported bucket lookup type")?;
        Ok(match word {
            Some("virtual-hosted") => Self::VirtualHosted,
            Some("path") => Self::Path,
            _ => Self::Auto,
        })
    }
}

/// A validated `endpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint<'a> {
    /// As configured: `host[:port]`.
    authority: &'a str,
    /// The host alone, without brackets for IPv6.
    host: &'a str,
}

impl<'a> Endpoint<'a> {
    fn parse(endpoint: &'a str) -> Result<Self, String> {
        if endpoint.contains("://") {
            return Err(format!(
                "endpoint: {endpoint:?}: endpoint must be host[:port] without scheme; use insecure: true for http"
            ));
        }
        let invalid = || format!("endpoint: {endpoint:?}: endpoint must be host[:port]");
        if endpoint.chars().any(|c| c.is_whitespace() || c.is_control() || "/?#@\\".contains(c)) {
            return Err(invalid());
        }
        let (host, port) = if let Some(rest) = endpoint.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(invalid)?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':').ok_or_else(invalid)?)),
            }
        } else {
            match endpoint.split_once(':') {
                None => (endpoint, None),
                Some((host, port)) => (host, Some(port)),
            }
        };
        if host.is_empty() {
            return Err(invalid());
        }
        if let Some(port) = port
            && (port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) || port.parse::<u16>().is_err())
        {
            return Err(invalid());
        }
        Ok(Self { authority: endpoint, host })
    }

    fn host_lower(&self) -> String {
        self.host.to_ascii_lowercase()
    }

    /// An AWS S3 endpoint (`*.amazonaws.com`, China `*.amazonaws.com.cn`).
    fn is_aws(&self) -> bool {
        let host = self.host_lower();
        host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn")
    }

    /// Endpoints for which minio's `auto` lookup picks virtual-hosted style.
    fn prefers_virtual_hosted(&self) -> bool {
        let host = self.host_lower();
        self.is_aws() || host == "storage.googleapis.com" || host.ends_with(".aliyuncs.com")
    }

    /// The region named by an AWS endpoint: `s3.eu-west-1.amazonaws.com`,
    /// `s3-eu-west-1.amazonaws.com`, `s3.dualstack.eu-west-1.amazonaws.com`,
    /// `s3.cn-north-1.amazonaws.com.cn`, ...
    fn aws_region(&self) -> Option<String> {
        let host = self.host_lower();
        let labels = host.strip_suffix(".amazonaws.com.cn").or_else(|| host.strip_suffix(".amazonaws.com"))?;
        labels
            .split('.')
            .rev()
            .map(|label| label.strip_prefix("s3-fips-").or_else(|| label.strip_prefix("s3-")).unwrap_or(label))
            .find(|label| is_aws_region(label))
            .map(str::to_owned)
    }
}

/// `us-east-1`, `us-gov-west-1`, `ap-southeast-2`, `cn-north-1`, ...
fn is_aws_region(label: &str) -> bool {
    let parts: Vec<&str> = label.split('-').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return false;
    };
    first.len() == 2
        && first.chars().all(|c| c.is_ascii_lowercase())
        && !middle.is_empty()
        && middle.iter().all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_lowercase()))
        && !last.is_empty()
        && last.chars().all(|c| c.is_ascii_digit())
}

/// Where requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// `http` or `https`.
    scheme: &'static str,
    /// The URL object_store gets (includes the bucket for virtual-hosted style).
    url: String,
    /// `<scheme>://<endpoint>`, for messages.
    display: String,
    virtual_hosted: bool,
    region: String,
}

impl S3Config {
    /// Parse-time checks: values ringest cannot honour, enumerations, sizes.
    pub(crate) fn prepare(&mut self) -> Result<(), ConfigError> {
        if !self.endpoint.is_empty() {
            Endpoint::parse(&self.endpoint).map_err(invalid)?;
        }
        if self.signature_version2 {
            return Err(unsupported(
                "signature_version2",
                "true",
                "object_store signs requests with AWS Signature Version 4 only",
            ));
        }
        if self.trace.enable {
            return Err(unsupported("trace.enable", "true", "ringest cannot trace S3 requests"));
        }
        if !self.sts_endpoint.is_empty() {
            return Err(unsupported(
                "sts_endpoint",
                &format!("{:?}", self.sts_endpoint),
                "set the AWS_ENDPOINT_URL_STS environment variable for web identity credentials instead",
            ));
        }
        if !matches!(self.list_objects_version.as_str(), "" | "v1" | "v2") {
            return Err(invalid(format!(
                "list_objects_version: unsupported version {:?} was provided; supported values are v1, v2",
                self.list_objects_version
            )));
        }
        match self.sse_config.kind.as_str() {
            "" | SSE_S3 | SSE_C => {}
            SSE_KMS => {
                if !self.sse_config.kms_encryption_context.is_empty() {
                    return Err(unsupported(
                        "sse_config.kms_encryption_context",
                        "a non-empty map",
                        "object_store cannot send an SSE-KMS encryption context; leave it empty to use AWS' default context",
                    ));
                }
            }
            other => {
                return Err(invalid(format!(
                    "sse_config.type: unsupported type {other:?} was provided; supported types are SSE-S3, SSE-KMS, SSE-C"
                )));
            }
        }
        if !self.disable_multipart && self.part_size != 0 {
            if self.part_size < MIN_PART_SIZE {
                return Err(invalid(format!(
                    "part_size: {} is below S3's minimum part size of 5 MiB ({MIN_PART_SIZE}); set disable_multipart: true to upload objects in one request",
                    self.part_size
                )));
            }
            if self.part_size > MAX_PART_SIZE || usize::try_from(self.part_size).is_err() {
                return Err(invalid(format!(
                    "part_size: {} is above S3's maximum part size of 5 GiB ({MAX_PART_SIZE})",
                    self.part_size
                )));
            }
        }
        self.http_config.check(PROVIDER)?;
        self.upload_attributes()?;
        Ok(())
    }

    /// Thanos' `validate()`, plus the required bucket.
    fn validate(&self) -> Result<(), ConfigError> {
        let fail = |message: &str| Err(invalid(message.to_owned()));
        if self.bucket.is_empty() {
            return fail("no s3 bucket in config file");
        }
        if self.endpoint.is_empty() {
            return fail("no s3 endpoint in config file");
        }
        if self.aws_sdk_auth && !self.access_key.is_empty() {
            return fail("aws_sdk_auth and access_key are mutually exclusive configurations");
        }
        if self.access_key.is_empty() && !self.secret_key.is_empty() {
            return fail(
                "no s3 access_key specified while secret_key is present in config file; either both should be present in config or envvars/IAM should be used.",
            );
        }
        if !self.access_key.is_empty() && self.secret_key.is_empty() {
            return fail(
                "no s3 secret_key specified while access_key is present in config file; either both should be present in config or envvars/IAM should be used.",
            );
        }
        if self.sse_config.kind == SSE_C && self.sse_config.encryption_key.is_empty() {
            return fail("encryption_key must be set if sse_config.type is set to 'SSE-C'");
        }
        if self.sse_config.kind == SSE_KMS && self.sse_config.kms_key_id.is_empty() {
            return fail("kms_key_id must be set if sse_config.type is set to 'SSE-KMS'");
        }
        Ok(())
    }

    /// Where requests go: URL, style and region.
    fn target(&self) -> Result<Target, ConfigError> {
        let endpoint = Endpoint::parse(&self.endpoint).map_err(invalid)?;
        let scheme = if self.insecure { "http" } else { "https" };
        let virtual_hosted = match self.bucket_lookup_type {
            BucketLookupType::VirtualHosted => true,
            BucketLookupType::Path => false,
            // minio: a dotted bucket name would not match the wildcard TLS certificate.
            BucketLookupType::Auto => {
                endpoint.prefers_virtual_hosted() && (self.insecure || !self.bucket.contains('.'))
            }
        };
        let region = if !self.region.is_empty() {
            self.region.clone()
        } else {
            endpoint.aws_region().unwrap_or_else(|| "us-east-1".to_owned())
        };
        let display = format!("{scheme}://{}", endpoint.authority);
        let url =
            if virtual_hosted { format!("{scheme}://{}.{}", self.bucket, endpoint.authority) } else { display.clone() };
        Ok(Target { scheme, url, display, virtual_hosted, region })
    }

    /// The multipart part size the shipper should use.
    pub fn multipart_part_size(&self) -> Option<usize> {
        if self.disable_multipart {
            return None;
        }
        let size = if self.part_size == 0 { MINIO_AUTO_PART_SIZE } else { self.part_size };
        usize::try_from(size).ok()
    }

    /// `put_user_metadata` as upload attributes, the way minio sends them.
    pub fn upload_attributes(&self) -> Result<Attributes, ConfigError> {
        let mut attributes = Attributes::with_capacity(self.put_user_metadata.len());
        for (key, value) in &self.put_user_metadata {
            let name = format!("put_user_metadata.{key}");
            if key.is_empty() || !key.bytes().all(is_header_token_byte) {
                return Err(invalid(format!("{name}: not a valid HTTP header name")));
            }
            if value.chars().any(|c| c != '\t' && c.is_control()) {
                return Err(invalid(format!("{name}: the value holds control characters")));
            }
            let lower = key.to_ascii_lowercase();
            let attribute = match lower.as_str() {
                "x-amz-storage-class" => Attribute::StorageClass,
                "content-type" => Attribute::ContentType,
                "content-encoding" => Attribute::ContentEncoding,
                "content-disposition" => Attribute::ContentDisposition,
                "content-language" => Attribute::ContentLanguage,
                "cache-control" => Attribute::CacheControl,
                _ if lower.starts_with("x-amz-meta-") => {
                    let suffix = &key["x-amz-meta-".len()..];
                    if suffix.is_empty() {
                        return Err(invalid(format!("{name}: the user metadata name is empty")));
                    }
                    Attribute::Metadata(suffix.to_owned().into())
                }
                _ if lower.starts_with("x-amz-") || lower == "expires" => {
                    return Err(ConfigError::Unsupported {
                        provider: PROVIDER,
                        key: name,
                        value: format!("{value:?}"),
                        reason: "object_store cannot send this header; supported are user metadata, X-Amz-Storage-Class, Content-Type, Content-Encoding, Content-Disposition, Content-Language and Cache-Control".to_owned(),
                    });
                }
                _ => Attribute::Metadata(key.clone().into()),
            };
            attributes.insert(attribute, value.clone().into());
        }
        Ok(attributes)
    }

    /// The object_store retry policy.
    fn retry_config(&self) -> RetryConfig {
        RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: retries_from_attempts(self.max_retries, retries_from_attempts(MINIO_DEFAULT_ATTEMPTS, 0)),
            retry_timeout: RETRY_TIMEOUT,
        }
    }

    /// Validates and builds the store (no network I/O).
    pub(crate) fn build(&self) -> Result<BuiltBucket, ConfigError> {
        self.validate()?;
        let attributes = self.upload_attributes()?;
        let target = self.target()?;
        let options = self.http_config.client_options(PROVIDER, None)?.with_allow_http(target.scheme == "http");

        let mut builder = if self.access_key.is_empty() {
            with_environment_credentials(AmazonS3Builder::new()).with_imdsv1_fallback()
        } else {
            let builder = AmazonS3Builder::new()
                .with_access_key_id(&self.access_key)
                .with_secret_access_key(self.secret_key.expose());
            if self.session_token.is_empty() { builder } else { builder.with_token(self.session_token.expose()) }
        };
        builder = builder
            .with_bucket_name(&self.bucket)
            .with_region(&target.region)
            .with_endpoint(&target.url)
            .with_virtual_hosted_style_request(target.virtual_hosted)
            .with_client_options(options)
            .with_retry(self.retry_config());

        builder = match self.sse_config.kind.as_str() {
            SSE_S3 => {
                let key: AmazonS3ConfigKey = "aws_server_side_encryption"
                    .parse()
                    .map_err(|source| ConfigError::Build { provider: PROVIDER, source })?;
                builder.with_config(key, "AES256")
            }
            SSE_KMS => builder.with_sse_kms_encryption(&self.sse_config.kms_key_id),
            SSE_C => builder.with_ssec_encryption(read_ssec_key(&self.sse_config.encryption_key)?),
            _ => builder,
        };

        let store = builder.build().map_err(|source| ConfigError::Build { provider: PROVIDER, source })?;
        Ok(BuiltBucket {
            store: Arc::new(store),
            name: self.bucket.clone(),
            endpoint: target.display,
            multipart_part_size: self.multipart_part_size(),
            attributes,
        })
    }
}

/// Adds the credential settings of the environment (and only those) to `builder`.
fn with_environment_credentials(mut builder: AmazonS3Builder) -> AmazonS3Builder {
    let mut access_key = None;
    let mut secret_key = None;
    let mut minio_access_key = None;
    let mut minio_secret_key = None;
    for (name, value) in std::env::vars_os() {
        let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else {
            continue;
        };
        if value.is_empty() {
            continue;
        }
        match name {
            "AWS_ACCESS_KEY_ID" => access_key = Some(value.to_owned()),
            "AWS_SECRET_ACCESS_KEY" => secret_key = Some(value.to_owned()),
            "AWS_ACCESS_KEY" => minio_access_key = Some(value.to_owned()),
            "AWS_SECRET_KEY" => minio_secret_key = Some(value.to_owned()),
            _ if name.starts_with("AWS_") => {
                if let Ok(key) = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>()
                    && is_credential_key(&key)
                {
                    builder = builder.with_config(key, value);
                }
            }
            _ => {}
        }
    }
    // Like minio's EnvAWS provider: both halves or none.
    if let (Some(access_key), Some(secret_key)) = (access_key.or(minio_access_key), secret_key.or(minio_secret_key)) {
        builder = builder.with_access_key_id(access_key).with_secret_access_key(secret_key);
    }
    builder
}

/// The object_store keys that only select credentials.
fn is_credential_key(key: &AmazonS3ConfigKey) -> bool {
    matches!(
        key,
        AmazonS3ConfigKey::Token
            | AmazonS3ConfigKey::ContainerCredentialsRelativeUri
            | AmazonS3ConfigKey::ContainerCredentialsFullUri
            | AmazonS3ConfigKey::ContainerAuthorizationTokenFile
            | AmazonS3ConfigKey::WebIdentityTokenFile
            | AmazonS3ConfigKey::RoleArn
            | AmazonS3ConfigKey::RoleSessionName
            | AmazonS3ConfigKey::StsEndpoint
            | AmazonS3ConfigKey::MetadataEndpoint
    )
}

/// Reads the SSE-C key file: exactly 32 bytes, returned base64-encoded.
fn read_ssec_key(path: &str) -> Result<String, ConfigError> {
    let file_error = |message: String| ConfigError::File {
        provider: PROVIDER,
        key: "sse_config.encryption_key",
        path: path.to_owned(),
        message,
    };
    let key = std::fs::read(path).map_err(|e| file_error(format!("cannot read: {e}")))?;
    if key.len() != 32 {
        return Err(file_error(format!("an SSE-C key must be exactly 32 bytes, the file holds {}", key.len())));
    }
    Ok(BASE64.encode(key))
}

/// RFC 9110 token characters (header names).
fn is_header_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn invalid(message: String) -> ConfigError {
    ConfigError::Invalid { provider: PROVIDER, message }
}

fn unsupported(key: &str, value: &str, reason: &str) -> ConfigError {
    ConfigError::Unsupported {
        provider: PROVIDER,
        key: key.to_owned(),
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Provider, parse};
    use super::*;

    fn s3(config: &str) -> Result<S3Config, ConfigError> {
        let yaml = format!("type: S3\nconfig:\n{config}");
        parse(&yaml).map(|c| match c.provider {
            Provider::S3(s3) => s3,
            other => panic!("not S3: {other:?}"),
        })
    }

    fn s3_err(config: &str) -> String {
        match s3(config) {
            Ok(c) => panic!("parsed: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn build_err(config: &str) -> String {
        match s3(config).unwrap().build() {
            Ok(b) => panic!("built: {b:?}"),
            Err(e) => e.to_string(),
        }
    }

    const MINIMAL: &str =
        "  bucket: thanos\n  endpoint: 127.0.0.1:9\n  insecure: true\n  access_key: a\n  secret_key: s\n";

    /// Thanos README's S3 listing (every documented key at its default).
    const README: &str = r#"type: S3
config:
  bucket: ""
  endpoint: ""
  region: ""
  disable_dualstack: false
  aws_sdk_auth: false
  access_key: ""
  insecure: false
  signature_version2: false
  secret_key: ""
  session_token: ""
  put_user_metadata: {}
  http_config:
    idle_conn_timeout: 1m30s
    response_header_timeout: 2m
    insecure_skip_verify: false
    tls_handshake_timeout: 10s
    expect_continue_timeout: 1s
    max_idle_conns: 100
    max_idle_conns_per_host: 100
    max_conns_per_host: 0
    tls_config:
      ca_file: ""
      cert_file: ""
      key_file: ""
      server_name: ""
      insecure_skip_verify: false
    disable_compression: false
  trace:
    enable: false
  list_objects_version: ""
  bucket_lookup_type: auto
  send_content_md5: true
  disable_multipart: false
  part_size: 67108864
  sse_config:
    type: ""
    kms_key_id: ""
    kms_encryption_context: {}
    encryption_key: ""
  sts_endpoint: ""
  max_retries: 0
prefix: ""
"#;

    #[test]
    fn readme_listing_parses_to_the_defaults() {
        let config = parse(README).unwrap();
        assert_eq!(config.kind(), "S3");
        assert_eq!(config.prefix, "");
        let Provider::S3(s3) = config.provider else { panic!("not S3") };
        assert_eq!(s3, S3Config::default());
        // Like Thanos, the listing alone is not a usable configuration.
        let err = config_build_err(README);
        assert_eq!(err, "objstore config: S3 config: no s3 bucket in config file");
    }

    fn config_build_err(yaml: &str) -> String {
        parse(yaml).unwrap().build().unwrap_err().to_string()
    }

    #[test]
    fn omitted_keys_take_thanos_defaults() {
        let c = s3("  bucket: b\n").unwrap();
        assert_eq!(c.part_size, 64 * 1024 * 1024);
        assert!(c.send_content_md5);
        assert!(!c.disable_multipart && !c.insecure && !c.aws_sdk_auth);
        assert_eq!(c.bucket_lookup_type, BucketLookupType::Auto);
        assert_eq!(c.http_config, HttpConfig::default());
        assert_eq!(c.max_retries, 0);
        assert_eq!(c.sse_config, SseConfig::default());
        assert!(c.put_user_metadata.is_empty());
        assert_eq!(c.multipart_part_size(), Some(64 * 1024 * 1024));
        assert_eq!(c.retry_config().max_retries, 9);
        assert_eq!(c.retry_config().retry_timeout, Duration::from_secs(30));
    }

    #[test]
    fn full_config_parses() {
        let yaml = r#"type: s3
config:
  bucket: "thanos"
  endpoint: "s3.eu-west-1.amazonaws.com"
  region: "eu-west-1"
  disable_dualstack: true
  aws_sdk_auth: false
  access_key: "AKIA"
  insecure: false
  signature_version2: false
  secret_key: "secret"
  session_token: "token"
  put_user_metadata:
    X-Amz-Storage-Class: STANDARD_IA
    team: observability
  http_config:
    idle_conn_timeout: 2m
    response_header_timeout: 1m30s
    insecure_skip_verify: false
    tls_handshake_timeout: 5s
    expect_continue_timeout: 2s
    max_idle_conns: 50
    max_idle_conns_per_host: 20
    max_conns_per_host: 10
    tls_config:
      ca_file: ""
      cert_file: ""
      key_file: ""
      server_name: ""
      insecure_skip_verify: false
    disable_compression: true
  trace:
    enable: false
  list_objects_version: "v1"
  bucket_lookup_type: virtual-hosted
  send_content_md5: false
  disable_multipart: false
  part_size: 134217728
  sse_config:
    type: "SSE-KMS"
    kms_key_id: "arn:aws:kms:eu-west-1:1:key/abc"
    kms_encryption_context: {}
    encryption_key: ""
  sts_endpoint: ""
  max_retries: 3
prefix: "tenant-a/"
"#;
        let config = parse(yaml).unwrap();
        assert_eq!(config.prefix, "tenant-a");
        let Provider::S3(c) = &config.provider else { panic!("not S3") };
        assert_eq!(c.bucket, "thanos");
        assert_eq!(c.secret_key.expose(), "secret");
        assert_eq!(c.session_token.expose(), "token");
        assert_eq!(c.http_config.idle_conn_timeout, Duration::from_secs(120));
        assert_eq!(c.http_config.response_header_timeout, Duration::from_secs(90));
        assert_eq!(c.http_config.max_idle_conns_per_host, 20);
        assert!(c.http_config.disable_compression);
        assert_eq!(c.bucket_lookup_type, BucketLookupType::VirtualHosted);
        assert_eq!(c.part_size, 128 * 1024 * 1024);
        assert_eq!(c.sse_config.kind, "SSE-KMS");
        assert_eq!(c.retry_config().max_retries, 2);
        // Secrets stay out of Debug output.
        let debug = format!("{config:?}");
        assert!(!debug.contains("secret\"") && !debug.contains("\"token\""), "{debug}");

        let built = config.build().unwrap();
        assert_eq!(built.name, "thanos");
        assert_eq!(built.endpoint, "https://s3.eu-west-1.amazonaws.com");
        assert_eq!(built.multipart_part_size, Some(128 * 1024 * 1024));
        assert_eq!(built.attributes.get(&Attribute::StorageClass).map(|v| v.as_ref()), Some("STANDARD_IA"));
        assert_eq!(
            built.attributes.get(&Attribute::Metadata("team".into())).map(|v| v.as_ref()),
            Some("observability")
        );
    }

    #[test]
    fn insecure_local_endpoint_builds_without_network() {
        let c = s3(MINIMAL).unwrap();
        let built = parse(&format!("type: S3\nconfig:\n{MINIMAL}")).unwrap().build().unwrap();
        assert_eq!(built.name, "thanos");
        assert_eq!(built.endpoint, "http://127.0.0.1:9");
        assert_eq!(built.multipart_part_size, Some(64 * 1024 * 1024));
        assert!(built.attributes.is_empty());
        let target = c.target().unwrap();
        assert_eq!(target.url, "http://127.0.0.1:9");
        assert!(!target.virtual_hosted);
        assert_eq!(target.region, "us-east-1");
    }

    #[test]
    fn environment_credentials_build_without_network() {
        // No access_key: the environment / instance metadata chain, resolved lazily.
        let c = s3("  bucket: b\n  endpoint: minio:9000\n  insecure: true\n").unwrap();
        assert!(c.build().is_ok());
        let c = s3("  bucket: b\n  endpoint: s3.amazonaws.com\n  aws_sdk_auth: true\n").unwrap();
        assert!(c.build().is_ok());
    }

    #[test]
    fn required_keys_and_thanos_validation() {
        assert_eq!(build_err("  endpoint: e\n"), "objstore config: S3 config: no s3 bucket in config file");
        assert_eq!(build_err("  bucket: b\n"), "objstore config: S3 config: no s3 endpoint in config file");
        let err = build_err("  bucket: b\n  endpoint: e\n  aws_sdk_auth: true\n  access_key: a\n  secret_key: s\n");
        assert!(err.contains("aws_sdk_auth and access_key are mutually exclusive"), "{err}");
        let err = build_err("  bucket: b\n  endpoint: e\n  secret_key: s\n");
        assert!(err.contains("no s3 access_key specified while secret_key is present"), "{err}");
        let err = build_err("  bucket: b\n  endpoint: e\n  access_key: a\n");
        assert!(err.contains("no s3 secret_key specified while access_key is present"), "{err}");
        let err = build_err("  bucket: b\n  endpoint: e\n  sse_config:\n    type: SSE-C\n");
        assert!(err.contains("encryption_key must be set if sse_config.type is set to 'SSE-C'"), "{err}");
        let err = build_err("  bucket: b\n  endpoint: e\n  sse_config:\n    type: SSE-KMS\n");
        assert!(err.contains("kms_key_id must be set if sse_config.type is set to 'SSE-KMS'"), "{err}");
    }

    #[test]
    fn endpoint_must_be_host_and_port() {
        let err = s3_err("  bucket: b\n  endpoint: http://127.0.0.1:9000\n");
        assert!(err.contains("endpoint must be host[:port] without scheme; use insecure: true for http"), "{err}");
        for bad in ["minio:9000/path", "minio:port", "minio:", ":9000", "a b", "minio:99999"] {
            let err = s3_err(&format!("  bucket: b\n  endpoint: \"{bad}\"\n"));
            assert!(err.contains("endpoint"), "{bad}: {err}");
        }
        for good in ["minio", "minio:9000", "10.0.0.1:80", "[::1]:9000", "[::1]"] {
            s3(&format!("  bucket: b\n  endpoint: \"{good}\"\n")).unwrap();
        }
    }

    #[test]
    fn unsupported_values_are_refused_with_their_key() {
        let cases = [
            ("  signature_version2: true\n", "signature_version2"),
            ("  trace:\n    enable: true\n", "trace.enable"),
            ("  sts_endpoint: https://sts.example.com\n", "sts_endpoint"),
            (
                "  sse_config:\n    type: SSE-KMS\n    kms_key_id: k\n    kms_encryption_context:\n      a: b\n",
                "sse_config.kms_encryption_context",
            ),
            ("  http_config:\n    tls_config:\n      cert_file: c.pem\n", "http_config.tls_config.cert_file"),
            ("  http_config:\n    tls_config:\n      key_file: k.pem\n", "http_config.tls_config.key_file"),
            ("  http_config:\n    tls_config:\n      server_name: x\n", "http_config.tls_config.server_name"),
            ("  put_user_metadata:\n    X-Amz-Acl: private\n", "put_user_metadata.X-Amz-Acl"),
        ];
        for (config, key) in cases {
            let err = s3_err(&format!("  bucket: b\n{config}"));
            assert!(
                err.starts_with(&format!("objstore config: S3 config: {key}: "))
                    && err.contains("is not supported by ringest"),
                "{key}: {err}"
            );
        }
        // The default ("off") values are accepted.
        s3("  bucket: b\n  signature_version2: false\n  trace:\n    enable: false\n  sts_endpoint: \"\"\n").unwrap();
        // An encryption context is ignored by Thanos unless SSE-KMS is used.
        s3("  bucket: b\n  sse_config:\n    kms_encryption_context:\n      a: b\n").unwrap();
    }

    #[test]
    fn enumerations_are_checked() {
        let err = s3_err("  bucket: b\n  list_objects_version: v3\n");
        assert!(err.contains("list_objects_version") && err.contains("\"v3\""), "{err}");
        for version in ["\"\"", "v1", "v2"] {
            s3(&format!("  bucket: b\n  list_objects_version: {version}\n")).unwrap();
        }
        let err = s3_err("  bucket: b\n  sse_config:\n    type: sse-s3\n");
        assert!(err.contains("sse_config.type") && err.contains("supported types are SSE-S3, SSE-KMS, SSE-C"), "{err}");
        let err = s3_err("  bucket: b\n  bucket_lookup_type: dns\n");
        assert!(err.contains("bucket_lookup_type") && err.contains("unsupported bucket lookup type: dns"), "{err}");
    }

    #[test]
    fn part_size_limits() {
        let err = s3_err("  bucket: b\n  part_size: 1048576\n");
        assert!(err.contains("part_size") && err.contains("5 MiB"), "{err}");
        let err = s3_err("  bucket: b\n  part_size: 6000000000\n");
        assert!(err.contains("part_size") && err.contains("5 GiB"), "{err}");
        let c = s3("  bucket: b\n  part_size: 1048576\n  disable_multipart: true\n").unwrap();
        assert_eq!(c.multipart_part_size(), None);
        let c = s3("  bucket: b\n  part_size: 0\n").unwrap();
        assert_eq!(c.multipart_part_size(), Some(128 * 1024 * 1024));
        let c = s3("  bucket: b\n  part_size: 5242880\n").unwrap();
        assert_eq!(c.multipart_part_size(), Some(5 * 1024 * 1024));
    }

    #[test]
    fn regions_and_lookup_styles() {
        let target = |config: &str| s3(&format!("  bucket: thanos\n{config}")).unwrap().target().unwrap();
        let t = target("  endpoint: s3.eu-west-1.amazonaws.com\n");
        assert_eq!(t.region, "eu-west-1");
        assert!(t.virtual_hosted);
        assert_eq!(t.url, "https://thanos.s3.eu-west-1.amazonaws.com");
        assert_eq!(t.display, "https://s3.eu-west-1.amazonaws.com");

        assert_eq!(target("  endpoint: s3-us-west-2.amazonaws.com\n").region, "us-west-2");
        assert_eq!(target("  endpoint: s3.dualstack.ap-southeast-2.amazonaws.com\n").region, "ap-southeast-2");
        assert_eq!(target("  endpoint: s3.cn-north-1.amazonaws.com.cn\n").region, "cn-north-1");
        assert_eq!(target("  endpoint: s3-fips.us-gov-west-1.amazonaws.com\n").region, "us-gov-west-1");
        assert_eq!(target("  endpoint: s3.amazonaws.com\n").region, "us-east-1");
        assert_eq!(target("  endpoint: s3.amazonaws.com:443\n").region, "us-east-1");
        assert_eq!(target("  endpoint: s3.amazonaws.com\n  region: eu-central-1\n").region, "eu-central-1");

        // Non-AWS endpoints: path style, us-east-1.
        let t = target("  endpoint: minio.example.com:9000\n");
        assert!(!t.virtual_hosted);
        assert_eq!(t.url, "https://minio.example.com:9000");
        assert_eq!(t.region, "us-east-1");

        // Explicit styles.
        let t = target("  endpoint: minio.example.com\n  bucket_lookup_type: virtual-hosted\n");
        assert!(t.virtual_hosted);
        assert_eq!(t.url, "https://thanos.minio.example.com");
        let t = target("  endpoint: s3.eu-west-1.amazonaws.com\n  bucket_lookup_type: path\n");
        assert!(!t.virtual_hosted);
        assert_eq!(t.url, "https://s3.eu-west-1.amazonaws.com");

        // A dotted bucket over HTTPS stays path-style in auto mode (certificate wildcard).
        let t = s3("  bucket: my.bucket\n  endpoint: s3.eu-west-1.amazonaws.com\n").unwrap().target().unwrap();
        assert!(!t.virtual_hosted);
    }

    #[test]
    fn sse_builds() {
        s3("  bucket: b\n  endpoint: s3.amazonaws.com\n  access_key: a\n  secret_key: s\n  sse_config:\n    type: SSE-S3\n")
            .unwrap()
            .build()
            .unwrap();
        s3("  bucket: b\n  endpoint: s3.amazonaws.com\n  access_key: a\n  secret_key: s\n  sse_config:\n    type: SSE-KMS\n    kms_key_id: key\n")
            .unwrap()
            .build()
            .unwrap();

        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.key");
        std::fs::write(&good, [7u8; 32]).unwrap();
        let bad = dir.path().join("bad.key");
        std::fs::write(&bad, [7u8; 16]).unwrap();
        let sse_c = |path: &std::path::Path| {
            s3(&format!(
                "  bucket: b\n  endpoint: s3.amazonaws.com\n  access_key: a\n  secret_key: s\n  sse_config:\n    type: SSE-C\n    encryption_key: {}\n",
                path.display()
            ))
            .unwrap()
            .build()
        };
        sse_c(&good).unwrap();
        let err = sse_c(&bad).unwrap_err().to_string();
        assert!(
            err.contains("sse_config.encryption_key") && err.contains("32 bytes") && err.contains("bad.key"),
            "{err}"
        );
        let err = sse_c(&dir.path().join("missing.key")).unwrap_err().to_string();
        assert!(err.contains("sse_config.encryption_key") && err.contains("missing.key"), "{err}");
    }

    #[test]
    fn user_metadata_maps_like_minio() {
        let c = s3("  bucket: b\n  put_user_metadata:\n    X-Amz-Meta-Owner: me\n    Content-Type: application/octet-stream\n    Cache-Control: no-cache\n    plain: 1\n    x-amz-storage-class: GLACIER_IR\n").unwrap();
        let attributes = c.upload_attributes().unwrap();
        let get = |a: Attribute| attributes.get(&a).map(|v| v.as_ref().to_owned());
        assert_eq!(get(Attribute::Metadata("Owner".into())).as_deref(), Some("me"));
        assert_eq!(get(Attribute::Metadata("plain".into())).as_deref(), Some("1"));
        assert_eq!(get(Attribute::ContentType).as_deref(), Some("application/octet-stream"));
        assert_eq!(get(Attribute::CacheControl).as_deref(), Some("no-cache"));
        assert_eq!(get(Attribute::StorageClass).as_deref(), Some("GLACIER_IR"));
        assert_eq!(attributes.len(), 5);

        let err = s3_err("  bucket: b\n  put_user_metadata:\n    \"bad key\": x\n");
        assert!(err.contains("put_user_metadata.bad key"), "{err}");
        let err = s3_err("  bucket: b\n  put_user_metadata:\n    Expires: tomorrow\n");
        assert!(err.contains("put_user_metadata.Expires") && err.contains("not supported by ringest"), "{err}");
    }

    #[test]
    fn empty_values_are_zero_values() {
        let c = s3("  bucket: b\n  part_size:\n  send_content_md5:\n  http_config:\n  region: ~\n").unwrap();
        assert_eq!(c.part_size, 0);
        assert!(!c.send_content_md5);
        assert_eq!(c.http_config, HttpConfig::default());
        assert_eq!(c.region, "");
    }

    #[test]
    fn endpoint_parser() {
        let e = Endpoint::parse("[::1]:9000").unwrap();
        assert_eq!(e.host, "::1");
        assert!(!e.is_aws());
        assert!(is_aws_region("us-gov-west-1"));
        assert!(is_aws_region("eu-west-1"));
        assert!(!is_aws_region("dualstack"));
        assert!(!is_aws_region("external-1"));
        assert!(!is_aws_region("s3"));
    }
}
