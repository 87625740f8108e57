//! `slosh-load`: an HTTP load generator for slosh (and, through URL
//! templates and a cursor style, for Nchan).
//!
//! # Layout
//!
//! - [`target`]: URL templates, the cursor style, and the rule that only
//!   127.0.0.0/8 is ever a target.
//! - [`http`]: a minimal HTTP/1.1 client over one tokio socket, reading
//!   answers with `slosh-client`'s head parser and body decoder (as it
//!   reads SSE with `slosh-client`'s event parser and long-poll batches with
//!   its batch parser), bounded buffers.
//! - [`histogram`]: fixed-size latency histogram.
//! - [`server`]: CPU and RSS of the server process from `/proc`.
//! - [`publish`]: the `publish` scenario.
//! - [`fanout`]: `longpoll`, `sse-fanout` and `connect`: many subscribers,
//!   one publisher, every delivery checked against the seq and send time
//!   embedded in the message.
//!
//! Every scenario is bounded in time by [`Run::timeout`] (and its own
//! duration or message count): when it passes, the scenario stops and
//! reports what it has, with `timed_out: true`.

pub mod fanout;
pub mod histogram;
pub mod http;
pub mod publish;
pub mod server;
pub mod target;

use std::net::Ipv4Addr;
use std::time::Duration;

pub use fanout::{
    connect, longpoll, sse_fanout, ConnectOptions, ConnectReport, FanoutOptions, FanoutReport,
};
pub use publish::{publish, PublishOptions, PublishReport};
pub use server::ServerProcess;
pub use target::{CursorStyle, Endpoint, Target};

/// Connections per loopback source address before the next one is used:
/// each source address has its own ~28 000 ephemeral ports.
pub const CONNECTIONS_PER_SOURCE: usize = 10_000;

/// The largest SSE event a load client reads: load messages are tiny, so
/// anything near this is a server gone wrong.
pub const MAX_EVENT: usize = 1024 * 1024;

/// What can go wrong driving load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A URL template that does not render to `http://host:port/…`.
    #[error("bad URL {0}")]
    Url(String),
    /// Scenario parameters out of range.
    #[error("{0}")]
    Options(String),
    /// A target outside 127.0.0.0/8.
    #[error("{0}: only 127.0.0.0/8 (or localhost) targets are allowed")]
    NotLoopback(String),
    /// A socket error.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The server closed the connection.
    #[error("connection closed by the server")]
    Closed,
    /// The server answered something this client cannot read.
    #[error("protocol: {0}")]
    Protocol(String),
    /// An unexpected status.
    #[error("status {0}")]
    Status(u16),
}

impl From<slosh_client::http::HttpError> for LoadError {
    fn from(error: slosh_client::http::HttpError) -> LoadError {
        LoadError::Protocol(error.to_string())
    }
}

impl From<slosh_client::sse::TooLarge> for LoadError {
    fn from(error: slosh_client::sse::TooLarge) -> LoadError {
        LoadError::Protocol(format!("SSE: {error}"))
    }
}

/// Settings shared by every scenario.
#[derive(Clone, Debug)]
pub struct Run {
    /// The server and its URLs.
    pub target: Target,
    /// The server's processes, to read their CPU and RSS: one for a single
    /// server, every node (and the store they share, e.g. redis-server)
    /// for a cluster, whose figures are the sums over all of them. Empty
    /// skips those figures.
    pub servers: Vec<ServerProcess>,
    /// Hard bound on the whole scenario.
    pub timeout: Duration,
    /// Topic names are this prefix (plus `-N` for several topics): a fresh
    /// prefix per run keeps old buffered messages out of the counts.
    pub topic_prefix: String,
    /// Loopback source addresses to spread connections over (127.0.0.1 …
    /// 127.0.0.N); 0 means one per [`CONNECTIONS_PER_SOURCE`] connections,
    /// and no explicit bind at all up to that many.
    pub source_addrs: usize,
}

impl Run {
    /// A run against `target` with a 60 s timeout, a topic prefix unique to
    /// this process and moment, no server pid.
    pub fn new(target: Target) -> Run {
        Run {
            target,
            servers: Vec::new(),
            timeout: Duration::from_secs(60),
            topic_prefix: fresh_prefix(),
            source_addrs: 0,
        }
    }

    /// The source address for connection `i` of `total`.
    pub fn source(&self, i: usize, total: usize) -> Option<Ipv4Addr> {
        let n = match self.source_addrs {
            0 if total <= CONNECTIONS_PER_SOURCE => return None,
            0 => total.div_ceil(CONNECTIONS_PER_SOURCE),
            n => n,
        };
        // 127.0.0.1 … 127.0.0.254 (the last octet never 0 or 255).
        let octet = 1 + (i % n.min(254)) as u8;
        Some(Ipv4Addr::new(127, 0, 0, octet))
    }

    /// The servers' (user, system) CPU seconds so far, summed over
    /// [`servers`](Self::servers); `None` when there are none or one cannot
    /// be read (a sum missing a node would understate the cost).
    fn cpu(&self) -> Option<(f64, f64)> {
        sum_all(
            &self.servers,
            |s| s.cpu_times().ok(),
            |(u0, s0), (u1, s1)| (u0 + u1, s0 + s1),
        )
    }

    /// The servers' resident memory, summed as [`cpu`](Self::cpu) is.
    pub(crate) fn rss(&self) -> Option<u64> {
        sum_all(&self.servers, |s| s.rss_bytes().ok(), |a, b| a + b)
    }
}

/// `read` of every server combined with `add`; `None` when there is no
/// server or any reading fails.
fn sum_all<T>(
    servers: &[ServerProcess],
    read: impl Fn(&ServerProcess) -> Option<T>,
    add: impl Fn(T, T) -> T,
) -> Option<T> {
    servers
        .iter()
        .map(read)
        .try_fold(None, |sum: Option<T>, x| {
            let x = x?;
            Some(Some(match sum {
                Some(sum) => add(sum, x),
                None => x,
            }))
        })
        .flatten()
}

/// `load<pid>x<seconds since the epoch mod 10^6>`: a valid topic name
/// (letters, digits, `-`) unlikely to be in use on the server.
pub fn fresh_prefix() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("load{}x{}", std::process::id(), secs % 1_000_000)
}

/// What every load message carries: its send time and its seq.
#[derive(Clone, Copy, Debug, serde::Deserialize, PartialEq, Eq)]
pub struct Stamp {
    /// Nanoseconds from the scenario's start `Instant` to the send.
    pub t: u64,
    /// 0, 1, 2 … per scenario.
    pub seq: u64,
}

impl Stamp {
    /// `{"t":T,"seq":S}`, padded with a `"pad"` string up to `size` bytes
    /// when that is larger.
    pub fn body(&self, size: usize) -> String {
        let mut body = format!(r#"{{"t":{},"seq":{}"#, self.t, self.seq);
        let pad_overhead = r#","pad":""}"#.len();
        if size > body.len() + pad_overhead {
            let pad = size - body.len() - pad_overhead;
            body.push_str(r#","pad":""#);
            body.extend(std::iter::repeat_n('x', pad));
            body.push('"');
        }
        body.push('}');
        body
    }
}

/// Latency quantiles in microseconds, for reports.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Largest.
    pub max_us: f64,
}

impl Latency {
    fn of(histogram: &histogram::Histogram) -> Latency {
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            p50_us: us(histogram.quantile(0.5)),
            p99_us: us(histogram.quantile(0.99)),
            max_us: us(histogram.max()),
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "p50": round(self.p50_us, 1),
            "p99": round(self.p99_us, 1),
            "max": round(self.max_us, 1),
        })
    }
}

/// CPU used between two readings of [`Run::cpu`]: (total, user).
fn cpu_used(before: Option<(f64, f64)>, after: Option<(f64, f64)>) -> (Option<f64>, Option<f64>) {
    match before.zip(after) {
        Some(((user0, system0), (user1, system1))) => {
            (Some(user1 + system1 - user0 - system0), Some(user1 - user0))
        }
        None => (None, None),
    }
}

/// Rounds for printing: JSON lines stay short and readable.
fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_pad_to_the_requested_size_and_parse_back() {
        let stamp = Stamp { t: 123, seq: 7 };
        assert_eq!(stamp.body(0), r#"{"t":123,"seq":7}"#);
        let padded = stamp.body(100);
        assert_eq!(padded.len(), 100);
        assert_eq!(serde_json::from_str::<Stamp>(&padded).unwrap(), stamp);
    }

    #[test]
    fn connections_spread_over_sources_only_past_ten_thousand() {
        let run = Run::new(Target::slosh("http://127.0.0.1:1").unwrap());
        assert_eq!(run.source(5, 10_000), None);
        assert_eq!(run.source(0, 20_001), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(run.source(2, 20_001), Some(Ipv4Addr::new(127, 0, 0, 3)));
        assert_eq!(run.source(3, 20_001), Some(Ipv4Addr::new(127, 0, 0, 1)));
    }

    #[test]
    fn server_figures_sum_over_every_pid_or_are_none() {
        let me = ServerProcess {
            pid: std::process::id(),
        };
        let mut run = Run::new(Target::slosh("http://127.0.0.1:1").unwrap());
        assert_eq!(run.cpu(), None);
        assert_eq!(run.rss(), None);
        run.servers = vec![me, me];
        let rss = run.rss().unwrap();
        let one = me.rss_bytes().unwrap();
        // Twice this process, give or take what it allocated in between.
        assert!(rss >= one && rss <= 3 * one, "{rss} vs {one}");
        assert!(run.cpu().is_some());
        // A pid that does not exist spoils the sum rather than shrinking it.
        run.servers.push(ServerProcess { pid: u32::MAX });
        assert_eq!(run.cpu(), None);
        assert_eq!(run.rss(), None);
    }
}
