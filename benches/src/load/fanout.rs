//! Many subscribers, one publisher: `longpoll`, `sse-fanout` and
//! `connect`.
//!
//! Each message is a [`Stamp`]: its seq and its send time on a clock shared
//! by publisher and subscribers (one `Instant`, one process), so a
//! subscriber knows each delivery's latency and which seqs it never got.
//!
//! A run: subscribers connect (at most [`CONNECTING_AT_ONCE`] at a time,
//! so the server's accept queue is not flooded) and say when they are
//! subscribed; the publisher then posts M messages at R/s, or back-to-back
//! (rate 0: the next as soon as every live subscriber has the previous);
//! subscribers stop once they hold every seq, or at the drain deadline, or
//! at the run's timeout, and hand back what they counted.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use slosh_client::{batch, sse};
use tokio::sync::{watch, Notify, Semaphore};

use super::histogram::Histogram;
use super::http::{BodyDecoder, Connection};
use super::{round, CursorStyle, Endpoint, Latency, LoadError, Run, Stamp};

/// Connection attempts in flight at once.
pub const CONNECTING_AT_ONCE: usize = 256;
/// How long a back-to-back publisher waits for the slowest subscriber
/// before publishing the next message anyway (counted as a stalled step).
const STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long subscribers get, after the last publish, to receive it.
const DRAIN: Duration = Duration::from_secs(5);
/// How long to wait for long-polls to show as parked on the server.
const PARK_WAIT: Duration = Duration::from_secs(10);
/// Without a way to see parked long-polls, wait this long instead.
const SETTLE: Duration = Duration::from_secs(1);
/// Info answers in a row without a subscriber count before falling back to
/// [`SETTLE`].
const INFO_TRIES: u32 = 3;
/// Failed requests a long-poll subscriber tolerates before giving up.
const MAX_POLL_ERRORS: u64 = 10;
/// Most messages one scenario may publish: each subscriber keeps one bit
/// per message.
pub const MAX_MSGS: u64 = 10_000_000;

/// Parameters of `longpoll` and `sse-fanout`.
#[derive(Clone, Debug)]
pub struct FanoutOptions {
    /// Subscribers, each on its own connection, all on one topic.
    pub subs: usize,
    /// Messages to publish.
    pub msgs: u64,
    /// Messages per second; 0 means back-to-back.
    pub rate: f64,
}

/// Which subscriber a fan-out runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    LongPoll,
    Sse,
    /// `connect --websocket` only: the handshake, then an idle socket.
    WebSocket,
}

/// What a fan-out measured.
#[derive(Clone, Debug)]
pub struct FanoutReport {
    /// `longpoll` or `sse-fanout`.
    pub scenario: &'static str,
    /// The parameters.
    pub options: FanoutOptions,
    /// Subscribers that got subscribed.
    pub connected: usize,
    /// Subscribers that never got subscribed.
    pub failed_subs: usize,
    /// Messages the server accepted (2xx).
    pub published: u64,
    /// Publishes refused or lost.
    pub publish_errors: u64,
    /// Distinct (subscriber, seq) receipts.
    pub deliveries: u64,
    /// Receipts of a seq the subscriber already had.
    pub duplicates: u64,
    /// From the first publish to the last delivery.
    pub elapsed: Duration,
    /// Send → receipt, per delivery.
    pub latency: Latency,
    /// Σ over connected subscribers of (published − distinct seqs received).
    pub lost: u64,
    /// The most any one subscriber lost.
    pub lost_max_per_sub: u64,
    /// Subscribers that lost anything.
    pub subs_with_loss: usize,
    /// Loss the server owned up to: Σ `saw − delivering` (long-poll) or
    /// Σ `missed` of `gap` events (SSE).
    pub visible_loss: u64,
    /// Long-poll requests sent (SSE: 0).
    pub polls: u64,
    /// Requests or streams that failed after subscribing, and answers that
    /// could not be read.
    pub errors: u64,
    /// Back-to-back steps that moved on without every subscriber.
    pub stalled_steps: u64,
    /// Server CPU from the first publish to the end, when its pid was given.
    pub server_cpu_s: Option<f64>,
    /// The user-space part of [`server_cpu_s`](Self::server_cpu_s).
    pub server_user_cpu_s: Option<f64>,
    /// Server RSS before subscribing.
    pub rss_before: Option<u64>,
    /// Server RSS with every subscriber subscribed, before publishing.
    pub rss_subscribed: Option<u64>,
    /// The run hit [`Run::timeout`].
    pub timed_out: bool,
}

impl FanoutReport {
    /// Deliveries per second.
    pub fn deliveries_per_s(&self) -> f64 {
        self.deliveries as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Server CPU per delivery, in microseconds.
    pub fn server_cpu_per_delivery_us(&self) -> Option<f64> {
        self.server_cpu_s
            .map(|cpu| cpu * 1e6 / self.deliveries.max(1) as f64)
    }

    /// Server user-space CPU per delivery, in microseconds.
    pub fn server_user_cpu_per_delivery_us(&self) -> Option<f64> {
        self.server_user_cpu_s
            .map(|cpu| cpu * 1e6 / self.deliveries.max(1) as f64)
    }

    /// Server RSS added per subscriber, in bytes.
    pub fn rss_per_sub(&self) -> Option<f64> {
        rss_per(self.rss_before, self.rss_subscribed, self.connected)
    }

    /// The one-line machine-readable result.
    pub fn json(&self) -> serde_json::Value {
        let back_to_back = self.options.rate <= 0.0;
        let mut json = serde_json::json!({
            "scenario": self.scenario,
            "subs": self.options.subs,
            "msgs": self.options.msgs,
            "rate": self.options.rate,
            "connected": self.connected,
            "failed_subs": self.failed_subs,
            "published": self.published,
            "publish_errors": self.publish_errors,
            "expected": self.published * self.connected as u64,
            "deliveries": self.deliveries,
            "duplicates": self.duplicates,
            "elapsed_s": round(self.elapsed.as_secs_f64(), 3),
            "deliveries_per_s": round(self.deliveries_per_s(), 1),
            "latency_us": self.latency.json(),
            "lost": self.lost,
            "lost_max_per_sub": self.lost_max_per_sub,
            "subs_with_loss": self.subs_with_loss,
            "visible_loss": self.visible_loss,
            "errors": self.errors,
            "stalled_steps": self.stalled_steps,
            "server_cpu_s": self.server_cpu_s.map(|c| round(c, 2)),
            "server_user_cpu_s": self.server_user_cpu_s.map(|c| round(c, 2)),
            "server_user_cpu_per_delivery_us": self.server_user_cpu_per_delivery_us().map(|c| round(c, 3)),
            "server_cpu_per_delivery_us": self.server_cpu_per_delivery_us().map(|c| round(c, 3)),
            "server_rss_before": self.rss_before,
            "server_rss_subscribed": self.rss_subscribed,
            "rss_per_sub_bytes": self.rss_per_sub().map(|b| round(b, 0)),
            "timed_out": self.timed_out,
        });
        if self.scenario == "longpoll" {
            json["polls"] = self.polls.into();
            if back_to_back {
                json["round_trips_per_s"] = round(self.deliveries_per_s(), 1).into();
            }
        }
        json
    }
}

impl fmt::Display for FanoutReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate = if self.options.rate > 0.0 {
            format!("{}/s", self.options.rate)
        } else {
            "back-to-back".to_string()
        };
        writeln!(
            f,
            "{}: {} subscribers ({} failed) × {} messages {} ({} published, {} publish errors)",
            self.scenario,
            self.connected,
            self.failed_subs,
            self.options.msgs,
            rate,
            self.published,
            self.publish_errors
        )?;
        let noun = if self.scenario == "longpoll" && self.options.rate <= 0.0 {
            " (= long-poll round trips/s)"
        } else {
            ""
        };
        writeln!(
            f,
            "  {:.0} deliveries/s{noun}, {} deliveries in {:.2} s",
            self.deliveries_per_s(),
            self.deliveries,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "  latency p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
            self.latency.p50_us, self.latency.p99_us, self.latency.max_us
        )?;
        write!(
            f,
            "  lost {} (max {} per subscriber, {} subscribers), visible loss {}, errors {}, stalled steps {}",
            self.lost,
            self.lost_max_per_sub,
            self.subs_with_loss,
            self.visible_loss,
            self.errors,
            self.stalled_steps
        )?;
        if let Some(cpu) = self.server_cpu_per_delivery_us() {
            write!(f, "\n  server CPU {cpu:.3} µs per delivery")?;
            if let Some(user) = self.server_user_cpu_per_delivery_us() {
                write!(f, " ({user:.3} µs in user space)")?;
            }
        }
        if let Some(rss) = self.rss_per_sub() {
            write!(f, "\n  server RSS {rss:.0} B per subscriber")?;
        }
        if self.timed_out {
            write!(f, "\n  TIMED OUT: partial figures")?;
        }
        Ok(())
    }
}

/// Parameters of `connect`.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Subscriptions to open.
    pub subs: usize,
    /// Topics to spread them over (round-robin).
    pub topics: usize,
    /// WebSocket subscriptions (an upgrade on the bare topic URL, slosh's
    /// form) instead of SSE.
    pub websocket: bool,
}

/// What `connect` measured.
#[derive(Clone, Debug)]
pub struct ConnectReport {
    /// The parameters.
    pub options: ConnectOptions,
    /// Subscriptions that got their stream's first block.
    pub connected: usize,
    /// Subscriptions that failed.
    pub failed_subs: usize,
    /// From the first connect to the last first block.
    pub elapsed: Duration,
    /// Server RSS before.
    pub rss_before: Option<u64>,
    /// Server RSS with every subscription open.
    pub rss_after: Option<u64>,
    /// Server CPU from the first connect to the last first block.
    pub server_cpu_s: Option<f64>,
    /// The user-space part of [`server_cpu_s`](Self::server_cpu_s).
    pub server_user_cpu_s: Option<f64>,
    /// This generator's own CPU over the same span: near
    /// [`elapsed`](Self::elapsed) means the generator, not the server,
    /// set the pace (on loopback the TCP handshake is mostly the
    /// connecting side's kernel work).
    pub load_cpu_s: Option<f64>,
    /// The run hit [`Run::timeout`].
    pub timed_out: bool,
}

impl ConnectReport {
    /// Server CPU per subscription, in microseconds.
    pub fn server_cpu_per_sub_us(&self) -> Option<f64> {
        self.server_cpu_s
            .map(|cpu| cpu * 1e6 / self.connected.max(1) as f64)
    }

    /// `sse` or `websocket`.
    pub fn kind(&self) -> &'static str {
        if self.options.websocket {
            "websocket"
        } else {
            "sse"
        }
    }

    /// Server RSS added per subscriber, in bytes.
    pub fn rss_per_sub(&self) -> Option<f64> {
        rss_per(self.rss_before, self.rss_after, self.connected)
    }

    /// The one-line machine-readable result.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "scenario": "connect",
            "kind": self.kind(),
            "subs": self.options.subs,
            "topics": self.options.topics,
            "connected": self.connected,
            "failed_subs": self.failed_subs,
            "elapsed_s": round(self.elapsed.as_secs_f64(), 3),
            "subs_per_s": round(self.connected as f64 / self.elapsed.as_secs_f64().max(1e-9), 1),
            "server_rss_before": self.rss_before,
            "server_rss_after": self.rss_after,
            "rss_per_sub_bytes": self.rss_per_sub().map(|b| round(b, 0)),
            "server_cpu_s": self.server_cpu_s.map(|c| round(c, 2)),
            "server_user_cpu_s": self.server_user_cpu_s.map(|c| round(c, 2)),
            "server_cpu_per_sub_us": self.server_cpu_per_sub_us().map(|c| round(c, 1)),
            "load_cpu_s": self.load_cpu_s.map(|c| round(c, 2)),
            "timed_out": self.timed_out,
        })
    }
}

impl fmt::Display for ConnectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connect: {} of {} {} subscriptions ({} failed) in {:.3} s",
            self.connected,
            self.options.subs,
            self.kind(),
            self.failed_subs,
            self.elapsed.as_secs_f64()
        )?;
        if let Some(rss) = self.rss_per_sub() {
            write!(f, "\n  server RSS {rss:.0} B per subscriber")?;
        }
        if let Some(cpu) = self.server_cpu_per_sub_us() {
            write!(f, "\n  server CPU {cpu:.1} µs per subscriber")?;
        }
        if let Some(cpu) = self.load_cpu_s {
            write!(f, "\n  generator CPU {cpu:.2} s")?;
        }
        if self.timed_out {
            write!(f, "\n  TIMED OUT: partial figures")?;
        }
        Ok(())
    }
}

fn rss_per(before: Option<u64>, after: Option<u64>, subs: usize) -> Option<f64> {
    let (before, after) = before.zip(after)?;
    Some((after as f64 - before as f64) / subs.max(1) as f64)
}

/// State every subscriber and the publisher share.
struct Shared {
    /// The clock stamps are measured on.
    start: Instant,
    msgs: u64,
    /// Per seq, how many subscribers hold it (the back-to-back publisher
    /// waits on this).
    holders: Box<[AtomicU32]>,
    /// Subscribed and not yet gone.
    alive: AtomicUsize,
    /// A seq reached every live subscriber, or one left.
    progress: Notify,
    latency: Mutex<Histogram>,
    ready: AtomicUsize,
    failed: AtomicUsize,
    finished: AtomicUsize,
    /// Someone got ready, failed or finished.
    arrivals: Notify,
}

impl Shared {
    fn new(msgs: u64) -> Shared {
        Shared {
            start: Instant::now(),
            msgs,
            holders: (0..msgs).map(|_| AtomicU32::new(0)).collect(),
            alive: AtomicUsize::new(0),
            progress: Notify::new(),
            latency: Mutex::new(Histogram::new()),
            ready: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            arrivals: Notify::new(),
        }
    }

    /// Waits until `done()` or `deadline`; `false` on the deadline.
    async fn wait(&self, notify: &Notify, deadline: Instant, done: impl Fn() -> bool) -> bool {
        loop {
            let notified = notify.notified();
            if done() {
                return true;
            }
            if tokio::time::timeout_at(deadline.into(), notified)
                .await
                .is_err()
            {
                return done();
            }
        }
    }
}

/// One subscriber's counts; outside its loop, so a stop keeps them.
struct Tally {
    /// One bit per seq.
    seen: Vec<u64>,
    received: u64,
    duplicates: u64,
    visible_loss: u64,
    polls: u64,
    errors: u64,
    ready: bool,
    last_delivery: Option<Instant>,
}

impl Tally {
    fn new(msgs: u64) -> Tally {
        Tally {
            seen: vec![0; msgs.div_ceil(64) as usize],
            received: 0,
            duplicates: 0,
            visible_loss: 0,
            polls: 0,
            errors: 0,
            ready: false,
            last_delivery: None,
        }
    }

    fn subscribed(&mut self, shared: &Shared) {
        if !self.ready {
            self.ready = true;
            shared.alive.fetch_add(1, Ordering::SeqCst);
            shared.ready.fetch_add(1, Ordering::SeqCst);
            shared.arrivals.notify_one();
        }
    }

    /// Holds the last seq: messages arrive in order, so whatever is still
    /// missing is lost. Never for `connect`, which publishes nothing and
    /// keeps its subscribers until stopped.
    fn done(&self, shared: &Shared) -> bool {
        shared.msgs > 0 && self.has(shared.msgs - 1)
    }

    fn has(&self, seq: u64) -> bool {
        self.seen
            .get((seq / 64) as usize)
            .is_some_and(|word| word & (1 << (seq % 64)) != 0)
    }

    fn record(&mut self, shared: &Shared, data: &[u8]) {
        let Ok(stamp) = serde_json::from_slice::<Stamp>(data) else {
            self.errors += 1;
            return;
        };
        self.stamp(shared, stamp);
    }

    fn stamp(&mut self, shared: &Shared, stamp: Stamp) {
        let now = Instant::now();
        let Some(word) = self.seen.get_mut((stamp.seq / 64) as usize) else {
            self.duplicates += 1;
            return;
        };
        let bit = 1u64 << (stamp.seq % 64);
        if *word & bit != 0 || stamp.seq >= shared.msgs {
            self.duplicates += 1;
            return;
        }
        *word |= bit;
        self.received += 1;
        self.last_delivery = Some(now);
        let latency = (now.duration_since(shared.start).as_nanos() as u64).saturating_sub(stamp.t);
        if let Ok(mut histogram) = shared.latency.lock() {
            histogram.record(latency);
        }
        let holders = shared.holders[stamp.seq as usize].fetch_add(1, Ordering::SeqCst) + 1;
        if holders as usize >= shared.alive.load(Ordering::SeqCst) {
            shared.progress.notify_one();
        }
    }
}

/// Where and how subscribers connect.
struct Plan {
    kind: Kind,
    style: CursorStyle,
    endpoints: Vec<Endpoint>,
    run: Run,
    subs: usize,
}

/// Runs `longpoll`: S long-poll clients on one topic.
pub async fn longpoll(run: &Run, options: FanoutOptions) -> Result<FanoutReport, LoadError> {
    fanout(run, options, Kind::LongPoll).await
}

/// Runs `sse-fanout`: S SSE subscribers on one topic.
pub async fn sse_fanout(run: &Run, options: FanoutOptions) -> Result<FanoutReport, LoadError> {
    fanout(run, options, Kind::Sse).await
}

async fn fanout(run: &Run, options: FanoutOptions, kind: Kind) -> Result<FanoutReport, LoadError> {
    if options.msgs == 0 || options.msgs > MAX_MSGS {
        return Err(LoadError::Options(format!("--msgs must be 1 … {MAX_MSGS}")));
    }
    let topic = run.topic_prefix.clone();
    let endpoint = match kind {
        Kind::LongPoll => run.target.poll(&topic)?,
        // (Idle sockets are `connect`'s alone; they would deliver nothing.)
        Kind::Sse | Kind::WebSocket => run.target.sub(&topic)?,
    };
    let publish = run.target.publish(&topic)?;
    let deadline = Instant::now() + run.timeout;
    let rss_before = run.rss();
    let shared = Arc::new(Shared::new(options.msgs));
    let plan = Arc::new(Plan {
        kind,
        style: run.target.cursor_style,
        endpoints: vec![endpoint],
        run: run.clone(),
        subs: options.subs,
    });
    let (stop, tasks) = spawn_subscribers(&plan, &shared);

    let subs = options.subs;
    let all_arrived = shared
        .wait(&shared.arrivals, deadline, || {
            shared.ready.load(Ordering::SeqCst) + shared.failed.load(Ordering::SeqCst) >= subs
        })
        .await;
    if all_arrived && kind == Kind::LongPoll {
        wait_parked(run, &topic, &shared, deadline).await;
    }
    let rss_subscribed = run.rss();
    let cpu_before = run.cpu();

    let published = publisher(&publish, &options, &shared, deadline).await;
    let drain_until = deadline.min(Instant::now() + DRAIN);
    shared
        .wait(&shared.arrivals, drain_until, || {
            shared.finished.load(Ordering::SeqCst) >= subs
        })
        .await;
    let _ = stop.send(true);
    let mut tallies = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Ok(tally) = task.await {
            tallies.push(tally);
        }
    }
    let (server_cpu_s, server_user_cpu_s) = super::cpu_used(cpu_before, run.cpu());

    let latency = shared
        .latency
        .lock()
        .map(|h| Latency::of(&h))
        .unwrap_or_default();
    let mut report = FanoutReport {
        scenario: match kind {
            Kind::LongPoll => "longpoll",
            Kind::Sse => "sse-fanout",
            Kind::WebSocket => "websocket",
        },
        options,
        connected: 0,
        failed_subs: 0,
        published: published.ok,
        publish_errors: published.errors,
        deliveries: 0,
        duplicates: 0,
        elapsed: Duration::ZERO,
        latency,
        lost: 0,
        lost_max_per_sub: 0,
        subs_with_loss: 0,
        visible_loss: 0,
        polls: 0,
        errors: 0,
        stalled_steps: published.stalled,
        server_cpu_s,
        server_user_cpu_s,
        rss_before,
        rss_subscribed,
        timed_out: Instant::now() >= deadline,
    };
    let mut last = published.first.unwrap_or_else(Instant::now);
    for tally in &tallies {
        report.polls += tally.polls;
        report.errors += tally.errors;
        if !tally.ready {
            report.failed_subs += 1;
            continue;
        }
        report.connected += 1;
        report.deliveries += tally.received;
        report.duplicates += tally.duplicates;
        report.visible_loss += tally.visible_loss;
        let lost = published.ok.saturating_sub(tally.received);
        report.lost += lost;
        report.lost_max_per_sub = report.lost_max_per_sub.max(lost);
        report.subs_with_loss += usize::from(lost > 0);
        if let Some(at) = tally.last_delivery {
            last = last.max(at);
        }
    }
    // Tasks that panicked left no tally; they count as failed too.
    report.failed_subs = subs - report.connected;
    if let Some(first) = published.first {
        report.elapsed = last.duration_since(first);
    }
    Ok(report)
}

/// Runs `connect`: opens S SSE subscriptions and times them.
pub async fn connect(run: &Run, options: ConnectOptions) -> Result<ConnectReport, LoadError> {
    let topics = options.topics.max(1);
    let mut endpoints = Vec::with_capacity(topics);
    for i in 0..topics {
        endpoints.push(run.target.sub(&format!("{}-{i}", run.topic_prefix))?);
    }
    let deadline = Instant::now() + run.timeout;
    let rss_before = run.rss();
    let shared = Arc::new(Shared::new(0));
    let plan = Arc::new(Plan {
        kind: if options.websocket {
            Kind::WebSocket
        } else {
            Kind::Sse
        },
        style: run.target.cursor_style,
        endpoints,
        run: run.clone(),
        subs: options.subs,
    });
    let cpu_before = run.cpu();
    let load_before = own_cpu();
    let start = Instant::now();
    let (stop, tasks) = spawn_subscribers(&plan, &shared);
    let subs = options.subs;
    let all = shared
        .wait(&shared.arrivals, deadline, || {
            shared.ready.load(Ordering::SeqCst) + shared.failed.load(Ordering::SeqCst) >= subs
        })
        .await;
    let elapsed = start.elapsed();
    let (server_cpu_s, server_user_cpu_s) = super::cpu_used(cpu_before, run.cpu());
    let load_cpu_s = super::cpu_used(load_before, own_cpu()).0;
    let rss_after = run.rss();
    let _ = stop.send(true);
    let mut connected = 0;
    for task in tasks {
        if let Ok(tally) = task.await {
            connected += usize::from(tally.ready);
        }
    }
    Ok(ConnectReport {
        options,
        connected,
        failed_subs: subs - connected,
        elapsed,
        rss_before,
        rss_after,
        server_cpu_s,
        server_user_cpu_s,
        load_cpu_s,
        timed_out: !all,
    })
}

/// This process's CPU so far, as [`Run`] reads the server's.
fn own_cpu() -> Option<(f64, f64)> {
    super::server::ServerProcess {
        pid: std::process::id(),
    }
    .cpu_times()
    .ok()
}

type Tasks = Vec<tokio::task::JoinHandle<Tally>>;

fn spawn_subscribers(plan: &Arc<Plan>, shared: &Arc<Shared>) -> (watch::Sender<bool>, Tasks) {
    let (stop, stopped) = watch::channel(false);
    let connecting = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
    let mut tasks = Vec::with_capacity(plan.subs);
    for i in 0..plan.subs {
        let plan = plan.clone();
        let shared = shared.clone();
        let connecting = connecting.clone();
        let mut stopped = stopped.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::new(shared.msgs);
            let endpoint = &plan.endpoints[i % plan.endpoints.len()];
            let source = plan.run.source(i, plan.subs);
            let outcome = tokio::select! {
                outcome = subscribe(&plan, endpoint, source, &connecting, &shared, &mut tally) => outcome,
                _ = stopped.wait_for(|stop| *stop) => Ok(()),
            };
            if outcome.is_err() {
                tally.errors += u64::from(tally.ready);
            }
            if tally.ready {
                shared.alive.fetch_sub(1, Ordering::SeqCst);
                shared.progress.notify_one();
            } else {
                shared.failed.fetch_add(1, Ordering::SeqCst);
            }
            shared.finished.fetch_add(1, Ordering::SeqCst);
            shared.arrivals.notify_one();
            tally
        }));
    }
    (stop, tasks)
}

async fn subscribe(
    plan: &Plan,
    endpoint: &Endpoint,
    source: Option<std::net::Ipv4Addr>,
    connecting: &Semaphore,
    shared: &Shared,
    tally: &mut Tally,
) -> Result<(), LoadError> {
    let conn = {
        let _permit = connecting.acquire().await;
        let mut conn = Connection::open(endpoint.addr, source).await?;
        if plan.kind == Kind::Sse {
            let request = format!(
                "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
                endpoint.path, endpoint.host
            );
            conn.send(request.as_bytes()).await?;
        }
        if plan.kind == Kind::WebSocket {
            // The bare topic URL: slosh's SSE template ends in `.sse`.
            let path = endpoint.path.strip_suffix(".sse").unwrap_or(&endpoint.path);
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
                endpoint.host
            );
            conn.send(request.as_bytes()).await?;
        }
        conn
    };
    match plan.kind {
        Kind::Sse => sse_subscriber(conn, shared, tally).await,
        Kind::WebSocket => idle_socket(conn, shared, tally).await,
        Kind::LongPoll => {
            long_poll_subscriber(conn, plan.style, endpoint, source, shared, tally).await
        }
    }
}

/// A WebSocket that only holds its place: subscribed at the `101`, then
/// reading (and dropping) whatever comes until the run stops it.
async fn idle_socket(
    mut conn: Connection,
    shared: &Shared,
    tally: &mut Tally,
) -> Result<(), LoadError> {
    let head = conn.read_head().await?;
    if head.status != 101 {
        return Err(LoadError::Status(head.status));
    }
    tally.subscribed(shared);
    conn.drain().await
}

async fn sse_subscriber(
    mut conn: Connection,
    shared: &Shared,
    tally: &mut Tally,
) -> Result<(), LoadError> {
    let head = conn.read_head().await?;
    if head.status != 200 {
        return Err(LoadError::Status(head.status));
    }
    let mut decoder = BodyDecoder::new(head.framing);
    let mut parser = sse::Parser::new(super::MAX_EVENT);
    let mut bytes = Vec::with_capacity(4096);
    loop {
        bytes.clear();
        let ended = conn.stream_body(&mut decoder, &mut bytes).await?;
        parser.feed(&bytes, |event| {
            if event.kind == "gap" {
                // slosh's `data: {"missed":K}`: loss the server owned up to.
                let missed = serde_json::from_slice::<serde_json::Value>(&event.data)
                    .ok()
                    .and_then(|v| v.get("missed").and_then(serde_json::Value::as_u64));
                tally.visible_loss += missed.unwrap_or(0);
            } else {
                tally.record(shared, &event.data);
            }
        })?;
        if parser.blocks() > 0 {
            tally.subscribed(shared);
        }
        if tally.ready && tally.done(shared) {
            return Ok(());
        }
        if ended {
            return Err(LoadError::Closed);
        }
    }
}

async fn long_poll_subscriber(
    mut conn: Connection,
    style: CursorStyle,
    endpoint: &Endpoint,
    source: Option<std::net::Ipv4Addr>,
    shared: &Shared,
    tally: &mut Tally,
) -> Result<(), LoadError> {
    // slosh: a fresh topic starts at 0. Nchan: no cache headers asks for
    // the channel's first message.
    let mut cursor = 0u64;
    let mut last_modified: Option<String> = None;
    let mut etag: Option<String> = None;
    let mut failures = 0;
    // Bounded by the run's stop (time); each answer is at least one
    // message or a server-side poll timeout.
    loop {
        let mut request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\n",
            endpoint.with_cursor(cursor),
            endpoint.host
        );
        if style == CursorStyle::Nchan {
            if let Some(value) = &last_modified {
                request.push_str(&format!("If-Modified-Since: {value}\r\n"));
            }
            if let Some(value) = &etag {
                request.push_str(&format!("If-None-Match: {value}\r\n"));
            }
        }
        request.push_str("\r\n");
        conn.send(request.as_bytes()).await?;
        tally.polls += 1;
        tally.subscribed(shared);
        let response = conn.read_response().await?;
        let status = response.head.status;
        match style {
            CursorStyle::Slosh if status == 200 => match batch::json::<Stamp>(&response.body) {
                Ok(batch) => {
                    tally.visible_loss += batch.missed();
                    for stamp in batch.messages {
                        tally.stamp(shared, stamp);
                    }
                    cursor = batch.max;
                }
                Err(_) => tally.errors += 1,
            },
            CursorStyle::Nchan if status == 200 => {
                tally.record(shared, &response.body);
                last_modified = response.head.header("last-modified").map(str::to_string);
                etag = response.head.header("etag").map(str::to_string);
            }
            // Nchan's answers to a long-poll that timed out.
            CursorStyle::Nchan if status == 304 || status == 408 => {}
            _ => {
                tally.errors += 1;
                failures += 1;
                if failures >= MAX_POLL_ERRORS {
                    return Err(LoadError::Status(status));
                }
            }
        }
        if tally.done(shared) {
            return Ok(());
        }
        if response.head.close {
            conn = Connection::open(endpoint.addr, source).await?;
        }
    }
}

/// Waits (bounded) until the server shows every ready long-poll parked, so
/// the first message's latency is not a connect time. The info URL answers
/// JSON with a `subscribers` count on both servers: slosh's `.info`, and
/// Nchan's publisher location on a `GET` that asks for JSON. When it gives
/// no count ([`INFO_TRIES`] answers in a row), a fixed settle time stands
/// in.
async fn wait_parked(run: &Run, topic: &str, shared: &Shared, deadline: Instant) {
    let until = deadline.min(Instant::now() + PARK_WAIT);
    let settle =
        |until: Instant| tokio::time::sleep_until(until.min(Instant::now() + SETTLE).into());
    let Ok(info) = run.target.info(topic) else {
        settle(until).await;
        return;
    };
    let want = shared.ready.load(Ordering::SeqCst);
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\n\r\n",
        info.path, info.host
    );
    let mut conn = None;
    let mut unanswered = 0;
    while Instant::now() < until {
        if conn.is_none() {
            conn = Connection::open(info.addr, None).await.ok();
        }
        let subscribers = match conn.as_mut() {
            Some(c) => match c.send(request.as_bytes()).await {
                Ok(()) => c
                    .read_response()
                    .await
                    .ok()
                    .and_then(|r| subscribers(&r.body)),
                Err(_) => None,
            },
            None => None,
        };
        match subscribers {
            Some(n) if n as usize >= want => return,
            Some(_) => unanswered = 0,
            None => {
                conn = None;
                unanswered += 1;
                if unanswered >= INFO_TRIES {
                    settle(until).await;
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `subscribers` field of a topic info answer (slosh's `.info`, Nchan's
/// channel info).
fn subscribers(body: &[u8]) -> Option<u64> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()?
        .get("subscribers")?
        .as_u64()
}

struct Published {
    ok: u64,
    errors: u64,
    stalled: u64,
    first: Option<Instant>,
}

/// Posts the messages: at `rate`, or back-to-back.
async fn publisher(
    endpoint: &Endpoint,
    options: &FanoutOptions,
    shared: &Shared,
    deadline: Instant,
) -> Published {
    let mut published = Published {
        ok: 0,
        errors: 0,
        stalled: 0,
        first: None,
    };
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: ",
        endpoint.path, endpoint.host
    );
    let mut conn: Option<Connection> = None;
    for seq in 0..options.msgs {
        if Instant::now() >= deadline {
            break;
        }
        // The schedule starts at the first publish, not before the
        // publisher's connection is open: M messages at R/s span
        // (M − 1) / R seconds from the first.
        if let (true, Some(first)) = (options.rate > 0.0, published.first) {
            let due = first + Duration::from_secs_f64(seq as f64 / options.rate);
            tokio::time::sleep_until(due.min(deadline).into()).await;
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Connection::open(endpoint.addr, None).await {
                Ok(c) => conn.insert(c),
                Err(_) => {
                    published.errors += 1;
                    continue;
                }
            },
        };
        let now = Instant::now();
        published.first.get_or_insert(now);
        let t = now.duration_since(shared.start).as_nanos() as u64;
        let body = Stamp { t, seq }.body(0);
        let request = format!("{head}{}\r\n\r\n{body}", body.len());
        let answer = match c.send(request.as_bytes()).await {
            Ok(()) => tokio::time::timeout_at(deadline.into(), c.read_response())
                .await
                .unwrap_or(Err(LoadError::Closed)),
            Err(e) => Err(e),
        };
        let accepted = match answer {
            Ok(response) => {
                if response.head.close {
                    conn = None;
                }
                (200..300).contains(&response.head.status)
            }
            Err(_) => {
                conn = None;
                false
            }
        };
        if !accepted {
            published.errors += 1;
            continue;
        }
        published.ok += 1;
        if options.rate <= 0.0 {
            let step = deadline.min(Instant::now() + STEP_TIMEOUT);
            let holders = &shared.holders[seq as usize];
            let everyone = shared
                .wait(&shared.progress, step, || {
                    holders.load(Ordering::SeqCst) as usize >= shared.alive.load(Ordering::SeqCst)
                })
                .await;
            published.stalled += u64::from(!everyone);
        }
    }
    published
}
