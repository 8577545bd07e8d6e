//! A whole-process measurement: starts `ringest receive` (release build via `$RINGEST_BIN`),
//! writes `--series` series for `--rounds` rounds from `--senders` keep-alive connections
//! (2000 series per request, requests pre-encoded before the clock starts), and reports
//! samples per second, samples per receiver CPU-second, and RSS per active series.
//!
//!   cargo build --release -p ringest && RINGEST_BIN=target/release/ringest \
//!     cargo run --release -p ringest-e2e --example measure -- --series 100000 --rounds 20

use std::time::Instant;

use ringest_e2e::client::encode;
use ringest_e2e::{RemoteWriter, Ringest};
use ringest_proto::prometheus as pb;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(default)
}

fn proc_stat(pid: u32) -> (f64, u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
    let ticks = 100.0; // USER_HZ on Linux
    let cpu = (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = |key: &str| -> u64 {
        status.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0)
    };
    (cpu, kib("VmRSS:") * 1024, kib("VmHWM:") * 1024)
}

fn main() {
    let series = arg("--series", 100_000);
    let rounds = arg("--rounds", 20);
    let senders = arg("--senders", 4);
    let per_req = 2000;
    let t0 = 1_800_000_000_000i64;
    let labels: Vec<Vec<pb::Label>> = (0..series)
        .map(|i| {
            let l = |n: &str, v: String| pb::Label { name: n.into(), value: v };
            vec![
                l("__name__", format!("node_metric_{}_total", i % 97)),
                l("cpu", format!("{}", i % 8)),
                l("instance", format!("10.1.{}.{}:9100", (i / 250) % 256, i % 250)),
                l("job", "node".into()),
                l("mode", ["idle", "user", "system", "iowait"][i % 4].into()),
                l("series", format!("{i}")),
            ]
        })
        .collect();
    eprintln!("encoding {rounds} rounds of {series} series ...");
    let reqs: Vec<Vec<Vec<u8>>> = (0..rounds)
        .map(|r| {
            labels
                .chunks(per_req)
                .map(|chunk| {
                    encode(&pb::WriteRequest {
                        timeseries: chunk
                            .iter()
                            .enumerate()
                            .map(|(j, ls)| pb::TimeSeries {
                                labels: ls.clone(),
                                samples: vec![pb::Sample {
                                    value: (r * 3 + j % 5) as f64,
                                    timestamp: t0 + r as i64 * 15_000,
                                }],
                                ..Default::default()
                            })
                            .collect(),
                        metadata: vec![],
                    })
                })
                .collect()
        })
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    // `--data DIR` keeps the data directory for later inspection.
    let args: Vec<String> = std::env::args().collect();
    let data = match args.iter().position(|a| a == "--data") {
        Some(i) => std::path::PathBuf::from(&args[i + 1]),
        None => tmp.path().join("data"),
    };
    let mut r = Ringest::start(&data, &[]);
    let pid = r.pid();
    let send_round = |round: &Vec<Vec<u8>>| {
        std::thread::scope(|s| {
            for part in round.chunks(round.len().div_ceil(senders)) {
                let addr = r.rw_addr.clone();
                s.spawn(move || {
                    let mut w = RemoteWriter::connect(&addr).unwrap();
                    for body in part {
                        let resp = w.send_raw(body).unwrap();
                        assert_eq!(resp.status, 200, "{}", resp.text());
                    }
                });
            }
        });
    };
    let (cpu0, _, _) = proc_stat(pid);
    let start = Instant::now();
    send_round(&reqs[0]);
    let create = start.elapsed();
    let (cpu1, rss1, _) = proc_stat(pid);
    let start = Instant::now();
    for round in &reqs[1..] {
        send_round(round);
    }
    let steady = start.elapsed();
    let (cpu2, rss2, hwm) = proc_stat(pid);
    let samples = (series * (rounds - 1)) as f64;
    println!("series                     {series}");
    println!(
        "creation round             {:.2} s, {:.0} series/s, {:.2} receiver CPU-s",
        create.as_secs_f64(),
        series as f64 / create.as_secs_f64(),
        cpu1 - cpu0
    );
    println!("steady rounds              {} x {series} samples in {:.2} s", rounds - 1, steady.as_secs_f64());
    println!("samples per second         {:.0}", samples / steady.as_secs_f64());
    println!("samples per CPU-second     {:.0}", samples / (cpu2 - cpu1));
    println!(
        "RSS after creation         {:.1} MiB ({:.0} B/series)",
        rss1 as f64 / 1048576.0,
        rss1 as f64 / series as f64
    );
    println!(
        "RSS at end                 {:.1} MiB ({:.0} B/series)",
        rss2 as f64 / 1048576.0,
        rss2 as f64 / series as f64
    );
    println!(
        "peak RSS                   {:.1} MiB ({:.0} B/series)",
        hwm as f64 / 1048576.0,
        hwm as f64 / series as f64
    );
    // Restart after kill -9: time from process start to ready (WAL replay).
    r.kill9();
    let start = Instant::now();
    r.relaunch();
    r.wait_ready(std::time::Duration::from_secs(600));
    let ready = start.elapsed();
    let (_, rss, _) = proc_stat(r.pid());
    println!(
        "kill -9, start to ready    {:.2} s with {} samples in the WAL (RSS after replay {:.1} MiB)",
        ready.as_secs_f64(),
        series * rounds,
        rss as f64 / 1048576.0
    );
}
