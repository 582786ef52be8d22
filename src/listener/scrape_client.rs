//! Whoever waits for a scrape's answer: Prometheus on an HTTP/1 connection of the proxy port,
//! or, in an agent, the tunnel on one HTTP/2 stream of the connection the agent dialled. The
//! forwarding code (`proxy/forward.rs`) writes to either through this one trait, so the agent
//! forwards to its exporters exactly as the tunnel does.

use std::future::Future;
use std::os::fd::OwnedFd;

use bytes::Bytes;
use pingora_core::protocols::http::v2::server::HttpSession as H2Stream;
use pingora_error::{Error, Result};
use pingora_http::RequestHeader;

use super::ClientExchange;
use crate::http1::head::ExporterHead;

/// The side a scrape's answer is written to, and watched for going away.
pub trait ScrapeClient: Send {
    /// The request being answered.
    fn req_header(&self) -> &RequestHeader;

    /// Fails each write that follows that the client has not taken by `deadline`. A session
    /// that takes only a duration (Pingora's HTTP/2 stream) counts it from this call, so the
    /// deadline is set again before each write.
    fn set_write_deadline(&mut self, deadline: tokio::time::Instant);

    /// Writes the exporter's answer header.
    fn write_exporter_head(
        &mut self,
        head: &ExporterHead,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Writes a piece of the answer's body.
    fn write_body(&mut self, piece: &[u8]) -> impl Future<Output = Result<()>> + Send;

    /// Ends the answer.
    fn finish_body(&mut self) -> impl Future<Output = Result<()>> + Send;

    /// Resolves, with the reason, when the client goes away (closes, resets); pending while
    /// it waits.
    fn gone(&mut self) -> impl Future<Output = Box<Error>> + Send;

    /// A socket to splice the rest of the body into (at least `length` bytes still to be
    /// written), with everything written so far sent; `None` where bytes cannot bypass the
    /// session (TLS, HTTP/2).
    fn splice_sink(&mut self, length: u64) -> impl Future<Output = Result<Option<OwnedFd>>> + Send {
        let _ = length;
        std::future::ready(Ok(None))
    }

    /// Accounts `n` body bytes spliced to the client.
    fn spliced(&mut self, n: u64) {
        let _ = n;
    }
}

impl ScrapeClient for ClientExchange {
    fn req_header(&self) -> &RequestHeader {
        ClientExchange::req_header(self)
    }

    fn set_write_deadline(&mut self, deadline: tokio::time::Instant) {
        ClientExchange::set_write_deadline(self, Some(deadline));
    }

    async fn write_exporter_head(&mut self, head: &ExporterHead) -> Result<()> {
        ClientExchange::write_exporter_head(self, head).await
    }

    async fn write_body(&mut self, piece: &[u8]) -> Result<()> {
        ClientExchange::write_body(self, piece).await
    }

    async fn finish_body(&mut self) -> Result<()> {
        ClientExchange::finish_body(self).await
    }

    async fn gone(&mut self) -> Box<Error> {
        ClientExchange::gone(self).await
    }

    async fn splice_sink(&mut self, length: u64) -> Result<Option<OwnedFd>> {
        ClientExchange::splice_sink(self, length).await
    }

    fn spliced(&mut self, n: u64) {
        ClientExchange::spliced(self, n);
    }
}

impl ScrapeClient for H2Stream {
    fn req_header(&self) -> &RequestHeader {
        H2Stream::req_header(self)
    }

    fn set_write_deadline(&mut self, deadline: tokio::time::Instant) {
        // Pingora's HTTP/2 stream takes a duration, counted from each write.
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        H2Stream::set_write_timeout(self, Some(left));
    }

    async fn write_exporter_head(&mut self, head: &ExporterHead) -> Result<()> {
        // HTTP/2 frames a header map: built here only.
        H2Stream::write_response_header(self, head.to_response_header()?, false)
    }

    async fn write_body(&mut self, piece: &[u8]) -> Result<()> {
        // HTTP/2 frames own their bytes.
        H2Stream::write_body(self, Bytes::copy_from_slice(piece), false).await
    }

    async fn finish_body(&mut self) -> Result<()> {
        H2Stream::finish(self)
    }

    async fn gone(&mut self) -> Box<Error> {
        match self.read_body_or_idle(true).await {
            Err(e) => e.into_down(),
            Ok(_) => std::future::pending().await,
        }
    }
}
