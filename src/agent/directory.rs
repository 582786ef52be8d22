//! Which agent serves which exporter name: the agents connected to this replica, what each
//! announced, and the names whose agent went away (answered `503` naming it, at once).
//!
//! A scrape looks its name up in an immutable map swapped whole when an agent connects,
//! announces or leaves (rare), so the hot path takes no lock.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use log::{info, warn};
use pingora_core::connectors::http::v2::ConnectionRef;

use super::wire::AnnouncedTarget;
use crate::config::error::shown;
use crate::config::targets;
use crate::metrics::{AgentMetrics, TargetMetrics};
use crate::targets::SharedTargets;

/// Names of agents whose departure is remembered, at most; past it the oldest are forgotten
/// (their names then get `404`, like names never seen).
const MAX_REMEMBERED: usize = 100_000;

/// One agent's connection to this replica.
pub struct AgentLink {
    /// The agent's name: its certificate's subject CN.
    pub name: Arc<str>,
    /// The HTTP/2 connection, on which the tunnel opens a stream per scrape.
    pub conn: ConnectionRef,
    /// Tells this connection from a later one of the same agent.
    serial: u64,
    /// Scrapes in flight on it.
    in_flight: AtomicUsize,
    /// `AGENT_MAX_STREAMS`.
    max_streams: usize,
}

impl AgentLink {
    /// Claims a stream slot for one scrape, or `None` when `AGENT_MAX_STREAMS` are in flight.
    pub fn claim(self: &Arc<Self>) -> Option<StreamSlot> {
        let taken = self.in_flight.fetch_add(1, Ordering::AcqRel);
        if taken >= self.max_streams {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(StreamSlot(Arc::clone(self)))
    }
}

/// One scrape's claim on its agent's streams, released when dropped.
pub struct StreamSlot(Arc<AgentLink>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where a name's scrapes go.
#[derive(Clone)]
pub struct AgentRoute {
    /// The agent's connection.
    pub link: Arc<AgentLink>,
    /// The name's series.
    pub metrics: Arc<TargetMetrics>,
}

/// A name looked up.
pub enum Lookup {
    /// Served by a connected agent.
    Agent(AgentRoute),
    /// Its agent is not connected (to this replica): the agent's name, and the name's series.
    Disconnected(Arc<str>, Arc<TargetMetrics>),
    /// Never announced here.
    Unknown,
}

/// A target as `/targets` lists it.
pub struct Listed {
    /// The exporter's name.
    pub name: Arc<str>,
    /// What the agent announced of it.
    pub target: AnnouncedTarget,
    /// The agent serving it.
    pub agent: Arc<str>,
    /// Its series and record of scrapes.
    pub metrics: Arc<TargetMetrics>,
}

/// Why an agent's connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `AGENT_MAX_AGENTS` agents are connected.
    TooManyAgents,
}

/// The agents connected to this replica and the names they serve.
pub struct AgentDirectory {
    routes: ArcSwap<HashMap<Arc<str>, AgentRoute>>,
    state: Mutex<State>,
    max_agents: usize,
    max_streams: usize,
    /// The configured targets, whose names agents cannot take.
    configured: SharedTargets,
    metrics: &'static AgentMetrics,
}

#[derive(Default)]
struct State {
    /// Connected agents by name, with what each announced.
    links: HashMap<Arc<str>, (Arc<AgentLink>, Vec<AnnouncedTarget>)>,
    /// Each name ever announced: its agent and its series.
    names: HashMap<Arc<str>, (Arc<str>, Arc<TargetMetrics>)>,
    next_serial: u64,
}

impl AgentDirectory {
    /// An empty directory: at most `max_agents` agents, `max_streams` scrapes in flight on
    /// each; names that `configured` holds stay the configured targets'.
    pub fn new(
        max_agents: usize,
        max_streams: usize,
        configured: SharedTargets,
        metrics: &'static AgentMetrics,
    ) -> Self {
        AgentDirectory {
            routes: ArcSwap::from_pointee(HashMap::new()),
            state: Mutex::new(State::default()),
            max_agents,
            max_streams,
            configured,
            metrics,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not take agent mode down with it: the state stays usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Looks `name` up; no lock taken.
    pub fn lookup(&self, name: &str) -> Lookup {
        if let Some(route) = self.routes.load().get(name) {
            return Lookup::Agent(route.clone());
        }
        match self.state().names.get(name) {
            Some((agent, metrics)) => Lookup::Disconnected(Arc::clone(agent), Arc::clone(metrics)),
            None => Lookup::Unknown,
        }
    }

    /// Registers `conn` as agent `name`'s connection; a connection it already had is
    /// superseded (its agent restarted, or the old connection is dead and not yet noticed).
    pub fn connect(&self, name: &str, conn: ConnectionRef) -> Result<Arc<AgentLink>, Refusal> {
        let mut state = self.state();
        let name: Arc<str> = Arc::from(name);
        let replaced = state.links.contains_key(&name);
        if !replaced && state.links.len() >= self.max_agents {
            return Err(Refusal::TooManyAgents);
        }
        state.next_serial += 1;
        let link = Arc::new(AgentLink {
            name: Arc::clone(&name),
            conn,
            serial: state.next_serial,
            in_flight: AtomicUsize::new(0),
            max_streams: self.max_streams,
        });
        if let Some((old, _)) = state.links.insert(name, (Arc::clone(&link), Vec::new())) {
            info!(
                "agent {} connected again; its older connection is closed",
                shown(&old.name)
            );
            old.conn.mark_shutdown();
        }
        self.metrics.connected.set(state.links.len() as i64);
        Ok(link)
    }

    /// Records what `link`'s agent announced, and routes its names to it. A name a
    /// configured target or another agent holds is refused, with a warning, and so is one
    /// that could not be a target's (it goes in `?target=` and in labels).
    pub fn announce(&self, link: &Arc<AgentLink>, targets: Vec<AnnouncedTarget>) {
        let targets = acceptable(&link.name, targets);
        let mut state = self.state();
        match state.links.get_mut(&link.name) {
            Some((current, announced)) if current.serial == link.serial => *announced = targets,
            _ => return,
        }
        self.rebuild(&mut state);
    }

    /// Removes `link` (if it is still its agent's connection) and its names' routes.
    pub fn disconnect(&self, link: &Arc<AgentLink>) {
        let mut state = self.state();
        if !matches!(state.links.get(&link.name), Some((current, _)) if current.serial == link.serial)
        {
            return;
        }
        state.links.remove(&link.name);
        self.metrics.connected.set(state.links.len() as i64);
        self.rebuild(&mut state);
    }

    /// Rebuilds the routes from the agents' announcements, older connections first.
    fn rebuild(&self, state: &mut State) {
        let configured = self.configured.load();
        let mut links: Vec<&(Arc<AgentLink>, Vec<AnnouncedTarget>)> =
            state.links.values().collect();
        links.sort_by_key(|(link, _)| link.serial);
        let mut routes: HashMap<Arc<str>, AgentRoute> = HashMap::new();
        let mut claimed: Vec<(Arc<str>, Arc<str>)> = Vec::new();
        for (link, announced) in links {
            for target in announced {
                if configured.get(&target.name).is_some() {
                    warn!(
                        "agent {} announced {}, a configured target's name; it stays the configured target's",
                        shown(&link.name),
                        shown(&target.name)
                    );
                    continue;
                }
                if let Some(holder) = routes.get(target.name.as_str()) {
                    warn!(
                        "agent {} announced {}, which agent {} serves already; scrapes stay with the latter",
                        shown(&link.name),
                        shown(&target.name),
                        shown(&holder.link.name)
                    );
                    continue;
                }
                let name: Arc<str> = Arc::from(target.name.as_str());
                claimed.push((Arc::clone(&name), Arc::clone(&link.name)));
                let metrics = state
                    .names
                    .get(&name)
                    .map(|(_, m)| Arc::clone(m))
                    .unwrap_or_else(|| Arc::new(TargetMetrics::new(&name)));
                routes.insert(
                    name,
                    AgentRoute {
                        link: Arc::clone(link),
                        metrics,
                    },
                );
            }
        }
        for (name, agent) in claimed {
            if let Some(route) = routes.get(&name) {
                state
                    .names
                    .insert(name, (agent, Arc::clone(&route.metrics)));
            }
        }
        if state.names.len() > MAX_REMEMBERED {
            state.names.retain(|name, _| routes.contains_key(name));
        }
        self.routes.store(Arc::new(routes));
    }

    /// Every name served by a connected agent, for `/targets`, sorted by name.
    pub fn listing(&self) -> Vec<Listed> {
        let state = self.state();
        let routes = self.routes.load();
        let mut listed: Vec<Listed> = state
            .links
            .values()
            .flat_map(|(link, announced)| {
                announced.iter().filter_map(|t| {
                    let route = routes
                        .get(t.name.as_str())
                        .filter(|r| r.link.serial == link.serial)?;
                    Some(Listed {
                        name: Arc::from(t.name.as_str()),
                        target: t.clone(),
                        agent: Arc::clone(&link.name),
                        metrics: Arc::clone(&route.metrics),
                    })
                })
            })
            .collect();
        listed.sort_by(|a, b| a.name.cmp(&b.name));
        listed
    }

    /// The connected agents' names, sorted.
    pub fn agents(&self) -> Vec<Arc<str>> {
        let mut names: Vec<Arc<str>> = self.state().links.keys().cloned().collect();
        names.sort();
        names
    }
}

/// The announced targets whose names and labels a configured target could have; the others
/// are left out, each with a warning naming `agent`.
fn acceptable(agent: &str, targets: Vec<AnnouncedTarget>) -> Vec<AnnouncedTarget> {
    targets
        .into_iter()
        .filter(|t| {
            let bad_label = t.labels.keys().find(|k| !targets::valid_label_name(k));
            match (targets::valid_name(&t.name), bad_label) {
                (true, None) => true,
                (false, _) => {
                    warn!(
                        "agent {} announced {}, which is not a target name (1-{} letters, digits, '.', '_', '-', '~'); left out",
                        shown(agent),
                        shown(&t.name),
                        targets::MAX_NAME_LEN
                    );
                    false
                }
                (true, Some(label)) => {
                    warn!(
                        "agent {} announced {} with label {}, which is not a label name; left out",
                        shown(agent),
                        shown(&t.name),
                        shown(label)
                    );
                    false
                }
            }
        })
        .collect()
}

/// Labels of a listed target for `/targets`: its own, then the agent's.
pub fn listed_labels(listed: &Listed) -> BTreeMap<String, String> {
    let mut labels = listed.target.labels.clone();
    labels.insert(
        "__meta_prometheus_tunnel_agent".to_string(),
        listed.agent.to_string(),
    );
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announced(name: &str, label: &str) -> AnnouncedTarget {
        AnnouncedTarget {
            name: name.to_string(),
            address: "127.0.0.1:9100".to_string(),
            labels: [(label.to_string(), "v".to_string())].into(),
        }
    }

    #[test]
    fn names_and_labels_a_target_could_not_have_are_left_out() {
        let kept = acceptable(
            "site-a",
            vec![
                announced("node-1", "site"),
                announced("node 2", "site"),
                announced("node-3", "__meta_x"),
                announced("", "site"),
                announced(&"n".repeat(200), "site"),
            ],
        );
        let names: Vec<&str> = kept.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["node-1"]);
    }
}
