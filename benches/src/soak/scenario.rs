//! The soak's plan and orchestration: what runs for how long, and the end
//! checks that turn the clients' counts and the server's `/metrics` into a
//! [`SoakReport`].

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::clients::{churner, get, publisher, stayer, Kind, Order};
use super::report::{SoakReport, StayerReport};
use crate::load::target::Endpoint;
use crate::load::{LoadError, Run};

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

/// A small xorshift generator: reproducible churn without a dependency.
#[derive(Debug)]
pub(super) struct Rng(pub(super) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What every task shares.
pub(super) struct Shared {
    pub(super) base: String,
    pub(super) stable: String,
    pub(super) churn_topics: Vec<String>,
    /// The next seq to publish.
    pub(super) next_seq: AtomicU64,
    pub(super) churned: [AtomicU64; 3],
    pub(super) churn_errors: AtomicU64,
    pub(super) churn_out_of_order: AtomicU64,
    pub(super) first_churn_error: Mutex<Option<String>>,
    /// Seqs the server did not acknowledge.
    pub(super) unacked: Mutex<BTreeSet<u64>>,
    /// The newest acknowledged seq.
    pub(super) last_acked: Mutex<Option<u64>>,
    pub(super) published: AtomicU64,
}

impl Shared {
    pub(super) fn endpoint(&self, path: &str) -> Result<Endpoint, LoadError> {
        Endpoint::parse(&format!("{}{path}", self.base))
    }

    pub(super) fn churn_error(&self, error: String) {
        self.churn_errors.fetch_add(1, Ordering::Relaxed);
        lock(&self.first_churn_error).get_or_insert(error);
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
    report.rss_warm = run.rss();
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
    report.rss_end = run.rss();
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
