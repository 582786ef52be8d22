//! A large body of known length moved from the exporter's socket to the client's by the kernel
//! (`splice(2)` through a pipe), never copied into the tunnel, as HAProxy's
//! `option splice-response` and Go's `io.Copy` between TCP connections do.
//!
//! Measured before it was built (benches/README.md, "Splicing"): HAProxy with splicing took
//! 0.58x the CPU of the tunnel's copying on a 5 MB page. Only plain TCP on both ends can be
//! spliced (TLS encrypts in user space), and only a body whose length is known, so that the
//! byte count is exact: the connection to the exporter is then reused and the client's kept.
//! The scrape's deadline bounds every wait, as it bounds every read of a copied body.
//!
//! The crate's one module with unsafe code (three statements, each with its reason): Pingora's
//! socket stream offers a raw descriptor but no `AsFd`, and tokio registers a descriptor for
//! readiness only on the caller's word that it stays open.

#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::fcntl::{fcntl, splice, FcntlArg, SpliceFFlags};
use nix::unistd::pipe2;
use pingora_core::protocols::l4::stream::Stream as SocketStream;
use pingora_core::protocols::Stream;
use pingora_error::{Error, ErrorType, Result};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::time::{timeout_at, Instant};

use super::Sender;

/// The least body still to come that is spliced: below it, the descriptors, pipe and
/// registrations splicing sets up (about ten system calls) cost more than copying saves.
pub const SPLICE_MIN_BYTES: u64 = 256 * 1024;

/// The pipe's size asked for: a few of the socket buffers' worth.
const PIPE_BYTES: i32 = 256 * 1024;

/// A duplicate of the socket under `stream`, when it is a plain TCP (or Unix) connection
/// with nothing buffered above it: what splicing reads from or writes to, registered for
/// readiness on its own. `None` for TLS.
pub fn plain_socket(stream: &Stream) -> Option<OwnedFd> {
    // Pingora's socket streams on the tunnel's ports and to exporters hold no bytes of their
    // own: read and write buffers of zero (`ProxyPort`, Pingora's connector).
    let socket = (**stream).as_any().downcast_ref::<SocketStream>()?;
    // SAFETY: the descriptor is the one `socket` owns, open while `socket` is borrowed, which
    // outlasts this statement; it is only duplicated here, never closed or kept.
    let socket = unsafe { BorrowedFd::borrow_raw(socket.as_raw_fd()) };
    socket.try_clone_to_owned().ok()
}

/// Moves `length` bytes from `exporter` to `client` by `until`, counting in `moved` the bytes
/// the client's socket took. Errors are marked as the exporter's (it closed early, failed, or
/// the deadline passed while waiting for it) or the client's (it failed, or took nothing
/// before the deadline).
pub async fn splice_body(
    exporter: OwnedFd,
    client: OwnedFd,
    length: u64,
    until: Instant,
    moved: &mut u64,
) -> Result<()> {
    let setup = |e: std::io::Error| {
        Error::because(ErrorType::InternalError, "while setting up splicing", e)
    };
    let (pipe_out, pipe_in) = pipe2(nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| setup(e.into()))?;
    // A larger pipe moves a large body in fewer rounds of wake-ups; where the kernel refuses
    // (the user's pipe allowance is spent), the default 64 KiB serves.
    let _ = fcntl(&pipe_in, FcntlArg::F_SETPIPE_SZ(PIPE_BYTES));
    let exporter = readiness(exporter, Interest::READABLE).map_err(setup)?;
    let client = readiness(client, Interest::WRITABLE).map_err(setup)?;
    let flags = SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE;
    let mut left = length;
    while left > 0 {
        // Into the pipe: as much as the exporter has, up to what the pipe holds.
        let want = usize::try_from(left).unwrap_or(usize::MAX);
        let mut in_pipe = loop {
            let mut ready = match timeout_at(until, exporter.readable()).await {
                Ok(ready) => ready.map_err(|e| read_error(e, left))?,
                Err(_) => return Err(deadline(Sender::Exporter, left)),
            };
            match ready.try_io(|fd| {
                splice(fd, None, &pipe_in, None, want, flags).map_err(std::io::Error::from)
            }) {
                Ok(Ok(0)) => {
                    return Err(Sender::Exporter.error(
                        ErrorType::ConnectionClosed,
                        format!("the exporter closed the connection with {left} bytes of the body still to come"),
                    ))
                }
                Ok(Ok(n)) => break n,
                Ok(Err(e)) => return Err(read_error(e, left)),
                Err(_would_block) => continue,
            }
        };
        left -= in_pipe as u64;
        // Out of the pipe, all of it, before reading more.
        while in_pipe > 0 {
            let mut ready = match timeout_at(until, client.writable()).await {
                Ok(ready) => ready.map_err(write_error)?,
                Err(_) => return Err(deadline(Sender::Client, left)),
            };
            match ready.try_io(|fd| {
                splice(&pipe_out, None, fd, None, in_pipe, flags).map_err(std::io::Error::from)
            }) {
                Ok(Ok(n)) => {
                    in_pipe -= n;
                    *moved += n as u64;
                }
                Ok(Err(e)) => return Err(write_error(e)),
                Err(_would_block) => continue,
            }
        }
    }
    Ok(())
}

/// `socket` registered with the runtime for `interest`; deregistered and closed when dropped.
fn readiness(socket: OwnedFd, interest: Interest) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` keeps its descriptor open, and the same, until it is dropped, which
    // the `AsyncFd` that owns it does only as it deregisters it.
    unsafe { AsyncFd::register_with_interest(socket, interest) }.map_err(|e| e.into_parts().1)
}

/// Reading the exporter's socket failed.
fn read_error(e: std::io::Error, left: u64) -> Box<Error> {
    Sender::Exporter.mark(Error::because(
        ErrorType::ReadError,
        format!("while splicing the body, {left} bytes still to come"),
        e,
    ))
}

/// Writing to the client's socket failed: it hung up or reset.
fn write_error(e: std::io::Error) -> Box<Error> {
    Sender::Client.mark(Error::because(
        ErrorType::WriteError,
        "while splicing the answer to the client",
        e,
    ))
}

/// The deadline passed while waiting on `side`.
fn deadline(side: Sender, left: u64) -> Box<Error> {
    match side {
        Sender::Exporter => side.error(
            ErrorType::ReadTimedout,
            format!("the body was still arriving at the deadline, {left} bytes to come"),
        ),
        Sender::Client => side.error(
            ErrorType::WriteTimedout,
            "the client took no bytes before the deadline",
        ),
    }
}
