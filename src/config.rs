//! The tunnel's configuration, the first layer of the crate: settings merged in one place from
//! defaults < conf file `tunnel:` section < environment < command-line flags, validated, and
//! handed on as typed values ([`TunnelConfig`]). It reads its sources (the conf file and, for a
//! target's `proxy_file`, the file holding its proxy URL) and nothing else: the certificates and
//! secrets that settings name are read by `crate::material`, the next layer. Nothing here
//! imports the runtime (`upstream`, `listener`, `proxy`, `admin`).
//!
//! Every problem is collected before the tunnel gives up, so a user fixes a manifest in one go;
//! `main` prints one line per problem and exits with code 2 before binding any port.
//!
//! - `setting`: each setting declared once (env name, conf key, flag, default, help).
//! - `cli`, `file`, `targets`: the sources (flags, the conf file, its `tunnel.targets`).
//! - `parse`, `forward_proxy`: parsers of single values.
//! - `validate`: checks the merged values and builds the [`model`] types.
//! - `error`: how a refused value is reported; `in_force`: the values in force, for the status
//!   page.

pub mod cli;
pub mod error;
pub mod file;
pub mod forward_proxy;
mod in_force;
pub mod model;
pub mod parse;
pub mod setting;
pub mod targets;
mod validate;

use std::collections::HashMap;
use std::path::Path;

use pingora_core::server::configuration::ServerConf;

pub use error::{ConfigError, Origin, RawValue};
pub use model::*;
pub use parse::{ExporterHost, Scheme};
pub use setting::Setting;
pub use targets::TargetSpec;
pub use validate::Refused;

/// Pingora's `grace_period_seconds` unless the conf file sets it: how long in-flight scrapes
/// may run after SIGTERM. Pingora's own default (5 minutes) is far past the 30 s Kubernetes
/// waits before SIGKILL.
pub const DEFAULT_GRACE_PERIOD_SECONDS: u64 = 5;
/// Pingora's `fast_timeout_to_tokio_threshold_seconds` unless the conf file sets it: every
/// timeout of a second or more runs on tokio's timer, not Pingora's fast-timer thread. Each
/// scrape arms connect, read and write timeouts; in the side-by-side bench this cut the CPU per
/// scrape of a small (gzip) page by about a tenth and the RSS by 2 MiB.
pub const DEFAULT_FAST_TIMEOUT_TO_TOKIO_THRESHOLD_SECONDS: Option<u64> = Some(0);
/// Pingora's `work_stealing` unless the conf file sets it: with one worker thread (Pingora's
/// default `threads`) there is nothing to steal, and tokio's multi-threaded scheduler only adds
/// its own statistics, four clock reads per pass; Pingora's other runtime, a current-thread
/// runtime per thread, served 1-8% more gzip scrapes a second across the veth link (two paired
/// runs) and took 14% less CPU per scrape in the 1,000-exporter fleet (benches/README.md, "What
/// was changed by measurement"). With more threads Pingora's own default stands: its
/// runtime-per-thread pool leaves every accepted socket on the accept loop's thread, whose
/// reactor then wakes the connection's thread for each of its reads and writes (two threads,
/// gzip page: 61,503 req/s against 65,949 with work stealing).
pub fn default_work_stealing(threads: usize) -> bool {
    threads > 1
}
/// Pingora's `graceful_shutdown_timeout_seconds` unless the conf file sets it.
pub const DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT_SECONDS: u64 = 5;

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
pub fn load(cli: &cli::Cli, env: &impl EnvSource) -> Result<LoadedConfig, Refused> {
    let conf_path = cli.pingora.conf.as_deref().map(Path::new);
    let (mut server, file_values, specs, keys_set) = match conf_path {
        Some(path) => {
            let conf = file::load(path).map_err(|e| Refused {
                errors: vec![e],
                files: Vec::new(),
            })?;
            (
                conf.server,
                conf.values,
                conf.targets,
                conf.pingora_keys_set,
            )
        }
        None => (
            ServerConf::default(),
            Vec::new(),
            Vec::new(),
            Default::default(),
        ),
    };
    if !keys_set.contains("fast_timeout_to_tokio_threshold_seconds") {
        server.fast_timeout_to_tokio_threshold_seconds =
            DEFAULT_FAST_TIMEOUT_TO_TOKIO_THRESHOLD_SECONDS;
    }
    if !keys_set.contains("work_stealing") {
        server.work_stealing = default_work_stealing(server.threads);
    }
    server
        .grace_period_seconds
        .get_or_insert(DEFAULT_GRACE_PERIOD_SECONDS);
    server
        .graceful_shutdown_timeout_seconds
        .get_or_insert(DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT_SECONDS);

    let tunnel = merge_as(
        cli.role(),
        FileLayer {
            values: file_values,
            targets: &specs,
            path: conf_path,
        },
        env,
        cli.values(),
    )?;
    Ok(LoadedConfig { tunnel, server })
}

/// What the conf file contributes to the tunnel's settings.
#[derive(Debug, Default)]
pub struct FileLayer<'a> {
    /// Values of the `tunnel:` section.
    pub values: Vec<RawValue>,
    /// `tunnel.targets`.
    pub targets: &'a [TargetSpec],
    /// The file, for messages.
    pub path: Option<&'a Path>,
}

/// Merges the layers (later wins) and validates the result, for the tunnel's role.
pub fn merge(
    file: FileLayer<'_>,
    env: &impl EnvSource,
    cli_values: Vec<RawValue>,
) -> Result<TunnelConfig, Refused> {
    merge_as(Role::Tunnel, file, env, cli_values)
}

/// Merges the layers (later wins) and validates the result for `role`.
pub fn merge_as(
    role: Role,
    file: FileLayer<'_>,
    env: &impl EnvSource,
    cli_values: Vec<RawValue>,
) -> Result<TunnelConfig, Refused> {
    let FileLayer {
        values: file_values,
        targets: specs,
        path,
    } = file;
    let env_values = Setting::ALL.iter().copied().filter_map(|setting| {
        env.var(setting.env()).map(|text| RawValue {
            setting,
            origin: Origin::Env,
            text,
        })
    });
    let mut chosen = validate::Chosen::new();
    for value in file_values.into_iter().chain(env_values).chain(cli_values) {
        chosen.insert(value.setting, value);
    }
    validate::Validator::default().finish(role, &chosen, env, specs, path)
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
