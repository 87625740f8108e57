//! The hub's settings with the spec's defaults, and the parsers for the
//! duration and size notation every frontend accepts (`30s`, `64KiB`).

use std::path::PathBuf;
use std::time::Duration;

/// When topics are created and removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// GET or POST creates a topic; it is removed after `topic_idle` with no
    /// subscriber, no live session and no publish.
    #[default]
    Normal,
    /// A topic exists only while somebody watches it: GET creates it, a POST
    /// to a missing topic is 404, and it is removed `linger` after its last
    /// subscriber left.
    Mailbox,
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(text: &str) -> Result<Mode, String> {
        match text {
            "normal" => Ok(Mode::Normal),
            "mailbox" => Ok(Mode::Mailbox),
            _ => Err(format!("unknown mode {text:?}: expected normal or mailbox")),
        }
    }
}

/// Everything the hub decides with. Frontend-only settings (bind address,
/// connection limits, header timeout) live with the frontend.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Topic lifetime rules.
    pub mode: Mode,
    /// Messages kept per topic (at least 1).
    pub queue: usize,
    /// Messages older than this are dropped from every topic (at the next
    /// sweep, so up to [`SWEEP_INTERVAL`](crate::hub::SWEEP_INTERVAL)
    /// late); `None` keeps them until the queue pushes them out.
    pub max_age: Option<Duration>,
    /// How long a long-poll stays parked before an empty answer; `None`
    /// parks until a message comes (the `0` of the command line).
    pub poll_timeout: Option<Duration>,
    /// How long a session lives without a request.
    pub session_timeout: Duration,
    /// How long a mailbox topic outlives its last subscriber.
    pub linger: Duration,
    /// How long a normal topic with nobody around lives after its last
    /// publish.
    pub topic_idle: Duration,
    /// The largest message body accepted, in bytes (inclusive).
    pub max_message: usize,
    /// Topics at most; creating one more is `503`.
    pub max_topics: usize,
    /// Interval of the `: ping` comment on idle SSE streams.
    pub heartbeat: Duration,
    /// Subscribers at most on one topic.
    pub max_subscribers: usize,
    /// Subscribers at most over all topics.
    pub max_subscribers_total: usize,
    /// Unsent bytes at most per streaming subscriber before it is dropped.
    pub max_unsent: usize,
    /// When set, POST and DELETE need `Authorization: Bearer <token>`.
    pub publish_token: Option<String>,
    /// Whether paths outside `/topics` answer with the built-in demo pages
    /// or 404 (an embedder's own routes) when there is no `root`. A `root`
    /// always wins: with one, the demo is never served.
    pub builtin_demo: bool,
    /// The folder whose files are served at `/` (`--root`); see
    /// [`files`](crate::files) for which paths resolve. Canonicalized once
    /// when the hub is built (or at the first request, if it is missing
    /// then).
    pub root: Option<PathBuf>,
    /// Origins allowed to call cross-origin (`*` for any); empty sends no
    /// CORS header at all. A listed origin may send cookies (the token
    /// cookie, sessions); `*` may not.
    pub cors_origins: Vec<String>,
    /// Topics at most on one stream of several
    /// (`/subscribe.sse?topic=a&topic=b`).
    pub max_topics_per_subscriber: usize,
    /// Topics whose subscribers need a token allowing them
    /// ([`auth`](crate::auth)); empty: every topic is open to read.
    pub private: Vec<crate::auth::Pattern>,
    /// The cookie a token is read from, when no header or query carries
    /// one ([`auth::DEFAULT_COOKIE`](crate::auth::DEFAULT_COOKIE) when
    /// `None`).
    pub token_cookie: Option<String>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            mode: Mode::Normal,
            queue: 100,
            max_age: None,
            poll_timeout: Some(Duration::from_secs(30)),
            session_timeout: Duration::from_secs(30),
            linger: Duration::from_secs(30),
            topic_idle: Duration::from_secs(300),
            max_message: 64 * 1024,
            max_topics: 100_000,
            heartbeat: Duration::from_secs(15),
            max_subscribers: 10_000,
            max_subscribers_total: 100_000,
            max_unsent: 1024 * 1024,
            publish_token: None,
            builtin_demo: true,
            root: None,
            cors_origins: Vec::new(),
            private: Vec::new(),
            token_cookie: None,
            max_topics_per_subscriber: 64,
        }
    }
}

/// Splits `30s` into `("30", "s")`: the leading digits and the rest.
fn split_unit(text: &str) -> (&str, &str) {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text.split_at(split)
}

/// Parses `30`, `30s`, `500ms`, `2m`, `1h`: plain numbers are seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = split_unit(text);
    let bad =
        || format!("invalid duration {text:?}: use seconds (30) or a unit (500ms, 30s, 2m, 1h)");
    let number: u64 = number.parse().map_err(|_| bad())?;
    let millis = match unit.trim() {
        "" | "s" => number.checked_mul(1000),
        "ms" => Some(number),
        "m" => number.checked_mul(60_000),
        "h" => number.checked_mul(3_600_000),
        _ => None,
    }
    .ok_or_else(bad)?;
    Ok(Duration::from_millis(millis))
}

/// Parses `65536`, `64KiB`, `1MiB`, `64KB`, `1M`: plain numbers are bytes.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let (number, unit) = split_unit(text);
    let bad = || format!("invalid size {text:?}: use bytes (65536) or a unit (64KiB, 1MiB)");
    let number: usize = number.parse().map_err(|_| bad())?;
    let factor: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    number.checked_mul(factor).ok_or_else(bad)
}

/// How a frontend's own server loop runs (`serve_with` of slosh-hyper,
/// and of slosh-actix with its worker count beside it): the limits that are
/// the server's rather than the hub's, with one set of defaults for both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// How long a client may take to send its request head; a slower one is
    /// disconnected (slowloris).
    pub header_timeout: Duration,
    /// Open connections at most. Past it slosh-hyper closes new
    /// connections at once, so the ones being served keep their share;
    /// actix stops accepting, so they wait in the listen backlog.
    pub max_connections: usize,
    /// How long shutdown waits for open connections before giving up.
    pub grace: Duration,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            header_timeout: Duration::from_secs(10),
            max_connections: 16_384,
            grace: Duration::from_secs(4),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_seconds_or_units() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "s", "-1", "1.5s", "3d", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sizes_read_bytes_or_units() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        for bad in ["", "KiB", "1.5MiB", "-1", "12XB"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn defaults_are_the_specs() {
        let s = Settings::default();
        assert_eq!(
            (s.queue, s.max_message, s.max_topics),
            (100, 65536, 100_000)
        );
        assert_eq!(s.poll_timeout, Some(Duration::from_secs(30)));
        assert_eq!(s.heartbeat, Duration::from_secs(15));
        assert_eq!(s.mode, Mode::Normal);
    }
}
