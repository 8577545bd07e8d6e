//! The HTTP client of the OTLP/HTTP exporter, the Jaeger collector exporter and the Jaeger
//! remote sampler: one HTTP/1.1 connection per request (exports come every few seconds), TLS
//! through ringest-tls with the config's `tls_config`, a timeout over the whole exchange.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use opentelemetry_http::{HttpClient, HttpError};

/// The largest answer read.
const MAX_ANSWER: usize = 4 << 20;

/// A small HTTP client over hyper.
#[derive(Debug, Clone)]
pub struct Client {
    tls: Option<ringest_tls::Connector>,
    timeout: Duration,
}

impl Client {
    /// A client that speaks TLS to `https` URLs with `tls` (None: the system roots).
    pub fn new(tls: Option<ringest_tls::Connector>, timeout: Duration) -> Client {
        Client { tls, timeout }
    }

    async fn exchange(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let uri = request.uri().clone();
        let https = uri.scheme_str() == Some("https");
        let host = uri.host().ok_or_else(|| format!("{uri}: no host"))?.trim_matches(['[', ']']).to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let (mut parts, body) = request.into_parts();
        if !parts.headers.contains_key(http::header::HOST) {
            let authority = uri.authority().map_or(host.clone(), |a| a.to_string());
            parts.headers.insert(http::header::HOST, http::HeaderValue::from_str(&authority)?);
        }
        // hyper's HTTP/1 client sends the path, not the whole URL.
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = path.parse()?;
        let req = Request::from_parts(parts, Full::new(body));
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
        let _ = tcp.set_nodelay(true);
        let resp = if https {
            let connector = match &self.tls {
                Some(c) => c.clone(),
                None => ringest_tls::Connector::new(&ringest_tls::ClientOptions::default(), &[b"http/1.1"])?,
            };
            send(TokioIo::new(connector.connect(&host, tcp).await?), req).await?
        } else {
            send(TokioIo::new(tcp), req).await?
        };
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, MAX_ANSWER).collect().await?.to_bytes();
        Ok(Response::from_parts(parts, body))
    }
}

async fn send<IO>(io: IO, req: Request<Full<Bytes>>) -> Result<Response<hyper::body::Incoming>, HttpError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(err = %e, "tracing export connection ended with an error");
        }
    });
    Ok(sender.send_request(req).await?)
}

#[async_trait::async_trait]
impl HttpClient for Client {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let uri = request.uri().to_string();
        match tokio::time::timeout(self.timeout, self.exchange(request)).await {
            Ok(r) => r,
            Err(_) => Err(format!("{uri}: no answer within {:?}", self.timeout).into()),
        }
    }
}
