//! What the Redis store's tests share: waiting for a long-poll's answer,
//! and for a condition that holds a moment later on another server.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use serde_json::Value;
use slosh_core::{Hub, Listener, Outcome, Request, Wake};

/// The long-poll answer for `target`, waiting at most `within` for it.
pub fn poll(hub: &Hub, target: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    // On this thread, which may block: the topic is opened in place.
    let mut request = Request::new("GET", target);
    request.opened = true;
    match hub.handle(request, Instant::now()) {
        Outcome::Respond(response) => serde_json::from_slice(&response.body).unwrap(),
        Outcome::Park(mut poll) => loop {
            match poll.poll(Instant::now()) {
                Wake::Ready(response) => return serde_json::from_slice(&response.body).unwrap(),
                Wake::Wait(listener) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    assert!(
                        listener.wait_timeout(left).is_some() || Instant::now() < deadline,
                        "no answer on {target} within {within:?}"
                    );
                }
            }
        },
        other => panic!("{other:?}"),
    }
}

/// Waits up to 10 s for `check` to hold.
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
