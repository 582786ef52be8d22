//! Faults from the exporter: each gets the right answer, is counted, is logged once with its
//! cause, and never reaches the client as a complete body when it was not.

mod common;

use std::time::{Duration, Instant};

use common::upstream::{Exporter, Fault};
use common::{agent, exporter_page, raw_exchange, raw_status, request, Tunnel};

/// Lines of the log that report a failed request (Pingora's "Fail to proxy" error line).
fn failure_lines(log: &str) -> usize {
    log.lines().filter(|l| l.contains("Fail to proxy")).count()
}

const GET: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

#[test]
fn exporter_500_is_passed_through_as_the_exporters_own_answer() {
    let page = exporter_page(300);
    let exporter = Exporter::start(page.clone());
    exporter.set_fault(Fault::Status(500));
    let tunnel = Tunnel::start(exporter.port, &[]);
    let answer = request(&agent(), "GET", &tunnel.url("/metrics"), &[]);
    assert_eq!(answer.status, 500);
    assert!(answer.body == page, "the exporter's own body is forwarded");
    let m = tunnel.metrics_after(1);
    assert_eq!(
        m.value("proxy_response_status_total", &[("status", "500")]),
        1.0
    );
    for kind in ["refused", "timeout", "reset", "protocol", "other"] {
        assert_eq!(
            m.value("proxy_upstream_errors_total", &[("kind", kind)]),
            0.0,
            "{kind}"
        );
    }
}

/// A page copied through the tunnel's buffer, and one large enough that the rest of its body
/// is spliced socket to socket (`src/http1/splice.rs`, from 256 KiB still to come; that this
/// size is spliced, `tests/splice.rs` shows from the tunnel's log).
const COPIED: usize = 200_000;
const SPLICED: usize = 3_000_000;

#[test]
fn exporter_cut_mid_body_never_looks_complete() {
    cut_mid_body_never_looks_complete(COPIED);
}

#[test]
fn exporter_cut_mid_splice_never_looks_complete() {
    cut_mid_body_never_looks_complete(SPLICED);
}

fn cut_mid_body_never_looks_complete(size: usize) {
    let page = exporter_page(size);
    let exporter = Exporter::start(page.clone());
    exporter.set_fault(Fault::CutMidBody);
    let tunnel = Tunnel::start(exporter.port, &[]);
    let raw = raw_exchange(tunnel.proxy_port, GET, Duration::from_secs(5));
    assert_eq!(
        raw_status(&raw),
        Some(200),
        "the header had already gone out"
    );
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a header");
    let declared: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("the exporter's Content-Length is kept, so a cut body shows");
    assert_eq!(declared, page.len());
    assert!(
        body.len() < declared,
        "a cut body was presented as complete"
    );

    assert_counted_failure(&tunnel, "502", "reset");
    assert_eq!(
        tunnel
            .metrics()
            .value("proxy_response_status_total", &[("status", "200")]),
        0.0
    );
}

#[test]
fn a_body_that_stalls_is_cut_at_the_deadline() {
    stalled_body_is_cut_at_the_deadline(COPIED);
}

#[test]
fn a_spliced_body_that_stalls_is_cut_at_the_deadline() {
    stalled_body_is_cut_at_the_deadline(SPLICED);
}

fn stalled_body_is_cut_at_the_deadline(size: usize) {
    let exporter = Exporter::start(exporter_page(size));
    exporter.set_fault(Fault::StallMidBody);
    let tunnel = Tunnel::start(exporter.port, &[("UPSTREAM_TIMEOUT", "1s")]);
    let started = Instant::now();
    let raw = raw_exchange(tunnel.proxy_port, GET, Duration::from_secs(10));
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "still waiting after {took:?}"
    );
    assert_eq!(raw_status(&raw), Some(200), "the header had gone out");
    let text = String::from_utf8_lossy(&raw);
    let (_, body) = text.split_once("\r\n\r\n").expect("a header");
    assert!(body.len() < size, "a cut body was presented as complete");
    assert_counted_failure(&tunnel, "504", "timeout");
    assert!(tunnel.log_with("Fail to proxy").contains("deadline"));
}

/// One request counted with `status`, its exporter error of `kind`, and logged once.
fn assert_counted_failure(tunnel: &Tunnel, status: &str, kind: &str) {
    let m = tunnel.metrics_after(1);
    assert_eq!(
        m.value("proxy_response_status_total", &[("status", status)]),
        1.0
    );
    assert_eq!(
        m.value("proxy_upstream_errors_total", &[("kind", kind)]),
        1.0
    );
    let log = tunnel.log_with("Fail to proxy");
    assert_eq!(failure_lines(&log), 1, "{log}");
}

#[test]
fn endless_body_is_cut_at_the_deadline() {
    let exporter = Exporter::start(exporter_page(10));
    exporter.set_fault(Fault::EndlessBody);
    let tunnel = Tunnel::start(exporter.port, &[("UPSTREAM_TIMEOUT", "1s")]);
    let started = Instant::now();
    let raw = raw_exchange(tunnel.proxy_port, GET, Duration::from_secs(10));
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "still streaming after {took:?}"
    );
    assert_eq!(raw_status(&raw), Some(200));
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.contains("node_endless_series"),
        "the body streamed through"
    );
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "an endless body was ended as if complete"
    );

    assert_counted_failure(&tunnel, "504", "timeout");
    let log = tunnel.log_with("Fail to proxy");
    assert!(log.contains("deadline"), "{log}");
}

#[test]
fn a_header_trickling_past_the_deadline_is_504_at_the_deadline() {
    // Each line arrives well within the timeout of any one read; only a deadline for the whole
    // header ends it in time.
    let exporter = Exporter::start(exporter_page(10));
    exporter.set_fault(Fault::TrickleHeader);
    let tunnel = Tunnel::start(exporter.port, &[("UPSTREAM_TIMEOUT", "1s")]);
    let started = Instant::now();
    let answer = request(&agent(), "GET", &tunnel.url("/metrics"), &[]);
    let took = started.elapsed();
    assert_eq!(answer.status, 504);
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
    let m = tunnel.metrics_after(1);
    assert_eq!(
        m.value("proxy_upstream_errors_total", &[("kind", "timeout")]),
        1.0
    );
    let log = tunnel.log_with("Fail to proxy");
    assert!(log.contains("deadline"), "{log}");
}

#[test]
fn garbage_instead_of_http_is_502() {
    let exporter = Exporter::start(exporter_page(10));
    exporter.set_fault(Fault::Garbage);
    let tunnel = Tunnel::start(exporter.port, &[]);
    let answer = request(&agent(), "GET", &tunnel.url("/metrics"), &[]);
    assert_eq!(answer.status, 502);
    let m = tunnel.metrics_after(1);
    assert_eq!(
        m.value("proxy_response_status_total", &[("status", "502")]),
        1.0
    );
    assert_eq!(
        m.value("proxy_upstream_errors_total", &[("kind", "protocol")]),
        1.0
    );
    let log = tunnel.log_with("Fail to proxy");
    assert_eq!(failure_lines(&log), 1, "{log}");
}

#[test]
fn a_reason_phrase_with_obs_text_goes_on_as_sent() {
    // RFC 9112 allows bytes over 0x7F in a reason phrase; httparse hands such a phrase over as
    // a constant empty string, and locating it in the read buffer from that pointer panicked:
    // the scrape's task died, the client got no answer and the scrape was not counted.
    let page = exporter_page(1000);
    let exporter = Exporter::start(page.clone());
    exporter.set_fault(Fault::ObsTextReason);
    let tunnel = Tunnel::start(exporter.port, &[]);
    let raw = raw_exchange(
        tunnel.proxy_port,
        b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(
        raw.starts_with(b"HTTP/1.1 200 Gr\xfc\xdfe\r\n"),
        "{:?}\n{}",
        String::from_utf8_lossy(&raw),
        tunnel.log()
    );
    assert!(raw.ends_with(&page), "the page follows whole");
    let m = tunnel.metrics_after(1);
    assert_eq!(
        m.value("proxy_response_status_total", &[("status", "200")]),
        1.0
    );
}

#[test]
fn slow_exporter_is_504_and_refused_is_502_each_logged_once() {
    let exporter = Exporter::start(exporter_page(10));
    exporter.set_delay(Duration::from_secs(3));
    let slow = Tunnel::start(exporter.port, &[("UPSTREAM_TIMEOUT", "500ms")]);
    assert_eq!(request(&agent(), "GET", &slow.url("/"), &[]).status, 504);
    let log = slow.log_with("Fail to proxy");
    assert_eq!(failure_lines(&log), 1, "{log}");

    let refused = Tunnel::start(common::closed_port(), &[]);
    assert_eq!(request(&agent(), "GET", &refused.url("/"), &[]).status, 502);
    let log = refused.log_with("Fail to proxy");
    assert_eq!(failure_lines(&log), 1, "{log}");
}

#[test]
fn a_pooled_connection_the_exporter_dropped_is_retried_on_a_fresh_one() {
    // The exporter closes each kept-alive connection when its second request arrives, as one
    // whose idle timeout fires just then does: every scrape after the first meets a dead
    // pooled connection, and must still be answered, not failed.
    let page = exporter_page(3000);
    let exporter = Exporter::start(page.clone());
    exporter.set_fault(Fault::DropReused);
    let tunnel = Tunnel::start(exporter.port, &[]);
    let client = agent();
    for scrape in 0..4 {
        let answer = request(&client, "GET", &tunnel.url("/metrics"), &[]);
        assert_eq!(answer.status, 200, "scrape {scrape}");
        assert!(answer.body == page, "scrape {scrape}: body differs");
    }
    assert_eq!(
        exporter.connections(),
        4,
        "each retry should have opened a new connection"
    );
    let m = tunnel.metrics_after(4);
    assert_eq!(
        m.value("proxy_response_status_total", &[("status", "200")]),
        4.0
    );
    assert_eq!(
        m.value("proxy_upstream_errors_total", &[("kind", "reset")]),
        0.0
    );
    assert_eq!(failure_lines(&tunnel.log()), 0, "{}", tunnel.log());
}

#[test]
fn a_close_delimited_answer_reaches_the_client_chunked_and_whole() {
    let page = exporter_page(20_000);
    let exporter = Exporter::start(page.clone());
    exporter.set_fault(Fault::CloseDelimited);
    let tunnel = Tunnel::start(exporter.port, &[]);
    let raw = raw_exchange(tunnel.proxy_port, GET, Duration::from_secs(5));
    assert_eq!(raw_status(&raw), Some(200));
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header");
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(
        raw.ends_with(b"0\r\n\r\n"),
        "the chunked body was not ended"
    );
    // Chunked framing aside, the page arrives whole: a scraper's client sees it as sent.
    let answer = request(&agent(), "GET", &tunnel.url("/metrics"), &[]);
    assert_eq!(answer.status, 200);
    assert!(answer.body == page, "body differs from the exporter's page");
}

#[test]
fn a_chunked_page_arrives_whole_and_its_connection_carries_the_next_scrape() {
    let page = exporter_page(20_000);
    let exporter = Exporter::start(page.clone());
    exporter.set_fault(Fault::Chunked);
    let tunnel = Tunnel::start(exporter.port, &[]);
    let client = agent();
    for _ in 0..3 {
        let answer = request(&client, "GET", &tunnel.url("/metrics"), &[]);
        assert_eq!(answer.status, 200);
        assert!(answer.body == page, "body differs from the exporter's page");
    }
    // Read to its last chunk, trailer included, the connection was kept for the next scrape.
    assert_eq!(exporter.connections(), 1);
    // The client gets it chunked too, without the exporter's trailer.
    let raw = raw_exchange(tunnel.proxy_port, GET, Duration::from_secs(5));
    assert_eq!(raw_status(&raw), Some(200));
    let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    assert!(!text.contains("x-trailer"), "the trailer was passed on");
    assert!(
        raw.ends_with(b"0\r\n\r\n"),
        "the chunked body was not ended"
    );
    let m = tunnel.metrics_after(4);
    assert_eq!(
        m.value("proxy_response_status_total", &[("status", "200")]),
        4.0
    );
}

#[test]
fn an_informational_answer_before_the_page_is_skipped() {
    let page = exporter_page(1000);
    let exporter = Exporter::start(page.clone());
    exporter.set_fault(Fault::Informational);
    let tunnel = Tunnel::start(exporter.port, &[]);
    let answer = request(&agent(), "GET", &tunnel.url("/metrics"), &[]);
    assert_eq!(answer.status, 200);
    assert!(answer.body == page, "body differs from the exporter's page");
    let m = tunnel.metrics_after(1);
    assert_eq!(
        m.value("proxy_response_status_total", &[("status", "200")]),
        1.0
    );
}
