//! How registrations end: clients that stopped polling, ids nobody pushed for, series of
//! clients long gone, and every poll at shutdown.

use std::sync::Arc;
use std::time::Instant;

use log::info;

use super::{remember_expired, PollAnswer, Registry, State, DEPARTED_KEPT, REPOLL_GRACE};
use crate::metrics::ClientDrop;

impl Registry {
    /// Drops clients that stopped polling, pushes nobody claimed, and series of clients long
    /// gone. Run every second or so.
    pub fn sweep(&self, now: Instant) {
        let mut state = self.lock();
        let silent: Vec<Arc<str>> = state
            .clients
            .iter()
            .filter(|(_, c)| {
                c.polls.is_empty()
                    && c.answered_at
                        .is_some_and(|at| now.duration_since(at) > REPOLL_GRACE)
            })
            .map(|(name, _)| Arc::clone(name))
            .collect();
        for name in silent {
            info!("client {name} dropped: no poll within {REPOLL_GRACE:?} of its last answer");
            self.drop_client(&mut state, &name, ClientDrop::NoPoll, now);
        }
        let ended: Vec<Box<str>> = state
            .pending
            .iter()
            .filter(|(_, p)| p.deadline < now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ended {
            state.pending.remove(&id);
            remember_expired(&mut state, id);
        }
        let gone: Vec<Arc<str>> = state
            .departed
            .iter()
            .filter(|(_, (_, at))| now.duration_since(*at) > DEPARTED_KEPT)
            .map(|(name, _)| Arc::clone(name))
            .collect();
        for name in gone {
            if let Some((metrics, _)) = state.departed.remove(&name) {
                metrics.remove();
            }
        }
    }

    /// Answers every waiting poll and refuses new ones: the tunnel is shutting down, and its
    /// clients should poll its successor.
    pub fn close(&self) {
        let mut state = self.lock();
        state.closing = true;
        for client in state.clients.values_mut() {
            for poll in client.polls.drain(..) {
                let _ = poll.answer.send(PollAnswer::Closing);
            }
        }
    }

    /// Removes `name`, failing its queued scrapes at once.
    pub(super) fn drop_client(
        &self,
        state: &mut State,
        name: &Arc<str>,
        why: ClientDrop,
        now: Instant,
    ) {
        let Some(client) = state.clients.remove(name) else {
            return;
        };
        // Its scrapes, queued or handed over, end now: their tickets see the sender dropped
        // ("the client went away") rather than wait out their deadline.
        drop(client.queue);
        state.pending.retain(|_, p| p.name != *name);
        if state.departed.len() < self.rules.max_clients {
            state
                .departed
                .insert(Arc::clone(name), (client.metrics, now));
        } else {
            client.metrics.remove();
        }
        self.metrics.dropped(why);
        self.metrics.clients.set(state.clients.len() as i64);
    }
}
