//! Reading a receiver back through the Thanos StoreAPI (`thanos.Store` on its gRPC address).
//!
//! A blocking client over tonic's generated `StoreClient`/`InfoClient` (ringest-proto, the
//! upstream `.proto` files) with its own single-threaded tokio runtime, so the rest of the load
//! generator stays thread-based. Requests go uncompressed, as Thanos Query sends them by
//! default. Only the wire protocol is relied on: the same client reads ringest and Thanos
//! Receive.
//!
//! Two uses: [`dump`] turns every series a workload wrote into a checker [`Dump`] (XOR chunks
//! decoded with ringest-tsdb's reader, external labels stripped) for [`crate::check::check`];
//! [`Store::series`] streams a request and only counts what came back (the bench's read phase).

use std::collections::HashSet;
use std::time::Duration;

use ringest_proto::thanos as pb;
use ringest_proto::thanos::info as info_pb;
use ringest_tsdb::chunkenc::XorIter;
use tonic::transport::{Channel, Endpoint};

use crate::check::{Dump, labels_string};
use crate::plan::Layout;

/// Largest response message accepted (a batch of wide series).
const MAX_MESSAGE: usize = 256 << 20;

/// A StoreAPI call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The runtime could not start.
    #[error("tokio runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// The address is not a valid endpoint, or connecting failed.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// Why.
        source: tonic::transport::Error,
    },
    /// The server answered with an error status.
    #[error("{call}: {status}")]
    Status {
        /// The RPC.
        call: &'static str,
        /// Its status.
        status: Box<tonic::Status>,
    },
    /// A chunk could not be decoded.
    #[error("series {series}: {what}")]
    Chunk {
        /// The series' labels.
        series: String,
        /// What was wrong.
        what: String,
    },
}

/// What a Series call returned, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeriesCount {
    /// Series.
    pub series: u64,
    /// Chunks.
    pub chunks: u64,
    /// Samples in the chunks (their headers' counts).
    pub samples: u64,
    /// Response messages (a batch counts once).
    pub messages: u64,
    /// Warnings.
    pub warnings: u64,
}

/// A blocking StoreAPI client.
#[derive(Debug)]
pub struct Store {
    rt: tokio::runtime::Runtime,
    channel: Channel,
    addr: String,
}

/// A label matcher.
pub fn matcher(name: &str, ty: pb::label_matcher::Type, value: &str) -> pb::LabelMatcher {
    pb::LabelMatcher { r#type: ty as i32, name: name.to_string(), value: value.to_string() }
}

impl Store {
    /// Connects to `addr` (`host:port`, plain HTTP/2).
    pub fn connect(addr: &str) -> Result<Store, StoreError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let err = |source| StoreError::Connect { addr: addr.to_string(), source };
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(err)?
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true);
        let channel = rt.block_on(endpoint.connect()).map_err(err)?;
        Ok(Store { rt, channel, addr: addr.to_string() })
    }

    /// The address connected to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn client(&self) -> pb::store_client::StoreClient<Channel> {
        pb::store_client::StoreClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    /// Streams a Series call, handing every series to `each` (batches unpacked).
    pub fn series(
        &self,
        req: pb::SeriesRequest,
        mut each: impl FnMut(pb::Series) -> Result<(), StoreError>,
    ) -> Result<SeriesCount, StoreError> {
        let status = |status| StoreError::Status { call: "Series", status: Box::new(status) };
        self.rt.block_on(async {
            let mut stream = self.client().series(req).await.map_err(status)?.into_inner();
            let mut n = SeriesCount::default();
            while let Some(msg) = stream.message().await.map_err(status)? {
                n.messages += 1;
                let series = match msg.result {
                    Some(pb::series_response::Result::Series(s)) => vec![s],
                    Some(pb::series_response::Result::Batch(b)) => b.series,
                    Some(pb::series_response::Result::Warning(_)) => {
                        n.warnings += 1;
                        continue;
                    }
                    Some(pb::series_response::Result::Hints(_)) | None => continue,
                };
                for s in series {
                    n.series += 1;
                    for c in &s.chunks {
                        n.chunks += 1;
                        if let Some(raw) = &c.raw {
                            n.samples += u64::from(ringest_tsdb::chunkenc::xor_num_samples(&raw.data));
                        }
                    }
                    each(s)?;
                }
            }
            Ok(n)
        })
    }

    /// A LabelValues call.
    pub fn label_values(&self, req: pb::LabelValuesRequest) -> Result<pb::LabelValuesResponse, StoreError> {
        self.rt.block_on(async {
            self.client()
                .label_values(req)
                .await
                .map(|r| r.into_inner())
                .map_err(|status| StoreError::Status { call: "LabelValues", status: Box::new(status) })
        })
    }

    /// The names of the external labels the store announces (Info's label sets: for a
    /// receiver, every tenant's `tenant_id` and replica labels).
    pub fn external_label_names(&self) -> Result<HashSet<String>, StoreError> {
        self.rt.block_on(async {
            let info = info_pb::info_client::InfoClient::new(self.channel.clone())
                .info(info_pb::InfoRequest {})
                .await
                .map_err(|status| StoreError::Status { call: "Info", status: Box::new(status) })?
                .into_inner();
            Ok(info.label_sets.iter().flat_map(|s| s.labels.iter().map(|l| l.name.clone())).collect())
        })
    }
}

/// A Series request as Thanos Query sends it for a raw select: the matchers, the range, raw
/// resolution, count and sum aggregates (ignored by receivers), partial responses allowed with
/// a warning, responses in batches of 64 series.
pub fn series_request(matchers: Vec<pb::LabelMatcher>, min_time: i64, max_time: i64) -> pb::SeriesRequest {
    pb::SeriesRequest {
        min_time,
        max_time,
        matchers,
        max_resolution_window: 0,
        aggregates: vec![pb::Aggr::Count as i32, pb::Aggr::Sum as i32],
        partial_response_strategy: pb::PartialResponseStrategy::Warn as i32,
        response_batch_size: 64,
        ..Default::default()
    }
}

/// Which series [`dump`] reads and which labels it leaves out.
#[derive(Debug, Clone)]
pub struct DumpOptions {
    /// Tenant to read (a matcher on the tenant label); `None` reads every tenant.
    pub tenant: Option<String>,
    /// The label carrying the tenant.
    pub tenant_label: String,
    /// Labels to strip besides the tenant label and the store's announced external labels.
    pub strip: Vec<String>,
}

impl Default for DumpOptions {
    fn default() -> Self {
        DumpOptions { tenant: Some("default-tenant".into()), tenant_label: "tenant_id".into(), strip: Vec::new() }
    }
}

/// The time range a workload's samples fall in: from round `first` to just past round `end`'s
/// start (timestamps carry up to a second of jitter).
pub fn workload_range(layout: &Layout, first: usize, end: usize) -> (i64, i64) {
    let s = &layout.shape;
    (s.start_ms + first as i64 * s.interval_ms, s.start_ms + end as i64 * s.interval_ms + 1000)
}

/// Every sample of the workload's series (`__name__=~"<prefix>_.*"`) in `[min_time, max_time]`
/// as the store returns them, external labels stripped, in the checker's form.
pub fn dump(store: &Store, prefix: &str, min_time: i64, max_time: i64, o: &DumpOptions) -> Result<Dump, StoreError> {
    use pb::label_matcher::Type;
    let mut strip = store.external_label_names()?;
    strip.insert(o.tenant_label.clone());
    strip.extend(o.strip.iter().cloned());
    let mut matchers = vec![matcher("__name__", Type::Re, &format!("{}_.*", regex_quote(prefix)))];
    if let Some(t) = &o.tenant {
        matchers.push(matcher(&o.tenant_label, Type::Eq, t));
    }
    let mut out = Dump::new();
    store.series(series_request(matchers, min_time, max_time), |s| {
        let mut labels: Vec<(String, String)> =
            s.labels.into_iter().filter(|l| !strip.contains(&l.name)).map(|l| (l.name, l.value)).collect();
        labels.sort();
        let name = labels_string(&labels);
        let samples = out.entry(name.clone()).or_default();
        for c in &s.chunks {
            let raw = c.raw.as_ref().ok_or_else(|| StoreError::Chunk {
                series: name.clone(),
                what: format!("chunk {}..{} has no raw data", c.min_time, c.max_time),
            })?;
            if raw.r#type != pb::chunk::Encoding::Xor as i32 {
                return Err(StoreError::Chunk { series: name.clone(), what: format!("chunk encoding {}", raw.r#type) });
            }
            let mut it = XorIter::new(&raw.data);
            for (t, v) in it.by_ref() {
                if (min_time..=max_time).contains(&t) {
                    // Rust's shortest round-trip form; the checker compares the parsed bits.
                    let text = format!("{v}");
                    if let Some(prev) = samples.insert(t, text.clone()).filter(|p| *p != text) {
                        // Two chunks disagreeing on a timestamp: keep the one that differs from
                        // what was sent visible by storing an impossible value.
                        samples.insert(t, format!("conflict({prev}|{text})"));
                    }
                }
            }
            if it.is_corrupt() {
                return Err(StoreError::Chunk {
                    series: name.clone(),
                    what: format!("XOR chunk {}..{} ends early", c.min_time, c.max_time),
                });
            }
        }
        Ok(())
    })?;
    Ok(out)
}

/// Escapes regular-expression metacharacters (RE2 syntax).
pub fn regex_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
