//! A real Prometheus (Debian's `prometheus`) for the end-to-end tests: started with a scrape
//! configuration on a free port, queried through its HTTP API.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, require_tool, Helper};

/// A running Prometheus, stopped when dropped.
pub struct Prometheus {
    _process: Helper,
    pub port: u16,
    log: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus in `dir` with `config` (a prometheus.yml) and waits until it is ready.
    pub fn start(dir: &Path, config: &str) -> Prometheus {
        let binary = require_tool("prometheus", "prometheus");
        let port = free_port();
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let log = dir.join("prometheus.log");
        let process = Helper(
            Command::new(binary)
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(File::create(&log).expect("prometheus log"))
                .spawn()
                .expect("start prometheus"),
        );
        let prometheus = Prometheus {
            _process: process,
            port,
            log,
        };
        // It listens before its storage is up and answers 503 until then.
        let started = Instant::now();
        let ready = format!("http://127.0.0.1:{port}/-/ready");
        while ureq::get(&ready).call().is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "prometheus was not ready within 30 s; its log:\n{}",
                prometheus.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        prometheus
    }

    /// What Prometheus logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs an instant query and returns the `data.result` array (empty if Prometheus cannot
    /// answer yet).
    pub fn query(&self, expr: &str) -> Vec<serde_json::Value> {
        let url = format!("http://127.0.0.1:{}/api/v1/query", self.port);
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
    pub fn scalar(&self, expr: &str) -> Option<f64> {
        match self.query(expr).as_slice() {
            [one] => one["value"][1].as_str().and_then(|v| v.parse().ok()),
            _ => None,
        }
    }

    /// Waits until job `via` is up and has as many `node_*` series as job `direct` (at least
    /// 200, a real node_exporter's), or panics after `limit` with `context()` (a log).
    pub fn wait_same_node_series(
        &self,
        via: &str,
        direct: &str,
        limit: Duration,
        context: impl Fn() -> String,
    ) {
        let start = Instant::now();
        loop {
            let up_via = self.scalar(&format!("up{{job=\"{via}\"}}"));
            let up_direct = self.scalar(&format!("up{{job=\"{direct}\"}}"));
            let series_via =
                self.scalar(&format!("count({{job=\"{via}\",__name__=~\"node_.+\"}})"));
            let series_direct = self.scalar(&format!(
                "count({{job=\"{direct}\",__name__=~\"node_.+\"}})"
            ));
            if up_via == Some(1.0)
                && up_direct == Some(1.0)
                && series_via.is_some()
                && series_via == series_direct
            {
                assert!(series_via >= Some(200.0), "{series_via:?} node_* series");
                return;
            }
            assert!(
                start.elapsed() < limit,
                "up {up_via:?} via {via}, {up_direct:?} direct; series {series_via:?} vs {series_direct:?}\nprometheus:\n{}\n{}",
                self.log(),
                context()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}
