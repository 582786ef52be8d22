//! Forward proxies on the way to the exporter: `UPSTREAM_PROXY`, or the `https_proxy` /
//! `http_proxy` / `all_proxy` and `no_proxy` variables read as curl reads them.

use std::fmt;
use std::net::IpAddr;

use percent_encoding::percent_decode_str;

use crate::config::{EnvSource, ExporterHost, Scheme};
use crate::ip_range::IpRange;

/// How the tunnel talks to the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocol {
    /// HTTP `CONNECT host:port` over TCP.
    HttpConnect,
    /// SOCKS5 (RFC 1928). With `remote_dns` (`socks5h://`) the proxy resolves the exporter's
    /// name; without, the tunnel resolves it and sends the address.
    Socks5 {
        /// Whether the proxy resolves names (`socks5h://`).
        remote_dns: bool,
    },
}

/// User name and password for the proxy (HTTP Basic for CONNECT, RFC 1929 for SOCKS5).
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyCredentials {
    /// User name, percent-decoded.
    pub username: String,
    /// Password, percent-decoded; never printed.
    pub password: String,
}

impl fmt::Debug for ProxyCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyCredentials({:?}, ***)", self.username)
    }
}

/// A forward proxy, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardProxy {
    /// CONNECT or SOCKS5.
    pub protocol: ProxyProtocol,
    /// Proxy host (name or address, IPv6 without brackets).
    pub host: String,
    /// Proxy port.
    pub port: u16,
    /// Credentials from the URL's user-info, if any.
    pub credentials: Option<ProxyCredentials>,
}

impl ForwardProxy {
    /// Parses `http://[user:pass@]host[:port]`, `socks5://...` or `socks5h://...`. The port
    /// defaults to 80 for http and 1080 for SOCKS.
    pub fn parse(text: &str) -> Result<ForwardProxy, String> {
        const EXPECTED: &str =
            "a proxy URL http://[user:pass@]host:port, socks5://[user:pass@]host:port or socks5h://[user:pass@]host:port";
        let url = url::Url::parse(text.trim()).map_err(|e| format!("{EXPECTED} ({e})"))?;
        let protocol = match url.scheme() {
            "http" => ProxyProtocol::HttpConnect,
            "socks5" => ProxyProtocol::Socks5 { remote_dns: false },
            "socks5h" => ProxyProtocol::Socks5 { remote_dns: true },
            "https" => {
                return Err(format!(
                    "{EXPECTED}; TLS to the proxy itself is not supported"
                ))
            }
            other => return Err(format!("{EXPECTED}; scheme {other:?} is not one of them")),
        };
        let host = match url.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(host) => host.to_string(),
            None => return Err(format!("{EXPECTED}; the host is missing")),
        };
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(format!("{EXPECTED}; no path, query or fragment"));
        }
        let port = url.port_or_known_default().unwrap_or(1080);
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        let credentials = (!url.username().is_empty()).then(|| ProxyCredentials {
            username: decode(url.username()),
            password: decode(url.password().unwrap_or("")),
        });
        Ok(ForwardProxy {
            protocol,
            host,
            port,
            credentials,
        })
    }

    /// Whether the tunnel must resolve the exporter's name itself (plain `socks5://`).
    pub fn needs_local_dns(&self) -> bool {
        self.protocol == ProxyProtocol::Socks5 { remote_dns: false }
    }
}

/// Shows the proxy without its password, for log lines.
impl fmt::Display for ForwardProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.protocol {
            ProxyProtocol::HttpConnect => "http",
            ProxyProtocol::Socks5 { remote_dns: false } => "socks5",
            ProxyProtocol::Socks5 { remote_dns: true } => "socks5h",
        };
        let user = match &self.credentials {
            Some(c) => format!("{}:***@", c.username),
            None => String::new(),
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://{user}[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{user}{}:{}", self.host, self.port)
        }
    }
}

/// The proxy curl would use for `scheme://host`: `https_proxy` (https) or `http_proxy` (http),
/// then `all_proxy`, lower case before upper case; none when `no_proxy` matches the host.
/// Returns the variable's name with the value so errors can name it.
pub fn from_env(
    env: &impl EnvSource,
    scheme: Scheme,
    host: &ExporterHost,
) -> Option<(&'static str, String)> {
    let names: &[&'static str] = match scheme {
        Scheme::Https => &["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"],
        Scheme::Http => &["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"],
    };
    let (name, value) = names.iter().find_map(|name| {
        env.var(name)
            .filter(|v| !v.trim().is_empty())
            .map(|v| (*name, v))
    })?;
    let no_proxy = ["no_proxy", "NO_PROXY"]
        .iter()
        .find_map(|name| env.var(name))
        .unwrap_or_default();
    if no_proxy_matches(&no_proxy, host) {
        return None;
    }
    Some((name, value))
}

/// Whether a `no_proxy` list (comma-separated: `*`, host names, `.domain` suffixes, IP
/// addresses, CIDR ranges; ports ignored) exempts `host`.
pub fn no_proxy_matches(list: &str, host: &ExporterHost) -> bool {
    list.split(',')
        .map(|entry| entry.trim())
        .filter(|entry| !entry.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            match host {
                ExporterHost::Ip(ip) => ip_matches(entry, *ip),
                ExporterHost::Name(name) => {
                    let entry = strip_port(entry)
                        .trim_start_matches('.')
                        .to_ascii_lowercase();
                    !entry.is_empty()
                        && (name == &entry
                            || name
                                .strip_suffix(entry.as_str())
                                .is_some_and(|rest| rest.ends_with('.')))
                }
            }
        })
}

fn strip_port(entry: &str) -> &str {
    match entry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => host,
        _ => entry,
    }
}

/// `entry` is an address (a port after it ignored) or a CIDR range containing `ip`.
fn ip_matches(entry: &str, ip: IpAddr) -> bool {
    let entry = if entry.contains('/') {
        entry
    } else {
        strip_port(entry)
    };
    IpRange::parse(entry).is_some_and(|range| range.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn name(n: &str) -> ExporterHost {
        ExporterHost::Name(n.into())
    }

    fn ip(a: &str) -> ExporterHost {
        ExporterHost::Ip(a.parse().unwrap())
    }

    #[test]
    fn parses_proxy_urls() {
        let p = ForwardProxy::parse("http://us%40er:p%3Ass@proxy.corp:3128").unwrap();
        assert_eq!(p.protocol, ProxyProtocol::HttpConnect);
        assert_eq!((p.host.as_str(), p.port), ("proxy.corp", 3128));
        let c = p.credentials.as_ref().unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("us@er", "p:ss")
        );
        assert_eq!(p.to_string(), "http://us@er:***@proxy.corp:3128");
        assert!(!format!("{p:?}").contains("p:ss"));

        let s = ForwardProxy::parse("socks5h://[::1]:1080").unwrap();
        assert_eq!(s.protocol, ProxyProtocol::Socks5 { remote_dns: true });
        assert_eq!(s.host, "::1");
        assert_eq!(ForwardProxy::parse("socks5://10.0.0.1").unwrap().port, 1080);
        assert_eq!(ForwardProxy::parse("http://10.0.0.1").unwrap().port, 80);
        for bad in [
            "",
            "proxy:3128",
            "https://p:1",
            "socks4://p:1",
            "http://p:1/path",
            "http://:1",
        ] {
            assert!(ForwardProxy::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn no_proxy_lists() {
        assert!(no_proxy_matches("*", &name("a.b")));
        assert!(no_proxy_matches("example.com", &name("example.com")));
        assert!(no_proxy_matches(".example.com", &name("db.example.com")));
        assert!(no_proxy_matches("example.com:443", &name("db.example.com")));
        assert!(!no_proxy_matches("example.com", &name("badexample.com")));
        assert!(no_proxy_matches("10.0.0.0/8, .corp", &ip("10.1.2.3")));
        assert!(!no_proxy_matches("10.0.0.0/8", &ip("11.1.2.3")));
        assert!(no_proxy_matches("192.168.1.5", &ip("192.168.1.5")));
        assert!(no_proxy_matches("fd00::/8", &ip("fd12::1")));
        assert!(no_proxy_matches("[::1]", &ip("::1")));
        assert!(!no_proxy_matches("", &name("x")));
    }

    #[test]
    fn env_as_curl_reads_it() {
        let env = HashMap::from([
            ("HTTPS_PROXY", "http://upper:1"),
            ("https_proxy", "http://lower:1"),
            ("ALL_PROXY", "socks5://all:1"),
            ("NO_PROXY", "skip.me"),
        ]);
        assert_eq!(
            from_env(&env, Scheme::Https, &name("x")),
            Some(("https_proxy", "http://lower:1".into()))
        );
        assert_eq!(
            from_env(&env, Scheme::Http, &name("x")),
            Some(("ALL_PROXY", "socks5://all:1".into()))
        );
        assert_eq!(from_env(&env, Scheme::Https, &name("skip.me")), None);
        assert_eq!(from_env(&HashMap::new(), Scheme::Http, &name("x")), None);
    }
}
