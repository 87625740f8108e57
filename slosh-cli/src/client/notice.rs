//! What `watch` and `reflect` tell a person on stderr, and how long they
//! wait before trying again.

use std::time::Duration;

/// Connection state changes and losses, one line each on stderr, unless
/// `--quiet`. Fatal errors are not notices: they are always printed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Notices {
    /// `--quiet`.
    pub(crate) quiet: bool,
}

impl Notices {
    /// Prints `text` as one line on stderr.
    pub(crate) fn say(&self, text: impl std::fmt::Display) {
        if !self.quiet {
            eprintln!("slosh-cli: {text}");
        }
    }
}

/// The first wait after a failure.
const FIRST: Duration = Duration::from_millis(100);

/// The longest wait: a server back after a restart is found within this.
const CAP: Duration = Duration::from_secs(4);

/// Exponential backoff with jitter, so clients dropped together by a
/// restarting server do not all come back in the same instant.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff { next: FIRST }
    }
}

impl Backoff {
    /// The wait before the next attempt (0.75–1.25 × the nominal one,
    /// which doubles each time up to the cap).
    pub(crate) fn next_wait(&mut self) -> Duration {
        let nominal = self.next;
        self.next = (self.next * 2).min(CAP);
        nominal.mul_f64(0.75 + 0.5 * unit_random())
    }

    /// Starts over after a success.
    pub(crate) fn reset(&mut self) {
        self.next = FIRST;
    }
}

/// A number in [0, 1), different each call: std's per-map random keys are
/// enough for jitter, without a dependency.
fn unit_random() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|since| since.subsec_nanos() as u64)
            .unwrap_or(0),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// `0.4s`, `2.1s`: a wait as a person reads it.
pub(crate) fn seconds(wait: Duration) -> String {
    format!("{:.1}s", wait.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_few_seconds_and_starts_over_after_a_success() {
        let mut backoff = Backoff::default();
        let waits: Vec<Duration> = (0..10).map(|_| backoff.next_wait()).collect();
        assert!(waits[0] >= Duration::from_millis(75) && waits[0] <= Duration::from_millis(125));
        assert!(waits[3] >= Duration::from_millis(600) && waits[3] <= Duration::from_millis(1000));
        for wait in &waits {
            assert!(*wait <= CAP.mul_f64(1.25));
        }
        assert!(waits[9] >= CAP.mul_f64(0.75));
        backoff.reset();
        assert!(backoff.next_wait() <= Duration::from_millis(125));
    }
}
