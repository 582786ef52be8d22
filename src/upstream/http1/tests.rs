//! The HTTP/1 client against a real socket: what it writes, and how it reads each framing a
//! real exporter may send, in one piece and trickled.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::Instant;

use super::*;

fn get(method: &str) -> RequestHeader {
    let mut request = RequestHeader::build(method, b"/metrics?x=1", None).expect("request");
    request
        .insert_header("Host", "exporter:9100")
        .expect("host");
    request
        .insert_header("Accept-Encoding", "gzip")
        .expect("accept-encoding");
    request
}

/// What the exporter does once it has written its answer.
#[derive(Clone, Copy)]
enum Then {
    /// Keeps the connection open (the test holds it).
    StayOpen,
    /// Closes it.
    Close,
}

/// The exporter's task: gives back the request it read, and its end of the socket if open.
type ExporterTask = tokio::task::JoinHandle<(String, Option<UnixStream>)>;

/// An exchange whose request (`request`, sent as it is) went to an exporter that answers
/// `pieces`, with a pause between them so that each arrives in a read of its own.
async fn asked(
    request: RequestHeader,
    pieces: &[&[u8]],
    then: Then,
) -> (ExporterExchange, ExporterTask) {
    let (ours, mut theirs) = UnixStream::pair().expect("socket pair");
    let ours = pingora_core::protocols::l4::stream::Stream::from(ours);
    let mut exchange = ExporterExchange::new(Box::new(ours));
    let pieces: Vec<Vec<u8>> = pieces.iter().map(|p| p.to_vec()).collect();
    let exporter = tokio::spawn(async move {
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"\r\n\r\n") {
            assert_eq!(theirs.read(&mut byte).await.expect("read request"), 1);
            request.push(byte[0]);
        }
        for piece in pieces {
            theirs.write_all(&piece).await.expect("write answer");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let request = String::from_utf8(request).expect("ascii request");
        match then {
            Then::StayOpen => (request, Some(theirs)),
            Then::Close => (request, None),
        }
    });
    let as_is = |client: &RequestHeader| Ok(Box::new(client.clone()));
    exchange.prepare(&as_is, &request).expect("prepare");
    exchange.send().await.expect("send");
    (exchange, exporter)
}

/// [`asked`] for a GET answered in one piece, the connection left open.
async fn answered(answer: &str) -> (ExporterExchange, ExporterTask) {
    asked(get("GET"), &[answer.as_bytes()], Then::StayOpen).await
}

/// The whole body as the client would be sent it.
async fn body(exchange: &mut ExporterExchange) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(piece) = exchange.read_body(far()).await? {
        body.extend_from_slice(piece);
    }
    Ok(body)
}

#[tokio::test]
async fn a_content_length_answer_is_read_whole_and_the_connection_kept() {
    let (mut exchange, exporter) = answered(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Exporter-Name: Node\r\nContent-Length: 11\r\n\r\nup 1\nload 2",
    )
    .await;
    let header = exchange.read_header().await.expect("header");
    assert_eq!(header.status().as_u16(), 200);
    assert_eq!(body(&mut exchange).await.expect("body"), b"up 1\nload 2");
    let (request, _theirs) = exporter.await.expect("exporter");
    assert!(
        request.starts_with("GET /metrics?x=1 HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(request.contains("Host: exporter:9100\r\n"), "{request}");
    assert!(request.contains("Accept-Encoding: gzip\r\n"), "{request}");
    // The exporter's spelling of a field name goes on to the client.
    assert!(
        header
            .end_to_end_fields()
            .any(|(name, value)| name == b"X-Exporter-Name" && value == b"Node"),
        "{header:?}"
    );
    assert!(exchange.into_reusable().is_some());
}

#[tokio::test]
async fn a_chunked_answer_trickling_in_is_unframed_and_its_trailers_dropped() {
    let pieces: [&[u8]; 6] = [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n",
        b"5\r\nhel",
        b"lo\r\n",
        b"6;ext=1\r\n wor",
        b"ld\r\n0\r\nX-Trailer: 1\r\n",
        b"\r\n",
    ];
    let (mut exchange, exporter) = asked(get("GET"), &pieces, Then::StayOpen).await;
    let header = exchange.read_header().await.expect("header");
    // Transfer-Encoding overrides Content-Length, which does not reach the client.
    assert_eq!(header.content_length(), None);
    assert!(header
        .end_to_end_fields()
        .all(|(name, _)| !name.eq_ignore_ascii_case(b"content-length")));
    assert!(!exchange.body_until_close());
    assert_eq!(body(&mut exchange).await.expect("body"), b"hello world");
    let _theirs = exporter.await.expect("exporter");
    assert!(exchange.into_reusable().is_some());
}

#[tokio::test]
async fn a_body_without_a_length_ends_with_the_connection_which_is_not_kept() {
    let pieces: [&[u8]; 2] = [b"HTTP/1.0 200 OK\r\n\r\nup 1\n", b"up 2\n"];
    let (mut exchange, exporter) = asked(get("GET"), &pieces, Then::Close).await;
    let mut header = exchange.read_header().await.expect("header");
    assert!(exchange.body_until_close());
    // HTTP/1.0 without keep-alive: the connection is not kept; the client is sent the body
    // chunked.
    header.chunk_body();
    assert!(header.adds_chunked());
    assert_eq!(body(&mut exchange).await.expect("body"), b"up 1\nup 2\n");
    exporter.await.expect("exporter");
    assert!(exchange.into_reusable().is_none());
}

#[tokio::test]
async fn a_large_body_arrives_whole_over_many_reads() {
    let page: Vec<u8> = (0..3_000_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut whole =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", page.len()).into_bytes();
    whole.extend_from_slice(&page);
    let (mut exchange, exporter) = asked(get("GET"), &[&whole], Then::StayOpen).await;
    exchange.read_header().await.expect("header");
    let mut reads = 0;
    let mut got = Vec::new();
    while let Some(piece) = exchange.read_body(far()).await.expect("body") {
        assert!(piece.len() <= READ_SIZE + READ_SIZE / 4, "{}", piece.len());
        got.extend_from_slice(piece);
        reads += 1;
    }
    assert!(got == page, "the body differs");
    assert!(reads > 1);
    let _theirs = exporter.await.expect("exporter");
    assert!(exchange.into_reusable().is_some());
}

#[tokio::test]
async fn head_204_and_304_have_no_body_whatever_their_header_says() {
    for (method, status) in [("HEAD", 200), ("GET", 204), ("GET", 304)] {
        let answer = format!("HTTP/1.1 {status} X\r\nContent-Length: 500\r\n\r\n");
        let (mut exchange, exporter) =
            asked(get(method), &[answer.as_bytes()], Then::StayOpen).await;
        exchange.read_header().await.expect("header");
        assert!(exchange.is_body_done(), "{method} {status}");
        assert_eq!(body(&mut exchange).await.expect("body"), b"");
        let _theirs = exporter.await.expect("exporter");
        assert!(exchange.into_reusable().is_some(), "{method} {status}");
    }
}

#[tokio::test]
async fn an_informational_answer_is_skipped_and_a_switch_of_protocols_refused() {
    let (mut exchange, exporter) = answered(
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 All fine\r\nContent-Length: 2\r\n\r\nok",
    )
    .await;
    let header = exchange.read_header().await.expect("header");
    assert_eq!(header.status().as_u16(), 200);
    // The final answer's own reason phrase goes on.
    assert_eq!(header.reason(), b"All fine");
    assert_eq!(body(&mut exchange).await.expect("body"), b"ok");
    let _theirs = exporter.await.expect("exporter");

    let (mut exchange, exporter) =
        answered("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n").await;
    let e = exchange.read_header().await.expect_err("101 refused");
    assert_eq!(e.etype(), &ErrorType::H1Error);
    assert!(e.to_string().contains("switched protocols"), "{e}");
    let _theirs = exporter.await.expect("exporter");
}

#[tokio::test]
async fn bad_framing_is_refused_with_what_was_wrong() {
    let cases = [
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
            "Content-Length",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nhello",
            "Content-Length",
        ),
        ("HTTP/1.1 2OO OK\r\n\r\n", "not an HTTP/1 response"),
    ];
    for (answer, named) in cases {
        let (mut exchange, exporter) = answered(answer).await;
        let e = exchange.read_header().await.expect_err(answer);
        assert_eq!(e.etype(), &ErrorType::InvalidHTTPHeader, "{answer}");
        assert!(e.to_string().contains(named), "{e}");
        let _theirs = exporter.await.expect("exporter");
    }

    // Identical duplicates are one length (RFC 9110 section 8.6).
    let (mut exchange, exporter) =
        answered("HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nok").await;
    exchange.read_header().await.expect("header");
    assert_eq!(body(&mut exchange).await.expect("body"), b"ok");
    let _theirs = exporter.await.expect("exporter");

    // A chunk longer than its size.
    let (mut exchange, exporter) =
        answered("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokay\r\n0\r\n\r\n")
            .await;
    exchange.read_header().await.expect("header");
    let e = body(&mut exchange).await.expect_err("bad chunk");
    assert!(e.to_string().contains("chunked body is malformed"), "{e}");
    let _theirs = exporter.await.expect("exporter");
}

#[tokio::test]
async fn an_exporter_that_closes_early_is_an_error_and_retryable_only_before_the_header() {
    // Closed before any answer: what a kept-alive connection closed while idle looks like.
    let (mut exchange, exporter) = asked(get("GET"), &[], Then::Close).await;
    let e = exchange.read_header().await.expect_err("closed");
    assert_eq!(e.etype(), &ErrorType::ConnectionClosed);
    assert_eq!(e.retry, RetryType::ReusedOnly);
    exporter.await.expect("exporter");

    // Closed mid-body: the client must not take a short page for a whole one.
    for truncated in [
        "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nshort\r\n",
    ] {
        let (mut exchange, exporter) =
            asked(get("GET"), &[truncated.as_bytes()], Then::Close).await;
        exchange.read_header().await.expect("header");
        let e = body(&mut exchange).await.expect_err(truncated);
        assert_eq!(e.etype(), &ErrorType::ConnectionClosed, "{truncated}");
        assert!(e.to_string().contains("closed the connection"), "{e}");
        exporter.await.expect("exporter");
    }
}

#[tokio::test]
async fn only_a_connection_the_exporter_keeps_alive_and_read_exactly_is_reused() {
    let cases = [
        ("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true),
        (
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
            false,
        ),
        ("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", false),
        (
            "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok",
            true,
        ),
        // More than the answer: the connection's next bytes are not an answer to anything.
        ("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", false),
    ];
    for (answer, kept) in cases {
        let (mut exchange, exporter) = answered(answer).await;
        exchange.read_header().await.expect("header");
        assert_eq!(body(&mut exchange).await.expect("body"), b"ok");
        assert_eq!(exchange.into_reusable().is_some(), kept, "{answer}");
        let _theirs = exporter.await.expect("exporter");
    }
}

/// A deadline no test reaches.
fn far() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

#[tokio::test]
async fn a_body_still_arriving_at_the_deadline_is_a_read_timeout() {
    let (mut exchange, exporter) =
        answered("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nup 1\n").await;
    exchange.read_header().await.expect("header");
    let until = Instant::now() + Duration::from_millis(200);
    let mut got = Vec::new();
    let e = loop {
        match exchange.read_body(until).await {
            Ok(Some(piece)) => got.extend_from_slice(piece),
            Ok(None) => panic!("a body 5 bytes short ended"),
            Err(e) => break e,
        }
    };
    assert_eq!(got, b"up 1\n");
    assert_eq!(e.etype(), &ErrorType::ReadTimedout);
    assert!(Instant::now() >= until);
    let _theirs = exporter.await.expect("exporter");
}

#[tokio::test]
async fn a_gzip_page_already_arrived_is_taken_in_the_read_that_finds_its_header() {
    // A node_exporter page, gzip-compressed: about 10 KB. Pingora's client read a header into
    // 4 KiB and left the rest of such a page to a second read from the socket.
    let page: Vec<u8> = (0..9_700u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut whole = format!(
        "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
        page.len()
    )
    .into_bytes();
    whole.extend_from_slice(&page);
    let (mut exchange, exporter) = asked(get("GET"), &[&whole], Then::StayOpen).await;
    // The answer is in the socket before the header is read.
    tokio::time::sleep(Duration::from_millis(20)).await;
    exchange.read_header().await.expect("header");
    let first = exchange
        .read_body(far())
        .await
        .expect("body")
        .map(<[u8]>::to_vec);
    let first = first.unwrap_or_default();
    assert_eq!(first.len(), page.len(), "the body came in pieces");
    assert!(first == page, "the body differs");
    assert!(exchange.is_body_done());
    let _theirs = exporter.await.expect("exporter");
}
