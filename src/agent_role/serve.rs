//! The agent role's side of a connection: HTTP/2 server on the stream it dialled. Each stream
//! is a scrape of one of its exporters, forwarded exactly as the tunnel forwards one (the same
//! `Forwarder`, targets, TLS, credentials and deadlines), or the tunnel's announcement request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use log::{debug, warn};
use pingora_core::protocols::http::v2::server::{self as h2_server, H2Accept, HttpSession};
use pingora_core::protocols::{Digest, Stream};
use pingora_http::ResponseHeader;
use tokio::sync::watch;

use crate::agent::wire::{self, AnnouncedTarget, Announcement};
use crate::config::DEFAULT_TARGET_NAME;
use crate::listener::headers::scrape_deadline;
use crate::metrics::UpstreamErrorKind;
use crate::proxy::{rewrite, Failure, Forwarder, ScrapeDeadline};
use crate::targets::{SharedTargets, Target};

/// The content type of the agent's own answers.
const TEXT: &str = "text/plain; charset=utf-8";

/// Streams the agent serves at once, at most.
const MAX_STREAMS: u32 = 1024;

/// HTTP/2 pings from the agent: a dead connection is noticed within about twice this.
pub const PING_INTERVAL: Duration = Duration::from_secs(5);

/// What every connection of one agent shares.
pub struct AgentServer {
    /// The agent's name (its certificate's CN), under which a `SERVER_IP` exporter is
    /// announced.
    pub name: String,
    targets: SharedTargets,
    forwarder: Forwarder,
    /// Bumped when the target table is replaced (a reload).
    generation: watch::Receiver<u64>,
    /// The replica each live connection reaches, by connection serial.
    replicas: Mutex<HashMap<String, u64>>,
    /// The number of replicas the tunnel last reported.
    pub replica_count: AtomicUsize,
}

/// One connection's state, as the dialler sees it.
#[derive(Default)]
pub struct Connection {
    /// Tells connections apart.
    pub serial: u64,
    /// The replica this connection reaches, once the tunnel said.
    pub replica: OnceLock<String>,
}

impl AgentServer {
    /// The server of agent `name` for `targets`, forwarding with `forwarder`.
    pub fn new(
        name: String,
        targets: SharedTargets,
        forwarder: Forwarder,
        generation: watch::Receiver<u64>,
    ) -> Self {
        AgentServer {
            name,
            targets,
            forwarder,
            generation,
            replicas: Mutex::new(HashMap::new()),
            replica_count: AtomicUsize::new(1),
        }
    }

    /// The replicas held now.
    pub fn replicas_held(&self) -> usize {
        self.replicas.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// Forgets the replica of connection `conn`, which ended.
    pub fn release(&self, conn: &Connection) {
        if let (Some(replica), Ok(mut held)) = (conn.replica.get(), self.replicas.lock()) {
            if held.get(replica) == Some(&conn.serial) {
                held.remove(replica);
            }
        }
    }

    /// Serves the tunnel's streams on `stream` until the connection ends; an error when the
    /// HTTP/2 handshake failed (with TLS 1.3, also how a refused client certificate shows).
    pub async fn serve(
        self: &Arc<Self>,
        stream: Stream,
        conn: Arc<Connection>,
    ) -> pingora_error::Result<()> {
        let digest = Arc::new(Digest {
            ssl_digest: stream.get_ssl_digest(),
            timing_digest: stream.get_timing_digest(),
            proxy_digest: stream.get_proxy_digest(),
            socket_digest: stream.get_socket_digest(),
        });
        // The tunnel bounds the scrapes in flight (AGENT_MAX_STREAMS); this only bounds a
        // tunnel gone wrong.
        let options = crate::agent::h2::server_options(MAX_STREAMS);
        let mut h2 = h2_server::handshake(stream, Some(options)).await?;
        // Pings of its own: a tunnel that vanished without a FIN is noticed.
        let pinger = h2.ping_pong().map(|mut ping_pong| async move {
            loop {
                tokio::time::sleep(PING_INTERVAL).await;
                let pong = tokio::time::timeout(PING_INTERVAL, ping_pong.ping(h2::Ping::opaque()));
                if !matches!(pong.await, Ok(Ok(_))) {
                    return;
                }
            }
        });
        let pinger = async move {
            match pinger {
                Some(p) => p.await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(pinger);
        loop {
            let accepted = tokio::select! {
                accepted = HttpSession::from_h2_conn(&mut h2, Arc::clone(&digest)) => accepted,
                _ = &mut pinger => {
                    warn!("the tunnel did not answer pings; reconnecting");
                    break;
                }
            };
            match accepted {
                Ok(Some(H2Accept::Session(session))) => {
                    let server = Arc::clone(self);
                    let conn = Arc::clone(&conn);
                    tokio::spawn(async move { server.answer(session, &conn).await });
                }
                Ok(Some(H2Accept::Rejected)) => continue,
                Ok(None) => break,
                Err(e) => {
                    debug!("connection to the tunnel ended: {e}");
                    break;
                }
            }
        }
        self.release(&conn);
        Ok(())
    }

    /// Answers one stream.
    async fn answer(&self, mut session: HttpSession, conn: &Connection) {
        let start = Instant::now();
        if session.req_header().uri.path() == wire::ANNOUNCE_PATH {
            return self.announce(session, conn).await;
        }
        let name = session
            .req_header()
            .headers
            .get(&wire::TARGET_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let table = self.targets.load();
        let target = table.get(&name).or_else(|| {
            (name == self.name)
                .then(|| table.get(DEFAULT_TARGET_NAME))
                .flatten()
        });
        let Some(target) = target.cloned() else {
            drop(table);
            let body = format!("404 Not Found: this agent serves no exporter named {name:?}\n");
            return respond(&mut session, 404, body, TEXT, None).await;
        };
        drop(table);
        let limit = scrape_deadline(session.req_header(), target.timeout);
        let result = self.forward(&mut session, &target, start, limit).await;
        if let Err(e) = result {
            let failure = Failure::of(&e);
            debug!("scrape of {} failed: {e}", target.name);
            if session.response_written().is_none() && failure.status != crate::proxy::CLIENT_CLOSED
            {
                let body = format!("{} {}\n", failure.status, failure.reason());
                let kind = failure.upstream.unwrap_or(UpstreamErrorKind::Other);
                respond(&mut session, failure.status, body, TEXT, Some(kind)).await;
            } else {
                // Mid-body: reset the stream, so the tunnel sees a cut answer, not a short one.
                session.shutdown();
            }
        }
    }

    /// Forwards one scrape to `target`, as the tunnel's proxy port would.
    async fn forward(
        &self,
        session: &mut HttpSession,
        target: &Arc<Target>,
        start: Instant,
        limit: Duration,
    ) -> pingora_error::Result<()> {
        let path = session
            .req_header()
            .uri
            .path_and_query()
            .map(|pq| pq.as_str().to_string());
        self.forwarder
            .forward(
                session,
                &target.upstream,
                ScrapeDeadline { start, limit },
                rewrite::ScrapeRequest {
                    target,
                    forwarded_path: path.as_deref(),
                    now: start,
                    strip_client_auth: false,
                    // Added by the tunnel for the agent link only.
                    hop_fields: std::slice::from_ref(&wire::TARGET_HEADER),
                },
            )
            .await
    }

    /// The tunnel's announcement request: refused `409` when this agent holds a connection
    /// to the same replica already, else answered with the exporters, at once or when they
    /// change.
    async fn announce(&self, mut session: HttpSession, conn: &Connection) {
        let header = |name: &http::HeaderName| -> Option<String> {
            session
                .req_header()
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        const REPLICA: http::HeaderName = wire::REPLICA_HEADER;
        const REPLICAS: http::HeaderName = wire::REPLICAS_HEADER;
        let replica = header(&REPLICA).unwrap_or_default();
        if let Some(n) = header(&REPLICAS).and_then(|n| n.parse().ok()) {
            self.replica_count.store(n, Ordering::Relaxed);
        }
        if !self.hold(&replica, conn) {
            let body = format!(
                "409 Conflict: this agent holds a connection to replica {replica:?} already\n"
            );
            return respond(&mut session, 409, body, TEXT, None).await;
        }
        let after = wire::after_generation(session.req_header().uri.query());
        let mut generation = self.generation.clone();
        if after == Some(*generation.borrow()) {
            let changed = generation.wait_for(|g| Some(*g) != after);
            let gone = session.read_body_or_idle(true);
            tokio::select! {
                _ = tokio::time::timeout(wire::ANNOUNCE_HOLD, changed) => {}
                _ = gone => return,
            }
        }
        let announcement = Announcement {
            generation: *generation.borrow(),
            targets: self.announced(),
        };
        let body = serde_json::to_string(&announcement).unwrap_or_default();
        respond(&mut session, 200, body, "application/json", None).await;
    }

    /// Records that `conn` reaches `replica`; `false` when another connection does already.
    fn hold(&self, replica: &str, conn: &Connection) -> bool {
        let mut held = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
        match held.get(replica) {
            Some(serial) if *serial != conn.serial => false,
            _ => {
                held.insert(replica.to_string(), conn.serial);
                let _ = conn.replica.set(replica.to_string());
                true
            }
        }
    }

    /// The exporters as announced: a `SERVER_IP` exporter under the agent's own name.
    fn announced(&self) -> Vec<AnnouncedTarget> {
        self.targets
            .load()
            .iter()
            .map(|t| AnnouncedTarget {
                name: if &*t.name == DEFAULT_TARGET_NAME {
                    self.name.clone()
                } else {
                    t.name.to_string()
                },
                address: t.description.clone(),
                labels: t
                    .labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            })
            .collect()
    }
}

/// Answers `status` with `body` of `content_type`; a failed scrape's `kind` goes in the
/// failure header for the tunnel to count.
async fn respond(
    session: &mut HttpSession,
    status: u16,
    body: String,
    content_type: &str,
    kind: Option<UpstreamErrorKind>,
) {
    let Ok(mut header) = ResponseHeader::build(status, Some(3)) else {
        return;
    };
    let _ = header.insert_header(CONTENT_TYPE, content_type);
    let _ = header.insert_header(http::header::CONTENT_LENGTH, body.len());
    if let Some(kind) = kind {
        let _ = header.insert_header(wire::FAILURE_HEADER, kind.as_str());
    }
    if session
        .write_response_header(Box::new(header), false)
        .is_ok()
    {
        let _ = session.write_body(Bytes::from(body), true).await;
    }
}
