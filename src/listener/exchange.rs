//! One request on a client connection of the proxy (or poll) port: its header as the handlers
//! see it, its body, and the answer written back.
//!
//! Why not Pingora's HTTP/1 server session, which did this before: its answer header was
//! serialised into a buffer of its own, copied into the connection's write buffer, and the
//! body copied after it, so a node_exporter page was copied twice in user space before it left.
//! Here the answer's header is held until the first piece of body and both leave in one
//! `writev`, straight from the exporter's read buffer; an answer without a body leaves with
//! its header. The rules are Pingora's: `Date` and `Connection` set on every answer (an
//! exporter's `Date` is kept), no body after HEAD, 204 and 304, `Content-Length` bodies cut
//! at their length, chunked framing when the answer says `Transfer-Encoding`, and a connection
//! kept only when both ends allow it and the answer went out whole.

use std::net::IpAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderValue;
use http::StatusCode;
use log::debug;
use pingora_core::protocols::Stream;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::RequestHeader;
use tokio::io::AsyncReadExt;

mod answer;

use super::header::MAX_REQUEST_HEADER_BYTES;
use super::last_request::LastRequest;
use super::request::ParsedRequest;
use crate::http1::body::{BodyReader, BodyState};
use crate::http1::Sender;

/// How long a body read waits when no read timeout was set: as long as a connection may live.
const NO_READ_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// Where the answer's body stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AnswerBody {
    /// The header is not written yet.
    NotStarted,
    /// This many bytes of a body with a known length are still to be written.
    Length(u64),
    /// A chunked body, open.
    Chunked,
    /// A body that ends when the connection closes.
    UntilClose,
    /// Ended (written whole, or never to be written).
    Done,
}

/// One request on a client connection, and its answer.
pub struct ClientExchange {
    stream: Stream,
    request: Box<RequestHeader>,
    /// The request's body as it comes, then what follows it (a pipelined request).
    body: BodyReader,
    /// Whether the request's header announced a body.
    has_body: bool,
    /// Whether the connection may carry another request after this one.
    keep_alive: bool,
    /// How long each read of the request body may wait.
    read_timeout: Option<Duration>,
    /// When the client must have taken the answer's bytes by.
    write_deadline: Option<tokio::time::Instant>,
    /// The answer's status, once its header is written.
    answer_status: Option<StatusCode>,
    /// The answer's header serialised and not yet sent: it leaves with the first piece of
    /// body (or alone, at the end).
    unsent_head: Vec<u8>,
    answer_body: AnswerBody,
    /// Bytes of the answer's body written (without framing).
    body_bytes_sent: usize,
}

impl ClientExchange {
    /// The request whose header `bytes` holds whole (and maybe what followed it), read from
    /// `stream`; or, when the header is refused, the stream back with why. The header is
    /// `last`'s again when it is the same bytes.
    pub fn new(
        stream: Stream,
        bytes: BytesMut,
        last: &mut LastRequest,
    ) -> std::result::Result<Self, (Stream, Box<Error>)> {
        let ParsedRequest {
            header,
            body,
            keep_alive,
            rest,
            ..
        } = match last.parse(bytes) {
            Ok(parsed) => parsed,
            Err(e) => return Err((stream, e)),
        };
        let mut reader = BodyReader::new(Sender::Client, rest);
        reader.state = body;
        Ok(ClientExchange {
            stream,
            request: header,
            body: reader,
            has_body: body != BodyState::Done,
            keep_alive,
            read_timeout: None,
            write_deadline: None,
            answer_status: None,
            unsent_head: Vec::new(),
            answer_body: AnswerBody::NotStarted,
            body_bytes_sent: 0,
        })
    }

    /// The request's header.
    pub fn req_header(&self) -> &RequestHeader {
        &self.request
    }

    /// The request's first field named `name`.
    pub fn get_header(&self, name: impl http::header::AsHeaderName) -> Option<&HeaderValue> {
        self.request.headers.get(name)
    }

    /// The client's IP address (none on a Unix socket).
    pub fn client_ip(&self) -> Option<IpAddr> {
        let digest = self.stream.get_socket_digest()?;
        digest.peer_addr()?.as_inet().map(|addr| addr.ip())
    }

    /// The connection (for its TLS session).
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// Closes the connection once this answer is written.
    pub fn close_after_answer(&mut self) {
        self.keep_alive = false;
    }

    /// Limits each read of the request body that follows.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.read_timeout = timeout;
    }

    /// Fails each write of the answer that follows that the client has not taken by
    /// `deadline`: a deadline rather than a duration, so that setting it reads no clock.
    pub fn set_write_deadline(&mut self, deadline: Option<tokio::time::Instant>) {
        self.write_deadline = deadline;
    }

    /// Whether the request came without a body.
    pub fn is_body_empty(&self) -> bool {
        !self.has_body
    }

    /// Whether the request's body has all been read.
    pub fn is_body_done(&self) -> bool {
        self.body.state == BodyState::Done
    }

    /// The next piece of the request's body, `None` once it has all been read. Each read from
    /// the connection waits at most the read timeout.
    pub async fn read_body_bytes(&mut self) -> Result<Option<Bytes>> {
        let wait = self.read_timeout.unwrap_or(NO_READ_TIMEOUT);
        let until = tokio::time::Instant::now() + wait;
        let piece = self.body.read_body(&mut self.stream, until).await?;
        Ok(piece.map(Bytes::copy_from_slice))
    }

    /// Reads and drops the rest of the request's body.
    pub async fn drain_request_body(&mut self) -> Result<()> {
        while self.read_body_bytes().await?.is_some() {}
        Ok(())
    }

    /// The answer's status, once its header is written.
    pub fn answer_status(&self) -> Option<StatusCode> {
        self.answer_status
    }

    /// Bytes of the answer's body written so far.
    pub fn body_bytes_sent(&self) -> usize {
        self.body_bytes_sent
    }

    /// Resolves, with the reason, when the client closes or resets the connection; pending
    /// while it waits. Bytes it sends meanwhile (a pipelined request) are kept for later, up
    /// to a header's worth.
    pub async fn gone(&mut self) -> Box<Error> {
        let mut read = [0u8; 1024];
        loop {
            if self.body.buf.len() >= MAX_REQUEST_HEADER_BYTES {
                // Enough kept; the rest waits in the socket.
                return std::future::pending().await;
            }
            match self.stream.read(&mut read).await {
                Ok(0) => {
                    return Error::explain(
                        ErrorType::ConnectionClosed,
                        "the client closed the connection",
                    )
                    .into_down()
                }
                Ok(n) => self.body.buf.extend_from_slice(&read[..n]),
                Err(e) => {
                    return Error::because(
                        ErrorType::ReadError,
                        "the client's connection failed",
                        e,
                    )
                    .into_down()
                }
            }
        }
    }

    /// The connection and the bytes read past this request, if it may carry another: both
    /// ends keep it, the request's body was read whole before the answer (which then says
    /// `Connection: close` otherwise), and the answer went out whole. Otherwise it is closed.
    /// The request's header goes back to `last`, for a next request of the same bytes.
    pub async fn into_reusable(
        mut self,
        last: &mut LastRequest,
    ) -> Option<(Stream, Option<BytesMut>)> {
        let reusable = self.keep_alive && self.answer_body == AnswerBody::Done;
        if !reusable {
            // An answer cut short still gets the header it was given (the client then sees a
            // body shorter than announced, or none), as if it had left at once.
            if !self.unsent_head.is_empty() {
                if let Err(e) = self.send(&[]).await {
                    debug!("could not send the answer's header before closing: {e}");
                }
            }
            super::close(&mut self.stream).await;
            return None;
        }
        self.body.settle();
        last.give_back(self.request);
        let rest = std::mem::take(&mut self.body.buf);
        Some((self.stream, (!rest.is_empty()).then_some(rest)))
    }

    /// The connection, as it is (to answer on it directly).
    pub fn into_inner(self) -> Stream {
        self.stream
    }
}

#[cfg(test)]
mod tests;
