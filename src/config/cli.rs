//! The command line: Pingora's own `Opt` (`-c`, `-t`, `-d`, `-u`) plus one flag per setting.
//!
//! Flags take text, not typed values, so that a bad flag is refused with the same message as a bad
//! env value or conf key (`--server-port="abc": expected a port 1-65535`), and after every other
//! problem has been collected.

use clap::Parser;
use pingora_core::server::configuration::Opt;

use super::setting::{Origin, RawValue, Setting};
use crate::build_info;

/// Forward Prometheus scrapes to an exporter it cannot reach directly, and record the tunnel's
/// own metrics.
///
/// Each setting is read from, lowest first: its default, the `tunnel:` section of the conf file
/// (-c), its environment variable, then its flag.
#[derive(Debug, Parser)]
#[command(name = "prometheus-tunnel", version = build_info::VERSION)]
pub struct Cli {
    /// Pingora's server options.
    #[command(flatten)]
    pub pingora: Opt,

    /// Exporter host: IPv4, IPv6 or DNS name. [env: SERVER_IP] [conf: tunnel.server_ip]
    /// [required]
    #[arg(long, value_name = "HOST")]
    pub server_ip: Option<String>,

    /// Exporter port. [env: SERVER_PORT] [conf: tunnel.server_port] [default: 9182]
    #[arg(long, value_name = "PORT")]
    pub server_port: Option<String>,

    /// http or https to the exporter. [env: SERVER_SCHEME] [conf: tunnel.server_scheme]
    /// [default: http]
    #[arg(long, value_name = "SCHEME")]
    pub server_scheme: Option<String>,

    /// Address the proxy and metrics ports bind. [env: LISTEN_ADDRESS]
    /// [conf: tunnel.listen_address] [default: 0.0.0.0]
    #[arg(long, value_name = "IP")]
    pub listen_address: Option<String>,

    /// Port Prometheus scrapes, forwarded to the exporter. [env: LISTEN_PORT]
    /// [conf: tunnel.listen_port] [default: 8080]
    #[arg(long, value_name = "PORT")]
    pub listen_port: Option<String>,

    /// Port of the tunnel's own /metrics, /healthz, /readyz, /version. [env: METRICS_PORT]
    /// [conf: tunnel.metrics_port] [default: 9182]
    #[arg(long, value_name = "PORT")]
    pub metrics_port: Option<String>,

    /// Debug logging: true/false/1/0 (RUST_LOG, when set, wins). [env: DEBUG]
    /// [conf: tunnel.debug] [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub debug: Option<String>,

    /// Whole-request limit to the exporter, e.g. 10s, 500ms; a smaller
    /// X-Prometheus-Scrape-Timeout-Seconds from Prometheus wins. [env: UPSTREAM_TIMEOUT]
    /// [conf: tunnel.upstream_timeout] [default: 10s]
    #[arg(long, value_name = "DURATION")]
    pub upstream_timeout: Option<String>,
}

impl Cli {
    /// The settings given as flags, as raw values to be merged over the other layers.
    pub fn values(&self) -> Vec<RawValue> {
        // Destructure so that a new flag cannot be forgotten here.
        let Cli {
            pingora: _,
            server_ip,
            server_port,
            server_scheme,
            listen_address,
            listen_port,
            metrics_port,
            debug,
            upstream_timeout,
        } = self;
        [
            (Setting::ServerIp, server_ip),
            (Setting::ServerPort, server_port),
            (Setting::ServerScheme, server_scheme),
            (Setting::ListenAddress, listen_address),
            (Setting::ListenPort, listen_port),
            (Setting::MetricsPort, metrics_port),
            (Setting::Debug, debug),
            (Setting::UpstreamTimeout, upstream_timeout),
        ]
        .into_iter()
        .filter_map(|(setting, value)| {
            value.as_ref().map(|text| RawValue {
                setting,
                origin: Origin::Cli,
                text: text.clone(),
            })
        })
        .collect()
    }
}
