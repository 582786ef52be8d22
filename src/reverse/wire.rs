//! PushProx's wire format for requests, as its clients (v0.1, v0.2) read them: a poll is
//! answered with the scrape request serialized as Go's `Request.WriteProxy` writes it: an
//! absolute-form request line, `Host`, the scrape's headers, `Id` and
//! `X-Prometheus-Scrape-Timeout-Seconds` (the client refuses a request without it). The
//! response side, what a push carries, is `pushed.rs`.

use std::fmt::Write as _;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora_http::RequestHeader;

/// The header that links a push to its scrape.
pub const ID_HEADER: &str = "id";
/// The header in which a client states the time left of a scrape it pushes.
pub const PUSH_TIMEOUT_HEADER: &str = "x-prometheus-scrape-timeout";
/// The header carrying a scrape's timeout, in seconds.
pub const SCRAPE_TIMEOUT_HEADER: &str = "x-prometheus-scrape-timeout-seconds";

/// The host of the request that answers an idle poll. `.invalid` never resolves (RFC 6761), and
/// it is no client's name, so a client fails the request at once, without any network, and
/// pushes that failure back; a client that does not check names fails the lookup.
pub const KEEPALIVE_HOST: &str = "keepalive.prometheus-tunnel.invalid";

/// Headers of a scrape request that stay with the tunnel: hop-by-hop ones, framing, and those
/// the tunnel sets itself.
const NOT_FORWARDED: [&str; 12] = [
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    ID_HEADER,
    SCRAPE_TIMEOUT_HEADER,
];

/// The poll answer for a scrape: `req` (absolute-form, as Prometheus sends it with
/// `proxy_url`) with `id` and the `timeout` the client has for it. `strip_authorization` drops
/// an `Authorization` that was meant for the tunnel itself.
pub fn scrape_request(
    req: &RequestHeader,
    id: &str,
    timeout: Duration,
    strip_authorization: bool,
) -> Bytes {
    let target = req.raw_path();
    let mut out = BytesMut::with_capacity(256 + target.len());
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if let Some(authority) = absolute_authority(target) {
        out.extend_from_slice(b"Host: ");
        out.extend_from_slice(authority.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in &req.headers {
        let name = name.as_str();
        if NOT_FORWARDED.contains(&name) || (strip_authorization && name == "authorization") {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let mut tail = String::with_capacity(96);
    let _ = write!(
        tail,
        "Id: {id}\r\nX-Prometheus-Scrape-Timeout-Seconds: {:.3}\r\n\r\n",
        timeout.as_secs_f64()
    );
    out.extend_from_slice(tail.as_bytes());
    out.freeze()
}

/// The authority of an absolute-form request target (`http://node1:9100/metrics` ->
/// `node1:9100`); `None` for origin-form.
pub fn absolute_authority(target: &[u8]) -> Option<&str> {
    let rest = target
        .strip_prefix(b"http://")
        .or_else(|| target.strip_prefix(b"https://"))?;
    let end = rest
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority = std::str::from_utf8(&rest[..end]).ok()?;
    (!authority.is_empty()).then_some(authority)
}

/// The host of an authority, without its port or an IPv6 address's brackets.
pub fn authority_host(authority: &str) -> &str {
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
}

/// The poll answer that keeps an idle poll from being cut: a request for [`KEEPALIVE_HOST`],
/// which the client fails at once and pushes back under `id`.
pub fn keepalive_request(id: &str) -> Bytes {
    Bytes::from(format!(
        "GET http://{KEEPALIVE_HOST}/ HTTP/1.1\r\nHost: {KEEPALIVE_HOST}\r\nId: {id}\r\nX-Prometheus-Scrape-Timeout-Seconds: 5\r\n\r\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_is_written_as_go_writes_a_proxy_request() {
        let mut req =
            RequestHeader::build("GET", b"http://node1:9100/metrics?x=1", None).expect("request");
        req.append_header("Host", "node1:9100").unwrap();
        req.append_header("Accept", "text/plain").unwrap();
        req.append_header("Connection", "keep-alive").unwrap();
        req.append_header("X-Prometheus-Scrape-Timeout-Seconds", "10")
            .unwrap();
        req.append_header("Authorization", "Bearer tunnel").unwrap();
        let text = scrape_request(&req, "abc", Duration::from_millis(9500), true);
        assert_eq!(
            std::str::from_utf8(&text).unwrap(),
            "GET http://node1:9100/metrics?x=1 HTTP/1.1\r\nHost: node1:9100\r\naccept: text/plain\r\nId: abc\r\nX-Prometheus-Scrape-Timeout-Seconds: 9.500\r\n\r\n"
        );
        // It parses as the client parses it.
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut parsed = httparse::Request::new(&mut headers);
        assert!(parsed.parse(&text).unwrap().is_complete());
        assert_eq!(parsed.path, Some("http://node1:9100/metrics?x=1"));
    }

    #[test]
    fn hosts_of_absolute_targets() {
        assert_eq!(
            absolute_authority(b"http://node1:9100/metrics"),
            Some("node1:9100")
        );
        assert_eq!(absolute_authority(b"http://node1?x"), Some("node1"));
        assert_eq!(absolute_authority(b"/metrics"), None);
        assert_eq!(absolute_authority(b"http:///x"), None);
        assert_eq!(authority_host("node1:9100"), "node1");
        assert_eq!(authority_host("[fd00::1]:9100"), "fd00::1");
        assert_eq!(authority_host("node1"), "node1");
    }
}
