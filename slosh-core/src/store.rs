//! Where a topic's messages and ids live.
//!
//! This is the one seam between delivery semantics and storage. Everything
//! the protocol decides (cursors above `max`, `saw`, gaps, wakeups) lives in
//! the topic and hub; a [`Log`] only appends, numbers and reads back. A
//! shared store (several slosh servers on one Redis: a stream for the buffer
//! and ids, pub/sub to wake the other servers' subscribers) implements the
//! same trait, and the adapters never notice.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::epoch::Epoch;
use crate::message::{Json, Message};
use crate::name::TopicName;

/// A topic's message buffer: the last `queue` messages with ids 1, 2, 3 …
pub trait Log: Send + Sync {
    /// Stores `json` under the next id and returns the stored message, with
    /// its [`end`](Message::end): the log's running byte total, advanced by
    /// the message's [`size`](Message::size) in the same step as the id.
    ///
    /// A store that can fail (a file, a server) returns [`StoreError`] and
    /// keeps nothing: no id is used up, no subscriber sees the message, and
    /// the publisher is answered `503` and may try again. A message must be
    /// readable only once it is kept for good, so a subscriber never sees
    /// an id that a crash could give to another message.
    fn append(&self, json: Json) -> Result<Message, StoreError>;

    /// Appends to `out` every buffered message with an id above `after`,
    /// oldest first, and returns the newest id (`max`) of the same instant,
    /// so the two are always consistent.
    fn read_after(&self, after: u64, out: &mut Vec<Message>) -> u64;

    /// The newest id, 0 before the first message.
    fn max(&self) -> u64;

    /// The newest id and the running byte total at it, read together.
    fn head(&self) -> Head;

    /// How many messages are buffered now.
    fn buffered(&self) -> usize;

    /// Drops every buffered message appended before `before` (a [`Stamp`]),
    /// and returns how many it dropped: `--max-age`. Ids and `max` stay as
    /// they are, so a cursor from before counts the dropped messages in
    /// `saw` like those the queue pushed out.
    fn expire(&self, before: Stamp) -> usize;

    /// This life's epoch: it changes whenever the ids start again, so a
    /// cursor from another life is never read as a place in this one.
    fn epoch(&self) -> Epoch;

    /// The hub removed the topic, for the reason `why`: a store that
    /// outlives the hub forgets its messages, so the next topic of that
    /// name is a new life. A store shared by several servers forgets it
    /// only when it was [`Removal::Deleted`]: a topic this server stopped
    /// holding may still be watched on another. The memory log has nothing
    /// to do: it is dropped with the topic.
    fn remove(&self, why: Removal) {
        let _ = why;
    }

    /// Called once, when the hub has made the topic: `notify` tells the
    /// hub what happened to it elsewhere. A store shared by several
    /// servers keeps it and calls it with [`Change::Appended`] whenever
    /// messages arrive from another server (after they are readable), so
    /// local subscribers get them as if published here, and with
    /// [`Change::Deleted`] or [`Change::Reset`] when this life of the topic
    /// ended elsewhere. A log that only this hub appends to ignores it: the
    /// hub wakes subscribers after its own appends.
    fn watch(&self, notify: Notify) {
        drop(notify);
    }

    /// What this server holds of the topic now, told by the sweeper once
    /// a sweep: a store shared by several servers passes it on, so the
    /// others can count it ([`Log::elsewhere`]) and know the topic is
    /// held ([`Store::holds`]).
    fn held(&self, here: Counts) {
        let _ = here;
    }

    /// The topic's subscribers and sessions on the other servers sharing
    /// the store, as last heard (at most a few seconds old): `.info` and
    /// `/topics` add them to this server's own. Zero for a store only
    /// this server uses.
    fn elsewhere(&self) -> Counts {
        Counts::default()
    }
}

/// Subscribers and live sessions of a topic, on one server or several.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Parked long-polls, SSE streams and WebSockets.
    pub subscribers: usize,
    /// Live sessions holding a cursor for the topic.
    pub sessions: usize,
}

/// Why the hub removed a topic; see [`Log::remove`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// `DELETE`, on this server or (for a shared store) another.
    Deleted,
    /// Nobody used it here for `topic_idle`, or a mailbox's `linger` ran
    /// out: this server no longer holds it.
    Expired,
}

/// What a shared store tells the hub about one of its topics; see
/// [`Log::watch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// New messages are readable: wake the topic's subscribers.
    Appended,
    /// Another server deleted the topic: end it here too, as a `DELETE`.
    Deleted,
    /// The store no longer holds this life of the topic (its epoch changed
    /// or its data was lost, say a Redis restarted without persistence):
    /// end it here, so subscribers reconnect into the new life and are told
    /// of the reset by their cursor's epoch.
    Reset,
}

/// Tells the hub what happened to a topic elsewhere; see [`Log::watch`].
pub type Notify = Box<dyn Fn(Change) + Send + Sync>;

/// Where topics' logs live, for [`Builder::store`](crate::Builder::store):
/// a file, a shared server. (Memory, the default, needs no store: its logs
/// are made by the hub and forgotten with it.)
pub trait Store: Send + Sync + 'static {
    /// The log of topic `name`, keeping `queue` messages: what the store
    /// holds of it, in its own epoch, or a new life in `fresh` when it
    /// holds nothing. Called with the hub's topic table locked, once per
    /// topic life.
    fn log(&self, name: &TopicName, queue: usize, fresh: Epoch) -> Box<dyn Log>;

    /// The topics the store holds now: a hub built on it loads them at
    /// once, so `/topics` lists them and DELETE finds them before any
    /// request names them. A store that cannot list answers what it can;
    /// the rest come back when a request names them.
    fn topics(&self) -> Vec<TopicName>;

    /// Why the store cannot keep messages now (a server it needs is
    /// unreachable), or `None` when it can: `/healthz` answers
    /// `degraded: WHY` while it says so.
    fn health(&self) -> Option<String> {
        None
    }

    /// Whether another server sharing the store holds topic `name` now
    /// (watched, or a mailbox lingering): in `mailbox` mode a POST to a
    /// topic this server does not hold is accepted only then. A store only
    /// this server uses answers `false`.
    fn holds(&self, name: &TopicName) -> bool {
        let _ = name;
        false
    }

    /// Every topic the store holds for any server, as last heard (at most
    /// a few seconds old; the first ask may find nothing yet): `/topics`
    /// lists those this server does not hold beside its own. Empty for a
    /// store only this server uses (its topics are all loaded).
    fn everywhere(&self) -> Vec<TopicInfo> {
        Vec::new()
    }

    /// Whether other servers share this store (a client may reach any of
    /// them): long-poll answers then carry the client's place in a cursor
    /// cookie, as the next server may not know its session.
    fn shared(&self) -> bool {
        false
    }
}

/// A topic as `.info` and `/topics` show it: one this server holds, or
/// one a store shared by several servers holds for another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Its name.
    pub name: String,
    /// Its epoch.
    pub epoch: String,
    /// Its newest id.
    pub max: u64,
    /// How many messages are buffered.
    pub buffered: usize,
    /// Its subscribers and sessions over every server.
    pub counts: Counts,
}

impl TopicInfo {
    /// The `.info` object (also each item of `/topics`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "topic": self.name,
            "max": self.max,
            "epoch": self.epoch,
            "buffered": self.buffered,
            "subscribers": self.counts.subscribers,
            "sessions": self.counts.sessions,
        })
    }
}

/// Why a store could not keep a message; its text is told to the publisher
/// (without the message) and logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// A shared log is a log: a store whose logs outlive a hub (a test's
/// stand-in for a server restart over a durable store, an embedder's own
/// cache) hands each hub an `Arc` of the same one.
impl<L: Log + ?Sized> Log for std::sync::Arc<L> {
    fn append(&self, json: Json) -> Result<Message, StoreError> {
        (**self).append(json)
    }

    fn read_after(&self, after: u64, out: &mut Vec<Message>) -> u64 {
        (**self).read_after(after, out)
    }

    fn max(&self) -> u64 {
        (**self).max()
    }

    fn head(&self) -> Head {
        (**self).head()
    }

    fn buffered(&self) -> usize {
        (**self).buffered()
    }

    fn expire(&self, before: Stamp) -> usize {
        (**self).expire(before)
    }

    fn epoch(&self) -> Epoch {
        (**self).epoch()
    }

    fn remove(&self, why: Removal) {
        (**self).remove(why)
    }

    fn watch(&self, notify: Notify) {
        (**self).watch(notify)
    }

    fn held(&self, here: Counts) {
        (**self).held(here)
    }

    fn elsewhere(&self) -> Counts {
        (**self).elsewhere()
    }
}

/// When a message was appended: milliseconds since the Unix epoch, by the
/// wall clock, because a store that outlives the process must compare it
/// with a later process's clock (an `Instant` means nothing there).
pub type Stamp = u64;

/// The wall clock as a [`Stamp`] (0 on a clock set before 1970).
pub fn stamp_now() -> Stamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Where a log's newest message is: its id and the running byte total
/// after it. Streams compare their own position with it to know how much
/// they still owe their reader.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Head {
    /// The newest id (`max`), 0 before the first message.
    pub max: u64,
    /// The sum of the sizes of every message appended so far, evicted ones
    /// included.
    pub end: u64,
}

/// The in-memory [`Log`]: a ring buffer behind a mutex held only for a push
/// or a copy of a few reference-counted pointers, so a publisher is never
/// held up by a reader for longer than that.
pub struct MemoryLog {
    ring: Mutex<Ring>,
    capacity: usize,
    /// Every memory log is a new life: its ids start at 1.
    epoch: Epoch,
}

struct Ring {
    messages: VecDeque<Message>,
    /// When each of `messages` was appended, in step with it: apart, so a
    /// read copies the messages from one contiguous run.
    stamps: VecDeque<Stamp>,
    max: u64,
    /// The running byte total, kept even for evicted messages.
    end: u64,
}

impl MemoryLog {
    /// A log keeping the newest `capacity` messages (at least one), in a
    /// new life whose epoch is `epoch`.
    pub fn new(capacity: usize, epoch: Epoch) -> MemoryLog {
        let capacity = capacity.max(1);
        MemoryLog {
            // Grown on demand: most topics hold a handful of messages, and a
            // full-size buffer per topic would be paid by every idle topic.
            ring: Mutex::new(Ring {
                messages: VecDeque::new(),
                stamps: VecDeque::new(),
                max: 0,
                end: 0,
            }),
            capacity,
            epoch,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        // The ring is consistent after every statement that changes it, so a
        // panic elsewhere while it was held leaves nothing half-done.
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl MemoryLog {
    /// A log that goes on from `head` in `epoch`, holding `newest` (the
    /// last messages up to `head.max`, oldest first, each with the stamp of
    /// its first append): how a store that outlives the process rebuilds
    /// its cache of a topic at startup. Ids and byte totals continue
    /// exactly where they were.
    pub fn resume(
        capacity: usize,
        epoch: Epoch,
        head: Head,
        newest: Vec<(Json, Stamp)>,
    ) -> MemoryLog {
        let log = MemoryLog::new(capacity, epoch);
        {
            let mut ring = log.lock();
            let keep = newest.len().min(log.capacity);
            let skip = newest.len() - keep;
            let first = head.max.saturating_sub(keep as u64) + 1;
            let sizes: u64 = newest
                .iter()
                .skip(skip)
                .map(|(json, _)| json.len() as u64)
                .sum();
            let mut end = head.end.saturating_sub(sizes);
            for (i, (json, at)) in newest.into_iter().skip(skip).enumerate() {
                end += json.len() as u64;
                ring.messages
                    .push_back(Message::new(first + i as u64, epoch, json, end));
                ring.stamps.push_back(at);
            }
            ring.max = head.max;
            ring.end = head.end;
        }
        log
    }

    /// Appends in memory, which cannot fail, stamped `at`: a store that
    /// wrote the message elsewhere first gives the stamp it wrote, so the
    /// cache and the store expire it at the same moment.
    pub fn push(&self, json: Json, at: Stamp) -> Message {
        let mut ring = self.lock();
        ring.max += 1;
        ring.end += json.len() as u64;
        let message = Message::new(ring.max, self.epoch, json, ring.end);
        if ring.messages.len() == self.capacity {
            // Dropping the evicted message outside the lock would be nicer,
            // but it is only a reference-count decrement in the common case
            // where a subscriber still holds it.
            ring.messages.pop_front();
            ring.stamps.pop_front();
        }
        ring.messages.push_back(message.clone());
        ring.stamps.push_back(at);
        message
    }
}

impl MemoryLog {
    /// Appends a message a shared store numbered `id`, with the store's
    /// running byte total `end` after it: how a server's cache of a topic
    /// other servers publish to follows the store. Only the next id is
    /// taken; otherwise nothing changes and the error is the cache's `max`
    /// (below `id − 1`: the caller must fetch the messages between first,
    /// or [`MemoryLog::jump`] past them; at or above `id`: already here).
    pub fn push_numbered(&self, id: u64, json: Json, at: Stamp, end: u64) -> Result<Message, u64> {
        let mut ring = self.lock();
        if id != ring.max + 1 {
            return Err(ring.max);
        }
        ring.max = id;
        ring.end = end;
        let message = Message::new(id, self.epoch, json, end);
        if ring.messages.len() == self.capacity {
            ring.messages.pop_front();
            ring.stamps.pop_front();
        }
        ring.messages.push_back(message.clone());
        ring.stamps.push_back(at);
        Ok(message)
    }

    /// Moves `max` to `max` (and the byte total to `end`) with nothing
    /// buffered, when a shared store no longer holds the messages between:
    /// readers see them counted in `saw`, as any loss. Never moves back.
    pub fn jump(&self, max: u64, end: u64) {
        let mut ring = self.lock();
        if max > ring.max {
            ring.max = max;
            ring.end = end.max(ring.end);
            ring.messages.clear();
            ring.stamps.clear();
        }
    }

    /// The buffered message with id `id`, if there is one.
    pub fn get(&self, id: u64) -> Option<Message> {
        let ring = self.lock();
        let oldest = (ring.max + 1).checked_sub(ring.messages.len() as u64)?;
        let at = usize::try_from(id.checked_sub(oldest)?).ok()?;
        ring.messages.get(at).cloned()
    }
}

impl Log for MemoryLog {
    fn append(&self, json: Json) -> Result<Message, StoreError> {
        Ok(self.push(json, stamp_now()))
    }

    fn read_after(&self, after: u64, out: &mut Vec<Message>) -> u64 {
        let ring = self.lock();
        if after < ring.max {
            let oldest = ring.max - ring.messages.len() as u64 + 1;
            let skip = after.saturating_sub(oldest - 1);
            let skip = usize::try_from(skip).unwrap_or(usize::MAX);
            out.extend(ring.messages.iter().skip(skip).cloned());
        }
        ring.max
    }

    fn max(&self) -> u64 {
        self.lock().max
    }

    fn head(&self) -> Head {
        let ring = self.lock();
        Head {
            max: ring.max,
            end: ring.end,
        }
    }

    fn buffered(&self) -> usize {
        self.lock().messages.len()
    }

    fn expire(&self, before: Stamp) -> usize {
        let mut ring = self.lock();
        // Stamps only grow along the ring (one clock, appends in order),
        // bar a clock stepped back: then a newer message may be kept a
        // little longer than its age says, never dropped early.
        let old = ring.stamps.iter().take_while(|&&at| at < before).count();
        ring.stamps.drain(..old);
        ring.messages.drain(..old);
        old
    }

    fn epoch(&self) -> Epoch {
        self.epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_takes_only_the_next_numbered_id_and_jumps_past_lost_ones() {
        let log = MemoryLog::new(2, Epoch::from_bits(0));
        let json = |n: u64| Json::from(serde_json::json!(n));
        assert_eq!(log.push_numbered(1, json(1), 0, 1).map(|m| m.id()), Ok(1));
        // Already here, and a gap: both refused with the cache's max.
        assert_eq!(log.push_numbered(1, json(1), 0, 1).map(|m| m.id()), Err(1));
        assert_eq!(log.push_numbered(3, json(3), 0, 3).map(|m| m.id()), Err(1));
        assert_eq!(log.get(1).map(|m| m.id()), Some(1));
        assert!(log.get(2).is_none());
        log.jump(5, 5);
        assert_eq!((log.max(), log.buffered()), (5, 0));
        log.jump(3, 3);
        assert_eq!(log.max(), 5, "never back");
        assert_eq!(log.push_numbered(6, json(6), 0, 6).map(|m| m.id()), Ok(6));
        let mut out = Vec::new();
        assert_eq!(log.read_after(0, &mut out), 6);
        assert_eq!(out.iter().map(Message::id).collect::<Vec<_>>(), vec![6]);
    }

    fn log_with(capacity: usize, count: u64) -> MemoryLog {
        let log = MemoryLog::new(capacity, Epoch::from_bits(0));
        for i in 1..=count {
            let message = log.append(Json::from(serde_json::json!(i))).unwrap();
            assert_eq!(message.id(), i);
        }
        log
    }

    fn ids_after(log: &MemoryLog, after: u64) -> (u64, Vec<u64>) {
        let mut out = Vec::new();
        let max = log.read_after(after, &mut out);
        (max, out.iter().map(Message::id).collect())
    }

    #[test]
    fn ids_count_from_one_and_max_follows() {
        let log = log_with(10, 0);
        assert_eq!(log.max(), 0);
        assert_eq!(ids_after(&log, 0), (0, vec![]));
        let log = log_with(10, 3);
        assert_eq!(log.max(), 3);
        assert_eq!(ids_after(&log, 0), (3, vec![1, 2, 3]));
        assert_eq!(ids_after(&log, 2), (3, vec![3]));
        assert_eq!(ids_after(&log, 3), (3, vec![]));
    }

    #[test]
    fn the_ring_keeps_only_the_newest_messages() {
        let log = log_with(3, 5);
        assert_eq!(log.buffered(), 3);
        assert_eq!(ids_after(&log, 0), (5, vec![3, 4, 5]));
        assert_eq!(ids_after(&log, 3), (5, vec![4, 5]));
        assert_eq!(ids_after(&log, 4), (5, vec![5]));
    }

    #[test]
    fn the_running_byte_total_counts_evicted_messages_too() {
        let log = MemoryLog::new(2, Epoch::from_bits(0));
        for text in ["1", "22", "333"] {
            log.append(Json::from(serde_json::json!(text))).unwrap();
        }
        // Each string is stored with its quotes: 3 + 4 + 5 bytes.
        assert_eq!(log.head(), Head { max: 3, end: 12 });
        let mut out = Vec::new();
        log.read_after(0, &mut out);
        let ends: Vec<(u64, u64)> = out.iter().map(|m| (m.start(), m.end())).collect();
        assert_eq!(ends, vec![(3, 7), (7, 12)]);
    }

    #[test]
    fn a_resumed_log_goes_on_where_it_was() {
        let log = log_with(3, 5);
        let mut kept = Vec::new();
        log.read_after(0, &mut kept);
        let json: Vec<(Json, Stamp)> = kept.iter().map(|m| (m.json().clone(), 0)).collect();
        let resumed = MemoryLog::resume(3, Epoch::from_bits(9), log.head(), json);
        assert_eq!(resumed.head(), log.head());
        assert_eq!(resumed.epoch(), Epoch::from_bits(9));
        assert_eq!(ids_after(&resumed, 0), (5, vec![3, 4, 5]));
        let mut again = Vec::new();
        resumed.read_after(0, &mut again);
        let ends = |m: &[Message]| m.iter().map(|m| (m.start(), m.end())).collect::<Vec<_>>();
        assert_eq!(ends(&again), ends(&kept));
        let next = resumed.append(Json::from(serde_json::json!(6))).unwrap();
        assert_eq!((next.id(), next.start()), (6, log.head().end));
        // More messages than fit: only the newest are kept.
        let json: Vec<(Json, Stamp)> = kept.iter().map(|m| (m.json().clone(), 0)).collect();
        let small = MemoryLog::resume(2, Epoch::from_bits(9), log.head(), json);
        assert_eq!(ids_after(&small, 0), (5, vec![4, 5]));
    }

    #[test]
    fn expiry_drops_the_messages_stamped_before_the_cutoff_and_keeps_the_ids() {
        let log = MemoryLog::new(10, Epoch::from_bits(0));
        for (n, at) in [(1, 100), (2, 200), (3, 300)] {
            log.push(Json::from(serde_json::json!(n)), at);
        }
        assert_eq!(log.expire(100), 0);
        assert_eq!(log.expire(201), 2);
        assert_eq!(ids_after(&log, 0), (3, vec![3]));
        assert_eq!(log.buffered(), 1);
        assert_eq!(log.expire(u64::MAX), 1);
        assert_eq!(ids_after(&log, 0), (3, vec![]));
        // The ids go on, and eviction by count stays in step with stamps.
        let next = log.push(Json::from(serde_json::json!(4)), 400);
        assert_eq!(next.id(), 4);
        assert_eq!(log.expire(400), 0);
        let small = MemoryLog::new(2, Epoch::from_bits(0));
        for (n, at) in [(1, 100), (2, 200), (3, 300)] {
            small.push(Json::from(serde_json::json!(n)), at);
        }
        assert_eq!(small.expire(250), 1);
        assert_eq!(ids_after(&small, 0), (3, vec![3]));
    }

    #[test]
    fn a_cursor_past_max_reads_nothing() {
        // What a cursor above max *means* is the topic's decision, not the
        // log's: the log only reports max alongside an empty read.
        let log = log_with(3, 2);
        assert_eq!(ids_after(&log, 9), (2, vec![]));
    }
}
