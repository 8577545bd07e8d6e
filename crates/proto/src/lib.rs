//! ringest-proto: prost types of the wire protocols ringest speaks, generated at build time
//! from the `.proto` files in the repository's `proto/` directory (upstream package, message
//! and field numbers).
//!
//! The remote-write hot path does not use these types (it has a hand-written zero-copy
//! decoder); they serve tests, the load generator and the Thanos read APIs: tonic server traits
//! and clients for `thanos.Store`, `thanos.info.Info`, `thanos.Status` and `thanos.Exemplars`
//! (e.g. `thanos::store_client::StoreClient`). The clients are generic over the transport and
//! have no `connect` constructor: wrap any tonic channel with `StoreClient::new` (enabling
//! tonic's `channel` feature is the caller's business).

/// Prometheus remote write 1.0 (`package prometheus`).
#[allow(missing_docs, clippy::all)]
pub mod prometheus {
    include!(concat!(env!("OUT_DIR"), "/prometheus.rs"));
}

/// Prometheus remote write 2.0 (`package io.prometheus.write.v2`).
#[allow(missing_docs, clippy::all)]
pub mod write_v2 {
    include!(concat!(env!("OUT_DIR"), "/io.prometheus.write.v2.rs"));
}

/// Thanos' StoreAPI, Status and Exemplars (`package thanos`) and Info (`package thanos.info`).
#[allow(missing_docs, clippy::all)]
pub mod thanos {
    include!(concat!(env!("OUT_DIR"), "/thanos.rs"));

    /// `package thanos.info`.
    pub mod info {
        include!(concat!(env!("OUT_DIR"), "/thanos.info.rs"));
    }
}

/// The `thanos.Store` server whose Series and LabelValues answers are encoded by the server
/// itself (the read path writes a series' labels and chunks, or a million label values,
/// straight into the message, without building the message types first).
pub mod encoded {
    /// One `thanos.SeriesResponse` or `thanos.LabelValuesResponse`, already encoded (the
    /// message's fields, without an outer tag or length), from `start` of its buffer (a
    /// writer may leave room for a header it writes last). Sending only: it does not decode.
    #[derive(Debug, Clone, Default, PartialEq)]
    pub struct Encoded {
        buf: Vec<u8>,
        start: usize,
    }

    impl Encoded {
        /// The message in `buf` from `start` on.
        pub fn starting_at(buf: Vec<u8>, start: usize) -> Encoded {
            assert!(start <= buf.len(), "an encoded message starts inside its buffer");
            Encoded { buf, start }
        }

        /// The message's bytes.
        pub fn bytes(&self) -> &[u8] {
            &self.buf[self.start..]
        }
    }

    impl From<Vec<u8>> for Encoded {
        fn from(buf: Vec<u8>) -> Encoded {
            Encoded { buf, start: 0 }
        }
    }

    impl prost::Message for Encoded {
        fn encode_raw(&self, buf: &mut impl prost::bytes::BufMut) {
            buf.put_slice(self.bytes());
        }

        fn merge_field(
            &mut self,
            tag: u32,
            wire_type: prost::encoding::WireType,
            buf: &mut impl prost::bytes::Buf,
            ctx: prost::encoding::DecodeContext,
        ) -> Result<(), prost::DecodeError> {
            prost::encoding::skip_field(wire_type, tag, buf, ctx)
        }

        fn encoded_len(&self) -> usize {
            self.buf.len() - self.start
        }

        fn clear(&mut self) {
            self.buf.clear();
            self.start = 0;
        }
    }

    #[allow(missing_docs, clippy::all)]
    mod generated {
        include!(concat!(env!("OUT_DIR"), "/encoded/thanos.rs"));
    }

    pub use generated::store_server;
}
