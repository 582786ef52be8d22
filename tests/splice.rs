//! Large plain pages spliced from the exporter's socket to the client's (src/http1/splice.rs):
//! the bytes arrive exact, both connections carry the next scrape, and a client that hangs up
//! mid-splice is seen at once. An exporter that cuts or stalls a spliced body is tested beside
//! the copied one, in tests/faults.rs.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::pki::Pki;
use common::upstream::{Exporter, Fault};
use common::{agent, exporter_page, request, require_tool, Tunnel};

/// A page well above the least body that is spliced (256 KiB).
const LARGE: usize = 3_000_000;

/// The tunnel logs each splice at debug level, which is how these tests know the body did not
/// take the copying path.
const DEBUG: (&str, &str) = ("RUST_LOG", "info,prometheus_tunnel=debug");

const GET: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

#[test]
fn a_large_page_is_spliced_exactly_and_both_connections_carry_the_next_scrape() {
    let page = exporter_page(LARGE);
    let exporter = Exporter::start(page.clone());
    let tunnel = Tunnel::start(exporter.port, &[DEBUG]);
    let client = agent();
    for _ in 0..3 {
        let answer = request(&client, "GET", &tunnel.url("/metrics"), &[]);
        assert_eq!(answer.status, 200);
        assert!(answer.body == page, "body differs from the exporter's page");
    }
    let log = tunnel.log_with("spliced");
    assert_eq!(
        log.matches("spliced").count(),
        3,
        "each scrape spliced: {log}"
    );
    assert_eq!(
        exporter.connections(),
        1,
        "the exporter connection was kept"
    );
    let m = tunnel.metrics_after(3);
    assert_eq!(
        m.value("proxy_response_status_total", &[("status", "200")]),
        3.0
    );
    assert_eq!(
        m.value("proxy_response_bytes_total", &[]),
        (3 * LARGE) as f64,
        "every byte counted, spliced or not"
    );
    assert_eq!(
        m.value("proxy_open_connections", &[]),
        1.0,
        "the client's connection was kept"
    );
}

#[test]
fn a_client_that_hangs_up_mid_splice_is_counted_at_once_and_frees_the_exporter() {
    let exporter = Exporter::start(exporter_page(LARGE));
    exporter.set_fault(Fault::StallMidBody);
    let tunnel = Tunnel::start(exporter.port, &[DEBUG, ("UPSTREAM_TIMEOUT", "20s")]);
    let stream = TcpStream::connect(("127.0.0.1", tunnel.proxy_port)).expect("connect");
    (&stream).write_all(GET).expect("send");
    let mut reader = BufReader::new(&stream);
    let mut status = String::new();
    reader.read_line(&mut status).expect("status line");
    assert!(status.contains(" 200 "), "{status}");
    // The header and the first bytes came; the rest is spliced once the exporter sends it,
    // which it does not. The client leaves.
    drop(reader);
    let left = Instant::now();
    drop(stream);
    let m = tunnel.metrics_once(Duration::from_secs(5), |m| {
        m.value("proxy_total_requests", &[]) >= 1.0
    });
    assert!(
        left.elapsed() < Duration::from_secs(5),
        "counted only after {:?}",
        left.elapsed()
    );
    assert_eq!(
        m.value("proxy_response_status_total", &[("status", "499")]),
        1.0
    );
    assert_eq!(m.value("proxy_in_flight_requests", &[]), 0.0);
}

#[test]
fn a_client_that_stops_reading_mid_splice_is_cut_at_the_deadline() {
    // Far more than the sockets' buffers and the pipe hold, so the pipe fills and stays full:
    // the tunnel must then wait on the client, within the deadline, and say so.
    let exporter = Exporter::start(exporter_page(40_000_000));
    let tunnel = Tunnel::start(exporter.port, &[DEBUG, ("UPSTREAM_TIMEOUT", "2s")]);
    let stream = TcpStream::connect(("127.0.0.1", tunnel.proxy_port)).expect("connect");
    let asked = Instant::now();
    (&stream).write_all(GET).expect("send");
    let mut reader = BufReader::new(&stream);
    let mut status = String::new();
    reader.read_line(&mut status).expect("status line");
    assert!(status.contains(" 200 "), "{status}");
    // Reads nothing more, and stays connected.
    let m = tunnel.metrics_after(1);
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(10),
        "ended after {took:?}, the deadline being 2 s"
    );
    assert_eq!(
        m.value("proxy_response_status_total", &[("status", "499")]),
        1.0,
        "{}",
        tunnel.log()
    );
    assert_eq!(m.value("proxy_in_flight_requests", &[]), 0.0);
    let log = tunnel.log_with("took no bytes");
    assert!(log.contains("the client took no bytes"), "{log}");
    drop(reader);
}

#[test]
fn a_tls_client_gets_a_large_page_copied_whole() {
    // Encrypted in user space, the body cannot bypass the tunnel: it is copied, and the tunnel
    // asks only once per scrape whether it could splice.
    let curl = require_tool("curl", "curl");
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::create(dir.path());
    let page = exporter_page(LARGE);
    let exporter = Exporter::start(page.clone());
    let tunnel = Tunnel::start(
        exporter.port,
        &[
            DEBUG,
            ("LISTEN_TLS_CERT_FILE", &pki.path("server.crt")),
            ("LISTEN_TLS_KEY_FILE", &pki.path("server.key")),
        ],
    );
    let url = format!("https://localhost:{}/metrics", tunnel.proxy_port);
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    let out = Command::new(&curl)
        .args(["-sS", "--fail", "--resolve"])
        .arg(format!("localhost:{}:127.0.0.1", tunnel.proxy_port))
        .args(["--cacert", &pki.path("ca.crt")])
        .args(["-o", first.to_str().expect("path"), &url])
        .args(["-o", second.to_str().expect("path"), &url])
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        tunnel.log()
    );
    for body in [&first, &second] {
        assert!(
            std::fs::read(body).expect("body") == page,
            "body differs over TLS"
        );
    }
    assert_eq!(
        exporter.connections(),
        1,
        "the exporter connection was kept"
    );
    tunnel.metrics_after(2);
    assert!(!tunnel.log().contains("spliced"), "{}", tunnel.log());
}
