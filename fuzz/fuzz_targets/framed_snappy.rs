//! The framed-snappy reader of gRPC messages on arbitrary bytes: it never panics, never returns
//! more than its limit, and whatever it accepts, the `snap` crate's own stream reader (the
//! oracle) decodes to the same bytes.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;

const MAX: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Ok(ours) = ringest_grpc::snappy_decompress(data, MAX) else { return };
    assert!(ours.len() <= MAX);
    let mut theirs = Vec::new();
    snap::read::FrameDecoder::new(data).read_to_end(&mut theirs).expect("snap accepts what ringest accepts");
    assert_eq!(&ours[..], &theirs[..]);
});
