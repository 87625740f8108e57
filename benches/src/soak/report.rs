//! What a soak found: the report structs, the checks that make its
//! verdict, the summary `slosh-soak` prints and its JSON.

use std::fmt;
use std::time::Duration;

use super::clients::Kind;

/// How far the server's RSS may end above its level after the warm-up.
pub const RSS_TOLERANCE: f64 = 0.10;

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
