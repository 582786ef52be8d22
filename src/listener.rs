//! The proxy port's client connections: a Pingora `ServerApp` that owns each connection from
//! accept to close, and hands every request it reads to a [`RequestHandler`].
//!
//! Why the tunnel runs this loop itself rather than Pingora's HTTP app: every connection counts
//! against `MAX_CONNECTIONS` from the moment it is accepted, TLS handshake included; one
//! deadline covers a request header however slowly it trickles (Pingora times each read); an
//! idle connection holds no buffer (`header.rs`, `client_stream.rs`); pipelined requests are
//! answered in order; and a request the HTTP parser refuses still reaches the handler, to be
//! answered and counted like any other.
//!
//! For one connection:
//! 1. admitted in Pingora's accept loop (`gate.rs`), or answered 503, or closed at once;
//! 2. with TLS, the handshake, within `HEADER_READ_TIMEOUT` of the accept;
//! 3. wait for a request's first bytes (the first request: by that same deadline; later ones:
//!    up to `IDLE_TIMEOUT`, then `HEADER_READ_TIMEOUT` from their first byte for the rest);
//! 4. the header is parsed (`request.rs`) into a [`ClientExchange`] (`exchange.rs`), and the
//!    handler answers it;
//! 5. if the connection may carry another request, go to 3 with any pipelined bytes.

pub mod capacity;
pub mod client_stream;
pub mod exchange;
pub mod gate;
pub mod header;
pub mod headers;
pub mod last_request;
pub mod request;
pub mod respond;
pub mod scrape_client;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::BytesMut;
use log::debug;
use pingora_core::apps::ServerApp;
use pingora_core::listeners::tls::Acceptor;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use pingora_error::Error;
use tokio::io::AsyncWriteExt;

use crate::config::ClientLimits;
use crate::metrics::{ConnectionRejection, PortMetrics};
use client_stream::ClientStream;
pub use exchange::ClientExchange;
use gate::{ConnectionGate, ConnectionSlot};
use header::{HeaderDeadline, HeaderFailure};
use last_request::LastRequest;

/// What the proxy port does with the requests the listener reads.
#[async_trait]
pub trait RequestHandler: Send + Sync + 'static {
    /// Answers the request `session` carries (its header read at `started`), and counts it;
    /// returns when the answer was done, from which the connection's idle time counts.
    async fn serve(&self, session: &mut ClientExchange, started: Instant) -> Instant;

    /// Answers, where someone still listens, and counts a request whose header could not be
    /// read or parsed, on the `client` connection, which closes afterwards.
    async fn refuse(&self, client: &mut Stream, why: Unreadable, started: Instant);
}

/// Why a request's header could not be read.
#[derive(Debug)]
pub enum Unreadable {
    /// The HTTP parser refused it (a malformed request line, conflicting `Content-Length`s, an
    /// HTTP/2 preface, ...): 400, with the parser's reason.
    Malformed(Box<Error>),
    /// Longer than [`header::MAX_REQUEST_HEADER_BYTES`]: 431.
    TooLarge,
    /// Not complete within `HEADER_READ_TIMEOUT`: 408.
    Timeout,
    /// The client went away mid-header: 499, answered to no one.
    ClientClosed,
}

/// The answer to a connection over the limit.
const OVER_LIMIT: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 49\r\nConnection: close\r\n\r\n503 Service Unavailable: too many connections\r\n\r\n";

/// The proxy port's `ServerApp`: limits, TLS and the HTTP/1 request loop around a handler.
pub struct ProxyPort<H> {
    handler: Arc<H>,
    limits: ClientLimits,
    /// Open connections against `MAX_CONNECTIONS` (or what the machine allows when it is
    /// unset, `capacity.rs`), counted from accept.
    gate: Arc<ConnectionGate>,
    /// TLS on the port, if configured; the handshake runs here, under the limits.
    tls: Option<Acceptor>,
    /// The port's connection counters.
    metrics: &'static PortMetrics,
    /// Another port of the same service and its handler (the agent port), if any.
    side_door: Option<(u16, Arc<dyn SideDoor>)>,
}

/// The handler of a second port served by the proxy port's service, on its threads: agents'
/// connections, whose HTTP/2 streams carry scrapes that arrive on the proxy port, so both
/// ends of a scrape wake the same thread. Pingora's listener did its TLS handshake.
#[async_trait]
pub trait SideDoor: Send + Sync {
    /// Serves one connection until it ends.
    async fn enter(&self, stream: Stream, shutdown: ShutdownWatch);
}

impl<H: RequestHandler> ProxyPort<H> {
    /// Serves `handler` on at most `max_connections` connections limited by `limits`, over TLS
    /// when `tls` is given, counted in `metrics`. The port's Pingora listener must be plain TCP
    /// without L4 buffers, with [`ProxyPort::gate`] as its connection filter.
    pub fn new(
        handler: H,
        limits: ClientLimits,
        max_connections: usize,
        tls: Option<Acceptor>,
        metrics: &'static PortMetrics,
    ) -> Self {
        ProxyPort {
            handler: Arc::new(handler),
            limits,
            gate: ConnectionGate::new(max_connections, metrics),
            tls,
            metrics,
            side_door: None,
        }
    }

    /// Hands connections accepted on local port `port` (another listener of this service) to
    /// `door`. They are not the proxy port's: not counted against `MAX_CONNECTIONS`.
    pub fn set_side_door(&mut self, port: u16, door: Arc<dyn SideDoor>) {
        self.side_door = Some((port, door));
    }

    /// The admission of connections, to run in the listener's accept loop.
    pub fn gate(&self) -> Arc<ConnectionGate> {
        Arc::clone(&self.gate)
    }

    /// The TLS handshake, if any, by `deadline`; `None` when it failed (counted).
    async fn handshake(
        &self,
        stream: ClientStream,
        deadline: tokio::time::Instant,
    ) -> Option<Stream> {
        let Some(acceptor) = &self.tls else {
            return Some(Box::new(stream));
        };
        // Boxed: a plain connection's future need not carry a handshake's state.
        let handshake = Box::pin(acceptor.tls_handshake(stream));
        match tokio::time::timeout_at(deadline, handshake).await {
            Ok(Ok(tls)) => Some(Box::new(tls)),
            Ok(Err(e)) => {
                debug!("TLS handshake failed: {e}");
                self.metrics
                    .connection_rejected(ConnectionRejection::TlsHandshake)
                    .inc();
                None
            }
            Err(_) => {
                debug!("TLS handshake not done within HEADER_READ_TIMEOUT");
                self.metrics
                    .connection_rejected(ConnectionRejection::HeaderTimeout)
                    .inc();
                None
            }
        }
    }

    /// One connection that has its slot, to its close.
    async fn run(self: Arc<Self>, stream: Stream, shutdown: ShutdownWatch, _slot: ConnectionSlot) {
        let first_deadline = tokio::time::Instant::now() + self.limits.header_read_timeout;
        // 2. TLS, under the same deadline as the first request header.
        let Some(stream) = self
            .handshake(ClientStream::new(stream), first_deadline)
            .await
        else {
            return;
        };
        self.serve_connection(stream, first_deadline, shutdown)
            .await;
    }

    /// Requests on one connection until it closes, fails, idles out or the server shuts down.
    /// While it waits for a request, a connection holds only this loop's small state.
    async fn serve_connection(
        &self,
        mut stream: Stream,
        first_deadline: tokio::time::Instant,
        mut shutdown: ShutdownWatch,
    ) {
        let mut carried: Option<BytesMut> = None;
        let mut last = LastRequest::default();
        let mut first = true;
        // When the last answer was done (the clock read that counted it starts the idle time);
        // set by each answer before it is used.
        let mut answered = first_deadline;
        // The connection's one timer for its waits between requests (see `first_bytes`).
        let idle = tokio::time::sleep_until(first_deadline);
        tokio::pin!(idle);
        loop {
            // 3. The first bytes of the next request: pipelined ones, or from the socket.
            let later = HeaderDeadline::After(self.limits.header_read_timeout);
            let (bytes, deadline) = match carried.take() {
                Some(bytes) => (bytes, later),
                None => {
                    if !first {
                        idle.as_mut().reset(answered + self.limits.idle_timeout);
                    }
                    // A request already on its way is served (its connection then closes);
                    // only an idle connection is closed when the server shuts down.
                    let arrived = tokio::select! {
                        biased;
                        arrived = header::first_bytes(&mut stream, idle.as_mut()) => arrived,
                        _ = shutdown.changed() => return,
                    };
                    match arrived {
                        Ok(bytes) if first => (bytes, HeaderDeadline::At(first_deadline)),
                        Ok(bytes) => (bytes, later),
                        Err(HeaderFailure::Idle) if first => {
                            self.metrics
                                .connection_rejected(ConnectionRejection::HeaderTimeout)
                                .inc();
                            debug!("connection closed: no request within HEADER_READ_TIMEOUT");
                            return;
                        }
                        // An idle keep-alive connection, or one the client closed.
                        Err(_) => return,
                    }
                }
            };
            first = false;
            // 4. The request, in a future of its own: allocated while it is served, so that an
            // idle connection does not carry the state of a request in flight.
            let served =
                Box::pin(self.serve_request(stream, bytes, deadline, &shutdown, &mut last)).await;
            match served {
                // 5. On to the next request, if the connection may carry one.
                Some((next, pipelined, done)) => {
                    (stream, carried) = (next, pipelined);
                    answered = done.into();
                }
                None => return,
            }
        }
    }

    /// Reads, parses (or takes from `last`) and answers one request whose first `bytes`
    /// arrived; returns the connection, any pipelined bytes and when the answer was done, if
    /// it may carry another request.
    async fn serve_request(
        &self,
        mut stream: Stream,
        bytes: BytesMut,
        deadline: HeaderDeadline,
        shutdown: &ShutdownWatch,
        last: &mut LastRequest,
    ) -> Option<(Stream, Option<BytesMut>, Instant)> {
        let header = match header::rest_of_header(&mut stream, bytes, deadline).await {
            Ok(header) => header,
            Err(failure) => {
                self.refuse_unread(&mut stream, failure).await;
                close(&mut stream).await;
                return None;
            }
        };
        let started = Instant::now();
        let mut session = match ClientExchange::new(stream, header, last) {
            Ok(session) => session,
            Err((mut client, e)) => {
                self.handler
                    .refuse(&mut client, Unreadable::Malformed(e), started)
                    .await;
                close(&mut client).await;
                return None;
            }
        };
        let done = self.handler.serve(&mut session, started).await;
        if *shutdown.borrow() {
            session.close_after_answer();
        }
        let (stream, pipelined) = session.into_reusable(last).await?;
        Some((stream, pipelined, done))
    }

    /// Counts and answers a request whose header did not arrive whole.
    async fn refuse_unread(&self, client: &mut Stream, failure: HeaderFailure) {
        let started = Instant::now();
        let why = match failure {
            HeaderFailure::TooLarge => Unreadable::TooLarge,
            HeaderFailure::Timeout => {
                self.metrics
                    .connection_rejected(ConnectionRejection::HeaderTimeout)
                    .inc();
                debug!("connection closed: request header not complete within HEADER_READ_TIMEOUT");
                Unreadable::Timeout
            }
            HeaderFailure::ClosedMidHeader => Unreadable::ClientClosed,
            // `rest_of_header` starts from bytes already read: never these.
            HeaderFailure::Idle | HeaderFailure::Closed => return,
        };
        self.handler.refuse(client, why, started).await;
    }
}

/// Sends what is pending and closes the connection.
async fn close(stream: &mut Stream) {
    pingora_core::protocols::Shutdown::shutdown(&mut **stream).await;
}

#[async_trait]
impl<H: RequestHandler> ServerApp for ProxyPort<H> {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        crate::pacemaker::ensure_started();
        if let Some((port, door)) = &self.side_door {
            let local = stream
                .get_socket_digest()
                .and_then(|d| d.local_addr().and_then(|a| a.as_inet()).map(|a| a.port()));
            if local == Some(*port) {
                // Counted at accept as the proxy port's; it is not.
                match self.gate.claim() {
                    Some(slot) => drop(slot),
                    None => self.gate.refused(),
                }
                let (door, shutdown) = (Arc::clone(door), shutdown.clone());
                tokio::spawn(async move { door.enter(stream, shutdown).await });
                return None;
            }
        }
        // 1. The slot reserved at accept, or 503: a refused connection gets no task of its own.
        let Some(slot) = self.gate.claim() else {
            debug!(
                "connection refused: {} connections already open",
                self.gate.max()
            );
            // A TLS client could not read a plain answer: it is just closed.
            if self.tls.is_none() {
                let _ = stream.write_all(OVER_LIMIT).await;
                let _ = stream.flush().await;
            }
            self.gate.refused();
            return None;
        };
        // The connection gets a task of its own, and Pingora's ends here: Pingora's task keeps
        // its accept-time state alive as long as the connection, 5.5 KiB of it; this one holds
        // only what an idle connection needs (README, "Connections").
        tokio::spawn(Arc::clone(self).run(stream, shutdown.clone(), slot));
        None
    }
}
