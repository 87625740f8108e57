//! The loop's rules driven by hand over an in-memory framing: what the
//! real libraries do on the wire is the conformance suite's to show.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Waker;

use super::*;
use crate::driver::tests::{poll_once, Count, WallTimer};
use crate::http::{Outcome, Request};
use crate::hub::Hub;
use crate::settings::Settings;

/// Both ends of the fake connection.
#[derive(Default)]
struct Wire {
    incoming: VecDeque<Received>,
    sent: Vec<Outgoing>,
    /// The sink takes nothing and flushes nothing (a client not reading).
    blocked: bool,
}

/// A framing over a [`Wire`]; `ANSWERS` is [`Framing::ANSWERS_CONTROL`].
struct Fake<const ANSWERS: bool>(Rc<RefCell<Wire>>);

impl<const ANSWERS: bool> Framing for Fake<ANSWERS> {
    const ANSWERS_CONTROL: bool = ANSWERS;

    fn poll_receive(&mut self, _: &mut Context<'_>) -> Poll<Received> {
        match self.0.borrow_mut().incoming.pop_front() {
            Some(received) => Poll::Ready(received),
            None => Poll::Pending,
        }
    }

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Closed>> {
        if self.0.borrow().blocked {
            Poll::Pending
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn start_send(&mut self, frame: Outgoing) -> Result<(), Closed> {
        self.0.borrow_mut().sent.push(frame);
        Ok(())
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Closed>> {
        self.poll_ready(cx)
    }
}

fn socket(hub: &Hub) -> Socket {
    let request = Request::new("GET", "/topics/t")
        .with_header("Upgrade", "websocket")
        .with_header("Connection", "Upgrade")
        .with_header("Sec-WebSocket-Version", "13")
        .with_header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    match hub.handle(request, Instant::now()) {
        Outcome::Socket(socket) => socket,
        other => panic!("an upgrade: {other:?}"),
    }
}

/// A socket's loop on a fresh wire, and a way to poll it.
struct Harness<F: Future> {
    wire: Rc<RefCell<Wire>>,
    running: Pin<Box<F>>,
    waker: Waker,
}

fn start<const ANSWERS: bool>(hub: &Hub) -> Harness<impl Future<Output = ()>> {
    let wire = Rc::new(RefCell::new(Wire::default()));
    let running = Box::pin(run(
        socket(hub),
        Fake::<ANSWERS>(Rc::clone(&wire)),
        WallTimer::default(),
    ));
    Harness {
        wire,
        running,
        waker: Waker::from(Arc::new(Count::default())),
    }
}

impl<F: Future<Output = ()>> Harness<F> {
    /// Polls until the loop settles; whether it ended.
    fn settle(&mut self) -> bool {
        for _ in 0..8 {
            if poll_once(self.running.as_mut(), &self.waker).is_ready() {
                return true;
            }
        }
        false
    }

    fn receive(&mut self, received: Received) {
        self.wire.borrow_mut().incoming.push_back(received);
    }

    fn sent(&self) -> Vec<Outgoing> {
        self.wire.borrow().sent.clone()
    }
}

fn text(s: &str) -> Outgoing {
    Outgoing::Text(Bytes::copy_from_slice(s.as_bytes()))
}

fn piece(first: Option<bool>, bytes: &'static str, last: bool) -> Received {
    Received::Fragment(Fragment {
        first,
        bytes: Bytes::from_static(bytes.as_bytes()),
        last,
    })
}

#[test]
fn a_ping_gets_a_pong_with_its_payload_unless_the_library_answers() {
    let hub = Hub::builder().epochs(|| crate::Epoch::from_bits(0)).build();
    let mut ours = start::<false>(&hub);
    assert!(!ours.settle());
    ours.receive(Received::Ping(Bytes::from_static(b"hi")));
    assert!(!ours.settle());
    assert_eq!(ours.sent(), [Outgoing::Pong(Bytes::from_static(b"hi"))]);

    let mut theirs = start::<true>(&hub);
    theirs.receive(Received::Ping(Bytes::from_static(b"hi")));
    assert!(!theirs.settle());
    assert_eq!(theirs.sent(), []);
}

#[test]
fn a_fragmented_text_message_is_published_once_whole() {
    let hub = Hub::builder().epochs(|| crate::Epoch::from_bits(0)).build();
    let mut h = start::<false>(&hub);
    h.receive(piece(Some(true), "[1,", false));
    h.receive(piece(None, "2,", false));
    h.receive(piece(None, "3]", true));
    assert!(!h.settle());
    assert_eq!(
        h.sent(),
        [text(r#"{"id":1,"epoch":"aaaaaaaa","data":[1,2,3]}"#)]
    );
    assert_eq!(hub.info("t").unwrap()["max"], 1);
}

#[test]
fn a_whole_text_message_publishes_and_bad_json_gets_an_error_frame() {
    let hub = Hub::builder().epochs(|| crate::Epoch::from_bits(0)).build();
    let mut h = start::<false>(&hub);
    h.receive(Received::Text(Bytes::from_static(b"{\"a\":1}")));
    h.receive(Received::Text(Bytes::from_static(b"{nope")));
    h.receive(Received::Binary);
    assert!(!h.settle());
    let sent = h.sent();
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert!(
        sent.contains(&text(r#"{"id":1,"epoch":"aaaaaaaa","data":{"a":1}}"#)),
        "{sent:?}"
    );
    let errors = sent
        .iter()
        .filter(|frame| matches!(frame, Outgoing::Text(b) if b.starts_with(b"{\"error\"")))
        .count();
    assert_eq!(errors, 2, "{sent:?}");
}

#[test]
fn a_fragmented_message_past_the_read_limit_closes_1009() {
    let hub = Hub::builder()
        .epochs(|| crate::Epoch::from_bits(0))
        .settings(Settings {
            max_message: 10,
            ..Settings::default()
        })
        .build();
    let mut h = start::<false>(&hub);
    let big: &'static str = Box::leak("x".repeat(3000).into_boxed_str());
    h.receive(piece(Some(true), big, false));
    h.receive(piece(None, big, false));
    assert!(h.settle(), "the socket ended");
    assert_eq!(
        h.sent(),
        [Outgoing::Close(Some((1009, "message too large")))]
    );
    assert_eq!(hub.info("t").map(|i| i["max"].clone()), Some(0.into()));
}

#[test]
fn text_that_is_not_utf8_ends_the_socket_without_publishing() {
    let hub = Hub::builder().epochs(|| crate::Epoch::from_bits(0)).build();
    let mut h = start::<false>(&hub);
    h.receive(Received::Fragment(Fragment {
        first: Some(true),
        bytes: Bytes::from_static(b"\"\xff\""),
        last: true,
    }));
    assert!(h.settle());
    assert_eq!(h.sent(), []);
}

#[test]
fn a_clients_close_is_echoed_with_its_code() {
    let hub = Hub::builder().epochs(|| crate::Epoch::from_bits(0)).build();
    for (code, echo) in [
        (Some(1000), Some((1000, ""))),
        (Some(4001), Some((4001, ""))),
        (Some(1005), Some((1002, ""))),
        (None, None),
    ] {
        let mut h = start::<false>(&hub);
        h.receive(Received::Close(code));
        assert!(h.settle());
        assert_eq!(h.sent(), [Outgoing::Close(echo)], "{code:?}");
    }
    // A library that echoes itself is only flushed.
    let mut h = start::<true>(&hub);
    h.receive(Received::Close(Some(1000)));
    assert!(h.settle());
    assert_eq!(h.sent(), []);
}

#[test]
fn no_frame_is_read_while_the_reply_queue_is_full() {
    let hub = Hub::builder().epochs(|| crate::Epoch::from_bits(0)).build();
    let mut h = start::<false>(&hub);
    h.wire.borrow_mut().blocked = true;
    for _ in 0..MAX_QUEUED + 8 {
        h.receive(Received::Binary);
    }
    assert!(!h.settle());
    assert_eq!(h.wire.borrow().incoming.len(), 8, "reading stopped");
    h.wire.borrow_mut().blocked = false;
    assert!(!h.settle());
    assert_eq!(h.wire.borrow().incoming.len(), 0, "reading resumed");
    assert_eq!(h.sent().len(), MAX_QUEUED + 8);
}

#[test]
fn a_reader_past_max_unsent_is_closed_1013() {
    let hub = Hub::builder()
        .epochs(|| crate::Epoch::from_bits(0))
        .settings(Settings {
            max_unsent: 64,
            ..Settings::default()
        })
        .build();
    let mut h = start::<false>(&hub);
    assert!(!h.settle());
    h.wire.borrow_mut().blocked = true;
    hub.publish("t", &serde_json::json!("first")).unwrap();
    assert!(!h.settle(), "one message is within the bound");
    for _ in 0..4 {
        hub.publish("t", &serde_json::json!("x".repeat(40)))
            .unwrap();
    }
    assert!(!h.settle(), "the close frame waits for the sink");
    h.wire.borrow_mut().blocked = false;
    assert!(h.settle());
    let sent = h.sent();
    assert_eq!(
        sent.last(),
        Some(&Outgoing::Close(Some(
            crate::EndReason::TooSlow.close_frame()
        ))),
        "{sent:?}"
    );
}

#[test]
fn a_deleted_topic_closes_going_away() {
    let hub = Hub::builder().epochs(|| crate::Epoch::from_bits(0)).build();
    let mut h = start::<false>(&hub);
    assert!(!h.settle());
    hub.publish("t", &serde_json::json!(1)).unwrap();
    assert!(!h.settle());
    assert!(hub.delete("t"));
    assert!(h.settle());
    assert_eq!(
        h.sent(),
        [
            text(r#"{"id":1,"epoch":"aaaaaaaa","data":1}"#),
            Outgoing::Close(Some((1001, "topic deleted")))
        ]
    );
}
