//! Wire pieces shared by client and server: Length-Prefixed-Message framing, the framed-snappy
//! codec, `grpc-timeout` values, status headers, and the small in-memory HTTP body type.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use crate::status::{Code, Status, percent_decode, percent_encode};

mod framed_snappy;

/// `grpc-accept-encoding` we advertise.
pub(crate) const ACCEPT_ENCODING: &str = "snappy,identity";

/// Message compression (`grpc-encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// `identity`: messages are sent as-is.
    #[default]
    None,
    /// `snappy` as Thanos registers it: the snappy *framing* (stream) format.
    Snappy,
}

impl Compression {
    /// The `grpc-encoding` name.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "identity",
            Compression::Snappy => "snappy",
        }
    }

    /// Parses a `grpc-encoding` header; `Err` carries the unsupported name.
    pub(crate) fn from_header(value: Option<&HeaderValue>) -> Result<Compression, String> {
        match value.map(HeaderValue::as_bytes) {
            None | Some(b"identity") => Ok(Compression::None),
            Some(b"snappy") => Ok(Compression::Snappy),
            Some(other) => Err(String::from_utf8_lossy(other).into_owned()),
        }
    }

    /// Turns a payload into the body chunks of one Length-Prefixed-Message (see
    /// [`Encoded::frame`]). Identity payloads are not copied.
    pub(crate) fn frame(self, payload: Bytes) -> Result<[Bytes; 3], Status> {
        self.encode(payload)?.frame()
    }

    /// Undoes `frame` for a received message (`compressed` is the prefix flag).
    pub(crate) fn unframe(self, compressed: bool, data: Bytes, max: usize) -> Result<Bytes, Status> {
        match (compressed, self) {
            (false, _) => Ok(data),
            (true, Compression::Snappy) => snappy_decompress(&data, max),
            (true, Compression::None) => Err(identity_compressed()),
        }
    }

    /// The size a message decompresses to, as its framing declares it, over `max` an error.
    pub(crate) fn declared_len(self, compressed: bool, data: &[u8], max: usize) -> Result<usize, Status> {
        let n = match (compressed, self) {
            (false, _) => data.len(),
            (true, Compression::Snappy) => framed_snappy::declared_len(data).map_err(|e| decompress_error(e, max))?,
            (true, Compression::None) => return Err(identity_compressed()),
        };
        if n > max {
            return Err(decompress_error(framed_snappy::FrameError::TooLarge(max), max));
        }
        Ok(n)
    }

    /// [`unframe`](Self::unframe) into `scratch` (see [`framed_snappy::decompress_into`]); an
    /// uncompressed message is returned as it is.
    pub(crate) fn unframe_into<'a>(
        self,
        compressed: bool,
        data: &'a [u8],
        max: usize,
        scratch: &'a mut Vec<u8>,
    ) -> Result<&'a [u8], Status> {
        let whole = self.unframe_into_while(compressed, data, max, scratch, |_| true)?;
        whole.ok_or_else(|| Status::new(Code::Internal, "grpc: decompression stopped"))
    }

    /// [`Compression::unframe_into`], showing `go_on` the decompressed prefix as it grows (a
    /// chunk at a time); `None` when `go_on` stopped it. An uncompressed message is not shown.
    pub(crate) fn unframe_into_while<'a>(
        self,
        compressed: bool,
        data: &'a [u8],
        max: usize,
        scratch: &'a mut Vec<u8>,
        go_on: impl FnMut(&[u8]) -> bool,
    ) -> Result<Option<&'a [u8]>, Status> {
        match (compressed, self) {
            (false, _) => Ok(Some(data)),
            (true, Compression::Snappy) => match framed_snappy::decompress_into_while(data, max, scratch, go_on) {
                Ok(n) => Ok(Some(&scratch[..n])),
                Err(framed_snappy::FrameError::Stopped) => Ok(None),
                Err(e) => Err(decompress_error(e, max)),
            },
            (true, Compression::None) => Err(identity_compressed()),
        }
    }

    /// An encoder for a message sent with this compression; `size_hint` is the message's
    /// uncompressed size if known.
    pub fn encoder(self, size_hint: usize) -> MessageEncoder {
        match self {
            Compression::None => MessageEncoder::new(EncoderKind::Identity(Vec::with_capacity(size_hint))),
            Compression::Snappy => MessageEncoder::new(EncoderKind::Snappy(Box::default())),
        }
    }

    /// `payload` (uncompressed) encoded for this compression.
    pub(crate) fn encode(self, payload: Bytes) -> Result<Encoded, Status> {
        let payload = match self {
            Compression::None => payload,
            Compression::Snappy => snappy_compress(&payload)?,
        };
        Ok(Encoded { compression: self, head: Bytes::new(), payload })
    }
}

/// A request message in its wire form for one compression; [`Compression::encoder`] builds one
/// in pieces, compressing as it is written.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub(crate) compression: Compression,
    /// The start of the payload, when it is shared with other messages ([`SharedStart`]).
    pub(crate) head: Bytes,
    /// The rest of the payload.
    pub(crate) payload: Bytes,
}

/// Builds an [`Encoded`] message from pieces.
pub struct MessageEncoder {
    kind: EncoderKind,
    /// Encoded bytes that go before this encoder's own ([`SharedStart::encoder`]).
    head: Bytes,
}

/// The encoded start of several messages that differ only after it (e.g. the same series
/// forwarded to two peers with different replica numbers): encoded, and compressed, once.
/// [`SharedStart::encoder`] continues it into one message.
#[derive(Debug, Clone)]
pub struct SharedStart {
    bytes: Bytes,
    compression: Compression,
    /// Whether a snappy stream has started (its identifier is in `bytes`).
    started: bool,
}

enum EncoderKind {
    /// Pieces joined as they are.
    Identity(Vec<u8>),
    /// Pieces compressed window by window.
    Snappy(Box<framed_snappy::Compressor>),
}

impl Encoded {
    /// A message already in its wire form for `compression` (for snappy, a framed-snappy
    /// stream), sent as it is: e.g. relayed as it was received.
    pub fn from_wire(compression: Compression, payload: Bytes) -> Encoded {
        Encoded { compression, head: Bytes::new(), payload }
    }

    /// The body chunks of one Length-Prefixed-Message: the 5-byte prefix, then the payload in
    /// two pieces (its shared start, often empty, and the rest).
    pub(crate) fn frame(self) -> Result<[Bytes; 3], Status> {
        let flag = u8::from(self.compression == Compression::Snappy);
        let total = self.head.len() + self.payload.len();
        let len = u32::try_from(total).map_err(|_| {
            let msg = format!("grpc: message too large to send ({total} bytes)");
            Status::new(Code::ResourceExhausted, msg)
        })?;
        let mut prefix = [flag, 0, 0, 0, 0];
        prefix[1..].copy_from_slice(&len.to_be_bytes());
        Ok([Bytes::copy_from_slice(&prefix), self.head, self.payload])
    }
}

impl MessageEncoder {
    fn new(kind: EncoderKind) -> MessageEncoder {
        MessageEncoder { kind, head: Bytes::new() }
    }

    /// Ends the part written so far as the start shared by several messages (see
    /// [`SharedStart`]).
    pub fn share(mut self) -> Result<SharedStart, Status> {
        let (own, compression, started) = match &mut self.kind {
            EncoderKind::Identity(v) => (std::mem::take(v), Compression::None, false),
            EncoderKind::Snappy(c) => (c.split().map_err(compress_error)?, Compression::Snappy, c.started()),
        };
        let bytes = if self.head.is_empty() { Bytes::from(own) } else { [&self.head[..], &own].concat().into() };
        Ok(SharedStart { bytes, compression, started })
    }

    /// Appends `data` to the message.
    pub fn write(&mut self, data: &[u8]) -> Result<(), Status> {
        match &mut self.kind {
            EncoderKind::Identity(v) => {
                v.extend_from_slice(data);
                Ok(())
            }
            EncoderKind::Snappy(c) => c.write(data).map_err(compress_error),
        }
    }

    /// The message.
    pub fn finish(self) -> Result<Encoded, Status> {
        let (compression, payload) = match self.kind {
            EncoderKind::Identity(v) => (Compression::None, v),
            EncoderKind::Snappy(c) => (Compression::Snappy, c.finish().map_err(compress_error)?),
        };
        Ok(Encoded { compression, head: self.head, payload: Bytes::from(payload) })
    }
}

impl SharedStart {
    /// An encoder for one message that starts with this shared start.
    pub fn encoder(&self) -> MessageEncoder {
        let kind = match self.compression {
            Compression::None => EncoderKind::Identity(Vec::new()),
            Compression::Snappy => EncoderKind::Snappy(Box::new(framed_snappy::Compressor::continuing(self.started))),
        };
        MessageEncoder { kind, head: self.bytes.clone() }
    }
}

fn compress_error(e: snap::Error) -> Status {
    Status::new(Code::Internal, format!("grpc: snappy compress: {e}"))
}

fn identity_compressed() -> Status {
    Status::new(Code::Internal, "grpc: compressed flag set with identity or empty encoding")
}

fn decompress_error(e: framed_snappy::FrameError, max: usize) -> Status {
    match e {
        framed_snappy::FrameError::TooLarge(_) => Status::new(
            Code::ResourceExhausted,
            format!("grpc: received message after decompression larger than max {max}"),
        ),
        e => Status::new(Code::Internal, format!("grpc: failed to decompress the received message: {e}")),
    }
}

/// Compresses with the snappy framing format (stream identifier + checksummed chunks).
pub fn snappy_compress(data: &[u8]) -> Result<Bytes, Status> {
    let mut out = Vec::new();
    framed_snappy::compress_into(data, &mut out).map_err(compress_error)?;
    Ok(Bytes::from(out))
}

/// Decompresses framed snappy, never producing (or allocating for) more than `max` bytes.
pub fn snappy_decompress(data: &[u8], max: usize) -> Result<Bytes, Status> {
    framed_snappy::decompress(data, max).map(Bytes::from).map_err(|e| decompress_error(e, max))
}

/// Parses a `grpc-timeout` value: 1 to 8 ASCII digits followed by a unit `H M S m u n`.
pub fn parse_timeout(value: &str) -> Option<Duration> {
    let unit = value.chars().last()?;
    let digits = &value[..value.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(n * 3600),
        'M' => Duration::from_secs(n * 60),
        'S' => Duration::from_secs(n),
        'm' => Duration::from_millis(n),
        'u' => Duration::from_micros(n),
        'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Formats a `grpc-timeout` value in the finest unit that fits in 8 digits, rounding up.
pub fn format_timeout(timeout: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let nanos = timeout.as_nanos();
    for (unit, per) in [('n', 1u128), ('u', 1_000), ('m', 1_000_000), ('S', 1_000_000_000), ('M', 60_000_000_000)] {
        let v = nanos.div_ceil(per);
        if v <= MAX {
            return format!("{v}{unit}");
        }
    }
    format!("{}H", nanos.div_ceil(3_600_000_000_000).min(MAX))
}

/// Headers (or trailers) carrying a status: `grpc-status` and, if not empty, `grpc-message`.
pub(crate) fn status_headers(headers: &mut HeaderMap, code: Code, message: &str) {
    headers.insert("grpc-status", HeaderValue::from(code as i32));
    if !message.is_empty()
        && let Ok(v) = HeaderValue::from_str(&percent_encode(message))
    {
        headers.insert("grpc-message", v);
    }
}

/// Reads `grpc-status`/`grpc-message`; `None` when there is no `grpc-status`.
pub(crate) fn read_status(headers: &HeaderMap) -> Option<Status> {
    let raw = headers.get("grpc-status")?;
    let code = match std::str::from_utf8(raw.as_bytes()).ok().and_then(|s| s.parse::<i32>().ok()) {
        Some(c) => Code::from_i32(c),
        None => return Some(Status::new(Code::Internal, "malformed grpc-status")),
    };
    let message = headers.get("grpc-message").map(|m| percent_decode(m.as_bytes())).unwrap_or_default();
    Some(Status { code, message })
}

/// What a unary peer sent: at most one message (compressed flag, payload) and its trailers.
pub(crate) struct Unary {
    pub message: Option<(bool, Bytes)>,
    pub trailers: Option<HeaderMap>,
}

/// Reads a whole unary body. The length prefix is checked against `max` before the payload is
/// buffered; more than one message, a bad flag or a truncated message is an `Internal` error.
pub(crate) async fn read_unary<B>(
    mut body: B,
    max: usize,
    mut admit: impl FnMut(usize) -> Result<(), Status>,
    on_error: impl Fn(B::Error) -> Status,
) -> Result<Unary, Status>
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut buf = BytesMut::new();
    let mut want = None;
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let data = match frame.map_err(&on_error)?.into_data() {
            Ok(data) => data,
            Err(frame) => {
                trailers = frame.into_trailers().ok();
                continue;
            }
        };
        buf.extend_from_slice(&data);
        if want.is_none() && buf.len() >= 5 {
            if buf[0] > 1 {
                return Err(internal(format!("invalid compressed flag {}", buf[0])));
            }
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            if len > max {
                return Err(Status::new(
                    Code::ResourceExhausted,
                    format!("grpc: received message larger than max ({len} vs. {max})"),
                ));
            }
            admit(len)?;
            let total = len.saturating_add(5);
            // Room for the whole message at once, so that it is never copied as it grows (a
            // 16 MiB copy holds an async worker for milliseconds). It is admitted, so its size
            // is within the handler's budget, and the pages of a large allocation take memory
            // only as bytes arrive in them: a client that declares much and sends little costs
            // what it sends.
            buf.reserve(total.saturating_sub(buf.len()));
            want = Some(total);
        }
        if want.is_some_and(|w| buf.len() > w) {
            return Err(internal("more than one message in a unary call".into()));
        }
    }
    let message = match want {
        None if buf.is_empty() => None,
        Some(w) if buf.len() == w => Some((buf[0] == 1, buf.freeze().split_off(5))),
        _ => return Err(internal("truncated message".into())),
    };
    Ok(Unary { message, trailers })
}

fn internal(message: String) -> Status {
    Status::new(Code::Internal, format!("grpc: {message}"))
}

/// An in-memory HTTP body: some data chunks, then optional trailers.
#[derive(Debug, Default)]
pub(crate) struct GrpcBody {
    data: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
}

impl GrpcBody {
    pub(crate) fn new(data: impl IntoIterator<Item = Bytes>, trailers: Option<HeaderMap>) -> Self {
        GrpcBody { data: data.into_iter().filter(|b| !b.is_empty()).collect(), trailers }
    }
}

impl Body for GrpcBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let frame = match self.data.pop_front() {
            Some(data) => Some(Frame::data(data)),
            None => self.trailers.take().map(Frame::trailers),
        };
        Poll::Ready(frame.map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let len: usize = self.data.iter().map(Bytes::len).sum();
        SizeHint::with_exact(u64::try_from(len).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(chunks: Vec<Bytes>, max: usize) -> Result<Unary, Status> {
        let body = GrpcBody::new(chunks, None);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(read_unary(body, max, |_| Ok(()), |e| match e {}))
    }

    fn framed(c: Compression, payload: &[u8]) -> Vec<u8> {
        c.frame(Bytes::copy_from_slice(payload)).unwrap().concat()
    }

    /// Messages built on one shared start arrive whole, each with its own end, compressed or not.
    #[test]
    fn messages_sharing_a_start() {
        let start: Vec<u8> = (0..100_000u32).flat_map(|i| (i % 997).to_le_bytes()).collect();
        for c in [Compression::None, Compression::Snappy] {
            let mut enc = c.encoder(start.len());
            enc.write(&start).unwrap();
            let shared = enc.share().unwrap();
            for tail in [&b"\x18\x01"[..], b"\x12\x03abc\x18\x03", b""] {
                let mut e = shared.encoder();
                e.write(tail).unwrap();
                let chunks = e.finish().unwrap().frame().unwrap().to_vec();
                let (compressed, data) = read(chunks, 1 << 20).unwrap().message.unwrap();
                let got = c.unframe(compressed, data, 1 << 20).unwrap();
                assert_eq!(got, [&start[..], tail].concat(), "{c:?} + {tail:?}");
            }
        }
    }

    #[test]
    fn framing_round_trip_split_anywhere() {
        let wire = framed(Compression::None, b"hello world");
        assert_eq!(&wire[..5], &[0, 0, 0, 0, 11]);
        for split in 0..wire.len() {
            let chunks = vec![Bytes::copy_from_slice(&wire[..split]), Bytes::copy_from_slice(&wire[split..])];
            let m = read(chunks, 100).unwrap().message.unwrap();
            assert_eq!(m, (false, Bytes::from_static(b"hello world")));
        }
        // Empty message and empty body.
        let m = read(vec![framed(Compression::None, b"").into()], 0).unwrap();
        assert_eq!(m.message, Some((false, Bytes::new())));
        assert!(read(vec![], 10).unwrap().message.is_none());
    }

    #[test]
    fn malformed_and_oversized_frames() {
        let wire = framed(Compression::None, b"0123456789");
        let err = read(vec![wire.clone().into()], 9).err().unwrap();
        assert_eq!(err.code, Code::ResourceExhausted);
        // Only the prefix has arrived: the limit is still enforced.
        let err = read(vec![Bytes::from_static(&[0, 0xff, 0xff, 0xff, 0xff])], 1 << 20);
        assert_eq!(err.err().unwrap().code, Code::ResourceExhausted);
        let err = read(vec![Bytes::copy_from_slice(&wire[..8])], 100);
        assert_eq!(err.err().unwrap().code, Code::Internal);
        let err = read(vec![Bytes::from_static(&[0, 0])], 100);
        assert_eq!(err.err().unwrap().code, Code::Internal);
        let err = read(vec![Bytes::from_static(&[7, 0, 0, 0, 0])], 100);
        assert_eq!(err.err().unwrap().code, Code::Internal);
        let two = [wire.clone(), wire].concat();
        assert_eq!(read(vec![two.into()], 100).err().unwrap().code, Code::Internal);
        let err = Compression::None.unframe(true, Bytes::from_static(b"x"), 10);
        assert_eq!(err.unwrap_err().code, Code::Internal);
    }

    #[test]
    fn snappy_framed_round_trip_and_bomb() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let wire = framed(Compression::Snappy, &data);
        assert_eq!(wire[0], 1);
        // Stream identifier chunk of the framing format.
        assert_eq!(&wire[5..15], b"\xff\x06\x00\x00sNaPpY");
        let m = read(vec![wire.into()], 1 << 20).unwrap().message.unwrap();
        assert!(m.0);
        let out = Compression::Snappy.unframe(true, m.1, data.len()).unwrap();
        assert_eq!(out, data);
        let empty = snappy_compress(b"").unwrap();
        assert_eq!(snappy_decompress(&empty, 0).unwrap(), Bytes::new());
        // 64 MiB of zeros compresses to ~3 MiB but must not inflate past the limit.
        let bomb = snappy_compress(&vec![0u8; 64 << 20]).unwrap();
        let err = snappy_decompress(&bomb, 1 << 20).unwrap_err();
        assert_eq!(err.code, Code::ResourceExhausted);
        let err = snappy_decompress(b"not snappy at all", 1 << 20).unwrap_err();
        assert_eq!(err.code, Code::Internal);
        // Raw (block-format) snappy is not what Thanos sends.
        let raw = snap::raw::Encoder::new().compress_vec(b"abcabcabc").unwrap();
        assert!(snappy_decompress(&raw, 100).is_err());
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_timeout("250u"), Some(Duration::from_micros(250)));
        assert_eq!(parse_timeout("7n"), Some(Duration::from_nanos(7)));
        assert_eq!(parse_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_timeout("99999999H"), Some(Duration::from_secs(99_999_999 * 3600)));
        for bad in ["", "S", "5", "5s", "123456789S", "-1S", "1.5S", "5 S", "5✓"] {
            assert_eq!(parse_timeout(bad), None, "{bad:?}");
        }
        assert_eq!(format_timeout(Duration::from_millis(5)), "5000000n");
        assert_eq!(format_timeout(Duration::from_secs(5)), "5000000u");
        assert_eq!(format_timeout(Duration::from_secs(1000)), "1000000m");
        assert_eq!(format_timeout(Duration::from_secs(1_000_000)), "1000000S");
        assert_eq!(format_timeout(Duration::from_secs(u64::MAX)), "99999999H");
        for d in [1u64, 999, 123_456_789_012, 86_400_000_000_000] {
            let d = Duration::from_nanos(d);
            assert!(parse_timeout(&format_timeout(d)).unwrap() >= d);
        }
    }

    #[test]
    fn status_headers_round_trip() {
        let mut h = HeaderMap::new();
        status_headers(&mut h, Code::NotFound, "no such 100% ✓\nthing");
        let s = read_status(&h).unwrap();
        assert_eq!(s, Status::new(Code::NotFound, "no such 100% ✓\nthing"));
        let mut h = HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from_static("abc"));
        assert_eq!(read_status(&h).unwrap().code, Code::Internal);
        assert!(read_status(&HeaderMap::new()).is_none());
    }
}
