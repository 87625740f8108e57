//! A shared store for slosh: several slosh servers keep their topics in one
//! Redis, so any server accepts a publish and every subscriber on every
//! server gets it, with the same ids, epochs, `saw` and gaps as on one.
//!
//! # Layout in Redis
//!
//! For topic `NAME`, under the store's prefix `P` (default `slosh`):
//!
//! - `P:NAME` — a hash: `epoch`, `max` (the newest id), `end` (the running
//!   byte total);
//! - `P:NAME:log` — a list of the newest `queue` messages, oldest first,
//!   each the text `ID STAMP END JSON`;
//! - `P:NAME:ch` — the pub/sub channel every append is announced on, with
//!   the epoch in front of the entry, so a server applies it without a
//!   second round trip.
//!
//! Every change is one Lua script ([`scripts`]), so ids are handed out
//! atomically: two servers publishing at once never share or skip one. A
//! publish is answered `200` only after the script returned, so Redis has
//! it. Both keys carry a time to live (`ttl`, refreshed by every append and
//! by each server that still holds the topic), so topics nobody holds any
//! more leave Redis by themselves.
//!
//! # On each server
//!
//! Each topic's [`RedisLog`] keeps a [`MemoryLog`] as its cache (every
//! read is served from it, never from Redis) and follows Redis from one
//! watcher thread ([`watch`]) holding one pub/sub connection for the whole
//! server: one `SUBSCRIBE` per topic the server holds, however many local
//! subscribers it has. Appends arriving from other servers go into the
//! cache and wake the topic's subscribers ([`Change::Appended`]); a
//! deletion elsewhere ends the topic here ([`Change::Deleted`]); a topic
//! whose life in Redis is not the cache's any more (Redis lost it, or
//! another server started a new life) ends with [`Change::Reset`], so its
//! subscribers reconnect into the new life and are told by their cursor's
//! epoch. Commands (appends, reads for catching up) go over a small pool
//! of connections with a timeout, so a dead Redis is a `503` and never a
//! hang.
//!
//! When Redis is unreachable, publishes are refused (`503`, nothing kept),
//! subscribers stay connected (their heartbeats are local), and
//! [`RedisStore::is_up`] says so. The watcher reconnects, subscribes again
//! and catches every topic up: what was published meanwhile is delivered,
//! and a topic Redis no longer holds ends with a reset.
//!
//! ```no_run
//! let store = slosh_redis::RedisStore::open("redis://127.0.0.1:6379/0").unwrap();
//! let hub = slosh_core::Hub::builder().store(store).build();
//! hub.publish("chat", &"hello").unwrap();
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod entry;
mod follow;
mod scripts;
#[cfg(feature = "test-server")]
pub mod test_server;
mod watch;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::Duration;

use slosh_core::{
    Counts, Epoch, Head, Json, Log, MemoryLog, Message, Notify, Removal, Stamp, Store, StoreError,
    TopicInfo, TopicName,
};

use redis::ConnectionLike;

use crate::entry::Snapshot;
use crate::follow::Follow;
use crate::watch::Command;

pub use crate::entry::Entry;

/// How long a command may take before the publish it serves is refused
/// with `503`: far above a healthy Redis's round trip on a LAN, short
/// enough that a publisher is answered while it still waits.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// Idle command connections kept for reuse; more are opened when more
/// threads publish at once, and closed after use.
const POOL: usize = 16;

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL is not a Redis URL.
    #[error("{url} is not a Redis URL (redis://[:PASSWORD@]HOST:PORT[/DB] or rediss://…): {why}")]
    BadUrl {
        /// The URL, without its password.
        url: String,
        /// What the client said.
        why: String,
    },
    /// The watcher thread could not be started.
    #[error("cannot start the Redis watcher: {0}")]
    Thread(String),
}

/// Settings of a [`RedisStore`] beyond its URL.
#[derive(Debug, Clone)]
pub struct Options {
    /// Prefix of every key and channel, so several hubs (or other data)
    /// can share one Redis database.
    pub prefix: String,
    /// How long a topic's keys outlive the last server holding it and the
    /// last append.
    pub ttl: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            prefix: "slosh".to_string(),
            ttl: Duration::from_secs(3600),
        }
    }
}

/// Topics kept in one Redis, shared by every server opened on it.
#[derive(Clone)]
pub struct RedisStore {
    shared: Arc<Shared>,
}

/// What every log and the watcher share.
pub(crate) struct Shared {
    client: redis::Client,
    /// The URL without its password, for messages.
    pub(crate) url: String,
    pub(crate) options: Options,
    /// Idle command connections.
    pool: Mutex<Vec<redis::Connection>>,
    /// Whether the watcher is connected; publishes are tried regardless.
    pub(crate) up: AtomicBool,
    /// To the watcher thread.
    commands: Mutex<mpsc::Sender<Command>>,
    /// This server's name in the topics' `nodes` hashes: random, so a
    /// restarted server is a new one (the old entry runs out).
    pub(crate) node: String,
    /// Every topic Redis holds, as the watcher last read it, and when
    /// `/topics` last asked (the watcher reads only while it is asked).
    pub(crate) listing: Mutex<Listing>,
}

/// See [`Shared::listing`].
#[derive(Default)]
pub(crate) struct Listing {
    pub(crate) asked: Option<std::time::Instant>,
    pub(crate) topics: Vec<TopicInfo>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.shared.url)
            .field("prefix", &self.shared.options.prefix)
            .finish()
    }
}

impl RedisStore {
    /// A store on the Redis at `url` with the default [`Options`]. Redis
    /// need not be up yet: until it is, publishes are refused with `503`.
    pub fn open(url: &str) -> Result<RedisStore, OpenError> {
        RedisStore::with_options(url, Options::default())
    }

    /// A store on the Redis at `url` with `options`.
    pub fn with_options(url: &str, options: Options) -> Result<RedisStore, OpenError> {
        let shown = without_password(url);
        let client = redis::Client::open(url).map_err(|error| OpenError::BadUrl {
            url: shown.clone(),
            why: error.to_string(),
        })?;
        let (commands, received) = mpsc::channel();
        let shared = Arc::new(Shared {
            client,
            url: shown,
            options,
            pool: Mutex::new(Vec::new()),
            up: AtomicBool::new(false),
            commands: Mutex::new(commands),
            node: node_name(),
            listing: Mutex::new(Listing::default()),
        });
        let watched = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("slosh-redis-watch".into())
            .spawn(move || watch::run(&watched, &received))
            .map_err(|error| OpenError::Thread(error.to_string()))?;
        // One try now, so a server that starts next to a running Redis
        // serves its first publish without waiting for the watcher.
        let ping = shared.command(|con| redis::cmd("PING").query::<String>(con));
        shared.up.store(ping.is_ok(), Ordering::SeqCst);
        Ok(RedisStore { shared })
    }

    /// Whether the store reaches Redis now. While it does not, publishes
    /// are refused and subscribers wait; `/healthz` says "degraded".
    pub fn is_up(&self) -> bool {
        self.shared.up.load(Ordering::SeqCst)
    }

    /// The Redis URL, without its password.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// The log of topic `name`: what Redis holds of it, in Redis's epoch
    /// (claiming `fresh` for a new life), followed from now on.
    pub fn log(&self, name: &TopicName, queue: usize, fresh: Epoch) -> RedisLog {
        let opened = if self.is_up() {
            self.shared.sync(name.as_str(), queue, 0, Some(fresh)).ok()
        } else {
            None
        };
        let (cache, synced) = match opened {
            Some(Snapshot {
                epoch: Some(epoch),
                max,
                end,
                entries,
            }) => {
                let newest = entries.into_iter().map(|e| (e.json, e.stamp)).collect();
                (
                    MemoryLog::resume(queue, epoch, Head { max, end }, newest),
                    true,
                )
            }
            // Redis unreachable (or answering nonsense): a tentative life
            // in `fresh`, refusing publishes until the watcher finds what
            // Redis holds (and ends it with a reset if that is another).
            _ => (MemoryLog::new(queue, fresh), false),
        };
        let prefix = &self.shared.options.prefix;
        let follow = Arc::new(Follow::new(prefix, name.as_str(), queue, cache, synced));
        self.shared.tell(Command::Follow(Arc::clone(&follow)));
        RedisLog {
            follow,
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Store for RedisStore {
    fn log(&self, name: &TopicName, queue: usize, fresh: Epoch) -> Box<dyn Log> {
        Box::new(RedisStore::log(self, name, queue, fresh))
    }

    /// Every server holds only the topics its clients name: listing what
    /// Redis holds would make each server follow every topic of the
    /// cluster.
    fn topics(&self) -> Vec<TopicName> {
        Vec::new()
    }

    fn health(&self) -> Option<String> {
        (!self.is_up()).then(|| format!("Redis at {} is unreachable", self.shared.url))
    }

    fn shared(&self) -> bool {
        true
    }

    fn everywhere(&self) -> Vec<TopicInfo> {
        let mut listing = self
            .shared
            .listing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        listing.asked = Some(std::time::Instant::now());
        listing.topics.clone()
    }

    fn holds(&self, name: &TopicName) -> bool {
        let keys = Keys::of(&self.shared.options.prefix, name.as_str());
        self.shared
            .command(|con| scripts::HOLDS.key(&keys.nodes).invoke::<u64>(con))
            .is_ok_and(|held| held == 1)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The watcher holds only a weak handle and notices within one read
        // timeout; the explicit stop spares it that wait.
        self.tell(Command::Stop);
    }
}

impl Shared {
    /// Runs `f` on a pooled connection (opened when none is idle), with
    /// the command timeout. A connection that failed is closed, not pooled.
    pub(crate) fn command<T>(
        &self,
        mut f: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let pooled = self.lock_pool().pop();
        let result = match pooled {
            Some(mut con) => match f(&mut con) {
                // A pooled connection may have been closed by a Redis that
                // restarted since: that is worth one try on a new one.
                Err(error) if error.is_connection_dropped() || error.is_io_error() => self.fresh(f),
                done => done.map(|value| (value, con)),
            },
            None => self.fresh(f),
        };
        match result {
            Ok((value, con)) => {
                let mut pool = self.lock_pool();
                if pool.len() < POOL && con.is_open() {
                    pool.push(con);
                }
                Ok(value)
            }
            Err(error) => Err(self.unavailable(&error)),
        }
    }

    fn fresh<T>(
        &self,
        mut f: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> redis::RedisResult<(T, redis::Connection)> {
        let mut con = self.connect()?;
        f(&mut con).map(|value| (value, con))
    }

    /// A new connection with the command timeout on every read and write.
    pub(crate) fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let con = self.client.get_connection_with_timeout(COMMAND_TIMEOUT)?;
        con.set_read_timeout(Some(COMMAND_TIMEOUT))?;
        con.set_write_timeout(Some(COMMAND_TIMEOUT))?;
        Ok(con)
    }

    fn lock_pool(&self) -> std::sync::MutexGuard<'_, Vec<redis::Connection>> {
        self.pool.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn unavailable(&self, error: &redis::RedisError) -> StoreError {
        StoreError(format!("Redis at {} is unavailable: {error}", self.url))
    }

    /// Sends `command` to the watcher; a watcher that is gone (the process
    /// is ending) has nothing left to do with it.
    pub(crate) fn tell(&self, command: Command) {
        let commands = self.commands.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = commands.send(command);
    }

    /// What Redis holds of topic `name` after id `after` (claiming epoch
    /// `claim` for a new life when it holds nothing), refreshing its time
    /// to live.
    pub(crate) fn sync(
        &self,
        name: &str,
        queue: usize,
        after: u64,
        claim: Option<Epoch>,
    ) -> Result<Snapshot, StoreError> {
        let keys = Keys::of(&self.options.prefix, name);
        let reply: (String, u64, u64, Vec<String>) = self.command(|con| {
            scripts::SYNC
                .key(&keys.head)
                .key(&keys.log)
                .key(&keys.topics)
                .arg(after)
                .arg(claim.as_ref().map_or("", Epoch::as_str))
                .arg(ttl_ms(self.options.ttl))
                .arg(queue)
                .arg(name)
                .invoke(con)
        })?;
        Snapshot::read(reply).ok_or_else(|| self.nonsense(name))
    }

    fn nonsense(&self, name: &str) -> StoreError {
        StoreError(format!(
            "Redis at {} holds something else than slosh's topic {name} under its key",
            self.url
        ))
    }
}

/// The keys and channel of one topic.
pub(crate) struct Keys {
    pub(crate) head: String,
    pub(crate) log: String,
    pub(crate) channel: String,
    /// The servers holding the topic, with their counts.
    pub(crate) nodes: String,
    /// The set of every topic's name (the same for all topics).
    pub(crate) topics: String,
}

impl Keys {
    pub(crate) fn of(prefix: &str, name: &str) -> Keys {
        Keys {
            head: format!("{prefix}:{name}"),
            log: format!("{prefix}:{name}:log"),
            channel: format!("{prefix}:{name}:ch"),
            nodes: format!("{prefix}:{name}:nodes"),
            topics: format!("{prefix}:@topics"),
        }
    }
}

/// A random name for this server (std's hasher is keyed at random per
/// process: no random-number crate for 64 bits).
fn node_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// `url` with any password replaced by `***`, for messages and logs.
pub fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((user, host)) => {
            let user = user.split_once(':').map_or(user, |(name, _)| name);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_string(),
    }
}

/// A topic's log in a [`RedisStore`]: a [`MemoryLog`] cache following the
/// topic in Redis.
pub struct RedisLog {
    follow: Arc<Follow>,
    shared: Arc<Shared>,
}

impl Drop for RedisLog {
    fn drop(&mut self) {
        self.shared
            .tell(Command::Unfollow(Arc::downgrade(&self.follow)));
    }
}

impl Log for RedisLog {
    fn append(&self, json: Json) -> Result<Message, StoreError> {
        let follow = &self.follow;
        // One append at a time per topic and server: each returns the
        // entries the cache lacks, so the cache always grows in id order.
        let _one = follow.appending();
        if follow.has_ended() {
            return Err(StoreError(
                "this topic's life ended on another server; publish again".to_string(),
            ));
        }
        if !follow.is_synced() {
            follow.catch_up(&self.shared)?;
        }
        let keys = &follow.keys;
        let epoch = follow.cache.epoch();
        let reply: (String, u64, u64, Vec<String>) = self.shared.command(|con| {
            scripts::APPEND
                .key(&keys.head)
                .key(&keys.log)
                .arg(epoch.as_str())
                .arg(json.as_str())
                .arg(slosh_core::stamp_now())
                .arg(follow.queue)
                .arg(ttl_ms(self.shared.options.ttl))
                .arg(&keys.channel)
                .arg(follow.cache.max())
                .invoke(con)
        })?;
        let (status, id, _end, entries) = reply;
        if status != "ok" {
            // Redis holds another life of the topic, or none: this one is
            // over, here too.
            follow.end(slosh_core::Change::Reset, &self.shared);
            return Err(StoreError(
                "this topic's life ended in Redis; publish again".to_string(),
            ));
        }
        let entries: Option<Vec<Entry>> = entries.iter().map(|text| Entry::parse(text)).collect();
        let entries = entries.ok_or_else(|| self.shared.nonsense(&follow.name))?;
        // Complete (everything after the cache's max): never a gap.
        let _ = follow.apply(entries, true);
        follow
            .cache
            .get(id)
            .ok_or_else(|| self.shared.nonsense(&follow.name))
    }

    fn read_after(&self, after: u64, out: &mut Vec<Message>) -> u64 {
        self.follow.cache.read_after(after, out)
    }

    fn max(&self) -> u64 {
        self.follow.cache.max()
    }

    fn head(&self) -> Head {
        self.follow.cache.head()
    }

    fn buffered(&self) -> usize {
        self.follow.cache.buffered()
    }

    fn expire(&self, before: Stamp) -> usize {
        let dropped = self.follow.cache.expire(before);
        if dropped > 0 {
            // Every server holding the topic trims Redis too; the script
            // is idempotent, and a failure leaves rows that a later sweep
            // (here or elsewhere) drops.
            let keys = &self.follow.keys;
            let _ = self.shared.command(|con| {
                scripts::EXPIRE
                    .key(&keys.log)
                    .arg(before)
                    .invoke::<u64>(con)
            });
        }
        dropped
    }

    fn epoch(&self) -> Epoch {
        self.follow.cache.epoch()
    }

    fn remove(&self, why: Removal) {
        // Whatever the watcher still has queued for this life (its first
        // catch-up, say) must not claim the topic again in Redis.
        self.follow.retire();
        if why != Removal::Deleted {
            // Other servers may still hold it; its keys' time to live
            // removes it once nobody does.
            return;
        }
        let keys = &self.follow.keys;
        let epoch = self.follow.cache.epoch();
        let _ = self.shared.command(|con| {
            scripts::DELETE
                .key(&keys.head)
                .key(&keys.log)
                .key(&keys.topics)
                .arg(epoch.as_str())
                .arg(&keys.channel)
                .arg(&*self.follow.name)
                .invoke::<u64>(con)
        });
    }

    fn watch(&self, notify: Notify) {
        self.follow.set_notify(notify, &self.shared);
    }

    fn held(&self, here: Counts) {
        // The watcher passes it on with its next round.
        Follow::write(&self.follow.here, here);
    }

    fn elsewhere(&self) -> Counts {
        Follow::read(&self.follow.elsewhere)
    }
}
