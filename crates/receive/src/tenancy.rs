//! Tenants: name validation and one TSDB per tenant under `<tsdb.path>/<tenant>/` (Thanos'
//! MultiTSDB). Existing tenant directories are opened (WAL replayed) at start-up before the
//! node is ready; a new tenant's TSDB is created on its first write.
//!
//! Head compaction runs on one background thread for all tenants: once a minute, and at once
//! when a write finds a head compactable. Shutdown flushes every head into blocks. A
//! [`BlockListener`] (the uploader, when a bucket is configured) hears of new blocks and decides
//! which blocks local retention may delete.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Mutex, RwLock};
use ringest_tsdb::block::BlockMeta;
use ringest_tsdb::{Options, Tsdb, TsdbError};

/// Told about blocks: the uploader implements it.
pub trait BlockListener: Send + Sync {
    /// New blocks were cut.
    fn blocks_cut(&self);
    /// Whether local retention may delete `block` of `tenant` (it is safe in the bucket).
    fn may_delete(&self, tenant: &str, block: &BlockMeta) -> bool;
}

/// Longest accepted tenant name in bytes (Mimir's limit, shared spec §6.2; a file name must fit
/// in `NAME_MAX` anyway).
pub const MAX_TENANT_LEN: usize = 150;

/// Tenant names starting with this are reserved for internal use (as Mimir's
/// `__mimir_cluster`, shared spec §6.2).
pub const RESERVED_PREFIX: &str = "__";

/// A directory name a filesystem may hold in any directory (ext4's `fsck` puts it there): never
/// a tenant.
pub const LOST_AND_FOUND: &str = "lost+found";

/// Why a tenant name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tenant name not valid: {0}")]
pub struct InvalidTenant(pub String);

/// `--receive.tenant-certificate-field`: the subject field of the client certificate that
/// names the tenant, instead of the tenant header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertField {
    /// `organization`: the first `O`.
    Organization,
    /// `organizationalUnit`: the first `OU`.
    OrganizationalUnit,
    /// `commonName`: `CN`.
    CommonName,
}

impl CertField {
    /// The field named as Thanos' flag names it (`None`: not one of them).
    pub fn parse(name: &str) -> Option<CertField> {
        match name {
            "organization" => Some(CertField::Organization),
            "organizationalUnit" => Some(CertField::OrganizationalUnit),
            "commonName" => Some(CertField::CommonName),
            _ => None,
        }
    }

    /// The tenant `id` names, or Thanos' message for why there is none.
    pub fn tenant(self, client: Option<&Client>) -> Result<String, &'static str> {
        let id = client
            .and_then(|c| c.identity.as_ref())
            .ok_or("could not get required certificate field from client cert")?;
        let (value, missing) = match self {
            CertField::Organization => (&id.organization, "could not get organization field from client cert"),
            CertField::OrganizationalUnit => {
                (&id.organizational_unit, "could not get organizationalUnit field from client cert")
            }
            CertField::CommonName => (&id.common_name, "could not get commonName field from client cert"),
        };
        value.clone().filter(|v| !v.is_empty()).ok_or(missing)
    }
}

/// Whether `c` may appear in a tenant name: the whitelist of Mimir's tenant IDs (shared spec
/// §6.2), letters and digits and `!_.*'()-`. Nothing that means something to a path, a shell, a
/// URL query or a log line.
pub fn tenant_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '!' | '_' | '.' | '*' | '\'' | '(' | ')' | '-')
}

/// Checks that `tenant` is a safe, single path component and not reserved: 1 to 150 bytes of
/// `[A-Za-z0-9!_.*'()-]`, not `.` or `..`, not starting with `__`. Every entry point that names
/// a tenant (header, client certificate, gRPC write, default tenant flag) calls it. (Thanos'
/// `path.Base` check lets `.`, `..` and any character but `/` through, and has no length limit
/// or reserved names.)
pub fn validate_tenant(tenant: &str) -> Result<(), InvalidTenant> {
    let bad = |why: &str| Err(InvalidTenant(format!("{tenant:?} {why}")));
    if tenant.is_empty() {
        return bad("is empty");
    }
    if tenant.len() > MAX_TENANT_LEN {
        return Err(InvalidTenant(format!("{} bytes, longer than {MAX_TENANT_LEN} bytes", tenant.len())));
    }
    if let Some(c) = tenant.chars().find(|&c| !tenant_char(c)) {
        return bad(&format!("contains the character {c:?}; a tenant name has only letters, digits and !_.*'()-"));
    }
    if tenant == "." || tenant == ".." {
        return bad("is not a directory name");
    }
    if tenant.starts_with(RESERVED_PREFIX) {
        return bad(&format!("is reserved (names starting with {RESERVED_PREFIX:?})"));
    }
    Ok(())
}

/// Who connected: the peer address and the client certificate's identity (when it presented
/// one over TLS). Every HTTP request carries it as an extension.
#[derive(Debug, Clone)]
pub struct Client {
    /// The TCP peer.
    pub addr: std::net::SocketAddr,
    /// The verified client certificate's subject, if any.
    pub identity: Option<ringest_tls::Identity>,
}

/// `--ringest.tenant-header.trusted-from`: the clients whose tenant header is honoured (a
/// proxy that authenticated the caller and set the header). Others naming a tenant by header
/// are refused with 403; without the header they write to the default tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<ipnet::IpNet>,
    common_names: Vec<String>,
}

impl TrustedProxies {
    /// Parses the flag's values: a network (`10.0.0.0/8`, `::1/128`), an address (`10.1.2.3`,
    /// one host), or `cn=NAME` for a verified client certificate whose common name is `NAME`.
    /// `None` when no value is given (every client's header is honoured, as in Thanos).
    pub fn parse(values: &[String]) -> Result<Option<TrustedProxies>, String> {
        let mut t = TrustedProxies { networks: Vec::new(), common_names: Vec::new() };
        for v in values {
            if let Some(cn) = v.strip_prefix("cn=") {
                if cn.is_empty() {
                    return Err(format!("{v:?}: an empty common name"));
                }
                t.common_names.push(cn.to_string());
            } else if let Ok(net) = v.parse::<ipnet::IpNet>() {
                t.networks.push(net.trunc());
            } else if let Ok(ip) = v.parse::<std::net::IpAddr>() {
                t.networks.push(ip.into());
            } else {
                return Err(format!("{v:?} is neither a network (10.0.0.0/8), an address, nor cn=NAME"));
            }
        }
        Ok((!values.is_empty()).then_some(t))
    }

    /// Whether `client`'s tenant header is honoured.
    pub fn trusts(&self, client: &Client) -> bool {
        let ip = client.addr.ip().to_canonical();
        self.networks.iter().any(|n| n.contains(&ip))
            || client
                .identity
                .as_ref()
                .and_then(|id| id.common_name.as_ref())
                .is_some_and(|cn| self.common_names.iter().any(|t| t == cn))
    }
}

/// Errors of getting a tenant's TSDB.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// The server is shutting down.
    #[error("TSDB not ready: shutting down")]
    Closed,
    /// Opening the TSDB failed.
    #[error("open TSDB of tenant {tenant}: {source}")]
    Open {
        /// The tenant.
        tenant: String,
        /// The cause.
        source: TsdbError,
    },
    /// The node has `--ringest.max-tenants` tenants already: a new one is not created.
    #[error("tenant {tenant} refused: this node has {max} tenants already, the limit (--ringest.max-tenants)")]
    TooMany {
        /// The new tenant.
        tenant: String,
        /// The limit.
        max: usize,
    },
    /// The tenant's TSDB failed to open when the node started: its writes are refused until
    /// the node restarts with the cause fixed (the other tenants are served meanwhile).
    #[error("TSDB of tenant {tenant} unavailable: it failed to open at start-up: {cause}")]
    Unavailable {
        /// The tenant.
        tenant: String,
        /// Why it failed to open.
        cause: String,
    },
}

/// All tenant TSDBs of this node.
pub struct Tenants {
    root: PathBuf,
    compaction: Arc<tokio::sync::Notify>,
    opts: Options,
    dbs: RwLock<BTreeMap<String, Arc<Tsdb>>>,
    /// Tenants whose TSDB failed to open at start-up, with the cause.
    failed: RwLock<BTreeMap<String, String>>,
    opening: Mutex<()>,
    closed: AtomicBool,
    listener: Option<Arc<dyn BlockListener>>,
    /// Most tenants a write may create (0: no limit).
    max_tenants: usize,
}

impl std::fmt::Debug for Tenants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenants").field("root", &self.root).finish_non_exhaustive()
    }
}

impl Tenants {
    /// Tenants under `root`, each opened with `opts`; `listener` hears of new blocks and
    /// guards retention (without one, retention may delete any block).
    pub fn new(root: &Path, opts: Options, listener: Option<Arc<dyn BlockListener>>) -> Self {
        Tenants {
            root: root.to_owned(),
            compaction: Arc::new(tokio::sync::Notify::new()),
            opts,
            dbs: RwLock::new(BTreeMap::new()),
            failed: RwLock::new(BTreeMap::new()),
            opening: Mutex::new(()),
            closed: AtomicBool::new(false),
            listener,
            max_tenants: 0,
        }
    }

    /// Refuses to create a tenant once `max` exist (0: no limit). Tenants found on disk at
    /// start-up are opened whatever their number.
    pub fn with_max_tenants(mut self, max: usize) -> Self {
        self.max_tenants = max;
        self
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn open(&self, tenant: &str) -> Result<Arc<Tsdb>, TenantError> {
        let span = tracing::info_span!("tsdb", tenant = %tenant);
        let _g = span.enter();
        tracing::info!("opening TSDB");
        let (db, report) = Tsdb::open(&self.root.join(tenant), self.opts)
            .map_err(|source| TenantError::Open { tenant: tenant.to_string(), source })?;
        if let Some(c) = &report.repaired {
            tracing::warn!(err = %c, "WAL was repaired: records after the corruption were dropped");
        }
        tracing::info!("TSDB is now ready");
        Ok(Arc::new(db))
    }

    /// Opens every tenant directory under the data directory (in parallel, one thread per
    /// core), replaying their WALs. Returns the tenants opened. A tenant that fails to open is
    /// logged and left out: the node serves the others, and that tenant's writes are refused
    /// (see [`Tenants::failed`]).
    pub fn open_existing(&self) -> Vec<String> {
        let mut names = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&self.root) {
            for e in rd.flatten() {
                if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    continue;
                }
                let Some(name) = e.file_name().to_str().map(str::to_owned) else { continue };
                if name == LOST_AND_FOUND {
                    continue;
                }
                // A directory read from disk is one path component already. One whose name is
                // no longer accepted for writes (e.g. a tenant Thanos created with a name over
                // the length limit) is still opened: its WAL replayed, its blocks shipped.
                if let Err(e) = validate_tenant(&name) {
                    tracing::warn!(dir = %name, err = %e, "opening a tenant whose name is refused for new writes");
                }
                names.push(name);
            }
        }
        names.sort();
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).min(names.len().max(1));
        let next = std::sync::atomic::AtomicUsize::new(0);
        type Opened = (String, Result<Arc<Tsdb>, TenantError>);
        let results: Mutex<Vec<Opened>> = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(name) = names.get(i) else { break };
                        let r = self.open(name);
                        results.lock().push((name.clone(), r));
                    }
                });
            }
        });
        let (mut dbs, mut failed) = (self.dbs.write(), self.failed.write());
        let mut opened = Vec::new();
        for (name, r) in results.into_inner() {
            match r {
                Ok(db) => {
                    dbs.insert(name.clone(), db);
                    opened.push(name);
                }
                Err(e) => {
                    tracing::error!(tenant = %name, err = %e, "opening TSDB failed: the tenant's writes are refused until a restart opens it");
                    failed.insert(name, e.to_string());
                }
            }
        }
        opened.sort();
        opened
    }

    /// Tenants whose TSDB failed to open at start-up, with the cause.
    pub fn failed(&self) -> Vec<(String, String)> {
        self.failed.read().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// The TSDB of `tenant` if it is open.
    pub fn get(&self, tenant: &str) -> Option<Arc<Tsdb>> {
        self.dbs.read().get(tenant).cloned()
    }

    /// The TSDB of `tenant`, created if it does not exist yet. `tenant` must be valid. Blocks
    /// while the TSDB is created.
    pub fn get_or_open(&self, tenant: &str) -> Result<Arc<Tsdb>, TenantError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(TenantError::Closed);
        }
        if let Some(db) = self.get(tenant) {
            return Ok(db);
        }
        if let Some(cause) = self.failed.read().get(tenant) {
            return Err(TenantError::Unavailable { tenant: tenant.to_string(), cause: cause.clone() });
        }
        let _g = self.opening.lock();
        if self.closed.load(Ordering::Acquire) {
            return Err(TenantError::Closed);
        }
        if let Some(db) = self.get(tenant) {
            return Ok(db);
        }
        let max = self.max_tenants;
        if max > 0 && self.dbs.read().len() + self.failed.read().len() >= max {
            return Err(TenantError::TooMany { tenant: tenant.to_string(), max });
        }
        let db = self.open(tenant)?;
        self.dbs.write().insert(tenant.to_string(), db.clone());
        Ok(db)
    }

    /// Every open tenant, sorted by name.
    pub fn all(&self) -> Vec<(String, Arc<Tsdb>)> {
        self.dbs.read().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Asks the compaction task to run now (cheap; coalesces).
    pub fn request_compaction(&self) {
        self.compaction.notify_one();
    }

    /// Cuts blocks from every compactable head and applies local retention. Errors are logged
    /// and counted per tenant; the others go on.
    pub fn compact_all(&self) {
        let mut cut_any = false;
        for (name, db) in self.all() {
            let span = tracing::info_span!("tsdb", tenant = %name);
            let _g = span.enter();
            if db.compactable() {
                tracing::info!("running periodic head compaction");
            }
            match db.compact() {
                Ok(cut) if !cut.is_empty() => cut_any = true,
                Ok(_) => {}
                Err(e) => tracing::error!(err = %e, "periodic head compaction failed"),
            }
            let may_delete = |b: &BlockMeta| self.listener.as_ref().is_none_or(|l| l.may_delete(&name, b));
            if let Err(e) = db.apply_retention(&may_delete) {
                tracing::error!(err = %e, "applying retention failed");
            }
        }
        if cut_any {
            crate::pool::release_memory();
            if let Some(l) = &self.listener {
                l.blocks_cut();
            }
        }
    }

    /// The compaction loop: every `interval`, or when a write asks for it, until `stop`.
    pub async fn run_compaction(
        self: Arc<Self>,
        interval: std::time::Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let notify = self.compaction.clone();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = notify.notified() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let t = self.clone();
            if tokio::task::spawn_blocking(move || t.compact_all()).await.is_err() {
                tracing::error!("head compaction panicked");
            }
        }
    }

    /// Every `interval` until `stop`, folds the series each tenant created since into its head
    /// index, off the write path: the index then costs its memory as series come, not as a
    /// burst under the first read after them, and that read does not wait for it.
    pub async fn run_indexing(
        self: Arc<Self>,
        interval: std::time::Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let t = self.clone();
            let folded = tokio::task::spawn_blocking(move || {
                for (_, db) in t.all() {
                    db.index_new_series();
                }
            });
            if folded.await.is_err() {
                tracing::error!("head indexing panicked");
            }
        }
    }

    /// Cuts every head into blocks (the final flush before exit). Returns whether all succeeded.
    pub fn flush_all(&self) -> bool {
        let mut ok = true;
        for (name, db) in self.all() {
            let span = tracing::info_span!("tsdb", tenant = %name);
            let _g = span.enter();
            tracing::info!("flushing TSDB");
            match db.flush_head() {
                Ok(blocks) => tracing::info!(blocks = blocks.len(), "flushed TSDB"),
                Err(e) => {
                    tracing::error!(err = %e, "flushing TSDB failed");
                    ok = false;
                }
            }
        }
        ok
    }

    /// Refuses new tenants and closes every TSDB (flushing and fsyncing its WAL).
    pub fn close_all(&self) {
        self.closed.store(true, Ordering::Release);
        let _g = self.opening.lock();
        for (name, db) in self.all() {
            if let Err(e) = db.close() {
                tracing::error!(tenant = %name, err = %e, "closing TSDB failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_proxies() {
        let vals = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(TrustedProxies::parse(&[]), Ok(None));
        let t = TrustedProxies::parse(&vals(&["10.0.0.0/8", "192.168.1.7", "::1", "cn=gateway"])).unwrap().unwrap();
        let client = |addr: &str, cn: Option<&str>| Client {
            addr: addr.parse().unwrap(),
            identity: cn.map(|cn| ringest_tls::Identity { common_name: Some(cn.into()), ..Default::default() }),
        };
        assert!(t.trusts(&client("10.3.4.5:1", None)));
        assert!(t.trusts(&client("192.168.1.7:1", None)));
        assert!(!t.trusts(&client("192.168.1.8:1", None)));
        assert!(t.trusts(&client("[::1]:1", None)));
        assert!(t.trusts(&client("[::ffff:10.0.0.1]:1", None)), "an IPv4 client on a dual-stack socket");
        assert!(t.trusts(&client("127.0.0.1:1", Some("gateway"))));
        assert!(!t.trusts(&client("127.0.0.1:1", Some("gateway2"))));
        assert!(!t.trusts(&client("127.0.0.1:1", None)));
        for bad in ["10.0.0.0/33", "gateway", "cn=", "10.0.0"] {
            assert!(TrustedProxies::parse(&vals(&[bad])).is_err(), "{bad}");
        }
    }

    #[test]
    fn tenant_names() {
        let longest = "x".repeat(MAX_TENANT_LEN);
        for ok in ["default-tenant", "team-a", "a.b", "...", "Team_1", "a*(b)'!", "_x", "a__", longest.as_str()] {
            assert!(validate_tenant(ok).is_ok(), "{ok}");
        }
        let long = "x".repeat(MAX_TENANT_LEN + 1);
        let bad_ones = [
            "",
            ".",
            "..",
            "a/b",
            "/etc",
            "../x",
            "a\\b",
            "a\0b",
            "a\nb",
            &long,
            "__mimir_cluster",
            "__",
            "lost+found",
            "x y",
            "é",
            "tenant_1:eu",
            "a;b",
            "a%2Fb",
            "a=b",
        ];
        for bad in bad_ones {
            let e = validate_tenant(bad).unwrap_err();
            assert!(e.to_string().starts_with("tenant name not valid"), "{bad:?}");
        }
    }
}
