//! prometheus-tunnel: a Pingora reverse proxy that lets a Prometheus scrape an exporter it cannot
//! reach directly, and records its own metrics while doing so.
//!
//! # Layers
//! Dependencies run one way, each layer importing only those above it:
//! 1. [`config`]: settings, parsed and validated, no I/O beyond reading the conf file;
//! 2. [`material`]: the files settings name (certificates, secrets), read and checked;
//! 3. [`http1`] (HTTP/1 framing, for both ends of a scrape), [`upstream`] (how an exporter is reached), [`targets`] (the table of exporters),
//!    [`access`] and [`listener`] (the proxy port's connections);
//! 4. [`reverse`] (reverse mode: the poll port, and scrapes of the names clients register) and
//!    [`agent`] (agent mode, the tunnel's side: the agent port, the agents' names, the other
//!    replicas);
//! 5. [`proxy`] (the proxy port's requests) and [`admin`] (the metrics port), put together as
//!    Pingora services by [`service`] and run by `src/main.rs`; [`reload`] swaps the target
//!    table; [`agent_role`] is the other role of the binary, `prometheus-tunnel agent`.
//!    [`metrics`], [`logging`], [`ip_range`] and [`build_info`] serve every layer.
//!
//! # The path of one scrape
//! - **Enters**: Pingora's accept loop admits the connection (`listener/gate.rs`);
//!   [`listener::ProxyPort`] reads the request header (`listener/header.rs`), parses it
//!   (`listener/request.rs`) and hands the request to [`proxy::TunnelProxy`] as a
//!   [`listener::ClientExchange`], which also writes the answer.
//! - **Target chosen**: [`proxy::route`] picks it from the [`targets::TargetTable`] (the only
//!   exporter, or by `?target=`), after the access rules ([`access`]); in reverse mode an
//!   absolute-form request names a registered client instead (`proxy/registered.rs`); a name
//!   no configured target has may be an agent's (`proxy/agents.rs`).
//! - **Forwarded**: `proxy/forward.rs` sends it on a kept-alive connection
//!   (`upstream/idle.rs`) or a new one ([`upstream::Upstream::peer`], Pingora's connector,
//!   `upstream/connect.rs` through a forward proxy), and streams the answer back (the rest of a
//!   large plain body spliced socket to socket, [`http1::splice`]); to a
//!   registered client, [`reverse::scrape`] hands it to the client's poll and streams its push;
//!   to an agent, [`agent::relay`] opens a stream on the agent's connection.
//! - **Counted**: [`proxy::TunnelProxy`]'s `record` step, once per request whatever its end, into
//!   [`metrics::METRICS`] and the target's [`metrics::TargetMetrics`]; failures are named by
//!   one table ([`proxy::Failure`], `proxy/outcome.rs`) that gives status, reason, metric and
//!   log line. The same step records what the status page at `/` shows of the target
//!   (`metrics::scrape_log`).
//!
//! The modules are public so integration tests and benches can reach them.

// No unsafe code, but for one audited statement: `http1/splice.rs` borrows a socket's descriptor
// from Pingora's stream (which offers no `AsFd`) only to duplicate it.
#![deny(unsafe_code)]
// Every public item says what it is for (the house style); `cargo doc` in CI checks the links.
#![deny(missing_docs)]

pub mod access;
pub mod admin;
pub mod agent;
pub mod agent_role;
pub mod build_info;
pub mod config;
pub mod http1;
pub mod ip_range;
pub mod listener;
pub mod logging;
pub mod material;
pub mod metrics;
pub mod pacemaker;
pub mod proxy;
pub mod reload;
pub mod reverse;
pub mod service;
pub mod targets;
pub mod upstream;

/// Helpers for the unit tests of several modules.
#[cfg(test)]
mod test_support {
    /// A single-threaded tokio runtime with timers and I/O, for async unit tests.
    pub fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }
}
