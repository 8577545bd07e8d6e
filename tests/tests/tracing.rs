//! `--tracing.config` against a loopback collector that decodes with independent
//! implementations (`tests/tracing/collector.py`), and against the real Thanos Receive: a
//! trace started by a client crosses a mixed ring in both directions (W3C trace context in
//! HTTP headers and gRPC metadata), ringest opens every span Thanos opens for a write, and the
//! OTLP (gRPC, HTTP) and Jaeger (agent, collector) exporters, the samplers, forced tracing and
//! the upload spans work as configured.

use std::time::Duration;

use ringest_e2e::Impl::{Ringest as R, Thanos as T};
use ringest_e2e::collector::{Collector, children, describe, named};
use ringest_e2e::ring::{Ring, now_ms};
use ringest_e2e::{Receiver, RemoteWriter, client::series};
use ringest_proto::prometheus::WriteRequest;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(40);

fn write(addr: &str, name: &str, headers: &[(&str, &str)]) -> ringest_e2e::HttpResponse {
    let w = WriteRequest { timeseries: vec![series(&[("__name__", name)], &[(now_ms(), 1.0)])], ..Default::default() };
    let resp = RemoteWriter::connect(addr).unwrap().send_with_headers(&w, headers).unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp
}

fn header<'a>(resp: &'a ringest_e2e::HttpResponse, name: &str) -> Option<&'a str> {
    resp.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// The one span named `name` of `kind` that is a child of `parent`.
fn child<'a>(spans: &'a [Value], parent: &Value, name: &str, kind: &str) -> &'a Value {
    let found: Vec<_> =
        children(spans, parent).into_iter().filter(|s| s["name"] == name && s["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} {name} under {}:\n{}", parent["name"], describe(spans));
    found[0]
}

fn otlp_grpc(c: &Collector) -> String {
    format!(
        "type: OTLP\nconfig:\n  client_type: grpc\n  service_name: receive\n  endpoint: 127.0.0.1:{}\n  insecure: true\n  \
         compression: gzip\n  sampler_type: alwayssample\n",
        c.otlp_grpc
    )
}

/// The span names below an HTTP write's root, down to (not into) the peers' server spans.
fn http_write_names(spans: &[Value], root: &Value) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut todo = vec![root];
    while let Some(s) = todo.pop() {
        names.insert(format!("{} {}", s["kind"].as_str().unwrap_or(""), s["name"].as_str().unwrap_or("")));
        for c in children(spans, s) {
            if c["kind"] != "server" {
                todo.push(c);
            }
        }
    }
    names
}

/// A client's trace continues through ringest into Thanos Receive and through Thanos Receive
/// into ringest: each node reads the other's `traceparent` from the gRPC metadata, and the
/// spans of an HTTP write through ringest include every span Thanos Receive opens for one.
#[test]
fn traces_cross_a_mixed_ring_both_ways() {
    let c = Collector::start();
    let extra = [format!("--tracing.config={}", otlp_grpc(&c)), "--receive.replication-factor=2".into()];
    let ring = Ring::start(&[R, T], &extra);
    let (ours, thanos) = (&ring.nodes[0], &ring.nodes[1]);

    // Through ringest.
    let (trace, parent) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let resp = write(&ours.rw_addr, "traced_via_ringest", &[("traceparent", &format!("00-{trace}-{parent}-01"))]);
    assert_eq!(header(&resp, "X-Thanos-Trace-Id"), Some(trace));
    let spans = c.trace(trace, WAIT, |s| {
        !named(s, "receive_grpc", "internal").is_empty() && !named(s, "/receive HTTP[server]", "server").is_empty()
    });
    let root = named(&spans, "/receive HTTP[server]", "server")[0];
    assert_eq!(root["parent_span_id"], parent, "{}", describe(&spans));
    assert_eq!(root["attributes"]["http.method"], "POST");
    assert_eq!(root["service"], "receive");
    let http = child(&spans, root, "receive_http", "internal");
    assert_eq!(http["attributes"]["tenant"], "default-tenant");
    assert_eq!(http["attributes"]["receiver.mode"], "RouterIngestor");
    child(&spans, http, "receive_write_gate_ismyturn", "internal");
    let fanout = child(&spans, http, "receive_fanout_forward", "internal");
    // One forward to each node, this one's written here.
    let to = |node: &ringest_e2e::Receiver| -> &Value {
        let prefix = format!("addr: {}, capnp_addr: ", node.grpc_addr);
        let found: Vec<_> = children(&spans, fanout)
            .into_iter()
            .filter(|s| {
                s["name"] == "receive_forward"
                    && s["attributes"]["endpoint"].as_str().unwrap_or("").starts_with(&prefix)
            })
            .collect();
        assert_eq!(found.len(), 1, "one receive_forward to {}:\n{}", node.grpc_addr, describe(&spans));
        found[0]
    };
    child(&spans, to(ours), "receive_tsdb_write", "internal");
    let forward = to(thanos);
    assert!(["0", "1"].contains(&forward["attributes"]["replica"].as_str().unwrap_or_default()), "{forward}");
    let call = child(&spans, forward, "/thanos.WriteableStore/RemoteWrite", "client");
    // Thanos Receive's own server span continues ringest's client span.
    let served = child(&spans, call, "/thanos.WriteableStore/RemoteWrite", "server");
    child(&spans, served, "receive_grpc", "internal");
    assert!(spans.iter().all(|s| s["via"] == "otlp_grpc"), "{}", describe(&spans));
    let ringest_names = http_write_names(&spans, root);

    // Through Thanos Receive.
    let (trace, parent) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    write(&thanos.rw_addr, "traced_via_thanos", &[("traceparent", &format!("00-{trace}-{parent}-01"))]);
    let spans = c.trace(trace, WAIT, |s| {
        !named(s, "receive_tsdb_write", "internal").is_empty()
            && !named(s, "/receive HTTP[server]", "server").is_empty()
    });
    let calls = named(&spans, "/thanos.WriteableStore/RemoteWrite", "client");
    assert_eq!(calls.len(), 1, "{}", describe(&spans));
    // ringest's server span continues Thanos' client span.
    let served = child(&spans, calls[0], "/thanos.WriteableStore/RemoteWrite", "server");
    let grpc = child(&spans, served, "receive_grpc", "internal");
    let fanout = child(&spans, grpc, "receive_fanout_forward", "internal");
    let forward = child(&spans, fanout, "receive_forward", "internal");
    child(&spans, forward, "receive_tsdb_write", "internal");
    let root = named(&spans, "/receive HTTP[server]", "server")[0];
    assert_eq!(root["parent_span_id"], parent);
    let thanos_names = http_write_names(&spans, root);
    let missing: Vec<_> = thanos_names.difference(&ringest_names).collect();
    assert!(
        missing.is_empty(),
        "spans Thanos opens for a write that ringest does not: {missing:?}\nringest: {ringest_names:?}"
    );
}

/// OTLP over HTTP (gzip, custom headers, the default path), a sampler that samples no new trace,
/// and `X-Thanos-Force-Tracing` sampling one request anyway.
#[test]
fn otlp_http_never_sampler_and_forced_tracing() {
    let c = Collector::start();
    let cfg = format!(
        "type: otlp\nconfig:\n  client_type: http\n  service_name: rcv\n  endpoint: 127.0.0.1:{}\n  insecure: true\n  \
         compression: gzip\n  headers:\n    x-scope: tests\n  resource_attributes:\n    cluster: e2e\n  sampler_type: parentbasedneversample\n",
        c.http
    );
    let dir = tempfile::tempdir().unwrap();
    let r = Receiver::start(&dir.path().join("r"), &[&format!("--tracing.config={cfg}")]);
    let unforced = write(&r.rw_addr, "not_traced", &[]);
    assert_eq!(header(&unforced, "X-Thanos-Trace-Id"), None);
    let forced = write(&r.rw_addr, "forced", &[("X-Thanos-Force-Tracing", "true")]);
    let trace = header(&forced, "X-Thanos-Trace-Id").expect("a forced trace answers its ID").to_string();
    let spans = c.trace(&trace, WAIT, |s| !named(s, "receive_tsdb_write", "internal").is_empty());
    let root = named(&spans, "/receive HTTP[server]", "server")[0];
    assert_eq!(root["attributes"]["thanos.force_tracing"], "true");
    assert_eq!(root["resource"]["cluster"], "e2e");
    assert_eq!(root["service"], "rcv");
    let meta = &root["meta"];
    assert_eq!(
        (meta["path"].as_str(), meta["content-encoding"].as_str()),
        (Some("/v1/traces"), Some("gzip")),
        "{meta}"
    );
    assert_eq!(meta["x-scope"], "tests");
    assert_eq!(meta["content-type"], "application/x-protobuf");
    // Only the forced request was sampled.
    let traces: std::collections::BTreeSet<_> = c.spans().iter().map(|s| s["trace_id"].to_string()).collect();
    assert_eq!(traces.len(), 1, "{}", describe(&c.spans()));
}

fn jaeger_agent(c: &Collector, service: &str) -> String {
    format!(
        "type: JAEGER\nconfig:\n  service_name: {service}\n  sampler_type: const\n  sampler_param: 1\n  \
         agent_host: 127.0.0.1\n  agent_port: {}\n  tags: pod=${{POD_NAME:unknown}},zone=z1\n  reporter_flush_interval: 1s\n",
        c.jaeger_udp
    )
}

/// Jaeger Thrift compact to an agent, from ringest and from Thanos Receive with the same
/// configuration: the collector's Thrift decoder reads both; then Thrift binary to a
/// collector's `/api/traces` with basic auth.
#[test]
fn jaeger_agent_and_collector() {
    let c = Collector::start();
    let dir = tempfile::tempdir().unwrap();
    let mut thanos = Receiver::unstarted_as(T, &dir.path().join("t"));
    thanos.extra = vec![format!("--tracing.config={}", jaeger_agent(&c, "thanos-receive"))];
    thanos.env = vec![("POD_NAME".into(), "thanos-0".into())];
    thanos.relaunch();
    thanos.wait_ready(WAIT);
    let mut ours = Receiver::unstarted(&dir.path().join("r"));
    ours.extra = vec![format!("--tracing.config={}", jaeger_agent(&c, "ringest-receive"))];
    ours.env = vec![("POD_NAME".into(), "ringest-0".into())];
    ours.relaunch();
    ours.wait_ready(WAIT);

    let mut names = Vec::new();
    for (node, service) in [(&thanos, "thanos-receive"), (&ours, "ringest-receive")] {
        let trace = format!("{:032x}", 0x5eed_0000_u128 + names.len() as u128);
        write(&node.rw_addr, "jaeger", &[("traceparent", &format!("00-{trace}-00000000000000aa-01"))]);
        let spans = c.trace(&trace, WAIT, |s| !named(s, "receive_http", "internal").is_empty());
        assert!(spans.iter().all(|s| s["via"] == "jaeger_udp" && s["service"] == service), "{spans:?}");
        let root = named(&spans, "/receive HTTP[server]", "server")[0];
        assert_eq!(root["parent_span_id"], "00000000000000aa");
        assert_eq!(root["flags"], 1);
        assert_eq!(root["resource"]["zone"], "z1");
        assert_eq!(root["resource"]["pod"], service.replace("-receive", "-0"));
        child(&spans, root, "receive_http", "internal");
        names.push(http_write_names(&spans, root));
    }
    let missing: Vec<_> = names[0].difference(&names[1]).collect();
    assert!(missing.is_empty(), "spans Thanos sends to Jaeger that ringest does not: {missing:?}");
    assert!(c.spans().iter().all(|s| s.get("error").is_none()), "undecodable datagrams: {:?}", c.spans());

    let cfg = format!(
        "type: JAEGER\nconfig:\n  service_name: collected\n  sampler_type: probabilistic\n  sampler_param: 1\n  \
         endpoint: http://127.0.0.1:{}/api/traces\n  user: jaeger\n  password: secret\n  reporter_flush_interval: 1s\n",
        c.http
    );
    let r = Receiver::start(&dir.path().join("c"), &[&format!("--tracing.config={cfg}")]);
    let resp = write(&r.rw_addr, "jaeger_http", &[]);
    let trace = header(&resp, "X-Thanos-Trace-Id").expect("sampled").to_string();
    let spans = c.trace(&trace, WAIT, |s| !named(s, "receive_tsdb_write", "internal").is_empty());
    let root = named(&spans, "/receive HTTP[server]", "server")[0];
    assert_eq!((root["via"].as_str(), root["service"].as_str()), (Some("jaeger_http"), Some("collected")));
    // "jaeger:secret" in base64.
    assert_eq!(root["meta"]["authorization"], "Basic amFlZ2VyOnNlY3JldA==");
    assert_eq!(root["meta"]["content-type"], "application/x-thrift");
}

/// Uploading a block is traced: `shipper_upload_block` (tenant, block) with a
/// `bucket_upload` per object, exported before the process exits.
#[test]
fn block_uploads_are_traced() {
    let c = Collector::start();
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    let objstore = format!("--objstore.config=type: FILESYSTEM\nconfig:\n  directory: {}\n", bucket.display());
    let mut r = Receiver::start(&dir.path().join("r"), &[&format!("--tracing.config={}", otlp_grpc(&c)), &objstore]);
    write(&r.rw_addr, "uploaded", &[]);
    assert!(r.terminate().success(), "{}", r.logs());
    // Exported before the process exited; the collector's lines may still be on their way.
    let uploads = || {
        let spans = c.spans();
        named(&spans, "shipper_upload_block", "internal").len() == 1
            && named(&spans, "bucket_upload", "internal").len() >= 3
    };
    ringest_e2e::wait_for("the upload spans", WAIT, uploads);
    let spans = c.spans();
    let blocks = named(&spans, "shipper_upload_block", "internal");
    assert_eq!(blocks.len(), 1, "{}", describe(&spans));
    let block = blocks[0];
    assert_eq!(block["attributes"]["tenant"], "default-tenant");
    assert_eq!(block["parent_span_id"], "");
    let ulid = block["attributes"]["block"].as_str().unwrap().to_string();
    assert!(bucket.join(&ulid).join("meta.json").exists());
    let mut objects: Vec<String> = children(&spans, block)
        .iter()
        .filter(|s| s["name"] == "bucket_upload")
        .map(|s| s["attributes"]["name"].as_str().unwrap().to_string())
        .collect();
    objects.sort();
    let want = [format!("{ulid}/chunks/000001"), format!("{ulid}/index"), format!("{ulid}/meta.json")];
    assert_eq!(objects, want);
}

/// Configurations ringest cannot honour stop it at start-up with the reason.
#[test]
fn unusable_tracing_configs_are_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    for (cfg, needle) in [
        ("type: LIGHTSTEP\nconfig: {}\n", "tracing with type LIGHTSTEP is not supported by ringest yet"),
        ("type: OTLP\nconfig:\n  client_type: udp\n", "Only 'http' and 'grpc' are accepted"),
        ("type: OTLP\nconfig:\n  client_type: grpc\n  sampler_type: sometimes\n", "unknown sampler_type"),
    ] {
        let mut r = Receiver::launch(&dir.path().join("r"), &[&format!("--tracing.config={cfg}")]);
        let st = r.wait_exit(WAIT).expect("exits");
        assert!(!st.success());
        assert!(r.logs().contains(needle), "{cfg}: {}", r.logs());
    }
}

/// Thanos Query's trace of a PromQL query continues into ringest's StoreAPI: the
/// `/thanos.Store/Series` server span of ringest is the child of Thanos Query's client span.
#[test]
fn thanos_query_traces_continue_into_the_store_api() {
    let c = Collector::start();
    let dir = tempfile::tempdir().unwrap();
    let r = Receiver::start(&dir.path().join("r"), &[&format!("--tracing.config={}", otlp_grpc(&c))]);
    write(&r.rw_addr, "queried", &[]);
    let query_cfg = otlp_grpc(&c).replace("service_name: receive", "service_name: query");
    let q = ringest_e2e::thanos::Component::start(
        "query",
        &dir.path().join("q"),
        &[format!("--endpoint={}", r.grpc_addr), format!("--tracing.config={query_cfg}")],
    );
    let found = || {
        let v = q.api("/api/v1/query?query=queried");
        v["data"]["result"].as_array().is_some_and(|a| !a.is_empty())
    };
    ringest_e2e::wait_for("Thanos Query to see ringest's series", WAIT, found);
    let trace = "5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e";
    let traceparent = format!("00-{trace}-00000000000000bb-01");
    let resp = ringest_e2e::http_request(
        &q.http_addr,
        "GET",
        "/api/v1/query?query=queried",
        &[("traceparent", traceparent.as_str())],
        &[],
    )
    .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let spans = c.trace(trace, WAIT, |s| !named(s, "/thanos.Store/Series", "server").is_empty());
    let served = named(&spans, "/thanos.Store/Series", "server")[0];
    assert_eq!(served["service"], "receive");
    assert_eq!(served["attributes"]["component"], "gRPC");
    let parent = spans.iter().find(|s| s["span_id"] == served["parent_span_id"]);
    let parent = parent.unwrap_or_else(|| panic!("the Series span's parent:\n{}", describe(&spans)));
    assert_eq!((parent["service"].as_str(), parent["kind"].as_str()), (Some("query"), Some("client")));
}
