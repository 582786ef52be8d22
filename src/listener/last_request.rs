//! The last request header parsed on a connection, used again when the next request's header is
//! the same bytes: a Prometheus scrape loop sends one target the same request every time, and
//! parsing it into a header map (two maps, a URI, the authority check) and dropping it was a
//! sixth of a small scrape's instructions. The rules are `request.rs`'s; this only skips redoing
//! them on bytes they already accepted.

use bytes::{Bytes, BytesMut};
use pingora_error::Result;
use pingora_http::RequestHeader;

use super::request::{self, ParsedRequest};
use crate::http1::body::BodyState;

/// A header is kept only if the bytes it shares are about its own size, so that an idle
/// connection holds no read buffer through it (`header.rs` reads a header that arrives in one
/// piece into a buffer of its size).
const MOST_BYTES_KEPT: usize = 2 * 1024;

/// The last bodiless, kept-alive request header of a connection, while it idles.
#[derive(Default)]
pub struct LastRequest {
    /// The header's bytes, which its fields are slices of; empty when no header is kept.
    sent: Bytes,
    /// What they parsed to: taken while a request is served, given back after it. Only a
    /// request that keeps the connection is kept, so its keep-alive needs no record.
    header: Option<Box<RequestHeader>>,
}

impl LastRequest {
    /// The request whose header is at the start of `bytes` (whole): the last one again when
    /// `bytes` begin with its bytes, else parsed by `request::parse`.
    pub fn parse(&mut self, mut bytes: BytesMut) -> Result<ParsedRequest> {
        if let Some(header) = self.header.take() {
            // The same bytes up to the last header's blank line: the same header, ending at
            // the same place (its blank line is its first).
            if bytes.starts_with(&self.sent) {
                let rest = if bytes.len() == self.sent.len() {
                    BytesMut::new()
                } else {
                    bytes.split_off(self.sent.len())
                };
                return Ok(ParsedRequest {
                    header,
                    body: BodyState::Done,
                    keep_alive: true,
                    rest,
                    raw: self.sent.clone(),
                });
            }
        }
        let keepable = bytes.capacity() <= MOST_BYTES_KEPT;
        self.sent = Bytes::new();
        let parsed = request::parse(bytes)?;
        if keepable && parsed.body == BodyState::Done && parsed.keep_alive {
            // The header's own bytes, which its fields already hold: no copy. A target that
            // had to be escaped leaves them unlike what the client sends, so that request is
            // parsed each time, as before.
            self.sent = parsed.raw.clone();
        }
        Ok(parsed)
    }

    /// Keeps `header`, the one [`LastRequest::parse`] gave, for the next request, if its bytes
    /// were kept.
    pub fn give_back(&mut self, header: Box<RequestHeader>) {
        if !self.sent.is_empty() {
            self.header = Some(header);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(last: &mut LastRequest, bytes: &[u8]) -> ParsedRequest {
        last.parse(BytesMut::from(bytes)).expect("valid")
    }

    #[test]
    fn the_same_bytes_give_the_same_header_without_a_parse() {
        let mut last = LastRequest::default();
        let scrape = b"GET /metrics?target=a HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n";
        let mut first = parsed(&mut last, scrape);
        // Marked, which no parse would give: the header handed back is known again.
        first.header.insert_header("x-kept", "1").expect("field");
        last.give_back(first.header);
        // Pipelined bytes after it stay the next request's.
        let mut again = scrape.to_vec();
        again.extend_from_slice(b"GET /next");
        let second = parsed(&mut last, &again);
        assert!(second.header.headers.contains_key("x-kept"), "parsed again");
        assert_eq!(second.header.uri, "/metrics?target=a");
        assert!(second.keep_alive);
        assert_eq!(&second.rest[..], b"GET /next");
        last.give_back(second.header);

        // Any other byte: parsed afresh.
        let other = parsed(
            &mut last,
            b"GET /metrics?target=b HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n",
        );
        assert!(!other.header.headers.contains_key("x-kept"));
        assert_eq!(other.header.uri, "/metrics?target=b");
    }

    #[test]
    fn a_target_that_was_escaped_is_known_by_its_escaped_bytes() {
        let mut last = LastRequest::default();
        let sent = b"GET /metrics?a=b c HTTP/1.1\r\nHost: t\r\n\r\n";
        let mut first = parsed(&mut last, sent);
        assert_eq!(first.header.uri, "/metrics?a=b%20c");
        first.header.insert_header("x-kept", "1").expect("field");
        last.give_back(first.header);
        // The same bytes again are not the kept header's bytes (those are escaped): parsed.
        let again = parsed(&mut last, sent);
        assert!(!again.header.headers.contains_key("x-kept"));
        assert_eq!(again.header.uri, "/metrics?a=b%20c");
        let mut again = again;
        again.header.insert_header("x-kept", "1").expect("field");
        last.give_back(again.header);
        // The escaped bytes are the kept header's own: the same header.
        let escaped = parsed(
            &mut last,
            b"GET /metrics?a=b%20c HTTP/1.1\r\nHost: t\r\n\r\n",
        );
        assert!(escaped.header.headers.contains_key("x-kept"));
        assert_eq!(escaped.header.uri, "/metrics?a=b%20c");
    }

    #[test]
    fn requests_with_a_body_or_a_close_are_not_kept_nor_is_a_large_buffer() {
        let mut last = LastRequest::default();
        let push = parsed(
            &mut last,
            b"POST /push HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nok",
        );
        assert_eq!(push.body, BodyState::Length(2));
        last.give_back(push.header);
        assert!(last.header.is_none());

        let close = parsed(
            &mut last,
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        );
        assert!(!close.keep_alive);
        last.give_back(close.header);
        assert!(last.header.is_none());

        let mut large = BytesMut::with_capacity(16 * 1024);
        large.extend_from_slice(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        let held = last.parse(large).expect("valid");
        last.give_back(held.header);
        assert!(
            last.header.is_none(),
            "it would hold a 16 KiB buffer while idle"
        );
    }
}
