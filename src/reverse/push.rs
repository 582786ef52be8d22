//! `POST /push` on the poll port: the answer to a scrape, streamed to the Prometheus waiting
//! for it as the push arrives, bounded by `POLL_MAX_PUSH_SIZE` and the scrape's deadline.

use std::time::Instant;

use crate::listener::ClientExchange;
use bytes::{Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use log::debug;
use pingora_error::Result;
use tokio::sync::{mpsc, oneshot};

use super::poll_port::{PollPort, BODY_TIMEOUT, RELAY_PIECES};
use super::pushed::{self, BodyReader, BodyStep, Framing, PushedHead, MAX_PUSHED_HEAD};
use super::registry::{Delivery, PushClaim, PushFailure, PushRefusal, PushedResponse};
use crate::listener::respond::{refuse, respond};
use crate::metrics::PushOutcome;

impl PollPort {
    /// `POST /push`: the answer to a scrape, streamed to the Prometheus waiting for it.
    pub(super) async fn push(&self, session: &mut ClientExchange) -> Result<()> {
        if !self.allows(session) {
            self.metrics.push(PushOutcome::Forbidden);
            return refuse(
                session,
                403,
                b"403 Forbidden: this address may not push (POLL_ALLOWED_CIDRS)\n",
                &[],
            )
            .await;
        }
        let (head, leftover) = match read_pushed_head(session).await {
            Ok(head) => head,
            Err(why) => {
                self.metrics.push(PushOutcome::Malformed);
                debug!("refused a push: expected {why}");
                let body = format!("400 Bad Request: expected {why}\n");
                session.close_after_answer();
                return respond(session, 400, Bytes::from(body), &[]).await;
            }
        };
        let certificate = self.certificate(session);
        match self.registry.claim_push(&head.id, certificate.as_deref()) {
            Err(refusal) => {
                let (outcome, status, body): (_, _, &'static [u8]) = match refusal {
                    PushRefusal::Unknown => (PushOutcome::UnknownId, 404, b"404 Not Found: no scrape has this Id\n"),
                    PushRefusal::Expired => (PushOutcome::Expired, 410, b"410 Gone: the scrape with this Id has ended\n"),
                    PushRefusal::WrongCertificate => (PushOutcome::WrongCertificate, 403, b"403 Forbidden: the scrape with this Id is not for a name the client's certificate carries\n"),
                };
                self.metrics.push(outcome);
                debug!("refused a push for {}: {refusal:?}", head.id);
                refuse(session, status, body, &[]).await
            }
            Ok(PushClaim::Keepalive) => {
                self.metrics.push(PushOutcome::Keepalive);
                // The body is the client's short error message: read and dropped, so the
                // connection carries the client's next push.
                session.drain_request_body().await?;
                respond(session, 200, Bytes::new(), &[]).await
            }
            Ok(PushClaim::Scrape { name, to, deadline }) => {
                let outcome = self.relay(session, head, &leftover, to, deadline).await;
                self.metrics.push(outcome);
                let (status, body): (u16, &'static [u8]) = match outcome {
                    PushOutcome::Delivered => (200, b""),
                    PushOutcome::TooLarge => (
                        413,
                        b"413 Content Too Large: the push is larger than POLL_MAX_PUSH_SIZE\n",
                    ),
                    PushOutcome::Expired => (
                        410,
                        b"410 Gone: the scrape ended before its answer was pushed whole\n",
                    ),
                    _ => (
                        400,
                        b"400 Bad Request: the push ended before the answer it carries\n",
                    ),
                };
                if outcome != PushOutcome::Delivered {
                    debug!("push for {name} ended as {}", outcome.as_str());
                }
                if session.is_body_done() {
                    respond(session, status, Bytes::from_static(body), &[]).await
                } else {
                    refuse(session, status, body, &[]).await
                }
            }
        }
    }

    /// Streams the pushed response of `head` (whose body starts with `leftover`) to the
    /// scrape waiting on `to`, by the scrape's `deadline`; how the push ended.
    async fn relay(
        &self,
        session: &mut ClientExchange,
        head: PushedHead,
        leftover: &[u8],
        to: oneshot::Sender<Delivery>,
        deadline: Instant,
    ) -> PushOutcome {
        let declared = session
            .req_header()
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(n) = declared.filter(|n| *n > self.rules.max_push_size) {
            let _ = to.send(Delivery::Failed(PushFailure::TooLarge(n)));
            return PushOutcome::TooLarge;
        }
        let (tx, rx) = mpsc::channel(RELAY_PIECES);
        let length = match head.framing {
            Framing::Length(n) => Some(n),
            _ => None,
        };
        let response = PushedResponse {
            status: head.status,
            headers: head.headers,
            length,
            body: rx,
        };
        if to.send(Delivery::Response(response)).is_err() {
            return PushOutcome::Expired;
        }
        let mut reader = BodyReader::new(head.framing, leftover);
        let mut pushed = leftover.len() as u64;
        loop {
            let step = match reader.step() {
                Ok(step) => step,
                Err(why) => {
                    let _ = tx
                        .send(Err(PushFailure::Cut(format!("expected {why}"))))
                        .await;
                    return PushOutcome::Cut;
                }
            };
            match step {
                BodyStep::Done => return PushOutcome::Delivered,
                BodyStep::Data(piece) => {
                    if tx.send(Ok(piece)).await.is_err() {
                        return PushOutcome::Expired;
                    }
                }
                BodyStep::NeedMore => {
                    let read = tokio::time::timeout_at(
                        tokio::time::Instant::from_std(deadline),
                        session.read_body_bytes(),
                    )
                    .await;
                    match read {
                        Ok(Ok(Some(piece))) => {
                            pushed += piece.len() as u64;
                            if pushed > self.rules.max_push_size {
                                let _ = tx.send(Err(PushFailure::TooLarge(pushed))).await;
                                return PushOutcome::TooLarge;
                            }
                            reader.feed(&piece);
                        }
                        Ok(Ok(None)) if reader.ends_with_push() => return PushOutcome::Delivered,
                        Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                            let why = "the push ended before the answer it carries".to_string();
                            let _ = tx.send(Err(PushFailure::Cut(why))).await;
                            return PushOutcome::Cut;
                        }
                    }
                }
            }
        }
    }
}

/// The pushed response's header and the bytes of the push after it.
async fn read_pushed_head(
    session: &mut ClientExchange,
) -> std::result::Result<(PushedHead, Bytes), String> {
    session.set_read_timeout(Some(BODY_TIMEOUT));
    let mut buf = BytesMut::new();
    loop {
        if let Some((head, used)) = pushed::parse_head(&buf)? {
            let rest = buf.split_off(used).freeze();
            return Ok((head, rest));
        }
        if buf.len() > MAX_PUSHED_HEAD {
            return Err("a response header of at most 64 KiB".into());
        }
        match session.read_body_bytes().await {
            Ok(Some(piece)) => buf.extend_from_slice(&piece),
            Ok(None) => return Err("a whole response header before the push ends".into()),
            Err(e) => return Err(format!("a push that arrives ({e})")),
        }
    }
}
