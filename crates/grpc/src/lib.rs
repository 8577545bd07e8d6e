//! A small unary-only gRPC implementation (server and client) over HTTP/2 on hyper 1.x.
//!
//! It exists so that ringest can talk to Go Thanos receivers, which compress with
//! `grpc-encoding: snappy` in the snappy *framing* format, and so that pre-encoded protobuf
//! messages can be forwarded as raw bytes. Handlers and callers see raw message bytes; protobuf
//! encoding is the caller's business.

mod client;
mod server;
mod status;
mod wire;

pub use client::{Channel, ChannelOptions};
pub use server::{HEALTH_CHECK_PATH, HandlerFuture, Message, Server, UnaryHandler};
pub use status::{Code, Status};
pub use wire::{
    Compression, Encoded, MessageEncoder, SharedStart, format_timeout, parse_timeout, snappy_compress,
    snappy_decompress,
};
