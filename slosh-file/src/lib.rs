//! A durable store for slosh: every topic's buffer in one file, so ids (and
//! epochs) go on across restarts and a resuming client misses nothing.
//!
//! The file is a [redb](https://docs.rs/redb) database: embedded (no second
//! service), crash-safe by copy-on-write with checksummed commits, and
//! pure Rust. Three tables:
//!
//! - `meta`: the format version of this crate's layout ([`FORMAT`]), so a
//!   file written by a newer slosh is refused instead of misread;
//! - `topics`: per topic, its epoch, `max` and running byte total;
//! - `messages.2`: `(topic, id) → (stamp, JSON text)`, the newest `queue`
//!   per topic (format 1's `messages` had no stamps).
//!
//! Each topic's log ([`FileStore::log`]) keeps a [`MemoryLog`] as its cache
//! and writes through to the file: an append is one write transaction
//! (the message, the topic's new head, the message that fell out of the
//! buffer) committed *before* the cache, and so any subscriber, sees it.
//! With [`Sync::Always`] the commit is fsynced before the publish is
//! answered, so `kill -9` (or a power cut) loses nothing answered `200`.
//! With [`Sync::Batch`] an append is answered as soon as the cache has it
//! and its row waits in a queue; a flusher thread writes every waiting row
//! in one fsynced commit every [`BATCH_WINDOW`] (group commit), so `kill
//! -9` or a power cut loses at most the publishes answered in the last
//! window, and never leaves a hole: what survives of a topic is every
//! message up to some id. Because the lost ids would otherwise be given
//! out again to new messages (and a client that saw the lost ones would
//! silently skip their successors), a run in batch mode marks the file
//! while it is open; a file opened with the mark still set (the last run
//! did not close it) gives every topic a new epoch, so resuming clients
//! are told their cursor was reset.
//!
//! Trimming keeps exactly `queue` messages per topic (older ones are
//! deleted as new ones come, and at open when `queue` shrank), and redb
//! reuses freed pages, so the file stays bounded by what is buffered.
//! Reads never touch the file: the cache serves them.

#![forbid(unsafe_code)]
// redb's own error is large; it only travels up a few frames on a failing
// write, to become a `StoreError` or an `OpenError`.
#![allow(clippy::result_large_err)]
#![warn(missing_docs, unreachable_pub)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redb::{Database, Durability, ReadableTable, TableDefinition};
use slosh_core::{
    stamp_now, Epoch, Head, Json, Log, MemoryLog, Message, Removal, Stamp, StoreError, TopicName,
};

/// The layout version this crate writes and reads. Format 1 (messages
/// without their stamps) is upgraded in place at open, its messages
/// stamped with the time of the upgrade.
pub const FORMAT: u64 = 2;

/// How long a [`Sync::Batch`] commit may wait for its fsync.
pub const BATCH_WINDOW: Duration = Duration::from_millis(50);

/// How many writes may wait for the flusher before an append writes them
/// itself: the queue's memory stays bounded however fast publishers are.
const MAX_PENDING: usize = 16_384;

/// The `meta` key set while a [`Sync::Batch`] run has the file open.
const BATCH_OPEN: &str = "batch_open";

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Topic name → (epoch, max, end).
const TOPICS: TableDefinition<&str, (&str, u64, u64)> = TableDefinition::new("topics");
/// (topic name, id) → when it was appended and its JSON text.
const MESSAGES: TableDefinition<(&str, u64), (Stamp, &str)> = TableDefinition::new("messages.2");
/// Format 1's messages: (topic name, id) → JSON text.
const MESSAGES_V1: TableDefinition<(&str, u64), &str> = TableDefinition::new("messages");

/// When a commit reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sync {
    /// Every publish is fsynced before it is answered.
    #[default]
    Always,
    /// Publishes are made durable in groups, at most [`BATCH_WINDOW`]
    /// later; a crash loses at most that window's publishes.
    Batch,
}

/// Why the file could not be opened; every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file (or its folder) cannot be created, read or locked.
    #[error("cannot open the store {}: {why}", path.display())]
    Unopenable {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
    /// The file is not a slosh store, or is damaged.
    #[error("the store {} is damaged or not a slosh store: {why}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the database said.
        why: String,
    },
    /// The file was written by a newer slosh.
    #[error("the store {} has format {found}, newer than this slosh reads ({FORMAT}): upgrade slosh", path.display())]
    Newer {
        /// The file.
        path: PathBuf,
        /// Its format.
        found: u64,
    },
}

/// One store file, shared by every topic's log.
#[derive(Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

/// The store's handle: the flusher thread stops (and is waited for) when
/// the last [`FileStore`] and [`FileLog`] are gone, so the file is closed
/// by then and may be opened again at once.
struct Inner {
    shared: Arc<Shared>,
    /// Dropped to stop the flusher.
    stop: Option<std::sync::mpsc::Sender<()>>,
    flusher: Option<std::thread::JoinHandle<()>>,
}

impl std::ops::Deref for Inner {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.shared
    }
}

/// What the logs and the flusher thread share.
struct Shared {
    db: Database,
    path: PathBuf,
    sync: Sync,
    /// A commit without fsync (an expiry's) happened since the last
    /// durable one.
    dirty: AtomicBool,
    /// [`Sync::Batch`]: the writes answered but not yet in the file, in
    /// the order they were made.
    pending: Mutex<Vec<Pending>>,
    /// Held while a batch is written, so batches reach the file in order.
    flushing: Mutex<()>,
}

/// A write to the file: done at once with [`Sync::Always`], queued for the
/// flusher with [`Sync::Batch`].
enum Pending {
    /// Message `id` of topic `name`, and the topic's new head.
    Put {
        name: Arc<str>,
        id: u64,
        at: Stamp,
        json: Json,
        epoch: Epoch,
        end: u64,
        /// The topic's queue: the row `id - queue` falls out.
        queue: u64,
    },
    /// Rows `from..to` of topic `name` (expired).
    Drop { name: Arc<str>, from: u64, to: u64 },
    /// Topic `name`, its rows and its head (deleted).
    Forget { name: Arc<str> },
}

/// Writes `ops` in `write`, in order.
fn apply(write: &redb::WriteTransaction, ops: &[Pending]) -> Result<(), redb::Error> {
    let mut messages = write.open_table(MESSAGES)?;
    let mut topics = write.open_table(TOPICS)?;
    for op in ops {
        match op {
            Pending::Put {
                name,
                id,
                at,
                json,
                epoch,
                end,
                queue,
            } => {
                let name = &**name;
                messages.insert((name, *id), (*at, json.as_str()))?;
                if id > queue {
                    messages.remove((name, id - queue))?;
                }
                topics.insert(name, (epoch.as_str(), *id, *end))?;
            }
            Pending::Drop { name, from, to } => {
                let name = &**name;
                messages.retain_in((name, *from)..(name, *to), |_, _| false)?;
            }
            Pending::Forget { name } => {
                let name = &**name;
                messages.retain_in((name, 0)..=(name, u64::MAX), |_, _| false)?;
                topics.remove(name)?;
            }
        }
    }
    Ok(())
}

impl Shared {
    /// Writes `ops` in one commit with `durability`.
    fn commit(&self, ops: &[Pending], durability: Durability) -> Result<(), StoreError> {
        let mut write = self.db.begin_write().map_err(store_error)?;
        write.set_durability(durability);
        apply(&write, ops).map_err(store_error)?;
        write.commit().map_err(store_error)
    }

    /// With [`Sync::Always`] writes `op` now, fsynced (`durable`) or not;
    /// with [`Sync::Batch`] queues it for the flusher, writing the queue
    /// first when it is full.
    fn write(&self, op: Pending, durable: bool) -> Result<(), StoreError> {
        match self.sync {
            Sync::Always => {
                let durability = if durable {
                    Durability::Immediate
                } else {
                    self.dirty.store(true, Ordering::SeqCst);
                    Durability::None
                };
                self.commit(std::slice::from_ref(&op), durability)
            }
            Sync::Batch => {
                if self.queued() >= MAX_PENDING {
                    // The flusher is behind (or the disk refuses): this
                    // append writes the queue itself, or is refused.
                    self.flush()?;
                }
                self.lock_pending().push(op);
                Ok(())
            }
        }
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Vec<Pending>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn queued(&self) -> usize {
        self.lock_pending().len()
    }

    /// Writes every queued write in one fsynced commit. Should it fail,
    /// the writes go back to the head of the queue for the next try.
    fn flush(&self) -> Result<(), StoreError> {
        let _order = self.flushing.lock().unwrap_or_else(PoisonError::into_inner);
        let batch = std::mem::take(&mut *self.lock_pending());
        if batch.is_empty() {
            return Ok(());
        }
        let written = self.commit(&batch, Durability::Immediate);
        if written.is_err() {
            let mut pending = self.lock_pending();
            let newer = std::mem::replace(&mut *pending, batch);
            pending.extend(newer);
        }
        written
    }
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("path", &self.inner.path)
            .field("sync", &self.inner.sync)
            .finish()
    }
}

impl FileStore {
    /// Opens the store at `path`, creating it when it does not exist. A
    /// file that is unreadable, damaged or of a newer format is an error
    /// naming it, never a silent fresh start.
    pub fn open(path: &Path, sync: Sync) -> Result<FileStore, OpenError> {
        let unopenable = |why: String| OpenError::Unopenable {
            path: path.to_path_buf(),
            why,
        };
        let corrupt = |why: String| OpenError::Corrupt {
            path: path.to_path_buf(),
            why,
        };
        // redb asserts (panics) on some damaged files, a truncated one
        // among them: caught here, so a bad file is an error naming it.
        let created = std::panic::catch_unwind(|| Database::create(path)).map_err(|_| {
            corrupt("its header does not match its length (truncated?)".to_string())
        })?;
        let mut db = created.map_err(|error| match error {
            redb::DatabaseError::Storage(redb::StorageError::Io(io))
                if io.kind() == std::io::ErrorKind::InvalidData =>
            {
                corrupt(io.to_string())
            }
            redb::DatabaseError::Storage(redb::StorageError::Io(io)) => unopenable(io.to_string()),
            redb::DatabaseError::DatabaseAlreadyOpen => {
                unopenable("another process has it open".to_string())
            }
            other => corrupt(other.to_string()),
        })?;
        let write = db.begin_write().map_err(|e| corrupt(e.to_string()))?;
        {
            let mut meta = write.open_table(META).map_err(|e| corrupt(e.to_string()))?;
            let found = meta
                .get("format")
                .map_err(|e| corrupt(e.to_string()))?
                .map(|v| v.value());
            match found {
                Some(found) if found > FORMAT => {
                    return Err(OpenError::Newer {
                        path: path.to_path_buf(),
                        found,
                    })
                }
                Some(FORMAT) => {}
                Some(_) => {
                    upgrade_from_1(&write).map_err(|e| corrupt(e.to_string()))?;
                    meta.insert("format", FORMAT)
                        .map_err(|e| corrupt(e.to_string()))?;
                }
                None => {
                    meta.insert("format", FORMAT)
                        .map_err(|e| corrupt(e.to_string()))?;
                }
            }
            let unclean = meta
                .get(BATCH_OPEN)
                .map_err(|e| corrupt(e.to_string()))?
                .is_some_and(|v| v.value() != 0);
            if unclean {
                new_epochs(&write).map_err(|e| corrupt(e.to_string()))?;
            }
            meta.insert(BATCH_OPEN, u64::from(sync == Sync::Batch))
                .map_err(|e| corrupt(e.to_string()))?;
            write
                .open_table(TOPICS)
                .map_err(|e| corrupt(e.to_string()))?;
            write
                .open_table(MESSAGES)
                .map_err(|e| corrupt(e.to_string()))?;
        }
        write.commit().map_err(|e| corrupt(e.to_string()))?;
        // Pages freed by trimming are reused while running; compacting at
        // open gives back to the disk what a larger past left (a bigger
        // `queue`, deleted topics). A failed compaction loses nothing: the
        // file is as it was.
        let _ = db.compact();
        let shared = Arc::new(Shared {
            db,
            path: path.to_path_buf(),
            sync,
            dirty: AtomicBool::new(false),
            pending: Mutex::new(Vec::new()),
            flushing: Mutex::new(()),
        });
        let mut inner = Inner {
            shared: Arc::clone(&shared),
            stop: None,
            flusher: None,
        };
        if sync == Sync::Batch {
            let (stop, stopped) = std::sync::mpsc::channel();
            let thread = std::thread::Builder::new()
                .name("slosh-file-sync".into())
                .spawn(move || flusher(&shared, &stopped))
                .map_err(|e| unopenable(e.to_string()))?;
            inner.stop = Some(stop);
            inner.flusher = Some(thread);
        }
        Ok(FileStore {
            inner: Arc::new(inner),
        })
    }

    /// Writes every publish queued by [`Sync::Batch`] now, in one fsynced
    /// commit, instead of at the end of its window: before a backup, or
    /// where a test must know what the file holds. With [`Sync::Always`]
    /// there is nothing queued.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The names of the topics the file holds, sorted.
    pub fn topics(&self) -> Result<Vec<String>, StoreError> {
        let read = self.inner.db.begin_read().map_err(store_error)?;
        let topics = read.open_table(TOPICS).map_err(store_error)?;
        let mut names = Vec::new();
        for entry in topics.iter().map_err(store_error)? {
            let (name, _) = entry.map_err(store_error)?;
            names.push(name.value().to_string());
        }
        Ok(names)
    }

    /// The log of topic `name`, keeping `queue` messages: what the file
    /// holds of it, or a new life in `fresh` when it holds nothing. A file
    /// that cannot be read gives a log that refuses every publish (`503`)
    /// rather than one that would start the ids again.
    pub fn log(&self, name: &TopicName, queue: usize, fresh: Epoch) -> FileLog {
        let queue = queue.max(1);
        let (cache, broken) = match self.load(name.as_str(), queue) {
            Ok(Some(cache)) => (cache, None),
            Ok(None) => (MemoryLog::new(queue, fresh), None),
            Err(error) => (MemoryLog::new(queue, fresh), Some(error)),
        };
        FileLog {
            store: Arc::clone(&self.inner),
            name: Arc::from(name.as_str()),
            queue: queue as u64,
            cache,
            broken,
            removed: AtomicBool::new(false),
            writing: Mutex::new(()),
        }
    }

    /// Reads a topic back: its head and newest `queue` messages. Rows older
    /// than those (left by a larger `queue` last time) are deleted, in a
    /// write transaction of their own only when there are any: opening a
    /// topic otherwise costs a read, not a commit and its fsync.
    fn load(&self, name: &str, queue: usize) -> Result<Option<MemoryLog>, StoreError> {
        // A topic deleted and made again may still have writes of its
        // last life waiting: the file must have them before it is read.
        self.inner.flush()?;
        let read = self.inner.db.begin_read().map_err(store_error)?;
        let topics = read.open_table(TOPICS).map_err(store_error)?;
        let Some(entry) = topics.get(name).map_err(store_error)? else {
            return Ok(None);
        };
        let (epoch, max, end) = entry.value();
        let epoch = Epoch::parse(epoch)
            .ok_or_else(|| StoreError(format!("topic {name} has a bad epoch {epoch:?}")))?;
        let head = Head { max, end };
        let first = head.max.saturating_sub(queue as u64) + 1;
        let messages = read.open_table(MESSAGES).map_err(store_error)?;
        let stale = messages
            .range((name, 0)..(name, first))
            .map_err(store_error)?
            .next()
            .is_some();
        let mut newest = Vec::new();
        for entry in messages
            .range((name, first)..=(name, head.max))
            .map_err(store_error)?
        {
            let (_, row) = entry.map_err(store_error)?;
            let (at, json) = row.value();
            newest.push((Json::from_stored(json), at));
        }
        if stale {
            let write = self.inner.db.begin_write().map_err(store_error)?;
            write
                .open_table(MESSAGES)
                .map_err(store_error)?
                .retain_in((name, 0)..(name, first), |_, _| false)
                .map_err(store_error)?;
            write.commit().map_err(store_error)?;
        }
        Ok(Some(MemoryLog::resume(queue, epoch, head, newest)))
    }
}

/// For [`Builder::store`](slosh_core::Builder::store): a hub built on the
/// store loads every topic of the file.
impl slosh_core::Store for FileStore {
    fn log(&self, name: &TopicName, queue: usize, fresh: Epoch) -> Box<dyn Log> {
        Box::new(FileStore::log(self, name, queue, fresh))
    }

    fn topics(&self) -> Vec<TopicName> {
        // A file the open could read lists; should a read fail now, its
        // topics come back when a request names them.
        self.topics()
            .unwrap_or_default()
            .iter()
            .filter_map(|name| TopicName::parse(name).ok())
            .collect()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.flusher.take() {
            let _ = thread.join();
        }
        let flushed = self.flush().is_ok();
        if self.sync == Sync::Batch && flushed {
            // Everything answered is in the file: the next open keeps the
            // topics' epochs. (Failing, the next open gives new ones.)
            let _ = mark_closed(&self.db);
        } else if self.dirty.load(Ordering::SeqCst) {
            durable_commit(&self.db);
        }
    }
}

/// Clears [`BATCH_OPEN`], fsynced; it takes any earlier commit along.
fn mark_closed(db: &Database) -> Result<(), redb::Error> {
    let mut write = db.begin_write()?;
    write.set_durability(Durability::Immediate);
    write.open_table(META)?.insert(BATCH_OPEN, 0)?;
    write.commit()?;
    Ok(())
}

/// Gives every topic a new epoch: the last batch run was not closed, so
/// ids it answered may be lost and given again.
fn new_epochs(write: &redb::WriteTransaction) -> Result<(), redb::Error> {
    use std::hash::{BuildHasher, Hasher};
    let mut topics = write.open_table(TOPICS)?;
    let mut renewed = Vec::new();
    for entry in topics.iter()? {
        let (name, row) = entry?;
        let (old, max, end) = row.value();
        // std's hasher is keyed at random per process: a fresh epoch
        // without a random-number crate.
        let epoch = (0u64..)
            .map(|salt| {
                let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
                hasher.write(name.value().as_bytes());
                hasher.write_u64(salt);
                Epoch::from_bits(hasher.finish())
            })
            .find(|epoch| epoch.as_str() != old)
            .unwrap_or(Epoch::from_bits(0));
        renewed.push((name.value().to_string(), epoch, max, end));
    }
    for (name, epoch, max, end) in renewed {
        topics.insert(name.as_str(), (epoch.as_str(), max, end))?;
    }
    Ok(())
}

/// Format 1 to 2: every message gets a stamp, the time of the upgrade (its
/// age was not kept, so it is counted from now: kept too long at worst,
/// never dropped early), in the same transaction that records format 2.
fn upgrade_from_1(write: &redb::WriteTransaction) -> Result<(), redb::Error> {
    let at = stamp_now();
    let old = write.open_table(MESSAGES_V1)?;
    let mut new = write.open_table(MESSAGES)?;
    for entry in old.iter()? {
        let (key, json) = entry?;
        let (name, id) = key.value();
        new.insert((name, id), (at, json.value()))?;
    }
    drop(old);
    write.delete_table(MESSAGES_V1)?;
    Ok(())
}

/// Writes the queued writes every [`BATCH_WINDOW`] until told to stop.
fn flusher(shared: &Shared, stopped: &std::sync::mpsc::Receiver<()>) {
    // Nothing is ever sent: the sender's drop is the stop.
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(BATCH_WINDOW) {
        // A failed batch stays queued for the next window (and appends
        // refuse once the queue is full, see `Shared::write`).
        let _ = shared.flush();
    }
}

/// An empty commit with fsync: everything committed before it is on disk.
fn durable_commit(db: &Database) -> bool {
    match db.begin_write() {
        Ok(mut write) => {
            write.set_durability(Durability::Immediate);
            write.commit().is_ok()
        }
        Err(_) => false,
    }
}

fn store_error(error: impl std::fmt::Display) -> StoreError {
    StoreError(error.to_string())
}

/// A topic's log in a [`FileStore`]: a [`MemoryLog`] cache in front of the
/// file, written through before the cache sees a message (with
/// [`Sync::Batch`], queued for the flusher before the cache sees it).
pub struct FileLog {
    store: Arc<Inner>,
    name: Arc<str>,
    queue: u64,
    cache: MemoryLog,
    /// Why the topic could not be read at open: every append refuses.
    broken: Option<StoreError>,
    /// Set when the hub removed the topic: an append that was already on
    /// its way (the hub appends with no lock of its table held) must not
    /// write rows for a topic the file has forgotten.
    removed: AtomicBool,
    /// One append at a time per topic, so ids are given in commit order.
    writing: Mutex<()>,
}

impl Log for FileLog {
    fn append(&self, json: Json) -> Result<Message, StoreError> {
        if let Some(broken) = &self.broken {
            return Err(broken.clone());
        }
        let _one = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        if self.removed.load(Ordering::SeqCst) {
            return Err(StoreError(
                "the topic was removed meanwhile; publish again".to_string(),
            ));
        }
        let head = self.cache.head();
        let at = stamp_now();
        let put = Pending::Put {
            name: Arc::clone(&self.name),
            id: head.max + 1,
            at,
            json: json.clone(),
            epoch: self.cache.epoch(),
            end: head.end + json.len() as u64,
            queue: self.queue,
        };
        self.store.write(put, true)?;
        // Only now may anyone read it: the file has it for good (or, in
        // batch mode, the queue that the file gets within a window).
        Ok(self.cache.push(json, at))
    }

    fn read_after(&self, after: u64, out: &mut Vec<Message>) -> u64 {
        self.cache.read_after(after, out)
    }

    fn max(&self) -> u64 {
        self.cache.max()
    }

    fn head(&self) -> Head {
        self.cache.head()
    }

    fn buffered(&self) -> usize {
        self.cache.buffered()
    }

    fn expire(&self, before: Stamp) -> usize {
        let _one = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let oldest = self.cache.max() + 1 - self.cache.buffered() as u64;
        let dropped = self.cache.expire(before);
        if dropped > 0 {
            // Expiry runs for every topic at each sweep, and an fsync per
            // topic per sweep would cost more than the publishes: the
            // deletion is not durable by itself (`durable: false`) but goes
            // with the next durable commit. Subscribers stop seeing the
            // rows at once; rows a crash keeps are loaded by the next open
            // and dropped by its first sweep: nothing is kept that should
            // not be.
            let drop = Pending::Drop {
                name: Arc::clone(&self.name),
                from: oldest,
                to: oldest + dropped as u64,
            };
            let _ = self.store.write(drop, false);
        }
        dropped
    }

    fn epoch(&self) -> Epoch {
        self.cache.epoch()
    }

    fn remove(&self, _why: Removal) {
        // Expired or deleted, nobody else holds the file's topics: either
        // way the next life starts afresh.
        let _one = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        // A removal that does not reach the file leaves the old life there;
        // the next open resumes it (same epoch, ids going on), which loses
        // nothing.
        self.removed.store(true, Ordering::SeqCst);
        let forget = Pending::Forget {
            name: Arc::clone(&self.name),
        };
        let _ = self.store.write(forget, true);
    }
}
