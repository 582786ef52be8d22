//! The answer to a client's request, written: its header held until the first piece of body,
//! then both in one `writev`; the body framed as the header says.

use std::future::Future;
use std::io::IoSlice;
use std::os::fd::OwnedFd;
use std::task::Poll;

use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::{Method, StatusCode};
use pingora_core::protocols::http::date::get_cached_date;
use pingora_error::{Error, ErrorType, OrErr, Result};
use pingora_http::ResponseHeader;
use tokio::io::AsyncWriteExt;

use super::{AnswerBody, ClientExchange};
use crate::http1::framing::length_of;
use crate::http1::head::ExporterHead;
use crate::http1::splice::plain_socket;
use crate::listener::client_stream::ClientStream;

impl ClientExchange {
    /// Writes the answer's header (held until the first piece of body, or the end): for the
    /// tunnel's own answers (errors, pages).
    pub async fn write_response_header(&mut self, mut header: Box<ResponseHeader>) -> Result<()> {
        let length = header
            .headers
            .get(CONTENT_LENGTH)
            .map(|value| length_of(value.as_bytes()));
        self.frame_answer(
            header.status,
            header.headers.contains_key(TRANSFER_ENCODING),
            length,
        )?;
        if !header.headers.contains_key(DATE) {
            header.insert_header(DATE, get_cached_date())?;
        }
        header.remove_header("keep-alive");
        header.remove_header(&CONNECTION);
        let head = self.start_head(
            header.status,
            header.get_reason_phrase().unwrap_or("").as_bytes(),
        );
        header.header_to_h1_wire(head);
        self.end_head();
        Ok(())
    }

    /// Writes an exporter's answer header (held until the first piece of body, or the end):
    /// its own bytes, field by field, but for those about its connection (`head.rs`).
    pub async fn write_exporter_head(&mut self, exporter: &ExporterHead) -> Result<()> {
        self.frame_answer(
            exporter.status(),
            exporter.transfer_encoding(),
            exporter.content_length(),
        )?;
        let head = self.start_head(exporter.status(), exporter.reason());
        for (name, value) in exporter.end_to_end_fields() {
            head.extend_from_slice(name);
            head.extend_from_slice(b": ");
            head.extend_from_slice(value);
            head.extend_from_slice(b"\r\n");
        }
        if exporter.adds_chunked() {
            head.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        }
        if !exporter.has_date() {
            head.extend_from_slice(b"Date: ");
            head.extend_from_slice(get_cached_date().as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        self.end_head();
        Ok(())
    }

    /// Decides how the answer's body is framed from its `status`, whether it has a
    /// `Transfer-Encoding`, and its `Content-Length` (`Some(None)`: not a number); and whether
    /// the connection may then be kept.
    fn frame_answer(
        &mut self,
        status: StatusCode,
        transfer_encoding: bool,
        content_length: Option<Option<u64>>,
    ) -> Result<()> {
        if self.answer_body != AnswerBody::NotStarted {
            return Err(Error::explain(
                ErrorType::InternalError,
                "the answer's header was already written",
            ));
        }
        self.answer_body =
            if self.request.method == Method::HEAD || matches!(status.as_u16(), 204 | 304) {
                AnswerBody::Done
            } else if transfer_encoding {
                AnswerBody::Chunked
            } else {
                match content_length {
                    Some(Some(0)) => AnswerBody::Done,
                    Some(Some(length)) => AnswerBody::Length(length),
                    Some(None) => {
                        return Err(Error::explain(
                            ErrorType::InternalError,
                            "the answer's Content-Length is not a number",
                        ))
                    }
                    None => {
                        // Its end is the connection's.
                        self.keep_alive = false;
                        AnswerBody::UntilClose
                    }
                }
            };
        if !self.is_body_done() {
            // A body left unread (a refused request) would have to be read past before the
            // next request: not worth it, and unbounded.
            self.keep_alive = false;
        }
        self.answer_status = Some(status);
        Ok(())
    }

    /// The held header, started with its status line (always HTTP/1.1: the version of an
    /// answer is its sender's), for the fields to be appended.
    fn start_head(&mut self, status: StatusCode, reason: &[u8]) -> &mut Vec<u8> {
        let head = &mut self.unsent_head;
        head.clear();
        head.reserve(512);
        head.extend_from_slice(b"HTTP/1.1 ");
        head.extend_from_slice(status.as_str().as_bytes());
        head.push(b' ');
        head.extend_from_slice(reason);
        head.extend_from_slice(b"\r\n");
        head
    }

    /// Ends the held header with the tunnel's own `Connection` (the exporter's `Connection`
    /// and `Keep-Alive` were about its connection, and are not sent).
    fn end_head(&mut self) {
        let connection: &[u8] = if self.keep_alive {
            b"Connection: keep-alive\r\n\r\n"
        } else {
            b"Connection: close\r\n\r\n"
        };
        self.unsent_head.extend_from_slice(connection);
    }

    /// Writes a piece of the answer's body, framed as its header says; bytes past a
    /// `Content-Length` are dropped.
    pub async fn write_body(&mut self, piece: &[u8]) -> Result<()> {
        match self.answer_body {
            AnswerBody::NotStarted => Err(Error::explain(
                ErrorType::InternalError,
                "the answer's body was written before its header",
            )),
            AnswerBody::Done => Ok(()),
            AnswerBody::Length(left) => {
                let n = piece.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                self.send(&[&piece[..n]]).await?;
                self.body_bytes_sent += n;
                let left = left - n as u64;
                self.answer_body = if left == 0 {
                    AnswerBody::Done
                } else {
                    AnswerBody::Length(left)
                };
                Ok(())
            }
            AnswerBody::Chunked if piece.is_empty() => Ok(()),
            AnswerBody::Chunked => {
                let mut size = [0u8; 18];
                let size = chunk_size_line(piece.len(), &mut size);
                self.send(&[size, piece, b"\r\n"]).await?;
                self.body_bytes_sent += piece.len();
                Ok(())
            }
            AnswerBody::UntilClose => {
                self.send(&[piece]).await?;
                self.body_bytes_sent += piece.len();
                Ok(())
            }
        }
    }

    /// Ends the answer: the header if it is still held, the last chunk, and everything
    /// gathered, sent. A body shorter than its `Content-Length` is an error (and the
    /// connection is not kept).
    pub async fn finish_body(&mut self) -> Result<()> {
        let end: &[u8] = match self.answer_body {
            AnswerBody::NotStarted => {
                return Err(Error::explain(
                    ErrorType::InternalError,
                    "the answer was ended before its header was written",
                ))
            }
            AnswerBody::Length(left) => {
                self.keep_alive = false;
                self.answer_body = AnswerBody::Done;
                return Err(Error::explain(
                    ErrorType::WriteError,
                    format!("the answer ended with {left} bytes of its Content-Length unwritten"),
                )
                .into_down());
            }
            AnswerBody::Chunked => b"0\r\n\r\n",
            AnswerBody::UntilClose | AnswerBody::Done => b"",
        };
        self.send(&[end]).await?;
        self.answer_body = AnswerBody::Done;
        self.flush().await
    }

    /// The client's socket (duplicated), to splice the rest of the answer's body into, with
    /// everything written so far sent: when the connection is plain TCP and the body has a
    /// known length of at least `length` still to be written.
    pub async fn splice_sink(&mut self, length: u64) -> Result<Option<OwnedFd>> {
        match self.answer_body {
            AnswerBody::Length(left) if left >= length => {}
            _ => return Ok(None),
        }
        let Some(socket) = (*self.stream)
            .as_any()
            .downcast_ref::<ClientStream>()
            .and_then(|plain| plain_socket(plain.inner()))
        else {
            return Ok(None);
        };
        self.send(&[]).await?;
        self.flush().await?;
        Ok(Some(socket))
    }

    /// Accounts `n` body bytes that were spliced to the client past the exchange.
    pub fn spliced(&mut self, n: u64) {
        if let AnswerBody::Length(left) = self.answer_body {
            let n = n.min(left);
            self.body_bytes_sent += usize::try_from(n).unwrap_or(usize::MAX);
            self.answer_body = if left == n {
                AnswerBody::Done
            } else {
                AnswerBody::Length(left - n)
            };
        }
    }

    /// Sends what the connection gathered, within the write timeout.
    async fn flush(&mut self) -> Result<()> {
        within(self.write_deadline, self.stream.flush())
            .await?
            .or_err(ErrorType::WriteError, "while sending the answer")
            .map_err(|e| e.into_down())
    }

    /// Writes the held header, if any, then `parts`, in as few system calls as the socket
    /// takes them, each call within the write timeout.
    pub(super) async fn send(&mut self, parts: &[&[u8]]) -> Result<()> {
        let mut slices = [IoSlice::new(&[]); 4];
        let mut count = 0;
        if !self.unsent_head.is_empty() {
            slices[0] = IoSlice::new(&self.unsent_head);
            count = 1;
        }
        for part in parts.iter().filter(|p| !p.is_empty()) {
            slices[count] = IoSlice::new(part);
            count += 1;
        }
        let mut left = &mut slices[..count];
        while !left.is_empty() {
            match within(self.write_deadline, self.stream.write_vectored(left)).await? {
                Ok(0) => {
                    return Err(Error::explain(
                        ErrorType::WriteError,
                        "the client's connection took no more bytes",
                    )
                    .into_down())
                }
                Ok(n) => IoSlice::advance_slices(&mut left, n),
                Err(e) => {
                    return Err(Error::because(
                        ErrorType::WriteError,
                        "while writing the answer",
                        e,
                    )
                    .into_down())
                }
            }
        }
        if !self.unsent_head.is_empty() {
            // Sent: released, so that a long body holds no header copy.
            self.unsent_head = Vec::new();
        }
        Ok(())
    }
}

/// `len` as a chunk-size line (hexadecimal, CRLF) in `buf`.
pub(super) fn chunk_size_line(len: usize, buf: &mut [u8; 18]) -> &[u8] {
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1) as usize;
    for (i, slot) in buf[..digits].iter_mut().enumerate() {
        let nibble = (len >> (4 * (digits - 1 - i))) & 0xf;
        *slot = b"0123456789ABCDEF"[nibble];
    }
    buf[digits] = b'\r';
    buf[digits + 1] = b'\n';
    &buf[..digits + 2]
}

/// The outcome of `write`, a write to the client, or a `WriteTimedout` error when the client
/// had not taken it by `deadline` (no deadline: as long as it takes). The timer is armed only
/// if the write cannot finish at once, which a scrape's writes mostly can: arming one takes
/// the runtime's timer lock.
async fn within<T>(
    deadline: Option<tokio::time::Instant>,
    write: impl Future<Output = std::io::Result<T>>,
) -> Result<std::io::Result<T>> {
    let mut write = std::pin::pin!(write);
    // One poll with the task's own context: a write left pending has registered its waker.
    if let Poll::Ready(done) = std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await
    {
        return Ok(done);
    }
    let Some(deadline) = deadline else {
        return Ok(write.await);
    };
    tokio::time::timeout_at(deadline, write).await.map_err(|_| {
        Error::explain(
            ErrorType::WriteTimedout,
            "the client took no bytes before the deadline",
        )
        .into_down()
    })
}
