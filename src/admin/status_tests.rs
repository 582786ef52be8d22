//! Unit tests of the status report: order, reasons, and a fleet's bounded records.

use super::*;
use crate::metrics::scrape_log::ScrapeEnd;
use std::time::Duration;

fn end(status: u16, failure: Option<u16>) -> ScrapeEnd {
    ScrapeEnd {
        status,
        duration: Duration::from_millis(3),
        bytes: 100,
        failure,
    }
}

#[test]
fn failing_targets_come_first_then_the_unscraped() {
    let now = SystemTime::now();
    let ok = TargetMetrics::new("a-ok");
    ok.record(end(200, None), None, true);
    let failing = TargetMetrics::new("z-failing");
    failing.record(end(200, None), None, true);
    failing.record(end(502, Some(16)), None, true);
    let never = TargetMetrics::new("m-never");
    let mut targets = vec![
        TargetStatus::of("a-ok", "config", "http://a".into(), &ok, now),
        TargetStatus::of("m-never", "config", "http://m".into(), &never, now),
        TargetStatus::of("z-failing", "config", "http://z".into(), &failing, now),
    ];
    order(&mut targets);
    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["z-failing", "m-never", "a-ok"]);
    let failure = targets[0].last_failure.as_ref().expect("a failure");
    assert_eq!(failure.status, 502);
    assert_eq!(failure.reason, "the exporter refused the connection");
    assert_eq!((targets[0].scrapes_5m, targets[0].failures_5m), (2, 1));
    assert!(targets[1].last_scrape.is_none());
}

#[test]
fn ten_thousand_targets_cost_a_bounded_record_each() {
    use crate::metrics::scrape_log::ScrapeLog;
    let now = SystemTime::now();
    let fleet: Vec<TargetMetrics> = (0..10_000)
        .map(|i| TargetMetrics::new(&format!("t-{i}")))
        .collect();
    for (i, metrics) in fleet.iter().enumerate() {
        let failed = i % 10 == 0;
        let status = if failed { 502 } else { 200 };
        for _ in 0..3 {
            metrics.record(end(status, failed.then_some(16)), None, true);
        }
    }
    let mut targets: Vec<TargetStatus> = fleet
        .iter()
        .enumerate()
        .map(|(i, m)| TargetStatus::of(&format!("t-{i}"), "config", String::new(), m, now))
        .collect();
    order(&mut targets);
    assert_eq!(
        targets
            .iter()
            .take_while(|t| t.state == TargetState::Failing)
            .count(),
        1_000
    );
    assert!(targets.iter().all(|t| t.scrapes_5m == 3));
    // One fixed-size record per scraped target, however many scrapes: under 2 MiB for all.
    assert!(10_000 * std::mem::size_of::<ScrapeLog>() < 2 << 20);
}

#[test]
fn resident_memory_is_read() {
    assert!(resident_memory().is_some_and(|bytes| bytes > 1 << 20));
}
