//! HTTP/1 message framing shared by both ends of a scrape: the tunnel's client of exporters
//! (`upstream/http1.rs`) and its server for clients (`listener/exchange.rs`). [`framing`] reads
//! how a header frames its body and whether its connection may be kept; [`body`] reads that
//! body by its framing from one buffer; [`splice`] moves a large one from socket to socket
//! in the kernel. [`head`] is an exporter's answer header as it arrived, sent on as it is.
//!
//! Both follow RFC 9112 section 6, as Pingora's own sessions do: chunked when the last transfer
//! coding is `chunked` (a `Content-Length` beside it is dropped), then `Content-Length`
//! (duplicates must agree), else, for an answer, until the connection closes.

pub mod body;
pub mod framing;
pub mod head;
pub mod splice;

use pingora_error::{Error, ErrorType};

/// Which end of the tunnel a message came from: its errors are worded for it, and marked
/// upstream (the exporter's) or downstream (the client's), which decides their status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// An exporter's answer.
    Exporter,
    /// A client's request.
    Client,
}

impl Sender {
    /// What error messages call the sender.
    pub fn name(self) -> &'static str {
        match self {
            Sender::Exporter => "exporter",
            Sender::Client => "client",
        }
    }

    /// An error of `etype` on this sender's side, with `context`.
    pub fn error(self, etype: ErrorType, context: impl Into<String>) -> Box<Error> {
        self.mark(Error::explain(etype, context.into()))
    }

    /// `e`, marked as this sender's side.
    pub fn mark(self, e: Box<Error>) -> Box<Error> {
        match self {
            Sender::Exporter => e.into_up(),
            Sender::Client => e.into_down(),
        }
    }
}
