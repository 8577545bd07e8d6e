//! gRPC status codes, the [`Status`] error, and the `grpc-message` percent-encoding.

use std::fmt;

/// The canonical gRPC status codes (values as on the wire in `grpc-status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

const CODES: [Code; 17] = [
    Code::Ok,
    Code::Cancelled,
    Code::Unknown,
    Code::InvalidArgument,
    Code::DeadlineExceeded,
    Code::NotFound,
    Code::AlreadyExists,
    Code::PermissionDenied,
    Code::ResourceExhausted,
    Code::FailedPrecondition,
    Code::Aborted,
    Code::OutOfRange,
    Code::Unimplemented,
    Code::Internal,
    Code::Unavailable,
    Code::DataLoss,
    Code::Unauthenticated,
];

impl Code {
    /// The code for a wire value; values outside 0..=16 become `Unknown` (as the spec asks).
    pub fn from_i32(value: i32) -> Code {
        usize::try_from(value).ok().and_then(|i| CODES.get(i).copied()).unwrap_or(Code::Unknown)
    }

    /// The code a client reports for a non-200 HTTP status without `grpc-status`
    /// (gRPC's "HTTP to gRPC status code mapping").
    pub fn from_http_status(status: u16) -> Code {
        match status {
            400 => Code::Internal,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::Unimplemented,
            429 | 502..=504 => Code::Unavailable,
            _ => Code::Unknown,
        }
    }

    /// The name grpc-go prints for this code (`OK`, `Canceled`, `Unavailable`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Cancelled => "Canceled",
            Code::Unknown => "Unknown",
            Code::InvalidArgument => "InvalidArgument",
            Code::DeadlineExceeded => "DeadlineExceeded",
            Code::NotFound => "NotFound",
            Code::AlreadyExists => "AlreadyExists",
            Code::PermissionDenied => "PermissionDenied",
            Code::ResourceExhausted => "ResourceExhausted",
            Code::FailedPrecondition => "FailedPrecondition",
            Code::Aborted => "Aborted",
            Code::OutOfRange => "OutOfRange",
            Code::Unimplemented => "Unimplemented",
            Code::Internal => "Internal",
            Code::Unavailable => "Unavailable",
            Code::DataLoss => "DataLoss",
            Code::Unauthenticated => "Unauthenticated",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A gRPC call outcome other than success: a code plus a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rpc error: code = {code} desc = {message}")]
pub struct Status {
    pub code: Code,
    pub message: String,
}

impl Status {
    pub fn new(code: Code, message: impl Into<String>) -> Status {
        Status { code, message: message.into() }
    }
}

/// Percent-encodes a `grpc-message`: every byte outside 0x20..=0x7E, and `%` itself, becomes `%XX`.
pub fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes a percent-encoded `grpc-message`, leniently: malformed escapes are kept verbatim and
/// invalid UTF-8 is replaced.
pub fn percent_decode(encoded: &[u8]) -> String {
    fn hex(b: u8) -> Option<u8> {
        char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    let mut out = Vec::with_capacity(encoded.len());
    let mut i = 0;
    while i < encoded.len() {
        let b = encoded[i];
        if b == b'%'
            && let (Some(hi), Some(lo)) =
                (encoded.get(i + 1).copied().and_then(hex), encoded.get(i + 2).copied().and_then(hex))
        {
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_values_map_to_unknown() {
        for (i, code) in CODES.iter().enumerate() {
            assert_eq!(Code::from_i32(i as i32), *code);
            assert_eq!(*code as i32, i as i32);
        }
        assert_eq!(Code::from_i32(17), Code::Unknown);
        assert_eq!(Code::from_i32(-1), Code::Unknown);
        assert_eq!(Code::from_http_status(404), Code::Unimplemented);
        assert_eq!(Code::from_http_status(503), Code::Unavailable);
        assert_eq!(Code::from_http_status(500), Code::Unknown);
    }

    #[test]
    fn display_matches_grpc_go() {
        let s = Status::new(Code::Unavailable, "connection refused");
        assert_eq!(s.to_string(), "rpc error: code = Unavailable desc = connection refused");
        assert_eq!(Code::Ok.to_string(), "OK");
        assert_eq!(Code::Cancelled.to_string(), "Canceled");
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(percent_encode("plain text: ok"), "plain text: ok");
        assert_eq!(percent_encode("100%\n"), "100%25%0A");
        assert_eq!(percent_encode("✓"), "%E2%9C%93");
        for s in ["", "a%b", "über\r\n\t✓ 100%", "%%%"] {
            assert_eq!(percent_decode(percent_encode(s).as_bytes()), s);
        }
        // Malformed escapes are kept as-is.
        assert_eq!(percent_decode(b"50% off %zz %4"), "50% off %zz %4");
        assert_eq!(percent_decode(b"%e2%9c%93"), "✓");
    }
}
