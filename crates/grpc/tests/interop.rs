//! Interop with a real gRPC implementation, Python `grpcio` (installed by scripts/test.sh):
//! our Channel against a grpcio server, and a grpcio client against our Server.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringest_grpc::{Channel, ChannelOptions, Code, Compression, Server, Status};

mod common;
use common::{FAIL_MESSAGE, Handler};

/// Delay of the handler's slow mode.
const SLOW: Duration = Duration::from_secs(2);

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py").join(name)
}

/// Fails (never skips) when the interpreter or grpcio is missing.
fn require_grpcio() {
    let ok = Command::new("python3")
        .args(["-c", "import grpc"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "python3 with the grpcio package is required for the gRPC interop tests: run scripts/test.sh \
         (it runs `python3 -m pip install grpcio`)"
    );
}

/// Kills the Python server we started when the test ends, pass or fail.
struct PyServer(Child);

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn our_channel_calls_grpcio_server() {
    require_grpcio();
    let mut child = Command::new("python3")
        .arg(script("echo_server.py"))
        .stdin(Stdio::piped())
        .env("GRPC_VERBOSITY", "NONE")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start python3 echo_server.py");
    let stdout = child.stdout.take().unwrap();
    let server = PyServer(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let port: u16 = line.trim().parse().unwrap_or_else(|_| panic!("bad port line {line:?}"));
    let addr = format!("127.0.0.1:{port}");

    let ch = Channel::new(addr.clone(), ChannelOptions { compression: Compression::None, ..ChannelOptions::default() });
    let secs = Duration::from_secs(10);
    for msg in [
        Bytes::new(),
        Bytes::from_static(b"hello"),
        Bytes::from((0..3_000_000u32).map(|i| (i * 7 % 256) as u8).collect::<Vec<_>>()),
    ] {
        assert_eq!(ch.unary("/test.Echo/Echo", msg.clone(), secs).await.unwrap(), msg);
    }
    // Python's error status, with a percent-encoded non-ASCII message, maps to our Status.
    let err = ch.unary("/test.Echo/Fail", Bytes::new(), secs).await.unwrap_err();
    assert_eq!(err, Status::new(Code::InvalidArgument, FAIL_MESSAGE));
    let err = ch.unary("/test.Echo/Nope", Bytes::new(), secs).await.unwrap_err();
    assert_eq!(err.code, Code::Unimplemented, "{err}");
    let start = Instant::now();
    let err = ch.unary("/test.Echo/Slow", "x".into(), Duration::from_millis(300)).await;
    assert_eq!(err.unwrap_err().code, Code::DeadlineExceeded);
    assert!(start.elapsed() < Duration::from_millis(600));

    // grpcio has no snappy: it rejects our compressed request with a status (C-core says
    // Internal "Error parsing 'grpc-encoding' metadata"), not a hang or a broken connection.
    let snappy = Channel::new(addr, ChannelOptions::default());
    let err = snappy.unary("/test.Echo/Echo", "x".into(), secs).await.unwrap_err();
    assert!(matches!(err.code, Code::Internal | Code::Unimplemented), "{err}");
    assert_eq!(ch.unary("/test.Echo/Echo", "x".into(), secs).await.unwrap(), "x");
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcio_client_calls_our_server() {
    require_grpcio();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = Server::new(4 << 20)
        .route("/test.Echo/Echo", Arc::new(Handler("echo", SLOW)))
        .route("/test.Echo/Fail", Arc::new(Handler("fail", SLOW)))
        .route("/test.Echo/Panic", Arc::new(Handler("panic", SLOW)))
        .route("/test.Echo/Slow", Arc::new(Handler("slow", SLOW)))
        .health(Arc::new(|| true));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));

    // Every call in client.py carries a timeout, so the script cannot hang.
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3").arg(script("client.py")).arg(port.to_string()).output()
    })
    .await
    .unwrap()
    .expect("run python3 client.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("OK"),
        "python client failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}
