//! Checking a run: every acknowledged sample must be readable with its exact value.
//!
//! A run can keep an acknowledgement log: a JSON header with the layout and rounds, then one
//! `round shard batch` line per acknowledged request. Since requests are a pure function of the
//! layout, the checker regenerates exactly what was sent and acknowledged, reads what the
//! receiver stored (`promtool tsdb dump` of a copy of the TSDB directory), and reports samples
//! that were lost (acknowledged, missing), changed (another value) or invented (never sent).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::plan::{Layout, Plan, ReqId, samples_of};

/// Header line of an acknowledgement log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogHeader {
    /// The workload's layout.
    pub layout: Layout,
    /// First round of the run.
    pub first_round: usize,
    /// One past the last round.
    pub end_round: usize,
}

/// An acknowledgement log in memory.
#[derive(Debug, Clone)]
pub struct AckLog {
    /// The header.
    pub header: LogHeader,
    /// Acknowledged requests.
    pub acked: Vec<ReqId>,
}

impl AckLog {
    /// Writes the log.
    pub fn write(&self, w: &mut impl Write) -> std::io::Result<()> {
        writeln!(w, "{}", serde_json::to_string(&self.header)?)?;
        for id in &self.acked {
            writeln!(w, "{} {} {}", id.round, id.shard, id.batch)?;
        }
        Ok(())
    }

    /// Reads a log.
    pub fn read(path: &Path) -> anyhow::Result<AckLog> {
        let f = std::io::BufReader::new(std::fs::File::open(path)?);
        let mut lines = f.lines();
        let header: LogHeader = serde_json::from_str(&lines.next().ok_or_else(|| anyhow::anyhow!("empty log"))??)?;
        let mut acked = Vec::new();
        for l in lines {
            let l = l?;
            let mut it = l.split_whitespace().map(str::parse::<u64>);
            match (it.next(), it.next(), it.next()) {
                (Some(Ok(r)), Some(Ok(s)), Some(Ok(b))) => {
                    acked.push(ReqId { round: r as u32, shard: s as u16, batch: b as u32 })
                }
                _ => anyhow::bail!("bad log line {l:?}"),
            }
        }
        Ok(AckLog { header, acked })
    }
}

/// Samples per series: label string (`{a="1", b="2"}`) → timestamp → value text (Go `%g`).
pub type Dump = BTreeMap<String, BTreeMap<i64, String>>;

/// Prometheus' `labels.String()` form of sorted labels.
pub fn labels_string(labels: &[(String, String)]) -> String {
    let mut s = String::from("{");
    for (i, (n, v)) in labels.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(n);
        s.push_str("=\"");
        for c in v.chars() {
            match c {
                '"' => s.push_str("\\\""),
                '\\' => s.push_str("\\\\"),
                '\n' => s.push_str("\\n"),
                c => s.push(c),
            }
        }
        s.push('"');
    }
    s.push('}');
    s
}

/// `promtool tsdb dump` of a copy of `dir` (promtool 2.42 writes into what it reads).
pub fn promtool_dump(dir: &Path) -> anyhow::Result<Dump> {
    let tmp = tempfile::tempdir()?;
    let copy = tmp.path().join("db");
    copy_dir(dir, &copy)?;
    let out = std::process::Command::new("promtool")
        .args(["tsdb", "dump"])
        .arg(&copy)
        .output()
        .map_err(|e| anyhow::anyhow!("run promtool (apt-get install -y prometheus): {e}"))?;
    anyhow::ensure!(out.status.success(), "promtool tsdb dump failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut dump = Dump::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let parsed =
            line.rsplit_once(' ').and_then(|(rest, ts)| Some((rest.rsplit_once(' ')?, ts.parse::<i64>().ok()?)));
        let Some(((labels, value), ts)) = parsed else { anyhow::bail!("unparsable promtool line {line:?}") };
        dump.entry(labels.to_string()).or_default().insert(ts, value.to_string());
    }
    Ok(dump)
}

/// Copies a directory tree, leaving out lock files.
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let p = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &p)?;
        } else if e.file_name() != "lock" {
            std::fs::copy(e.path(), &p)?;
        }
    }
    Ok(())
}

/// The value promtool printed, as float bits.
fn parse_go_float(s: &str) -> Option<u64> {
    let v: f64 = match s {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        s => s.parse().ok()?,
    };
    Some(v.to_bits())
}

/// The outcome of a check.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Acknowledged samples.
    pub acked: u64,
    /// Acknowledged samples found with the same value.
    pub intact: u64,
    /// Acknowledged samples missing.
    pub lost: u64,
    /// Samples found with a value other than the one sent.
    pub changed: u64,
    /// Samples found that were never sent.
    pub invented: u64,
    /// Samples sent, not acknowledged, but stored (allowed: partial writes and lost responses).
    pub unacked_present: u64,
    /// The first counter-examples.
    pub examples: Vec<String>,
}

impl CheckReport {
    /// True when nothing was lost, changed or invented.
    pub fn ok(&self) -> bool {
        self.lost == 0 && self.changed == 0 && self.invented == 0 && self.acked > 0
    }

    fn example(&mut self, e: String) {
        if self.examples.len() < 20 {
            self.examples.push(e);
        }
    }
}

/// Compares what a log says was acknowledged with what `dump` holds.
pub fn check(log: &AckLog, dump: &Dump) -> CheckReport {
    let layout = &log.header.layout;
    let members = Plan::members_of(layout);
    let acked: std::collections::HashSet<ReqId> = log.acked.iter().copied().collect();
    let mut rep = CheckReport::default();
    // Everything sent, by series: timestamp -> (value bits, acknowledged).
    let mut sent: HashMap<String, HashMap<i64, (u64, bool)>> = HashMap::new();
    for round in log.header.first_round..log.header.end_round {
        for (shard, m) in members.iter().enumerate() {
            for batch in 0..m.len().div_ceil(layout.max_samples_per_send.max(1)) {
                let id = ReqId { round: round as u32, shard: shard as u16, batch: batch as u32 };
                let is_acked = acked.contains(&id);
                for (labels, t, v) in samples_of(layout, &members, id) {
                    sent.entry(labels_string(&labels)).or_default().insert(t, (v.to_bits(), is_acked));
                }
            }
        }
    }
    for (series, samples) in &sent {
        let stored = dump.get(series);
        for (t, &(bits, is_acked)) in samples {
            let got = stored.and_then(|s| s.get(t));
            if is_acked {
                rep.acked += 1;
            }
            match got {
                None if is_acked => {
                    rep.lost += 1;
                    rep.example(format!("lost {series} @ {t}"));
                }
                None => {}
                Some(text) => {
                    let same = parse_go_float(text).is_some_and(|b| b == bits);
                    if !same {
                        rep.changed += 1;
                        rep.example(format!("changed {series} @ {t}: stored {text}, sent {}", f64::from_bits(bits)));
                    } else if is_acked {
                        rep.intact += 1;
                    } else {
                        rep.unacked_present += 1;
                    }
                }
            }
        }
    }
    let prefix = format!("{{__name__=\"{}", layout.shape.prefix);
    for (series, samples) in dump {
        if !series.starts_with(&prefix) {
            continue;
        }
        let known = sent.get(series);
        for t in samples.keys() {
            if known.is_none_or(|k| !k.contains_key(t)) {
                rep.invented += 1;
                rep.example(format!("invented {series} @ {t}"));
            }
        }
    }
    rep
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::Shape;

    #[test]
    fn finds_lost_changed_and_invented_samples() {
        let layout = Layout { shape: Shape::node(100), shards: 2, max_samples_per_send: 30, remote_write_v2: false };
        let plan = Plan::build(&layout, 0..2);
        let all: Vec<ReqId> = plan.rounds.iter().flatten().flatten().map(|r| r.id).collect();
        let log =
            AckLog { header: LogHeader { layout: layout.clone(), first_round: 0, end_round: 2 }, acked: all.clone() };
        let mut dump = Dump::new();
        for id in &all {
            for (labels, t, v) in plan.samples_of(*id) {
                dump.entry(labels_string(&labels)).or_default().insert(t, format!("{v}"));
            }
        }
        let rep = check(&log, &dump);
        assert!(rep.ok(), "{rep:?}");
        assert_eq!((rep.acked, rep.intact), (200, 200));
        // Damage it three ways.
        let (first, samples) = dump.iter_mut().next().map(|(k, v)| (k.clone(), v)).unwrap();
        let t0 = *samples.keys().next().unwrap();
        samples.remove(&t0);
        let t1 = *samples.keys().next().unwrap();
        samples.insert(t1, "12345.5".into());
        samples.insert(1, "1".into());
        dump.insert(format!("{{__name__=\"{}_phantom\"}}", layout.shape.prefix), [(5, "1".to_string())].into());
        let rep = check(&log, &dump);
        assert_eq!((rep.lost, rep.changed, rep.invented), (1, 1, 2), "{first}: {rep:?}");
        assert!(!rep.ok());
        // A log round trip keeps everything.
        let mut buf = Vec::new();
        log.write(&mut buf).unwrap();
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), &buf).unwrap();
        let back = AckLog::read(tmp.path()).unwrap();
        assert_eq!(back.acked, log.acked);
        assert_eq!(back.header.layout, layout);
    }
}
