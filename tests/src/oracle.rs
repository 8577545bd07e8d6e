//! Independent readers of what ringest stored: promtool (Prometheus 2.42's own TSDB code) and
//! `ringest tsdb dump` (ringest's reader, with exact value bits), plus Prometheus itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::http_get;
use crate::process::{free_port, ringest_bin};

/// Samples per series: label string (`{a="1", b="2"}`) → timestamp → value text or bits.
pub type Dump<V> = BTreeMap<String, BTreeMap<i64, V>>;

/// Copies a directory tree (skipping the `lock` file).
pub fn copy_dir(from: &Path, to: &Path) {
    ringest_loadgen::check::copy_dir(from, to).expect("copy directory");
}

/// Splits a dump line `{labels} value timestamp` (labels may contain spaces).
fn split_line(line: &str) -> Option<(&str, &str, i64)> {
    let (rest, ts) = line.rsplit_once(' ')?;
    let (labels, value) = rest.rsplit_once(' ')?;
    Some((labels, value, ts.parse().ok()?))
}

/// `promtool tsdb dump` of a copy of `dir` (promtool 2.42 writes into the directory it reads).
/// Values are kept as promtool prints them (Go `%g`). A running receiver may remove a file
/// while it is copied (a WAL segment after a checkpoint, a block's temporary directory): the
/// copy is then taken again, a few times at most.
pub fn promtool_dump(dir: &Path) -> Dump<String> {
    let vanished = |e: &anyhow::Error| {
        e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
    };
    for _ in 0..4 {
        match ringest_loadgen::check::promtool_dump(dir) {
            Ok(d) => return d,
            Err(e) if vanished(&e) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => panic!("promtool tsdb dump: {e:#}"),
        }
    }
    ringest_loadgen::check::promtool_dump(dir).expect("promtool tsdb dump")
}

/// `ringest tsdb dump --format=bits` of `dir`: values as exact IEEE-754 bits.
pub fn ringest_dump(dir: &Path) -> Dump<u64> {
    let out =
        Command::new(ringest_bin()).args(["tsdb", "dump", "--format=bits"]).arg(dir).output().expect("run ringest");
    assert!(out.status.success(), "ringest tsdb dump failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut dump = Dump::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (labels, value, ts) = split_line(line).unwrap_or_else(|| panic!("unparsable dump line {line:?}"));
        let bits = u64::from_str_radix(value, 16).unwrap_or_else(|_| panic!("bad bits in {line:?}"));
        dump.entry(labels.to_string()).or_default().insert(ts, bits);
    }
    dump
}

/// Parses a value as promtool prints it.
pub fn parse_go_float(s: &str) -> f64 {
    match s {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        s => s.parse().unwrap_or_else(|_| panic!("unparsable value {s:?}")),
    }
}

/// True if promtool's text for a value denotes exactly `bits` (NaN payloads, such as stale
/// markers, all print as `NaN`).
pub fn promtool_value_matches(text: &str, bits: u64) -> bool {
    let v = f64::from_bits(bits);
    let p = parse_go_float(text);
    if v.is_nan() { p.is_nan() } else { p.to_bits() == bits }
}

/// Renders a label set as Prometheus' `labels.String()`.
pub fn labels_string(labels: &[(String, String)]) -> String {
    let mut sorted = labels.to_vec();
    sorted.sort();
    ringest_loadgen::check::labels_string(&sorted)
}

/// promtool and ringest read exactly the acknowledged samples (plus, possibly, those of `maybe`: a
/// request cut by a crash may or may not have been stored); ringest's reader too, bit for bit.
pub fn assert_exact_with(dir: &Path, acked: &Dump<u64>, maybe: &Dump<u64>) {
    let prom = promtool_dump(dir);
    let ours = ringest_dump(dir);
    for (s, samples) in &ours {
        for (t, bits) in samples {
            let want = acked.get(s).and_then(|x| x.get(t)).or_else(|| maybe.get(s).and_then(|x| x.get(t)));
            assert_eq!(want, Some(bits), "invented or changed sample {s} @ {t}");
        }
    }
    let n_ours: usize = ours.values().map(BTreeMap::len).sum();
    assert_eq!(prom.values().map(BTreeMap::len).sum::<usize>(), n_ours, "promtool and ringest see as many samples");
    for (s, samples) in acked {
        let p = prom.get(s).unwrap_or_else(|| panic!("promtool lacks series {s}"));
        let o = ours.get(s).unwrap_or_else(|| panic!("ringest lacks series {s}"));
        for (t, bits) in samples {
            assert_eq!(o.get(t), Some(bits), "ringest lost or changed {s} @ {t}");
            let text = p.get(t).unwrap_or_else(|| panic!("promtool lacks {s} @ {t}"));
            assert!(promtool_value_matches(text, *bits), "{s} @ {t}: promtool {text}, sent {bits:#x}");
        }
    }
}

pub fn assert_exact(dir: &Path, acked: &Dump<u64>) {
    assert_exact_with(dir, acked, &Dump::new());
}

/// Path of a Prometheus 3 binary, a remote write 2.0 sender: `$PROMETHEUS3_BIN`, else what
/// `scripts/prometheus3.sh` prints (it builds the pinned release on first use and caches it).
pub fn prometheus3_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| crate::built_by_script("PROMETHEUS3_BIN", "scripts/prometheus3.sh")).clone()
}

/// A Prometheus server on a loopback port: 2.42 (Debian package) unless started with
/// [`Prometheus::start_program`].
pub struct Prometheus {
    child: Option<Child>,
    /// Its data directory.
    pub data: PathBuf,
    /// Its address.
    pub addr: String,
    /// Its log file.
    pub log: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus with `config` (YAML) and waits until it is ready. `{{self}}` in the
    /// config is replaced by its own address.
    pub fn start(dir: &Path, config: &str, extra: &[&str]) -> Prometheus {
        Self::start_program(Path::new("prometheus"), dir, config, extra)
    }

    /// [`Prometheus::start`] running `program` (e.g. [`prometheus3_bin`]).
    pub fn start_program(program: &Path, dir: &Path, config: &str, extra: &[&str]) -> Prometheus {
        let p = Self::spawn(program, dir, config, extra);
        p.wait_ready(|p| http_get(&p.addr, "/-/ready").map(|r| r.status == 200).unwrap_or(false))
    }

    /// [`Prometheus::start`] for a Prometheus whose `--web.config.file` (TLS, basic auth) is
    /// given in `extra`: it is ready once its log says it serves web requests.
    pub fn start_with_web_config(dir: &Path, config: &str, extra: &[&str]) -> Prometheus {
        let p = Self::spawn(Path::new("prometheus"), dir, config, extra);
        p.wait_ready(|p| {
            std::fs::read_to_string(&p.log).unwrap_or_default().contains("Server is ready to receive web requests")
        })
    }

    fn spawn(program: &Path, dir: &Path, config: &str, extra: &[&str]) -> Prometheus {
        let addr = format!("127.0.0.1:{}", free_port());
        let data = dir.join("prometheus-data");
        std::fs::create_dir_all(dir).expect("prometheus dir");
        let cfg_path = dir.join("prometheus.yml");
        std::fs::write(&cfg_path, config.replace("{{self}}", &addr)).expect("write config");
        let log = dir.join("prometheus.log");
        let logf = std::fs::File::create(&log).expect("log");
        let child = Command::new(program)
            .arg(format!("--config.file={}", cfg_path.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address={addr}"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::from(logf))
            .spawn()
            .unwrap_or_else(|e| panic!("start prometheus (install it with `apt-get install -y prometheus`): {e}"));
        Prometheus { child: Some(child), data, addr, log }
    }

    fn wait_ready(self, ready: impl Fn(&Prometheus) -> bool) -> Prometheus {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if ready(&self) {
                return self;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("prometheus not ready: {}", std::fs::read_to_string(&self.log).unwrap_or_default());
    }

    /// SIGTERM and wait (Prometheus flushes its remote-write queues on shutdown).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
