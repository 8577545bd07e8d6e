//! A real S3 server on loopback for object-storage tests: [`Moto`] runs `moto_server`
//! (`pip install 'moto[server]'`), creates buckets, optionally enforces S3 authentication, and
//! lets tests inspect what was stored ([`Moto::list_objects`], [`Moto::get_object`]) and in which
//! order requests arrived ([`Moto::requests`], parsed from moto's access log).
//!
//! Requests from the harness are signed with AWS Signature Version 4 by [`S3Client`], a small
//! std-only implementation (SHA-256, HMAC, canonical requests) checked against moto itself: moto
//! verifies signatures with botocore when auth is enforced.
//!
//! How auth enforcement works (moto 5.x, server mode): moto checks credentials only once its
//! count of authenticated actions has reached `INITIAL_NO_AUTH_ACTION_COUNT` (infinite by
//! default, so any credentials work). [`Moto::start`] with `auth: true` creates an IAM user with
//! an inline `s3:*` policy and an access key and the bucket(s) while the count is infinite, then
//! sets it to 0 with `POST /moto-api/reset-auth` (body `0`): from then on every request must be
//! signed with that key. An unknown access key gets `403 InvalidAccessKeyId`, a wrong secret key
//! `403 SignatureDoesNotMatch`. (Starting moto with `INITIAL_NO_AUTH_ACTION_COUNT=N` in its
//! environment does the same after N counted actions; the reset endpoint does not depend on
//! counting.)

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};

use crate::client::{HttpResponse, http_request};
use crate::process::free_port;

/// Region used for signing (moto's default region).
pub const REGION: &str = "us-east-1";

const EXITED_EARLY: &str = "moto_server exited early";

/// Options for [`Moto::start`].
#[derive(Debug, Clone, Default)]
pub struct MotoOpts {
    /// Enforce S3 authentication after setup: only [`Moto::credentials`] work.
    pub auth: bool,
    /// The server executable; default [`moto_server_bin`].
    pub server_bin: Option<String>,
}

/// A running `moto_server` on `127.0.0.1`, killed on drop.
pub struct Moto {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    client: S3Client,
    auth: bool,
}

impl std::fmt::Debug for Moto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Moto").field("port", &self.port).field("auth", &self.auth).finish()
    }
}

/// The `moto_server` executable: `$MOTO_SERVER` if set, else `moto_server` on `PATH`.
pub fn moto_server_bin() -> String {
    std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into())
}

impl Moto {
    /// Starts `moto_server` on a free loopback port and waits until it answers; with
    /// `opts.auth`, also creates an IAM user and access key and turns authentication on.
    /// Fails with a clear message when `moto_server` is not installed.
    pub fn start(opts: MotoOpts) -> anyhow::Result<Moto> {
        let dir = tempfile::Builder::new().prefix("ringest-moto").tempdir()?;
        let mut last_err = None;
        for _ in 0..3 {
            let bin = opts.server_bin.clone().unwrap_or_else(moto_server_bin);
            match Self::spawn(&bin, dir.path()) {
                Ok((child, port)) => {
                    let client = S3Client::new(&format!("127.0.0.1:{port}"), "test", "test");
                    let mut moto = Moto { child: Some(child), port, dir, client, auth: false };
                    if opts.auth {
                        moto.enable_auth()?;
                    }
                    return Ok(moto);
                }
                // The port may have been taken between `free_port` and the bind: try another.
                Err(e) if e.to_string().starts_with(EXITED_EARLY) => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.expect("attempted"))
    }

    fn spawn(bin: &str, dir: &Path) -> anyhow::Result<(Child, u16)> {
        let port = free_port();
        let log_path = dir.join("moto.log");
        let log = File::create(&log_path)?;
        let mut cmd = Command::new(bin);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("PYTHONUNBUFFERED", "1")
            .env_remove("INITIAL_NO_AUTH_ACTION_COUNT")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow::anyhow!(
                    "`{bin}` not found on PATH: the object-storage tests need moto; install it with \
                     `pip install 'moto[server]'` (or set $MOTO_SERVER)"
                )
            } else {
                anyhow::anyhow!("cannot run `{bin}`: {e}")
            }
        })?;
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                bail!("{EXITED_EARLY} ({status}) on port {port}:\n{log}");
            }
            if http_request(&addr, "GET", "/moto-api/reset-auth", &[("Connection", "close")], &[]).is_ok() {
                return Ok((child, port));
            }
            if Instant::now() > deadline {
                kill_group(&mut child);
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                bail!("moto_server on port {port} did not answer within 30 s:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn enable_auth(&mut self) -> anyhow::Result<()> {
        let user = "ringest-test";
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
        self.iam(&[("Action", "CreateUser"), ("UserName", user)])?;
        self.iam(&[
            ("Action", "PutUserPolicy"),
            ("UserName", user),
            ("PolicyName", "s3-all"),
            ("PolicyDocument", policy),
        ])?;
        let resp = self.iam(&[("Action", "CreateAccessKey"), ("UserName", user)])?;
        let text = resp.text();
        let key = xml_tag(&text, "AccessKeyId").context("CreateAccessKey: no AccessKeyId")?;
        let secret = xml_tag(&text, "SecretAccessKey").context("CreateAccessKey: no SecretAccessKey")?;
        self.client = S3Client::new(&self.endpoint(), &key, &secret);
        self.set_auth_enforced(true)?;
        self.auth = true;
        Ok(())
    }

    /// Turns moto's authentication check on (`true`: every later request must be signed with
    /// a known key) or off, via `POST /moto-api/reset-auth`. Turning it on only makes sense
    /// after `start` with `auth: true` (else no key is known).
    pub fn set_auth_enforced(&self, on: bool) -> anyhow::Result<()> {
        let body: &[u8] = if on { b"0" } else { b"inf" };
        let r = http_request(
            &self.endpoint(),
            "POST",
            "/moto-api/reset-auth",
            &[("Content-Type", "text/plain"), ("Connection", "close")],
            body,
        )?;
        if r.status != 200 {
            bail!("moto reset-auth: {} {}", r.status, r.text());
        }
        Ok(())
    }

    fn iam(&self, params: &[(&str, &str)]) -> anyhow::Result<HttpResponse> {
        let mut form = String::from("Version=2010-05-08");
        for (k, v) in params {
            form.push('&');
            form.push_str(&uri_encode(k, true));
            form.push('=');
            form.push_str(&uri_encode(v, true));
        }
        let r = self.client.signed(
            "iam",
            "POST",
            "/",
            &[],
            &[("Content-Type", "application/x-www-form-urlencoded")],
            form.as_bytes(),
        )?;
        if r.status != 200 {
            bail!("IAM {params:?}: {} {}", r.status, r.text());
        }
        Ok(r)
    }

    /// `127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.endpoint())
    }

    /// The server's socket address (for [`crate::faultproxy::FaultProxy::start`]).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The region to sign with (`us-east-1`).
    pub fn region(&self) -> &'static str {
        REGION
    }

    /// Whether authentication is enforced.
    pub fn auth(&self) -> bool {
        self.auth
    }

    /// A working `(access_key, secret_key)`: the IAM user's key when auth is on, else
    /// `("test", "test")` (any pair works then).
    pub fn credentials(&self) -> (String, String) {
        (self.client.access_key.clone(), self.client.secret_key.clone())
    }

    /// A signing client with [`Moto::credentials`].
    pub fn client(&self) -> &S3Client {
        &self.client
    }

    /// Creates a bucket (signed with [`Moto::credentials`]).
    pub fn create_bucket(&self, name: &str) -> anyhow::Result<()> {
        let r = self.client.request("PUT", &format!("/{name}"), &[], &[], &[])?;
        check(&r, &format!("CreateBucket {name}"))
    }

    /// Stores an object (signed with [`Moto::credentials`]).
    pub fn put_object(&self, bucket: &str, key: &str, body: &[u8]) -> anyhow::Result<()> {
        let r = self.client.request("PUT", &object_path(bucket, key), &[], &[], body)?;
        check(&r, &format!("PutObject {bucket}/{key}"))
    }

    /// All objects of `bucket` as `(key, size)`, sorted by key (ListObjectsV2, all pages).
    /// Panics on error.
    pub fn list_objects(&self, bucket: &str) -> Vec<(String, u64)> {
        self.try_list_objects(bucket, "").unwrap_or_else(|e| panic!("list {bucket}: {e:#}"))
    }

    /// Objects of `bucket` whose key starts with `prefix`, as `(key, size)`, sorted by key.
    pub fn try_list_objects(&self, bucket: &str, prefix: &str) -> anyhow::Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = vec![("list-type", "2"), ("prefix", prefix)];
            if let Some(t) = &token {
                q.push(("continuation-token", t));
            }
            let r = self.client.request("GET", &format!("/{bucket}"), &q, &[], &[])?;
            check(&r, &format!("ListObjectsV2 {bucket}"))?;
            let text = r.text();
            for c in xml_tags(&text, "Contents") {
                let key = xml_tag(c, "Key").context("Contents without Key")?;
                let size = xml_tag(c, "Size").context("Contents without Size")?.parse()?;
                out.push((key, size));
            }
            if xml_tag(&text, "IsTruncated").as_deref() == Some("true") {
                token = Some(xml_tag(&text, "NextContinuationToken").context("truncated without token")?);
            } else {
                break;
            }
        }
        out.sort();
        Ok(out)
    }

    /// The body of `bucket/key`. Panics if it does not exist or on error.
    pub fn get_object(&self, bucket: &str, key: &str) -> Vec<u8> {
        match self.try_get_object(bucket, key) {
            Ok(Some(b)) => b,
            Ok(None) => panic!("object {bucket}/{key} does not exist"),
            Err(e) => panic!("get {bucket}/{key}: {e:#}"),
        }
    }

    /// The body of `bucket/key`, `None` if there is no such key.
    pub fn try_get_object(&self, bucket: &str, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let r = self.client.request("GET", &object_path(bucket, key), &[], &[], &[])?;
        if r.status == 404 {
            return Ok(None);
        }
        check(&r, &format!("GetObject {bucket}/{key}"))?;
        Ok(Some(r.body))
    }

    /// Path of the captured stdout+stderr of `moto_server` (its access log).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("moto.log")
    }

    /// The captured output so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Requests served so far, in the order moto answered them, as `(method, path, status)`
    /// parsed from the access log (`"PUT /bucket/key HTTP/1.1" 200`). werkzeug writes a line
    /// before sending the response, so every request a client has seen answered is listed;
    /// concurrent requests appear in the order their responses started. The path is as sent
    /// (percent-encoded, with any query string). Includes the harness's own requests (IAM
    /// `POST /`, `/moto-api/…`, bucket creation, listings by [`Moto::list_objects`]).
    pub fn requests(&self) -> Vec<(String, String, u16)> {
        parse_access_log(&self.logs())
    }

    /// Requests (as [`Moto::requests`]) whose path is in `bucket` (`/bucket` or `/bucket/…`).
    pub fn bucket_requests(&self, bucket: &str) -> Vec<(String, String, u16)> {
        let root = format!("/{bucket}");
        self.requests()
            .into_iter()
            .filter(|(_, p, _)| {
                p.strip_prefix(&root).is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?']))
            })
            .collect()
    }

    /// Process id of `moto_server`.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_group(&mut c);
        }
    }
}

fn kill_group(child: &mut Child) {
    // The child leads its own process group (pyenv shims exec; nothing else should linger).
    // SAFETY: kill(2) on the group of a child we started; no memory is involved.
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn check(r: &HttpResponse, what: &str) -> anyhow::Result<()> {
    if (200..300).contains(&r.status) {
        Ok(())
    } else {
        bail!("{what}: HTTP {} {}", r.status, error_code(r).unwrap_or_else(|| r.text()))
    }
}

/// The S3 error code (`<Code>…</Code>`) of an error response, e.g. `InvalidAccessKeyId`.
pub fn error_code(r: &HttpResponse) -> Option<String> {
    xml_tag(&r.text(), "Code")
}

/// `/bucket/key` with the key percent-encoded as S3 expects (`/` kept).
pub fn object_path(bucket: &str, key: &str) -> String {
    format!("/{bucket}/{}", uri_encode(key, false))
}

/// Parses werkzeug access-log lines (`… "METHOD PATH HTTP/1.1" STATUS …`).
pub fn parse_access_log(log: &str) -> Vec<(String, String, u16)> {
    let mut out = Vec::new();
    for line in log.lines() {
        let line = strip_ansi(line);
        let Some(start) = line.find("] \"") else { continue };
        let rest = &line[start + 3..];
        let Some(end) = rest.find("\" ") else { continue };
        let mut req = rest[..end].split(' ');
        let (Some(method), Some(path), Some(proto)) = (req.next(), req.next(), req.next()) else { continue };
        if !proto.starts_with("HTTP/") {
            continue;
        }
        let Some(status) = rest[end + 2..].split_whitespace().next().and_then(|s| s.parse().ok()) else { continue };
        out.push((method.to_string(), path.to_string(), status));
    }
    out
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Inner text of every `<tag>…</tag>` (not nested, no attributes), raw (not unescaped).
fn xml_tags<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(&after[..j]);
        rest = &after[j + close.len()..];
    }
    out
}

/// Unescaped inner text of the first `<tag>…</tag>`.
fn xml_tag(xml: &str, tag: &str) -> Option<String> {
    xml_tags(xml, tag).first().map(|s| xml_unescape(s))
}

fn xml_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let Some(j) = after.find(';') else {
            out.push_str(after);
            return out;
        };
        let ent = &after[1..j];
        let c = match ent {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => ent
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => out.push(c),
            None => out.push_str(&after[..=j]),
        }
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    out
}

/// Percent-encodes as SigV4 requires: unreserved characters kept, everything else `%XX`;
/// `/` kept unless `slash` is set.
pub fn uri_encode(s: &str, slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || (b == b'/' && !slash) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A minimal S3 client that signs every request with AWS Signature V4 (path-style URLs, one
/// connection per request). Use it to send requests with arbitrary (e.g. wrong) credentials.
#[derive(Debug, Clone)]
pub struct S3Client {
    /// `host:port`.
    pub endpoint: String,
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: String,
    /// Signing region.
    pub region: String,
}

impl S3Client {
    /// A client for `endpoint` (`host:port`) in region `us-east-1`.
    pub fn new(endpoint: &str, access_key: &str, secret_key: &str) -> S3Client {
        S3Client {
            endpoint: endpoint.into(),
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            region: REGION.into(),
        }
    }

    /// A signed S3 request. `path` must already be encoded (see [`object_path`]); `query`
    /// pairs are raw and get encoded here. Returns the response whatever its status.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<HttpResponse> {
        self.signed("s3", method, path, query, headers, body)
    }

    /// A request signed for `service` (`s3`, `iam`, …).
    pub fn signed(
        &self,
        service: &str,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<HttpResponse> {
        let amz_date = amz_date(SystemTime::now());
        let payload_hash = hex(&sha256(body));
        let mut q: Vec<(String, String)> =
            query.iter().map(|(k, v)| (uri_encode(k, true), uri_encode(v, true))).collect();
        q.sort();
        let query_string = q.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
        let auth = self.authorization(service, method, path, &query_string, &amz_date, &payload_hash);
        let target = if query_string.is_empty() { path.to_string() } else { format!("{path}?{query_string}") };
        let mut all: Vec<(&str, &str)> = vec![
            ("X-Amz-Date", &amz_date),
            ("X-Amz-Content-Sha256", &payload_hash),
            ("Authorization", &auth),
            ("Connection", "close"),
        ];
        all.extend_from_slice(headers);
        http_request(&self.endpoint, method, &target, &all, body)
            .with_context(|| format!("{method} {target} to {}", self.endpoint))
    }

    fn authorization(
        &self,
        service: &str,
        method: &str,
        path: &str,
        query: &str,
        amz_date: &str,
        payload_hash: &str,
    ) -> String {
        let signed_headers = "host;x-amz-content-sha256;x-amz-date";
        let canonical = format!(
            "{method}\n{path}\n{query}\nhost:{}\nx-amz-content-sha256:{payload_hash}\nx-amz-date:{amz_date}\n\n\
             {signed_headers}\n{payload_hash}",
            self.endpoint
        );
        let date = &amz_date[..8];
        let scope = format!("{date}/{}/{service}/aws4_request", self.region);
        let to_sign = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex(&sha256(canonical.as_bytes())));
        let mut key = hmac_sha256(format!("AWS4{}", self.secret_key).as_bytes(), date.as_bytes());
        for part in [self.region.as_str(), service, "aws4_request"] {
            key = hmac_sha256(&key, part.as_bytes());
        }
        let signature = hex(&hmac_sha256(&key, to_sign.as_bytes()));
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            self.access_key
        )
    }
}

/// `YYYYMMDDTHHMMSSZ` (UTC).
fn amz_date(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).format("%Y%m%dT%H%M%SZ").to_string()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// SHA-256 (the `sha2` crate).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&sha256(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    inner.extend_from_slice(msg);
    let mut outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    outer.extend_from_slice(&sha256(&inner));
    sha256(&outer)
}

/// Lists `bucket` with boto3 (an independent SigV4 implementation, installed with
/// `moto[server]`) through `tests/s3/boto3_list.py`: `Ok(Ok(objects))`, or `Ok(Err(code))` with
/// the S3 error code the server returned.
pub fn boto3_list(
    endpoint: &str,
    access_key: &str,
    secret_key: &str,
    bucket: &str,
) -> anyhow::Result<Result<Vec<(String, u64)>, String>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("s3").join("boto3_list.py");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .arg(&script)
        .args([&format!("http://{endpoint}"), access_key, secret_key, bucket])
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_CONFIG_FILE")
        .env_remove("AWS_SHARED_CREDENTIALS_FILE")
        .env_remove("AWS_SESSION_TOKEN")
        .output()
        .with_context(|| format!("run {python} {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed ({}): {}", script.display(), out.status, String::from_utf8_lossy(&out.stderr));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("boto3_list.py output")?;
    if let Some(code) = v.get("error").and_then(|c| c.as_str()) {
        return Ok(Err(code.to_string()));
    }
    let objs = v
        .get("objects")
        .and_then(|o| o.as_array())
        .context("boto3_list.py: no objects")?
        .iter()
        .map(|o| (o[0].as_str().unwrap_or_default().to_string(), o[1].as_u64().unwrap_or_default()))
        .collect();
    Ok(Ok(objs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn sha256_vectors() {
        assert_eq!(hex(&sha256(b"")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(hex(&sha256(b"abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(
            hex(&sha256(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        assert_eq!(
            hex(&sha256(&vec![b'a'; 1_000_000])),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
    }

    #[test]
    fn hmac_vectors() {
        // RFC 4231 test cases 2 and 6.
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(amz_date(UNIX_EPOCH), "19700101T000000Z");
        assert_eq!(amz_date(UNIX_EPOCH + Duration::from_secs(951_782_400)), "20000229T000000Z");
        assert_eq!(amz_date(UNIX_EPOCH + Duration::from_secs(1_369_353_600)), "20130524T000000Z");
        assert_eq!(amz_date(UNIX_EPOCH + Duration::from_secs(4_102_444_799)), "20991231T235959Z");
    }

    #[test]
    fn access_log() {
        let log = "WARNING: dev server\n * Running on http://127.0.0.1:1\n\
                   127.0.0.1 - - [21/Nov/2026 10:41:00] \"PUT /bkt/a/b%20c+d HTTP/1.1\" 403 -\n\
                   127.0.0.1 - - [21/Nov/2026 10:41:00] \"\x1b[33mGET /bkt?list-type=2 HTTP/1.1\x1b[0m\" 200 -\n";
        assert_eq!(
            parse_access_log(log),
            vec![
                ("PUT".to_string(), "/bkt/a/b%20c+d".to_string(), 403),
                ("GET".to_string(), "/bkt?list-type=2".to_string(), 200)
            ]
        );
    }

    #[test]
    fn xml() {
        let x = "<R><Contents><Key>a&amp;b</Key><Size>3</Size></Contents><Contents><Key>c&#x41;</Key>\
                 <Size>4</Size></Contents><IsTruncated>false</IsTruncated></R>";
        let c = xml_tags(x, "Contents");
        assert_eq!(c.len(), 2);
        assert_eq!(xml_tag(c[0], "Key").unwrap(), "a&b");
        assert_eq!(xml_tag(c[1], "Key").unwrap(), "cA");
        assert_eq!(uri_encode("a b/c+d~", false), "a%20b/c%2Bd~");
        assert_eq!(uri_encode("a/b", true), "a%2Fb");
    }
}
