//! The agent role, `prometheus-tunnel agent`: the same binary beside the exporters, dialling
//! the tunnel's agent port and serving its scrapes over that connection (see [`crate::agent`]
//! for the tunnel's side and the wire).
//!
//! - `dialer.rs`: keeps the connection (one per replica), with backoff and jitter.
//! - `serve.rs`: HTTP/2 server on it; each stream forwarded to an exporter by the forward
//!   mode's own code, or answered with the announcement of the exporters.
//!
//! Its exporters are the conf file's `tunnel.targets` (or `SERVER_IP`, announced under the
//! agent's own name), reloaded as the tunnel reloads its own.

pub mod dialer;
pub mod serve;

use std::sync::Arc;
use std::time::Duration;

use log::info;
use pingora_core::server::Server;
use pingora_core::services::background::background_service;
use tokio::sync::watch;

use crate::build_info;
use crate::config::{AgentRoleConfig, TunnelConfig};
use crate::material::ExporterMaterial;
use crate::proxy::Forwarder;
use crate::reload::{Reloader, WatchedConf};
use crate::reverse::identity;
use crate::targets::SharedTargets;
use crate::upstream::Upstream;
use dialer::Dialer;
use serve::AgentServer;

/// Why the agent role could not start: the exit code, and what to say.
pub type StartError = (u8, String);

/// Adds the agent role's services to `server`: the dialler, the watch of its exporters and
/// their reloads. `tunnel` is the configuration, `role` how to reach the tunnel, `certs` the
/// material of that connection, `targets` the exporters, `conf` the conf file to watch.
pub fn start(
    server: &mut Server,
    tunnel: &TunnelConfig,
    role: &AgentRoleConfig,
    certs: ExporterMaterial,
    targets: SharedTargets,
    conf: Option<WatchedConf>,
) -> Result<(), StartError> {
    // The name is the client certificate's first subject CN, read as the tunnel reads it, from
    // the certificate the material layer loaded and checked already.
    let cert_file = role
        .tunnel
        .tls
        .as_ref()
        .and_then(|tls| tls.client_cert.as_ref())
        .map_or("TUNNEL_CLIENT_CERT_FILE".to_string(), |pair| {
            pair.cert.path().display().to_string()
        });
    let name = certs
        .certs
        .client
        .as_ref()
        .and_then(|cert| identity::common_name(cert.leaf().borrow_raw_cert()))
        .ok_or_else(|| {
            (
                2,
                format!(
                    "configuration error: TUNNEL_CLIENT_CERT_FILE: the certificate in {cert_file} has no subject CN: the tunnel names an agent by it"
                ),
            )
        })?;
    let upstream = Upstream::new(&role.tunnel, certs)
        .map_err(|e| (1, format!("cannot build the connection to the tunnel: {e}")))?;
    let (watch, generation) = GenerationWatch::new(Arc::clone(&targets));
    let agent = Arc::new(AgentServer::new(
        name.clone(),
        Arc::clone(&targets),
        Forwarder::new(&server.configuration),
        generation,
    ));
    let address = role.tunnel.authority();
    info!(
        "prometheus-tunnel {} agent {name}: dialling the tunnel at {address}{}, serving {} exporters",
        build_info::VERSION,
        role.tunnel
            .proxy
            .as_ref()
            .map_or(String::new(), |proxy| format!(" via {proxy}")),
        tunnel.targets.len()
    );
    server.add_service(background_service("generation", watch));
    server.add_service(background_service(
        "dialler",
        Dialer::new(agent, upstream, address),
    ));
    let reloader = Reloader::new(std::env::args_os().collect(), conf, targets);
    server.add_service(background_service("reload", reloader));
    Ok(())
}

/// The background service that bumps the agent's generation when its target table is
/// replaced (a reload), so the tunnel's held announcement request is answered at once.
pub struct GenerationWatch {
    targets: SharedTargets,
    generation: watch::Sender<u64>,
}

impl GenerationWatch {
    /// A watch of `targets`, and the receiver an [`AgentServer`] waits on.
    pub fn new(targets: SharedTargets) -> (Self, watch::Receiver<u64>) {
        let (generation, rx) = watch::channel(1);
        (
            GenerationWatch {
                targets,
                generation,
            },
            rx,
        )
    }
}

#[async_trait::async_trait]
impl pingora_core::services::background::BackgroundService for GenerationWatch {
    async fn start(&self, mut shutdown: pingora_core::server::ShutdownWatch) {
        // Held, not just its address: a freed table's address may come back.
        let mut current = self.targets.load_full();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {}
            }
            let now = self.targets.load_full();
            if !Arc::ptr_eq(&now, &current) {
                current = now;
                self.generation.send_modify(|g| *g += 1);
            }
        }
    }
}
