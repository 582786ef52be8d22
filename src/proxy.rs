//! The proxy port's requests: which are refused, which target each goes to, how it is forwarded
//! to the exporter, and how it is counted.
//!
//! Which parts of Pingora run, and which do not:
//! - used: pingora-core's `Server` (signals, graceful shutdown, zero-downtime upgrade), its
//!   listening `Service` and accept loop (with a `connection_filter`, `listener/gate.rs`), its
//!   TLS `Acceptor`, its request authority check, its `TransportConnector` with `HttpPeer` and
//!   `PeerOptions` (connect, TLS to the exporter, `custom_l4` for forward proxies), its header
//!   types (`RequestHeader`; `ResponseHeader` for the tunnel's own answers and an agent's
//!   HTTP/2 streams); `BackgroundService` for reloads.
//! - not used: pingora-core's HTTP/1 client and server sessions. The exporter's answer is read
//!   by the tunnel's own client (`upstream/http1.rs`) on the stream Pingora's connector opened:
//!   one read takes a whole gzip-compressed page where Pingora's took two, and the header is
//!   parsed once and its own bytes sent on to the client (`http1/head.rs`), with no header map. The client's request is parsed, and the answer
//!   written, by the tunnel's own exchange (`listener/exchange.rs`), by Pingora's rules: the
//!   answer's header and body leave in one `writev` from where they lie, where Pingora's
//!   session copied both into a buffer first. Why, and what each saved: those modules' docs.
//! - not used: pingora-proxy. None of its `ProxyHttp` hooks (`request_filter`,
//!   `upstream_peer`, `upstream_response_filter`, `response_filter`, `fail_to_connect`,
//!   `error_while_proxy`, `fail_to_proxy`, `logging`) exists here, and neither does Pingora's
//!   connection pool: exporter connections wait in the tunnel's own idle lists
//!   (`upstream/idle.rs`). Measured reasons: its phases cost a small scrape a quarter more
//!   instructions and its pool a task and a syscall per scrape; a 5 MB page's RSS fell from
//!   56 to 25 MiB without them; and its request loop answered malformed requests without any
//!   hook seeing them, so they went uncounted. Requests arrive from the tunnel's own listener
//!   ([`crate::listener`]). What pingora-proxy did for every proxy is done here for scrapes,
//!   on one path, and tested as such: the client is watched while the exporter is slow,
//!   hop-by-hop headers stay behind, exporter connections are kept alive, and a request with a
//!   body is refused (413) rather than forwarded.
//!
//! One request, in `TunnelProxy::serve` (`finish.rs`):
//! 1. the access rules: 403 (address) or 401 (credentials);
//! 2. only GET and HEAD (405 with `Allow`) without a body (413: a scrape has none);
//! 3. the target ([`route`]): the only exporter, or by the routing parameter in multi-target
//!    mode (404 unknown, 400 missing); in reverse mode an absolute-form request's host names a
//!    registered client (`registered.rs`: 503 at once when none is) or a configured target;
//! 4. the deadline: the target's timeout, or Prometheus' scrape timeout if smaller;
//! 5. forwarded (`forward.rs`): the exporter's answer streamed to the client as it comes, its
//!    write waiting once behind the other answers of the same pass (`together.rs`);
//! 6. a failure answered with its status and a one-line reason (`outcome.rs`), and logged once
//!    (`finish.rs`);
//! 7. counted, once, whatever its end: `TunnelProxy::record` (`finish.rs`).
//!
//! A request whose header could not be read or parsed is answered and counted by
//! `TunnelProxy::refuse` (400, 408, 431; 499 when the client left mid-header).

mod agents;
mod finish;
mod forward;
mod outcome;
mod registered;
mod together;

pub mod rewrite;
pub mod route;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::listener::ClientExchange;
use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, AUTHORIZATION, WWW_AUTHENTICATE};
use http::Method;
use log::debug;
use pingora_core::server::configuration::ServerConf;
use pingora_error::{Error, ErrorType, Result};

pub use forward::{Forwarder, ScrapeDeadline};
pub use outcome::{reason_of, Failure, CLIENT_CLOSED, EXPORTER_STATUS_CODE};

use crate::access::{AccessControl, Verdict};
use crate::agent::directory::Lookup;
use crate::agent::relay::AgentScrapes;
use crate::listener::respond::{refuse, respond};
use crate::metrics::{TargetMetrics, METRICS};
use crate::reverse::scrape::ReverseScrapes;
use crate::reverse::wire;
use crate::targets::{SharedTargets, Target};
use route::Route;

use crate::listener::headers::scrape_deadline as deadline;
pub use crate::listener::headers::SCRAPE_TIMEOUT_HEADER;

/// Forwards scrapes to the targets and records the tunnel's metrics.
pub struct TunnelProxy {
    targets: SharedTargets,
    access: AccessControl,
    /// Sends each scrape to its exporter.
    forwarder: Forwarder,
    /// Series of requests refused before a target was chosen (unreadable, unknown or missing
    /// target, refused clients in multi-target mode): the `target` label is then empty.
    unattributed: TargetMetrics,
    /// Scrapes of the names clients register, in reverse mode.
    reverse: Option<ReverseScrapes>,
    /// Scrapes of the names agents serve, in agent mode.
    agents: Option<AgentScrapes>,
}

/// Per-request state.
struct RequestCtx {
    /// When the request's header had been read.
    start: Instant,
    /// The whole-request limit for this request.
    deadline: Duration,
    /// The chosen target; `None` until chosen (and for refused requests).
    target: Option<Arc<Target>>,
    /// The series of the registered client a scrape went to, in reverse mode.
    client_metrics: Option<Arc<TargetMetrics>>,
    /// The request line's path and query without the routing parameter, when it had one.
    forwarded_path: Option<String>,
    /// Whether a connection to the exporter was attempted.
    forwarded: bool,
    /// Counts the request in `proxy_in_flight_requests` until it is recorded.
    in_flight: Option<InFlight>,
}

impl RequestCtx {
    fn new(start: Instant) -> Self {
        RequestCtx {
            start,
            deadline: Duration::ZERO,
            target: None,
            client_metrics: None,
            forwarded_path: None,
            forwarded: false,
            in_flight: Some(InFlight::enter()),
        }
    }

    /// The request's start and limit.
    fn scrape_deadline(&self) -> ScrapeDeadline {
        ScrapeDeadline {
            start: self.start,
            limit: self.deadline,
        }
    }
}

/// Counts a request in `proxy_in_flight_requests` for as long as it lives.
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        METRICS.in_flight.inc();
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        METRICS.in_flight.dec();
    }
}

impl TunnelProxy {
    /// A proxy to the targets of `targets` (and, in reverse mode, the clients `reverse`
    /// registers), used by the clients `access` lets in, with the upstream connection settings
    /// (pool size, retries, bind address) of `server_conf`.
    pub fn new(
        targets: SharedTargets,
        access: AccessControl,
        server_conf: &ServerConf,
        reverse: Option<ReverseScrapes>,
        agents: Option<AgentScrapes>,
    ) -> Self {
        TunnelProxy {
            targets,
            access,
            forwarder: Forwarder::new(server_conf),
            unattributed: TargetMetrics::new(""),
            reverse,
            agents,
        }
    }

    /// Steps 1-5: refuses what must not be forwarded, picks the target and forwards.
    async fn answer(&self, session: &mut ClientExchange, ctx: &mut RequestCtx) -> Result<()> {
        let client = session.client_ip();
        match self
            .access
            .check(client, session.get_header(AUTHORIZATION), ctx.start)
        {
            Verdict::Allow => {}
            Verdict::Forbidden => {
                debug!("refused a request from {client:?}: not in CLIENT_ALLOWED_CIDRS");
                return refuse(
                    session,
                    403,
                    b"403 Forbidden: this address may not scrape through the tunnel\n",
                    &[],
                )
                .await;
            }
            Verdict::Unauthorized(challenge) => {
                debug!("refused a request from {client:?}: missing or wrong credentials");
                let body =
                    Bytes::from_static(b"401 Unauthorized: the tunnel requires credentials\n");
                return respond(session, 401, body, &[(WWW_AUTHENTICATE, challenge)]).await;
            }
        }
        let method = &session.req_header().method;
        if method != Method::GET && method != Method::HEAD {
            debug!("refused {method}: only GET and HEAD are forwarded");
            let allow = [(ALLOW, HeaderValue::from_static("GET, HEAD"))];
            return refuse(
                session,
                405,
                b"405 Method Not Allowed: the tunnel forwards only GET and HEAD\n",
                &allow,
            )
            .await;
        }
        if !session.is_body_empty() {
            debug!("refused a request with a body");
            return refuse(
                session,
                413,
                b"413 Content Too Large: a scrape is a GET or HEAD without a body\n",
                &[],
            )
            .await;
        }
        let table = self.targets.load();
        if self.reverse.is_some() || self.agents.is_some() {
            // An absolute-form request (PushProx style) names a configured target, a name an
            // agent serves or a registered client by its host.
            let authority = wire::absolute_authority(session.req_header().raw_path());
            if let Some(host) = authority.map(wire::authority_host) {
                if let Some(target) = table.get(host) {
                    ctx.deadline = deadline(session.req_header(), target.timeout);
                    ctx.target = Some(Arc::clone(target));
                    drop(table);
                    return self.forward(session, ctx).await;
                }
                let host = host.to_string();
                drop(table);
                if let Some(agents) = &self.agents {
                    let lookup = agents.directory.lookup(&host);
                    let served = !matches!(lookup, Lookup::Unknown)
                        || agents
                            .peers
                            .as_ref()
                            .is_some_and(|p| p.route(&host).is_some());
                    if served || self.reverse.is_none() {
                        return self
                            .scrape_agent(agents, lookup, session, ctx, &host, None)
                            .await;
                    }
                }
                return match &self.reverse {
                    Some(reverse) => self.scrape_registered(reverse, session, ctx, &host).await,
                    None => Err(Error::explain(
                        ErrorType::InternalError,
                        "neither reverse nor agent mode for an absolute-form request",
                    )),
                };
            }
        }
        match (
            route::route(&table, &session.req_header().uri),
            &self.agents,
        ) {
            (Route::To(target, path), _) => {
                ctx.deadline = deadline(session.req_header(), target.timeout);
                ctx.target = Some(target);
                ctx.forwarded_path = path;
            }
            (Route::Unknown(name, path), Some(agents)) => {
                drop(table);
                let lookup = agents.directory.lookup(&name);
                return self
                    .scrape_agent(agents, lookup, session, ctx, &name, Some(&path))
                    .await;
            }
            (Route::Unknown(..) | Route::Nowhere, _) => {
                debug!("refused {}: no such target", session.req_header().uri);
                return refuse(
                    session,
                    404,
                    b"404 Not Found: no such target; /targets on the metrics port lists them\n",
                    &[],
                )
                .await;
            }
            (Route::Missing(param), _) => {
                let body = format!(
                    "400 Bad Request: name the exporter with ?{param}=NAME; /targets on the metrics port lists them\n"
                );
                session.close_after_answer();
                return respond(session, 400, Bytes::from(body), &[]).await;
            }
        }
        drop(table);
        self.forward(session, ctx).await
    }

    /// Step 5: the request to its target's exporter, the answer streamed back.
    async fn forward(&self, session: &mut ClientExchange, ctx: &mut RequestCtx) -> Result<()> {
        let target = chosen(&ctx.target)?;
        ctx.forwarded = true;
        let path = ctx.forwarded_path.as_deref();
        let strip_client_auth = self.access.requires_credentials();
        let start = ctx.start;
        self.forwarder
            .forward(
                session,
                &target.upstream,
                ctx.scrape_deadline(),
                rewrite::ScrapeRequest {
                    target,
                    forwarded_path: path,
                    now: start,
                    strip_client_auth,
                    hop_fields: &[],
                },
            )
            .await
    }
}

/// The target the request was routed to; every step after routing has one.
fn chosen(target: &Option<Arc<Target>>) -> Result<&Arc<Target>> {
    target
        .as_ref()
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "no target chosen for the request"))
}
