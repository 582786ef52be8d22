//! The poll port (`POLL_PORT`): `POST /poll`, where a client registers its name and waits for a
//! scrape; `POST /push`, where it sends the scrape's answer; `GET /clients`, the names
//! registered, as PushProx lists them (Prometheus http_sd JSON).
//!
//! Polls and pushes may come only from `POLL_ALLOWED_CIDRS`, and, with `POLL_BIND_NAMES`, only
//! as a name the client's certificate carries. `/clients` follows the proxy port's rules: who
//! may scrape may list.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::listener::ClientExchange;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::Method;
use log::{debug, warn};
use pingora_core::protocols::Stream;
use pingora_error::Result;

use super::identity;
use super::registry::{PollAnswer, PollRefusal, PollTicket, Registry, Withdrawal};
use crate::access::{AccessControl, Verdict};
use crate::ip_range::IpRange;
use crate::listener::respond::{refuse, refuse_unread, respond};
use crate::listener::{RequestHandler, Unreadable};
use crate::metrics::{PollMetrics, PollOutcome};

/// The longest poll body (a name) read.
const MAX_POLL_BODY: usize = 1024;
/// The longest name a client may register: a DNS name's.
const MAX_NAME_LEN: usize = 253;
/// How long a poll's body, or a push's response header, may take to arrive.
pub(super) const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// The answer to a poll while the tunnel shuts down.
const SHUTTING_DOWN: &[u8] = b"503 Service Unavailable: the tunnel is shutting down; poll again\n";
/// Pieces of a push that may wait for Prometheus to take them.
pub(super) const RELAY_PIECES: usize = 8;

/// The rules of the poll port.
pub struct PortRules {
    /// Addresses allowed to poll and push; everyone when `None`.
    pub allowed: Option<Vec<IpRange>>,
    /// Whether names are bound to client certificates.
    pub bind_names: bool,
    /// An idle poll is answered after this.
    pub keepalive: Option<Duration>,
    /// The largest push, in bytes.
    pub max_push_size: u64,
}

/// The poll port's request handler.
pub struct PollPort {
    pub(super) registry: Arc<Registry>,
    pub(super) rules: PortRules,
    /// Who may read `/clients`: the proxy port's rules.
    listing: AccessControl,
    pub(super) metrics: &'static PollMetrics,
}

/// How a waiting poll woke up.
enum Woke {
    Answer(PollAnswer),
    Idle,
    Gone(Box<pingora_error::Error>),
}

impl PollPort {
    /// The handler of `registry`'s poll port under `rules`; `/clients` readable by whom
    /// `listing` lets in.
    pub fn new(
        registry: Arc<Registry>,
        rules: PortRules,
        listing: AccessControl,
        metrics: &'static PollMetrics,
    ) -> Self {
        PollPort {
            registry,
            rules,
            listing,
            metrics,
        }
    }

    /// Whether the client's address may poll and push.
    pub(super) fn allows(&self, session: &ClientExchange) -> bool {
        let Some(allowed) = &self.rules.allowed else {
            return true;
        };
        client_ip(session).is_some_and(|ip| allowed.iter().any(|range| range.contains(ip)))
    }

    /// The names the client's certificate carries, when names are bound to certificates.
    pub(super) fn certificate(&self, session: &ClientExchange) -> Option<Vec<String>> {
        self.rules
            .bind_names
            .then(|| identity::certificate_names(session.stream()))
    }

    /// `POST /poll`: registers the name in the body and waits for a scrape for it.
    async fn poll(&self, session: &mut ClientExchange) -> Result<()> {
        if !self.allows(session) {
            self.metrics.poll(PollOutcome::Forbidden);
            return refuse(
                session,
                403,
                b"403 Forbidden: this address may not poll (POLL_ALLOWED_CIDRS)\n",
                &[],
            )
            .await;
        }
        let body = read_small_body(session, MAX_POLL_BODY).await?;
        let name = body
            .as_deref()
            .and_then(|b| std::str::from_utf8(b).ok())
            .map(str::trim)
            .filter(|name| valid_name(name));
        let Some(name) = name else {
            self.metrics.poll(PollOutcome::Invalid);
            return refuse(session, 400, b"400 Bad Request: the body of a poll is the client's name: a host name or address of at most 253 characters\n", &[]).await;
        };
        if let Some(names) = self.certificate(session) {
            if !identity::carries(&names, name) {
                self.metrics.poll(PollOutcome::WrongCertificate);
                debug!("refused a poll as {name}: the client's certificate carries {names:?}");
                return refuse(session, 403, b"403 Forbidden: the client's certificate does not carry this name (POLL_BIND_NAMES)\n", &[]).await;
            }
        }
        let name = name.to_string();
        let mut wait = match self.registry.poll(&name) {
            Ok(PollTicket::Ready(request)) => {
                self.metrics.poll(PollOutcome::Scrape);
                return respond(session, 200, request, &[]).await;
            }
            Ok(PollTicket::Wait(wait)) => wait,
            Err(refusal) => return self.refuse_poll(session, &name, refusal).await,
        };
        let idle = async {
            match self.rules.keepalive {
                Some(after) => tokio::time::sleep(after).await,
                None => std::future::pending().await,
            }
        };
        let woke = tokio::select! {
            biased;
            answer = wait.answered() => Woke::Answer(answer),
            () = idle => Woke::Idle,
            gone = session.gone() => Woke::Gone(gone),
        };
        let answer = match woke {
            Woke::Answer(answer) => answer,
            Woke::Idle => match wait.withdraw(Withdrawal::Idle) {
                Some(answer) => answer,
                None => {
                    self.metrics.poll(PollOutcome::Keepalive);
                    let request = self.registry.keepalive(&Arc::from(name.as_str()));
                    return respond(session, 200, request, &[]).await;
                }
            },
            Woke::Gone(gone) => {
                wait.withdraw(Withdrawal::Closed);
                self.metrics.poll(PollOutcome::Closed);
                return Err(gone);
            }
        };
        match answer {
            PollAnswer::Scrape(request) => {
                self.metrics.poll(PollOutcome::Scrape);
                respond(session, 200, request, &[]).await
            }
            // Counted by the poll that took its place.
            PollAnswer::Superseded => {
                refuse(
                    session,
                    409,
                    b"409 Conflict: a newer poll for this name took this one's place\n",
                    &[],
                )
                .await
            }
            PollAnswer::Closing => {
                self.metrics.poll(PollOutcome::Shutdown);
                refuse(session, 503, SHUTTING_DOWN, &[]).await
            }
        }
    }

    async fn refuse_poll(
        &self,
        session: &mut ClientExchange,
        name: &str,
        refusal: PollRefusal,
    ) -> Result<()> {
        self.metrics.poll(refusal.outcome());
        match refusal {
            PollRefusal::Conflict => {
                warn!("refused a poll as {name}: a configured target has that name; rename the target or give the client another --fqdn");
                refuse(
                    session,
                    409,
                    b"409 Conflict: a configured target of the tunnel has this name\n",
                    &[],
                )
                .await
            }
            PollRefusal::Full => {
                warn!("refused a poll as {name}: POLL_MAX_CLIENTS names are registered already");
                refuse(session, 503, b"503 Service Unavailable: the tunnel has as many clients as POLL_MAX_CLIENTS allows\n", &[]).await
            }
            PollRefusal::Closing => refuse(session, 503, SHUTTING_DOWN, &[]).await,
        }
    }

    /// `GET /clients`: the registered names, as PushProx lists them.
    async fn clients(&self, session: &mut ClientExchange) -> Result<()> {
        let client = client_ip(session);
        match self
            .listing
            .check(client, session.get_header(AUTHORIZATION), Instant::now())
        {
            Verdict::Allow => {}
            Verdict::Forbidden => {
                return refuse(session, 403, b"403 Forbidden: this address may not list the clients (CLIENT_ALLOWED_CIDRS)\n", &[]).await;
            }
            Verdict::Unauthorized(challenge) => {
                let body =
                    Bytes::from_static(b"401 Unauthorized: the tunnel requires credentials\n");
                return respond(session, 401, body, &[(WWW_AUTHENTICATE, challenge)]).await;
            }
        }
        let groups: Vec<serde_json::Value> = self
            .registry
            .names()
            .iter()
            .map(|name| serde_json::json!({"targets": [&**name], "labels": null}))
            .collect();
        let body = serde_json::to_vec(&groups).unwrap_or_else(|_| b"[]".to_vec());
        let json = [(CONTENT_TYPE, HeaderValue::from_static("application/json"))];
        respond(session, 200, Bytes::from(body), &json).await
    }
}

/// The client's address, when it is an IP one.
fn client_ip(session: &ClientExchange) -> Option<IpAddr> {
    session.client_ip()
}

/// A name a client may register: a host name or address, as PushProx's `--fqdn` gives it.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
}

/// The request body, when it is at most `limit` bytes; `None` when larger.
async fn read_small_body(session: &mut ClientExchange, limit: usize) -> Result<Option<Bytes>> {
    session.set_read_timeout(Some(BODY_TIMEOUT));
    let mut body = BytesMut::new();
    while let Some(piece) = session.read_body_bytes().await? {
        body.extend_from_slice(&piece);
        if body.len() > limit {
            return Ok(None);
        }
    }
    Ok(Some(body.freeze()))
}

#[async_trait]
impl RequestHandler for PollPort {
    async fn serve(&self, session: &mut ClientExchange, _started: Instant) -> Instant {
        let req = session.req_header();
        let path = req.uri.path().to_string();
        let method = req.method.clone();
        let served = match (path.as_str(), &method) {
            ("/poll", &Method::POST) => self.poll(session).await,
            ("/push", &Method::POST) => self.push(session).await,
            ("/clients", &Method::GET | &Method::HEAD) => self.clients(session).await,
            ("/poll" | "/push", _) => {
                let allow = [(ALLOW, HeaderValue::from_static("POST"))];
                refuse(session, 405, b"405 Method Not Allowed: poll and push with POST\n", &allow).await
            }
            ("/clients", _) => {
                let allow = [(ALLOW, HeaderValue::from_static("GET, HEAD"))];
                refuse(session, 405, b"405 Method Not Allowed: list the clients with GET\n", &allow).await
            }
            _ => refuse(session, 404, b"404 Not Found: this port serves POST /poll, POST /push and GET /clients; scrapes go to the proxy port\n", &[]).await,
        };
        if let Err(e) = served {
            debug!("{method} {path} on the poll port ended: {e}");
            session.close_after_answer();
        }
        Instant::now()
    }

    async fn refuse(&self, client: &mut Stream, why: Unreadable, _started: Instant) {
        let (status, reason, body) = match why {
            Unreadable::Malformed(_) => (400, "Bad Request", "400 Bad Request: not a valid HTTP/1.1 request\n"),
            Unreadable::TooLarge => (431, "Request Header Fields Too Large", "431 Request Header Fields Too Large\n"),
            Unreadable::Timeout => (408, "Request Timeout", "408 Request Timeout: the request header did not arrive within HEADER_READ_TIMEOUT\n"),
            Unreadable::ClientClosed => return,
        };
        if let Err(e) = refuse_unread(client, status, reason, body).await {
            debug!("could not send the {status} answer on the poll port: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn names() {
        for good in [
            "node1",
            "db-1.prod.example.com",
            "10.0.0.1",
            "fd00::1",
            "a_b",
        ] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "a b", "a/b", "a\r\nb", &"x".repeat(254)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
