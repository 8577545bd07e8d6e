//! `type: JAEGER`: spans as `jaeger.thrift` batches, to an agent over UDP (Thrift compact, one
//! `Agent.emitBatch` per datagram, batches split to fit) or to a collector's `/api/traces`
//! over HTTP (Thrift binary, basic auth from `user` and `password`), as Thanos' Jaeger
//! exporter sends them. No crate exports Jaeger Thrift for this OpenTelemetry SDK any more.

pub mod thrift;

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::{KeyValue, Value};
use opentelemetry_http::HttpClient;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use thrift::{Binary, Compact, Protocol, Ty};

/// The largest datagram a Jaeger agent reads.
const MAX_DATAGRAM: usize = 65_000;

/// Where a Jaeger exporter sends.
#[derive(Debug)]
pub enum Sink {
    /// A connected UDP socket to an agent.
    Agent(UdpSocket),
    /// A collector URL, its `Authorization` header (if any), and the client.
    Collector {
        /// `endpoint`.
        url: String,
        /// `Basic …` from `user` and `password`.
        auth: Option<String>,
        /// The HTTP client.
        client: Arc<dyn HttpClient>,
    },
}

/// Exports spans to Jaeger.
#[derive(Debug)]
pub struct JaegerExporter {
    sink: Sink,
    service_name: String,
    /// Process tags: the resource's attributes but `service.name`.
    process_tags: Vec<KeyValue>,
    seq: AtomicI32,
}

impl JaegerExporter {
    /// An exporter to `sink` for the service `service_name` with the process tags `tags`.
    pub fn new(sink: Sink, service_name: String, tags: Vec<KeyValue>) -> JaegerExporter {
        JaegerExporter { sink, service_name, process_tags: tags, seq: AtomicI32::new(0) }
    }

    async fn send(&self, spans: &[SpanData]) -> Result<(), String> {
        match &self.sink {
            Sink::Agent(socket) => self.send_datagrams(socket, spans),
            Sink::Collector { url, auth, client } => {
                let mut p = Binary::default();
                self.batch(&mut p, spans);
                let mut req =
                    http::Request::post(url.as_str()).header(http::header::CONTENT_TYPE, "application/x-thrift");
                if let Some(a) = auth {
                    req = req.header(http::header::AUTHORIZATION, a.as_str());
                }
                let req = req.body(Bytes::copy_from_slice(p.bytes())).map_err(|e| e.to_string())?;
                let resp = client.send_bytes(req).await.map_err(|e| format!("jaeger collector {url}: {e}"))?;
                if !resp.status().is_success() {
                    let body = String::from_utf8_lossy(&resp.body()[..resp.body().len().min(256)]).into_owned();
                    return Err(format!("jaeger collector {url}: HTTP {}: {body}", resp.status()));
                }
                Ok(())
            }
        }
    }

    /// Sends `spans` in as few datagrams as fit; a span too large alone is dropped and told.
    fn send_datagrams(&self, socket: &UdpSocket, spans: &[SpanData]) -> Result<(), String> {
        if spans.is_empty() {
            return Ok(());
        }
        let mut p = Compact::default();
        p.oneway("emitBatch", self.seq.fetch_add(1, Ordering::Relaxed));
        p.struct_begin();
        p.field(Ty::Struct, 1);
        self.batch(&mut p, spans);
        p.struct_end();
        if p.bytes().len() <= MAX_DATAGRAM {
            return socket.send(p.bytes()).map(drop).map_err(|e| format!("jaeger agent: {e}"));
        }
        if spans.len() == 1 {
            return Err(format!(
                "jaeger agent: span {:?} takes {} bytes, over a datagram's {MAX_DATAGRAM}",
                spans[0].name,
                p.bytes().len()
            ));
        }
        let (a, b) = spans.split_at(spans.len() / 2);
        let first = self.send_datagrams(socket, a);
        let second = self.send_datagrams(socket, b);
        first.and(second)
    }

    /// A `Batch` struct: its process and its spans.
    fn batch(&self, p: &mut dyn Protocol, spans: &[SpanData]) {
        p.struct_begin();
        p.field(Ty::Struct, 1);
        p.struct_begin();
        p.field(Ty::Binary, 1);
        p.binary(self.service_name.as_bytes());
        if !self.process_tags.is_empty() {
            p.field(Ty::List, 2);
            p.list(Ty::Struct, self.process_tags.len());
            for kv in &self.process_tags {
                tag(p, kv.key.as_str(), &kv.value);
            }
        }
        p.struct_end();
        p.field(Ty::List, 2);
        p.list(Ty::Struct, spans.len());
        for s in spans {
            span(p, s);
        }
        p.struct_end();
    }
}

fn micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

fn tag(p: &mut dyn Protocol, key: &str, v: &Value) {
    p.struct_begin();
    p.field(Ty::Binary, 1);
    p.binary(key.as_bytes());
    match v {
        Value::Bool(b) => {
            p.field(Ty::I32, 2);
            p.i32(2);
            p.field(Ty::Bool, 5);
            p.bool(*b);
        }
        Value::I64(n) => {
            p.field(Ty::I32, 2);
            p.i32(3);
            p.field(Ty::I64, 6);
            p.i64(*n);
        }
        Value::F64(f) => {
            p.field(Ty::I32, 2);
            p.i32(1);
            p.field(Ty::Double, 4);
            p.double(*f);
        }
        other => {
            p.field(Ty::I32, 2);
            p.i32(0);
            p.field(Ty::Binary, 3);
            p.binary(other.as_str().as_bytes());
        }
    }
    p.struct_end();
}

fn span(p: &mut dyn Protocol, s: &SpanData) {
    let trace = u128::from_be_bytes(s.span_context.trace_id().to_bytes());
    let parent = u64::from_be_bytes(s.parent_span_id.to_bytes());
    p.struct_begin();
    p.field(Ty::I64, 1);
    p.i64(trace as u64 as i64);
    p.field(Ty::I64, 2);
    p.i64((trace >> 64) as u64 as i64);
    p.field(Ty::I64, 3);
    p.i64(u64::from_be_bytes(s.span_context.span_id().to_bytes()) as i64);
    p.field(Ty::I64, 4);
    p.i64(parent as i64);
    p.field(Ty::Binary, 5);
    p.binary(s.name.as_bytes());
    p.field(Ty::I32, 7);
    p.i32(s.span_context.is_sampled() as i32);
    p.field(Ty::I64, 8);
    let start = micros(s.start_time);
    p.i64(start);
    p.field(Ty::I64, 9);
    p.i64(micros(s.end_time).saturating_sub(start));
    let mut tags: Vec<(&str, Value)> = s.attributes.iter().map(|kv| (kv.key.as_str(), kv.value.clone())).collect();
    let kind = match s.span_kind {
        SpanKind::Server => Some("server"),
        SpanKind::Client => Some("client"),
        SpanKind::Producer => Some("producer"),
        SpanKind::Consumer => Some("consumer"),
        SpanKind::Internal => None,
    };
    if let Some(k) = kind {
        tags.push(("span.kind", Value::from(k)));
    }
    if let Status::Error { description } = &s.status {
        tags.push(("error", Value::Bool(true)));
        tags.push(("otel.status_code", Value::from("ERROR")));
        if !description.is_empty() {
            tags.push(("otel.status_description", Value::from(description.to_string())));
        }
    }
    if !tags.is_empty() {
        p.field(Ty::List, 10);
        p.list(Ty::Struct, tags.len());
        for (k, v) in &tags {
            tag(p, k, v);
        }
    }
    if !s.events.events.is_empty() {
        p.field(Ty::List, 11);
        p.list(Ty::Struct, s.events.events.len());
        for e in &s.events.events {
            p.struct_begin();
            p.field(Ty::I64, 1);
            p.i64(micros(e.timestamp));
            p.field(Ty::List, 2);
            p.list(Ty::Struct, e.attributes.len() + 1);
            tag(p, "event", &Value::from(e.name.to_string()));
            for kv in &e.attributes {
                tag(p, kv.key.as_str(), &kv.value);
            }
            p.struct_end();
        }
    }
    p.struct_end();
}

impl SpanExporter for JaegerExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.send(&batch).await.map_err(OTelSdkError::InternalFailure)
    }

    fn set_resource(&mut self, resource: &Resource) {
        let name = opentelemetry::Key::from_static_str("service.name");
        if let Some(v) = resource.get(&name) {
            self.service_name = v.as_str().into_owned();
        }
        let mut tags: Vec<KeyValue> =
            resource.iter().filter(|(k, _)| **k != name).map(|(k, v)| KeyValue::new(k.clone(), v.clone())).collect();
        tags.sort_by(|a, b| a.key.as_str().cmp(b.key.as_str()));
        self.process_tags = tags;
    }
}
