//! `/status`: every target with its last scrape, its last failure and its counts over the last
//! five minutes, failing targets first; and the tunnel itself (version, uptime, connections,
//! memory, the last reload, the settings in force). The HTML page at `/` shows the same report.
//!
//! Everything here is read from what the scrape path records anyway (`metrics::scrape_log`,
//! the gauges): building the report costs the scrape path nothing.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde::Serialize;

use super::AdminApp;
use crate::build_info;
use crate::config::SettingInForce;
use crate::metrics::scrape_log::ScrapeSummary;
use crate::metrics::{TargetMetrics, METRICS};
use crate::proxy::reason_of;
use crate::reload::ReloadLog;

/// What the status report needs beyond the target table: when the process started, the
/// settings in force and the reloads' outcomes.
pub struct StatusSources {
    /// When the tunnel started, as a time of day.
    pub started_at: SystemTime,
    /// When it started, for the uptime.
    pub started: Instant,
    /// The settings in force.
    pub settings: Vec<SettingInForce>,
    /// The last reload's outcome.
    pub reloads: Arc<ReloadLog>,
}

impl StatusSources {
    /// The sources of a tunnel starting now with `settings`, its reloads kept in `reloads`.
    pub fn new(settings: Vec<SettingInForce>, reloads: Arc<ReloadLog>) -> Self {
        StatusSources {
            started_at: SystemTime::now(),
            started: Instant::now(),
            settings,
            reloads,
        }
    }
}

/// The whole report, as `/status` serves it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport<'a> {
    /// When the report was made.
    #[serde(serialize_with = "rfc3339")]
    pub generated_at: SystemTime,
    /// The tunnel itself.
    pub tunnel: TunnelStatus<'a>,
    /// Every target, failing ones first.
    pub targets: Vec<TargetStatus>,
}

/// The tunnel's part of the report.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TunnelStatus<'a> {
    /// The release.
    pub version: &'static str,
    /// The commit it was built from.
    pub git_commit: &'static str,
    /// When it was built.
    pub build_time: &'static str,
    /// When the process started.
    #[serde(serialize_with = "rfc3339")]
    pub started_at: SystemTime,
    /// Seconds since then.
    pub uptime_seconds: u64,
    /// Client connections open on the proxy port.
    pub open_connections: i64,
    /// Scrapes being answered now.
    pub in_flight_scrapes: i64,
    /// The process' resident memory, when the system tells it.
    pub resident_memory_bytes: Option<u64>,
    /// The last reload, if there was one.
    pub last_reload: Option<ReloadStatus>,
    /// The settings in force.
    pub settings: Vec<SettingStatus<'a>>,
}

/// The last reload's outcome.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadStatus {
    /// When it ended.
    #[serde(serialize_with = "rfc3339")]
    pub at: SystemTime,
    /// What started it.
    pub trigger: &'static str,
    /// Whether the new targets are in use.
    pub applied: bool,
    /// What changed, or why it was refused.
    pub detail: String,
}

/// One setting in force.
#[derive(Serialize)]
pub struct SettingStatus<'a> {
    /// Its environment variable.
    pub name: &'static str,
    /// Its value (never a secret: secrets are given by file).
    pub value: &'a str,
    /// Where the value came from.
    pub origin: &'a str,
}

/// How a target stands, in the order the report lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TargetState {
    /// Its last scrape failed.
    Failing,
    /// Not scraped since the tunnel started (or since it appeared).
    Unscraped,
    /// Its last scrape succeeded.
    Ok,
}

impl TargetState {
    /// Its word, in the JSON, on the page and for the filter.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Failing => "failing",
            TargetState::Unscraped => "unscraped",
            TargetState::Ok => "ok",
        }
    }
}

impl Serialize for TargetState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// One target's part of the report.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetStatus {
    /// Its name (`?target=`).
    pub name: String,
    /// Where it comes from: `config`, `poll` (a registered client) or `agent`.
    pub source: &'static str,
    /// How it is reached: `scheme://host:port` and the proxy, or the agent and its address.
    pub address: String,
    /// How it stands.
    pub state: TargetState,
    /// Its last scrape.
    pub last_scrape: Option<LastScrape>,
    /// Its last failed scrape.
    pub last_failure: Option<LastFailure>,
    /// Scrapes over the last five minutes.
    pub scrapes_5m: u64,
    /// Failed scrapes over the last five minutes.
    pub failures_5m: u64,
}

/// A target's last scrape.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastScrape {
    /// When it ended.
    #[serde(serialize_with = "rfc3339")]
    pub at: SystemTime,
    /// The status the client was answered.
    pub status: u16,
    /// How long it took.
    pub duration_seconds: f64,
    /// Body bytes sent to the client.
    pub bytes: u64,
}

/// A target's last failed scrape.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastFailure {
    /// When it ended.
    #[serde(serialize_with = "rfc3339")]
    pub at: SystemTime,
    /// The status the client was answered.
    pub status: u16,
    /// Why it failed.
    pub reason: String,
}

fn rfc3339<S: serde::Serializer>(at: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&humantime::format_rfc3339_millis(*at))
}

impl TargetStatus {
    /// The status of the target `name` from `source`, reached as `address`, from its series'
    /// record as of `now`.
    pub fn of(
        name: &str,
        source: &'static str,
        address: String,
        metrics: &TargetMetrics,
        now: SystemTime,
    ) -> Self {
        let summary = metrics.scrape_summary(now);
        let (state, last_scrape, last_failure, scrapes_5m, failures_5m) = match summary {
            None => (TargetState::Unscraped, None, None, 0, 0),
            Some(ScrapeSummary {
                last,
                last_failure,
                scrapes,
                failures,
            }) => {
                let state = match last {
                    Some((_, end)) if end.failure.is_some() => TargetState::Failing,
                    Some(_) => TargetState::Ok,
                    None => TargetState::Unscraped,
                };
                let last = last.map(|(at, end)| LastScrape {
                    at,
                    status: end.status,
                    duration_seconds: end.duration.as_secs_f64(),
                    bytes: end.bytes,
                });
                let failure = last_failure.map(|(at, status, code)| LastFailure {
                    at,
                    status,
                    reason: reason_of(code, status).into_owned(),
                });
                (state, last, failure, scrapes, failures)
            }
        };
        TargetStatus {
            name: name.to_string(),
            source,
            address,
            state,
            last_scrape,
            last_failure,
            scrapes_5m,
            failures_5m,
        }
    }
}

impl StatusSources {
    /// The tunnel's part of the report, as of `now`.
    pub fn tunnel(&self) -> TunnelStatus<'_> {
        TunnelStatus {
            version: build_info::VERSION,
            git_commit: build_info::GIT_COMMIT,
            build_time: build_info::BUILD_DATE,
            started_at: self.started_at,
            uptime_seconds: self.started.elapsed().as_secs(),
            open_connections: METRICS.proxy_port.open_connections.get(),
            in_flight_scrapes: METRICS.in_flight.get(),
            resident_memory_bytes: resident_memory(),
            last_reload: self.reloads.last().map(|r| ReloadStatus {
                at: r.at,
                trigger: r.why,
                applied: r.applied,
                detail: r.detail.clone(),
            }),
            settings: self
                .settings
                .iter()
                .map(|s| SettingStatus {
                    name: s.name,
                    value: &s.value,
                    origin: &s.origin,
                })
                .collect(),
        }
    }
}

impl AdminApp {
    /// The report as of now: the configured targets, the registered clients' and agents'
    /// names, those matching `filter` (lower-case; empty for all), failing first; and how
    /// many targets there are, and fail, before the filter.
    pub(super) fn report(&self, filter: &str) -> (StatusReport<'_>, Counts) {
        // The reload log first: a reload swaps its table in before it notes itself, so the
        // targets read after its note are those it loaded (or later ones), and the report is
        // not older than the reload it shows.
        let tunnel = self.status.tunnel();
        let now = SystemTime::now();
        let table = self.targets.load();
        let mut targets: Vec<TargetStatus> = table
            .iter()
            .map(|t| TargetStatus::of(&t.name, "config", t.description.clone(), &t.metrics, now))
            .collect();
        if let Some(registry) = &self.registry {
            targets.extend(registry.listing().iter().map(|(name, metrics)| {
                TargetStatus::of(name, "poll", "registered client".into(), metrics, now)
            }));
        }
        if let Some(agents) = &self.agents {
            targets.extend(agents.directory.listing().iter().map(|l| {
                let address = format!("agent {}: {}", l.agent, l.target.address);
                TargetStatus::of(&l.name, "agent", address, &l.metrics, now)
            }));
            if let Some(peers) = &agents.peers {
                targets.extend(peers.listing().iter().map(|r| {
                    let address = format!(
                        "agent {} on replica {}: {}",
                        r.target.agent, r.replica, r.target.address
                    );
                    TargetStatus::of(&r.target.name, "agent", address, &r.metrics, now)
                }));
            }
        }
        let counts = Counts {
            total: targets.len(),
            failing: targets
                .iter()
                .filter(|t| t.state == TargetState::Failing)
                .count(),
        };
        if !filter.is_empty() {
            targets.retain(|t| super::status_page::matches(t, filter));
        }
        order(&mut targets);
        let report = StatusReport {
            generated_at: now,
            tunnel,
            targets,
        };
        (report, counts)
    }
}

/// How many targets there are, and how many fail, whatever the page's filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Every target.
    pub total: usize,
    /// Those whose last scrape failed.
    pub failing: usize,
}

/// Failing targets first, then those never scraped, then the rest; by name within each.
pub fn order(targets: &mut [TargetStatus]) {
    targets.sort_by(|a, b| (a.state, &a.name).cmp(&(b.state, &b.name)));
}

/// The process' resident memory, as `process_resident_memory_bytes` reports it.
fn resident_memory() -> Option<u64> {
    use prometheus::core::Collector;
    prometheus::process_collector::ProcessCollector::for_self()
        .collect()
        .iter()
        .find(|family| family.name() == "process_resident_memory_bytes")
        .and_then(|family| family.get_metric().first())
        .map(|metric| metric.get_gauge().value() as u64)
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
