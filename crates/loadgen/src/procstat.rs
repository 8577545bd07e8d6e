//! CPU time and memory of receiver processes, read from `/proc/<pid>/stat` and `status`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// User + system CPU seconds so far.
    pub cpu_seconds: f64,
    /// Resident set size now (bytes).
    pub rss: u64,
    /// Peak resident set size since start (bytes).
    pub hwm: u64,
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// Reads a process' CPU time and memory.
pub fn sample(pid: u32) -> std::io::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let cpu_seconds = (ticks(11) + ticks(12)) / clock_ticks();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| -> u64 {
        status.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0)
    };
    Ok(ProcSample { cpu_seconds, rss: kib("VmRSS:") * 1024, hwm: kib("VmHWM:") * 1024 })
}

/// Watches processes during a phase: CPU seconds used and peak RSS seen in between.
#[derive(Debug)]
pub struct Watch {
    pids: Vec<u32>,
    start: Vec<ProcSample>,
    stop: Arc<AtomicBool>,
    peaks: std::thread::JoinHandle<Vec<u64>>,
}

/// What a process used during a phase.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// CPU seconds.
    pub cpu_seconds: f64,
    /// Highest RSS sampled (every 50 ms) during the phase, bytes.
    pub peak_rss: u64,
    /// RSS at the end, bytes.
    pub end_rss: u64,
}

impl Watch {
    /// Starts watching `pids`.
    pub fn start(pids: &[u32]) -> Watch {
        let start = pids.iter().map(|&p| sample(p).unwrap_or_default()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, pids2) = (stop.clone(), pids.to_vec());
        let peaks = std::thread::spawn(move || {
            let mut peaks = vec![0u64; pids2.len()];
            loop {
                for (i, &p) in pids2.iter().enumerate() {
                    if let Ok(s) = sample(p) {
                        peaks[i] = peaks[i].max(s.rss);
                    }
                }
                if stop2.load(Ordering::Relaxed) {
                    return peaks;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Watch { pids: pids.to_vec(), start, stop, peaks }
    }

    /// Stops watching and returns each process' usage.
    pub fn finish(self) -> Vec<Usage> {
        self.stop.store(true, Ordering::Relaxed);
        let peaks = self.peaks.join().unwrap_or_default();
        self.pids
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                let end = sample(p).unwrap_or_default();
                Usage {
                    cpu_seconds: end.cpu_seconds - self.start[i].cpu_seconds,
                    peak_rss: peaks.get(i).copied().unwrap_or(0).max(end.rss),
                    end_rss: end.rss,
                }
            })
            .collect()
    }
}
