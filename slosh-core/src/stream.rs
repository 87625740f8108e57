//! Server-Sent Events: an [`EventStream`] is a [`Feed`](crate::feed) that
//! writes SSE, and the [`Chunks`] it hands its adapter.

use std::time::Instant;

use bytes::Bytes;
use event_listener::EventListener;

use crate::batch::{SSE_PING, SSE_RETRY};
use crate::cursor::Cursor;
use crate::feed::{EndReason, Feed, FeedStep, Stall};
use crate::http::{add_cors, Response};
use crate::multi::{Multi, MultiStep};

/// What a stream hands its adapter in one step: the bytes to write, in
/// order, as separate reference-counted pieces. Each message's piece is the
/// message's own cached encoding, shared with every other subscriber, so
/// handing them over copies nothing. For a WebSocket each piece is one text
/// frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chunks(pub Vec<Bytes>);

impl Chunks {
    /// The pieces, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Bytes> {
        self.0.iter()
    }

    /// How many pieces.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// All pieces copied into one buffer, for tests and logs; adapters write
    /// the pieces themselves instead.
    pub fn to_vec(&self) -> Vec<u8> {
        self.0.concat()
    }
}

impl IntoIterator for Chunks {
    type Item = Bytes;
    type IntoIter = std::vec::IntoIter<Bytes>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// The last event of a stream whose token expired.
pub const SSE_TOKEN_EXPIRED: &str = "event: end\ndata: {\"reason\":\"token expired\"}\n\n";

/// A Server-Sent Events subscription.
///
/// Send [`EventStream::head`] first, then loop: [`EventStream::poll`] gives
/// chunks to write, a listener to await until a deadline (the next
/// heartbeat), or the end of the stream. Poll only when the socket can take
/// more; while a write is pending, watch [`EventStream::stall`] so a reader
/// that stopped reading is dropped at the `max_unsent` bound.
pub struct EventStream {
    source: Source,
    /// Whether `retry:` went out (the first poll sends it).
    started: bool,
    /// Whether the last event saying why the stream ends went out.
    said_end: bool,
    /// The allowed CORS origin to answer with, if any.
    pub(crate) cors: Option<String>,
}

/// What an [`EventStream`] follows.
enum Source {
    /// One topic (`/topics/NAME.sse`).
    One(Feed),
    /// Several (`/subscribe.sse?topic=a&topic=b`).
    Many(Multi),
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let topics = match &self.source {
            Source::One(feed) => vec![feed.topic().name.as_str()],
            Source::Many(multi) => multi.names(),
        };
        f.debug_struct("EventStream")
            .field("topics", &topics)
            .field("cursor", &self.cursor())
            .finish_non_exhaustive()
    }
}

/// What an [`EventStream`] wants next.
#[derive(Debug)]
pub enum StreamStep {
    /// Write these, in order, then poll again.
    Send(Chunks),
    /// Await the listener or the instant, whichever comes first, then poll
    /// again.
    Wait(EventListener, Instant),
    /// The stream is over: end the body. The reason is for logs and
    /// metrics; the wire looks the same (the browser reconnects).
    End(EndReason),
}

impl EventStream {
    pub(crate) fn new(feed: Feed) -> EventStream {
        EventStream::of(Source::One(feed))
    }

    /// A stream of several topics.
    pub(crate) fn many(multi: Multi) -> EventStream {
        EventStream::of(Source::Many(multi))
    }

    fn of(source: Source) -> EventStream {
        EventStream {
            source,
            started: false,
            said_end: false,
            cors: None,
        }
    }

    /// The status and headers to send before the first chunk.
    pub fn head(&self) -> Response {
        let mut head = Response {
            status: 200,
            headers: vec![
                ("Content-Type", "text/event-stream".into()),
                ("Cache-Control", "no-cache".into()),
                ("X-Accel-Buffering", "no".into()),
            ],
            body: Bytes::new(),
        };
        if let Some(allowed) = &self.cors {
            add_cors(&mut head, allowed);
        }
        head
    }

    /// The id of the newest message sent (or the resume point); of the
    /// first topic, for a stream of several.
    pub fn cursor(&self) -> Cursor {
        match &self.source {
            Source::One(feed) => feed.cursor(),
            Source::Many(multi) => multi.first_cursor(),
        }
    }

    /// The watch to keep while a write is pending (see [`Stall`]).
    pub fn stall(&self) -> Stall {
        match &self.source {
            Source::One(feed) => feed.stall(),
            Source::Many(multi) => multi.stall(),
        }
    }

    /// The next step at `now`.
    pub fn poll(&mut self, now: Instant) -> StreamStep {
        let mut out = Vec::new();
        let feed = match &mut self.source {
            Source::One(feed) => feed,
            Source::Many(multi) => {
                if !self.started {
                    self.started = true;
                    out.push(Bytes::from_static(SSE_RETRY.as_bytes()));
                    multi.take_resets(&mut out);
                    multi.sent_at(now);
                }
                return match multi.poll(now, &mut out) {
                    MultiStep::Send => StreamStep::Send(Chunks(out)),
                    // `retry:` still goes out first.
                    MultiStep::Wait(..) | MultiStep::End(_) if !out.is_empty() => {
                        StreamStep::Send(Chunks(out))
                    }
                    MultiStep::Wait(listener, at) => StreamStep::Wait(listener, at),
                    MultiStep::End(EndReason::TokenExpired) if !self.said_end => {
                        self.said_end = true;
                        out.push(Bytes::from_static(SSE_TOKEN_EXPIRED.as_bytes()));
                        StreamStep::Send(Chunks(out))
                    }
                    MultiStep::End(reason) => StreamStep::End(reason),
                };
            }
        };
        if !self.started {
            self.started = true;
            out.push(Bytes::from_static(SSE_RETRY.as_bytes()));
            if feed.take_reset() {
                out.push(crate::batch::sse_reset());
            }
            feed.sent_at(now);
        }
        match feed.poll(now) {
            FeedStep::Deliver(batch) => batch.sse_chunks(&mut out),
            FeedStep::Ping => out.push(Bytes::from_static(SSE_PING.as_bytes())),
            // `retry:` still goes out first; the end is sticky, so the next
            // poll ends the stream.
            FeedStep::Wait(..) | FeedStep::End(_) if !out.is_empty() => {}
            FeedStep::Wait(listener, at) => return StreamStep::Wait(listener, at),
            // Said once, in a last event, so a page can tell the user (or
            // fetch a new token) before `EventSource` tries again; the end
            // is sticky, so the next poll ends the stream.
            FeedStep::End(EndReason::TokenExpired) if !self.said_end => {
                self.said_end = true;
                out.push(Bytes::from_static(SSE_TOKEN_EXPIRED.as_bytes()));
            }
            FeedStep::End(reason) => return StreamStep::End(reason),
        }
        StreamStep::Send(Chunks(out))
    }
}
