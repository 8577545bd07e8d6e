//! Per-call observation for server metrics (go-grpc-prometheus' `grpc_server_*`): a call is
//! started when its request arrives and handled when its response ends, with the status code
//! from the trailers (or the headers of a Trailers-Only response).

use std::sync::Arc;
use std::time::Instant;

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

/// Receives every call of the methods the server was told about.
pub trait Observer: Send + Sync + 'static {
    /// The methods are served (called once, before any call: metrics start at zero).
    fn serving(&self, methods: &[Method]);
    /// A call started.
    fn started(&self, method: &Method);
    /// A call ended with `code` after `seconds`.
    fn handled(&self, method: &Method, code: Code, seconds: f64);
}

/// One call being observed; reports `handled` exactly once (an abandoned call as Cancelled).
pub(crate) struct Call {
    observer: Arc<dyn Observer>,
    method: Arc<Method>,
    start: Instant,
    done: bool,
}

impl Call {
    pub(crate) fn start(observer: Arc<dyn Observer>, method: Arc<Method>) -> Call {
        observer.started(&method);
        Call { observer, method, start: Instant::now(), done: false }
    }

    /// Reports the code of `headers` (trailers, or Trailers-Only headers) if they carry one.
    /// Returns whether they did.
    pub(crate) fn end_with(&mut self, headers: &HeaderMap) -> bool {
        let Some(code) = headers.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i32>().ok())
        else {
            return false;
        };
        self.end(Code::from_i32(code));
        true
    }

    fn end(&mut self, code: Code) {
        if !self.done {
            self.done = true;
            self.observer.handled(&self.method, code, self.start.elapsed().as_secs_f64());
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // The response ended without a status: the client went away or the server cut it.
        self.end(Code::Cancelled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_paths() {
        let m = Method::from_path("/thanos.Store/Series", CallKind::ServerStream).unwrap();
        assert_eq!((m.service.as_str(), m.name.as_str()), ("thanos.Store", "Series"));
        for bad in ["", "/", "/a", "//b", "/a/", "/a/b/c", "a/b"] {
            assert!(Method::from_path(bad, CallKind::Unary).is_none(), "{bad}");
        }
    }
}
