//! The agent role's dialler: keeps a connection to the tunnel's agent port (TLS with the
//! agent's client certificate, through a forward proxy when one is set, exactly as an https
//! exporter is reached), and one to each replica when the tunnel runs as several: it dials
//! the one address again until every replica holds a connection (a dial that lands on a
//! replica it holds already is refused by the agent and closed). A failed dial is retried with
//! exponential backoff and jitter.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use log::{info, warn};
use pingora_core::connectors::TransportConnector;
use pingora_core::protocols::ALPN;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_error::Result;
use tokio::sync::Notify;

use super::serve::{AgentServer, Connection};
use crate::upstream::Upstream;

/// The first retry's delay, doubled after each failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The first pause after a dial that reached a replica the agent holds already.
const FIRST_DUPLICATE_BACKOFF: Duration = Duration::from_millis(50);
/// The longest delay between dials.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The longest a dial (TCP, proxy, TLS) may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// A random fraction of `d` between 0.5 and 1.5 times it, so agents that lost the tunnel at the
/// same moment do not come back at the same moment.
fn jittered(d: Duration) -> Duration {
    let r = (uuid::Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0;
    d.mul_f64(0.5 + r)
}

/// The background service that keeps the agent connected.
pub struct Dialer {
    server: Arc<AgentServer>,
    tunnel: Upstream,
    transport: TransportConnector,
    /// Where the tunnel is, for log lines.
    address: String,
}

impl Dialer {
    /// A dialler of `tunnel` (the agent port as an https upstream) for `server`.
    pub fn new(server: Arc<AgentServer>, tunnel: Upstream, address: String) -> Self {
        Dialer {
            server,
            tunnel,
            transport: TransportConnector::new(None),
            address,
        }
    }

    /// One connection to the tunnel, TLS done.
    async fn dial(&self) -> Result<pingora_core::protocols::Stream> {
        let mut peer = self.tunnel.peer(DIAL_TIMEOUT).await?;
        peer.options.alpn = ALPN::H2;
        self.transport.new_stream(&*peer).await
    }
}

#[async_trait]
impl BackgroundService for Dialer {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let live = Arc::new(AtomicUsize::new(0));
        let ended = Arc::new(Notify::new());
        let mut backoff = FIRST_BACKOFF;
        let mut serial = 0;
        let mut duplicate_backoff = FIRST_DUPLICATE_BACKOFF;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let wanted = self.server.replica_count.load(Ordering::Relaxed).max(1);
            if live.load(Ordering::Relaxed) >= wanted {
                tokio::select! {
                    _ = ended.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = shutdown.changed() => return,
                }
                continue;
            }
            let stream = tokio::select! {
                dialled = self.dial() => dialled,
                _ = shutdown.changed() => return,
            };
            let stream = match stream {
                Ok(stream) => stream,
                Err(e) => {
                    let wait = jittered(backoff);
                    warn!(
                        "cannot reach the tunnel at {}: {e}; trying again in {wait:?}",
                        self.address
                    );
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.changed() => return,
                    }
                    continue;
                }
            };
            serial += 1;
            let conn = Arc::new(Connection {
                serial,
                ..Connection::default()
            });
            live.fetch_add(1, Ordering::Relaxed);
            let (server, live2, ended2, conn2) = (
                Arc::clone(&self.server),
                Arc::clone(&live),
                Arc::clone(&ended),
                Arc::clone(&conn),
            );
            let (done_tx, mut done) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                let served = server.serve(stream, conn2).await;
                live2.fetch_sub(1, Ordering::Relaxed);
                ended2.notify_one();
                let _ = done_tx.send(served);
            });
            // Wait until the tunnel says which replica this is, or drops the connection as one
            // this agent holds already; then dial again if replicas are missing.
            let learnt = async {
                while conn.replica.get().is_none() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            };
            tokio::select! {
                _ = tokio::time::timeout(DIAL_TIMEOUT, learnt) => {}
                served = &mut done => {
                    let wait = match served {
                        Ok(Err(e)) => {
                            // Refused at the handshake: a certificate the tunnel does not trust,
                            // or no agent port there. Retried, ever later.
                            let wait = jittered(backoff);
                            warn!("cannot reach the tunnel at {}: {e}; trying again in {wait:?}", self.address);
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                            wait
                        }
                        _ => {
                            // Most likely a replica held already (the Service sent the dial to
                            // one this agent holds): another dial soon, later while it repeats.
                            let wait = jittered(duplicate_backoff);
                            duplicate_backoff = (duplicate_backoff * 2).min(MAX_BACKOFF);
                            wait
                        }
                    };
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.changed() => return,
                    }
                    continue;
                }
            }
            backoff = FIRST_BACKOFF;
            duplicate_backoff = FIRST_DUPLICATE_BACKOFF;
            if let Some(replica) = conn.replica.get() {
                info!(
                    "connected to the tunnel at {} (replica {replica}, {} of {} held)",
                    self.address,
                    self.server.replicas_held(),
                    self.server.replica_count.load(Ordering::Relaxed).max(1)
                );
            }
        }
    }
}
