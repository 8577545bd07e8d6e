//! The instrumented bucket: the few operations the shipper needs (exists, upload a file,
//! upload bytes), counted and timed under Thanos' metric names, with the configured `prefix`
//! applied, and every failure turned into an error that says in plain words what went wrong
//! (see [`explain`]).
//!
//! Files are uploaded from a read-only memory map, so a 512 MiB chunk segment costs page cache,
//! not heap; files larger than the part size go up as a multipart upload.

pub mod explain;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{
    Attributes, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload,
    WriteMultipart,
};

use crate::config::BuiltBucket;
use crate::metrics::BucketMetrics;

/// Parts of one multipart upload in flight at once.
const PARTS_IN_FLIGHT: usize = 2;

/// Errors of bucket operations.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    /// The object store refused or failed an operation.
    #[error("{op} {key}: {explained}")]
    Store {
        /// The operation (objstore's name: `exists`, `upload`).
        op: &'static str,
        /// The object key (with prefix).
        key: String,
        /// What went wrong, in plain words, followed by the store's own message.
        explained: String,
        /// The store's error.
        #[source]
        source: Box<object_store::Error>,
    },
    /// A local file could not be read.
    #[error("read {}: {source}", path.display())]
    Local {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A bucket with Thanos' metrics and plain-words errors.
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    name: String,
    endpoint: String,
    part_size: Option<usize>,
    attributes: Attributes,
    metrics: BucketMetrics,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket").field("name", &self.name).field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

impl Bucket {
    /// A bucket over a built configuration; `prefix` (objstore's `prefix`) is put in front of
    /// every key.
    pub fn new(built: BuiltBucket, prefix: &str, metrics: BucketMetrics) -> Bucket {
        Bucket {
            store: built.store,
            prefix: prefix.trim_matches('/').to_string(),
            name: built.name,
            endpoint: built.endpoint,
            part_size: built.multipart_part_size,
            attributes: built.attributes,
            metrics,
        }
    }

    /// Thanos' name of the bucket (the `bucket` label).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the bucket is (for messages).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The full key of `name` (prefix applied).
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() { name.to_string() } else { format!("{}/{}", self.prefix, name) }
    }

    fn fail(&self, op: &'static str, key: &str, source: object_store::Error) -> BucketError {
        self.metrics.failures.with_label_values(&[op]).inc();
        let explained = explain::explain(&source, &self.endpoint, &self.name);
        BucketError::Store { op, key: key.to_string(), explained, source: Box::new(source) }
    }

    /// Whether object `name` exists (a HEAD request, as Thanos). A HEAD answer has no body, so
    /// when it fails for another reason than "not found" the object's first byte is asked for
    /// too: that answer carries the S3 error code (`InvalidAccessKeyId`, ...) the message needs.
    pub async fn exists(&self, name: &str) -> Result<bool, BucketError> {
        const OP: &str = "exists";
        let key = self.key(name);
        let location = ObjectPath::from(key.as_str());
        self.metrics.ops.with_label_values(&[OP]).inc();
        let start = Instant::now();
        let e = match self.store.head(&location).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        };
        match e {
            Ok(found) => {
                self.metrics.duration.with_label_values(&[OP]).observe(start.elapsed().as_secs_f64());
                Ok(found)
            }
            Err(head_err) => {
                let opts = GetOptions { range: Some(GetRange::Bounded(0..1)), ..Default::default() };
                let detail = match self.store.get_opts(&location, opts).await {
                    Err(e @ object_store::Error::Generic { .. })
                    | Err(e @ object_store::Error::PermissionDenied { .. })
                    | Err(e @ object_store::Error::Unauthenticated { .. }) => e,
                    _ => head_err,
                };
                Err(self.fail(OP, &key, detail))
            }
        }
    }

    /// Uploads the local file `path` as object `name` (multipart above the part size, with up
    /// to two parts in flight). Returns the bytes sent.
    pub async fn upload_file(&self, path: &Path, name: &str) -> Result<u64, BucketError> {
        let data = map_file(path)?;
        self.upload(name, data).await
    }

    /// Uploads `data` as object `name`. Returns the bytes sent.
    pub async fn upload(&self, name: &str, data: Bytes) -> Result<u64, BucketError> {
        const OP: &str = "upload";
        let key = self.key(name);
        let location = ObjectPath::from(key.as_str());
        let len = data.len();
        self.metrics.ops.with_label_values(&[OP]).inc();
        let start = Instant::now();
        let r = match self.part_size {
            Some(part) if len > part => {
                let opts = PutMultipartOptions { attributes: self.attributes.clone(), ..Default::default() };
                multipart(self.store.as_ref(), &location, data, part, opts).await
            }
            _ => {
                let opts = PutOptions { attributes: self.attributes.clone(), ..Default::default() };
                self.store.put_opts(&location, PutPayload::from_bytes(data), opts).await.map(|_| ())
            }
        };
        match r {
            Ok(()) => {
                self.metrics.duration.with_label_values(&[OP]).observe(start.elapsed().as_secs_f64());
                self.metrics.transferred_bytes.with_label_values(&[OP]).observe(len as f64);
                self.metrics.last_upload.set(now_secs());
                Ok(len as u64)
            }
            Err(e) => Err(self.fail(OP, &key, e)),
        }
    }
}

async fn multipart(
    store: &dyn ObjectStore,
    location: &ObjectPath,
    data: Bytes,
    part: usize,
    opts: PutMultipartOptions,
) -> object_store::Result<()> {
    let upload = store.put_multipart_opts(location, opts).await?;
    let mut w = WriteMultipart::new_with_chunk_size(upload, part);
    let mut off = 0;
    while off < data.len() {
        let end = (off + part).min(data.len());
        if let Err(e) = w.wait_for_capacity(PARTS_IN_FLIGHT).await {
            let _ = w.abort().await;
            return Err(e);
        }
        w.put(data.slice(off..end));
        off = end;
    }
    w.finish().await.map(|_| ())
}

/// The contents of a local file without copying it onto the heap.
fn map_file(path: &Path) -> Result<Bytes, BucketError> {
    let err = |source| BucketError::Local { path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(err)?;
    if file.metadata().map_err(err)?.len() == 0 {
        return Ok(Bytes::new());
    }
    // SAFETY: block files are immutable once their block is complete, and the shipper maps
    // its own hard links of them, which nothing writes to.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(err)?;
    Ok(Bytes::from_owner(map))
}

/// Now as Unix seconds.
pub fn now_secs() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}
