//! `publish`: C keep-alive connections POST JSON messages as fast as they
//! are answered (one in flight per connection), round-robin over T topics.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::histogram::Histogram;
use super::http::Connection;
use super::{round, Latency, LoadError, Run, Stamp};

/// Pause before reconnecting after a failed connect, so a dead server does
/// not turn the loop into a busy spin.
const RECONNECT_PAUSE: Duration = Duration::from_millis(10);

/// The `publish` scenario's parameters.
#[derive(Clone, Debug)]
pub struct PublishOptions {
    /// Keep-alive connections.
    pub conns: usize,
    /// Topics, `PREFIX-0` … `PREFIX-(T-1)`.
    pub topics: usize,
    /// How long to publish.
    pub duration: Duration,
    /// Body size in bytes (at least the bare stamp).
    pub size: usize,
}

/// What `publish` measured.
#[derive(Clone, Debug)]
pub struct PublishReport {
    /// The parameters.
    pub options: PublishOptions,
    /// Answers with a 2xx status (slosh answers 200; Nchan 201/202).
    pub ok: u64,
    /// Answers with any other status, plus requests lost to a broken
    /// connection.
    pub errors: u64,
    /// From the first request to the last answer.
    pub elapsed: Duration,
    /// Request → whole answer, for every answer.
    pub latency: Latency,
    /// Server CPU over the run, when its pid was given.
    pub server_cpu_s: Option<f64>,
    /// The user-space part of [`server_cpu_s`](Self::server_cpu_s).
    pub server_user_cpu_s: Option<f64>,
    /// The run hit [`Run::timeout`].
    pub timed_out: bool,
}

impl PublishReport {
    /// Successful requests per second.
    pub fn requests_per_s(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Server CPU per successful request, in microseconds.
    pub fn server_cpu_per_request_us(&self) -> Option<f64> {
        self.server_cpu_s
            .map(|cpu| cpu * 1e6 / (self.ok.max(1)) as f64)
    }

    /// Server user-space CPU per request, in microseconds.
    pub fn server_user_cpu_per_request_us(&self) -> Option<f64> {
        self.server_user_cpu_s
            .map(|cpu| cpu * 1e6 / self.ok.max(1) as f64)
    }

    /// The one-line machine-readable result.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "scenario": "publish",
            "conns": self.options.conns,
            "topics": self.options.topics,
            "secs": self.options.duration.as_secs_f64(),
            "size": self.options.size,
            "requests": self.ok,
            "errors": self.errors,
            "elapsed_s": round(self.elapsed.as_secs_f64(), 3),
            "requests_per_s": round(self.requests_per_s(), 1),
            "latency_us": self.latency.json(),
            "server_cpu_s": self.server_cpu_s.map(|c| round(c, 2)),
            "server_user_cpu_s": self.server_user_cpu_s.map(|c| round(c, 2)),
            "server_user_cpu_per_request_us": self.server_user_cpu_per_request_us().map(|c| round(c, 3)),
            "server_cpu_per_request_us": self.server_cpu_per_request_us().map(|c| round(c, 2)),
            "timed_out": self.timed_out,
        })
    }
}

impl fmt::Display for PublishReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "publish: {} conns × {} topics for {:.1} s, {} B bodies",
            self.options.conns,
            self.options.topics,
            self.elapsed.as_secs_f64(),
            self.options.size
        )?;
        writeln!(
            f,
            "  {:.0} requests/s ({} ok, {} errors)",
            self.requests_per_s(),
            self.ok,
            self.errors
        )?;
        write!(
            f,
            "  latency p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
            self.latency.p50_us, self.latency.p99_us, self.latency.max_us
        )?;
        if let Some(cpu) = self.server_cpu_per_request_us() {
            write!(f, "\n  server CPU {cpu:.2} µs per request")?;
            if let Some(user) = self.server_user_cpu_per_request_us() {
                write!(f, " ({user:.2} µs in user space)")?;
            }
        }
        if self.timed_out {
            write!(f, "\n  TIMED OUT: partial figures")?;
        }
        Ok(())
    }
}

/// What one connection counted; lives outside its loop so a timeout keeps
/// it.
#[derive(Default)]
struct Counts {
    latency: Histogram,
    ok: u64,
    errors: u64,
    last_answer: Option<Instant>,
}

/// Runs `publish`.
pub async fn publish(run: &Run, options: PublishOptions) -> Result<PublishReport, LoadError> {
    let topics = options.topics.max(1);
    // Per node, its address and one request head per topic: connection i
    // stays on node i mod N (keep-alive), so publishes spread evenly over
    // the nodes of a cluster and every topic is published through each.
    let mut heads = vec![Vec::with_capacity(topics); run.target.nodes()];
    let mut addrs = Vec::new();
    for i in 0..topics {
        let endpoints = run
            .target
            .publish_all(&format!("{}-{i}", run.topic_prefix))?;
        addrs = endpoints.iter().map(|e| e.addr).collect();
        for (node, endpoint) in endpoints.iter().enumerate() {
            heads[node].push(format!(
                "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: ",
                endpoint.path, endpoint.host
            ));
        }
    }
    let nodes: Vec<_> = addrs
        .into_iter()
        .zip(heads.into_iter().map(Arc::new))
        .collect();
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let stop = start + options.duration.min(run.timeout);
    let hard_stop = start + run.timeout;
    let cpu_before = run.cpu();

    let mut tasks = Vec::with_capacity(options.conns);
    for i in 0..options.conns {
        let (addr, heads) = nodes[i % nodes.len()].clone();
        let next = next.clone();
        let source = run.source(i, options.conns);
        let size = options.size;
        tasks.push(tokio::spawn(async move {
            let mut counts = Counts::default();
            let body = async {
                let mut conn: Option<Connection> = None;
                let mut request = Vec::with_capacity(256 + size);
                while Instant::now() < stop {
                    let c = match conn.as_mut() {
                        Some(c) => c,
                        None => match Connection::open(addr, source).await {
                            Ok(c) => conn.insert(c),
                            Err(_) => {
                                counts.errors += 1;
                                tokio::time::sleep(RECONNECT_PAUSE).await;
                                continue;
                            }
                        },
                    };
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let head = &heads[(k % heads.len() as u64) as usize];
                    let sent = Instant::now();
                    let t = sent.duration_since(start).as_nanos() as u64;
                    let message = Stamp { t, seq: k }.body(size);
                    request.clear();
                    request.extend_from_slice(head.as_bytes());
                    request.extend_from_slice(message.len().to_string().as_bytes());
                    request.extend_from_slice(b"\r\n\r\n");
                    request.extend_from_slice(message.as_bytes());
                    let answer = match c.send(&request).await {
                        Ok(()) => c.read_response().await,
                        Err(e) => Err(e),
                    };
                    match answer {
                        Ok(response) => {
                            let now = Instant::now();
                            counts
                                .latency
                                .record(now.duration_since(sent).as_nanos() as u64);
                            counts.last_answer = Some(now);
                            if (200..300).contains(&response.head.status) {
                                counts.ok += 1;
                            } else {
                                counts.errors += 1;
                            }
                            if response.head.close {
                                conn = None;
                            }
                        }
                        Err(_) => {
                            counts.errors += 1;
                            conn = None;
                        }
                    }
                }
            };
            let timed_out = tokio::time::timeout_at(hard_stop.into(), body)
                .await
                .is_err();
            (counts, timed_out)
        }));
    }

    let mut latency = Histogram::new();
    let (mut ok, mut errors, mut timed_out) = (0, 0, false);
    let mut last = start;
    for task in tasks {
        let Ok((counts, late)) = task.await else {
            errors += 1;
            continue;
        };
        latency.merge(&counts.latency);
        ok += counts.ok;
        errors += counts.errors;
        timed_out |= late;
        if let Some(at) = counts.last_answer {
            last = last.max(at);
        }
    }
    let (server_cpu_s, server_user_cpu_s) = super::cpu_used(cpu_before, run.cpu());
    Ok(PublishReport {
        options,
        ok,
        errors,
        elapsed: last.duration_since(start),
        latency: Latency::of(&latency),
        server_cpu_s,
        server_user_cpu_s,
        timed_out,
    })
}
