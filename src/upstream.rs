//! How the exporter is reached: its address (resolved and cached when it is a name) and the
//! `HttpPeer` Pingora connects to, built once and copied per request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use log::warn;
use pingora_core::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};

use crate::config::{ExporterConfig, ExporterHost, Scheme};

/// How long a resolved address of a named exporter is used before it is looked up again.
/// DNS TTLs are not visible through the system resolver, so this is the bound on how stale an
/// address can get; it also keeps resolution off all but one scrape in this interval.
pub const RESOLVE_INTERVAL: Duration = Duration::from_secs(30);

/// The address of a named exporter, as last resolved.
#[derive(Debug)]
struct Resolved {
    addr: SocketAddr,
    at: Instant,
}

/// The exporter scrapes are forwarded to, and what it takes to build a peer for it.
#[derive(Debug)]
pub struct Upstream {
    host: ExporterHost,
    port: u16,
    /// A peer with everything but (for named hosts) the address filled in.
    template: HttpPeer,
    /// Last resolution of a named host; unused for IP addresses.
    resolved: ArcSwapOption<Resolved>,
}

impl Upstream {
    /// Builds the peer template for `exporter`.
    pub fn new(exporter: &ExporterConfig) -> Self {
        let port = exporter.port.get();
        let tls = exporter.scheme == Scheme::Https;
        let (addr, sni) = match &exporter.host {
            ExporterHost::Ip(ip) => (SocketAddr::new(*ip, port), String::new()),
            // The real address is filled in per request from the resolver cache.
            ExporterHost::Name(name) => (
                SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), port),
                name.clone(),
            ),
        };
        let mut template = HttpPeer::new(addr, tls, sni);
        // The deadline is set per request; these are the ceilings.
        let opts = &mut template.options;
        opts.connection_timeout = Some(exporter.timeout);
        opts.total_connection_timeout = Some(exporter.timeout);
        opts.read_timeout = Some(exporter.timeout);
        opts.write_timeout = Some(exporter.timeout);
        Upstream {
            host: exporter.host.clone(),
            port,
            template,
            resolved: ArcSwapOption::empty(),
        }
    }

    /// A peer for one request, with every timeout set to `deadline`.
    pub async fn peer(&self, deadline: Duration) -> Result<Box<HttpPeer>> {
        let mut peer = Box::new(self.template.clone());
        if let ExporterHost::Name(name) = &self.host {
            peer._address = PeerAddr::Inet(self.resolve(name).await?);
        }
        let opts = &mut peer.options;
        opts.connection_timeout = Some(deadline);
        opts.total_connection_timeout = Some(deadline);
        opts.read_timeout = Some(deadline);
        opts.write_timeout = Some(deadline);
        Ok(peer)
    }

    /// The address of a named exporter: cached for [`RESOLVE_INTERVAL`]; when a fresh lookup
    /// fails, the last good address is used rather than failing the scrape.
    async fn resolve(&self, name: &str) -> Result<SocketAddr> {
        let cached = self.resolved.load();
        if let Some(r) = cached.as_deref() {
            if r.at.elapsed() < RESOLVE_INTERVAL {
                return Ok(r.addr);
            }
        }
        let looked_up = tokio::net::lookup_host((name, self.port))
            .await
            .map(|mut addrs| addrs.next());
        match (looked_up, cached.as_deref()) {
            (Ok(Some(addr)), _) => {
                self.resolved.store(Some(Arc::new(Resolved {
                    addr,
                    at: Instant::now(),
                })));
                Ok(addr)
            }
            (Ok(None), Some(last)) | (Err(_), Some(last)) => {
                warn!(
                    "exporter host {name} did not resolve; using its last address {}",
                    last.addr
                );
                Ok(last.addr)
            }
            (Ok(None), None) => Err(Error::explain(
                ErrorType::Custom(DNS_ERROR),
                format!("exporter host {name} resolved to no address"),
            )
            .into_up()),
            (Err(e), None) => Err(Error::because(
                ErrorType::Custom(DNS_ERROR),
                format!("exporter host {name} did not resolve"),
                e,
            )
            .into_up()),
        }
    }
}

/// The `ErrorType::Custom` name of a failed exporter name lookup.
pub const DNS_ERROR: &str = "DNSError";
