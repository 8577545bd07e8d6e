//! Uploads to the bucket: one shipper per tenant, synced at start-up, every 30 s, as soon as
//! compaction cuts blocks, and once more at shutdown after the final flush (Thanos' receive).
//!
//! Uploads run on their own thread and runtime at a lower CPU priority (nice 10): hashing and
//! request signing of hundreds of megabytes must not take cores from the ingest path. A failing
//! bucket costs one log line per tenant per cycle; ingestion and readiness do not depend on it,
//! and local retention never deletes a block the bucket does not have.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::external::ExternalLabels;
use parking_lot::Mutex;
use prometheus::Registry;
use ringest_shipper::{Bucket, BucketConfig, BucketMetrics, ShipError, Shipper, ShipperMetrics, ShipperOptions};
use ringest_tsdb::block::BlockMeta;
use tokio::sync::{Notify, watch};

use crate::tenancy::{BlockListener, Tenants};

/// Thanos' shipper interval.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(30);

/// Tenants synced at once.
const CONCURRENT_TENANTS: usize = 4;

/// The uploader of one node.
pub struct Uploader {
    bucket: Arc<Bucket>,
    opts: ShipperOptions,
    metrics: ShipperMetrics,
    root: std::path::PathBuf,
    ext: Arc<ExternalLabels>,
    shippers: Mutex<BTreeMap<String, Arc<Shipper>>>,
    wake: Notify,
    rt: tokio::runtime::Handle,
}

impl std::fmt::Debug for Uploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploader").field("bucket", &self.bucket).finish_non_exhaustive()
    }
}

/// Starts the uploads thread: a current-thread runtime at nice 10, its blocking pool too.
fn start_runtime() -> anyhow::Result<tokio::runtime::Handle> {
    use crate::sched::background_thread;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("shipper")
        .on_thread_start(background_thread)
        .build()
        .context("start the upload runtime")?;
    let handle = rt.handle().clone();
    std::thread::Builder::new()
        .name("shipper".into())
        .spawn(move || {
            background_thread();
            rt.block_on(std::future::pending::<()>());
        })
        .context("start the upload thread")?;
    Ok(handle)
}

impl Uploader {
    /// Builds the bucket of `config` and registers the bucket and shipper metrics.
    pub fn new(
        config: &BucketConfig,
        opts: ShipperOptions,
        root: &std::path::Path,
        ext: Arc<ExternalLabels>,
        registry: &Registry,
    ) -> anyhow::Result<Arc<Uploader>> {
        let built = config.build().with_context(|| format!("create {} client", config.kind()))?;
        let bucket_metrics = BucketMetrics::new(registry, &built.name).context("register bucket metrics")?;
        let bucket = Arc::new(Bucket::new(built, &config.prefix, bucket_metrics));
        Ok(Arc::new(Uploader {
            bucket,
            opts,
            metrics: ShipperMetrics::new(registry).context("register shipper metrics")?,
            root: root.to_owned(),
            ext,
            shippers: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
            rt: start_runtime()?,
        }))
    }

    /// The bucket.
    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    fn shipper(&self, tenant: &str) -> Arc<Shipper> {
        let mut shippers = self.shippers.lock();
        shippers
            .entry(tenant.to_string())
            .or_insert_with(|| {
                Arc::new(Shipper::new(
                    tenant,
                    &self.root.join(tenant),
                    self.bucket.clone(),
                    self.ext.of(tenant),
                    self.opts,
                    self.metrics.clone(),
                ))
            })
            .clone()
    }

    /// Syncs every open tenant on the upload thread. Each failure is logged once, with its
    /// cause; returns whether all tenants synced. Blocks uploaded may now be deleted by
    /// retention, so a compaction pass (which applies retention) is requested.
    pub async fn sync_all(self: &Arc<Self>, tenants: &Tenants) -> bool {
        let shippers: Vec<Arc<Shipper>> = tenants
            .all()
            .iter()
            .map(|(name, _)| {
                let s = self.shipper(name);
                // The hashring (and with it a tenant's labels) may have changed since.
                s.set_labels(self.ext.of(name));
                s
            })
            .collect();
        let bucket = self.bucket.name().to_string();
        let job = self.rt.spawn(async move {
            // Tenants sync side by side (Thanos: one goroutine each), a few at a time, so one
            // slow tenant does not hold the others back.
            let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_TENANTS));
            let mut set = tokio::task::JoinSet::new();
            for s in shippers {
                let (slots, bucket) = (slots.clone(), bucket.clone());
                set.spawn(async move {
                    let _slot = slots.acquire_owned().await;
                    s.sync().await.inspect_err(|e| log_failure(s.tenant(), &bucket, e))
                });
            }
            let (mut ok, mut uploaded) = (true, 0);
            while let Some(r) = set.join_next().await {
                match r {
                    Ok(Ok(n)) => uploaded += n,
                    _ => ok = false,
                }
            }
            (ok, uploaded)
        });
        let (ok, uploaded) = job.await.unwrap_or_else(|e| {
            tracing::error!(err = %e, "upload task failed");
            (false, 0)
        });
        if uploaded > 0 {
            tenants.request_compaction();
        }
        ok
    }

    /// The periodic loop: every [`SYNC_INTERVAL`] and when blocks were cut, until `stop`.
    pub async fn run(self: Arc<Self>, tenants: Arc<Tenants>, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(SYNC_INTERVAL) => {}
                _ = self.wake.notified() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let sync = self.sync_all(&tenants);
            tokio::select! {
                _ = sync => {}
                // A sync in progress is abandoned at shutdown; the final sync takes over.
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

fn log_failure(tenant: &str, bucket: &str, e: &ShipError) {
    tracing::warn!(tenant = %tenant, bucket = %bucket, err = %e, "upload failed");
}

impl BlockListener for Uploader {
    fn blocks_cut(&self) {
        self.wake.notify_one();
    }

    fn may_delete(&self, tenant: &str, block: &BlockMeta) -> bool {
        // Empty blocks are never shipped; everything else must be in the bucket first.
        block.stats.num_samples == 0 || self.shipper(tenant).is_uploaded(&block.ulid)
    }
}
