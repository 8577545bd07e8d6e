//! Head cardinality statistics per tenant, as `/api/v1/status/tsdb` and the StoreAPI's
//! TSDBStatistics give them, at a bounded cost: computing them walks every series of the
//! tenant's head, so each tenant's are computed at most once per [`FRESH`] and one computation
//! runs at a time, whatever the rate of calls. A call that finds another computation running
//! takes the tenant's last statistics, if there are any, instead of waiting.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use ringest_tsdb::Tsdb;
use ringest_tsdb::db::Cardinality;

/// How long a tenant's statistics are served before they are computed again.
pub const FRESH: Duration = Duration::from_secs(10);

/// Entries kept per list: the largest `limit` a call can ask for.
pub const MAX_LIMIT: usize = 10_000;

/// The last statistics of each tenant and when they were made.
#[derive(Debug, Default)]
pub struct CardinalityCache {
    entries: Mutex<HashMap<String, (Instant, Arc<Cardinality>)>>,
    /// Held while statistics are computed.
    computing: Mutex<()>,
}

impl CardinalityCache {
    /// The statistics of `tenant` (whose TSDB is `db`), with up to [`MAX_LIMIT`] entries per
    /// list, at most [`FRESH`] old, or older while another computation runs.
    pub fn get(&self, tenant: &str, db: &Tsdb) -> Arc<Cardinality> {
        if let Some(c) = self.last(tenant, FRESH) {
            return c;
        }
        let _computing = match self.computing.try_lock() {
            Some(g) => g,
            None => match self.last(tenant, Duration::MAX) {
                Some(c) => return c,
                None => self.computing.lock(),
            },
        };
        // Made by the computation this call may have waited for.
        if let Some(c) = self.last(tenant, FRESH) {
            return c;
        }
        let c = Arc::new(db.cardinality(MAX_LIMIT));
        self.entries.lock().insert(tenant.to_string(), (Instant::now(), c.clone()));
        c
    }

    fn last(&self, tenant: &str, max_age: Duration) -> Option<Arc<Cardinality>> {
        let entries = self.entries.lock();
        let (at, c) = entries.get(tenant)?;
        (at.elapsed() <= max_age).then(|| c.clone())
    }
}
