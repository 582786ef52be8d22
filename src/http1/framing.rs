//! What a message's header says: how its body is framed and whether its connection may be kept,
//! read from the parsed fields in one pass; and an exporter's answer header built for the client
//! from the same bytes.

use std::ops::Range;

use bytes::Bytes;
use http::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::Version;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;

/// How a header frames its body, read from its fields in one pass.
#[derive(Debug, Default)]
pub struct Framing {
    /// Any `Transfer-Encoding` field.
    pub transfer_encoding: bool,
    /// The last transfer coding is `chunked`.
    pub chunked: bool,
    /// The body's length; `Err` when the `Content-Length` fields are invalid or disagree.
    pub content_length: Option<Result<u64, ()>>,
    /// `Connection: keep-alive`.
    pub keep_alive: bool,
    /// `Connection: close`.
    pub close: bool,
}

impl Framing {
    /// What the parsed `fields` of a header say.
    pub fn of(fields: &[httparse::Header<'_>]) -> Self {
        let mut framing = Framing::default();
        for field in fields {
            let name = field.name.as_bytes();
            if name.eq_ignore_ascii_case(CONTENT_LENGTH.as_str().as_bytes()) {
                framing.content_length = Some(content_length(
                    field.value,
                    framing.content_length.unwrap_or(Ok(u64::MAX)),
                ));
            } else if name.eq_ignore_ascii_case(TRANSFER_ENCODING.as_str().as_bytes()) {
                framing.transfer_encoding = true;
                // Only the last coding of the last field counts.
                let last = field.value.rsplit(|b| *b == b',').next().unwrap_or(b"");
                framing.chunked = last.trim_ascii().eq_ignore_ascii_case(b"chunked");
            } else if name.eq_ignore_ascii_case(CONNECTION.as_str().as_bytes()) {
                for token in field.value.split(|b| *b == b',') {
                    let token = token.trim_ascii();
                    framing.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                    framing.close |= token.eq_ignore_ascii_case(b"close");
                }
            }
        }
        framing
    }

    /// Whether the connection may carry another message after this one, sent in `version`:
    /// HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`, and
    /// never with `Transfer-Encoding` (RFC 9112 section 6.1).
    pub fn keeps_alive(&self, version: Version) -> bool {
        !self.close
            && match version {
                Version::HTTP_11 => true,
                _ => self.keep_alive && !self.transfer_encoding,
            }
    }
}

/// The version httparse parsed (`HTTP/1.<minor>`).
pub fn version(minor: Option<u8>) -> Version {
    match minor {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    }
}

/// One `Content-Length` value, checked as [`Framing::of`] checks them (digits; a
/// comma-separated list must agree).
pub fn length_of(value: &[u8]) -> Option<u64> {
    content_length(value, Ok(u64::MAX)).ok()
}

/// A `Content-Length` value reconciled with the ones before it (`u64::MAX`: none yet): every
/// comma-separated value must be digits, and all must agree (RFC 9110 section 8.6).
fn content_length(value: &[u8], before: Result<u64, ()>) -> Result<u64, ()> {
    let mut agreed = before?;
    for part in value.split(|b| *b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return Err(());
        }
        let n = std::str::from_utf8(part)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|n| *n != u64::MAX)
            .ok_or(())?;
        if agreed != u64::MAX && agreed != n {
            return Err(());
        }
        agreed = n;
    }
    Ok(agreed)
}

/// Where a header field's name and value lie in the header's bytes.
#[derive(Debug)]
pub struct FieldSpan {
    /// The field's name.
    pub name: Range<usize>,
    /// The field's value.
    pub value: Range<usize>,
}

impl FieldSpan {
    /// Where each of `fields`, parsed from `buf`, lies in it.
    pub fn all(buf: &[u8], fields: &[httparse::Header<'_>]) -> Vec<FieldSpan> {
        fields
            .iter()
            .map(|f| FieldSpan {
                name: span(buf, f.name.as_bytes()),
                value: span(buf, f.value),
            })
            .collect()
    }

    /// The field's name and value, sharing `raw`'s bytes (the buffer it was parsed from).
    pub fn of(&self, raw: &Bytes) -> (Bytes, HeaderValue) {
        let name = raw.slice(self.name.clone());
        let value = pingora_http::header_value_from_raw(raw.slice(self.value.clone()));
        (name, value)
    }
}

/// Where `part`, a slice of `buf`, lies in it. Only for what httparse takes from the buffer (a
/// method, a target, a field): its reason phrase may be a constant apart from it (`head.rs`).
pub fn span(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    start..start + part.len()
}

/// The response header for the client from the parsed reason phrase and fields at `reason`
/// and `spans` of `raw`, their names' case kept.
pub fn build_header(
    code: u16,
    version: Option<u8>,
    reason: Option<Range<usize>>,
    raw: &Bytes,
    spans: &[FieldSpan],
    transfer_encoding: bool,
) -> Result<Box<ResponseHeader>> {
    let invalid = |e: Box<Error>| {
        Error::because(
            ErrorType::InvalidHTTPHeader,
            "the exporter's response header is not valid",
            e,
        )
        .into_up()
    };
    let mut header = Box::new(ResponseHeader::build(code, Some(spans.len())).map_err(invalid)?);
    header.set_version(self::version(version));
    // httparse gave the phrase as a `str`: it is UTF-8.
    let reason = reason.and_then(|r| std::str::from_utf8(&raw[r]).ok());
    header.set_reason_phrase(reason).map_err(invalid)?;
    for field in spans {
        let (name, value) = field.of(raw);
        header.append_header(name, value).map_err(invalid)?;
    }
    if transfer_encoding {
        // RFC 9112 section 6.3: Transfer-Encoding overrides Content-Length, which must go.
        header.remove_header(&CONTENT_LENGTH);
    }
    Ok(header)
}
