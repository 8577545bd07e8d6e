//! Serving HTTP connections (the remote-write and ops ports) with the limits a hostile or broken
//! client calls for.
//!
//! `axum::serve` leaves hyper's header read timeout without a timer, so it never fires: a client
//! that sends a request line and then a header every few seconds holds its connection (and its
//! task) for ever, and a thousand such clients hold a thousand. Here every connection must
//! deliver a request's headers within [`HttpLimits::header_read_timeout`] of the server starting
//! to wait for them, which also closes keep-alive connections idle for that long; headers are
//! capped in size; reads are capped too, so a connection's read buffer stays small however fast
//! its body arrives (`CappedReads`); and past [`HttpLimits::max_connections`] open
//! connections a new one is closed as soon as it is accepted. (The body's timeout is the write
//! handler's.) Graceful shutdown is axum's: stop accepting, let each connection finish its
//! request, then close.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::either::Either;

use crate::tenancy::Client;

/// The `--ringest.http.*` limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// How long a connection may take to deliver a request's headers, counted from when the
    /// server starts waiting for them (so also the longest a keep-alive connection stays idle).
    /// Prometheus sends a request at least every few seconds while it has data, and reconnects
    /// when an idle connection was closed.
    pub header_read_timeout: Duration,
    /// How long a write request's body may take to arrive.
    pub body_read_timeout: Duration,
    /// Largest request line and headers (hyper's read buffer; at least 8 KiB).
    pub max_header_bytes: usize,
    /// Most open connections per port.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            max_header_bytes: 64 << 10,
            max_connections: 4096,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then drains: no new connections,
/// each open one ends after its current request. Connections closed at once because
/// `max_connections` were open are counted in `refused`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    tls: Option<ringest_tls::Acceptor>,
    refused: IntCounter,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    let open = Arc::new(Semaphore::new(limits.max_connections));
    // Closed when shutdown starts: every connection task watches it.
    let (signal_tx, _) = watch::channel(());
    // Held by every connection task: shutdown waits until all are dropped.
    let (close_tx, close_rx) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // wait a little rather than spin.
                    tracing::debug!(err = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Answers go out as written: with TLS, a response is several records, and Nagle's
        // algorithm would hold the last one until the client's delayed ACK (40 ms).
        let _ = stream.set_nodelay(true);
        let Ok(slot) = open.clone().try_acquire_owned() else {
            refused.inc();
            drop(stream);
            continue;
        };
        let (builder, router, tls) = (builder.clone(), router.clone(), tls.clone());
        let (mut signal, close_rx) = (signal_tx.subscribe(), close_rx.clone());
        tokio::spawn(async move {
            let (stream, identity) = match tls {
                None => (Either::Left(stream), None),
                // The handshake counts against the header read timeout.
                Some(tls) => match tokio::time::timeout(limits.header_read_timeout, tls.accept(stream)).await {
                    Ok(Ok(s)) => {
                        let id = ringest_tls::Identity::of_client(&s);
                        (Either::Right(s), id)
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(err = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("TLS handshake timed out");
                        return;
                    }
                },
            };
            // Requests carry who connected: the address, and whom the client certificate names.
            let router = router.layer(axum::Extension(Client { addr, identity }));
            let service = TowerToHyperService::new(router);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(CappedReads(stream)), service);
            tokio::pin!(conn);
            let mut stopping = false;
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(err = %e, "HTTP connection ended with an error");
                        }
                        break;
                    }
                    _ = signal.changed(), if !stopping => {
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            drop((close_rx, slot));
        });
    }
    drop(listener);
    drop(signal_tx);
    drop(close_rx);
    close_tx.closed().await;
}

/// Most bytes a connection hands hyper per read.
const READ_CAP: usize = 8 << 10;

/// What one connection reading a body holds besides the body, charged to each HTTP write: its
/// read buffer (at most twice `READ_CAP`, see `CappedReads`), the buffer that one outgrew,
/// its task and its answer. Measured with 200 connections stalled halfway through 4 MiB bodies:
/// 32 KiB each (160 KiB before reads were capped, when the buffer grew to the header limit).
pub const CONNECTION_COST: usize = 5 * READ_CAP;

/// A connection that returns at most [`READ_CAP`] bytes per read. hyper reads a body through
/// its connection's read buffer and doubles that buffer, up to the header limit, whenever a
/// read fills it; a connection whose reads never exceed 8 KiB keeps a buffer of 16 KiB however
/// fast its body arrives (headers larger than that still grow it, up to the limit). Idle
/// keep-alive connections keep the buffer they grew, so this bounds what every open connection
/// holds, not only those reading a body.
struct CappedReads<S>(S);

impl<S: AsyncRead + Unpin> AsyncRead for CappedReads<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if buf.remaining() <= READ_CAP {
            return Pin::new(&mut self.0).poll_read(cx, buf);
        }
        let mut capped = buf.take(READ_CAP);
        let polled = Pin::new(&mut self.0).poll_read(cx, &mut capped);
        let n = capped.filled().len();
        // SAFETY: `capped` is the start of `buf`'s unfilled part, and its first `n` bytes were
        // filled (so initialised) by the read.
        unsafe { buf.assume_init(n) };
        buf.advance(n);
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CappedReads<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, b)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
