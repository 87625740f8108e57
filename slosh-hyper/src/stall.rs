//! Dropping an SSE subscriber whose reader stopped reading.
//!
//! hyper pulls a body only when it can write, so a stream whose socket is
//! full is not polled at all, and core's unsent check in
//! [`EventStream::poll`](slosh_core::EventStream::poll) would never run.
//! [`Guarded`] wraps the connection's socket: when a write would block it
//! polls core's [`StallWatch`] of the stream, and fails the write once core
//! says the subscriber is over, which makes hyper drop the connection. A
//! write that goes through costs one branch; only a blocked one looks at
//! core.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use slosh_core::driver::StallWatch;
use slosh_core::Stall;

use crate::clock::Clock;

/// Pieces of one write up to this many bytes in all are copied together
/// and written as one buffer (see `poll_write_vectored`).
const GATHER: usize = 1024;
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
    /// Core's watch of the current stream, kept while a write is blocked.
    watch: Option<StallWatch>,
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
            watch: None,
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
        self.watch = None;
    }

    /// Called when a write would block: fails if core says the subscriber
    /// is over, else leaves the watch registered for the next publish.
    fn blocked(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.watch.is_none() {
            self.watch = self.slot.get().map(StallWatch::new);
        }
        let Some(watch) = &mut self.watch else {
            return Ok(());
        };
        match Pin::new(watch).poll(cx) {
            Poll::Pending => Ok(()),
            Poll::Ready(reason) => Err(io::Error::other(format!(
                "event stream ended while its reader was not reading: {reason:?}"
            ))),
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
                self.watch = None;
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
        let total: usize = bufs.iter().map(|buf| buf.len()).sum();
        let polled = if bufs.len() > 1 && total <= GATHER {
            // A small answer (hyper's head and body) or SSE event (size
            // line, event, CRLF) goes out as one buffer: on loopback a
            // `writev` of several small pieces cost measurably more kernel
            // time than a `write` of the same bytes (publish: 108 k
            // against 113 k requests/s on one core, `benches/RESULTS.md`).
            let mut gathered = [0u8; GATHER];
            let mut at = 0;
            for buf in bufs {
                let end = at + buf.len();
                if let Some(slot) = gathered.get_mut(at..end) {
                    slot.copy_from_slice(buf);
                }
                at = end;
            }
            Pin::new(&mut this.io).poll_write(cx, gathered.get(..total).unwrap_or_default())
        } else {
            Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Records each write the socket would see: `true` for a vectored one.
    #[derive(Default)]
    struct Recorder(Vec<(bool, Vec<u8>)>);

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().0.push((false, buf.to_vec()));
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let all: Vec<u8> = bufs.iter().flat_map(|buf| buf.iter().copied()).collect();
            let len = all.len();
            self.get_mut().0.push((true, all));
            Poll::Ready(Ok(len))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn small_pieces_go_out_as_one_buffer_and_large_ones_as_they_are() {
        let mut io = Guarded::new(Recorder::default(), StallSlot::default(), None);
        let small = [
            io::IoSlice::new(b"5\r\n"),
            io::IoSlice::new(b"hello"),
            io::IoSlice::new(b"\r\n"),
        ];
        assert_eq!(io.write_vectored(&small).await.unwrap(), 10);
        let big = vec![b'x'; GATHER];
        let large = [io::IoSlice::new(b"head"), io::IoSlice::new(&big)];
        assert_eq!(io.write_vectored(&large).await.unwrap(), GATHER + 4);
        let one = [io::IoSlice::new(b"alone")];
        assert_eq!(io.write_vectored(&one).await.unwrap(), 5);
        let writes = &io.get_ref().0;
        assert_eq!(writes.len(), 3);
        assert_eq!(writes[0], (false, b"5\r\nhello\r\n".to_vec()));
        assert!(writes[1].0 && writes[1].1.len() == GATHER + 4);
        assert_eq!(writes[2], (true, b"alone".to_vec()));
    }
}
