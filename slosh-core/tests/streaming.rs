//! Streaming subscribers (SSE and WebSocket) with injected time: the unsent
//! bound, the stall watch, and every rule of a WebSocket, with no socket.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use slosh_core::{
    metrics::SubscriberKind, EndReason, Epoch, EventStream, Hub, Listener, Outcome, Request,
    Settings, Socket, SocketStep, StreamStep, Wake,
};

const KIB: usize = 1024;

fn hub_with(settings: Settings) -> Hub {
    Hub::builder()
        .epochs(|| Epoch::from_bits(0))
        .settings(settings)
        .build()
}

fn small_bound() -> Settings {
    Settings {
        max_unsent: 64 * KIB,
        queue: 10_000,
        ..Settings::default()
    }
}

/// A message of about `bytes` bytes of JSON.
fn blob(bytes: usize) -> Value {
    json!("x".repeat(bytes - 2))
}

fn stream(hub: &Hub, target: &str, now: Instant) -> EventStream {
    match hub.handle(Request::new("GET", target), now) {
        Outcome::Stream(stream) => stream,
        other => panic!("expected a stream, got {other:?}"),
    }
}

/// A request with the headers of RFC 6455's opening handshake.
fn handshake(request: Request<'_>) -> Request<'_> {
    request
        .with_header("Upgrade", "websocket")
        .with_header("Connection", "keep-alive, Upgrade")
        .with_header("Sec-WebSocket-Version", "13")
        .with_header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
}

fn socket(hub: &Hub, request: Request<'_>, now: Instant) -> Socket {
    match hub.handle(handshake(request), now) {
        Outcome::Socket(socket) => socket,
        other => panic!("expected a socket, got {other:?}"),
    }
}

fn frames(step: SocketStep) -> Vec<Value> {
    match step {
        SocketStep::Send(chunks) => chunks
            .iter()
            .map(|frame| serde_json::from_slice(frame).unwrap())
            .collect(),
        other => panic!("expected frames, got {other:?}"),
    }
}

fn text(step: StreamStep) -> String {
    match step {
        StreamStep::Send(chunks) => String::from_utf8(chunks.to_vec()).unwrap(),
        other => panic!("expected data, got {other:?}"),
    }
}

#[test]
fn an_sse_subscriber_that_never_polls_while_2_mib_is_published_is_dropped_at_its_next_poll() {
    let hub = hub_with(Settings {
        queue: 100,
        ..Settings::default()
    });
    let now = Instant::now();
    let mut slow = stream(&hub, "/topics/t.sse", now);
    let mut fast = stream(&hub, "/topics/t.sse", now);
    text(slow.poll(now));
    text(fast.poll(now));
    for _ in 0..64 {
        hub.publish("t", &blob(32 * KIB)).unwrap();
        // The fast one keeps up: it is handed each message as it comes.
        assert!(text(fast.poll(now)).contains("data: \"xxx"));
    }
    assert!(matches!(
        slow.poll(now),
        StreamStep::End(EndReason::TooSlow)
    ));
    assert!(matches!(
        slow.poll(now),
        StreamStep::End(EndReason::TooSlow)
    ));
    assert!(matches!(fast.poll(now), StreamStep::Wait(..)));
    assert_eq!(hub.metrics().dropped_slow_total(SubscriberKind::Sse), 1);
}

#[test]
fn a_subscriber_within_the_bound_gets_everything_in_one_step() {
    let hub = hub_with(small_bound());
    let now = Instant::now();
    let mut stream = stream(&hub, "/topics/t.sse", now);
    text(stream.poll(now));
    for _ in 0..15 {
        hub.publish("t", &blob(4 * KIB)).unwrap();
    }
    let sent = text(stream.poll(now));
    assert_eq!(sent.matches("\nid: ").count() + 1, 15);
    assert_eq!(hub.metrics().dropped_slow_total(SubscriberKind::Sse), 0);
}

#[test]
fn the_replay_a_resuming_client_asks_for_is_not_held_against_it() {
    let hub = hub_with(small_bound());
    let now = Instant::now();
    for _ in 0..40 {
        hub.publish("t", &blob(4 * KIB)).unwrap();
    }
    let mut stream = stream(&hub, "/topics/t.sse?n=0", now);
    assert_eq!(text(stream.poll(now)).matches("id: ").count(), 40);
}

#[test]
fn the_stall_watch_drops_a_subscriber_whose_socket_stopped_taking_data() {
    let hub = hub_with(small_bound());
    let now = Instant::now();
    let mut stream = stream(&hub, "/topics/t.sse", now);
    text(stream.poll(now));
    let stall = stream.stall();
    let Wake::Wait(listener) = stall.check() else {
        panic!("nothing owed yet")
    };
    hub.publish("t", &blob(60 * KIB)).unwrap();
    assert!(
        listener.wait_timeout(Duration::ZERO).is_some(),
        "a publish wakes the watch"
    );
    assert!(stall.check().is_wait(), "60 KiB is within 64 KiB");
    hub.publish("t", &blob(8 * KIB)).unwrap();
    assert!(matches!(stall.check(), Wake::Ready(EndReason::TooSlow)));
    // The stream agrees, and the drop is counted once.
    assert!(matches!(
        stream.poll(now),
        StreamStep::End(EndReason::TooSlow)
    ));
    assert!(matches!(stall.check(), Wake::Ready(EndReason::TooSlow)));
    assert_eq!(hub.metrics().dropped_slow_total(SubscriberKind::Sse), 1);
}

#[test]
fn the_stall_watch_also_ends_on_delete_and_shutdown() {
    let hub = Hub::builder().epochs(|| Epoch::from_bits(0)).build();
    let now = Instant::now();
    let stall = stream(&hub, "/topics/t.sse", now).stall();
    assert!(stall.check().is_wait());
    hub.delete("t");
    assert!(matches!(stall.check(), Wake::Ready(EndReason::TopicGone)));
    let stall = stream(&hub, "/topics/u.sse", now).stall();
    hub.shutdown();
    assert!(matches!(
        stall.check(),
        Wake::Ready(EndReason::ShuttingDown)
    ));
}

#[test]
fn a_socket_sends_each_message_as_an_id_and_data_frame() {
    let hub = Hub::builder().epochs(|| Epoch::from_bits(0)).build();
    let now = Instant::now();
    hub.publish("t", &json!("old")).unwrap();
    let mut socket = socket(&hub, Request::new("GET", "/topics/t"), now);
    assert_eq!(hub.info("t").unwrap()["subscribers"], 1);
    assert_eq!(hub.metrics().subscribers_now(SubscriberKind::WebSocket), 1);
    assert_eq!(socket.head().status, 101);
    assert_eq!(socket.key(), "dGhlIHNhbXBsZSBub25jZQ==");
    assert!(matches!(socket.poll(now), SocketStep::Wait(..)));
    hub.publish("t", &json!({"b": 1, "a": 2})).unwrap();
    hub.publish("t", &json!([3])).unwrap();
    let sent = match socket.poll(now) {
        SocketStep::Send(chunks) => chunks,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        sent.to_vec(),
        br#"{"id":2,"epoch":"aaaaaaaa","data":{"b":1,"a":2}}{"id":3,"epoch":"aaaaaaaa","data":[3]}"#
    );
    drop(socket);
    assert_eq!(hub.info("t").unwrap()["subscribers"], 0);
}

#[test]
fn a_socket_resumes_with_n_and_announces_a_gap() {
    let hub = hub_with(Settings {
        queue: 2,
        ..Settings::default()
    });
    let now = Instant::now();
    for i in 1..=5 {
        hub.publish("t", &i).unwrap();
    }
    let mut socket = socket(&hub, Request::new("GET", "/topics/t.json?n=1"), now);
    assert_eq!(
        frames(socket.poll(now)),
        vec![
            json!({"missed": 2}),
            json!({"id": 4, "epoch": "aaaaaaaa", "data": 4}),
            json!({"id": 5, "epoch": "aaaaaaaa", "data": 5})
        ]
    );
    let mut socket = socket_at(&hub, "/topics/t?n=4", now);
    assert_eq!(
        frames(socket.poll(now)),
        vec![json!({"id": 5, "epoch": "aaaaaaaa", "data": 5})]
    );
}

fn socket_at(hub: &Hub, target: &str, now: Instant) -> Socket {
    socket(hub, Request::new("GET", target), now)
}

#[test]
fn a_text_frame_publishes_like_a_json_post() {
    let hub = Hub::builder().epochs(|| Epoch::from_bits(0)).build();
    let now = Instant::now();
    let mut socket = socket_at(&hub, "/topics/t", now);
    assert_eq!(
        socket.receive_text_here(r#"{ "b" : 1, "a": [true] }"#, now),
        None
    );
    assert_eq!(
        frames(socket.poll(now)),
        vec![json!({"id": 1, "epoch": "aaaaaaaa", "data": {"b": 1, "a": [true]}})]
    );
    let long_poll = hub
        .handle(Request::new("GET", "/topics/t.json?n=0"), now)
        .into_response()
        .unwrap();
    assert_eq!(
        &long_poll.body[..],
        br#"{"max":1,"epoch":"aaaaaaaa","saw":1,"delivering":1,"res":[{"b":1,"a":[true]}]}"#
    );
}

fn error_of(frame: Option<Bytes>) -> String {
    let frame = frame.expect("an error frame");
    let value: Value = serde_json::from_slice(&frame).unwrap();
    value["error"].as_str().unwrap().to_string()
}

#[test]
fn a_bad_frame_gets_an_error_frame_and_the_socket_stays_usable() {
    let hub = hub_with(Settings {
        max_message: 16,
        ..Settings::default()
    });
    let now = Instant::now();
    let mut socket = socket_at(&hub, "/topics/t", now);
    assert!(error_of(socket.receive_text_here("{oops", now)).contains("line 1 column"));
    assert!(error_of(socket.receive_text_here("", now)).contains("empty"));
    // Inclusive limit: 16 bytes pass, 17 do not.
    assert_eq!(socket.receive_text_here(r#""0123456789abcd""#, now), None);
    assert!(error_of(socket.receive_text_here(r#""0123456789abcde""#, now)).contains("16 bytes"));
    assert!(error_of(Some(socket.receive_binary())).contains("text frame"));
    assert_eq!(socket.receive_text_here("2", now), None);
    assert_eq!(
        frames(socket.poll(now)),
        vec![
            json!({"id": 1, "epoch": "aaaaaaaa", "data": "0123456789abcd"}),
            json!({"id": 2, "epoch": "aaaaaaaa", "data": 2})
        ]
    );
    assert_eq!(hub.metrics().rejected_total("too_large"), 1);
    assert_eq!(socket.read_limit(), 16 + 4096);
    assert!(matches!(socket.too_big(), SocketStep::Close(1009, _)));
}

#[test]
fn with_a_publish_token_only_a_socket_that_showed_it_may_publish() {
    let hub = Hub::builder()
        .epochs(|| Epoch::from_bits(0))
        .publish_token("s3cret")
        .build();
    let now = Instant::now();
    let mut reader = socket_at(&hub, "/topics/t", now);
    assert!(error_of(reader.receive_text_here("1", now)).contains("Authorization"));
    assert_eq!(hub.info("t").unwrap()["max"], 0, "nothing stored");
    let mut writer = socket(
        &hub,
        Request::new("GET", "/topics/t").with_header("Authorization", "Bearer s3cret"),
        now,
    );
    assert_eq!(writer.receive_text_here("1", now), None);
    assert_eq!(
        frames(reader.poll(now)),
        vec![json!({"id": 1, "epoch": "aaaaaaaa", "data": 1})]
    );
}

#[test]
fn a_socket_closes_going_away_on_delete_and_shutdown() {
    let hub = Hub::builder().epochs(|| Epoch::from_bits(0)).build();
    let now = Instant::now();
    let mut socket = socket_at(&hub, "/topics/t", now);
    hub.delete("t");
    assert!(matches!(
        socket.poll(now),
        SocketStep::Close(1001, "topic deleted")
    ));
    let mut socket = socket_at(&hub, "/topics/u", now);
    hub.shutdown();
    assert!(matches!(socket.poll(now), SocketStep::Close(1001, _)));
    let refused = hub
        .handle(handshake(Request::new("GET", "/topics/u")), now)
        .into_response()
        .unwrap();
    assert_eq!(refused.status, 503);
}

#[test]
fn a_slow_socket_closes_with_try_again_later() {
    let hub = hub_with(small_bound());
    let now = Instant::now();
    let mut socket = socket_at(&hub, "/topics/t", now);
    for _ in 0..20 {
        hub.publish("t", &blob(4 * KIB)).unwrap();
    }
    assert!(matches!(socket.poll(now), SocketStep::Close(1013, _)));
    assert_eq!(
        hub.metrics().dropped_slow_total(SubscriberKind::WebSocket),
        1
    );
    let metrics = hub
        .handle(Request::new("GET", "/metrics"), now)
        .into_response()
        .unwrap();
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    assert!(text.contains("slosh_subscribers_dropped_total{kind=\"websocket\",reason=\"slow\"} 1"));
}

#[test]
fn a_socket_pings_after_each_idle_heartbeat() {
    let hub = Hub::builder().epochs(|| Epoch::from_bits(0)).build();
    let mut now = Instant::now();
    let mut socket = socket_at(&hub, "/topics/t", now);
    match socket.poll(now) {
        SocketStep::Wait(_, at) => assert_eq!(at, now + Duration::from_secs(15)),
        other => panic!("{other:?}"),
    }
    now += Duration::from_secs(15);
    assert!(matches!(socket.poll(now), SocketStep::Ping));
    match socket.poll(now) {
        SocketStep::Wait(_, at) => assert_eq!(at, now + Duration::from_secs(15)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_upgrade_is_a_socket_only_on_the_bare_or_json_url_and_needs_a_key() {
    let hub = Hub::builder().epochs(|| Epoch::from_bits(0)).build();
    let now = Instant::now();
    let upgrade = |target| hub.handle(handshake(Request::new("GET", target)), now);
    assert!(matches!(upgrade("/topics/a"), Outcome::Socket(_)));
    assert!(matches!(upgrade("/topics/a.json"), Outcome::Socket(_)));
    assert!(matches!(upgrade("/topics/a.sse"), Outcome::Stream(_)));
    assert!(matches!(upgrade("/topics/a.xml"), Outcome::Park(_)));
    assert_eq!(
        upgrade("/topics/a?n=x").into_response().unwrap().status,
        400
    );
    let keyless = hub
        .handle(
            Request::new("GET", "/topics/a").with_header("Upgrade", "websocket"),
            now,
        )
        .into_response()
        .unwrap();
    assert_eq!(keyless.status, 400);
}

/// Each rule of RFC 6455's handshake, broken alone, is a `400` naming the
/// header; core checks them so both frontends refuse the same requests.
#[test]
fn a_handshake_breaking_one_rule_is_refused_naming_the_header() {
    let hub = Hub::builder().epochs(|| Epoch::from_bits(0)).build();
    let now = Instant::now();
    let answer = |headers: &[(&str, &str)]| {
        let mut request = Request::new("GET", "/topics/a").with_header("Upgrade", "websocket");
        for (name, value) in headers {
            request.header(name, value);
        }
        match hub.handle(request, now) {
            Outcome::Socket(_) => (101, String::new()),
            other => {
                let response = other.into_response().unwrap();
                let body = String::from_utf8(response.body.to_vec()).unwrap();
                (response.status, body)
            }
        }
    };
    let good = [
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    assert_eq!(answer(&good).0, 101);
    let without = |skip: &str| -> Vec<(&str, &str)> {
        good.iter()
            .copied()
            .filter(|(name, _)| *name != skip)
            .collect()
    };
    let with = |name: &'static str, value: &'static str| -> Vec<(&'static str, &'static str)> {
        let mut headers = vec![(name, value)];
        headers.extend(good.iter().copied().filter(|(n, _)| *n != name));
        headers
    };
    for (headers, names) in [
        (without("Connection"), "Connection"),
        (with("Connection", "keep-alive"), "Connection"),
        (without("Sec-WebSocket-Version"), "Sec-WebSocket-Version"),
        (with("Sec-WebSocket-Version", "8"), "Sec-WebSocket-Version"),
        (without("Sec-WebSocket-Key"), "Sec-WebSocket-Key"),
        (with("Sec-WebSocket-Key", "k"), "Sec-WebSocket-Key"),
        // 24 characters but 17 bytes' worth of bits in the last one.
        (
            with("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZR=="),
            "Sec-WebSocket-Key",
        ),
        (
            with("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ="),
            "Sec-WebSocket-Key",
        ),
        (
            with("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25j*Q=="),
            "Sec-WebSocket-Key",
        ),
    ] {
        let (status, body) = answer(&headers);
        assert_eq!(status, 400, "{headers:?}");
        assert!(body.contains(names), "{headers:?}: {body}");
        assert!(
            body.contains("bad_upgrade") || body.contains("WebSocket"),
            "{body}"
        );
    }
    assert_eq!(answer(&with("Connection", "keep-alive, upgrade")).0, 101);
    assert_eq!(
        answer(&with("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAA==")).0,
        101
    );
}

#[test]
fn every_stream_and_socket_is_handed_the_same_bytes_of_a_message() {
    let hub = Hub::builder().epochs(|| Epoch::from_bits(0)).build();
    let now = Instant::now();
    let (mut a, mut b) = (
        stream(&hub, "/topics/t.sse", now),
        stream(&hub, "/topics/t.sse", now),
    );
    let (mut x, mut y) = (
        socket_at(&hub, "/topics/t", now),
        socket_at(&hub, "/topics/t", now),
    );
    text(a.poll(now));
    text(b.poll(now));
    hub.publish("t", &json!({"shared": true})).unwrap();
    let piece = |step| match step {
        StreamStep::Send(chunks) => chunks.into_iter().next().unwrap(),
        other => panic!("{other:?}"),
    };
    let frame = |step| match step {
        SocketStep::Send(chunks) => chunks.into_iter().next().unwrap(),
        other => panic!("{other:?}"),
    };
    let (first, second) = (piece(a.poll(now)), piece(b.poll(now)));
    assert_eq!(&first[..], b"id: 1@aaaaaaaa\ndata: {\"shared\":true}\n\n");
    assert_eq!(first.as_ptr(), second.as_ptr(), "one SSE encoding, shared");
    let (first, second) = (frame(x.poll(now)), frame(y.poll(now)));
    assert_eq!(
        &first[..],
        br#"{"id":1,"epoch":"aaaaaaaa","data":{"shared":true}}"#
    );
    assert_eq!(
        first.as_ptr(),
        second.as_ptr(),
        "one WebSocket frame, shared"
    );
}
