//! The meta-monitoring query of Thanos' head series limit: an instant query to a Prometheus
//! query API (`GET <url>/api/v1/query?query=...&dedup=true`) whose vector gives each tenant's
//! head series by its `tenant` label, with `meta_monitoring_http_client`'s authentication and
//! TLS.

use std::collections::HashMap;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;

use super::client::{Auth, Secret};
use super::file::MetaMonitoring;

/// Longest a query may take (connect, send, answer).
const TIMEOUT: Duration = Duration::from_secs(10);

/// Largest answer read.
const MAX_ANSWER: usize = 16 << 20;

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The URL could not be used.
    #[error("meta-monitoring URL: {0}")]
    Url(String),
    /// Connecting, TLS, or HTTP failed.
    #[error("query: {0}")]
    Transport(String),
    /// It took longer than the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Not a success.
    #[error("status {status}: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// A redirect, which ringest does not follow.
    #[error("status {status}: a redirect to {to:?}, which ringest does not follow: set the URL it points to")]
    Redirect {
        /// The HTTP status.
        status: u16,
        /// Where to.
        to: String,
    },
    /// A credential file could not be read.
    #[error("read credentials: {0}")]
    Credentials(std::io::Error),
    /// Not a vector answer.
    #[error("unexpected answer: {0}")]
    Answer(String),
}

fn transport(e: impl std::fmt::Display) -> MetaError {
    MetaError::Transport(e.to_string())
}

/// Every tenant's head series as the meta-monitoring Prometheus counts them.
pub async fn head_series(meta: &MetaMonitoring) -> Result<HashMap<String, f64>, MetaError> {
    tokio::time::timeout(TIMEOUT, query(meta)).await.map_err(|_| MetaError::Timeout(TIMEOUT))?
}

async fn query(meta: &MetaMonitoring) -> Result<HashMap<String, f64>, MetaError> {
    let url: http::Uri = meta.url.parse().map_err(|e| MetaError::Url(format!("{}: {e}", meta.url)))?;
    let https = url.scheme_str() == Some("https");
    let host = url.host().ok_or_else(|| MetaError::Url(format!("{}: no host", meta.url)))?.to_string();
    let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
    let base = url.path().trim_end_matches('/');
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("query", &meta.query)
        .append_pair("dedup", "true")
        .finish();
    let path = format!("{base}/api/v1/query?{q}");
    let mut req = http::Request::get(path)
        .header(http::header::HOST, url.authority().map(|a| a.as_str()).unwrap_or(&host))
        .header(http::header::USER_AGENT, "Thanos");
    if let Some(auth) = &meta.client.auth {
        req = req.header(http::header::AUTHORIZATION, authorization(auth)?);
    }
    let req = req.body(Empty::<bytes::Bytes>::new()).map_err(transport)?;
    let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port)).await.map_err(transport)?;
    let resp = if https {
        let connector = ringest_tls::Connector::new(&meta.client.tls, &[b"http/1.1"]).map_err(transport)?;
        let tls = connector.connect(&host, tcp).await.map_err(transport)?;
        send(TokioIo::new(tls), req).await?
    } else {
        send(TokioIo::new(tcp), req).await?
    };
    let status = resp.status().as_u16();
    if resp.status().is_redirection() {
        let to = resp.headers().get(http::header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        return Err(MetaError::Redirect { status, to });
    }
    let body = Limited::new(resp.into_body(), MAX_ANSWER).collect().await.map_err(transport)?.to_bytes();
    if status != 200 {
        let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
        return Err(MetaError::Status { status, body: text });
    }
    parse(&body)
}

async fn send<IO>(
    io: IO,
    req: http::Request<Empty<bytes::Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, MetaError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(transport)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(err = %e, "meta-monitoring connection ended with an error");
        }
    });
    sender.send_request(req).await.map_err(transport)
}

/// The `Authorization` header value of `auth`, with files read now.
fn authorization(auth: &Auth) -> Result<http::HeaderValue, MetaError> {
    use base64::Engine;
    let value = match auth {
        Auth::Basic { username, password } => {
            let user = username.read().map_err(MetaError::Credentials)?;
            let pass =
                password.as_ref().map(Secret::read).transpose().map_err(MetaError::Credentials)?.unwrap_or_default();
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")))
        }
        Auth::Header { scheme, credentials } => {
            format!("{scheme} {}", credentials.read().map_err(MetaError::Credentials)?)
        }
    };
    http::HeaderValue::from_str(&value).map_err(|e| MetaError::Credentials(std::io::Error::other(e)))
}

/// The `tenant → value` map of a query API answer.
fn parse(body: &[u8]) -> Result<HashMap<String, f64>, MetaError> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| MetaError::Answer(e.to_string()))?;
    if v["status"] != "success" {
        return Err(MetaError::Answer(format!("status {}", v["status"])));
    }
    if v["data"]["resultType"] != "vector" {
        return Err(MetaError::Answer(format!("result type {}, not vector", v["data"]["resultType"])));
    }
    let mut out = HashMap::new();
    for e in v["data"]["result"].as_array().into_iter().flatten() {
        let Some(tenant) = e["metric"]["tenant"].as_str() else { continue };
        let value = e["value"][1].as_str().and_then(|s| s.parse::<f64>().ok());
        let value = value.ok_or_else(|| MetaError::Answer(format!("value of tenant {tenant:?}: {}", e["value"])))?;
        out.insert(tenant.to_string(), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vector_by_tenant() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"tenant":"a"},"value":[1700000000.1,"1234"]},
            {"metric":{"tenant":"b","x":"y"},"value":[1700000000.1,"5"]},
            {"metric":{},"value":[1700000000.1,"9"]}]}}"#;
        let m = parse(body).unwrap();
        assert_eq!(m, HashMap::from([("a".to_string(), 1234.0), ("b".to_string(), 5.0)]));
        assert!(parse(br#"{"status":"error","error":"x"}"#).is_err());
        assert!(parse(br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#).is_err());
    }
}
