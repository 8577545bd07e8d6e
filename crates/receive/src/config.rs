//! The `ringest` command line: `ringest receive [flags]` with Thanos' flags, and the typed
//! configuration the server runs with.

pub mod flags;
pub mod units;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgMatches, Command};

use flags::{get_all, get_bool, get_str};
use units::{go_unquote, parse_duration_ms};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `key=value` pairs (go-kit logfmt).
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// Logging settings.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `--log.level`.
    pub level: tracing::Level,
    /// `--log.format`.
    pub format: LogFormat,
    /// `--debug.name`.
    pub name: Option<String>,
}

/// Everything `ringest receive` runs with.
#[derive(Debug, Clone)]
pub struct ReceiveConfig {
    /// Logging.
    pub log: LogConfig,
    /// `--http-address`.
    pub http_address: SocketAddr,
    /// `--http-grace-period`.
    pub http_grace_period: Duration,
    /// `--grpc-address` (validated; the listener comes with replication).
    pub grpc_address: SocketAddr,
    /// `--remote-write.address`.
    pub remote_write_address: SocketAddr,
    /// `--tsdb.path`.
    pub tsdb_path: PathBuf,
    /// `--label`, sorted by name.
    pub external_labels: Vec<(String, String)>,
    /// `--receive.tenant-header`.
    pub tenant_header: String,
    /// `--receive.default-tenant-id`.
    pub default_tenant: String,
    /// `--receive.tenant-label-name`.
    pub tenant_label_name: String,
    /// `--receive.replica-header`.
    pub replica_header: String,
    /// `--tsdb.min-block-duration` in ms (the head's chunk range).
    pub min_block_duration_ms: i64,
    /// `--tsdb.max-block-duration` in ms.
    pub max_block_duration_ms: i64,
    /// `--tsdb.retention` in milliseconds (0: keep blocks forever).
    pub retention_ms: i64,
    /// `--tsdb.too-far-in-future.time-window` in ms (0: off).
    pub too_far_in_future_ms: i64,
    /// `--tsdb.wal-compression`.
    pub wal_compression: bool,
    /// `--tsdb.no-lockfile`.
    pub no_lockfile: bool,
    /// `--ringest.tsdb.wal-discard-after-gap`.
    pub wal_discard_after_gap: bool,
    /// `--objstore.config-file` / `--objstore.config`, parsed (`None`: uploads disabled).
    pub objstore: Option<ringest_shipper::BucketConfig>,
    /// `--hash-func`, `--shipper.*`.
    pub shipper: ringest_shipper::ShipperOptions,
    /// Hashring and replication (`None`: IngestorOnly, no hashring).
    pub ring: Option<RingConfig>,
    /// `--grpc-server-max-connection-age` (`None`: 0, no limit, as grpc-go).
    pub grpc_max_connection_age: Option<Duration>,
    /// `--grpc-grace-period`: how long a stopping node waits for gRPC calls in flight.
    pub grpc_grace_period: Duration,
    /// `--store.limits.request-series` and `--store.limits.request-samples` (0: no limit).
    pub store_limits: crate::store::Limits,
    /// `--ringest.write.*`: one request's bounds and the in-flight budget.
    pub write_limits: crate::admission::WriteLimits,
    /// `--ringest.http.*`: the HTTP servers' connection limits.
    pub http_limits: crate::http::serve::HttpLimits,
    /// `--ringest.grpc.*`: the gRPC server's connection limits.
    pub grpc_limits: ringest_grpc::ConnLimits,
    /// `--http.config`: the ops port's web configuration file.
    pub http_config: Option<PathBuf>,
    /// `--receive.limits-config-file` / `--receive.limits-config`.
    pub limits: Option<crate::limits::LimitsSource>,
    /// `--request.logging-config-file` / `--request.logging-config`: the gRPC calls logged.
    pub request_log: Option<crate::request_log::RequestLog>,
    /// `--tracing.config-file` / `--tracing.config`: where spans go (`None`: tracing off).
    pub tracing: Option<ringest_trace::TracingConfig>,
    /// `--receive-forward-timeout`, which also sets the receive handler's latency buckets.
    pub forward_timeout: Duration,
    /// `--receive.limits-config-reload-timer`.
    pub limits_reload: Duration,
    /// `--ringest.tenant-header.trusted-from`: whose tenant header is honoured (`None`: anyone's).
    pub trusted_proxies: Option<crate::tenancy::TrustedProxies>,
    /// `--ringest.max-tenants` (0: no limit).
    pub max_tenants: usize,
    /// `--grpc-server-tls-*`.
    pub grpc_tls: ringest_tls::ServerOptions,
    /// `--remote-write.server-tls-*`.
    pub remote_write_tls: ringest_tls::ServerOptions,
    /// `--remote-write.client-tls-*`, when `--remote-write.client-tls-secure` is set.
    pub peer_tls: Option<ringest_tls::ClientOptions>,
    /// `--receive.tenant-certificate-field`.
    pub tenant_certificate_field: Option<crate::tenancy::CertField>,
    /// Flags accepted but ignored, with the reason (logged at debug level at start-up).
    pub ignored_flags: Vec<(&'static str, &'static str)>,
}

/// Where the hashring configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RingSource {
    /// `--receive.hashrings-file` (watched).
    File(PathBuf),
    /// `--receive.hashrings` (read once).
    Content(String),
}

/// Hashring and replication settings.
#[derive(Debug, Clone)]
pub struct RingConfig {
    /// The hashring file or content.
    pub source: RingSource,
    /// `--receive.hashrings-algorithm`.
    pub algorithm: ringest_hashring::Algorithm,
    /// `--receive.hashrings-file-refresh-interval`.
    pub refresh: Duration,
    /// Replication settings.
    pub replication: crate::replicate::Options,
}

/// The `ringest` command line.
pub fn command() -> Command {
    let receive = flags::add_args(
        Command::new("receive")
            .about("Accept Prometheus remote write requests and write them to a local TSDB (Thanos Receive)."),
        false,
    );
    let dump = Command::new("dump")
        .about("Print every sample of a tenant directory's WAL (promtool tsdb dump format)")
        .arg(clap::Arg::new("dir").required(true).help("Tenant directory (holding wal/)"))
        .arg(
            clap::Arg::new("format")
                .long("format")
                .value_parser(["promtool", "bits"])
                .default_value("promtool")
                .help("promtool: `{labels} value timestamp`; bits: the value as 16 hex digits of its IEEE-754 bits"),
        )
        .arg(
            clap::Arg::new("min-time")
                .long("min-time")
                .value_parser(clap::value_parser!(i64))
                .allow_hyphen_values(true)
                .help("Minimum timestamp to dump (ms, inclusive)"),
        )
        .arg(
            clap::Arg::new("max-time")
                .long("max-time")
                .value_parser(clap::value_parser!(i64))
                .allow_hyphen_values(true)
                .help("Maximum timestamp to dump (ms, inclusive)"),
        );
    let tsdb = Command::new("tsdb")
        .about("Offline tools for a tenant TSDB directory")
        .subcommand_required(true)
        .subcommand(dump);
    let root = Command::new("ringest")
        .about("A native drop-in replacement for Thanos Receive.")
        .version(crate::VERSION)
        .disable_version_flag(true)
        .arg(
            clap::Arg::new("version")
                .long("version")
                .global(true)
                .action(clap::ArgAction::SetTrue)
                .help("Show application version."),
        )
        .subcommand_required(true)
        .subcommand(receive)
        .subcommand(tsdb);
    flags::add_args(root, true)
}

fn parse_addr(flag: &str, s: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let (host, port) = s.rsplit_once(':').ok_or_else(|| format!("--{flag}={s:?}: expected host:port"))?;
    let port: u16 = port.parse().map_err(|_| format!("--{flag}={s:?}: invalid port {port:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("--{flag}={s:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("--{flag}={s:?}: address does not resolve"))
}

/// Parses `--label` values (`name="value"`), as Thanos' `parseFlagLabels`.
pub fn parse_labels(raw: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for l in raw {
        let (name, value) = l.split_once('=').ok_or_else(|| format!("unrecognized label {l:?}"))?;
        if name.is_empty() {
            return Err(format!("unsupported format for label {l}"));
        }
        let value = go_unquote(value)?;
        if let Some(existing) = out.iter_mut().find(|(n, _)| n == name) {
            existing.1 = value;
        } else {
            out.push((name.to_string(), value));
        }
    }
    out.sort();
    Ok(out)
}

/// The bucket configuration of `--objstore.config-file` or `--objstore.config` (Thanos'
/// path-or-content flag pair: not both; an empty one disables uploads).
fn objstore_config(m: &ArgMatches) -> Result<Option<ringest_shipper::BucketConfig>, String> {
    let file = get_str(m, "objstore.config-file").filter(|s| !s.is_empty());
    let content = get_str(m, "objstore.config").filter(|s| !s.is_empty());
    let (yaml, origin) = match (file, content) {
        (Some(_), Some(_)) => return Err("both --objstore.config-file and --objstore.config flags set.".into()),
        (Some(path), None) => {
            let yaml = std::fs::read_to_string(&path).map_err(|e| format!("--objstore.config-file={path}: {e}"))?;
            (yaml, format!("--objstore.config-file={path}"))
        }
        (None, Some(c)) => (c, "--objstore.config".to_string()),
        (None, None) => return Ok(None),
    };
    if yaml.trim().is_empty() {
        return Ok(None);
    }
    ringest_shipper::config::parse(&yaml).map(Some).map_err(|e| format!("{origin}: {e}"))
}

/// `--receive.limits-config-file` / `--receive.limits-config` (read and parsed when the server
/// starts).
fn limits_source(m: &ArgMatches) -> Result<Option<crate::limits::LimitsSource>, String> {
    let file = get_str(m, "receive.limits-config-file").filter(|s| !s.is_empty());
    let content = get_str(m, "receive.limits-config").filter(|s| !s.is_empty());
    match (file, content) {
        (Some(_), Some(_)) => Err("both --receive.limits-config-file and --receive.limits-config flags set.".into()),
        (Some(path), None) => Ok(Some(crate::limits::LimitsSource::File(PathBuf::from(path)))),
        (None, Some(c)) => Ok(Some(crate::limits::LimitsSource::Content(c))),
        (None, None) => Ok(None),
    }
}

/// `--request.logging-config-file` / `--request.logging-config`, read and checked at start-up
/// as Thanos does.
fn request_log(m: &ArgMatches) -> Result<Option<crate::request_log::RequestLog>, String> {
    let Some(yaml) = file_or_content(m, "request.logging-config")? else { return Ok(None) };
    crate::request_log::parse(&yaml).map_err(|e| format!("error while parsing config for request logging: {e}"))
}

/// `--tracing.config-file` / `--tracing.config`, parsed at start-up (empty: tracing off).
fn tracing_config(m: &ArgMatches) -> Result<Option<ringest_trace::TracingConfig>, String> {
    let Some(yaml) = file_or_content(m, "tracing.config")? else { return Ok(None) };
    ringest_trace::parse(&yaml).map_err(|e| format!("tracing: {e}"))
}

/// The YAML of a Thanos path-or-content flag pair, `--<name>-file` and `--<name>`, as
/// extflag reads them: at most one of them, the file read now.
fn file_or_content(m: &ArgMatches, name: &str) -> Result<Option<String>, String> {
    let file_flag = format!("{name}-file");
    let file = get_str(m, &file_flag).filter(|s| !s.is_empty());
    let content = get_str(m, name).filter(|s| !s.is_empty());
    match (file, content) {
        (Some(_), Some(_)) => Err(format!("both --{file_flag} and --{name} flags set.")),
        (Some(path), None) => std::fs::read_to_string(&path)
            .map(Some)
            .map_err(|e| format!("loading YAML file {path} for --{file_flag}: {e}")),
        (None, Some(c)) => Ok(Some(c)),
        (None, None) => Ok(None),
    }
}

/// An unsigned integer flag.
fn uint(m: &ArgMatches, name: &str) -> Result<u64, String> {
    get_str(m, name).unwrap_or_default().parse().map_err(|e| format!("--{name}: {e}"))
}

/// The hashring flags (Thanos' `determineMode`: a hashring with a local endpoint is
/// RouterIngestor, without one RouterOnly; no hashring is IngestorOnly).
fn ring_config(m: &ArgMatches) -> Result<Option<RingConfig>, String> {
    let rf: usize = get_str(m, "receive.replication-factor")
        .unwrap_or_default()
        .parse()
        .map_err(|e| format!("--receive.replication-factor: {e}"))?;
    if rf == 0 {
        return Err("--receive.replication-factor must be at least 1".into());
    }
    let file = get_str(m, "receive.hashrings-file").filter(|s| !s.is_empty());
    let content = get_str(m, "receive.hashrings").filter(|s| !s.is_empty());
    let source = match (file, content) {
        (Some(f), _) => RingSource::File(PathBuf::from(f)),
        (None, Some(c)) => RingSource::Content(c),
        (None, None) => {
            if rf > 1 {
                return Err(format!(
                    "--receive.replication-factor={rf} needs a hashring (--receive.hashrings-file or --receive.hashrings) \
                     with at least {rf} endpoints"
                ));
            }
            return Ok(None);
        }
    };
    let algorithm = get_str(m, "receive.hashrings-algorithm")
        .unwrap_or_default()
        .parse()
        .map_err(|e| format!("--receive.hashrings-algorithm: {e}"))?;
    let compression = match get_str(m, "receive.grpc-compression").as_deref() {
        Some("none") => ringest_grpc::Compression::None,
        _ => ringest_grpc::Compression::Snappy,
    };
    let workers: usize = get_str(m, "receive.forward.async-workers")
        .unwrap_or_default()
        .parse()
        .map_err(|e| format!("--receive.forward.async-workers: {e}"))?;
    Ok(Some(RingConfig {
        source,
        algorithm,
        refresh: Duration::from_millis(duration(m, "receive.hashrings-file-refresh-interval")?.max(1)),
        replication: crate::replicate::Options {
            replication_factor: rf,
            local_endpoint: get_str(m, "receive.local-endpoint").filter(|s| !s.is_empty()),
            forward_timeout: Duration::from_millis(duration(m, "receive-forward-timeout")?),
            max_backoff: Duration::from_millis(duration(m, "receive-forward-max-backoff")?.max(100)),
            compression,
            async_workers: workers.max(1),
            tls: None,
            dialer: None,
        },
    }))
}

fn bytes(m: &ArgMatches, name: &str) -> Result<usize, String> {
    let s = get_str(m, name).unwrap_or_default();
    let n = units::parse_bytes(&s).map_err(|e| format!("--{name}: {e}"))?;
    usize::try_from(n).map_err(|_| format!("--{name}: {s} is too large"))
}

/// A bound that must be at least 1.
fn positive<T: PartialEq + Default + std::fmt::Display>(name: &str, v: T) -> Result<T, String> {
    if v == T::default() { Err(format!("--{name} must be greater than 0")) } else { Ok(v) }
}

/// The `--ringest.*` bounds.
fn bounds(
    m: &ArgMatches,
) -> Result<(crate::admission::WriteLimits, crate::http::serve::HttpLimits, ringest_grpc::ConnLimits), String> {
    let u = |name: &str| uint(m, name).and_then(|v| positive(name, v));
    let b = |name: &str| bytes(m, name).and_then(|v| positive(name, v));
    let d = |name: &str| duration(m, name).and_then(|v| positive(name, v)).map(Duration::from_millis);
    let write = crate::admission::WriteLimits {
        max_decoded_bytes: b("ringest.write.max-decoded-bytes")?,
        max_series: u("ringest.write.max-series")?,
        max_labels: u("ringest.write.max-labels")?,
        max_samples: u("ringest.write.max-samples")?,
        max_inflight_requests: u("ringest.write.max-inflight-requests")? as usize,
        max_inflight_bytes: b("ringest.write.max-inflight-bytes")?,
        bulk_bytes: b("ringest.write.bulk-bytes")? as u64,
    };
    let http = crate::http::serve::HttpLimits {
        header_read_timeout: d("ringest.http.header-read-timeout")?,
        body_read_timeout: d("ringest.http.body-read-timeout")?,
        max_header_bytes: b("ringest.http.max-header-bytes")?.max(8192),
        max_connections: u("ringest.http.max-connections")? as usize,
    };
    let grpc = ringest_grpc::ConnLimits {
        max_concurrent_streams: u32::try_from(u("ringest.grpc.max-concurrent-streams")?).unwrap_or(u32::MAX),
        keepalive_time: d("ringest.grpc.keepalive-time")?,
        keepalive_timeout: d("ringest.grpc.keepalive-timeout")?,
        max_connection_idle: d("ringest.grpc.max-connection-idle")?,
        ..ringest_grpc::ConnLimits::default()
    };
    Ok((write, http, grpc))
}

/// A listener's `--<prefix>-cert`, `-key`, `-client-ca`, `-min-version`, `-ciphers` and
/// `-curves`.
fn server_tls(m: &ArgMatches, prefix: &str) -> ringest_tls::ServerOptions {
    let s = |name: &str| get_str(m, &format!("{prefix}-{name}")).unwrap_or_default();
    ringest_tls::ServerOptions {
        cert: s("cert"),
        key: s("key"),
        client_ca: s("client-ca"),
        min_version: s("min-version"),
        ciphers: get_all(m, &format!("{prefix}-ciphers")),
        curves: get_all(m, &format!("{prefix}-curves")),
        ..Default::default()
    }
}

fn duration(m: &ArgMatches, name: &str) -> Result<u64, String> {
    let s = get_str(m, name).unwrap_or_default();
    parse_duration_ms(&s).map_err(|e| format!("--{name}: {e}"))
}

impl ReceiveConfig {
    /// Builds the configuration from parsed arguments of `ringest receive` (global flags
    /// included), rejecting flags ringest does not implement and invalid combinations.
    pub fn from_matches(m: &ArgMatches) -> Result<ReceiveConfig, String> {
        let ignored_flags = flags::check_support(m)?;
        let level = match get_str(m, "log.level").as_deref() {
            Some("error") => tracing::Level::ERROR,
            Some("warn") => tracing::Level::WARN,
            Some("debug") => tracing::Level::DEBUG,
            _ => tracing::Level::INFO,
        };
        let format = match get_str(m, "log.format").as_deref() {
            Some("json") => LogFormat::Json,
            Some("journald") => {
                return Err("--log.format=journald is not supported by ringest; use logfmt or json".into());
            }
            _ => LogFormat::Logfmt,
        };
        let name = get_str(m, "debug.name").filter(|s| !s.is_empty());
        let external_labels = parse_labels(&get_all(m, "label")).map_err(|e| format!("parse labels: {e}"))?;
        if external_labels.is_empty() {
            return Err("no external labels configured for receive, uniquely identifying external labels must be \
                        configured (ideally with `receive_` prefix); see \
                        https://thanos.io/tip/thanos/storage.md#external-labels for details."
                .into());
        }
        let tenant_label_name = get_str(m, "receive.tenant-label-name").unwrap_or_default();
        if tenant_label_name.is_empty() {
            return Err(format!("unsupported format for tenant label name, got {tenant_label_name}"));
        }
        let default_tenant = get_str(m, "receive.default-tenant-id").unwrap_or_default();
        crate::tenancy::validate_tenant(&default_tenant)
            .map_err(|e| format!("--receive.default-tenant-id={default_tenant:?}: {e}"))?;
        let tenant_header = get_str(m, "receive.tenant-header").unwrap_or_default();
        if http::HeaderName::from_bytes(tenant_header.as_bytes()).is_err() {
            return Err(format!("--receive.tenant-header={tenant_header:?} is not a valid HTTP header name"));
        }
        let replica_header = get_str(m, "receive.replica-header").unwrap_or_default();
        if http::HeaderName::from_bytes(replica_header.as_bytes()).is_err() {
            return Err(format!("--receive.replica-header={replica_header:?} is not a valid HTTP header name"));
        }
        let min_block = duration(m, "tsdb.min-block-duration")? as i64;
        let max_block = duration(m, "tsdb.max-block-duration")? as i64;
        if min_block == 0 {
            return Err("--tsdb.min-block-duration must be greater than 0".into());
        }
        if max_block < min_block {
            return Err(format!(
                "--tsdb.max-block-duration ({}) must be at least --tsdb.min-block-duration ({})",
                units::format_duration_ms(max_block as u64),
                units::format_duration_ms(min_block as u64)
            ));
        }
        let tsdb_path = PathBuf::from(get_str(m, "tsdb.path").unwrap_or_default());
        if tsdb_path.as_os_str().is_empty() {
            return Err("--tsdb.path must not be empty".into());
        }
        let shipper = ringest_shipper::ShipperOptions {
            sha256: get_str(m, "hash-func").as_deref() == Some("SHA256"),
            upload_concurrency: get_str(m, "shipper.upload-concurrency")
                .unwrap_or_default()
                .parse::<i64>()
                .map_err(|e| format!("--shipper.upload-concurrency: {e}"))?
                .max(0) as usize,
            allow_out_of_order: get_bool(m, "shipper.allow-out-of-order-uploads"),
            skip_corrupted: get_bool(m, "shipper.skip-corrupted-blocks"),
        };
        let ring = ring_config(m)?;
        let (write_limits, http_limits, grpc_limits) = bounds(m)?;
        let remote_write_tls = server_tls(m, "remote-write.server-tls");
        let field = get_str(m, "receive.tenant-certificate-field").unwrap_or_default();
        let tenant_certificate_field = crate::tenancy::CertField::parse(&field);
        if tenant_certificate_field.is_some()
            && (remote_write_tls.cert.is_empty() || remote_write_tls.client_ca.is_empty())
        {
            return Err(format!(
                "--receive.tenant-certificate-field={field} needs client certificates on the remote-write port: \
                 set --remote-write.server-tls-cert, --remote-write.server-tls-key and \
                 --remote-write.server-tls-client-ca"
            ));
        }
        let trusted_proxies = crate::tenancy::TrustedProxies::parse(&get_all(m, "ringest.tenant-header.trusted-from"))
            .map_err(|e| format!("--ringest.tenant-header.trusted-from: {e}"))?;
        if trusted_proxies.is_some() && tenant_certificate_field.is_some() {
            return Err("--ringest.tenant-header.trusted-from has no effect with --receive.tenant-certificate-field, \
                        which ignores the tenant header: set one of them"
                .into());
        }
        let limits_reload = Duration::from_millis(duration(m, "receive.limits-config-reload-timer")?);
        if limits_reload.is_zero() {
            return Err("--receive.limits-config-reload-timer must be greater than 0".into());
        }
        Ok(ReceiveConfig {
            http_config: get_str(m, "http.config").filter(|s| !s.is_empty()).map(PathBuf::from),
            limits: limits_source(m)?,
            request_log: request_log(m)?,
            tracing: tracing_config(m)?,
            forward_timeout: Duration::from_millis(duration(m, "receive-forward-timeout")?),
            limits_reload,
            trusted_proxies,
            log: LogConfig { level, format, name },
            http_address: parse_addr("http-address", &get_str(m, "http-address").unwrap_or_default())?,
            http_grace_period: Duration::from_millis(duration(m, "http-grace-period")?),
            grpc_address: parse_addr("grpc-address", &get_str(m, "grpc-address").unwrap_or_default())?,
            remote_write_address: parse_addr(
                "remote-write.address",
                &get_str(m, "remote-write.address").unwrap_or_default(),
            )?,
            tsdb_path,
            external_labels,
            tenant_header,
            default_tenant,
            tenant_label_name,
            replica_header,
            min_block_duration_ms: min_block,
            max_block_duration_ms: max_block,
            retention_ms: duration(m, "tsdb.retention")? as i64,
            too_far_in_future_ms: duration(m, "tsdb.too-far-in-future.time-window")? as i64,
            wal_compression: get_bool(m, "tsdb.wal-compression"),
            no_lockfile: get_bool(m, "tsdb.no-lockfile"),
            wal_discard_after_gap: get_bool(m, "ringest.tsdb.wal-discard-after-gap"),
            objstore: objstore_config(m)?,
            shipper,
            ring,
            grpc_max_connection_age: Some(duration(m, "grpc-server-max-connection-age")?)
                .filter(|&ms| ms > 0)
                .map(Duration::from_millis),
            grpc_grace_period: Duration::from_millis(duration(m, "grpc-grace-period")?),
            store_limits: crate::store::Limits {
                series: uint(m, "store.limits.request-series")?,
                samples: uint(m, "store.limits.request-samples")?,
            },
            write_limits,
            http_limits,
            grpc_limits,
            max_tenants: uint(m, "ringest.max-tenants")? as usize,
            grpc_tls: server_tls(m, "grpc-server-tls"),
            remote_write_tls,
            tenant_certificate_field,
            peer_tls: get_bool(m, "remote-write.client-tls-secure").then(|| ringest_tls::ClientOptions {
                cert: get_str(m, "remote-write.client-tls-cert").unwrap_or_default(),
                key: get_str(m, "remote-write.client-tls-key").unwrap_or_default(),
                ca: get_str(m, "remote-write.client-tls-ca").unwrap_or_default(),
                server_name: get_str(m, "remote-write.client-server-name").unwrap_or_default(),
                skip_verify: get_bool(m, "remote-write.client-tls-skip-verify"),
                min_version: get_str(m, "remote-write.client-tls-min-version").unwrap_or_default(),
            }),
            ignored_flags,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ReceiveConfig, String> {
        let mut argv = vec!["ringest", "receive"];
        argv.extend_from_slice(args);
        let m = command().try_get_matches_from(argv).map_err(|e| e.to_string())?;
        let (_, sub) = m.subcommand().expect("subcommand");
        ReceiveConfig::from_matches(sub)
    }

    const L: &str = "--label=replica=\"r0\"";

    #[test]
    fn defaults_match_thanos() {
        let c = parse(&[L]).unwrap();
        assert_eq!(c.http_address.to_string(), "0.0.0.0:10902");
        assert_eq!(c.remote_write_address.to_string(), "0.0.0.0:19291");
        assert_eq!(c.grpc_address.to_string(), "0.0.0.0:10901");
        assert_eq!(c.tsdb_path, PathBuf::from("./data"));
        assert_eq!(c.tenant_header, "THANOS-TENANT");
        assert_eq!(c.default_tenant, "default-tenant");
        assert_eq!(c.tenant_label_name, "tenant_id");
        assert_eq!(c.replica_header, "THANOS-REPLICA");
        assert_eq!(c.http_grace_period, Duration::from_secs(120));
        assert_eq!(c.min_block_duration_ms, 7_200_000);
        assert!(c.wal_compression);
        assert!(!c.no_lockfile);
        assert_eq!(c.too_far_in_future_ms, 0);
        assert_eq!(c.log.level, tracing::Level::INFO);
        assert_eq!(c.log.format, LogFormat::Logfmt);
    }

    #[test]
    fn both_value_syntaxes_and_repeatable_flags() {
        let c = parse(&[
            "--label",
            "replica=\"r0\"",
            "--label=receive=\"true\"",
            "--tsdb.path",
            "/tmp/x",
            "--remote-write.address=127.0.0.1:1234",
            "--tsdb.too-far-in-future.time-window",
            "5m",
        ])
        .unwrap();
        assert_eq!(c.external_labels, vec![("receive".into(), "true".into()), ("replica".into(), "r0".into())]);
        assert_eq!(c.tsdb_path, PathBuf::from("/tmp/x"));
        assert_eq!(c.remote_write_address.to_string(), "127.0.0.1:1234");
        assert_eq!(c.too_far_in_future_ms, 300_000);
    }

    #[test]
    fn no_prefixed_booleans() {
        assert!(!parse(&[L, "--no-tsdb.wal-compression"]).unwrap().wal_compression);
        assert!(parse(&[L, "--no-tsdb.wal-compression", "--tsdb.wal-compression"]).unwrap().wal_compression);
        assert!(parse(&[L, "--tsdb.no-lockfile"]).unwrap().no_lockfile);
        // kingpin rejects `--bool=value`; so do we.
        assert!(parse(&[L, "--tsdb.wal-compression=false"]).is_err());
    }

    #[test]
    fn labels_are_required_and_parsed_like_thanos() {
        assert!(parse(&[]).unwrap_err().contains("no external labels configured"));
        assert!(parse(&["--label=replica=r0"]).unwrap_err().contains("invalid syntax"));
        assert!(parse(&["--label=replica"]).unwrap_err().contains("unrecognized label"));
        let c = parse(&["--label=a=\"x\"", "--label=a=\"y\""]).unwrap();
        assert_eq!(c.external_labels, vec![("a".into(), "y".into())]);
    }

    #[test]
    fn unimplemented_flags_are_rejected_by_name() {
        for (flag, needle) in [
            ("--receive.replication-protocol=capnproto", "--receive.replication-protocol"),
            ("--tsdb.max-exemplars=100", "--tsdb.max-exemplars"),
            ("--enable-feature=metric-names-filter", "--enable-feature"),
            ("--no-receive.otlp-enable-target-info", "--receive.otlp-enable-target-info"),
        ] {
            let err = parse(&[L, flag]).unwrap_err();
            assert!(err.contains(needle) && err.contains("not implemented"), "{flag}: {err}");
        }
        // Values that keep the feature off are accepted.
        for ok in [
            "--receive.replication-factor=1",
            "--tsdb.retention=0d",
            "--tsdb.max-exemplars=0",
            "--tsdb.out-of-order.time-window=0s",
            "--receive.hashrings-algorithm=hashmod",
            "--hash-func=",
        ] {
            assert!(parse(&[L, ok]).is_ok(), "{ok}");
        }
    }

    #[test]
    fn tls_flags() {
        let c = parse(&[L]).unwrap();
        assert!(c.grpc_tls.cert.is_empty() && c.remote_write_tls.key.is_empty() && c.peer_tls.is_none());
        assert_eq!((c.grpc_tls.min_version.as_str(), c.remote_write_tls.min_version.as_str()), ("1.3", "1.3"));
        let c = parse(&[
            L,
            "--grpc-server-tls-cert=/c.pem",
            "--grpc-server-tls-key=/k.pem",
            "--grpc-server-tls-ciphers=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "--grpc-server-tls-ciphers=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "--remote-write.server-tls-client-ca=/ca.pem",
            "--remote-write.server-tls-min-version=1.2",
            "--remote-write.client-tls-secure",
            "--remote-write.client-server-name=peer",
        ])
        .unwrap();
        assert_eq!((c.grpc_tls.cert.as_str(), c.grpc_tls.key.as_str()), ("/c.pem", "/k.pem"));
        assert_eq!(c.grpc_tls.ciphers.len(), 2);
        assert_eq!(c.remote_write_tls.client_ca, "/ca.pem");
        assert_eq!(c.remote_write_tls.min_version, "1.2");
        let peer = c.peer_tls.expect("client TLS on");
        assert_eq!((peer.server_name.as_str(), peer.min_version.as_str(), peer.skip_verify), ("peer", "1.3", false));
    }

    #[test]
    fn bucket_flags() {
        assert!(parse(&[L]).unwrap().objstore.is_none());
        assert!(parse(&[L, "--objstore.config="]).unwrap().objstore.is_none(), "empty content: uploads disabled");
        let c = parse(&[L, "--objstore.config={type: FILESYSTEM, config: {directory: /tmp/b}}", "--hash-func=SHA256"])
            .unwrap();
        assert_eq!(c.objstore.unwrap().kind(), "FILESYSTEM");
        assert!(c.shipper.sha256);
        let err = parse(&[L, "--objstore.config=type: S3", "--objstore.config-file=/x"]).unwrap_err();
        assert!(err.contains("both --objstore.config-file and --objstore.config"), "{err}");
        let err = parse(&[L, "--objstore.config={type: S3, config: {bucket: b, endpoint: e, nope: 1}}"]).unwrap_err();
        assert!(err.starts_with("--objstore.config: ") && err.contains("nope"), "{err}");
        let c = parse(&[L, "--shipper.upload-concurrency=4", "--shipper.allow-out-of-order-uploads"]).unwrap();
        assert_eq!(c.shipper.upload_concurrency, 4);
        assert!(c.shipper.allow_out_of_order && !c.shipper.skip_corrupted);
    }

    #[test]
    fn go_runtime_and_noop_flags_are_accepted() {
        let c =
            parse(&[L, "--enable-auto-gomemlimit", "--auto-gomemlimit.ratio=0.8", "--tsdb.allow-overlapping-blocks"])
                .unwrap();
        let names: Vec<&str> = c.ignored_flags.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, vec!["enable-auto-gomemlimit", "auto-gomemlimit.ratio", "tsdb.allow-overlapping-blocks"]);
    }

    #[test]
    fn invalid_values_are_rejected() {
        assert!(parse(&[L, "--http-grace-period=2"]).is_err());
        assert!(parse(&[L, "--log.level=verbose"]).unwrap_err().contains("enum value must be one of"));
        assert!(parse(&[L, "--tsdb.max-retention-bytes=512"]).is_err());
        assert!(parse(&[L, "--http-address=nonsense"]).is_err());
        assert!(parse(&[L, "--receive.default-tenant-id=../x"]).is_err());
        assert!(parse(&[L, "--log.format=journald"]).unwrap_err().contains("journald"));
        assert!(parse(&[L, "--no-such-flag=1"]).is_err());
        assert!(parse(&[L, "--tsdb.path=/a", "--tsdb.path=/b"]).is_err(), "non-repeatable flag given twice");
        assert!(parse(&[L, "--tsdb.min-block-duration=2h", "--tsdb.max-block-duration=1h"]).is_err());
    }

    #[test]
    fn grpc_connection_age_and_grace_period() {
        let c = parse(&[L]).unwrap();
        assert_eq!(c.grpc_max_connection_age, Some(Duration::from_secs(3600)));
        assert_eq!(c.grpc_grace_period, Duration::from_secs(120));
        let c = parse(&[L, "--grpc-server-max-connection-age=0s", "--grpc-grace-period=5s"]).unwrap();
        assert_eq!(c.grpc_max_connection_age, None, "0: no limit, as grpc-go");
        assert_eq!(c.grpc_grace_period, Duration::from_secs(5));
        let c = parse(&[L, "--store.limits.request-series=7", "--store.limits.request-samples=9"]).unwrap();
        assert_eq!(c.store_limits, crate::store::Limits { series: 7, samples: 9 });
        assert!(parse(&[L, "--store.limits.request-series=-1"]).is_err());
    }

    #[test]
    fn global_flags_go_before_or_after_the_command() {
        let m = command().try_get_matches_from(["ringest", "--log.level=debug", "receive", L]).unwrap();
        let c = ReceiveConfig::from_matches(m.subcommand().unwrap().1).unwrap();
        assert_eq!(c.log.level, tracing::Level::DEBUG);
        let c = parse(&[L, "--log.format=json"]).unwrap();
        assert_eq!(c.log.format, LogFormat::Json);
    }

    #[test]
    fn every_flag_of_thanos_receive_is_known() {
        // The flag list of `thanos receive --help` (Thanos 0.43-dev) plus hidden flags.
        let thanos = "log.level log.format debug.name tracing.config-file tracing.config enable-auto-gomemlimit \
            auto-gomemlimit.ratio http-address http-grace-period http.config grpc-address grpc-server-tls-cert \
            grpc-server-tls-key grpc-server-tls-client-ca grpc-server-tls-min-version grpc-server-tls-ciphers \
            grpc-server-tls-curves grpc-server-max-connection-age grpc-grace-period store.limits.request-series \
            store.limits.request-samples remote-write.address remote-write.server-tls-cert \
            remote-write.server-tls-key remote-write.server-tls-client-ca remote-write.server-tls-min-version \
            remote-write.server-tls-ciphers remote-write.server-tls-curves remote-write.client-tls-cert \
            remote-write.client-tls-key remote-write.client-tls-secure remote-write.client-tls-skip-verify \
            remote-write.client-tls-ca remote-write.client-server-name remote-write.client-tls-min-version \
            tsdb.path label objstore.config-file objstore.config tsdb.retention receive.hashrings-file \
            receive.hashrings receive.hashrings-algorithm receive.hashrings-file-refresh-interval \
            receive.local-endpoint receive.tenant-header receive.artificial-max-delay \
            receive.tenant-certificate-field receive.default-tenant-id receive.split-tenant-label-name \
            receive.tenant-label-name receive.replica-header receive.forward.async-workers \
            receive.grpc-compression receive.replication-factor receive.replication-protocol \
            receive.capnproto-address receive.grpc-service-config receive-forward-timeout \
            receive-forward-max-backoff receive.relabel-config-file receive.relabel-config \
            tsdb.min-block-duration tsdb.max-block-duration tsdb.too-far-in-future.time-window \
            tsdb.out-of-order.time-window tsdb.out-of-order.cap-max tsdb.allow-overlapping-blocks \
            tsdb.max-retention-bytes tsdb.wal-compression tsdb.no-lockfile tsdb.head.expanded-postings-cache-size \
            tsdb.block.expanded-postings-cache-size tsdb.max-exemplars tsdb.write-queue-size \
            tsdb.memory-snapshot-on-shutdown tsdb.enable-native-histograms hash-func \
            shipper.allow-out-of-order-uploads shipper.skip-corrupted-blocks shipper.upload-concurrency \
            matcher-cache-size request.logging-config-file request.logging-config receive.limits-config-file \
            receive.limits-config receive.limits-config-reload-timer receive.otlp-enable-target-info \
            receive.otlp-promote-resource-attributes enable-feature receive.lazy-retrieval-max-buffered-responses";
        let ours: Vec<&str> =
            flags::FLAGS.iter().filter(|f| f.support != flags::Support::Own).map(|f| f.name).collect();
        for name in thanos.split_whitespace() {
            assert!(ours.contains(&name), "missing flag --{name}");
        }
        assert_eq!(ours.len(), thanos.split_whitespace().count());
        // ringest's own flags are apart, under a prefix Thanos does not use.
        for f in flags::FLAGS.iter().filter(|f| f.support == flags::Support::Own) {
            assert!(f.name.starts_with("ringest."), "--{}", f.name);
        }
    }

    #[test]
    fn tracing_config_from_content_or_file() {
        let yaml = "type: OTLP\nconfig:\n  client_type: grpc\n";
        let c = parse(&[L, &format!("--tracing.config={yaml}")]).unwrap();
        assert!(matches!(c.tracing.map(|t| t.exporter), Some(ringest_trace::config::Exporter::Otlp(_))));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tracing.yml");
        std::fs::write(&file, yaml).unwrap();
        let flag = format!("--tracing.config-file={}", file.display());
        assert!(parse(&[L, &flag]).unwrap().tracing.is_some());
        let both = parse(&[L, &flag, &format!("--tracing.config={yaml}")]).unwrap_err();
        assert_eq!(both, "both --tracing.config-file and --tracing.config flags set.");
        let bad = parse(&[L, "--tracing.config=type: ZIPKIN\n"]).unwrap_err();
        assert_eq!(bad, "tracing: tracing with type ZIPKIN is not supported");
        assert!(parse(&[L]).unwrap().tracing.is_none());
    }

    #[test]
    fn bounds_flags() {
        let c = parse(&[L]).unwrap();
        assert_eq!(c.write_limits, crate::admission::WriteLimits::default());
        assert_eq!(c.http_limits, crate::http::serve::HttpLimits::default());
        assert_eq!(c.grpc_limits, ringest_grpc::ConnLimits::default());
        assert_eq!(c.max_tenants, 10_000);
        let c = parse(&[
            L,
            "--ringest.write.max-decoded-bytes=1MiB",
            "--ringest.write.max-series=10",
            "--ringest.write.max-inflight-bytes=2GB",
            "--ringest.http.body-read-timeout=5s",
            "--ringest.http.max-connections=3",
            "--ringest.grpc.max-concurrent-streams=7",
            "--ringest.max-tenants=0",
        ])
        .unwrap();
        assert_eq!(c.write_limits.max_decoded_bytes, 1 << 20);
        assert_eq!(c.write_limits.max_series, 10);
        assert_eq!(c.write_limits.max_inflight_bytes, 2 << 30);
        assert_eq!(c.http_limits.body_read_timeout, Duration::from_secs(5));
        assert_eq!(c.http_limits.max_connections, 3);
        assert_eq!(c.grpc_limits.max_concurrent_streams, 7);
        assert_eq!(c.max_tenants, 0, "0: no limit");
        let e = parse(&[L, "--ringest.write.max-series=0"]).unwrap_err();
        assert!(e.contains("--ringest.write.max-series must be greater than 0"), "{e}");
        assert!(parse(&[L, "--ringest.http.header-read-timeout=0s"]).is_err());
    }
}
