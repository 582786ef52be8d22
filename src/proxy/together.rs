//! Answers that arrive in the same pass of the runtime leave together: each scrape waits once,
//! behind the tasks the last poll for I/O woke, before it writes its answer to the client.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::metrics::METRICS;

/// Lets every scrape whose answer arrived in the same pass of the runtime read it before any
/// is written on, when other scrapes are in flight: the answers then leave back to back, and a
/// client that was asleep is woken once for all of them rather than once for each, as
/// HAProxy's loop does by running its streams after all reads. Measured across the veth link
/// (benches/README.md, "Answers leave together"): on the gzip page at 32 connections the
/// tunnel woke the client 0.215 times per scrape against HAProxy's 0.095, and 0.090 with this.
/// Alone, a scrape skips it: the wait would cost a second poll of its task for nothing.
pub(super) async fn answers_leave_together() {
    if METRICS.in_flight.get() > 1 {
        BehindTheQueue::default().await;
    }
}

/// Pending once, waking its task at once: the task goes to the back of the runtime's queue,
/// behind every task the last poll for I/O woke, and runs again after them. tokio's
/// `yield_now` would also hold it until the runtime next polls for I/O (tokio-rs/tokio#5223),
/// an `epoll_wait` more per pass for answers that are all in already. Neither order is
/// promised by tokio's docs: the benches, not a test, watch it.
#[derive(Default)]
struct BehindTheQueue {
    woken: bool,
}

impl Future for BehindTheQueue {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.woken {
            return Poll::Ready(());
        }
        self.woken = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn a_task_behind_the_queue_runs_again_after_the_tasks_already_woken() {
        crate::test_support::runtime().block_on(async {
            let order = Arc::new(Mutex::new(Vec::new()));
            let first = {
                let order = Arc::clone(&order);
                tokio::spawn(async move {
                    order.lock().unwrap().push("first reads its answer");
                    BehindTheQueue::default().await;
                    order.lock().unwrap().push("first writes");
                })
            };
            let second = {
                let order = Arc::clone(&order);
                tokio::spawn(async move {
                    order.lock().unwrap().push("second reads its answer");
                })
            };
            first.await.unwrap();
            second.await.unwrap();
            assert_eq!(
                *order.lock().unwrap(),
                [
                    "first reads its answer",
                    "second reads its answer",
                    "first writes"
                ]
            );
        });
    }
}
