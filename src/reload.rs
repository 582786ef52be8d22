//! Reloading the target table without a restart: on SIGHUP, or when the conf file changes
//! (checked once a second), the configuration is loaded again exactly as at start-up and, if it
//! is valid, the target table is replaced in one atomic swap. In-flight scrapes finish on the
//! table they started with; a bad file is refused with a log line and the old table stays.
//! Only the targets change on a reload: ports, access rules and limits need a restart.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clap::Parser;
use log::{error, info, warn};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{cli::Cli, ProcessEnv};
use crate::material;
use crate::material::stamp::stamp;
use crate::metrics::METRICS;
use crate::targets::{SharedTargets, TargetTable};

/// How often the conf file is checked for a change.
pub const CONF_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The background service that reloads the target table.
pub struct Reloader {
    /// The command line the process started with, parsed again on each reload.
    args: Vec<OsString>,
    /// The conf file (`-c`), watched for changes.
    conf: Option<PathBuf>,
    targets: SharedTargets,
}

impl Reloader {
    /// A reloader of `targets` from the configuration of `args` (the process' command line).
    pub fn new(args: Vec<OsString>, conf: Option<PathBuf>, targets: SharedTargets) -> Self {
        Reloader {
            args,
            conf,
            targets,
        }
    }

    /// Loads the configuration again and swaps the table in, or says why not.
    pub fn reload(&self, why: &str) {
        let in_use = self.targets.load().len();
        let cli = match Cli::try_parse_from(&self.args) {
            Ok(cli) => cli,
            Err(e) => {
                error!("reload ({why}) refused: the command line no longer parses ({e}); keeping the {in_use} targets in use");
                return;
            }
        };
        let (loaded, material) = match material::load(&cli, &ProcessEnv) {
            Ok(loaded) => loaded,
            Err(errors) => {
                let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
                error!(
                    "reload ({why}) refused, keeping the {in_use} targets in use: {}",
                    lines.join("; ")
                );
                return;
            }
        };
        if loaded.tunnel.labelled_metrics() != METRICS.multi_target() {
            error!("reload ({why}) refused: switching between one exporter and tunnel.targets needs a restart (the metrics' labels change); keeping the {in_use} targets in use");
            return;
        }
        let next = match TargetTable::build(&loaded.tunnel, material.exporters) {
            Ok(table) => Arc::new(table),
            Err(e) => {
                error!("reload ({why}) refused: {e}; keeping the {in_use} targets in use");
                return;
            }
        };
        let previous = self.targets.swap(Arc::clone(&next));
        let removed = previous.removed_in(&next);
        for target in &removed {
            target.metrics.remove();
        }
        let added = next
            .iter()
            .filter(|t| previous.get(&t.name).is_none())
            .count();
        info!(
            "reloaded the targets ({why}): {} now, {added} added, {} removed",
            next.len(),
            removed.len()
        );
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => Some(hangup),
            Err(e) => {
                warn!("cannot listen for SIGHUP ({e}); the targets reload only when the conf file changes");
                None
            }
        };
        let mut last = self.conf.as_deref().and_then(stamp);
        let mut tick = tokio::time::interval(CONF_CHECK_INTERVAL);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = async {
                    match hangup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => self.reload("SIGHUP"),
                _ = tick.tick() => {
                    if let Some(conf) = &self.conf {
                        let now = stamp(conf);
                        if now.is_some() && now != last {
                            last = now;
                            self.reload("the conf file changed");
                        }
                    }
                }
            }
        }
    }
}
