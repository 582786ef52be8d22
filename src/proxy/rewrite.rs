//! The request as it goes to the exporter: `Host` set to the exporter, hop-by-hop headers
//! dropped, the `target` parameter removed, credentials applied. Everything else, path, query,
//! `Accept`, `Accept-Encoding`, Prometheus' own headers, passes unchanged.

use std::time::Instant;

use http::header::{HeaderName, AUTHORIZATION, CONNECTION, HOST, UPGRADE};
use pingora_error::{Error, ErrorType, Result};
use pingora_http::RequestHeader;

use crate::targets::Target;

/// Headers that describe the client's connection, not the request; the exporter connection is
/// the tunnel's own and is kept alive whatever the client asked for.
const HOP_BY_HOP: [HeaderName; 4] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    UPGRADE,
];

/// Rewrites `req` for `target`. `forwarded_path` is the path and query without `target`, when
/// the request had that parameter; `strip_client_auth` drops an `Authorization` that was the
/// tunnel's own (client credentials) when the exporter gets none of its own.
pub fn prepare_upstream_request(
    req: &mut RequestHeader,
    target: &Target,
    forwarded_path: Option<String>,
    now: Instant,
    strip_client_auth: bool,
) -> Result<()> {
    req.insert_header(HOST, target.host_header.clone())?;
    for name in &HOP_BY_HOP {
        req.remove_header(name);
    }
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
