//! Dropping an SSE subscriber whose reader stopped reading.
//!
//! hyper pulls a body only when it can write, so a stream whose socket is
//! full is not polled at all, and core's unsent check in
//! [`EventStream::poll`](slosh_core::EventStream::poll) would never run.
//! [`Guarded`] wraps the connection's socket: when a write would block it
//! also watches the stream's [`Stall`], and fails the write once core says
//! the subscriber is over, which makes hyper drop the connection. A write
//! that goes through costs one branch; only a blocked one looks at core.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use slosh_core::{EventListener, Stall, Wake};

use crate::clock::Clock;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Where a connection's current event stream leaves its [`Stall`] for the
/// connection's socket to watch. One per connection, shared by the
/// service (which fills it) and the socket (which reads it).
#[derive(Clone, Default, Debug)]
pub(crate) struct StallSlot(Arc<Mutex<Option<Stall>>>);

impl StallSlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Stall>> {
        // Only ever replaced whole, so a poisoned value is still sound.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A stream started on this connection.
    pub(crate) fn watch(&self, stall: Stall) {
        *self.lock() = Some(stall);
    }

    /// The stream ended (its body was dropped).
    pub(crate) fn clear(&self) {
        *self.lock() = None;
    }

    fn get(&self) -> Option<Stall> {
        self.lock().clone()
    }
}

/// A socket that fails a blocked write once its stream's [`Stall`] says the
/// subscriber is over.
pub(crate) struct Guarded<T> {
    io: T,
    slot: StallSlot,
    /// Woken by a publish (or delete, or shutdown) while a write is blocked.
    listener: Option<EventListener>,
    /// The connection's clock, told when a write blocks and when it goes
    /// through again: an answer still going out to a slow reader is not
    /// cut off by the head timeout.
    clock: Option<Clock>,
    /// The last write would have blocked.
    blocked: bool,
}

impl<T> Guarded<T> {
    pub(crate) fn new(io: T, slot: StallSlot, clock: Option<Clock>) -> Guarded<T> {
        Guarded {
            io,
            slot,
            listener: None,
            clock,
            blocked: false,
        }
    }

    /// A write blocked after going through, or went through after
    /// blocking; told to the clock only on the change, so a write that
    /// goes through costs one comparison.
    fn progress(&mut self, blocked: bool) {
        if self.blocked != blocked {
            self.blocked = blocked;
            if let Some(clock) = &self.clock {
                clock.writing(blocked);
            }
        }
    }

    /// The socket itself, for what the wrapper does not forward (peeking).
    pub(crate) fn get_ref(&self) -> &T {
        &self.io
    }

    /// Watches `stall` from now on: for a stream served on this socket
    /// directly rather than through the connection's service.
    pub(crate) fn watch(&mut self, stall: Stall) {
        self.slot.watch(stall);
    }

    /// Stops watching: the stream ended.
    pub(crate) fn unwatch(&mut self) {
        self.slot.clear();
        self.listener = None;
    }

    /// Called when a write would block: registers for the next publish, or
    /// fails if the subscriber is already over.
    fn blocked(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        loop {
            if let Some(listener) = &mut self.listener {
                if Pin::new(listener).poll(cx).is_pending() {
                    return Ok(());
                }
                self.listener = None;
            }
            let Some(stall) = self.slot.get() else {
                return Ok(());
            };
            match stall.check() {
                Wake::Ready(reason) => {
                    return Err(io::Error::other(format!(
                        "event stream ended while its reader was not reading: {reason:?}"
                    )))
                }
                Wake::Wait(listener) => self.listener = Some(listener),
            }
        }
    }

    fn guard<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match polled {
            Poll::Pending => {
                self.progress(true);
                match self.blocked(cx) {
                    Ok(()) => Poll::Pending,
                    Err(error) => Poll::Ready(Err(error)),
                }
            }
            ready => {
                self.progress(false);
                self.listener = None;
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.guard(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.guard(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.guard(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
