//! How the exporter is reached: its address (resolved and cached when it is a name), TLS, a
//! forward proxy on the way, and the credentials it wants. The `HttpPeer` Pingora connects to is
//! built once and copied per request.

pub mod connect;
pub mod credentials;
pub mod forward_proxy;
pub mod tls;

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use http::HeaderValue;
use log::warn;
use pingora_core::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};

use crate::config::{ExporterConfig, ExporterHost, Scheme};
use connect::ProxyConnector;
use credentials::AuthHeader;

/// How long a resolved address of a named exporter is used before it is looked up again.
/// DNS TTLs are not visible through the system resolver, so this is the bound on how stale an
/// address can get; it also keeps resolution off all but one scrape in this interval.
pub const RESOLVE_INTERVAL: Duration = Duration::from_secs(30);

/// The `ErrorType::Custom` name of a failed exporter name lookup.
pub const DNS_ERROR: &str = "DNSError";

/// The address of a named exporter, as last resolved.
#[derive(Debug)]
struct Resolved {
    addr: SocketAddr,
    at: Instant,
}

/// The exporter scrapes are forwarded to, and what it takes to build a peer for it.
pub struct Upstream {
    host: ExporterHost,
    port: u16,
    /// Whether the tunnel resolves a named host itself (no proxy, or plain `socks5://`); through
    /// a CONNECT or `socks5h://` proxy the proxy resolves it.
    resolve_locally: bool,
    /// A peer with everything but (for locally resolved names) the address filled in.
    template: HttpPeer,
    /// Last resolution of a named host.
    resolved: ArcSwapOption<Resolved>,
    /// `Authorization` for the exporter, if it wants credentials.
    auth: Option<AuthHeader>,
}

impl Upstream {
    /// Builds the peer template for `exporter` and loads its credentials.
    pub fn new(exporter: &ExporterConfig) -> Result<Self> {
        let auth = exporter
            .auth
            .as_ref()
            .map(|auth| AuthHeader::load(auth, "credentials"))
            .transpose()?;
        let port = exporter.port.get();
        let tls = exporter.scheme == Scheme::Https;
        let resolve_locally = match (&exporter.host, &exporter.proxy) {
            (ExporterHost::Ip(_), _) => false,
            (ExporterHost::Name(_), None) => true,
            (ExporterHost::Name(_), Some(proxy)) => proxy.needs_local_dns(),
        };
        let addr = match &exporter.host {
            ExporterHost::Ip(ip) => SocketAddr::new(*ip, port),
            // Filled in per request from the resolver cache, or never used (the proxy resolves).
            ExporterHost::Name(_) => SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), port),
        };
        // SNI and the name the certificate is checked against. Always set: Pingora skips
        // verification altogether when it is empty, so an IP address is used as the name too.
        let sni = match (&exporter.tls.server_name, &exporter.host) {
            (Some(name), _) => name.clone(),
            (None, ExporterHost::Ip(ip)) => ip.to_string(),
            (None, ExporterHost::Name(name)) => name.clone(),
        };
        let mut template = HttpPeer::new(addr, tls, if tls { sni } else { String::new() });
        template.client_cert_key = exporter.tls.client.clone();
        // Connections are pooled by address; a name reached through a proxy has a placeholder
        // address, so the exporter's own identity keeps pools of different exporters apart.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (
            exporter.host.to_string(),
            port,
            exporter.proxy.as_ref().map(|p| p.to_string()),
        )
            .hash(&mut hasher);
        template.group_key = hasher.finish();
        let opts = &mut template.options;
        opts.ca = exporter.tls.ca.clone();
        opts.verify_cert = exporter.tls.verify;
        opts.verify_hostname = exporter.tls.verify;
        if let Some(proxy) = &exporter.proxy {
            opts.custom_l4 = Some(Arc::new(ProxyConnector::new(
                proxy.clone(),
                match &exporter.host {
                    ExporterHost::Ip(ip) => ip.to_string(),
                    ExporterHost::Name(name) => name.clone(),
                },
                port,
            )));
        }
        // The deadline is set per request; these are the ceilings.
        opts.connection_timeout = Some(exporter.timeout);
        opts.total_connection_timeout = Some(exporter.timeout);
        opts.read_timeout = Some(exporter.timeout);
        opts.write_timeout = Some(exporter.timeout);
        Ok(Upstream {
            host: exporter.host.clone(),
            port,
            resolve_locally,
            template,
            resolved: ArcSwapOption::empty(),
            auth,
        })
    }

    /// A peer for one request, with every timeout set to `deadline`.
    pub async fn peer(&self, deadline: Duration) -> Result<Box<HttpPeer>> {
        let mut peer = Box::new(self.template.clone());
        if let (true, ExporterHost::Name(name)) = (self.resolve_locally, &self.host) {
            peer._address = PeerAddr::Inet(self.resolve(name).await?);
        }
        let opts = &mut peer.options;
        opts.connection_timeout = Some(deadline);
        opts.total_connection_timeout = Some(deadline);
        opts.read_timeout = Some(deadline);
        opts.write_timeout = Some(deadline);
        Ok(peer)
    }

    /// The `Authorization` value for the exporter now, if it wants credentials.
    pub fn authorization(&self, now: Instant) -> Option<HeaderValue> {
        self.auth.as_ref().map(|a| a.value(now))
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
