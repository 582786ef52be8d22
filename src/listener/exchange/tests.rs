//! The client side's exchange against a real socket: what reaches the client for each kind of
//! answer, request bodies in any framing, a client that hangs up, and when the connection is
//! kept.

use std::time::Duration;

use pingora_http::ResponseHeader;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::answer::chunk_size_line;
use super::*;
use crate::http1::head::ExporterHead;
use crate::listener::client_stream::ClientStream;
use crate::listener::last_request::LastRequest;
use crate::test_support::runtime;

/// The tunnel's end of a fresh connection (as the listener wraps it) and the client's end.
async fn connection() -> (Stream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let server: pingora_core::protocols::l4::stream::Stream = accepted.expect("accept").0.into();
    (
        Box::new(ClientStream::new(Box::new(server))),
        client.expect("connect"),
    )
}

/// An exchange for `request`, sent by the client before the tunnel reads it (as
/// `header.rs` hands the bytes on), and the client's end.
async fn exchange(request: &str) -> (ClientExchange, TcpStream) {
    let (stream, client) = connection().await;
    let exchange = ClientExchange::new(
        stream,
        BytesMut::from(request.as_bytes()),
        &mut LastRequest::default(),
    )
    .map_err(|(_, e)| e)
    .expect("a valid request");
    (exchange, client)
}

/// An answer with `fields`.
fn answer(status: u16, fields: &[(&str, &str)]) -> Box<ResponseHeader> {
    let mut header = Box::new(ResponseHeader::build(status, None).expect("status"));
    for (name, value) in fields {
        header
            .append_header(name.to_string(), *value)
            .expect("field");
    }
    header
}

/// The connection and any pipelined bytes, if `exchange` leaves it reusable; the request's
/// header is not kept for a next one.
async fn reusable(exchange: ClientExchange) -> Option<(Stream, Option<BytesMut>)> {
    exchange.into_reusable(&mut LastRequest::default()).await
}

/// An exporter's answer header with `fields`, parsed from its bytes as the exporter's side
/// parses it.
fn exporter_head(status: u16, fields: &[(&str, &str)]) -> ExporterHead {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let mut raw = format!("HTTP/1.1 {status} {reason}\r\n");
    for (name, value) in fields {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str("\r\n");
    let (head, _, length) = ExporterHead::parse(raw.as_bytes())
        .expect("valid")
        .expect("complete");
    assert_eq!(length, raw.len());
    head
}

/// Everything the client receives until the tunnel's end closes.
async fn received_until_close(client: &mut TcpStream) -> String {
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.expect("read");
    String::from_utf8(got).expect("text")
}

/// What the client has received once `n` bytes arrived.
async fn received(client: &mut TcpStream, n: usize) -> String {
    let mut got = vec![0u8; n];
    client.read_exact(&mut got).await.expect("read");
    String::from_utf8(got).expect("text")
}

#[test]
fn an_answer_with_a_length_goes_out_whole_and_the_connection_carries_the_next_request() {
    runtime().block_on(async {
        let (mut exchange, mut client) = exchange(
            "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\nGET /next HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .await;
        let header = exporter_head(
            200,
            &[
                ("Content-Type", "text/plain"),
                ("Content-Length", "10"),
                ("Keep-Alive", "timeout=5"),
                ("Date", "Mon, 30 Nov 2026 12:00:00 GMT"),
            ],
        );
        exchange.write_exporter_head(&header).await.expect("header");
        assert!(exchange.answer_status().is_some());
        exchange.write_body(b"0123").await.expect("body");
        exchange.write_body(b"456789 and more").await.expect("body");
        exchange.finish_body().await.expect("finish");
        assert_eq!(exchange.body_bytes_sent(), 10, "cut at its length");
        let (_, pipelined) = reusable(exchange).await.expect("kept");
        assert_eq!(
            pipelined.as_deref(),
            Some(&b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n"[..])
        );
        let expected = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\nDate: Mon, 30 Nov 2026 12:00:00 GMT\r\nConnection: keep-alive\r\n\r\n0123456789";
        assert_eq!(received(&mut client, expected.len()).await, expected);
    });
}

#[test]
fn a_length_the_exporter_repeated_in_agreement_frames_the_answer() {
    // RFC 9110 section 8.6 lets `Content-Length: 4, 4` stand for 4, and the exporter's side
    // accepts it; the answer's writer once parsed the value itself and refused it.
    runtime().block_on(async {
        let (mut exchange, mut client) = exchange("GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
        exchange
            .write_exporter_head(&exporter_head(200, &[("Content-Length", "4, 4")]))
            .await
            .expect("header");
        exchange.write_body(b"bodyextra").await.expect("body");
        exchange.finish_body().await.expect("finish");
        assert_eq!(exchange.body_bytes_sent(), 4);
        assert!(reusable(exchange).await.is_some(), "kept");
        let got = String::from_utf8_lossy(&{
            let mut got = vec![0u8; 512];
            let n = client.read(&mut got).await.expect("read");
            got.truncate(n);
            got
        })
        .into_owned();
        assert!(got.ends_with("\r\n\r\nbody"), "{got}");
    });
}

#[test]
fn a_bodiless_answer_leaves_with_its_header_and_a_date() {
    runtime().block_on(async {
        for (request, status) in [
            ("HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\n", 200),
            ("GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n", 304),
        ] {
            let (mut exchange, mut client) = exchange(request).await;
            let header = exporter_head(status, &[("Content-Length", "4")]);
            exchange.write_exporter_head(&header).await.expect("header");
            exchange.write_body(b"body").await.expect("ignored");
            exchange.finish_body().await.expect("finish");
            assert_eq!(exchange.body_bytes_sent(), 0);
            assert!(reusable(exchange).await.is_some());
            let mut got = vec![0u8; 512];
            let n = client.read(&mut got).await.expect("read");
            let got = String::from_utf8_lossy(&got[..n]);
            assert!(got.ends_with("Connection: keep-alive\r\n\r\n"), "{got}");
            assert!(got.contains("Content-Length: 4\r\n"), "{got}");
            assert!(got.contains("\r\nDate: "), "a Date is added: {got}");
        }
    });
}

#[test]
fn a_chunked_answer_is_framed_piece_by_piece_and_ended() {
    runtime().block_on(async {
        let (mut exchange, mut client) = exchange("GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
        let header = exporter_head(200, &[("Transfer-Encoding", "chunked")]);
        exchange.write_exporter_head(&header).await.expect("header");
        let big = vec![b'x'; 0x1234];
        for piece in [&b"hello"[..], b"", &big] {
            exchange.write_body(piece).await.expect("body");
        }
        exchange.finish_body().await.expect("finish");
        assert_eq!(exchange.body_bytes_sent(), 5 + 0x1234);
        drop(exchange.into_inner());
        let got = received_until_close(&mut client).await;
        let body = got.split_once("\r\n\r\n").expect("a header").1;
        let expected = format!("5\r\nhello\r\n1234\r\n{}\r\n0\r\n\r\n", "x".repeat(0x1234));
        assert_eq!(body, expected, "an empty piece is not a last chunk");
    });
}

#[test]
fn an_answer_without_a_length_ends_with_the_connection() {
    runtime().block_on(async {
        let (mut exchange, mut client) = exchange("GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
        exchange
            .write_exporter_head(&exporter_head(200, &[]))
            .await
            .expect("header");
        exchange.write_body(b"until close").await.expect("body");
        exchange.finish_body().await.expect("finish");
        assert!(reusable(exchange).await.is_none(), "closed");
        let got = received_until_close(&mut client).await;
        assert!(
            got.contains("Connection: close\r\n\r\nuntil close"),
            "{got}"
        );
    });
}

#[test]
fn an_exporters_header_goes_on_as_sent_but_for_its_connection_fields() {
    runtime().block_on(async {
        {
            // Its own field order and case, an HTTP/1.0 status line, a folded value; `Connection`
            // and `Keep-Alive` about its own connection; a `Content-Length` beside chunked; and a
            // body that would end with the exporter's connection, re-framed as chunked.
            let (mut exchange, mut client) = exchange("GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
            let raw = "HTTP/1.0 203 Fine By Me\r\nx-ONE: a\r\nConnection: keep-alive, x-one\r\nKeep-Alive: timeout=5\r\nX-Folded: first\r\n second\r\nDate: Mon, 30 Nov 2026 12:00:00 GMT\r\n\r\n";
            let (mut head, version, _) = ExporterHead::parse(raw.as_bytes())
                .expect("valid")
                .expect("complete");
            assert_eq!(version, http::Version::HTTP_10);
            head.chunk_body();
            exchange.write_exporter_head(&head).await.expect("header");
            assert_eq!(exchange.answer_status(), Some(http::StatusCode::NON_AUTHORITATIVE_INFORMATION));
            exchange.write_body(b"abc").await.expect("body");
            exchange.finish_body().await.expect("finish");
            assert!(reusable(exchange).await.is_some(), "kept: the body is chunked");
            let expected = "HTTP/1.1 203 Fine By Me\r\nx-ONE: a\r\nX-Folded: first\r\n second\r\nDate: Mon, 30 Nov 2026 12:00:00 GMT\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
            assert_eq!(received(&mut client, expected.len()).await, expected);
        }
        let (mut exchange, mut client) = exchange("GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
        let head = exporter_head(
            200,
            &[("Content-Length", "99"), ("Transfer-Encoding", "gzip, chunked")],
        );
        assert_eq!(head.content_length(), None, "dropped beside Transfer-Encoding");
        exchange.write_exporter_head(&head).await.expect("header");
        exchange.finish_body().await.expect("finish");
        drop(exchange.into_inner());
        let got = received_until_close(&mut client).await;
        assert!(!got.contains("Content-Length"), "{got}");
        assert!(got.contains("\r\nTransfer-Encoding: gzip, chunked\r\n"), "{got}");
        assert!(got.contains("\r\nDate: "), "a Date is added: {got}");
    });
}

#[test]
fn a_body_shorter_than_its_length_is_an_error_and_the_connection_closes() {
    runtime().block_on(async {
        let (mut exchange, _client) = exchange("GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
        exchange
            .write_response_header(answer(200, &[("Content-Length", "10")]))
            .await
            .expect("header");
        exchange.write_body(b"short").await.expect("body");
        let e = exchange.finish_body().await.expect_err("short");
        assert!(format!("{e}").contains("5 bytes"), "{e}");
        assert!(reusable(exchange).await.is_none());
    });
}

#[test]
fn an_http_1_0_client_or_one_that_says_close_gets_its_connection_closed() {
    runtime().block_on(async {
        for request in [
            "GET / HTTP/1.0\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ] {
            let (mut exchange, mut client) = exchange(request).await;
            exchange
                .write_response_header(answer(200, &[("Content-Length", "2")]))
                .await
                .expect("header");
            exchange.write_body(b"ok").await.expect("body");
            exchange.finish_body().await.expect("finish");
            assert!(reusable(exchange).await.is_none(), "{request}");
            let got = received_until_close(&mut client).await;
            assert!(got.ends_with("Connection: close\r\n\r\nok"), "{got}");
        }
    });
}

#[test]
fn a_request_body_trickling_in_chunked_is_read_whole_and_what_follows_is_kept() {
    runtime().block_on(async {
        let (stream, mut client) = connection().await;
        let mut exchange = ClientExchange::new(
            stream,
            BytesMut::from(&b"POST /push HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"[..]),
            &mut LastRequest::default(),
        )
        .map_err(|(_, e)| e)
        .expect("valid");
        assert!(!exchange.is_body_empty());
        let sender = tokio::spawn(async move {
            for piece in [&b"lo\r\n"[..], b"3\r\n wo\r\n0\r\n", b"\r\nGET /next"] {
                tokio::time::sleep(Duration::from_millis(20)).await;
                client.write_all(piece).await.expect("write");
            }
            client
        });
        exchange.set_read_timeout(Some(Duration::from_secs(5)));
        let mut body = Vec::new();
        while let Some(piece) = exchange.read_body_bytes().await.expect("body") {
            body.extend_from_slice(&piece);
        }
        assert_eq!(body, b"hello wo");
        assert!(exchange.is_body_done());
        let _client = sender.await.expect("sender");
        exchange
            .write_response_header(answer(200, &[("Content-Length", "0")]))
            .await
            .expect("header");
        exchange.finish_body().await.expect("finish");
        let (_, rest) = reusable(exchange).await.expect("kept");
        // The pipelined request may still be on its way; what came is kept in order.
        let rest = rest.unwrap_or_default();
        assert!(b"GET /next".starts_with(&rest), "{rest:?}");
    });
}

#[test]
fn a_client_that_hangs_up_ends_the_wait_and_one_that_pipelines_does_not() {
    runtime().block_on(async {
        let (mut exchange, mut client) = exchange("GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
        client
            .write_all(b"GET /next HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        let waited = tokio::time::timeout(Duration::from_millis(200), exchange.gone()).await;
        assert!(waited.is_err(), "a pipelined request is not a hang-up");
        drop(client);
        let e = tokio::time::timeout(Duration::from_secs(5), exchange.gone())
            .await
            .expect("the hang-up is seen");
        assert_eq!(e.esource(), &pingora_error::ErrorSource::Downstream);
        assert_eq!(e.etype(), &ErrorType::ConnectionClosed);
        assert_eq!(
            &exchange.body.buf[..],
            b"GET /next HTTP/1.1\r\n\r\n",
            "kept"
        );
    });
}

#[test]
fn chunk_size_lines_are_hexadecimal() {
    let mut buf = [0u8; 18];
    for (len, line) in [
        (0, &b"0\r\n"[..]),
        (1, b"1\r\n"),
        (15, b"F\r\n"),
        (16, b"10\r\n"),
        (0x1234, b"1234\r\n"),
        (usize::MAX, b"FFFFFFFFFFFFFFFF\r\n"),
    ] {
        assert_eq!(chunk_size_line(len, &mut buf), line, "{len}");
    }
}
