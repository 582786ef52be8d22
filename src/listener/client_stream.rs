//! A client connection's byte stream: the accepted socket, unbuffered, with a write buffer that
//! exists only while a response is being written.
//!
//! Pingora's listener gives each connection a 64 KiB read buffer and a write buffer, allocated
//! (and the read buffer zeroed) at accept: with a 16 KiB write buffer a silent connection cost
//! about 115 KiB, so a thousand of them could take a 128 MiB pod down. The tunnel reads a
//! request header itself, into a buffer sized for it (`header.rs`), and needs no read buffer
//! here. Small writes (TLS records, above all) are still gathered, so an answer leaves in one
//! `sendto`, into a buffer allocated on the first write and released at each flush: an idle
//! connection holds none. Vectored writes, which the tunnel's own answers use
//! (`exchange.rs`: header and body from where they lie), go straight to the socket.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Bytes of a response gathered before they are written. 16 KiB holds a response header and a
/// compressed node_exporter page (about 10 KiB); larger writes go straight to the socket.
pub const WRITE_GATHER_BYTES: usize = 16 * 1024;

/// An accepted client connection: reads straight from the socket, writes gathered.
#[derive(Debug)]
pub struct ClientStream {
    inner: Stream,
    /// Written but not yet sent; unallocated between responses.
    pending: Vec<u8>,
    /// How much of `pending` the socket took already.
    sent: usize,
}

impl ClientStream {
    /// Wraps an accepted stream (which must have no L4 buffers of its own).
    pub fn new(inner: Stream) -> Self {
        ClientStream {
            inner,
            pending: Vec::new(),
            sent: 0,
        }
    }

    /// The accepted stream underneath (to splice into, once what was gathered is sent).
    pub fn inner(&self) -> &Stream {
        &self.inner
    }

    /// Writes out what was gathered; on success the buffer is released.
    fn poll_send_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.pending.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.pending = Vec::new();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.pending.len() + buf.len() > WRITE_GATHER_BYTES {
            ready!(this.poll_send_pending(cx))?;
        }
        if buf.len() >= WRITE_GATHER_BYTES {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        if this.pending.capacity() == 0 {
            this.pending.reserve_exact(WRITE_GATHER_BYTES);
        }
        this.pending.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    /// Straight to the socket (`writev`), after anything gathered: an answer's header and
    /// body come this way, from where they lie, without a copy of their own.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_send_pending(cx))?;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for ClientStream {
    async fn shutdown(&mut self) {
        // What was gathered is the end of a response: send it before closing.
        let _ = self.flush().await;
        Shutdown::shutdown(&mut *self.inner).await;
    }
}

impl UniqueID for ClientStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for ClientStream {}

impl GetTimingDigest for ClientStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for ClientStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl GetSocketDigest for ClientStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
}

impl Peek for ClientStream {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::runtime;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (ClientStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let server: pingora_core::protocols::l4::stream::Stream = server.expect("accept").0.into();
        (
            ClientStream::new(Box::new(server)),
            client.expect("connect"),
        )
    }

    #[test]
    fn small_writes_wait_for_the_flush_and_the_buffer_goes_with_it() {
        runtime().block_on(async {
            let (mut stream, mut peer) = pair().await;
            stream.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
            stream.write_all(b"page").await.unwrap();
            assert_eq!(stream.pending.len(), 23, "gathered, not sent");
            stream.flush().await.unwrap();
            assert_eq!(stream.pending.capacity(), 0, "released after the flush");
            let mut got = [0u8; 23];
            peer.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"HTTP/1.1 200 OK\r\n\r\npage");
        });
    }

    #[test]
    fn large_writes_pass_straight_through_in_order() {
        runtime().block_on(async {
            let (mut stream, mut peer) = pair().await;
            let big = vec![b'x'; WRITE_GATHER_BYTES * 3];
            stream.write_all(b"head").await.unwrap();
            stream.write_all(&big).await.unwrap();
            stream.write_all(b"tail").await.unwrap();
            stream.flush().await.unwrap();
            let mut got = vec![0u8; big.len() + 8];
            peer.read_exact(&mut got).await.unwrap();
            assert_eq!(&got[..4], b"head");
            assert!(got[4..4 + big.len()].iter().all(|b| *b == b'x'));
            assert_eq!(&got[4 + big.len()..], b"tail");
        });
    }
}
