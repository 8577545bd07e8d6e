//! Thanos' `snappy` message compression for tonic services, whose compression set is closed.
//!
//! A request compressed with `snappy` reaches the service as an uncompressed message, and every
//! message of its response goes back compressed with `snappy` (grpc-go's rule: a server answers
//! with the compression the request used). Other requests pass through untouched.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderValue, Request, Response};
use http_body::{Body, Frame};

use crate::status::{Code, Status};
use crate::wire::{Compression, read_unary};

/// A tonic service behind the `snappy` translation.
#[derive(Clone)]
pub(crate) struct Snappy<S> {
    inner: S,
    max_message_bytes: usize,
}

impl<S> Snappy<S> {
    pub(crate) fn new(inner: S, max_message_bytes: usize) -> Self {
        Snappy { inner, max_message_bytes }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Snappy<S> {
    const NAME: &'static str = S::NAME;
}

type BoxBody = tonic::body::Body;

impl<S> tower_service::Service<Request<BoxBody>> for Snappy<S>
where
    S: tower_service::Service<Request<BoxBody>, Response = Response<BoxBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<BoxBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<BoxBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<BoxBody>) -> Self::Future {
        // The clone that was made ready is the one to call (tower's rule).
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        if req.headers().get("grpc-encoding").map(HeaderValue::as_bytes) != Some(b"snappy") {
            return Box::pin(inner.call(req));
        }
        let max = self.max_message_bytes;
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            parts.headers.remove("grpc-encoding");
            let message = match read_message(body, max).await {
                Ok(m) => m,
                Err(status) => return Ok(super::trailers_only(&status).map(BoxBody::new)),
            };
            let mut resp = inner.call(Request::from_parts(parts, BoxBody::new(message))).await?;
            resp.headers_mut().insert("grpc-encoding", HeaderValue::from_static("snappy"));
            Ok(resp.map(|b| BoxBody::new(Compressing::new(b))))
        })
    }
}

/// Reads a request's single message and returns it framed uncompressed.
async fn read_message(body: BoxBody, max: usize) -> Result<http_body_util::Full<Bytes>, Status> {
    let unary =
        read_unary(body, max, |_| Ok(()), |e| Status::new(Code::Cancelled, format!("reading request: {e}"))).await?;
    let Some((compressed, data)) = unary.message else {
        return Ok(http_body_util::Full::new(Bytes::new()));
    };
    let payload = Compression::Snappy.unframe(compressed, data, max)?;
    let mut framed = BytesMut::with_capacity(5 + payload.len());
    framed.extend_from_slice(&[0]);
    framed.extend_from_slice(&u32::try_from(payload.len()).unwrap_or(u32::MAX).to_be_bytes());
    framed.extend_from_slice(&payload);
    Ok(http_body_util::Full::new(framed.freeze()))
}

/// A response body whose messages are compressed with `snappy` as they pass.
struct Compressing {
    inner: BoxBody,
    /// Bytes of a message not complete yet.
    pending: BytesMut,
    /// Compressed message pieces ready to go out.
    out: VecDeque<Bytes>,
}

impl Compressing {
    fn new(inner: BoxBody) -> Self {
        Compressing { inner, pending: BytesMut::new(), out: VecDeque::new() }
    }

    /// Moves every complete message of `pending` to `out`, compressed.
    fn split(&mut self) -> Result<(), Status> {
        while self.pending.len() >= 5 {
            let len = u32::from_be_bytes([self.pending[1], self.pending[2], self.pending[3], self.pending[4]]) as usize;
            if self.pending.len() < 5 + len {
                break;
            }
            let flag = self.pending[0];
            self.pending.advance(5);
            let payload = self.pending.split_to(len).freeze();
            if flag != 0 {
                return Err(Status::new(Code::Internal, "grpc: response message already compressed"));
            }
            self.out.extend(Compression::Snappy.frame(payload)?.into_iter().filter(|b| !b.is_empty()));
        }
        Ok(())
    }
}

impl Body for Compressing {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        loop {
            if let Some(b) = self.out.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(b))));
            }
            let frame = match std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
                None => {
                    if !self.pending.is_empty() {
                        let s = tonic::Status::internal("grpc: response ended inside a message");
                        return Poll::Ready(Some(Err(s)));
                    }
                    return Poll::Ready(None);
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                Some(Ok(f)) => f,
            };
            match frame.into_data() {
                Ok(data) => {
                    self.pending.extend_from_slice(&data);
                    if let Err(s) = self.split() {
                        return Poll::Ready(Some(Err(tonic::Status::new(
                            tonic::Code::from_i32(s.code as i32),
                            s.message,
                        ))));
                    }
                }
                // Trailers (or another kind of frame) go out as they are.
                Err(frame) => return Poll::Ready(Some(Ok(frame))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.out.is_empty() && self.pending.is_empty() && self.inner.is_end_stream()
    }
}
