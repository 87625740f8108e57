//! One topic as this server follows it: the cache every read is served
//! from, and the rules for bringing it up to what Redis holds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use slosh_core::{Change, Counts, Log, MemoryLog, Notify, StoreError};

use crate::entry::Entry;
use crate::watch::Command;
use crate::{Keys, Shared};

/// A topic followed from Redis, shared by its [`RedisLog`](crate::RedisLog)
/// and the watcher.
pub(crate) struct Follow {
    pub(crate) name: Arc<str>,
    /// Its keys and channel, made once rather than at every append.
    pub(crate) keys: Keys,
    pub(crate) queue: usize,
    /// Every read is served from here; it only ever takes the next id.
    pub(crate) cache: MemoryLog,
    /// Whether the cache is known to be a life Redis holds. A log opened
    /// while Redis was unreachable is not, and refuses publishes until the
    /// watcher (or its next append) finds out.
    synced: AtomicBool,
    /// Set once this life is over (deleted or reset elsewhere).
    ended: AtomicBool,
    /// The hub's callback, set once the topic is made.
    notify: OnceLock<Notify>,
    /// One append at a time (see `RedisLog::append`).
    appending: Mutex<()>,
    /// This server's counts, as the sweeper last told them.
    pub(crate) here: Mutex<Counts>,
    /// The other servers' counts, as the watcher last read them.
    pub(crate) elsewhere: Mutex<Counts>,
}

/// A pub/sub entry came with ids missing before it: the caller reads
/// Redis instead.
pub(crate) struct Gap;

impl Follow {
    pub(crate) fn new(
        prefix: &str,
        name: &str,
        queue: usize,
        cache: MemoryLog,
        synced: bool,
    ) -> Follow {
        Follow {
            name: Arc::from(name),
            keys: Keys::of(prefix, name),
            queue,
            cache,
            synced: AtomicBool::new(synced),
            ended: AtomicBool::new(false),
            notify: OnceLock::new(),
            appending: Mutex::new(()),
            here: Mutex::new(Counts::default()),
            elsewhere: Mutex::new(Counts::default()),
        }
    }

    pub(crate) fn appending(&self) -> MutexGuard<'_, ()> {
        self.appending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads one of the counts.
    pub(crate) fn read(counts: &Mutex<Counts>) -> Counts {
        *counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets one of the counts.
    pub(crate) fn write(counts: &Mutex<Counts>, value: Counts) {
        *counts.lock().unwrap_or_else(PoisonError::into_inner) = value;
    }

    pub(crate) fn is_synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }

    pub(crate) fn has_ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    pub(crate) fn set_notify(self: &Arc<Self>, notify: Notify, shared: &Shared) {
        let _ = self.notify.set(notify);
        // Ended before the hub was listening: tell it now (from the
        // watcher: the hub is making the topic under its table's lock).
        if self.has_ended() {
            shared.tell(Command::Ended(Arc::clone(self), Change::Reset));
        }
    }

    /// Tells the hub. `Appended` only wakes, so anyone may; the changes
    /// that end a topic take the hub's table lock and go through the
    /// watcher ([`Follow::end`]), as an append runs under that lock.
    pub(crate) fn tell(&self, change: Change) {
        if let Some(notify) = self.notify.get() {
            notify(change);
        }
    }

    /// The hub removed the topic: this life is over here, and nothing
    /// may read or claim for it any more (the hub needs no telling).
    pub(crate) fn retire(&self) {
        self.ended.store(true, Ordering::SeqCst);
    }

    /// This life is over; the hub ends the topic here, told from the
    /// watcher thread (never under the hub's lock).
    pub(crate) fn end(self: &Arc<Self>, why: Change, shared: &Shared) {
        if !self.ended.swap(true, Ordering::SeqCst) {
            shared.tell(Command::Ended(Arc::clone(self), why));
        }
    }

    /// Puts `entries` (in id order) into the cache and returns whether any
    /// was new. `complete` says they are everything Redis held after the
    /// cache's max when read, so ids missing before the first were trimmed
    /// there and are skipped (counted in `saw`, as any loss); otherwise a
    /// hole is a [`Gap`] for the caller to fill from Redis.
    pub(crate) fn apply(&self, entries: Vec<Entry>, complete: bool) -> Result<bool, Gap> {
        let mut new = false;
        for entry in entries {
            let max = self.cache.max();
            if entry.id <= max {
                continue;
            }
            if entry.id > max + 1 {
                if !complete {
                    return Err(Gap);
                }
                self.cache.jump(entry.id - 1, entry.start());
            }
            let (id, end) = (entry.id, entry.end);
            if self
                .cache
                .push_numbered(id, entry.json, entry.stamp, end)
                .is_ok()
            {
                new = true;
            }
        }
        Ok(new)
    }

    /// Brings the cache up to what Redis holds, waking subscribers for
    /// what was new; ends this life with a reset when Redis holds another
    /// (or lost this one).
    pub(crate) fn catch_up(self: &Arc<Self>, shared: &Shared) -> Result<(), StoreError> {
        if self.has_ended() {
            // Never after: its claim could bring back a deleted life.
            return Err(StoreError("this topic's life is over".to_string()));
        }
        let max = self.cache.max();
        // Only a tentative life (opened while Redis was unreachable) that
        // holds nothing may claim an empty topic for its epoch. A life that
        // Redis confirmed at its opening claimed it then: finding nothing
        // now means the topic was deleted or lost meanwhile, and claiming
        // again would bring a deleted life back (a catch-up racing the
        // DELETE that ended it).
        let claim = (max == 0 && !self.is_synced()).then(|| self.cache.epoch());
        let snapshot = shared.sync(&self.name, self.queue, max, claim)?;
        if snapshot.epoch != Some(self.cache.epoch()) || snapshot.max < max {
            self.end(Change::Reset, shared);
            return Err(StoreError(
                "this topic's life ended in Redis; publish again".to_string(),
            ));
        }
        // Complete: the read returned everything after `max`.
        if let Ok(true) = self.apply(snapshot.entries, true) {
            self.tell(Change::Appended);
        }
        self.synced.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// An entry announced on the topic's channel, in epoch `epoch`.
    pub(crate) fn announced(self: &Arc<Self>, shared: &Shared, epoch: &str, entry: Entry) {
        if self.has_ended() {
            return;
        }
        if epoch != self.cache.epoch().as_str() || !self.is_synced() {
            let _ = self.catch_up(shared);
            return;
        }
        match self.apply(vec![entry], false) {
            Ok(true) => self.tell(Change::Appended),
            Ok(false) => {}
            Err(Gap) => {
                let _ = self.catch_up(shared);
            }
        }
    }

    /// `deleted EPOCH` was announced: this life ends if it is the one.
    pub(crate) fn deleted(self: &Arc<Self>, epoch: &str, shared: &Shared) {
        if epoch == self.cache.epoch().as_str() {
            self.end(Change::Deleted, shared);
        }
    }
}
