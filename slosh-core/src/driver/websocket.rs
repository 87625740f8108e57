//! A WebSocket subscription's whole loop, for every frontend: core's frames
//! out, the client's frames in, and every rule between them.
//!
//! The adapter brings its WebSocket library's framing as a [`Framing`] (a
//! stream of [`Received`] frames and a sink of [`Outgoing`] ones) and a
//! [`Timer`]; [`run`] does the rest:
//!
//! - **Back-pressure.** Core's [`Socket`] is pulled only once everything it
//!   gave before is flushed, so a client that stops reading stops the
//!   pulls; meanwhile a [`StallWatch`] closes the socket (1013) once its
//!   unsent data passes `max_unsent`.
//! - **Bounded reading.** No frame is read while [`MAX_QUEUED`] replies are
//!   waiting to go out, so a client that sends without reading cannot grow
//!   the queue; a fragmented message is reassembled here (for libraries
//!   that hand fragments over) and refused (1009) once it passes
//!   [`Socket::read_limit`], like a single frame.
//! - **Control frames.** A ping is answered with a pong carrying its
//!   payload, a close with a close echoing its code (RFC 6455 5.5), unless
//!   the library does both itself ([`Framing::ANSWERS_CONTROL`]); either
//!   way the answer is flushed before the connection is dropped, or the
//!   client would see 1006.
//! - **Closing.** Every close frame gets [`CLOSE_GRACE`] to go out: a
//!   client that does not read never takes it.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use event_listener::EventListener;

use super::{StallWatch, Timer};
use crate::socket::{Incoming, Socket, SocketStep, CLOSE_GRACE, MAX_QUEUED};

/// Close code 1002, sent back when a client's close carried a code that
/// may not be sent on the wire (1005, 1006, 1015, or outside the ranges).
const CLOSE_PROTOCOL_ERROR: u16 = 1002;

/// A frame (or event) from the client, as the adapter's library reports it.
#[derive(Debug)]
pub enum Received {
    /// A whole text message, not yet checked as UTF-8.
    Text(Bytes),
    /// A whole binary message (refused: messages are JSON text).
    Binary,
    /// One piece of a fragmented message, for libraries that do not
    /// reassemble.
    Fragment(Fragment),
    /// A ping with its payload.
    Ping(Bytes),
    /// A pong.
    Pong,
    /// The client's close, with its code if it gave one.
    Close(Option<u16>),
    /// The library refused a frame or message past the read limit.
    TooBig,
    /// The connection failed or ended.
    Gone,
}

/// One piece of a fragmented message.
#[derive(Debug)]
pub struct Fragment {
    /// For the first piece, whether the message is text; `None` for the
    /// pieces after it.
    pub first: Option<bool>,
    /// The piece's bytes.
    pub bytes: Bytes,
    /// Whether this piece completes the message.
    pub last: bool,
}

/// A frame for the adapter's library to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// A text frame; core builds only UTF-8.
    Text(Bytes),
    /// A ping with an empty payload (the keepalive).
    Ping,
    /// A pong carrying a ping's payload.
    Pong(Bytes),
    /// A close frame: a code and reason, or none (answering a client's
    /// close that had none).
    Close(Option<(u16, &'static str)>),
}

/// The connection is gone: the library can send nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// A WebSocket library's framing on one connection, in the shape of a
/// `Stream` of received frames and a `Sink` of outgoing ones.
pub trait Framing {
    /// Whether the library answers pings and a client's close itself (and
    /// sends the answers on its next flush), as tungstenite does.
    const ANSWERS_CONTROL: bool;

    /// The client's next frame.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<Received>;

    /// Whether one more frame may be started.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Closed>>;

    /// Starts sending `frame` (after `poll_ready` said so).
    fn start_send(&mut self, frame: Outgoing) -> Result<(), Closed>;

    /// Writes everything started so far out to the connection.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Closed>>;
}

/// What woke the loop.
enum Event {
    Incoming(Received),
    Flushed,
    Gone,
    Woken,
    Stalled(crate::EndReason),
}

/// Runs `socket` over `framing` until either side ends it; the adapter
/// drops the connection when this returns.
pub async fn run<F: Framing, T: Timer>(mut socket: Socket, mut framing: F, timer: T) {
    let limit = socket.read_limit();
    let mut partial = Partial::default();
    let mut stall = StallWatch::new(socket.stall());
    let mut outbox: VecDeque<Outgoing> = VecDeque::new();
    // Frames started or queued but not yet flushed: while set, core is not
    // polled.
    let mut unflushed = false;
    let mut sleep = pin!(timer.sleep_until(Instant::now()));
    loop {
        let mut wait: Option<EventListener> = None;
        if !unflushed {
            match socket.poll(Instant::now()) {
                SocketStep::Send(frames) => {
                    outbox.extend(frames.0.into_iter().map(Outgoing::Text));
                    unflushed = true;
                }
                SocketStep::Ping => {
                    outbox.push_back(Outgoing::Ping);
                    unflushed = true;
                }
                SocketStep::Wait(listener, at) => {
                    timer.reset(sleep.as_mut(), at);
                    wait = Some(listener);
                }
                SocketStep::Close(code, reason) => {
                    return close(&mut framing, &timer, Some((code, reason))).await;
                }
            }
        }
        let event = poll_fn(|cx| {
            next_event(
                cx,
                &mut framing,
                &mut outbox,
                &mut unflushed,
                &mut wait,
                sleep.as_mut(),
                &mut stall,
            )
        })
        .await;
        let whole = match event {
            Event::Incoming(Received::Text(bytes)) => Whole::Text(bytes),
            Event::Incoming(Received::Binary) => Whole::Binary,
            Event::Incoming(Received::Fragment(fragment)) => match partial.add(fragment, limit) {
                Ok(Some(whole)) => whole,
                Ok(None) => continue,
                Err(Refusal::TooBig) => return too_big(&socket, &mut framing, &timer).await,
                // Text that is not UTF-8 ends the socket, as the libraries
                // end it for an unfragmented one.
                Err(Refusal::NotUtf8) => return,
            },
            Event::Incoming(Received::Ping(payload)) => {
                if !F::ANSWERS_CONTROL {
                    outbox.push_back(Outgoing::Pong(payload));
                }
                unflushed = true;
                continue;
            }
            Event::Incoming(Received::Pong) | Event::Flushed | Event::Woken => continue,
            Event::Incoming(Received::Close(code)) => {
                if F::ANSWERS_CONTROL {
                    let _ = within_grace(&timer, poll_fn(|cx| framing.poll_flush(cx))).await;
                    return;
                }
                let echo = code.map(|code| (sendable(code), ""));
                return close(&mut framing, &timer, echo).await;
            }
            Event::Incoming(Received::TooBig) => {
                return too_big(&socket, &mut framing, &timer).await
            }
            Event::Incoming(Received::Gone) | Event::Gone => return,
            Event::Stalled(reason) => {
                return close(&mut framing, &timer, Some(reason.close_frame())).await;
            }
        };
        let reply = match whole {
            Whole::Text(bytes) => match std::str::from_utf8(&bytes) {
                Ok(text) => match socket.receive_text(text, Instant::now()) {
                    Incoming::Reply(reply) => reply,
                    // The store's write runs on the adapter's blocking
                    // pool; this socket waits for it (its frames are
                    // answered in order), no other connection does.
                    Incoming::Publish(publish) => {
                        let stored = timer.blocking(move || publish.store()).await;
                        socket.published(stored.unwrap_or(Err(crate::Error::ShuttingDown)))
                    }
                    // A topic to open first (a subscribe frame on a store):
                    // off the runtime thread, then the frame again.
                    Incoming::Open(open) => {
                        if !super::open(open, &timer).await {
                            return;
                        }
                        match socket.receive_text(text, Instant::now()) {
                            Incoming::Reply(reply) => reply,
                            Incoming::Publish(publish) => {
                                let stored = timer.blocking(move || publish.store()).await;
                                socket.published(stored.unwrap_or(Err(crate::Error::ShuttingDown)))
                            }
                            Incoming::Open(_) => None,
                        }
                    }
                },
                Err(_) => return,
            },
            Whole::Binary => Some(socket.receive_binary()),
        };
        // A frame may have changed the topics a socket of several follows:
        // the watch of a blocked write must cover them all.
        stall = StallWatch::new(socket.stall());
        if let Some(reply) = reply {
            outbox.push_back(Outgoing::Text(reply));
            unflushed = true;
        }
    }
}

/// Polls everything the loop waits on, writes first, and says what
/// happened. Reads are polled even when a write finished, so a busy topic
/// does not starve the client's frames.
fn next_event<F: Framing, S: Future<Output = ()>>(
    cx: &mut Context<'_>,
    framing: &mut F,
    outbox: &mut VecDeque<Outgoing>,
    unflushed: &mut bool,
    wait: &mut Option<EventListener>,
    sleep: Pin<&mut S>,
    stall: &mut StallWatch,
) -> Poll<Event> {
    let mut flushed = false;
    if *unflushed {
        match send(cx, framing, outbox) {
            Poll::Ready(Ok(())) => {
                flushed = true;
                *unflushed = false;
                stall.relax();
            }
            Poll::Ready(Err(Closed)) => return Poll::Ready(Event::Gone),
            Poll::Pending => {}
        }
    }
    if outbox.len() < MAX_QUEUED {
        if let Poll::Ready(received) = framing.poll_receive(cx) {
            return Poll::Ready(Event::Incoming(received));
        }
    }
    if flushed {
        return Poll::Ready(Event::Flushed);
    }
    if let Some(listener) = wait {
        if Pin::new(listener).poll(cx).is_ready() || sleep.poll(cx).is_ready() {
            return Poll::Ready(Event::Woken);
        }
    }
    if *unflushed {
        // Writes are blocked: core decides whether the reader is too slow.
        if let Poll::Ready(reason) = Pin::new(stall).poll(cx) {
            return Poll::Ready(Event::Stalled(reason));
        }
    }
    Poll::Pending
}

/// Starts every queued frame and flushes them. A frame leaves the queue
/// only once the library has taken it, so nothing is lost when this is
/// polled again later.
fn send<F: Framing>(
    cx: &mut Context<'_>,
    framing: &mut F,
    outbox: &mut VecDeque<Outgoing>,
) -> Poll<Result<(), Closed>> {
    while !outbox.is_empty() {
        ready!(framing.poll_ready(cx))?;
        if let Some(frame) = outbox.pop_front() {
            framing.start_send(frame)?;
        }
    }
    framing.poll_flush(cx)
}

/// Sends a close frame and flushes it, giving up after [`CLOSE_GRACE`].
async fn close<F: Framing, T: Timer>(
    framing: &mut F,
    timer: &T,
    frame: Option<(u16, &'static str)>,
) {
    let mut outbox = VecDeque::from([Outgoing::Close(frame)]);
    let _ = within_grace(timer, poll_fn(|cx| send(cx, framing, &mut outbox))).await;
}

/// Closes for a frame or message past the read limit.
async fn too_big<F: Framing, T: Timer>(socket: &Socket, framing: &mut F, timer: &T) {
    if let SocketStep::Close(code, reason) = socket.too_big() {
        close(framing, timer, Some((code, reason))).await;
    }
}

/// Runs `work` for at most [`CLOSE_GRACE`]; `None` when it ran out.
async fn within_grace<T: Timer, W: Future>(timer: &T, work: W) -> Option<W::Output> {
    let mut work = pin!(work);
    let mut grace = pin!(timer.sleep_until(Instant::now() + CLOSE_GRACE));
    poll_fn(|cx| {
        if let Poll::Ready(output) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        grace.as_mut().poll(cx).map(|()| None)
    })
    .await
}

/// The code to echo for a client's close code: itself when it may be sent
/// on the wire (RFC 6455 7.4), else 1002.
fn sendable(code: u16) -> u16 {
    match code {
        1000..=1003 | 1007..=1014 | 3000..=4999 => code,
        _ => CLOSE_PROTOCOL_ERROR,
    }
}

/// A whole message from the client.
enum Whole {
    Text(Bytes),
    Binary,
}

/// Why a fragmented message is refused.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// It grew past the read limit.
    TooBig,
    /// It is text but not UTF-8.
    NotUtf8,
}

/// A fragmented message being reassembled, bounded by the read limit like
/// a single frame.
#[derive(Default)]
struct Partial {
    /// Whether the message is text, and its bytes so far; `None` between
    /// messages.
    message: Option<(bool, BytesMut)>,
}

impl Partial {
    /// Takes one piece: the message once its last piece completes it.
    fn add(&mut self, fragment: Fragment, limit: usize) -> Result<Option<Whole>, Refusal> {
        if let Some(is_text) = fragment.first {
            self.message = Some((is_text, BytesMut::new()));
        }
        // A continuation without a first piece is ignored, as nothing can
        // be made of it.
        let Some((is_text, bytes)) = &mut self.message else {
            return Ok(None);
        };
        if bytes.len().saturating_add(fragment.bytes.len()) > limit {
            self.message = None;
            return Err(Refusal::TooBig);
        }
        bytes.extend_from_slice(&fragment.bytes);
        if !fragment.last {
            return Ok(None);
        }
        let is_text = *is_text;
        let bytes = std::mem::take(bytes).freeze();
        self.message = None;
        if !is_text {
            return Ok(Some(Whole::Binary));
        }
        if std::str::from_utf8(&bytes).is_err() {
            return Err(Refusal::NotUtf8);
        }
        Ok(Some(Whole::Text(bytes)))
    }
}

#[cfg(test)]
mod tests;
