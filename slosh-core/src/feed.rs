//! A streaming subscriber's way through its topic, shared by SSE streams
//! and WebSockets so the rules of streaming live once: where it is (its
//! cursor), when it must hear something (the heartbeat), when it ends
//! (topic gone, shutdown) and when it is too slow to keep (back-pressure).
//!
//! **Unsent data.** Every message carries the topic's running byte total
//! after it ([`Message::end`](crate::Message::end)); a feed remembers the
//! total at the last message it handed to its adapter. What it still owes
//! its reader is the difference with the total at the topic's head: the
//! bytes of every message published since, evicted ones included. That is
//! one subtraction per poll, and the publisher never looks at subscribers.
//! A subscriber is charged only from the moment it connected: the replay a
//! resuming client asks for is bounded by the ring buffer and is not held
//! against it.
//!
//! Adapters pull from a feed only when their socket can take more, so a
//! reader that stops reading stops the pulls. While a write is pending, the
//! adapter watches the [`Stall`] instead, which drops the subscriber when
//! the bound is passed without waiting for the socket.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use event_listener::EventListener;

use crate::batch::Batch;
use crate::cursor::{Cursor, Resume};
use crate::hub::Hub;
use crate::metrics::SubscriberKind;
use crate::topic::{Subscription, Topic};
use crate::wake::Wake;

/// Why a stream or socket ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The topic was deleted or expired.
    TopicGone,
    /// The hub is shutting down; the client should come back to the next
    /// server.
    ShuttingDown,
    /// The subscriber's unsent data passed `max_unsent`; it should reconnect
    /// and resume.
    TooSlow,
    /// The token that let the subscriber in expired; it needs a new one.
    TokenExpired,
}

/// What a [`Feed`] wants next.
pub(crate) enum FeedStep {
    /// Messages (or a gap) to hand to the client.
    Deliver(Batch),
    /// Nothing was sent for a heartbeat: send a keepalive.
    Ping,
    /// Await the listener or the instant (the next heartbeat), then poll.
    Wait(EventListener, Instant),
    /// The subscription is over.
    End(EndReason),
}

/// What a feed and its [`Stall`] share.
pub(crate) struct Progress {
    /// The topic's running byte total at the last message handed over, or
    /// at connection: everything up to it is no longer owed.
    sent: AtomicU64,
    /// Set once by whichever of the feed and the stall finds the subscriber
    /// too slow, so it is counted once and both agree it is over.
    too_slow: AtomicBool,
}

/// A streaming subscriber: subscription, cursor, heartbeat and the unsent
/// bound. [`EventStream`](crate::EventStream) and
/// [`Socket`](crate::Socket) wrap one each and only add their encoding.
pub(crate) struct Feed {
    hub: Hub,
    subscription: Subscription,
    kind: SubscriberKind,
    cursor: Cursor,
    /// The client named this life's epoch with its cursor: a cursor above
    /// `max` is waited for (see [`Batch::read_from`]).
    confirmed: bool,
    /// The resume point was from another epoch, not yet announced.
    reset: bool,
    progress: Arc<Progress>,
    heartbeat: Duration,
    next_ping: Instant,
    /// When the token that let this subscriber in stops being taken.
    expires: Option<Instant>,
    /// Sticky once set: a feed never comes back to life.
    ended: Option<EndReason>,
}

impl Feed {
    /// A feed at `resume` (or at `max`, seeing only new messages), counted
    /// as a subscriber of `kind`.
    ///
    /// A resume point from another epoch is a reset: the feed starts at the
    /// oldest buffered message of this life, and [`Feed::take_reset`] tells
    /// the stream to say so first. Starting there rather than at 0 keeps a
    /// second, counted gap from following the uncounted one: the loss is
    /// unknown either way.
    pub(crate) fn open(
        hub: &Hub,
        subscription: Subscription,
        kind: SubscriberKind,
        resume: Option<Resume>,
        until: Option<u64>,
        now: Instant,
    ) -> Feed {
        let log = &subscription.topic().log;
        let head = log.head();
        let (cursor, reset) = match resume {
            None => (Cursor(head.max), false),
            Some(resume) => match resume.within(log.epoch()) {
                (_, true) => (Cursor(head.max.saturating_sub(log.buffered() as u64)), true),
                within => within,
            },
        };
        let confirmed = resume.is_some_and(|resume| resume.confirmed_in(log.epoch()));
        Feed {
            hub: hub.clone(),
            cursor,
            confirmed,
            reset,
            progress: Arc::new(Progress {
                sent: AtomicU64::new(head.end),
                too_slow: AtomicBool::new(false),
            }),
            heartbeat: hub.inner.settings.heartbeat,
            next_ping: now + hub.inner.settings.heartbeat,
            expires: until.map(|until| crate::auth::instant_at(until, now)),
            subscription,
            kind,
            ended: None,
        }
    }

    pub(crate) fn hub(&self) -> Hub {
        self.hub.clone()
    }

    pub(crate) fn topic(&self) -> &Arc<Topic> {
        self.subscription.topic()
    }

    /// The id of the newest message handed over (or the resume point).
    pub(crate) fn cursor(&self) -> Cursor {
        self.cursor
    }

    /// Whether the resume point was from another epoch and the stream has
    /// not said so yet; `true` once.
    pub(crate) fn take_reset(&mut self) -> bool {
        std::mem::take(&mut self.reset)
    }

    /// Something was sent at `now`: the next keepalive is a heartbeat away.
    pub(crate) fn sent_at(&mut self, now: Instant) {
        self.next_ping = now + self.heartbeat;
    }

    /// The next step at `now`.
    ///
    /// The log is read once before any listener is registered: a stream
    /// woken by a publish finds its message there and needs no listener for
    /// it, which saves registering (and dropping) one per delivery. Only
    /// when that read is empty is the listener registered and the log read
    /// again, so no publish can slip between the read and the wait.
    pub(crate) fn poll(&mut self, now: Instant) -> FeedStep {
        if let Some(reason) = self.ended {
            return FeedStep::End(reason);
        }
        if self.expires.is_some_and(|at| now >= at) {
            self.ended = Some(EndReason::TokenExpired);
            return FeedStep::End(EndReason::TokenExpired);
        }
        let topic = Arc::clone(self.subscription.topic());
        if let Some(step) = self.read(&topic, now) {
            return step;
        }
        let listener = topic.listen();
        if let Some(step) = self.read(&topic, now) {
            return step;
        }
        if now >= self.next_ping {
            self.sent_at(now);
            return FeedStep::Ping;
        }
        let wake = self
            .expires
            .map_or(self.next_ping, |at| at.min(self.next_ping));
        FeedStep::Wait(listener, wake)
    }

    /// The end, or the messages after the cursor; `None` when there is
    /// nothing to hand over.
    fn read(&mut self, topic: &Topic, now: Instant) -> Option<FeedStep> {
        if let Some(reason) = ending(&self.hub, topic, &self.progress) {
            self.ended = Some(reason);
            return Some(FeedStep::End(reason));
        }
        let batch = Batch::read_from(topic.log.as_ref(), self.cursor, self.confirmed);
        self.cursor = Cursor(batch.max);
        match batch.messages.last() {
            Some(last) => {
                let unsent = last
                    .end()
                    .saturating_sub(self.progress.sent.load(Ordering::SeqCst));
                if unsent > self.limit() {
                    self.progress.drop_slow(&self.hub, self.kind);
                    self.ended = Some(EndReason::TooSlow);
                    return Some(FeedStep::End(EndReason::TooSlow));
                }
                self.progress.sent.fetch_max(last.end(), Ordering::SeqCst);
            }
            // Messages after the cursor aged out before they could be
            // sent: the cursor moves past them, and the gap must say so
            // now, not at some later publish (or never).
            None if batch.missed() > 0 => {}
            None => return None,
        }
        self.hub.inner.metrics.delivered(batch.delivering());
        self.sent_at(now);
        Some(FeedStep::Deliver(batch))
    }

    fn limit(&self) -> u64 {
        self.hub.inner.settings.max_unsent as u64
    }

    /// The watch to keep while a write to this subscriber is pending.
    pub(crate) fn stall(&self) -> Stall {
        Stall {
            hub: self.hub.clone(),
            kind: self.kind,
            limit: self.limit(),
            watch: Watch::One(
                Arc::clone(self.subscription.topic()),
                Arc::clone(&self.progress),
            ),
        }
    }

    /// For a stream of several topics: the end, or the messages after the
    /// cursor, read without registering a listener (the stream waits on
    /// its own event); `None` when there is nothing to hand over.
    pub(crate) fn poll_ready(&mut self, now: Instant) -> Option<FeedStep> {
        if let Some(reason) = self.ended {
            return Some(FeedStep::End(reason));
        }
        let topic = Arc::clone(self.subscription.topic());
        self.read(&topic, now)
    }

    /// What a stall watch of several topics keeps of this feed.
    pub(crate) fn stall_part(&self) -> (Arc<Topic>, Arc<Progress>) {
        (
            Arc::clone(self.subscription.topic()),
            Arc::clone(&self.progress),
        )
    }

    /// A stall watch over every feed of a stream of several topics, woken
    /// by the stream's event.
    pub(crate) fn stall_of_many(
        hub: &Hub,
        kind: SubscriberKind,
        feeds: &[Feed],
        wake: &Arc<event_listener::Event>,
    ) -> Stall {
        Stall {
            hub: hub.clone(),
            kind,
            limit: hub.inner.settings.max_unsent as u64,
            watch: Watch::Many(
                feeds.iter().map(Feed::stall_part).collect(),
                Arc::clone(wake),
            ),
        }
    }
}

impl Progress {
    /// Marks the subscriber too slow, counting it the first time only.
    fn drop_slow(&self, hub: &Hub, kind: SubscriberKind) {
        if !self.too_slow.swap(true, Ordering::SeqCst) {
            hub.inner.metrics.disconnected_slow(kind);
        }
    }
}

/// Why a subscription is over regardless of its data, if it is.
fn ending(hub: &Hub, topic: &Topic, progress: &Progress) -> Option<EndReason> {
    if progress.too_slow.load(Ordering::SeqCst) {
        Some(EndReason::TooSlow)
    } else if topic.is_closed() {
        Some(EndReason::TopicGone)
    } else if hub.is_shutting_down() {
        Some(EndReason::ShuttingDown)
    } else {
        None
    }
}

/// Watches a streaming subscriber while its adapter cannot write to it (the
/// reader stopped reading, so nothing pulls from the feed): it ends the
/// subscriber as soon as its unsent data passes `max_unsent`, or its topic
/// goes away, or the hub shuts down, without waiting for the socket.
///
/// Get one from [`EventStream::stall`](crate::EventStream::stall) or
/// [`Socket::stall`](crate::Socket::stall); it is cheap to clone.
#[derive(Clone)]
pub struct Stall {
    hub: Hub,
    kind: SubscriberKind,
    limit: u64,
    watch: Watch,
}

/// The topics a [`Stall`] watches.
#[derive(Clone)]
enum Watch {
    /// One topic, woken by its own event.
    One(Arc<Topic>, Arc<Progress>),
    /// Several (a stream of several topics), woken by the stream's event.
    Many(
        Arc<[(Arc<Topic>, Arc<Progress>)]>,
        Arc<event_listener::Event>,
    ),
}

impl std::fmt::Debug for Stall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let topics: Vec<&str> = match &self.watch {
            Watch::One(topic, _) => vec![topic.name.as_str()],
            Watch::Many(parts, _) => parts.iter().map(|(topic, _)| topic.name.as_str()).collect(),
        };
        f.debug_struct("Stall")
            .field("topics", &topics)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Stall {
    /// Whether the subscriber is over ([`Wake::Ready`] with the reason:
    /// close its connection now), or the listener to await before checking
    /// again (a publish, a delete or shutdown wakes it).
    pub fn check(&self) -> Wake<EndReason> {
        let listener = match &self.watch {
            Watch::One(topic, _) => topic.listen(),
            Watch::Many(_, wake) => wake.listen(),
        };
        let over = match &self.watch {
            Watch::One(topic, progress) => self.over(topic, progress),
            Watch::Many(parts, _) => parts
                .iter()
                .find_map(|(topic, progress)| self.over(topic, progress)),
        };
        match over {
            Some(reason) => Wake::Ready(reason),
            None => Wake::Wait(listener),
        }
    }

    /// Why the subscription is over on `topic`, if it is: ended, or past
    /// the unsent bound (counted once).
    fn over(&self, topic: &Topic, progress: &Progress) -> Option<EndReason> {
        if let Some(reason) = ending(&self.hub, topic, progress) {
            return Some(reason);
        }
        let unsent = topic
            .log
            .head()
            .end
            .saturating_sub(progress.sent.load(Ordering::SeqCst));
        if unsent > self.limit {
            progress.drop_slow(&self.hub, self.kind);
            return Some(EndReason::TooSlow);
        }
        None
    }
}
