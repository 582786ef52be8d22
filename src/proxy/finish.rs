//! Steps 6 and 7 of a request: a failure answered with its status and a one-line reason, and
//! every request counted once, whatever its end; and the listener's entry points that run them.

use std::time::Instant;

use crate::listener::ClientExchange;
use async_trait::async_trait;
use bytes::Bytes;
use log::debug;
use pingora_core::protocols::Stream;
use pingora_error::Error;

use super::{Failure, RequestCtx, TunnelProxy, CLIENT_CLOSED, EXPORTER_STATUS_CODE};
use crate::listener::respond::{refuse_unread, respond};
use crate::listener::{RequestHandler, Unreadable};
use crate::metrics::scrape_log::ScrapeEnd;

impl TunnelProxy {
    /// Step 6: answers the failure with its status and a one-line reason, unless the response
    /// header had already gone out (the connection then closes, so the client sees a cut body),
    /// and logs it once.
    async fn fail(&self, session: &mut ClientExchange, e: &Error, ctx: &RequestCtx) {
        let failure = Failure::of(e);
        let context = if ctx.forwarded {
            "Fail to proxy:"
        } else {
            "Fail to answer:"
        };
        let req = session.req_header();
        // A client that hung up is not the tunnel's failure, nor the exporter's: a warning.
        let level = if failure.status == CLIENT_CLOSED {
            log::Level::Warn
        } else {
            log::Level::Error
        };
        log::log!(
            level,
            "{context} {e}, status: {}, {} {}, Host: {:?}",
            failure.status,
            req.method,
            req.uri,
            req.headers.get(http::header::HOST)
        );
        session.close_after_answer();
        if failure.status == CLIENT_CLOSED || session.answer_status().is_some() {
            return;
        }
        let body = Bytes::from(format!(
            "{} {}: {}\n",
            failure.status,
            http::StatusCode::from_u16(failure.status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or(""),
            failure.reason()
        ));
        if let Err(write_err) = respond(session, failure.status, body, &[]).await {
            debug!(
                "could not send the {} answer to the client: {write_err}",
                failure.status
            );
        }
    }

    /// Step 7: the request's metrics, once, whatever its end; `bytes` of body were sent.
    /// Returns when it ended.
    fn record(
        &self,
        status: u16,
        failure: Option<Failure>,
        bytes: u64,
        ctx: &mut RequestCtx,
    ) -> Instant {
        // Out of flight before counted as done, so no scrape sees both.
        drop(ctx.in_flight.take());
        let metrics = match (&ctx.target, &ctx.client_metrics) {
            (Some(target), _) => &target.metrics,
            (None, Some(client)) => client,
            (None, None) => &self.unattributed,
        };
        let succeeded = failure.is_none() && (200..400).contains(&status);
        let ended = Instant::now();
        let end = ScrapeEnd {
            status,
            duration: ended.saturating_duration_since(ctx.start),
            bytes,
            // An exporter's own answer that is not a success fails the scrape too, as
            // Prometheus sees it.
            failure: (!succeeded).then(|| failure.map_or(EXPORTER_STATUS_CODE, |f| f.code())),
        };
        metrics.record(end, failure.and_then(|f| f.upstream), ctx.forwarded);
        ended
    }
}

#[async_trait]
impl RequestHandler for TunnelProxy {
    async fn serve(&self, session: &mut ClientExchange, started: Instant) -> Instant {
        let mut ctx = RequestCtx::new(started);
        let (status, failure) = match self.answer(session, &mut ctx).await {
            Ok(()) => (
                session
                    .answer_status()
                    .map_or(500, |status| status.as_u16()),
                None,
            ),
            Err(e) => {
                self.fail(session, &e, &ctx).await;
                let failure = Failure::of(&e);
                (failure.status, Some(failure))
            }
        };
        let bytes = session.body_bytes_sent() as u64;
        self.record(status, failure, bytes, &mut ctx)
    }

    async fn refuse(&self, client: &mut Stream, why: Unreadable, started: Instant) {
        let mut ctx = RequestCtx::new(started);
        let (status, reason, body) = match &why {
            Unreadable::Malformed(e) => {
                // The parser's own message quotes the request, credentials and all: only its
                // cause is logged.
                debug!(
                    "refused a malformed request: {}",
                    e.root_cause()
                );
                (400, "Bad Request", "400 Bad Request: not a valid HTTP/1.1 request\n")
            }
            Unreadable::TooLarge => (
                431,
                "Request Header Fields Too Large",
                "431 Request Header Fields Too Large: a scrape needs a few hundred bytes of header\n",
            ),
            Unreadable::Timeout => (
                408,
                "Request Timeout",
                "408 Request Timeout: the request header did not arrive within HEADER_READ_TIMEOUT\n",
            ),
            Unreadable::ClientClosed => (CLIENT_CLOSED, "", ""),
        };
        if status != CLIENT_CLOSED {
            if let Err(e) = refuse_unread(client, status, reason, body).await {
                debug!("could not send the {status} answer to the client: {e}");
            }
        }
        self.record(status, None, body.len() as u64, &mut ctx);
    }
}
