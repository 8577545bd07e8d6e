//! Hot paths, per sample: remote-write decode (snappy + protobuf), series hash, head append
//! (validation and lookup), WAL encode + write, commit (WAL + apply), the full ingest pipeline
//! (decode + append + WAL + apply) on 100k active series, gRPC framed snappy (replication), and
//! XOR chunk encode/decode.
//! Every group reports elements = samples, so criterion prints time per sample.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use ringest::remote_write::{Decoded, Shape, decode_write_request, decompress};
use ringest_proto::prometheus as pb;
use ringest_tsdb::chunkenc::{XorAppender, XorIter};
use ringest_tsdb::labels::SeriesHasher;
use ringest_tsdb::wal::{WalOptions, WalWriter, record};
use ringest_tsdb::{AppendBuffers, LabelRef, Options, Tsdb};

const SERIES: usize = 100_000;
const PER_REQUEST: usize = 2000;
const ROUNDS: usize = 12;
const T0: i64 = 1_800_000_000_000;

/// node_exporter-like labels: a dozen metric names, instance/job, a few per-series labels.
fn labels(i: usize) -> Vec<pb::Label> {
    let l = |n: &str, v: String| pb::Label { name: n.into(), value: v };
    vec![
        l("__name__", format!("node_metric_{}_total", i % 97)),
        l("cpu", format!("{}", i % 8)),
        l("instance", format!("10.1.{}.{}:9100", (i / 250) % 256, i % 250)),
        l("job", "node".into()),
        l("mode", ["idle", "user", "system", "iowait"][i % 4].into()),
        l("series", format!("{i}")),
    ]
}

/// Pre-encoded requests: `ROUNDS` rounds of one sample per series, 2000 series per request.
fn requests() -> Vec<Vec<Vec<u8>>> {
    let names: Vec<Vec<pb::Label>> = (0..SERIES).map(labels).collect();
    (0..ROUNDS)
        .map(|r| {
            names
                .chunks(PER_REQUEST)
                .enumerate()
                .map(|(c, chunk)| {
                    let req = pb::WriteRequest {
                        timeseries: chunk
                            .iter()
                            .enumerate()
                            .map(|(j, ls)| pb::TimeSeries {
                                labels: ls.clone(),
                                samples: vec![pb::Sample {
                                    value: (r * 10 + (c * PER_REQUEST + j) % 7) as f64,
                                    timestamp: T0 + r as i64 * 15_000,
                                }],
                                ..Default::default()
                            })
                            .collect(),
                        metadata: vec![],
                    };
                    snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap()
                })
                .collect()
        })
        .collect()
}

struct Pipeline {
    _dir: tempfile::TempDir,
    db: Tsdb,
    decompressed: Vec<u8>,
    decoded: Decoded,
    bufs: AppendBuffers,
}

impl Pipeline {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = Tsdb::open(dir.path(), Options::default()).unwrap();
        Pipeline {
            _dir: dir,
            db,
            decompressed: Vec::new(),
            decoded: Decoded::default(),
            bufs: AppendBuffers::default(),
        }
    }

    fn ingest(&mut self, body: &[u8]) {
        decompress(body, &mut self.decompressed).unwrap();
        decode_write_request(&self.decompressed, &mut self.decoded).unwrap();
        let report =
            ringest::writer::write("bench", &self.db, &self.decompressed, &self.decoded, i64::MAX, &mut self.bufs)
                .unwrap();
        assert_eq!(report.appended, PER_REQUEST as u64);
    }
}

fn pipeline(c: &mut Criterion) {
    let reqs = requests();
    let mut g = c.benchmark_group("ingest_100k_series");
    g.throughput(Throughput::Elements(SERIES as u64));
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    // One iteration = one round: every series gets one sample (50 requests of 2000 series).
    // Series already exist (steady state): round 0 creates them untimed.
    g.bench_function("decode_append_wal", |b| {
        let mut p = Pipeline::new();
        let mut round = ROUNDS;
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                if round == ROUNDS {
                    p = Pipeline::new();
                    reqs[0].iter().for_each(|r| p.ingest(r));
                    round = 1;
                }
                let start = Instant::now();
                for body in &reqs[round] {
                    p.ingest(black_box(body));
                }
                total += start.elapsed();
                round += 1;
            }
            total
        });
    });
    g.bench_function("create_series", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut p = Pipeline::new();
                let start = Instant::now();
                reqs[0].iter().for_each(|r| p.ingest(r));
                total += start.elapsed();
            }
            total
        });
    });
    g.finish();

    let mut g = c.benchmark_group("remote_write_decode");
    g.throughput(Throughput::Elements(PER_REQUEST as u64));
    let mut out = Vec::new();
    let mut decoded = Decoded::default();
    g.bench_function("snappy_and_protobuf", |b| {
        b.iter(|| {
            decompress(black_box(&reqs[1][0]), &mut out).unwrap();
            decode_write_request(&out, &mut decoded).unwrap();
        })
    });
    // The counting pass that bounds a request before it is decoded (admission).
    decompress(&reqs[1][0], &mut out).unwrap();
    g.bench_function("shape", |b| {
        b.iter(|| ringest::remote_write::shape_of(black_box(&out), false, &Shape::UNBOUNDED).unwrap())
    });
    g.bench_function("outline", |b| {
        b.iter(|| ringest::remote_write::outline(black_box(&out), false, u64::MAX).unwrap())
    });
    g.finish();

    // What a replicated write costs on top: the router compresses the forwarded series in
    // gRPC's framed snappy, the peer decompresses them (same body as the request above).
    let mut g = c.benchmark_group("grpc_framed_snappy");
    g.throughput(Throughput::Elements(PER_REQUEST as u64));
    decompress(&reqs[1][0], &mut out).unwrap();
    let framed = ringest_grpc::snappy_compress(&out).unwrap();
    g.bench_function("compress", |b| b.iter(|| ringest_grpc::snappy_compress(black_box(&out)).unwrap()));
    g.bench_function("decompress", |b| {
        b.iter(|| ringest_grpc::snappy_decompress(black_box(&framed), 32 << 20).unwrap())
    });
    g.finish();
}

fn xor(c: &mut Criterion) {
    let samples: Vec<(i64, f64)> = (0..120).map(|i| (T0 + i * 15_000 + (i % 3), (i * 17 % 23) as f64 * 0.5)).collect();
    let mut g = c.benchmark_group("xor_chunk");
    g.throughput(Throughput::Elements(samples.len() as u64));
    g.bench_function("encode_120", |b| {
        b.iter(|| {
            let mut bytes = Vec::with_capacity(256);
            bytes.extend_from_slice(&[0, 0]);
            let mut app = XorAppender::new();
            for &(t, v) in &samples {
                app.append(&mut bytes, t, v);
            }
            black_box(bytes)
        })
    });
    let mut bytes = vec![0, 0];
    let mut app = XorAppender::new();
    for &(t, v) in &samples {
        app.append(&mut bytes, t, v);
    }
    g.bench_function("decode_120", |b| {
        b.iter(|| XorIter::new(black_box(&bytes)).map(|(t, v)| t as f64 + v).sum::<f64>())
    });
    g.finish();
}

/// The stages of one 2000-series request, timed separately on 100k existing series.
fn stages(c: &mut Criterion) {
    let reqs = requests();
    let mut g = c.benchmark_group("stages_2000_samples");
    g.throughput(Throughput::Elements(PER_REQUEST as u64));
    let mut p = Pipeline::new();
    reqs[0].iter().for_each(|r| p.ingest(r));
    decompress(&reqs[1][0], &mut p.decompressed).unwrap();
    decode_write_request(&p.decompressed, &mut p.decoded).unwrap();
    let buf = p.decompressed.clone();
    let d = &p.decoded;
    let series: Vec<Vec<LabelRef<'_>>> = d
        .series
        .iter()
        .map(|s| {
            d.labels[s.labels_start as usize..s.labels_end as usize]
                .iter()
                .map(|l| LabelRef { name: l.name(&buf), value: l.value(&buf) })
                .collect()
        })
        .collect();
    g.bench_function("series_hash", |b| {
        let mut h = SeriesHasher::default();
        let mut sorted = Vec::new();
        b.iter(|| {
            for l in &series {
                black_box(h.key(l, &mut sorted));
            }
        })
    });
    // Validation and lookup of every sample against existing series (the commit is not timed).
    g.bench_function("append_validate", |b| {
        let mut round = 1i64;
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                let t = T0 + round * 15_000;
                let start = Instant::now();
                let mut app = p.db.appender(&mut p.bufs);
                for l in &series {
                    app.append(l, &[(t, 1.0)], i64::MAX).unwrap();
                }
                total += start.elapsed();
                app.commit().unwrap();
            }
            total
        })
    });
    // The commit: series-free samples record, WAL write, apply to chunks.
    g.bench_function("commit", |b| {
        let mut round = 1_000_000i64;
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                let t = T0 + round * 15_000;
                let mut app = p.db.appender(&mut p.bufs);
                for l in &series {
                    app.append(l, &[(t, 1.0)], i64::MAX).unwrap();
                }
                let start = Instant::now();
                app.commit().unwrap();
                total += start.elapsed();
            }
            total
        })
    });
    // Encoding a samples record and writing it (snappy on, as by default).
    g.bench_function("wal_encode_write", |b| {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WalWriter::create(dir.path(), 0, WalOptions::default(), Default::default()).unwrap();
        let mut rec = Vec::new();
        let mut t = T0;
        b.iter(|| {
            t += 15_000;
            record::encode_samples(
                &mut rec,
                (0..PER_REQUEST as u64).map(|r| (r + 1, t + (r % 1000) as i64, (r % 7) as f64)),
            );
            w.log(&[&rec]).unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, pipeline, stages, xor);
criterion_main!(benches);
