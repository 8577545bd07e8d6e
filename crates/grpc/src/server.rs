//! gRPC server: tonic's connection handling and services, plus raw unary routes (request
//! validation, limits, deadlines, panic isolation) for messages this crate frames and
//! compresses itself, `grpc.health.v1.Health/Check`, and graceful shutdown.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

mod observe;
mod snappy;

pub use observe::{CallEnd, CallKind, CallMeta, Method, Observer};

use crate::status::{Code, Status};
use crate::transport::Acceptor;
use crate::wire::{ACCEPT_ENCODING, Compression, GrpcBody, parse_timeout, read_unary, status_headers};

/// Path of the health check method.
pub const HEALTH_CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

/// The boxed future a [`UnaryHandler`] returns.
pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = Result<Bytes, Status>> + Send + 'a>>;

/// What a handler's [`UnaryHandler::admit`] keeps for the call (e.g. a share of a memory
/// budget, released when it is dropped).
pub type Admission = Box<dyn std::any::Any + Send + Sync>;

/// A unary method: request message in, raw response message out.
pub trait UnaryHandler: Send + Sync + 'static {
    /// Decides whether a request message of `len` bytes (as sent: compressed if it is) may be
    /// read, once its length prefix has arrived and before any buffer is allocated for it. The
    /// returned admission travels with the [`Message`]. By default every message is admitted.
    fn admit(&self, len: usize) -> Result<Option<Admission>, Status> {
        let _ = len;
        Ok(None)
    }

    fn call(&self, request: Message) -> HandlerFuture<'_>;
}

/// Connection limits of the server (`--ringest.grpc.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Most concurrent calls (HTTP/2 streams) per connection.
    pub max_concurrent_streams: u32,
    /// How long a connection may be silent before the server pings it.
    pub keepalive_time: Duration,
    /// How long the server waits for a ping's answer before closing the connection.
    pub keepalive_timeout: Duration,
    /// How long a connection may go without a call in flight (counted from when it opened or
    /// its last call ended) before the server closes it gracefully, GOAWAY first (grpc-go's
    /// `MaxConnectionIdle`). Pings do not count as calls, and a connection that never sends its
    /// HTTP/2 preface is closed by it too.
    pub max_connection_idle: Duration,
    /// How long a TLS handshake may take (grpc-go's `ConnectionTimeout`).
    pub handshake_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_concurrent_streams: 1000,
            keepalive_time: Duration::from_secs(2 * 3600),
            keepalive_timeout: Duration::from_secs(20),
            max_connection_idle: Duration::from_secs(15 * 60),
            handshake_timeout: Duration::from_secs(120),
        }
    }
}

/// A request message as received, decompressed by the handler when and where it suits it
/// (e.g. on the thread that decodes it, into a buffer that thread keeps).
#[derive(Debug)]
pub struct Message {
    data: Bytes,
    metadata: HeaderMap,
    compressed: bool,
    compression: Compression,
    max: usize,
    admission: Option<Admission>,
}

impl Message {
    /// An uncompressed message.
    pub fn new(data: Bytes) -> Message {
        Message {
            data,
            metadata: HeaderMap::new(),
            compressed: false,
            compression: Compression::None,
            max: usize::MAX,
            admission: None,
        }
    }

    /// The request's trace-context metadata (W3C `traceparent`, `tracestate`, `baggage`, and
    /// Thanos' `X-Thanos-Force-Tracing`), the only metadata a handler is given.
    pub fn metadata(&self) -> &HeaderMap {
        &self.metadata
    }

    /// Whether the message arrived compressed (decompressing it takes a second buffer).
    pub fn is_compressed(&self) -> bool {
        self.compressed
    }

    /// What the handler's [`UnaryHandler::admit`] returned for this message (once).
    pub fn take_admission(&mut self) -> Option<Admission> {
        self.admission.take()
    }

    /// The message's size once decompressed, as its framing declares it (over the limit: an
    /// error), known before anything is decompressed.
    pub fn decompressed_len(&self) -> Result<usize, Status> {
        self.compression.declared_len(self.compressed, &self.data, self.max)
    }

    /// The message's bytes, decompressed if need be.
    pub fn into_bytes(self) -> Result<Bytes, Status> {
        self.compression.unframe(self.compressed, self.data, self.max)
    }

    /// The message's bytes: as received, or decompressed into `scratch` (which is lengthened
    /// if it is too short and never shortened, so a kept buffer is zeroed only as it grows).
    pub fn bytes_in<'a>(&'a self, scratch: &'a mut Vec<u8>) -> Result<&'a [u8], Status> {
        self.compression.unframe_into(self.compressed, &self.data, self.max, scratch)
    }

    /// [`Message::bytes_in`], showing `go_on` the decompressed prefix as it grows (a chunk at
    /// a time) so that it can stop a message it refuses from its first bytes: `None` when it
    /// did. A message that arrived uncompressed is returned whole without a look.
    pub fn bytes_in_while<'a>(
        &'a self,
        scratch: &'a mut Vec<u8>,
        go_on: impl FnMut(&[u8]) -> bool,
    ) -> Result<Option<&'a [u8]>, Status> {
        self.compression.unframe_into_while(self.compressed, &self.data, self.max, scratch, go_on)
    }
}

/// Answers `grpc.health.v1.Health/Check` from a probe; the requested service name is ignored.
struct Health(Arc<dyn Fn() -> bool + Send + Sync>);

impl UnaryHandler for Health {
    fn call(&self, _request: Message) -> HandlerFuture<'_> {
        // HealthCheckResponse { status = 1 (field 1, varint) }: SERVING = 1, NOT_SERVING = 2.
        let status = if (self.0)() { 1 } else { 2 };
        Box::pin(async move { Ok(Bytes::from(vec![0x08, status])) })
    }
}

/// A gRPC server on tonic: raw unary routes (request bytes in, response bytes out, framed and
/// compressed by this crate, so a write's message is never copied through a codec) next to tonic
/// services. Build it with [`Server::new`], [`Server::route`] and [`Server::service`], then
/// [`Server::serve`].
pub struct Server {
    max_message_bytes: usize,
    raw: Vec<(&'static str, Arc<dyn UnaryHandler>)>,
    services: tonic::service::Routes,
    /// Methods observed, and whether their metrics start at zero before any call.
    methods: Vec<(Method, bool)>,
    observer: Option<Arc<dyn Observer>>,
    max_connection_age: Option<Duration>,
    limits: ConnLimits,
    tls: Option<ringest_tls::Acceptor>,
}

impl Server {
    /// A server accepting request messages up to `max_message_bytes` (before and after decompression).
    pub fn new(max_message_bytes: usize) -> Server {
        Server {
            max_message_bytes,
            raw: Vec::new(),
            services: tonic::service::Routes::default(),
            methods: Vec::new(),
            observer: None,
            max_connection_age: None,
            limits: ConnLimits::default(),
            tls: None,
        }
    }

    /// Sets the connection limits.
    pub fn limits(mut self, limits: ConnLimits) -> Server {
        self.limits = limits;
        self
    }

    /// Registers a raw handler for a full method path such as `/thanos.WriteableStore/RemoteWrite`.
    pub fn route(mut self, path: &'static str, handler: Arc<dyn UnaryHandler>) -> Server {
        self.methods.extend(Method::from_path(path, CallKind::Unary).map(|m| (m, path != HEALTH_CHECK_PATH)));
        self.raw.push((path, handler));
        self
    }

    /// Closes each connection gracefully once it is `age` old (grpc-go's `MaxConnectionAge`,
    /// with no grace: calls in flight finish, new ones go to a new connection).
    pub fn max_connection_age(mut self, age: Duration) -> Server {
        self.max_connection_age = Some(age);
        self
    }

    /// Serves TLS with `acceptor` (which must offer ALPN `h2`, as gRPC clients require).
    pub fn tls(mut self, acceptor: ringest_tls::Acceptor) -> Server {
        self.tls = Some(acceptor);
        self
    }

    /// Reports every call of the known methods to `observer`.
    pub fn observe(mut self, observer: Arc<dyn Observer>) -> Server {
        self.observer = Some(observer);
        self
    }

    /// Serves `grpc.health.v1.Health/Check`: SERVING while `serving()` is true, else NOT_SERVING.
    /// `Watch` is not provided and answers `Unimplemented` like any unknown method.
    pub fn health(self, serving: Arc<dyn Fn() -> bool + Send + Sync>) -> Server {
        self.route(HEALTH_CHECK_PATH, Arc::new(Health(serving)))
    }

    /// Adds a tonic service whose methods are `methods` (name and kind).
    pub fn service<S>(mut self, svc: S, methods: &[(&str, CallKind)]) -> Server
    where
        S: tower_service::Service<
                Request<tonic::body::Body>,
                Response = Response<tonic::body::Body>,
                Error = Infallible,
            > + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        for &(name, kind) in methods {
            self.methods.extend(Method::from_path(&format!("/{}/{name}", S::NAME), kind).map(|m| (m, true)));
        }
        self.services = self.services.add_service(snappy::Snappy::new(svc, self.max_message_bytes));
        self
    }

    /// Accepts connections until `shutdown` completes, then stops accepting, sends GOAWAY on every
    /// connection and returns once all in-flight calls have been answered. To bound that wait,
    /// put a timeout around this future: dropping it closes every remaining connection.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.serve_from(listener, shutdown).await
    }

    /// [`Server::serve`] over the connections `acceptor` gives.
    pub async fn serve_from<A: Acceptor>(
        self,
        mut acceptor: A,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let max_message_bytes = self.max_message_bytes;
        let raw: HashMap<&'static str, RawUnary> =
            self.raw.into_iter().map(|(path, handler)| (path, RawUnary { handler, max_message_bytes })).collect();
        if let Some(o) = &self.observer {
            let preset: Vec<Method> = self.methods.iter().filter(|(_, p)| *p).map(|(m, _)| m.clone()).collect();
            o.serving(&preset);
        }
        let methods: HashMap<String, Arc<Method>> =
            self.methods.into_iter().map(|(m, _)| (format!("/{}/{}", m.service, m.name), Arc::new(m))).collect();
        let routes = Routes {
            raw: Arc::new(raw),
            services: self.services.prepare(),
            methods: Arc::new(methods),
            observer: self.observer,
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut conns = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            // Biased (polled in this order), so a simulation replays the same choices.
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                accepted = acceptor.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let (routes, stop, age, limits) = (routes.clone(), stop_rx.clone(), self.max_connection_age, self.limits);
                        match self.tls.clone() {
                            None => conns.spawn(serve_conn(routes, stream, peer, stop, age, limits)),
                            Some(tls) => conns.spawn(async move {
                                match tokio::time::timeout(limits.handshake_timeout, tls.accept(stream)).await {
                                    Ok(Ok(stream)) => serve_conn(routes, stream, peer, stop, age, limits).await,
                                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "gRPC TLS handshake failed"),
                                    Err(_) => tracing::debug!(%peer, "gRPC TLS handshake timed out"),
                                }
                            }),
                        };
                    }
                    Err(e) => {
                        // Per-connection accept failures (EMFILE, ECONNABORTED...) must not stop the server.
                        tracing::warn!(error = %e, "gRPC accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(acceptor);
        let _ = stop_tx.send(true);
        while conns.join_next().await.is_some() {}
        Ok(())
    }
}

/// A raw unary route.
#[derive(Clone)]
struct RawUnary {
    handler: Arc<dyn UnaryHandler>,
    max_message_bytes: usize,
}

impl RawUnary {
    async fn handle<B>(&self, req: Request<B>) -> Response<GrpcBody>
    where
        B: http_body::Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        if req.method() != http::Method::POST {
            return plain(StatusCode::METHOD_NOT_ALLOWED);
        }
        let grpc_content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct == "application/grpc" || ct.starts_with("application/grpc+"));
        if !grpc_content_type {
            return plain(StatusCode::UNSUPPORTED_MEDIA_TYPE);
        }
        let timeout = match req.headers().get("grpc-timeout") {
            None => None,
            Some(v) => match v.to_str().ok().and_then(parse_timeout) {
                Some(t) => Some(t),
                None => {
                    let msg = format!("malformed grpc-timeout: {v:?}");
                    return trailers_only(&Status::new(Code::Internal, msg));
                }
            },
        };
        let call = self.unary(req);
        let result = match timeout {
            None => call.await,
            Some(t) => tokio::time::timeout(t, call)
                .await
                .unwrap_or_else(|_| Err(Status::new(Code::DeadlineExceeded, "context deadline exceeded"))),
        };
        match result.and_then(|(compression, msg)| Ok((compression, compression.frame(msg)?))) {
            Ok((compression, chunks)) => {
                let mut trailers = HeaderMap::new();
                status_headers(&mut trailers, Code::Ok, "");
                let mut resp = grpc_response(GrpcBody::new(chunks, Some(trailers)));
                if compression == Compression::Snappy {
                    let snappy = HeaderValue::from_static("snappy");
                    resp.headers_mut().insert("grpc-encoding", snappy);
                }
                resp
            }
            Err(status) => trailers_only(&status),
        }
    }

    /// Reads the request message, runs the handler; returns the response message and the
    /// compression to answer with (the request's).
    async fn unary<B>(&self, req: Request<B>) -> Result<(Compression, Bytes), Status>
    where
        B: http_body::Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let compression = Compression::from_header(req.headers().get("grpc-encoding")).map_err(|name| {
            let msg = format!("grpc: Decompressor is not installed for grpc-encoding {name:?}");
            Status::new(Code::Unimplemented, msg)
        })?;
        let max = self.max_message_bytes;
        let mut admission = None;
        let admit = |len: usize| {
            admission = self.handler.admit(len)?;
            Ok(())
        };
        let on_error = |e| Status::new(Code::Cancelled, format!("reading request: {e}"));
        let metadata = trace_metadata(req.headers());
        let body = read_unary(req.into_body(), max, admit, on_error).await?;
        let (compressed, data) =
            body.message.ok_or_else(|| Status::new(Code::Internal, "grpc: unary call without a request message"))?;
        let request = Message { data, metadata, compressed, compression, max, admission };
        let handler = self.handler.clone();
        // A spawned task isolates handler panics; the task keeps running if the call times out.
        let response = tokio::spawn(async move { handler.call(request).await }).await.map_err(|e| {
            tracing::error!(error = %e, "gRPC handler panicked or was cancelled");
            Status::new(Code::Internal, format!("handler failed: {e}"))
        })??;
        Ok((compression, response))
    }
}

/// How much of a request a client may send before the server has read it: per stream, and for
/// all of a connection's streams. Each window is a bound on what one poll of a connection's
/// task reads from its socket, so it bounds how long that poll keeps the other connections of
/// its async worker waiting. With 2 MiB and 8 MiB, twenty clients each sending a 1.5 MiB
/// message in one go made a normal writer's p99 on the same node 25-41 ms (idle: 0.5-0.9 ms);
/// with 256 KiB and 1 MiB, 9-11 ms (tests/tests/hostile_clients.rs, benches/README.md). 256 KiB
/// still lets a peer stream at 500 MB/s over a link of 0.5 ms round trip.
const STREAM_WINDOW: u32 = 256 << 10;
/// The window of all a connection's streams together (see [`STREAM_WINDOW`]).
const CONNECTION_WINDOW: u32 = 1 << 20;

/// How long a draining connection stays open after its last call was answered (to flush
/// responses); it also bounds the wait for a peer that never completes the HTTP/2 handshake.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// Counts a connection's calls in flight; decremented on drop, so cancelled calls count too.
struct InFlight(Arc<watch::Sender<usize>>);

impl InFlight {
    fn start(counter: &Arc<watch::Sender<usize>>) -> InFlight {
        counter.send_modify(|n| *n += 1);
        InFlight(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Serves one connection until it closes; on shutdown sends GOAWAY and drains in-flight calls.
async fn serve_conn<S>(
    routes: Routes,
    stream: S,
    peer: std::net::SocketAddr,
    mut stop: watch::Receiver<bool>,
    max_age: Option<Duration>,
    limits: ConnLimits,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (counter, mut in_flight) = watch::channel(0usize);
    let counter = Arc::new(counter);
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        // Raw routes first, without going through the router: the write path.
        let path = req.uri().path();
        let raw = routes.raw.get(path).cloned();
        let mut call = match (&routes.observer, routes.methods.get(path)) {
            (Some(o), Some(m)) => {
                let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
                let request_id = header("request-id").map(str::to_string);
                let start = std::time::SystemTime::now();
                let deadline = header("grpc-timeout").and_then(crate::wire::parse_timeout).map(|t| start + t);
                let meta = observe::CallMeta { method: m.clone(), peer, start, request_id, deadline };
                Some(observe::Call::start(o.clone(), meta))
            }
            _ => None,
        };
        let mut services = routes.services.clone();
        // Until the response body ends: a stream is in flight until its last message.
        let guard = InFlight::start(&counter);
        async move {
            let resp = match raw {
                Some(raw) => raw.handle(req).await.map(tonic::body::Body::new),
                None => tower_service::Service::call(&mut services, req).await?,
            };
            // A Trailers-Only response carries its status in the headers.
            if call.as_mut().is_some_and(|c| c.end_with(resp.headers())) {
                call = None;
            }
            Ok::<_, Infallible>(resp.map(|body| Guarded { body, call, _guard: guard }))
        }
    });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .keep_alive_interval(limits.keepalive_time)
        .keep_alive_timeout(limits.keepalive_timeout);
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let aged = async move {
        match max_age {
            Some(age) => tokio::time::sleep(age).await,
            None => std::future::pending().await,
        }
    };
    let mut calls = in_flight.clone();
    let idle = async move {
        loop {
            if calls.wait_for(|n| *n == 0).await.is_err() {
                break;
            }
            // No call in flight: closed unless one starts in time.
            if tokio::time::timeout(limits.max_connection_idle, calls.wait_for(|n| *n > 0)).await.is_err() {
                return;
            }
        }
        // The connection's service is gone: the connection is ending anyway.
        std::future::pending().await
    };
    let drained = async move {
        let _ = in_flight.wait_for(|n| *n == 0).await;
        tokio::time::sleep(DRAIN_GRACE).await;
    };
    tokio::pin!(stopped, aged, idle, drained);
    let (mut stopping, mut closing) = (false, false);
    let result = loop {
        tokio::select! {
            biased;
            r = conn.as_mut() => break r,
            // Too old: GOAWAY; the calls in flight finish, the client reconnects.
            () = &mut aged, if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            // Idle: GOAWAY, then closed once drained (hyper only sends GOAWAY after the
            // handshake, so this also ends a connection that never sent its preface).
            () = &mut idle, if !closing => {
                (closing, stopping) = (true, true);
                conn.as_mut().graceful_shutdown();
            }
            () = &mut stopped, if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            () = &mut drained, if stopping => break Ok(()),
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "gRPC connection ended with an error");
    }
}

/// Where a connection's calls go: raw routes by exact path, the rest to tonic's router (which
/// answers `Unimplemented` for unknown methods).
#[derive(Clone)]
struct Routes {
    raw: Arc<HashMap<&'static str, RawUnary>>,
    services: tonic::service::Routes,
    methods: Arc<HashMap<String, Arc<Method>>>,
    observer: Option<Arc<dyn Observer>>,
}

/// A response body that keeps its call counted as in flight until it ends.
struct Guarded {
    body: tonic::body::Body,
    /// The call's observation, ended by the trailers.
    call: Option<observe::Call>,
    _guard: InFlight,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, tonic::Status>>> {
        let frame = std::task::ready!(Pin::new(&mut self.body).poll_frame(cx));
        if let (Some(Ok(f)), Some(call)) = (&frame, self.call.as_mut())
            && let Some(trailers) = f.trailers_ref()
        {
            call.end_with(trailers);
        }
        std::task::Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

fn grpc_response(body: GrpcBody) -> Response<GrpcBody> {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert("grpc-accept-encoding", HeaderValue::from_static(ACCEPT_ENCODING));
    resp
}

/// A Trailers-Only response: HTTP 200 headers carrying the status, and no body.
fn trailers_only(status: &Status) -> Response<GrpcBody> {
    let mut resp = grpc_response(GrpcBody::default());
    status_headers(resp.headers_mut(), status.code, &status.message);
    resp
}

fn plain(status: StatusCode) -> Response<GrpcBody> {
    let mut resp = Response::new(GrpcBody::default());
    *resp.status_mut() = status;
    resp
}

/// The trace-context headers of a request (none: no allocation).
fn trace_metadata(headers: &HeaderMap) -> HeaderMap {
    const NAMES: [&str; 4] = ["traceparent", "tracestate", "baggage", "x-thanos-force-tracing"];
    let mut out = HeaderMap::new();
    for name in NAMES {
        for v in headers.get_all(name) {
            out.append(name, v.clone());
        }
    }
    out
}
