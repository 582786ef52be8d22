//! One target's series and its record of scrapes, recorded together in one step per request.

use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use prometheus::{Histogram, IntCounter, IntGauge};

use super::scrape_log::{ScrapeEnd, ScrapeLog, ScrapeSummary};
use super::{UpstreamErrorKind, COMMON_STATUSES, METRICS};

/// One target's series, resolved on first use so that a fleet of thousands of targets exports
/// (and holds in memory) only what was scraped, then recorded with a few atomic adds and no
/// label hashing.
pub struct TargetMetrics {
    /// The `target` label value; unused in single-target mode.
    target: Box<str>,
    handles: OnceLock<Box<Handles>>,
    /// What the status page shows; made at the first scrape, or taken over from the target of
    /// the same name in the table a reload replaced.
    log: OnceLock<Arc<ScrapeLog>>,
}

/// The resolved series of one target.
struct Handles {
    requests: IntCounter,
    duration: Histogram,
    statuses: [OnceLock<IntCounter>; COMMON_STATUSES.len()],
    upstream_errors: [OnceLock<IntCounter>; UpstreamErrorKind::ALL.len()],
    upstream_up: OnceLock<IntGauge>,
}

impl TargetMetrics {
    /// The series of `target`. In single-target mode the request series exist at once (at 0),
    /// as the original tool's did.
    pub fn new(target: &str) -> Self {
        let metrics = TargetMetrics {
            target: target.into(),
            handles: OnceLock::new(),
            log: OnceLock::new(),
        };
        if !METRICS.families.labelled {
            metrics.handles();
        }
        metrics
    }

    /// Label values: `[target, extra...]` in multi-target mode, `[extra...]` otherwise.
    fn labels<'a>(&'a self, extra: &'a str) -> Vec<&'a str> {
        let mut labels = Vec::with_capacity(2);
        if METRICS.families.labelled {
            labels.push(&*self.target);
        }
        if !extra.is_empty() {
            labels.push(extra);
        }
        labels
    }

    fn handles(&self) -> &Handles {
        self.handles.get_or_init(|| {
            let families = &METRICS.families;
            Box::new(Handles {
                requests: families.requests.with_label_values(&self.labels("")),
                duration: families.duration.with_label_values(&self.labels("")),
                statuses: std::array::from_fn(|_| OnceLock::new()),
                upstream_errors: std::array::from_fn(|_| OnceLock::new()),
                upstream_up: OnceLock::new(),
            })
        })
    }

    /// Records one finished request: how it ended and, for a failed exchange with the
    /// exporter, why; `forwarded` says whether it reached the exporter at all.
    pub fn record(
        &self,
        end: ScrapeEnd,
        upstream_error: Option<UpstreamErrorKind>,
        forwarded: bool,
    ) {
        let status = end.status;
        let handles = self.handles();
        let families = &METRICS.families;
        handles.duration.observe(end.duration.as_secs_f64());
        self.log
            .get_or_init(Default::default)
            .record(SystemTime::now(), end);
        match COMMON_STATUSES.iter().position(|s| *s == status) {
            Some(i) => handles.statuses[i]
                .get_or_init(|| {
                    families
                        .statuses
                        .with_label_values(&self.labels(&status.to_string()))
                })
                .inc(),
            None => families
                .statuses
                .with_label_values(&self.labels(&status.to_string()))
                .inc(),
        }
        if let Some(kind) = upstream_error {
            handles.upstream_errors[kind as usize]
                .get_or_init(|| {
                    families
                        .upstream_errors
                        .with_label_values(&self.labels(kind.as_str()))
                })
                .inc();
        }
        if forwarded {
            let up = upstream_error.is_none() && status < 500;
            handles
                .upstream_up
                .get_or_init(|| families.upstream_up.with_label_values(&self.labels("")))
                .set(i64::from(up));
        }
        // Last, so that a scrape that starts after one which saw this request counted sees its
        // status, duration and error too. One scrape alone may not: it gathers the families in
        // name order, the statuses before this counter (the tests read again once it is seen).
        handles.requests.inc();
    }

    /// What the status page shows of the target's recent scrapes, as of `now`; `None` before
    /// its first.
    pub fn scrape_summary(&self, now: SystemTime) -> Option<ScrapeSummary> {
        self.log.get().and_then(|log| log.summary(now))
    }

    /// Keeps `previous`'s record of scrapes, when a reload replaces a target by one of the
    /// same name: the status page's history survives the reload, as the series do. Does
    /// nothing once this target has a record of its own.
    pub fn take_over_log(&self, previous: &TargetMetrics) {
        if let Some(log) = previous.log.get() {
            let _ = self.log.set(Arc::clone(log));
        }
    }

    /// Removes the target's series, when a reload drops it.
    pub fn remove(&self) {
        if self.handles.get().is_none() {
            return;
        }
        let families = &METRICS.families;
        let _ = families.requests.remove_label_values(&self.labels(""));
        let _ = families.duration.remove_label_values(&self.labels(""));
        let _ = families.upstream_up.remove_label_values(&self.labels(""));
        for status in COMMON_STATUSES {
            let _ = families
                .statuses
                .remove_label_values(&self.labels(&status.to_string()));
        }
        for kind in UpstreamErrorKind::ALL {
            let _ = families
                .upstream_errors
                .remove_label_values(&self.labels(kind.as_str()));
        }
    }
}
