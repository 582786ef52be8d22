//! A scrape through an agent, tunnel side: one HTTP/2 stream on the agent's connection, the
//! answer streamed to Prometheus as it arrives, under the scrape's deadline, while Prometheus
//! is watched. Dropping the stream early (deadline, Prometheus gone) resets it, which cancels
//! the agent's exchange with its exporter.

use std::time::Instant;

use crate::listener::ClientExchange;
use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{Method, Version};
use pingora_error::{Error, ErrorType, Result};
use pingora_http::RequestHeader;

use super::directory::AgentRoute;
use super::wire;

use crate::listener::headers::{strip_hop_by_hop, SCRAPE_TIMEOUT_HEADER};
use crate::metrics::{UpstreamErrorKind, METRICS};

/// The agent has `AGENT_MAX_STREAMS` scrapes in flight.
pub const AGENT_BUSY: &str = "the agent has AGENT_MAX_STREAMS scrapes in flight";
/// The agent's connection failed mid-scrape.
pub const AGENT_LOST: &str = "the agent's connection failed during the scrape";
/// The agent's answer is larger than `AGENT_MAX_BODY_SIZE`.
pub const AGENT_TOO_LARGE: &str = "the agent's answer is larger than AGENT_MAX_BODY_SIZE";
/// The agent did not answer in time.
pub const AGENT_TIMEOUT: &str = "the agent did not answer before the scrape deadline";

/// Each failure of a scrape through an agent: its status and how it is counted.
pub const FAILURES: [(&str, u16, UpstreamErrorKind); 4] = [
    (AGENT_BUSY, 503, UpstreamErrorKind::Other),
    (AGENT_LOST, 502, UpstreamErrorKind::Reset),
    (AGENT_TOO_LARGE, 502, UpstreamErrorKind::Other),
    (AGENT_TIMEOUT, 504, UpstreamErrorKind::Timeout),
];

/// An upstream-side error of a scrape through an agent.
fn failed(what: &'static str, detail: String) -> Box<Error> {
    Error::explain(ErrorType::Custom(what), detail).into_up()
}

/// The error of a scrape that failed at the agent, as the tunnel's own forwarding would have
/// failed: same status, reason and counted kind.
fn agent_failure(kind: &str, agent: &str) -> Box<Error> {
    use UpstreamErrorKind as K;
    let etype = match UpstreamErrorKind::from_label(kind) {
        Some(K::Timeout) => ErrorType::ReadTimedout,
        Some(K::Refused) => ErrorType::ConnectRefused,
        Some(K::Dns) => ErrorType::Custom(crate::upstream::DNS_ERROR),
        Some(K::Tls) => ErrorType::TLSHandshakeFailure,
        Some(K::Proxy) => ErrorType::ConnectProxyFailure,
        Some(K::Reset) => ErrorType::ConnectionClosed,
        Some(K::Protocol) => ErrorType::InvalidHTTPHeader,
        Some(K::Other) | None => ErrorType::UnknownError,
    };
    Error::explain(etype, format!("at agent {agent}: {kind}")).into_up()
}

/// The request for the agent: the scrape's, with the routing parameter removed
/// (`path`, when given), hop-by-hop headers dropped, the target named, and the time left.
fn agent_request(
    client: &RequestHeader,
    name: &str,
    path: Option<&str>,
    deadline: Instant,
    strip_authorization: bool,
) -> Result<Box<RequestHeader>> {
    let mut req = Box::new(client.clone());
    strip_hop_by_hop(&mut req);
    if let Some(path) = path {
        req.set_uri(path.parse().map_err(|e| {
            Error::explain(ErrorType::InvalidHTTPHeader, format!("path {path:?}: {e}"))
        })?);
    } else if let Some(pq) = client.uri.path_and_query() {
        // An absolute-form request (PushProx style) goes on by its path.
        let pq = pq.as_str().to_string();
        req.set_uri(pq.parse().map_err(|e| {
            Error::explain(ErrorType::InvalidHTTPHeader, format!("path {pq:?}: {e}"))
        })?);
    }
    if strip_authorization {
        req.remove_header(&http::header::AUTHORIZATION);
    }
    req.insert_header(HOST, name)?;
    req.insert_header(wire::TARGET_HEADER, name)?;
    let left = deadline.saturating_duration_since(Instant::now());
    req.insert_header(SCRAPE_TIMEOUT_HEADER, format!("{:.3}", left.as_secs_f64()))?;
    Ok(req)
}

/// Sends the scrape `session` read to the agent of `route` as target `name`, and streams the
/// answer back, by `deadline` at the latest; answers larger than `max_body` are cut.
pub async fn relay(
    session: &mut ClientExchange,
    route: &AgentRoute,
    name: &str,
    path: Option<&str>,
    deadline: Instant,
    max_body: u64,
    strip_authorization: bool,
) -> Result<()> {
    let Some(_slot) = route.link.claim() else {
        return Err(failed(AGENT_BUSY, format!("agent {}", route.link.name)));
    };
    let req = agent_request(
        session.req_header(),
        name,
        path,
        deadline,
        strip_authorization,
    )?;
    let mut stream = match route.link.conn.spawn_stream().await {
        Ok(Some(stream)) => stream,
        Ok(None) => return Err(failed(AGENT_BUSY, format!("agent {}", route.link.name))),
        Err(e) => return Err(failed(AGENT_LOST, e.to_string())),
    };
    stream
        .write_request_header(req, true)
        .map_err(|e| failed(AGENT_LOST, e.to_string()))?;
    let left = deadline.saturating_duration_since(Instant::now());
    tokio::select! {
        biased;
        answered = tokio::time::timeout(left, stream.read_response_header()) => match answered {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(failed(AGENT_LOST, e.to_string())),
            Err(_) => return Err(failed(AGENT_TIMEOUT, format!("no answer within {left:?}"))),
        },
        gone = session.gone() => return Err(gone),
    }
    let Some(header) = stream.response_header() else {
        return Err(failed(AGENT_LOST, "no response header".into()));
    };
    if let Some(kind) = header
        .headers
        .get(&wire::FAILURE_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        return Err(agent_failure(kind, &route.link.name));
    }
    let mut header = Box::new(header.clone());
    // With a known length the answer ends at its last byte: the client, which knows it too,
    // may close before the stream's end arrives, and is not to be counted as gone (499).
    let length = header
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    header.set_version(Version::HTTP_11);
    let bodiless =
        session.req_header().method == Method::HEAD || matches!(header.status.as_u16(), 204 | 304);
    if !bodiless && header.headers.get(CONTENT_LENGTH).is_none() {
        header.insert_header(TRANSFER_ENCODING, "chunked")?;
    }
    session.set_write_deadline(Some(tokio::time::Instant::from_std(deadline)));
    session
        .write_response_header(header)
        .await
        .map_err(|e| e.into_down())?;
    let mut received: u64 = 0;
    while !bodiless && length != Some(received) {
        let left = deadline.saturating_duration_since(Instant::now());
        let piece = tokio::select! {
            biased;
            piece = tokio::time::timeout(left, stream.read_response_body()) => match piece {
                Ok(Ok(Some(piece))) => piece,
                Ok(Ok(None)) => break,
                Ok(Err(e)) => return Err(failed(AGENT_LOST, e.to_string())),
                Err(_) => return Err(failed(AGENT_TIMEOUT, "the answer stalled mid-body".into())),
            },
            gone = session.gone() => return Err(gone),
        };
        received += piece.len() as u64;
        if received > max_body {
            return Err(failed(AGENT_TOO_LARGE, format!("over {max_body} bytes")));
        }
        METRICS.response_bytes.inc_by(piece.len() as u64);
        session
            .write_body(&piece)
            .await
            .map_err(|e| e.into_down())?;
    }
    if !bodiless && length.is_some() {
        // The last byte is in; the stream's end follows it. Waiting for it (no longer watching
        // the client, which may leave now) closes the stream cleanly instead of resetting it.
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(left, stream.read_response_body()).await;
    }
    session.finish_body().await.map_err(|e| e.into_down())?;
    Ok(())
}

/// Scrapes of the names agents serve, tunnel side.
pub struct AgentScrapes {
    /// The agents connected to this replica.
    pub directory: std::sync::Arc<super::directory::AgentDirectory>,
    /// The other replicas a scrape for a name this one does not hold is forwarded to, when
    /// `PEERS` is set (and the proxy port speaks plain HTTP, as forwarding does).
    pub peers: Option<std::sync::Arc<super::peers::PeerDirectory>>,
    /// `UPSTREAM_TIMEOUT`: the longest a scrape may take, whatever Prometheus allows.
    pub timeout: std::time::Duration,
    /// `AGENT_MAX_BODY_SIZE`.
    pub max_body: u64,
}
