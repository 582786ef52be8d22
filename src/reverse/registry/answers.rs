//! What passes between the poll port, the registry and a scrape: a poll's answer, a push's
//! response on its way to Prometheus, and why either is refused.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::PollOutcome;

/// What a waiting poll is answered with.
#[derive(Debug)]
pub enum PollAnswer {
    /// A scrape request, serialized for the client.
    Scrape(Bytes),
    /// A newer poll of the same name took this one's place.
    Superseded,
    /// The tunnel is shutting down.
    Closing,
}

/// Why a poll is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollRefusal {
    /// The name is a configured target's.
    Conflict,
    /// `POLL_MAX_CLIENTS` names are registered.
    Full,
    /// The tunnel is shutting down.
    Closing,
}

impl PollRefusal {
    /// The outcome it is counted as.
    pub fn outcome(self) -> PollOutcome {
        match self {
            PollRefusal::Conflict => PollOutcome::Conflict,
            PollRefusal::Full => PollOutcome::Full,
            PollRefusal::Closing => PollOutcome::Shutdown,
        }
    }
}

/// Why a scrape of a registered name ended without a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushFailure {
    /// The push is larger than `POLL_MAX_PUSH_SIZE`.
    TooLarge(u64),
    /// The push ended before the response it carries did, or did not parse.
    Cut(String),
}

/// A pushed response on its way to Prometheus.
#[derive(Debug)]
pub struct PushedResponse {
    /// The exporter's status (500 for a failure on the client's side).
    pub status: u16,
    /// The headers for Prometheus.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The body's length, when the push says it.
    pub length: Option<u64>,
    /// The body, piece by piece as the push arrives; an `Err` ends it early.
    pub body: mpsc::Receiver<Result<Bytes, PushFailure>>,
}

/// What a scrape gets from the push for it.
#[derive(Debug)]
pub enum Delivery {
    /// The response, streaming.
    Response(PushedResponse),
    /// No response will come.
    Failed(PushFailure),
}

/// What a push's id turned out to be.
#[derive(Debug)]
pub enum PushClaim {
    /// The answer to a scrape of `name`, to send through `to`.
    Scrape {
        /// The registered name the scrape went to.
        name: Arc<str>,
        /// Where the response goes.
        to: oneshot::Sender<Delivery>,
        /// When the scrape's deadline passes.
        deadline: Instant,
    },
    /// The answer to a keep-alive request: discarded.
    Keepalive,
}

/// Why a push is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushRefusal {
    /// No scrape has this id.
    Unknown,
    /// The scrape ended or was answered already.
    Expired,
    /// The client's certificate does not carry the scrape's name.
    WrongCertificate,
}
