//! One tunnel for a fleet: targets by name, `/targets` for Prometheus' http_sd (fed to a real
//! Prometheus), reloads under load, and a 10,000-target conf within the memory bound.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::prometheus::Prometheus;
use common::upstream::Exporter;
use common::{agent, get, request, Tunnel};

/// A conf listing `targets` as (name, exporter port) pairs, with fast shutdown.
fn conf_text(targets: &[(&str, u16)]) -> String {
    let mut text = String::from("version: 1\ngrace_period_seconds: 1\ngraceful_shutdown_timeout_seconds: 1\ntunnel:\n  targets:\n");
    for (name, port) in targets {
        text.push_str(&format!(
            "  - name: {name}\n    address: 127.0.0.1:{port}\n    labels: {{env: test, team: t-{name}}}\n"
        ));
    }
    text
}

/// Replaces the conf the way an editor or a ConfigMap update does: a new file renamed over it.
fn rewrite(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn url(tunnel: &Tunnel, target: &str, rest: &str) -> String {
    tunnel.url(&format!("/metrics?target={target}{rest}"))
}

#[test]
fn three_exporters_by_name_and_unknown_names_404() {
    let pages: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            format!("node_page_of_exporter {i}\n")
                .repeat(2000)
                .into_bytes()
        })
        .collect();
    let exporters: Vec<Exporter> = pages.iter().map(|p| Exporter::start(p.clone())).collect();
    let dir = tempfile::tempdir().unwrap();
    let tunnel = start_abc(dir.path(), &exporters);

    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        let answer = get(&url(&tunnel, name, "&collect%5B%5D=cpu"));
        assert_eq!(answer.status, 200, "{name}");
        assert!(answer.body == pages[i], "{name}: body differs");
        let seen = exporters[i].seen();
        assert_eq!(seen.len(), 1, "{name}");
        assert_eq!(
            seen[0].target, "/metrics?collect%5B%5D=cpu",
            "{name}: target= not removed"
        );
        let host = format!("127.0.0.1:{}", exporters[i].port);
        assert_eq!(seen[0].header("host"), Some(host.as_str()));
    }
    // The parameter anywhere in the query; nothing else left.
    assert_eq!(get(&tunnel.url("/metrics?x=1&target=b")).status, 200);
    assert_eq!(exporters[1].seen()[1].target, "/metrics?x=1");
    assert_eq!(get(&url(&tunnel, "a", "")).status, 200);
    assert_eq!(exporters[0].seen()[1].target, "/metrics");

    let unknown = get(&url(&tunnel, "nope", ""));
    assert_eq!(unknown.status, 404);
    // Two targets and no default: a request must name one.
    assert_eq!(get(&tunnel.url("/metrics")).status, 400);
    let total_seen: usize = exporters.iter().map(|e| e.seen().len()).sum();
    assert_eq!(total_seen, 5, "a refused request was forwarded");

    let m = tunnel.metrics_after(7);
    assert_eq!(m.value("proxy_total_requests", &[("target", "a")]), 2.0);
    assert_eq!(m.value("proxy_total_requests", &[("target", "b")]), 2.0);
    assert_eq!(
        m.value(
            "proxy_response_status_total",
            &[("target", "c"), ("status", "200")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "proxy_response_status_total",
            &[("target", ""), ("status", "404")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "proxy_response_status_total",
            &[("target", ""), ("status", "400")]
        ),
        1.0
    );
    assert_eq!(
        m.value("proxy_request_duration_seconds_count", &[("target", "a")]),
        2.0
    );
    assert_eq!(m.value("proxy_upstream_up", &[("target", "a")]), 1.0);
}

/// A tunnel whose conf (in `dir`) lists the three `exporters` as targets a, b and c.
fn start_abc(dir: &Path, exporters: &[Exporter]) -> Tunnel {
    let conf = dir.join("tunnel.yaml");
    let targets = [
        ("a", exporters[0].port),
        ("b", exporters[1].port),
        ("c", exporters[2].port),
    ];
    std::fs::write(&conf, conf_text(&targets)).unwrap();
    // Without SERVER_IP, the conf's targets are the fleet.
    start_without_server_ip(&conf)
}

/// The tunnel with the conf at `conf` and no single exporter.
fn start_without_server_ip(conf: &Path) -> Tunnel {
    Tunnel::start_without_exporter(&[], &["-c", conf.to_str().unwrap()])
}

#[test]
fn targets_endpoint_feeds_a_real_prometheus() {
    let exporters: Vec<Exporter> = (0..3)
        .map(|i| Exporter::start(format!("fleet_metric{{n=\"{i}\"}} {i}\n").into_bytes()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let tunnel = start_abc(dir.path(), &exporters);

    let sd: serde_json::Value =
        serde_json::from_slice(&get(&tunnel.admin_url("/targets")).body).expect("http_sd JSON");
    let groups = sd.as_array().expect("a list of groups");
    assert_eq!(groups.len(), 3);
    let proxy = format!("127.0.0.1:{}", tunnel.proxy_port);
    for (group, name) in groups.iter().zip(["a", "b", "c"]) {
        assert_eq!(group["targets"], serde_json::json!([proxy]));
        assert_eq!(group["labels"]["__param_target"], name);
        assert_eq!(group["labels"]["env"], "test");
        assert_eq!(group["labels"]["team"], format!("t-{name}"));
    }

    let prom = Prometheus::start(
        dir.path(),
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n\
             - job_name: fleet\n  http_sd_configs:\n  - url: http://127.0.0.1:{}/targets\n    refresh_interval: 2s\n\
             \x20 relabel_configs:\n  - source_labels: [__param_target]\n    target_label: instance\n",
            tunnel.metrics_port
        ),
    );
    let query = |expr: &str| prom.query(expr);
    let start = Instant::now();
    loop {
        let up = query("up{job=\"fleet\"} == 1");
        let mut instances: Vec<String> = up
            .iter()
            .filter_map(|r| r["metric"]["instance"].as_str().map(str::to_string))
            .collect();
        instances.sort();
        let values = query("fleet_metric");
        if instances == ["a", "b", "c"] && values.len() == 3 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(45),
            "Prometheus did not scrape every target through the tunnel: up {instances:?}\nprometheus log:\n{}",
            prom.log()
        );
        thread::sleep(Duration::from_millis(500));
    }
    for e in &exporters {
        assert!(!e.seen().is_empty());
        assert!(e.seen().iter().all(|s| !s.target.contains("target=")));
    }
}

#[test]
fn reload_adds_and_removes_targets_under_load_without_a_failed_scrape() {
    let a = Exporter::start(b"page_a 1\n".repeat(500));
    let b = Exporter::start(b"page_b 1\n".repeat(500));
    let c = Exporter::start(b"page_c 1\n".repeat(500));
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("tunnel.yaml");
    std::fs::write(&conf, conf_text(&[("a", a.port), ("b", b.port)])).unwrap();
    let tunnel = start_without_server_ip(&conf);

    // Steady load on the target that stays.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            let u = url(&tunnel, "a", "");
            thread::spawn(move || {
                let client = agent();
                while !stop.load(Ordering::Relaxed) {
                    let answer = request(&client, "GET", &u, &[]);
                    if answer.status == 200 && answer.body.len() == 4500 {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));

    // Change the file: add c, remove b.
    rewrite(&conf, &conf_text(&[("a", a.port), ("c", c.port)]));
    let start = Instant::now();
    while get(&url(&tunnel, "c", "")).status != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "c was not added: {}",
            tunnel.log()
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(get(&url(&tunnel, "b", "")).status, 404, "b was not removed");
    let listed = get(&tunnel.admin_url("/targets")).body_string();
    assert!(
        listed.contains("\"c\"") && !listed.contains("\"b\""),
        "{listed}"
    );

    // A bad file is refused and the table in use stays.
    rewrite(
        &conf,
        "tunnel:\n  targets:\n  - {name: a, address: 127.0.0.1:99999}\n",
    );
    let log = tunnel.log_with("refused, keeping the 2 targets in use");
    assert!(
        log.contains("refused, keeping the 2 targets in use"),
        "{log}"
    );
    assert_eq!(get(&url(&tunnel, "c", "")).status, 200);

    // SIGHUP reloads too: back to a and b.
    std::fs::write(&conf, conf_text(&[("a", a.port), ("b", b.port)])).unwrap();
    tunnel.signal("HUP");
    let start = Instant::now();
    while get(&url(&tunnel, "b", "")).status != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "b was not added back: {}",
            tunnel.log()
        );
        thread::sleep(Duration::from_millis(100));
    }
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.join().unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(
        failed,
        0,
        "{failed} of {} scrapes of the steady target failed",
        ok + failed
    );
    assert!(ok > 100, "too little load: {ok}");
    assert!(
        tunnel.log().contains("reloaded the targets"),
        "{}",
        tunnel.log()
    );
    // The removed target's series went with it.
    let m = tunnel.metrics();
    assert!(
        m.get("proxy_total_requests", &[("target", "b")]).is_some(),
        "b is back"
    );
    assert!(
        m.get("proxy_total_requests", &[("target", "c")]).is_none(),
        "c's series stayed"
    );
}

#[test]
fn ten_thousand_targets_start_and_serve_within_64_mib() {
    let exporter = Exporter::start(b"node_x 1\n".repeat(100));
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("fleet.yaml");
    let names: Vec<String> = (0..10_000).map(|i| format!("vm-{i:05}")).collect();
    let targets: Vec<(&str, u16)> = names.iter().map(|n| (n.as_str(), exporter.port)).collect();
    std::fs::write(&conf, conf_text(&targets)).unwrap();

    let started = Instant::now();
    let tunnel = start_without_server_ip(&conf);
    let startup = started.elapsed();
    for name in ["vm-00000", "vm-05000", "vm-09999"] {
        assert_eq!(get(&url(&tunnel, name, "")).status, 200, "{name}");
    }
    let sd: serde_json::Value =
        serde_json::from_slice(&get(&tunnel.admin_url("/targets")).body).unwrap();
    assert_eq!(sd.as_array().map(Vec::len), Some(10_000));
    let status = std::fs::read_to_string(format!("/proc/{}/status", tunnel.pid())).unwrap();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    eprintln!("10,000 targets: listening after {startup:?}, RSS {rss_kib} KiB");
    assert!(rss_kib < 64 * 1024, "RSS {rss_kib} KiB with 10,000 targets");
}
