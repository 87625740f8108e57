//! Criterion benchmarks of slosh-core's hot paths: publishing (decoded and
//! from an HTTP body), waking parked long-polls, and encoding a batch as JSON
//! and XML.
//!
//! Run with `CARGO_TARGET_DIR=target-bench cargo bench -p benches`; every
//! group is kept short (1 s warm-up, 3 s measurement) because the figures are
//! compared as ratios from one run on a small, shared machine. See
//! `benches/README.md` for what each group measures and the targets.

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use slosh_core::{
    Batch, Body, Cursor, EventListener, Hub, Json, Log, LongPoll, MemoryLog, Message, Outcome,
    Request, Wake,
};

/// A ~100-byte JSON object body, as a publisher would POST it.
const JSON_BODY: &str = r#"{"user":"ada","text":"hello, world! how are you today?","room":{"id":42,"name":"general"},"ok":true}"#;

/// A ~100-byte form body, as `curl -d` sends it.
const FORM_BODY: &str =
    "x=hello!&y=the+quick+brown+fox+jumps+over+the+lazy+dog&user=ada&room=general&n=42&z=%C3%A9t%C3%A9";

/// Short warm-up and measurement: the whole suite must run in minutes.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

/// The message every publish benchmark stores, decoded once.
fn message_json() -> Json {
    Json::to_json(&serde_json::from_str::<serde_json::Value>(JSON_BODY).unwrap()).unwrap()
}

/// Measures `Hub::publish_json` of an already-decoded message into one topic
/// with no subscribers (default settings: queue 100, so the ring is full and
/// every publish also evicts one message).
fn publish_one_topic(c: &mut Criterion) {
    let hub = Hub::builder().build();
    let json = message_json();
    let mut group = c.benchmark_group("publish_one_topic");
    group.throughput(Throughput::Elements(1));
    group.bench_function("publish_json", |b| {
        b.iter(|| hub.publish_json(black_box("chat"), json.clone()).unwrap())
    });
    group.finish();
}

/// Measures the same publish round-robin over 1 000 topics (names prepared
/// outside the loop; the topics exist after the first round).
fn publish_1000_topics(c: &mut Criterion) {
    let hub = Hub::builder().build();
    let json = message_json();
    let names: Vec<String> = (0..1000).map(|i| format!("topic-{i}")).collect();
    let mut group = c.benchmark_group("publish_1000_topics");
    group.throughput(Throughput::Elements(1));
    group.bench_function("publish_json", |b| {
        let mut next = names.iter().cycle();
        b.iter(|| {
            let name = next.next().unwrap();
            hub.publish_json(black_box(name), json.clone()).unwrap()
        })
    });
    group.finish();
}

/// Measures a whole POST through `Hub::handle`: route, content type, decode
/// (validate + compact), publish, and the `{"ok":true,"id":N}` response, for
/// a ~100-byte JSON body and a ~100-byte form body.
fn decode_and_publish_100b_json(c: &mut Criterion) {
    let hub = Hub::builder().build();
    let now = Instant::now();
    let mut group = c.benchmark_group("decode_and_publish_100b_json");
    group.throughput(Throughput::Elements(1));
    let cases = [
        ("json", "application/json", JSON_BODY),
        ("form", "application/x-www-form-urlencoded", FORM_BODY),
    ];
    for (name, content_type, text) in cases {
        // The body's Bytes are built once; cloning a Body::Full is a
        // reference-count increment, as an adapter's hand-over would be.
        let body = Request::new("POST", "/")
            .with_body(text.as_bytes().to_vec())
            .body;
        let check = post(&hub, content_type, body.clone(), now);
        assert_eq!(check.status, 200, "{name}: {:?}", check.body);
        group.bench_function(BenchmarkId::new(name, text.len()), |b| {
            b.iter(|| post(&hub, content_type, body.clone(), now))
        });
    }
    group.finish();
}

/// POSTs `body` to `/topics/chat` and returns the immediate response.
fn post(hub: &Hub, content_type: &str, body: Body, now: Instant) -> slosh_core::Response {
    let mut request =
        Request::new("POST", "/topics/chat").with_header("content-type", content_type);
    request.body = body;
    match hub.handle(request, now) {
        Outcome::Respond(response) => response,
        other => panic!("a POST answers at once, got {other:?}"),
    }
}

/// Parks `n` long-polls on topic `t` of `hub`, each with its listener
/// registered by a first `poll`.
fn park(hub: &Hub, n: usize, now: Instant) -> Vec<(LongPoll, EventListener)> {
    let target = format!(
        "/topics/t.json?n={}",
        hub.info("t").map_or(0, |i| i["max"].as_u64().unwrap())
    );
    (0..n)
        .map(|_| {
            let mut poll = match hub.handle(Request::new("GET", &target), now) {
                Outcome::Park(poll) => poll,
                other => panic!("an up-to-date poll parks, got {other:?}"),
            };
            match poll.poll(now) {
                Wake::Wait(listener) => (poll, listener),
                Wake::Ready(response) => panic!("nothing new yet, got {response:?}"),
            }
        })
        .collect()
}

/// Whether `listener` has been notified, without blocking: one poll of the
/// listener future with a no-op waker (what a runtime does after a wake).
fn notified(listener: &mut EventListener) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    matches!(Pin::new(listener).poll(&mut cx), Poll::Ready(()))
}

/// Measures waking N parked long-polls on one topic and letting every one
/// read: one publish, then for each waiter a check that its listener was
/// notified and a `LongPoll::poll` that builds its response. Parking the N
/// polls is setup and is not timed; the time reported is per wake of all N.
fn wake_parked_waiters(c: &mut Criterion) {
    let json = message_json();
    let mut group = c.benchmark_group("wake_parked_waiters");
    for n in [1usize, 100, 10_000] {
        group.throughput(Throughput::Elements(n as u64));
        if n == 10_000 {
            // Each iteration parks 10 000 polls untimed; fewer samples keep
            // the group within its time budget.
            group.sample_size(10);
        }
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_custom(|iters| {
                let hub = Hub::builder().build();
                let now = Instant::now();
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut waiters = park(&hub, n, now);
                    let start = Instant::now();
                    hub.publish_json("t", json.clone()).unwrap();
                    for (poll, listener) in &mut waiters {
                        assert!(notified(listener), "a waiter missed the publish");
                        match poll.poll(now) {
                            Wake::Ready(response) => {
                                black_box(response);
                            }
                            Wake::Wait(_) => panic!("a woken poll has a message to read"),
                        }
                    }
                    total += start.elapsed();
                    // Dropping 10 000 polls (unsubscribing) is not the wake.
                    drop(waiters);
                }
                total
            })
        });
    }
    group.finish();
}

/// One message of the encode benchmarks: ~100 bytes, a couple of keys, a
/// nested object, and a string with characters XML must escape.
fn batch_message(i: usize) -> Json {
    Json::from(serde_json::json!({
        "user": format!("user{i}"),
        "text": "fish & chips <3 \"quoted\"",
        "meta": {"room": "general", "seq": i, "ok": true},
        "tags": ["a", "b"],
    }))
}

/// A batch read from a fresh log of 100 messages (every message's XML not
/// yet encoded).
fn batch_100() -> Batch {
    let log = MemoryLog::new(100, slosh_core::Epoch::from_bits(0));
    for i in 0..100 {
        log.append(batch_message(i)).expect("memory");
    }
    Batch::read(&log, Cursor(0))
}

/// Measures encoding a 100-message batch: JSON; XML cold (fresh messages,
/// so each message's `<p>` is encoded from JSON); and XML warm (the same
/// messages again, each `<p>` cached since its first encoding).
fn encode_batch_100(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_batch_100");
    group.throughput(Throughput::Elements(100));
    let batch = batch_100();
    assert_eq!(batch.messages.len(), 100);
    let size: usize = batch
        .messages
        .iter()
        .map(|m: &Message| m.json().len())
        .sum();
    assert!(
        (80..=140).contains(&(size / 100)),
        "messages average {} bytes",
        size / 100
    );
    group.bench_function("json", |b| b.iter(|| black_box(&batch).to_json()));
    group.bench_function("xml_cold", |b| {
        b.iter_batched_ref(batch_100, |batch| batch.to_xml(), BatchSize::SmallInput)
    });
    group.bench_function("xml_warm", |b| b.iter(|| black_box(&batch).to_xml()));
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets =
        publish_one_topic,
        publish_1000_topics,
        decode_and_publish_100b_json,
        wake_parked_waiters,
        encode_batch_100
}
criterion_main!(benches);
