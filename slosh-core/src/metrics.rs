//! The counters behind `/metrics`, kept as relaxed atomics: they are
//! statistics, never used to decide anything, so no ordering is needed.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use crate::error::Error;

/// The kinds of subscriber, as `/metrics` labels them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriberKind {
    /// A parked long-poll.
    LongPoll,
    /// A Server-Sent Events stream.
    Sse,
    /// A WebSocket.
    WebSocket,
}

impl SubscriberKind {
    const ALL: [SubscriberKind; 3] = [
        SubscriberKind::Sse,
        SubscriberKind::WebSocket,
        SubscriberKind::LongPoll,
    ];

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            SubscriberKind::LongPoll => "longpoll",
            SubscriberKind::Sse => "sse",
            SubscriberKind::WebSocket => "websocket",
        }
    }

    /// This kind's slot of a per-kind array, picked by pattern so that no
    /// index can be out of range.
    fn of<T>(self, slots: &[T; 3]) -> &T {
        let [sse, websocket, longpoll] = slots;
        match self {
            SubscriberKind::Sse => sse,
            SubscriberKind::WebSocket => websocket,
            SubscriberKind::LongPoll => longpoll,
        }
    }
}

/// The hub's counters.
#[derive(Default)]
pub struct Metrics {
    published: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    /// Messages dropped for their age (`max_age`).
    expired: AtomicU64,
    /// Streaming subscribers cut off for not keeping up, by kind.
    disconnected_slow: [AtomicU64; 3],
    rejected: [AtomicU64; Error::REASONS.len()],
    subscribers: [AtomicUsize; 3],
}

impl Metrics {
    pub(crate) fn published(&self) {
        self.published.fetch_add(1, Relaxed);
    }

    pub(crate) fn delivered(&self, count: u64) {
        if count > 0 {
            self.delivered.fetch_add(count, Relaxed);
        }
    }

    pub(crate) fn dropped(&self) {
        self.dropped.fetch_add(1, Relaxed);
    }

    pub(crate) fn expired(&self, count: usize) {
        if count > 0 {
            self.expired.fetch_add(count as u64, Relaxed);
        }
    }

    /// Counts a streaming subscriber of `kind` cut off for not keeping up.
    pub(crate) fn disconnected_slow(&self, kind: SubscriberKind) {
        kind.of(&self.disconnected_slow).fetch_add(1, Relaxed);
    }

    /// Subscribers of `kind` disconnected because their unsent data passed
    /// `max_unsent`.
    pub fn dropped_slow_total(&self, kind: SubscriberKind) -> u64 {
        kind.of(&self.disconnected_slow).load(Relaxed)
    }

    pub(crate) fn rejected(&self, error: &Error) {
        let reason = error.reason();
        if let Some(i) = Error::REASONS.iter().position(|r| *r == reason) {
            if let Some(counter) = self.rejected.get(i) {
                counter.fetch_add(1, Relaxed);
            }
        }
    }

    pub(crate) fn subscribers(&self, kind: SubscriberKind) -> &AtomicUsize {
        kind.of(&self.subscribers)
    }

    /// Messages accepted and stored.
    pub fn published_total(&self) -> u64 {
        self.published.load(Relaxed)
    }

    /// Messages handed to subscribers (one per subscriber per message).
    pub fn delivered_total(&self) -> u64 {
        self.delivered.load(Relaxed)
    }

    /// Messages the embedder's filter dropped.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Messages dropped for their age (`max_age`).
    pub fn expired_total(&self) -> u64 {
        self.expired.load(Relaxed)
    }

    /// Requests refused for `reason` (one of [`Error::REASONS`]).
    pub fn rejected_total(&self, reason: &str) -> u64 {
        Error::REASONS
            .iter()
            .position(|r| *r == reason)
            .and_then(|i| self.rejected.get(i))
            .map_or(0, |c| c.load(Relaxed))
    }

    /// Subscribers of `kind` connected now.
    pub fn subscribers_now(&self, kind: SubscriberKind) -> usize {
        self.subscribers(kind).load(Relaxed)
    }

    /// The counters in Prometheus text format, with the gauge of topics
    /// given by the caller (the hub knows it, the counters do not).
    pub fn to_prometheus(&self, topics: usize) -> String {
        let mut out = String::with_capacity(1024);
        let _ = writeln!(out, "# HELP slosh_topics Topics that exist now.\n# TYPE slosh_topics gauge\nslosh_topics {topics}");
        out.push_str("# HELP slosh_subscribers Subscribers connected now, by kind.\n# TYPE slosh_subscribers gauge\n");
        for kind in SubscriberKind::ALL {
            let _ = writeln!(
                out,
                "slosh_subscribers{{kind=\"{}\"}} {}",
                kind.label(),
                self.subscribers_now(kind)
            );
        }
        let counters = [
            (
                "slosh_messages_published_total",
                "Messages accepted and stored.",
                self.published_total(),
            ),
            (
                "slosh_messages_delivered_total",
                "Messages handed to subscribers, one per subscriber.",
                self.delivered_total(),
            ),
            (
                "slosh_messages_dropped_total",
                "Messages dropped by the filter.",
                self.dropped_total(),
            ),
            (
                "slosh_messages_expired_total",
                "Messages dropped for their age (max-age).",
                self.expired_total(),
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        out.push_str("# HELP slosh_subscribers_dropped_total Streaming subscribers disconnected, by kind and reason.\n# TYPE slosh_subscribers_dropped_total counter\n");
        for kind in [SubscriberKind::Sse, SubscriberKind::WebSocket] {
            let _ = writeln!(
                out,
                "slosh_subscribers_dropped_total{{kind=\"{}\",reason=\"slow\"}} {}",
                kind.label(),
                self.dropped_slow_total(kind)
            );
        }
        out.push_str("# HELP slosh_requests_rejected_total Requests refused, by reason.\n# TYPE slosh_requests_rejected_total counter\n");
        for reason in Error::REASONS {
            let _ = writeln!(
                out,
                "slosh_requests_rejected_total{{reason=\"{reason}\"}} {}",
                self.rejected_total(reason)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_names_every_counter() {
        let metrics = Metrics::default();
        metrics.published();
        metrics.expired(2);
        metrics.rejected(&Error::TooLarge { limit: 1 });
        metrics.disconnected_slow(SubscriberKind::WebSocket);
        metrics
            .subscribers(SubscriberKind::Sse)
            .fetch_add(2, Relaxed);
        let text = metrics.to_prometheus(3);
        for line in [
            "slosh_topics 3",
            "slosh_subscribers{kind=\"sse\"} 2",
            "slosh_subscribers{kind=\"longpoll\"} 0",
            "slosh_messages_published_total 1",
            "slosh_messages_expired_total 2",
            "slosh_requests_rejected_total{reason=\"too_large\"} 1",
            "slosh_subscribers_dropped_total{kind=\"websocket\",reason=\"slow\"} 1",
            "slosh_subscribers_dropped_total{kind=\"sse\",reason=\"slow\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }
}
