//! Tests of the object-storage test infrastructure itself: the moto S3 server harness
//! (`ringest_e2e::s3`) and the fault-injecting proxy (`ringest_e2e::faultproxy`).
//!
//! `moto_server` must be installed (`pip install 'moto[server]'`): without it these tests fail.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use ringest_e2e::faultproxy::{FaultProxy, Mode};
use ringest_e2e::http_request;
use ringest_e2e::s3::{self, Moto, MotoOpts, S3Client, error_code, object_path};

fn moto(auth: bool) -> Moto {
    Moto::start(MotoOpts { auth, ..Default::default() }).unwrap_or_else(|e| panic!("{e:#}"))
}

/// An echo server on loopback (one thread per connection), for byte-level proxy checks.
fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Sends `msg` and reads it back.
fn echo(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(msg)?;
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got)?;
    Ok(got)
}

/// A plain GET on a fresh connection with a read timeout; the status code.
fn get_status(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<u16> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(timeout))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::new(ErrorKind::UnexpectedEof, format!("no status line in {text:?}")))
}

#[test]
fn moto_without_auth_stores_lists_and_logs() {
    let m = moto(false);
    assert_eq!(m.endpoint(), format!("127.0.0.1:{}", m.addr().port()));
    assert_eq!(m.credentials(), ("test".to_string(), "test".to_string()));
    m.create_bucket("infra-bucket").unwrap();
    assert!(m.list_objects("infra-bucket").is_empty());

    // Unsigned path-style PUT, as a plain HTTP client would do.
    let r = http_request(&m.endpoint(), "PUT", "/infra-bucket/tenant/01ABC/chunks/000001", &[], b"hello").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    m.put_object("infra-bucket", "tenant/01ABC/meta.json", b"{}").unwrap();

    assert_eq!(
        m.list_objects("infra-bucket"),
        vec![("tenant/01ABC/chunks/000001".to_string(), 5), ("tenant/01ABC/meta.json".to_string(), 2)]
    );
    assert_eq!(m.get_object("infra-bucket", "tenant/01ABC/chunks/000001"), b"hello");
    assert_eq!(m.try_get_object("infra-bucket", "nope").unwrap(), None);
    // Plain unsigned reads work too while auth is off.
    let r = http_request(&m.endpoint(), "GET", "/infra-bucket?list-type=2", &[], &[]).unwrap();
    assert!(r.text().contains("<Key>tenant/01ABC/meta.json</Key>"), "{}", r.text());

    let puts: Vec<_> = m.bucket_requests("infra-bucket").into_iter().filter(|(method, _, _)| method == "PUT").collect();
    assert_eq!(
        puts,
        vec![
            ("PUT".to_string(), "/infra-bucket".to_string(), 200),
            ("PUT".to_string(), "/infra-bucket/tenant/01ABC/chunks/000001".to_string(), 200),
            ("PUT".to_string(), "/infra-bucket/tenant/01ABC/meta.json".to_string(), 200),
        ],
        "log:\n{}",
        m.logs()
    );
    assert!(m.requests().iter().any(|(method, p, s)| method == "GET" && p.starts_with("/infra-bucket?") && *s == 200));
}

#[test]
fn moto_with_auth_rejects_unknown_key_and_wrong_secret() {
    let m = moto(true);
    assert!(m.auth());
    let (key, secret) = m.credentials();
    assert_ne!(key, "test");
    m.create_bucket("auth-bucket").unwrap();
    m.put_object("auth-bucket", "a/b", b"xyz").unwrap();
    assert_eq!(m.list_objects("auth-bucket"), vec![("a/b".to_string(), 3)]);
    assert_eq!(m.get_object("auth-bucket", "a/b"), b"xyz");

    let unknown = S3Client::new(&m.endpoint(), "AKIAUNKNOWNUNKNOWN00", &secret);
    let r = unknown.request("GET", &object_path("auth-bucket", "a/b"), &[], &[], &[]).unwrap();
    assert_eq!((r.status, error_code(&r).as_deref()), (403, Some("InvalidAccessKeyId")), "{}", r.text());

    let wrong = S3Client::new(&m.endpoint(), &key, "not-the-secret");
    let r = wrong.request("PUT", &object_path("auth-bucket", "c"), &[], &[], b"1").unwrap();
    assert_eq!((r.status, error_code(&r).as_deref()), (403, Some("SignatureDoesNotMatch")), "{}", r.text());
    assert_eq!(m.try_get_object("auth-bucket", "c").unwrap(), None);

    // boto3, an independent SigV4 client, sees the same.
    let ep = m.endpoint();
    assert_eq!(s3::boto3_list(&ep, &key, &secret, "auth-bucket").unwrap(), Ok(vec![("a/b".to_string(), 3)]));
    assert_eq!(
        s3::boto3_list(&ep, "AKIAUNKNOWNUNKNOWN00", &secret, "auth-bucket").unwrap(),
        Err("InvalidAccessKeyId".to_string())
    );
    assert_eq!(
        s3::boto3_list(&ep, &key, "not-the-secret", "auth-bucket").unwrap(),
        Err("SignatureDoesNotMatch".to_string())
    );
    let denied: Vec<_> = m.requests().into_iter().filter(|r| r.2 == 403).collect();
    assert_eq!(denied.len(), 4, "{denied:?}");

    // Enforcement can be switched off and on again.
    m.set_auth_enforced(false).unwrap();
    assert_eq!(unknown.request("GET", &object_path("auth-bucket", "a/b"), &[], &[], &[]).unwrap().status, 200);
    m.set_auth_enforced(true).unwrap();
    assert_eq!(unknown.request("GET", &object_path("auth-bucket", "a/b"), &[], &[], &[]).unwrap().status, 403);
}

#[test]
fn moto_missing_binary_is_a_clear_error() {
    let e = Moto::start(MotoOpts { auth: false, server_bin: Some("/nonexistent/moto_server".into()) }).unwrap_err();
    assert!(e.to_string().contains("pip install 'moto[server]'"), "{e}");
}

#[test]
fn proxy_pass_forwards_http_to_moto() {
    let m = moto(false);
    m.create_bucket("proxied").unwrap();
    let p = FaultProxy::start(m.addr());
    assert_eq!(p.mode(), Mode::Pass);
    // Signed through the proxy: the Host header names the proxy, consistently for both sides.
    let c = S3Client::new(&p.endpoint(), "test", "test");
    let r = c.request("PUT", &object_path("proxied", "k"), &[], &[], b"via proxy").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(m.get_object("proxied", "k"), b"via proxy");
    assert_eq!(get_status(p.addr(), "/proxied?list-type=2", Duration::from_secs(5)).unwrap(), 200);
    assert_eq!(p.connections(), 2);
}

#[test]
fn proxy_refuse_cuts_and_refuses_then_pass_rebinds_same_port() {
    let p = FaultProxy::start(echo_server());
    let addr = p.addr();
    let mut existing = connect(addr);
    assert_eq!(echo(&mut existing, b"ping").unwrap(), b"ping");

    p.set_mode(Mode::Refuse);
    let e = TcpStream::connect(addr).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
    // The existing connection was cut: EOF or reset, not an echo.
    assert!(!matches!(echo(&mut existing, b"pong"), Ok(ref v) if v == b"pong"));
    assert_eq!(p.active_connections(), 0);

    p.set_mode(Mode::Pass);
    assert_eq!(p.addr(), addr);
    let mut again = connect(addr);
    assert_eq!(echo(&mut again, b"back").unwrap(), b"back");
    assert_eq!(p.connections(), 2);

    // Repeatedly, while the old connections are in TIME_WAIT.
    for _ in 0..3 {
        p.set_mode(Mode::Refuse);
        assert_eq!(TcpStream::connect(addr).unwrap_err().kind(), ErrorKind::ConnectionRefused);
        p.set_mode(Mode::Pass);
        assert_eq!(echo(&mut connect(addr), b"x").unwrap(), b"x");
    }
}

#[test]
fn proxy_slow_delays_each_chunk() {
    let p = FaultProxy::start(echo_server());
    let mut s = connect(p.addr());
    let t = Instant::now();
    echo(&mut s, b"fast").unwrap();
    let fast = t.elapsed();
    assert!(fast < Duration::from_secs(1), "{fast:?}");

    let delay = Duration::from_millis(300);
    p.set_mode(Mode::Slow { delay_per_chunk: delay });
    let t = Instant::now();
    echo(&mut s, b"slow").unwrap(); // one chunk each way: two delays
    let slow = t.elapsed();
    assert!(slow >= 2 * delay && slow < 2 * delay + Duration::from_secs(3), "{slow:?}");

    // HTTP to moto through a slow proxy is slow too.
    let m = moto(false);
    let hp = FaultProxy::start(m.addr());
    hp.set_mode(Mode::Slow { delay_per_chunk: delay });
    let t = Instant::now();
    assert_eq!(get_status(hp.addr(), "/moto-api/reset-auth", Duration::from_secs(10)).unwrap(), 400);
    assert!(t.elapsed() >= 2 * delay, "{:?}", t.elapsed());
}

#[test]
fn proxy_flaky_resets_every_nth_connection() {
    let m = moto(false);
    m.create_bucket("flaky").unwrap();
    let p = FaultProxy::start(m.addr());
    p.set_mode(Mode::Flaky { every: 3 });
    let results: Vec<bool> = (0..9)
        .map(|_| get_status(p.addr(), "/flaky?list-type=2", Duration::from_secs(5)).is_ok_and(|s| s == 200))
        .collect();
    assert_eq!(results, [true, true, false, true, true, false, true, true, false]);
    assert_eq!((p.connections(), p.resets()), (9, 3));
    // Only the forwarded ones reached moto.
    let lists = m.requests().iter().filter(|(_, path, _)| path.starts_with("/flaky?")).count();
    assert_eq!(lists, 6);

    p.set_mode(Mode::Pass);
    assert!((0..4).all(|_| get_status(p.addr(), "/flaky?list-type=2", Duration::from_secs(5)).unwrap() == 200));
}

#[test]
fn proxy_blackhole_hangs_then_heals() {
    let m = moto(false);
    let p = FaultProxy::start(m.addr());
    assert_eq!(get_status(p.addr(), "/moto-api/reset-auth", Duration::from_secs(5)).unwrap(), 400);

    p.set_mode(Mode::Blackhole);
    let t = Instant::now();
    let e = get_status(p.addr(), "/moto-api/reset-auth", Duration::from_millis(500)).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut), "{e}");
    assert!(t.elapsed() >= Duration::from_millis(500));

    // An existing connection stalls, then flows again when the mode changes.
    let e2 = FaultProxy::start(echo_server());
    let mut s = connect(e2.addr());
    assert_eq!(echo(&mut s, b"1").unwrap(), b"1");
    e2.set_mode(Mode::Blackhole);
    s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    s.write_all(b"2").unwrap();
    let mut b = [0u8; 1];
    let e = s.read(&mut b).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut), "{e}");
    e2.set_mode(Mode::Pass);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"2");

    p.set_mode(Mode::Pass);
    assert_eq!(get_status(p.addr(), "/moto-api/reset-auth", Duration::from_secs(5)).unwrap(), 400);
}

#[test]
fn proxy_drop_is_bounded_with_hung_connections() {
    let p = FaultProxy::start(echo_server());
    p.set_mode(Mode::Blackhole);
    let conns: Vec<TcpStream> = (0..5)
        .map(|_| {
            let mut s = connect(p.addr());
            s.write_all(b"stuck").unwrap();
            s
        })
        .collect();
    let slow = FaultProxy::start(echo_server());
    slow.set_mode(Mode::Slow { delay_per_chunk: Duration::from_secs(60) });
    let mut s = connect(slow.addr());
    s.write_all(b"x").unwrap();
    thread::sleep(Duration::from_millis(200));
    assert_eq!(p.connections(), 5);
    let t = Instant::now();
    drop(p);
    drop(slow);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    drop(conns);
}
