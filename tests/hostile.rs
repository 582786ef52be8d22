//! Careless and hostile peers, on raw sockets where an HTTP library would hide the case: a
//! client that hangs up mid-scrape, requests the HTTP parser refuses, pipelined requests, an
//! exporter that answers what it was not asked, TLS handshakes that never finish.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use common::pki::Pki;
use common::upstream::Exporter;
use common::{agent, exporter_page, raw_exchange, raw_status, request, Tunnel};

/// An exporter that reads a request and never answers; it reports, per connection, how long
/// after the request the tunnel closed the connection (or `None` if it held it for 5 s).
struct SilentExporter {
    port: u16,
    open: Arc<AtomicUsize>,
    closed_after: mpsc::Receiver<Option<Duration>>,
}

impl SilentExporter {
    fn start() -> SilentExporter {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let open = Arc::new(AtomicUsize::new(0));
        let (tx, closed_after) = mpsc::channel();
        let counter = Arc::clone(&open);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (tx, counter) = (tx.clone(), Arc::clone(&counter));
                counter.fetch_add(1, Ordering::SeqCst);
                thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let _ = stream.read(&mut buf);
                    let asked = Instant::now();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(5)))
                        .unwrap();
                    let closed = match stream.read(&mut buf) {
                        Ok(0) | Err(_) if asked.elapsed() < Duration::from_millis(4900) => {
                            Some(asked.elapsed())
                        }
                        _ => None,
                    };
                    counter.fetch_sub(1, Ordering::SeqCst);
                    let _ = tx.send(closed);
                });
            }
        });
        SilentExporter {
            port,
            open,
            closed_after,
        }
    }
}

#[test]
fn a_client_that_hangs_up_ends_the_exporter_exchange_at_once() {
    let exporter = SilentExporter::start();
    let tunnel = Tunnel::start(exporter.port, &[("UPSTREAM_TIMEOUT", "30s")]);
    let mut client = TcpStream::connect(("127.0.0.1", tunnel.proxy_port)).expect("connect");
    client
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    thread::sleep(Duration::from_millis(100));
    drop(client);
    let closed = exporter
        .closed_after
        .recv_timeout(Duration::from_secs(10))
        .expect("the exporter connection ended");
    let closed = closed.expect("the tunnel held the exporter connection after its client left");
    assert!(
        closed < Duration::from_secs(2),
        "freed only after {closed:?}"
    );
    let m = tunnel.metrics_once(Duration::from_secs(5), |m| {
        m.value("proxy_total_requests", &[]) >= 1.0
    });
    assert_eq!(
        m.value("proxy_response_status_total", &[("status", "499")]),
        1.0
    );
    assert_eq!(
        m.value("proxy_response_status_total", &[("status", "200")]),
        0.0
    );
    assert_eq!(m.value("proxy_in_flight_requests", &[]), 0.0);
    assert_eq!(m.value("proxy_open_connections", &[]), 0.0);

    // Two hundred of them hold nothing either.
    let clients: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut c = TcpStream::connect(("127.0.0.1", tunnel.proxy_port)).expect("connect");
            c.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            c
        })
        .collect();
    let m = tunnel.metrics_once(Duration::from_secs(5), |m| {
        m.value("proxy_in_flight_requests", &[]) >= 200.0
    });
    assert_eq!(m.value("proxy_in_flight_requests", &[]), 200.0);
    drop(clients);
    let m = tunnel.metrics_once(Duration::from_secs(5), |m| {
        m.value("proxy_total_requests", &[]) >= 201.0
    });
    assert_eq!(
        m.value("proxy_response_status_total", &[("status", "499")]),
        201.0
    );
    assert_eq!(m.value("proxy_in_flight_requests", &[]), 0.0);
    assert_eq!(m.value("proxy_open_connections", &[]), 0.0);
    let start = Instant::now();
    while exporter.open.load(Ordering::SeqCst) > 0 && start.elapsed() < Duration::from_secs(3) {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        exporter.open.load(Ordering::SeqCst),
        0,
        "exporter connections outlived their clients"
    );
}

#[test]
fn requests_the_parser_refuses_are_answered_and_counted() {
    let exporter = Exporter::start(exporter_page(500));
    let tunnel = Tunnel::start(exporter.port, &[]);
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(64 * 1024));
    let cases: [(&str, Vec<u8>, u16); 5] = [
        (
            "two Content-Lengths",
            b"GET /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
                .to_vec(),
            400,
        ),
        (
            "malformed request line",
            b"GET  HTTP/1.1 /x\r\n\r\n".to_vec(),
            400,
        ),
        (
            "HTTP/2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            400,
        ),
        ("64 KB URI", long_uri.into_bytes(), 431),
        (
            "CONNECT",
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n".to_vec(),
            405,
        ),
    ];
    for (i, (name, bytes, status)) in cases.iter().enumerate() {
        let raw = raw_exchange(tunnel.proxy_port, bytes, Duration::from_secs(3));
        let text = String::from_utf8_lossy(&raw);
        assert_eq!(raw_status(&raw), Some(*status), "{name}: {text}");
        if *status == 405 {
            assert!(
                text.to_ascii_lowercase()
                    .contains("\r\nallow: get, head\r\n"),
                "{name}: no Allow: {text}"
            );
        }
        let m = tunnel.metrics_after(i as u64 + 1);
        assert_eq!(
            m.value("proxy_total_requests", &[]),
            i as f64 + 1.0,
            "{name} not counted once"
        );
    }
    let m = tunnel.metrics();
    assert_eq!(
        m.value("proxy_response_status_total", &[("status", "400")]),
        3.0
    );
    assert_eq!(
        m.value("proxy_response_status_total", &[("status", "431")]),
        1.0
    );
    assert_eq!(
        m.value("proxy_response_status_total", &[("status", "405")]),
        1.0
    );
    assert!(exporter.seen().is_empty(), "{:?}", exporter.seen());
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let page = exporter_page(3000);
    let exporter = Exporter::start(page.clone());
    let tunnel = Tunnel::start(exporter.port, &[]);
    let three = b"GET /one HTTP/1.1\r\nHost: t\r\n\r\nGET /two HTTP/1.1\r\nHost: t\r\n\r\n\
        GET /three HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let raw = raw_exchange(tunnel.proxy_port, three, Duration::from_secs(5));
    let text = String::from_utf8_lossy(&raw);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 3, "{text}");
    let answers: Vec<&str> = text.split("HTTP/1.1 200").skip(1).collect();
    for answer in &answers {
        assert!(
            answer.ends_with(&*String::from_utf8_lossy(&page)),
            "an answer was not the whole page"
        );
    }
    assert!(answers[0].contains("keep-alive") && answers[2].contains("close"));
    let seen: Vec<String> = exporter.seen().into_iter().map(|s| s.target).collect();
    assert_eq!(seen, ["/one", "/two", "/three"]);
    let m = tunnel.metrics_after(3);
    assert_eq!(
        m.value("proxy_response_status_total", &[("status", "200")]),
        3.0
    );
}

/// An exporter that answers each request with "answer <X-Seq>" and, 50 ms later, sends a
/// response nobody asked for on the same connection. It counts its connections.
fn stray_exporter() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&connections);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            thread::spawn(move || {
                // Go's exporters send at once; so does this one.
                stream.set_nodelay(true).unwrap();
                let mut writer = stream.try_clone().unwrap();
                let mut reader = std::io::BufReader::new(stream);
                loop {
                    let mut seq = String::from("?");
                    loop {
                        let mut line = String::new();
                        if std::io::BufRead::read_line(&mut reader, &mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("x-seq:") {
                            seq = v.trim().to_string();
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let body = format!("answer {seq}");
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if writer.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                    thread::sleep(Duration::from_millis(50));
                    let stray = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nunsolicited";
                    if writer.write_all(stray).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, connections)
}

#[test]
fn a_connection_that_shows_unasked_bytes_serves_no_other_scrape() {
    let (port, connections) = stray_exporter();
    let tunnel = Tunnel::start(port, &[]);
    let client = agent();
    let mut answers = Vec::new();
    for i in 0..8 {
        let seq = i.to_string();
        let answer = request(&client, "GET", &tunnel.url("/metrics"), &[("X-Seq", &seq)]);
        answers.push(answer.body_string());
        thread::sleep(Duration::from_millis(10));
    }
    for (i, answer) in answers.iter().enumerate() {
        assert!(
            answer == &format!("answer {i}") || answer == "unsolicited",
            "scrape {i} got another scrape's answer: {answers:?}"
        );
    }
    // Each stray a scrape received came on a connection that was then dropped, so the
    // scrape after it got its own answer on a new one.
    for pair in answers.windows(2) {
        assert!(
            !(pair[0] == "unsolicited" && pair[1] == "unsolicited"),
            "{answers:?}"
        );
    }
    let strays = answers.iter().filter(|a| *a == "unsolicited").count();
    thread::sleep(Duration::from_millis(100));
    let answer = request(
        &client,
        "GET",
        &tunnel.url("/metrics"),
        &[("X-Seq", "late")],
    );
    assert_eq!(answer.body_string(), "answer late");
    assert_eq!(
        connections.load(Ordering::SeqCst),
        strays + 1,
        "a connection that showed a stray was reused: {answers:?}"
    );
    // A stray that arrives while the connection waits for the next scrape is noticed before
    // the connection is used again.
    thread::sleep(Duration::from_millis(100));
    let answer = request(
        &client,
        "GET",
        &tunnel.url("/metrics"),
        &[("X-Seq", "later")],
    );
    assert_eq!(answer.body_string(), "answer later");
    assert_eq!(connections.load(Ordering::SeqCst), strays + 2);
    assert!(tunnel
        .log_with("unexpected data")
        .contains("an idle exporter connection received unexpected data; closed"));
}

#[test]
fn tls_handshakes_count_against_the_limits_and_the_header_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path());
    let page = exporter_page(1000);
    let exporter = Exporter::start(page.clone());
    let tunnel = Tunnel::start(
        exporter.port,
        &[
            ("LISTEN_TLS_CERT_FILE", &pki.path("server.crt")),
            ("LISTEN_TLS_KEY_FILE", &pki.path("server.key")),
            ("HEADER_READ_TIMEOUT", "1s"),
            ("MAX_CONNECTIONS", "100"),
        ],
    );
    // The first bytes of a TLS record carrying a ClientHello, and then nothing.
    let hello_start: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03];
    let mut stalled: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", tunnel.proxy_port)).expect("connect");
            let _ = s.write_all(hello_start);
            s
        })
        .collect();
    let m = tunnel.metrics_once(Duration::from_secs(3), |m| {
        m.value("proxy_connections_rejected_total", &[("reason", "limit")]) >= 200.0
    });
    assert_eq!(m.value("proxy_open_connections", &[]), 100.0);
    assert_eq!(
        m.value("proxy_connections_rejected_total", &[("reason", "limit")]),
        200.0
    );
    // Within the header deadline of their accept, the 100 are closed too.
    let m = tunnel.metrics_once(Duration::from_secs(5), |m| {
        m.value("proxy_open_connections", &[]) == 0.0
    });
    assert_eq!(m.value("proxy_open_connections", &[]), 0.0);
    assert_eq!(
        m.value(
            "proxy_connections_rejected_total",
            &[("reason", "header_timeout")]
        ),
        100.0
    );
    for s in &mut stalled {
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut rest = Vec::new();
        // Closed, with or without reading what was sent (a reset then).
        let open = matches!(
            s.read_to_end(&mut rest),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
        );
        assert!(!open, "a stalled handshake was left open");
    }
    // A real TLS client is served.
    let curl = common::require_tool("curl", "curl");
    let out = std::process::Command::new(curl)
        .args([
            "-sS",
            "--fail",
            "--cacert",
            &pki.path("ca.crt"),
            "--resolve",
        ])
        .arg(format!("localhost:{}:127.0.0.1", tunnel.proxy_port))
        .arg(format!("https://localhost:{}/metrics", tunnel.proxy_port))
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == page);
}
