//! Kept-alive connections to one exporter, waiting for its next scrape.
//!
//! Pingora's connection pool spawns a task to watch every connection it is given back, and a
//! connection taken from it waits for that task to let go and is checked with a `getpeername`:
//! a task, a wake-up and a syscall per scrape, a tenth of a small scrape's instructions. A
//! scrape's connection is only ever reused by the next scrape of the same exporter, so each
//! exporter keeps its own few connections here instead, checked as Pingora checks them (a
//! non-blocking read: a closed or chattering connection is dropped) when they are taken.
//!
//! Idle connections hold file descriptors, which client connections need too: over all
//! exporters, at most [`limit_total`] of them are kept (the client connection limit, set at
//! start-up), so a fleet of exporters cannot starve the proxy port or the metrics port.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::FutureExt;
use log::{debug, warn};
use pingora_core::protocols::l4::socket::SocketAddr;
use pingora_core::protocols::Stream;
use tokio::io::AsyncReadExt;

/// How long a connection may wait for the next scrape. Firewalls and NAT gateways on the way
/// to an exporter forget idle flows silently (often after 5 minutes); a connection older than
/// this is closed rather than trusted, which still covers scrape intervals of a minute.
pub const MAX_IDLE: Duration = Duration::from_secs(120);

/// Idle connections kept now, over all exporters.
static TOTAL: AtomicUsize = AtomicUsize::new(0);
/// The most idle connections kept over all exporters.
static TOTAL_LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Keeps at most `limit` idle exporter connections over all exporters; called once at start-up.
pub fn limit_total(limit: usize) {
    TOTAL_LIMIT.store(limit, Ordering::Relaxed);
}

/// Idle exporter connections kept now, over all exporters.
pub fn total() -> usize {
    TOTAL.load(Ordering::Relaxed)
}

/// One connection between scrapes.
struct IdleConnection {
    stream: Stream,
    /// Where it leads; a name that resolves elsewhere now is not given an old connection.
    address: SocketAddr,
    since: Instant,
}

impl IdleConnection {
    /// Whether it has waited longer than [`MAX_IDLE`] by `now`.
    fn is_stale(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.since) > MAX_IDLE
    }
}

/// The idle connections to one exporter, most recently used last.
#[derive(Default)]
pub struct IdleConnections {
    // Held only to push or pop: a scrape takes it once on each side, uncontended unless
    // several scrapes of the same exporter end at the same moment.
    idle: Mutex<Vec<IdleConnection>>,
}

impl IdleConnections {
    /// The most recently used connection to `address` that is still open, if any, for a
    /// scrape that started `now`. Ages are counted between scrapes' starts, which the scrape
    /// has read already: [`MAX_IDLE`] is minutes, so a scrape's own length does not matter.
    pub fn take(&self, address: &SocketAddr, now: Instant) -> Option<Stream> {
        loop {
            let mut conn = self.lock().pop()?;
            TOTAL.fetch_sub(1, Ordering::Relaxed);
            if conn.address != *address || conn.is_stale(now) {
                debug!("closing an idle connection to {}", conn.address);
                continue;
            }
            if is_open(&mut conn.stream) {
                return Some(conn.stream);
            }
        }
    }

    /// Keeps `stream`, a connection to `address` whose answer was read whole, for the next
    /// scrape; `now` is the start of the scrape that used it (see [`Self::take`]). At most
    /// `capacity` are kept, and none past the total limit. The least recently used one is
    /// closed once it has waited longer than [`MAX_IDLE`], so a burst of scrapes leaves no
    /// connections behind.
    pub fn put(&self, mut stream: Stream, address: SocketAddr, capacity: usize, now: Instant) {
        if !is_open(&mut stream) {
            return;
        }
        if total() >= TOTAL_LIMIT.load(Ordering::Relaxed) {
            debug!("closing a connection to {address}: the idle exporter connections are at their limit");
            return;
        }
        let conn = IdleConnection {
            stream,
            address,
            since: now,
        };
        let mut idle = self.lock();
        if idle.first().is_some_and(|c| c.is_stale(now)) {
            idle.remove(0);
            TOTAL.fetch_sub(1, Ordering::Relaxed);
        }
        if idle.len() < capacity {
            idle.push(conn);
            TOTAL.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many connections wait.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none waits.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<IdleConnection>> {
        // A panic while holding it cannot leave the list half-changed: push and pop are whole.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for IdleConnections {
    /// A target removed on reload takes its idle connections with it.
    fn drop(&mut self) {
        let kept = self.lock().len();
        TOTAL.fetch_sub(kept, Ordering::Relaxed);
    }
}

/// Whether an idle connection can carry a request: one read attempt that must not complete.
/// An exporter never speaks first, so data means a confused connection and end-of-file a
/// closed one (Pingora's `test_reusable_stream` makes the same check). No syscall when the
/// socket has not become readable.
fn is_open(stream: &mut Stream) -> bool {
    let mut byte = [0u8; 1];
    // Outside tokio's cooperative budget: a task that has used up its budget is told "pending"
    // without a look at the socket, and a confused connection would pass (Pingora's own check
    // is unconstrained for the same reason).
    match tokio::task::unconstrained(stream.read(&mut byte)).now_or_never() {
        None => true,
        Some(Ok(0)) => {
            debug!("an idle exporter connection was closed by the exporter");
            false
        }
        Some(Ok(_)) => {
            warn!("an idle exporter connection received unexpected data; closed");
            false
        }
        Some(Err(e)) => {
            debug!("an idle exporter connection is broken: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::runtime;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    /// A connected pair: the tunnel's side as a Pingora stream, and the exporter's side.
    async fn pair(listener: &TcpListener) -> (Stream, TcpStream) {
        let addr = listener.local_addr().expect("addr");
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let stream: pingora_core::protocols::l4::stream::Stream = client.expect("connect").into();
        (Box::new(stream), server.expect("accept").0)
    }

    #[test]
    fn an_open_connection_is_reused_and_a_closed_or_chattering_one_is_not() {
        runtime().block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let here: SocketAddr = listener.local_addr().expect("addr").into();
            let elsewhere: SocketAddr = "127.0.0.2:9"
                .parse::<std::net::SocketAddr>()
                .expect("addr")
                .into();
            let pool = IdleConnections::default();

            let (open, _exporter) = pair(&listener).await;
            pool.put(open, here.clone(), 8, Instant::now());
            assert_eq!(pool.len(), 1);
            assert!(
                pool.take(&elsewhere, Instant::now()).is_none(),
                "a connection to another address"
            );
            assert!(
                pool.is_empty(),
                "the mismatched connection is closed, not kept"
            );

            let (open, _exporter) = pair(&listener).await;
            pool.put(open, here.clone(), 8, Instant::now());
            assert!(
                pool.take(&here, Instant::now()).is_some(),
                "an open connection is reused"
            );

            let (closed, exporter) = pair(&listener).await;
            pool.put(closed, here.clone(), 8, Instant::now());
            drop(exporter);
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(
                pool.take(&here, Instant::now()).is_none(),
                "a connection the exporter closed"
            );

            let (chatty, mut exporter) = pair(&listener).await;
            pool.put(chatty, here.clone(), 8, Instant::now());
            exporter
                .write_all(b"HTTP/1.1 200 OK\r\n")
                .await
                .expect("write");
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(
                pool.take(&here, Instant::now()).is_none(),
                "a connection with unexpected data"
            );
            assert!(pool.is_empty());
        });
    }

    #[test]
    fn no_more_than_capacity_are_kept_and_stale_ones_are_closed() {
        runtime().block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let here: SocketAddr = listener.local_addr().expect("addr").into();
            let pool = IdleConnections::default();
            let mut exporters = Vec::new();
            for _ in 0..3 {
                let (conn, exporter) = pair(&listener).await;
                exporters.push(exporter);
                pool.put(conn, here.clone(), 2, Instant::now());
            }
            assert_eq!(pool.len(), 2, "the third is closed, not kept");

            // Make the least recently used one older than MAX_IDLE: the next put closes it.
            let old = Instant::now()
                .checked_sub(MAX_IDLE + Duration::from_secs(1))
                .expect("clock far enough from its start");
            pool.lock()[0].since = old;
            pool.take(&here, Instant::now()).expect("the newest");
            let (conn, exporter) = pair(&listener).await;
            exporters.push(exporter);
            pool.put(conn, here.clone(), 2, Instant::now());
            assert_eq!(pool.len(), 1, "the stale one was closed");

            // A taken connection older than MAX_IDLE is closed rather than used.
            pool.lock()[0].since = old;
            assert!(pool.take(&here, Instant::now()).is_none());
        });
    }
}
