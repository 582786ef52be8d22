//! Which target a request is for: the `target` query parameter (the multi-target exporter
//! convention), removed before forwarding, or the default target.

use std::sync::Arc;

use http::Uri;
use percent_encoding::percent_decode_str;

use crate::targets::{Target, TargetTable};

/// The target a request goes to, or why it goes nowhere.
pub enum Route {
    /// Forward to this target; with `Some(path)` the request line is rewritten to `path` (the
    /// original path and query without `target`).
    To(Arc<Target>, Option<String>),
    /// `?target=` names no target: 404.
    Unknown,
    /// No `?target=` and no default target: 400.
    Missing,
}

/// Routes a request for `uri` through `table`. Other query parameters are kept byte for byte.
pub fn route(table: &TargetTable, uri: &Uri) -> Route {
    let query = match uri.query() {
        // Fast path: no parameter to remove, so the request line is forwarded as it came.
        Some(q) if q.contains("target=") => q,
        _ => {
            return match table.default_target() {
                Some(t) => Route::To(Arc::clone(t), None),
                None => Route::Missing,
            }
        }
    };
    let mut name = None;
    let mut kept: Vec<&str> = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "target" && name.is_none() {
            name = Some(
                percent_decode_str(&value.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned(),
            );
        } else if key != "target" {
            kept.push(pair);
        }
    }
    let Some(name) = name else {
        return match table.default_target() {
            Some(t) => Route::To(Arc::clone(t), None),
            None => Route::Missing,
        };
    };
    match table.get(&name) {
        Some(target) => {
            let mut path = uri.path().to_string();
            if !kept.is_empty() {
                path.push('?');
                path.push_str(&kept.join("&"));
            }
            Route::To(Arc::clone(target), Some(path))
        }
        None => Route::Unknown,
    }
}
