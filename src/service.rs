//! One factory per service: the proxy port and the metrics port, ready for Pingora's `Server`.

use std::sync::Arc;

use pingora_core::apps::HttpServerOptions;
use pingora_core::listeners::tls::TlsSettings;
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

/// The proxy port's service: forwards scrapes to the exporter, behind the connection limits
/// of [`GuardedApp`], over TLS when configured.
pub fn proxy_service(
    server_conf: &Arc<ServerConf>,
    config: &TunnelConfig,
    targets: &SharedTargets,
) -> Result<Service<GuardedApp<HttpProxy<TunnelProxy>>>> {
    let proxy = TunnelProxy::new(Arc::clone(targets), &config.access)?;
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
    match &config.listen.tls {
        Some(tls) => {
            let mut settings = TlsSettings::intermediate(&tls.cert_file, &tls.key_file)?;
            // HTTP/1.1 only: the connection guard speaks HTTP/1.
            settings.set_alpn(ALPN::H1);
            if let Some(verifier) = &tls.client_verifier {
                settings.set_client_cert_verifier(Arc::clone(verifier));
            }
            service.add_tls_with_settings(&addr, None, settings);
        }
        None => service.add_tcp(&addr),
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
