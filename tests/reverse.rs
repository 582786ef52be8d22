//! Reverse mode against the built binary: PushProx clients (tests/common/pushprox.rs, written
//! from PushProx's client) poll the poll port, and scrapes of their names come to the proxy
//! port as Prometheus sends them with `proxy_url`.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::pki::Pki;
use common::prometheus::Prometheus;
use common::pushprox::{ClientTls, Options, PushProxClient};
use common::upstream::Exporter;
use common::{
    exporter_page, free_port, raw_exchange, raw_status, require_tool, start_node_exporter,
    wait_for_port, Helper, Tunnel,
};

/// A tunnel in reverse mode only (no SERVER_IP), with `env`; its poll port's address.
fn reverse_tunnel(env: &[(&str, &str)]) -> (Tunnel, SocketAddr) {
    let poll_port = free_port();
    let port = poll_port.to_string();
    let mut all = vec![("POLL_PORT", port.as_str())];
    all.extend_from_slice(env);
    let tunnel = Tunnel::start_without_exporter(&all, &[]);
    (tunnel, SocketAddr::from(([127, 0, 0, 1], poll_port)))
}

/// A scrape as Prometheus sends it with `proxy_url`: absolute-form, `Host` the target.
fn scrape(tunnel: &Tunnel, target: &str, timeout_secs: f64, limit: Duration) -> Vec<u8> {
    let request = format!(
        "GET http://{target}/metrics HTTP/1.1\r\nHost: {target}\r\nUser-Agent: Prometheus/3.0\r\nAccept: text/plain\r\nAccept-Encoding: gzip\r\nX-Prometheus-Scrape-Timeout-Seconds: {timeout_secs}\r\nConnection: close\r\n\r\n"
    );
    raw_exchange(tunnel.proxy_port, request.as_bytes(), limit)
}

/// The body of a raw answer.
fn body(answer: &[u8]) -> &[u8] {
    let at = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(answer.len(), |i| i + 4);
    &answer[at..]
}

/// Waits until `/clients` on the poll port lists `names` exactly.
fn wait_registered(poll: SocketAddr, names: &[&str]) {
    let expected: Vec<serde_json::Value> = names
        .iter()
        .map(|n| serde_json::json!({"targets": [n], "labels": null}))
        .collect();
    let start = Instant::now();
    loop {
        let answer = common::get(&format!("http://{poll}/clients"));
        let listed: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        if answer.status == 200 && listed == serde_json::Value::Array(expected.clone()) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "/clients is {} {}, not {expected:?}",
            answer.status,
            answer.body_string()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_polling_client_is_scraped_through_the_proxy_port() {
    let page = exporter_page(20_000);
    let exporter = Exporter::start(page.clone());
    let (tunnel, poll) = reverse_tunnel(&[]);
    let client = PushProxClient::start(Options::new("node-a", poll));
    wait_registered(poll, &["node-a"]);

    let target = format!("node-a:{}", exporter.port);
    let answer = scrape(&tunnel, &target, 10.0, Duration::from_secs(10));
    assert_eq!(
        raw_status(&answer),
        Some(200),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(body(&answer), page.as_slice());
    let head = String::from_utf8_lossy(&answer[..answer.len() - page.len()]).to_ascii_lowercase();
    assert!(
        !head.contains("\r\nid:"),
        "the Id header went to Prometheus:\n{head}"
    );
    assert!(!head.contains("x-prometheus-scrape-timeout"), "{head}");

    // The exporter saw Prometheus' request, with a timeout a little under Prometheus' own.
    let seen = exporter.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/metrics");
    assert_eq!(seen[0].header("accept"), Some("text/plain"));
    let timeout: f64 = seen[0]
        .header("x-prometheus-scrape-timeout-seconds")
        .and_then(|v| v.parse().ok())
        .expect("the client got a timeout");
    assert!((8.0..10.0).contains(&timeout), "{timeout}");

    // Counted under its name; listed on /targets beside configured targets, saying so.
    let m = tunnel.metrics_after(1);
    assert_eq!(
        m.value("proxy_total_requests", &[("target", "node-a")]),
        1.0
    );
    assert_eq!(
        m.value(
            "proxy_response_status_total",
            &[("target", "node-a"), ("status", "200")]
        ),
        1.0
    );
    assert_eq!(m.value("proxy_poll_clients", &[]), 1.0);
    assert_eq!(
        m.value("proxy_pushes_total", &[("outcome", "delivered")]),
        1.0
    );
    let sd: serde_json::Value =
        serde_json::from_slice(&common::get(&tunnel.admin_url("/targets")).body).unwrap();
    assert_eq!(
        sd,
        serde_json::json!([{"targets": ["node-a"], "labels": {"__meta_prometheus_tunnel_source": "poll"}}])
    );
    // And on the status page, with its scrape.
    let status: serde_json::Value =
        serde_json::from_slice(&common::get(&tunnel.admin_url("/status")).body).unwrap();
    let listed = &status["targets"][0];
    assert_eq!(listed["name"], "node-a", "{status}");
    assert_eq!(listed["source"], "poll");
    assert_eq!(listed["state"], "ok");
    assert_eq!(listed["lastScrape"]["status"], 200);
    assert_eq!(listed["lastScrape"]["bytes"], page.len());
    assert!(
        client
            .counts()
            .poll_errors
            .load(std::sync::atomic::Ordering::SeqCst)
            == 0
    );
}

#[test]
fn an_unknown_name_is_refused_at_once() {
    let (tunnel, _poll) = reverse_tunnel(&[]);
    let started = Instant::now();
    let answer = scrape(&tunnel, "nobody:9100", 10.0, Duration::from_secs(5));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(raw_status(&answer), Some(503));
    let text = String::from_utf8_lossy(body(&answer)).into_owned();
    assert!(
        text.contains("no client is registered as \"nobody\""),
        "{text}"
    );
    let m = tunnel.metrics_after(1);
    assert_eq!(
        m.value(
            "proxy_response_status_total",
            &[("target", ""), ("status", "503")]
        ),
        1.0
    );
}

#[test]
fn a_client_killed_mid_scrape_fails_its_scrape_at_once() {
    let exporter = Exporter::start(exporter_page(1000));
    let (tunnel, poll) = reverse_tunnel(&[]);
    let mut client = PushProxClient::start(Options::new("node-a", poll));
    wait_registered(poll, &["node-a"]);
    client.hold_pushes();
    let target = format!("node-a:{}", exporter.port);
    let port = tunnel.proxy_port;
    let scraper = std::thread::spawn(move || {
        let started = Instant::now();
        let request = format!(
            "GET http://{target}/metrics HTTP/1.1\r\nHost: {target}\r\nX-Prometheus-Scrape-Timeout-Seconds: 20\r\nConnection: close\r\n\r\n"
        );
        let answer = raw_exchange(port, request.as_bytes(), Duration::from_secs(25));
        (answer, started.elapsed())
    });
    // It took the scrape and polls again; the exporter answered it; then it dies.
    client.wait_for(
        Duration::from_secs(10),
        "a scrape done and a new poll",
        |c| {
            c.scrapes.load(std::sync::atomic::Ordering::SeqCst) == 1
                && c.polls.load(std::sync::atomic::Ordering::SeqCst) >= 2
        },
    );
    std::thread::sleep(Duration::from_millis(100));
    client.kill();
    let (answer, took) = scraper.join().unwrap();
    assert_eq!(
        raw_status(&answer),
        Some(502),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        String::from_utf8_lossy(body(&answer)).contains("went away"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        took < Duration::from_secs(5),
        "the scrape waited {took:?} for a dead client"
    );
    let m = tunnel.metrics_after(1);
    assert_eq!(
        m.value(
            "proxy_poll_clients_dropped_total",
            &[("reason", "poll_closed")]
        ),
        1.0
    );
    assert_eq!(m.value("proxy_poll_clients", &[]), 0.0);
    assert_eq!(
        m.value(
            "proxy_upstream_errors_total",
            &[("target", "node-a"), ("kind", "reset")]
        ),
        1.0
    );
}

#[test]
fn late_and_unknown_pushes_are_refused_and_counted() {
    let exporter = Exporter::start(exporter_page(1000));
    let (tunnel, poll) = reverse_tunnel(&[]);
    let mut options = Options::new("node-a", poll);
    options.push_delay = Duration::from_millis(2500);
    let client = PushProxClient::start(options);
    wait_registered(poll, &["node-a"]);
    let target = format!("node-a:{}", exporter.port);
    let started = Instant::now();
    let answer = scrape(&tunnel, &target, 1.0, Duration::from_secs(5));
    assert_eq!(
        raw_status(&answer),
        Some(504),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(String::from_utf8_lossy(body(&answer)).contains("did not push"));
    assert!(started.elapsed() < Duration::from_secs(2));
    client.wait_for(Duration::from_secs(5), "the late push", |c| {
        c.pushes.load(std::sync::atomic::Ordering::SeqCst) == 1
    });
    assert_eq!(*client.counts().push_statuses.lock().unwrap(), [410]);

    let push = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nId: 00000000-0000-4000-8000-000000000000\r\n\r\nok";
    let request = [
        format!(
            "POST /push HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            push.len()
        )
        .into_bytes(),
        push.to_vec(),
    ]
    .concat();
    let answer = raw_exchange(poll.port(), &request, Duration::from_secs(3));
    assert_eq!(raw_status(&answer), Some(404));
    let m = tunnel.metrics();
    assert_eq!(
        m.value("proxy_pushes_total", &[("outcome", "expired")]),
        1.0
    );
    assert_eq!(
        m.value("proxy_pushes_total", &[("outcome", "unknown_id")]),
        1.0
    );
    assert_eq!(
        m.value(
            "proxy_upstream_errors_total",
            &[("target", "node-a"), ("kind", "timeout")]
        ),
        1.0
    );
}

#[test]
fn two_clients_claiming_one_name() {
    // Without certificates: each new poll supersedes the other's, and the tunnel says so.
    let (tunnel, poll) = reverse_tunnel(&[]);
    let first = PushProxClient::start(Options::new("node-a", poll));
    let second = PushProxClient::start(Options::new("node-a", poll));
    let start = Instant::now();
    while !tunnel.log().contains("two or more clients poll as node-a") {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no warning:\n{}",
            tunnel.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        tunnel
            .metrics()
            .value("proxy_polls_total", &[("outcome", "superseded")])
            >= 1.0
    );
    drop((first, second));

    // With names bound to certificates, a client cannot poll or push as another.
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path());
    let (a_cert, a_key) = pki.client_named("node-a");
    let (b_cert, b_key) = pki.client_named("node-b");
    let exporter = Exporter::start(exporter_page(500));
    let (server_crt, server_key, client_ca) = (
        pki.path("server.crt"),
        pki.path("server.key"),
        pki.path("client-ca.crt"),
    );
    let (tunnel, poll) = reverse_tunnel(&[
        ("POLL_TLS_CERT_FILE", &server_crt),
        ("POLL_TLS_KEY_FILE", &server_key),
        ("POLL_TLS_CLIENT_CA_FILE", &client_ca),
        ("POLL_BIND_NAMES", "true"),
    ]);
    let ca = pki.path("ca.crt");
    let mut options = Options::new("node-a", poll);
    options.tls = Some(ClientTls::new(&ca, Some((&a_cert, &a_key))));
    let honest = PushProxClient::start(options.clone());
    let mut impostor_options = options.clone();
    impostor_options.tls = Some(ClientTls::new(&ca, Some((&b_cert, &b_key))));
    let impostor = PushProxClient::start(impostor_options);
    impostor.wait_for(Duration::from_secs(10), "refused polls", |c| {
        c.poll_errors.load(std::sync::atomic::Ordering::SeqCst) >= 1
    });
    honest.hold_pushes();
    let target = format!("node-a:{}", exporter.port);
    let port = tunnel.proxy_port;
    let scraper = std::thread::spawn(move || {
        let request = format!("GET http://{target}/metrics HTTP/1.1\r\nHost: {target}\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\nConnection: close\r\n\r\n");
        raw_exchange(port, request.as_bytes(), Duration::from_secs(12))
    });
    // The impostor learns the scrape's id (here from the exporter) and pushes for it.
    let start = Instant::now();
    let id = loop {
        if let Some(id) = exporter
            .seen()
            .first()
            .and_then(|s| s.header("id").map(str::to_string))
        {
            break id;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no scrape reached the exporter"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let push = format!("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nId: {id}\r\n\r\nforge");
    let forged = impostor_push(&poll, &ca, &b_cert, &b_key, push.as_bytes());
    assert_eq!(forged, 403);
    honest.release_pushes();
    let answer = scraper.join().unwrap();
    assert_eq!(raw_status(&answer), Some(200));
    assert!(!body(&answer).starts_with(b"forge"));
    let m = tunnel.metrics();
    assert!(m.value("proxy_polls_total", &[("outcome", "wrong_certificate")]) >= 1.0);
    assert_eq!(
        m.value("proxy_pushes_total", &[("outcome", "wrong_certificate")]),
        1.0
    );
    assert_eq!(
        m.value("proxy_pushes_total", &[("outcome", "delivered")]),
        1.0
    );
}

/// A push over TLS with a client certificate; the tunnel's status.
fn impostor_push(poll: &SocketAddr, ca: &str, cert: &str, key: &str, push: &[u8]) -> u16 {
    use std::io::{BufReader, Write};
    let tls = ClientTls::new(ca, Some((cert, key)));
    let tcp = std::net::TcpStream::connect(poll).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(tls.config, name).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    let head = format!(
        "POST /push HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        push.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(push).unwrap();
    let mut reader = BufReader::new(stream);
    common::pushprox::read_response(&mut reader, false)
        .unwrap()
        .status
}

#[test]
fn idle_polls_survive_a_load_balancer_that_cuts_idle_connections() {
    let haproxy = require_tool("haproxy", "haproxy");
    let exporter = Exporter::start(exporter_page(1000));
    for (keepalive, survives) in [("1s", true), ("0", false)] {
        let (tunnel, poll) = reverse_tunnel(&[("POLL_KEEPALIVE", keepalive)]);
        // HAProxy in TCP mode closes a connection idle for 3 s, as an ALB does after 60 s.
        let lb_port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("haproxy.cfg");
        std::fs::write(
            &config,
            format!(
                "global\n  maxconn 100\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 3s\n  timeout server 3s\nlisten poll\n  bind 127.0.0.1:{lb_port}\n  server tunnel {poll}\n"
            ),
        )
        .unwrap();
        let _lb = Helper(
            Command::new(&haproxy)
                .args(["-db", "-f"])
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start haproxy"),
        );
        wait_for_port(lb_port, Duration::from_secs(10));
        let client = PushProxClient::start(Options::new(
            "node-a",
            SocketAddr::from(([127, 0, 0, 1], lb_port)),
        ));
        wait_registered(poll, &["node-a"]);
        std::thread::sleep(Duration::from_secs(8));
        let errors = client
            .counts()
            .poll_errors
            .load(std::sync::atomic::Ordering::SeqCst);
        let keepalives = client
            .counts()
            .keepalives
            .load(std::sync::atomic::Ordering::SeqCst);
        if survives {
            assert_eq!(
                errors, 0,
                "the load balancer cut a poll despite POLL_KEEPALIVE"
            );
            assert!(keepalives >= 5, "{keepalives} keep-alive answers in 8 s");
            // And a scrape now is answered at once.
            let started = Instant::now();
            let answer = scrape(
                &tunnel,
                &format!("node-a:{}", exporter.port),
                5.0,
                Duration::from_secs(6),
            );
            assert_eq!(raw_status(&answer), Some(200));
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{:?}",
                started.elapsed()
            );
            let m = tunnel.metrics();
            assert!(m.value("proxy_polls_total", &[("outcome", "keepalive")]) >= 5.0);
            assert!(m.value("proxy_pushes_total", &[("outcome", "keepalive")]) >= 5.0);
        } else {
            // Without it, PushProx's behaviour: the idle poll is cut, the client backs off.
            assert!(errors >= 1, "the load balancer did not cut the idle poll");
            assert!(
                tunnel.metrics().value(
                    "proxy_poll_clients_dropped_total",
                    &[("reason", "poll_closed")]
                ) >= 1.0
            );
        }
    }
}

#[test]
fn limits_refuse_clearly() {
    // A push over POLL_MAX_PUSH_SIZE: 413 to the client, 502 to Prometheus, with the reason.
    let exporter = Exporter::start(exporter_page(20_000));
    let (tunnel, poll) =
        reverse_tunnel(&[("POLL_MAX_PUSH_SIZE", "4KiB"), ("POLL_MAX_CLIENTS", "1")]);
    let client = PushProxClient::start(Options::new("node-a", poll));
    wait_registered(poll, &["node-a"]);
    let answer = scrape(
        &tunnel,
        &format!("node-a:{}", exporter.port),
        5.0,
        Duration::from_secs(6),
    );
    assert_eq!(raw_status(&answer), Some(502));
    assert!(String::from_utf8_lossy(body(&answer)).contains("POLL_MAX_PUSH_SIZE"));
    client.wait_for(Duration::from_secs(5), "the push's answer", |c| {
        !c.push_statuses.lock().unwrap().is_empty()
    });
    assert_eq!(*client.counts().push_statuses.lock().unwrap(), [413]);
    // One name more than POLL_MAX_CLIENTS: refused, the first keeps its place.
    let second = PushProxClient::start(Options::new("node-b", poll));
    second.wait_for(Duration::from_secs(5), "a refused poll", |c| {
        c.poll_errors.load(std::sync::atomic::Ordering::SeqCst) >= 1
    });
    wait_registered(poll, &["node-a"]);
    let m = tunnel.metrics();
    assert!(m.value("proxy_polls_total", &[("outcome", "full")]) >= 1.0);
    assert_eq!(
        m.value("proxy_pushes_total", &[("outcome", "too_large")]),
        1.0
    );
}

#[test]
fn a_configured_target_keeps_its_name() {
    let exporter = Exporter::start(b"configured 1\n".to_vec());
    let dir = tempfile::tempdir().unwrap();
    let conf = common::write_file(
        dir.path(),
        "t.yaml",
        &format!(
            "tunnel:\n  targets:\n  - name: node-a\n    address: 127.0.0.1:{}\n",
            exporter.port
        ),
    );
    let poll_port = free_port().to_string();
    let tunnel = Tunnel::start_without_exporter(
        &[("POLL_PORT", &poll_port)],
        &["-c", conf.to_str().unwrap()],
    );
    let poll = SocketAddr::from(([127, 0, 0, 1], poll_port.parse().unwrap()));
    let client = PushProxClient::start(Options::new("node-a", poll));
    client.wait_for(Duration::from_secs(5), "a refused poll", |c| {
        c.poll_errors.load(std::sync::atomic::Ordering::SeqCst) >= 1
    });
    assert!(tunnel
        .log()
        .contains("refused a poll as node-a: a configured target has that name"));
    // The configured target answers both ways: by ?target= and by absolute form.
    assert_eq!(
        common::get(&tunnel.url("/metrics?target=node-a")).body,
        b"configured 1\n"
    );
    let answer = scrape(&tunnel, "node-a:9100", 5.0, Duration::from_secs(5));
    assert_eq!(raw_status(&answer), Some(200));
    assert_eq!(body(&answer), b"configured 1\n");
}

#[test]
fn prometheus_scrapes_a_polling_node_exporter_with_proxy_url() {
    let (_node, node_port) = start_node_exporter();
    let (tunnel, poll) = reverse_tunnel(&[]);
    let _client = PushProxClient::start(Options::new("node-a", poll));
    wait_registered(poll, &["node-a"]);

    let dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start(
        dir.path(),
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n\
             - job_name: via-tunnel\n  proxy_url: http://127.0.0.1:{}\n  static_configs:\n  - targets: ['node-a:{node_port}']\n\
             - job_name: direct\n  static_configs:\n  - targets: ['127.0.0.1:{node_port}']\n",
            tunnel.proxy_port
        ),
    );
    prom.wait_same_node_series("via-tunnel", "direct", Duration::from_secs(45), || {
        tunnel.log()
    });
}

#[test]
fn a_client_side_failure_reaches_prometheus_as_the_client_pushed_it() {
    // The client cannot reach its exporter: it pushes `HTTP/0.0 500` with its error as a body
    // that runs to the end of the push, which Prometheus gets whole, chunked.
    let (tunnel, poll) = reverse_tunnel(&[]);
    let _client = PushProxClient::start(Options::new("node-a", poll));
    wait_registered(poll, &["node-a"]);
    let closed = common::closed_port();
    let answer = scrape(
        &tunnel,
        &format!("node-a:{closed}"),
        5.0,
        Duration::from_secs(6),
    );
    assert_eq!(
        raw_status(&answer),
        Some(500),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let text = String::from_utf8_lossy(&answer).into_owned();
    assert!(
        text.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{text}"
    );
    assert!(text.contains("failed to scrape http://node-a:"), "{text}");
    let m = tunnel.metrics_after(1);
    assert_eq!(
        m.value(
            "proxy_response_status_total",
            &[("target", "node-a"), ("status", "500")]
        ),
        1.0
    );
    assert_eq!(m.value("proxy_upstream_up", &[("target", "node-a")]), 0.0);
}

#[test]
fn a_prometheus_that_hangs_up_after_the_whole_answer_is_counted_200() {
    // It knows the length, reads that much and closes, maybe before the push's end is seen:
    // that is a served scrape, not a client gone (499).
    let exporter = Exporter::start(exporter_page(20_000));
    let (tunnel, poll) = reverse_tunnel(&[]);
    let _client = PushProxClient::start(Options::new("node-a", poll));
    wait_registered(poll, &["node-a"]);
    let target = format!("node-a:{}", exporter.port);
    let request = format!(
        "GET http://{target}/metrics HTTP/1.1\r\nHost: {target}\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n"
    );
    common::hang_up_in_parallel(tunnel.proxy_port, request.as_bytes(), 4, 50);
    let m = tunnel.metrics_after(200);
    assert_eq!(
        m.value(
            "proxy_response_status_total",
            &[("target", "node-a"), ("status", "200")]
        ),
        200.0
    );
}
