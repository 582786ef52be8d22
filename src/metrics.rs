//! The tunnel's own metrics, registered once in the `prometheus` default registry (the one
//! Pingora's metrics use too), so `/metrics` shows them all. With the crate's `process`
//! feature that registry also carries the process collector: `process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`, `process_max_fds`,
//! `process_start_time_seconds`, what every exporter shows and what tells a tunnel near its
//! memory or open-file limit.
//!
//! Names of the first three are those of the original Go tool, kept exactly so existing alert
//! rules and dashboards keep working. Handles are resolved once: recording a request is a few
//! atomic adds, with no label hashing or locking on the hot path.

use std::sync::{LazyLock, OnceLock};

use prometheus::{
    register_histogram_vec, register_int_counter, register_int_counter_vec, register_int_gauge,
    register_int_gauge_vec, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
};

use crate::build_info;

#[macro_use]
mod labels;
mod agent;
mod poll;
pub mod scrape_log;
mod target;
pub use agent::{agent_metrics, AgentConnection, AgentMetrics};
pub use poll::{poll_metrics, ClientDrop, PollMetrics, PollOutcome, PushOutcome};
pub use target::TargetMetrics;

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
    /// Every kind, in the order of their codes on the status page.
    pub const ALL: [UpstreamErrorKind; 8] = [
        UpstreamErrorKind::Refused,
        UpstreamErrorKind::Timeout,
        UpstreamErrorKind::Dns,
        UpstreamErrorKind::Tls,
        UpstreamErrorKind::Proxy,
        UpstreamErrorKind::Reset,
        UpstreamErrorKind::Protocol,
        UpstreamErrorKind::Other,
    ];

    /// The kind whose label value is `text`.
    pub fn from_label(text: &str) -> Option<UpstreamErrorKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }

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
    /// The request header (or, on a TLS port, the handshake before it) did not arrive within
    /// `HEADER_READ_TIMEOUT`.
    HeaderTimeout,
    /// The TLS handshake failed (not TLS, no or a wrong client certificate).
    TlsHandshake,
}

impl ConnectionRejection {
    const ALL: [ConnectionRejection; 3] = [
        ConnectionRejection::Limit,
        ConnectionRejection::HeaderTimeout,
        ConnectionRejection::TlsHandshake,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionRejection::Limit => "limit",
            ConnectionRejection::HeaderTimeout => "header_timeout",
            ConnectionRejection::TlsHandshake => "tls_handshake",
        }
    }
}

/// Statuses whose counter handle each target keeps resolved; others take the slow path.
const COMMON_STATUSES: [u16; 19] = [
    200, 204, 206, 301, 302, 304, 400, 401, 403, 404, 405, 408, 429, 431, 499, 500, 502, 503, 504,
];

/// The process-wide metrics: the per-target families and the tunnel's own gauges and counters.
pub struct TunnelMetrics {
    families: TargetFamilies,
    /// `proxy_in_flight_requests`: requests being answered now.
    pub in_flight: IntGauge,
    /// `proxy_response_bytes_total`: response body bytes forwarded to clients.
    pub response_bytes: IntCounter,
    /// `proxy_open_connections` and `proxy_connections_rejected_total{reason}`.
    pub proxy_port: PortMetrics,
}

/// The connection counters of one listening port.
#[derive(Debug)]
pub struct PortMetrics {
    /// Client connections open on the port.
    pub open_connections: IntGauge,
    /// Client connections closed unanswered, by reason.
    rejected: [IntCounter; ConnectionRejection::ALL.len()],
}

impl PortMetrics {
    /// Registers `{prefix}open_connections` and `{prefix}connections_rejected_total`, for the
    /// port described by `port` in their help.
    pub(crate) fn register(prefix: &str, port: &str) -> Result<Self, prometheus::Error> {
        let rejected = register_int_counter_vec!(
            format!("{prefix}connections_rejected_total"),
            format!("Client connections to {port} closed before a request was answered: over the connection limit (limit), a TLS handshake or request header slower than HEADER_READ_TIMEOUT (header_timeout), a failed TLS handshake (tls_handshake)."),
            &["reason"]
        )?;
        Ok(PortMetrics {
            open_connections: register_int_gauge!(
                format!("{prefix}open_connections"),
                format!("Client connections open on {port}.")
            )?,
            rejected: ConnectionRejection::ALL
                .map(|reason| rejected.with_label_values(&[reason.as_str()])),
        })
    }

    /// The counter of client connections closed unanswered for `reason`.
    pub fn connection_rejected(&self, reason: ConnectionRejection) -> &IntCounter {
        &self.rejected[reason as usize]
    }
}

/// The families whose series belong to a target: in multi-target mode they carry a `target`
/// label (so the original alert rules, which select no label, keep working in both modes).
struct TargetFamilies {
    /// `proxy_total_requests`: every request to the proxy port, counted once whatever its end.
    requests: IntCounterVec,
    /// `proxy_request_duration_seconds`: from the request header read to the end of the answer.
    duration: HistogramVec,
    /// `proxy_response_status_total{status}`: requests by the status answered, including the
    /// tunnel's own 4xx/502/504; a response that failed after its header was sent counts under
    /// the error status, since the client did not get it whole.
    statuses: IntCounterVec,
    /// `proxy_upstream_errors_total{kind}`: failed exchanges with the exporter, by cause.
    upstream_errors: IntCounterVec,
    /// `proxy_upstream_up`: 1 if the last forwarded scrape got an answer below 500, else 0.
    upstream_up: IntGaugeVec,
    /// Whether the families have the `target` label.
    labelled: bool,
}

impl TunnelMetrics {
    fn register(multi_target: bool) -> Result<Self, prometheus::Error> {
        let with = |labels: &[&'static str]| -> Vec<&'static str> {
            let mut all = if multi_target {
                vec!["target"]
            } else {
                Vec::new()
            };
            all.extend_from_slice(labels);
            all
        };
        let families = TargetFamilies {
            requests: register_int_counter_vec!(
                "proxy_total_requests",
                "Total number of requests received by the proxy port.",
                &with(&[])
            )?,
            duration: register_histogram_vec!(
                "proxy_request_duration_seconds",
                "Time from reading a request to finishing its response, in seconds.",
                &with(&[])
            )?,
            statuses: register_int_counter_vec!(
                "proxy_response_status_total",
                "Requests by the HTTP status the proxy answered.",
                &with(&["status"])
            )?,
            upstream_errors: register_int_counter_vec!(
                "proxy_upstream_errors_total",
                "Failed requests to the exporter, by kind of failure.",
                &with(&["kind"])
            )?,
            upstream_up: register_int_gauge_vec!(
                "proxy_upstream_up",
                "1 if the last scrape forwarded to the exporter got an answer below 500, else 0.",
                &with(&[])
            )?,
            labelled: multi_target,
        };
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
            families,
            in_flight: register_int_gauge!(
                "proxy_in_flight_requests",
                "Requests to the proxy port being answered now."
            )?,
            response_bytes: register_int_counter!(
                "proxy_response_bytes_total",
                "Response body bytes forwarded to clients."
            )?,
            proxy_port: PortMetrics::register("proxy_", "the proxy port")?,
        })
    }

    /// Whether per-target series carry a `target` label (multi-target mode).
    pub fn multi_target(&self) -> bool {
        self.families.labelled
    }
}

static METRICS_CELL: OnceLock<TunnelMetrics> = OnceLock::new();

/// The process-wide metrics. Registered by [`init`]; a program that never called it (a bench, a
/// unit test) gets the single-target families.
pub static METRICS: LazyLock<&'static TunnelMetrics> = LazyLock::new(|| {
    METRICS_CELL.get_or_init(|| {
        // Registration fails only on a duplicate name, a programming error caught by every test.
        TunnelMetrics::register(false)
            .expect("tunnel metrics register once in the default registry")
    })
});

/// Registers the metrics now, with a `target` label when `multi_target`, so `/metrics` lists
/// them before the first scrape. Call once, before anything records.
pub fn init(multi_target: bool) {
    METRICS_CELL.get_or_init(|| {
        TunnelMetrics::register(multi_target)
            .expect("tunnel metrics register once in the default registry")
    });
    LazyLock::force(&METRICS);
}
