//! The `receive` command: start-up, serving, and shutdown.
//!
//! Start-up binds both listeners first (so `/-/healthy` answers and `/-/ready` says 503 while
//! WALs replay), opens every tenant TSDB, then turns ready. Shutdown on SIGTERM/SIGINT: not
//! ready, stop accepting, drain in-flight requests (bounded by `--http-grace-period`), gRPC
//! calls and the forwards to peers still running after their request was answered (bounded
//! by `--grpc-grace-period`), flush every head into blocks, upload them (when a bucket is
//! configured; bounded by `--http-grace-period`), close every WAL cleanly, exit 0. A second
//! signal exits at once.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::admission::Budget;
use crate::config::ReceiveConfig;
use crate::external::ExternalLabels;
use crate::grpc::RemoteWriteHandler;
use crate::http::serve::HttpLimits;
use crate::http::web::WebGuard;
use crate::http::{ops_router, remote_write_router};
use crate::lane::Lanes;
use crate::limits::{LimitMetrics, Limiter};
use crate::metrics::{Metrics, TsdbCollector};
use crate::probe::Probe;
use crate::replicate::{ReplicationMetrics, Replicator};
use crate::ring::{self, RingMetrics};
use crate::state::AppState;
use crate::store::StoreApi;
use crate::tenancy::{BlockListener, Tenants};
use crate::upload::Uploader;
use ringest_proto::encoded::store_server::StoreServer;
use ringest_proto::thanos::exemplars_server::ExemplarsServer;
use ringest_proto::thanos::info::info_server::InfoServer;
use ringest_proto::thanos::status_server::StatusServer;

/// How often heads are checked for compaction (writes also trigger a check).
const COMPACTION_INTERVAL: Duration = Duration::from_secs(60);

/// How often the series created since are folded into each head's index.
const INDEX_INTERVAL: Duration = Duration::from_secs(5);

/// Waits for SIGTERM or SIGINT and returns its name.
async fn wait_signal() -> &'static str {
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    let mut int = match signal(SignalKind::interrupt()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => "terminated",
        _ = int.recv() => "interrupt",
    }
}

fn spawn_server(
    listener: TcpListener,
    router: axum::Router,
    limits: HttpLimits,
    tls: Option<ringest_tls::Acceptor>,
    refused: prometheus::IntCounter,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        crate::http::serve::serve(listener, router, limits, tls, refused, shutdown).await;
    })
}

/// Listens on `addr`; returns the listener and the address it is bound to (the port the kernel
/// chose, for port 0), which the start-up log lines give.
async fn bind(flag: &str, addr: std::net::SocketAddr) -> anyhow::Result<(TcpListener, std::net::SocketAddr)> {
    let l = TcpListener::bind(addr).await.with_context(|| format!("listen on --{flag}={addr}"))?;
    let bound = l.local_addr().with_context(|| format!("address of --{flag}={addr}"))?;
    Ok((l, bound))
}

/// Exports the spans still queued. The batch processor's last export blocks the calling
/// thread until the runtime has sent it, so it runs on a blocking thread, not a worker.
async fn stop_tracing(tracer: Option<ringest_trace::Tracing>) {
    if let Some(t) = tracer {
        let _ = tokio::task::spawn_blocking(move || t.shutdown()).await;
    }
}

/// Runs the receiver until a shutdown signal.
pub async fn run(cfg: ReceiveConfig) -> anyhow::Result<()> {
    let mode = crate::state::receiver_mode(cfg.ring.as_ref().map(|r| &r.replication));
    tracing::info!(mode, "running receive");
    for (flag, reason) in &cfg.ignored_flags {
        tracing::debug!(flag = %format!("--{flag}"), reason, "flag accepted and ignored");
    }
    let tracer = match &cfg.tracing {
        None => None,
        Some(t) => {
            tracing::info!("loading tracing configuration");
            for w in &t.warnings {
                tracing::warn!(warn = %w, "tracing configuration");
            }
            let handle = tokio::runtime::Handle::current();
            Some(ringest_trace::Tracing::start(t, &handle).context("tracing failed")?)
        }
    };
    let metrics = Metrics::new(cfg.forward_timeout);
    let ext = Arc::new(ExternalLabels::new(&cfg.external_labels, &cfg.tenant_label_name));
    let uploader = match &cfg.objstore {
        Some(bucket) => {
            tracing::info!("loading bucket configuration");
            Some(Uploader::new(bucket, cfg.shipper, &cfg.tsdb_path, ext.clone(), &metrics.registry)?)
        }
        None => {
            tracing::info!("no supported bucket was configured, uploads will be disabled");
            None
        }
    };
    let probe = Arc::new(Probe::new(metrics.status.clone()));
    let ring = match &cfg.ring {
        Some(rc) => {
            let ring_metrics = RingMetrics::new(&metrics.registry)?;
            let (ring, digest) = ring::load(rc, &ring_metrics)?;
            let repl_metrics = ReplicationMetrics::new(&metrics.registry).context("register replication metrics")?;
            let mut options = rc.replication.clone();
            if let Some(tls) = &cfg.peer_tls {
                let connector =
                    ringest_tls::Connector::new(tls, &[b"h2"]).context("peer TLS (--remote-write.client-tls-*)")?;
                options.tls = Some(connector);
            }
            let rep = Arc::new(Replicator::new(ring, options, repl_metrics));
            metrics
                .registry
                .register(Box::new(ring::HashringNodes::new(rep.clone())?))
                .context("register hashring metrics")?;
            Some((rep, ring_metrics, digest))
        }
        None => None,
    };
    let opts = ringest_tsdb::Options {
        chunk_range: cfg.min_block_duration_ms,
        wal: ringest_tsdb::wal::WalOptions { compress: cfg.wal_compression, ..Default::default() },
        lockfile: !cfg.no_lockfile,
        retention_ms: cfg.retention_ms,
        wal_discard_after_gap: cfg.wal_discard_after_gap,
    };
    if let Some((rep, _, _)) = &ring {
        let rep = rep.clone();
        ext.set_ring_labels(Arc::new(move |tenant: &str| rep.state().ring.external_labels(tenant)));
    }
    let listener = uploader.clone().map(|u| u as Arc<dyn BlockListener>);
    let tenants = Arc::new(Tenants::new(&cfg.tsdb_path, opts, listener).with_max_tenants(cfg.max_tenants));
    metrics.registry.register(Box::new(TsdbCollector::new(tenants.clone()))).context("register TSDB metrics")?;
    let budget = Budget::new(cfg.write_limits, &metrics.registry).context("register write budget metrics")?;
    let limit_metrics =
        LimitMetrics::new(&metrics.registry, metrics.tenants.clone()).context("register limit metrics")?;
    let limiter = Arc::new(Limiter::new(cfg.limits.clone(), limit_metrics).context("load tenant limits config")?);
    let lanes = Lanes::start(&cfg.write_limits).context("start the bulk write threads")?;
    let st = Arc::new(AppState {
        tenants: tenants.clone(),
        probe: probe.clone(),
        metrics,
        tenant_header: http::HeaderName::from_bytes(cfg.tenant_header.as_bytes()).context("tenant header")?,
        default_tenant: cfg.default_tenant.clone(),
        tenant_field: cfg.tenant_certificate_field,
        trusted_proxies: cfg.trusted_proxies.clone(),
        replica_header: http::HeaderName::from_bytes(cfg.replica_header.as_bytes()).context("replica header")?,
        too_far_in_future_ms: cfg.too_far_in_future_ms,
        budget,
        lanes,
        body_read_timeout: cfg.http_limits.body_read_timeout,
        replicator: ring.as_ref().map(|(r, _, _)| r.clone()),
        cardinality: Default::default(),
        limiter: limiter.clone(),
    });

    let (ops_listener, http_address) = bind("http-address", cfg.http_address).await?;
    let (rw_listener, remote_write_address) = bind("remote-write.address", cfg.remote_write_address).await?;
    let (ops_stop, ops_stop_rx) = watch::channel(false);
    let (rw_stop, rw_stop_rx) = watch::channel(false);
    let refused = |server: &str| st.metrics.http_connections_refused.with_label_values(&[server]);
    let rw_tls = ringest_tls::Acceptor::new(&cfg.remote_write_tls, &[b"h2", b"http/1.1"])
        .context("remote-write TLS (--remote-write.server-tls-*)")?;
    // --http.config: TLS, basic auth, headers and a rate limit on the ops port.
    let (ops_router, ops_tls) = match &cfg.http_config {
        None => (ops_router(st.clone()), None),
        Some(path) => {
            let guard = Arc::new(WebGuard::load(path).with_context(|| format!("--http.config={}", path.display()))?);
            let web = guard.config();
            let alpn: &[&[u8]] = if web.http2 { &[b"h2", b"http/1.1"] } else { &[b"http/1.1"] };
            let tls = match &web.tls {
                Some(opts) => ringest_tls::Acceptor::new(opts, alpn).context("TLS of --http.config")?,
                None => None,
            };
            tracing::info!(http2 = web.http2 && tls.is_some(), address = %http_address, "TLS is {}.", if tls.is_some() { "enabled" } else { "disabled" });
            (ops_router(st.clone()).layer(axum::middleware::from_fn_with_state(guard, crate::http::web::guard)), tls)
        }
    };
    let ops = spawn_server(ops_listener, ops_router, cfg.http_limits, ops_tls, refused("ops"), ops_stop_rx);
    tracing::info!(address = %http_address, "listening for requests and metrics");
    probe.set_healthy();
    let rw = spawn_server(
        rw_listener,
        remote_write_router(st.clone()),
        cfg.http_limits,
        rw_tls.clone(),
        refused("remote-write"),
        rw_stop_rx,
    );
    let (grpc_listener, grpc_address) = bind("grpc-address", cfg.grpc_address).await?;
    let (grpc_stop, mut grpc_stop_rx) = watch::channel(false);
    let grpc = {
        let probe = probe.clone();
        use ringest_grpc::CallKind::{ServerStream, Unary};
        let grpc_metrics: Arc<dyn ringest_grpc::Observer> = Arc::new(
            crate::metrics::GrpcServerMetrics::new(&st.metrics.registry).context("register gRPC server metrics")?,
        );
        let grpc_observer: Arc<dyn ringest_grpc::Observer> = match &cfg.request_log {
            Some(log) => Arc::new(crate::request_log::LoggedCalls::new(grpc_metrics, log.clone())),
            None => grpc_metrics,
        };
        let store = StoreApi::new(tenants.clone(), probe.clone(), ext.clone(), cfg.store_limits, &st.metrics.registry)
            .context("register StoreAPI metrics")?;
        let mut server = ringest_grpc::Server::new(crate::replicate::MAX_MESSAGE_BYTES)
            .route(crate::replicate::REMOTE_WRITE_PATH, RemoteWriteHandler::new(st.clone()))
            .service(
                StoreServer::new(store.clone()).max_encoding_message_size(usize::MAX),
                &[("Series", ServerStream), ("LabelNames", Unary), ("LabelValues", Unary)],
            )
            .service(InfoServer::new(store.clone()), &[("Info", Unary)])
            .service(StatusServer::new(store.clone()), &[("TSDBStatistics", ServerStream)])
            .service(ExemplarsServer::new(store), &[("Exemplars", ServerStream)])
            .observe(grpc_observer)
            .health(Arc::new(move || probe.is_ready()));
        server = server.limits(cfg.grpc_limits);
        if let Some(tls) =
            ringest_tls::Acceptor::new(&cfg.grpc_tls, &[b"h2"]).context("gRPC server TLS (--grpc-server-tls-*)")?
        {
            server = server.tls(tls);
        }
        if let Some(age) = cfg.grpc_max_connection_age {
            server = server.max_connection_age(age);
        }
        tokio::spawn(async move {
            let stop = async move {
                let _ = grpc_stop_rx.wait_for(|s| *s).await;
            };
            if let Err(e) = server.serve(grpc_listener, stop).await {
                tracing::error!(err = %e, "gRPC server failed");
            }
        })
    };
    tracing::info!(address = %grpc_address, "listening for StoreAPI and WritableStoreAPI gRPC");
    let (ring_stop, ring_stop_rx) = watch::channel(false);
    if let (Some(rc), Some((rep, rm, digest))) = (&cfg.ring, &ring) {
        tokio::spawn(ring::watch(rc.clone(), rep.clone(), rm.clone(), digest.clone(), ring_stop_rx));
    }
    tracing::info!(address = %remote_write_address, "Start listening for connections");
    if rw_tls.is_some() {
        tracing::info!(address = %remote_write_address, "Serving HTTPS");
    } else {
        tracing::info!(address = %remote_write_address, "Serving plain HTTP");
    }

    let default_dir = cfg.tsdb_path.join(&cfg.default_tenant);
    if default_dir.is_dir() {
        tracing::info!("default tenant data dir already present, will not create");
    } else {
        tracing::info!(defaultTenantID = %cfg.default_tenant, "default tenant data dir not found, creating");
        std::fs::create_dir_all(&default_dir)
            .with_context(|| format!("create default tenant directory {}", default_dir.display()))?;
    }

    let sig = tokio::spawn(wait_signal());
    let opener = {
        let tenants = tenants.clone();
        tokio::task::spawn_blocking(move || tenants.open_existing())
    };
    tokio::pin!(opener);
    let mut sig = sig;
    tokio::select! {
        r = &mut opener => {
            let names = r.context("open tenants")?;
            tracing::debug!(tenants = names.len(), "opened tenant TSDBs");
        }
        s = &mut sig => {
            tracing::info!(signal = s.unwrap_or("unknown"), "caught signal. Exiting.");
            // Nothing was acknowledged yet: stop without waiting for the replay.
            stop_tracing(tracer).await;
            return Ok(());
        }
    }
    probe.set_ready();
    tracing::info!("storage started, and server is ready to receive requests");
    let (compaction_stop, compaction_stop_rx) = watch::channel(false);
    tracing::info!(interval = "1m", "starting periodic head compaction");
    let indexing = tokio::spawn(tenants.clone().run_indexing(INDEX_INTERVAL, compaction_stop_rx.clone()));
    tokio::spawn(limiter.clone().run_reload(cfg.limits_reload, compaction_stop_rx.clone()));
    tokio::spawn(limiter.run_meta_monitoring(compaction_stop_rx.clone()));
    let compaction = tokio::spawn(tenants.clone().run_compaction(COMPACTION_INTERVAL, compaction_stop_rx));
    tenants.request_compaction();
    let (upload_stop, upload_stop_rx) = watch::channel(false);
    let uploads = uploader.clone().map(|u| {
        let tenants = tenants.clone();
        tokio::spawn(async move {
            // Readiness does not wait for the bucket: a bucket outage must not stop ingestion.
            tracing::info!(bucket = %u.bucket().name(), "upload enabled, starting initial sync");
            let mut stop = upload_stop_rx.clone();
            tokio::select! {
                _ = u.sync_all(&tenants) => tracing::info!("initial sync done"),
                // Shutdown does not wait for a long initial sync; the final sync takes over.
                _ = stop.wait_for(|s| *s) => return,
            }
            u.run(tenants, upload_stop_rx).await;
        })
    });

    let s = sig.await.unwrap_or("unknown");
    tracing::info!(signal = s, "caught signal. Exiting.");
    probe.set_not_ready("shutting down");
    tokio::spawn(async {
        let s = wait_signal().await;
        tracing::warn!(signal = s, "caught second signal, exiting immediately");
        std::process::exit(1);
    });

    let _ = rw_stop.send(true);
    let _ = grpc_stop.send(true);
    let _ = ring_stop.send(true);
    let replicator = st.replicator.clone();
    let http = async {
        if tokio::time::timeout(cfg.http_grace_period, rw).await.is_err() {
            tracing::warn!(grace_period = ?cfg.http_grace_period, "in-flight requests did not finish within the grace period");
        }
    };
    let grpc = async {
        let drained = async {
            let _ = grpc.await;
            // Replicas still on their way to peers after their request was answered.
            if let Some(r) = replicator {
                r.drained().await;
            }
        };
        if tokio::time::timeout(cfg.grpc_grace_period, drained).await.is_err() {
            tracing::warn!(grace_period = ?cfg.grpc_grace_period, "gRPC calls and forwards did not finish within the grace period");
        }
    };
    tokio::join!(http, grpc);
    tracing::info!("shutting down storage");
    let _ = compaction_stop.send(true);
    let _ = compaction.await;
    let _ = indexing.await;
    let t = tenants.clone();
    let flushed = tokio::task::spawn_blocking(move || t.flush_all()).await.context("flush storage")?;
    if flushed {
        tracing::info!("storage is flushed successfully");
    } else {
        tracing::error!("failed to flush storage");
    }
    let _ = upload_stop.send(true);
    if let Some(u) = &uploader {
        if let Some(task) = uploads {
            let _ = task.await;
        }
        tracing::info!("uploading the final cut block before exiting");
        match tokio::time::timeout(cfg.http_grace_period, u.sync_all(&tenants)).await {
            Ok(true) => tracing::info!("the final cut block was uploaded"),
            Ok(false) => tracing::error!("the final upload failed"),
            Err(_) => tracing::error!(
                grace_period = ?cfg.http_grace_period,
                "the final upload failed: not done within the grace period; the blocks stay on disk and are uploaded at the next start"
            ),
        }
    }
    let t = tenants.clone();
    tokio::task::spawn_blocking(move || t.close_all()).await.context("close storage")?;
    tracing::info!("storage is closed");
    stop_tracing(tracer).await;
    let _ = ops_stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), ops).await;
    tracing::info!("exiting");
    Ok(())
}
