//! Plain words for object store failures. An operator who sees "upload failed" needs to know
//! whether the server is down, the port speaks plain HTTP, the key is unknown, the secret is
//! wrong or the bucket is missing (the failures the troubleshooting guide lists), without
//! reading a nested transport error. The store's own message follows the explanation, so
//! nothing is hidden.

/// The whole error chain as one string (`a: b: c`).
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

/// The cause of `err` in plain words, then the store's message.
pub fn explain(err: &object_store::Error, endpoint: &str, bucket: &str) -> String {
    let raw = chain(err);
    format!("{}: {raw}", cause(&raw, endpoint, bucket))
}

/// The plain-words cause for an error chain.
pub fn cause(raw: &str, endpoint: &str, bucket: &str) -> String {
    let has = |needles: &[&str]| needles.iter().any(|n| raw.contains(n));
    let lower = raw.to_ascii_lowercase();
    let has_lower = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
    if has(&["InvalidAccessKeyId"]) {
        return "the access key is not known to the object store (InvalidAccessKeyId): check access_key in the \
                objstore config"
            .into();
    }
    if has(&["SignatureDoesNotMatch"]) {
        return "the secret key does not match the access key (SignatureDoesNotMatch): check secret_key in the \
                objstore config"
            .into();
    }
    if has(&["NoSuchBucket"]) {
        return format!(
            "bucket {bucket:?} does not exist at {endpoint} (NoSuchBucket): create it, or fix bucket in the objstore config"
        );
    }
    if has(&["ExpiredToken", "InvalidToken", "TokenRefreshRequired"]) {
        return "the session token is invalid or expired: check session_token or the credential source".into();
    }
    if has(&["RequestTimeTooSkewed"]) {
        return "this host's clock is too far from the object store's (RequestTimeTooSkewed)".into();
    }
    if has(&["AccessDenied", "403 Forbidden"]) {
        return format!("access denied: the credentials may not write to bucket {bucket:?}");
    }
    if has_lower(&["connection refused", "os error 111"]) {
        return format!(
            "connection refused by {endpoint}: nothing listens there (is the object store running, and is the \
             port in endpoint right?)"
        );
    }
    if has_lower(&["invalidcontenttype", "corrupt message", "wrong version number", "invalid http version"]) {
        return format!(
            "TLS handshake with {endpoint} failed: the endpoint answers in plain HTTP; set insecure: true in the \
             objstore config (or use the HTTPS port)"
        );
    }
    if has_lower(&["certificate", "unknownissuer"]) {
        return format!(
            "the TLS certificate of {endpoint} is not trusted: set http_config.tls_config.ca_file, or \
             http_config.insecure_skip_verify: true"
        );
    }
    if has_lower(&["dns error", "failed to lookup address", "name or service not known"]) {
        return format!("cannot resolve the host name of {endpoint}");
    }
    if has_lower(&["timed out", "timeout", "deadline has elapsed"]) {
        return format!("{endpoint} did not answer in time (slow or hung object store)");
    }
    if has_lower(&["connection reset", "broken pipe", "connection closed", "incompletemessage", "unexpected eof"]) {
        return format!(
            "the connection to {endpoint} was cut in the middle of a request (flaky object store or network)"
        );
    }
    if has(&[
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "500 Internal",
        "502 Bad",
        "503 Service",
        "504 Gateway",
    ]) {
        return format!("{endpoint} failed the request with a server error");
    }
    if has_lower(&["no space left"]) {
        return "the bucket's disk is full".into();
    }
    if has_lower(&["permission denied"]) {
        return format!("permission denied writing to {endpoint}");
    }
    format!("the object store at {endpoint} failed the request")
}

#[cfg(test)]
mod tests {
    use super::*;

    const EP: &str = "http://127.0.0.1:9000";

    #[test]
    fn each_failure_of_the_troubleshooting_guide_gets_its_words() {
        let cases = [
            (
                "error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)",
                "connection refused by http://127.0.0.1:9000",
            ),
            (
                "error sending request: client error (Connect): received corrupt message of type InvalidContentType",
                "plain HTTP; set insecure: true",
            ),
            (
                "Server returned non-2xx status code: 403 Forbidden: <Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id you provided does not exist in our records.</Message></Error>",
                "access key is not known",
            ),
            (
                "Server returned non-2xx status code: 403 Forbidden: <Error><Code>SignatureDoesNotMatch</Code></Error>",
                "secret key does not match",
            ),
            (
                "Server returned non-2xx status code: 404 Not Found: <Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>",
                "bucket \"thanos\" does not exist",
            ),
            ("error sending request: operation timed out", "did not answer in time"),
            ("error sending request: connection closed before message completed", "cut in the middle"),
            ("Server returned non-2xx status code: 503 Service Unavailable: <Code>SlowDown</Code>", "server error"),
            ("invalid peer certificate: UnknownIssuer", "not trusted"),
            ("something new", "failed the request"),
        ];
        for (raw, want) in cases {
            let got = cause(raw, EP, "thanos");
            assert!(got.contains(want), "{raw}\n  -> {got}\n  want {want}");
        }
    }
}
