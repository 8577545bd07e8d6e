//! Per-call observation for server metrics (go-grpc-prometheus' `grpc_server_*`) and request
//! logs: a call is started when its request arrives and handled when its response ends, with
//! the status code and message from the trailers (or the headers of a Trailers-Only response).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::HeaderMap;

use crate::status::Code;

/// How a method streams (go-grpc-prometheus' `grpc_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// One message each way.
    Unary,
    /// One request, a stream of responses.
    ServerStream,
}

impl CallKind {
    /// The `grpc_type` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::Unary => "unary",
            CallKind::ServerStream => "server_stream",
        }
    }
}

/// A method the server knows: its service, name and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Method {
    /// Full service name (`thanos.Store`).
    pub service: String,
    /// Method name (`Series`).
    pub name: String,
    /// How it streams.
    pub kind: CallKind,
}

impl Method {
    /// The method at `path` (`/thanos.Store/Series`); `None` if the path is not of that form.
    pub fn from_path(path: &str, kind: CallKind) -> Option<Method> {
        let (service, name) = path.strip_prefix('/')?.split_once('/')?;
        (!service.is_empty() && !name.is_empty() && !name.contains('/')).then(|| Method {
            service: service.to_string(),
            name: name.to_string(),
            kind,
        })
    }
}

/// What is known of a call from its request headers.
#[derive(Debug, Clone)]
pub struct CallMeta {
    /// The method called.
    pub method: Arc<Method>,
    /// The client's address.
    pub peer: SocketAddr,
    /// When the request arrived.
    pub start: SystemTime,
    /// The `request-id` metadata (Thanos' request ID), if the client sent one.
    pub request_id: Option<String>,
    /// The deadline the client's `grpc-timeout` sets, if any.
    pub deadline: Option<SystemTime>,
}

/// How a call ended.
#[derive(Debug, Clone, Copy)]
pub struct CallEnd<'a> {
    /// Its status code.
    pub code: Code,
    /// Its status message (`grpc-message`, decoded), if any.
    pub message: Option<&'a str>,
    /// How long it took, in seconds.
    pub seconds: f64,
}

/// Receives every call of the methods the server was told about.
pub trait Observer: Send + Sync + 'static {
    /// The methods are served (called once, before any call: metrics start at zero).
    fn serving(&self, methods: &[Method]);
    /// A call started.
    fn started(&self, call: &CallMeta);
    /// A call ended.
    fn handled(&self, call: &CallMeta, end: CallEnd<'_>);
}

/// One call being observed; reports `handled` exactly once (an abandoned call as Cancelled).
pub(crate) struct Call {
    observer: Arc<dyn Observer>,
    meta: CallMeta,
    start: Instant,
    done: bool,
}

impl Call {
    pub(crate) fn start(observer: Arc<dyn Observer>, meta: CallMeta) -> Call {
        observer.started(&meta);
        Call { observer, meta, start: Instant::now(), done: false }
    }

    /// Reports the code of `headers` (trailers, or Trailers-Only headers) if they carry one.
    /// Returns whether they did.
    pub(crate) fn end_with(&mut self, headers: &HeaderMap) -> bool {
        let Some(code) = headers.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i32>().ok())
        else {
            return false;
        };
        let message = headers.get("grpc-message").map(|m| percent_decode(m.as_bytes()));
        self.end(Code::from_i32(code), message.as_deref().filter(|m| !m.is_empty()));
        true
    }

    fn end(&mut self, code: Code, message: Option<&str>) {
        if !self.done {
            self.done = true;
            let end = CallEnd { code, message, seconds: self.start.elapsed().as_secs_f64() };
            self.observer.handled(&self.meta, end);
        }
    }
}

/// `grpc-message` is percent-encoded (gRPC over HTTP/2); bytes that do not form an escape are
/// kept as they are.
fn percent_decode(v: &[u8]) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        match (v[i], v.get(i + 1).copied().and_then(hex), v.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Drop for Call {
    fn drop(&mut self) {
        // The response ended without a status: the client went away or the server cut it.
        self.end(Code::Cancelled, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_message_is_percent_decoded() {
        assert_eq!(percent_decode(b"no%20matchers%3A x"), "no matchers: x");
        assert_eq!(percent_decode(b"100%"), "100%");
        assert_eq!(percent_decode(b"%zz%e2%9c%93"), "%zz\u{2713}");
    }

    #[test]
    fn method_paths() {
        let m = Method::from_path("/thanos.Store/Series", CallKind::ServerStream).unwrap();
        assert_eq!((m.service.as_str(), m.name.as_str()), ("thanos.Store", "Series"));
        for bad in ["", "/", "/a", "//b", "/a/", "/a/b/c", "a/b"] {
            assert!(Method::from_path(bad, CallKind::Unary).is_none(), "{bad}");
        }
    }
}
