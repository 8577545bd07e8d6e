//! TLS with Thanos' flags, checked from outside with certificates made on the fly:
//!
//! - the remote-write port with a client CA takes writes from Prometheus 2.42 and from a client
//!   with a certificate the CA signed, and refuses plaintext, clients without a certificate,
//!   clients whose certificate another CA signed, and TLS 1.2 under the default minimum (1.3);
//!   a renewed certificate is served to new connections while open ones go on;
//! - without a client CA, Prometheus 2.42 writes with only the CA in its `tls_config`;
//! - with `--receive.tenant-certificate-field`, the tenant is the client certificate's field,
//!   whatever the tenant header says, and a certificate without it gets Thanos' 400;
//! - with `--ringest.tenant-header.trusted-from`, the tenant header is honoured only from the
//!   listed networks and client certificate names; others naming a tenant get 403, on writes
//!   and on the TSDB status endpoints;
//! - `--http.config` (exporter-toolkit's web configuration) serves the ops port over TLS with
//!   bcrypt basic auth: no or wrong credentials get 401 (the hash sent as the password too,
//!   after the right password was remembered: CVE-2022-46146), the right ones the page and the
//!   configured headers; a changed password applies without a restart; Prometheus 2.42 scrapes
//!   it with `basic_auth` and `tls_config`;
//! - a ring of three ringest, and a mixed ring (two ringest, one Thanos Receive), replicate
//!   over mutual TLS both ways, and Thanos Query reads every replica over TLS;
//! - a cipher suite, curve or version rustls cannot offer stops ringest at start-up, by name.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ringest_e2e::Impl::{Ringest as R, Thanos as T};
use ringest_e2e::Receiver;
use ringest_e2e::oracle::Prometheus;
use ringest_e2e::pki::Pki;
use ringest_e2e::read;
use ringest_e2e::ring::{Ring, layout, now_ms, run_load};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A client configuration trusting `pki`'s CA, presenting `pair` if given, speaking only TLS
/// 1.2 if `tls12`.
fn client(pki: &Pki, pair: Option<(&Path, &Path)>, tls12: bool) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(&pki.ca).unwrap()).unwrap();
    let versions: &[&rustls::SupportedProtocolVersion] =
        if tls12 { &[&rustls::version::TLS12] } else { &[&rustls::version::TLS13, &rustls::version::TLS12] };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let config = match pair {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert).unwrap().map(Result::unwrap).collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

async fn connect(addr: &str, config: Arc<rustls::ClientConfig>) -> io::Result<Tls> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(config).connect(name, tcp).await
}

/// One remote-write request of one sample on `stream`; the answer's status code.
async fn post(stream: &mut Tls, at_ms: i64) -> io::Result<u16> {
    Ok(post_as(stream, at_ms, None).await?.0)
}

/// [`post`] with a tenant header; the answer's status code and body.
async fn post_as(stream: &mut Tls, at_ms: i64, tenant: Option<&str>) -> io::Result<(u16, String)> {
    let s = ringest_e2e::client::series(&[("__name__", "tls_probe")], &[(at_ms, 1.0)]);
    let body = ringest_e2e::client::encode(&ringest_proto::prometheus::WriteRequest {
        timeseries: vec![s],
        ..Default::default()
    });
    let head = format!(
        "POST /api/v1/receive HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\n\
         Content-Encoding: snappy\r\nX-Prometheus-Remote-Write-Version: 0.1.0\r\nContent-Length: {}\r\n{}\r\n",
        body.len(),
        tenant.map(|t| format!("THANOS-TENANT: {t}\r\n")).unwrap_or_default()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    stream.flush().await?;
    // The answer's head, then its body (by Content-Length).
    let mut buf = Vec::new();
    let end = loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed before an answer"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
    let code = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let len: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    while buf.len() < end + len {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok((code, String::from_utf8_lossy(&buf[end..]).into_owned()))
}

/// Connects with `config` and sends one write: its status, or why it failed.
fn write_once(rt: &tokio::runtime::Runtime, addr: &str, config: Arc<rustls::ClientConfig>) -> Result<u16, String> {
    rt.block_on(async {
        let mut s = connect(addr, config).await.map_err(|e| format!("handshake: {e}"))?;
        post(&mut s, now_ms()).await.map_err(|e| format!("request: {e}"))
    })
}

#[test]
fn the_remote_write_port_serves_mutual_tls_to_the_right_clients_only() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let flags = [
        format!("--remote-write.server-tls-cert={}", Pki::s(&pki.cert)),
        format!("--remote-write.server-tls-key={}", Pki::s(&pki.key)),
        format!("--remote-write.server-tls-client-ca={}", Pki::s(&pki.ca)),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut r = Receiver::start(&tmp.path().join("ringest"), &flags);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let addr = r.rw_addr.clone();

    let good = client(&pki, Some((&pki.cert, &pki.key)), false);
    assert_eq!(write_once(&rt, &addr, good.clone()), Ok(200), "{}", r.logs());
    let (expired_cert, expired_key) = pki.expired("expired");
    for (what, config) in [
        ("an expired certificate", client(&pki, Some((&expired_cert, &expired_key)), false)),
        ("no client certificate", client(&pki, None, false)),
        ("a certificate another CA signed", client(&pki, Some((&pki.rogue_cert, &pki.rogue_key)), false)),
        ("TLS 1.2 under the default minimum 1.3", client(&pki, Some((&pki.cert, &pki.key)), true)),
    ] {
        let got = write_once(&rt, &addr, config);
        assert!(got.is_err(), "{what}: {got:?}");
    }
    let mut plain = ringest_e2e::RemoteWriter::connect(&addr).unwrap();
    let s = ringest_e2e::client::series(&[("__name__", "tls_probe")], &[(now_ms(), 1.0)]);
    let got = plain.send(&ringest_proto::prometheus::WriteRequest { timeseries: vec![s], ..Default::default() });
    assert!(got.as_ref().map_or(true, |r| r.status != 200), "plaintext: {got:?}");

    // A renewal: new connections get the new certificate, an open one goes on.
    let mut open = rt.block_on(connect(&addr, good.clone())).unwrap();
    assert_eq!(rt.block_on(post(&mut open, now_ms())).unwrap(), 200);
    let old = open.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let renewed = pki.renew("renewed");
    assert_ne!(old, renewed);
    // A new client: a resumed session would not show the server's certificate again.
    let fresh = rt.block_on(connect(&addr, client(&pki, Some((&pki.cert, &pki.key)), false))).unwrap();
    assert_eq!(fresh.get_ref().1.peer_certificates().unwrap()[0].to_vec(), renewed, "new connections: new certificate");
    assert_eq!(rt.block_on(post(&mut open, now_ms())).unwrap(), 200, "the open connection goes on");

    // Renewals under load: writers opening a new connection for every write see no error
    // while the pair is replaced five times (the key and the certificate are renamed one after
    // the other, so a handshake may meet a key that does not match the certificate yet: the
    // pair in force is kept until both match).
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let (stop, writes) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (addr, stop, writes, config) = (addr.clone(), stop.clone(), writes.clone(), good.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                let tenant = format!("renewal-{w}");
                let mut results = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let r = rt.block_on(async {
                        let mut s = connect(&addr, config.clone()).await.map_err(|e| format!("handshake: {e}"))?;
                        let (code, body) =
                            post_as(&mut s, now_ms(), Some(&tenant)).await.map_err(|e| format!("request: {e}"))?;
                        if code == 200 { Ok(code) } else { Err(format!("{code}: {body}")) }
                    });
                    results.push(r);
                    writes.fetch_add(1, Ordering::Relaxed);
                }
                results
            })
        })
        .collect();
    for i in 0..5 {
        let before = writes.load(Ordering::Relaxed);
        let der = pki.renew(&format!("renewed-{i}"));
        let seen = (0..500).any(|_| {
            let fresh = client(&pki, Some((&pki.cert, &pki.key)), false);
            let ok = rt
                .block_on(connect(&addr, fresh))
                .is_ok_and(|s| s.get_ref().1.peer_certificates().unwrap()[0].as_ref() == der);
            ok || {
                std::thread::sleep(Duration::from_millis(20));
                false
            }
        });
        assert!(seen, "renewal {i} not served within 10 s: {}", r.logs());
        ringest_e2e::wait_for("writes after the renewal", Duration::from_secs(10), || {
            writes.load(Ordering::Relaxed) >= before + 10
        });
    }
    stop.store(true, Ordering::Relaxed);
    let results: Vec<Result<u16, String>> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    assert!(results.len() >= 50, "{} writes", results.len());
    let failed: Vec<_> = results.iter().filter(|r| **r != Ok(200)).collect();
    assert!(
        failed.is_empty(),
        "{} of {} writes failed during renewals: {:?}",
        failed.len(),
        results.len(),
        &failed[..failed.len().min(5)]
    );

    // Prometheus 2.42 over mutual TLS.
    let config = format!(
        r#"
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ['{{{{self}}}}']
remote_write:
  - url: https://127.0.0.1:{port}/api/v1/receive
    tls_config:
      ca_file: {ca}
      cert_file: {cert}
      key_file: {key}
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 50ms
"#,
        port = addr.rsplit(':').next().unwrap(),
        ca = Pki::s(&pki.ca),
        cert = Pki::s(&pki.cert),
        key = Pki::s(&pki.key),
    );
    let before = r.metric("thanos_receive_write_requests_total{code=\"200\",tenant=\"default-tenant\"}").unwrap_or(0.0);
    let mut p = Prometheus::start(&tmp.path().join("prometheus"), &config, &[]);
    ringest_e2e::wait_for("three writes from Prometheus over TLS", Duration::from_secs(90), || {
        let n = r.metric("thanos_receive_write_requests_total{code=\"200\",tenant=\"default-tenant\"}").unwrap_or(0.0);
        n >= before + 3.0
    });
    p.stop();
    assert!(r.terminate().success(), "{}", r.logs());
}

/// TLS without client certificates: Prometheus 2.42 writes with only the CA in its
/// `tls_config`; a plaintext client is refused.
#[test]
fn prometheus_writes_over_server_only_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let flags = [
        format!("--remote-write.server-tls-cert={}", Pki::s(&pki.cert)),
        format!("--remote-write.server-tls-key={}", Pki::s(&pki.key)),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut r = Receiver::start(&tmp.path().join("ringest"), &flags);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    assert_eq!(write_once(&rt, &r.rw_addr, client(&pki, None, false)), Ok(200), "no client certificate needed");
    let mut plain = ringest_e2e::RemoteWriter::connect(&r.rw_addr).unwrap();
    let s = ringest_e2e::client::series(&[("__name__", "tls_probe")], &[(now_ms(), 1.0)]);
    let got = plain.send(&ringest_proto::prometheus::WriteRequest { timeseries: vec![s], ..Default::default() });
    assert!(got.as_ref().map_or(true, |r| r.status != 200), "plaintext: {got:?}");
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: prometheus\n    static_configs:\n      \
         - targets: ['{{{{self}}}}']\nremote_write:\n  - url: https://127.0.0.1:{port}/api/v1/receive\n    \
         tls_config:\n      ca_file: {ca}\n    queue_config:\n      batch_send_deadline: 1s\n      min_backoff: 50ms\n",
        port = r.rw_addr.rsplit(':').next().unwrap(),
        ca = Pki::s(&pki.ca),
    );
    let line = "thanos_receive_write_requests_total{code=\"200\",tenant=\"default-tenant\"}";
    let before = r.metric(line).unwrap_or(0.0);
    let mut p = Prometheus::start(&tmp.path().join("prometheus"), &config, &[]);
    ringest_e2e::wait_for("three writes from Prometheus over TLS", Duration::from_secs(90), || {
        r.metric(line).unwrap_or(0.0) >= before + 3.0
    });
    p.stop();
    assert!(r.terminate().success(), "{}", r.logs());
}

#[test]
fn the_tenant_comes_from_the_client_certificate_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let tls = [
        format!("--remote-write.server-tls-cert={}", Pki::s(&pki.cert)),
        format!("--remote-write.server-tls-key={}", Pki::s(&pki.key)),
        format!("--remote-write.server-tls-client-ca={}", Pki::s(&pki.ca)),
    ];
    let good = || client(&pki, Some((&pki.cert, &pki.key)), false);
    for (field, want) in
        [("commonName", Ok("node")), ("organization", Err("could not get organization field from client cert"))]
    {
        let mut args: Vec<&str> = tls.iter().map(String::as_str).collect();
        let flag = format!("--receive.tenant-certificate-field={field}");
        args.push(&flag);
        let mut r = Receiver::start(&tmp.path().join(field), &args);
        let got = rt.block_on(async {
            let mut s = connect(&r.rw_addr, good()).await.unwrap();
            post_as(&mut s, now_ms(), Some("team-header")).await.unwrap()
        });
        match want {
            Ok(tenant) => {
                assert_eq!(got.0, 200, "{field}: {got:?}");
                let line = format!("thanos_receive_write_requests_total{{code=\"200\",tenant=\"{tenant}\"}}");
                assert_eq!(r.metric(&line), Some(1.0), "{field}: {}", r.metrics());
                assert!(
                    r.tenant_dir(tenant).is_dir() && !r.tenant_dir("team-header").exists(),
                    "the header is ignored"
                );
            }
            Err(msg) => assert_eq!((got.0, got.1.trim()), (400, msg), "{field}"),
        }
        assert!(r.terminate().success(), "{}", r.logs());
    }
    // Without client certificates on the port, the flag cannot work: refused at start-up.
    let out = std::process::Command::new(ringest_e2e::ringest_bin())
        .args([
            "receive",
            "--label=replica=\"r\"",
            "--receive.tenant-certificate-field=commonName",
            &format!("--tsdb.path={}", tmp.path().join("refused").display()),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("needs client certificates on the remote-write port"), "{text}");
}

#[test]
fn the_tenant_header_is_honoured_only_from_trusted_proxies() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // Over mutual TLS, a proxy is trusted by its certificate's common name ("node"); a client
    // the same CA signed under another name is not. Loopback is not a listed network.
    let args = [
        format!("--remote-write.server-tls-cert={}", Pki::s(&pki.cert)),
        format!("--remote-write.server-tls-key={}", Pki::s(&pki.key)),
        format!("--remote-write.server-tls-client-ca={}", Pki::s(&pki.ca)),
        "--ringest.tenant-header.trusted-from=cn=node".to_string(),
        "--ringest.tenant-header.trusted-from=10.0.0.0/8".to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut r = Receiver::start(&tmp.path().join("mtls"), &args);
    let (other_cert, other_key) = pki.pair("someone-else");
    let send = |pair: (&Path, &Path), tenant: Option<&str>| {
        rt.block_on(async {
            let mut s = connect(&r.rw_addr, client(&pki, Some(pair), false)).await.unwrap();
            post_as(&mut s, now_ms(), tenant).await.unwrap()
        })
    };
    assert_eq!(send((&pki.cert, &pki.key), Some("team-a")).0, 200);
    assert!(r.tenant_dir("team-a").is_dir());
    let (code, body) = send((&other_cert, &other_key), Some("team-b"));
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("honoured only from trusted proxies") && body.contains("127.0.0.1"), "{body}");
    assert!(!r.tenant_dir("team-b").exists());
    // Without the header, an untrusted client writes to the default tenant.
    assert_eq!(send((&other_cert, &other_key), None).0, 200);
    assert_eq!(r.metric("prometheus_tsdb_head_series{tenant=\"default-tenant\"}"), Some(1.0), "{}", r.metrics());
    assert!(r.terminate().success(), "{}", r.logs());

    // Over plain HTTP, by network: loopback trusted, or not.
    for (from, want) in [("127.0.0.0/8", 200), ("192.168.0.1", 403)] {
        let flag = format!("--ringest.tenant-header.trusted-from={from}");
        let mut r = Receiver::start(&tmp.path().join(format!("net-{want}")), &[&flag]);
        let one = ringest_proto::prometheus::WriteRequest {
            timeseries: vec![ringest_e2e::client::series(&[("__name__", "m")], &[(now_ms(), 1.0)])],
            ..Default::default()
        };
        let mut w = ringest_e2e::client::RemoteWriter::connect(&r.rw_addr).unwrap().with_tenant("team-c");
        let resp = w.send(&one).unwrap();
        assert_eq!(resp.status, want, "{from}: {}", resp.text());
        assert_eq!(r.tenant_dir("team-c").is_dir(), want == 200);
        // The TSDB status of the remote-write port answers the same way.
        let mut c = ringest_e2e::client::Conn::connect(&r.rw_addr).unwrap();
        let status = c.request("GET", "/api/v1/status/tsdb", &[("THANOS-TENANT", "team-c")], b"").unwrap();
        assert_eq!(status.status, want, "{from}: {}", status.text());
        assert!(r.terminate().success(), "{}", r.logs());
    }
    // Pointless beside the certificate field (which ignores the header): refused at start-up.
    let out = std::process::Command::new(ringest_e2e::ringest_bin())
        .args([
            "receive",
            "--label=replica=\"r\"",
            "--ringest.tenant-header.trusted-from=10.0.0.0/8",
            "--receive.tenant-certificate-field=commonName",
            &format!("--remote-write.server-tls-cert={}", Pki::s(&pki.cert)),
            &format!("--remote-write.server-tls-key={}", Pki::s(&pki.key)),
            &format!("--remote-write.server-tls-client-ca={}", Pki::s(&pki.ca)),
            &format!("--tsdb.path={}", tmp.path().join("refused").display()),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("has no effect with --receive.tenant-certificate-field"), "{text}");
}

/// A GET over TLS with `config`, with basic auth credentials if given: status, headers (lower
/// case) and body.
fn get_tls(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
    path: &str,
    auth: Option<(&str, &str)>,
) -> io::Result<(u16, String, String)> {
    use base64::Engine;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut s = connect(addr, config).await?;
        let auth = auth
            .map(|(u, p)| {
                let b = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
                format!("Authorization: Basic {b}\r\n")
            })
            .unwrap_or_default();
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf).await;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let code = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        Ok((code, head.to_lowercase(), body.to_string()))
    })
}

#[test]
fn the_ops_port_serves_http_config_tls_and_basic_auth() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let web = tmp.path().join("web.yml");
    let config = |hash: &str| {
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\nhttp_server_config:\n  headers:\n    \
             X-Content-Type-Options: nosniff\nbasic_auth_users:\n  prom: {hash}\n",
            Pki::s(&pki.cert),
            Pki::s(&pki.key)
        )
    };
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(&web, config(&hash)).unwrap();
    let flag = format!("--http.config={}", web.display());
    let r = Receiver::launch(&tmp.path().join("node"), &[&flag]);
    let tls = || client(&pki, None, false);
    let get = |path: &str, auth: Option<(&str, &str)>| get_tls(&r.http_addr, tls(), path, auth);
    ringest_e2e::wait_for("the ops port over TLS", Duration::from_secs(60), || {
        get("/-/ready", Some(("prom", "s3cret"))).is_ok_and(|(c, _, _)| c == 200)
    });
    let (code, head, _) = get("/metrics", None).unwrap();
    assert_eq!(code, 401, "no credentials");
    assert!(head.contains("www-authenticate: basic") && head.contains("x-content-type-options: nosniff"), "{head}");
    assert_eq!(get("/metrics", Some(("prom", "wrong"))).unwrap().0, 401, "a wrong password");
    assert_eq!(get("/metrics", Some(("someone", "s3cret"))).unwrap().0, 401, "an unknown user");
    let (code, _, body) = get("/metrics", Some(("prom", "s3cret"))).unwrap();
    assert!(code == 200 && body.contains("thanos_build_info"), "{code}");
    // CVE-2022-46146: once the right password is remembered, the hash itself is no password.
    assert_eq!(get("/metrics", Some(("prom", &hash))).unwrap().0, 401, "the hash as the password");
    assert_eq!(get("/metrics", Some(("prom", "s3cret"))).unwrap().0, 200, "the right password, remembered");
    let plain = ringest_e2e::client::http_get(&r.http_addr, "/-/ready");
    assert!(plain.map(|p| p.status != 200).unwrap_or(true), "plain HTTP is not served");

    // Prometheus 2.42 scrapes the port with basic auth over TLS.
    let prom = Prometheus::start(
        &tmp.path().join("prom"),
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: receive\n    scheme: https\n    \
             basic_auth: {{username: prom, password: s3cret}}\n    tls_config: {{ca_file: {}}}\n    static_configs:\n      \
             - targets: ['{}']\n",
            Pki::s(&pki.ca),
            r.http_addr
        ),
        &[],
    );
    ringest_e2e::wait_for("Prometheus to scrape the ops port", Duration::from_secs(30), || {
        let t = ringest_e2e::client::http_get(&prom.addr, "/api/v1/targets").map(|r| r.text()).unwrap_or_default();
        t.contains("\"health\":\"up\"")
    });

    // A new password applies without a restart; the old one is refused.
    std::fs::write(&web, config(&bcrypt::hash("n3w", 4).unwrap())).unwrap();
    ringest_e2e::wait_for("the new password", Duration::from_secs(10), || {
        get("/-/healthy", Some(("prom", "n3w"))).is_ok_and(|(c, _, _)| c == 200)
    });
    assert_eq!(get("/-/healthy", Some(("prom", "s3cret"))).unwrap().0, 401);
    assert!(r.logs().contains("TLS is enabled."), "{}", r.logs());
}

#[test]
fn a_mixed_ring_replicates_over_mutual_tls_and_thanos_query_reads_it() {
    const SERIES: usize = 20;
    const ROUNDS: usize = 5;
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let (ca, cert, key) = (Pki::s(&pki.ca), Pki::s(&pki.cert), Pki::s(&pki.key));
    let extra: Vec<String> = vec![
        "--receive.replication-factor=3".into(),
        format!("--grpc-server-tls-cert={cert}"),
        format!("--grpc-server-tls-key={key}"),
        format!("--grpc-server-tls-client-ca={ca}"),
        "--remote-write.client-tls-secure".into(),
        format!("--remote-write.client-tls-cert={cert}"),
        format!("--remote-write.client-tls-key={key}"),
        format!("--remote-write.client-tls-ca={ca}"),
    ];
    // A mixed ring, then a ring of ringest alone.
    for (round, kinds) in [[R, T, R], [R, R, R]].iter().enumerate() {
        let ring = Ring::start(kinds, &extra);
        for (i, node) in ring.nodes.iter().enumerate() {
            let run = run_load(&layout(&format!("mtls{i}"), SERIES, ROUNDS, 2), ROUNDS, &node.rw_addr, None, None);
            run.assert_all_2xx_first_time(&format!("writes through node {i}"));
        }
        // A peer whose certificate another CA signed is refused by either kind of node; the same
        // call with the ring's certificate gets through (an empty write, answered).
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let peer = |cert: &Path, key: &Path| {
            let opts = ringest_tls::ClientOptions {
                cert: Pki::s(cert),
                key: Pki::s(key),
                ca: ca.clone(),
                min_version: "1.3".into(),
                ..Default::default()
            };
            Some(ringest_tls::Connector::new(&opts, &[b"h2"]).unwrap())
        };
        for node in [&ring.nodes[0], &ring.nodes[1]] {
            for (tls, admitted) in [(peer(&pki.rogue_cert, &pki.rogue_key), false), (peer(&pki.cert, &pki.key), true)] {
                let opts = ringest_grpc::ChannelOptions { tls, ..Default::default() };
                let ch = ringest_grpc::Channel::new(node.grpc_addr.clone(), opts);
                let got = rt.block_on(ch.unary(
                    "/thanos.WriteableStore/RemoteWrite",
                    bytes::Bytes::new(),
                    Duration::from_secs(5),
                ));
                let connected = got.as_ref().map_or_else(|e| e.code != ringest_grpc::Code::Unavailable, |_| true);
                assert_eq!(connected, admitted, "{:?}, admitted {admitted}: {got:?}", node.imp);
            }
        }

        let endpoints: Vec<&str> = ring.nodes.iter().map(|n| n.grpc_addr.as_str()).collect();
        let tls = [
            "--grpc-client-tls-secure".to_string(),
            format!("--grpc-client-tls-ca={ca}"),
            format!("--grpc-client-tls-cert={cert}"),
            format!("--grpc-client-tls-key={key}"),
        ];
        let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
        let q = read::querier_with(&tmp.path().join(format!("query{round}")), &endpoints, &tls);
        let query = [("query", "count by (receive_replica) ({__name__=~\"mtls[0-2]_.*\"})".to_string())];
        read::retry(&q, "every replica holds every series", Duration::from_secs(60), || {
            let v = read::try_get(&q, "/api/v1/query", false, &query)?;
            let mut counts: Vec<(String, String)> = v["result"]
                .as_array()
                .ok_or("no result")?
                .iter()
                .map(|r| (r["metric"]["receive_replica"].to_string(), r["value"][1].as_str().unwrap_or("").to_string()))
                .collect();
            counts.sort();
            let want: Vec<(String, String)> =
                (0..3).map(|i| (format!("\"node{i}\""), (3 * SERIES).to_string())).collect();
            if counts == want { Ok(()) } else { Err(format!("{counts:?}")) }
        });
    }
}

#[test]
fn what_rustls_cannot_offer_stops_the_start_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let fixed = [
        "receive".to_string(),
        "--label=replica=\"r\"".into(),
        format!("--tsdb.path={}", tmp.path().join("data").display()),
        "--http-address=127.0.0.1:0".into(),
        "--grpc-address=127.0.0.1:0".into(),
        "--remote-write.address=127.0.0.1:0".into(),
        format!("--grpc-server-tls-cert={}", Pki::s(&pki.cert)),
        format!("--grpc-server-tls-key={}", Pki::s(&pki.key)),
    ];
    for (flag, needle) in [
        (
            "--grpc-server-tls-ciphers=TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
            "cipher suite TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA cannot be offered by ringest",
        ),
        ("--grpc-server-tls-curves=CurveP521", "curve CurveP521 cannot be offered by ringest"),
        ("--grpc-server-tls-min-version=1.1", "TLS 1.1 cannot be offered by ringest"),
        (
            "--remote-write.server-tls-client-ca=/nonexistent/ca.pem",
            "when a client CA is used a server key and certificate",
        ),
    ] {
        let out = std::process::Command::new(ringest_e2e::ringest_bin()).args(&fixed).arg(flag).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "{flag}: ringest started");
        assert!(text.contains(needle), "{flag}: {text}");
    }
}
