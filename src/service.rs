//! One factory per service: the proxy port, the poll port (reverse mode) and the metrics port,
//! ready for Pingora's `Server`.

use std::net::SocketAddr;
use std::sync::Arc;

use pingora_core::listeners::tls::{Acceptor, TlsSettings};
use pingora_core::listeners::ListenerConfig;
use pingora_core::protocols::l4::stream::L4BufferSettings;
use pingora_core::protocols::ALPN;
use pingora_core::server::configuration::ServerConf;
use pingora_core::services::listening::Service;
use pingora_error::Result;

use crate::access::AccessControl;
use crate::admin::{AdminApp, AgentListing};
use crate::agent::port::AgentPort;
use crate::agent::relay::AgentScrapes;
use crate::config::{ClientLimits, TunnelConfig};
use crate::listener::{ProxyPort, RequestHandler};
use crate::material::tls::ListenerTls;
use crate::material::PortMaterial;
use crate::metrics::{PortMetrics, METRICS};
use crate::proxy::TunnelProxy;
use crate::reverse::poll_port::PollPort;
use crate::reverse::registry::Registry;
use crate::reverse::scrape::ReverseScrapes;
use crate::targets::SharedTargets;

/// The proxy port's service: scrapes forwarded to the exporters (and, in reverse mode, handed
/// to the clients that registered), behind the connection limits and TLS of [`ProxyPort`]; at
/// most `max_connections` client connections at once.
pub fn proxy_service(
    server_conf: &Arc<ServerConf>,
    config: &TunnelConfig,
    material: PortMaterial,
    targets: &SharedTargets,
    max_connections: usize,
    reverse: Option<ReverseScrapes>,
    agents: Option<AgentScrapes>,
) -> Result<Service<ProxyPort<TunnelProxy>>> {
    let access = AccessControl::new(&config.access, material.client_auth);
    let proxy = TunnelProxy::new(Arc::clone(targets), access, server_conf, reverse, agents);
    let tls = material.listener_tls.as_ref().map(acceptor).transpose()?;
    Ok(port_service(
        "proxy",
        proxy,
        config.listen.proxy_addr(),
        config.listen.limits,
        max_connections,
        tls,
        &METRICS.proxy_port,
    ))
}

/// The poll port's service (reverse mode): `/poll`, `/push`, `/clients` behind the same
/// connection limits as the proxy port, over `tls` when given.
pub fn poll_service(
    handler: PollPort,
    addr: SocketAddr,
    limits: ClientLimits,
    max_connections: usize,
    tls: Option<&ListenerTls>,
    metrics: &'static PortMetrics,
) -> Result<Service<ProxyPort<PollPort>>> {
    let tls = tls.map(acceptor).transpose()?;
    Ok(port_service(
        "poll",
        handler,
        addr,
        limits,
        max_connections,
        tls,
        metrics,
    ))
}

/// A port served by [`ProxyPort`] around `handler`.
fn port_service<H: RequestHandler>(
    name: &str,
    handler: H,
    addr: SocketAddr,
    limits: ClientLimits,
    max_connections: usize,
    tls: Option<Acceptor>,
    metrics: &'static PortMetrics,
) -> Service<ProxyPort<H>> {
    let port = ProxyPort::new(handler, limits, max_connections, tls, metrics);
    let gate = port.gate();
    let mut service = Service::new(name.to_string(), port);
    // Connections are counted, and those far over the limit closed, in the accept loop itself.
    service.set_connection_filter(gate);
    // No L4 buffers: `ProxyPort` reads headers into buffers of their own size and gathers
    // writes only while a response is written, so an idle connection holds no buffer.
    let listener = ListenerConfig::tcp(addr.to_string()).l4_buffer(L4BufferSettings::unbuffered());
    service.add_listener(listener);
    service
}

/// The TLS acceptor of `tls`. The handshake runs in `ProxyPort`, under the connection limits
/// and the header deadline, so Pingora's listener is plain TCP.
fn acceptor(tls: &ListenerTls) -> Result<Acceptor> {
    let mut settings = TlsSettings::intermediate(&tls.cert_file, &tls.key_file)?;
    // HTTP/1.1 only: the ports speak HTTP/1.
    settings.set_alpn(ALPN::H1);
    if let Some(verifier) = &tls.client_verifier {
        settings.set_client_cert_verifier(Arc::clone(verifier));
    }
    Ok(settings.build())
}

/// The metrics port's service: `/metrics`, `/healthz`, `/readyz`, `/version`, `/targets` (with
/// the names `registry` holds, in reverse mode).
pub fn admin_service(
    config: &TunnelConfig,
    targets: &SharedTargets,
    registry: Option<Arc<Registry>>,
    agents: Option<AgentListing>,
) -> Service<AdminApp> {
    let app = AdminApp::new(Arc::clone(targets), &config.listen, registry, agents);
    let mut service = Service::new("admin".to_string(), app);
    service.add_tcp(&config.listen.metrics_addr().to_string());
    service
}

/// The agent port's service (agent mode): TLS with client certificates required, done by
/// Pingora's listener, then HTTP/2 with the tunnel as the client (`agent/port.rs`).
pub fn agent_service(
    handler: AgentPort,
    addr: SocketAddr,
    tls: &ListenerTls,
) -> Result<Service<AgentPort>> {
    let mut settings = TlsSettings::intermediate(&tls.cert_file, &tls.key_file)?;
    settings.set_alpn(ALPN::H2);
    if let Some(verifier) = &tls.client_verifier {
        settings.set_client_cert_verifier(Arc::clone(verifier));
    }
    let mut service = Service::new("agent".to_string(), handler);
    service.add_tls_with_settings(&addr.to_string(), None, settings);
    Ok(service)
}
