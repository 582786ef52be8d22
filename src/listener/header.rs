//! Reading a client's request header, bounded in size and time, before Pingora parses it.
//!
//! Pingora's HTTP/1 server reads a header into a 4 KiB buffer allocated before the first byte
//! comes, lets it grow to 1 MiB, and gives each read its own timeout. The tunnel reads the
//! header itself instead: an idle connection holds no buffer (the first bytes land on the
//! stack), a header may grow to [`MAX_REQUEST_HEADER_BYTES`] (a scrape's is a few hundred
//! bytes; a longer one is answered 431, long URI or long field alike), and one deadline covers
//! it all. The bytes are then handed to Pingora's session as its first read, which parses them
//! without reading the socket again.

use std::pin::Pin;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::{timeout_at, Instant, Sleep};

/// The largest request header accepted, request line included (HAProxy's and nginx's default
/// buffers are of this order). Larger ones are answered 431 and never reach the exporter.
pub const MAX_REQUEST_HEADER_BYTES: usize = 16 * 1024;

/// Bytes read into the stack while waiting for a request; a scrape's header fits.
const FIRST_READ_BYTES: usize = 1024;

/// Headers the early syntax check makes room for (Pingora's limit).
const MAX_HEADERS: usize = 256;

/// Why no request header could be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderFailure {
    /// Nothing arrived in time.
    Idle,
    /// The client closed the connection before sending anything (or after its last request).
    Closed,
    /// Part of a header arrived, the rest not before the deadline: 408.
    Timeout,
    /// The client closed (or reset) the connection mid-header.
    ClosedMidHeader,
    /// The header grew past [`MAX_REQUEST_HEADER_BYTES`]: 431.
    TooLarge,
}

impl HeaderFailure {
    /// Whether part of a request had arrived, which makes it a request to count.
    pub fn is_partial_request(self) -> bool {
        !matches!(self, HeaderFailure::Idle | HeaderFailure::Closed)
    }
}

/// Waits until `idle` expires for the first bytes of a request; only then is a buffer
/// allocated. `idle` is the connection's own timer, pushed later for each wait (which takes
/// tokio no lock, where a timer made for each wait took two: one to arm, one to drop).
pub async fn first_bytes<S: AsyncRead + Unpin>(
    stream: &mut S,
    idle: Pin<&mut Sleep>,
) -> Result<BytesMut, HeaderFailure> {
    let mut first = [0u8; FIRST_READ_BYTES];
    let read = tokio::select! {
        biased;
        read = stream.read(&mut first) => read,
        () = idle => return Err(HeaderFailure::Idle),
    };
    match read {
        Ok(0) | Err(_) => Err(HeaderFailure::Closed),
        // A buffer of the bytes' size: a header that came whole is parsed from it and its fields
        // share it (`last_request.rs` keeps them while the connection idles); one still
        // arriving grows it in `rest_of_header`.
        Ok(n) => Ok(BytesMut::from(&first[..n])),
    }
}

/// When the rest of a request's header must have arrived by.
#[derive(Debug, Clone, Copy)]
pub enum HeaderDeadline {
    /// A fixed instant: a connection's first request, whose time runs from the accept.
    At(Instant),
    /// This long after its first bytes, counted from the first read it needs beyond them: a
    /// header that came whole in one read, as a scrape's does, reads no clock for it.
    After(std::time::Duration),
}

/// Reads on until `buf` holds a whole header, or bytes that cannot be one (which go to the
/// parser for its reason), within `deadline`.
pub async fn rest_of_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    mut buf: BytesMut,
    mut deadline: HeaderDeadline,
) -> Result<BytesMut, HeaderFailure> {
    let mut scanned = 0;
    loop {
        if header_end(&buf, scanned).is_some() || cannot_be_a_header(&buf) {
            return Ok(buf);
        }
        if buf.len() > MAX_REQUEST_HEADER_BYTES {
            return Err(HeaderFailure::TooLarge);
        }
        // A header end may straddle two reads.
        scanned = buf.len().saturating_sub(2);
        buf.reserve(FIRST_READ_BYTES);
        let until = match deadline {
            HeaderDeadline::At(until) => until,
            HeaderDeadline::After(limit) => Instant::now() + limit,
        };
        deadline = HeaderDeadline::At(until);
        match timeout_at(until, stream.read_buf(&mut buf)).await {
            Err(_) => return Err(HeaderFailure::Timeout),
            Ok(Ok(0) | Err(_)) => return Err(HeaderFailure::ClosedMidHeader),
            Ok(Ok(_)) => {}
        }
    }
}

/// Where the blank line that ends a header is, looking from `from` on. Line ends may be CRLF
/// or a bare LF, as the parser accepts both.
fn header_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(i) = buf[at..].iter().position(|b| *b == b'\n') {
        let lf = at + i;
        match &buf[lf + 1..] {
            [b'\n', ..] => return Some(lf + 2),
            [b'\r', b'\n', ..] => return Some(lf + 3),
            _ => at = lf + 1,
        }
    }
    None
}

/// The longest method waited for; every HTTP method is far shorter.
const MAX_METHOD_BYTES: usize = 32;

/// Whether the bytes so far are already not the start of an HTTP/1 request. An error in the
/// request target or version is not final while the header is incomplete (Pingora escapes some
/// targets once the header is whole); one in the method, or after the request line, is.
fn cannot_be_a_header(buf: &[u8]) -> bool {
    let method_end = buf.iter().position(|b| *b == b' ');
    let method = &buf[..method_end.unwrap_or(buf.len())];
    if !method.iter().all(|b| is_tchar(*b))
        || method.len() > MAX_METHOD_BYTES
        || method_end == Some(0)
    {
        return true;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::Request::new(&mut headers).parse(buf) {
        Ok(_) => false,
        Err(httparse::Error::Token | httparse::Error::Version) => false,
        Err(_) => true,
    }
}

/// RFC 9110's token characters, of which a method is made.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::runtime;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn header_ends_with_crlf_or_bare_lf() {
        assert_eq!(
            header_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest", 0),
            Some(27)
        );
        assert_eq!(header_end(b"GET / HTTP/1.1\nHost: a\n\nrest", 0), Some(24));
        assert_eq!(header_end(b"GET / HTTP/1.1\r\nHost: a\r\n", 0), None);
        assert_eq!(header_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r", 0), None);
    }

    #[test]
    fn a_header_split_over_reads_is_read_whole_and_no_further() {
        runtime().block_on(async {
            let (mut client, mut server) = tokio::io::duplex(64);
            let writer = tokio::spawn(async move {
                for part in [
                    &b"GET /metrics HT"[..],
                    b"TP/1.1\r\nHost: a\r",
                    b"\n\r\nGET /next",
                ] {
                    client.write_all(part).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                client
            });
            let first = first_bytes(
                &mut server,
                std::pin::pin!(tokio::time::sleep(Duration::from_secs(1))),
            )
            .await
            .unwrap();
            let deadline = Instant::now() + Duration::from_secs(1);
            let header = rest_of_header(&mut server, first, HeaderDeadline::At(deadline))
                .await
                .unwrap();
            assert!(header.starts_with(b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n"));
            drop(writer.await.unwrap());
        });
    }

    #[test]
    fn too_large_too_slow_and_not_http_are_told_apart() {
        runtime().block_on(async {
            let (mut client, mut server) = tokio::io::duplex(64 * 1024);
            let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_REQUEST_HEADER_BYTES));
            client.write_all(long.as_bytes()).await.unwrap();
            let first = first_bytes(
                &mut server,
                std::pin::pin!(tokio::time::sleep(Duration::from_secs(1))),
            )
            .await
            .unwrap();
            let deadline = Instant::now() + Duration::from_secs(1);
            assert_eq!(
                rest_of_header(&mut server, first, HeaderDeadline::At(deadline)).await,
                Err(HeaderFailure::TooLarge)
            );

            let (mut client, mut server) = tokio::io::duplex(1024);
            client
                .write_all(b"GET / HTTP/1.1\r\nX-Slow: ")
                .await
                .unwrap();
            let first = first_bytes(
                &mut server,
                std::pin::pin!(tokio::time::sleep(Duration::from_secs(1))),
            )
            .await
            .unwrap();
            // Counted from the read that waits: a later request's deadline.
            let limit = HeaderDeadline::After(Duration::from_millis(50));
            assert_eq!(
                rest_of_header(&mut server, first, limit).await,
                Err(HeaderFailure::Timeout)
            );
            drop(client);

            let (mut client, mut server) = tokio::io::duplex(1024);
            client.write_all(b"\x00\x01garbage").await.unwrap();
            let first = first_bytes(
                &mut server,
                std::pin::pin!(tokio::time::sleep(Duration::from_secs(1))),
            )
            .await
            .unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            let started = Instant::now();
            let bytes = rest_of_header(&mut server, first, HeaderDeadline::At(deadline))
                .await
                .unwrap();
            assert_eq!(
                &bytes[..],
                b"\x00\x01garbage",
                "handed on for the parser's reason"
            );
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "without waiting"
            );
            drop(client);

            let (client, mut server) = tokio::io::duplex(1024);
            drop(client);
            assert_eq!(
                first_bytes(
                    &mut server,
                    std::pin::pin!(tokio::time::sleep(Duration::from_secs(1)))
                )
                .await,
                Err(HeaderFailure::Closed)
            );
        });
    }
}
