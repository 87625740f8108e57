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
//! - `messages`: `(topic, id) → JSON text`, the newest `queue` per topic.
//!
//! Each topic's log ([`FileStore::log`]) keeps a [`MemoryLog`] as its cache
//! and writes through to the file: an append is one write transaction
//! (the message, the topic's new head, the message that fell out of the
//! buffer) committed *before* the cache, and so any subscriber, sees it.
//! With [`Sync::Always`] the commit is fsynced before the publish is
//! answered, so `kill -9` (or a power cut) loses nothing answered `200`.
//! With [`Sync::Batch`] commits reach the operating system at once (a
//! killed process loses nothing) and the disk within [`BATCH_WINDOW`],
//! when a flusher thread makes the next durable commit.
//!
//! Trimming keeps exactly `queue` messages per topic (older ones are
//! deleted as new ones come, and at open when `queue` shrank), and redb
//! reuses freed pages, so the file stays bounded by what is buffered.
//! Reads never touch the file: the cache serves them.

#![forbid(unsafe_code)]
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
use slosh_core::{Epoch, Head, Json, Log, MemoryLog, Message, StoreError, TopicName};

/// The layout version this crate writes and reads.
pub const FORMAT: u64 = 1;

/// How long a [`Sync::Batch`] commit may wait for its fsync.
pub const BATCH_WINDOW: Duration = Duration::from_millis(50);

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Topic name → (epoch, max, end).
const TOPICS: TableDefinition<&str, (&str, u64, u64)> = TableDefinition::new("topics");
/// (topic name, id) → the message's JSON text.
const MESSAGES: TableDefinition<(&str, u64), &str> = TableDefinition::new("messages");

/// When a commit reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sync {
    /// Every publish is fsynced before it is answered.
    #[default]
    Always,
    /// Publishes are fsynced in groups, at most [`BATCH_WINDOW`] later.
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

struct Inner {
    db: Database,
    path: PathBuf,
    sync: Sync,
    /// A batch commit happened since the last durable one.
    dirty: AtomicBool,
    /// Set when the store is dropped: the flusher stops.
    closed: AtomicBool,
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
        let db = created.map_err(|error| match error {
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
                Some(_) => {}
                None => {
                    meta.insert("format", FORMAT)
                        .map_err(|e| corrupt(e.to_string()))?;
                }
            }
            write
                .open_table(TOPICS)
                .map_err(|e| corrupt(e.to_string()))?;
            write
                .open_table(MESSAGES)
                .map_err(|e| corrupt(e.to_string()))?;
        }
        write.commit().map_err(|e| corrupt(e.to_string()))?;
        let inner = Arc::new(Inner {
            db,
            path: path.to_path_buf(),
            sync,
            dirty: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        });
        if sync == Sync::Batch {
            let weak = Arc::downgrade(&inner);
            std::thread::Builder::new()
                .name("slosh-file-sync".into())
                .spawn(move || flusher(&weak))
                .map_err(|e| unopenable(e.to_string()))?;
        }
        Ok(FileStore { inner })
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
            name: name.as_str().to_string(),
            queue: queue as u64,
            cache,
            broken,
            writing: Mutex::new(()),
        }
    }

    /// A factory for [`Builder::log_factory`](slosh_core::Builder::log_factory).
    pub fn factory(
        &self,
    ) -> impl Fn(&TopicName, usize, Epoch) -> Box<dyn Log> + Send + std::marker::Sync {
        let store = self.clone();
        move |name, queue, fresh| Box::new(store.log(name, queue, fresh)) as Box<dyn Log>
    }

    /// Reads a topic back: its head and newest `queue` messages. Rows older
    /// than those (left by a larger `queue` last time) are deleted, in a
    /// write transaction of their own only when there are any: opening a
    /// topic otherwise costs a read, not a commit and its fsync.
    fn load(&self, name: &str, queue: usize) -> Result<Option<MemoryLog>, StoreError> {
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
            let (_, json) = entry.map_err(store_error)?;
            newest.push(Json::from_stored(json.value()));
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

impl Drop for Inner {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
        if self.dirty.load(Ordering::SeqCst) {
            durable_commit(&self.db);
        }
    }
}

/// Makes the batch commits durable every [`BATCH_WINDOW`] while any were
/// made, until the store is gone.
fn flusher(inner: &std::sync::Weak<Inner>) {
    loop {
        std::thread::sleep(BATCH_WINDOW);
        let Some(inner) = inner.upgrade() else { return };
        if inner.closed.load(Ordering::SeqCst) {
            return;
        }
        if inner.dirty.swap(false, Ordering::SeqCst) && !durable_commit(&inner.db) {
            inner.dirty.store(true, Ordering::SeqCst);
        }
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
/// file, written through before the cache sees a message.
pub struct FileLog {
    store: Arc<Inner>,
    name: String,
    queue: u64,
    cache: MemoryLog,
    /// Why the topic could not be read at open: every append refuses.
    broken: Option<StoreError>,
    /// One append at a time per topic, so ids are given in commit order.
    writing: Mutex<()>,
}

impl FileLog {
    fn write(&self, id: u64, json: &Json, end: u64) -> Result<(), StoreError> {
        let mut write = self.store.db.begin_write().map_err(store_error)?;
        write.set_durability(match self.store.sync {
            Sync::Always => Durability::Immediate,
            Sync::Batch => Durability::Eventual,
        });
        {
            let mut messages = write.open_table(MESSAGES).map_err(store_error)?;
            messages
                .insert((self.name.as_str(), id), json.as_str())
                .map_err(store_error)?;
            if id > self.queue {
                messages
                    .remove((self.name.as_str(), id - self.queue))
                    .map_err(store_error)?;
            }
            let mut topics = write.open_table(TOPICS).map_err(store_error)?;
            topics
                .insert(self.name.as_str(), (self.cache.epoch().as_str(), id, end))
                .map_err(store_error)?;
        }
        write.commit().map_err(store_error)?;
        if self.store.sync == Sync::Batch {
            self.store.dirty.store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Deletes the topic's rows and its head from the file.
    fn forget(&self) -> Result<(), StoreError> {
        let name = self.name.as_str();
        let write = self.store.db.begin_write().map_err(store_error)?;
        {
            let mut messages = write.open_table(MESSAGES).map_err(store_error)?;
            messages
                .retain_in((name, 0)..=(name, u64::MAX), |_, _| false)
                .map_err(store_error)?;
            let mut topics = write.open_table(TOPICS).map_err(store_error)?;
            topics.remove(name).map_err(store_error)?;
        }
        write.commit().map_err(store_error)
    }
}

impl Log for FileLog {
    fn append(&self, json: Json) -> Result<Message, StoreError> {
        if let Some(broken) = &self.broken {
            return Err(broken.clone());
        }
        let _one = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let head = self.cache.head();
        let id = head.max + 1;
        self.write(id, &json, head.end + json.len() as u64)?;
        // Only now may anyone read it: the file has it for good.
        self.cache.append(json)
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

    fn epoch(&self) -> Epoch {
        self.cache.epoch()
    }

    fn remove(&self) {
        let _one = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        // A removal that does not reach the file leaves the old life there;
        // the next open resumes it (same epoch, ids going on), which loses
        // nothing.
        let _ = self.forget();
    }
}
