//! Property test: random sequences of publish, poll with a cursor, poll by
//! session, session expiry, age expiry, delete, restart and SSE resume, run
//! against a hub on every store (memory, and the file store with each sync
//! mode) and against a plain model of SPEC 3 and 5 and of epochs. Every
//! answer's `max`, `epoch`, `reset`, `saw`, `delivering`, ids and order
//! must match the model, with cursors bare, of this epoch, or of an earlier
//! one. The delivery rules are written once, above the store seam; this is
//! the test that they read every store alike, and that a restart means
//! what each store promises: the memory store forgets (a new epoch), the
//! file store goes on (same epoch, same ids; sessions, which live in the
//! hub, are forgotten by both).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::Value;
use slosh_core::{stamp_now, Epoch, Hub, Outcome, Request, Response, Settings, StreamStep, Wake};
use slosh_file::{FileStore, Sync};

const CLIENTS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Publish(i64),
    /// Poll with `n` = max + offset − 2 (clamped at 0), so cursors below,
    /// at and above max all occur, in a [`Tag`] form.
    PollN(u8, Tag),
    /// Poll as client k with its session cookie, if it has one.
    PollSession(usize),
    /// 31 s pass and the sweeper runs: every session expires.
    Expire,
    /// DELETE: the topic's next life starts at id 1.
    Delete,
    /// Open an SSE stream resuming at max + offset − 2 and read once.
    Stream(u8, Tag),
    /// The server restarts: a new hub on what the store kept.
    Restart,
    /// Every buffered message grows older than `max_age`, and the sweep
    /// drops them.
    AgeOut,
}

/// The store under test.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Memory,
    File(Sync),
    /// A real Redis (one for the whole test), each case under a prefix of
    /// its own; restarts are left out (the cluster tests restart nodes).
    Redis,
}

/// The URL of the Redis every `Kind::Redis` case shares (started, and
/// stopped at the end, by the test that runs them).
static REDIS_URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The next Redis case's number, for a key prefix of its own.
static REDIS_CASES: AtomicU64 = AtomicU64::new(0);

/// How a cursor names its epoch.
#[derive(Debug, Clone, Copy)]
enum Tag {
    /// `57`: taken in the current epoch.
    Bare,
    /// `57@E` with the topic's current epoch.
    Current,
    /// `57@E` with an epoch of no current life (an earlier one).
    Stale,
}

fn tag() -> impl Strategy<Value = Tag> {
    prop_oneof![Just(Tag::Bare), Just(Tag::Current), Just(Tag::Stale)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<i64>().prop_map(Op::Publish),
        2 => ((0u8..6), tag()).prop_map(|(o, t)| Op::PollN(o, t)),
        3 => (0..CLIENTS).prop_map(Op::PollSession),
        1 => Just(Op::Expire),
        1 => Just(Op::Delete),
        1 => ((0u8..6), tag()).prop_map(|(o, t)| Op::Stream(o, t)),
        1 => Just(Op::Restart),
        1 => Just(Op::AgeOut),
    ]
}

/// What the spec says the hub holds.
#[derive(Default)]
struct Model {
    queue: usize,
    /// Which life of the topic this is (bumped by delete).
    life: u32,
    /// Every message of this life: (id, value).
    messages: Vec<(u64, i64)>,
    /// Per client: the cookie it sends, and whether the hub still knows it.
    cookies: [Option<(String, bool)>; CLIENTS],
    /// Per client session: (life, cursor) for the one topic.
    cursors: HashMap<usize, (u32, u64)>,
    /// Whether the topic exists (anything but DELETE creates it).
    exists: bool,
    /// Set by DELETE of an existing topic: a reconnecting stream is told to
    /// stop (204) until the topic exists again or five minutes pass. The
    /// inner value is the sweep that first saw the removal.
    gone: Option<Option<Instant>>,
    /// Epochs the hub has drawn from the test's counter: one per topic
    /// life it creates, and one per topic a hub loads from its store (which
    /// then keeps the store's own).
    draws: u64,
    /// The current life's epoch, while the topic exists.
    epoch: Option<Epoch>,
    /// Every epoch an earlier life had: none may come back.
    earlier: Vec<Epoch>,
    /// Ids up to this one have aged out.
    aged_to: u64,
    /// Whether the store holds this life (a file store writes a topic at
    /// its first publish), so that a restart finds it again.
    stored: bool,
}

impl Model {
    /// The current life's epoch.
    fn epoch(&self) -> Epoch {
        self.epoch.expect("the topic exists")
    }

    /// A new life: the hub draws the next epoch.
    fn create(&mut self) {
        let epoch = Epoch::from_bits(self.draws);
        self.draws += 1;
        assert!(!self.earlier.contains(&epoch));
        self.epoch = Some(epoch);
    }

    /// The life ends (delete, or a restart that forgets).
    fn end_life(&mut self) {
        self.earlier.extend(self.epoch.take());
        self.life += 1;
        self.messages.clear();
        self.aged_to = 0;
        self.stored = false;
        self.exists = false;
    }

    /// `cursor` as the client writes it, and whether the hub must read it
    /// as a reset.
    fn cursor_text(&self, cursor: u64, tag: Tag) -> (String, bool) {
        match tag {
            Tag::Bare => (cursor.to_string(), false),
            Tag::Current if self.exists => (format!("{cursor}@{}", self.epoch()), false),
            // With no life now, every epoch a client holds is an earlier
            // one's.
            Tag::Current | Tag::Stale => (format!("{cursor}@{}", Epoch::from_bits(1 << 39)), true),
        }
    }

    fn max(&self) -> u64 {
        self.messages.len() as u64
    }

    /// The answer to a cursor tagged `tag` (see [`Model::batch`]): a cursor
    /// naming this life's epoch above `max` is a place not reached yet
    /// (another server sharing the store may be ahead), answered with
    /// nothing rather than counted as 0.
    fn batch_tagged(&self, cursor: u64, tag: Tag) -> (u64, u64, Vec<(u64, i64)>) {
        if matches!(tag, Tag::Current) && self.exists && cursor > self.max() {
            return (cursor, 0, Vec::new());
        }
        self.batch(cursor)
    }

    /// The answer to a cursor, as SPEC 3 defines it.
    fn batch(&self, cursor: u64) -> (u64, u64, Vec<(u64, i64)>) {
        let max = self.max();
        let cursor = if cursor > max { 0 } else { cursor };
        let buffered_from = self
            .messages
            .len()
            .saturating_sub(self.queue)
            .max(self.aged_to as usize);
        let delivered: Vec<(u64, i64)> = self.messages[buffered_from..]
            .iter()
            .filter(|(id, _)| *id > cursor)
            .copied()
            .collect();
        (max, max - cursor, delivered)
    }
}

/// `request` handled as a frontend does: an [`Outcome::Open`] is run (here
/// on the calling thread) and the request handled again.
fn handle(hub: &Hub, request: Request<'_>, now: Instant) -> Outcome {
    match hub.handle(request.clone(), now) {
        Outcome::Open(open) => {
            open.run();
            let mut again = request;
            again.opened = true;
            again.body = slosh_core::Body::Empty;
            hub.handle(again, now)
        }
        outcome => outcome,
    }
}

fn parse(response: &Response) -> (u64, u64, Vec<i64>) {
    let body: Value = serde_json::from_slice(&response.body).unwrap();
    assert!(
        body["epoch"].as_str().and_then(Epoch::parse).is_some(),
        "{body}"
    );
    let res: Vec<i64> = body["res"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(body["delivering"].as_u64().unwrap(), res.len() as u64);
    (
        body["max"].as_u64().unwrap(),
        body["saw"].as_u64().unwrap(),
        res,
    )
}

fn expect(response: &Response, model: (u64, u64, Vec<(u64, i64)>)) {
    let (max, saw, messages) = model;
    let values: Vec<i64> = messages.iter().map(|(_, v)| *v).collect();
    assert_eq!(parse(response), (max, saw, values));
}

/// A file for one case, removed after it.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static CASE: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "slosh-model-{}-{}",
            std::process::id(),
            CASE.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(kind: Kind, queue: usize, mut ops: Vec<Op>) {
    if matches!(kind, Kind::Redis) {
        ops.retain(|op| !matches!(op, Op::Restart));
    }
    let prefix = format!("model{}", redis_case(kind));
    let settings = Settings {
        queue,
        poll_timeout: Some(Duration::from_secs(1)),
        session_timeout: Duration::from_secs(30),
        topic_idle: Duration::from_secs(1_000_000),
        ..Settings::default()
    };
    // One counter across restarts: every life gets a new epoch, as the
    // random source gives in production.
    let counter = Arc::new(AtomicU64::new(0));
    let scratch = Scratch::new();
    let file = scratch.0.join("slosh.db");
    // The old hub (and with it every handle on the file) is dropped before
    // the next is built, as in a process that exits and starts again.
    let build = |old: Option<Hub>| {
        drop(old);
        let counter = Arc::clone(&counter);
        let builder = Hub::builder()
            .settings(settings.clone())
            .epochs(move || Epoch::from_bits(counter.fetch_add(1, Ordering::Relaxed)));
        match kind {
            Kind::Memory => builder.build(),
            Kind::File(sync) => builder.store(FileStore::open(&file, sync).unwrap()).build(),
            Kind::Redis => {
                let options = slosh_redis::Options {
                    prefix: prefix.clone(),
                    ..slosh_redis::Options::default()
                };
                let url = REDIS_URL.get().expect("the test started Redis");
                let store = slosh_redis::RedisStore::with_options(url, options);
                builder.store(store.unwrap()).build()
            }
        }
    };
    let mut hub = build(None);
    let mut now = Instant::now();
    let mut model = Model {
        queue,
        ..Model::default()
    };

    for op in ops {
        let touches = !matches!(op, Op::Delete | Op::Expire | Op::Restart | Op::AgeOut);
        // The op creates the topic (unless it is refused): its life's epoch
        // is the hub's next.
        let created = touches && !model.exists;
        if created {
            model.create();
        }
        match op {
            Op::Publish(value) => {
                let response = match hub
                    .handle(
                        Request::new("POST", "/topics/t")
                            .with_header("Content-Type", "application/json")
                            .with_body(value.to_string()),
                        now,
                    )
                    // A store's publish is made where blocking is fine: here.
                    .resolved()
                {
                    Outcome::Respond(response) => response,
                    other => panic!("{other:?}"),
                };
                model.messages.push((model.max() + 1, value));
                model.stored = true;
                let body: Value = serde_json::from_slice(&response.body).unwrap();
                assert_eq!(body["id"].as_u64(), Some(model.max()));
            }
            Op::PollN(offset, tag) => {
                let cursor = (model.max() + u64::from(offset)).saturating_sub(2);
                let (text, reset) = model.cursor_text(cursor, tag);
                let target = format!("/topics/t.json?n={text}");
                let expected = if reset {
                    model.batch(0)
                } else {
                    model.batch_tagged(cursor, tag)
                };
                // Nothing to deliver and nothing missed: the poll waits.
                let news = expected.1 > 0;
                match handle(&hub, Request::new("GET", &target), now) {
                    Outcome::Respond(response) => {
                        assert!(
                            news,
                            "{target} answered at once with nothing to tell: {} (model: max {}, {:?})",
                            String::from_utf8_lossy(&response.body),
                            model.max(),
                            expected
                        );
                        expect(&response, expected);
                        let body: Value = serde_json::from_slice(&response.body).unwrap();
                        assert_eq!(body["epoch"], model.epoch().as_str());
                        assert_eq!(body.get("reset").is_some(), reset, "{body}");
                    }
                    Outcome::Park(_) => assert!(!news, "parked with news to tell"),
                    other => panic!("a .json poll answers or parks, got {other:?}"),
                }
            }
            Op::PollSession(client) => {
                let sent = model.cookies[client].clone();
                let mut request = Request::new("GET", "/topics/t.json");
                if let Some((cookie, _)) = &sent {
                    request.header("Cookie", cookie);
                }
                let known = matches!(sent, Some((_, true)));
                // The cursor the spec gives this client.
                let cursor = match (known, model.cursors.get(&client)) {
                    (true, Some((life, cursor))) if *life == model.life => *cursor,
                    (true, Some(_)) => 0,
                    _ => model.max(),
                };
                let expected = model.batch(cursor);
                let news = expected.1 > 0;
                let response = match handle(&hub, request, now) {
                    Outcome::Respond(response) => {
                        assert!(news, "answered at once with nothing to tell");
                        response
                    }
                    Outcome::Park(mut poll) => {
                        assert!(!news, "parked with news to tell");
                        now += Duration::from_secs(1);
                        match poll.poll(now) {
                            Wake::Ready(response) => response,
                            Wake::Wait(_) => panic!("the poll timeout passed"),
                        }
                    }
                    other => panic!("a .json poll answers or parks, got {other:?}"),
                };
                expect(&response, expected);
                let set_cookies = || {
                    response
                        .headers
                        .iter()
                        .filter(|(name, _)| name.eq_ignore_ascii_case("Set-Cookie"))
                        .map(|(_, value)| value.to_string())
                };
                // A shared store also hands out the client's place (which
                // this client does not send back: its session alone is
                // under test here).
                let place = set_cookies().find(|set| set.starts_with("slosh_cursor_t="));
                match kind {
                    Kind::Redis => {
                        let want = format!("slosh_cursor_t={}@{}", model.max(), model.epoch());
                        assert!(place.is_some_and(|set| set.starts_with(&want)), "{want}");
                    }
                    _ => assert_eq!(place, None),
                }
                match set_cookies()
                    .find(|set| set.starts_with("slosh_session="))
                    .as_deref()
                {
                    Some(set) => {
                        assert!(!known, "a known session is not set again");
                        let cookie = set.split(';').next().unwrap().to_string();
                        model.cookies[client] = Some((cookie, true));
                    }
                    None => assert!(known, "a new session sets its cookie"),
                }
                model.cursors.insert(client, (model.life, model.max()));
            }
            Op::Expire => {
                now += Duration::from_secs(31);
                hub.sweep(now);
                for (_, known) in model.cookies.iter_mut().flatten() {
                    *known = false;
                }
                model.cursors.clear();
                assert_eq!(hub.session_count(), 0);
                if let Some(stamp) = &mut model.gone {
                    let removed = *stamp.get_or_insert(now);
                    if now - removed >= Duration::from_secs(300) {
                        model.gone = None;
                    }
                }
            }
            Op::Delete => {
                let deleted = match hub.handle(Request::new("DELETE", "/topics/t"), now) {
                    Outcome::Respond(response) => response.status,
                    other => panic!("{other:?}"),
                };
                assert_eq!(deleted, if model.exists { 200 } else { 404 });
                if model.exists {
                    model.end_life();
                    model.gone = Some(None);
                }
            }
            Op::Restart => {
                hub = build(Some(hub));
                let kept = matches!(kind, Kind::File(_)) && model.stored;
                if kept {
                    // The hub loads the topic: it draws an epoch for it,
                    // and the store's own is kept.
                    model.draws += 1;
                } else if model.exists {
                    model.end_life();
                }
                // What the hub held in memory is gone with it: sessions,
                // and the list of deleted topics.
                model.gone = None;
                model.cursors.clear();
                for (_, known) in model.cookies.iter_mut().flatten() {
                    *known = false;
                }
                // A topic that only lived in the hub is no more; a stored
                // one is listed at once.
                let listed = match handle(&hub, Request::new("GET", "/topics"), now) {
                    Outcome::Respond(response) => {
                        let body: Value = serde_json::from_slice(&response.body).unwrap();
                        body.to_string().contains("\"t\"")
                    }
                    other => panic!("{other:?}"),
                };
                assert_eq!(listed, kept, "after a restart");
            }
            Op::AgeOut => {
                let dropped = hub.expire(stamp_now() + 1);
                let buffered = model.batch(0).2;
                assert_eq!(dropped, buffered.len(), "messages aged out");
                model.aged_to = model.max();
            }
            Op::Stream(offset, tag) => {
                let resume = (model.max() + u64::from(offset)).saturating_sub(2);
                let (id, reset) = model.cursor_text(resume, tag);
                let request =
                    Request::new("GET", "/topics/t.sse").with_header("Last-Event-ID", &id);
                let mut stream = match handle(&hub, request, now) {
                    Outcome::Stream(stream) => stream,
                    Outcome::Respond(response) if model.gone.is_some() && !model.exists => {
                        assert_eq!(response.status, 204, "a reconnect to a deleted topic");
                        if created {
                            model.draws -= 1;
                            model.epoch = None;
                        }
                        // Nothing created: the topic stays gone.
                        continue;
                    }
                    other => panic!("{other:?}"),
                };
                let text = match stream.poll(now) {
                    StreamStep::Send(bytes) => String::from_utf8(bytes.to_vec()).unwrap(),
                    other => panic!("{other:?}"),
                };
                let (_, saw, messages) = if reset {
                    model.batch(0)
                } else {
                    model.batch_tagged(resume, tag)
                };
                let mut expected = String::from("retry: 3000\n\n");
                let missed = saw - messages.len() as u64;
                if reset {
                    // One uncounted gap covers the earlier life and any
                    // overflow of this one.
                    expected.push_str("event: gap\ndata: {\"missed\":null}\n\n");
                } else if missed > 0 {
                    expected.push_str(&format!("event: gap\ndata: {{\"missed\":{missed}}}\n\n"));
                }
                let epoch = model.epoch();
                for (id, value) in messages {
                    expected.push_str(&format!("id: {id}@{epoch}\ndata: {value}\n\n"));
                }
                assert_eq!(text, expected);
            }
        }
        if touches {
            model.exists = true;
            model.gone = None;
        }
    }
}

/// A number of its own for each Redis case (0 for the other kinds).
fn redis_case(kind: Kind) -> u64 {
    match kind {
        Kind::Redis => REDIS_CASES.fetch_add(1, Ordering::Relaxed),
        _ => 0,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn the_hub_on_the_memory_store_delivers_as_the_model_says(queue in 1usize..6, ops in proptest::collection::vec(op(), 1..60)) {
        run(Kind::Memory, queue, ops);
    }
}

// Each publish of `--sync always` is an fsync, and each case opens a file:
// fewer cases, the same ops.
proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn the_hub_on_the_file_store_delivers_as_the_model_says(queue in 1usize..6, ops in proptest::collection::vec(op(), 1..60)) {
        run(Kind::File(Sync::Always), queue, ops);
    }

    #[test]
    fn the_hub_on_the_batched_file_store_delivers_as_the_model_says(queue in 1usize..6, ops in proptest::collection::vec(op(), 1..60)) {
        run(Kind::File(Sync::Batch), queue, ops);
    }
}

// Each case is a store (a watcher thread, connections) on one real Redis,
// which this test starts and stops: the same ops but restarts.
#[test]
fn the_hub_on_the_redis_store_delivers_as_the_model_says() {
    let redis = slosh_redis::test_server::TestRedis::start();
    REDIS_URL.get_or_init(|| redis.url());
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(200));
    let cases = (1usize..6, proptest::collection::vec(op(), 1..60));
    let result = runner.run(&cases, |(queue, ops)| {
        run(Kind::Redis, queue, ops);
        Ok(())
    });
    drop(redis);
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
