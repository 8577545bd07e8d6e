//! Our client against our server on loopback: compression, limits, errors, deadlines,
//! reconnection, concurrency, health and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringest_grpc::{Channel, ChannelOptions, Code, Compression, Server, Status};

mod common;
use common::{FAIL_MESSAGE, Handler};

/// Delay of the handler's slow mode.
const SLOW: Duration = Duration::from_millis(300);
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const ECHO: &str = "/test.Echo/Echo";
const LIMIT: usize = 1 << 20;
const SECOND: Duration = Duration::from_secs(1);

struct TestServer {
    addr: SocketAddr,
    serving: Arc<AtomicBool>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    async fn start(addr: &str) -> TestServer {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serving = Arc::new(AtomicBool::new(true));
        let probe = serving.clone();
        let server = Server::new(LIMIT)
            .route(ECHO, Arc::new(Handler("echo", SLOW)))
            .route("/test.Echo/Fail", Arc::new(Handler("fail", SLOW)))
            .route("/test.Echo/Panic", Arc::new(Handler("panic", SLOW)))
            .route("/test.Echo/Slow", Arc::new(Handler("slow", SLOW)))
            .health(Arc::new(move || probe.load(Ordering::SeqCst)));
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(server.serve(listener, async {
            let _ = rx.await;
        }));
        TestServer { addr, serving, stop: Some(tx), task }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

fn channel(addr: SocketAddr, compression: Compression) -> Channel {
    let opts = ChannelOptions {
        compression,
        max_message_bytes: 4 * LIMIT,
        connect_timeout: SECOND,
        keepalive: Duration::from_secs(10),
        tls: None,
        dialer: None,
    };
    Channel::new(addr.to_string(), opts)
}

/// Incompressible bytes (xorshift).
fn noise(len: usize, seed: u64) -> Bytes {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn echo_with_both_compressions_and_near_limit() {
    let srv = TestServer::start("127.0.0.1:0").await;
    for compression in [Compression::None, Compression::Snappy] {
        let ch = channel(srv.addr, compression);
        for msg in [Bytes::new(), Bytes::from_static(b"hello"), Bytes::from(vec![7u8; LIMIT]), noise(LIMIT - 256, 1)] {
            let got = ch.unary(ECHO, msg.clone(), 5 * SECOND).await.unwrap();
            assert_eq!(got, msg, "{compression:?} len {}", msg.len());
        }
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_encoded_in_pieces() {
    let srv = TestServer::start("127.0.0.1:0").await;
    let msg = noise(300_000, 3);
    for compression in [Compression::None, Compression::Snappy] {
        // The channel's own compression does not matter: the message is sent with its own.
        let ch = channel(srv.addr, Compression::Snappy);
        for piece in [1000, 65_536, 100_000] {
            let mut enc = compression.encoder(msg.len());
            for p in msg.chunks(piece) {
                enc.write(p).unwrap();
            }
            let got = ch.unary_encoded(ECHO, enc.finish().unwrap(), 5 * SECOND).await.unwrap();
            assert_eq!(got, msg, "{compression:?} in pieces of {piece}");
        }
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn size_limits() {
    let srv = TestServer::start("127.0.0.1:0").await;
    for compression in [Compression::None, Compression::Snappy] {
        let ch = channel(srv.addr, compression);
        let err = ch.unary(ECHO, noise(LIMIT + 1, 2), 5 * SECOND).await.unwrap_err();
        assert_eq!(err.code, Code::ResourceExhausted, "{err}");
        // The channel is still usable afterwards.
        let ok = ch.unary(ECHO, Bytes::from_static(b"x"), 5 * SECOND).await;
        assert_eq!(ok.unwrap(), "x");
    }
    // A snappy bomb: small on the wire, over the limit once inflated.
    let ch = channel(srv.addr, Compression::Snappy);
    let err = ch.unary(ECHO, vec![0u8; 16 * LIMIT].into(), 5 * SECOND).await.unwrap_err();
    assert_eq!(err.code, Code::ResourceExhausted, "{err}");
    // A response over the client's limit.
    let small = ChannelOptions { max_message_bytes: 1000, ..ChannelOptions::default() };
    for compression in [Compression::None, Compression::Snappy] {
        let ch = Channel::new(srv.addr.to_string(), ChannelOptions { compression, ..small.clone() });
        let err = ch.unary(ECHO, noise(1001, 3), 5 * SECOND).await.unwrap_err();
        assert_eq!(err.code, Code::ResourceExhausted, "{err}");
        // The limit also applies to the compressed wire size, so leave room for framing overhead.
        assert_eq!(ch.unary(ECHO, noise(900, 3), 5 * SECOND).await.unwrap(), noise(900, 3));
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_are_preserved() {
    let srv = TestServer::start("127.0.0.1:0").await;
    let ch = channel(srv.addr, Compression::Snappy);
    let err = ch.unary("/test.Echo/Fail", Bytes::new(), SECOND).await.unwrap_err();
    assert_eq!(err, Status::new(Code::AlreadyExists, FAIL_MESSAGE));
    let err = ch.unary("/nope.Svc/Method", Bytes::new(), SECOND).await.unwrap_err();
    assert_eq!(err.code, Code::Unimplemented);
    let err = ch.unary("/test.Echo/Panic", Bytes::new(), SECOND).await.unwrap_err();
    assert_eq!(err.code, Code::Internal);
    assert_eq!(ch.unary(ECHO, "alive".into(), SECOND).await.unwrap(), "alive");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn server_down_is_unavailable_fast() {
    let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let ch = channel(addr, Compression::Snappy);
    let start = Instant::now();
    let err = ch.unary(ECHO, "x".into(), 5 * SECOND).await.unwrap_err();
    assert_eq!(err.code, Code::Unavailable, "{err}");
    assert!(start.elapsed() < SECOND, "{:?}", start.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn hung_server_hits_the_deadline() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            conns.push(s);
        }
    });
    let ch = channel(addr, Compression::None);
    for _ in 0..2 {
        let start = Instant::now();
        let err = ch.unary(ECHO, "x".into(), Duration::from_millis(300)).await.unwrap_err();
        assert_eq!(err.code, Code::DeadlineExceeded, "{err}");
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(300) && took < Duration::from_millis(550), "{took:?}");
    }
    // A slow handler on a real server: the deadline applies too.
    let srv = TestServer::start("127.0.0.1:0").await;
    let ch = channel(srv.addr, Compression::None);
    let err = ch.unary("/test.Echo/Slow", "x".into(), Duration::from_millis(100)).await;
    assert_eq!(err.unwrap_err().code, Code::DeadlineExceeded);
    hold.abort();
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn client_recovers_after_server_restart() {
    let srv = TestServer::start("127.0.0.1:0").await;
    let addr = srv.addr;
    let ch = channel(addr, Compression::Snappy);
    assert_eq!(ch.unary(ECHO, "1".into(), SECOND).await.unwrap(), "1");
    srv.stop().await;
    let err = ch.unary(ECHO, "2".into(), SECOND).await.unwrap_err();
    assert_eq!(err.code, Code::Unavailable, "{err}");
    let srv = TestServer::start(&addr.to_string()).await;
    assert_eq!(ch.unary(ECHO, "3".into(), SECOND).await.unwrap(), "3");
    // Restart again without a failed call in between: the next call still succeeds.
    srv.stop().await;
    let srv = TestServer::start(&addr.to_string()).await;
    assert_eq!(ch.unary(ECHO, "4".into(), SECOND).await.unwrap(), "4");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn many_concurrent_calls_share_one_channel() {
    let srv = TestServer::start("127.0.0.1:0").await;
    let ch = channel(srv.addr, Compression::Snappy);
    echo_at_once(&ch, (0..200u64).map(|i| noise(1000 + i as usize * 37, i)), 10 * SECOND).await;
    srv.stop().await;
}

/// Sends every message at once on `ch` and checks that each comes back whole.
async fn echo_at_once(ch: &Channel, messages: impl Iterator<Item = Bytes>, deadline: Duration) {
    let calls: Vec<_> = messages
        .map(|msg| {
            let ch = ch.clone();
            tokio::spawn(async move { assert_eq!(ch.unary(ECHO, msg.clone(), deadline).await.unwrap(), msg) })
        })
        .collect();
    for c in calls {
        c.await.unwrap();
    }
}

/// Messages larger than the server's flow-control windows (256 KiB a stream, 1 MiB a
/// connection), sixteen at once on one connection: each arrives whole as the server reads and
/// gives the windows back.
#[tokio::test(flavor = "multi_thread")]
async fn messages_larger_than_the_windows_share_one_connection() {
    let srv = TestServer::start("127.0.0.1:0").await;
    let ch = channel(srv.addr, Compression::None);
    echo_at_once(&ch, (0..16u64).map(|i| noise(LIMIT - 64 - i as usize * 4099, i)), 30 * SECOND).await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn health_check() {
    let srv = TestServer::start("127.0.0.1:0").await;
    let ch = channel(srv.addr, Compression::None);
    let check = "/grpc.health.v1.Health/Check";
    assert_eq!(ch.unary(check, Bytes::new(), SECOND).await.unwrap(), &[8u8, 1][..]);
    srv.serving.store(false, Ordering::SeqCst);
    let req = Bytes::from_static(b"\x0a\x03foo");
    assert_eq!(ch.unary(check, req, SECOND).await.unwrap(), &[8u8, 2][..]);
    let err = ch.unary("/grpc.health.v1.Health/Watch", Bytes::new(), SECOND).await;
    assert_eq!(err.unwrap_err().code, Code::Unimplemented);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_shutdown_finishes_in_flight_calls() {
    let srv = TestServer::start("127.0.0.1:0").await;
    let ch = channel(srv.addr, Compression::None);
    let slow = tokio::spawn({
        let ch = ch.clone();
        async move { ch.unary("/test.Echo/Slow", "late".into(), 5 * SECOND).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let addr = srv.addr;
    srv.stop().await;
    assert_eq!(slow.await.unwrap().unwrap(), "late");
    let err = channel(addr, Compression::None).unary(ECHO, "x".into(), SECOND).await;
    assert_eq!(err.unwrap_err().code, Code::Unavailable);
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_does_not_wait_for_idle_or_silent_connections() {
    let srv = TestServer::start("127.0.0.1:0").await;
    let ch = channel(srv.addr, Compression::None);
    assert_eq!(ch.unary(ECHO, "x".into(), SECOND).await.unwrap(), "x");
    // A TCP client that never speaks HTTP/2.
    let _silent = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    tokio::time::timeout(2 * SECOND, srv.stop()).await.expect("shutdown hung");
}
