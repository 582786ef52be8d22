//! A client's request header, parsed from the bytes `header.rs` read whole: the header the
//! handlers see, how its body is framed, and whether the client keeps the connection.
//!
//! The rules are Pingora's HTTP/1 server's, which parsed requests here before (RFC 9112):
//! - a request target with bytes HTTP forbids (spaces, `"`, `<`, `>`, controls) is
//!   percent-encoded and parsed again, as Pingora does for clients that send them raw;
//! - `Transfer-Encoding` makes the body chunked, and must end with `chunked`; it is refused in
//!   HTTP/1.0; a `Content-Length` beside it is dropped and the connection closes afterwards;
//! - `Content-Length` values must be digits and agree;
//! - the authority is checked by Pingora's own `validate_request_authority` (one `Host`, no
//!   userinfo, the same authority in `Host` and an absolute-form target);
//! - HTTP/1.1 keeps the connection unless the client says `Connection: close`; HTTP/1.0 only
//!   with `Connection: keep-alive`.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::Version;
use percent_encoding::{percent_encode, AsciiSet, CONTROLS};
use pingora_core::protocols::http::authority::validate_request_authority;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::RequestHeader;

use crate::http1::body::{BodyState, ChunkState};
use crate::http1::framing::{self, span, FieldSpan, Framing};

/// The most header fields in a request, Pingora's limit.
pub const MAX_HEADERS: usize = 256;

/// Bytes of a request target that are percent-encoded before it is parsed again: those
/// Pingora encodes.
const TARGET_ESCAPES: &AsciiSet = &CONTROLS.add(b' ').add(b'<').add(b'>').add(b'"');

/// A request header as the handlers see it, and what it says of the rest of the connection.
#[derive(Debug)]
pub struct ParsedRequest {
    /// The header, field names in the client's spelling.
    pub header: Box<RequestHeader>,
    /// How the request's body is framed (`Done` when it has none).
    pub body: BodyState,
    /// Whether the client lets the connection carry another request.
    pub keep_alive: bool,
    /// The bytes read after the header: the body's first bytes, or pipelined requests.
    pub rest: BytesMut,
    /// The header's bytes as parsed (the client's, or with its target escaped); the header's
    /// fields are slices of them.
    pub raw: Bytes,
}

/// A request whose header the HTTP/1 rules refuse.
fn malformed(context: impl Into<String>) -> Box<Error> {
    Error::explain(ErrorType::InvalidHTTPHeader, context.into()).into_down()
}

/// Parses the request header at the start of `bytes`, which holds it whole (or bytes that
/// cannot be one: the error then says why).
pub fn parse(bytes: BytesMut) -> Result<ParsedRequest> {
    match parse_as_sent(bytes) {
        Err(Unparsed::Target(bytes, cause)) => match escape_target(&bytes) {
            Some(escaped) => parse_as_sent(escaped).map_err(Unparsed::into_error),
            None => Err(Unparsed::Target(bytes, cause).into_error()),
        },
        parsed => parsed.map_err(Unparsed::into_error),
    }
}

/// Why a header did not parse.
enum Unparsed {
    /// The request target or version has bytes HTTP forbids; the target may parse once
    /// escaped.
    Target(BytesMut, httparse::Error),
    /// Anything else.
    Refused(Box<Error>),
}

impl Unparsed {
    fn into_error(self) -> Box<Error> {
        match self {
            Unparsed::Target(_, cause) => Error::because(
                ErrorType::InvalidHTTPHeader,
                "the request line is not HTTP/1",
                cause,
            )
            .into_down(),
            Unparsed::Refused(e) => e,
        }
    }
}

impl From<Box<Error>> for Unparsed {
    fn from(e: Box<Error>) -> Self {
        Unparsed::Refused(e)
    }
}

/// Parses `bytes` as they are.
fn parse_as_sent(mut bytes: BytesMut) -> std::result::Result<ParsedRequest, Unparsed> {
    // Left uninitialised, as for answers: zeroing 256 fields costs more than the parse.
    let mut fields = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let length = match request.parse_with_uninit_headers(&bytes, &mut fields) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => {
            return Err(malformed("the request header is incomplete").into())
        }
        Err(e @ (httparse::Error::Token | httparse::Error::Version)) => {
            return Err(Unparsed::Target(bytes, e))
        }
        Err(e) => {
            return Err(Error::because(
                ErrorType::InvalidHTTPHeader,
                "the request header is not HTTP/1",
                e,
            )
            .into_down()
            .into())
        }
    };
    let framing = Framing::of(request.headers);
    let version = framing::version(request.version);
    let method = span(&bytes, request.method.unwrap_or_default().as_bytes());
    let target = span(&bytes, request.path.unwrap_or_default().as_bytes());
    let spans = FieldSpan::all(&bytes, request.headers);
    // A scrape has no body and pipelines nothing: then nothing is split off, and the buffer
    // stays one allocation.
    let rest = if length == bytes.len() {
        BytesMut::new()
    } else {
        bytes.split_off(length)
    };
    let raw = bytes.freeze();
    // httparse gave the method as a `str`: it is UTF-8.
    let method = std::str::from_utf8(&raw[method]).unwrap_or_default();
    // A target `http::Uri` cannot hold (a backtick, say) is refused here, as Pingora's
    // session refused it: the client's fault.
    let mut header = Box::new(
        RequestHeader::build(method, &raw[target], Some(spans.len())).map_err(|e| e.into_down())?,
    );
    header.set_version(version);
    for field in &spans {
        let (name, value) = field.of(&raw);
        header
            .append_header(name, value)
            .map_err(|e| e.into_down())?;
    }
    let mut keep_alive = framing.keeps_alive(version);
    let body = if framing.transfer_encoding {
        if version == Version::HTTP_10 {
            return Err(malformed("an HTTP/1.0 request cannot have a Transfer-Encoding").into());
        }
        if !framing.chunked {
            return Err(malformed("the request's last transfer coding is not chunked").into());
        }
        if header.remove_header(&CONTENT_LENGTH).is_some() {
            // RFC 9112 section 6.1: a request framed both ways closes its connection.
            keep_alive = false;
        }
        BodyState::Chunked(ChunkState::Size)
    } else {
        match framing.content_length {
            None | Some(Ok(0)) => BodyState::Done,
            Some(Ok(length)) => BodyState::Length(length),
            Some(Err(())) => {
                return Err(malformed(
                    "the request's Content-Length is not a number, or its values disagree",
                )
                .into())
            }
        }
    };
    validate_request_authority(&header).map_err(|e| e.into_down())?;
    Ok(ParsedRequest {
        header,
        body,
        keep_alive,
        rest,
        raw,
    })
}

/// `bytes` with the request target percent-encoded where HTTP forbids its bytes, when that
/// changes it: the target is what lies between the method and the last ` HTTP/` of the request
/// line.
fn escape_target(bytes: &[u8]) -> Option<BytesMut> {
    let line_end = bytes.iter().position(|b| *b == b'\n')?;
    let line = &bytes[..line_end];
    let method_end = line.iter().position(|b| *b == b' ')?;
    let version_start = line.windows(6).rposition(|w| w == b" HTTP/")?;
    if version_start <= method_end + 1 {
        return None;
    }
    let target = &bytes[method_end + 1..version_start];
    let mut escaped = BytesMut::with_capacity(bytes.len() + 32);
    escaped.extend_from_slice(&bytes[..=method_end]);
    for piece in percent_encode(target, TARGET_ESCAPES) {
        escaped.extend_from_slice(piece.as_bytes());
    }
    if escaped.len() == version_start {
        return None;
    }
    escaped.extend_from_slice(&bytes[version_start..]);
    Some(escaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(request: &str) -> Result<ParsedRequest> {
        parse(BytesMut::from(request.as_bytes()))
    }

    #[test]
    fn a_scrape_keeps_its_fields_in_order_and_spelling_and_has_no_body() {
        let r = parsed(
            "GET /metrics?target=a HTTP/1.1\r\nHost: tunnel\r\nAccept-Encoding: gzip\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n",
        )
        .expect("parsed");
        assert_eq!(r.header.method, http::Method::GET);
        assert_eq!(r.header.raw_path(), b"/metrics?target=a");
        assert_eq!(r.header.version, Version::HTTP_11);
        let mut wire = Vec::new();
        r.header.header_to_h1_wire(&mut wire);
        assert_eq!(
            wire,
            b"Host: tunnel\r\nAccept-Encoding: gzip\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n"
        );
        assert_eq!(r.body, BodyState::Done);
        assert!(r.keep_alive);
        assert!(r.rest.is_empty());
    }

    #[test]
    fn bytes_after_the_header_are_kept_for_the_body_or_the_next_request() {
        let r = parsed(
            "POST /push HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1",
        )
        .expect("parsed");
        assert_eq!(r.body, BodyState::Length(5));
        assert_eq!(&r.rest[..], b"helloGET / HTTP/1.1");
    }

    #[test]
    fn keep_alive_follows_the_version_and_the_connection_field() {
        let keep = |request: &str| parsed(request).expect("parsed").keep_alive;
        assert!(keep("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(!keep(
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        ));
        assert!(!keep("GET / HTTP/1.0\r\n\r\n"));
        assert!(keep("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    }

    #[test]
    fn a_target_with_forbidden_bytes_is_escaped_as_pingora_does() {
        let r = parsed("GET /a b\"c HTTP/1.1\r\nHost: a\r\n\r\n").expect("parsed");
        assert_eq!(r.header.raw_path(), b"/a%20b%22c");
        assert!(parsed("GET /a\x01 HTTP/1.1\r\n\r\n").is_ok());
    }

    #[test]
    fn ambiguous_framing_and_authority_are_refused_with_what_was_wrong() {
        for (request, why) in [
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                "Content-Length",
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n",
                "Content-Length",
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
                "chunked",
            ),
            (
                "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                "HTTP/1.0",
            ),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "Host"),
            ("GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n", "Host"),
            ("\x16\x03\x01garbage\r\n\r\n", "not HTTP/1"),
        ] {
            let e = parsed(request).expect_err(request);
            assert_eq!(
                e.esource(),
                &pingora_error::ErrorSource::Downstream,
                "{request}"
            );
            assert!(format!("{e}").contains(why), "{request}: {e}");
        }
    }

    #[test]
    fn chunked_beside_a_length_drops_the_length_and_closes_afterwards() {
        let r = parsed(
            "POST /push HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .expect("parsed");
        assert_eq!(r.body, BodyState::Chunked(ChunkState::Size));
        assert!(r.header.headers.get(CONTENT_LENGTH).is_none());
        assert!(!r.keep_alive);
    }
}
