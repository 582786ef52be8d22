//! The request as it goes to the exporter: `Host` set to the exporter, the `target` parameter
//! removed, credentials applied, hop-by-hop headers (`Connection` and what it names,
//! `Keep-Alive`, `Upgrade`, `TE`, ...) left with the client. Everything else, path, query,
//! `Accept`, `Accept-Encoding`, Prometheus' own headers, passes unchanged.

use std::time::Instant;

use http::header::{AUTHORIZATION, HOST};
use http::Version;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::RequestHeader;

pub use crate::listener::headers::strip_hop_by_hop;
use crate::targets::Target;

/// The request for the exporter, built from the client's bodiless request `client` for the
/// tunnel's own forwarding (see `forward.rs`): HTTP/1.1, so the connection can be pooled,
/// without hop-by-hop headers, and rewritten by [`prepare_upstream_request`].
pub fn upstream_request(
    client: &RequestHeader,
    target: &Target,
    forwarded_path: Option<&str>,
    now: Instant,
    strip_client_auth: bool,
) -> Result<Box<RequestHeader>> {
    let mut req = Box::new(client.clone());
    req.set_version(Version::HTTP_11);
    strip_hop_by_hop(&mut req);
    prepare_upstream_request(&mut req, target, forwarded_path, now, strip_client_auth)?;
    Ok(req)
}

/// Rewrites `req` for `target`. `forwarded_path` is the path and query without `target`, when
/// the request had that parameter; `strip_client_auth` drops an `Authorization` that was the
/// tunnel's own (client credentials) when the exporter gets none of its own.
pub fn prepare_upstream_request(
    req: &mut RequestHeader,
    target: &Target,
    forwarded_path: Option<&str>,
    now: Instant,
    strip_client_auth: bool,
) -> Result<()> {
    req.insert_header(HOST, target.host_header.clone())?;
    if let Some(path) = forwarded_path {
        let uri = path.parse().map_err(|e| {
            Error::because(
                ErrorType::InvalidHTTPHeader,
                "request target without `target`",
                e,
            )
        })?;
        req.set_uri(uri);
    } else if !req.raw_path().starts_with(b"/") {
        // The exporter comes from configuration only: an absolute-form target
        // (`GET http://other/x`) is sent on as its path and query (all the URI holds), so the
        // request line cannot name another host.
        let path_only = req.uri.clone();
        req.set_uri(path_only);
    }
    // Configured exporter credentials replace whatever the client sent. Without them, the
    // client's own Authorization (Prometheus' scrape credentials) passes through, unless it was
    // meant for the tunnel itself.
    if let Some(value) = target.upstream.authorization(now) {
        req.insert_header(AUTHORIZATION, value)?;
    } else if strip_client_auth {
        req.remove_header(&AUTHORIZATION);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&'static str, &'static str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/metrics", None).expect("request");
        for (name, value) in headers {
            req.append_header(*name, *value).expect("header");
        }
        req
    }

    fn names(req: &RequestHeader) -> Vec<String> {
        req.headers.keys().map(|n| n.as_str().to_string()).collect()
    }

    #[test]
    fn a_scrapes_headers_pass_and_hop_by_hop_ones_stay_behind() {
        let scrape = [
            ("Accept", "application/openmetrics-text"),
            ("Accept-Encoding", "gzip"),
            ("X-Prometheus-Scrape-Timeout-Seconds", "10"),
        ];
        let mut req = request(&scrape);
        strip_hop_by_hop(&mut req);
        assert_eq!(
            names(&req),
            [
                "accept",
                "accept-encoding",
                "x-prometheus-scrape-timeout-seconds"
            ]
        );

        // Without `Connection`, each standard one is still found.
        for hop in [
            "Keep-Alive",
            "TE",
            "Upgrade",
            "Proxy-Authorization",
            "Trailer",
        ] {
            let mut req = request(&[("Accept", "text/plain"), (hop, "x")]);
            strip_hop_by_hop(&mut req);
            assert_eq!(names(&req), ["accept"], "{hop}");
        }

        // With it, what it names goes too.
        let mut req = request(&[
            ("Connection", "keep-alive, X-Hop"),
            ("X-Hop", "1"),
            ("Accept", "text/plain"),
        ]);
        strip_hop_by_hop(&mut req);
        assert_eq!(names(&req), ["accept"]);
    }
}
