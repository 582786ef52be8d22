//! Admission of client connections to the proxy port, decided in Pingora's accept loop.
//!
//! Pingora's accept loop accepts connections faster than the tasks it spawns for them can close
//! the ones over the limit: under `ulimit -n 256`, a thousand connections arriving at once took
//! every file descriptor, `accept` failed, and Pingora stopped accepting for a second at a time
//! while health checks and scrapes waited. The gate runs inside the accept loop (Pingora's
//! `ConnectionFilter`), so each accepted connection is counted before the next is accepted:
//! - below `MAX_CONNECTIONS` it is admitted, its slot reserved;
//! - over it, up to [`REFUSALS_AT_ONCE`] at a time are let through to be answered 503 with a
//!   reason;
//! - past those, it is closed at once, holding nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use log::debug;
use pingora_core::listeners::ConnectionFilter;

use crate::metrics::{ConnectionRejection, PortMetrics};

/// Connections over the limit that may be waiting for their 503 at once; more are closed at
/// accept without an answer.
pub const REFUSALS_AT_ONCE: usize = 32;

/// The proxy port's connection count and limit.
#[derive(Debug)]
pub struct ConnectionGate {
    max: usize,
    /// The port's connection counters.
    metrics: &'static PortMetrics,
    /// Admitted and not yet closed: the port's `open_connections`.
    open: AtomicUsize,
    /// Admitted at accept, not yet claimed by their connection's task.
    unclaimed: AtomicUsize,
    /// Let through over the limit to be answered 503, not yet answered.
    refusing: AtomicUsize,
}

/// One admitted connection's place, given back when it closes.
#[derive(Debug)]
pub struct ConnectionSlot(Arc<ConnectionGate>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.open_connections.dec();
    }
}

impl ConnectionGate {
    /// A gate for at most `max` open connections, counted in `metrics`.
    pub fn new(max: usize, metrics: &'static PortMetrics) -> Arc<Self> {
        Arc::new(ConnectionGate {
            max,
            metrics,
            open: AtomicUsize::new(0),
            unclaimed: AtomicUsize::new(0),
            refusing: AtomicUsize::new(0),
        })
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }

    /// At accept: whether to let the connection through (to be served, or answered 503).
    pub fn admit(&self) -> bool {
        if increment_below(&self.open, self.max) {
            self.unclaimed.fetch_add(1, Ordering::AcqRel);
            self.metrics.open_connections.inc();
            return true;
        }
        self.metrics
            .connection_rejected(ConnectionRejection::Limit)
            .inc();
        if increment_below(&self.refusing, REFUSALS_AT_ONCE) {
            return true;
        }
        debug!(
            "connection closed at accept: {} open, {REFUSALS_AT_ONCE} being refused",
            self.max
        );
        false
    }

    /// In the connection's task: a slot reserved at accept, or `None` when the connection was
    /// let through only to be refused (which slot a connection gets does not matter, only that
    /// as many are served as were admitted).
    pub fn claim(self: &Arc<Self>) -> Option<ConnectionSlot> {
        decrement_if_positive(&self.unclaimed).then(|| ConnectionSlot(Arc::clone(self)))
    }

    /// A refused connection has been answered.
    pub fn refused(&self) {
        decrement_if_positive(&self.refusing);
    }
}

#[async_trait]
impl ConnectionFilter for ConnectionGate {
    async fn should_accept(&self, _addr: Option<&std::net::SocketAddr>) -> bool {
        self.admit()
    }
}

/// Adds one to `count` unless it has reached `limit`.
fn increment_below(count: &AtomicUsize, limit: usize) -> bool {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < limit).then_some(n + 1)
        })
        .is_ok()
}

/// Takes one from `count` unless it is zero.
fn decrement_if_positive(count: &AtomicUsize) -> bool {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admitted_served_a_burst_refused_the_rest_closed() {
        let gate = ConnectionGate::new(2, &crate::metrics::METRICS.proxy_port);
        let admitted: Vec<bool> = (0..2 + REFUSALS_AT_ONCE + 5)
            .map(|_| gate.admit())
            .collect();
        assert!(admitted[..2 + REFUSALS_AT_ONCE].iter().all(|a| *a));
        assert!(
            admitted[2 + REFUSALS_AT_ONCE..].iter().all(|a| !*a),
            "closed at accept"
        );
        // Two slots to claim, in whatever order the tasks run; the others are refusals.
        let first = gate.claim().expect("a slot");
        let second = gate.claim().expect("a slot");
        assert!(gate.claim().is_none());
        for _ in 0..REFUSALS_AT_ONCE {
            gate.refused();
        }
        assert!(gate.admit(), "answered refusals make room for more");
        gate.refused();
        drop(first);
        assert!(gate.admit(), "a closed connection gives its slot back");
        assert!(gate.claim().is_some());
        drop(second);
    }
}
