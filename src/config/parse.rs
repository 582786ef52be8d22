//! Parsers for single setting values. Each returns the typed value or what it expected, so
//! every source (env, conf file, flag) refuses a bad value with the same words.

use std::net::IpAddr;
use std::num::NonZeroU16;
use std::time::Duration;

use crate::ip_range::IpRange;

/// The exporter's host as configured: an address used as is, or a name resolved when connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExporterHost {
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
    /// A DNS name, validated for syntax only; it is resolved when a scrape needs it, so a
    /// name that does not resolve yet is a 502, not a refusal to start.
    Name(String),
}

impl ExporterHost {
    /// Whether this host is this machine, where the tunnel's own port would loop back to itself.
    pub fn is_local(&self) -> bool {
        match self {
            ExporterHost::Ip(ip) => ip.is_loopback() || ip.is_unspecified(),
            ExporterHost::Name(name) => name.eq_ignore_ascii_case("localhost"),
        }
    }
}

impl std::fmt::Display for ExporterHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExporterHost::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            ExporterHost::Ip(ip) => write!(f, "{ip}"),
            ExporterHost::Name(name) => f.write_str(name),
        }
    }
}

/// How the tunnel talks to the exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

const HOST_EXPECTED: &str = "an IPv4 address, an IPv6 address or a DNS name (no scheme, no port)";

/// `SERVER_IP`: an IP address (IPv6 with or without brackets) or a DNS name.
pub fn exporter_host(text: &str) -> Result<ExporterHost, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(HOST_EXPECTED.into());
    }
    let unbracketed = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Ok(ExporterHost::Ip(ip));
    }
    if text.contains("://") {
        return Err(format!("{HOST_EXPECTED}; put the scheme in SERVER_SCHEME"));
    }
    if text.contains(':') {
        return Err(format!("{HOST_EXPECTED}; put the port in SERVER_PORT"));
    }
    if is_dns_name(text) {
        return Ok(ExporterHost::Name(text.to_ascii_lowercase()));
    }
    Err(HOST_EXPECTED.into())
}

/// RFC 1123 host name syntax: dot-separated labels of letters, digits and inner hyphens.
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A TCP port, 1-65535.
pub fn port(text: &str) -> Result<NonZeroU16, String> {
    text.trim()
        .parse::<u16>()
        .ok()
        .and_then(NonZeroU16::new)
        .ok_or_else(|| "a port 1-65535".to_string())
}

/// `http` or `https`, in any case.
pub fn scheme(text: &str) -> Result<Scheme, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "http" => Ok(Scheme::Http),
        "https" => Ok(Scheme::Https),
        _ => Err("http or https".into()),
    }
}

/// An address to bind: IPv4 or IPv6, brackets allowed.
pub fn listen_address(text: &str) -> Result<IpAddr, String> {
    let text = text.trim();
    let unbracketed = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    unbracketed
        .parse()
        .map_err(|_| "an IPv4 or IPv6 address to bind, such as 0.0.0.0, 127.0.0.1 or ::".into())
}

/// `true`/`false`/`1`/`0` (also `yes`/`no`, `on`/`off`), in any case.
pub fn boolean(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("true, false, 1 or 0".into()),
    }
}

/// The longest timeout accepted; anything longer is a typo, not a scrape.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// A timeout: a duration with units (`10s`, `500ms`, `1m30s`) or a plain number of seconds
/// (`10`, `2.5`, as Prometheus writes them), more than zero and at most an hour.
pub fn timeout(text: &str) -> Result<Duration, String> {
    const EXPECTED: &str =
        "a duration above 0 and at most 1h, such as 10s, 500ms, 1m30s or a number of seconds";
    let text = text.trim();
    let parsed = match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Duration::try_from_secs_f64(secs).ok(),
        Ok(_) => None,
        Err(_) => humantime::parse_duration(text).ok(),
    };
    match parsed {
        Some(d) if !d.is_zero() && d <= MAX_TIMEOUT => Ok(d),
        _ => Err(EXPECTED.into()),
    }
}

/// A comma-separated list of CIDR ranges or addresses, at least one.
pub fn cidr_list(text: &str) -> Result<Vec<IpRange>, String> {
    const EXPECTED: &str =
        "comma-separated CIDR ranges or addresses, such as 10.0.0.0/8,192.168.1.5,fd00::/8";
    let ranges: Option<Vec<IpRange>> = text
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(IpRange::parse)
        .collect();
    match ranges {
        Some(ranges) if !ranges.is_empty() => Ok(ranges),
        _ => Err(EXPECTED.into()),
    }
}

/// The longest routing parameter name accepted.
pub const MAX_QUERY_PARAM_LEN: usize = 64;

/// A query parameter name: letters, digits, `_`, `-`, `.`, `~` (no escaping needed).
pub fn query_param(text: &str) -> Result<String, String> {
    let text = text.trim();
    let valid = !text.is_empty()
        && text.len() <= MAX_QUERY_PARAM_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'~'));
    if valid {
        Ok(text.to_string())
    } else {
        Err(format!(
            "a query parameter name of 1-{MAX_QUERY_PARAM_LEN} letters, digits, '_', '-', '.' or '~', such as target or exporter"
        ))
    }
}

/// The largest connection limit accepted.
pub const MAX_CONNECTION_LIMIT: usize = 1_000_000;

/// A connection count, 1 to a million.
pub fn connection_limit(text: &str) -> Result<usize, String> {
    text.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_CONNECTION_LIMIT).contains(n))
        .ok_or_else(|| format!("a number of connections from 1 to {MAX_CONNECTION_LIMIT}"))
}

/// A count from 1 to a million (`POLL_MAX_CLIENTS`, `POLL_MAX_POLLS_PER_NAME`).
pub fn count(text: &str) -> Result<usize, String> {
    text.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_CONNECTION_LIMIT).contains(n))
        .ok_or_else(|| format!("a whole number from 1 to {MAX_CONNECTION_LIMIT}"))
}

/// The largest byte size accepted: 16 GiB.
pub const MAX_BYTE_SIZE: u64 = 16 << 30;

/// A size in bytes: a number, or one with `KiB`, `MiB` or `GiB` (`KB`, `MB`, `GB` and `K`,
/// `M`, `G` mean the same), at least 1 KiB and at most 16 GiB.
pub fn byte_size(text: &str) -> Result<u64, String> {
    const EXPECTED: &str =
        "a size from 1KiB to 16GiB: bytes, or a number with KiB, MiB or GiB, such as 64MiB";
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(EXPECTED.into()),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .filter(|n| (1024..=MAX_BYTE_SIZE).contains(n))
        .ok_or_else(|| EXPECTED.into())
}

/// A duration that may be `0` (off): `POLL_KEEPALIVE`. `None` for zero.
pub fn optional_duration(text: &str) -> Result<Option<Duration>, String> {
    if text.trim().parse::<f64>().is_ok_and(|n| n == 0.0) || text.trim() == "0s" {
        return Ok(None);
    }
    timeout(text)
        .map(Some)
        .map_err(|_| "0 (off), or a duration above 0 and at most 1h, such as 25s".into())
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
