//! Agent mode on the metrics port: the groups of `/targets` for the names agents serve, this
//! replica's and the other replicas', and `/agents`, what this replica's agents serve, which
//! the other replicas read.

use std::collections::BTreeMap;

use http::{Response, StatusCode};
use serde::Serialize;

use super::{build, text, AdminApp, SOURCE_LABEL};
use crate::agent::peers::{ReplicaAgents, ReplicaTarget};
use crate::targets::Routing;

/// The label of `/targets` groups naming the agent that serves a name (agent mode).
pub const AGENT_LABEL: &str = "__meta_prometheus_tunnel_agent";
/// The label of `/targets` groups naming the replica an agent's name was found on.
pub const REPLICA_LABEL: &str = "__meta_prometheus_tunnel_replica";

/// The group of a name an agent serves (on this replica or another).
#[derive(Serialize)]
pub(super) struct AgentGroup {
    targets: [String; 1],
    labels: BTreeMap<String, String>,
}

impl AdminApp {
    /// The groups of the names agents serve, this replica's and the others', scraped at
    /// `address` by the routing parameter.
    pub(super) fn agent_groups(&self, address: &str, routing: &Routing) -> Vec<AgentGroup> {
        let (Some(agents), Routing::ByParam(param)) = (&self.agents, routing) else {
            return Vec::new();
        };
        let group = |name: &str, agent: &str, replica: &str, own: &BTreeMap<String, String>| {
            let mut labels = own.clone();
            labels.insert(format!("__param_{param}"), name.to_string());
            if self.proxy_tls {
                labels.insert("__scheme__".into(), "https".into());
            }
            labels.insert(AGENT_LABEL.into(), agent.to_string());
            labels.insert(REPLICA_LABEL.into(), replica.to_string());
            labels.insert(SOURCE_LABEL.into(), "agent".into());
            AgentGroup {
                targets: [address.to_string()],
                labels,
            }
        };
        let mut groups: Vec<AgentGroup> = agents
            .directory
            .listing()
            .iter()
            .map(|l| group(&l.name, &l.agent, &agents.replica_id, &l.target.labels))
            .collect();
        if let Some(peers) = &agents.peers {
            groups.extend(peers.listing().iter().map(|r| {
                group(
                    &r.target.name,
                    &r.target.agent,
                    &r.replica,
                    &r.target.labels,
                )
            }));
        }
        groups
    }

    /// `/agents`: this replica's id, its proxy port and the names its agents serve, for the
    /// other replicas (`PEERS`).
    pub(super) fn agents_page(&self) -> Response<Vec<u8>> {
        let Some(agents) = &self.agents else {
            return text(
                StatusCode::NOT_FOUND,
                "not found: agent mode is off (AGENT_PORT)\n",
            );
        };
        let answer = ReplicaAgents {
            replica: agents.replica_id.clone(),
            proxy_port: self.proxy_port,
            targets: agents
                .directory
                .listing()
                .into_iter()
                .map(|l| ReplicaTarget {
                    name: l.name.to_string(),
                    agent: l.agent.to_string(),
                    address: l.target.address,
                    labels: l.target.labels,
                })
                .collect(),
        };
        match serde_json::to_vec(&answer) {
            Ok(body) => build(StatusCode::OK, "application/json", body, false),
            Err(_) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not encode the agents\n",
            ),
        }
    }
}
