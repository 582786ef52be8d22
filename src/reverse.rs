//! Reverse mode: exporters that can only dial out, served as PushProx's proxy serves them, so
//! unmodified PushProx clients work with the tunnel.
//!
//! A client beside the exporter polls the poll port (`POLL_PORT`) with its name. Prometheus
//! scrapes that name through the proxy port with `proxy_url` (an absolute-form request such as
//! `GET http://node1:9100/metrics`); the tunnel hands the request to the client's open poll, the
//! client scrapes its exporter and pushes the response, and the tunnel streams it to
//! Prometheus as it arrives.
//!
//! - `wire.rs`, `pushed.rs`: PushProx's wire format, the request in a poll's answer and the
//!   response in a push.
//! - `registry.rs` (and `registry/`): who is registered, their polls, and the scrapes waiting
//!   for a poll or a push.
//! - `poll_port.rs`, `push.rs`: the poll port's `/poll`, `/clients` and `/push`.
//! - `scrape.rs`: a scrape of a registered name, on the proxy port.
//! - `identity.rs`: the names a client certificate carries, for `POLL_BIND_NAMES`.
//!
//! Where PushProx's users were hurt, the tunnel does otherwise: an unknown name is refused at
//! once; a client counts as registered while it polls, not while it is scraped; an idle poll is
//! answered before a load balancer cuts it (`POLL_KEEPALIVE`); names can be bound to client
//! certificates; pushes are streamed, not buffered, and bounded (`POLL_MAX_PUSH_SIZE`).

pub mod identity;
pub mod poll_port;
pub mod push;
pub mod pushed;
pub mod registry;
pub mod scrape;
pub mod wire;

use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use std::sync::Arc;

use registry::Registry;

/// How often the registry drops silent clients and unclaimed ids.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The background service that keeps the registry tidy, and answers every waiting poll when
/// the tunnel shuts down, so clients move to its successor at once.
pub struct Sweeper {
    registry: Arc<Registry>,
}

impl Sweeper {
    /// A sweeper of `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        Sweeper { registry }
    }
}

#[async_trait]
impl BackgroundService for Sweeper {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    self.registry.close();
                    return;
                }
                _ = tick.tick() => self.registry.sweep(Instant::now()),
            }
        }
    }
}
