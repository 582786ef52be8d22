//! A message's body as it comes: by its length, until the connection closes, or unframed from
//! chunked encoding, handed on piece by piece from the one buffer its header was read into.

use bytes::{Buf, BytesMut};
use pingora_error::{Error, ErrorType, Result};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use super::Sender;

/// What one read from a peer may take: the whole of a typical page's answer, so that it arrives
/// in one system call; Pingora's body reads use the same size.
pub const READ_SIZE: usize = 64 * 1024;

/// The longest chunk-size line or trailer field accepted in a chunked body.
pub const MAX_CHUNK_LINE: usize = 4096;

/// Where a body stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyState {
    /// The header is not read yet.
    Unknown,
    /// This many bytes of a body with a known length are still to come.
    Length(u64),
    /// The body ends when the sender closes the connection (answers only).
    UntilClose,
    /// A chunked body, at this point of its framing.
    Chunked(ChunkState),
    /// The whole body has been handed on.
    Done,
}

/// Where a chunked body's framing stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkState {
    /// A chunk-size line is next.
    Size,
    /// This many bytes of the current chunk's data are still to come.
    Data(u64),
    /// The CRLF that ends a chunk's data is next.
    DataEnd,
    /// Trailer fields, up to the empty line that ends the body.
    Trailers,
}

/// A message's bytes as read from its sender: the header's (while it is parsed), then its
/// body's, handed on from the same buffer; and what follows the body (a pipelined request).
#[derive(Debug)]
pub struct BodyReader {
    /// Bytes read and not yet handed on.
    pub buf: BytesMut,
    /// Bytes at the front of `buf` handed on by the last [`BodyReader::read_body`], to drop at
    /// the next call (the caller held a slice of them until then).
    handed: usize,
    /// Where the body stands.
    pub state: BodyState,
    /// Whose message it is, for errors.
    sender: Sender,
}

impl BodyReader {
    /// A reader of `sender`'s message, starting with the bytes already read in `buf`.
    pub fn new(sender: Sender, buf: BytesMut) -> Self {
        BodyReader {
            buf,
            handed: 0,
            state: BodyState::Unknown,
            sender,
        }
    }

    /// Drops the bytes the last [`BodyReader::read_body`] handed on; `buf` then starts with
    /// what was not.
    pub fn settle(&mut self) {
        self.buf.advance(std::mem::take(&mut self.handed));
    }

    /// Reads more from `stream` into the buffer's free space; the number of bytes read, 0 when
    /// the sender closed the connection.
    pub async fn fill<S: AsyncRead + Unpin>(&mut self, stream: &mut S) -> std::io::Result<usize> {
        if self.buf.is_empty() {
            // Reclaims the whole allocation once every byte of it has been handed on.
            self.buf.clear();
        }
        if self.buf.capacity() - self.buf.len() < READ_SIZE / 4 {
            self.buf.reserve(READ_SIZE);
        }
        stream.read_buf(&mut self.buf).await
    }

    /// The next piece of the body (without chunked framing), `None` once it is all handed on.
    /// A read from `stream` that is not done by `until` fails with `ReadTimedout`; bytes
    /// already buffered are handed on without a timer. Not cancel-safe beyond what tokio's
    /// reads are: a cancelled exchange is dropped, not resumed.
    pub async fn read_body<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        until: Instant,
    ) -> Result<Option<&[u8]>> {
        self.settle();
        loop {
            match self.state {
                BodyState::Done => return Ok(None),
                BodyState::Unknown => {
                    return Err(Error::explain(
                        ErrorType::InternalError,
                        "the body was read before the header",
                    ))
                }
                BodyState::Length(left) => {
                    if self.buf.is_empty() && self.read_body_bytes(stream, until).await? == 0 {
                        return Err(self.sender.error(
                            ErrorType::ConnectionClosed,
                            format!("the {} closed the connection with {left} bytes of the body still to come", self.sender.name()),
                        ));
                    }
                    let (n, left) = self.buffered_of(left);
                    self.state = if left == 0 {
                        BodyState::Done
                    } else {
                        BodyState::Length(left)
                    };
                    return Ok(Some(self.hand_on(n)));
                }
                BodyState::UntilClose => {
                    if self.buf.is_empty() && self.read_body_bytes(stream, until).await? == 0 {
                        self.state = BodyState::Done;
                        return Ok(None);
                    }
                    let n = self.buf.len();
                    return Ok(Some(self.hand_on(n)));
                }
                BodyState::Chunked(ChunkState::Data(left)) => {
                    if self.buf.is_empty() {
                        self.read_chunked_bytes(stream, until).await?;
                    }
                    let (n, left) = self.buffered_of(left);
                    self.state = BodyState::Chunked(if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    });
                    return Ok(Some(self.hand_on(n)));
                }
                BodyState::Chunked(state) => {
                    if !self.advance_chunk_framing(state)? {
                        self.read_chunked_bytes(stream, until).await?;
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
        let sender = self.sender;
        let invalid = |what: &str| {
            sender.error(
                ErrorType::InvalidHTTPHeader,
                format!("the {}'s chunked body is malformed: {what}", sender.name()),
            )
        };
        match state {
            ChunkState::Size => match httparse::parse_chunk_size(&self.buf) {
                Ok(httparse::Status::Complete((used, size))) => {
                    self.buf.advance(used);
                    self.state = BodyState::Chunked(if size == 0 {
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
                self.state = BodyState::Chunked(ChunkState::Size);
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
                    self.state = BodyState::Done;
                }
                Ok(true)
            }
            ChunkState::Data(_) => Ok(true),
        }
    }

    /// Reads more of a chunked body; the sender closing the connection first is an error.
    async fn read_chunked_bytes<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        until: Instant,
    ) -> Result<()> {
        if self.read_body_bytes(stream, until).await? == 0 {
            return Err(self.sender.error(
                ErrorType::ConnectionClosed,
                format!(
                    "the {} closed the connection before its chunked body ended",
                    self.sender.name()
                ),
            ));
        }
        Ok(())
    }

    /// Reads more of the body into the buffer.
    async fn read_body_bytes<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        until: Instant,
    ) -> Result<usize> {
        let sender = self.sender;
        match tokio::time::timeout_at(until, self.fill(stream)).await {
            Ok(read) => read.map_err(|e| {
                sender.mark(Error::because(
                    ErrorType::ReadError,
                    "while reading the body",
                    e,
                ))
            }),
            Err(_) => Err(sender.error(
                ErrorType::ReadTimedout,
                "the body was still arriving at the deadline",
            )),
        }
    }
}
