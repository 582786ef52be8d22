//! The metrics port: the tunnel's own `/metrics`, `/healthz`, `/readyz`, `/version`,
//! `/targets` (Prometheus http_sd JSON of every target), the status page at `/` and its data
//! at `/status`, and `/agents` in agent mode. Never the proxy port: what these show is for
//! operators, and the proxy port is for Prometheus.
//!
//! Probes point here, never at the exporter: an exporter outage shows as `up == 0` for the
//! exporter's job in Prometheus, it does not restart the tunnel.

mod agents;
mod page_query;
mod readiness;
mod status;
mod status_page;

use agents::AgentGroup;
pub use agents::{AGENT_LABEL, REPLICA_LABEL};
pub use status::StatusSources;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use flate2::write::GzEncoder;
use flate2::Compression;
use http::header::{ACCEPT_ENCODING, ALLOW, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, VARY};
use http::{Method, Response, StatusCode};
use log::warn;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use prometheus::{Encoder, TextEncoder};
use serde::Serialize;

use crate::agent::directory::AgentDirectory;
use crate::agent::peers::PeerDirectory;
use crate::build_info;
use crate::config::ListenConfig;
use crate::reverse::registry::Registry;
use crate::targets::{Routing, SharedTargets};

/// The label of `/targets` groups saying where a target came from (reverse mode): `config`,
/// or `poll` for a client's registered name. A `__meta_` label: there for relabeling, dropped
/// after it.
pub const SOURCE_LABEL: &str = "__meta_prometheus_tunnel_source";

/// The `/metrics`, `/healthz`, `/readyz`, `/version`, `/targets` app.
pub struct AdminApp {
    targets: SharedTargets,
    /// Port Prometheus scrapes targets through.
    proxy_port: u16,
    /// The ports that take traffic (proxy, poll, agent) and where they listen, for `/readyz`.
    traffic_ports: Vec<(&'static str, SocketAddr)>,
    /// Whether that port speaks TLS (`__scheme__` https).
    proxy_tls: bool,
    /// Host for `/targets` when the request names none.
    fallback_host: String,
    /// The registered clients, in reverse mode.
    registry: Option<Arc<Registry>>,
    /// The agents' names, in agent mode.
    agents: Option<AgentListing>,
    /// What the status page shows beyond the targets.
    status: StatusSources,
}

/// What `/targets` and `/agents` list in agent mode.
pub struct AgentListing {
    /// The agents connected to this replica.
    pub directory: Arc<AgentDirectory>,
    /// The other replicas' agents, when `PEERS` is set.
    pub peers: Option<Arc<PeerDirectory>>,
    /// This replica's id.
    pub replica_id: String,
}

impl AdminApp {
    /// The app for the tunnel listening as `listen` (and on `traffic_ports`), listing
    /// `targets` and, in reverse mode, the names `registry` holds; its status page shows
    /// `status` too.
    pub fn new(
        targets: SharedTargets,
        listen: &ListenConfig,
        traffic_ports: Vec<(&'static str, SocketAddr)>,
        registry: Option<Arc<Registry>>,
        agents: Option<AgentListing>,
        status: StatusSources,
    ) -> Self {
        let fallback_host = match listen.address {
            ip if ip.is_unspecified() => "localhost".to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        AdminApp {
            targets,
            proxy_port: listen.proxy_port.get(),
            traffic_ports,
            proxy_tls: listen.tls.is_some(),
            fallback_host,
            registry,
            agents,
            status,
        }
    }

    /// Prometheus http_sd JSON: one group per target, scraped at the proxy port of the host the
    /// caller reached this port by, with `__param_<routing parameter>` (multi-target mode) and
    /// the target's labels. In reverse mode, then one group per registered name, as `/clients`
    /// lists it (a job scrapes it with `proxy_url`), and every group says its source.
    fn targets(&self, host_header: Option<&http::HeaderValue>) -> Response<Vec<u8>> {
        let host = host_header
            .and_then(|h| h.to_str().ok())
            .map(strip_port)
            .filter(|h| !h.is_empty())
            .unwrap_or(&self.fallback_host);
        let address = format!("{host}:{}", self.proxy_port);
        let table = self.targets.load();
        let source = (self.registry.is_some() || self.agents.is_some()).then_some("config");
        // A single exporter is reached without a parameter: its own query is left alone.
        let param = match table.routing() {
            Routing::Single => None,
            Routing::ByParam(param) => Some(format!("__param_{param}")),
        };
        // Written straight into the body: a fleet's list is large, and building it as JSON
        // values first would hold several copies of it at once.
        let groups: Vec<SdGroup<'_>> = table
            .iter()
            .map(|target| SdGroup {
                targets: [&address],
                labels: SdLabels {
                    param: param.as_deref().map(|param| (param, &*target.name)),
                    scheme: self.proxy_tls.then_some("https"),
                    own: &target.labels,
                    source,
                },
            })
            .collect();
        let registered = self
            .registry
            .as_ref()
            .map(|registry| registry.names())
            .unwrap_or_default();
        let agent_groups = self.agent_groups(&address, table.routing());
        let groups: Vec<Group<'_>> = groups
            .into_iter()
            .chain(registered.iter().map(|name| SdGroup {
                targets: [&**name],
                labels: SdLabels {
                    param: None,
                    scheme: None,
                    own: &[],
                    source: Some("poll"),
                },
            }))
            .map(Group::Sd)
            .chain(agent_groups.into_iter().map(Group::Agent))
            .collect();
        let mut body = Vec::with_capacity(64 + table.len() * (address.len() + 96));
        if let Err(e) = serde_json::to_writer(&mut body, &groups) {
            warn!("could not encode /targets: {e}");
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not encode the targets\n",
            );
        }
        build(StatusCode::OK, "application/json", body, false)
    }
}

/// A group of `/targets`: a configured target or registered client, or an agent's name.
#[derive(Serialize)]
#[serde(untagged)]
enum Group<'a> {
    Sd(SdGroup<'a>),
    Agent(AgentGroup),
}

/// One http_sd group: the tunnel's proxy address, and the target's parameters and labels.
#[derive(Serialize)]
struct SdGroup<'a> {
    targets: [&'a str; 1],
    labels: SdLabels<'a>,
}

/// The labels of one group: the target's own, then `__param_<routing parameter>` (and
/// `__scheme__`).
struct SdLabels<'a> {
    param: Option<(&'a str, &'a str)>,
    scheme: Option<&'static str>,
    own: &'a [(Box<str>, Box<str>)],
    /// [`SOURCE_LABEL`], in reverse mode.
    source: Option<&'static str>,
}

impl Serialize for SdLabels<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.own.len() + 3))?;
        for (k, v) in self.own {
            map.serialize_entry(&**k, &**v)?;
        }
        if let Some((param, name)) = self.param {
            map.serialize_entry(param, name)?;
        }
        if let Some(scheme) = self.scheme {
            map.serialize_entry("__scheme__", scheme)?;
        }
        if let Some(source) = self.source {
            map.serialize_entry(SOURCE_LABEL, source)?;
        }
        map.end()
    }
}

/// `host:port` → `host`; `[v6]:port` → `[v6]`.
fn strip_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        if req.method != Method::GET && req.method != Method::HEAD {
            let mut resp = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "only GET and HEAD are served here\n",
            );
            resp.headers_mut()
                .insert(ALLOW, http::HeaderValue::from_static("GET, HEAD"));
            return resp;
        }
        let gzip = accepts_gzip(req.headers.get_all(ACCEPT_ENCODING));
        match req.uri.path() {
            "/" => self.status_page(req.uri.query(), gzip),
            "/status" => self.status_json(gzip),
            "/metrics" => metrics(gzip),
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" => match readiness::not_listening(&self.traffic_ports) {
                None => text(StatusCode::OK, "ready\n"),
                Some(port) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: the {port} does not listen (yet)\n"),
                ),
            },
            "/version" => version(),
            "/targets" => self.targets(req.headers.get(http::header::HOST)),
            "/agents" => self.agents_page(),
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: this port serves / (the status page), /status, /metrics, /healthz, /readyz, /version and /targets\n",
            ),
        }
    }
}

fn text(status: StatusCode, body: impl Into<Vec<u8>>) -> Response<Vec<u8>> {
    build(status, "text/plain; charset=utf-8", body.into(), false)
}

fn build(status: StatusCode, content_type: &str, body: Vec<u8>, gzip: bool) -> Response<Vec<u8>> {
    let mut builder = Response::builder()
        .status(status)
        .header(CONTENT_TYPE, content_type)
        .header(CONTENT_LENGTH, body.len());
    if gzip {
        builder = builder
            .header(CONTENT_ENCODING, "gzip")
            .header(VARY, "Accept-Encoding");
    }
    // Every part above is a valid static header, so this cannot fail; answer 500 if it ever did.
    builder.body(body).unwrap_or_else(|e| {
        warn!("could not build an admin response: {e}");
        let mut resp = Response::new(Vec::new());
        *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        resp
    })
}

/// Whether any `Accept-Encoding` header lists gzip with a non-zero quality.
fn accepts_gzip<'a>(values: impl IntoIterator<Item = &'a http::HeaderValue>) -> bool {
    values
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            let zero_q = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            coding.eq_ignore_ascii_case("gzip") && !zero_q
        })
}

/// The default registry in the Prometheus text format, gzip-compressed when asked.
fn metrics(gzip: bool) -> Response<Vec<u8>> {
    let encoder = TextEncoder::new();
    let mut body = Vec::with_capacity(16 * 1024);
    if let Err(e) = encoder.encode(&prometheus::gather(), &mut body) {
        warn!("could not encode /metrics: {e}");
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not encode metrics\n",
        );
    }
    compressed(StatusCode::OK, encoder.format_type(), body, gzip)
}

/// `body`, gzip-compressed when `gzip` (the client accepts it) and compression works.
fn compressed(
    status: StatusCode,
    content_type: &str,
    body: Vec<u8>,
    gzip: bool,
) -> Response<Vec<u8>> {
    if gzip {
        let mut gz = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
        if let Ok(compressed) = gz.write_all(&body).and_then(|()| gz.finish()) {
            return build(status, content_type, compressed, true);
        }
    }
    build(status, content_type, body, false)
}

/// `{"version", "gitCommit", "buildTime"}` as the original tool answered.
fn version() -> Response<Vec<u8>> {
    let body = serde_json::json!({
        "version": build_info::VERSION,
        "gitCommit": build_info::GIT_COMMIT,
        "buildTime": build_info::BUILD_DATE,
    });
    build(
        StatusCode::OK,
        "application/json",
        body.to_string().into_bytes(),
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::{accepts_gzip, strip_port};
    use http::HeaderValue;

    #[test]
    fn gzip_negotiation() {
        let yes = |s: &'static str| accepts_gzip([&HeaderValue::from_static(s)]);
        assert!(yes("gzip"));
        assert!(yes("identity, GZIP;q=0.5"));
        assert!(!yes("gzip;q=0"));
        assert!(!yes("deflate, br"));
        assert!(!accepts_gzip([]));
    }

    #[test]
    fn hosts_without_ports() {
        assert_eq!(
            strip_port("tunnel.monitoring.svc:9000"),
            "tunnel.monitoring.svc"
        );
        assert_eq!(strip_port("tunnel"), "tunnel");
        assert_eq!(strip_port("[fd00::1]:9000"), "[fd00::1]");
        assert_eq!(strip_port("[fd00::1]"), "[fd00::1]");
    }
}
