//! A topic: its log, the event its subscribers wait on, and the counters
//! that decide when it expires.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use event_listener::{Event, EventListener};

use crate::error::Error;
use crate::message::{Json, Message};
use crate::metrics::{Metrics, SubscriberKind};
use crate::name::TopicName;
use crate::settings::{Mode, Settings};
use crate::store::{Counts, Log, Removal, TopicInfo};

/// One topic.
///
/// Waiting follows the check–listen–check pattern: a subscriber first
/// [`listen`](Topic::listen)s, then reads the log, and only waits if the read
/// came back empty, so a publish between the read and the wait can never be
/// missed.
pub(crate) struct Topic {
    pub(crate) name: TopicName,
    pub(crate) log: Box<dyn Log>,
    /// Notified after every append, on delete and on shutdown.
    event: Event,
    /// Parked long-polls, SSE streams and WebSockets on this topic now.
    pub(crate) subscribers: AtomicUsize,
    /// Live sessions holding a cursor for this topic.
    pub(crate) sessions: AtomicUsize,
    /// Appends in progress ([`Publishing`]): the sweeper keeps the topic.
    publishing: AtomicUsize,
    /// Set when the topic is deleted or expired: its subscribers end.
    closed: AtomicBool,
    /// What the sweeper remembers between sweeps.
    sweep: Mutex<SweepState>,
    /// The wake events of streams following several topics, this one
    /// among them ([`Topic::watch`]): notified with the topic's own. A
    /// stream waits on its one event rather than a listener per topic.
    watchers: Mutex<Vec<Arc<Event>>>,
    /// `watchers.len()`, read without the lock on every notify.
    watched: AtomicUsize,
}

/// Expiry bookkeeping, touched only by the sweeper: the hot paths (publish,
/// subscribe, leave) only move counters, and the sweeper notices changes.
/// That keeps the clock out of them, at the price of expiry being as precise
/// as the sweep interval.
#[derive(Default)]
struct SweepState {
    /// `max` at the previous sweep; a change means somebody published.
    seen_max: u64,
    /// Since when nothing has kept the topic alive, as first noticed.
    idle_since: Option<Instant>,
}

impl Topic {
    pub(crate) fn new(name: TopicName, log: Box<dyn Log>) -> Topic {
        Topic {
            name,
            log,
            event: Event::new(),
            subscribers: AtomicUsize::new(0),
            sessions: AtomicUsize::new(0),
            publishing: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            sweep: Mutex::new(SweepState::default()),
            watchers: Mutex::new(Vec::new()),
            watched: AtomicUsize::new(0),
        }
    }

    /// Appends a message and wakes everybody waiting; nobody is woken
    /// when the store could not keep it.
    pub(crate) fn append(&self, json: Json) -> Result<Message, crate::store::StoreError> {
        let message = self.log.append(json)?;
        self.notify();
        Ok(message)
    }

    /// Wakes this topic's waiters and the streams watching it.
    fn notify(&self) {
        self.event.notify(usize::MAX);
        if self.watched.load(Ordering::SeqCst) > 0 {
            let watchers = self.watchers.lock().unwrap_or_else(PoisonError::into_inner);
            for watcher in watchers.iter() {
                watcher.notify(usize::MAX);
            }
        }
    }

    /// Has `wake` notified whenever this topic's subscribers are, until
    /// [`Topic::unwatch`]: how a stream of several topics waits on one
    /// event.
    pub(crate) fn watch(&self, wake: &Arc<Event>) {
        let mut watchers = self.watchers.lock().unwrap_or_else(PoisonError::into_inner);
        watchers.push(Arc::clone(wake));
        self.watched.store(watchers.len(), Ordering::SeqCst);
    }

    /// Stops notifying `wake` ([`Topic::watch`]).
    pub(crate) fn unwatch(&self, wake: &Arc<Event>) {
        let mut watchers = self.watchers.lock().unwrap_or_else(PoisonError::into_inner);
        watchers.retain(|watcher| !Arc::ptr_eq(watcher, wake));
        self.watched.store(watchers.len(), Ordering::SeqCst);
    }

    /// A listener to register *before* reading the log.
    pub(crate) fn listen(&self) -> EventListener {
        self.event.listen()
    }

    /// Wakes every subscriber (shutdown: they look at the hub's flag).
    pub(crate) fn wake_all(&self) {
        self.notify();
    }

    /// Ends every subscriber: the topic was deleted or expired here, and
    /// the store is told why.
    pub(crate) fn close(&self, why: Removal) {
        self.log.remove(why);
        self.end();
    }

    /// Ends every subscriber without telling the store: the store itself
    /// said this life of the topic is over (see [`crate::Change`]).
    pub(crate) fn end(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.notify();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Whether the sweeper should remove this topic now. Called with the
    /// topic table write-locked, so no subscriber can arrive meanwhile.
    pub(crate) fn expired(&self, settings: &Settings, now: Instant) -> bool {
        let mut state = self.sweep.lock().unwrap_or_else(PoisonError::into_inner);
        let max = self.log.max();
        let watched = self.subscribers.load(Ordering::SeqCst) > 0
            || self.publishing.load(Ordering::SeqCst) > 0;
        let published = max != state.seen_max;
        state.seen_max = max;
        let (kept, grace) = match settings.mode {
            // Mailbox topics are kept by subscribers alone; a publish inside
            // the linger window waits for the subscriber who comes back.
            Mode::Mailbox => (watched, settings.linger),
            Mode::Normal => (
                watched || self.sessions.load(Ordering::SeqCst) > 0,
                settings.topic_idle,
            ),
        };
        // Never early, at most one sweep late: a publish happened before the
        // sweep that saw it, so the idle time starts there; a subscriber
        // left after the last sweep that saw it, so the idle time starts at
        // the first sweep that finds it gone.
        let since = if kept {
            state.idle_since = None;
            return false;
        } else if published && settings.mode == Mode::Normal {
            *state.idle_since.insert(now)
        } else {
            *state.idle_since.get_or_insert(now)
        };
        now.saturating_duration_since(since) >= grace
    }

    /// This server's subscribers and sessions of the topic.
    pub(crate) fn counts(&self) -> Counts {
        Counts {
            subscribers: self.subscribers.load(Ordering::SeqCst),
            sessions: self.sessions.load(Ordering::SeqCst),
        }
    }

    /// What `.info` shows: counts over every server sharing the store.
    pub(crate) fn info(&self) -> TopicInfo {
        let (here, elsewhere) = (self.counts(), self.log.elsewhere());
        TopicInfo {
            name: self.name.as_str().to_string(),
            epoch: self.log.epoch().as_str().to_string(),
            max: self.log.max(),
            buffered: self.log.buffered(),
            counts: Counts {
                subscribers: here.subscribers + elsewhere.subscribers,
                sessions: here.sessions + elsewhere.sessions,
            },
        }
    }
}

/// An append in progress on a topic, counted from its lookup (under the
/// table's lock) until it is dropped, so the sweeper keeps the topic.
pub(crate) struct Publishing {
    pub(crate) topic: Arc<Topic>,
}

impl Publishing {
    /// Called with the topic table locked.
    pub(crate) fn start(topic: &Arc<Topic>) -> Publishing {
        topic.publishing.fetch_add(1, Ordering::SeqCst);
        Publishing {
            topic: Arc::clone(topic),
        }
    }
}

impl Drop for Publishing {
    fn drop(&mut self) {
        self.topic.publishing.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A counted subscriber of a topic: parked long-poll, SSE stream or
/// WebSocket. Dropping it is leaving, so a client that disconnects is
/// forgotten the moment its adapter drops the request.
pub(crate) struct Subscription {
    topic: Arc<Topic>,
    kind: SubscriberKind,
    total: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

impl Subscription {
    /// Counts one more subscriber, refusing it past either limit. Called
    /// while the topic table is read-locked, so the sweeper (which write-locks
    /// it) sees either no subscriber and a topic it may remove, or this one.
    pub(crate) fn join(
        topic: &Arc<Topic>,
        kind: SubscriberKind,
        settings: &Settings,
        total: &Arc<AtomicUsize>,
        metrics: &Arc<Metrics>,
    ) -> Result<Subscription, Error> {
        if topic.subscribers.fetch_add(1, Ordering::SeqCst) >= settings.max_subscribers {
            topic.subscribers.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::TooManySubscribers {
                limit: settings.max_subscribers,
            });
        }
        if total.fetch_add(1, Ordering::SeqCst) >= settings.max_subscribers_total {
            total.fetch_sub(1, Ordering::SeqCst);
            topic.subscribers.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::TooManySubscribersTotal {
                limit: settings.max_subscribers_total,
            });
        }
        metrics.subscribers(kind).fetch_add(1, Ordering::Relaxed);
        Ok(Subscription {
            topic: Arc::clone(topic),
            kind,
            total: Arc::clone(total),
            metrics: Arc::clone(metrics),
        })
    }

    pub(crate) fn topic(&self) -> &Arc<Topic> {
        &self.topic
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.topic.subscribers.fetch_sub(1, Ordering::SeqCst);
        self.total.fetch_sub(1, Ordering::SeqCst);
        self.metrics
            .subscribers(self.kind)
            .fetch_sub(1, Ordering::Relaxed);
    }
}
