//! One factory per service: the proxy port and the metrics port, ready for Pingora's `Server`.

use std::sync::Arc;

use pingora_core::apps::HttpServerOptions;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::listeners::ListenerConfig;
use pingora_core::protocols::l4::stream::L4BufferSettings;
use pingora_core::protocols::ALPN;
use pingora_core::server::configuration::ServerConf;
use pingora_core::services::listening::Service;
use pingora_error::Result;
use pingora_proxy::{http_proxy, HttpProxy};

use crate::admin::AdminApp;
use crate::config::TunnelConfig;
use crate::listener::GuardedApp;
use crate::proxy::TunnelProxy;
use crate::targets::SharedTargets;

/// Bytes of a response gathered before they are written to the client. Pingora writes the
/// response header and each body chunk as they come, through a 1460-byte buffer, so a scrape
/// cost two `sendto`s (header, body) and two wake-ups of the scraper. 16 KiB holds the header
/// and a compressed node_exporter page (about 10 KiB), which then leave in one `sendto`: 1.2x
/// the throughput for gzip scrapes in a side-by-side run, and no change for larger pages,
/// whose chunks of 16 KiB or more still go straight to the socket. Pingora flushes it when the
/// response ends or fails; until then a slow exporter's small chunks may wait in it, which a
/// scraper, reading the page whole, does not notice.
pub const CLIENT_WRITE_BUFFER: usize = 16 * 1024;

/// The proxy port's service: forwards scrapes to the exporter, behind the connection limits
/// of [`GuardedApp`], over TLS when configured.
pub fn proxy_service(
    server_conf: &Arc<ServerConf>,
    config: &TunnelConfig,
    targets: &SharedTargets,
) -> Result<Service<GuardedApp<HttpProxy<TunnelProxy>>>> {
    let proxy = TunnelProxy::new(Arc::clone(targets), &config.access, server_conf)?;
    let mut http = http_proxy(server_conf, proxy);
    // Never act as a CONNECT proxy for clients: the tunnel reaches its exporter only.
    let mut options = HttpServerOptions::default();
    options.allow_connect_method_proxying = false;
    http.server_options = Some(options);
    let mut service = Service::new(
        "proxy".to_string(),
        GuardedApp::new(http, config.listen.limits),
    );
    let addr = config.listen.proxy_addr().to_string();
    let buffers = L4BufferSettings::default().write(CLIENT_WRITE_BUFFER);
    match &config.listen.tls {
        Some(tls) => {
            let mut settings = TlsSettings::intermediate(&tls.cert_file, &tls.key_file)?;
            // HTTP/1.1 only: the connection guard speaks HTTP/1.
            settings.set_alpn(ALPN::H1);
            if let Some(verifier) = &tls.client_verifier {
                settings.set_client_cert_verifier(Arc::clone(verifier));
            }
            service.add_listener(ListenerConfig::tcp(addr).l4_buffer(buffers).tls(settings));
        }
        None => service.add_listener(ListenerConfig::tcp(addr).l4_buffer(buffers)),
    }
    Ok(service)
}

/// The metrics port's service: `/metrics`, `/healthz`, `/readyz`, `/version`, `/targets`.
pub fn admin_service(config: &TunnelConfig, targets: &SharedTargets) -> Service<AdminApp> {
    let app = AdminApp::new(Arc::clone(targets), &config.listen);
    let mut service = Service::new("admin".to_string(), app);
    service.add_tcp(&config.listen.metrics_addr().to_string());
    service
}
