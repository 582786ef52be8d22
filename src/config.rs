//! The tunnel's configuration: merged in one place from defaults < conf file `tunnel:` section <
//! environment < command-line flags, validated, and handed on as typed values.
//!
//! Every problem is collected before the tunnel gives up, so a user fixes a manifest in one go;
//! `main` prints one line per problem and exits with code 2 before binding any port.

pub mod cli;
pub mod file;
pub mod parse;
pub mod setting;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU16;
use std::path::Path;
use std::time::Duration;

use pingora_core::server::configuration::ServerConf;

pub use parse::{ExporterHost, Scheme};
pub use setting::{ConfigError, Origin, RawValue, Setting};

/// Default `SERVER_PORT`: windows_exporter's port, as in the original tool.
pub const DEFAULT_SERVER_PORT: u16 = 9182;
/// Default `LISTEN_PORT`.
pub const DEFAULT_LISTEN_PORT: u16 = 8080;
/// Default `METRICS_PORT`.
pub const DEFAULT_METRICS_PORT: u16 = 9182;
/// Default `UPSTREAM_TIMEOUT`: Prometheus' own default scrape timeout.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// Pingora's `grace_period_seconds` unless the conf file sets it: how long in-flight scrapes
/// may run after SIGTERM. Pingora's own default (5 minutes) is far past the 30 s Kubernetes
/// waits before SIGKILL.
pub const DEFAULT_GRACE_PERIOD_SECONDS: u64 = 5;
/// Pingora's `graceful_shutdown_timeout_seconds` unless the conf file sets it.
pub const DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT_SECONDS: u64 = 5;

/// Where the exporter is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExporterConfig {
    /// Host of the exporter.
    pub host: ExporterHost,
    /// Port of the exporter.
    pub port: NonZeroU16,
    /// `http` or `https`.
    pub scheme: Scheme,
    /// Whole-request limit for one scrape; Prometheus' scrape-timeout header may lower it.
    pub timeout: Duration,
}

impl ExporterConfig {
    /// `host:port` as the `Host` header and log lines show it.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The two ports the tunnel listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenConfig {
    /// Address both listeners bind.
    pub address: IpAddr,
    /// Port that Prometheus scrapes; forwarded to the exporter.
    pub proxy_port: NonZeroU16,
    /// Port of `/metrics`, `/healthz`, `/readyz`, `/version`.
    pub metrics_port: NonZeroU16,
}

impl ListenConfig {
    /// The proxy listener's socket address.
    pub fn proxy_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.proxy_port.get())
    }

    /// The metrics listener's socket address.
    pub fn metrics_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.metrics_port.get())
    }
}

/// The tunnel's validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelConfig {
    /// The exporter scrapes are forwarded to.
    pub exporter: ExporterConfig,
    /// The listeners.
    pub listen: ListenConfig,
    /// Debug logging.
    pub debug: bool,
}

/// Everything the process needs to start: the tunnel's settings and Pingora's.
#[derive(Debug)]
pub struct LoadedConfig {
    /// The tunnel's settings.
    pub tunnel: TunnelConfig,
    /// Pingora's server settings from the conf file, with the tunnel's shutdown defaults.
    pub server: ServerConf,
}

/// A source of environment variables; the process env in production, a map in tests.
pub trait EnvSource {
    /// The value of `name`, if set (even if empty).
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
    }
}

impl EnvSource for HashMap<&str, &str> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).map(|v| v.to_string())
    }
}

/// Loads the conf file named by `-c` (if any), merges env and flags over it and validates it all.
pub fn load(cli: &cli::Cli, env: &impl EnvSource) -> Result<LoadedConfig, Vec<ConfigError>> {
    let (mut server, file_values) = match cli.pingora.conf.as_deref() {
        Some(path) => {
            let conf = file::load(Path::new(path)).map_err(|e| vec![e])?;
            (conf.server, conf.values)
        }
        None => (ServerConf::default(), Vec::new()),
    };
    server
        .grace_period_seconds
        .get_or_insert(DEFAULT_GRACE_PERIOD_SECONDS);
    server
        .graceful_shutdown_timeout_seconds
        .get_or_insert(DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT_SECONDS);

    let tunnel = merge(file_values, env, cli.values())?;
    Ok(LoadedConfig { tunnel, server })
}

/// Merges the layers (later wins) and validates the result.
pub fn merge(
    file_values: Vec<RawValue>,
    env: &impl EnvSource,
    cli_values: Vec<RawValue>,
) -> Result<TunnelConfig, Vec<ConfigError>> {
    let env_values = Setting::ALL.into_iter().filter_map(|setting| {
        env.var(setting.env()).map(|text| RawValue {
            setting,
            origin: Origin::Env,
            text,
        })
    });
    let mut chosen: HashMap<Setting, RawValue> = HashMap::new();
    for value in file_values.into_iter().chain(env_values).chain(cli_values) {
        chosen.insert(value.setting, value);
    }
    Validator {
        chosen,
        errors: Vec::new(),
    }
    .finish()
}

/// Parses each chosen value, collecting every error.
struct Validator {
    chosen: HashMap<Setting, RawValue>,
    errors: Vec<ConfigError>,
}

impl Validator {
    /// The parsed value of `setting`, its default when unset, or `None` after recording an error.
    fn get<T>(
        &mut self,
        setting: Setting,
        default: Option<T>,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        match self.chosen.get(&setting) {
            Some(raw) => match parse(&raw.text) {
                Ok(v) => Some(v),
                Err(expected) => {
                    self.errors.push(ConfigError::value(raw, expected));
                    None
                }
            },
            None => default,
        }
    }

    fn finish(mut self) -> Result<TunnelConfig, Vec<ConfigError>> {
        let default_port = |p: u16| NonZeroU16::new(p);
        let host = self.get(Setting::ServerIp, None, parse::exporter_host);
        if !self.chosen.contains_key(&Setting::ServerIp) {
            self.errors.push(ConfigError::other(
                "SERVER_IP is not set",
                "the exporter's host in SERVER_IP, --server-ip or tunnel.server_ip",
            ));
        }
        let port = self.get(
            Setting::ServerPort,
            default_port(DEFAULT_SERVER_PORT),
            parse::port,
        );
        let scheme = self.get(Setting::ServerScheme, Some(Scheme::Http), parse::scheme);
        let address = self.get(
            Setting::ListenAddress,
            Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            parse::listen_address,
        );
        let proxy_port = self.get(
            Setting::ListenPort,
            default_port(DEFAULT_LISTEN_PORT),
            parse::port,
        );
        let metrics_port = self.get(
            Setting::MetricsPort,
            default_port(DEFAULT_METRICS_PORT),
            parse::port,
        );
        let debug = self.get(Setting::Debug, Some(false), parse::boolean);
        let timeout = self.get(
            Setting::UpstreamTimeout,
            Some(DEFAULT_UPSTREAM_TIMEOUT),
            parse::timeout,
        );

        if let (Some(proxy_port), Some(metrics_port)) = (proxy_port, metrics_port) {
            if proxy_port == metrics_port {
                let raw = self.raw_or_default(Setting::MetricsPort, metrics_port);
                self.errors.push(ConfigError::value(
                    &raw,
                    format!("a port other than LISTEN_PORT ({proxy_port}): the proxy and metrics listeners cannot share a port"),
                ));
            }
        }
        if let (Some(host), Some(port), Some(proxy_port)) = (&host, port, proxy_port) {
            if host.is_local() && port == proxy_port {
                let raw = self.raw_or_default(Setting::ServerPort, port);
                self.errors.push(ConfigError::value(
                    &raw,
                    format!("a port other than LISTEN_PORT ({proxy_port}) when SERVER_IP is this machine: the tunnel would forward to itself"),
                ));
            }
        }

        match (
            host,
            port,
            scheme,
            address,
            proxy_port,
            metrics_port,
            debug,
            timeout,
        ) {
            (
                Some(host),
                Some(port),
                Some(scheme),
                Some(address),
                Some(proxy_port),
                Some(metrics_port),
                Some(debug),
                Some(timeout),
            ) if self.errors.is_empty() => Ok(TunnelConfig {
                exporter: ExporterConfig {
                    host,
                    port,
                    scheme,
                    timeout,
                },
                listen: ListenConfig {
                    address,
                    proxy_port,
                    metrics_port,
                },
                debug,
            }),
            _ => Err(self.errors),
        }
    }

    /// The raw value of `setting` for a message, or its default spelled as text.
    fn raw_or_default(&self, setting: Setting, value: impl ToString) -> RawValue {
        self.chosen.get(&setting).cloned().unwrap_or(RawValue {
            setting,
            origin: Origin::Default,
            text: value.to_string(),
        })
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
