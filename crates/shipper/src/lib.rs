//! Object storage for ringest: Thanos' bucket configuration (`--objstore.config`), an
//! instrumented bucket with Thanos' metric names, and the per-tenant shipper that uploads
//! level-1 blocks exactly as Thanos' shipper does (chunks, then index, then `meta.json` with the
//! `thanos` section; state in `thanos.shipper.json`).

pub mod bucket;
pub mod config;
pub mod meta;
pub mod metrics;
pub mod shipper;

pub use bucket::{Bucket, BucketError};
pub use config::{BucketConfig, BuiltBucket, ConfigError};
pub use metrics::{BucketMetrics, ShipperMetrics};
pub use shipper::{ShipError, Shipper, ShipperOptions};
