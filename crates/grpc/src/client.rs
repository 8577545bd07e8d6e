//! Unary gRPC client: one lazily dialed, multiplexed HTTP/2 connection per peer, re-dialed after
//! failure, with deadlines, size limits and transport errors mapped to gRPC codes.

use std::error::Error as StdError;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, header};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::status::{Code, Status};
use crate::transport::{Dialer, Stream};
use crate::wire::{ACCEPT_ENCODING, Compression, Encoded, GrpcBody, format_timeout, read_status, read_unary};

/// Client settings for one peer.
#[derive(Debug, Clone)]
pub struct ChannelOptions {
    /// Compression of request messages.
    pub compression: Compression,
    /// Largest response message accepted (before and after decompression).
    pub max_message_bytes: usize,
    /// Bound on TCP connect plus HTTP/2 handshake.
    pub connect_timeout: Duration,
    /// HTTP/2 PING interval while calls are in flight (Thanos: 10s, 5s ack timeout).
    pub keepalive: Duration,
    /// TLS towards the peer (`--remote-write.client-tls-secure`), else plain TCP.
    pub tls: Option<ringest_tls::Connector>,
    /// Opens connections in place of TCP (`None`: TCP).
    pub dialer: Option<Arc<dyn Dialer>>,
}

impl Default for ChannelOptions {
    /// Thanos' peer defaults: snappy, MaxInt32 receive size, 10s keepalive.
    fn default() -> Self {
        ChannelOptions {
            compression: Compression::Snappy,
            max_message_bytes: i32::MAX as usize,
            connect_timeout: Duration::from_secs(5),
            keepalive: Duration::from_secs(10),
            tls: None,
            dialer: None,
        }
    }
}

/// A cheap-to-clone handle to one peer.
#[derive(Clone)]
pub struct Channel {
    inner: Arc<Inner>,
}

struct Inner {
    addr: String,
    opts: ChannelOptions,
    conn: Mutex<Option<Conn>>,
    next_id: AtomicU64,
}

#[derive(Clone)]
struct Conn {
    id: u64,
    sender: SendRequest<GrpcBody>,
}

impl Channel {
    /// A channel to `addr` (`host:port`); nothing is dialed until the first call.
    pub fn new(addr: String, opts: ChannelOptions) -> Channel {
        Channel { inner: Arc::new(Inner { addr, opts, conn: Mutex::new(None), next_id: AtomicU64::new(0) }) }
    }

    /// Calls a unary method with a raw request message and returns the raw response message.
    /// The whole call, including dialing, is bounded by `timeout`.
    pub async fn unary(&self, path: &str, request: Bytes, timeout: Duration) -> Result<Bytes, Status> {
        self.unary_encoded(path, self.inner.opts.compression.encode(request)?, timeout).await
    }

    /// [`unary`](Self::unary) with a request already encoded (see [`Compression::encoder`]);
    /// it is sent with its own compression.
    pub async fn unary_encoded(&self, path: &str, request: Encoded, timeout: Duration) -> Result<Bytes, Status> {
        self.unary_encoded_with_metadata(path, request, timeout, &HeaderMap::new()).await
    }

    /// [`unary_encoded`](Self::unary_encoded) with custom `metadata` (e.g. trace context)
    /// sent as request headers.
    pub async fn unary_encoded_with_metadata(
        &self,
        path: &str,
        request: Encoded,
        timeout: Duration,
        metadata: &HeaderMap,
    ) -> Result<Bytes, Status> {
        let deadline = Instant::now() + timeout;
        tokio::time::timeout_at(deadline, self.call(path, request, deadline, metadata))
            .await
            .unwrap_or_else(|_| Err(Status::new(Code::DeadlineExceeded, "context deadline exceeded")))
    }

    async fn call(
        &self,
        path: &str,
        request: Encoded,
        deadline: Instant,
        metadata: &HeaderMap,
    ) -> Result<Bytes, Status> {
        let compression = request.compression;
        let chunks = request.frame()?;
        let mut retried = false;
        loop {
            let conn = self.connection().await?;
            let req = self.request(path, &chunks, compression, deadline, metadata)?;
            match conn.sender.clone().try_send_request(req).await {
                Ok(resp) => return self.response(resp, conn.id).await,
                Err(mut e) => {
                    let status = transport_status(e.error());
                    if status.code == Code::Unavailable {
                        self.forget(conn.id).await;
                    }
                    // The request never reached a connection: safe to retry once on a fresh one.
                    if e.take_message().is_some() && !retried {
                        retried = true;
                        continue;
                    }
                    return Err(status);
                }
            }
        }
    }

    fn request(
        &self,
        path: &str,
        chunks: &[Bytes; 3],
        compression: Compression,
        deadline: Instant,
        metadata: &HeaderMap,
    ) -> Result<Request<GrpcBody>, Status> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(format!("http://{}{}", self.inner.addr, path))
            .header(header::CONTENT_TYPE, "application/grpc")
            .header(header::TE, "trailers")
            .header(header::USER_AGENT, "ringest-grpc/0.1")
            .header("grpc-accept-encoding", ACCEPT_ENCODING)
            .header("grpc-timeout", format_timeout(remaining));
        if compression == Compression::Snappy {
            req = req.header("grpc-encoding", "snappy");
        }
        for (name, value) in metadata {
            req = req.header(name, value);
        }
        req.body(GrpcBody::new(chunks.clone(), None))
            .map_err(|e| Status::new(Code::Internal, format!("invalid request for {path:?}: {e}")))
    }

    async fn response(&self, resp: Response<Incoming>, conn_id: u64) -> Result<Bytes, Status> {
        let (parts, body) = resp.into_parts();
        if let Some(status) = read_status(&parts.headers) {
            // Trailers-Only: a unary call cannot succeed without a message.
            return Err(match status.code {
                Code::Ok => Status::new(Code::Internal, "server sent no response message"),
                _ => status,
            });
        }
        if parts.status != http::StatusCode::OK {
            let msg = format!("unexpected HTTP status code received from server: {}", parts.status);
            return Err(Status::new(Code::from_http_status(parts.status.as_u16()), msg));
        }
        let content_type = parts.headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes);
        if !content_type.is_some_and(|ct| ct.starts_with(b"application/grpc")) {
            let msg = format!("unexpected content-type {content_type:?}");
            return Err(Status::new(Code::Internal, msg));
        }
        let compression = Compression::from_header(parts.headers.get("grpc-encoding"))
            .map_err(|name| Status::new(Code::Unimplemented, format!("unsupported grpc-encoding {name:?}")))?;
        let max = self.inner.opts.max_message_bytes;
        let unary = match read_unary(body, max, |_| Ok(()), |e| transport_status(&e)).await {
            Ok(unary) => unary,
            Err(status) => {
                if status.code == Code::Unavailable {
                    self.forget(conn_id).await;
                }
                return Err(status);
            }
        };
        let trailers = unary.trailers.as_ref().and_then(read_status);
        match trailers {
            None => Err(Status::new(Code::Internal, "server closed the stream without grpc-status")),
            Some(status) if status.code != Code::Ok => Err(status),
            Some(_) => match unary.message {
                Some((compressed, data)) => compression.unframe(compressed, data, max),
                None => Err(Status::new(Code::Internal, "server sent no response message")),
            },
        }
    }

    /// The shared connection, dialing it if there is none or it has closed.
    async fn connection(&self) -> Result<Conn, Status> {
        let mut guard = self.inner.conn.lock().await;
        if let Some(conn) = guard.as_ref().filter(|c| !c.sender.is_closed()) {
            return Ok(conn.clone());
        }
        *guard = None;
        let opts = &self.inner.opts;
        let addr = &self.inner.addr;
        let sender = tokio::time::timeout(opts.connect_timeout, self.dial())
            .await
            .unwrap_or_else(|_| Err(format!("dial tcp {addr}: i/o timeout")))
            .map_err(|e| Status::new(Code::Unavailable, format!("connection error: {e}")))?;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Conn { id, sender };
        *guard = Some(conn.clone());
        Ok(conn)
    }

    async fn dial(&self) -> Result<SendRequest<GrpcBody>, String> {
        let addr = &self.inner.addr;
        if let Some(dialer) = &self.inner.opts.dialer {
            let stream = dialer.dial(addr).await.map_err(|e| format!("dial {addr}: {e}"))?;
            return self.secure(stream).await;
        }
        let stream = TcpStream::connect(addr.as_str()).await.map_err(|e| format!("dial tcp {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        self.secure(stream).await
    }

    /// TLS (if configured), then the HTTP/2 handshake, on a connected stream.
    async fn secure<S: Stream>(&self, stream: S) -> Result<SendRequest<GrpcBody>, String> {
        let addr = &self.inner.addr;
        match &self.inner.opts.tls {
            None => self.handshake(stream).await,
            Some(tls) => {
                let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let stream = tls.connect(host, stream).await.map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
                self.handshake(stream).await
            }
        }
    }

    /// The HTTP/2 handshake on a connected stream; the connection is then driven by a task.
    async fn handshake<S>(&self, stream: S) -> Result<SendRequest<GrpcBody>, String>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let addr = &self.inner.addr;
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .initial_stream_window_size(2 << 20)
            .initial_connection_window_size(8 << 20)
            .max_header_list_size(4 << 20)
            .keep_alive_interval(self.inner.opts.keepalive)
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(false)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("http2 handshake with {addr}: {e}"))?;
        let addr = addr.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, error = %e, "gRPC client connection closed");
            }
        });
        Ok(sender)
    }

    /// Drops the cached connection if it is still `id`, so the next call re-dials.
    async fn forget(&self, id: u64) {
        let mut guard = self.inner.conn.lock().await;
        if guard.as_ref().is_some_and(|c| c.id == id) {
            *guard = None;
        }
    }
}

/// Maps a transport failure: stream resets per the gRPC spec's RST_STREAM table, everything
/// else (refused, reset, GOAWAY, closed) to `Unavailable`.
fn transport_status(err: &hyper::Error) -> Status {
    let mut source: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(h2) = e.downcast_ref::<h2::Error>()
            && h2.is_reset()
            && let Some(reason) = h2.reason()
        {
            let code = match reason {
                h2::Reason::REFUSED_STREAM => Code::Unavailable,
                h2::Reason::CANCEL => Code::Cancelled,
                h2::Reason::ENHANCE_YOUR_CALM => Code::ResourceExhausted,
                h2::Reason::INADEQUATE_SECURITY => Code::PermissionDenied,
                _ => Code::Internal,
            };
            let msg = format!("stream terminated by RST_STREAM with error code: {reason:?}");
            return Status::new(code, msg);
        }
        source = e.source();
    }
    Status::new(Code::Unavailable, format!("connection error: {err}"))
}
