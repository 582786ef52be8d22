//! The tunnel's own metrics, registered once in the `prometheus` default registry (the one
//! Pingora's metrics use too), so `/metrics` shows them all.
//!
//! Names of the first three are those of the original Go tool, kept exactly so existing alert
//! rules and dashboards keep working. Handles are resolved once: recording a request is a few
//! atomic adds, with no label hashing or locking on the hot path.

use std::sync::{LazyLock, OnceLock};

use prometheus::{
    register_histogram, register_int_counter, register_int_counter_vec, register_int_gauge,
    register_int_gauge_vec, Histogram, IntCounter, IntCounterVec, IntGauge,
};

use crate::build_info;

/// Why a request to the exporter failed, as the `kind` label of
/// `proxy_upstream_errors_total` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// The exporter refused the connection or could not be routed to.
    Refused,
    /// The deadline passed while connecting, sending or waiting for the exporter.
    Timeout,
    /// The exporter's host name did not resolve.
    Dns,
    /// The TLS handshake with the exporter failed.
    Tls,
    /// A forward proxy on the way refused or failed.
    Proxy,
    /// The exporter closed or reset the connection mid-exchange.
    Reset,
    /// The exporter answered with something that is not valid HTTP.
    Protocol,
    /// Anything else.
    Other,
}

impl UpstreamErrorKind {
    const ALL: [UpstreamErrorKind; 8] = [
        UpstreamErrorKind::Refused,
        UpstreamErrorKind::Timeout,
        UpstreamErrorKind::Dns,
        UpstreamErrorKind::Tls,
        UpstreamErrorKind::Proxy,
        UpstreamErrorKind::Reset,
        UpstreamErrorKind::Protocol,
        UpstreamErrorKind::Other,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamErrorKind::Refused => "refused",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Dns => "dns",
            UpstreamErrorKind::Tls => "tls",
            UpstreamErrorKind::Proxy => "proxy",
            UpstreamErrorKind::Reset => "reset",
            UpstreamErrorKind::Protocol => "protocol",
            UpstreamErrorKind::Other => "other",
        }
    }
}

/// Why a client connection was closed before its request was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionRejection {
    /// `MAX_CONNECTIONS` connections were already open.
    Limit,
    /// The request header did not arrive within `HEADER_READ_TIMEOUT`.
    HeaderTimeout,
}

impl ConnectionRejection {
    const ALL: [ConnectionRejection; 2] = [
        ConnectionRejection::Limit,
        ConnectionRejection::HeaderTimeout,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionRejection::Limit => "limit",
            ConnectionRejection::HeaderTimeout => "header_timeout",
        }
    }
}

/// Status codes 100-599 each get a lazily resolved counter handle.
const STATUS_SLOTS: usize = 500;

/// The tunnel's metric families and pre-resolved handles.
pub struct TunnelMetrics {
    /// `proxy_total_requests`: every request to the proxy port, counted once whatever its end.
    pub requests: IntCounter,
    /// `proxy_request_duration_seconds`: from the request's header being read to the last byte
    /// of the answer (or the failure), in seconds.
    pub duration: Histogram,
    /// `proxy_response_status_total{status}`: requests by the status the tunnel answered, including
    /// the 405/502/504 it makes itself. A response that failed after its header was sent is counted
    /// under the error status (502 or 504), since the client did not get it whole.
    statuses: IntCounterVec,
    status_handles: [OnceLock<IntCounter>; STATUS_SLOTS],
    /// `proxy_upstream_errors_total{kind}`: failed exchanges with the exporter, by cause.
    upstream_errors: [IntCounter; UpstreamErrorKind::ALL.len()],
    /// `proxy_in_flight_requests`: requests being answered now.
    pub in_flight: IntGauge,
    /// `proxy_response_bytes_total`: response body bytes forwarded to clients.
    pub response_bytes: IntCounter,
    /// `proxy_open_connections`: client connections open on the proxy port.
    pub open_connections: IntGauge,
    /// `proxy_connections_rejected_total{reason}`: client connections closed unanswered.
    connections_rejected: [IntCounter; ConnectionRejection::ALL.len()],
}

impl TunnelMetrics {
    fn register() -> Result<Self, prometheus::Error> {
        let upstream_errors_vec = register_int_counter_vec!(
            "proxy_upstream_errors_total",
            "Failed requests to the exporter, by kind of failure.",
            &["kind"]
        )?;
        let rejected_vec = register_int_counter_vec!(
            "proxy_connections_rejected_total",
            "Client connections closed before a request was answered: over MAX_CONNECTIONS (limit) or a request header slower than HEADER_READ_TIMEOUT (header_timeout).",
            &["reason"]
        )?;
        let info = register_int_gauge_vec!(
            "prometheus_tunnel_build_info",
            "Build information of this prometheus-tunnel; the value is always 1.",
            &["version", "revision", "build_date"]
        )?;
        info.with_label_values(&[
            build_info::VERSION,
            build_info::GIT_COMMIT,
            build_info::BUILD_DATE,
        ])
        .set(1);
        Ok(TunnelMetrics {
            requests: register_int_counter!(
                "proxy_total_requests",
                "Total number of requests received by the proxy port."
            )?,
            duration: register_histogram!(
                "proxy_request_duration_seconds",
                "Time from reading a request to finishing its response, in seconds."
            )?,
            statuses: register_int_counter_vec!(
                "proxy_response_status_total",
                "Requests by the HTTP status the proxy answered.",
                &["status"]
            )?,
            status_handles: std::array::from_fn(|_| OnceLock::new()),
            upstream_errors: UpstreamErrorKind::ALL
                .map(|kind| upstream_errors_vec.with_label_values(&[kind.as_str()])),
            in_flight: register_int_gauge!(
                "proxy_in_flight_requests",
                "Requests to the proxy port being answered now."
            )?,
            response_bytes: register_int_counter!(
                "proxy_response_bytes_total",
                "Response body bytes forwarded to clients."
            )?,
            open_connections: register_int_gauge!(
                "proxy_open_connections",
                "Client connections open on the proxy port."
            )?,
            connections_rejected: ConnectionRejection::ALL
                .map(|reason| rejected_vec.with_label_values(&[reason.as_str()])),
        })
    }

    /// The counter for one response status. Resolved on first use so that only statuses that
    /// occurred are exported.
    pub fn status(&self, code: u16) -> &IntCounter {
        let slot = usize::from(code).wrapping_sub(100);
        match self.status_handles.get(slot) {
            Some(handle) => {
                handle.get_or_init(|| self.statuses.with_label_values(&[&code.to_string()]))
            }
            // Not a valid HTTP status; Pingora never produces one, but count it rather than lose it.
            None => self.status_handles[STATUS_SLOTS - 1]
                .get_or_init(|| self.statuses.with_label_values(&["599"])),
        }
    }

    /// The counter of client connections closed unanswered for `reason`.
    pub fn connection_rejected(&self, reason: ConnectionRejection) -> &IntCounter {
        &self.connections_rejected[reason as usize]
    }

    /// The counter for one kind of upstream failure.
    pub fn upstream_error(&self, kind: UpstreamErrorKind) -> &IntCounter {
        &self.upstream_errors[kind as usize]
    }
}

/// The process-wide metrics, registered on first use.
pub static METRICS: LazyLock<TunnelMetrics> = LazyLock::new(|| {
    // Registration fails only on a duplicate name, a programming error caught by every test.
    TunnelMetrics::register().expect("tunnel metrics register once in the default registry")
});

/// Registers the metrics now, so `/metrics` lists them (at zero) before the first scrape.
pub fn init() {
    LazyLock::force(&METRICS);
}
