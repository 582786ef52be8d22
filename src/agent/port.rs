//! The agent port, tunnel side: an agent's TLS connection (its client certificate checked by
//! Pingora's listener) becomes an HTTP/2 connection on which the tunnel is the client; the
//! agent's announcement is read, its names routed to it, and kept current until the
//! connection ends.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use http::header::HOST;
use log::{debug, info, warn};
use pingora_core::connectors::http::v2::ConnectionRef;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::RequestHeader;

use super::directory::{AgentDirectory, Refusal};
use super::h2::client_handshake;
use super::wire::{self, Announcement};
use crate::config::error::shown;
use crate::listener::SideDoor;
use crate::metrics::{AgentConnection, AgentMetrics};
use crate::reverse::identity;

/// HTTP/2 pings from the tunnel: a dead connection is noticed within about twice this.
pub const PING_INTERVAL: Duration = Duration::from_secs(5);
/// The TLS-to-announcement part of a connection must be done within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Agents remembered for counting reconnects, at most.
const MAX_SEEN: usize = 100_000;

/// How many replicas the tunnel runs as, as last learnt (1 without `PEERS`).
#[derive(Debug)]
pub struct ReplicaCount(AtomicUsize);

impl ReplicaCount {
    /// One replica.
    pub fn one() -> Arc<Self> {
        Arc::new(ReplicaCount(AtomicUsize::new(1)))
    }

    /// The number now.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed).max(1)
    }

    /// Records that the tunnel runs as `n` replicas.
    pub fn set(&self, n: usize) {
        self.0.store(n.max(1), Ordering::Relaxed);
    }
}

/// The agent port's connection handler.
pub struct AgentPort {
    directory: Arc<AgentDirectory>,
    replica_id: Arc<str>,
    replicas: Arc<ReplicaCount>,
    max_streams: usize,
    metrics: &'static AgentMetrics,
    seen: Mutex<HashSet<Arc<str>>>,
}

/// An agent's answer to an announcement request.
enum Answer {
    /// Its exporters.
    Targets(Announcement),
    /// It holds a connection to this replica already.
    Duplicate,
}

impl AgentPort {
    /// The handler for agents of `directory`; this replica is `replica_id`, one of `replicas`.
    pub fn new(
        directory: Arc<AgentDirectory>,
        replica_id: &str,
        replicas: Arc<ReplicaCount>,
        max_streams: usize,
        metrics: &'static AgentMetrics,
    ) -> Self {
        AgentPort {
            directory,
            replica_id: Arc::from(replica_id),
            replicas,
            max_streams,
            metrics,
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// Asks the agent for its exporters: at once without `after`, else when they change.
    async fn announcement(
        &self,
        conn: &ConnectionRef,
        agent: &str,
        after: Option<u64>,
    ) -> Result<Answer> {
        let Some(mut stream) = conn.spawn_stream().await? else {
            return Error::e_explain(ErrorType::H2Error, "the agent's connection takes no stream");
        };
        let path = match after {
            Some(g) => format!("{}?after={g}", wire::ANNOUNCE_PATH),
            None => wire::ANNOUNCE_PATH.to_string(),
        };
        let mut req = RequestHeader::build("GET", path.as_bytes(), Some(3))?;
        req.insert_header(HOST, agent)?;
        req.insert_header(wire::REPLICA_HEADER, &*self.replica_id)?;
        req.insert_header(wire::REPLICAS_HEADER, self.replicas.get().to_string())?;
        stream.write_request_header(Box::new(req), true)?;
        // Held by the agent for up to ANNOUNCE_HOLD; more than that is a dead agent.
        stream.read_timeout = Some(wire::ANNOUNCE_HOLD + HANDSHAKE_TIMEOUT);
        stream.read_response_header().await?;
        let status = stream.response_header().map_or(0, |h| h.status.as_u16());
        if status == 409 {
            return Ok(Answer::Duplicate);
        }
        let mut body = BytesMut::new();
        while let Some(piece) = stream.read_response_body().await? {
            if body.len() + piece.len() > wire::MAX_ANNOUNCEMENT {
                return Error::e_explain(
                    ErrorType::InvalidHTTPHeader,
                    format!("an announcement over {} bytes", wire::MAX_ANNOUNCEMENT),
                );
            }
            body.extend_from_slice(&piece);
        }
        if status != 200 {
            return Error::e_explain(
                ErrorType::InvalidHTTPHeader,
                format!("the announcement was answered {status}"),
            );
        }
        serde_json::from_slice(&body)
            .map(Answer::Targets)
            .map_err(|e| {
                Error::explain(
                    ErrorType::InvalidHTTPHeader,
                    format!("an announcement that is not JSON of the expected shape: {e}"),
                )
            })
    }

    /// Counts a reconnect when `name` was connected before.
    fn count_reconnect(&self, name: &Arc<str>) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if !seen.insert(Arc::clone(name)) {
            self.metrics.reconnects.inc();
        } else if seen.len() > MAX_SEEN {
            seen.clear();
        }
    }
}

/// The agent's name: its certificate's first subject CN, when it is one a target could have
/// (it goes in log lines, labels and the `Host` of the agent's streams).
fn agent_name(stream: &Stream) -> Option<String> {
    let der = stream.get_ssl()?.peer_certificate_der()?;
    identity::common_name(der).filter(|cn| crate::config::targets::valid_name(cn))
}

#[async_trait]
impl SideDoor for AgentPort {
    async fn enter(&self, stream: Stream, shutdown: ShutdownWatch) {
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().map(|a| a.to_string()))
            .unwrap_or_default();
        let Some(name) = agent_name(&stream) else {
            warn!("agent connection from {peer} refused: its certificate has no subject CN to name it, or one that is not a name (1-128 letters, digits, '.', '_', '-', '~')");
            self.metrics.connection(AgentConnection::Unnamed);
            return;
        };
        let name: Arc<str> = Arc::from(name.as_str());
        // One more stream for the announcement that is always open.
        let handshake = client_handshake(stream, self.max_streams + 1, PING_INTERVAL);
        let conn = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                warn!(
                    "agent {} from {peer}: HTTP/2 handshake failed: {e}",
                    shown(&name)
                );
                self.metrics.connection(AgentConnection::HandshakeFailed);
                return;
            }
            Err(_) => {
                warn!(
                    "agent {} from {peer}: no HTTP/2 handshake within {HANDSHAKE_TIMEOUT:?}",
                    shown(&name)
                );
                self.metrics.connection(AgentConnection::HandshakeFailed);
                return;
            }
        };
        let first = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.announcement(&conn, &name, None));
        let first = match first.await {
            Ok(Ok(Answer::Targets(first))) => first,
            Ok(Ok(Answer::Duplicate)) => {
                debug!(
                    "agent {} holds a connection to this replica already; closing the newer one",
                    shown(&name)
                );
                self.metrics.connection(AgentConnection::DuplicateReplica);
                return;
            }
            Ok(Err(e)) => {
                warn!(
                    "agent {} from {peer}: its announcement could not be read: {e}",
                    shown(&name)
                );
                self.metrics.connection(AgentConnection::BadAnnouncement);
                return;
            }
            Err(_) => {
                warn!(
                    "agent {} from {peer}: no announcement within {HANDSHAKE_TIMEOUT:?}",
                    shown(&name)
                );
                self.metrics.connection(AgentConnection::BadAnnouncement);
                return;
            }
        };
        let link = match self.directory.connect(&name, conn.clone()) {
            Ok(link) => link,
            Err(Refusal::TooManyAgents) => {
                warn!(
                    "agent {} from {peer} refused: AGENT_MAX_AGENTS agents are connected",
                    shown(&name)
                );
                self.metrics.connection(AgentConnection::TooManyAgents);
                return;
            }
        };
        self.metrics.connection(AgentConnection::Accepted);
        self.count_reconnect(&name);
        info!(
            "agent {} connected from {peer}: {} exporters",
            shown(&name),
            first.targets.len()
        );
        let mut generation = first.generation;
        self.directory.announce(&link, first.targets);
        let mut shutdown = shutdown;
        loop {
            if conn.is_closed() || conn.is_shutting_down() {
                break;
            }
            tokio::select! {
                _ = shutdown.changed() => break,
                answer = self.announcement(&conn, &name, Some(generation)) => match answer {
                    Ok(Answer::Targets(next)) => {
                        if next.generation != generation {
                            info!("agent {} now serves {} exporters", shown(&name), next.targets.len());
                            generation = next.generation;
                            self.directory.announce(&link, next.targets);
                        }
                    }
                    Ok(Answer::Duplicate) => break,
                    Err(e) => {
                        if conn.is_closed() || conn.ping_timedout() {
                            break;
                        }
                        debug!("agent {}: announcement failed ({e}); asking again", shown(&name));
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
            }
        }
        self.directory.disconnect(&link);
        self.metrics.disconnects.inc();
        info!(
            "agent {} disconnected{}",
            shown(&name),
            if conn.ping_timedout() {
                " (no answer to pings)"
            } else {
                ""
            }
        );
    }
}
