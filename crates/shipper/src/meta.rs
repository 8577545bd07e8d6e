//! What the shipper writes: the `meta.json` uploaded with a block (the block's Prometheus meta
//! plus Thanos' `thanos` section, keys in Thanos' order, tab-indented) and the tenant's state
//! file `thanos.shipper.json` (shared spec thanos-receive §7.4, §7.5).

use std::collections::BTreeMap;
use std::path::Path;

use ringest_tsdb::block::BlockMeta;
use serde::{Deserialize, Serialize};

/// The state file's name, in the tenant directory.
pub const STATE_FILENAME: &str = "thanos.shipper.json";

/// `thanos.files[].hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectHash {
    /// Always `SHA256`.
    #[serde(rename = "hashFunc")]
    pub func: String,
    /// Lower-case hex digest.
    pub value: String,
}

/// `thanos.files[]`: one file of the block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct File {
    /// Path inside the block (`chunks/000001`, `index`, `meta.json`).
    pub rel_path: String,
    /// Size in bytes (absent for `meta.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// With `--hash-func=SHA256`, for chunks and index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<ObjectHash>,
}

/// `thanos.downsample`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Downsample {
    /// 0: raw data.
    pub resolution: i64,
}

/// `thanos.index_stats` (always present; its fields are omitted when zero).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexStats {}

/// The `thanos` section, keys in the order Thanos writes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thanos {
    /// External labels of the tenant (sorted by name).
    pub labels: BTreeMap<String, String>,
    /// Resolution 0.
    pub downsample: Downsample,
    /// `receive`.
    pub source: String,
    /// Chunk file names, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segment_files: Vec<String>,
    /// Every file, sorted by path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<File>,
    /// Empty.
    pub index_stats: IndexStats,
    /// When `meta.json` was uploaded (RFC 3339 UTC, nanoseconds without trailing zeros).
    pub upload_time: String,
}

#[derive(Serialize)]
struct Shipped<'a> {
    #[serde(flatten)]
    block: &'a BlockMeta,
    thanos: &'a Thanos,
}

/// The uploaded `meta.json`: `block` (any `thanos` key it had removed) followed by `thanos`,
/// tab-indented with a final newline, as Go's encoder writes it.
pub fn shipped_meta_json(block: &BlockMeta, thanos: &Thanos) -> Vec<u8> {
    let mut block = block.clone();
    block.extra.remove("thanos");
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    Shipped { block: &block, thanos }.serialize(&mut ser).expect("meta.json serializes");
    out.push(b'\n');
    out
}

/// Labels a block already carries in a `thanos` section of its local meta.json (kept, then
/// overridden by the current ones, as Thanos does).
pub fn existing_labels(block: &BlockMeta) -> BTreeMap<String, String> {
    block
        .extra
        .get("thanos")
        .and_then(|t| t.get("labels"))
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .unwrap_or_default()
}

/// `t` as Go's `time.Time` marshals it in UTC: RFC 3339 with nanoseconds, trailing zeros (and
/// a bare dot) removed.
pub fn go_time(t: chrono::DateTime<chrono::Utc>) -> String {
    let s = t.format("%Y-%m-%dT%H:%M:%S%.9f").to_string();
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}Z")
}

/// `thanos.shipper.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// 1.
    pub version: u32,
    /// Blocks uploaded (or found in the bucket) that are still present locally. Go writes
    /// `null` for none.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub uploaded: Vec<String>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// Why the state file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// There is none yet.
    #[error("no state file")]
    Missing,
    /// It cannot be read or parsed.
    #[error("read {STATE_FILENAME}: {0}")]
    Bad(String),
}

impl State {
    /// Reads `<dir>/thanos.shipper.json`.
    pub fn read(dir: &Path) -> Result<State, StateError> {
        let data = match std::fs::read(dir.join(STATE_FILENAME)) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StateError::Missing),
            Err(e) => return Err(StateError::Bad(e.to_string())),
        };
        let s: State = serde_json::from_slice(&data).map_err(|e| StateError::Bad(e.to_string()))?;
        if s.version != 1 {
            return Err(StateError::Bad(format!("unexpected version {}", s.version)));
        }
        Ok(s)
    }

    /// The file's text: tab-indented, `null` for no blocks, final newline.
    pub fn to_json(&self) -> Vec<u8> {
        let uploaded = if self.uploaded.is_empty() {
            "null".to_string()
        } else {
            let ids: Vec<String> = self.uploaded.iter().map(|u| format!("\t\t\"{u}\"")).collect();
            format!("[\n{}\n\t]", ids.join(",\n"))
        };
        format!("{{\n\t\"version\": {},\n\t\"uploaded\": {uploaded}\n}}\n", self.version).into_bytes()
    }

    /// Writes `<dir>/thanos.shipper.json` atomically (tmp, fsync, rename, directory fsync).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        ringest_tsdb::fsutil::write_atomic(&dir.join(STATE_FILENAME), &self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringest_tsdb::block::BlockStats;

    #[test]
    fn shipped_meta_has_thanos_key_order_and_tabs() {
        let stats =
            BlockStats { num_samples: 10, num_float_samples: 10, num_series: 2, num_chunks: 2, ..Default::default() };
        let block = BlockMeta::new_level1("01JAAAAAAAAAAAAAAAAAAAAAAA".into(), 0, 7_200_000, stats);
        let thanos = Thanos {
            labels: [("tenant_id".to_string(), "t".to_string()), ("replica".to_string(), "r0".to_string())].into(),
            downsample: Downsample::default(),
            source: "receive".into(),
            segment_files: vec!["000001".into()],
            files: vec![
                File { rel_path: "chunks/000001".into(), size_bytes: Some(12), hash: None },
                File { rel_path: "index".into(), size_bytes: Some(34), hash: None },
                File { rel_path: "meta.json".into(), size_bytes: None, hash: None },
            ],
            index_stats: IndexStats {},
            upload_time: "2026-08-22T12:00:00.123456789Z".into(),
        };
        let json = String::from_utf8(shipped_meta_json(&block, &thanos)).unwrap();
        let want = "{\n\t\"ulid\": \"01JAAAAAAAAAAAAAAAAAAAAAAA\",\n\t\"minTime\": 0,\n\t\"maxTime\": 7200000,\n\t\"stats\": {\n\t\t\"numSamples\": 10,\n\t\t\"numFloatSamples\": 10,\n\t\t\"numSeries\": 2,\n\t\t\"numChunks\": 2\n\t},\n\t\"compaction\": {\n\t\t\"level\": 1,\n\t\t\"sources\": [\n\t\t\t\"01JAAAAAAAAAAAAAAAAAAAAAAA\"\n\t\t]\n\t},\n\t\"version\": 1,\n\t\"thanos\": {\n\t\t\"labels\": {\n\t\t\t\"replica\": \"r0\",\n\t\t\t\"tenant_id\": \"t\"\n\t\t},\n\t\t\"downsample\": {\n\t\t\t\"resolution\": 0\n\t\t},\n\t\t\"source\": \"receive\",\n\t\t\"segment_files\": [\n\t\t\t\"000001\"\n\t\t],\n\t\t\"files\": [\n\t\t\t{\n\t\t\t\t\"rel_path\": \"chunks/000001\",\n\t\t\t\t\"size_bytes\": 12\n\t\t\t},\n\t\t\t{\n\t\t\t\t\"rel_path\": \"index\",\n\t\t\t\t\"size_bytes\": 34\n\t\t\t},\n\t\t\t{\n\t\t\t\t\"rel_path\": \"meta.json\"\n\t\t\t}\n\t\t],\n\t\t\"index_stats\": {},\n\t\t\"upload_time\": \"2026-08-22T12:00:00.123456789Z\"\n\t}\n}\n";
        assert_eq!(json, want);
    }

    #[test]
    fn go_time_trims_trailing_zeros() {
        use chrono::TimeZone;
        let t = chrono::Utc.timestamp_opt(1_787_400_000, 120_000_000).unwrap();
        assert_eq!(go_time(t), "2026-08-22T12:00:00.12Z");
        let t = chrono::Utc.timestamp_opt(1_787_400_000, 0).unwrap();
        assert_eq!(go_time(t), "2026-08-22T12:00:00Z");
    }

    #[test]
    fn state_file_round_trips_and_reads_go_null() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(State::read(dir.path()), Err(StateError::Missing)));
        let s = State { version: 1, uploaded: vec!["01JAAAAAAAAAAAAAAAAAAAAAAA".into()] };
        s.write(dir.path()).unwrap();
        assert_eq!(State::read(dir.path()).unwrap(), s);
        let text = std::fs::read_to_string(dir.path().join(STATE_FILENAME)).unwrap();
        assert_eq!(text, "{\n\t\"version\": 1,\n\t\"uploaded\": [\n\t\t\"01JAAAAAAAAAAAAAAAAAAAAAAA\"\n\t]\n}\n");
        std::fs::write(dir.path().join(STATE_FILENAME), "{\"version\":1,\"uploaded\":null}").unwrap();
        assert!(State::read(dir.path()).unwrap().uploaded.is_empty());
        std::fs::write(dir.path().join(STATE_FILENAME), "{garbage").unwrap();
        assert!(matches!(State::read(dir.path()), Err(StateError::Bad(_))));
    }
}
