//! [`Wake`], what every wait in core returns: a result now, or the
//! listener to await. Its own module, below everything that waits (the
//! long-poll in `http`, the stall watch in `feed`, the drivers), so none of
//! them depends on another for it.

use event_listener::EventListener;

/// Either a result now, or a listener to await before asking again.
#[derive(Debug)]
pub enum Wake<T> {
    /// Done.
    Ready(T),
    /// Await this (together with the deadline the caller knows), then poll
    /// again.
    Wait(EventListener),
}

impl<T> Wake<T> {
    /// Whether the caller must wait.
    pub fn is_wait(&self) -> bool {
        matches!(self, Wake::Wait(_))
    }

    /// The result, if ready.
    pub fn into_response(self) -> Option<T> {
        match self {
            Wake::Ready(value) => Some(value),
            Wake::Wait(_) => None,
        }
    }
}
