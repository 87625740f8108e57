//! What a fan-out or `connect` run measured: the report structs, the
//! summary they print on stderr and the one JSON line on stdout that
//! `benches/compare.sh` and `slosh-compare` read (field names and rounding
//! are that interface).

use std::fmt;
use std::time::Duration;

use super::scenario::{ConnectOptions, FanoutOptions};
use crate::load::{round, Latency};

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
    /// The run hit [`Run::timeout`](crate::load::Run::timeout).
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
    /// The run hit [`Run::timeout`](crate::load::Run::timeout).
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
