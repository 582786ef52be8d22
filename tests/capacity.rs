//! What silent connections cost, and what the tunnel does when there are more of them than its
//! memory or its open-file limit allows: RSS per idle connection and after they close, and
//! health checks and scrapes that keep being answered under `ulimit -n 256`.

mod common;

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::upstream::Exporter;
use common::{agent, exporter_page, request, require_tool, Tunnel};

/// The resident memory of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("the tunnel's status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// Waits up to 10 s for `proxy_open_connections` to be `count`.
fn wait_for_open_connections(tunnel: &Tunnel, count: usize) {
    let start = Instant::now();
    loop {
        let open = tunnel.metrics().value("proxy_open_connections", &[]);
        if open == count as f64 {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{open} connections open, not {count}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Up to `count` connections that send nothing.
fn silent(port: u16, count: usize) -> Vec<TcpStream> {
    (0..count)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect()
}

#[test]
fn a_silent_connection_costs_a_few_kib_and_gives_them_back() {
    let page = exporter_page(20_000);
    let exporter = Exporter::start(page);
    // Memory is measured on the build that ships.
    let tunnel = Tunnel::start_with_binary(
        &common::release_bin(),
        exporter.port,
        &[("HEADER_READ_TIMEOUT", "60s"), ("MAX_CONNECTIONS", "5000")],
    );
    let client = agent();
    for _ in 0..20 {
        assert_eq!(
            request(&client, "GET", &tunnel.url("/metrics"), &[]).status,
            200
        );
    }
    drop(client);
    wait_for_open_connections(&tunnel, 0);
    let before = rss_kib(tunnel.pid());
    let conns = silent(tunnel.proxy_port, 1000);
    assert_eq!(conns.len(), 1000);
    wait_for_open_connections(&tunnel, 1000);
    let with = rss_kib(tunnel.pid());
    let per_connection = (with.saturating_sub(before)) as f64 / 1000.0;
    assert!(
        per_connection <= 8.0,
        "{per_connection:.1} KiB per silent connection ({before} -> {with} KiB)"
    );
    drop(conns);
    wait_for_open_connections(&tunnel, 0);
    // The allocator returns freed pages after a delay of its own (mimalloc: 1 s); give it a
    // few seconds.
    let closed = Instant::now();
    let mut after = rss_kib(tunnel.pid());
    while after > before + 4 * 1024 && closed.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(200));
        after = rss_kib(tunnel.pid());
    }
    assert!(
        after <= before + 4 * 1024,
        "{after} KiB 5 s after the connections closed, from {before} KiB before"
    );
}

#[test]
fn a_low_open_file_limit_refuses_clients_first_and_keeps_health_checks_answered() {
    let prlimit = require_tool("prlimit", "util-linux");
    let page = exporter_page(5_000);
    let exporter = Exporter::start(page.clone());
    // The tunnel under `ulimit -n 256`, started through prlimit, MAX_CONNECTIONS unset.
    let dir = tempfile::tempdir().unwrap();
    let wrapper = common::write_file(
        dir.path(),
        "limited.sh",
        &format!(
            "#!/bin/sh\nexec {} --nofile=256:256 -- {} \"$@\"\n",
            prlimit.display(),
            common::bin().display()
        ),
    );
    Command::new("chmod")
        .arg("+x")
        .arg(&wrapper)
        .status()
        .unwrap();
    let tunnel = Tunnel::start_with_binary(&wrapper, exporter.port, &[]);

    let conns = silent(tunnel.proxy_port, 1000);
    std::thread::sleep(Duration::from_millis(500));
    let quick = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(3))
        .build();
    // The metrics port answers at once: its clients are not the ones refused.
    for _ in 0..5 {
        let started = Instant::now();
        let health = quick.get(&tunnel.admin_url("/healthz")).call();
        assert!(
            matches!(&health, Ok(r) if r.status() == 200),
            "/healthz: {health:?} after {:?}; the tunnel's log:\n{}",
            started.elapsed(),
            tunnel.log()
        );
    }
    // A scrape is answered at once, refused while the silent ones hold every slot.
    let scrape = quick.get(&tunnel.url("/metrics")).call();
    assert!(
        matches!(&scrape, Err(ureq::Error::Status(503, _))),
        "{scrape:?}"
    );
    // MAX_CONNECTIONS was derived from the limit, and said so.
    let log = tunnel.log();
    assert!(
        log.contains("MAX_CONNECTIONS not set: 21 client connections (open-file limit 256"),
        "{log}"
    );
    let m = tunnel.metrics();
    assert_eq!(m.value("proxy_open_connections", &[]), 21.0);
    assert!(m.value("process_open_fds", &[]) < 256.0);
    assert_eq!(m.value("process_max_fds", &[]), 256.0);
    assert!(
        !tunnel.log().contains("Too many open files"),
        "{}",
        tunnel.log()
    );

    drop(conns);
    std::thread::sleep(Duration::from_millis(500));
    let answer = request(&agent(), "GET", &tunnel.url("/metrics"), &[]);
    assert_eq!(answer.status, 200);
    assert!(answer.body == page);
}

#[test]
fn idle_exporter_connections_are_capped_over_all_exporters() {
    let exporter = Exporter::start(exporter_page(500));
    // Thirty targets, each its own pool of kept-alive connections, on one exporter.
    let dir = tempfile::tempdir().unwrap();
    let mut conf = String::from("tunnel:\n  targets:\n");
    for i in 0..30 {
        conf.push_str(&format!(
            "  - name: t{i}\n    address: 127.0.0.1:{}\n",
            exporter.port
        ));
    }
    let conf = common::write_file(dir.path(), "fleet.yaml", &conf);
    let tunnel = Tunnel::start_without_exporter(
        &[("MAX_CONNECTIONS", "10")],
        &["-c", conf.to_str().unwrap()],
    );
    let client = agent();
    for i in 0..30 {
        let answer = request(
            &client,
            "GET",
            &tunnel.url(&format!("/metrics?target=t{i}")),
            &[],
        );
        assert_eq!(answer.status, 200);
    }
    assert_eq!(exporter.connections(), 30, "one connection per target");
    // The tunnel keeps no more idle exporter connections than it may have clients.
    let start = Instant::now();
    while exporter.open_connections() > 10 && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(exporter.open_connections(), 10);
}
