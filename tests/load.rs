//! Load: every request answered in full and counted exactly, and memory flat over a long run.
//! (Speed is measured by the benches, never asserted here.)

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use common::upstream::Exporter;
use common::{agent, exporter_page, request, Tunnel};

/// Sends `per_client` GETs from each of `clients` keep-alive clients; returns how many came
/// back other than a 200 with exactly `expected_len` bytes.
fn hammer(url: &str, clients: usize, per_client: usize, expected_len: usize) -> usize {
    let bad = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (url, bad) = (url.to_string(), Arc::clone(&bad));
            thread::spawn(move || {
                let client = agent();
                for _ in 0..per_client {
                    let answer = request(&client, "GET", &url, &[]);
                    if answer.status != 200 || answer.body.len() != expected_len {
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("client thread");
    }
    bad.load(Ordering::Relaxed)
}

/// Resident memory of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn twenty_thousand_requests_from_forty_clients_all_answered_and_counted() {
    let page = exporter_page(4096);
    let exporter = Exporter::start(page.clone());
    let tunnel = Tunnel::start(exporter.port, &[]);
    let bad = hammer(&tunnel.url("/metrics"), 40, 500, page.len());
    assert_eq!(bad, 0, "{bad} requests were not answered in full");
    let m = tunnel.metrics_after(20_000);
    assert_eq!(m.value("proxy_total_requests", &[]), 20_000.0);
    assert_eq!(
        m.value("proxy_response_status_total", &[("status", "200")]),
        20_000.0
    );
    assert_eq!(
        m.value("proxy_request_duration_seconds_count", &[]),
        20_000.0
    );
    assert_eq!(
        m.value("proxy_response_bytes_total", &[]),
        20_000.0 * 4096.0
    );
    assert_eq!(exporter.seen().len(), 20_000);
}

#[test]
fn memory_stays_flat_across_a_long_run() {
    let page = exporter_page(16 * 1024);
    let exporter = Exporter::start(page.clone());
    let tunnel = Tunnel::start(exporter.port, &[]);
    let url = tunnel.url("/metrics");
    assert_eq!(hammer(&url, 20, 500, page.len()), 0);
    let after_10k = rss_kib(tunnel.pid());
    for _ in 0..9 {
        assert_eq!(hammer(&url, 20, 500, page.len()), 0);
    }
    let after_100k = rss_kib(tunnel.pid());
    let m = tunnel.metrics_after(100_000);
    assert_eq!(m.value("proxy_total_requests", &[]), 100_000.0);
    let growth = after_100k as f64 / after_10k as f64;
    assert!(
        growth <= 1.10,
        "RSS grew from {after_10k} KiB after 10,000 requests to {after_100k} KiB after 100,000"
    );
    eprintln!("RSS after 10,000 requests: {after_10k} KiB; after 100,000: {after_100k} KiB");
}
