//! One factory per service: the proxy port and the metrics port, ready for Pingora's `Server`.

use std::sync::Arc;

use pingora_core::apps::HttpServerOptions;
use pingora_core::server::configuration::ServerConf;
use pingora_core::services::listening::Service;
use pingora_error::Result;
use pingora_proxy::{http_proxy_service_with_name, HttpProxy};

use crate::admin::AdminApp;
use crate::config::TunnelConfig;
use crate::proxy::TunnelProxy;

/// The proxy port's service: forwards scrapes to the exporter.
pub fn proxy_service(
    server_conf: &Arc<ServerConf>,
    config: &TunnelConfig,
) -> Result<Service<HttpProxy<TunnelProxy>>> {
    let proxy = TunnelProxy::new(&config.exporter)?;
    let mut service = http_proxy_service_with_name(server_conf, proxy, "proxy");
    if let Some(app) = service.app_logic_mut() {
        // Never act as a CONNECT proxy for clients: the tunnel reaches one exporter only.
        let mut options = HttpServerOptions::default();
        options.allow_connect_method_proxying = false;
        app.server_options = Some(options);
    }
    service.add_tcp(&config.listen.proxy_addr().to_string());
    Ok(service)
}

/// The metrics port's service: `/metrics`, `/healthz`, `/readyz`, `/version`.
pub fn admin_service(config: &TunnelConfig) -> Service<AdminApp> {
    let mut service = Service::new("admin".to_string(), AdminApp);
    service.add_tcp(&config.listen.metrics_addr().to_string());
    service
}
