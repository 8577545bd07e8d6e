//! A minimal HTTP/1.1 client over `TcpStream`, or TLS over it (rustls): keep-alive, exact
//! control of headers and body (chunked bodies, lying Content-Length), and the response read
//! back exactly. Load generation and the end-to-end tests both use it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// A connection's byte stream: plain TCP or TLS over it.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// Body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// A header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// One keep-alive connection.
pub struct Conn {
    stream: BufReader<Stream>,
    addr: String,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("addr", &self.addr).finish()
    }
}

impl Conn {
    /// Connects to `addr` (`host:port`).
    pub fn connect(addr: &str) -> std::io::Result<Conn> {
        Conn::connect_with(addr, None)
    }

    /// Connects to `addr`, over TLS with `tls` if given (the server name is the host of
    /// `addr`).
    pub fn connect_with(addr: &str, tls: Option<&Arc<rustls::ClientConfig>>) -> std::io::Result<Conn> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        s.set_nodelay(true)?;
        let stream = match tls {
            None => Stream::Plain(s),
            Some(config) => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).trim_matches(['[', ']']);
                let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(std::io::Error::other)?;
                let conn = rustls::ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
                Stream::Tls(Box::new(rustls::StreamOwned::new(conn, s)))
            }
        };
        Ok(Conn { stream: BufReader::new(stream), addr: addr.to_string() })
    }

    /// Sends a request and reads the response. A `Content-Length` is added unless the headers
    /// carry one or a `Transfer-Encoding` (then `body` is sent as given).
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<HttpResponse> {
        let head = request_head(method, path, &self.addr, headers, body.len());
        let s = self.stream.get_mut();
        s.write_all(head.as_bytes())?;
        // A server may answer (and close) before reading a large body: read the response anyway.
        let _ = s.write_all(body);
        let _ = s.flush();
        read_response(&mut self.stream, method == "HEAD")
    }
}

/// The head of a request to `host` with `headers`, then a `Content-Length` of `body_len` unless
/// the headers carry one or a `Transfer-Encoding`.
pub fn request_head(method: &str, path: &str, host: &str, headers: &[(&str, &str)], body_len: usize) -> String {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    let raw_body = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("transfer-encoding") || k.eq_ignore_ascii_case("content-length"));
    for (k, v) in headers {
        head.push_str(k);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    if !raw_body {
        head.push_str(&format!("Content-Length: {body_len}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// Reads one response from `r` (its head only if `head_only`, as for a HEAD request).
pub fn read_response(r: &mut impl BufRead, head_only: bool) -> std::io::Result<HttpResponse> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if !head_only && status != 204 && status != 304 {
        if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                line.clear();
                r.read_line(&mut line)?;
                let n = usize::from_str_radix(line.trim(), 16).map_err(std::io::Error::other)?;
                let mut chunk = vec![0; n + 2];
                r.read_exact(&mut chunk)?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            body.resize(n, 0);
            r.read_exact(&mut body)?;
        }
    }
    Ok(HttpResponse { status, headers, body })
}

/// One request on a new connection.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    Conn::connect(addr)?.request(method, path, headers, body)
}

/// A GET on a new connection.
pub fn get(addr: &str, path: &str) -> std::io::Result<HttpResponse> {
    request(addr, "GET", path, &[], &[])
}
