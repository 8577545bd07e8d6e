//! gRPC for ringest over HTTP/2 on hyper 1.x: a server hosting tonic services next to raw
//! unary routes, and a unary client.
//!
//! It exists so that ringest can talk to Go Thanos receivers, which compress with
//! `grpc-encoding: snappy` in the snappy *framing* format (tonic's compression set is closed:
//! the server translates snappy for its tonic services), and so that pre-encoded protobuf
//! messages can be forwarded and received as raw bytes: raw handlers and callers see message
//! bytes, protobuf encoding is their business. Connections (accept loop, HTTP/2 settings,
//! graceful drain) are this crate's; tonic provides routing, codecs and generated services.

mod client;
mod server;
mod status;
mod transport;
mod wire;

pub use client::{Channel, ChannelOptions};
pub use server::{
    Admission, CallEnd, CallKind, CallMeta, ConnLimits, HEALTH_CHECK_PATH, HandlerFuture, Message, Method, Observer,
    Server, UnaryHandler,
};
pub use status::{Code, Status};
pub use transport::{Acceptor, Dialer, Dialing, Stream};
pub use wire::{
    Compression, Encoded, MessageEncoder, SharedStart, format_timeout, parse_timeout, snappy_compress,
    snappy_decompress,
};
