//! The plan of a fan-out or `connect` run and its orchestration: who
//! connects where, when the publisher starts, how long the drain lasts,
//! and how the subscribers' tallies become a report.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify, Semaphore};

use super::clients::{publisher, subscribe, Tally};
use super::report::{ConnectReport, FanoutReport};
use crate::load::histogram::Histogram;
use crate::load::http::Connection;
use crate::load::{CursorStyle, Endpoint, Latency, LoadError, Run};

/// Connection attempts in flight at once.
pub const CONNECTING_AT_ONCE: usize = 256;
/// How long subscribers get, after the last publish, to receive it.
const DRAIN: Duration = Duration::from_secs(5);
/// How long to wait for long-polls to show as parked on the server.
const PARK_WAIT: Duration = Duration::from_secs(10);
/// Without a way to see parked long-polls, wait this long instead.
const SETTLE: Duration = Duration::from_secs(1);
/// Info answers in a row without a subscriber count before falling back to
/// [`SETTLE`].
const INFO_TRIES: u32 = 3;
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
pub(super) enum Kind {
    LongPoll,
    Sse,
    /// `connect --websocket` only: the handshake, then an idle socket.
    WebSocket,
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

/// State every subscriber and the publisher share.
pub(super) struct Shared {
    /// The clock stamps are measured on.
    pub(super) start: Instant,
    pub(super) msgs: u64,
    /// Per seq, how many subscribers hold it (the back-to-back publisher
    /// waits on this).
    pub(super) holders: Box<[AtomicU32]>,
    /// Subscribed and not yet gone.
    pub(super) alive: AtomicUsize,
    /// A seq reached every live subscriber, or one left.
    pub(super) progress: Notify,
    pub(super) latency: Mutex<Histogram>,
    pub(super) ready: AtomicUsize,
    pub(super) failed: AtomicUsize,
    pub(super) finished: AtomicUsize,
    /// Someone got ready, failed or finished.
    pub(super) arrivals: Notify,
}

impl Shared {
    pub(super) fn new(msgs: u64) -> Shared {
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
    pub(super) async fn wait(
        &self,
        notify: &Notify,
        deadline: Instant,
        done: impl Fn() -> bool,
    ) -> bool {
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

/// Where and how subscribers connect.
pub(super) struct Plan {
    pub(super) kind: Kind,
    pub(super) style: CursorStyle,
    pub(super) endpoints: Vec<Endpoint>,
    pub(super) run: Run,
    pub(super) subs: usize,
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
    // Subscriber i goes to node i mod N, and the publisher takes the
    // nodes in turn, so on a cluster most deliveries cross the store.
    let endpoints = match kind {
        Kind::LongPoll => run.target.poll_all(&topic)?,
        // (Idle sockets are `connect`'s alone; they would deliver nothing.)
        Kind::Sse | Kind::WebSocket => run.target.sub_all(&topic)?,
    };
    let publish = run.target.publish_all(&topic)?;
    let deadline = Instant::now() + run.timeout;
    let rss_before = run.rss();
    let shared = Arc::new(Shared::new(options.msgs));
    let plan = Arc::new(Plan {
        kind,
        style: run.target.cursor_style,
        endpoints,
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
    let (server_cpu_s, server_user_cpu_s) = crate::load::cpu_used(cpu_before, run.cpu());

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
    // Topic by topic, each on every node: subscriber i takes endpoint
    // i mod (T × N), which spreads both topics and nodes evenly.
    let mut endpoints = Vec::with_capacity(topics * run.target.nodes());
    for i in 0..topics {
        endpoints.extend(run.target.sub_all(&format!("{}-{i}", run.topic_prefix))?);
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
    let (server_cpu_s, server_user_cpu_s) = crate::load::cpu_used(cpu_before, run.cpu());
    let load_cpu_s = crate::load::cpu_used(load_before, own_cpu()).0;
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
    crate::load::server::ServerProcess {
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

/// Waits (bounded) until the servers show every ready long-poll parked, so
/// the first message's latency is not a connect time. The info URL answers
/// JSON with a `subscribers` count on both servers: slosh's `.info`, and
/// Nchan's publisher location on a `GET` that asks for JSON. On several
/// nodes the counts are summed (each node counts its own). When it gives
/// no count ([`INFO_TRIES`] answers in a row), a fixed settle time stands
/// in.
async fn wait_parked(run: &Run, topic: &str, shared: &Shared, deadline: Instant) {
    let until = deadline.min(Instant::now() + PARK_WAIT);
    let settle =
        |until: Instant| tokio::time::sleep_until(until.min(Instant::now() + SETTLE).into());
    let Ok(infos) = run.target.info_all(topic) else {
        settle(until).await;
        return;
    };
    let want = shared.ready.load(Ordering::SeqCst);
    let requests: Vec<String> = infos
        .iter()
        .map(|info| {
            format!(
                "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\n\r\n",
                info.path, info.host
            )
        })
        .collect();
    let mut conns: Vec<Option<Connection>> = infos.iter().map(|_| None).collect();
    let mut unanswered = 0;
    while Instant::now() < until {
        let mut subscribers = Some(0);
        for ((info, request), conn) in infos.iter().zip(&requests).zip(&mut conns) {
            if conn.is_none() {
                *conn = Connection::open(info.addr, None).await.ok();
            }
            let count = match conn.as_mut() {
                Some(c) => match c.send(request.as_bytes()).await {
                    Ok(()) => c
                        .read_response()
                        .await
                        .ok()
                        .and_then(|r| self::subscribers(&r.body)),
                    Err(_) => None,
                },
                None => None,
            };
            if count.is_none() {
                // Reconnect next time: the answer may have left the
                // connection mid-body.
                *conn = None;
            }
            subscribers = subscribers.zip(count).map(|(sum, n)| sum + n);
        }
        match subscribers {
            Some(n) if n as usize >= want => return,
            Some(_) => unanswered = 0,
            None => {
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
