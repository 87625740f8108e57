//! The hub: every topic and session, the settings, the filter, and the
//! in-process publishing API.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::auth::{Auth, TokenKey};
use crate::epoch::Epoch;
use crate::error::Error;
use crate::files::StaticRoot;
use crate::gone::Gone;
use crate::message::Json;
use crate::metrics::{Metrics, SubscriberKind};
use crate::name::{self, TopicName};
use crate::session::{RandomSource, Sessions};
use crate::settings::{Mode, Settings};
use crate::store::{Change, Log, MemoryLog, Removal, Store, TopicInfo};
use crate::topic::{Publishing, Subscription, Topic};

/// The longest a sweeper sleeps between sweeps. Expiry rules notice changes
/// at sweeps, so this is their precision; one pass a second over the topic
/// table is negligible next to serving requests.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// What an embedder's filter decides about a message before it is stored.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Store the message as it is.
    Keep,
    /// Store this instead.
    Replace(Json),
    /// Store nothing; the publisher is told `"dropped":true`.
    Drop,
}

/// A server-wide filter that sees each message and its topic before it is
/// stored. It runs outside every lock of the hub, so it may take its time
/// without holding up other topics.
pub trait Filter: Send + Sync + 'static {
    /// Decides about `message`, published to `topic`.
    fn filter(&self, topic: &TopicName, message: &Json) -> Verdict;
}

impl<F> Filter for F
where
    F: Fn(&TopicName, &Json) -> Verdict + Send + Sync + 'static,
{
    fn filter(&self, topic: &TopicName, message: &Json) -> Verdict {
        self(topic, message)
    }
}

/// Makes the [`Log`] of a new topic, given its name, `queue`, and a fresh
/// [`Epoch`] for a new life of its ids. The seam through which another
/// store replaces the in-memory ring buffer: a store that still holds the
/// topic's messages (a file, Redis) keeps its own epoch and ignores the
/// fresh one, so cursors stay valid across restarts.
pub type LogFactory = dyn Fn(&TopicName, usize, Epoch) -> Box<dyn Log> + Send + Sync;

/// Draws the epoch of each new topic life.
pub type EpochSource = dyn Fn() -> Epoch + Send + Sync;

/// The outcome of a publish that was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The message's id, or `None` when the filter dropped it.
    pub id: Option<u64>,
}

impl Published {
    /// `{"ok":true,"id":N}` or `{"ok":true,"id":null,"dropped":true}`.
    pub fn to_json(&self) -> String {
        match self.id {
            Some(id) => {
                let mut json = String::with_capacity(32);
                json.push_str(r#"{"ok":true,"id":"#);
                crate::batch::push_u64(&mut json, id);
                json.push('}');
                json
            }
            None => r#"{"ok":true,"id":null,"dropped":true}"#.to_string(),
        }
    }
}

/// The hub: a cheap-to-clone handle (`Send + Sync`) to every topic and
/// session. Clone it into every handler that publishes.
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) settings: Settings,
    topics: RwLock<Table>,
    /// Topics removed from the table so far: a log made with the table
    /// unlocked ([`Hub::locked_topic`]) is kept only if none was removed
    /// meanwhile, as it might hold the life that removal just ended.
    removals: AtomicU64,
    /// A lock per topic being opened from a store, so requests that name
    /// a new topic at once (a thousand subscribers arriving together) make
    /// its log once between them, and wait for that one, instead of each
    /// reading the store. Entries live only while an opening is under way.
    openings: Mutex<HashMap<String, Arc<Opening>>>,
    pub(crate) sessions: Sessions,
    filter: Option<Box<dyn Filter>>,
    log_factory: Box<LogFactory>,
    /// The store the logs come from, asked for its health, the topics it
    /// holds elsewhere and whether it is shared; none for memory, whose
    /// appends never block (a hub on a store stores POSTs off the runtime
    /// thread, [`crate::Outcome::Publish`]).
    pub(crate) store: Option<Arc<dyn Store>>,
    epochs: Box<EpochSource>,
    pub(crate) metrics: Arc<Metrics>,
    /// Subscribers over all topics, against `max_subscribers_total`.
    subscribers: Arc<AtomicUsize>,
    shutting_down: AtomicBool,
    /// Recently removed topics, so reconnecting browsers are told to stop.
    pub(crate) gone: Gone,
    /// `settings.root`, canonicalized once.
    pub(crate) static_root: Option<StaticRoot>,
    /// The token key, private topics and token cookie.
    pub(crate) auth: Auth,
}

/// The topics a hub holds, by name.
type Table = HashMap<TopicName, Arc<Topic>>;

/// A topic being opened from a store ([`Inner::openings`]).
#[derive(Default)]
pub(crate) struct Opening {
    /// Held while the log is made, so it is made once.
    gate: Mutex<()>,
    /// Told when an opening is over: subscriptions that found it under
    /// way wait for this rather than each taking a blocking thread.
    done: event_listener::Event,
}

/// Builds a [`Hub`]: settings, filter, store.
pub struct Builder {
    settings: Settings,
    filter: Option<Box<dyn Filter>>,
    log_factory: Option<Box<LogFactory>>,
    /// Topics to load at build: what the store holds.
    preload: Vec<TopicName>,
    /// The store given to [`Builder::store`].
    store: Option<Arc<dyn Store>>,
    session_ids: Option<Box<RandomSource>>,
    epochs: Option<Box<EpochSource>>,
    token_key: Option<TokenKey>,
}

impl Builder {
    /// Checks signed tokens with `key` ([`auth`](crate::auth)): publishing
    /// and deleting then need a token allowing the topic (or the publish
    /// token), and subscribing to a private topic
    /// ([`Settings::private`]) needs one allowing it.
    pub fn token_key(mut self, key: TokenKey) -> Builder {
        self.token_key = Some(key);
        self
    }

    /// Replaces all settings at once (what a frontend's parsed flags give).
    pub fn settings(mut self, settings: Settings) -> Builder {
        self.settings = settings;
        self
    }

    /// Topic lifetime rules.
    pub fn mode(mut self, mode: Mode) -> Builder {
        self.settings.mode = mode;
        self
    }

    /// Messages kept per topic.
    pub fn queue(mut self, queue: usize) -> Builder {
        self.settings.queue = queue;
        self
    }

    /// Drops messages older than `age` from every topic; `None` (the
    /// default) keeps them until the queue pushes them out.
    pub fn max_age(mut self, age: Option<Duration>) -> Builder {
        self.settings.max_age = age;
        self
    }

    /// Long-poll timeout; `None` parks until a message comes.
    pub fn poll_timeout(mut self, timeout: Option<Duration>) -> Builder {
        self.settings.poll_timeout = timeout;
        self
    }

    /// The largest message accepted, in bytes.
    pub fn max_message(mut self, bytes: usize) -> Builder {
        self.settings.max_message = bytes;
        self
    }

    /// Topics at most.
    pub fn max_topics(mut self, topics: usize) -> Builder {
        self.settings.max_topics = topics;
        self
    }

    /// Requires `Authorization: Bearer <token>` on POST and DELETE.
    pub fn publish_token(mut self, token: impl Into<String>) -> Builder {
        self.settings.publish_token = Some(token.into());
        self
    }

    /// Sets the filter every message passes before it is stored.
    pub fn filter(mut self, filter: impl Filter) -> Builder {
        self.filter = Some(Box::new(filter));
        self
    }

    /// Draws session ids from `source` instead of the operating system's
    /// random source, so a test can know the cookie a client will get.
    /// `source` fills its buffer and returns whether it could; when it
    /// cannot, the client is served without a session, as when the
    /// system's source fails. Ids must be unpredictable in production: a
    /// guessed id reads another client's place in a topic.
    pub fn session_ids(
        mut self,
        source: impl Fn(&mut [u8]) -> bool + Send + Sync + 'static,
    ) -> Builder {
        self.session_ids = Some(Box::new(source));
        self
    }

    /// Draws each new topic life's epoch from `source` instead of the
    /// operating system's random source, so a test can know the epoch in
    /// its answers. Epochs need not be secret, but must differ between
    /// lives of a topic: two lives with one epoch cannot be told apart.
    pub fn epochs(mut self, source: impl Fn() -> Epoch + Send + Sync + 'static) -> Builder {
        self.epochs = Some(Box::new(source));
        self
    }

    /// Stores topics' messages through `factory` instead of in memory.
    pub fn log_factory(
        mut self,
        factory: impl Fn(&TopicName, usize, Epoch) -> Box<dyn Log> + Send + Sync + 'static,
    ) -> Builder {
        self.log_factory = Some(Box::new(factory));
        self
    }

    /// Keeps topics in `store` instead of in memory, and loads the topics
    /// it holds when the hub is built (up to `max_topics`).
    pub fn store(mut self, store: impl Store) -> Builder {
        self.preload = store.topics();
        let store: Arc<dyn Store> = Arc::new(store);
        self.store = Some(Arc::clone(&store));
        self.log_factory = Some(Box::new(move |name: &TopicName, queue, fresh| {
            store.log(name, queue, fresh)
        }));
        self
    }

    /// The hub.
    pub fn build(self) -> Hub {
        let mut settings = self.settings;
        settings.queue = settings.queue.max(1);
        let static_root = settings.root.as_deref().map(StaticRoot::new);
        let auth = Auth::new(
            self.token_key,
            settings.private.clone(),
            settings.token_cookie.clone(),
        );
        let hub = Hub {
            inner: Arc::new(Inner {
                sessions: Sessions::new(
                    settings.session_timeout,
                    self.session_ids
                        .unwrap_or_else(|| Box::new(crate::session::os_random)),
                ),
                settings,
                topics: RwLock::new(HashMap::new()),
                removals: AtomicU64::new(0),
                openings: Mutex::new(HashMap::new()),
                filter: self.filter,
                store: self.store,
                log_factory: self.log_factory.unwrap_or_else(|| {
                    Box::new(|_: &TopicName, queue, epoch| {
                        Box::new(MemoryLog::new(queue, epoch)) as Box<dyn Log>
                    })
                }),
                epochs: self.epochs.unwrap_or_else(|| Box::new(random_epoch)),
                metrics: Arc::new(Metrics::default()),
                subscribers: Arc::new(AtomicUsize::new(0)),
                shutting_down: AtomicBool::new(false),
                gone: Gone::default(),
                static_root,
                auth,
            }),
        };
        {
            let mut topics = hub.write_topics();
            for name in self.preload {
                // Past max_topics the rest wait for a request that names
                // them, as any topic would.
                if hub.get_or_create(&mut topics, name.as_str(), None).is_err() {
                    break;
                }
            }
        }
        hub
    }
}

/// An epoch from the operating system's random source, or, should that
/// fail, from the clock and a counter: still distinct between lives.
fn random_epoch() -> Epoch {
    Epoch::random(&crate::session::os_random).unwrap_or_else(|| {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Epoch::from_bits(nanos ^ COUNTER.fetch_add(1, Ordering::Relaxed).rotate_left(20))
    })
}

impl Default for Hub {
    fn default() -> Hub {
        Hub::builder().build()
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("settings", &self.inner.settings)
            .field("topics", &self.topic_count())
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// A builder starting from the spec's defaults.
    pub fn builder() -> Builder {
        Builder {
            settings: Settings::default(),
            filter: None,
            log_factory: None,
            preload: Vec::new(),
            store: None,
            session_ids: None,
            epochs: None,
            token_key: None,
        }
    }

    /// The `Set-Cookie` value that logs a browser in: a token for `grant`
    /// signed by `signer`, in this hub's token cookie (`HttpOnly`,
    /// `SameSite=Lax`, living as long as the token), so the page's
    /// `EventSource` and WebSocket carry it without any script. The
    /// adapters' `token_cookie` wraps this as their framework's header.
    pub fn token_cookie(
        &self,
        signer: &crate::auth::Signer,
        grant: &crate::auth::Grant,
    ) -> Result<String, crate::auth::KeyError> {
        signer.cookie(grant, self.inner.auth.cookie())
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The counters behind `/metrics`.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// How many body bytes an adapter should read at most before it gives
    /// up and passes [`Body::TooLarge`](crate::Body::TooLarge): `max_message`,
    /// inclusive.
    pub fn body_limit(&self) -> usize {
        self.inner.settings.max_message
    }

    /// Publishes `value` to `topic` from inside the application: the same
    /// path as a POST (name rule, size limit, filter, mode), minus HTTP.
    ///
    /// On a hub with a store (a file, Redis) this waits for the store's
    /// write, and for the topic's opening the first time: call it where
    /// blocking is fine (`tokio::task::spawn_blocking`, `web::block`), not
    /// on a runtime thread. On memory it never waits.
    pub fn publish<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        value: &T,
    ) -> Result<Published, Error> {
        let json = Json::to_json(value).map_err(|e| Error::Unserializable(e.to_string()))?;
        self.publish_json(topic, json)
    }

    /// Publishes an already-encoded message. `max_message` limits its JSON
    /// text, as it limits a POST's body.
    pub fn publish_json(&self, topic: &str, json: Json) -> Result<Published, Error> {
        let limit = self.inner.settings.max_message;
        let result = if json.len() > limit {
            Err(Error::TooLarge { limit })
        } else {
            self.publish_accepted(topic, json)
        };
        if let Err(error) = &result {
            self.inner.metrics.rejected(error);
        }
        result
    }

    /// Publishes a message whose size was already judged: a POST's limit is
    /// on the body as sent, and decoding may make the JSON longer (a text
    /// body gains quotes), which must not turn an accepted body into a 413.
    pub(crate) fn publish_accepted(&self, topic: &str, json: Json) -> Result<Published, Error> {
        name::validate(topic).map_err(Error::BadTopicName)?;
        let json = match &self.inner.filter {
            None => json,
            Some(filter) => {
                let name = TopicName::parse(topic).map_err(Error::BadTopicName)?;
                match filter.filter(&name, &json) {
                    Verdict::Keep => json,
                    Verdict::Replace(replacement) => replacement,
                    Verdict::Drop => {
                        self.inner.metrics.dropped();
                        return Ok(Published { id: None });
                    }
                }
            }
        };
        let create = self.inner.settings.mode == Mode::Normal;
        // Counted as publishing while the table is locked, so the sweeper
        // (which decides under the write lock) keeps the topic until the
        // append is done and never removes it between our lookup and our
        // append, which would lose a message we acknowledged; the append
        // itself runs with no lock of the table held, so a store that
        // takes its time (an fsync, a round trip) holds up no other topic.
        let publishing = {
            let topics = self.read_topics();
            match topics.get(topic) {
                Some(existing) => Publishing::start(existing),
                None => {
                    drop(topics);
                    // In mailbox mode, held on another server sharing the
                    // store is as good as held here.
                    if !create && !self.held_elsewhere(topic) {
                        return Err(Error::NoSuchTopic(topic.to_string()));
                    }
                    let (_topics, topic) = self.locked_topic(topic)?;
                    Publishing::start(&topic)
                }
            }
        };
        let message = publishing
            .topic
            .append(json)
            .map_err(|error| Error::Store(error.0))?;
        self.inner.metrics.published();
        Ok(Published {
            id: Some(message.id()),
        })
    }

    /// Whether another server sharing the store holds `name` ([`Store::holds`]).
    fn held_elsewhere(&self, name: &str) -> bool {
        match (&self.inner.store, TopicName::parse(name)) {
            (Some(store), Ok(name)) => store.holds(&name),
            _ => false,
        }
    }

    /// The topic table write-locked, with topic `name` in it (created,
    /// subject to `max_topics`, when missing), so the caller can count
    /// itself on the topic before the sweeper may look at it.
    ///
    /// A store's log is made with the table unlocked: opening a topic in
    /// a store can wait on a disk or a round trip to Redis, which must
    /// hold up no other topic. Should a topic be removed meanwhile (the
    /// log read might then be of the life just ended), the log is made
    /// again with the table locked, which is rare and right.
    fn locked_topic(&self, name: &str) -> Result<(RwLockWriteGuard<'_, Table>, Arc<Topic>), Error> {
        let mut topics = self.write_topics();
        if let Some(topic) = topics.get(name) {
            let topic = Arc::clone(topic);
            return Ok((topics, topic));
        }
        if self.inner.store.is_none() {
            // A memory log is made in no time.
            let topic = self.get_or_create(&mut topics, name, None)?;
            return Ok((topics, topic));
        }
        let limit = self.inner.settings.max_topics;
        if topics.len() >= limit {
            return Err(Error::TooManyTopics { limit });
        }
        let parsed = TopicName::parse(name).map_err(Error::BadTopicName)?;
        drop(topics);
        let opening = self.open_gate(name);
        let one = opening.gate.lock().unwrap_or_else(PoisonError::into_inner);
        let topics = self.write_topics();
        if let Some(topic) = topics.get(name) {
            // Opened by the request this one waited for.
            let topic = Arc::clone(topic);
            drop(one);
            self.close_gate(name, &opening);
            return Ok((topics, topic));
        }
        let removals = self.inner.removals.load(Ordering::SeqCst);
        drop(topics);
        let log = self.make_log(&parsed);
        let mut topics = self.write_topics();
        drop(one);
        self.close_gate(name, &opening);
        let log = (self.inner.removals.load(Ordering::SeqCst) == removals).then_some(log);
        // Another request may have opened it meanwhile: theirs is kept
        // and this log dropped unused.
        let topic = self.get_or_create(&mut topics, name, log)?;
        Ok((topics, topic))
    }

    /// Topic `name`'s opening (see [`Inner::openings`]), joined.
    fn open_gate(&self, name: &str) -> Arc<Opening> {
        let mut openings = self.lock_openings();
        Arc::clone(openings.entry(name.to_string()).or_default())
    }

    /// Leaves `opening`, joined by [`Hub::open_gate`] or
    /// [`Hub::begin_open`]: the last to leave forgets it, and whoever waits
    /// for it is told to look again.
    pub(crate) fn close_gate(&self, name: &str, opening: &Arc<Opening>) {
        {
            let mut openings = self.lock_openings();
            // Only ever cloned under this lock: the map's and the caller's
            // mean nobody else is in it.
            if Arc::strong_count(opening) == 2 {
                openings.remove(name);
            }
        }
        opening.done.notify(usize::MAX);
    }

    /// For a subscription to topic `name`, which this server does not
    /// hold: the opening to run (the first to ask), or the wait for the
    /// one under way (everyone after, until it is over).
    pub(crate) fn begin_open(
        &self,
        name: &str,
    ) -> Result<Arc<Opening>, event_listener::EventListener> {
        let mut openings = self.lock_openings();
        match openings.get(name) {
            // Listening under the lock: the opening is told over only
            // after it left the map, so this listener hears it.
            Some(opening) => Err(opening.done.listen()),
            None => {
                let opening = Arc::new(Opening::default());
                openings.insert(name.to_string(), Arc::clone(&opening));
                Ok(opening)
            }
        }
    }

    fn lock_openings(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Opening>>> {
        // Every change is one insert or remove.
        self.inner
            .openings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A new log for topic `name` from the store (or memory), in a fresh
    /// epoch if the store holds nothing of it.
    fn make_log(&self, name: &TopicName) -> Box<dyn Log> {
        let epoch = (self.inner.epochs)();
        (self.inner.log_factory)(name, self.inner.settings.queue, epoch)
    }

    /// Opens topic `name` if it is missing, with the table unlocked while
    /// the store reads it: what [`crate::Outcome::Open`] runs. Errors are
    /// left to the request that asked, which meets them again.
    pub(crate) fn open(&self, name: &str) {
        if self.find(name).is_none() {
            let _ = self.locked_topic(name);
        }
    }

    /// Looks `name` up, creating it (subject to `max_topics`) when missing,
    /// with `log` if given (made by [`Hub::locked_topic`]) or a new one.
    fn get_or_create(
        &self,
        topics: &mut Table,
        name: &str,
        log: Option<Box<dyn Log>>,
    ) -> Result<Arc<Topic>, Error> {
        if let Some(topic) = topics.get(name) {
            return Ok(Arc::clone(topic));
        }
        let limit = self.inner.settings.max_topics;
        if topics.len() >= limit {
            return Err(Error::TooManyTopics { limit });
        }
        let name = TopicName::parse(name).map_err(Error::BadTopicName)?;
        let log = log.unwrap_or_else(|| self.make_log(&name));
        let topic = Arc::new(Topic::new(name.clone(), log));
        // Weak: the log is the topic's own and the hub's, and must keep
        // neither alive.
        let (woken, hub) = (Arc::downgrade(&topic), Arc::downgrade(&self.inner));
        topic.log.watch(Box::new(move |change| {
            let Some(topic) = woken.upgrade() else { return };
            match change {
                Change::Appended => topic.wake_all(),
                Change::Deleted | Change::Reset => {
                    if let Some(inner) = hub.upgrade() {
                        Hub { inner }.ended_elsewhere(&topic, change == Change::Deleted);
                    }
                }
            }
        }));
        self.inner.gone.forget(name.as_str());
        topics.insert(name, Arc::clone(&topic));
        Ok(topic)
    }

    /// Looks `name` up (creating it if asked) and counts a subscriber of
    /// `kind` on it, in one step the sweeper cannot come between.
    pub(crate) fn subscribe(
        &self,
        name: &str,
        kind: SubscriberKind,
    ) -> Result<Subscription, Error> {
        let inner = &self.inner;
        {
            let topics = self.read_topics();
            if let Some(topic) = topics.get(name) {
                return Subscription::join(
                    topic,
                    kind,
                    &inner.settings,
                    &inner.subscribers,
                    &inner.metrics,
                );
            }
        }
        let (_topics, topic) = self.locked_topic(name)?;
        Subscription::join(
            &topic,
            kind,
            &inner.settings,
            &inner.subscribers,
            &inner.metrics,
        )
    }

    /// The topic named `name`, if it exists; never creates.
    pub(crate) fn find(&self, name: &str) -> Option<Arc<Topic>> {
        self.read_topics().get(name).cloned()
    }

    /// Removes a topic and its buffer: parked polls get an empty batch,
    /// streams end. `false` if there was no such topic.
    pub fn delete(&self, name: &str) -> bool {
        let removed = {
            let mut topics = self.write_topics();
            self.inner.removals.fetch_add(1, Ordering::SeqCst);
            topics.remove(name)
        };
        match removed {
            Some(topic) => {
                topic.close(Removal::Deleted);
                self.inner.gone.remember(topic.name.clone());
                true
            }
            None => false,
        }
    }

    /// A shared store ended this life of `topic` (see [`Change`]): it
    /// leaves the table, if it is still the one there, and its subscribers
    /// end. A deletion is remembered like a local `DELETE`, so browsers
    /// stop reconnecting; a reset is not, so they reconnect into the new
    /// life and are told of the reset by their cursor's epoch.
    fn ended_elsewhere(&self, topic: &Arc<Topic>, deleted: bool) {
        let removed = {
            let mut topics = self.write_topics();
            self.inner.removals.fetch_add(1, Ordering::SeqCst);
            let held = topics
                .get(&topic.name)
                .is_some_and(|held| Arc::ptr_eq(held, topic));
            held && topics.remove(&topic.name).is_some()
        };
        topic.end();
        // Only when this life was the one held: a late notice about an
        // earlier life must not mark a newer one as gone.
        if deleted && removed {
            self.inner.gone.remember(topic.name.clone());
        }
    }

    /// Topics that exist now.
    pub fn topic_count(&self) -> usize {
        self.read_topics().len()
    }

    /// The `.info` object of one topic, `None` if it does not exist.
    pub fn info(&self, name: &str) -> Option<serde_json::Value> {
        self.find(name).map(|topic| topic.info().to_json())
    }

    /// `{"topics":[INFO,…]}`, sorted by name so the answer is stable.
    pub fn list(&self) -> serde_json::Value {
        self.list_where(|_| true)
    }

    /// [`Hub::list`] of the topics whose names `keep` keeps.
    pub(crate) fn list_where(&self, keep: impl Fn(&str) -> bool) -> serde_json::Value {
        let topics: Vec<Arc<Topic>> = self.read_topics().values().cloned().collect();
        let mut infos: Vec<TopicInfo> = topics.iter().map(|t| t.info()).collect();
        // The topics other servers sharing the store hold and this one
        // does not, as the store last heard of them.
        if let Some(store) = &self.inner.store {
            let here: std::collections::HashSet<String> =
                infos.iter().map(|info| info.name.clone()).collect();
            infos.extend(
                store
                    .everywhere()
                    .into_iter()
                    .filter(|info| !here.contains(&info.name)),
            );
        }
        infos.retain(|info| keep(&info.name));
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        let infos: Vec<serde_json::Value> = infos.iter().map(TopicInfo::to_json).collect();
        serde_json::json!({ "topics": infos })
    }

    /// Removes idle topics and expired sessions, and returns when it wants
    /// to run next (at most [`SWEEP_INTERVAL`] from `now`).
    pub fn sweep(&self, now: Instant) -> Instant {
        let next_session = self.inner.sessions.sweep(now);
        let removed: Vec<Arc<Topic>> = {
            let mut topics = self.write_topics();
            let settings = &self.inner.settings;
            let expired: Vec<TopicName> = topics
                .iter()
                .filter(|(_, topic)| topic.expired(settings, now))
                .map(|(name, _)| name.clone())
                .collect();
            if !expired.is_empty() {
                self.inner.removals.fetch_add(1, Ordering::SeqCst);
            }
            let removed = expired
                .iter()
                .filter_map(|name| topics.remove(name))
                .collect();
            // What this server holds, for a store shared with others.
            for topic in topics.values() {
                topic.log.held(topic.counts());
            }
            removed
        };
        for topic in removed {
            topic.close(Removal::Expired);
            self.inner.gone.remember(topic.name.clone());
        }
        if let Some(age) = self.inner.settings.max_age {
            let age = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
            self.expire(crate::store::stamp_now().saturating_sub(age));
        }
        self.inner.gone.sweep(now);
        let next = now + SWEEP_INTERVAL;
        next_session.map_or(next, |at| at.clamp(now, next))
    }

    /// Drops from every topic the messages appended before `before`, and
    /// returns how many: the sweep's `max_age` rule, apart so a test can
    /// choose the cutoff. The topics are listed under the table's read
    /// lock and expired after it is released, so a store that writes a
    /// file to expire holds up no publish and no subscriber.
    pub fn expire(&self, before: crate::store::Stamp) -> usize {
        let topics: Vec<Arc<Topic>> = self.read_topics().values().cloned().collect();
        let dropped: usize = topics.iter().map(|topic| topic.log.expire(before)).sum();
        self.inner.metrics.expired(dropped);
        dropped
    }

    /// Starts shutting down: parked long-polls answer with their batch,
    /// streams end, and new subscriptions are refused.
    pub fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        for topic in self.read_topics().values() {
            topic.wake_all();
        }
    }

    /// Whether [`Hub::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::SeqCst)
    }

    /// Why the store cannot keep messages now, `None` when it can (see
    /// [`Store::health`]).
    pub fn store_health(&self) -> Option<String> {
        self.inner.store.as_ref().and_then(|store| store.health())
    }

    /// Live sessions now.
    pub fn session_count(&self) -> usize {
        self.inner.sessions.len()
    }

    fn read_topics(&self) -> RwLockReadGuard<'_, Table> {
        // Every change to the table is a single insert or remove, so a panic
        // elsewhere cannot leave it half-changed.
        self.inner
            .topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write_topics(&self) -> RwLockWriteGuard<'_, Table> {
        self.inner
            .topics
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
