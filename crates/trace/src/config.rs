//! `--tracing.config` / `--tracing.config-file`: Thanos' tracing YAML (`type` and `config`),
//! read as Thanos reads it: the outer document strictly, the provider's `config` by the keys
//! Thanos knows. A key Thanos would ignore is reported as a warning, never dropped in silence;
//! a provider ringest has no exporter for is refused by name.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};

/// A tracing configuration that ringest cannot use, and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not YAML, or not the shape Thanos reads.
    #[error("parsing config tracing YAML: {0}")]
    Yaml(String),
    /// A provider Thanos knows and ringest does not export to.
    #[error("tracing with type {0} is not supported by ringest yet: use OTLP (client_type grpc or http) or JAEGER")]
    Unsupported(String),
    /// A provider nobody knows.
    #[error("tracing with type {0} is not supported")]
    Unknown(String),
    /// A value of the provider's `config` that cannot be used.
    #[error("{provider}: {message}")]
    Invalid {
        /// `otlp` or `jaeger`.
        provider: &'static str,
        /// What is wrong, naming the key.
        message: String,
    },
}

/// A parsed tracing configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// Where spans go.
    pub exporter: Exporter,
    /// Keys of `config` that Thanos ignores too, to be logged as warnings.
    pub warnings: Vec<String>,
}

/// The provider and its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum Exporter {
    /// `type: OTLP`.
    Otlp(Otlp),
    /// `type: JAEGER`.
    Jaeger(Jaeger),
}

/// OTLP's transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientType {
    /// OTLP/gRPC (`TraceService/Export`).
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    Http,
}

/// TLS towards the collector (`tls_config`, Thanos' `exthttp.TLSConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tls {
    /// CA file.
    pub ca_file: String,
    /// Client certificate file.
    pub cert_file: String,
    /// Its key file.
    pub key_file: String,
    /// The name the collector's certificate is checked against.
    pub server_name: String,
    /// Accept any certificate.
    pub insecure_skip_verify: bool,
}

/// `type: OTLP`'s `config`.
#[derive(Debug, Clone, PartialEq)]
pub struct Otlp {
    /// `client_type`.
    pub client_type: ClientType,
    /// `service_name` (the resource's `service.name`; none when empty, as Thanos).
    pub service_name: String,
    /// `resource_attributes`.
    pub resource_attributes: BTreeMap<String, String>,
    /// `compression`: only `gzip` compresses.
    pub gzip: bool,
    /// `insecure`: plain text; else TLS with `tls_config`.
    pub insecure: bool,
    /// `endpoint` (`host:port`); empty: the OTLP default of the client type.
    pub endpoint: String,
    /// `url_path` (HTTP only); empty: `/v1/traces`.
    pub url_path: String,
    /// `timeout` of one export (default 10 s).
    pub timeout: Duration,
    /// `retry_config`, when `retry_enabled`.
    pub retry: Option<Retry>,
    /// `headers` sent with every export.
    pub headers: BTreeMap<String, String>,
    /// `tls_config`.
    pub tls: Tls,
    /// `sampler_type` and `sampler_param`.
    pub sampler: OtlpSampler,
}

/// Retries of a failed export (`retry_config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// First delay (default 5 s).
    pub initial: Duration,
    /// Longest delay (default 30 s).
    pub max: Duration,
    /// Time after which an export is given up (default 1 min).
    pub max_elapsed: Duration,
}

/// OTLP's `sampler_type` (Thanos' names, case-insensitive).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OtlpSampler {
    /// `alwayssample`.
    Always,
    /// `neversample`.
    Never,
    /// `traceidratiobased` with its ratio.
    Ratio(f64),
    /// `parentbasedalwayssample`.
    ParentAlways,
    /// `parentbasedneversample`.
    ParentNever,
    /// `parentbasedtraceidratiobased`, and the default (ratio 1).
    ParentRatio(f64),
}

/// `type: JAEGER`'s `config` (the keys Thanos' Jaeger exporter uses).
#[derive(Debug, Clone, PartialEq)]
pub struct Jaeger {
    /// `service_name`.
    pub service_name: String,
    /// `tags`: `k=v,k2=${ENV:default}` as process tags.
    pub tags: Vec<(String, String)>,
    /// `sampler_type`, `sampler_param` and the remote sampler's keys.
    pub sampler: JaegerSampler,
    /// `sampler_parent_config`.
    pub parent: ParentConfig,
    /// `reporter_max_queue_size` (0: the batcher's default).
    pub max_queue_size: usize,
    /// `reporter_flush_interval` (zero: the batcher's default).
    pub flush_interval: Duration,
    /// Where batches go.
    pub target: JaegerTarget,
}

/// Jaeger's `sampler_parent_config`: whether a parent's decision is taken as is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ParentConfig {
    /// Use the root sampler for local sampled parents instead of sampling them.
    pub local_parent_sampled: bool,
    /// Use the root sampler for remote sampled parents instead of sampling them.
    pub remote_parent_sampled: bool,
}

/// Jaeger's samplers.
#[derive(Debug, Clone, PartialEq)]
pub enum JaegerSampler {
    /// `const`: all (param 1) or nothing.
    Const(bool),
    /// `probabilistic` with its ratio.
    Probabilistic(f64),
    /// `remote` and `ratelimiting` (Thanos' default): strategies polled from the agent.
    Remote {
        /// `sampling_server_url` (default `http://127.0.0.1:5778/sampling`).
        url: String,
        /// `sampler_refresh_interval` (default 1 min).
        refresh: Duration,
        /// `initial_sampler_rate` (default 0.001): the ratio until a strategy arrives.
        initial_rate: f64,
    },
}

/// Where Jaeger batches are sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JaegerTarget {
    /// `endpoint`: a collector's `/api/traces` (Thrift binary over HTTP), with `user` and
    /// `password` as basic auth.
    Collector {
        /// The URL.
        url: String,
        /// Basic auth user (empty: none).
        user: String,
        /// Its password.
        password: String,
    },
    /// `agent_host` and `agent_port` (default `localhost:6831`): Thrift compact over UDP.
    Agent {
        /// Host.
        host: String,
        /// Port.
        port: u16,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Outer {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    config: Option<Value>,
}

/// Parses a tracing YAML document. `None` when it is empty (tracing off, as Thanos).
pub fn parse(yaml: &str) -> Result<Option<TracingConfig>, ConfigError> {
    if yaml.trim().is_empty() {
        return Ok(None);
    }
    let outer: Outer = serde_yaml_ng::from_str(yaml).map_err(|e| ConfigError::Yaml(e.to_string()))?;
    let config = match outer.config {
        None | Some(Value::Null) => Mapping::new(),
        Some(Value::Mapping(m)) => m,
        Some(other) => return Err(ConfigError::Yaml(format!("config: expected a mapping, got {other:?}"))),
    };
    let mut keys = Keys { map: config, warnings: Vec::new() };
    let exporter = match outer.kind.to_ascii_uppercase().as_str() {
        "OTLP" => Exporter::Otlp(otlp(&mut keys)?),
        "JAEGER" => Exporter::Jaeger(jaeger(&mut keys)?),
        "STACKDRIVER" | "GOOGLE_CLOUD" | "ELASTIC_APM" | "LIGHTSTEP" => {
            return Err(ConfigError::Unsupported(outer.kind));
        }
        _ => return Err(ConfigError::Unknown(outer.kind)),
    };
    let provider = match exporter {
        Exporter::Otlp(_) => "otlp",
        Exporter::Jaeger(_) => "jaeger",
    };
    for (k, _) in keys.map {
        let k = k.as_str().map_or_else(|| format!("{k:?}"), str::to_string);
        keys.warnings.push(format!("{provider}: unknown key {k:?} in the tracing config is ignored (as Thanos does)"));
    }
    Ok(Some(TracingConfig { exporter, warnings: keys.warnings }))
}

/// The provider's keys, taken one by one; what is left at the end is unknown.
struct Keys {
    map: Mapping,
    warnings: Vec<String>,
}

impl Keys {
    fn take<T: serde::de::DeserializeOwned>(&mut self, p: &'static str, key: &str) -> Result<Option<T>, ConfigError> {
        match self.map.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_yaml_ng::from_value(v)
                .map(Some)
                .map_err(|e| ConfigError::Invalid { provider: p, message: format!("{key}: {e}") }),
        }
    }

    fn string(&mut self, p: &'static str, key: &str) -> Result<String, ConfigError> {
        Ok(self.take::<Value>(p, key)?.map(|v| scalar(&v)).unwrap_or_default())
    }

    fn bool(&mut self, p: &'static str, key: &str) -> Result<bool, ConfigError> {
        Ok(self.take(p, key)?.unwrap_or(false))
    }

    fn duration(&mut self, p: &'static str, key: &str) -> Result<Option<Duration>, ConfigError> {
        let Some(v) = self.take::<Value>(p, key)? else { return Ok(None) };
        go_duration(&v)
            .map(Some)
            .map_err(|message| ConfigError::Invalid { provider: p, message: format!("{key}: {message}") })
    }
}

/// A scalar as Go's YAML would read it into a string.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// A Go `time.Duration` in YAML: a string (`1m30s`) or an integer of nanoseconds.
fn go_duration(v: &Value) -> Result<Duration, String> {
    match v {
        Value::Number(n) => n.as_u64().map(Duration::from_nanos).ok_or_else(|| format!("{n} is not a duration")),
        Value::String(s) if s == "0" => Ok(Duration::ZERO),
        Value::String(s) => humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}")),
        other => Err(format!("{other:?} is not a duration")),
    }
}

fn otlp(k: &mut Keys) -> Result<Otlp, ConfigError> {
    const P: &str = "otlp";
    let invalid = |message: String| ConfigError::Invalid { provider: P, message };
    let client_type = match k.string(P, "client_type")?.as_str() {
        "grpc" => ClientType::Grpc,
        "http" => ClientType::Http,
        _ => return Err(invalid("invalid client type. Only 'http' and 'grpc' are accepted.".into())),
    };
    let service_name = k.string(P, "service_name")?;
    let resource_attributes = k.take(P, "resource_attributes")?.unwrap_or_default();
    if let Some(d) = k.duration(P, "reconnection_period")? {
        k.warnings.push(format!(
            "otlp: reconnection_period {d:?} has no effect in ringest: a lost collector connection is opened again at the next export"
        ));
    }
    let gzip = match k.string(P, "compression")?.as_str() {
        "" => false,
        "gzip" => true,
        other => {
            k.warnings.push(format!("otlp: compression {other:?} is ignored (as Thanos does): only gzip compresses"));
            false
        }
    };
    let insecure = k.bool(P, "insecure")?;
    let endpoint = k.string(P, "endpoint")?;
    let url_path = k.string(P, "url_path")?;
    let timeout = k.duration(P, "timeout")?.filter(|d| !d.is_zero()).unwrap_or(Duration::from_secs(10));
    let retry = match k.take::<Mapping>(P, "retry_config")? {
        None => None,
        Some(m) => {
            let mut r = Keys { map: m, warnings: Vec::new() };
            let enabled = r.bool(P, "retry_enabled")?;
            let nonzero =
                |d: Option<Duration>, default: u64| d.filter(|d| !d.is_zero()).unwrap_or(Duration::from_secs(default));
            let initial = nonzero(r.duration(P, "retry_initial_interval")?, 5);
            let max = nonzero(r.duration(P, "retry_max_interval")?, 30);
            let max_elapsed = nonzero(r.duration(P, "retry_max_elapsed_time")?, 60);
            if let Some((key, _)) = r.map.into_iter().next() {
                return Err(invalid(format!("retry_config: unknown key {}", scalar(&key))));
            }
            enabled.then_some(Retry { initial, max, max_elapsed })
        }
    };
    let headers = k.take(P, "headers")?.unwrap_or_default();
    let tls = k.take(P, "tls_config")?.unwrap_or_default();
    let sampler_type = k.string(P, "sampler_type")?.to_ascii_lowercase();
    let param = k.string(P, "sampler_param")?;
    let ratio = || -> Result<f64, ConfigError> {
        let r: f64 = param.trim().parse().map_err(|_| invalid(format!("sampler_param {param:?} is not a number")))?;
        if !(0.0..=1.0).contains(&r) {
            return Err(invalid(format!("sampler_param {r} is not a ratio between 0 and 1")));
        }
        Ok(r)
    };
    let sampler = match sampler_type.as_str() {
        "alwayssample" => OtlpSampler::Always,
        "neversample" => OtlpSampler::Never,
        "traceidratiobased" => OtlpSampler::Ratio(ratio()?),
        "parentbasedalwayssample" => OtlpSampler::ParentAlways,
        "parentbasedneversample" => OtlpSampler::ParentNever,
        "parentbasedtraceidratiobased" => OtlpSampler::ParentRatio(ratio()?),
        "" => OtlpSampler::ParentRatio(1.0),
        other => return Err(invalid(format!("unknown sampler_type {other:?}"))),
    };
    Ok(Otlp {
        client_type,
        service_name,
        resource_attributes,
        gzip,
        insecure,
        endpoint,
        url_path,
        timeout,
        retry,
        headers,
        tls,
        sampler,
    })
}

fn jaeger(k: &mut Keys) -> Result<Jaeger, ConfigError> {
    const P: &str = "jaeger";
    let invalid = |message: String| ConfigError::Invalid { provider: P, message };
    let service_name = k.string(P, "service_name")?;
    for key in ["disabled", "rpc_metrics", "traceid_128bit"] {
        if k.bool(P, key)? {
            k.warnings.push(format!("jaeger: {key} has been deprecated as a config option (as in Thanos)"));
        }
    }
    let tags = parse_tags(&k.string(P, "tags")?, |name| std::env::var(name).ok());
    let sampler_type = k.string(P, "sampler_type")?;
    let param: f64 = k.take(P, "sampler_param")?.unwrap_or(0.0);
    let url = k.string(P, "sampling_server_url")?;
    let manager = k.string(P, "sampler_manager_host_port")?;
    let refresh =
        k.duration(P, "sampler_refresh_interval")?.filter(|d| !d.is_zero()).unwrap_or(Duration::from_secs(60));
    let initial_rate: f64 = k.take(P, "initial_sampler_rate")?.unwrap_or(0.0);
    for key in ["sampler_max_operations", "operation_name_late_binding"] {
        if k.take::<Value>(P, key)?.is_some() {
            k.warnings.push(format!(
                "jaeger: {key} has no effect in ringest: its remote sampler applies the service's default strategy"
            ));
        }
    }
    let sampler = match sampler_type.as_str() {
        "const" => JaegerSampler::Const(param.round() >= 1.0),
        "probabilistic" => {
            if !(0.0..=1.0).contains(&param) {
                return Err(invalid(format!("sampler_param {param} is not a ratio between 0 and 1")));
            }
            JaegerSampler::Probabilistic(param)
        }
        "remote" | "ratelimiting" | "" => {
            let url = if !url.is_empty() {
                url
            } else if !manager.is_empty() {
                format!("http://{manager}/sampling")
            } else {
                "http://127.0.0.1:5778/sampling".to_string()
            };
            JaegerSampler::Remote { url, refresh, initial_rate: if initial_rate > 0.0 { initial_rate } else { 0.001 } }
        }
        other => return Err(invalid(format!("unknown sampler_type {other:?}"))),
    };
    let parent = k.take(P, "sampler_parent_config")?.unwrap_or_default();
    let max_queue_size = k.take::<i64>(P, "reporter_max_queue_size")?.unwrap_or(0).max(0) as usize;
    let flush_interval = k.duration(P, "reporter_flush_interval")?.unwrap_or_default();
    for key in ["reporter_log_spans", "reporter_disable_attempt_reconnecting", "reporter_attempt_reconnect_interval"] {
        if k.take::<Value>(P, key)?.is_some() {
            k.warnings.push(format!("jaeger: {key} has no effect in ringest: each batch is one UDP datagram"));
        }
    }
    let endpoint = k.string(P, "endpoint")?;
    let user = k.string(P, "user")?;
    let password = k.string(P, "password")?;
    let host = k.string(P, "agent_host")?;
    let port: i64 = k.take(P, "agent_port")?.unwrap_or(0);
    let target = if !endpoint.is_empty() {
        JaegerTarget::Collector { url: endpoint, user, password }
    } else if !host.is_empty() && port != 0 {
        let port = u16::try_from(port).map_err(|_| invalid(format!("agent_port {port} is not a port")))?;
        JaegerTarget::Agent { host, port }
    } else {
        JaegerTarget::Agent { host: "localhost".into(), port: 6831 }
    };
    Ok(Jaeger { service_name, tags, sampler, parent, max_queue_size, flush_interval, target })
}

/// Jaeger's `tags`: `k=v` pairs separated by commas; a value `${NAME:default}` is the
/// environment variable `NAME`, or `default` when it is unset or empty. Pairs without `=` are
/// skipped, as Thanos skips them.
fn parse_tags(s: &str, env: impl Fn(&str) -> Option<String>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for pair in s.split(',') {
        let Some((k, v)) = pair.split_once('=') else { continue };
        let (k, mut v) = (k.trim().to_string(), v.trim().to_string());
        if let Some(inner) = v.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
            let (name, default) = inner.split_once(':').unwrap_or((inner, ""));
            v = env(name).filter(|x| !x.is_empty()).unwrap_or_else(|| default.to_string());
        }
        out.push((k, v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn otlp_of(yaml: &str) -> Otlp {
        match parse(yaml).unwrap().unwrap().exporter {
            Exporter::Otlp(o) => o,
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn otlp_as_thanos_documents_it() {
        let o = otlp_of(
            "type: otlp\nconfig:\n  client_type: grpc\n  service_name: receive\n  endpoint: 127.0.0.1:4317\n  insecure: true\n  \
             compression: gzip\n  timeout: 1m30s\n  headers:\n    x-key: v\n  sampler_type: traceidratiobased\n  sampler_param: \"0.5\"\n",
        );
        assert_eq!(o.client_type, ClientType::Grpc);
        assert_eq!(
            (o.service_name.as_str(), o.endpoint.as_str(), o.insecure, o.gzip),
            ("receive", "127.0.0.1:4317", true, true)
        );
        assert_eq!(o.timeout, Duration::from_secs(90));
        assert_eq!(o.headers.get("x-key").map(String::as_str), Some("v"));
        assert_eq!(o.sampler, OtlpSampler::Ratio(0.5));
        let o = otlp_of("type: OTLP\nconfig:\n  client_type: http\n");
        assert_eq!(
            (o.client_type, o.sampler, o.timeout),
            (ClientType::Http, OtlpSampler::ParentRatio(1.0), Duration::from_secs(10))
        );
    }

    #[test]
    fn refusals_name_the_problem() {
        let err = |y: &str| parse(y).unwrap_err().to_string();
        assert!(err("type: OTLP\nconfig:\n  client_type: udp\n").contains("Only 'http' and 'grpc'"));
        assert!(err("type: LIGHTSTEP\nconfig: {}\n").contains("not supported by ringest yet"));
        assert!(err("type: ZIPKIN\n").contains("tracing with type ZIPKIN is not supported"));
        assert!(err("type: OTLP\nbogus: 1\n").contains("parsing config tracing YAML"));
        assert!(
            err("type: OTLP\nconfig:\n  client_type: grpc\n  sampler_type: traceidratiobased\n  sampler_param: x\n")
                .contains("sampler_param")
        );
        assert!(err("type: OTLP\nconfig:\n  client_type: grpc\n  timeout: soon\n").contains("timeout"));
        assert!(parse("").unwrap().is_none());
    }

    #[test]
    fn unknown_keys_are_warned_about() {
        let c = parse("type: OTLP\nconfig:\n  client_type: grpc\n  endpont: x:1\n").unwrap().unwrap();
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("\"endpont\""), "{:?}", c.warnings);
    }

    #[test]
    fn jaeger_defaults_and_targets() {
        let j = match parse("type: JAEGER\nconfig:\n  service_name: r\n").unwrap().unwrap().exporter {
            Exporter::Jaeger(j) => j,
            e => panic!("{e:?}"),
        };
        assert_eq!(j.target, JaegerTarget::Agent { host: "localhost".into(), port: 6831 });
        assert!(
            matches!(j.sampler, JaegerSampler::Remote { ref url, initial_rate, .. } if url == "http://127.0.0.1:5778/sampling" && initial_rate == 0.001)
        );
        let j = match parse(
            "type: JAEGER\nconfig:\n  sampler_type: const\n  sampler_param: 1\n  endpoint: http://c:14268/api/traces\n  user: u\n  password: p\n",
        )
        .unwrap()
        .unwrap()
        .exporter
        {
            Exporter::Jaeger(j) => j,
            e => panic!("{e:?}"),
        };
        assert_eq!(j.sampler, JaegerSampler::Const(true));
        assert_eq!(
            j.target,
            JaegerTarget::Collector { url: "http://c:14268/api/traces".into(), user: "u".into(), password: "p".into() }
        );
    }

    #[test]
    fn tags_with_environment_defaults() {
        let env = |n: &str| (n == "SET").then(|| "from-env".to_string());
        let tags = parse_tags("a=1, b = ${SET:x},c=${UNSET:dflt},broken", env);
        let want = [("a", "1"), ("b", "from-env"), ("c", "dflt")].map(|(k, v)| (k.to_string(), v.to_string()));
        assert_eq!(tags, want);
    }
}
