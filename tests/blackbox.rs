//! A real blackbox exporter behind the tunnel: it reads `?target=` itself, so a single-target
//! tunnel must pass the query untouched, and a multi-target tunnel must route by another
//! parameter (`TARGET_PARAM`). A real Prometheus probes through it as the blackbox exporter's
//! documentation configures it.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::prometheus::Prometheus;
use common::upstream::Exporter;
use common::{
    exporter_page, free_port, get, require_tool, wait_for_port, write_file, Helper, Tunnel,
};

/// A blackbox exporter on a free port with one module, `http_2xx`.
fn blackbox(dir: &std::path::Path) -> (Helper, u16) {
    let binary = require_tool(
        "prometheus-blackbox-exporter",
        "prometheus-blackbox-exporter",
    );
    let config = write_file(
        dir,
        "blackbox.yml",
        "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n",
    );
    let port = free_port();
    let helper = Helper(
        Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the blackbox exporter"),
    );
    wait_for_port(port, Duration::from_secs(10));
    (helper, port)
}

#[test]
fn a_single_target_tunnel_passes_the_probe_query_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (_blackbox, port) = blackbox(dir.path());
    let site = Exporter::start(b"a web site".to_vec());
    let tunnel = Tunnel::start(port, &[]);

    let up = format!("http://127.0.0.1:{}/", site.port);
    let probe = get(&tunnel.url(&format!("/probe?target={up}&module=http_2xx")));
    assert_eq!(probe.status, 200, "{}", probe.body_string());
    assert!(
        probe.body_string().contains("probe_success 1"),
        "{}",
        probe.body_string()
    );
    assert_eq!(
        site.seen().len(),
        1,
        "the blackbox exporter probed the site"
    );
    let down = format!("http://127.0.0.1:{}/", common::closed_port());
    let probe = get(&tunnel.url(&format!("/probe?target={down}&module=http_2xx")));
    assert!(probe.body_string().contains("probe_success 0"));

    // Prometheus probes through the tunnel with the blackbox exporter's own relabelling.
    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let prom = Prometheus::start(
        &prom_dir,
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n\
             - job_name: blackbox\n  metrics_path: /probe\n  params:\n    module: [http_2xx]\n\
             \x20 static_configs:\n  - targets: ['{up}', '{down}']\n\
             \x20 relabel_configs:\n\
             \x20 - source_labels: [__address__]\n    target_label: __param_target\n\
             \x20 - source_labels: [__param_target]\n    target_label: instance\n\
             \x20 - target_label: __address__\n    replacement: 127.0.0.1:{}\n",
            tunnel.proxy_port
        ),
    );
    let start = Instant::now();
    loop {
        let ok = prom.scalar(&format!("probe_success{{instance=\"{up}\"}}"));
        let failed = prom.scalar(&format!("probe_success{{instance=\"{down}\"}}"));
        if ok == Some(1.0) && failed == Some(0.0) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(45),
            "probe_success {ok:?} / {failed:?}\n{}",
            prom.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_multi_target_tunnel_routes_by_target_param_and_leaves_target_to_the_exporter() {
    let dir = tempfile::tempdir().unwrap();
    let (_blackbox, port) = blackbox(dir.path());
    let page = exporter_page(400);
    let node = Exporter::start(page.clone());
    let site = Exporter::start(b"a web site".to_vec());
    let conf = write_file(
        dir.path(),
        "tunnel.yaml",
        &format!(
            "tunnel:\n  target_param: exporter\n  targets:\n\
             \x20 - name: probes\n    address: 127.0.0.1:{port}\n\
             \x20 - name: node\n    address: 127.0.0.1:{}\n",
            node.port
        ),
    );
    let tunnel = Tunnel::start_without_exporter(&[], &["-c", conf.to_str().unwrap()]);
    let up = format!("http://127.0.0.1:{}/", site.port);
    let probe = get(&tunnel.url(&format!(
        "/probe?exporter=probes&target={up}&module=http_2xx"
    )));
    assert!(
        probe.body_string().contains("probe_success 1"),
        "{}",
        probe.body_string()
    );
    let scrape = get(&tunnel.url("/metrics?exporter=node&x=1"));
    assert!(scrape.body == page);
    assert_eq!(
        node.seen()[0].target,
        "/metrics?x=1",
        "only `exporter` is removed"
    );
    // `?target=` is the exporter's own here: it does not name a tunnel target.
    let answer = get(&tunnel.url("/metrics?target=node"));
    assert_eq!(answer.status, 400, "{}", answer.body_string());
    assert!(answer.body_string().contains("?exporter=NAME"));

    let targets: serde_json::Value =
        serde_json::from_slice(&get(&tunnel.admin_url("/targets")).body).unwrap();
    let names: Vec<&str> = targets
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["labels"]["__param_exporter"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["probes", "node"]);
    assert!(targets[0]["labels"].get("__param_target").is_none());
}
