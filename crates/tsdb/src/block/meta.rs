//! `meta.json`: Prometheus' `BlockMeta` (version 1), written tab-indented as Prometheus does.
//! Keys ringest does not model (the `thanos` section, compaction parents, hints) are kept as
//! they were read, so a block's meta survives a read-modify-write unchanged.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::BlockError;

/// The file name.
pub const META_FILENAME: &str = "meta.json";

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Counts of a block (`stats`; every field omitted when zero).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockStats {
    /// Samples.
    #[serde(rename = "numSamples", default, skip_serializing_if = "is_zero")]
    pub num_samples: u64,
    /// Float samples (all of them: ringest stores no native histograms yet). Newer
    /// Prometheus versions and Thanos write it; 2.42 ignores it.
    #[serde(rename = "numFloatSamples", default, skip_serializing_if = "is_zero")]
    pub num_float_samples: u64,
    /// Native histogram samples.
    #[serde(rename = "numHistogramSamples", default, skip_serializing_if = "is_zero")]
    pub num_histogram_samples: u64,
    /// Series.
    #[serde(rename = "numSeries", default, skip_serializing_if = "is_zero")]
    pub num_series: u64,
    /// Chunks.
    #[serde(rename = "numChunks", default, skip_serializing_if = "is_zero")]
    pub num_chunks: u64,
    /// Tombstones.
    #[serde(rename = "numTombstones", default, skip_serializing_if = "is_zero")]
    pub num_tombstones: u64,
}

/// `compaction`: level and sources (other keys kept verbatim).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Compaction {
    /// 1 for a block cut from the head.
    pub level: u32,
    /// Level-1 ancestors (the block's own ULID for a head block).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// Other keys (`parents`, `deletable`, `failed`, `hints`).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A block's `meta.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockMeta {
    /// The block's ULID (also its directory name).
    pub ulid: String,
    /// Lowest timestamp, inclusive.
    #[serde(rename = "minTime")]
    pub min_time: i64,
    /// Highest timestamp, exclusive.
    #[serde(rename = "maxTime")]
    pub max_time: i64,
    /// Counts.
    #[serde(default)]
    pub stats: BlockStats,
    /// Compaction level and sources.
    pub compaction: Compaction,
    /// Format version of this file: 1.
    pub version: u32,
    /// Other top-level keys (the `thanos` section).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl BlockMeta {
    /// The meta of a new level-1 block cut from the head.
    pub fn new_level1(ulid: String, min_time: i64, max_time: i64, stats: BlockStats) -> Self {
        BlockMeta {
            compaction: Compaction { level: 1, sources: vec![ulid.clone()], extra: Default::default() },
            ulid,
            min_time,
            max_time,
            stats,
            version: 1,
            extra: Default::default(),
        }
    }

    /// Reads `<dir>/meta.json`; a version other than 1 is refused (as Prometheus does).
    pub fn read(dir: &Path) -> Result<BlockMeta, BlockError> {
        let path = dir.join(META_FILENAME);
        let data = std::fs::read(&path).map_err(BlockError::io("read", &path))?;
        let meta: BlockMeta = serde_json::from_slice(&data)
            .map_err(|e| BlockError::Corrupt { path: path.clone(), reason: format!("parse meta.json: {e}") })?;
        if meta.version != 1 {
            return Err(BlockError::Corrupt { path, reason: format!("unexpected meta file version {}", meta.version) });
        }
        Ok(meta)
    }

    /// The JSON text, tab-indented.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        self.serialize(&mut ser).expect("meta.json serializes");
        out.push(b'\n');
        out
    }

    /// Writes `<dir>/meta.json` atomically: `meta.json.tmp`, fsync, rename, directory fsync.
    pub fn write(&self, dir: &Path) -> Result<(), BlockError> {
        let path = dir.join(META_FILENAME);
        crate::fsutil::write_atomic(&path, &self.to_json()).map_err(BlockError::io("write", &path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// promtool 2.42's own meta.json (spec prometheus-formats §1) reads and writes back with
    /// the same keys; unknown sections survive.
    #[test]
    fn reads_prometheus_meta_and_keeps_unknown_keys() {
        let text = r#"{"ulid":"01M7Y6MNNDR0AHWZWQG7XR9T3E","minTime":1700000000000,"maxTime":1700000045001,
 "stats":{"numSamples":7,"numSeries":3,"numChunks":3},
 "compaction":{"level":1,"sources":["01M7Y6MNNDR0AHWZWQG7XR9T3E"]},"version":1,
 "thanos":{"labels":{"a":"b"},"downsample":{"resolution":0},"source":"receive"}}"#;
        let m: BlockMeta = serde_json::from_str(text).unwrap();
        assert_eq!(m.stats, BlockStats { num_samples: 7, num_series: 3, num_chunks: 3, ..Default::default() });
        assert_eq!(m.compaction.sources, vec!["01M7Y6MNNDR0AHWZWQG7XR9T3E"]);
        let back: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
        let orig: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(back, orig);
        let json = String::from_utf8(m.to_json()).unwrap();
        assert!(json.starts_with("{\n\t\"ulid\""), "{json}");
        assert!(!json.contains("numTombstones"));
    }
}
