//! A one-second tick kept armed on every proxy worker thread, so that the deadlines each scrape
//! arms do not each wake the runtime's I/O driver.
//!
//! tokio's timer wakes its driver (an `eventfd` write, then one more `epoll_wait` round) when a
//! new timer is due before every timer that was armed when the driver last parked. A scrape
//! arms connect, read and write deadlines of seconds; with few client connections nothing else
//! is armed, so every scrape paid one or two such wakes (`strace -f` of a scrape shows the
//! `write` right after the request goes upstream). A tick that is always armed and always due
//! within a second is earlier than any deadline over a second, which then joins the timer
//! wheel without a wake. It costs one wake a second per worker thread.
//!
//! The tick also runs the thread's housekeeping, when the binary registers one
//! ([`on_every_tick`]): the allocator returning memory the thread's heap no longer uses, which it
//! otherwise does only when that thread next allocates, and an idle thread never does.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::{interval, MissedTickBehavior};

/// How often the tick fires: deadlines longer than this never wake the driver.
pub const PERIOD: Duration = Duration::from_secs(1);

thread_local! {
    /// Whether a tick already runs for this worker thread (each thread belongs to one runtime:
    /// Pingora's work-stealing runtime, or its own with `work_stealing: false`).
    static STARTED: Cell<bool> = const { Cell::new(false) };
}

/// What every tick runs on its thread, if set.
static HOUSEKEEPING: OnceLock<fn()> = OnceLock::new();

/// Runs `housekeeping` on the worker thread of every tick, once a second. Set once, at start-up,
/// by the binary (it knows its allocator); later calls are ignored.
pub fn on_every_tick(housekeeping: fn()) {
    let _ = HOUSEKEEPING.set(housekeeping);
}

/// Starts the tick on the calling thread's tokio runtime unless one was started from this
/// thread already. Called for each new connection; after the first it is a thread-local read.
pub fn ensure_started() {
    if STARTED.with(|started| started.replace(true)) {
        return;
    }
    tokio::spawn(async {
        let mut tick = interval(PERIOD);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Some(housekeeping) = HOUSEKEEPING.get() {
                housekeeping();
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_tick_per_thread_however_many_connections() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let metrics = tokio::runtime::Handle::current().metrics();
            assert_eq!(metrics.num_alive_tasks(), 0);
            for _ in 0..100 {
                ensure_started();
            }
            assert_eq!(
                metrics.num_alive_tasks(),
                1,
                "one tick, not one per connection"
            );
        });
    }
}
