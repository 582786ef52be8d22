//! The proxy port against a real exporter: bytes, paths, methods, failures and the metrics that
//! count them.

mod common;

use std::time::{Duration, Instant};

use common::upstream::Exporter;
use common::{agent, exporter_page, get, raw_exchange, raw_status, request, Tunnel};

#[test]
fn forwards_a_60k_page_byte_exact_with_path_query_and_host() {
    let page = exporter_page(60 * 1024);
    let exporter = Exporter::start(page.clone());
    let tunnel = Tunnel::start(exporter.port, &[]);

    let answer = get(&tunnel.url("/metrics?collect%5B%5D=cpu&x=a+b&x=2"));
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body.len(), page.len());
    assert!(answer.body == page, "body differs from the exporter's page");

    let seen = exporter.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].target, "/metrics?collect%5B%5D=cpu&x=a+b&x=2");
    let expected_host = format!("127.0.0.1:{}", exporter.port);
    assert_eq!(seen[0].header("host"), Some(expected_host.as_str()));
}

#[test]
fn head_is_forwarded_and_headers_pass_through() {
    let exporter = Exporter::start(exporter_page(1000));
    let tunnel = Tunnel::start(exporter.port, &[]);
    let client = agent();
    let answer = request(
        &client,
        "HEAD",
        &tunnel.url("/metrics"),
        &[
            ("Accept", "application/openmetrics-text"),
            ("Accept-Encoding", "gzip"),
        ],
    );
    assert_eq!(answer.status, 200);
    assert!(answer.body.is_empty());
    assert_eq!(answer.header("content-length"), Some("1000"));
    let seen = exporter.seen();
    assert_eq!(seen[0].method, "HEAD");
    assert_eq!(
        seen[0].header("accept"),
        Some("application/openmetrics-text")
    );
    assert_eq!(seen[0].header("accept-encoding"), Some("gzip"));
}

#[test]
fn hop_by_hop_headers_and_upgrades_stay_with_the_client() {
    let exporter = Exporter::start(exporter_page(1000));
    let tunnel = Tunnel::start(exporter.port, &[]);
    let request = "GET /metrics HTTP/1.1\r\nHost: tunnel\r\n\
        Connection: Upgrade, X-Client-Hop\r\nUpgrade: websocket\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
        X-Client-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n\
        TE: trailers\r\nAccept: text/plain\r\nX-Prometheus-Scrape-Timeout-Seconds: 5\r\n\r\n";
    let answer = raw_exchange(
        tunnel.proxy_port,
        request.as_bytes(),
        Duration::from_secs(1),
    );
    assert_eq!(
        raw_status(&answer),
        Some(200),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let seen = exporter.seen();
    assert_eq!(seen.len(), 1);
    for hop in [
        "connection",
        "upgrade",
        "x-client-hop",
        "keep-alive",
        "proxy-connection",
        "te",
    ] {
        assert_eq!(
            seen[0].header(hop),
            None,
            "{hop} reached the exporter: {:?}",
            seen[0].headers
        );
    }
    assert_eq!(seen[0].header("accept"), Some("text/plain"));
    assert_eq!(
        seen[0].header("x-prometheus-scrape-timeout-seconds"),
        Some("5")
    );
}

#[test]
fn a_request_with_a_body_is_refused_413_and_not_forwarded() {
    // No scrape has a body: a GET with one (allowed by HTTP, meaningless to an exporter) is
    // refused rather than forwarded on a second path.
    let page = exporter_page(2000);
    let exporter = Exporter::start(page.clone());
    let tunnel = Tunnel::start(exporter.port, &[]);
    for request in [
        &b"GET /metrics?x=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world"[..],
        b"GET /metrics HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ] {
        let answer = raw_exchange(tunnel.proxy_port, request, Duration::from_secs(5));
        let text = String::from_utf8_lossy(&answer);
        assert_eq!(raw_status(&answer), Some(413), "{text}");
        assert!(text.contains("a scrape is a GET or HEAD without a body"), "{text}");
        assert!(text.to_ascii_lowercase().contains("connection: close"), "{text}");
    }
    assert!(exporter.seen().is_empty(), "{:?}", exporter.seen());
    let m = tunnel.metrics_after(2);
    assert_eq!(
        m.value("proxy_response_status_total", &[("status", "413")]),
        2.0
    );
    // An empty body is no body.
    let empty =
        b"GET /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let answer = raw_exchange(tunnel.proxy_port, empty, Duration::from_secs(5));
    assert_eq!(raw_status(&answer), Some(200));
    assert!(answer.ends_with(&page));
}

#[test]
fn counts_every_request_exactly_once_and_reuses_exporter_connections() {
    const N: usize = 25;
    let exporter = Exporter::start(exporter_page(4096));
    let tunnel = Tunnel::start(exporter.port, &[]);
    let client = agent();
    for _ in 0..N {
        assert_eq!(
            request(&client, "GET", &tunnel.url("/metrics"), &[]).status,
            200
        );
    }
    let m = tunnel.metrics_after(N as u64);
    let n = N as f64;
    assert_eq!(m.value("proxy_total_requests", &[]), n);
    assert_eq!(
        m.value("proxy_response_status_total", &[("status", "200")]),
        n
    );
    assert_eq!(m.value("proxy_request_duration_seconds_count", &[]), n);
    assert_eq!(m.value("proxy_response_bytes_total", &[]), n * 4096.0);
    assert_eq!(m.value("proxy_in_flight_requests", &[]), 0.0);
    assert_eq!(exporter.seen().len(), N);
    // Sequential scrapes share one kept-alive exporter connection.
    assert_eq!(
        exporter.connections(),
        1,
        "exporter connections were not reused"
    );
}

#[test]
fn refused_exporter_is_502_and_counted() {
    let closed_port = common::closed_port();
    let tunnel = Tunnel::start(closed_port, &[]);
    let answer = get(&tunnel.url("/metrics"));
    assert_eq!(answer.status, 502);
    assert!(
        answer.body_string().contains("refused"),
        "{}",
        answer.body_string()
    );
    let m = tunnel.metrics_after(1);
    assert_eq!(m.value("proxy_total_requests", &[]), 1.0);
    assert_eq!(
        m.value("proxy_response_status_total", &[("status", "502")]),
        1.0
    );
    assert_eq!(m.value("proxy_request_duration_seconds_count", &[]), 1.0);
    assert_eq!(
        m.value("proxy_upstream_errors_total", &[("kind", "refused")]),
        1.0
    );
    let log = tunnel.log_with("ConnectRefused");
    assert!(
        log.contains("ConnectRefused"),
        "log does not say why: {log}"
    );
}

#[test]
fn slow_exporter_past_the_scrape_timeout_is_504_within_2s() {
    let exporter = Exporter::start(exporter_page(100));
    exporter.set_delay(Duration::from_secs(5));
    let tunnel = Tunnel::start(exporter.port, &[("UPSTREAM_TIMEOUT", "30s")]);
    let started = Instant::now();
    let answer = request(
        &agent(),
        "GET",
        &tunnel.url("/metrics"),
        &[("X-Prometheus-Scrape-Timeout-Seconds", "1")],
    );
    let took = started.elapsed();
    assert_eq!(answer.status, 504);
    assert!(
        took >= Duration::from_millis(900),
        "gave up early: {took:?}"
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let m = tunnel.metrics_after(1);
    assert_eq!(
        m.value("proxy_response_status_total", &[("status", "504")]),
        1.0
    );
    assert_eq!(
        m.value("proxy_upstream_errors_total", &[("kind", "timeout")]),
        1.0
    );
}

#[test]
fn upstream_timeout_applies_when_it_is_smaller_than_the_header() {
    let exporter = Exporter::start(exporter_page(100));
    exporter.set_delay(Duration::from_secs(5));
    let tunnel = Tunnel::start(exporter.port, &[("UPSTREAM_TIMEOUT", "500ms")]);
    let started = Instant::now();
    let answer = request(
        &agent(),
        "GET",
        &tunnel.url("/metrics"),
        &[("X-Prometheus-Scrape-Timeout-Seconds", "10")],
    );
    assert_eq!(answer.status, 504);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn other_methods_are_405_and_never_forwarded() {
    let exporter = Exporter::start(exporter_page(100));
    let tunnel = Tunnel::start(exporter.port, &[]);
    let client = agent();
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let answer = request(&client, method, &tunnel.url("/metrics"), &[]);
        assert_eq!(answer.status, 405, "{method}");
        assert_eq!(answer.header("allow"), Some("GET, HEAD"), "{method}");
    }
    assert!(
        exporter.seen().is_empty(),
        "exporter saw {:?}",
        exporter.seen()
    );
    let m = tunnel.metrics_after(5);
    assert_eq!(m.value("proxy_total_requests", &[]), 5.0);
    assert_eq!(
        m.value("proxy_response_status_total", &[("status", "405")]),
        5.0
    );
}

#[test]
fn admin_routes() {
    let exporter = Exporter::start(exporter_page(100));
    let tunnel = Tunnel::start(exporter.port, &[]);
    assert_eq!(get(&tunnel.admin_url("/healthz")).status, 200);
    assert_eq!(get(&tunnel.admin_url("/readyz")).status, 200);
    assert_eq!(get(&tunnel.admin_url("/nope")).status, 404);

    let version: serde_json::Value =
        serde_json::from_slice(&get(&tunnel.admin_url("/version")).body).expect("version JSON");
    for key in ["version", "gitCommit", "buildTime"] {
        let value = version[key].as_str().unwrap_or_default();
        assert!(!value.is_empty(), "/version lacks {key}: {version}");
    }

    let m = tunnel.metrics();
    assert_eq!(
        m.get(
            "prometheus_tunnel_build_info",
            &[("version", version["version"].as_str().unwrap())]
        ),
        Some(1.0)
    );
    // What every exporter shows about its process, read off /proc like Prometheus' own.
    let fd_limit = std::fs::read_to_string(format!("/proc/{}/limits", tunnel.pid())).unwrap();
    let soft_fds: f64 = fd_limit
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        .unwrap();
    assert_eq!(m.get("process_max_fds", &[]), Some(soft_fds));
    assert!(m.value("process_open_fds", &[]) >= 5.0);
    assert!(m.value("process_resident_memory_bytes", &[]) > 1_000_000.0);
    assert!(m.get("process_cpu_seconds_total", &[]).is_some());
    let started = m.value("process_start_time_seconds", &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        now - started < 120.0 && started <= now + 1.0,
        "{started} vs {now}"
    );
    // The three seed metrics exist before the first scrape.
    assert_eq!(m.get("proxy_total_requests", &[]), Some(0.0));
    assert_eq!(
        m.get("proxy_request_duration_seconds_count", &[]),
        Some(0.0)
    );

    // gzip when asked: ureq does not decode it, so the body is the gzip stream.
    let gz = request(
        &agent(),
        "GET",
        &tunnel.admin_url("/metrics"),
        &[("Accept-Encoding", "gzip")],
    );
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz.body[..]), &mut text)
        .expect("valid gzip");
    assert!(text.contains("proxy_total_requests 0"), "{text}");
}
