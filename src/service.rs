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
use crate::admin::{AdminApp, AgentListing, StatusSources};
use crate::agent::port::AgentPort;
use crate::agent::relay::AgentScrapes;
use crate::config::{ClientLimits, TunnelConfig};
use crate::listener::{ProxyPort, RequestHandler};
use crate::material::tls::ListenerTls;
use crate::material::PortMaterial;
use crate::metrics::{PortMetrics, METRICS};
use crate::proxy::TunnelProxy;
use crate::reload::ReloadLog;
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
    agents: Option<(AgentScrapes, AgentDoor)>,
) -> Result<Service<ProxyPort<TunnelProxy>>> {
    let access = AccessControl::new(&config.access, material.client_auth);
    let (scrapes, door) = match agents {
        Some((scrapes, door)) => (Some(scrapes), Some(door)),
        None => (None, None),
    };
    let proxy = TunnelProxy::new(Arc::clone(targets), access, server_conf, reverse, scrapes);
    let tls = material.listener_tls.as_ref().map(acceptor).transpose()?;
    let mut service = port_service(
        "proxy",
        proxy,
        config.listen.proxy_addr(),
        config.listen.limits,
        max_connections,
        tls,
        &METRICS.proxy_port,
    );
    if let Some(door) = door {
        add_agent_port(&mut service, door)?;
    }
    Ok(service)
}

/// The agent port (agent mode): its address, TLS and handler.
pub struct AgentDoor {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its certificate and the verifier of agents' certificates.
    pub tls: ListenerTls,
    /// Its connections' handler.
    pub handler: AgentPort,
}

/// Adds the agent port to the proxy port's service, so that an agent's connection is driven
/// on the threads that serve the scrapes it carries (one thread wakes the other for every
/// HTTP/2 frame otherwise: measured, a quarter more CPU per scrape). TLS with client
/// certificates required is done by Pingora's listener; then HTTP/2 with the tunnel as the
/// client (`agent/port.rs`).
fn add_agent_port(service: &mut Service<ProxyPort<TunnelProxy>>, door: AgentDoor) -> Result<()> {
    let mut settings = TlsSettings::intermediate(&door.tls.cert_file, &door.tls.key_file)?;
    settings.set_alpn(ALPN::H2);
    if let Some(verifier) = &door.tls.client_verifier {
        settings.set_client_cert_verifier(Arc::clone(verifier));
    }
    service.add_tls_with_settings(&door.addr.to_string(), None, settings);
    let port = door.addr.port();
    match service.app_logic_mut() {
        Some(app) => {
            app.set_side_door(port, Arc::new(door.handler));
            Ok(())
        }
        None => Err(pingora_error::Error::explain(
            pingora_error::ErrorType::InternalError,
            "the proxy service has no app to serve the agent port",
        )),
    }
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
    reloads: Arc<ReloadLog>,
) -> Service<AdminApp> {
    let status = StatusSources::new(config.in_force.clone(), reloads);
    let app = AdminApp::new(
        Arc::clone(targets),
        &config.listen,
        config.traffic_ports(),
        registry,
        agents,
        status,
    );
    let mut service = Service::new("admin".to_string(), app);
    service.add_tcp(&config.listen.metrics_addr().to_string());
    service
}
