//! Every flag of `thanos receive` (and the global flags it inherits), with Thanos' names,
//! defaults and value syntaxes, and what ringest does with each.
//!
//! The table drives both the command line (clap) and the start-up checks: a flag ringest does
//! not implement yet is rejected when it is given with any value other than the one meaning
//! "off", so nobody believes a feature is active when it is not. Flags that only tune the Go
//! runtime, and flags Thanos itself ignores, are accepted and logged at debug level.

use clap::{Arg, ArgAction, ArgMatches, Command, parser::ValueSource};

use super::units::{parse_bytes, parse_duration_ms};

/// How a flag's value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Free text.
    Str,
    /// `--flag` / `--no-flag`.
    Bool,
    /// Prometheus duration (`5m`, `2h`, `15d`).
    Duration,
    /// Base-2 byte size (`512MB`).
    Bytes,
    /// Unsigned integer.
    Uint,
    /// Signed integer.
    Int,
    /// Floating-point number.
    Float,
    /// One of a fixed set of words.
    Enum(&'static [&'static str]),
    /// Repeatable free text.
    Strings,
}

/// What ringest does with a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Implemented with Thanos' behaviour.
    Yes,
    /// ringest's own flag (Thanos has none like it): a bound on what clients may cost.
    Own,
    /// Only tunes the Go runtime: accepted and ignored.
    GoRuntime,
    /// Thanos itself ignores it (deprecated no-op): accepted and ignored.
    NoOp,
    /// Not implemented yet. Accepted only when absent or set to `off` (the value that means the
    /// feature is disabled; `None` means only absence is accepted).
    Later {
        /// The capability it belongs to.
        needs: &'static str,
        /// The value that keeps the feature off.
        off: Option<&'static str>,
    },
}

/// One flag.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    /// Long name without dashes.
    pub name: &'static str,
    /// Value syntax.
    pub kind: Kind,
    /// Default value in flag syntax (`None`: no default).
    pub default: Option<&'static str>,
    /// One-line help.
    pub help: &'static str,
    /// What ringest does with it.
    pub support: Support,
    /// Hidden in Thanos' help too.
    pub hidden: bool,
    /// An application-level flag (accepted before or after the command).
    pub global: bool,
}

const fn f(
    name: &'static str,
    kind: Kind,
    default: Option<&'static str>,
    help: &'static str,
    support: Support,
) -> Flag {
    Flag { name, kind, default, help, support, hidden: false, global: false }
}

const fn later(needs: &'static str, off: Option<&'static str>) -> Support {
    Support::Later { needs, off }
}

const fn hidden(mut fl: Flag) -> Flag {
    fl.hidden = true;
    fl
}

const fn global(mut fl: Flag) -> Flag {
    fl.global = true;
    fl
}

const TLS_VERSIONS: &[&str] = &["1.0", "1.1", "1.2", "1.3"];
const PEER: &str = "TLS, Cap'n Proto and service configs towards peer receivers";
const BLOCKS: &str = "2h blocks and local retention";
const OOO: &str = "out-of-order ingestion";
const READ: &str = "the StoreAPI read path";
const OTLP: &str = "OTLP ingestion";

use Kind::*;
use Support::*;

/// All flags, in Thanos' help order.
pub static FLAGS: &[Flag] = &[
    global(f("log.level", Enum(&["error", "warn", "info", "debug"]), Some("info"), "Log filtering level.", Yes)),
    global(f(
        "log.format",
        Enum(&["logfmt", "json", "journald"]),
        Some("logfmt"),
        "Log format: logfmt or json (journald is not supported).",
        Yes,
    )),
    global(hidden(f("debug.name", Str, Some(""), "Name added to every log line.", Yes))),
    global(f("tracing.config-file", Str, None, "Tracing configuration file.", Yes)),
    global(f("tracing.config", Str, None, "Tracing configuration content.", Yes)),
    global(f("enable-auto-gomemlimit", Bool, Some("false"), "Go runtime setting; ignored.", GoRuntime)),
    global(f("auto-gomemlimit.ratio", Float, Some("0.9"), "Go runtime setting; ignored.", GoRuntime)),
    f("http-address", Str, Some("0.0.0.0:10902"), "Listen host:port for the ops HTTP endpoints.", Yes),
    f("http-grace-period", Duration, Some("2m"), "Time to drain in-flight requests after a shutdown signal.", Yes),
    f(
        "http.config",
        Str,
        Some(""),
        "Web configuration file of the ops port (exporter-toolkit: TLS, basic auth, headers, rate limit).",
        Yes,
    ),
    f("grpc-address", Str, Some("0.0.0.0:10901"), "Listen host:port for gRPC (the hashring address).", Yes),
    f("grpc-server-tls-cert", Str, Some(""), "gRPC server TLS certificate.", Yes),
    f("grpc-server-tls-key", Str, Some(""), "gRPC server TLS key.", Yes),
    f("grpc-server-tls-client-ca", Str, Some(""), "gRPC server client CA.", Yes),
    f("grpc-server-tls-min-version", Enum(TLS_VERSIONS), Some("1.3"), "gRPC server minimum TLS version.", Yes),
    f("grpc-server-tls-ciphers", Strings, None, "gRPC server TLS cipher suites (repeatable).", Yes),
    f("grpc-server-tls-curves", Strings, None, "gRPC server TLS curves (repeatable).", Yes),
    f("grpc-server-max-connection-age", Duration, Some("60m"), "gRPC max connection age.", Yes),
    f("grpc-grace-period", Duration, Some("2m"), "gRPC shutdown grace period.", Yes),
    f("store.limits.request-series", Uint, Some("0"), "Max series per Series call.", Yes),
    f("store.limits.request-samples", Uint, Some("0"), "Max samples per Series call.", Yes),
    f("remote-write.address", Str, Some("0.0.0.0:19291"), "Listen host:port for remote write.", Yes),
    f("remote-write.server-tls-cert", Str, Some(""), "Remote-write TLS certificate.", Yes),
    f("remote-write.server-tls-key", Str, Some(""), "Remote-write TLS key.", Yes),
    f("remote-write.server-tls-client-ca", Str, Some(""), "Remote-write client CA.", Yes),
    f("remote-write.server-tls-min-version", Enum(TLS_VERSIONS), Some("1.3"), "Remote-write minimum TLS version.", Yes),
    f("remote-write.server-tls-ciphers", Strings, None, "Remote-write TLS cipher suites (repeatable).", Yes),
    f("remote-write.server-tls-curves", Strings, None, "Remote-write TLS curves (repeatable).", Yes),
    f("remote-write.client-tls-cert", Str, Some(""), "Peer client TLS certificate.", Yes),
    f("remote-write.client-tls-key", Str, Some(""), "Peer client TLS key.", Yes),
    f("remote-write.client-tls-secure", Bool, Some("false"), "Use TLS towards peers.", Yes),
    f("remote-write.client-tls-skip-verify", Bool, Some("false"), "Skip peer TLS verification.", Yes),
    f("remote-write.client-tls-ca", Str, Some(""), "Peer TLS CA.", Yes),
    f("remote-write.client-server-name", Str, Some(""), "Peer TLS server name.", Yes),
    f("remote-write.client-tls-min-version", Enum(TLS_VERSIONS), Some("1.3"), "Peer minimum TLS version.", Yes),
    f("tsdb.path", Str, Some("./data"), "Data directory; one sub-directory per tenant.", Yes),
    f("label", Strings, None, "External label key=\"value\" (repeatable; at least one required).", Yes),
    f("objstore.config-file", Str, None, "Object storage configuration file (absent: uploads disabled).", Yes),
    f("objstore.config", Str, None, "Object storage configuration content (absent: uploads disabled).", Yes),
    f("tsdb.retention", Duration, Some("15d"), "Local retention of blocks (0d: infinite).", Yes),
    f("receive.hashrings-file", Str, None, "Hashring configuration file (watched).", Yes),
    f("receive.hashrings", Str, None, "Hashring configuration content.", Yes),
    f("receive.hashrings-algorithm", Enum(&["hashmod", "ketama"]), Some("hashmod"), "Hashring algorithm.", Yes),
    f("receive.hashrings-file-refresh-interval", Duration, Some("5m"), "Hashring file re-read interval.", Yes),
    f("receive.local-endpoint", Str, None, "This node's endpoint in the hashring.", Yes),
    f("receive.tenant-header", Str, Some("THANOS-TENANT"), "HTTP header naming the tenant.", Yes),
    hidden(f(
        "receive.artificial-max-delay",
        Duration,
        Some("0s"),
        "Test-only forwarding delay.",
        later(PEER, Some("0s")),
    )),
    f(
        "receive.tenant-certificate-field",
        Enum(&["", "organization", "organizationalUnit", "commonName"]),
        Some(""),
        "Client certificate field naming the tenant.",
        Yes,
    ),
    f("receive.default-tenant-id", Str, Some("default-tenant"), "Tenant of requests without a tenant header.", Yes),
    f(
        "receive.split-tenant-label-name",
        Str,
        Some(""),
        "Series label selecting the tenant.",
        later("tenant split label", Some("")),
    ),
    f("receive.tenant-label-name", Str, Some("tenant_id"), "External label naming the tenant.", Yes),
    f("receive.replica-header", Str, Some("THANOS-REPLICA"), "HTTP header with the replica number.", Yes),
    f("receive.forward.async-workers", Uint, Some("5"), "Concurrent forward calls per peer.", Yes),
    f("receive.grpc-compression", Enum(&["snappy", "none"]), Some("snappy"), "Compression towards peers.", Yes),
    f("receive.replication-factor", Uint, Some("1"), "Replication factor.", Yes),
    f(
        "receive.replication-protocol",
        Enum(&["protobuf", "capnproto"]),
        Some("protobuf"),
        "Replication protocol.",
        later(PEER, Some("protobuf")),
    ),
    f(
        "receive.capnproto-address",
        Str,
        Some("0.0.0.0:19391"),
        "Cap'n Proto listen address.",
        later(PEER, Some("0.0.0.0:19391")),
    ),
    f("receive.grpc-service-config", Str, Some(""), "gRPC service config for peers.", later(PEER, Some(""))),
    hidden(f("receive-forward-timeout", Duration, Some("5s"), "Timeout of the forwarding fan-out.", Yes)),
    hidden(f("receive-forward-max-backoff", Duration, Some("5s"), "Max peer backoff.", Yes)),
    f("receive.relabel-config-file", Str, None, "Relabel configuration file.", later("relabelling", None)),
    f("receive.relabel-config", Str, None, "Relabel configuration content.", later("relabelling", None)),
    hidden(f("tsdb.min-block-duration", Duration, Some("2h"), "Block and chunk range.", Yes)),
    hidden(f("tsdb.max-block-duration", Duration, Some("2h"), "Maximum block duration.", Yes)),
    f(
        "tsdb.too-far-in-future.time-window",
        Duration,
        Some("0s"),
        "Reject samples newer than now + this (0s: off).",
        Yes,
    ),
    f("tsdb.out-of-order.time-window", Duration, Some("0s"), "Out-of-order window.", later(OOO, Some("0s"))),
    f("tsdb.out-of-order.cap-max", Int, Some("0"), "Out-of-order chunk capacity.", later(OOO, Some("0"))),
    f("tsdb.allow-overlapping-blocks", Bool, Some("false"), "No-op in Thanos; accepted and ignored.", NoOp),
    f("tsdb.max-retention-bytes", Bytes, Some("0"), "Size-based retention.", later(BLOCKS, Some("0"))),
    f("tsdb.wal-compression", Bool, Some("true"), "Snappy-compress WAL records.", Yes),
    f("tsdb.no-lockfile", Bool, Some("false"), "Do not hold a lock file in each tenant directory.", Yes),
    f("tsdb.head.expanded-postings-cache-size", Uint, Some("0"), "Head postings cache.", later(READ, Some("0"))),
    f("tsdb.block.expanded-postings-cache-size", Uint, Some("0"), "Block postings cache.", later(READ, Some("0"))),
    f(
        "tsdb.max-exemplars",
        Int,
        Some("0"),
        "Exemplar storage size (0: exemplars dropped).",
        later("exemplar storage", Some("0")),
    ),
    hidden(f("tsdb.write-queue-size", Int, Some("0"), "Head chunk write queue.", later(BLOCKS, Some("0")))),
    hidden(f(
        "tsdb.memory-snapshot-on-shutdown",
        Bool,
        Some("false"),
        "Head snapshot on shutdown.",
        later(BLOCKS, Some("false")),
    )),
    f("tsdb.enable-native-histograms", Bool, Some("true"), "Deprecated no-op in Thanos; accepted and ignored.", NoOp),
    f("hash-func", Enum(&["", "SHA256"]), Some(""), "Hash of uploaded files in meta.json (SHA256 or none).", Yes),
    hidden(f("shipper.allow-out-of-order-uploads", Bool, Some("false"), "Upload past a failed block.", Yes)),
    hidden(f("shipper.skip-corrupted-blocks", Bool, Some("false"), "Skip corrupted blocks.", Yes)),
    f("shipper.upload-concurrency", Int, Some("0"), "Chunk files of one block uploaded in parallel (0: one).", Yes),
    f("matcher-cache-size", Int, Some("0"), "Matcher cache size.", later(READ, Some("0"))),
    f("request.logging-config-file", Str, None, "Request logging configuration file.", Yes),
    f("request.logging-config", Str, None, "Request logging configuration content.", Yes),
    hidden(f("receive.limits-config-file", Str, None, "Limits configuration file (read again on change).", Yes)),
    hidden(f("receive.limits-config", Str, None, "Limits configuration content.", Yes)),
    hidden(f("receive.limits-config-reload-timer", Duration, Some("1s"), "Limits reload interval.", Yes)),
    f("receive.otlp-enable-target-info", Bool, Some("true"), "OTLP target_info.", later(OTLP, Some("true"))),
    f(
        "receive.otlp-promote-resource-attributes",
        Strings,
        None,
        "OTLP promoted attributes (repeatable).",
        later(OTLP, None),
    ),
    f("enable-feature", Strings, None, "Experimental features (repeatable).", later("metric-names-filter", None)),
    f(
        "receive.lazy-retrieval-max-buffered-responses",
        Int,
        Some("20"),
        "Lazy retrieval buffer.",
        later(READ, Some("20")),
    ),
    // ringest's own bounds (README "Bounds on what clients may cost").
    f(
        "ringest.write.max-decoded-bytes",
        Bytes,
        Some("32MiB"),
        "Largest write request body, compressed and decompressed (413 past it).",
        Own,
    ),
    f("ringest.write.max-series", Uint, Some("200000"), "Most series in one write request (413 past it).", Own),
    f("ringest.write.max-labels", Uint, Some("4000000"), "Most labels in one write request (413 past it).", Own),
    f("ringest.write.max-samples", Uint, Some("1000000"), "Most samples in one write request (413 past it).", Own),
    f(
        "ringest.write.max-inflight-requests",
        Uint,
        Some("256"),
        "Most write requests in flight, HTTP and gRPC together (503 with Retry-After past it).",
        Own,
    ),
    f(
        "ringest.write.max-inflight-bytes",
        Bytes,
        Some("128MiB"),
        "Most bytes the write requests in flight may hold: bodies, decompressed bodies, decoded forms \
         (503 with Retry-After past it). A sixteenth is held back for what no request is charged.",
        Own,
    ),
    f(
        "ringest.write.bulk-bytes",
        Bytes,
        Some("4MiB"),
        "Write requests that decompress to more than this are decoded by threads of the lowest CPU priority \
         (half the cores), so that they give way to smaller writes.",
        Own,
    ),
    f(
        "ringest.http.header-read-timeout",
        Duration,
        Some("30s"),
        "Longest wait for a request's headers, and for the next request on an idle keep-alive connection.",
        Own,
    ),
    f(
        "ringest.http.body-read-timeout",
        Duration,
        Some("1m"),
        "Longest time to read a write request's body (408 past it).",
        Own,
    ),
    f(
        "ringest.http.max-header-bytes",
        Bytes,
        Some("64KiB"),
        "Largest request line and headers (431 past it). A connection that received headers this large keeps a read buffer of this size while it stays open.",
        Own,
    ),
    f(
        "ringest.http.max-connections",
        Uint,
        Some("4096"),
        "Most open connections per HTTP port; new ones are closed at once past it.",
        Own,
    ),
    f(
        "ringest.grpc.max-concurrent-streams",
        Uint,
        Some("1000"),
        "Most concurrent calls (HTTP/2 streams) per gRPC connection.",
        Own,
    ),
    f(
        "ringest.grpc.keepalive-time",
        Duration,
        Some("2h"),
        "How long a gRPC connection may be silent before the server pings it.",
        Own,
    ),
    f(
        "ringest.grpc.keepalive-timeout",
        Duration,
        Some("20s"),
        "How long the server waits for a ping's answer before closing the connection.",
        Own,
    ),
    f(
        "ringest.grpc.max-connection-idle",
        Duration,
        Some("15m"),
        "How long a gRPC connection may have no call in flight (or not send its HTTP/2 preface) before it is closed \
         gracefully.",
        Own,
    ),
    f(
        "ringest.tsdb.wal-discard-after-gap",
        Bool,
        Some("false"),
        "Open a tenant whose WAL misses a segment by setting the segments after the gap aside in \
         wal/discarded.<N>/ (their samples are lost). Without it that tenant fails to open, as in Prometheus.",
        Own,
    ),
    f(
        "ringest.max-tenants",
        Uint,
        Some("10000"),
        "Most tenants (TSDBs) on this node; writes for a new tenant past it get 429 (0: no limit).",
        Own,
    ),
    f(
        "ringest.tenant-header.trusted-from",
        Strings,
        None,
        "Honour the tenant header only from these clients (repeatable): a network (10.0.0.0/8), an address, or \
         cn=NAME for a verified client certificate; others naming a tenant get 403. Default: from anyone.",
        Own,
    ),
];

/// Looks a flag up by name.
pub fn flag(name: &str) -> &'static Flag {
    FLAGS.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("unknown flag {name}"))
}

fn no_name(name: &str) -> String {
    format!("no-{name}")
}

fn validate(kind: Kind) -> impl Fn(&str) -> Result<String, String> + Clone + Send + Sync + 'static {
    move |s: &str| -> Result<String, String> {
        match kind {
            Duration => parse_duration_ms(s).map(|_| s.to_string()),
            Bytes => parse_bytes(s).map(|_| s.to_string()),
            Uint => s.parse::<u64>().map(|_| s.to_string()).map_err(|e| format!("{s:?}: {e}")),
            Int => s.parse::<i64>().map(|_| s.to_string()).map_err(|e| format!("{s:?}: {e}")),
            Float => s.parse::<f64>().map(|_| s.to_string()).map_err(|e| format!("{s:?}: {e}")),
            Enum(values) if !values.contains(&s) => {
                Err(format!("enum value must be one of {}, got '{s}'", values.join(",")))
            }
            _ => Ok(s.to_string()),
        }
    }
}

/// Adds the flags to `cmd` (global ones when `globals`, the others otherwise).
pub fn add_args(mut cmd: Command, globals: bool) -> Command {
    cmd = cmd.next_line_help(true);
    for fl in FLAGS.iter().filter(|f| f.global == globals) {
        let mut help = fl.help.to_string();
        match fl.support {
            Later { needs, .. } => help.push_str(&format!(" [not implemented yet: {needs}]")),
            Own => help.push_str(" [ringest only]"),
            _ => {}
        }
        match fl.kind {
            Bool => {
                let default = fl.default == Some("true");
                help.push_str(&format!(
                    " (default: {default}; --{} to {})",
                    if default { no_name(fl.name) } else { fl.name.to_string() },
                    if default { "disable" } else { "enable" }
                ));
                cmd = cmd
                    .arg(
                        Arg::new(fl.name)
                            .long(fl.name)
                            .action(ArgAction::SetTrue)
                            .help(help)
                            .hide(fl.hidden)
                            .global(fl.global)
                            .overrides_with(no_name(fl.name)),
                    )
                    .arg(
                        Arg::new(no_name(fl.name))
                            .long(no_name(fl.name))
                            .action(ArgAction::SetTrue)
                            .hide(true)
                            .global(fl.global)
                            .overrides_with(fl.name),
                    );
            }
            kind => {
                let mut arg = Arg::new(fl.name)
                    .long(fl.name)
                    .help(help)
                    .hide(fl.hidden)
                    .global(fl.global)
                    .allow_hyphen_values(true)
                    .value_parser(clap::builder::ValueParser::new(validate(kind)));
                arg = if kind == Strings { arg.action(ArgAction::Append) } else { arg.action(ArgAction::Set) };
                if let Some(d) = fl.default {
                    if !d.is_empty() {
                        arg = arg.default_value(d);
                    } else {
                        arg = arg.default_value("").hide_default_value(true);
                    }
                }
                arg = arg.value_name(match kind {
                    Enum(values) => values.iter().copied().filter(|v| !v.is_empty()).collect::<Vec<_>>().join("|"),
                    Duration => "DURATION".into(),
                    Bytes => "BYTES".into(),
                    Uint | Int => "N".into(),
                    Float => "FLOAT".into(),
                    _ => "VALUE".into(),
                });
                cmd = cmd.arg(arg);
            }
        }
    }
    cmd
}

/// True when the flag was given on the command line.
pub fn given(m: &ArgMatches, fl: &Flag) -> bool {
    let src =
        |id: &str| m.try_get_raw(id).ok().flatten().is_some() && m.value_source(id) == Some(ValueSource::CommandLine);
    src(fl.name) || (fl.kind == Bool && src(&no_name(fl.name)))
}

/// The effective value of a bool flag.
pub fn get_bool(m: &ArgMatches, name: &str) -> bool {
    let fl = flag(name);
    if m.get_flag(name) {
        true
    } else if m.get_flag(&no_name(name)) {
        false
    } else {
        fl.default == Some("true")
    }
}

/// The effective value of a single-valued flag (its default when not given).
pub fn get_str(m: &ArgMatches, name: &str) -> Option<String> {
    m.get_one::<String>(name).cloned()
}

/// All values of a repeatable flag.
pub fn get_all(m: &ArgMatches, name: &str) -> Vec<String> {
    m.get_many::<String>(name).map(|v| v.cloned().collect()).unwrap_or_default()
}

fn same_value(kind: Kind, a: &str, b: &str) -> bool {
    match kind {
        Duration => parse_duration_ms(a).ok() == parse_duration_ms(b).ok(),
        Bytes => parse_bytes(a).ok() == parse_bytes(b).ok(),
        Uint => a.parse::<u64>().ok() == b.parse::<u64>().ok(),
        Int => a.parse::<i64>().ok() == b.parse::<i64>().ok(),
        Float => a.parse::<f64>().ok() == b.parse::<f64>().ok(),
        _ => a == b,
    }
}

/// Checks the flags given on the command line against what ringest implements. Returns the
/// names of accepted-but-ignored flags (to log at debug level) or the first rejection.
pub fn check_support(m: &ArgMatches) -> Result<Vec<(&'static str, &'static str)>, String> {
    let mut ignored = Vec::new();
    for fl in FLAGS {
        if !given(m, fl) {
            continue;
        }
        match fl.support {
            Yes | Own => {}
            GoRuntime => ignored.push((fl.name, "it only tunes the Go runtime")),
            NoOp => ignored.push((fl.name, "Thanos ignores it too")),
            Later { needs, off } => {
                let value: Option<String> = match fl.kind {
                    Bool => Some(get_bool(m, fl.name).to_string()),
                    Strings => {
                        let all = get_all(m, fl.name);
                        if all.iter().all(String::is_empty) { None } else { Some(all.join(",")) }
                    }
                    _ => get_str(m, fl.name),
                };
                let accepted = match (value.as_deref(), off) {
                    (None, _) => true,
                    (Some(""), None) => true,
                    (Some(v), Some(off)) => same_value(fl.kind, v, off),
                    (Some(_), None) => false,
                };
                if !accepted {
                    let tail = match off {
                        Some("") => "; leave it empty or remove it".to_string(),
                        Some(off) => format!("; only --{}={off} is accepted", fl.name),
                        None => "; remove it".to_string(),
                    };
                    return Err(format!("flag --{} is not implemented by ringest yet (needs {needs}){tail}", fl.name));
                }
            }
        }
    }
    Ok(ignored)
}
