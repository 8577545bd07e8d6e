//! Unary gRPC over loopback through ringest's own stack (`ringest_grpc`) and through tonic,
//! with the message sizes of Thanos' write RPC: CPU-seconds of the whole process (client and
//! server) per call, and calls per second.
//!
//! Both run identity-encoded messages: the framed-snappy codec costs the same whichever stack
//! carries its bytes (tonic cannot carry Thanos' snappy itself: its compression set is closed, so
//! adopting it means a layer that translates snappy frames). Each stack gets the same HTTP/2
//! windows (2 MiB per stream, 8 MiB per connection), message limits and concurrency.
//!
//! `cargo run --release -p ringest-benches --example grpc_stacks [calls]`

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};
use ringest_grpc::{Channel, ChannelOptions, Compression, Server, Status as OurStatus, UnaryHandler};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::NamedService;

const PATH: &str = "/thanos.WriteableStore/RemoteWrite";
const MAX: usize = 256 << 20;
const CONCURRENCY: usize = 4;

/// Messages as raw bytes, as ringest handles them (no protobuf types in between).
#[derive(Clone, Copy, Default)]
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
        dst.put_slice(&item);
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

/// The write service for tonic: reads the message's length and answers an empty message.
#[derive(Clone)]
struct TonicWrite;

impl NamedService for TonicWrite {
    const NAME: &'static str = "thanos.WriteableStore";
}

impl tower_service::Service<http::Request<tonic::body::Body>> for TonicWrite {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(Raw).max_decoding_message_size(MAX);
            Ok(grpc.unary(Unary, req).await)
        })
    }
}

/// The unary handler tonic calls.
struct Unary;

impl tonic::server::UnaryService<Bytes> for Unary {
    type Response = Bytes;
    type Future = std::future::Ready<Result<tonic::Response<Bytes>, tonic::Status>>;
    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        std::hint::black_box(request.get_ref().len());
        std::future::ready(Ok(tonic::Response::new(Bytes::new())))
    }
}

/// The same handler for ringest's server.
struct OurWrite;

impl UnaryHandler for OurWrite {
    fn call(&self, m: ringest_grpc::Message) -> Pin<Box<dyn Future<Output = Result<Bytes, OurStatus>> + Send + '_>> {
        Box::pin(async move {
            std::hint::black_box(m.into_bytes()?.len());
            Ok(Bytes::new())
        })
    }
}

/// User + system CPU-seconds of this process so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// Runs `calls` calls, `CONCURRENCY` at a time, through `call`; CPU-seconds and wall seconds.
async fn measure<F, Fut>(calls: usize, call: F) -> (f64, f64)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let (cpu, wall) = (cpu_seconds(), Instant::now());
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let call = call.clone();
            tokio::spawn(async move {
                for _ in 0..calls / CONCURRENCY {
                    call().await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("caller panicked");
    }
    (cpu_seconds() - cpu, wall.elapsed().as_secs_f64())
}

async fn ours(payload: Bytes, calls: usize) -> (f64, f64) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    let server = Server::new(MAX).route(PATH, Arc::new(OurWrite));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(l, async move {
        let _ = stopped.await;
    }));
    let ch = Channel::new(
        addr,
        ChannelOptions {
            compression: Compression::None,
            max_message_bytes: MAX,
            connect_timeout: Duration::from_secs(5),
            keepalive: Duration::from_secs(10),
            tls: None,
            dialer: None,
        },
    );
    ch.unary(PATH, payload.clone(), Duration::from_secs(10)).await.expect("warm-up call");
    let r = measure(calls, move || {
        let (ch, payload) = (ch.clone(), payload.clone());
        async move {
            ch.unary(PATH, payload, Duration::from_secs(10)).await.expect("call");
        }
    })
    .await;
    let _ = stop.send(());
    let _ = serving.await;
    r
}

async fn tonic_stack(payload: Bytes, calls: usize) -> (f64, f64) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let incoming = tonic::transport::server::TcpIncoming::from(l).with_nodelay(Some(true));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(
        tonic::transport::Server::builder()
            .initial_stream_window_size(2 << 20)
            .initial_connection_window_size(8 << 20)
            .add_service(TonicWrite)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stopped.await;
            }),
    );
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .initial_stream_window_size(2 << 20)
        .initial_connection_window_size(8 << 20)
        .tcp_nodelay(true)
        .connect()
        .await
        .expect("connect");
    let client = tonic::client::Grpc::new(ch).max_decoding_message_size(MAX).max_encoding_message_size(MAX);
    let path = http::uri::PathAndQuery::from_static(PATH);
    let call = move || {
        let (mut client, payload, path) = (client.clone(), payload.clone(), path.clone());
        async move {
            client.ready().await.expect("ready");
            let r: tonic::Response<Bytes> = client.unary(tonic::Request::new(payload), path, Raw).await.expect("call");
            std::hint::black_box(r);
        }
    };
    call().await;
    let r = measure(calls, call).await;
    let _ = stop.send(());
    let _ = serving.await;
    r
}

fn main() {
    let calls: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(4000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    println!("| message | stack | calls | CPU µs per call | calls per second |");
    println!("| --- | --- | --- | --- | --- |");
    for size in [4 << 10, 64 << 10, 512 << 10] {
        let payload: Bytes = (0..size).map(|i| (i * 7 % 251) as u8).collect::<Vec<u8>>().into();
        let n = (calls * (64 << 10) / size).clamp(200, calls);
        for round in 0..2 {
            for (name, (cpu, wall)) in [
                ("ringest_grpc", rt.block_on(ours(payload.clone(), n))),
                ("tonic", rt.block_on(tonic_stack(payload.clone(), n))),
            ] {
                if round == 1 {
                    println!(
                        "| {} KiB | {name} | {n} | {:.1} | {:.0} |",
                        size >> 10,
                        cpu / n as f64 * 1e6,
                        n as f64 / wall
                    );
                }
            }
        }
    }
}
