//! A tenant's external labels: the labels of the hashring that lists the tenant by name, then
//! `--label` over them, then the tenant label (shared spec §6). Blocks shipped to the bucket
//! carry them in meta.json, and the StoreAPI attaches them to every series it returns.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// A hashring's external labels for a tenant (empty unless a hashring lists it by name).
pub type RingLabels = Arc<dyn Fn(&str) -> BTreeMap<String, String> + Send + Sync>;

/// Computes tenants' external labels.
pub struct ExternalLabels {
    labels: Vec<(String, String)>,
    tenant_label: String,
    ring: OnceLock<RingLabels>,
}

impl std::fmt::Debug for ExternalLabels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalLabels")
            .field("labels", &self.labels)
            .field("tenant_label", &self.tenant_label)
            .finish()
    }
}

impl ExternalLabels {
    /// `--label` pairs and `--receive.tenant-label-name`.
    pub fn new(labels: &[(String, String)], tenant_label: &str) -> ExternalLabels {
        ExternalLabels { labels: labels.to_vec(), tenant_label: tenant_label.to_string(), ring: OnceLock::new() }
    }

    /// Takes the hashrings' external labels into account (set once, when a hashring is used).
    pub fn set_ring_labels(&self, f: RingLabels) {
        let _ = self.ring.set(f);
    }

    /// `--receive.tenant-label-name`.
    pub fn tenant_label(&self) -> &str {
        &self.tenant_label
    }

    /// `--label` and the tenant label, without the hashrings' (what Thanos matches TSDB
    /// statistics requests against).
    pub fn of_flags(&self, tenant: &str) -> BTreeMap<String, String> {
        let mut labels: BTreeMap<String, String> = self.labels.iter().cloned().collect();
        labels.insert(self.tenant_label.clone(), tenant.to_string());
        labels
    }

    /// The external labels of `tenant`, by name.
    pub fn of(&self, tenant: &str) -> BTreeMap<String, String> {
        let mut labels = self.ring.get().map(|f| f(tenant)).unwrap_or_default();
        labels.extend(self.labels.iter().cloned());
        labels.insert(self.tenant_label.clone(), tenant.to_string());
        labels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_label_over_flags_over_hashring() {
        let ext =
            ExternalLabels::new(&[("replica".into(), "r1".into()), ("tenant_id".into(), "x".into())], "tenant_id");
        ext.set_ring_labels(Arc::new(|t: &str| {
            BTreeMap::from([("replica".to_string(), "ring".to_string()), ("az".to_string(), format!("az-{t}"))])
        }));
        let got = ext.of("team-a");
        let want: BTreeMap<String, String> = [("az", "az-team-a"), ("replica", "r1"), ("tenant_id", "team-a")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
    }
}
