//! End to end: a real Prometheus scrapes a real node_exporter through the tunnel, and the
//! tunnel's own metrics, every second; the test reads Prometheus' HTTP API.

mod common;

use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, require_tool, wait_for_port, write_file, Tunnel};

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs an instant query and returns the `data.result` array; empty while Prometheus is not
/// ready to answer yet (it listens before its storage is up and answers 503 until then).
fn query(prom_port: u16, expr: &str) -> Vec<serde_json::Value> {
    let url = format!("http://127.0.0.1:{prom_port}/api/v1/query");
    let body = match ureq::get(&url).query("query", expr).call() {
        Ok(resp) => resp.into_string().expect("query body"),
        Err(ureq::Error::Status(503, _)) => return Vec::new(),
        Err(e) => panic!("{expr}: {e}"),
    };
    let json: serde_json::Value = serde_json::from_str(&body).expect("query JSON");
    json["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The single value of a vector query, if it has exactly one series.
fn scalar(prom_port: u16, expr: &str) -> Option<f64> {
    let result = query(prom_port, expr);
    match result.as_slice() {
        [one] => one["value"][1].as_str().and_then(|v| v.parse().ok()),
        _ => None,
    }
}

#[test]
fn prometheus_scrapes_node_exporter_through_the_tunnel() {
    let prometheus = require_tool("prometheus", "prometheus");
    let node_exporter = require_tool("prometheus-node-exporter", "prometheus-node-exporter");

    let node_port = free_port();
    let _node = Killed(
        Command::new(node_exporter)
            .arg(format!("--web.listen-address=127.0.0.1:{node_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node_exporter"),
    );
    wait_for_port(node_port, Duration::from_secs(10));

    let tunnel = Tunnel::start(node_port, &[]);

    let prom_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = write_file(
        dir.path(),
        "prometheus.yml",
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n\
             - job_name: node\n  static_configs:\n  - targets: ['127.0.0.1:{}']\n\
             - job_name: tunnel\n  static_configs:\n  - targets: ['127.0.0.1:{}']\n",
            tunnel.proxy_port, tunnel.metrics_port
        ),
    );
    let prom_log = dir.path().join("prometheus.log");
    let _prom = Killed(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(File::create(&prom_log).unwrap())
            .spawn()
            .expect("start prometheus"),
    );
    let started = Instant::now();
    let ready = format!("http://127.0.0.1:{prom_port}/-/ready");
    while ureq::get(&ready).call().is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "prometheus was not ready within 30 s; its log:\n{}",
            std::fs::read_to_string(&prom_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Wait for both jobs up and enough samples to see proxy_total_requests rise.
    let start = Instant::now();
    let limit = Duration::from_secs(45);
    let mut first_total = None;
    loop {
        let node_up = scalar(prom_port, "up{job=\"node\"}");
        let tunnel_up = scalar(prom_port, "up{job=\"tunnel\"}");
        let total = scalar(prom_port, "proxy_total_requests{job=\"tunnel\"}");
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
            std::fs::read_to_string(&prom_log).unwrap_or_default(),
            tunnel.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let node_series = scalar(prom_port, "count({job=\"node\",__name__=~\"node_.+\"})")
        .expect("a count of node_* series");
    assert!(
        node_series >= 200.0,
        "only {node_series} node_* series came through"
    );

    let errors = scalar(
        prom_port,
        "sum(proxy_response_status_total{job=\"tunnel\",status!=\"200\"}) or vector(0)",
    );
    assert_eq!(
        errors,
        Some(0.0),
        "the tunnel answered errors to Prometheus"
    );
}
