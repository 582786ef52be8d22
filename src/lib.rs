//! prometheus-tunnel: a Pingora reverse proxy that lets a Prometheus scrape an exporter it cannot
//! reach directly, and records its own metrics while doing so.
//!
//! The binary (`src/main.rs`) loads a [`config::LoadedConfig`], builds the two services in
//! [`service`] and runs them in one Pingora `Server`. The modules are public so integration
//! tests and benches can reach them.

#![forbid(unsafe_code)]

pub mod access;
pub mod admin;
pub mod build_info;
pub mod config;
pub mod ip_range;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod pacemaker;
pub mod proxy;
pub mod reload;
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
