//! A scrape forwarded to its exporter on the tunnel's HTTP/1 client (`upstream/http1.rs`), and
//! the answer streamed to the client as it comes.
//!
//! The request is written, the response header read and passed on, and the body written to
//! the client straight from the exporter's read buffer, in one future. Connections come from
//! the exporter's own idle list (`upstream/idle.rs`) or, when none waits, from Pingora's
//! transport connector (TLS, the forward proxies of `custom_l4`, connect timeouts from the
//! peer). All the while the client is watched: one that goes away (or resets) ends the
//! exchange at once, freeing the exporter connection, and is counted 499. Errors are marked
//! upstream or downstream, which decides their status and metric (`outcome.rs`).

use std::future::Future;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use log::debug;
use pingora_core::connectors::{ConnectorOptions, TransportConnector};
use pingora_core::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora_core::protocols::Stream;
use pingora_core::server::configuration::ServerConf;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};

use super::together::answers_leave_together;
use crate::http1::head::ExporterHead;
use crate::http1::splice::splice_body;
use crate::listener::scrape_client::ScrapeClient;
use crate::metrics::METRICS;
use crate::upstream::http1::{ExporterExchange, ExporterRequest};
use crate::upstream::idle::IdleConnections;
use crate::upstream::Upstream;

/// Forwards bodiless requests to exporters over kept-alive HTTP/1 connections.
pub struct Forwarder {
    /// Opens new connections, as Pingora's own connector does.
    transport: TransportConnector,
    /// Idle connections kept per exporter, Pingora's `upstream_keepalive_pool_size`.
    keep_idle: usize,
    /// Tries per request, Pingora's `max_retries`: a pooled connection the exporter closed
    /// while it was idle fails before any answer, and the request is sent again on another.
    max_tries: usize,
}

/// The time a request may take: its start and its limit.
#[derive(Debug, Clone, Copy)]
pub struct ScrapeDeadline {
    /// When the request's header had been read.
    pub start: Instant,
    /// How long the whole request may take.
    pub limit: Duration,
}

impl ScrapeDeadline {
    /// Time left before the deadline (zero once it passed).
    pub fn remaining(&self) -> Duration {
        self.limit.saturating_sub(self.start.elapsed())
    }

    /// The instant the deadline passes, for timers.
    fn until(&self) -> tokio::time::Instant {
        // A limit too far to add (never configured in practice) is as good as a year.
        let end = self
            .start
            .checked_add(self.limit)
            .unwrap_or_else(|| self.start + Duration::from_secs(365 * 24 * 3600));
        tokio::time::Instant::from_std(end)
    }

    /// The error for an answer whose header was not read in time: 504, counted as a timeout.
    fn passed_before_answer(&self) -> Box<Error> {
        self.passed("before the exporter's answer was read")
    }

    /// The error for a body still arriving after the deadline: 504, counted as a timeout.
    fn passed_mid_body(&self) -> Box<Error> {
        self.passed("while the exporter was still sending its body")
    }

    /// The deadline passed `when`: an exporter-side read timeout.
    fn passed(&self, when: &str) -> Box<Error> {
        Error::explain(
            ErrorType::ReadTimedout,
            format!("scrape deadline of {:?} passed {when}", self.limit),
        )
        .into_up()
    }
}

/// Where a scrape is forwarded: an exporter, or another replica's proxy port. Its peer (TLS,
/// proxy, timeouts) is built only for a new connection: most scrapes reuse one and need none.
pub trait Destination: Sync {
    /// The address to dial for a scrape under `deadline`.
    fn address(&self, deadline: ScrapeDeadline) -> impl Future<Output = Result<PeerAddr>> + Send;

    /// A peer for a new connection to `address`, every timeout set to `limit`.
    fn peer_to(&self, address: PeerAddr, limit: Duration) -> HttpPeer;

    /// The connections to it kept alive between scrapes.
    fn idle_connections(&self) -> &IdleConnections;
}

impl Destination for Upstream {
    async fn address(&self, deadline: ScrapeDeadline) -> Result<PeerAddr> {
        Upstream::address(self, || deadline.remaining()).await
    }

    fn peer_to(&self, address: PeerAddr, limit: Duration) -> HttpPeer {
        Upstream::peer_to(self, address, limit)
    }

    fn idle_connections(&self) -> &IdleConnections {
        Upstream::idle_connections(self)
    }
}

/// How one try ended badly.
enum TryFailure {
    /// Before any answer, on a connection that had been kept alive: another may do.
    Retry(Box<Error>),
    /// Anything else: the request fails with it.
    Fail(Box<Error>),
}

impl TryFailure {
    /// An exporter-side error, retried when Pingora deems it safe for a reused connection.
    fn before_answer(e: Box<Error>, reused: bool) -> Self {
        let mut e = e.into_up();
        e.retry.decide_reuse(reused);
        if e.retry() {
            TryFailure::Retry(e)
        } else {
            TryFailure::Fail(e)
        }
    }
}

impl Forwarder {
    /// A forwarder with the connection settings of `server_conf` (bind addresses, CA file,
    /// idle connections kept, retries), as Pingora's proxy would use them.
    pub fn new(server_conf: &ServerConf) -> Self {
        Forwarder {
            transport: TransportConnector::new(Some(ConnectorOptions::from_server_conf(
                server_conf,
            ))),
            keep_idle: server_conf.upstream_keepalive_pool_size,
            max_tries: server_conf.max_retries.max(1),
        }
    }

    /// Sends the request `build` makes to `destination` and streams the answer to the client,
    /// on one of its idle connections or a new one, which is kept afterwards if it can carry
    /// another request. `build` runs once per try, so a retried request is built afresh
    /// rather than kept as a copy.
    pub async fn forward(
        &self,
        session: &mut impl ScrapeClient,
        destination: &impl Destination,
        deadline: ScrapeDeadline,
        request: impl ExporterRequest,
    ) -> Result<()> {
        let address = destination.address(deadline).await?;
        let idle = destination.idle_connections();
        let mut tries = 0;
        loop {
            tries += 1;
            let (stream, reused) = match idle.take(&address, deadline.start) {
                Some(stream) => (stream, true),
                None => {
                    // Boxed: a connect's future (TLS, forward proxies) is over 8 KiB, which
                    // inlined would be in every scrape's future, allocated and moved per
                    // request, though most scrapes reuse a connection.
                    let stream = Box::pin(self.connect(destination, &address, deadline)).await?;
                    (stream, false)
                }
            };
            // `exchange` bounds each step by what is left of the deadline, not the peer's
            // fixed timeouts, which a trickling exporter could renew read after read.
            let mut exporter = ExporterExchange::new(stream);
            // Made afresh per try, rather than kept as a copy.
            exporter.prepare(&request, session.req_header())?;
            match exchange(&mut exporter, reused, session, deadline).await {
                Ok(()) => {
                    // Kept only if the exporter allows it and the answer was read whole.
                    if let Some(stream) = exporter.into_reusable() {
                        idle.put(stream, address, self.keep_idle, deadline.start);
                    }
                    return Ok(());
                }
                Err(TryFailure::Retry(e))
                    if tries < self.max_tries && !deadline.remaining().is_zero() =>
                {
                    debug!("kept-alive connection to {address} failed ({e}); trying another");
                }
                Err(TryFailure::Retry(e) | TryFailure::Fail(e)) => {
                    let peer = destination.peer_to(address, deadline.limit);
                    return Err(e.more_context(format!("Peer: {peer}, tries: {tries}")));
                }
            }
        }
    }

    /// A new connection to `destination` at `address`, which may take what is left of the
    /// deadline.
    async fn connect(
        &self,
        destination: &impl Destination,
        address: &PeerAddr,
        deadline: ScrapeDeadline,
    ) -> Result<Stream> {
        let remaining = deadline.remaining();
        if remaining.is_zero() {
            return Err(Error::explain(
                ErrorType::ConnectTimedout,
                "scrape deadline passed before connecting",
            )
            .into_up());
        }
        let peer = destination.peer_to(address.clone(), remaining);
        self.transport
            .new_stream(&peer)
            .await
            .map_err(|e| e.into_up().more_context(format!("Peer: {peer}")))
    }
}

/// The request written and the final answer's header read (informational answers skipped).
async fn request_and_answer(
    exporter: &mut ExporterExchange,
    reused: bool,
) -> Result<ExporterHead, TryFailure> {
    exporter
        .send()
        .await
        .map_err(|e| TryFailure::before_answer(e, reused))?;
    exporter
        .read_header()
        .await
        .map_err(|e| TryFailure::before_answer(e, reused))
}

/// One try: the request out, the answer through to the client, while the client is watched.
async fn exchange(
    exporter: &mut ExporterExchange,
    reused: bool,
    session: &mut impl ScrapeClient,
    deadline: ScrapeDeadline,
) -> Result<(), TryFailure> {
    // One timer for the request and the whole header, however slowly it trickles in.
    let answer = tokio::time::timeout_at(deadline.until(), request_and_answer(exporter, reused));
    let mut header = tokio::select! {
        biased;
        answered = answer => match answered {
            Ok(answered) => answered?,
            Err(_) => return Err(TryFailure::Fail(deadline.passed_before_answer())),
        },
        gone = session.gone() => return Err(TryFailure::Fail(gone)),
    };
    // A body that ends when the connection closes (HTTP/1.0 style) goes on chunked, so the
    // client's connection stays open; pingora-proxy does the same.
    if exporter.body_until_close() {
        header.chunk_body();
    }
    answers_leave_together().await;
    let until = deadline.until();
    // A client that does not read is given no more time than the exporter.
    session.set_write_deadline(until);
    session
        .write_exporter_head(&header)
        .await
        .map_err(|e| TryFailure::Fail(e.into_down()))?;
    // Whether the client's side may still take a spliced body; asked once it could be.
    let mut client_may_splice = true;
    // The answer's header came within the deadline: the first read of the body needs no look
    // at the clock, which most answers need no other read of.
    let mut first_read = true;
    while !exporter.is_body_done() {
        if client_may_splice {
            if let Some((from, left)) = exporter.splice_source() {
                match session
                    .splice_sink(left)
                    .await
                    .map_err(|e| TryFailure::Fail(e.into_down()))?
                {
                    Some(to) => {
                        return splice_rest(exporter, session, from, to, left, deadline).await
                    }
                    // TLS or HTTP/2: not for any later piece either.
                    None => client_may_splice = false,
                }
            }
        }
        // Each read waits at most until the deadline; a body that keeps arriving faster than
        // that is stopped here.
        if !std::mem::take(&mut first_read) && deadline.remaining().is_zero() {
            return Err(TryFailure::Fail(deadline.passed_mid_body()));
        }
        let chunk = tokio::select! {
            biased;
            read = exporter.read_body(until) => match read {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) if e.etype() == &ErrorType::ReadTimedout => {
                    return Err(TryFailure::Fail(deadline.passed_mid_body()))
                }
                Err(e) => return Err(TryFailure::Fail(e.into_up())),
            },
            gone = session.gone() => return Err(TryFailure::Fail(gone)),
        };
        METRICS.response_bytes.inc_by(chunk.len() as u64);
        session.set_write_deadline(until);
        // Written from the exporter's read buffer, without a copy of its own.
        session
            .write_body(chunk)
            .await
            .map_err(|e| TryFailure::Fail(e.into_down()))?;
    }
    session
        .finish_body()
        .await
        .map(drop)
        .map_err(|e| TryFailure::Fail(e.into_down()))
}

/// The rest of the body, `left` bytes, spliced from the exporter's socket `from` to the
/// client's `to`, while the client is watched; both ends are told what was moved.
async fn splice_rest(
    exporter: &mut ExporterExchange,
    session: &mut impl ScrapeClient,
    from: OwnedFd,
    to: OwnedFd,
    left: u64,
    deadline: ScrapeDeadline,
) -> Result<(), TryFailure> {
    let mut moved = 0;
    let spliced = tokio::select! {
        biased;
        spliced = splice_body(from, to, left, deadline.until(), &mut moved) => spliced,
        gone = session.gone() => Err(gone),
    };
    debug!("spliced {moved} of {left} body bytes from the exporter to the client");
    METRICS.response_bytes.inc_by(moved);
    exporter.spliced(moved);
    session.spliced(moved);
    match spliced {
        Ok(()) => session
            .finish_body()
            .await
            .map_err(|e| TryFailure::Fail(e.into_down())),
        Err(e) if e.etype() == &ErrorType::ReadTimedout => {
            Err(TryFailure::Fail(deadline.passed_mid_body()))
        }
        Err(e) => Err(TryFailure::Fail(e)),
    }
}
