//! `--request.logging-config`: Thanos' request logging configuration, as Thanos Receive reads
//! it. Receive applies it to its gRPC server only (the `http` section configures other Thanos
//! components and is accepted and not used here, as in Thanos): every call of the listed
//! methods (all, when none is listed) logs "started call" and/or "finished call" with
//! go-grpc-middleware's fields, at debug level, or at error level for the codes Unknown,
//! Unimplemented, Internal and DataLoss. The YAML is parsed strictly and checked with Thanos'
//! rules and messages.

use std::sync::Arc;
use std::time::SystemTime;

use ringest_grpc::{CallEnd, CallMeta, Code, Method, Observer};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    #[allow(dead_code)] // Parsed (strictly, as Thanos does) and not used by a receive.
    http: RawProtocol<RawHttpEntry>,
    #[serde(default)]
    grpc: RawProtocol<RawGrpcEntry>,
    #[serde(default)]
    options: RawOptions,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProtocol<E> {
    #[serde(default)]
    options: RawOptions,
    #[serde(default = "Vec::new")]
    config: Vec<E>,
}

impl<E> Default for RawProtocol<E> {
    fn default() -> Self {
        RawProtocol { options: RawOptions::default(), config: Vec::new() }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOptions {
    #[serde(default)]
    level: String,
    #[serde(default)]
    decision: RawDecision,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDecision {
    #[serde(default)]
    log_start: bool,
    #[serde(default)]
    log_end: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Parsed (strictly, as Thanos does) and not used by a receive.
struct RawHttpEntry {
    #[serde(default)]
    path: String,
    #[serde(default)]
    port: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrpcEntry {
    #[serde(default)]
    service: String,
    #[serde(default)]
    method: String,
}

/// Which gRPC calls are logged, and which of their events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLog {
    /// Log "started call".
    pub log_start: bool,
    /// Log "finished call".
    pub log_end: bool,
    /// The full method names (`/thanos.Store/Series`) logged; empty: every method.
    pub methods: Vec<String>,
}

/// Thanos' `checkOptionsConfigEmpty`: `None` when the options say nothing.
fn options(o: &RawOptions) -> Result<Option<(&str, bool, bool)>, String> {
    let d = &o.decision;
    match (o.level.is_empty(), d.log_start || d.log_end) {
        (true, false) => Ok(None),
        (true, true) => Err("level field is empty".into()),
        (false, _) => Ok(Some((o.level.as_str(), d.log_start, d.log_end))),
    }
}

/// Parses the configuration (`None`: nothing is logged). Errors carry Thanos' messages.
pub fn parse(yaml: &str) -> Result<Option<RequestLog>, String> {
    if yaml.trim().is_empty() {
        return Ok(None);
    }
    let raw: RawConfig = serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())?;
    // The global options, overridden by the gRPC section's when it has any.
    let (level, log_start, log_end) =
        options(&raw.grpc.options)?.or(options(&raw.options)?).unwrap_or(("ERROR", false, false));
    if !log_start && !log_end {
        return Ok(None);
    }
    if !["INFO", "DEBUG", "ERROR", "WARNING"].contains(&level) {
        return Err(format!("the format of level is invalid. Expected INFO/DEBUG/ERROR/WARNING, got this {level}"));
    }
    if log_start && !log_end {
        return Err("log decision combination is not supported".into());
    }
    let methods = raw.grpc.config.iter().map(|c| format!("/{}/{}", c.service, c.method)).collect();
    Ok(Some(RequestLog { log_start, log_end, methods }))
}

/// An [`Observer`] that logs the calls `log` selects and passes every call on to `inner`.
pub struct LoggedCalls {
    inner: Arc<dyn Observer>,
    log: RequestLog,
}

impl LoggedCalls {
    /// Logs what `log` selects, and reports every call to `inner`.
    pub fn new(inner: Arc<dyn Observer>, log: RequestLog) -> LoggedCalls {
        LoggedCalls { inner, log }
    }

    fn selects(&self, m: &Method) -> bool {
        self.log.methods.is_empty()
            || self.log.methods.iter().any(|full| {
                full.strip_prefix('/')
                    .and_then(|rest| rest.split_once('/'))
                    .is_some_and(|(service, name)| service == m.service && name == m.name)
            })
    }
}

/// go-grpc-middleware's duration field: milliseconds with microsecond precision.
fn time_ms(seconds: f64) -> String {
    let micros = (seconds * 1e6) as u64;
    format!("{}", micros as f64 / 1000.0)
}

/// Go's `time.RFC3339` (second precision).
fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// One log line of a call, at `error` or `debug` level.
macro_rules! call_line {
    ($error:expr, $msg:expr, $call:expr, $($k:tt)*) => {{
        let m = &$call.method;
        // Thanos makes up a request ID for each line when the client sent none.
        let request_id = $call.request_id.clone().unwrap_or_else(|| ulid::Ulid::new().to_string());
        let (peer, start) = ($call.peer.to_string(), rfc3339($call.start));
        let deadline = $call.deadline.map(rfc3339);
        if $error {
            tracing::error!(
                service = "gRPC/server", requestID = %request_id, protocol = "grpc", grpc.component = "server",
                grpc.service = %m.service, grpc.method = %m.name, grpc.method_type = m.kind.as_str(),
                peer.address = %peer, grpc.start_time = %start, grpc.request.deadline = deadline, $($k)* $msg
            )
        } else {
            tracing::debug!(
                service = "gRPC/server", requestID = %request_id, protocol = "grpc", grpc.component = "server",
                grpc.service = %m.service, grpc.method = %m.name, grpc.method_type = m.kind.as_str(),
                peer.address = %peer, grpc.start_time = %start, grpc.request.deadline = deadline, $($k)* $msg
            )
        }
    }};
}

impl Observer for LoggedCalls {
    fn serving(&self, methods: &[Method]) {
        self.inner.serving(methods);
    }

    fn started(&self, call: &CallMeta) {
        self.inner.started(call);
        if self.log.log_start && self.selects(&call.method) {
            call_line!(false, "started call", call, grpc.time_ms = "0",);
        }
    }

    fn handled(&self, call: &CallMeta, end: CallEnd<'_>) {
        self.inner.handled(call, end);
        if self.log.log_end && self.selects(&call.method) {
            let error = matches!(end.code, Code::Unknown | Code::Unimplemented | Code::Internal | Code::DataLoss);
            let (code, ms) = (end.code.as_str(), time_ms(end.seconds));
            call_line!(error, "finished call", call, grpc.code = code, grpc.error = end.message, grpc.time_ms = %ms,);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thanos_rules_and_messages() {
        assert_eq!(parse("").unwrap(), None);
        // No decision anywhere: nothing logged, whatever the level says.
        assert_eq!(parse("options:\n  level: NONSENSE\n").unwrap(), None);
        let all = parse("options:\n  level: INFO\n  decision:\n    log_start: true\n    log_end: true\n").unwrap();
        assert_eq!(all, Some(RequestLog { log_start: true, log_end: true, methods: vec![] }));
        // The gRPC section overrides the global options; the http section is not used.
        let grpc = parse(
            "http:\n  options:\n    level: DEBUG\n    decision:\n      log_start: true\n      log_end: true\n  \
             config:\n    - path: /api/v1/receive\n      port: 19291\n\
             grpc:\n  options:\n    level: ERROR\n    decision:\n      log_end: true\n  \
             config:\n    - service: thanos.WriteableStore\n      method: RemoteWrite\n\
             options:\n  level: INFO\n  decision:\n    log_start: true\n    log_end: true\n",
        )
        .unwrap();
        assert_eq!(
            grpc,
            Some(RequestLog {
                log_start: false,
                log_end: true,
                methods: vec!["/thanos.WriteableStore/RemoteWrite".into()]
            })
        );
        for (yaml, err) in [
            ("options:\n  decision:\n    log_end: true\n", "level field is empty"),
            ("options:\n  level: WARN\n  decision:\n    log_end: true\n", "got this WARN"),
            (
                "options:\n  level: INFO\n  decision:\n    log_start: true\n",
                "log decision combination is not supported",
            ),
            ("grpc:\n  options:\n    levl: INFO\n", "unknown field `levl`"),
        ] {
            let e = parse(yaml).unwrap_err();
            assert!(e.contains(err), "{yaml}: {e}");
        }
    }

    #[test]
    fn durations_as_go_grpc_middleware_writes_them() {
        assert_eq!(time_ms(0.0012345), "1.234");
        assert_eq!(time_ms(2.0), "2000");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }
}
