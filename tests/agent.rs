//! Agent mode against the built binary on both sides: `prometheus-tunnel agent` dials the
//! tunnel's agent port with a client certificate (made by `openssl`), and scrapes of the names
//! it announces come to the proxy port as Prometheus sends them. Real peers throughout: a
//! `prometheus-node-exporter`, a real Prometheus, `tinyproxy` and `microsocks` on the agent's
//! way out, and HAProxy in TCP mode standing in for the Service in front of three replicas.

mod common;

use std::fs::File;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pki::Pki;
use common::prometheus::Prometheus;
use common::proxies::{microsocks, tinyproxy};
use common::upstream::Exporter;
use common::{
    base_command, exporter_page, free_port, get, require_tool, start_node_exporter, wait_for_port,
    write_file, Helper, Metrics, Tunnel,
};

/// A tunnel with an agent port (mutual TLS from `pki`), no configured exporter, and `env`;
/// the agent port.
fn agent_tunnel(pki: &Pki, env: &[(&str, &str)]) -> (Tunnel, u16) {
    let agent_port = free_port();
    let port = agent_port.to_string();
    let (cert, key, ca) = (
        pki.path("server.crt"),
        pki.path("server.key"),
        pki.path("client-ca.crt"),
    );
    let mut all = vec![
        ("AGENT_PORT", port.as_str()),
        ("AGENT_TLS_CERT_FILE", cert.as_str()),
        ("AGENT_TLS_KEY_FILE", key.as_str()),
        ("AGENT_TLS_CLIENT_CA_FILE", ca.as_str()),
    ];
    all.extend_from_slice(env);
    let tunnel = Tunnel::start_without_exporter(&all, &[]);
    (tunnel, agent_port)
}

/// A running `prometheus-tunnel agent`, killed when dropped.
struct Agent {
    child: Child,
    conf: PathBuf,
    log: PathBuf,
}

impl Agent {
    /// Agent `site-a` (trusted) dialling the agent port `agent_port` on loopback, serving
    /// `targets`.
    fn site_a(dir: &Path, pki: &Pki, agent_port: u16, targets: &str) -> Agent {
        let address = format!("127.0.0.1:{agent_port}");
        Agent::start(dir, pki, "site-a", "client-ca", &address, targets, &[])
    }

    /// Starts agent `name` (its certificate signed by `ca`) dialling `address`, serving the
    /// exporters of `targets` (the YAML list of `tunnel.targets`), with `env`.
    fn start(
        dir: &Path,
        pki: &Pki,
        name: &str,
        ca: &str,
        address: &str,
        targets: &str,
        env: &[(&str, &str)],
    ) -> Agent {
        let (cert, key) = pki.client_signed(name, ca);
        let conf = write_file(
            dir,
            &format!("agent-{name}.yaml"),
            &agent_conf(pki, &cert, &key, address, targets),
        );
        let log = dir.join(format!("agent-{name}.log"));
        let mut cmd = base_command();
        cmd.arg("agent")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("agent log"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start the agent");
        Agent { child, conf, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.signal_cont();
        self.kill();
    }
}

impl Agent {
    /// Resumes it, in case a test stopped it.
    fn signal_cont(&self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

/// An agent's conf file.
fn agent_conf(pki: &Pki, cert: &str, key: &str, address: &str, targets: &str) -> String {
    format!(
        "tunnel:\n  tunnel_address: \"{address}\"\n  tunnel_ca_file: {}\n  tunnel_server_name: localhost\n  tunnel_client_cert_file: {cert}\n  tunnel_client_key_file: {key}\n  targets:\n{targets}",
        pki.path("ca.crt")
    )
}

/// One target of an agent's conf file.
fn target(name: &str, port: u16) -> String {
    format!("    - name: {name}\n      address: 127.0.0.1:{port}\n      labels: {{site: lab}}\n")
}

/// The names `/targets` of the tunnel whose metrics port is `metrics_port` lists.
fn listed(metrics_port: u16) -> Vec<String> {
    let answer = get(&format!("http://127.0.0.1:{metrics_port}/targets"));
    let groups: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    let mut names: Vec<String> = groups
        .as_array()
        .map(|groups| {
            groups
                .iter()
                .filter_map(|g| g["labels"]["__param_target"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Waits until `/targets` on `metrics_port` lists `names` exactly.
fn wait_listed(metrics_port: u16, names: &[&str], limit: Duration, agent: Option<&Agent>) {
    let start = Instant::now();
    loop {
        let now = listed(metrics_port);
        if now == names {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "/targets lists {now:?}, not {names:?}, after {limit:?}; agent log:\n{}",
            agent.map(Agent::log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// GET `?target=name` through the proxy port `port`: status and body.
fn scrape(port: u16, name: &str) -> (u16, Vec<u8>) {
    let answer = get(&format!("http://127.0.0.1:{port}/metrics?target={name}"));
    (answer.status, answer.body)
}

/// A tunnel with agent `site-a` connected, serving `names`, all on one exporter of a small
/// page.
struct Fixture {
    dir: tempfile::TempDir,
    pki: Pki,
    exporter: Exporter,
    tunnel: Tunnel,
    agent_port: u16,
    agent: Agent,
}

impl Fixture {
    fn start(names: &[&str]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::create(dir.path());
        let exporter = Exporter::start(exporter_page(1000));
        let (tunnel, agent_port) = agent_tunnel(&pki, &[]);
        let targets: String = names.iter().map(|n| target(n, exporter.port)).collect();
        let agent = Agent::site_a(dir.path(), &pki, agent_port, &targets);
        wait_listed(
            tunnel.metrics_port,
            names,
            Duration::from_secs(10),
            Some(&agent),
        );
        Fixture {
            dir,
            pki,
            exporter,
            tunnel,
            agent_port,
            agent,
        }
    }
}

#[test]
fn prometheus_scrapes_node_exporter_through_an_agent() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path());
    let (_node, node_port) = start_node_exporter();
    let (tunnel, agent_port) = agent_tunnel(&pki, &[]);
    let agent = Agent::site_a(dir.path(), &pki, agent_port, &target("node-a", node_port));
    wait_listed(
        tunnel.metrics_port,
        &["node-a"],
        Duration::from_secs(10),
        Some(&agent),
    );

    // /targets names the agent, and the labels it announced.
    let groups: serde_json::Value =
        serde_json::from_slice(&get(&tunnel.admin_url("/targets")).body).unwrap();
    let labels = &groups[0]["labels"];
    assert_eq!(labels["__meta_prometheus_tunnel_agent"], "site-a");
    assert_eq!(labels["site"], "lab");
    assert_eq!(labels["__meta_prometheus_tunnel_source"], "agent");

    let prom_dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start(
        prom_dir.path(),
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n\
             - job_name: via-agent\n  http_sd_configs:\n  - url: http://127.0.0.1:{}/targets\n    refresh_interval: 1s\n\
             - job_name: direct\n  static_configs:\n  - targets: ['127.0.0.1:{node_port}']\n",
            tunnel.metrics_port
        ),
    );
    prom.wait_same_node_series("via-agent", "direct", Duration::from_secs(30), || {
        agent.log()
    });
    let m = tunnel.metrics();
    assert_eq!(m.value("proxy_agents_connected", &[]), 1.0);
    assert!(
        m.value(
            "proxy_response_status_total",
            &[("target", "node-a"), ("status", "200")]
        ) >= 1.0
    );
}

#[test]
fn an_agent_behind_connect_and_socks5_proxies_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path());
    let page = exporter_page(20_000);
    let exporter = Exporter::start(page.clone());
    let (tunnel, agent_port) = agent_tunnel(&pki, &[]);
    let (tiny, tiny_port) = tinyproxy(dir.path(), None);
    let (socks, socks_port) = microsocks(None);
    for (name, mut proxy, url) in [
        ("via-connect", tiny, format!("http://127.0.0.1:{tiny_port}")),
        (
            "via-socks",
            socks,
            format!("socks5://127.0.0.1:{socks_port}"),
        ),
    ] {
        let agent = Agent::start(
            dir.path(),
            &pki,
            name,
            "client-ca",
            // A name only the proxy resolves for socks5h would be the air-gapped case; the
            // tunnel's own address keeps the test on loopback.
            &format!("localhost:{agent_port}"),
            &target(name, exporter.port),
            &[("TUNNEL_PROXY", url.as_str())],
        );
        wait_listed(
            tunnel.metrics_port,
            &[name],
            Duration::from_secs(10),
            Some(&agent),
        );
        let (status, body) = scrape(tunnel.proxy_port, name);
        assert_eq!(status, 200, "{}", agent.log());
        assert_eq!(body, page);
        // The field naming the target is for the agent link only, not for the exporter.
        let seen = exporter.seen();
        let last = seen.last().expect("the exporter was scraped");
        assert_eq!(
            last.header("prometheus-tunnel-target"),
            None,
            "{:?}",
            last.headers
        );
        assert_eq!(
            last.header("host"),
            Some(format!("127.0.0.1:{}", exporter.port).as_str())
        );
        // The connection runs through the proxy: stopping it ends the agent's connection.
        proxy.stop();
        wait_listed(
            tunnel.metrics_port,
            &[],
            Duration::from_secs(15),
            Some(&agent),
        );
        let (status, body) = scrape(tunnel.proxy_port, name);
        assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
        drop(agent);
    }
}

#[test]
fn an_agent_without_a_trusted_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path());
    let exporter = Exporter::start(exporter_page(1000));
    let (tunnel, agent_port) = agent_tunnel(&pki, &[]);
    // Signed by a CA the agent port does not trust.
    let agent = Agent::start(
        dir.path(),
        &pki,
        "impostor",
        "other-ca",
        &format!("127.0.0.1:{agent_port}"),
        &target("stolen", exporter.port),
        &[],
    );
    let start = Instant::now();
    while !agent.log().contains("cannot reach the tunnel") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the agent did not report its refusal:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(listed(tunnel.metrics_port), Vec::<String>::new());
    let (status, _) = scrape(tunnel.proxy_port, "stolen");
    assert_eq!(status, 404);

    // No certificate at all: curl speaking HTTP/2 over TLS is refused at the handshake.
    let curl = require_tool("curl", "curl");
    let out = Command::new(curl)
        .args([
            "-sS",
            "--http2",
            "--cacert",
            &pki.path("ca.crt"),
            "--max-time",
            "5",
        ])
        .arg(format!("https://localhost:{agent_port}/"))
        .output()
        .expect("run curl");
    assert!(
        !out.status.success(),
        "a client without a certificate got through: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        tunnel.metrics().value("proxy_agents_connected", &[]),
        0.0,
        "an agent without a trusted certificate was registered"
    );
}

#[test]
fn an_agent_that_goes_away_is_answered_503_at_once_and_comes_back() {
    let Fixture {
        dir,
        pki,
        exporter,
        tunnel,
        agent_port,
        mut agent,
    } = Fixture::start(&["node-a"]);
    assert_eq!(scrape(tunnel.proxy_port, "node-a").0, 200);

    agent.kill();
    wait_listed(tunnel.metrics_port, &[], Duration::from_secs(5), None);
    let started = Instant::now();
    let (status, body) = scrape(tunnel.proxy_port, "node-a");
    let body = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("site-a") && body.contains("not connected"),
        "{body}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    // Counted just after the answer went out: the 200 before, and this 503.
    let m = tunnel.metrics_after(2);
    assert_eq!(m.value("proxy_agents_connected", &[]), 0.0);
    assert_eq!(m.value("proxy_agent_disconnects_total", &[]), 1.0);
    assert_eq!(
        m.value(
            "proxy_response_status_total",
            &[("target", "node-a"), ("status", "503")]
        ),
        1.0
    );

    let agent = Agent::site_a(
        dir.path(),
        &pki,
        agent_port,
        &target("node-a", exporter.port),
    );
    wait_listed(
        tunnel.metrics_port,
        &["node-a"],
        Duration::from_secs(10),
        Some(&agent),
    );
    assert_eq!(scrape(tunnel.proxy_port, "node-a").0, 200);
    assert_eq!(
        tunnel.metrics().value("proxy_agent_reconnects_total", &[]),
        1.0
    );
}

#[test]
fn a_silent_agent_is_noticed_by_pings() {
    // Every field bound: one left out would be dropped (its exporter stopped) at once.
    let Fixture {
        dir: _dir,
        pki: _pki,
        exporter: _exporter,
        tunnel,
        agent_port: _,
        agent,
    } = Fixture::start(&["node-a"]);
    // Stopped, its socket stays open and says nothing: only the pings can tell.
    agent.signal("STOP");
    let started = Instant::now();
    wait_listed(tunnel.metrics_port, &[], Duration::from_secs(20), None);
    let noticed = started.elapsed();
    assert!(
        noticed >= Duration::from_secs(2),
        "noticed in {noticed:?}: not by pings"
    );
    assert_eq!(scrape(tunnel.proxy_port, "node-a").0, 503);
    agent.signal("CONT");
    wait_listed(
        tunnel.metrics_port,
        &["node-a"],
        Duration::from_secs(40),
        Some(&agent),
    );
    assert_eq!(scrape(tunnel.proxy_port, "node-a").0, 200);
}

#[test]
fn a_reloaded_agent_announces_its_new_exporters_at_once() {
    let Fixture {
        dir: _dir,
        pki: _pki,
        exporter,
        tunnel,
        agent_port: _,
        agent,
    } = Fixture::start(&["node-a"]);
    let conf = std::fs::read_to_string(&agent.conf).unwrap();
    std::fs::write(&agent.conf, conf + &target("node-b", exporter.port)).unwrap();
    // The conf file is checked once a second, the announcement answered when it changes.
    wait_listed(
        tunnel.metrics_port,
        &["node-a", "node-b"],
        Duration::from_secs(5),
        Some(&agent),
    );
    assert_eq!(scrape(tunnel.proxy_port, "node-b").0, 200);
}

#[test]
fn the_agent_limits_refuse_with_their_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path());
    let big = Exporter::start(exporter_page(20_000));
    let slow = Exporter::start(exporter_page(100));
    slow.set_delay(Duration::from_millis(1500));
    let (tunnel, agent_port) = agent_tunnel(
        &pki,
        &[
            ("AGENT_MAX_AGENTS", "1"),
            ("AGENT_MAX_STREAMS", "1"),
            ("AGENT_MAX_BODY_SIZE", "4KiB"),
        ],
    );
    let address = format!("127.0.0.1:{agent_port}");
    let targets = target("big", big.port) + &target("slow", slow.port);
    let agent = Agent::start(
        dir.path(),
        &pki,
        "site-a",
        "client-ca",
        &address,
        &targets,
        &[],
    );
    wait_listed(
        tunnel.metrics_port,
        &["big", "slow"],
        Duration::from_secs(10),
        Some(&agent),
    );

    // A second agent is one too many.
    let other = Agent::start(
        dir.path(),
        &pki,
        "site-b",
        "client-ca",
        &address,
        &target("other", big.port),
        &[],
    );
    let start = Instant::now();
    while tunnel.metrics().value(
        "proxy_agent_connections_total",
        &[("outcome", "too_many_agents")],
    ) < 1.0
    {
        assert!(start.elapsed() < Duration::from_secs(10), "{}", other.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(listed(tunnel.metrics_port), ["big", "slow"]);
    assert!(tunnel.log().contains("AGENT_MAX_AGENTS"));
    drop(other);

    // An answer over AGENT_MAX_BODY_SIZE is cut, and said so. Its header went out before its
    // size was known (it streams), so the client sees a body shorter than announced.
    let answer = common::raw_exchange(
        tunnel.proxy_port,
        b"GET /metrics?target=big HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    );
    assert_eq!(common::raw_status(&answer), Some(200));
    assert!(
        answer.len() < 20_000,
        "{} bytes passed a 4 KiB limit",
        answer.len()
    );
    assert!(tunnel
        .log_with("AGENT_MAX_BODY_SIZE")
        .contains("AGENT_MAX_BODY_SIZE"));
    assert_eq!(
        tunnel.metrics_after(1).value(
            "proxy_upstream_errors_total",
            &[("target", "big"), ("kind", "other")]
        ),
        1.0
    );

    // A second scrape while one is in flight is over AGENT_MAX_STREAMS.
    let port = tunnel.proxy_port;
    let first = std::thread::spawn(move || scrape(port, "slow").0);
    std::thread::sleep(Duration::from_millis(300));
    let (status, body) = scrape(tunnel.proxy_port, "slow");
    assert_eq!(status, 503);
    assert!(String::from_utf8_lossy(&body).contains("AGENT_MAX_STREAMS"));
    assert_eq!(first.join().unwrap(), 200);
}

/// One of several tunnel replicas on fixed ports, as a pod of a Deployment is.
struct Replica {
    child: Child,
    proxy_port: u16,
    metrics_port: u16,
    agent_port: u16,
    log: PathBuf,
}

impl Replica {
    /// Starts replica `id` on `ports` (proxy, metrics, agent) knowing `peers`; `None` when a
    /// port was taken (ports picked free may be taken by a test running in parallel).
    fn start(
        dir: &Path,
        pki: &Pki,
        id: &str,
        ports: (u16, u16, u16),
        peers: &str,
    ) -> Option<Replica> {
        let (proxy_port, metrics_port, agent_port) = ports;
        let log = dir.join(format!("{id}.log"));
        let mut cmd = base_command();
        cmd.env("LISTEN_ADDRESS", "127.0.0.1")
            .env("LISTEN_PORT", proxy_port.to_string())
            .env("METRICS_PORT", metrics_port.to_string())
            .env("AGENT_PORT", agent_port.to_string())
            .env("AGENT_TLS_CERT_FILE", pki.path("server.crt"))
            .env("AGENT_TLS_KEY_FILE", pki.path("server.key"))
            .env("AGENT_TLS_CLIENT_CA_FILE", pki.path("client-ca.crt"))
            .env("REPLICA_ID", id)
            .env("PEERS", peers)
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap());
        let child = cmd.spawn().expect("start a replica");
        let mut replica = Replica {
            child,
            proxy_port,
            metrics_port,
            agent_port,
            log,
        };
        // Listening means: past its port check (it logs "forwarding" after it), still running,
        // and its metrics port answering.
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = replica.child.try_wait() {
                let log = replica.log();
                assert!(
                    log.contains("cannot listen on"),
                    "replica {id} exited with {status}:\n{log}"
                );
                return None;
            }
            if replica.log().contains("forwarding ")
                && TcpStream::connect(("127.0.0.1", metrics_port)).is_ok()
            {
                return Some(replica);
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "replica {id} did not listen:\n{}",
                replica.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn metrics(&self) -> Metrics {
        Metrics::parse(
            &get(&format!("http://127.0.0.1:{}/metrics", self.metrics_port)).body_string(),
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `n` replicas that know each other through `PEERS`.
fn replicas(dir: &Path, pki: &Pki, n: usize) -> Vec<Replica> {
    for _ in 0..5 {
        let ports: Vec<(u16, u16, u16)> = (0..n)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let peers: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{}", p.1)).collect();
        let peers = peers.join(",");
        let started: Option<Vec<Replica>> = ports
            .iter()
            .enumerate()
            .map(|(i, p)| Replica::start(dir, pki, &format!("replica-{i}"), *p, &peers))
            .collect();
        if let Some(replicas) = started {
            return replicas;
        }
    }
    panic!("the replicas found their ports taken five times in a row");
}

/// HAProxy in TCP mode, round robin over `backends`, as a Kubernetes Service spreads
/// connections (and, as kube-proxy does once the endpoint is gone, not to a dead one); its
/// port.
fn service(dir: &Path, name: &str, backends: &[u16]) -> (Helper, u16) {
    let haproxy = require_tool("haproxy", "haproxy");
    let port = free_port();
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, b)| format!("  server r{i} 127.0.0.1:{b} check inter 500ms fall 1 rise 1\n"))
        .collect();
    let config = write_file(
        dir,
        &format!("haproxy-{name}.cfg"),
        &format!(
            "global\n  maxconn 500\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 1h\n  timeout server 1h\n  retries 3\n  option redispatch\nlisten {name}\n  bind 127.0.0.1:{port}\n  balance roundrobin\n{servers}"
        ),
    );
    let helper = Helper(
        Command::new(haproxy)
            .args(["-db", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy"),
    );
    wait_for_port(port, Duration::from_secs(10));
    (helper, port)
}

/// Waits until each replica of `replicas` (by index, `None` for a dead one) has `n` agents.
fn wait_connected(replicas: &[Replica], alive: &[usize], n: f64, agent: &Agent) {
    let start = Instant::now();
    loop {
        let counts: Vec<f64> = alive
            .iter()
            .map(|i| replicas[*i].metrics().value("proxy_agents_connected", &[]))
            .collect();
        if counts.iter().all(|c| *c == n) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "agents connected per replica: {counts:?}; agent log:\n{}\nreplica 0:\n{}",
            agent.log(),
            replicas[0].log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_agent_behind_one_service_holds_every_replica_and_survives_losing_one() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path());
    let page = exporter_page(5000);
    let exporter = Exporter::start(page.clone());
    let mut replicas = replicas(dir.path(), &pki, 3);
    // One Service in front of the agent ports, one in front of the proxy ports.
    let agent_ports: Vec<u16> = replicas.iter().map(|r| r.agent_port).collect();
    let (_agent_lb, agent_lb) = service(dir.path(), "agents", &agent_ports);
    let proxy_ports: Vec<u16> = replicas.iter().map(|r| r.proxy_port).collect();
    let (_proxy_lb, proxy_lb) = service(dir.path(), "scrapes", &proxy_ports);
    let agent = Agent::start(
        dir.path(),
        &pki,
        "site-a",
        "client-ca",
        &format!("127.0.0.1:{agent_lb}"),
        &target("node-a", exporter.port),
        &[],
    );
    wait_connected(&replicas, &[0, 1, 2], 1.0, &agent);
    // Every replica lists the name, with the agent and where it was found.
    for r in &replicas {
        assert_eq!(listed(r.metrics_port), ["node-a"]);
    }

    // Scrapes through the Service from 4 threads: 1,000 with every replica up, then replica 1
    // is killed, and they go on for 5 s more.
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (done, stop, page) = (Arc::clone(&done), Arc::clone(&stop), page.clone());
            std::thread::spawn(move || {
                let mut results = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    // A connection cut as the replica goes is a failed scrape, not a panic.
                    let url = format!("http://127.0.0.1:{proxy_lb}/metrics?target=node-a");
                    let ok = match ureq::get(&url).call() {
                        Ok(resp) => {
                            let mut body = Vec::new();
                            std::io::Read::read_to_end(&mut resp.into_reader(), &mut body).is_ok()
                                && body == page
                        }
                        Err(_) => false,
                    };
                    results.push((Instant::now(), ok));
                    done.fetch_add(1, Ordering::Relaxed);
                }
                results
            })
        })
        .collect();
    while done.load(Ordering::Relaxed) < 1000 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let served_before: Vec<f64> = replicas
        .iter()
        .map(|r| {
            r.metrics().value(
                "proxy_response_status_total",
                &[("target", "node-a"), ("status", "200")],
            )
        })
        .collect();
    let killed = Instant::now();
    replicas[1].kill();
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    let results: Vec<(Instant, bool)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let settled = killed + Duration::from_secs(3);
    let before: Vec<bool> = results
        .iter()
        .filter(|(at, _)| *at < killed)
        .map(|r| r.1)
        .collect();
    let later: Vec<bool> = results
        .iter()
        .filter(|(at, _)| *at > settled)
        .map(|r| r.1)
        .collect();
    let failed = |v: &[bool]| v.iter().filter(|ok| !**ok).count();
    assert!(results.len() >= 2000, "{} scrapes", results.len());
    assert_eq!(
        failed(&before),
        0,
        "of {} scrapes with every replica up",
        before.len()
    );
    assert!(
        later.len() >= 200,
        "{} scrapes 3 s after the kill",
        later.len()
    );
    assert_eq!(
        failed(&later),
        0,
        "of {} scrapes 3 s after a replica went",
        later.len()
    );
    assert!(
        served_before.iter().all(|n| *n >= 150.0),
        "each replica should have served part of the first 1,000: {served_before:?}"
    );

    // The agent goes: its name is answered 503 at once, and leaves /targets, everywhere.
    drop(agent);
    for i in [0, 2] {
        wait_listed(replicas[i].metrics_port, &[], Duration::from_secs(10), None);
        let started = Instant::now();
        let (status, body) = scrape(replicas[i].proxy_port, "node-a");
        assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}

#[test]
fn a_replica_without_the_agent_forwards_its_scrapes_once_to_the_one_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path());
    let page = exporter_page(3000);
    let exporter = Exporter::start(page.clone());
    let replicas = replicas(dir.path(), &pki, 2);
    // The agent reaches replica 0 only (its dial to the other lands on 0 again and is closed).
    let agent = Agent::start(
        dir.path(),
        &pki,
        "site-a",
        "client-ca",
        &format!("127.0.0.1:{}", replicas[0].agent_port),
        &target("node-a", exporter.port),
        &[],
    );
    wait_connected(&replicas, &[0], 1.0, &agent);
    // Replica 1 learns of it from replica 0 within a refresh.
    wait_listed(
        replicas[1].metrics_port,
        &["node-a"],
        Duration::from_secs(10),
        Some(&agent),
    );
    let groups: serde_json::Value = serde_json::from_slice(
        &get(&format!(
            "http://127.0.0.1:{}/targets",
            replicas[1].metrics_port
        ))
        .body,
    )
    .unwrap();
    assert_eq!(
        groups[0]["labels"]["__meta_prometheus_tunnel_replica"],
        "replica-0"
    );

    let (status, body) = scrape(replicas[1].proxy_port, "node-a");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, page);
    assert_eq!(
        replicas[1].metrics().value("proxy_agents_connected", &[]),
        0.0
    );

    // A scrape that was forwarded already is never forwarded again.
    let answer = common::request(
        &common::agent(),
        "GET",
        &format!(
            "http://127.0.0.1:{}/metrics?target=node-a",
            replicas[1].proxy_port
        ),
        &[("Prometheus-Tunnel-Forwarded", "replica-0")],
    );
    assert_eq!(answer.status, 404, "{}", answer.body_string());
    assert!(TcpStream::connect(("127.0.0.1", replicas[1].proxy_port)).is_ok());
}

#[test]
fn an_exporter_failure_at_the_agent_is_answered_and_counted_as_the_tunnels_own() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path());
    let slow = Exporter::start(exporter_page(100));
    slow.set_delay(Duration::from_secs(5));
    let closed = common::closed_port();
    let (tunnel, agent_port) = agent_tunnel(&pki, &[]);
    let agent = Agent::site_a(
        dir.path(),
        &pki,
        agent_port,
        &(target("down", closed) + &target("slow", slow.port)),
    );
    wait_listed(
        tunnel.metrics_port,
        &["down", "slow"],
        Duration::from_secs(10),
        Some(&agent),
    );

    let (status, body) = scrape(tunnel.proxy_port, "down");
    assert_eq!(status, 502);
    assert!(
        String::from_utf8_lossy(&body).contains("the exporter refused the connection"),
        "{}",
        String::from_utf8_lossy(&body)
    );

    // Prometheus' scrape timeout reaches the agent: the slow exporter is given up at 1 s.
    let started = Instant::now();
    let answer = common::request(
        &common::agent(),
        "GET",
        &tunnel.url("/metrics?target=slow"),
        &[("X-Prometheus-Scrape-Timeout-Seconds", "1")],
    );
    assert_eq!(answer.status, 504, "{}", answer.body_string());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    let m = tunnel.metrics_after(2);
    assert_eq!(
        m.value(
            "proxy_upstream_errors_total",
            &[("target", "down"), ("kind", "refused")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "proxy_upstream_errors_total",
            &[("target", "slow"), ("kind", "timeout")]
        ),
        1.0
    );
    assert_eq!(m.value("proxy_upstream_up", &[("target", "down")]), 0.0);

    // The status page lists the agent's exporters with their failures' reasons.
    let status: serde_json::Value =
        serde_json::from_slice(&common::get(&tunnel.admin_url("/status")).body).unwrap();
    let names: Vec<&str> = status["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["down", "slow"], "{status}");
    let down = &status["targets"][0];
    assert_eq!(down["source"], "agent");
    assert_eq!(down["state"], "failing");
    assert!(
        down["address"].as_str().unwrap().starts_with("agent "),
        "{down}"
    );
    assert_eq!(
        down["lastFailure"]["reason"],
        "the exporter refused the connection"
    );
    assert_eq!(status["targets"][1]["lastFailure"]["status"], 504);
}

#[test]
fn a_client_that_hangs_up_after_the_whole_answer_is_counted_200() {
    // It knows the length, reads that much and closes, maybe before the agent's stream has
    // said it ended: that is a served scrape, not a client gone (499).
    let Fixture {
        dir: _dir,
        pki: _pki,
        exporter: _exporter,
        tunnel,
        agent_port: _,
        agent: _agent,
    } = Fixture::start(&["node-a"]);
    let request = b"GET /metrics?target=node-a HTTP/1.1\r\nHost: t\r\n\r\n";
    common::hang_up_in_parallel(tunnel.proxy_port, request, 4, 100);
    let m = tunnel.metrics_after(400);
    assert_eq!(
        m.value(
            "proxy_response_status_total",
            &[("target", "node-a"), ("status", "200")]
        ),
        400.0
    );
    assert_eq!(
        m.get(
            "proxy_response_status_total",
            &[("target", "node-a"), ("status", "499")]
        ),
        None
    );
}

#[test]
fn thousands_of_abandoned_scrapes_leave_the_agent_connected() {
    // Each scrape hangs up after the status line, mid-body: its stream is reset while the
    // agent's frames for it are still on the way. h2 holds that against a connection for its
    // whole life (1,024 by default): past it, the agent's connection and every scrape on it
    // went down.
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path());
    let exporter = Exporter::start(exporter_page(2_000_000));
    let (tunnel, agent_port) = agent_tunnel(&pki, &[]);
    let agent = Agent::site_a(dir.path(), &pki, agent_port, &target("big", exporter.port));
    wait_listed(
        tunnel.metrics_port,
        &["big"],
        Duration::from_secs(10),
        Some(&agent),
    );
    let port = tunnel.proxy_port;
    let workers: Vec<_> = (0..16)
        .map(|_| {
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                for _ in 0..100 {
                    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                    s.write_all(b"GET /metrics?target=big HTTP/1.1\r\nHost: t\r\n\r\n")
                        .unwrap();
                    let mut head = [0u8; 12];
                    let _ = s.read_exact(&mut head);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let (status, body) = scrape(tunnel.proxy_port, "big");
    assert_eq!(status, 200, "{}", agent.log());
    assert_eq!(body.len(), 2_000_000);
    let m = tunnel.metrics();
    assert_eq!(
        m.value("proxy_agent_disconnects_total", &[]),
        0.0,
        "the agent's connection went down:\n{}",
        tunnel.log()
    );
    assert!(
        m.value(
            "proxy_response_status_total",
            &[("target", "big"), ("status", "499")]
        ) > 1000.0
    );
}

#[test]
fn the_example_agent_conf_checks_out() {
    // Its certificate paths are a site's; the rest must hold as written.
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path());
    let (cert, key) = pki.client_named("site-1");
    let ca = pki.path("ca.crt");
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/agent.yaml");
    let out = base_command()
        .env("TUNNEL_CA_FILE", &ca)
        .env("TUNNEL_CLIENT_CERT_FILE", &cert)
        .env("TUNNEL_CLIENT_KEY_FILE", &key)
        .args(["agent", "-t", "-c", conf])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
