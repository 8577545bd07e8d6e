//! Prometheus 2.42 (the Debian package) as the real remote-write client: it scrapes itself and
//! ringest and remote-writes everything into ringest. After both stop, `promtool tsdb dump` of
//! ringest's tenant directory must show exactly the samples Prometheus stored itself for the
//! same series and time range.

use std::time::Duration;

use ringest_e2e::Receiver;
use ringest_e2e::oracle::{Prometheus, promtool_dump};

#[test]
fn prometheus_remote_write_matches_what_prometheus_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = Receiver::start(&tmp.path().join("ringest"), &[]);
    let config = format!(
        r#"
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ['{{{{self}}}}']
  - job_name: ringest
    static_configs:
      - targets: ['{http}']
remote_write:
  - url: http://{rw}/api/v1/receive
    queue_config:
      batch_send_deadline: 1s
      max_samples_per_send: 500
      min_backoff: 50ms
    metadata_config:
      send_interval: 5s
"#,
        http = r.http_addr,
        rw = r.rw_addr
    );
    let mut p = Prometheus::start(tmp.path(), &config, &["--storage.tsdb.retention.time=1d"]);
    std::thread::sleep(Duration::from_secs(25));
    p.stop();
    let requests =
        r.metric("thanos_receive_write_requests_total{code=\"200\",tenant=\"default-tenant\"}").unwrap_or(0.0);
    let errors: f64 = r
        .metrics()
        .lines()
        .filter(|l| l.starts_with("thanos_receive_write_requests_total{") && !l.contains("code=\"200\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(r.terminate().success());
    assert!(requests >= 10.0, "Prometheus sent {requests} successful requests");
    assert_eq!(errors, 0.0, "every remote-write request succeeded:\n{}", r.logs());

    let ours = promtool_dump(&r.tenant_dir("default-tenant"));
    let theirs = promtool_dump(&p.data);
    let n_ours: usize = ours.values().map(|s| s.len()).sum();
    assert!(ours.len() > 200 && n_ours > 5000, "ringest holds {} series / {n_ours} samples", ours.len());
    let t_first = ours.values().flat_map(|s| s.keys()).min().copied().unwrap();
    let t_last = ours.values().flat_map(|s| s.keys()).max().copied().unwrap();
    let t_cut = t_last - 5000;

    // Everything ringest holds, Prometheus holds with the same value.
    for (series, samples) in &ours {
        let mine = theirs.get(series).unwrap_or_else(|| panic!("Prometheus has no series {series}"));
        for (t, v) in samples {
            assert_eq!(mine.get(t), Some(v), "{series} @ {t}: ringest has {v}, Prometheus {:?}", mine.get(t));
        }
    }
    // Everything Prometheus stored in [first, cut], ringest holds too.
    let mut compared = 0;
    for (series, samples) in &theirs {
        for (t, v) in samples.range(t_first..=t_cut) {
            let got = ours.get(series).and_then(|s| s.get(t));
            assert_eq!(got, Some(v), "ringest lacks {series} @ {t} (Prometheus has {v})");
            compared += 1;
        }
    }
    assert!(compared > 5000, "compared {compared} samples");
    // Both jobs made it, including ringest's own metrics.
    assert!(ours.keys().any(|k| k.contains("job=\"ringest\"") && k.contains("prometheus_tsdb_head_series")));
    assert!(ours.keys().any(|k| k.contains("job=\"prometheus\"")));
}
