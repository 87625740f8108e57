//! Server-Sent Events over a real socket.

use std::collections::VecDeque;
use std::time::Duration;

use slosh_client::cursor::Cursor;
use slosh_client::http::{self, BodyDecoder, Framing, Keep};
use slosh_client::sse;
use slosh_core::metrics::SubscriberKind;
use slosh_core::Settings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::helpers::{read_until, spawn_app, spawn_app_with, EPOCH};

#[tokio::test]
async fn sse_streams_new_messages_after_the_retry_line() {
    let app = spawn_app().await;
    let mut stream = app.open("/topics/live.sse", &[]).await;
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, "retry: 3000\n\n").await;
    assert!(seen.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(seen.contains("content-type: text/event-stream\r\n"));
    assert!(seen.contains("x-accel-buffering: no\r\n"));
    app.post_json("live", r#"{"event":"Some Event Text"}"#)
        .await;
    read_until(
        &mut stream,
        &mut seen,
        "id: 1@aaaaaaaa\ndata: {\"event\":\"Some Event Text\"}\n\n",
    )
    .await;
}

#[tokio::test]
async fn sse_resumes_from_last_event_id() {
    let app = spawn_app().await;
    for i in 1..=3 {
        app.post_json("resume", &i.to_string()).await;
    }
    let mut stream = app
        .open("/topics/resume.sse", &[("Last-Event-ID", "1")])
        .await;
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, "id: 3@aaaaaaaa\ndata: 3\n\n").await;
    assert!(seen.contains("id: 2@aaaaaaaa\ndata: 2\n\n"));
    assert!(!seen.contains("id: 1@aaaaaaaa\n"));
}

#[tokio::test]
async fn delete_ends_the_stream_and_a_reconnect_is_told_to_stop() {
    let app = spawn_app().await;
    let mut stream = app.open("/topics/doomed.sse", &[]).await;
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, "retry: 3000\n\n").await;
    app.post_json("doomed", "1").await;
    read_until(&mut stream, &mut seen, "id: 1@aaaaaaaa\ndata: 1\n\n").await;
    assert_eq!(
        app.send("DELETE", "/topics/doomed", &[], b"").await.status,
        200
    );
    // The server ends the chunked body: the last chunk, then nothing.
    read_until(&mut stream, &mut seen, "0\r\n\r\n").await;
    // What EventSource does next: reconnect with the id it last saw.
    let again = app
        .send("GET", "/topics/doomed.sse", &[("Last-Event-ID", "1")], b"")
        .await;
    assert_eq!(again.status, 204);
    assert_eq!(app.get("/topics/doomed.info").await.status, 404);
}

#[tokio::test]
async fn a_closed_stream_stops_counting_as_a_subscriber() {
    let app = spawn_app().await;
    let mut stream = app.open("/topics/gone.sse", &[]).await;
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, "retry: 3000").await;
    app.wait_for_subscribers("gone", 1).await;
    drop(stream);
    // The server notices at the latest when a write fails. The first write
    // to a socket the peer closed may still succeed (the peer's answer to it
    // is what makes the next one fail), so publish until it is noticed.
    for i in 1..=20 {
        app.post_json("gone", &i.to_string()).await;
        if app
            .hub
            .info("gone")
            .is_some_and(|info| info["subscribers"] == 0)
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    app.wait_for_subscribers("gone", 0).await;
}

/// An SSE reader for tests that read far more than `read_until` should
/// search: the head, chunked encoding and events are read with the parsers
/// every slosh client uses (`slosh-client`).
struct Events {
    stream: tokio::net::TcpStream,
    raw: Vec<u8>,
    /// The body's decoder, once the head is read.
    body: Option<BodyDecoder>,
    parser: sse::Parser,
    ready: VecDeque<Event>,
}

/// One SSE event: its id (if any) and its data line.
#[derive(Debug)]
struct Event {
    id: Option<u64>,
    data: String,
}

impl Events {
    async fn open(app: &super::helpers::App, target: &str) -> Events {
        Events {
            stream: app.open(target, &[]).await,
            raw: Vec::new(),
            body: None,
            parser: sse::Parser::new(64 * 1024),
            ready: VecDeque::new(),
        }
    }

    /// The next event carrying data (`retry:` and `: ping` are skipped).
    async fn next(&mut self) -> Event {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return event;
            }
            let mut buf = vec![0u8; 64 * 1024];
            let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut buf))
                .await
                .expect("data within 10 s")
                .unwrap();
            assert!(n > 0, "the stream closed");
            self.raw.extend_from_slice(&buf[..n]);
            self.decode();
        }
    }

    fn decode(&mut self) {
        if self.body.is_none() {
            let Some((head, used)) = http::parse_head(&self.raw, Keep::FramingOnly).unwrap() else {
                return;
            };
            self.raw.drain(..used);
            self.body = Some(BodyDecoder::new(head.framing));
        }
        let (Some(body), parser, ready) = (self.body.as_mut(), &mut self.parser, &mut self.ready)
        else {
            return;
        };
        let progress = body
            .decode_pieces(&self.raw, |piece| {
                parser
                    .feed(piece, |event| {
                        if !event.data.is_empty() {
                            ready.push_back(Event {
                                // `N@EPOCH`: the test hub's epoch.
                                id: event.id.as_ref().map(|id| {
                                    let cursor = Cursor::parse(id).unwrap();
                                    assert_eq!(cursor.epoch.as_deref(), Some(EPOCH), "{id}");
                                    cursor.id
                                }),
                                data: event.text().into_owned(),
                            });
                        }
                    })
                    .unwrap()
            })
            .unwrap();
        self.raw.drain(..progress.used);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test]
async fn sse_delivers_ten_thousand_messages_in_order_over_one_stream() {
    let app = spawn_app_with(Settings {
        queue: 10_000,
        ..Settings::default()
    })
    .await;
    let mut events = Events::open(&app, "/topics/many.sse").await;
    app.wait_for_subscribers("many", 1).await;
    for i in 1..=10_000u64 {
        app.hub.publish("many", &i).unwrap();
    }
    for i in 1..=10_000u64 {
        let event = events.next().await;
        assert_eq!((event.id, event.data), (Some(i), i.to_string()));
    }
}

#[tokio::test]
async fn two_hundred_sse_subscribers_all_receive_every_message() {
    let app = spawn_app().await;
    let mut streams = Vec::new();
    for _ in 0..200 {
        streams.push(Events::open(&app, "/topics/crowd.sse").await);
    }
    app.wait_for_subscribers("crowd", 200).await;
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut events| {
            tokio::spawn(async move {
                for i in 1..=50u64 {
                    let event = events.next().await;
                    assert_eq!((event.id, event.data), (Some(i), i.to_string()));
                }
            })
        })
        .collect();
    for i in 1..=50u64 {
        app.post_json("crowd", &i.to_string()).await;
    }
    for reader in readers {
        reader.await.unwrap();
    }
}

#[tokio::test]
async fn an_sse_reader_that_stops_reading_is_dropped_and_publishers_are_not_slowed() {
    let app = spawn_app_with(Settings {
        max_unsent: 64 * 1024,
        ..Settings::default()
    })
    .await;
    let mut stalled = app.open("/topics/firehose.sse", &[]).await;
    let mut seen = String::new();
    read_until(&mut stalled, &mut seen, "retry: 3000").await;
    let mut fast = Events::open(&app, "/topics/firehose.sse").await;
    app.wait_for_subscribers("firehose", 2).await;
    const COUNT: u64 = 3000;
    let reader = tokio::spawn(async move {
        for i in 1..=COUNT {
            let event = fast.next().await;
            assert_eq!(event.id, Some(i), "the fast reader misses nothing");
        }
        fast
    });
    // About 24 MB, far past what the kernel buffers for the stalled reader,
    // published over one keep-alive connection.
    let blob = format!("\"{}\"", "x".repeat(8_000));
    let mut publisher = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let started = std::time::Instant::now();
    for _ in 0..COUNT {
        let request = format!(
            "POST /topics/firehose HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{blob}",
            blob.len()
        );
        publisher.write_all(request.as_bytes()).await.unwrap();
        let answer = read_answer(&mut publisher).await;
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(30), "publishing took {took:?}");
    // The fast reader (still connected) is the one subscriber left.
    let fast = reader.await.unwrap();
    app.wait_for_subscribers("firehose", 1).await;
    drop(fast);
    assert_eq!(app.hub.metrics().dropped_slow_total(SubscriberKind::Sse), 1);
    let metrics = app.get("/metrics").await.body;
    assert!(metrics.contains("slosh_subscribers_dropped_total{kind=\"sse\",reason=\"slow\"} 1"));
    drop(stalled);
}

/// Reads one answer with a Content-Length body from a keep-alive connection.
async fn read_answer(stream: &mut tokio::net::TcpStream) -> String {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while find(&raw, b"\r\n\r\n").is_none() {
        assert_eq!(
            stream.read(&mut byte).await.unwrap(),
            1,
            "closed mid-answer"
        );
        raw.push(byte[0]);
    }
    let length = match http::parse_head(&raw, Keep::FramingOnly).unwrap() {
        Some((head, _)) => match head.framing {
            Framing::Length(length) => length,
            _ => 0,
        },
        None => unreachable!("the head ended"),
    };
    let head = String::from_utf8(raw).unwrap();
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.unwrap();
    head + &String::from_utf8_lossy(&body)
}
