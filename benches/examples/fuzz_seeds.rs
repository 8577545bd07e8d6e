//! Writes the checked-in seed corpus of the fuzz targets (`fuzz/seeds/<target>/`): valid inputs
//! made by ringest's own writers, from which the fuzzer mutates.
//!
//! `cargo run -p ringest-benches --example fuzz_seeds -- fuzz/seeds`

use std::path::Path;

use prost::Message;
use ringest_proto::prometheus as pb;
use ringest_proto::write_v2;
use ringest_tsdb::labels::LabelRef;
use ringest_tsdb::{AppendBuffers, Options, Tsdb};

fn request(series: usize, samples: usize) -> pb::WriteRequest {
    let timeseries = (0..series)
        .map(|i| pb::TimeSeries {
            labels: vec![
                pb::Label { name: "__name__".into(), value: "up".into() },
                pb::Label { name: "instance".into(), value: format!("host-{i}:9100") },
                pb::Label { name: "job".into(), value: "node".into() },
            ],
            samples: (0..samples)
                .map(|k| pb::Sample { value: k as f64 * 1.5, timestamp: 1_700_000_000_000 + k as i64 * 15_000 })
                .collect(),
            ..Default::default()
        })
        .collect();
    pb::WriteRequest { timeseries, metadata: vec![] }
}

/// A `thanos.WriteRequest` of `req`'s series for `tenant` (fields 1, 2, 3).
fn thanos_request(req: &pb::WriteRequest, tenant: &str, replica: u8, tuples: bool) -> Vec<u8> {
    let series: Vec<Vec<u8>> = req.timeseries.iter().map(|s| s.encode_to_vec()).collect();
    let mut body = Vec::new();
    for s in &series {
        body.push(0x0a);
        prost::encoding::encode_varint(s.len() as u64, &mut body);
        body.extend_from_slice(s);
    }
    let mut tenant_field = vec![0x12];
    prost::encoding::encode_varint(tenant.len() as u64, &mut tenant_field);
    tenant_field.extend_from_slice(tenant.as_bytes());
    let mut out = Vec::new();
    if tuples {
        let mut tuple = body;
        tuple.extend_from_slice(&tenant_field);
        out.push(0x22);
        prost::encoding::encode_varint(tuple.len() as u64, &mut out);
        out.extend_from_slice(&tuple);
    } else {
        out.extend_from_slice(&body);
        out.extend_from_slice(&tenant_field);
    }
    out.extend_from_slice(&[0x18, replica]);
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("seed directory");
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

fn main() {
    let out = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz/seeds".into()));
    let small = request(3, 2);
    let one = request(1, 1);
    write(&out.join("remote_write"), "small", &small.encode_to_vec());
    write(&out.join("remote_write"), "one", &one.encode_to_vec());
    write(&out.join("remote_write"), "thanos_legacy", &thanos_request(&small, "team-a", 1, false));
    write(&out.join("remote_write"), "thanos_tuples", &thanos_request(&small, "team-b", 0, true));

    // Remote write 2.0: labels by reference into the symbols table, unsorted, with an exemplar.
    let symbols: Vec<String> =
        ["", "__name__", "up", "job", "node", "instance", "host-1:9100", "trace_id", "abc"].map(String::from).to_vec();
    let v2 = write_v2::Request {
        symbols,
        timeseries: vec![write_v2::TimeSeries {
            labels_refs: vec![3, 4, 1, 2, 5, 6],
            samples: vec![write_v2::Sample { value: 1.5, timestamp: 1_700_000_000_000, start_timestamp: 0 }],
            exemplars: vec![write_v2::Exemplar { labels_refs: vec![7, 8], value: 1.0, timestamp: 1_700_000_000_000 }],
            ..Default::default()
        }],
    };
    write(&out.join("remote_write_v2"), "one", &v2.encode_to_vec());

    for (name, data) in [("small", small.encode_to_vec()), ("one", one.encode_to_vec()), ("long", vec![7u8; 70_000])] {
        write(&out.join("framed_snappy"), name, &ringest_grpc::snappy_compress(&data).expect("compress"));
    }

    // Hashring files (first byte: algorithm and replication factor), as Thanos users write them.
    let rings = [
        ("one", r#"[{"endpoints": ["a:10901"]}]"#),
        ("three", r#"[{"hashring": "default", "endpoints": ["a:10901", "b:10901", "c:10901"]}]"#),
        (
            "tenants",
            r#"[{"hashring": "t", "tenants": ["team-*"], "tenant_matcher_type": "glob", "endpoints": [{"address": "a:10901", "az": "z1"}, {"address": "b:10901", "az": "z2"}], "external_labels": {"region": "eu"}}, {"endpoints": ["c:10901"]}]"#,
        ),
    ];
    for (k, (name, json)) in rings.iter().enumerate() {
        let mut seed = vec![k as u8 * 3];
        seed.extend_from_slice(json.as_bytes());
        write(&out.join("hashring"), name, &seed);
    }
    for (name, tenant) in [("default", "default-tenant"), ("dotted", "team.eu-1"), ("dots", "..")] {
        write(&out.join("tenant"), name, tenant.as_bytes());
    }

    // A TSDB with a few series: its first WAL segment, and the index of a block cut from it.
    let tmp = tempfile::tempdir().expect("temp dir");
    let opts = Options { chunk_range: 3_600_000, ..Options::default() };
    let (db, _) = Tsdb::open(tmp.path(), opts).expect("open TSDB");
    let mut bufs = AppendBuffers::default();
    let mut app = db.appender(&mut bufs);
    for i in 0..5 {
        let instance = format!("host-{i}");
        let labels =
            [LabelRef { name: b"__name__", value: b"up" }, LabelRef { name: b"instance", value: instance.as_bytes() }];
        let samples: Vec<(i64, f64)> = (0..4).map(|k| (1_700_000_000_000 + k * 15_000, k as f64)).collect();
        app.append(&labels, &samples, i64::MAX).expect("append");
    }
    app.commit().expect("commit");
    let mut segments: Vec<_> =
        std::fs::read_dir(tmp.path().join("wal")).expect("WAL dir").flatten().map(|e| e.path()).collect();
    segments.sort();
    let segment = std::fs::read(segments.last().expect("a WAL segment")).expect("WAL segment");
    write(&out.join("wal_segment"), "five_series", &segment);
    let blocks = db.flush_head().expect("flush head");
    db.close().expect("close");
    let block = blocks.first().expect("a block was cut");
    let index = std::fs::read(tmp.path().join(&block.ulid).join("index")).expect("block index");
    write(&out.join("block_index"), "five_series", &index);
    println!("seeds written under {}", out.display());
}
