//! The per-tenant shipper (Thanos' `pkg/shipper`, shared spec thanos-receive §7.3).
//!
//! One sync: read `thanos.shipper.json`; list the tenant's block directories, oldest first by
//! `minTime`; skip blocks already recorded, blocks without samples and compacted blocks; record
//! blocks whose `meta.json` is already in the bucket; upload the rest. A block is uploaded from
//! hard links under `<tenant>/thanos/upload/<ulid>/` (so local retention cannot pull files from
//! under an upload): every `chunks/` file, then `index`, then `meta.json` with the `thanos`
//! section, last, so a block without `meta.json` in the bucket is an unfinished upload that the
//! next sync redoes. By default the sync stops at the first block that fails (blocks go up in
//! order) and leaves the state file alone; the next sync retries.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;
use ringest_trace::{KeyValue, Span};
use ringest_tsdb::block::{BlockMeta, META_FILENAME, list_block_dirs};

use crate::bucket::{Bucket, BucketError, now_secs};
use crate::meta::{self, Downsample, File, IndexStats, ObjectHash, State, StateError, Thanos};
use crate::metrics::ShipperMetrics;

/// Thanos' `source` for blocks a receiver uploads.
pub const SOURCE: &str = "receive";

/// Options from the command line.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShipperOptions {
    /// `--hash-func=SHA256`: add SHA256 hashes of chunks and index to `thanos.files`.
    pub sha256: bool,
    /// `--shipper.upload-concurrency`: chunk files of one block uploaded at once (0: one).
    pub upload_concurrency: usize,
    /// `--shipper.allow-out-of-order-uploads`: go on past a failed block.
    pub allow_out_of_order: bool,
    /// `--shipper.skip-corrupted-blocks`: skip blocks whose meta.json cannot be read.
    pub skip_corrupted: bool,
}

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    /// The tenant directory could not be listed.
    #[error("list blocks: {0}")]
    List(String),
    /// A block's meta.json cannot be read (and corrupted blocks are not skipped).
    #[error("read metadata for block {ulid} on disk: {reason}")]
    Corrupted {
        /// The block.
        ulid: String,
        /// What is wrong.
        reason: String,
    },
    /// Asking the bucket whether a block is there failed.
    #[error("{0}")]
    Exists(#[source] BucketError),
    /// A block could not be uploaded.
    #[error("upload {ulid}: {reason}")]
    Upload {
        /// The block.
        ulid: String,
        /// What failed, in plain words.
        reason: String,
    },
    /// With out-of-order uploads or skipped corrupted blocks: how many failed.
    #[error("failed to sync {failed}/{corrupted} blocks")]
    Some {
        /// Blocks whose upload failed.
        failed: usize,
        /// Corrupted blocks skipped.
        corrupted: usize,
    },
}

/// The shipper of one tenant.
pub struct Shipper {
    tenant: String,
    dir: PathBuf,
    bucket: Arc<Bucket>,
    labels: RwLock<BTreeMap<String, String>>,
    opts: ShipperOptions,
    metrics: ShipperMetrics,
    sync_lock: tokio::sync::Mutex<()>,
    uploaded: RwLock<HashSet<String>>,
}

impl std::fmt::Debug for Shipper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shipper").field("tenant", &self.tenant).field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl Shipper {
    /// The shipper of `tenant`, whose TSDB is in `dir`; `labels` are the tenant's external
    /// labels (written to every block's `thanos.labels`).
    pub fn new(
        tenant: &str,
        dir: &Path,
        bucket: Arc<Bucket>,
        labels: BTreeMap<String, String>,
        opts: ShipperOptions,
        metrics: ShipperMetrics,
    ) -> Shipper {
        metrics.init_tenant(tenant);
        // Upload directories left by a crash hold hard links that would keep deleted blocks'
        // space in use.
        if let Err(e) = std::fs::remove_dir_all(dir.join("thanos").join("upload"))
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(tenant, err = %e, "failed to clean upload directory");
        }
        let uploaded = State::read(dir).map(|s| s.uploaded.into_iter().collect()).unwrap_or_default();
        Shipper {
            tenant: tenant.to_string(),
            dir: dir.to_owned(),
            bucket,
            labels: RwLock::new(labels),
            opts,
            metrics,
            sync_lock: tokio::sync::Mutex::new(()),
            uploaded: RwLock::new(uploaded),
        }
    }

    /// The tenant.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// Replaces the external labels (the hashring's changed); blocks uploaded from now on carry
    /// them.
    pub fn set_labels(&self, labels: BTreeMap<String, String>) {
        *self.labels.write() = labels;
    }

    /// Whether block `ulid` is known to be in the bucket (local retention may delete it).
    pub fn is_uploaded(&self, ulid: &str) -> bool {
        self.uploaded.read().contains(ulid)
    }

    /// Uploads every block not in the bucket yet. Returns how many were uploaded.
    pub async fn sync(&self) -> Result<usize, ShipError> {
        let _g = self.sync_lock.lock().await;
        let t = &[self.tenant.as_str()];
        let r = self.sync_locked().await;
        match &r {
            Ok(_) | Err(ShipError::Some { .. }) => self.metrics.dir_syncs.with_label_values(t).inc(),
            Err(_) => self.metrics.dir_sync_failures.with_label_values(t).inc(),
        }
        r
    }

    async fn sync_locked(&self) -> Result<usize, ShipError> {
        let t = &[self.tenant.as_str()];
        let recorded: HashSet<String> = match State::read(&self.dir) {
            Ok(s) => s.uploaded.into_iter().collect(),
            Err(StateError::Missing) => {
                tracing::info!(tenant = %self.tenant, "no meta file found, creating empty meta data to write later");
                HashSet::new()
            }
            Err(e) => {
                tracing::error!(tenant = %self.tenant, err = %e, "failed to read meta file, creating empty meta data to write later");
                HashSet::new()
            }
        };
        let (metas, corrupted) = self.block_metas_from_oldest()?;
        let mut state = State { version: 1, uploaded: Vec::new() };
        let (mut uploaded, mut failed) = (0, 0);
        for m in metas {
            if recorded.contains(&m.ulid) {
                state.uploaded.push(m.ulid);
                continue;
            }
            if m.stats.num_samples == 0 {
                tracing::debug!(tenant = %self.tenant, block = %m.ulid, "ignoring empty block");
                continue;
            }
            if m.compaction.level > 1 {
                continue;
            }
            // A block that cannot be checked is a block not shipped: counted as an upload failure
            // (the operations guide alerts on that counter).
            let found = match self.bucket.exists(&format!("{}/{META_FILENAME}", m.ulid)).await {
                Ok(found) => found,
                Err(e) => {
                    self.metrics.upload_failures.with_label_values(t).inc();
                    return Err(ShipError::Exists(e));
                }
            };
            if !found {
                if let Err(reason) = self.upload(&m).await {
                    self.metrics.upload_failures.with_label_values(t).inc();
                    if !self.opts.allow_out_of_order {
                        return Err(ShipError::Upload { ulid: m.ulid, reason });
                    }
                    tracing::error!(tenant = %self.tenant, block = %m.ulid, err = %reason, "shipping failed");
                    failed += 1;
                    continue;
                }
                uploaded += 1;
                self.metrics.uploads.with_label_values(t).inc();
            }
            self.uploaded.write().insert(m.ulid.clone());
            state.uploaded.push(m.ulid);
        }
        if let Err(e) = state.write(&self.dir) {
            tracing::warn!(tenant = %self.tenant, err = %e, "updating meta file failed");
        }
        *self.uploaded.write() = state.uploaded.iter().cloned().collect();
        if failed > 0 || corrupted > 0 {
            self.metrics.corrupted_blocks.with_label_values(t).inc_by(corrupted as u64);
            return Err(ShipError::Some { failed, corrupted });
        }
        Ok(uploaded)
    }

    /// Metas of the tenant's blocks sorted by `minTime`, and how many were corrupted and skipped.
    fn block_metas_from_oldest(&self) -> Result<(Vec<BlockMeta>, usize), ShipError> {
        let dirs = list_block_dirs(&self.dir).map_err(|e| ShipError::List(e.to_string()))?;
        let mut metas = Vec::with_capacity(dirs.len());
        let mut corrupted = 0;
        for d in dirs {
            match BlockMeta::read(&d) {
                Ok(m) => metas.push(m),
                Err(e) => {
                    let ulid = d.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    if !self.opts.skip_corrupted {
                        return Err(ShipError::Corrupted { ulid, reason: e.to_string() });
                    }
                    tracing::error!(tenant = %self.tenant, block = %ulid, err = %e, "skipping corrupted block");
                    corrupted += 1;
                }
            }
        }
        metas.sort_by_key(|m| m.min_time);
        Ok((metas, corrupted))
    }

    /// Uploads one block; the error says what failed in plain words.
    async fn upload(&self, m: &BlockMeta) -> Result<(), String> {
        tracing::info!(tenant = %self.tenant, id = %m.ulid, "upload new block");
        let start = Instant::now();
        let updir = self.dir.join("thanos").join("upload").join(&m.ulid);
        let span = Span::root("shipper_upload_block", || {
            vec![KeyValue::new("tenant", self.tenant.clone()), KeyValue::new("block", m.ulid.clone())]
        });
        let r = self.upload_from(m, &updir, &span).await;
        if let Err(e) = &r {
            span.fail(e);
        }
        drop(span);
        if let Err(e) = std::fs::remove_dir_all(&updir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::error!(tenant = %self.tenant, err = %e, "failed to clean upload directory");
        }
        let bytes = r?;
        let took = start.elapsed();
        let t = &[self.tenant.as_str()];
        self.metrics.upload_duration.with_label_values(t).observe(took.as_secs_f64());
        self.metrics.last_upload.with_label_values(t).set(now_secs());
        tracing::info!(
            tenant = %self.tenant,
            id = %m.ulid,
            bucket = %self.bucket.name(),
            duration = %format!("{:.3}s", took.as_secs_f64()),
            bytes,
            "uploaded block to s3"
        );
        Ok(())
    }

    async fn upload_from(&self, m: &BlockMeta, updir: &Path, span: &Span) -> Result<u64, String> {
        let block_dir = self.dir.join(&m.ulid);
        let (segments, index_file) = hard_link_block(&block_dir, updir).map_err(|e| format!("hard link block: {e}"))?;
        let mut labels = meta::existing_labels(m);
        labels.extend(self.labels.read().iter().map(|(k, v)| (k.clone(), v.clone())));
        if labels.is_empty() {
            return Err("empty external labels are not allowed for Thanos block.".into());
        }
        let files = self.file_stats(updir, &segments).await?;

        // Chunks first, `upload_concurrency` at a time.
        // On a failure no new file starts, but the ones in flight run to their end (a
        // multipart upload aborts itself on error; cancelling it would leave its parts behind).
        let mut sent = 0u64;
        let mut failed: Option<String> = None;
        let mut set = tokio::task::JoinSet::new();
        let limit = self.opts.upload_concurrency.max(1);
        for seg in &segments {
            while set.len() >= limit {
                join_one(&mut set, &mut sent, &mut failed).await;
            }
            if failed.is_some() {
                break;
            }
            let bucket = self.bucket.clone();
            let path = updir.join("chunks").join(seg);
            let name = format!("{}/chunks/{seg}", m.ulid);
            let object = object_span(span, &name);
            set.spawn(
                async move { bucket.upload_file(&path, &name).await.inspect_err(|e| object.fail(&e.to_string())) },
            );
        }
        while !set.is_empty() {
            join_one(&mut set, &mut sent, &mut failed).await;
        }
        if let Some(e) = failed {
            return Err(e);
        }
        ringest_tsdb::failpoint::hit("shipper.before_index");
        let name = format!("{}/index", m.ulid);
        let object = object_span(span, &name);
        sent += self
            .bucket
            .upload_file(&index_file, &name)
            .await
            .map_err(|e| e.to_string())
            .inspect_err(|e| object.fail(e))?;
        drop(object);
        ringest_tsdb::failpoint::hit("shipper.before_meta");

        let thanos = Thanos {
            labels,
            downsample: Downsample { resolution: 0 },
            source: SOURCE.into(),
            segment_files: segments,
            files,
            index_stats: IndexStats {},
            upload_time: meta::go_time(chrono::Utc::now()),
        };
        let json = meta::shipped_meta_json(m, &thanos);
        let name = format!("{}/{META_FILENAME}", m.ulid);
        let object = object_span(span, &name);
        sent += self
            .bucket
            .upload(&name, json.into())
            .await
            .map_err(|e| format!("upload meta file: {e}"))
            .inspect_err(|e| object.fail(e))?;
        Ok(sent)
    }

    /// `thanos.files`: chunk segments, index and meta.json, sorted by path, with sizes and
    /// (with `--hash-func=SHA256`) hashes, computed off the async threads.
    async fn file_stats(&self, updir: &Path, segments: &[String]) -> Result<Vec<File>, String> {
        let updir = updir.to_owned();
        let segments = segments.to_vec();
        let sha = self.opts.sha256;
        tokio::task::spawn_blocking(move || {
            let stat = |rel: String| -> Result<File, String> {
                let path = updir.join(&rel);
                let size = std::fs::metadata(&path).map_err(|e| format!("stat {}: {e}", path.display()))?.len();
                let hash =
                    if sha { Some(ObjectHash { func: "SHA256".into(), value: sha256_file(&path)? }) } else { None };
                Ok(File { rel_path: rel, size_bytes: Some(size), hash })
            };
            let mut files = Vec::with_capacity(segments.len() + 2);
            for s in &segments {
                files.push(stat(format!("chunks/{s}"))?);
            }
            files.push(stat("index".into())?);
            files.push(File { rel_path: META_FILENAME.into(), size_bytes: None, hash: None });
            files.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
            Ok(files)
        })
        .await
        .map_err(|e| format!("gather meta file stats: {e}"))?
    }
}

/// Waits for one chunk upload; adds its bytes to `sent` or keeps the first error.
async fn join_one(
    set: &mut tokio::task::JoinSet<Result<u64, BucketError>>,
    sent: &mut u64,
    failed: &mut Option<String>,
) {
    let err = match set.join_next().await {
        Some(Ok(Ok(n))) => {
            *sent += n;
            return;
        }
        Some(Ok(Err(e))) => e.to_string(),
        Some(Err(e)) => e.to_string(),
        None => return,
    };
    failed.get_or_insert(format!("upload chunks: {err}"));
}

/// Hard-links `chunks/*`, `index` and `meta.json` of `block` into `updir` (emptied first).
/// Returns the chunk segment names, sorted, and the linked index path.
fn hard_link_block(block: &Path, updir: &Path) -> std::io::Result<(Vec<String>, PathBuf)> {
    match std::fs::remove_dir_all(updir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::create_dir_all(updir.join("chunks"))?;
    let mut segments = Vec::new();
    for e in std::fs::read_dir(block.join("chunks"))? {
        let e = e?;
        if e.file_type()?.is_file() {
            let name = e.file_name().to_string_lossy().into_owned();
            std::fs::hard_link(e.path(), updir.join("chunks").join(&name))?;
            segments.push(name);
        }
    }
    segments.sort();
    for f in ["index", META_FILENAME] {
        std::fs::hard_link(block.join(f), updir.join(f))?;
    }
    Ok((segments, updir.join("index")))
}

fn sha256_file(path: &Path) -> Result<String, String> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| format!("read {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The span of one object's upload (objstore's `bucket_upload`).
fn object_span(block: &Span, name: &str) -> Span {
    block.child("bucket_upload", || vec![KeyValue::new("name", name.to_string())])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::BucketMetrics;
    use ringest_tsdb::block::BlockStats;

    struct Fixture {
        _tmp: tempfile::TempDir,
        tenant: PathBuf,
        bucket_dir: PathBuf,
        bucket: Arc<Bucket>,
        metrics: ShipperMetrics,
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let tenant = tmp.path().join("tenant");
        let bucket_dir = tmp.path().join("bucket");
        std::fs::create_dir_all(&tenant).unwrap();
        let cfg = crate::config::parse(&format!("type: FILESYSTEM\nconfig:\n  directory: {}\n", bucket_dir.display()))
            .unwrap();
        let built = cfg.build().unwrap();
        let reg = prometheus::Registry::new();
        let bm = BucketMetrics::new(&reg, &built.name).unwrap();
        let metrics = ShipperMetrics::new(&reg).unwrap();
        Fixture { bucket: Arc::new(Bucket::new(built, "", bm)), _tmp: tmp, tenant, bucket_dir, metrics }
    }

    /// A block directory with placeholder files (the shipper does not read their contents).
    fn block(dir: &Path, ulid: &str, min: i64, samples: u64, level: u32) {
        let b = dir.join(ulid);
        std::fs::create_dir_all(b.join("chunks")).unwrap();
        std::fs::write(b.join("chunks/000001"), vec![1u8; 100]).unwrap();
        std::fs::write(b.join("chunks/000002"), vec![2u8; 50]).unwrap();
        std::fs::write(b.join("index"), b"index").unwrap();
        std::fs::write(b.join("tombstones"), b"t").unwrap();
        let stats = BlockStats { num_samples: samples, num_series: 1, num_chunks: 1, ..Default::default() };
        let mut m = BlockMeta::new_level1(ulid.into(), min, min + 7_200_000, stats);
        m.compaction.level = level;
        m.write(&b).unwrap();
    }

    const A: &str = "01JAAAAAAAAAAAAAAAAAAAAAAA";
    const B: &str = "01JBBBBBBBBBBBBBBBBBBBBBBB";
    const C: &str = "01JCCCCCCCCCCCCCCCCCCCCCCC";
    const D: &str = "01JDDDDDDDDDDDDDDDDDDDDDDD";

    fn shipper(f: &Fixture, labels: &[(&str, &str)], opts: ShipperOptions) -> Shipper {
        let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Shipper::new("t", &f.tenant, f.bucket.clone(), labels, opts, f.metrics.clone())
    }

    #[tokio::test]
    async fn ships_level1_blocks_with_samples_oldest_first_and_records_them() {
        let f = fixture();
        block(&f.tenant, A, 7_200_000, 10, 1);
        block(&f.tenant, B, 0, 10, 1);
        block(&f.tenant, C, 14_400_000, 0, 1);
        block(&f.tenant, D, 0, 10, 2);
        let s = shipper(
            &f,
            &[("replica", "r0"), ("tenant_id", "t")],
            ShipperOptions { sha256: true, ..Default::default() },
        );
        assert_eq!(s.sync().await.unwrap(), 2);
        for u in [A, B] {
            assert!(s.is_uploaded(u));
            for f2 in ["chunks/000001", "chunks/000002", "index", "meta.json"] {
                assert!(f.bucket_dir.join(u).join(f2).is_file(), "{u}/{f2}");
            }
            assert!(!f.bucket_dir.join(u).join("tombstones").exists(), "tombstones are not shipped");
            let meta: serde_json::Value =
                serde_json::from_slice(&std::fs::read(f.bucket_dir.join(u).join("meta.json")).unwrap()).unwrap();
            assert_eq!(meta["thanos"]["labels"], serde_json::json!({"replica": "r0", "tenant_id": "t"}));
            assert_eq!(meta["thanos"]["segment_files"], serde_json::json!(["000001", "000002"]));
            assert_eq!(meta["thanos"]["files"][0]["size_bytes"], 100);
            assert_eq!(meta["thanos"]["files"][0]["hash"]["hashFunc"], "SHA256");
            assert_eq!(meta["thanos"]["files"][2]["rel_path"], "index");
            assert_eq!(meta["thanos"]["files"][2]["hash"]["value"].as_str().unwrap().len(), 64);
        }
        for u in [C, D] {
            assert!(!f.bucket_dir.join(u).exists() && !s.is_uploaded(u), "{u}");
        }
        // Oldest first in the state file; the upload directory is gone.
        assert_eq!(State::read(&f.tenant).unwrap().uploaded, vec![B.to_string(), A.to_string()]);
        assert!(!f.tenant.join("thanos/upload").join(A).exists());
        assert_eq!(f.metrics.uploads.with_label_values(&["t"]).get(), 2);

        // Recorded blocks are not uploaded again; without the state file the bucket is asked.
        assert_eq!(s.sync().await.unwrap(), 0);
        std::fs::remove_file(f.tenant.join(meta::STATE_FILENAME)).unwrap();
        assert_eq!(s.sync().await.unwrap(), 0);
        assert_eq!(State::read(&f.tenant).unwrap().uploaded.len(), 2);
        // Blocks deleted locally leave the state file.
        ringest_tsdb::block::delete_block(&f.tenant.join(B)).unwrap();
        s.sync().await.unwrap();
        assert_eq!(State::read(&f.tenant).unwrap().uploaded, vec![A.to_string()]);
        assert_eq!(f.metrics.dir_syncs.with_label_values(&["t"]).get(), 4);
    }

    #[tokio::test]
    async fn a_failing_block_stops_the_sync_unless_out_of_order_uploads_are_allowed() {
        let f = fixture();
        block(&f.tenant, A, 0, 10, 1);
        block(&f.tenant, B, 7_200_000, 10, 1);
        std::fs::remove_dir_all(f.tenant.join(A).join("chunks")).unwrap();
        let s = shipper(&f, &[("r", "0")], ShipperOptions::default());
        let e = s.sync().await.unwrap_err();
        assert!(matches!(e, ShipError::Upload { ref ulid, .. } if ulid == A), "{e}");
        assert!(!f.bucket_dir.join(B).exists(), "blocks go up in order");
        assert_eq!(f.metrics.dir_sync_failures.with_label_values(&["t"]).get(), 1);
        assert_eq!(f.metrics.upload_failures.with_label_values(&["t"]).get(), 1);

        let s = shipper(&f, &[("r", "0")], ShipperOptions { allow_out_of_order: true, ..Default::default() });
        assert!(matches!(s.sync().await.unwrap_err(), ShipError::Some { failed: 1, corrupted: 0 }));
        assert!(f.bucket_dir.join(B).join("meta.json").is_file());
        assert!(!f.bucket_dir.join(A).join("meta.json").exists());
    }

    #[tokio::test]
    async fn corrupted_blocks_fail_the_sync_or_are_skipped_and_empty_labels_are_refused() {
        let f = fixture();
        block(&f.tenant, A, 0, 10, 1);
        block(&f.tenant, B, 7_200_000, 10, 1);
        std::fs::write(f.tenant.join(A).join("meta.json"), "{").unwrap();
        let s = shipper(&f, &[("r", "0")], ShipperOptions::default());
        assert!(matches!(s.sync().await.unwrap_err(), ShipError::Corrupted { .. }));
        let s = shipper(&f, &[("r", "0")], ShipperOptions { skip_corrupted: true, ..Default::default() });
        assert!(matches!(s.sync().await.unwrap_err(), ShipError::Some { failed: 0, corrupted: 1 }));
        assert!(s.is_uploaded(B));
        assert_eq!(f.metrics.corrupted_blocks.with_label_values(&["t"]).get(), 1);

        block(&f.tenant, C, 14_400_000, 10, 1);
        let s = shipper(&f, &[], ShipperOptions { skip_corrupted: true, ..Default::default() });
        match s.sync().await.unwrap_err() {
            ShipError::Upload { reason, .. } => assert!(reason.contains("empty external labels"), "{reason}"),
            e => panic!("{e}"),
        }
    }
}
