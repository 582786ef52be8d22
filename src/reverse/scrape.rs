//! A scrape of a registered name, on the proxy port: the request handed to the client's open
//! poll, and the client's push streamed back to Prometheus as it arrives, under the scrape's
//! deadline, while Prometheus is watched.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::listener::ClientExchange;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::Method;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;

use super::registry::{Delivery, PushFailure, Registry, ScrapeTicket};
use super::wire;

use crate::metrics::{UpstreamErrorKind, METRICS};

/// The client had not polled when the deadline passed.
pub const NO_POLL: &str = "the client did not poll for the scrape before the deadline";
/// The client polled but had not pushed its answer when the deadline passed.
pub const NO_PUSH: &str = "the client did not push its answer before the deadline";
/// The client's poll connection closed with the scrape in it.
pub const CLIENT_GONE: &str = "the client went away before answering";
/// The push was larger than `POLL_MAX_PUSH_SIZE`.
pub const PUSH_TOO_LARGE: &str = "the client's answer is larger than POLL_MAX_PUSH_SIZE";
/// The push ended, or stopped parsing, before the answer it carries.
pub const PUSH_CUT: &str = "the client's push ended before its answer did";

/// Each failure of a scrape of a registered name: its status and how it is counted.
pub const FAILURES: [(&str, u16, UpstreamErrorKind); 5] = [
    (NO_POLL, 504, UpstreamErrorKind::Timeout),
    (NO_PUSH, 504, UpstreamErrorKind::Timeout),
    (CLIENT_GONE, 502, UpstreamErrorKind::Reset),
    (PUSH_TOO_LARGE, 502, UpstreamErrorKind::Other),
    (PUSH_CUT, 502, UpstreamErrorKind::Protocol),
];

/// Scrapes of the names clients register: the registry, and the longest a scrape may take.
pub struct ReverseScrapes {
    /// The registered clients.
    pub registry: Arc<Registry>,
    /// `UPSTREAM_TIMEOUT`: the longest a scrape may take, whatever Prometheus allows.
    pub timeout: Duration,
}

/// The time a client is given for a scrape with `remaining` before the tunnel's deadline: a
/// little less, so a client that runs out of time can still push its own error in time, which
/// says more than the tunnel's 504.
pub fn client_timeout(remaining: Duration) -> Duration {
    remaining.saturating_sub((remaining / 10).min(Duration::from_secs(1)))
}

impl ReverseScrapes {
    /// Hands the scrape `session` read (at `started`, to end within `limit`) to the client
    /// registered as `name`; `None` when no client is (the caller answers 503 at once).
    /// `strip_authorization` drops an `Authorization` that was the tunnel's own.
    pub fn start(
        &self,
        session: &ClientExchange,
        name: &str,
        limit: Duration,
        started: Instant,
        strip_authorization: bool,
    ) -> Option<ScrapeTicket<'_>> {
        let remaining = limit.saturating_sub(started.elapsed());
        let req = session.req_header();
        self.registry.scrape(name, started + limit, |id| {
            wire::scrape_request(req, id, client_timeout(remaining), strip_authorization)
        })
    }
}

/// An upstream-side error for one of [`FAILURES`].
fn failed(what: &'static str, detail: String) -> Box<Error> {
    Error::explain(ErrorType::Custom(what), detail).into_up()
}

/// Waits for the push of `ticket`'s scrape and streams it to the client of `session`, by
/// `deadline` (an instant) at the latest.
pub async fn relay(
    session: &mut ClientExchange,
    ticket: &mut ScrapeTicket<'_>,
    deadline: Instant,
) -> Result<()> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    let delivery = tokio::select! {
        biased;
        delivered = tokio::time::timeout(remaining, ticket.delivery()) => match delivered {
            Ok(Some(delivery)) => delivery,
            Ok(None) => return Err(failed(CLIENT_GONE, "no push will come".into())),
            Err(_) if ticket.handed_over() => {
                return Err(failed(NO_PUSH, format!("no push within {remaining:?}")))
            }
            Err(_) => return Err(failed(NO_POLL, format!("no poll within {remaining:?}"))),
        },
        gone = session.gone() => return Err(gone),
    };
    let mut pushed = match delivery {
        Delivery::Response(pushed) => pushed,
        Delivery::Failed(PushFailure::TooLarge(n)) => {
            return Err(failed(PUSH_TOO_LARGE, format!("a push of {n} bytes")))
        }
        Delivery::Failed(PushFailure::Cut(why)) => return Err(failed(PUSH_CUT, why)),
    };
    let mut header = ResponseHeader::build(pushed.status, Some(pushed.headers.len() + 1))?;
    for (name, value) in pushed.headers.drain(..) {
        header.append_header(name, value)?;
    }
    let bodiless =
        session.req_header().method == Method::HEAD || matches!(pushed.status, 204 | 304);
    match pushed.length {
        Some(n) => header.insert_header(CONTENT_LENGTH, n)?,
        None if !bodiless => header.insert_header(TRANSFER_ENCODING, "chunked")?,
        None => {}
    }
    session.set_write_deadline(Some(tokio::time::Instant::from_std(deadline)));
    session
        .write_response_header(Box::new(header))
        .await
        .map_err(|e| e.into_down())?;
    // With a known length the answer ends at its last byte: the client, which knows it too,
    // may close before the push's end is seen, and is not to be counted as gone (499).
    let mut written: u64 = 0;
    while !(bodiless || pushed.length == Some(written)) {
        let left = deadline.saturating_duration_since(Instant::now());
        let piece = tokio::select! {
            biased;
            piece = tokio::time::timeout(left, pushed.body.recv()) => match piece {
                Ok(Some(Ok(piece))) => piece,
                Ok(Some(Err(PushFailure::TooLarge(n)))) => {
                    return Err(failed(PUSH_TOO_LARGE, format!("over {n} bytes")))
                }
                Ok(Some(Err(PushFailure::Cut(why)))) => return Err(failed(PUSH_CUT, why)),
                Ok(None) => break,
                Err(_) => return Err(failed(NO_PUSH, "the push stalled mid-body".into())),
            },
            gone = session.gone() => return Err(gone),
        };
        METRICS.response_bytes.inc_by(piece.len() as u64);
        written += piece.len() as u64;
        session
            .write_body(&piece)
            .await
            .map_err(|e| e.into_down())?;
    }
    session.finish_body().await.map_err(|e| e.into_down())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_get_a_little_less_time_than_the_tunnel() {
        assert_eq!(
            client_timeout(Duration::from_secs(10)),
            Duration::from_secs(9)
        );
        assert_eq!(
            client_timeout(Duration::from_secs(30)),
            Duration::from_secs(29)
        );
        assert_eq!(
            client_timeout(Duration::from_millis(500)),
            Duration::from_millis(450)
        );
    }
}
