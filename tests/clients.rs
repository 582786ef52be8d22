//! Bad and hostile clients: malformed requests, slowloris, too many connections, attempts to use
//! the tunnel as an open proxy. The tunnel keeps answering everyone else within a second.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::pushprox::read_response;
use common::upstream::Exporter;
use common::{agent, exporter_page, get, raw_exchange, raw_status, request, Tunnel};

/// A normal scrape must still be answered, in full, within a second.
fn still_answers(tunnel: &Tunnel, page: &[u8]) {
    let started = Instant::now();
    let answer = get(&tunnel.url("/metrics"));
    let took = started.elapsed();
    assert_eq!(answer.status, 200);
    assert!(answer.body == page);
    assert!(
        took < Duration::from_secs(1),
        "a normal scrape took {took:?}"
    );
}

#[test]
fn malformed_requests_are_refused_and_others_still_served() {
    let page = exporter_page(2000);
    let exporter = Exporter::start(page.clone());
    let tunnel = Tunnel::start(exporter.port, &[]);
    let huge_header = format!(
        "GET /metrics HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "junk bytes",
            b"\x00\x01\x02garbage\xff\xfe\r\n\r\n".to_vec(),
        ),
        // The start of a TLS 1.2 ClientHello on the plain port.
        (
            "TLS hello",
            vec![
                0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03, 0, 0, 0, 0,
            ],
        ),
        ("70 KB header", huge_header.into_bytes()),
        (
            "negative Content-Length",
            b"GET /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: -5\r\n\r\n".to_vec(),
        ),
        ("HTTP/0.9", b"GET /metrics\r\n".to_vec()),
    ];
    for (name, bytes) in &cases {
        let raw = raw_exchange(tunnel.proxy_port, bytes, Duration::from_secs(3));
        // Refused with a 4xx or a closed connection; never forwarded, never a 200.
        match raw_status(&raw) {
            Some(status) => assert!((400..500).contains(&status), "{name}: answered {status}"),
            None => assert!(
                !String::from_utf8_lossy(&raw).contains("node_test_series"),
                "{name}"
            ),
        }
        still_answers(&tunnel, &page);
    }
    // Only the normal scrapes reached the exporter.
    assert_eq!(exporter.seen().len(), cases.len(), "{:?}", exporter.seen());

    // HTTP/1.0 is a valid, if old, request: it is answered.
    let raw = raw_exchange(
        tunnel.proxy_port,
        b"GET /metrics HTTP/1.0\r\n\r\n",
        Duration::from_secs(3),
    );
    assert_eq!(raw_status(&raw), Some(200));
    assert!(raw.ends_with(&page));
}

#[test]
fn slowloris_connections_time_out_and_do_not_block_others() {
    let page = exporter_page(2000);
    let exporter = Exporter::start(page.clone());
    let tunnel = Tunnel::start(
        exporter.port,
        &[("HEADER_READ_TIMEOUT", "1s"), ("IDLE_TIMEOUT", "3s")],
    );
    // Hundreds of clients that start a request and never finish it.
    let mut slow: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", tunnel.proxy_port)).expect("connect");
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    still_answers(&tunnel, &page);
    // One more byte now and then does not extend the header deadline.
    std::thread::sleep(Duration::from_millis(600));
    for s in &mut slow {
        let _ = s.write_all(b"a");
    }
    still_answers(&tunnel, &page);
    std::thread::sleep(Duration::from_millis(1500));
    let m = tunnel.metrics();
    assert_eq!(
        m.value(
            "proxy_connections_rejected_total",
            &[("reason", "header_timeout")]
        ),
        300.0
    );
    // Each was answered 408, counted as a request, and closed by the tunnel.
    assert_eq!(
        m.value("proxy_response_status_total", &[("status", "408")]),
        300.0
    );
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut answer = Vec::new();
        std::io::Read::read_to_end(s, &mut answer).expect("closed, not left open");
        assert_eq!(
            raw_status(&answer),
            Some(408),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    assert_eq!(
        exporter.seen().len(),
        2,
        "half-sent requests were forwarded"
    );
}

#[test]
fn connections_beyond_the_limit_get_503_and_close() {
    let page = exporter_page(500);
    let exporter = Exporter::start(page.clone());
    let tunnel = Tunnel::start(exporter.port, &[("MAX_CONNECTIONS", "20")]);
    let idle: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(("127.0.0.1", tunnel.proxy_port)).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let raw = raw_exchange(
        tunnel.proxy_port,
        b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n",
        Duration::from_secs(3),
    );
    assert_eq!(
        raw_status(&raw),
        Some(503),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    let m = tunnel.metrics();
    assert_eq!(
        m.value("proxy_connections_rejected_total", &[("reason", "limit")]),
        1.0
    );
    assert_eq!(m.value("proxy_open_connections", &[]), 20.0);
    drop(idle);
    std::thread::sleep(Duration::from_millis(200));
    still_answers(&tunnel, &page);
}

#[test]
fn the_tunnel_is_not_an_open_proxy() {
    let page = exporter_page(300);
    let exporter = Exporter::start(page.clone());
    let elsewhere = Exporter::start(b"secret internal page".to_vec());
    let tunnel = Tunnel::start(exporter.port, &[]);
    let other = format!("127.0.0.1:{}", elsewhere.port);

    // A Host header naming another host.
    let answer = request(
        &agent(),
        "GET",
        &tunnel.url("/metrics"),
        &[("Host", &other)],
    );
    assert_eq!(answer.status, 200);
    assert!(answer.body == page);
    // An absolute URI naming another host.
    let absolute = format!(
        "GET http://{other}/internal?x=1 HTTP/1.1\r\nHost: {other}\r\nConnection: close\r\n\r\n"
    );
    let raw = raw_exchange(
        tunnel.proxy_port,
        absolute.as_bytes(),
        Duration::from_secs(3),
    );
    assert_eq!(raw_status(&raw), Some(200));
    assert!(raw.ends_with(&page));
    // CONNECT to another host.
    let connect = format!("CONNECT {other} HTTP/1.1\r\nHost: {other}\r\n\r\n");
    let raw = raw_exchange(
        tunnel.proxy_port,
        connect.as_bytes(),
        Duration::from_secs(3),
    );
    assert_eq!(
        raw_status(&raw),
        Some(405),
        "{}",
        String::from_utf8_lossy(&raw)
    );

    assert!(
        elsewhere.seen().is_empty(),
        "the tunnel reached another host: {:?}",
        elsewhere.seen()
    );
    let seen = exporter.seen();
    assert_eq!(seen.len(), 2);
    let host = format!("127.0.0.1:{}", exporter.port);
    for s in &seen {
        assert_eq!(
            s.header("host"),
            Some(host.as_str()),
            "Host must be the exporter's"
        );
    }
    assert_eq!(
        seen[1].target, "/internal?x=1",
        "the absolute URI is reduced to its path"
    );
}

#[test]
fn a_kept_alive_connection_closes_after_idle_timeout_of_silence_only() {
    // The tunnel keeps one timer per connection and pushes it later at each request: a
    // connection used more often than IDLE_TIMEOUT must outlive it, and a silent one must not.
    let page = exporter_page(500);
    let exporter = Exporter::start(page.clone());
    let tunnel = Tunnel::start(exporter.port, &[("IDLE_TIMEOUT", "2s")]);
    let stream = TcpStream::connect(("127.0.0.1", tunnel.proxy_port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut answers = std::io::BufReader::new(&stream);
    let opened = Instant::now();
    let mut last_answer = Instant::now();
    while opened.elapsed() < Duration::from_millis(5500) {
        (&stream)
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
            .expect("send on the kept connection");
        let answer = read_response(&mut answers, false).expect("an answer");
        last_answer = Instant::now();
        assert_eq!(answer.status, 200);
        assert!(answer.body == page, "body differs");
        if opened.elapsed() < Duration::from_millis(5500) {
            std::thread::sleep(Duration::from_millis(700));
        }
    }
    let mut rest = Vec::new();
    let read = std::io::Read::read_to_end(&mut answers, &mut rest);
    let waited = last_answer.elapsed();
    assert!(read.is_ok() && rest.is_empty(), "{read:?} {rest:?}");
    assert!(
        waited >= Duration::from_millis(1800) && waited < Duration::from_secs(5),
        "closed after {waited:?} of silence, IDLE_TIMEOUT being 2 s"
    );
    assert_eq!(
        exporter.seen().len() as f64,
        tunnel.metrics().value("proxy_total_requests", &[])
    );
}
