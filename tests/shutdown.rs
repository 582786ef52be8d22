//! SIGTERM lets in-flight scrapes finish, then the tunnel exits 0 well within Kubernetes' 30 s.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::upstream::Exporter;
use common::{exporter_page, get, Tunnel};

#[test]
fn sigterm_during_a_slow_scrape_completes_it_then_exits_0() {
    let page = exporter_page(20_000);
    let exporter = Exporter::start(page.clone());
    exporter.set_delay(Duration::from_secs(2));
    let mut tunnel = Tunnel::start(exporter.port, &[]);

    let url = tunnel.url("/metrics");
    let scrape = thread::spawn(move || get(&url));
    // Wait until the exporter holds the request, so the scrape is really in flight.
    let start = Instant::now();
    while exporter.seen().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "scrape never reached the exporter"
        );
        thread::sleep(Duration::from_millis(10));
    }
    tunnel.signal("TERM");

    let answer = scrape.join().expect("scrape thread");
    assert_eq!(answer.status, 200);
    assert!(answer.body == page, "scrape cut short by shutdown");

    let status = tunnel.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "log:\n{}", tunnel.log());
    assert!(
        tunnel.log().contains("SIGTERM received"),
        "{}",
        tunnel.log()
    );
}
