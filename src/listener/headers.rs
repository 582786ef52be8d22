//! Headers every side of a scrape deals with the same way, whichever port it came in on and
//! wherever it goes: the hop-by-hop ones that stay behind, and Prometheus' scrape timeout.

use std::time::Duration;

use http::header::CONNECTION;
use http::HeaderName;
use pingora_http::RequestHeader;

/// The header in which Prometheus sends its scrape timeout, in seconds.
pub const SCRAPE_TIMEOUT_HEADER: HeaderName =
    HeaderName::from_static("x-prometheus-scrape-timeout-seconds");

/// The time one scrape may take: `timeout`, or Prometheus' scrape timeout from `req` if that is
/// smaller. A malformed header is ignored: the scrape still gets the configured limit.
pub fn scrape_deadline(req: &RequestHeader, timeout: Duration) -> Duration {
    req.headers
        .get(&SCRAPE_TIMEOUT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|secs| secs.is_finite() && *secs > 0.0)
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .map_or(timeout, |scrape| scrape.min(timeout))
}

/// Hop-by-hop headers that are not named in `Connection` (RFC 9110 7.6.1, and the ones
/// pingora-proxy strips as well).
const HOP_BY_HOP: [&str; 10] = [
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "connection",
    "upgrade",
    "http2-settings",
];

/// The fields the request's `Connection` names: they stay with the client's connection. Empty,
/// without allocating, when it has no `Connection` (a scrape has none).
pub fn connection_named(req: &RequestHeader) -> Vec<HeaderName> {
    req.headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b','))
        .filter_map(|token| HeaderName::from_bytes(token.trim_ascii()).ok())
        .collect()
}

/// Whether the field `name` (in any case) is meant for the tunnel's connection only: a standard
/// hop-by-hop field, or one of `named`, what `Connection` names ([`connection_named`]).
pub fn is_hop_by_hop(name: &[u8], named: &[HeaderName]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|hop| name.eq_ignore_ascii_case(hop.as_bytes()))
        || named
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n.as_str().as_bytes()))
}

/// Removes the headers meant for the tunnel's connection only: those `Connection` names, then
/// the standard ones. An upgrade handshake (WebSocket, h2c) goes with them: an exporter is
/// never upgraded.
pub fn strip_hop_by_hop(req: &mut RequestHeader) {
    // A scrape carries none: one pass over its few headers, not ten map lookups.
    let hop_by_hop = |name: &HeaderName| HOP_BY_HOP.contains(&name.as_str());
    if !req.headers.keys().any(hop_by_hop) {
        return;
    }
    for name in &connection_named(req) {
        req.remove_header(name);
    }
    for name in HOP_BY_HOP {
        req.remove_header(name);
    }
}
