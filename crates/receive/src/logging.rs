//! Log output in Thanos' shapes: logfmt `level=info ts=... caller=file.rs:42 component=...
//! msg="..." key=value` (go-kit quoting rules), or one JSON object per line with sorted keys.
//!
//! A `tracing` layer does the formatting, so fields of enclosing spans (e.g. `tenant`) appear
//! on every line logged inside them. The `component` key follows Thanos' names for the module
//! that logged (`receive`, `receive-handler`, `receive-writer`, `multi-tsdb`).

use std::fmt::Write as _;
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, filter::LevelFilter};

use crate::config::{LogConfig, LogFormat};

struct SpanFields(Vec<(&'static str, String)>);

#[derive(Default)]
struct Collect {
    msg: Option<String>,
    fields: Vec<(&'static str, String)>,
}

impl Visit for Collect {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.push(field, format!("{value:?}"));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, value.to_string());
    }
}

impl Collect {
    fn push(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.msg = Some(value);
        } else {
            self.fields.push((field.name(), value));
        }
    }
}

/// The Thanos component name for a module path.
fn component(target: &str) -> &'static str {
    if target.starts_with("ringest::http") {
        "receive-handler"
    } else if target.starts_with("ringest::writer") {
        "receive-writer"
    } else if target.starts_with("ringest::tenancy") || target.starts_with("ringest_tsdb") {
        "multi-tsdb"
    } else {
        "receive"
    }
}

/// Writes a logfmt value with go-kit's quoting rules.
fn logfmt_value(out: &mut String, v: &str) {
    let needs_quotes =
        v.chars().any(|c| c <= ' ' || c == '=' || c == '"' || c == '\u{7f}' || c == '\u{fffd}') || v == "null";
    if !needs_quotes {
        out.push_str(v);
        return;
    }
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

struct LogLayer {
    format: LogFormat,
    name: Option<String>,
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for LogLayer {
    fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, id: &tracing::span::Id, ctx: Context<'_, S>) {
        let mut c = Collect::default();
        attrs.record(&mut c);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(c.fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut c = Collect::default();
        event.record(&mut c);
        let level = match *meta.level() {
            Level::ERROR => "error",
            Level::WARN => "warn",
            Level::INFO => "info",
            Level::DEBUG => "debug",
            Level::TRACE => "debug",
        };
        let ts = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let file = meta.file().map(|f| f.rsplit('/').next().unwrap_or(f)).unwrap_or("?");
        let caller = format!("{file}:{}", meta.line().unwrap_or(0));
        let mut pairs: Vec<(&str, String)> = Vec::with_capacity(8 + c.fields.len());
        pairs.push(("level", level.into()));
        pairs.push(("ts", ts));
        pairs.push(("caller", caller));
        if let Some(n) = &self.name {
            pairs.push(("name", n.clone()));
        }
        pairs.push(("component", component(meta.target()).into()));
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<SpanFields>() {
                    pairs.extend(f.0.iter().map(|(k, v)| (*k, v.clone())));
                }
            }
        }
        if let Some(m) = c.msg {
            pairs.push(("msg", m));
        }
        pairs.extend(c.fields);
        let mut line = String::with_capacity(160);
        match self.format {
            LogFormat::Logfmt => {
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        line.push(' ');
                    }
                    line.push_str(k);
                    line.push('=');
                    logfmt_value(&mut line, v);
                }
            }
            LogFormat::Json => {
                let map: serde_json::Map<String, serde_json::Value> =
                    pairs.into_iter().map(|(k, v)| (k.to_string(), serde_json::Value::String(v))).collect();
                line = serde_json::Value::Object(map).to_string();
            }
        }
        line.push('\n');
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

/// Installs the global logger.
pub fn init(cfg: &LogConfig) {
    let layer = LogLayer { format: cfg.format, name: cfg.name.clone() }.with_filter(LevelFilter::from_level(cfg.level));
    let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_quoting_like_go_kit() {
        let q = |v: &str| {
            let mut s = String::new();
            logfmt_value(&mut s, v);
            s
        };
        assert_eq!(q("info"), "info");
        assert_eq!(q("running receive"), "\"running receive\"");
        assert_eq!(q("a=b"), "\"a=b\"");
        assert_eq!(q("say \"hi\"\n"), "\"say \\\"hi\\\"\\n\"");
        assert_eq!(q(""), "");
        assert_eq!(component("ringest::http::receive"), "receive-handler");
        assert_eq!(component("ringest_tsdb::db"), "multi-tsdb");
    }
}
