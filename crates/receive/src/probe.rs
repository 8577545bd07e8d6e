//! Health and readiness (`/-/healthy`, `/-/ready`), with Thanos' status-change log lines and
//! the `thanos_status{check}` gauge.

use std::sync::atomic::{AtomicBool, Ordering};

use prometheus::IntGaugeVec;

/// Probe state of the node.
#[derive(Debug)]
pub struct Probe {
    healthy: AtomicBool,
    ready: AtomicBool,
    status: IntGaugeVec,
}

impl Probe {
    /// A probe that is neither healthy nor ready.
    pub fn new(status: IntGaugeVec) -> Self {
        status.with_label_values(&["healthy"]).set(0);
        status.with_label_values(&["ready"]).set(0);
        Probe { healthy: AtomicBool::new(false), ready: AtomicBool::new(false), status }
    }

    /// Marks the node healthy.
    pub fn set_healthy(&self) {
        self.healthy.store(true, Ordering::Release);
        self.status.with_label_values(&["healthy"]).set(1);
        tracing::info!(status = "healthy", "changing probe status");
    }

    /// Marks the node ready to receive writes.
    pub fn set_ready(&self) {
        if !self.ready.swap(true, Ordering::AcqRel) {
            self.status.with_label_values(&["ready"]).set(1);
            tracing::info!(status = "ready", "changing probe status");
        }
    }

    /// Marks the node not ready, with the reason.
    pub fn set_not_ready(&self, reason: &str) {
        if self.ready.swap(false, Ordering::AcqRel) {
            self.status.with_label_values(&["ready"]).set(0);
            tracing::warn!(status = "not-ready", reason, "changing probe status");
        }
    }

    /// Whether the node is healthy.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Whether the node is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}
