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

    /// The address now: cached for [`RESOLVE_INTERVAL`]; when a fresh lookup fails or takes
    /// longer than `limit` (the scrape's deadline: the system resolver can hang for its own
    /// retries), the last good address is used rather than failing the scrape. With a last
    /// address to fall back on, the lookup gets half of `limit`, so the scrape keeps the other
    /// half, and a failed one is not tried again for another interval: a resolver that hangs
    /// delays one scrape per interval, not every one. `limit` is asked only for a lookup.
    pub async fn get(&self, limit: impl FnOnce() -> Duration) -> Result<SocketAddr> {
        let cached = self.resolved.load();
        if let Some(r) = cached.as_deref() {
            if r.at.elapsed() < RESOLVE_INTERVAL {
                return Ok(r.addr);
            }
        }
        let limit = limit();
        let (role, name) = (self.role, &self.name);
        let limit = if cached.is_some() { limit / 2 } else { limit };
        let looked_up =
            tokio::time::timeout(limit, tokio::net::lookup_host((name.as_str(), self.port))).await;
        let failure = match looked_up {
            Ok(Ok(mut addrs)) => match addrs.next() {
                Some(addr) => {
                    self.resolved.store(Some(Arc::new(Resolved {
                        addr,
                        at: Instant::now(),
                    })));
                    return Ok(addr);
                }
                None => Error::explain(
                    ErrorType::Custom(DNS_ERROR),
                    format!("{role} {name} resolved to no address"),
                ),
            },
            Ok(Err(e)) => Error::because(
                ErrorType::Custom(DNS_ERROR),
                format!("{role} {name} did not resolve"),
                e,
            ),
            Err(_) => Error::explain(
                ErrorType::Custom(DNS_ERROR),
                format!("{role} {name} did not resolve within {limit:?}"),
            ),
        };
        match cached.as_deref() {
            Some(last) => {
                warn!(
                    "{failure}; using its last address {} for another {RESOLVE_INTERVAL:?}",
                    last.addr
                );
                self.resolved.store(Some(Arc::new(Resolved {
                    addr: last.addr,
                    at: Instant::now(),
                })));
                Ok(last.addr)
            }
            None => Err(failure.into_up()),
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

    /// The address to dial now, a lookup taking at most what `limit` says when it is asked.
    pub async fn get(&self, limit: impl FnOnce() -> Duration) -> Result<SocketAddr> {
        match self {
            DialAddress::Fixed(addr) => Ok(*addr),
            DialAddress::Named(cached) => cached.get(limit).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::runtime;

    #[test]
    fn a_name_is_cached_and_a_failed_lookup_falls_back_to_the_last_address() {
        runtime().block_on(async {
            let limit = Duration::from_secs(10);
            let name = CachedAddress::new("exporter host", "localhost".to_string(), 9100);
            let addr = name.get(|| limit).await.expect("localhost resolves");
            assert_eq!(addr.port(), 9100);
            assert!(addr.ip().is_loopback());

            // `.invalid` never resolves (RFC 2606): with no last address, the error names it.
            let missing = CachedAddress::new("proxy host", "no-such-host.invalid".to_string(), 1);
            let e = missing.get(|| limit).await.expect_err(".invalid resolved");
            assert!(
                e.to_string()
                    .contains("proxy host no-such-host.invalid did not resolve"),
                "{e}"
            );
            // With a last address older than RESOLVE_INTERVAL, that address is used.
            let stale = Instant::now()
                .checked_sub(RESOLVE_INTERVAL)
                .expect("clock far enough from its start");
            missing
                .resolved
                .store(Some(Arc::new(Resolved { addr, at: stale })));
            assert_eq!(missing.get(|| limit).await.expect("last good"), addr);
            // ... and kept for another interval, so the next scrapes do not wait on the
            // resolver again.
            let kept = missing.resolved.load_full().expect("still cached");
            assert!(kept.at.elapsed() < RESOLVE_INTERVAL, "{kept:?}");
            // A fresh one is used without a lookup.
            missing.resolved.store(Some(Arc::new(Resolved {
                addr,
                at: Instant::now(),
            })));
            assert_eq!(missing.get(|| Duration::ZERO).await.expect("cached"), addr);
        });
    }

    #[test]
    fn addresses_are_fixed_and_names_are_resolved() {
        assert!(matches!(
            DialAddress::new("proxy host", "10.0.0.1", 3128),
            DialAddress::Fixed(a) if a.to_string() == "10.0.0.1:3128"
        ));
        assert!(matches!(
            DialAddress::new("proxy host", "::1", 3128),
            DialAddress::Fixed(a) if a.to_string() == "[::1]:3128"
        ));
        assert!(matches!(
            DialAddress::new("proxy host", "proxy.corp", 3128),
            DialAddress::Named(_)
        ));
    }
}
