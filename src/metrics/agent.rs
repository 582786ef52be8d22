//! Agent mode's metrics: the agents connected, how their connections ended or were refused,
//! and reconnects. Registered only by a tunnel with `AGENT_PORT`.

use std::sync::OnceLock;

use prometheus::{register_int_counter, register_int_counter_vec, register_int_gauge};
use prometheus::{IntCounter, IntGauge};

label_values! {
    /// How an agent's connection attempt ended, as `proxy_agent_connections_total{outcome}`
    /// counts it.
    AgentConnection {
        /// Handshakes done, agent registered.
        Accepted = "accepted",
        /// TLS or HTTP/2 handshake failed (no or wrong client certificate, not HTTP/2).
        HandshakeFailed = "handshake_failed",
        /// The certificate carries no subject CN to name the agent.
        Unnamed = "unnamed",
        /// `AGENT_MAX_AGENTS` agents were connected.
        TooManyAgents = "too_many_agents",
        /// The agent holds a connection to this replica already: the newer one is closed.
        DuplicateReplica = "duplicate_replica",
        /// The agent's announcement could not be read.
        BadAnnouncement = "bad_announcement",
    }
}

/// Agent mode's series.
pub struct AgentMetrics {
    /// Agents connected now.
    pub connected: IntGauge,
    /// Agents that connected again after a connection of theirs ended.
    pub reconnects: IntCounter,
    /// Connections that ended after being accepted.
    pub disconnects: IntCounter,
    connections: Vec<IntCounter>,
}

impl AgentMetrics {
    fn register() -> Result<Self, prometheus::Error> {
        let connections = register_int_counter_vec!(
            "proxy_agent_connections_total",
            "Connections agents opened to the agent port, by how they ended or were refused.",
            &["outcome"]
        )?;
        Ok(AgentMetrics {
            connected: register_int_gauge!("proxy_agents_connected", "Agents connected now.")?,
            reconnects: register_int_counter!(
                "proxy_agent_reconnects_total",
                "Agents that connected again after a connection of theirs ended."
            )?,
            disconnects: register_int_counter!(
                "proxy_agent_disconnects_total",
                "Accepted agent connections that ended."
            )?,
            connections: AgentConnection::ALL
                .iter()
                .map(|o| connections.with_label_values(&[o.as_str()]))
                .collect(),
        })
    }

    /// Counts a connection that ended as `outcome`.
    pub fn connection(&self, outcome: AgentConnection) {
        self.connections[outcome as usize].inc();
    }
}

static AGENT_METRICS: OnceLock<AgentMetrics> = OnceLock::new();

/// Agent mode's metrics, registered on first use.
pub fn agent_metrics() -> &'static AgentMetrics {
    AGENT_METRICS.get_or_init(|| {
        AgentMetrics::register().expect("agent metrics register once in the default registry")
    })
}
