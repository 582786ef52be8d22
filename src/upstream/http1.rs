//! The tunnel's HTTP/1 client for scrapes: one bodiless request written to an exporter
//! connection, and the answer read from one buffer and handed on as it comes.
//!
//! Why not Pingora's client session (`pingora_core::protocols::http::v1::client`): Pingora's
//! connector leaves upstream streams unbuffered, and its session reads a response header into
//! 4 KiB, so a node_exporter page (about 10 KB gzip-compressed, what Prometheus asks for by
//! default) took two reads from the socket where HAProxy takes one; its header was then built
//! into a map that the proxy cloned for the client. Here the first read takes up to 64 KiB, the
//! header is parsed once (httparse, as Pingora does) and its bytes are what the client is sent
//! (`http1::head`), and the body is passed on from the same buffer. The measured difference is in
//! benches/README.md. The buffer exists only while a scrape is in flight (an idle connection
//! holds none), the same 64 KiB Pingora's body reader took.
//!
//! Framing follows RFC 9112 section 6.3, as Pingora's does: no body after HEAD, 204 and 304;
//! chunked when the last transfer coding is `chunked` (a `Content-Length` beside it is dropped);
//! then `Content-Length` (duplicates must agree); else the body ends when the exporter closes
//! the connection. Informational answers (1xx) are skipped; 101 is refused, since no scrape asks
//! to switch protocols. A connection is offered for reuse only when its answer was read whole,
//! nothing more arrived after it, and the exporter keeps it alive (HTTP/1.1 unless it says
//! `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`).

use std::os::fd::OwnedFd;

use bytes::{Buf, BufMut, BytesMut};
use http::{Method, Version};
use log::trace;
use pingora_core::protocols::Stream;
use pingora_error::{Error, ErrorType, OrErr, Result, RetryType};
use pingora_http::RequestHeader;
use tokio::io::AsyncWriteExt;

use crate::http1::body::{BodyReader, BodyState, ChunkState, READ_SIZE};
use crate::http1::framing::Framing;
use crate::http1::head::ExporterHead;
use crate::http1::splice::{plain_socket, SPLICE_MIN_BYTES};
use crate::http1::Sender;

/// The longest response header accepted, Pingora's limit.
const MAX_HEADER_BYTES: usize = 1024 * 1024 - 1;

/// One exporter connection carrying one scrape: the request, then the answer's header and body.
pub struct ExporterExchange {
    stream: Stream,
    /// The answer as read, header then body; the request is also serialised in its buffer.
    answer: BodyReader,
    /// Whether the request was HEAD, whose answer has no body whatever its header says.
    head: bool,
    /// Whether the exporter lets the connection carry another request.
    keep_alive: bool,
}

/// An error of the exporter's side of the exchange.
fn exporter_error(etype: ErrorType, context: impl Into<String>) -> Box<Error> {
    Sender::Exporter.error(etype, context)
}

/// The request line and header a scrape sends the exporter, written from the client's request.
/// The method is the client's: an answer to HEAD is read without a body.
pub trait ExporterRequest {
    /// Writes the request line, the header fields and the empty line that ends them to `buf`.
    fn write(&self, client: &RequestHeader, buf: &mut BytesMut) -> Result<()>;
}

/// A request built as a header of its own, then written: for requests rewritten in ways the
/// scrape path's direct writer does not cover (agent and replica hops).
impl<F> ExporterRequest for F
where
    F: Fn(&RequestHeader) -> Result<Box<RequestHeader>>,
{
    fn write(&self, client: &RequestHeader, buf: &mut BytesMut) -> Result<()> {
        let request = self(client)?;
        write_request_line(buf, &request.method, request.raw_path(), request.version)?;
        request.header_to_h1_wire(buf);
        buf.put_slice(b"\r\n");
        Ok(())
    }
}

/// Writes `METHOD PATH VERSION` and its line end, refusing what HTTP/1 cannot carry.
pub fn write_request_line(
    buf: &mut BytesMut,
    method: &Method,
    path: &[u8],
    version: Version,
) -> Result<()> {
    let version: &[u8] = match version {
        Version::HTTP_10 => b"HTTP/1.0",
        Version::HTTP_11 => b"HTTP/1.1",
        other => {
            return Err(Error::explain(
                ErrorType::InvalidHTTPHeader,
                format!("cannot send an {other:?} request on an HTTP/1 connection"),
            ))
        }
    };
    if path
        .iter()
        .any(|b| matches!(b, b'\0' | b'\r' | b'\n' | b' '))
    {
        return Err(Error::explain(
            ErrorType::InvalidHTTPHeader,
            "the request target holds a space, CR, LF or NUL, which HTTP/1 cannot carry",
        ));
    }
    buf.put_slice(method.as_str().as_bytes());
    buf.put_u8(b' ');
    buf.put_slice(path);
    buf.put_u8(b' ');
    buf.put_slice(version);
    buf.put_slice(b"\r\n");
    Ok(())
}

impl ExporterExchange {
    /// An exchange on `stream`, a new connection or one kept alive since an earlier scrape.
    pub fn new(stream: Stream) -> Self {
        ExporterExchange {
            stream,
            answer: BodyReader::new(Sender::Exporter, BytesMut::with_capacity(READ_SIZE)),
            head: false,
            keep_alive: false,
        }
    }

    /// Makes the request `request` writes for the client's `client` (bodiless), to be sent by
    /// [`ExporterExchange::send`]. Apart, so that sending does not hold the client's header.
    pub fn prepare(
        &mut self,
        request: &impl ExporterRequest,
        client: &RequestHeader,
    ) -> Result<()> {
        self.head = client.method == Method::HEAD;
        self.answer.buf.clear();
        request.write(client, &mut self.answer.buf)?;
        // Pingora's own line, which `logging::redact` masks the credentials of.
        trace!("Writing request header: {:?}", self.answer.buf);
        Ok(())
    }

    /// Sends the prepared request. Errors are marked retryable on a reused connection the
    /// exporter closed while it was idle, as Pingora marks them.
    pub async fn send(&mut self) -> Result<()> {
        let written = self.stream.write_all(&self.answer.buf).await;
        let written = match written {
            Ok(()) => self.stream.flush().await,
            Err(e) => Err(e),
        };
        self.answer.buf.clear();
        written.or_err(
            ErrorType::WriteError,
            "while writing the request to the exporter",
        )
    }

    /// Reads the final answer's header, skipping informational ones, and returns it as the
    /// client is to be sent it (a `Content-Length` beside `Transfer-Encoding` dropped).
    pub async fn read_header(&mut self) -> Result<ExporterHead> {
        loop {
            let (header, version) = self.read_one_header().await?;
            match header.status().as_u16() {
                101 => {
                    return Err(exporter_error(
                        ErrorType::H1Error,
                        "the exporter switched protocols, which no scrape asks for",
                    ))
                }
                100..=199 => continue,
                status => {
                    self.frame(header.framing(), version, status)?;
                    return Ok(header);
                }
            }
        }
    }

    /// Decides how the body of an answer with `status`, sent in `version`, is framed as
    /// `framing` says, and whether the connection may be kept.
    fn frame(&mut self, framing: &Framing, version: Version, status: u16) -> Result<()> {
        self.answer.state = if self.head || matches!(status, 204 | 304) {
            BodyState::Length(0)
        } else if framing.chunked {
            BodyState::Chunked(ChunkState::Size)
        } else if framing.transfer_encoding {
            BodyState::UntilClose
        } else {
            match framing.content_length {
                Some(Ok(length)) => BodyState::Length(length),
                Some(Err(())) => {
                    return Err(exporter_error(
                        ErrorType::InvalidHTTPHeader,
                        "the exporter's Content-Length is not a number, or its values disagree",
                    ))
                }
                None => BodyState::UntilClose,
            }
        };
        if self.answer.state == BodyState::Length(0) {
            self.answer.state = BodyState::Done;
        }
        // RFC 9112 section 6.1: an HTTP/1.0 answer with Transfer-Encoding closes its connection.
        self.keep_alive =
            self.answer.state != BodyState::UntilClose && framing.keeps_alive(version);
        Ok(())
    }

    /// Reads and parses one response header, informational or final, and the version it was
    /// sent in.
    async fn read_one_header(&mut self) -> Result<(ExporterHead, Version)> {
        let mut parse_first = !self.answer.buf.is_empty();
        loop {
            if parse_first {
                if let Some((header, version, length)) = ExporterHead::parse(&self.answer.buf)? {
                    self.answer.buf.advance(length);
                    return Ok((header, version));
                }
                if self.answer.buf.len() > MAX_HEADER_BYTES {
                    return Err(exporter_error(
                        ErrorType::InvalidHTTPHeader,
                        format!("the exporter's response header is over {MAX_HEADER_BYTES} bytes"),
                    ));
                }
            }
            let before = self.answer.buf.len();
            match self.answer.fill(&mut self.stream).await {
                Ok(0) => {
                    let mut e = exporter_error(
                        ErrorType::ConnectionClosed,
                        format!("the exporter closed the connection after {before} bytes of the response header"),
                    );
                    // A kept-alive connection the exporter closed while it was idle.
                    e.retry = RetryType::ReusedOnly;
                    return Err(e);
                }
                Ok(_) => parse_first = true,
                Err(e) => {
                    let io_error = e.raw_os_error().is_some();
                    let mut e = Error::because(
                        ErrorType::ReadError,
                        format!("while reading the response header, {before} bytes read"),
                        e,
                    )
                    .into_up();
                    // A reset of an idle connection; a TLS error is not safe to retry.
                    if io_error {
                        e.retry = RetryType::ReusedOnly;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// The next piece of the answer's body (without chunked framing), `None` once it is all
    /// handed on; a read from the socket not done by `until` fails with `ReadTimedout`.
    pub async fn read_body(&mut self, until: tokio::time::Instant) -> Result<Option<&[u8]>> {
        self.answer.read_body(&mut self.stream, until).await
    }

    /// The exporter's socket (duplicated) and the body bytes still to come on it, when the
    /// rest of the body can be spliced: a plain connection, a known length of at least
    /// [`SPLICE_MIN_BYTES`] still to come, and nothing of it buffered.
    pub fn splice_source(&mut self) -> Option<(OwnedFd, u64)> {
        self.answer.settle();
        let BodyState::Length(left) = self.answer.state else {
            return None;
        };
        if left < SPLICE_MIN_BYTES || !self.answer.buf.is_empty() {
            return None;
        }
        Some((plain_socket(&self.stream)?, left))
    }

    /// Accounts `n` body bytes that were spliced past the exchange.
    pub fn spliced(&mut self, n: u64) {
        if let BodyState::Length(left) = self.answer.state {
            let left = left.saturating_sub(n);
            self.answer.state = if left == 0 {
                BodyState::Done
            } else {
                BodyState::Length(left)
            };
        }
    }

    /// Whether the body ends only when the exporter closes the connection: such a body is sent
    /// on to the client chunked, so the client's connection stays open.
    pub fn body_until_close(&self) -> bool {
        self.answer.state == BodyState::UntilClose
    }

    /// Whether the whole body has been handed on.
    pub fn is_body_done(&self) -> bool {
        self.answer.state == BodyState::Done
    }

    /// The connection, if it can carry another scrape: the answer was read whole, nothing
    /// followed it, and the exporter keeps it alive. Otherwise it is closed.
    pub fn into_reusable(mut self) -> Option<Stream> {
        self.answer.settle();
        (self.keep_alive && self.answer.state == BodyState::Done && self.answer.buf.is_empty())
            .then_some(self.stream)
    }
}

#[cfg(test)]
mod tests;
