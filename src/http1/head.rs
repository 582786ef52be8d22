//! An exporter's answer header as it arrived: its bytes, and where its status, reason phrase and
//! fields lie in them. An HTTP/1 client is sent these bytes, field by field, with only the
//! fields about the connection replaced; no header map is built on the way, which cost more per
//! scrape than parsing the header did (benches/README.md). A header map is built only for a
//! client that needs one (an HTTP/2 stream, in an agent).

use std::mem::MaybeUninit;
use std::ops::Range;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::{StatusCode, Version};
use pingora_error::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;

use super::framing::{build_header, version, FieldSpan, Framing};

/// A final answer's header from an exporter, as the client is to be sent it: the version is the
/// tunnel's (HTTP/1.1), a `Content-Length` beside `Transfer-Encoding` is dropped, and a body
/// that ends with the exporter's connection is re-framed as chunked when [`chunk_body`] is set.
///
/// [`chunk_body`]: ExporterHead::chunk_body
#[derive(Debug)]
pub struct ExporterHead {
    raw: Bytes,
    status: StatusCode,
    reason: Option<Range<usize>>,
    fields: Vec<FieldSpan>,
    framing: Framing,
    chunked_for_client: bool,
}

/// The most header fields in a response, Pingora's limit.
const MAX_HEADERS: usize = 256;

impl ExporterHead {
    /// The header at the start of `buf`, the version it was sent in and its length in bytes;
    /// `None` while it is incomplete. Parsed by httparse as Pingora parses answers (spaces
    /// after a field name and obsolete line folding allowed).
    pub fn parse(buf: &[u8]) -> Result<Option<(Self, Version, usize)>> {
        // Left uninitialised: zeroing 256 fields (8 KiB) per scrape cost more than the parse
        // itself.
        let mut fields = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        let mut parser = httparse::ParserConfig::default();
        parser.allow_spaces_after_header_name_in_responses(true);
        parser.allow_obsolete_multiline_headers_in_responses(true);
        let length =
            match parser.parse_response_with_uninit_headers(&mut response, buf, &mut fields) {
                Ok(httparse::Status::Complete(length)) => length,
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(e) => {
                    return Err(Error::because(
                        ErrorType::InvalidHTTPHeader,
                        "the exporter's answer is not an HTTP/1 response",
                        e,
                    )
                    .into_up())
                }
            };
        let framing = Framing::of(response.headers);
        let reason = reason_phrase(&buf[..length]);
        let spans = FieldSpan::all(buf, response.headers);
        // The header's few hundred bytes are copied out, rather than split off the read
        // buffer: a split would share that buffer with the header until it is sent, so a
        // large body's later reads would need a buffer of their own instead of reusing it.
        let raw = Bytes::copy_from_slice(&buf[..length]);
        let head = ExporterHead::new(
            raw,
            response.code.unwrap_or_default(),
            reason,
            spans,
            framing,
        )?;
        Ok(Some((head, version(response.version), length)))
    }

    /// The header whose bytes are `raw`, with the parsed `status`, `reason` phrase and
    /// `fields` at their places in `raw`, framed as `framing` says. Refuses a status outside
    /// 100-999.
    fn new(
        raw: Bytes,
        status: u16,
        reason: Option<Range<usize>>,
        fields: Vec<FieldSpan>,
        framing: Framing,
    ) -> Result<Self> {
        let status = StatusCode::from_u16(status).map_err(|e| {
            Error::because(
                ErrorType::InvalidHTTPHeader,
                format!("the exporter's status {status} is not a status code (100-999)"),
                e,
            )
            .into_up()
        })?;
        Ok(ExporterHead {
            raw,
            status,
            reason,
            fields,
            framing,
            chunked_for_client: false,
        })
    }

    /// The answer's status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// How the exporter framed the body, and what it said of its connection.
    pub fn framing(&self) -> &Framing {
        &self.framing
    }

    /// Whether the exporter sent a `Date`.
    pub fn has_date(&self) -> bool {
        self.fields
            .iter()
            .any(|f| self.raw[f.name.clone()].eq_ignore_ascii_case(DATE.as_str().as_bytes()))
    }

    /// Has the client sent the body chunked, where the exporter's ends with its connection and
    /// neither `Transfer-Encoding` nor `Content-Length` says so; the client's connection can
    /// then stay open (pingora-proxy does the same).
    pub fn chunk_body(&mut self) {
        self.chunked_for_client =
            !self.framing.transfer_encoding && self.framing.content_length.is_none();
    }

    /// Whether the client is sent a `Transfer-Encoding` (the exporter's, or chunked added).
    pub fn transfer_encoding(&self) -> bool {
        self.framing.transfer_encoding || self.chunked_for_client
    }

    /// The body's `Content-Length` as the client is sent it: none under `Transfer-Encoding`;
    /// `Some(None)` when the exporter's is invalid.
    pub fn content_length(&self) -> Option<Option<u64>> {
        if self.transfer_encoding() {
            return None;
        }
        self.framing.content_length.map(|length| length.ok())
    }

    /// The reason phrase, as sent (empty when there was none).
    pub fn reason(&self) -> &[u8] {
        self.reason.clone().map_or(&[], |r| &self.raw[r])
    }

    /// The fields the client is sent, each as `(name, value)` with the exporter's bytes:
    /// all but `Connection` and `Keep-Alive` (about the exporter's connection, which the client
    /// does not share), and `Content-Length` under `Transfer-Encoding`.
    pub fn end_to_end_fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let drop_length = self.transfer_encoding();
        self.fields.iter().filter_map(move |f| {
            let name = &self.raw[f.name.clone()];
            let hop = name.eq_ignore_ascii_case(CONNECTION.as_str().as_bytes())
                || name.eq_ignore_ascii_case(b"keep-alive")
                || (drop_length && name.eq_ignore_ascii_case(CONTENT_LENGTH.as_str().as_bytes()));
            (!hop).then(|| (name, &self.raw[f.value.clone()]))
        })
    }

    /// Whether the client's copy adds `Transfer-Encoding: chunked`.
    pub fn adds_chunked(&self) -> bool {
        self.chunked_for_client
    }

    /// The header as a header map, for a client that takes one (an HTTP/2 stream): the
    /// exporter's fields, HTTP/1.1, chunked added as [`ExporterHead::chunk_body`] says.
    pub fn to_response_header(&self) -> Result<Box<ResponseHeader>> {
        let mut header = build_header(
            self.status.as_u16(),
            // HTTP/1.1: the version of an answer is its sender's.
            Some(1),
            self.reason.clone(),
            &self.raw,
            &self.fields,
            self.framing.transfer_encoding,
        )?;
        if self.chunked_for_client {
            header.insert_header(TRANSFER_ENCODING, "chunked")?;
        }
        Ok(header)
    }
}

/// Where the reason phrase of a status line httparse accepted lies in `header`: what follows
/// `HTTP/1.x NNN ` up to the line's end. Read from the bytes, not from httparse's `reason`, which
/// is a constant empty string when the phrase holds obs-text (bytes 0x80-0xFF, which RFC 9112
/// allows there) and so lies in no buffer.
fn reason_phrase(header: &[u8]) -> Option<Range<usize>> {
    // "HTTP/1.1 200" is 12 bytes; then a space and the phrase, or the line's end.
    const PHRASE_START: usize = 13;
    let line_end = header.iter().position(|b| *b == b'\n')?;
    let line = header[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&header[..line_end]);
    (line.len() > PHRASE_START && line[PHRASE_START - 1] == b' ')
        .then_some(PHRASE_START..line.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reason phrase `raw`'s header is sent on with.
    fn reason_of(raw: &[u8]) -> Vec<u8> {
        let (head, _, length) = ExporterHead::parse(raw).expect("valid").expect("complete");
        assert_eq!(length, raw.len());
        head.reason().to_vec()
    }

    #[test]
    fn a_reason_phrase_goes_on_as_sent_obs_text_and_all() {
        // httparse gives a phrase with bytes over 0x7F as a constant "", outside the buffer:
        // taking its place in the buffer from that pointer panicked.
        assert_eq!(
            reason_of(b"HTTP/1.1 200 Gr\xfc\xdfe\r\n\r\n"),
            b"Gr\xfc\xdfe"
        );
        assert_eq!(reason_of(b"HTTP/1.1 200 All fine\r\n\r\n"), b"All fine");
        assert_eq!(reason_of(b"HTTP/1.1 200 \r\n\r\n"), b"");
        assert_eq!(reason_of(b"HTTP/1.1 200\r\n\r\n"), b"");
        assert_eq!(reason_of(b"HTTP/1.0 404 Not Found\n\n"), b"Not Found");
    }
}
