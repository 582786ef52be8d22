//! The request as it goes to the exporter: `Host` set to the exporter, the `target` parameter
//! removed, credentials applied. Everything else, path, query, `Accept`, `Accept-Encoding`,
//! Prometheus' own headers, passes unchanged. Hop-by-hop headers (`Connection` and what it
//! names, `Keep-Alive`, `Upgrade`, `TE`, ...) are already gone: Pingora strips them before this
//! runs, under the peer's `deny_upgrades` policy (see `upstream.rs`).

use std::time::Instant;

use http::header::{AUTHORIZATION, HOST};
use pingora_error::{Error, ErrorType, Result};
use pingora_http::RequestHeader;

use crate::targets::Target;

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
