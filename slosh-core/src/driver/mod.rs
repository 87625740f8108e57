//! The waits every frontend runs, written once: a parked long-poll's race
//! between its topic and its deadline ([`park`]), an SSE stream pulled a
//! piece at a time with its heartbeats ([`Pull`]), the slow-reader watch a
//! blocked writer keeps ([`StallWatch`]), a WebSocket's whole loop
//! ([`websocket::run`]: queue bound, ping/pong, fragments, close echo and
//! grace) and the sweeper's schedule ([`sweep`]).
//!
//! None of them needs a runtime. Time comes in through [`Timer`], which an
//! adapter implements over its own sleep (tokio's, actix's, or a
//! connection's shared clock), with its blocking pool for a store's
//! writes; the futures here are plain `std` futures
//! that the adapter's tasks poll. An adapter then only converts types:
//! core's [`Response`] into its framework's answer, [`Pull`]'s pieces into
//! its body frames.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use event_listener::EventListener;

use crate::dispatch::Open;
use crate::feed::{EndReason, Stall};
use crate::http::{LongPoll, Response};
use crate::hub::Hub;
use crate::stream::StreamStep;
use crate::wake::Wake;

/// What a driver needs of the adapter's runtime: to sleep until an
/// instant, and to run a store's blocking write off its threads.
///
/// A `Sleep` may be polled again after it completed (tokio's may): a
/// driver polls it together with a listener and resets it before it waits
/// again, but does not remember which of the two woke it.
pub trait Timer {
    /// The future that completes at the instant (or later).
    type Sleep: Future<Output = ()>;

    /// A sleep until `at`.
    fn sleep_until(&self, at: Instant) -> Self::Sleep;

    /// Moves `sleep` to `at`. The default builds a new one in its place; a
    /// timer whose sleeps can be moved (tokio's `reset`) says so here and
    /// spares the reallocation per wait.
    fn reset(&self, mut sleep: Pin<&mut Self::Sleep>, at: Instant) {
        sleep.set(self.sleep_until(at));
    }

    /// Runs `work`, which may block (a store's fsync, a round trip to
    /// Redis), where blocking holds up nobody else: the runtime's blocking
    /// pool. `None` when it could not run (the runtime is shutting down).
    /// The default runs it in place, which only a driver that never meets
    /// a store may do: the WebSocket driver publishes through it, so the
    /// adapters that run WebSockets give theirs.
    fn blocking<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> impl Future<Output = Option<R>> {
        std::future::ready(Some(work()))
    }
}

/// Opens the topic a subscription needs first ([`Outcome::Open`]): the
/// first subscription to ask runs the opening on the runtime's blocking
/// pool; the others, arriving meanwhile, wait for it without a thread.
/// `false` when it could not run (the runtime is shutting down). Then
/// handle the request again with [`Request::opened`] set.
///
/// [`Outcome::Open`]: crate::Outcome::Open
/// [`Request::opened`]: crate::Request::opened
pub async fn open<T: Timer>(open: Open, timer: &T) -> bool {
    match open.wait().await {
        Ok(()) => true,
        Err(open) => timer.blocking(move || open.run()).await.is_some(),
    }
}

/// Waits for a parked long-poll's answer: a publish on its topic wakes it,
/// its deadline ends it. The deadline's sleep is made once for the whole
/// wait, however often the topic wakes the poll without news for it.
///
/// Dropping the future (the client went away) drops the [`LongPoll`],
/// which forgets the subscriber at once.
pub async fn park<T: Timer>(mut poll: LongPoll, timer: T) -> Response {
    let mut sleep = pin!(poll.deadline().map(|at| timer.sleep_until(at)));
    loop {
        let mut listener = match poll.poll(Instant::now()) {
            Wake::Ready(response) => return response,
            Wake::Wait(listener) => listener,
        };
        poll_fn(|cx| {
            if Pin::new(&mut listener).poll(cx).is_ready() {
                return Poll::Ready(());
            }
            match sleep.as_mut().as_pin_mut() {
                Some(sleep) => sleep.poll(cx),
                None => Poll::Pending,
            }
        })
        .await;
    }
}

pub mod websocket;

/// Runs [`Hub::sweep`] whenever the hub asks, for ever: idle topics and
/// expired sessions go away. An adapter spawns it once per hub.
pub async fn sweep<T: Timer>(hub: Hub, timer: T) {
    loop {
        let next = hub.sweep(Instant::now());
        timer.sleep_until(next).await;
    }
}

/// Resolves when core says a subscriber whose writes are blocked is over
/// (too far behind for `max_unsent`, its topic gone, shutdown), re-checked
/// on every publish to its topic.
///
/// This is the one slow-reader rule: a frontend whose writes block stops
/// polling the stream's body, so something else must watch. Each adapter
/// polls a `StallWatch` wherever it learns that a write blocked (slosh-hyper
/// in its socket wrapper, slosh-actix in a task beside the body, both
/// WebSocket loops through [`websocket::run`]) and closes the connection
/// when it resolves. Poll it only while a write is blocked, and not again
/// once it resolved: the check itself drops a slow subscriber.
#[derive(Debug)]
pub struct StallWatch {
    stall: Stall,
    listener: Option<EventListener>,
}

impl StallWatch {
    /// A watch of `stall`, registered on its topic at its first poll.
    pub fn new(stall: Stall) -> StallWatch {
        StallWatch {
            stall,
            listener: None,
        }
    }

    /// Forgets the topic's listener: the write went through, so publishes
    /// need not wake this watch until a write blocks again.
    pub fn relax(&mut self) {
        self.listener = None;
    }
}

impl Future for StallWatch {
    type Output = EndReason;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<EndReason> {
        let this = self.get_mut();
        loop {
            if let Some(listener) = &mut this.listener {
                if Pin::new(listener).poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.listener = None;
            }
            match this.stall.check() {
                Wake::Ready(reason) => return Poll::Ready(reason),
                Wake::Wait(listener) => this.listener = Some(listener),
            }
        }
    }
}

/// An event stream pulled a piece at a time: the adapter's body asks for
/// the next piece when its socket can take more, so a slow reader never
/// makes the server buffer.
///
/// The rest of core's last [`StreamStep::Send`] is handed out one piece per
/// call: each is a message's shared encoding, so nothing is copied. Between
/// messages it waits on the topic's listener and the next heartbeat, with
/// one sleep for the stream's whole life that is moved, not rebuilt.
pub struct Pull<T: Timer> {
    timer: T,
    pending: VecDeque<Bytes>,
    listener: Option<EventListener>,
    sleep: Pin<Box<T::Sleep>>,
}

impl<T: Timer> Pull<T> {
    /// A pull with nothing pending, sleeping on `timer`.
    pub fn new(timer: T) -> Pull<T> {
        let sleep = Box::pin(timer.sleep_until(Instant::now()));
        Pull {
            timer,
            pending: VecDeque::new(),
            listener: None,
            sleep,
        }
    }

    /// The next piece to write, `Pending` while there is none yet, or
    /// `None` when the stream is over. `step` is the stream's
    /// [`EventStream::poll`](crate::EventStream::poll) at the instant it is
    /// given, or `None` when the stream was taken away meanwhile (a stall
    /// watch ended it).
    pub fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        mut step: impl FnMut(Instant) -> Option<StreamStep>,
    ) -> Poll<Option<Bytes>> {
        loop {
            if let Some(bytes) = self.pending.pop_front() {
                return Poll::Ready(Some(bytes));
            }
            if let Some(listener) = &mut self.listener {
                let woken = Pin::new(listener).poll(cx).is_ready();
                let timed_out = self.sleep.as_mut().poll(cx).is_ready();
                if !woken && !timed_out {
                    return Poll::Pending;
                }
                self.listener = None;
            }
            match step(Instant::now()) {
                Some(StreamStep::Send(chunks)) => self.pending.extend(chunks.0),
                Some(StreamStep::Wait(listener, at)) => {
                    self.listener = Some(listener);
                    self.timer.reset(self.sleep.as_mut(), at);
                }
                Some(StreamStep::End(_)) | None => return Poll::Ready(None),
            }
        }
    }
}

impl<T: Timer> std::fmt::Debug for Pull<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pull")
            .field("pending", &self.pending.len())
            .field("waiting", &self.listener.is_some())
            .finish()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Wake as TaskWake, Waker};
    use std::time::Duration;

    use crate::http::{Outcome, Request};
    use crate::settings::Settings;

    /// A timer whose sleeps complete once the wall clock passes them, and
    /// which counts how many it made: enough to drive the futures here by
    /// hand without a runtime.
    #[derive(Clone, Default)]
    pub(super) struct WallTimer(pub(super) Arc<AtomicUsize>);

    pub(super) struct WallSleep(Instant);

    impl Future for WallSleep {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            if Instant::now() >= self.0 {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    impl Timer for WallTimer {
        type Sleep = WallSleep;
        fn sleep_until(&self, at: Instant) -> WallSleep {
            self.0.fetch_add(1, Ordering::Relaxed);
            WallSleep(at)
        }
    }

    /// Counts wakes, so a test sees that a listener woke the future.
    #[derive(Default)]
    pub(super) struct Count(pub(super) AtomicUsize);

    impl TaskWake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn poll_once<F: Future>(future: Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
        future.poll(&mut Context::from_waker(waker))
    }

    fn hub(poll_timeout: Duration) -> Hub {
        Hub::builder()
            .epochs(|| crate::Epoch::from_bits(0))
            .settings(Settings {
                poll_timeout: Some(poll_timeout),
                ..Settings::default()
            })
            .build()
    }

    fn parked(hub: &Hub, target: &str) -> LongPoll {
        match hub.handle(Request::new("GET", target), Instant::now()) {
            Outcome::Park(poll) => poll,
            _ => panic!("{target} is parked"),
        }
    }

    #[test]
    fn a_parked_poll_is_woken_by_a_publish_and_answers_it() {
        let hub = hub(Duration::from_secs(30));
        let timer = WallTimer::default();
        let mut waiting = pin!(park(parked(&hub, "/topics/t.json?n=0"), timer.clone()));
        let count = Arc::new(Count::default());
        let waker = Waker::from(Arc::clone(&count));
        assert!(poll_once(waiting.as_mut(), &waker).is_pending());
        assert!(poll_once(waiting.as_mut(), &waker).is_pending());

        hub.publish("t", &serde_json::json!(1)).unwrap();
        assert!(count.0.load(Ordering::Relaxed) > 0, "the publish woke it");
        let Poll::Ready(response) = poll_once(waiting.as_mut(), &waker) else {
            panic!("a woken poll answers");
        };
        assert_eq!(
            &response.body[..],
            br#"{"max":1,"epoch":"aaaaaaaa","saw":1,"delivering":1,"res":[1]}"#
        );
        assert_eq!(timer.0.load(Ordering::Relaxed), 1, "one sleep per wait");
    }

    #[test]
    fn a_parked_poll_answers_empty_at_its_deadline() {
        let hub = hub(Duration::from_millis(30));
        let mut waiting = pin!(park(
            parked(&hub, "/topics/t.json?n=0"),
            WallTimer::default()
        ));
        let waker = Waker::from(Arc::new(Count::default()));
        assert!(poll_once(waiting.as_mut(), &waker).is_pending());
        std::thread::sleep(Duration::from_millis(40));
        let Poll::Ready(response) = poll_once(waiting.as_mut(), &waker) else {
            panic!("the deadline passed");
        };
        assert_eq!(
            &response.body[..],
            br#"{"max":0,"epoch":"aaaaaaaa","saw":0,"delivering":0,"res":[]}"#
        );
    }

    #[test]
    fn a_dropped_park_forgets_its_subscriber() {
        let hub = hub(Duration::from_secs(30));
        let waiting = park(parked(&hub, "/topics/t.json?n=0"), WallTimer::default());
        assert_eq!(hub.info("t").unwrap()["subscribers"], 1);
        drop(waiting);
        assert_eq!(hub.info("t").unwrap()["subscribers"], 0);
    }

    #[test]
    fn a_pull_hands_out_each_piece_then_waits_then_ends() {
        let hub = hub(Duration::from_secs(30));
        hub.publish("s", &serde_json::json!("a")).unwrap();
        let mut stream = match hub.handle(Request::new("GET", "/topics/s.sse?n=0"), Instant::now())
        {
            Outcome::Stream(stream) => stream,
            _ => panic!("an event stream"),
        };
        let timer = WallTimer::default();
        let mut pull = Pull::new(timer.clone());
        let waker = Waker::from(Arc::new(Count::default()));
        let mut cx = Context::from_waker(&waker);
        let mut seen = Vec::new();
        while let Poll::Ready(Some(piece)) = pull.poll_next(&mut cx, |now| Some(stream.poll(now))) {
            seen.extend_from_slice(&piece);
        }
        let seen = String::from_utf8(seen).unwrap();
        assert!(seen.contains("retry: 3000"), "{seen}");
        assert!(seen.contains("id: 1@aaaaaaaa\ndata: \"a\"\n\n"), "{seen}");

        hub.publish("s", &serde_json::json!("b")).unwrap();
        let Poll::Ready(Some(piece)) = pull.poll_next(&mut cx, |now| Some(stream.poll(now))) else {
            panic!("the publish is the next piece");
        };
        assert!(String::from_utf8_lossy(&piece).contains("\"b\""));
        assert!(pull
            .poll_next(&mut cx, |now| Some(stream.poll(now)))
            .is_pending());
        // A stall watch took the stream away; the next wake ends the pull.
        hub.publish("s", &serde_json::json!("c")).unwrap();
        assert_eq!(pull.poll_next(&mut cx, |_| None), Poll::Ready(None));
        // This timer has no reset of its own, so the default one builds a
        // sleep per wait: the first, then one for each of the two waits.
        assert_eq!(timer.0.load(Ordering::Relaxed), 3);
    }
}
