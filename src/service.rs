//! One factory per service: the proxy port and the metrics port, ready for Pingora's `Server`.

use std::sync::Arc;

use pingora_core::listeners::tls::TlsSettings;
use pingora_core::listeners::ListenerConfig;
use pingora_core::protocols::l4::stream::L4BufferSettings;
use pingora_core::protocols::ALPN;
use pingora_core::server::configuration::ServerConf;
use pingora_core::services::listening::Service;
use pingora_error::Result;

use crate::access::AccessControl;
use crate::admin::AdminApp;
use crate::config::TunnelConfig;
use crate::listener::ProxyPort;
use crate::material::PortMaterial;
use crate::proxy::TunnelProxy;
use crate::targets::SharedTargets;

/// The proxy port's service: scrapes forwarded to the exporters, behind the connection limits
/// and TLS of [`ProxyPort`]; at most `max_connections` client connections at once.
pub fn proxy_service(
    server_conf: &Arc<ServerConf>,
    config: &TunnelConfig,
    material: PortMaterial,
    targets: &SharedTargets,
    max_connections: usize,
) -> Result<Service<ProxyPort<TunnelProxy>>> {
    let access = AccessControl::new(&config.access, material.client_auth);
    let proxy = TunnelProxy::new(Arc::clone(targets), access, server_conf);
    // The handshake runs in `ProxyPort`, under the connection limits and the header deadline,
    // so Pingora's listener is plain TCP.
    let tls = match &material.listener_tls {
        Some(tls) => {
            let mut settings = TlsSettings::intermediate(&tls.cert_file, &tls.key_file)?;
            // HTTP/1.1 only: the proxy port speaks HTTP/1.
            settings.set_alpn(ALPN::H1);
            if let Some(verifier) = &tls.client_verifier {
                settings.set_client_cert_verifier(Arc::clone(verifier));
            }
            Some(settings.build())
        }
        None => None,
    };
    let port = ProxyPort::new(proxy, config.listen.limits, max_connections, tls);
    let gate = port.gate();
    let mut service = Service::new("proxy".to_string(), port);
    // Connections are counted, and those far over the limit closed, in the accept loop itself.
    service.set_connection_filter(gate);
    // No L4 buffers: `ProxyPort` reads headers into buffers of their own size and gathers
    // writes only while a response is written, so an idle connection holds no buffer.
    let listener = ListenerConfig::tcp(config.listen.proxy_addr().to_string())
        .l4_buffer(L4BufferSettings::unbuffered());
    service.add_listener(listener);
    Ok(service)
}

/// The metrics port's service: `/metrics`, `/healthz`, `/readyz`, `/version`, `/targets`.
pub fn admin_service(config: &TunnelConfig, targets: &SharedTargets) -> Service<AdminApp> {
    let app = AdminApp::new(Arc::clone(targets), &config.listen);
    let mut service = Service::new("admin".to_string(), app);
    service.add_tcp(&config.listen.metrics_addr().to_string());
    service
}
