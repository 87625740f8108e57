//! One timer per connection for the two waits that would otherwise cost a
//! timer per request: the head timeout, and a parked long-poll's deadline.
//!
//! hyper's own `header_read_timeout` registers a fresh timer for every
//! request head and a parked long-poll another for its deadline: two
//! insertions into tokio's timer wheel, two removals and an allocation per
//! long-poll delivery (docs/DECISIONS.md). A [`Clock`] instead records what the connection
//! is waiting for with one atomic store; [`serve_connection`] owns the
//! connection's one `Sleep` and looks at the clock each time it polls
//! hyper. The sleep is moved earlier only when a wait needs it earlier,
//! and otherwise is left to fire and then re-armed from the clock: about
//! one timer operation per head timeout per connection, however many
//! requests pass.
//!
//! [`serve_connection`]: crate::serve_with

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one connection is waiting for, shared by its service (which says)
/// and its connection task (which times it).
#[derive(Clone, Debug)]
pub(crate) struct Clock(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// Times are kept as nanoseconds after this (the accept), so a state
    /// is one `u64`.
    base: Instant,
    /// A tag in the low two bits, nanoseconds after `base` above them.
    state: AtomicU64,
    /// Nanoseconds after `base` of the last time a write to the client
    /// went through after blocking, above [`WRITING`]: set while one is
    /// blocked.
    wrote: AtomicU64,
}

const BUSY: u64 = 0;
const IDLE: u64 = 1;
const PARKED: u64 = 2;
const TAG: u64 = 0b11;
const WRITING: u64 = 1;

/// What a connection is waiting for at an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Waiting {
    /// The next request's head, since this instant (the answer, or the
    /// last progress writing it): the head timeout runs.
    Head(Instant),
    /// A parked long-poll's answer, due at this instant at the latest.
    Answer(Instant),
    /// Nothing timed: a request is being read or answered.
    Nothing,
}

impl Clock {
    /// A connection accepted now, waiting for its first head.
    pub(crate) fn new() -> Clock {
        Clock(Arc::new(Inner {
            base: Instant::now(),
            state: AtomicU64::new(IDLE),
            wrote: AtomicU64::new(0),
        }))
    }

    fn nanos(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.0.base).as_nanos();
        // 2^62 ns is 146 years after the accept.
        u64::try_from(nanos).unwrap_or(u64::MAX) & !TAG
    }

    fn store(&self, tag: u64, at: Instant) {
        self.0.state.store(self.nanos(at) | tag, Ordering::Relaxed);
    }

    /// A write to the client blocked (`true`): the answer is still going
    /// out, and nothing is timed until it goes through again (`false`),
    /// from when the head timeout counts if that is later than the answer.
    /// A blocked write says nothing of the reader's progress (the socket
    /// turns writable again only once much of its buffer has drained), so
    /// a reader that stops reading keeps its connection, as it would with
    /// hyper's own head timeout.
    pub(crate) fn writing(&self, blocked: bool) {
        let at = self.nanos(Instant::now());
        let state = if blocked { at | WRITING } else { at };
        self.0.wrote.store(state, Ordering::Relaxed);
    }

    /// A request head came in; nothing is timed until it is answered.
    pub(crate) fn busy(&self) {
        self.0.state.store(BUSY, Ordering::Relaxed);
    }

    /// The request is answered: the head timeout runs from now.
    pub(crate) fn idle(&self) {
        self.store(IDLE, Instant::now());
    }

    /// A long-poll waits until `deadline` at the latest; the connection's
    /// timer wakes it then.
    pub(crate) fn parked_until(&self, deadline: Instant) {
        self.store(PARKED, deadline);
    }

    /// What the connection waits for now.
    pub(crate) fn waiting(&self) -> Waiting {
        let state = self.0.state.load(Ordering::Relaxed);
        let at = self.0.base + Duration::from_nanos(state & !TAG);
        match state & TAG {
            IDLE => {
                let wrote = self.0.wrote.load(Ordering::Relaxed);
                if wrote & WRITING != 0 {
                    return Waiting::Nothing;
                }
                Waiting::Head(at.max(self.0.base + Duration::from_nanos(wrote)))
            }
            PARKED => Waiting::Answer(at),
            _ => Waiting::Nothing,
        }
    }

    /// When the connection's timer must fire next for what it waits for,
    /// given the head timeout; `None` when nothing is timed.
    pub(crate) fn wake_at(&self, header_timeout: Duration) -> Option<Instant> {
        match self.waiting() {
            Waiting::Head(since) => Some(since + header_timeout),
            Waiting::Answer(deadline) => Some(deadline),
            Waiting::Nothing => None,
        }
    }

    /// Whether the head timeout has passed at `now`.
    pub(crate) fn head_timed_out(&self, now: Instant, header_timeout: Duration) -> bool {
        matches!(self.waiting(), Waiting::Head(since) if now >= since + header_timeout)
    }
}

/// A parked long-poll's deadline kept by the connection's one timer: the
/// sleep only records the deadline, and the connection task polls the
/// request again when its timer fires.
impl slosh_core::Timer for Clock {
    type Sleep = Due;

    fn sleep_until(&self, at: Instant) -> Due {
        self.parked_until(at);
        Due(at)
    }
}

/// Completes once its instant has passed, when polled: something else (the
/// connection's timer) must poll it then.
#[derive(Debug)]
pub(crate) struct Due(Instant);

impl std::future::Future for Due {
    type Output = ();

    fn poll(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if Instant::now() >= self.0 {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    }
}

/// Tells a connection's clock, if the service has one, that its request
/// is answered: the head timeout runs from now.
pub(crate) fn answered(clock: Option<&Clock>) {
    if let Some(clock) = clock {
        clock.idle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_with_their_instants() {
        let clock = Clock::new();
        let timeout = Duration::from_secs(10);
        let Waiting::Head(accepted) = clock.waiting() else {
            panic!("a new connection waits for a head");
        };
        assert!(!clock.head_timed_out(accepted, timeout));
        assert!(clock.head_timed_out(accepted + timeout, timeout));
        assert_eq!(clock.wake_at(timeout), Some(accepted + timeout));

        clock.busy();
        assert_eq!(clock.waiting(), Waiting::Nothing);
        assert_eq!(clock.wake_at(timeout), None);
        assert!(!clock.head_timed_out(accepted + timeout * 100, timeout));

        let deadline = Instant::now() + Duration::from_millis(1500);
        clock.parked_until(deadline);
        let Some(due) = clock.wake_at(timeout) else {
            panic!("a parked poll is timed");
        };
        // Kept to the nanosecond, give or take the two tag bits.
        assert!(due <= deadline && deadline - due < Duration::from_nanos(4));
        assert!(!clock.head_timed_out(deadline + timeout, timeout));

        clock.idle();
        let Waiting::Head(since) = clock.waiting() else {
            panic!("an answered connection waits for a head");
        };
        assert!(since >= accepted);
        clock.writing(true);
        assert_eq!(
            clock.waiting(),
            Waiting::Nothing,
            "an answer still going out"
        );
        std::thread::sleep(Duration::from_millis(2));
        clock.writing(false);
        let Waiting::Head(later) = clock.waiting() else {
            panic!("waiting for a head once the answer is out");
        };
        assert!(
            later >= since + Duration::from_millis(2),
            "from the last write"
        );
    }
}
