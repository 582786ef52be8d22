//! End to end: a real Prometheus scrapes a real node_exporter through the tunnel, and the
//! tunnel's own metrics, every second; the test reads Prometheus' HTTP API.

mod common;

use std::time::{Duration, Instant};

use common::prometheus::Prometheus;
use common::{start_node_exporter, Tunnel};

#[test]
fn prometheus_scrapes_node_exporter_through_the_tunnel() {
    let (_node, node_port) = start_node_exporter();

    let tunnel = Tunnel::start(node_port, &[]);

    let dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start(
        dir.path(),
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n\
             - job_name: node\n  static_configs:\n  - targets: ['127.0.0.1:{}']\n\
             - job_name: tunnel\n  static_configs:\n  - targets: ['127.0.0.1:{}']\n",
            tunnel.proxy_port, tunnel.metrics_port
        ),
    );

    // Wait for both jobs up and enough samples to see proxy_total_requests rise.
    let start = Instant::now();
    let limit = Duration::from_secs(45);
    let mut first_total = None;
    loop {
        let node_up = prom.scalar("up{job=\"node\"}");
        let tunnel_up = prom.scalar("up{job=\"tunnel\"}");
        let total = prom.scalar("proxy_total_requests{job=\"tunnel\"}");
        if node_up == Some(1.0) && tunnel_up == Some(1.0) {
            match (first_total, total) {
                (None, Some(t)) => first_total = Some(t),
                (Some(first), Some(t)) if t >= first + 3.0 => break,
                _ => {}
            }
        }
        assert!(
            start.elapsed() < limit,
            "not there within {limit:?}: node up {node_up:?}, tunnel up {tunnel_up:?}, \
             proxy_total_requests {total:?}\nprometheus log:\n{}\ntunnel log:\n{}",
            prom.log(),
            tunnel.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let node_series = prom
        .scalar("count({job=\"node\",__name__=~\"node_.+\"})")
        .expect("a count of node_* series");
    assert!(
        node_series >= 200.0,
        "only {node_series} node_* series came through"
    );

    let errors = prom
        .scalar("sum(proxy_response_status_total{job=\"tunnel\",status!=\"200\"}) or vector(0)");
    assert_eq!(
        errors,
        Some(0.0),
        "the tunnel answered errors to Prometheus"
    );
}
