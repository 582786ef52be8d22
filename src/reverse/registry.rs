//! The clients of reverse mode, by name: their open polls, the scrapes waiting for a poll, and
//! the scrapes waiting for a push.
//!
//! A name is registered while its client holds a poll open, and for [`REPOLL_GRACE`] after a
//! poll was answered (the client polls again at once; after a failure, within its 5 s
//! back-off). A client whose waiting poll's connection closes is dropped at once, and so are its
//! queued scrapes, which are answered at once rather than after their deadline. A scrape of a
//! name nobody registered is refused at once.
//!
//! Everything here is done under one lock held for a few map operations, never across an
//! await: polls, pushes and scrapes of registered names are rare next to forwarded scrapes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use log::{info, warn};
use tokio::sync::oneshot;

use crate::metrics::{PollMetrics, PollOutcome, TargetMetrics};
use crate::targets::SharedTargets;

use super::wire;

mod answers;
mod ending;
mod tickets;
pub use answers::*;
pub use tickets::{PollTicket, PollWait, ScrapeTicket, Withdrawal};

/// How long a client whose poll was answered stays registered without polling again: longer
/// than a PushProx client's longest back-off (5 s, randomized by half).
pub const REPOLL_GRACE: Duration = Duration::from_secs(10);
/// How long the series of a client that went away are kept, so one that comes back continues
/// them.
pub const DEPARTED_KEPT: Duration = Duration::from_secs(600);
/// How long a keep-alive request's id waits for its push.
const KEEPALIVE_PUSH_WAIT: Duration = Duration::from_secs(30);
/// Scrapes that may wait at once for one name's next poll.
const MAX_QUEUED_PER_NAME: usize = 64;
/// Ids of ended scrapes remembered, so a late push is told "expired", not "unknown".
const EXPIRED_REMEMBERED: usize = 4096;

/// The rules the registry enforces, from `POLL_*`.
#[derive(Debug, Clone, Copy)]
pub struct PollRules {
    /// Names registered at once.
    pub max_clients: usize,
    /// Open polls per name; a newer poll supersedes the oldest.
    pub max_polls_per_name: usize,
}

/// The registered clients and the scrapes in flight between them and Prometheus.
pub struct Registry {
    state: Mutex<State>,
    rules: PollRules,
    metrics: &'static PollMetrics,
    /// The configured targets, whose names clients may not take.
    targets: SharedTargets,
}

#[derive(Default)]
struct State {
    clients: HashMap<Arc<str>, Client>,
    /// Scrapes and keep-alive requests waiting for their push, by id.
    pending: HashMap<Box<str>, Pending>,
    /// Ids of scrapes that ended, oldest first.
    expired: VecDeque<Box<str>>,
    expired_set: HashSet<Box<str>>,
    /// Series of clients that went away, kept for [`DEPARTED_KEPT`].
    departed: HashMap<Arc<str>, (Arc<TargetMetrics>, Instant)>,
    next_poll: u64,
    closing: bool,
}

struct Client {
    metrics: Arc<TargetMetrics>,
    /// Open polls, oldest first.
    polls: VecDeque<OpenPoll>,
    /// Scrapes waiting for the next poll, oldest first: their ids and requests.
    queue: VecDeque<(Box<str>, Bytes)>,
    /// When its last poll was answered, while none is open.
    answered_at: Option<Instant>,
    /// When a poll last superseded another, to tell two clients sharing a name.
    superseded_at: Option<Instant>,
    /// When that was last logged.
    warned_at: Option<Instant>,
}

struct OpenPoll {
    id: u64,
    answer: oneshot::Sender<PollAnswer>,
}

struct Pending {
    name: Arc<str>,
    /// The scrape's end: where its response goes. `None` for a keep-alive request.
    to: Option<oneshot::Sender<Delivery>>,
    deadline: Instant,
    /// Whether the request reached a poll.
    handed: bool,
}

impl Registry {
    /// A registry enforcing `rules`, counting into `metrics`, refusing the names of `targets`.
    pub fn new(rules: PollRules, metrics: &'static PollMetrics, targets: SharedTargets) -> Self {
        Registry {
            state: Mutex::new(State::default()),
            rules,
            metrics,
            targets,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic under the lock leaves maps that are still consistent: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a poll of `name` (checked for syntax and certificate already).
    pub fn poll(&self, name: &str) -> Result<PollTicket<'_>, PollRefusal> {
        if self.targets.load().get(name).is_some() {
            return Err(PollRefusal::Conflict);
        }
        let mut state = self.lock();
        if state.closing {
            return Err(PollRefusal::Closing);
        }
        let now = Instant::now();
        let name: Arc<str> = match state.clients.get_key_value(name) {
            Some((name, _)) => Arc::clone(name),
            None => {
                if state.clients.len() >= self.rules.max_clients {
                    return Err(PollRefusal::Full);
                }
                let name: Arc<str> = Arc::from(name);
                let metrics = match state.departed.remove(&name) {
                    Some((metrics, _)) => metrics,
                    None => Arc::new(TargetMetrics::new(&name)),
                };
                info!("client {name} registered");
                state.clients.insert(
                    Arc::clone(&name),
                    Client {
                        metrics,
                        polls: VecDeque::new(),
                        queue: VecDeque::new(),
                        answered_at: None,
                        superseded_at: None,
                        warned_at: None,
                    },
                );
                self.metrics.clients.set(state.clients.len() as i64);
                name
            }
        };
        let id = state.next_poll;
        state.next_poll += 1;
        let State {
            clients, pending, ..
        } = &mut *state;
        let Some(client) = clients.get_mut(&name) else {
            return Err(PollRefusal::Closing);
        };
        // A scrape already waiting goes out with this poll.
        while let Some((scrape_id, request)) = client.queue.pop_front() {
            if let Some(p) = pending.get_mut(&scrape_id) {
                p.handed = true;
                client.answered_at = Some(now);
                return Ok(PollTicket::Ready(request));
            }
        }
        if client.polls.len() >= self.rules.max_polls_per_name {
            if let Some(oldest) = client.polls.pop_front() {
                let _ = oldest.answer.send(PollAnswer::Superseded);
                self.metrics.poll(PollOutcome::Superseded);
                let twice = client
                    .superseded_at
                    .is_some_and(|at| now.duration_since(at) < REPOLL_GRACE);
                client.superseded_at = Some(now);
                if twice
                    && client
                        .warned_at
                        .is_none_or(|at| now.duration_since(at) > DEPARTED_KEPT)
                {
                    client.warned_at = Some(now);
                    warn!("two or more clients poll as {name}: each new poll supersedes the other's (POLL_MAX_POLLS_PER_NAME={}); give each its own --fqdn, or bind names to certificates with POLL_BIND_NAMES", self.rules.max_polls_per_name);
                }
            }
        }
        let (tx, rx) = oneshot::channel();
        client.polls.push_back(OpenPoll { id, answer: tx });
        client.answered_at = None;
        Ok(PollTicket::Wait(PollWait {
            registry: self,
            name,
            id,
            answer: Some(rx),
        }))
    }

    /// Sends a scrape of `name` to its client: `request` builds the serialized request from the
    /// scrape's id. `None` when no client is registered as `name`.
    pub fn scrape(
        &self,
        name: &str,
        deadline: Instant,
        request: impl FnOnce(&str) -> Bytes,
    ) -> Option<ScrapeTicket<'_>> {
        let mut state = self.lock();
        let State {
            clients, pending, ..
        } = &mut *state;
        let (name, _) = clients.get_key_value(name)?;
        let name = Arc::clone(name);
        let client = clients.get_mut(&name)?;
        let id: Box<str> = uuid::Uuid::new_v4().to_string().into();
        let bytes = request(&id);
        let (tx, rx) = oneshot::channel();
        let mut handed = false;
        while let Some(poll) = client.polls.pop_front() {
            // A poll whose handler is gone refuses it; its connection's close withdraws it.
            if poll.answer.send(PollAnswer::Scrape(bytes.clone())).is_ok() {
                handed = true;
                break;
            }
        }
        if handed {
            if client.polls.is_empty() {
                client.answered_at = Some(Instant::now());
            }
        } else {
            if client.queue.len() >= MAX_QUEUED_PER_NAME {
                // The oldest queued scrape gives way; its ticket sees the sender dropped.
                if let Some((old, _)) = client.queue.pop_front() {
                    pending.remove(&old);
                }
            }
            client.queue.push_back((id.clone(), bytes));
        }
        pending.insert(
            id.clone(),
            Pending {
                name,
                to: Some(tx),
                deadline,
                handed,
            },
        );
        Some(ScrapeTicket {
            registry: self,
            id,
            metrics: Arc::clone(&client.metrics),
            delivery: Some(rx),
        })
    }

    /// A keep-alive request for an idle poll of `name`, its id registered so the client's push
    /// of it is recognized.
    pub fn keepalive(&self, name: &Arc<str>) -> Bytes {
        let id: Box<str> = uuid::Uuid::new_v4().to_string().into();
        let request = wire::keepalive_request(&id);
        self.lock().pending.insert(
            id,
            Pending {
                name: Arc::clone(name),
                to: None,
                deadline: Instant::now() + KEEPALIVE_PUSH_WAIT,
                handed: true,
            },
        );
        request
    }

    /// Takes the scrape a push with `id` answers. With `certificate` (the names of the
    /// pushing client's certificate, when names are bound), the scrape's name must be one of
    /// them.
    pub fn claim_push(
        &self,
        id: &str,
        certificate: Option<&[String]>,
    ) -> Result<PushClaim, PushRefusal> {
        let mut state = self.lock();
        let Some(entry) = state.pending.get(id) else {
            return Err(if state.expired_set.contains(id) {
                PushRefusal::Expired
            } else {
                PushRefusal::Unknown
            });
        };
        if let Some(names) = certificate {
            if !super::identity::carries(names, &entry.name) {
                return Err(PushRefusal::WrongCertificate);
            }
        }
        let Some(entry) = state.pending.remove(id) else {
            return Err(PushRefusal::Unknown);
        };
        remember_expired(&mut state, id.into());
        match entry.to {
            None => Ok(PushClaim::Keepalive),
            Some(to) if to.is_closed() => Err(PushRefusal::Expired),
            Some(to) => Ok(PushClaim::Scrape {
                name: entry.name,
                to,
                deadline: entry.deadline,
            }),
        }
    }

    /// The names registered now with their series, sorted by name.
    pub fn listing(&self) -> Vec<(Arc<str>, Arc<TargetMetrics>)> {
        let state = self.lock();
        let mut listed: Vec<_> = state
            .clients
            .iter()
            .map(|(name, client)| (Arc::clone(name), Arc::clone(&client.metrics)))
            .collect();
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        listed
    }

    /// The names registered now, sorted.
    pub fn names(&self) -> Vec<Arc<str>> {
        self.listing().into_iter().map(|(name, _)| name).collect()
    }
}

/// Remembers that `id` ended, forgetting the oldest beyond [`EXPIRED_REMEMBERED`].
fn remember_expired(state: &mut State, id: Box<str>) {
    if state.expired_set.insert(id.clone()) {
        state.expired.push_back(id);
    }
    while state.expired.len() > EXPIRED_REMEMBERED {
        if let Some(old) = state.expired.pop_front() {
            state.expired_set.remove(&old);
        }
    }
}
