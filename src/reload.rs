//! Reloading the target table without a restart: on SIGHUP, or when the conf file changes
//! (checked once a second), the configuration is loaded again exactly as at start-up and, if it
//! is valid, the target table is replaced in one atomic swap. In-flight scrapes finish on the
//! table they started with; a bad file is refused with a log line and the old table stays.
//! Only the targets change on a reload: ports, access rules and limits need a restart.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;

use async_trait::async_trait;
use clap::Parser;
use log::{error, info, warn};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{cli::Cli, ProcessEnv};
use crate::material;
use crate::material::stamp::{stamp, FileStamp};
use crate::metrics::METRICS;
use crate::targets::{SharedTargets, TargetTable};

/// How often the conf file is checked for a change.
pub const CONF_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How the last reload ended, for the status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// When it ended.
    pub at: SystemTime,
    /// What started it: `SIGHUP`, or the conf file changing.
    pub why: &'static str,
    /// Whether the new table is in use.
    pub applied: bool,
    /// What changed, or why it was refused (the log line's words).
    pub detail: String,
}

/// The last reload's outcome, written by the [`Reloader`] and read by the status page.
#[derive(Debug, Default)]
pub struct ReloadLog {
    last: ArcSwapOption<ReloadOutcome>,
}

impl ReloadLog {
    /// The last reload's outcome; `None` if there was none since the start.
    pub fn last(&self) -> Option<Arc<ReloadOutcome>> {
        self.last.load_full()
    }

    /// Called once the reload is over, its table swapped in: the status report reads this
    /// before the table, and so never shows a reload beside the table it replaced.
    fn note(&self, why: &'static str, applied: bool, detail: String) {
        self.last.store(Some(Arc::new(ReloadOutcome {
            at: SystemTime::now(),
            why,
            applied,
            detail,
        })));
    }
}

/// The conf file a reloader watches, and the version of it the running targets came from.
#[derive(Debug, Clone)]
pub struct WatchedConf {
    path: PathBuf,
    /// Its stamp from just before it was last read. Taken before start-up reads the file, not
    /// when the watch begins: an edit made while the process starts is then seen as a change,
    /// where a stamp taken later would take it for the version already running.
    seen: Option<FileStamp>,
}

impl WatchedConf {
    /// The conf file at `path`, stamped now: made before the configuration is read from it.
    pub fn before_reading(path: PathBuf) -> Self {
        let seen = stamp(&path);
        WatchedConf { path, seen }
    }

    /// Whether the file changed since it was last seen; if so, it is seen as it is now.
    fn changed(&mut self) -> bool {
        let now = stamp(&self.path);
        if now.is_some() && now != self.seen {
            self.seen = now;
            return true;
        }
        false
    }
}

/// The background service that reloads the target table.
pub struct Reloader {
    /// The command line the process started with, parsed again on each reload.
    args: Vec<OsString>,
    /// The conf file (`-c`), watched for changes.
    conf: Option<WatchedConf>,
    targets: SharedTargets,
    /// Where each reload's outcome is kept.
    log: Arc<ReloadLog>,
}

impl Reloader {
    /// A reloader of `targets` from the configuration of `args` (the process' command line).
    pub fn new(args: Vec<OsString>, conf: Option<WatchedConf>, targets: SharedTargets) -> Self {
        Reloader {
            args,
            conf,
            targets,
            log: Arc::default(),
        }
    }

    /// Where each reload's outcome is kept, for the status page.
    pub fn log(&self) -> Arc<ReloadLog> {
        Arc::clone(&self.log)
    }

    /// Loads the configuration again and swaps the table in, or says why not (in the log, and
    /// in the [`ReloadLog`]).
    pub fn reload(&self, why: &'static str) {
        match self.try_reload() {
            Ok(done) => {
                info!("reloaded the targets ({why}): {done}");
                self.log.note(why, true, done);
            }
            Err(refusal) => {
                let in_use = self.targets.load().len();
                let detail = format!("refused, keeping the {in_use} targets in use: {refusal}");
                error!("reload ({why}) {detail}");
                self.log.note(why, false, detail);
            }
        }
    }

    /// One reload: what changed, or why it was refused.
    fn try_reload(&self) -> Result<String, String> {
        let cli = Cli::try_parse_from(&self.args)
            .map_err(|e| format!("the command line no longer parses ({e})"))?;
        let (loaded, material) = material::load(&cli, &ProcessEnv).map_err(|errors| {
            let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
            lines.join("; ")
        })?;
        if loaded.tunnel.labelled_metrics() != METRICS.multi_target() {
            return Err("switching between one exporter and tunnel.targets needs a restart (the metrics' labels change)".to_string());
        }
        let next = TargetTable::build(&loaded.tunnel, material.exporters)
            .map(Arc::new)
            .map_err(|e| e.to_string())?;
        // Kept targets keep their record of scrapes, as they keep their series: taken over
        // before the swap, so that no scrape of the new table starts a record of its own.
        let current = self.targets.load();
        let mut added = 0;
        for target in next.iter() {
            match current.get(&target.name) {
                Some(old) => target.metrics.take_over_log(&old.metrics),
                None => added += 1,
            }
        }
        drop(current);
        let previous = self.targets.swap(Arc::clone(&next));
        let removed = previous.removed_in(&next);
        for target in &removed {
            target.metrics.remove();
        }
        Ok(format!(
            "{} now, {added} added, {} removed",
            next.len(),
            removed.len()
        ))
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
        let mut conf = self.conf.clone();
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
                    if conf.as_mut().is_some_and(WatchedConf::changed) {
                        self.reload("the conf file changed");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edit_made_while_the_process_starts_is_a_change() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("tunnel.yaml");
        std::fs::write(&path, "tunnel:\n").expect("conf");
        let mut watched = WatchedConf::before_reading(path.clone());
        // Written after start-up read the file, before the watch's first look.
        std::fs::write(&path, "tunnel:\n  targets: []\n").expect("conf");
        assert!(watched.changed(), "the edit is seen at the first look");
        assert!(!watched.changed(), "and only once");
    }
}
