//! Which target a request is for.
//!
//! A single-target tunnel forwards every request to its exporter with the query untouched: a
//! blackbox or SNMP exporter behind it reads `target` itself. In multi-target mode the routing
//! parameter (`target` unless `TARGET_PARAM` names another, the Prometheus multi-target
//! exporter convention) names the target and is removed before forwarding; without it a
//! request goes to the default target, query untouched.

use std::borrow::Cow;
use std::sync::Arc;

use http::Uri;
use percent_encoding::percent_decode_str;

use crate::targets::{Routing, Target, TargetTable};

/// The target a request goes to, or why it goes nowhere.
pub enum Route {
    /// Forward to this target; with `Some(path)` the request line is rewritten to `path` (the
    /// original path and query without the routing parameter).
    To(Arc<Target>, Option<String>),
    /// The routing parameter names no configured target: the name, and the path to forward
    /// (the request's without the routing parameter), for the names agents serve; else 404.
    Unknown(String, String),
    /// No such target, and no name to look for elsewhere: 404.
    Nowhere,
    /// No routing parameter (named here) and no default target: 400.
    Missing(Arc<str>),
}

/// Routes a request for `uri` through `table`. Other query parameters are kept byte for byte.
pub fn route(table: &TargetTable, uri: &Uri) -> Route {
    let param = match table.routing() {
        Routing::Single => return to_default(table, None),
        Routing::ByParam(param) => param,
    };
    let Some(query) = uri.query() else {
        return to_default(table, Some(param));
    };
    let mut name: Option<Cow<'_, str>> = None;
    let mut kept: Vec<&str> = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != &**param {
            kept.push(pair);
        } else if name.is_none() {
            name = Some(decode(value));
        }
    }
    let Some(name) = name else {
        // Fast path: no parameter to remove, so the request line is forwarded as it came.
        return to_default(table, Some(param));
    };
    let path = || {
        let mut path = uri.path().to_string();
        if !kept.is_empty() {
            path.push('?');
            path.push_str(&kept.join("&"));
        }
        path
    };
    match table.get(&name) {
        Some(target) => Route::To(Arc::clone(target), Some(path())),
        None => Route::Unknown(name.into_owned(), path()),
    }
}

/// The default target with the request line untouched, or why there is none.
fn to_default(table: &TargetTable, param: Option<&Arc<str>>) -> Route {
    match (table.default_target(), param) {
        (Some(t), _) => Route::To(Arc::clone(t), None),
        (None, Some(param)) => Route::Missing(Arc::clone(param)),
        // A single target is always the default; a table without one routes by a parameter.
        (None, None) => Route::Nowhere,
    }
}

/// A query value as form encoding writes it: `+` for a space, `%XX` escapes.
fn decode(value: &str) -> Cow<'_, str> {
    if !value.contains(['%', '+']) {
        return Cow::Borrowed(value);
    }
    Cow::Owned(
        percent_decode_str(&value.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned(),
    )
}
