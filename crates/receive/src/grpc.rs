//! The gRPC port (`--grpc-address`): `thanos.WriteableStore/RemoteWrite`, the write RPC Thanos
//! receivers replicate with (shared spec §3.2), and the gRPC health service.
//!
//! A request carrying a replica number was replicated by its router already: it is written
//! locally and never forwarded again. A request without one (a router sending to an ingestor,
//! or any client) is routed like an HTTP write. Both `timeseriesTenantData` (field 4, newer
//! Thanos) and the single-tenant fields 1-2 are accepted. Outcomes map to gRPC codes as
//! Thanos' handler does: conflict → AlreadyExists, not ready / unavailable → Unavailable,
//! invalid input → InvalidArgument, anything else → Internal.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use ringest_grpc::{Code, Message, Status, UnaryHandler};

use crate::ingest::{Processed, write_tenant};
use crate::remote_write::decode_thanos_write_request;
use crate::state::AppState;
use crate::tenancy::validate_tenant;

/// `thanos.WriteableStore/RemoteWrite`.
#[derive(Debug)]
pub struct RemoteWriteHandler {
    st: Arc<AppState>,
}

impl RemoteWriteHandler {
    /// A handler writing through `st`.
    pub fn new(st: Arc<AppState>) -> Arc<RemoteWriteHandler> {
        Arc::new(RemoteWriteHandler { st })
    }
}

fn status(code: StatusCode, message: String) -> Status {
    let code = match code {
        StatusCode::CONFLICT => Code::AlreadyExists,
        StatusCode::BAD_REQUEST => Code::InvalidArgument,
        StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
        _ => Code::Internal,
    };
    Status { code, message }
}

impl UnaryHandler for RemoteWriteHandler {
    fn call(&self, request: Message) -> Pin<Box<dyn Future<Output = Result<Bytes, Status>> + Send + '_>> {
        Box::pin(async move {
            let st = self.st.clone();
            if !st.probe.is_ready() {
                return Err(Status { code: Code::Unavailable, message: "TSDB not ready".into() });
            }
            let st2 = st.clone();
            let work = tokio::task::spawn_blocking(move || {
                SCRATCH.with_borrow_mut(|scratch| {
                    let out = write(&st2, &request, scratch);
                    if scratch.len() > KEEP_SCRATCH_BYTES {
                        *scratch = Vec::new();
                    }
                    out
                })
            });
            let processed = work.await.map_err(|e| Status { code: Code::Internal, message: e.to_string() })??;
            let mut worst: Option<(StatusCode, String)> = None;
            for p in processed {
                let (code, msg) = match p {
                    Processed::Done(report) => report.response(),
                    Processed::Replicating { pending, .. } => {
                        let v = pending.wait().await;
                        (v.status, v.message)
                    }
                };
                if code != StatusCode::OK && worst.as_ref().is_none_or(|(c, _)| rank(code) > rank(*c)) {
                    worst = Some((code, msg));
                }
            }
            match worst {
                None => Ok(Bytes::new()),
                Some((code, msg)) => Err(status(code, msg)),
            }
        })
    }
}

/// Decompressed requests are decoded from here: one buffer per blocking thread, kept unless a
/// request made it larger than this.
const KEEP_SCRATCH_BYTES: usize = 8 << 20;

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Decompresses, decodes and writes (or routes) one request, on a blocking thread.
fn write(st: &AppState, request: &Message, scratch: &mut Vec<u8>) -> Result<Vec<Processed>, Status> {
    let buf = request.bytes_in(scratch)?;
    let w =
        decode_thanos_write_request(buf).map_err(|e| Status { code: Code::InvalidArgument, message: e.to_string() })?;
    let replica = u64::try_from(w.replica)
        .map_err(|_| Status { code: Code::InvalidArgument, message: "negative replica".into() })?;
    let mut out = Vec::with_capacity(w.tenants.len());
    for (tenant, decoded) in &w.tenants {
        let tenant = if tenant.is_empty() { st.default_tenant.clone() } else { tenant.clone() };
        validate_tenant(&tenant).map_err(|e| Status { code: Code::InvalidArgument, message: e.to_string() })?;
        out.push(write_tenant(st, &tenant, replica, buf, decoded).map_err(|e| status(e.status(), e.to_string()))?);
    }
    Ok(out)
}

fn rank(code: StatusCode) -> u8 {
    match code {
        StatusCode::SERVICE_UNAVAILABLE => 4,
        StatusCode::INTERNAL_SERVER_ERROR => 3,
        StatusCode::BAD_REQUEST => 2,
        StatusCode::CONFLICT => 1,
        _ => 0,
    }
}
