//! The other replicas of a tunnel that serves agents (`PEERS`): which agents' names each
//! serves, learnt every [`REFRESH_INTERVAL`] from their metrics port (`/agents`), so that a
//! scrape for a name another replica holds is forwarded there once (a header marks it, and a
//! forwarded scrape is never forwarded again), and `/targets` on any replica lists them all.
//! The number of replicas found is what agents are told, so each keeps one connection to
//! every replica.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use log::{debug, info};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::directory::AgentDirectory;
use super::port::ReplicaCount;
use crate::config::Peers;
use crate::metrics::TargetMetrics;
use crate::upstream::idle::IdleConnections;

/// How often the replicas are listed and asked for their agents' names.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(2);
/// The longest one replica's answer may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest answer read from a replica.
const MAX_ANSWER: usize = 32 << 20;

/// What a replica serves, as its metrics port's `/agents` says.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReplicaAgents {
    /// Its id.
    pub replica: String,
    /// Its proxy port, where scrapes are forwarded.
    pub proxy_port: u16,
    /// The names its connected agents serve.
    pub targets: Vec<ReplicaTarget>,
}

/// One name a replica's agent serves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaTarget {
    /// The exporter's name.
    pub name: String,
    /// The agent serving it.
    pub agent: String,
    /// The exporter's address, as the agent reaches it.
    pub address: String,
    /// Its labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A name another replica serves.
pub struct PeerRoute {
    /// That replica's proxy port.
    pub proxy: SocketAddr,
    /// That replica's id.
    pub replica: Arc<str>,
    /// What it said of the name.
    pub target: ReplicaTarget,
    /// The name's series on this replica.
    pub metrics: Arc<TargetMetrics>,
}

/// The other replicas and the names they serve.
pub struct PeerDirectory {
    peers: Peers,
    own_id: Arc<str>,
    routes: ArcSwap<HashMap<Arc<str>, Arc<PeerRoute>>>,
    replicas: Arc<ReplicaCount>,
    /// Kept-alive connections to the replicas' proxy ports.
    pub idle: IdleConnections,
}

impl PeerDirectory {
    /// The replicas `peers` names; this one is `own_id`.
    pub fn new(peers: Peers, own_id: &str, replicas: Arc<ReplicaCount>) -> Self {
        PeerDirectory {
            peers,
            own_id: Arc::from(own_id),
            routes: ArcSwap::from_pointee(HashMap::new()),
            replicas,
            idle: IdleConnections::default(),
        }
    }

    /// This replica's id.
    pub fn own_id(&self) -> &str {
        &self.own_id
    }

    /// The replica that serves `name`, if another does.
    pub fn route(&self, name: &str) -> Option<Arc<PeerRoute>> {
        self.routes.load().get(name).cloned()
    }

    /// Every name other replicas serve, sorted.
    pub fn listing(&self) -> Vec<Arc<PeerRoute>> {
        let mut listed: Vec<Arc<PeerRoute>> = self.routes.load().values().cloned().collect();
        listed.sort_by(|a, b| a.target.name.cmp(&b.target.name));
        listed
    }

    /// Lists the replicas and asks each for its names.
    async fn refresh(&self, local: &AgentDirectory) {
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for (host, port) in &self.peers.entries {
            match tokio::net::lookup_host((host.as_str(), port.get())).await {
                Ok(found) => addrs.extend(found),
                Err(e) => debug!("PEERS entry {host}:{port} did not resolve: {e}"),
            }
        }
        addrs.sort();
        addrs.dedup();
        if addrs.is_empty() {
            return;
        }
        let before = self.replicas.get();
        self.replicas.set(addrs.len());
        if before != self.replicas.get() {
            info!("{} replicas found in PEERS", self.replicas.get());
        }
        let answers = futures::future::join_all(addrs.iter().map(|addr| ask(*addr))).await;
        let old = self.routes.load();
        let mut routes = HashMap::new();
        for (addr, answer) in addrs.iter().zip(answers) {
            let Some(answer) = answer else { continue };
            if answer.replica == *self.own_id {
                continue;
            }
            let replica: Arc<str> = Arc::from(answer.replica.as_str());
            let proxy = SocketAddr::new(addr.ip(), answer.proxy_port);
            for target in answer.targets {
                if matches!(
                    local.lookup(&target.name),
                    super::directory::Lookup::Agent(_)
                ) {
                    continue;
                }
                let name: Arc<str> = Arc::from(target.name.as_str());
                let metrics = old
                    .get(&name)
                    .map(|r| Arc::clone(&r.metrics))
                    .unwrap_or_else(|| Arc::new(TargetMetrics::new(&name)));
                routes.entry(name).or_insert_with(|| {
                    Arc::new(PeerRoute {
                        proxy,
                        replica: Arc::clone(&replica),
                        target,
                        metrics,
                    })
                });
            }
        }
        self.routes.store(Arc::new(routes));
    }
}

/// `GET /agents` of the replica whose metrics port is `addr`; `None` when it does not answer
/// in time or in the expected shape.
async fn ask(addr: SocketAddr) -> Option<ReplicaAgents> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        stream
            .write_all(b"GET /agents HTTP/1.1\r\nHost: peer\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut answer = Vec::with_capacity(4096);
        let mut piece = [0u8; 16 * 1024];
        // Until the header is complete, then until the body's length is in.
        let (start, length) = loop {
            let n = stream.read(&mut piece).await.ok()?;
            if n == 0 {
                return None;
            }
            answer.extend_from_slice(&piece[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(start) = response.parse(&answer).ok()? {
                if response.code != Some(200) {
                    return None;
                }
                let length = response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
                    .and_then(|v| v.trim().parse::<usize>().ok())?;
                break (start, length);
            }
            if answer.len() > 64 * 1024 {
                return None;
            }
        };
        if length > MAX_ANSWER {
            return None;
        }
        while answer.len() < start + length {
            let n = stream.read(&mut piece).await.ok()?;
            if n == 0 {
                return None;
            }
            answer.extend_from_slice(&piece[..n]);
        }
        serde_json::from_slice(&answer[start..start + length]).ok()
    };
    tokio::time::timeout(ASK_TIMEOUT, exchange)
        .await
        .ok()
        .flatten()
}

/// The background service that keeps the peer directory current.
pub struct PeerWatcher {
    peers: Arc<PeerDirectory>,
    local: Arc<AgentDirectory>,
}

impl PeerWatcher {
    /// A watcher that refreshes `peers`, leaving out names `local` serves.
    pub fn new(peers: Arc<PeerDirectory>, local: Arc<AgentDirectory>) -> Self {
        PeerWatcher { peers, local }
    }
}

#[async_trait]
impl BackgroundService for PeerWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(REFRESH_INTERVAL);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => self.peers.refresh(&self.local).await,
            }
        }
    }
}
