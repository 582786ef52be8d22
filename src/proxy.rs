//! The proxy port: a Pingora [`ProxyHttp`] that forwards Prometheus' scrapes to exporters.
//!
//! The phases, in the order Pingora runs them for one request:
//! - `request_filter`: refuse clients the access rules keep out (403/401), oversized headers
//!   (431), anything but GET and HEAD (405), unknown targets (404); pick the target and set the
//!   request's deadline from its timeout and Prometheus' scrape-timeout header. Then forward
//!   it (`forward.rs`): every scrape, a request without a body, is sent to the exporter and
//!   answered here, on Pingora's HTTP/1 sessions and the exporter's own kept-alive connections
//!   but without pingora-proxy's general forwarding and pool, which cost a small scrape a
//!   quarter more instructions.
//! - A request with a body (never a scrape's, but HTTP allows one on GET) takes pingora-proxy's
//!   general path instead, which forwards bodies:
//!   - `upstream_peer`: the target's exporter, with every timeout set to the deadline.
//!   - `upstream_request_filter`: `Host` set to the exporter, `target` removed from the query,
//!     credentials applied; the rest untouched.
//!   - `upstream_response_body_filter`: the body streams through; a body still arriving after
//!     the deadline fails the request (504, or a cut connection if the header was already sent).
//! - `fail_to_proxy`: 502/504 with a one-line reason for the client, and the log line.
//! - `logging`: the metrics, once per request whatever its end.

mod forward;
mod outcome;
mod respond;
pub mod rewrite;
pub mod route;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, ALLOW, WWW_AUTHENTICATE};
use http::Method;
use log::{debug, error};
use pingora_core::modules::http::HttpModules;
use pingora_core::server::configuration::ServerConf;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::RequestHeader;
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use forward::ScrapeDeadline;
pub use outcome::{Failure, CLIENT_CLOSED};

use crate::access::{AccessControl, Verdict};
use crate::config::AccessConfig;
use crate::listener::HeaderRead;
use crate::metrics::{TargetMetrics, METRICS};
use crate::targets::{SharedTargets, Target};
use forward::Forwarder;
use respond::{refuse, respond};
use route::Route;

/// The header in which Prometheus sends its scrape timeout, in seconds.
pub const SCRAPE_TIMEOUT_HEADER: HeaderName =
    HeaderName::from_static("x-prometheus-scrape-timeout-seconds");

/// The largest request header forwarded; a scrape's is a few hundred bytes. Larger ones are
/// answered 431 and never reach the exporter.
pub const MAX_REQUEST_HEADER_BYTES: usize = 16 * 1024;

/// Forwards scrapes to the targets and records the tunnel's metrics.
pub struct TunnelProxy {
    targets: SharedTargets,
    access: AccessControl,
    /// Sends bodiless requests (every scrape) to the exporters.
    forwarder: Forwarder,
    /// Series of requests refused before a target was chosen (unknown or missing target, or
    /// refused clients in multi-target mode): the `target` label is then empty.
    unattributed: TargetMetrics,
}

impl TunnelProxy {
    /// A proxy to the targets of `targets`, used by the clients `access` lets in, with the
    /// upstream connection settings (pool size, retries, bind address) of `server_conf`.
    pub fn new(
        targets: SharedTargets,
        access: &AccessConfig,
        server_conf: &ServerConf,
    ) -> Result<Self> {
        Ok(TunnelProxy {
            targets,
            access: AccessControl::new(access)?,
            forwarder: Forwarder::new(server_conf),
            unattributed: TargetMetrics::new(""),
        })
    }

    /// The peer for the request's target, with every timeout set to the time left.
    async fn peer(&self, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        let target = chosen(&ctx.target)?;
        ctx.forwarded = true;
        // Time already spent (reading the request, a retried connection) counts against it.
        let remaining = ctx.scrape_deadline().remaining();
        if remaining.is_zero() {
            return Err(Error::explain(
                ErrorType::ConnectTimedout,
                "scrape deadline passed before connecting",
            )
            .into_up());
        }
        target.upstream.peer(remaining).await
    }

    /// Forwards a bodiless request to its target and streams the answer to the client.
    async fn forward(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        let peer = self.peer(ctx).await?;
        let target = chosen(&ctx.target)?;
        let path = ctx.forwarded_path.as_deref();
        let strip_client_auth = self.access.requires_credentials();
        self.forwarder
            .forward(
                session,
                &peer,
                target.upstream.idle_connections(),
                ctx.scrape_deadline(),
                |client| {
                    rewrite::upstream_request(client, target, path, ctx.start, strip_client_auth)
                },
            )
            .await
    }
}

/// The deadline of one request: the target's timeout, or Prometheus' scrape timeout if that is
/// smaller. A malformed header is ignored: the scrape still gets the configured limit.
fn deadline(req: &RequestHeader, timeout: Duration) -> Duration {
    req.headers
        .get(&SCRAPE_TIMEOUT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|secs| secs.is_finite() && *secs > 0.0)
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .map_or(timeout, |scrape| scrape.min(timeout))
}

/// Per-request state.
pub struct RequestCtx {
    /// When the request's header had been read.
    start: Instant,
    /// The whole-request limit for this request.
    deadline: Duration,
    /// The chosen target; `None` until chosen (and for refused requests).
    target: Option<Arc<Target>>,
    /// The request line's path and query without `target`, when it had one.
    forwarded_path: Option<String>,
    /// Whether a connection to the exporter was attempted.
    forwarded: bool,
    /// Keeps `proxy_in_flight_requests` right even if the request is dropped mid-way; taken
    /// in `logging`, before the request is counted as done.
    in_flight: Option<InFlight>,
}

/// The target `request_filter` chose; every phase after it has one.
fn chosen(target: &Option<Arc<Target>>) -> Result<&Arc<Target>> {
    target
        .as_ref()
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "no target chosen for the request"))
}

impl RequestCtx {
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

#[async_trait]
impl ProxyHttp for TunnelProxy {
    type CTX = RequestCtx;

    /// No downstream modules. Pingora's default adds a response-compression module, disabled,
    /// whose context is still built and consulted for every response; the tunnel passes the
    /// exporter's encoding through and never compresses.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            start: Instant::now(),
            deadline: Duration::ZERO,
            target: None,
            forwarded_path: None,
            forwarded: false,
            in_flight: Some(InFlight::enter()),
        }
    }

    /// Marks the connection's request header as read, for the header deadline of
    /// [`crate::listener::GuardedApp`].
    fn on_connection_reuse(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
        prev_ctx: Box<dyn std::any::Any + Send + Sync>,
    ) {
        if let Some(header_read) = prev_ctx.downcast_ref::<HeaderRead>() {
            header_read.mark();
        }
    }

    /// Refuses what must not be forwarded, picks the target and forwards the request; returns
    /// `Ok(false)` only for a request with a body, left to pingora-proxy's forwarding.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let client = session
            .client_addr()
            .and_then(|addr| addr.as_inet())
            .map(|addr| addr.ip());
        let verdict = self.access.check(
            client,
            session
                .req_header()
                .headers
                .get(http::header::AUTHORIZATION),
            ctx.start,
        );
        match verdict {
            Verdict::Allow => {}
            Verdict::Forbidden => {
                debug!("refused a request from {client:?}: not in CLIENT_ALLOWED_CIDRS");
                refuse(
                    session,
                    403,
                    b"403 Forbidden: this address may not scrape through the tunnel\n",
                    &[],
                )
                .await?;
                return Ok(true);
            }
            Verdict::Unauthorized(challenge) => {
                debug!("refused a request from {client:?}: missing or wrong credentials");
                let body =
                    Bytes::from_static(b"401 Unauthorized: the tunnel requires credentials\n");
                respond(session, 401, body, &[(WWW_AUTHENTICATE, challenge)]).await?;
                return Ok(true);
            }
        }
        let req = session.req_header();
        let header_bytes = req.raw_path().len()
            + req
                .headers
                .iter()
                .map(|(name, value)| name.as_str().len() + value.len() + 4)
                .sum::<usize>();
        if header_bytes > MAX_REQUEST_HEADER_BYTES {
            debug!("refused a {header_bytes}-byte request header");
            refuse(session, 431, b"431 Request Header Fields Too Large: a scrape needs a few hundred bytes of header\n", &[]).await?;
            return Ok(true);
        }
        if req.method != Method::GET && req.method != Method::HEAD {
            debug!(
                "refused {} {}: only GET and HEAD are forwarded",
                req.method, req.uri
            );
            let allow = [(ALLOW, HeaderValue::from_static("GET, HEAD"))];
            refuse(
                session,
                405,
                b"405 Method Not Allowed: the tunnel forwards only GET and HEAD\n",
                &allow,
            )
            .await?;
            return Ok(true);
        }
        let routed = route::route(&self.targets.load(), &req.uri);
        match routed {
            Route::To(target, path) => {
                ctx.deadline = deadline(req, target.timeout);
                ctx.target = Some(target);
                ctx.forwarded_path = path;
                if !session.is_body_empty() {
                    return Ok(false);
                }
                self.forward(session, ctx).await?;
                Ok(true)
            }
            Route::Unknown => {
                debug!("refused {}: no such target", req.uri);
                refuse(
                    session,
                    404,
                    b"404 Not Found: no such target; /targets on the metrics port lists them\n",
                    &[],
                )
                .await?;
                Ok(true)
            }
            Route::Missing => {
                refuse(session, 400, b"400 Bad Request: name the exporter with ?target=NAME; /targets on the metrics port lists them\n", &[]).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        self.peer(ctx).await
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let target = chosen(&ctx.target)?;
        rewrite::prepare_upstream_request(
            upstream_request,
            target,
            ctx.forwarded_path.as_deref(),
            ctx.start,
            self.access.requires_credentials(),
        )
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if let Some(chunk) = body {
            METRICS.response_bytes.inc_by(chunk.len() as u64);
        }
        // Each read has the deadline as its timeout; this catches an exporter that trickles.
        if ctx.start.elapsed() > ctx.deadline {
            return Err(ctx.scrape_deadline().passed_mid_body());
        }
        Ok(None)
    }

    /// Answers the failure with its status and a one-line reason, unless the response header
    /// had already gone out; then the connection is closed so the client sees a cut body.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let failure = Failure::of(e);
        // One line per failed request, whichever path it took (Pingora's own line is
        // suppressed below: for the tunnel's forwarding it would name the wrong phase).
        let context = if ctx.forwarded {
            "Fail to proxy:"
        } else {
            "Fail to answer:"
        };
        error!(
            "{context} {e}, status: {}, {}",
            failure.status,
            self.request_summary(session, ctx)
        );
        // Pingora does not reuse a client connection after a proxy failure; say so.
        session.set_keepalive(None);
        if failure.status != CLIENT_CLOSED && session.response_written().is_none() {
            let body = Bytes::from(format!(
                "{} {}: {}\n",
                failure.status,
                http::StatusCode::from_u16(failure.status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or(""),
                failure.reason()
            ));
            if let Err(write_err) = respond(session, failure.status, body, &[]).await {
                debug!(
                    "could not send the {} answer to the client: {write_err}",
                    failure.status
                );
            }
        }
        FailToProxy {
            error_code: failure.status,
            can_reuse_downstream: false,
        }
    }

    /// `fail_to_proxy` logs every failure itself.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _e: &Error) -> bool {
        true
    }

    /// Records the request's metrics, once, whatever its end.
    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let (status, upstream_error) = match e {
            Some(e) => {
                let failure = Failure::of(e);
                (failure.status, failure.upstream)
            }
            None => (
                session
                    .response_written()
                    .map_or(500, |r| r.status.as_u16()),
                None,
            ),
        };
        // Out of flight before counted as done, so no scrape sees both.
        drop(ctx.in_flight.take());
        let metrics = ctx
            .target
            .as_ref()
            .map_or(&self.unattributed, |t| &t.metrics);
        metrics.record(
            status,
            ctx.start.elapsed().as_secs_f64(),
            upstream_error,
            ctx.forwarded,
        );
    }
}
