//! Reverse mode's metrics: the poll port's connections, the registered clients, and how polls
//! and pushes end. Registered only by a tunnel with `POLL_PORT`.

use std::sync::OnceLock;

use prometheus::{register_int_counter_vec, register_int_gauge, IntCounter, IntGauge};

use super::PortMetrics;

label_values! {
    /// How a poll ended, as `proxy_polls_total{outcome}` counts it.
    PollOutcome {
        /// Answered with a scrape.
        Scrape = "scrape",
        /// Idle for `POLL_KEEPALIVE`: answered so the client polls again.
        Keepalive = "keepalive",
        /// A newer poll of the same name took its place: `409`.
        Superseded = "superseded",
        /// The client closed the connection while it waited: the client is dropped.
        Closed = "closed",
        /// From an address not in `POLL_ALLOWED_CIDRS`: `403`.
        Forbidden = "forbidden",
        /// Not a valid name: `400`.
        Invalid = "invalid",
        /// A name the client's certificate does not carry: `403`.
        WrongCertificate = "wrong_certificate",
        /// The name of a configured target: `409`.
        Conflict = "conflict",
        /// `POLL_MAX_CLIENTS` names registered already: `503`.
        Full = "full",
        /// The tunnel is shutting down: `503`.
        Shutdown = "shutdown",
    }
}

label_values! {
    /// How a push ended, as `proxy_pushes_total{outcome}` counts it.
    PushOutcome {
        /// Its answer went to Prometheus.
        Delivered = "delivered",
        /// The answer to a keep-alive request, discarded.
        Keepalive = "keepalive",
        /// For an `Id` no scrape has: `404`.
        UnknownId = "unknown_id",
        /// For a scrape that ended (deadline passed, Prometheus gone) or was answered: `410`.
        Expired = "expired",
        /// Over `POLL_MAX_PUSH_SIZE`: `413`, and the scrape `502`.
        TooLarge = "too_large",
        /// Not a response as PushProx writes one: `400`.
        Malformed = "malformed",
        /// For a name the client's certificate does not carry: `403`.
        WrongCertificate = "wrong_certificate",
        /// From an address not in `POLL_ALLOWED_CIDRS`: `403`.
        Forbidden = "forbidden",
        /// The push ended before the answer it carries did.
        Cut = "cut",
    }
}

label_values! {
    /// Why a registered client was dropped, as `proxy_poll_clients_dropped_total{reason}`
    /// counts it.
    ClientDrop {
        /// The connection of its waiting poll closed.
        PollClosed = "poll_closed",
        /// It did not poll again within the grace after its last poll was answered.
        NoPoll = "no_poll",
    }
}

/// Reverse mode's metrics: the poll port's connections, the registered clients, and how polls
/// and pushes end.
#[derive(Debug)]
pub struct PollMetrics {
    /// `proxy_poll_open_connections` and `proxy_poll_connections_rejected_total{reason}`.
    pub port: PortMetrics,
    /// `proxy_poll_clients`: names registered now.
    pub clients: IntGauge,
    polls: Vec<IntCounter>,
    pushes: Vec<IntCounter>,
    dropped: Vec<IntCounter>,
}

impl PollMetrics {
    fn register() -> Result<Self, prometheus::Error> {
        let polls = register_int_counter_vec!(
            "proxy_polls_total",
            "Polls of the poll port by how they ended.",
            &["outcome"]
        )?;
        let pushes = register_int_counter_vec!(
            "proxy_pushes_total",
            "Pushes to the poll port by how they ended.",
            &["outcome"]
        )?;
        let dropped = register_int_counter_vec!(
            "proxy_poll_clients_dropped_total",
            "Registered clients dropped, by reason.",
            &["reason"]
        )?;
        Ok(PollMetrics {
            port: PortMetrics::register("proxy_poll_", "the poll port")?,
            clients: register_int_gauge!(
                "proxy_poll_clients",
                "Names registered by clients that poll."
            )?,
            polls: PollOutcome::ALL
                .iter()
                .map(|o| polls.with_label_values(&[o.as_str()]))
                .collect(),
            pushes: PushOutcome::ALL
                .iter()
                .map(|o| pushes.with_label_values(&[o.as_str()]))
                .collect(),
            dropped: ClientDrop::ALL
                .iter()
                .map(|o| dropped.with_label_values(&[o.as_str()]))
                .collect(),
        })
    }

    /// Counts a poll that ended as `outcome`.
    pub fn poll(&self, outcome: PollOutcome) {
        self.polls[outcome as usize].inc();
    }

    /// Counts a push that ended as `outcome`.
    pub fn push(&self, outcome: PushOutcome) {
        self.pushes[outcome as usize].inc();
    }

    /// Counts a client dropped for `reason`.
    pub fn dropped(&self, reason: ClientDrop) {
        self.dropped[reason as usize].inc();
    }
}

static POLL_METRICS: OnceLock<PollMetrics> = OnceLock::new();

/// Reverse mode's metrics, registered on first use (only a tunnel with `POLL_PORT` shows them).
pub fn poll_metrics() -> &'static PollMetrics {
    POLL_METRICS.get_or_init(|| {
        PollMetrics::register().expect("poll metrics register once in the default registry")
    })
}
