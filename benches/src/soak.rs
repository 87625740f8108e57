//! `slosh-soak`: a long run of connection churn against one slosh server,
//! then the checks that nothing was lost and nothing was left behind.
//!
//! While a publisher sends numbered messages (`{"seq":S}`) at a steady
//! rate, three *stayers* (a long-poll, an SSE stream and a WebSocket) stay
//! connected to one topic for the whole run, and *churners* connect and
//! drop subscribers of every kind over and over: a long-poll dropped while
//! parked, an SSE stream cut mid-read, a WebSocket closed politely or just
//! dropped, some publishing a frame first. At the end:
//!
//! - every acknowledged message reached every stayer, in order;
//! - the server's RSS is within 10 % of what it was after the warm-up;
//! - `/metrics` counts no subscriber (and, when the soak knows the server's
//!   idle timeouts, no topic): nothing the churn created is left.
//!
//! Everything is bounded: the run stops at its duration, each churned
//! connection at its hold time, and each wait at [`SoakOptions::settle`].

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use slosh_client::{batch, sse};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::load::http::{BodyDecoder, Connection};
use crate::load::target::Endpoint;
use crate::load::{LoadError, Run};

/// How far the server's RSS may end above its level after the warm-up.
pub const RSS_TOLERANCE: f64 = 0.10;

/// How the soak runs.
#[derive(Clone, Debug)]
pub struct SoakOptions {
    /// The whole run, warm-up included.
    pub duration: Duration,
    /// Churn before the RSS reference is taken: buffers, pools and caches
    /// reach their working size first.
    pub warmup: Duration,
    /// Churning clients at any moment.
    pub churners: usize,
    /// Messages per second on the stayers' topic (and as many on the
    /// churners' topics).
    pub rate: f64,
    /// The longest a churned subscriber stays connected.
    pub hold_max: Duration,
    /// How long the end checks wait for stayers to catch up and for counts
    /// to return to zero.
    pub settle: Duration,
    /// Whether the server removes idle topics within `settle` (the soak's
    /// own server does; a server started elsewhere may keep them 300 s).
    pub expect_topics_gone: bool,
    /// Seed of the churn's choices, so a failing run can be replayed.
    pub seed: u64,
}

impl Default for SoakOptions {
    fn default() -> SoakOptions {
        SoakOptions {
            duration: Duration::from_secs(600),
            warmup: Duration::from_secs(60),
            churners: 32,
            rate: 100.0,
            hold_max: Duration::from_millis(1500),
            settle: Duration::from_secs(15),
            expect_topics_gone: false,
            seed: 0x5eed,
        }
    }
}

/// Subscriber kinds, as the churn and the stayers use them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `GET /topics/T.json`, parked until a message.
    LongPoll,
    /// `GET /topics/T.sse`.
    Sse,
    /// A WebSocket upgrade on `/topics/T`.
    WebSocket,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::LongPoll, Kind::Sse, Kind::WebSocket];

    /// The name `/metrics` uses.
    pub fn label(self) -> &'static str {
        match self {
            Kind::LongPoll => "longpoll",
            Kind::Sse => "sse",
            Kind::WebSocket => "websocket",
        }
    }
}

/// What one stayer saw.
#[derive(Clone, Debug)]
pub struct StayerReport {
    /// Its kind.
    pub kind: Kind,
    /// Messages it received.
    pub delivered: u64,
    /// Acknowledged messages it never received.
    pub missing: u64,
    /// Messages that came after a later one.
    pub out_of_order: u64,
    /// Why it stopped early, if it did.
    pub error: Option<String>,
}

/// What a soak found.
#[derive(Clone, Debug, Default)]
pub struct SoakReport {
    /// How long the churn ran.
    pub duration: Duration,
    /// Subscribers connected and dropped, by kind (long-poll, SSE, WebSocket).
    pub churned: [u64; 3],
    /// Churned connections that failed in a way the plan did not ask for
    /// (refused, a bad status, a stream the server ended).
    pub churn_errors: u64,
    /// The first of those, for the report.
    pub first_churn_error: Option<String>,
    /// Messages the server acknowledged on the stayers' topic.
    pub published: u64,
    /// Publishes the server did not acknowledge.
    pub publish_errors: u64,
    /// Messages churned subscribers saw out of order.
    pub churn_out_of_order: u64,
    /// One entry per stayer.
    pub stayers: Vec<StayerReport>,
    /// Server RSS after the warm-up, in bytes.
    pub rss_warm: Option<u64>,
    /// Server RSS at the end, once everything settled.
    pub rss_end: Option<u64>,
    /// Subscribers `/metrics` still counted at the end.
    pub subscribers_left: Option<u64>,
    /// Topics `/metrics` counted before the run.
    pub topics_before: Option<u64>,
    /// Topics `/metrics` still counted at the end.
    pub topics_left: Option<u64>,
    /// Whether `topics_left` above `topics_before` is a failure.
    pub expect_topics_gone: bool,
}

impl SoakReport {
    /// Connections churned, all kinds.
    pub fn churned_total(&self) -> u64 {
        self.churned.iter().sum()
    }

    /// The RSS change from after the warm-up to the end, as a fraction.
    pub fn rss_change(&self) -> Option<f64> {
        match (self.rss_warm, self.rss_end) {
            (Some(warm), Some(end)) if warm > 0 => Some((end as f64 - warm as f64) / warm as f64),
            _ => None,
        }
    }

    /// Every check that failed, in words; empty when the soak passed.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.published == 0 {
            problems.push("nothing was published".to_string());
        }
        if self.churn_errors > 0 {
            problems.push(format!(
                "{} churned connections failed (first: {})",
                self.churn_errors,
                self.first_churn_error.as_deref().unwrap_or("?")
            ));
        }
        if self.churn_out_of_order > 0 {
            problems.push(format!(
                "churned subscribers saw {} messages out of order",
                self.churn_out_of_order
            ));
        }
        for stayer in &self.stayers {
            if stayer.missing > 0 || stayer.out_of_order > 0 || stayer.error.is_some() {
                problems.push(format!(
                    "{} stayer: {} missing, {} out of order{}",
                    stayer.kind.label(),
                    stayer.missing,
                    stayer.out_of_order,
                    stayer
                        .error
                        .as_ref()
                        .map(|e| format!(", stopped: {e}"))
                        .unwrap_or_default()
                ));
            }
        }
        if let Some(change) = self.rss_change() {
            if change > RSS_TOLERANCE {
                problems.push(format!(
                    "RSS grew {:.1} % after the warm-up (at most {:.0} %)",
                    change * 100.0,
                    RSS_TOLERANCE * 100.0
                ));
            }
        }
        match self.subscribers_left {
            Some(0) => {}
            Some(n) => problems.push(format!("{n} subscribers left behind")),
            None => problems.push("/metrics could not be read at the end".to_string()),
        }
        if self.expect_topics_gone {
            if let (Some(before), Some(left)) = (self.topics_before, self.topics_left) {
                if left > before {
                    problems.push(format!("{} topics left behind", left - before));
                }
            }
        }
        problems
    }

    /// The report as one JSON object.
    pub fn json(&self) -> serde_json::Value {
        let [longpoll, sse, websocket] = self.churned;
        serde_json::json!({
            "scenario": "soak",
            "duration_s": self.duration.as_secs_f64(),
            "churned": {"longpoll": longpoll, "sse": sse, "websocket": websocket},
            "churn_errors": self.churn_errors,
            "published": self.published,
            "publish_errors": self.publish_errors,
            "stayers": self.stayers.iter().map(|s| serde_json::json!({
                "kind": s.kind.label(),
                "delivered": s.delivered,
                "missing": s.missing,
                "out_of_order": s.out_of_order,
                "error": s.error,
            })).collect::<Vec<_>>(),
            "rss_warm": self.rss_warm,
            "rss_end": self.rss_end,
            "subscribers_left": self.subscribers_left,
            "topics_before": self.topics_before,
            "topics_left": self.topics_left,
            "ok": self.problems().is_empty(),
        })
    }
}

impl fmt::Display for SoakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [longpoll, sse, websocket] = self.churned;
        writeln!(
            f,
            "soak: {:.1} s, {} connections churned (long-poll {longpoll}, SSE {sse}, \
             WebSocket {websocket}), {} churn errors",
            self.duration.as_secs_f64(),
            self.churned_total(),
            self.churn_errors
        )?;
        write!(
            f,
            "messages: {} acknowledged, {} refused; stayers:",
            self.published, self.publish_errors
        )?;
        for stayer in &self.stayers {
            write!(
                f,
                " {} {}/{} ({} missing, {} out of order)",
                stayer.kind.label(),
                stayer.delivered,
                self.published,
                stayer.missing,
                stayer.out_of_order
            )?;
        }
        writeln!(f)?;
        let mib = |bytes: Option<u64>| {
            bytes.map_or("?".to_string(), |b| {
                format!("{:.1} MiB", b as f64 / 1048576.0)
            })
        };
        writeln!(
            f,
            "server RSS: {} after warm-up, {} at the end ({})",
            mib(self.rss_warm),
            mib(self.rss_end),
            self.rss_change()
                .map_or("?".to_string(), |c| format!("{:+.1} %", c * 100.0))
        )?;
        let count = |n: Option<u64>| n.map_or("?".to_string(), |n| n.to_string());
        writeln!(
            f,
            "left behind: {} subscribers, {} topics (before the run: {})",
            count(self.subscribers_left),
            count(self.topics_left),
            count(self.topics_before)
        )?;
        let problems = self.problems();
        if problems.is_empty() {
            write!(f, "verdict: ok")
        } else {
            write!(f, "verdict: FAILED: {}", problems.join("; "))
        }
    }
}

/// Seqs seen by one subscriber, checked as they come: only the gaps are
/// kept, so memory does not grow with the run.
#[derive(Debug, Default)]
struct Order {
    last: Option<u64>,
    delivered: u64,
    out_of_order: u64,
    /// Ranges of seqs skipped (inclusive), at most [`MAX_GAPS`] of them.
    gaps: Vec<(u64, u64)>,
    error: Option<String>,
}

/// Gaps remembered per subscriber; past it the run has failed anyway.
const MAX_GAPS: usize = 1000;

impl Order {
    fn see(&mut self, seq: u64) {
        self.delivered += 1;
        let expected = self.last.map_or(0, |last| last + 1);
        if self.last.is_some_and(|last| seq <= last) {
            self.out_of_order += 1;
            return;
        }
        if seq > expected && self.gaps.len() < MAX_GAPS {
            self.gaps.push((expected, seq - 1));
        }
        self.last = Some(seq);
    }

    /// Acknowledged seqs (all of `0..=last_acked` except `unacked`) this
    /// subscriber never saw.
    fn missing(&self, last_acked: Option<u64>, unacked: &BTreeSet<u64>) -> u64 {
        let Some(last_acked) = last_acked else {
            return 0;
        };
        let mut ranges = self.gaps.clone();
        let seen_to = self.last.map_or(0, |last| last + 1);
        if seen_to <= last_acked {
            ranges.push((seen_to, last_acked));
        }
        ranges
            .iter()
            .map(|&(from, to)| {
                let to = to.min(last_acked);
                if from > to {
                    return 0;
                }
                let refused = unacked.range(from..=to).count() as u64;
                (to - from + 1) - refused
            })
            .sum()
    }
}

/// A small xorshift generator: reproducible churn without a dependency.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What every task shares.
struct Shared {
    base: String,
    stable: String,
    churn_topics: Vec<String>,
    /// The next seq to publish.
    next_seq: AtomicU64,
    churned: [AtomicU64; 3],
    churn_errors: AtomicU64,
    churn_out_of_order: AtomicU64,
    first_churn_error: Mutex<Option<String>>,
    /// Seqs the server did not acknowledge.
    unacked: Mutex<BTreeSet<u64>>,
    /// The newest acknowledged seq.
    last_acked: Mutex<Option<u64>>,
    published: AtomicU64,
}

impl Shared {
    fn endpoint(&self, path: &str) -> Result<Endpoint, LoadError> {
        Endpoint::parse(&format!("{}{path}", self.base))
    }

    fn churn_error(&self, error: String) {
        self.churn_errors.fetch_add(1, Ordering::Relaxed);
        lock(&self.first_churn_error).get_or_insert(error);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The seq in a message `{"seq":S}` (also inside a WebSocket frame's
/// `data`).
fn seq_of(value: &serde_json::Value) -> Option<u64> {
    value.get("seq").and_then(serde_json::Value::as_u64)
}

/// What a churning WebSocket publishes (on churn topics only): not a
/// numbered message, and skipped by the order checks.
const CHURNERS_MESSAGE: &str = r#"{"from":"churner"}"#;

fn is_churners(message: &serde_json::Value) -> bool {
    message.get("from").is_some()
}

/// Runs the soak against `run`'s server. The server must be slosh (the
/// soak reads `/metrics` and `.info`) and in 127.0.0.0/8.
pub async fn soak(run: &Run, options: SoakOptions) -> Result<SoakReport, LoadError> {
    run.target.check()?;
    if options.churners == 0 || options.rate <= 0.0 || options.warmup >= options.duration {
        return Err(LoadError::Options(
            "churners and rate must be positive, and the warm-up shorter than the run".into(),
        ));
    }
    let prefix = &run.topic_prefix;
    let shared = Arc::new(Shared {
        base: run.target.base.clone(),
        stable: format!("{prefix}-stable"),
        churn_topics: (0..4).map(|k| format!("{prefix}-churn-{k}")).collect(),
        next_seq: AtomicU64::new(0),
        churned: Default::default(),
        churn_errors: AtomicU64::new(0),
        churn_out_of_order: AtomicU64::new(0),
        first_churn_error: Mutex::new(None),
        unacked: Mutex::new(BTreeSet::new()),
        last_acked: Mutex::new(None),
        published: AtomicU64::new(0),
    });
    let before = metrics(&shared).await.ok();
    let mut report = SoakReport {
        topics_before: before.map(|m| m.topics),
        expect_topics_gone: options.expect_topics_gone,
        ..SoakReport::default()
    };

    // The stayers subscribe from the start of the topic, and publishing
    // waits until the server counts all three.
    let stayers: Vec<(Kind, Arc<Mutex<Order>>)> = Kind::ALL
        .iter()
        .map(|&kind| (kind, Arc::new(Mutex::new(Order::default()))))
        .collect();
    let stayer_tasks: Vec<_> = stayers
        .iter()
        .map(|(kind, order)| tokio::spawn(stayer(Arc::clone(&shared), *kind, Arc::clone(order))))
        .collect();
    wait_subscribed(&shared, 3, options.settle).await?;

    let (stop, stopped) = watch::channel(false);
    let publisher = tokio::spawn(publisher(
        Arc::clone(&shared),
        options.rate,
        stopped.clone(),
    ));
    let churners: Vec<_> = (0..options.churners)
        .map(|i| {
            let seed = options.seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            tokio::spawn(churner(
                Arc::clone(&shared),
                Rng(seed),
                options.hold_max,
                stopped.clone(),
            ))
        })
        .collect();

    let started = Instant::now();
    tokio::time::sleep(options.warmup).await;
    report.rss_warm = run.server.and_then(|s| s.rss_bytes().ok());
    tokio::time::sleep(options.duration.saturating_sub(started.elapsed())).await;
    let _ = stop.send(true);
    report.duration = started.elapsed();
    let _ = publisher.await;
    for churner in churners {
        // Each stops within its hold time; the bound is for a stuck one.
        if tokio::time::timeout(options.hold_max + options.settle, churner)
            .await
            .is_err()
        {
            shared.churn_error("a churner did not stop".into());
        }
    }

    // The stayers catch up to the last acknowledged message, then go.
    let last_acked = *lock(&shared.last_acked);
    let deadline = Instant::now() + options.settle;
    for (_, order) in &stayers {
        while Instant::now() < deadline {
            let caught_up = {
                let order = lock(order);
                order.error.is_some() || order.last >= last_acked
            };
            if caught_up {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for task in &stayer_tasks {
        task.abort();
    }
    for task in stayer_tasks {
        let _ = task.await;
    }
    let unacked = lock(&shared.unacked).clone();
    report.stayers = stayers
        .iter()
        .map(|(kind, order)| {
            let order = lock(order);
            StayerReport {
                kind: *kind,
                delivered: order.delivered,
                missing: order.missing(last_acked, &unacked),
                out_of_order: order.out_of_order,
                error: order.error.clone(),
            }
        })
        .collect();
    report.published = shared.published.load(Ordering::Relaxed);
    report.publish_errors = unacked.len() as u64;
    report.churn_errors = shared.churn_errors.load(Ordering::Relaxed);
    report.first_churn_error = lock(&shared.first_churn_error).clone();
    report.churn_out_of_order = shared.churn_out_of_order.load(Ordering::Relaxed);
    for (i, count) in shared.churned.iter().enumerate() {
        if let Some(slot) = report.churned.get_mut(i) {
            *slot = count.load(Ordering::Relaxed);
        }
    }

    // Everything is closed: the server's counts must come back down.
    let deadline = Instant::now() + options.settle;
    loop {
        let now = metrics(&shared).await.ok();
        report.subscribers_left = now.map(|m| m.subscribers);
        report.topics_left = now.map(|m| m.topics);
        let settled = now.is_some_and(|m| {
            m.subscribers == 0
                && (!options.expect_topics_gone || Some(m.topics) <= report.topics_before)
        });
        if settled || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    report.rss_end = run.server.and_then(|s| s.rss_bytes().ok());
    Ok(report)
}

/// What the soak reads from `/metrics`.
#[derive(Clone, Copy, Debug)]
struct Counts {
    subscribers: u64,
    topics: u64,
}

async fn metrics(shared: &Shared) -> Result<Counts, LoadError> {
    let body = get(shared, "/metrics").await?;
    let text = String::from_utf8_lossy(&body);
    let value = |line: &str| {
        line.rsplit(' ')
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let subscribers = text
        .lines()
        .filter(|line| line.starts_with("slosh_subscribers{"))
        .map(value)
        .sum();
    let topics = text
        .lines()
        .find(|line| line.starts_with("slosh_topics "))
        .map(value)
        .ok_or_else(|| LoadError::Protocol("no slosh_topics in /metrics".into()))?;
    Ok(Counts {
        subscribers,
        topics,
    })
}

/// One GET on a fresh connection; the body of a 200.
async fn get(shared: &Shared, path: &str) -> Result<Vec<u8>, LoadError> {
    let endpoint = shared.endpoint(path)?;
    let mut conn = Connection::open(endpoint.addr, None).await?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        endpoint.path, endpoint.host
    );
    conn.send(request.as_bytes()).await?;
    let response = conn.read_response().await?;
    if response.head.status != 200 {
        return Err(LoadError::Status(response.head.status));
    }
    Ok(response.body)
}

/// Waits until the stayers' topic counts `n` subscribers.
async fn wait_subscribed(shared: &Shared, n: u64, within: Duration) -> Result<(), LoadError> {
    let deadline = Instant::now() + within;
    let path = format!("/topics/{}.info", shared.stable);
    loop {
        if let Ok(body) = get(shared, &path).await {
            let info: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            if info["subscribers"].as_u64() >= Some(n) {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(LoadError::Protocol(format!(
                "the {n} stayers were not all subscribed within {within:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Publishes `{"seq":S}` to the stayers' topic and to one churn topic at
/// `rate`, until stopped.
async fn publisher(shared: Arc<Shared>, rate: f64, mut stopped: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stable: Option<Connection> = None;
    let mut churn: Option<Connection> = None;
    while !*stopped.borrow() {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped.changed() => break,
        }
        let seq = shared.next_seq.fetch_add(1, Ordering::Relaxed);
        let body = format!(r#"{{"seq":{seq}}}"#);
        let stable_topic = shared.stable.clone();
        match post(&shared, &mut stable, &stable_topic, &body).await {
            Ok(()) => {
                shared.published.fetch_add(1, Ordering::Relaxed);
                *lock(&shared.last_acked) = Some(seq);
            }
            Err(_) => {
                lock(&shared.unacked).insert(seq);
                stable = None;
            }
        }
        let Some(topic) = shared
            .churn_topics
            .get(seq as usize % shared.churn_topics.len())
        else {
            continue;
        };
        let topic = topic.clone();
        if post(&shared, &mut churn, &topic, &body).await.is_err() {
            churn = None;
        }
    }
}

/// One POST over a kept-alive connection (opened when `conn` is `None`).
async fn post(
    shared: &Shared,
    conn: &mut Option<Connection>,
    topic: &str,
    body: &str,
) -> Result<(), LoadError> {
    let endpoint = shared.endpoint(&format!("/topics/{topic}"))?;
    if conn.is_none() {
        *conn = Some(Connection::open(endpoint.addr, None).await?);
    }
    let Some(open) = conn.as_mut() else {
        return Err(LoadError::Closed);
    };
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        endpoint.path,
        endpoint.host,
        body.len()
    );
    open.send(request.as_bytes()).await?;
    let response = open.read_response().await?;
    if response.head.close {
        *conn = None;
    }
    if response.head.status != 200 {
        return Err(LoadError::Status(response.head.status));
    }
    Ok(())
}

/// A subscriber connected for the whole run; records every seq into
/// `order` until aborted.
async fn stayer(shared: Arc<Shared>, kind: Kind, order: Arc<Mutex<Order>>) {
    let topic = shared.stable.clone();
    let result = match kind {
        Kind::LongPoll => {
            long_poll(&shared, &topic, Some(0), None, |seq| lock(&order).see(seq)).await
        }
        Kind::Sse => sse(&shared, &topic, "?n=0", None, |seq| lock(&order).see(seq)).await,
        Kind::WebSocket => {
            websocket(&shared, &topic, "?n=0", None, false, |seq| {
                lock(&order).see(seq)
            })
            .await
        }
    };
    let error = match result {
        Ok(()) => "the server ended the subscription".to_string(),
        Err(error) => error.to_string(),
    };
    lock(&order).error = Some(error);
}

/// Connects and drops subscribers until stopped.
async fn churner(
    shared: Arc<Shared>,
    mut rng: Rng,
    hold_max: Duration,
    stopped: watch::Receiver<bool>,
) {
    while !*stopped.borrow() {
        let kind = match rng.below(3) {
            0 => Kind::LongPoll,
            1 => Kind::Sse,
            _ => Kind::WebSocket,
        };
        let topic = if rng.below(4) == 0 {
            shared.stable.clone()
        } else {
            let k = rng.below(shared.churn_topics.len() as u64) as usize;
            shared.churn_topics.get(k).cloned().unwrap_or_default()
        };
        let hold = hold_max.mul_f64(rng.below(1000) as f64 / 1000.0);
        let until = Instant::now() + hold;
        let mut order = Order::default();
        let see = |seq| order.see(seq);
        // Each subscription ends by the hold time running out: that drop
        // is the churn. Anything that ends it earlier is a failure.
        let ended = match kind {
            // New clients: from the topic's newest message on (a resume
            // further back could legitimately find it left the buffer).
            Kind::LongPoll => long_poll(&shared, &topic, None, Some(until), see).await,
            Kind::Sse => sse(&shared, &topic, "", Some(until), see).await,
            Kind::WebSocket => {
                // Never on the stayers' topic, which holds numbered
                // messages only.
                let publish = rng.below(4) == 0 && topic != shared.stable;
                websocket(&shared, &topic, "", Some(until), publish, see).await
            }
        };
        if let Some(slot) = shared.churned.get(kind_index(kind)) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
        shared
            .churn_out_of_order
            .fetch_add(order.out_of_order, Ordering::Relaxed);
        match ended {
            Err(LoadError::Io(error)) if error.kind() == std::io::ErrorKind::TimedOut => {}
            Ok(()) => {}
            Err(error) => shared.churn_error(format!("{} on {topic}: {error}", kind.label())),
        }
    }
}

fn kind_index(kind: Kind) -> usize {
    match kind {
        Kind::LongPoll => 0,
        Kind::Sse => 1,
        Kind::WebSocket => 2,
    }
}

/// The error a subscription returns when its hold time ran out: the
/// planned end of a churned subscriber.
fn held() -> LoadError {
    LoadError::Io(std::io::ErrorKind::TimedOut.into())
}

/// Runs `future` until `until` (never, for `None`); past it, [`held`].
async fn within<T>(
    until: Option<Instant>,
    future: impl std::future::Future<Output = Result<T, LoadError>>,
) -> Result<T, LoadError> {
    match until {
        None => future.await,
        Some(until) => tokio::time::timeout_at(until.into(), future)
            .await
            .unwrap_or_else(|_| Err(held())),
    }
}

/// Long-polls `topic` from `cursor` (or as a new client, which the server
/// gives a session) until `until`, calling `see` for every seq.
async fn long_poll(
    shared: &Shared,
    topic: &str,
    mut cursor: Option<u64>,
    until: Option<Instant>,
    mut see: impl FnMut(u64),
) -> Result<(), LoadError> {
    let endpoint = shared.endpoint(&format!("/topics/{topic}.json"))?;
    let mut conn = within(until, Connection::open(endpoint.addr, None)).await?;
    loop {
        // Without a cursor the server starts a session at `max` (and sets
        // a cookie this client drops): a new client. After its first
        // answer it goes on by cursor.
        let path = match cursor {
            Some(n) => format!("{}?n={n}", endpoint.path),
            None => endpoint.path.clone(),
        };
        let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", endpoint.host);
        within(until, conn.send(request.as_bytes())).await?;
        let response = within(until, conn.read_response()).await?;
        if response.head.status != 200 {
            return Err(LoadError::Status(response.head.status));
        }
        let batch = batch::json::<serde_json::Value>(&response.body)
            .map_err(|e| LoadError::Protocol(format!("long-poll answer: {e}")))?;
        if batch.missed() > 0 {
            return Err(LoadError::Protocol(format!(
                "{} messages fell out of the buffer",
                batch.missed()
            )));
        }
        for message in &batch.messages {
            match seq_of(message) {
                Some(seq) => see(seq),
                None if is_churners(message) => {}
                None => return Err(LoadError::Protocol(format!("message {message}"))),
            }
        }
        cursor = Some(batch.max);
        if response.head.close {
            conn = within(until, Connection::open(endpoint.addr, None)).await?;
        }
    }
}

/// Reads `topic`'s SSE stream (with `query`) until `until`, calling `see`
/// for every seq.
async fn sse(
    shared: &Shared,
    topic: &str,
    query: &str,
    until: Option<Instant>,
    mut see: impl FnMut(u64),
) -> Result<(), LoadError> {
    let endpoint = shared.endpoint(&format!("/topics/{topic}.sse{query}"))?;
    let mut conn = within(until, Connection::open(endpoint.addr, None)).await?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\n\r\n",
        endpoint.path, endpoint.host
    );
    within(until, conn.send(request.as_bytes())).await?;
    let head = within(until, conn.read_head()).await?;
    if head.status != 200 {
        return Err(LoadError::Status(head.status));
    }
    let mut decoder = BodyDecoder::new(head.framing);
    let mut parser = sse::Parser::new(crate::load::MAX_EVENT);
    let mut bytes = Vec::with_capacity(4096);
    loop {
        bytes.clear();
        let ended = within(until, conn.stream_body(&mut decoder, &mut bytes)).await?;
        let mut bad = None;
        parser.feed(&bytes, |event| {
            if event.kind == "gap" {
                bad = Some("a gap event".to_string());
                return;
            }
            let message =
                serde_json::from_slice::<serde_json::Value>(&event.data).unwrap_or_default();
            match seq_of(&message) {
                Some(seq) => see(seq),
                None if is_churners(&message) => {}
                None => bad = Some(format!("event {message}")),
            }
        })?;
        if let Some(bad) = bad {
            return Err(LoadError::Protocol(bad));
        }
        if ended {
            return Ok(());
        }
    }
}

/// Reads `topic`'s WebSocket (with `query`) until `until`, calling `see`
/// for every seq; publishes one frame first when `publish`. At the end it
/// either sends a close frame or just drops the connection, alternately.
async fn websocket(
    shared: &Shared,
    topic: &str,
    query: &str,
    until: Option<Instant>,
    publish: bool,
    mut see: impl FnMut(u64),
) -> Result<(), LoadError> {
    let endpoint = shared.endpoint(&format!("/topics/{topic}{query}"))?;
    let url = format!("ws://{}{}", endpoint.host, endpoint.path);
    let request = url
        .into_client_request()
        .map_err(|e| LoadError::Protocol(e.to_string()))?;
    let tcp = within(until, async {
        TcpStream::connect(endpoint.addr)
            .await
            .map_err(LoadError::from)
    })
    .await?;
    let (mut ws, _) = within(until, async {
        tokio_tungstenite::client_async(request, tcp)
            .await
            .map_err(|e| LoadError::Protocol(format!("WebSocket handshake: {e}")))
    })
    .await?;
    if publish {
        within(until, async {
            ws.send(Message::text(CHURNERS_MESSAGE))
                .await
                .map_err(|e| LoadError::Protocol(e.to_string()))
        })
        .await?;
    }
    let polite = publish;
    let read = async {
        while let Some(message) = ws.next().await {
            match message.map_err(|e| LoadError::Protocol(e.to_string()))? {
                Message::Text(text) => {
                    let frame: serde_json::Value = serde_json::from_str(text.as_str())
                        .map_err(|e| LoadError::Protocol(format!("frame: {e}")))?;
                    if frame.get("error").is_some() || frame.get("missed").is_some() {
                        return Err(LoadError::Protocol(format!("frame {frame}")));
                    }
                    if let Some(seq) = seq_of(&frame["data"]) {
                        see(seq);
                    } else if !is_churners(&frame["data"]) {
                        return Err(LoadError::Protocol(format!("frame {frame}")));
                    }
                }
                Message::Close(_) => return Ok(()),
                _ => {}
            }
        }
        Ok(())
    };
    let result = within(until, read).await;
    if polite && matches!(&result, Err(LoadError::Io(_))) {
        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    }
    result
}

/// Starts slosh (the hyper frontend) in this process on 127.0.0.1:0 and
/// returns its base URL. Topics and sessions idle for 1 s are removed, so
/// the end check can see everything the churn created go away, and each
/// topic keeps 1000 messages so that no stayer falls out of the buffer.
pub async fn spawn_server() -> Result<String, LoadError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let hub = slosh_hyper::slosh_core::Hub::builder()
        .settings(server_settings())
        .build();
    tokio::spawn(slosh_hyper::serve(listener, hub, std::future::pending()));
    Ok(format!("http://{addr}"))
}

/// The settings of the soak's own server (see [`spawn_server`]); the same
/// as the flags `slosh-soak --server-bin` passes.
pub fn server_settings() -> slosh_hyper::slosh_core::Settings {
    slosh_hyper::slosh_core::Settings {
        queue: 1000,
        topic_idle: Duration::from_secs(1),
        session_timeout: Duration::from_secs(1),
        ..Default::default()
    }
}

/// The `serve` flags matching [`server_settings`].
pub const SERVER_FLAGS: [&str; 6] = [
    "--queue",
    "1000",
    "--topic-idle",
    "1",
    "--session-timeout",
    "1",
];
