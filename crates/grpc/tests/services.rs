//! tonic services on our server: unary and server-streaming calls with and without Thanos'
//! `snappy` compression, read by a plain HTTP/2 client that checks every message's framing.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use ringest_grpc::{CallKind, Compression, Server, snappy_compress, snappy_decompress};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::{Grpc, NamedService, ServerStreamingService, UnaryService};

/// Messages as raw bytes.
#[derive(Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// `test.Stream/Echo` (unary) and `test.Stream/Repeat` (the request, sent back as many times
/// as its first byte says, each copy tagged with its index).
#[derive(Clone)]
struct TestService;

impl NamedService for TestService {
    const NAME: &'static str = "test.Stream";
}

struct Echo;

impl UnaryService<Bytes> for Echo {
    type Response = Bytes;
    type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<Bytes>, tonic::Status>> + Send>>;
    fn call(&mut self, req: tonic::Request<Bytes>) -> Self::Future {
        Box::pin(async move { Ok(tonic::Response::new(req.into_inner())) })
    }
}

struct Repeat;

type Stream = Pin<Box<dyn tonic::codegen::tokio_stream::Stream<Item = Result<Bytes, tonic::Status>> + Send>>;

impl ServerStreamingService<Bytes> for Repeat {
    type Response = Bytes;
    type ResponseStream = Stream;
    type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<Stream>, tonic::Status>> + Send>>;
    fn call(&mut self, req: tonic::Request<Bytes>) -> Self::Future {
        Box::pin(async move {
            let body = req.into_inner();
            let n = body.first().copied().unwrap_or(0) as usize;
            let items: Vec<Result<Bytes, tonic::Status>> =
                (0..n).map(|i| Ok(Bytes::from([&[i as u8][..], &body[..]].concat()))).collect();
            Ok(tonic::Response::new(Box::pin(tonic::codegen::tokio_stream::iter(items)) as Stream))
        })
    }
}

impl tower_service::Service<Request<tonic::body::Body>> for TestService {
    type Response = Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<tonic::body::Body>, Infallible>> + Send>>;
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            let mut grpc = Grpc::new(Raw);
            Ok(match req.uri().path() {
                "/test.Stream/Echo" => grpc.unary(Echo, req).await,
                _ => grpc.server_streaming(Repeat, req).await,
            })
        })
    }
}

/// What came back: the response's `grpc-encoding`, its messages (decompressed) and `grpc-status`.
struct Reply {
    encoding: Option<String>,
    messages: Vec<Bytes>,
    status: Option<String>,
}

/// Calls `path` with one message over a fresh HTTP/2 connection.
async fn call(addr: std::net::SocketAddr, path: &str, msg: &[u8], compression: Compression) -> Reply {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let (flag, payload) = match compression {
        Compression::Snappy => (1u8, snappy_compress(msg).unwrap()),
        Compression::None => (0u8, Bytes::copy_from_slice(msg)),
    };
    let mut body = BytesMut::new();
    body.put_u8(flag);
    body.put_u32(payload.len() as u32);
    body.put(payload);
    let req = Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-encoding", compression.name())
        .header("grpc-accept-encoding", "snappy,identity")
        .body(Full::new(body.freeze()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let encoding = resp.headers().get("grpc-encoding").map(|v| v.to_str().unwrap().to_string());
    let mut status = resp.headers().get("grpc-status").map(|v| v.to_str().unwrap().to_string());
    let collected = resp.into_body().collect().await.unwrap();
    if let Some(t) = collected.trailers() {
        status = t.get("grpc-status").map(|v| v.to_str().unwrap().to_string());
    }
    let mut data = collected.to_bytes();
    let mut messages = Vec::new();
    while data.has_remaining() {
        let flag = data.get_u8();
        let len = data.get_u32() as usize;
        let m = data.split_to(len);
        messages.push(match flag {
            0 => m,
            _ => {
                assert_eq!(encoding.as_deref(), Some("snappy"), "a compressed message needs grpc-encoding");
                snappy_decompress(&m, 1 << 20).unwrap()
            }
        });
    }
    Reply { encoding, messages, status }
}

async fn start() -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let methods = [("Echo", CallKind::Unary), ("Repeat", CallKind::ServerStream)];
    let server = Server::new(1 << 20).service(TestService, &methods).health(Arc::new(|| true));
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(server.serve(listener, async {
        let _ = rx.await;
    }));
    (addr, tx)
}

#[tokio::test(flavor = "multi_thread")]
async fn unary_and_streaming_with_both_compressions() {
    let (addr, _stop) = start().await;
    // Compressible, and more than one snappy chunk (64 KiB) long.
    let msg: Vec<u8> = [&[5u8][..], &b"abcdefgh".repeat(20_000)].concat();
    for c in [Compression::None, Compression::Snappy] {
        let want_encoding = (c == Compression::Snappy).then(|| "snappy".to_string());
        let r = call(addr, "/test.Stream/Echo", &msg, c).await;
        assert_eq!(r.status.as_deref(), Some("0"), "{c:?}");
        assert_eq!(r.encoding, want_encoding, "{c:?}");
        assert_eq!(r.messages, vec![Bytes::from(msg.clone())], "{c:?}");

        let r = call(addr, "/test.Stream/Repeat", &msg, c).await;
        assert_eq!(r.status.as_deref(), Some("0"), "{c:?}");
        assert_eq!(r.encoding, want_encoding, "{c:?}");
        assert_eq!(r.messages.len(), 5, "{c:?}");
        for (i, m) in r.messages.iter().enumerate() {
            assert_eq!(m[0] as usize, i);
            assert_eq!(&m[1..], &msg[..]);
        }
    }
}

/// A request that claims snappy but is not: a clear error, not a hang or a panic.
#[tokio::test(flavor = "multi_thread")]
async fn bad_snappy_request_is_an_error() {
    let (addr, _stop) = start().await;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let body = Bytes::from_static(&[1, 0, 0, 0, 3, b'b', b'a', b'd']);
    let req = Request::post(format!("http://{addr}/test.Stream/Echo"))
        .header("content-type", "application/grpc")
        .header("grpc-encoding", "snappy")
        .body(Full::new(body))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.headers().get("grpc-status").map(|v| v.to_str().unwrap().to_string());
    assert!(status.is_some_and(|s| s != "0"), "a non-OK status in the headers");
}

/// Unknown services and methods answer `Unimplemented` (12).
#[tokio::test(flavor = "multi_thread")]
async fn unknown_service_is_unimplemented() {
    let (addr, _stop) = start().await;
    let r = call(addr, "/nope.Nope/Call", b"x", Compression::None).await;
    assert_eq!(r.status.as_deref(), Some("12"));
}

/// With a maximum connection age the server closes a connection once it is that old, after
/// the call in flight on it has finished; the client's next call needs a new connection.
#[tokio::test(flavor = "multi_thread")]
async fn old_connections_are_closed_after_their_calls() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let methods = [("Echo", CallKind::Unary), ("Repeat", CallKind::ServerStream)];
    let age = std::time::Duration::from_millis(300);
    let server = Server::new(1 << 20).service(TestService, &methods).max_connection_age(age);
    tokio::spawn(server.serve(listener, std::future::pending()));
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    let conn = tokio::spawn(conn);
    let started = std::time::Instant::now();
    let req = Request::post(format!("http://{addr}/test.Stream/Echo"))
        .header("content-type", "application/grpc")
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 1, 7])))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.headers().get("grpc-status").map(|v| v.as_bytes()), None, "a streamed answer");
    let body = resp.into_body().collect().await.unwrap();
    assert_eq!(body.trailers().and_then(|t| t.get("grpc-status")).map(|v| v.as_bytes()), Some(&b"0"[..]));
    // The server ends the connection on its own (bounded wait, not a fixed sleep).
    tokio::time::timeout(std::time::Duration::from_secs(10), conn)
        .await
        .expect("connection closed by the server")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() >= age, "not before its age: {:?}", started.elapsed());
}

/// With a maximum idle time the server closes a connection that has had no call in flight for
/// that long: not while calls keep coming, soon after they stop, and a connection that never
/// sends its HTTP/2 preface is closed the same way.
#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_are_closed() {
    use std::time::{Duration, Instant};
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let methods = [("Echo", CallKind::Unary), ("Repeat", CallKind::ServerStream)];
    let idle = Duration::from_millis(400);
    let limits = ringest_grpc::ConnLimits { max_connection_idle: idle, ..Default::default() };
    let server = Server::new(1 << 20).service(TestService, &methods).limits(limits);
    tokio::spawn(server.serve(listener, std::future::pending()));

    // A silent TCP connection: closed (EOF) after about the idle time.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let opened = Instant::now();
    let mut buf = [0u8; 256];
    let read = async {
        // The server's preface (SETTINGS) may come first; then EOF.
        while silent.read(&mut buf).await.unwrap_or(0) > 0 {}
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.expect("silent connection closed by the server");
    assert!(opened.elapsed() >= idle, "not before the idle time: {:?}", opened.elapsed());

    // A connection with a call every 100 ms for 2 s (5x the idle time) stays open.
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    let conn = tokio::spawn(conn);
    let busy_until = Instant::now() + Duration::from_secs(2);
    let mut last_call = Instant::now();
    while Instant::now() < busy_until {
        let req = Request::post(format!("http://{addr}/test.Stream/Echo"))
            .header("content-type", "application/grpc")
            .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 1, 7])))
            .unwrap();
        let resp = sender.send_request(req).await.expect("the busy connection is still open");
        resp.into_body().collect().await.unwrap();
        last_call = Instant::now();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("idle connection closed by the server")
        .unwrap()
        .unwrap();
    assert!(last_call.elapsed() >= idle, "closed {:?} after its last call", last_call.elapsed());
}
