//! Shared by the loopback and interop tests: a handler whose behaviour is chosen by its mode.

use std::time::Duration;

use bytes::Bytes;
use ringest_grpc::{Code, HandlerFuture, Message, Status, UnaryHandler};

/// The error message of the `fail` mode (non-ASCII, `%` and a newline: grpc-message encoding).
pub const FAIL_MESSAGE: &str = "conflict: 100% ✓\nsecond line";

/// Echoes (`echo`), fails (`fail`), panics (`panic`), or echoes after the given delay
/// (any other mode).
pub struct Handler(pub &'static str, pub Duration);

impl UnaryHandler for Handler {
    fn call(&self, request: Message) -> HandlerFuture<'_> {
        Box::pin(async move {
            let request: Bytes = request.into_bytes()?;
            match self.0 {
                "echo" => Ok(request),
                "fail" => Err(Status::new(Code::AlreadyExists, FAIL_MESSAGE)),
                "panic" => panic!("handler bug"),
                _ => {
                    tokio::time::sleep(self.1).await;
                    Ok(request)
                }
            }
        })
    }
}
