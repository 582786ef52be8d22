//! The proxy port's connection handling: a Pingora `ServerApp` around the HTTP proxy that caps
//! open connections, closes idle ones and gives each request header a deadline, so slow or
//! silent clients (slowloris) cannot hold the port.
//!
//! Pingora's own HTTP/1 loop times out each read, not a whole header, and has no connection
//! limit; this replaces that loop (HTTP/1 only: the proxy port serves no HTTP/2) and hands each
//! request to the proxy unchanged.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use log::debug;
use pingora_core::apps::{HttpServerApp, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use tokio::io::AsyncWriteExt;

use crate::config::ClientLimits;
use crate::metrics::{ConnectionRejection, METRICS};

/// Marks that a connection's request header has been read; handed to the proxy as the
/// connection's user context, which Pingora delivers to `ProxyHttp::on_connection_reuse` right
/// after the header is read.
#[derive(Debug, Clone, Default)]
pub struct HeaderRead(Arc<AtomicBool>);

impl HeaderRead {
    /// Records that the header arrived.
    pub fn mark(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn is_marked(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The answer to a connection over the limit.
const OVER_LIMIT: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 49\r\nConnection: close\r\n\r\n503 Service Unavailable: too many connections\r\n\r\n";

/// One open connection, counted for as long as it lives.
struct ConnectionSlot<'a>(&'a AtomicUsize);

impl<'a> ConnectionSlot<'a> {
    fn take(open: &'a AtomicUsize, max: usize) -> Option<Self> {
        let mut current = open.load(Ordering::Relaxed);
        loop {
            if current >= max {
                return None;
            }
            match open.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    METRICS.open_connections.inc();
                    return Some(ConnectionSlot(open));
                }
                Err(now) => current = now,
            }
        }
    }
}

impl Drop for ConnectionSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        METRICS.open_connections.dec();
    }
}

/// The proxy port's `ServerApp`: limits first, then the HTTP proxy.
pub struct GuardedApp<A> {
    inner: Arc<A>,
    limits: ClientLimits,
    open: AtomicUsize,
}

impl<A> GuardedApp<A> {
    /// Guards `inner` with `limits`.
    pub fn new(inner: A, limits: ClientLimits) -> Self {
        GuardedApp {
            inner: Arc::new(inner),
            limits,
            open: AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl<A> ServerApp for GuardedApp<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        crate::pacemaker::ensure_started();
        let Some(_slot) = ConnectionSlot::take(&self.open, self.limits.max_connections) else {
            METRICS
                .connection_rejected(ConnectionRejection::Limit)
                .inc();
            debug!(
                "connection refused: {} connections already open",
                self.limits.max_connections
            );
            let _ = stream.write_all(OVER_LIMIT).await;
            let _ = stream.flush().await;
            return None;
        };
        let idle = self.limits.idle_timeout;
        // Pingora takes keep-alive in whole seconds.
        let idle_secs = idle.as_secs().max(1);
        let mut first = true;
        loop {
            // The first request's header must be complete within HEADER_READ_TIMEOUT of the
            // connection; a later one may wait up to IDLE_TIMEOUT (Pingora's keep-alive timeout
            // closes an idle connection) and then has HEADER_READ_TIMEOUT on top. Peeking for a
            // later request's first byte would cost a read syscall per scrape.
            let header_deadline = if first {
                self.limits.header_read_timeout
            } else {
                idle + self.limits.header_read_timeout
            };
            first = false;
            let mut session = ServerSession::new_http1(stream);
            session.set_keepalive(if *shutdown.borrow() {
                None
            } else {
                Some(idle_secs)
            });
            let header_read = HeaderRead::default();
            session.set_connection_user_context(Some(Box::new(header_read.clone())));

            let request = self.inner.process_new_http(session, shutdown);
            tokio::pin!(request);
            let reused = tokio::select! {
                reused = &mut request => reused,
                () = tokio::time::sleep(header_deadline) => {
                    if !header_read.is_marked() {
                        METRICS.connection_rejected(ConnectionRejection::HeaderTimeout).inc();
                        debug!("connection closed: request header not read within {header_deadline:?}");
                        return None;
                    }
                    request.await
                }
            };
            let (next, _settings) = reused?.consume();
            stream = next;
        }
    }

    async fn cleanup(&self) {
        self.inner.http_cleanup().await;
    }
}
