//! The tickets of a poll and of a scrape: what each holds while it waits, and what its end
//! (answered, withdrawn, dropped) does to the registry.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use log::info;
use tokio::sync::oneshot;

use super::{remember_expired, Delivery, PollAnswer, Registry};
use crate::metrics::{ClientDrop, TargetMetrics};

/// A poll: answered at once, or waiting.
pub enum PollTicket<'a> {
    /// A scrape was waiting for this poll.
    Ready(Bytes),
    /// Wait for an answer.
    Wait(PollWait<'a>),
}

/// A poll waiting for its answer. Dropping it without [`PollWait::withdraw`] withdraws it as
/// closed.
pub struct PollWait<'a> {
    pub(super) registry: &'a Registry,
    pub(super) name: Arc<str>,
    pub(super) id: u64,
    pub(super) answer: Option<oneshot::Receiver<PollAnswer>>,
}

/// Why a waiting poll is withdrawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withdrawal {
    /// To answer it as idle (keep-alive): the client stays registered, between polls.
    Idle,
    /// Its connection closed: the client is dropped if no other poll of it is open.
    Closed,
}

/// A scrape handed to a registered client, until its push arrives. Dropping it ends the scrape:
/// a push that comes later is refused as expired.
pub struct ScrapeTicket<'a> {
    pub(super) registry: &'a Registry,
    pub(super) id: Box<str>,
    /// The name's series.
    pub metrics: Arc<TargetMetrics>,
    pub(super) delivery: Option<oneshot::Receiver<Delivery>>,
}

impl PollWait<'_> {
    /// The registered name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The answer, when one comes. Once it came, the poll is over: dropping it then leaves the
    /// client registered, between polls.
    pub async fn answered(&mut self) -> PollAnswer {
        let Some(rx) = self.answer.as_mut() else {
            return std::future::pending().await;
        };
        // The sender goes only with the poll's entry: answered, superseded, or shut down.
        let answer = rx.await.unwrap_or(PollAnswer::Closing);
        self.answer = None;
        answer
    }

    /// Takes the poll back. An answer that arrived meanwhile is returned (for an idle poll,
    /// to be sent; for a closed one, a scrape goes back to the queue for the next poll).
    pub fn withdraw(mut self, why: Withdrawal) -> Option<PollAnswer> {
        self.withdraw_inner(why)
    }

    fn withdraw_inner(&mut self, why: Withdrawal) -> Option<PollAnswer> {
        let mut rx = self.answer.take()?;
        let registry = self.registry;
        let mut state = registry.lock();
        let now = Instant::now();
        let Some(client) = state.clients.get_mut(&self.name) else {
            return rx.try_recv().ok();
        };
        client.polls.retain(|p| p.id != self.id);
        // Under the lock, nothing more can be sent to this poll.
        let arrived = rx.try_recv().ok();
        match why {
            Withdrawal::Idle => {
                if client.polls.is_empty() {
                    client.answered_at = Some(now);
                }
                arrived
            }
            Withdrawal::Closed => {
                if let Some(PollAnswer::Scrape(request)) = arrived {
                    // Back to the front of the queue, for the next poll (if the client
                    // survives), its id recovered from the request.
                    if let Some(id) = request_id(&request) {
                        client.queue.push_front((id, request));
                    }
                }
                if client.polls.is_empty() {
                    info!("client {} dropped: its poll's connection closed", self.name);
                    let name = Arc::clone(&self.name);
                    registry.drop_client(&mut state, &name, ClientDrop::PollClosed, now);
                }
                None
            }
        }
    }
}

impl Drop for PollWait<'_> {
    fn drop(&mut self) {
        self.withdraw_inner(Withdrawal::Closed);
    }
}

/// The id in a serialized scrape request.
fn request_id(request: &[u8]) -> Option<Box<str>> {
    let text = std::str::from_utf8(request).ok()?;
    text.split("\r\n")
        .find_map(|line| line.strip_prefix("Id: "))
        .map(Into::into)
}

impl ScrapeTicket<'_> {
    /// The push's answer, or `None` when none will come (the client went away).
    pub async fn delivery(&mut self) -> Option<Delivery> {
        match self.delivery.as_mut() {
            Some(rx) => rx.await.ok(),
            None => None,
        }
    }

    /// Whether the request reached a poll of the client (else it still waits for one).
    pub fn handed_over(&self) -> bool {
        let state = self.registry.lock();
        // Gone from pending: claimed by a push, so handed over.
        state.pending.get(&*self.id).is_none_or(|p| p.handed)
    }
}

impl Drop for ScrapeTicket<'_> {
    fn drop(&mut self) {
        let mut state = self.registry.lock();
        if let Some(pending) = state.pending.remove(&*self.id) {
            if let Some(client) = state.clients.get_mut(&pending.name) {
                client.queue.retain(|(id, _)| *id != self.id);
            }
            remember_expired(&mut state, self.id.clone());
        }
    }
}
