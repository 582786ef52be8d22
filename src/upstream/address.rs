//! Where TCP connections go: a fixed address, or a host name looked up and cached for
//! [`RESOLVE_INTERVAL`], falling back to the last good address when a fresh lookup fails.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use log::warn;
use pingora_error::{Error, ErrorType, Result};

/// How long a resolved address is used before it is looked up again. DNS TTLs are not visible
/// through the system resolver, so this is the bound on how stale an address can get; it also
/// keeps resolution off all but one scrape in this interval.
pub const RESOLVE_INTERVAL: Duration = Duration::from_secs(30);

/// The `ErrorType::Custom` name of a failed host name lookup.
pub const DNS_ERROR: &str = "DNSError";

/// An address as last resolved.
#[derive(Debug)]
struct Resolved {
    addr: SocketAddr,
    at: Instant,
}

/// A host name and port, resolved on demand and cached.
#[derive(Debug)]
pub struct CachedAddress {
    /// What the name is, for messages: "exporter host" or "proxy host".
    role: &'static str,
    name: String,
    port: u16,
    resolved: ArcSwapOption<Resolved>,
}

impl CachedAddress {
    /// `name:port`, not yet resolved; `role` names it in errors.
    pub fn new(role: &'static str, name: String, port: u16) -> Self {
        CachedAddress {
            role,
            name,
            port,
            resolved: ArcSwapOption::empty(),
        }
    }

    /// The address now: cached for [`RESOLVE_INTERVAL`]; when a fresh lookup fails, the last
    /// good address is used rather than failing the scrape.
    pub async fn get(&self) -> Result<SocketAddr> {
        let cached = self.resolved.load();
        if let Some(r) = cached.as_deref() {
            if r.at.elapsed() < RESOLVE_INTERVAL {
                return Ok(r.addr);
            }
        }
        let (role, name) = (self.role, &self.name);
        let looked_up = tokio::net::lookup_host((name.as_str(), self.port))
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
                    "{role} {name} did not resolve; using its last address {}",
                    last.addr
                );
                Ok(last.addr)
            }
            (Ok(None), None) => Err(Error::explain(
                ErrorType::Custom(DNS_ERROR),
                format!("{role} {name} resolved to no address"),
            )
            .into_up()),
            (Err(e), None) => Err(Error::because(
                ErrorType::Custom(DNS_ERROR),
                format!("{role} {name} did not resolve"),
                e,
            )
            .into_up()),
        }
    }
}

/// Where a connection is dialled: known up front, or a name to resolve.
#[derive(Debug, Clone)]
pub enum DialAddress {
    /// An IP address and port from the configuration.
    Fixed(SocketAddr),
    /// A host name, resolved when a connection is made.
    Named(Arc<CachedAddress>),
}

impl DialAddress {
    /// `host:port` for `role`: fixed when `host` is an IP address, resolved otherwise.
    pub fn new(role: &'static str, host: &str, port: u16) -> Self {
        match host.parse::<std::net::IpAddr>() {
            Ok(ip) => DialAddress::Fixed(SocketAddr::new(ip, port)),
            Err(_) => {
                DialAddress::Named(Arc::new(CachedAddress::new(role, host.to_string(), port)))
            }
        }
    }

    /// The address to dial now.
    pub async fn get(&self) -> Result<SocketAddr> {
        match self {
            DialAddress::Fixed(addr) => Ok(*addr),
            DialAddress::Named(cached) => cached.get().await,
        }
    }
}
