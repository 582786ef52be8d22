//! The HTTP/2 settings of an agent's connection, both ends, where Pingora's defaults are made
//! for short-lived connections to origins and this one lives for weeks.
//!
//! A scrape that Prometheus abandons (its timeout, a restart) resets its stream, and frames of
//! it still on the wire then arrive for a stream that is gone. h2 forgives that only for the
//! few most recent resets and otherwise counts it against a limit (1,024) that never resets
//! for the life of the connection; past it the connection is closed with every scrape on it.
//! Measured: 32 scrapes cancelled at once closed the agent's connection within seconds. So the
//! tunnel's client remembers as many resets as streams may be open, and the per-connection
//! count is off on both ends: the peer is an agent that proved its identity, and its scrapes'
//! number is bounded by `AGENT_MAX_STREAMS`.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pingora_core::connectors::http::v2::ConnectionRef;
use pingora_core::protocols::http::v2::client::drive_connection;
use pingora_core::protocols::http::v2::server::{default_h2_options, H2Options};
use pingora_core::protocols::{Digest, Stream};
use pingora_error::{Error, ErrorType, OrErr, Result};
use tokio::sync::watch;

/// Receive window per stream: a 5 MB page streams without waiting for window updates.
const STREAM_WINDOW: u32 = 8 << 20;
/// Receive window of the connection, shared by its streams.
const CONNECTION_WINDOW: u32 = 32 << 20;
/// The largest frame the agent may send: fewer frames (and wake-ups) per page.
const MAX_FRAME: u32 = 64 << 10;

/// The tunnel's end: an HTTP/2 client over the agent's `stream`, at most `max_streams` open
/// at once, pinging every `ping_interval`; driven on the current runtime.
pub async fn client_handshake(
    stream: Stream,
    max_streams: usize,
    ping_interval: Duration,
) -> Result<ConnectionRef> {
    let id = stream.id();
    let digest = Digest {
        ssl_digest: stream.get_ssl_digest(),
        timing_digest: stream.get_timing_digest(),
        proxy_digest: stream.get_proxy_digest(),
        socket_digest: stream.get_socket_digest(),
    };
    let (send_req, connection) = h2::client::Builder::new()
        .enable_push(false)
        .initial_max_send_streams(max_streams)
        .max_frame_size(MAX_FRAME)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_concurrent_reset_streams(max_streams.max(64))
        .max_local_error_reset_streams(None)
        .handshake::<_, Bytes>(stream)
        .await
        .or_err(
            ErrorType::HandshakeError,
            "during the HTTP/2 handshake with the agent",
        )?;
    let max_streams = max_streams.min(connection.max_concurrent_send_streams());
    if max_streams == 0 {
        return Error::e_explain(ErrorType::H2Error, "the agent allows no stream");
    }
    let ping_timeout = Arc::new(AtomicBool::new(false));
    let (closed_tx, closed_rx) = watch::channel(false);
    let timed_out = Arc::clone(&ping_timeout);
    tokio::spawn(async move {
        drive_connection(connection, id, closed_tx, Some(ping_interval), timed_out).await;
    });
    Ok(ConnectionRef::new(
        send_req,
        closed_rx,
        ping_timeout,
        id,
        max_streams,
        digest,
    ))
}

/// The agent's end: server options for `max_streams` scrapes at once.
pub fn server_options(max_streams: u32) -> H2Options {
    let mut options = default_h2_options();
    options
        .max_concurrent_streams(max_streams)
        .max_frame_size(MAX_FRAME)
        .max_concurrent_reset_streams(max_streams.max(64) as usize)
        .max_local_error_reset_streams(None)
        .max_pending_accept_reset_streams(max_streams.max(64) as usize);
    options
}
