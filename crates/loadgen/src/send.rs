//! Sending a plan like Prometheus' remote-write queue: one thread and keep-alive connection per
//! shard, requests in order, retries with exponential backoff on 5xx, 429 and connection
//! errors, other 4xx dropped. Optionally paced to an offered load.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::http::{Conn, HttpResponse};
use crate::plan::{Plan, ReqId};

/// Where to send.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port`.
    pub addr: String,
    /// Path, e.g. `/api/v1/receive`.
    pub path: String,
    /// Extra headers (tenant).
    pub headers: Vec<(String, String)>,
    /// TLS towards the receiver (`None`: plain HTTP).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl Target {
    /// Parses `http://host:port/path`.
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let rest =
            url.strip_prefix("http://").ok_or_else(|| anyhow::anyhow!("only http:// URLs are supported: {url}"))?;
        let (addr, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        Ok(Target { addr: addr.to_string(), path: path.to_string(), headers: Vec::new(), tls: None })
    }

    /// Adds a header to every request.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// Sender settings.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// Offered load in samples per second over all shards (`None`: as fast as possible).
    pub rate: Option<f64>,
    /// First retry delay.
    pub min_backoff: Duration,
    /// Retry delay cap.
    pub max_backoff: Duration,
    /// Give up on a request after retrying this long.
    pub give_up_after: Duration,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions {
            rate: None,
            min_backoff: Duration::from_millis(30),
            max_backoff: Duration::from_secs(5),
            give_up_after: Duration::from_secs(120),
        }
    }
}

/// What happened to one request.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// The request.
    pub id: ReqId,
    /// Final status (0: connection error).
    pub status: u16,
    /// Samples in it.
    pub samples: u32,
    /// Attempts made.
    pub attempts: u32,
}

/// Result of sending some rounds.
#[derive(Debug, Default)]
pub struct PhaseResult {
    /// One outcome per request.
    pub outcomes: Vec<Outcome>,
    /// Latency of every HTTP exchange (retries included), microseconds.
    pub latencies_us: Vec<u64>,
    /// Wall time.
    pub wall: Duration,
    /// First error bodies seen (up to a few), for diagnosis.
    pub errors: Vec<String>,
}

/// One HTTP exchange on the shard's connection, connecting first if needed.
fn exchange(
    conn: &mut Option<Conn>,
    target: &Target,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    if conn.is_none() {
        *conn = Some(Conn::connect_with(&target.addr, target.tls.as_ref())?);
    }
    conn.as_mut().expect("connected").request("POST", &target.path, headers, body)
}

fn retryable(status: u16) -> bool {
    status == 0 || status == 429 || status >= 500
}

/// Sends rounds `rounds` of `plan` to `target`; `on_ack` is called for every acknowledged request.
pub fn send(
    target: &Target,
    plan: &Plan,
    rounds: std::ops::Range<usize>,
    opts: &SendOptions,
    on_ack: &(dyn Fn(ReqId) + Sync),
) -> PhaseResult {
    let shards = plan.layout.shards;
    let result = Mutex::new(PhaseResult::default());
    let start = Instant::now();
    let (content_type, version) = if plan.layout.remote_write_v2 {
        ("application/x-protobuf;proto=io.prometheus.write.v2.Request", "2.0.0")
    } else {
        ("application/x-protobuf", "0.1.0")
    };
    let headers: Vec<(&str, &str)> = [
        ("Content-Encoding", "snappy"),
        ("Content-Type", content_type),
        ("User-Agent", "ringest-loadgen"),
        ("X-Prometheus-Remote-Write-Version", version),
    ]
    .into_iter()
    .chain(target.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    .collect();
    // Set when a request gave up on a receiver it could not reach: the other requests are then
    // dropped at once instead of each retrying for `give_up_after`.
    let unreachable = AtomicBool::new(false);
    std::thread::scope(|s| {
        for shard in 0..shards {
            let (result, headers, rounds, unreachable) = (&result, &headers, rounds.clone(), &unreachable);
            s.spawn(move || {
                let mut local = PhaseResult::default();
                let mut conn: Option<Conn> = None;
                let shard_rate = opts.rate.map(|r| r / shards as f64);
                let mut sent_samples = 0f64;
                for round in rounds {
                    for req in &plan.round(round)[shard] {
                        if unreachable.load(Ordering::Relaxed) {
                            local.outcomes.push(Outcome { id: req.id, status: 0, samples: req.samples, attempts: 0 });
                            continue;
                        }
                        if let Some(rate) = shard_rate {
                            let due = start + Duration::from_secs_f64(sent_samples / rate);
                            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                                std::thread::sleep(wait);
                            }
                        }
                        sent_samples += req.samples as f64;
                        let first_try = Instant::now();
                        let mut backoff = opts.min_backoff;
                        let mut attempts = 0;
                        let status = loop {
                            attempts += 1;
                            let t = Instant::now();
                            let status = match exchange(&mut conn, target, headers, &req.body) {
                                Ok(resp) => {
                                    if resp.status >= 300 && local.errors.len() < 5 {
                                        local.errors.push(format!("{} {}", resp.status, resp.text().trim()));
                                    }
                                    resp.status
                                }
                                Err(e) => {
                                    conn = None;
                                    if local.errors.len() < 5 {
                                        local.errors.push(format!("{}: {e}", target.addr));
                                    }
                                    0
                                }
                            };
                            local.latencies_us.push(t.elapsed().as_micros() as u64);
                            if !retryable(status) || first_try.elapsed() > opts.give_up_after {
                                break status;
                            }
                            if unreachable.load(Ordering::Relaxed) {
                                break status;
                            }
                            std::thread::sleep(backoff);
                            backoff = (backoff * 2).min(opts.max_backoff);
                        };
                        if (200..300).contains(&status) {
                            on_ack(req.id);
                        } else if status == 0 {
                            unreachable.store(true, Ordering::Relaxed);
                        }
                        local.outcomes.push(Outcome { id: req.id, status, samples: req.samples, attempts });
                    }
                }
                let mut r = result.lock().unwrap();
                r.outcomes.extend(local.outcomes);
                r.latencies_us.extend(local.latencies_us);
                for e in local.errors {
                    if r.errors.len() < 5 {
                        r.errors.push(e);
                    }
                }
            });
        }
    });
    let mut r = result.into_inner().unwrap();
    r.wall = start.elapsed();
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Layout;
    use crate::shape::Shape;

    #[test]
    fn an_unreachable_receiver_ends_the_phase() {
        // A port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let target = Target::parse(&format!("http://127.0.0.1:{port}/api/v1/receive")).unwrap();
        let layout =
            Layout { shape: Shape::avalanche(400), shards: 2, max_samples_per_send: 20, remote_write_v2: false };
        let plan = Plan::build(&layout, 0..3);
        let requests: usize = (0..3).map(|r| plan.round(r).iter().map(Vec::len).sum::<usize>()).sum();
        let opts = SendOptions {
            min_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            give_up_after: Duration::from_millis(300),
            ..SendOptions::default()
        };
        let t = Instant::now();
        let r = send(&target, &plan, 0..3, &opts, &|_| panic!("nothing can be acknowledged"));
        // Without the stop each of the 60 requests would retry for 300 ms, 9 s per shard.
        assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
        assert_eq!(r.outcomes.len(), requests);
        assert!(r.outcomes.iter().all(|o| o.status == 0));
        assert!(r.errors.iter().any(|e| e.contains(&port.to_string())), "{:?}", r.errors);
    }
}
