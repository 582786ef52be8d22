//! An answer's body as it comes: by its length, until the connection closes, or unframed from
//! chunked encoding, handed on piece by piece from the exchange's read buffer.

use bytes::Buf;
use pingora_error::{Error, ErrorType, Result};
use tokio::time::Instant;

use super::{exporter_error, ExporterExchange, MAX_CHUNK_LINE};

/// Where an answer's body stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyState {
    /// The header is not read yet.
    Unknown,
    /// This many bytes of a body with a known length are still to come.
    Length(u64),
    /// The body ends when the exporter closes the connection.
    UntilClose,
    /// A chunked body, at this point of its framing.
    Chunked(ChunkState),
    /// The whole body has been handed on.
    Done,
}

/// Where a chunked body's framing stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChunkState {
    /// A chunk-size line is next.
    Size,
    /// This many bytes of the current chunk's data are still to come.
    Data(u64),
    /// The CRLF that ends a chunk's data is next.
    DataEnd,
    /// Trailer fields, up to the empty line that ends the body.
    Trailers,
}

impl ExporterExchange {
    /// The next piece of the body (without chunked framing), `None` once it is all handed on.
    /// A read from the socket that is not done by `until` fails with `ReadTimedout`; bytes
    /// already buffered are handed on without a timer. Not cancel-safe beyond what tokio's
    /// reads are: a cancelled exchange is dropped, not resumed.
    pub async fn read_body(&mut self, until: Instant) -> Result<Option<&[u8]>> {
        self.buf.advance(std::mem::take(&mut self.handed));
        loop {
            match self.body {
                BodyState::Done => return Ok(None),
                BodyState::Unknown => {
                    return Err(Error::explain(
                        ErrorType::InternalError,
                        "the body was read before the header",
                    ))
                }
                BodyState::Length(left) => {
                    if self.buf.is_empty() && self.read_body_bytes(until).await? == 0 {
                        return Err(exporter_error(
                            ErrorType::ConnectionClosed,
                            format!("the exporter closed the connection with {left} bytes of the body still to come"),
                        ));
                    }
                    let (n, left) = self.buffered_of(left);
                    self.body = if left == 0 {
                        BodyState::Done
                    } else {
                        BodyState::Length(left)
                    };
                    return Ok(Some(self.hand_on(n)));
                }
                BodyState::UntilClose => {
                    if self.buf.is_empty() && self.read_body_bytes(until).await? == 0 {
                        self.body = BodyState::Done;
                        return Ok(None);
                    }
                    let n = self.buf.len();
                    return Ok(Some(self.hand_on(n)));
                }
                BodyState::Chunked(ChunkState::Data(left)) => {
                    if self.buf.is_empty() {
                        self.read_chunked_bytes(until).await?;
                    }
                    let (n, left) = self.buffered_of(left);
                    self.body = BodyState::Chunked(if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    });
                    return Ok(Some(self.hand_on(n)));
                }
                BodyState::Chunked(state) => {
                    if !self.advance_chunk_framing(state)? {
                        self.read_chunked_bytes(until).await?;
                    }
                }
            }
        }
    }

    /// How many of the `left` bytes still to come are buffered, and how many remain after them.
    fn buffered_of(&self, left: u64) -> (usize, u64) {
        let n = self
            .buf
            .len()
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        (n, left - n as u64)
    }

    /// Marks the first `n` buffered bytes handed on and returns them.
    fn hand_on(&mut self, n: usize) -> &[u8] {
        self.handed = n;
        &self.buf[..n]
    }

    /// Parses the chunked framing (not data) at the front of the buffer; `false` when more
    /// bytes are needed first.
    fn advance_chunk_framing(&mut self, state: ChunkState) -> Result<bool> {
        let invalid = |what: &str| {
            exporter_error(
                ErrorType::InvalidHTTPHeader,
                format!("the exporter's chunked body is malformed: {what}"),
            )
        };
        match state {
            ChunkState::Size => match httparse::parse_chunk_size(&self.buf) {
                Ok(httparse::Status::Complete((used, size))) => {
                    self.buf.advance(used);
                    self.body = BodyState::Chunked(if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data(size)
                    });
                    Ok(true)
                }
                Ok(httparse::Status::Partial) if self.buf.len() > MAX_CHUNK_LINE => {
                    Err(invalid("a chunk-size line is too long"))
                }
                Ok(httparse::Status::Partial) => Ok(false),
                Err(_) => Err(invalid("a chunk size is not a hexadecimal number")),
            },
            ChunkState::DataEnd => {
                if self.buf.len() < 2 {
                    return Ok(false);
                }
                if &self.buf[..2] != b"\r\n" {
                    return Err(invalid("a chunk's data is longer than its size"));
                }
                self.buf.advance(2);
                self.body = BodyState::Chunked(ChunkState::Size);
                Ok(true)
            }
            ChunkState::Trailers => {
                let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") else {
                    if self.buf.len() > MAX_CHUNK_LINE {
                        return Err(invalid("a trailer field is too long"));
                    }
                    return Ok(false);
                };
                // Trailers are not passed on: the tunnel's answer to the client is complete
                // without them, and Prometheus reads none.
                self.buf.advance(end + 2);
                if end == 0 {
                    self.body = BodyState::Done;
                }
                Ok(true)
            }
            ChunkState::Data(_) => Ok(true),
        }
    }

    /// Reads more of a chunked body; the exporter closing the connection first is an error.
    async fn read_chunked_bytes(&mut self, until: Instant) -> Result<()> {
        if self.read_body_bytes(until).await? == 0 {
            return Err(exporter_error(
                ErrorType::ConnectionClosed,
                "the exporter closed the connection before its chunked body ended",
            ));
        }
        Ok(())
    }

    /// Reads more of the body into the buffer.
    async fn read_body_bytes(&mut self, until: Instant) -> Result<usize> {
        match tokio::time::timeout_at(until, self.fill()).await {
            Ok(read) => read.map_err(|e| {
                Error::because(ErrorType::ReadError, "while reading the body", e).into_up()
            }),
            Err(_) => Err(exporter_error(
                ErrorType::ReadTimedout,
                "the body was still arriving at the deadline",
            )),
        }
    }
}
