//! Where connections come from: TCP unless told otherwise. A simulation (the deterministic
//! tests) hands the client its own streams through a [`Dialer`] and the server through an
//! [`Acceptor`]; everything above the byte stream (HTTP/2, gRPC framing, deadlines) is the same.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

/// A connected byte stream.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// A dial in progress.
pub type Dialing = Pin<Box<dyn Future<Output = io::Result<Box<dyn Stream>>> + Send>>;

/// Opens client connections in place of TCP ([`crate::ChannelOptions::dialer`]).
pub trait Dialer: Send + Sync + fmt::Debug {
    /// A connection to `addr` (`host:port`).
    fn dial(&self, addr: &str) -> Dialing;
}

/// Connections a server accepts ([`crate::Server::serve_from`]).
pub trait Acceptor: Send {
    /// What it accepts.
    type Stream: Stream;

    /// The next connection and its peer's address.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;
}

impl Acceptor for TcpListener {
    type Stream = tokio::net::TcpStream;

    async fn accept(&mut self) -> io::Result<(Self::Stream, SocketAddr)> {
        let (stream, peer) = TcpListener::accept(self).await?;
        let _ = stream.set_nodelay(true);
        Ok((stream, peer))
    }
}
