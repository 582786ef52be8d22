//! How the exporter is reached: its address (resolved and cached when it is a name), TLS, a
//! forward proxy on the way, and the credentials it wants. The `HttpPeer` Pingora connects to is
//! built once and copied per request.

pub mod address;
pub mod connect;
pub mod http1;
pub mod idle;

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;
use pingora_core::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::Result;

use crate::config::{ExporterConfig, ExporterHost, Scheme};
use crate::material::secret::AuthHeader;
use crate::material::ExporterMaterial;
use address::DialAddress;
pub use address::{DNS_ERROR, RESOLVE_INTERVAL};
use connect::ProxyConnector;
use idle::IdleConnections;

/// The exporter scrapes are forwarded to, and what it takes to build a peer for it.
pub struct Upstream {
    /// Where Pingora's TCP connections go: the exporter, or the forward proxy on the way.
    /// A kept-alive connection is reused only for the peer address it was opened to (checked
    /// by the idle list for scrapes, by Pingora's pool otherwise), so through a proxy it must
    /// be the proxy's: the exporter's would never match, and every scrape would open a new
    /// tunnel.
    dial: DialAddress,
    /// A peer with everything but (for names) the address filled in.
    template: HttpPeer,
    /// `Authorization` for the exporter, if it wants credentials.
    auth: Option<Arc<AuthHeader>>,
    /// Connections kept alive between scrapes.
    idle: IdleConnections,
}

impl Upstream {
    /// Builds the peer template for `exporter` from its settings and loaded `material`.
    pub fn new(exporter: &ExporterConfig, material: ExporterMaterial) -> Result<Self> {
        let ExporterMaterial { certs, auth } = material;
        let port = exporter.port.get();
        let tls = exporter.scheme == Scheme::Https;
        let exporter_host = match &exporter.host {
            ExporterHost::Ip(ip) => ip.to_string(),
            ExporterHost::Name(name) => name.clone(),
        };
        let dial = match &exporter.proxy {
            None => DialAddress::new("exporter host", &exporter_host, port),
            Some(proxy) => DialAddress::new("proxy host", &proxy.host, proxy.port),
        };
        let addr = match &dial {
            DialAddress::Fixed(addr) => *addr,
            // Filled in per request from the resolver cache.
            DialAddress::Named(_) => SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), port),
        };
        // SNI and the name the certificate is checked against. Always set: Pingora skips
        // verification altogether when it is empty, so an IP address is used as the name too.
        let server_name = exporter.tls.as_ref().and_then(|t| t.server_name.as_ref());
        let verify = exporter.tls.as_ref().is_none_or(|t| t.verify);
        let sni = match (server_name, &exporter.host) {
            (Some(name), _) => name.clone(),
            (None, ExporterHost::Ip(ip)) => ip.to_string(),
            (None, ExporterHost::Name(name)) => name.clone(),
        };
        let mut template = HttpPeer::new(addr, tls, if tls { sni } else { String::new() });
        template.client_cert_key = certs.client;
        // Connections are pooled by address; through a proxy that is the proxy's, so the
        // exporter's own identity keeps pools of different exporters apart.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (
            exporter.host.to_string(),
            port,
            exporter.proxy.as_ref().map(|p| p.to_string()),
        )
            .hash(&mut hasher);
        template.group_key = hasher.finish();
        let opts = &mut template.options;
        opts.ca = certs.ca;
        opts.verify_cert = verify;
        opts.verify_hostname = verify;
        if let Some(proxy) = &exporter.proxy {
            // plain socks5:// is sent an address the tunnel resolved; CONNECT and socks5h://
            // are sent the name, for the proxy's side to resolve.
            let socks_address = (matches!(exporter.host, ExporterHost::Ip(_))
                || proxy.needs_local_dns())
            .then(|| DialAddress::new("exporter host", &exporter_host, port));
            opts.custom_l4 = Some(Arc::new(ProxyConnector::new(
                proxy.clone(),
                exporter_host,
                port,
                socks_address,
                exporter.timeout,
            )));
        }
        // The deadline is set per request; these are the ceilings.
        opts.connection_timeout = Some(exporter.timeout);
        opts.total_connection_timeout = Some(exporter.timeout);
        opts.read_timeout = Some(exporter.timeout);
        opts.write_timeout = Some(exporter.timeout);
        Ok(Upstream {
            dial,
            template,
            auth,
            idle: IdleConnections::default(),
        })
    }

    /// A peer for one connection, with every timeout set to `deadline`.
    pub async fn peer(&self, deadline: Duration) -> Result<Box<HttpPeer>> {
        let address = self.address(|| deadline).await?;
        Ok(Box::new(self.peer_to(address, deadline)))
    }

    /// The address a scrape dials now: the configured one, or the name's cached resolution.
    /// `remaining` is asked for the time left only when a lookup is due, so a scrape that
    /// reuses a connection to a fixed address neither reads the clock nor builds a peer.
    pub async fn address(&self, remaining: impl FnOnce() -> Duration) -> Result<PeerAddr> {
        match &self.dial {
            DialAddress::Fixed(_) => Ok(self.template._address.clone()),
            DialAddress::Named(name) => Ok(PeerAddr::Inet(name.get(remaining).await?)),
        }
    }

    /// A peer for a new connection to `address`, with every timeout set to `deadline`.
    pub fn peer_to(&self, address: PeerAddr, deadline: Duration) -> HttpPeer {
        let mut peer = self.template.clone();
        peer._address = address;
        let opts = &mut peer.options;
        opts.connection_timeout = Some(deadline);
        opts.total_connection_timeout = Some(deadline);
        opts.read_timeout = Some(deadline);
        opts.write_timeout = Some(deadline);
        peer
    }

    /// The connections to the exporter that wait for the next scrape.
    pub fn idle_connections(&self) -> &IdleConnections {
        &self.idle
    }

    /// The `Authorization` value for the exporter now, if it wants credentials.
    pub fn authorization(&self, now: Instant) -> Option<HeaderValue> {
        self.auth.as_ref().map(|a| a.value(now))
    }
}
