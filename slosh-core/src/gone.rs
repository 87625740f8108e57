//! Topics that were deleted or expired a short while ago, so a browser's
//! `EventSource` stops reconnecting to them.
//!
//! An `EventSource` whose stream ends reconnects after `retry:` ms, sending
//! the id it last saw as `Last-Event-ID`. By the WHATWG rules it gives up
//! only when an answer is not a `200 text/event-stream`; a `204` is the
//! polite way to say "stop". Without a memory of removed topics the
//! reconnect would simply create the topic again (normal mode, or mailbox
//! mode where a GET creates) and the page would wait forever on a topic
//! nobody publishes to any more.
//!
//! So a removed topic is remembered for [`REMEMBERED_FOR`]. A stream request
//! that carries `Last-Event-ID` (a reconnect) for a remembered topic gets
//! `204`. A fresh subscription (no `Last-Event-ID`) or a publish creates the
//! topic as usual and forgets the removal. After a server restart nothing
//! is remembered, so pages resume on the new server as they should.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::name::TopicName;

/// How long a removed topic is remembered: well past an `EventSource`'s
/// 3 s retry, and long enough for a laptop waking from a short sleep.
pub(crate) const REMEMBERED_FOR: Duration = Duration::from_secs(300);

/// Removed topics remembered at most. Past it a new removal is not
/// remembered (its reconnects recreate the topic, as without this module),
/// so deleting topics in a loop costs bounded memory.
pub(crate) const MAX_REMEMBERED: usize = 10_000;

/// The removed topics, each with the sweep that first saw it.
#[derive(Debug, Default)]
pub(crate) struct Gone {
    /// `None` until the next sweep stamps it: removal happens where no
    /// clock is at hand (`Hub::delete`), and the sweep is at most a second
    /// away.
    names: Mutex<HashMap<TopicName, Option<Instant>>>,
}

impl Gone {
    /// Remembers that `name` was removed.
    pub(crate) fn remember(&self, name: TopicName) {
        let mut names = self.lock();
        if names.len() < MAX_REMEMBERED || names.contains_key(&name) {
            names.insert(name, None);
        }
    }

    /// Forgets `name` (it exists again).
    pub(crate) fn forget(&self, name: &str) {
        let mut names = self.lock();
        if !names.is_empty() {
            names.remove(name);
        }
    }

    /// Whether `name` was removed within [`REMEMBERED_FOR`].
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.lock().contains_key(name)
    }

    /// Stamps new removals with `now` and drops the ones remembered long
    /// enough.
    pub(crate) fn sweep(&self, now: Instant) {
        self.lock().retain(|_, removed| {
            let at = *removed.get_or_insert(now);
            now.saturating_duration_since(at) < REMEMBERED_FOR
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TopicName, Option<Instant>>> {
        // Every change is one insert, remove or retain: a panic elsewhere
        // cannot leave the map half-changed.
        self.names.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> TopicName {
        TopicName::parse(text).unwrap()
    }

    #[test]
    fn a_removed_topic_is_remembered_until_its_time_is_up() {
        let gone = Gone::default();
        let start = Instant::now();
        gone.remember(name("chat"));
        assert!(gone.contains("chat"));
        gone.sweep(start);
        gone.sweep(start + REMEMBERED_FOR - Duration::from_secs(1));
        assert!(gone.contains("chat"));
        gone.sweep(start + REMEMBERED_FOR);
        assert!(!gone.contains("chat"));
    }

    #[test]
    fn a_topic_that_exists_again_is_forgotten() {
        let gone = Gone::default();
        gone.remember(name("chat"));
        gone.forget("chat");
        assert!(!gone.contains("chat"));
    }

    #[test]
    fn memory_is_bounded_however_many_topics_are_removed() {
        let gone = Gone::default();
        for i in 0..MAX_REMEMBERED + 10 {
            gone.remember(name(&format!("t{i}")));
        }
        assert_eq!(gone.lock().len(), MAX_REMEMBERED);
        assert!(!gone.contains(&format!("t{}", MAX_REMEMBERED + 5)));
        // Removing a remembered one again still counts.
        gone.remember(name("t0"));
        assert!(gone.contains("t0"));
    }
}
