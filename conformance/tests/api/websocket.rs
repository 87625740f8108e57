//! WebSockets over a real socket, with tokio-tungstenite as the client.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use slosh_core::metrics::SubscriberKind;
use slosh_core::Settings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::helpers::{spawn_app, spawn_app_with, App};

pub(super) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub(super) async fn connect(app: &App, target: &str, headers: &[(&str, &str)]) -> Ws {
    let mut request = format!("ws://{}{target}", app.addr)
        .into_client_request()
        .unwrap();
    for (name, value) in headers {
        let name =
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap();
        request.headers_mut().insert(name, value.parse().unwrap());
    }
    let (ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.status(), 101);
    ws
}

/// The next data frame as JSON (pings are skipped; tungstenite answers them).
pub(super) async fn next_frame(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("the socket is open")
            .expect("a well-formed frame");
        match message {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Reads until the server's close frame and returns its code.
async fn close_code(ws: &mut Ws) -> CloseCode {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a close frame within 10 s");
        match message {
            Some(Ok(Message::Close(Some(frame)))) => return frame.code,
            Some(Ok(Message::Close(None))) | None => panic!("closed without a code"),
            Some(Ok(_)) => {}
            Some(Err(error)) => panic!("{error}"),
        }
    }
}

pub(super) async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
}

#[tokio::test]
async fn a_socket_receives_ten_thousand_messages_in_order() {
    let app = spawn_app_with(Settings {
        queue: 10_000,
        ..Settings::default()
    })
    .await;
    let mut ws = connect(&app, "/topics/many", &[]).await;
    app.wait_for_subscribers("many", 1).await;
    for i in 1..=10_000u64 {
        app.hub.publish("many", &i).unwrap();
    }
    for i in 1..=10_000u64 {
        assert_eq!(
            next_frame(&mut ws).await,
            json!({"id": i, "epoch": "aaaaaaaa", "data": i})
        );
    }
}

#[tokio::test]
async fn a_text_frame_is_published_and_seen_over_long_poll() {
    let app = spawn_app().await;
    let mut ws = connect(&app, "/topics/chat.json", &[]).await;
    send(&mut ws, r#"{"b":1,"a":"hi"}"#).await;
    assert_eq!(
        next_frame(&mut ws).await,
        json!({"id": 1, "epoch": "aaaaaaaa", "data": {"b": 1, "a": "hi"}})
    );
    let polled = app.get("/topics/chat.json?n=0").await;
    assert_eq!(
        polled.body,
        r#"{"max":1,"epoch":"aaaaaaaa","saw":1,"delivering":1,"res":[{"b":1,"a":"hi"}]}"#
    );
}

#[tokio::test]
async fn bad_json_gets_an_error_frame_and_the_socket_stays_usable() {
    let app = spawn_app().await;
    let mut ws = connect(&app, "/topics/t", &[]).await;
    send(&mut ws, "{oops").await;
    let error = next_frame(&mut ws).await;
    assert!(
        error["error"].as_str().unwrap().contains("line 1 column"),
        "{error}"
    );
    ws.send(Message::binary(&b"\x00\x01"[..])).await.unwrap();
    assert!(next_frame(&mut ws).await["error"].is_string());
    send(&mut ws, "2").await;
    assert_eq!(
        next_frame(&mut ws).await,
        json!({"id": 1, "epoch": "aaaaaaaa", "data": 2})
    );
    assert_eq!(app.hub.info("t").unwrap()["max"], 1);
}

#[tokio::test]
async fn an_oversize_frame_gets_an_error_frame_and_a_far_larger_one_closes_1009() {
    let app = spawn_app_with(Settings {
        max_message: 1024,
        ..Settings::default()
    })
    .await;
    let mut ws = connect(&app, "/topics/t", &[]).await;
    let at_limit = format!("\"{}\"", "x".repeat(1022));
    send(&mut ws, &at_limit).await;
    assert_eq!(next_frame(&mut ws).await["id"], 1);
    let over = format!("\"{}\"", "x".repeat(1023));
    send(&mut ws, &over).await;
    let error = next_frame(&mut ws).await;
    assert!(error["error"].as_str().unwrap().contains("1024"), "{error}");
    let huge = format!("\"{}\"", "x".repeat(64 * 1024));
    send(&mut ws, &huge).await;
    assert_eq!(close_code(&mut ws).await, CloseCode::Size);
    assert_eq!(app.hub.info("t").unwrap()["max"], 1, "nothing else stored");
}

#[tokio::test]
async fn with_a_publish_token_only_a_socket_that_showed_it_may_publish() {
    let app = spawn_app_with(Settings {
        publish_token: Some("s3cret".into()),
        ..Settings::default()
    })
    .await;
    let mut reader = connect(&app, "/topics/t", &[]).await;
    send(&mut reader, "1").await;
    let error = next_frame(&mut reader).await;
    assert!(
        error["error"].as_str().unwrap().contains("Authorization"),
        "{error}"
    );
    let mut writer = connect(&app, "/topics/t", &[("Authorization", "Bearer s3cret")]).await;
    send(&mut writer, "2").await;
    assert_eq!(
        next_frame(&mut reader).await,
        json!({"id": 1, "epoch": "aaaaaaaa", "data": 2})
    );
    assert_eq!(
        next_frame(&mut writer).await,
        json!({"id": 1, "epoch": "aaaaaaaa", "data": 2})
    );
}

#[tokio::test]
async fn a_socket_resumes_after_n() {
    let app = spawn_app().await;
    for i in 1..=3 {
        app.post_json("resume", &i.to_string()).await;
    }
    let mut ws = connect(&app, "/topics/resume?n=1", &[]).await;
    assert_eq!(
        next_frame(&mut ws).await,
        json!({"id": 2, "epoch": "aaaaaaaa", "data": 2})
    );
    assert_eq!(
        next_frame(&mut ws).await,
        json!({"id": 3, "epoch": "aaaaaaaa", "data": 3})
    );
}

#[tokio::test]
async fn two_hundred_sockets_all_receive_every_message() {
    let app = spawn_app().await;
    let mut sockets = Vec::new();
    for _ in 0..200 {
        sockets.push(connect(&app, "/topics/crowd", &[]).await);
    }
    app.wait_for_subscribers("crowd", 200).await;
    assert_eq!(
        app.hub.metrics().subscribers_now(SubscriberKind::WebSocket),
        200
    );
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                for i in 1..=50u64 {
                    assert_eq!(
                        next_frame(&mut ws).await,
                        json!({"id": i, "epoch": "aaaaaaaa", "data": i})
                    );
                }
            })
        })
        .collect();
    for i in 1..=50u64 {
        app.hub.publish("crowd", &i).unwrap();
    }
    for reader in readers {
        reader.await.unwrap();
    }
}

#[tokio::test]
async fn delete_closes_sockets_going_away() {
    let app = spawn_app().await;
    let mut ws = connect(&app, "/topics/doomed", &[]).await;
    app.wait_for_subscribers("doomed", 1).await;
    assert_eq!(
        app.send("DELETE", "/topics/doomed", &[], b"").await.status,
        200
    );
    assert_eq!(close_code(&mut ws).await, CloseCode::Away);
}

/// The resident memory of this process, from /proc.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[tokio::test]
async fn a_socket_that_stops_reading_is_closed_at_the_unsent_bound() {
    let app = spawn_app_with(Settings {
        max_unsent: 64 * 1024,
        queue: 10,
        ..Settings::default()
    })
    .await;
    let _stalled = connect(&app, "/topics/firehose", &[]).await;
    let mut reader = connect(&app, "/topics/other", &[]).await;
    app.wait_for_subscribers("firehose", 1).await;
    let before = rss_bytes();
    let blob = "x".repeat(60_000);
    // 96 MB through a socket whose reader never reads.
    for _ in 0..1600 {
        app.hub.publish("firehose", &blob).unwrap();
        tokio::task::yield_now().await;
    }
    app.wait_for_subscribers("firehose", 0).await;
    assert_eq!(
        app.hub
            .metrics()
            .dropped_slow_total(SubscriberKind::WebSocket),
        1
    );
    let grown = rss_bytes().saturating_sub(before);
    assert!(grown < 48 << 20, "server memory grew by {grown} bytes");
    // Other sockets are not disturbed.
    app.hub.publish("other", &1).unwrap();
    assert_eq!(
        next_frame(&mut reader).await,
        json!({"id": 1, "epoch": "aaaaaaaa", "data": 1})
    );
    let metrics = app.get("/metrics").await.body;
    assert!(
        metrics.contains("slosh_subscribers_dropped_total{kind=\"websocket\",reason=\"slow\"} 1")
    );
}

#[tokio::test]
async fn shutdown_closes_sockets_going_away() {
    let mut app = spawn_app().await;
    let mut ws = connect(&app, "/topics/t", &[]).await;
    app.wait_for_subscribers("t", 1).await;
    let reader = tokio::spawn(async move { close_code(&mut ws).await });
    app.stop().await.unwrap();
    assert_eq!(reader.await.unwrap(), CloseCode::Away);
}

/// Core checks RFC 6455's handshake, so a request one rule short is refused
/// the same way on every frontend, whatever its WebSocket library accepts.
#[tokio::test]
async fn an_upgrade_breaking_the_handshake_rules_is_400_and_opens_nothing() {
    let app = spawn_app().await;
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade, close\r\n";
    for (headers, named) in [
        (format!("{upgrade}{key}"), "Sec-WebSocket-Version"),
        (
            format!("{upgrade}Sec-WebSocket-Version: 8\r\n{key}"),
            "Sec-WebSocket-Version",
        ),
        (
            format!(
                "Upgrade: websocket\r\nConnection: close\r\nSec-WebSocket-Version: 13\r\n{key}"
            ),
            "Connection",
        ),
        (
            format!("{upgrade}Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n"),
            "Sec-WebSocket-Key",
        ),
    ] {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        let head = format!("GET /topics/hs HTTP/1.1\r\nHost: test\r\n{headers}\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
            .await
            .expect("the server closed the connection")
            .unwrap();
        let answer = String::from_utf8_lossy(&raw);
        assert!(answer.starts_with("HTTP/1.1 400"), "{headers:?}: {answer}");
        assert!(answer.contains(named), "{headers:?}: {answer}");
    }
    assert_eq!(app.get("/topics/hs.info").await.status, 404);
}

/// A client's close frame is answered with one (RFC 6455 5.5.1), so the
/// browser sees a clean close rather than 1006.
#[tokio::test]
async fn a_clients_close_is_answered_with_a_close_frame() {
    let app = spawn_app().await;
    let mut ws = connect(&app, "/topics/bye", &[]).await;
    ws.close(None).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("an answer within 5 s");
    assert!(
        matches!(reply, Some(Ok(Message::Close(_))) | None),
        "{reply:?}"
    );
}

/// A client's close is echoed with the client's code, as RFC 6455 5.5.1
/// suggests; on actix core answers it, on hyper tungstenite does.
#[tokio::test]
async fn a_clients_close_is_echoed_with_its_code() {
    let app = spawn_app().await;
    let mut ws = connect(&app, "/topics/bye", &[]).await;
    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Library(4001),
        reason: "done here".into(),
    })))
    .await
    .unwrap();
    assert_eq!(close_code(&mut ws).await, CloseCode::Library(4001));
}

/// A ping is answered with a pong carrying its payload, on either frontend
/// (actix-ws leaves pings to core; tungstenite answers them itself).
#[tokio::test]
async fn a_ping_is_answered_with_its_payload() {
    let app = spawn_app().await;
    let mut ws = connect(&app, "/topics/p", &[]).await;
    ws.send(Message::Ping(b"are you there"[..].into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Pong(payload))) => return payload,
                Some(Ok(_)) => {}
                other => panic!("the socket ended: {other:?}"),
            }
        }
    })
    .await
    .expect("a pong within 10 s");
    assert_eq!(&pong[..], b"are you there");
}

/// A text message sent in three fragments is published once, whole.
#[tokio::test]
async fn a_fragmented_message_is_published_once_whole() {
    let app = spawn_app().await;
    let mut ws = connect(&app, "/topics/frag", &[]).await;
    let pieces = [
        ("{\"a\":", OpCode::Data(Data::Text), false),
        ("[1,2", OpCode::Data(Data::Continue), false),
        ("]}", OpCode::Data(Data::Continue), true),
    ];
    for (piece, opcode, last) in pieces {
        ws.send(Message::Frame(Frame::message(piece, opcode, last)))
            .await
            .unwrap();
    }
    assert_eq!(
        next_frame(&mut ws).await,
        json!({"id": 1, "epoch": "aaaaaaaa", "data": {"a": [1, 2]}})
    );
    assert_eq!(app.hub.info("frag").unwrap()["max"], 1);
}

/// Fragments whose sum passes the read limit close the socket 1009 before
/// the message is buffered whole, as one frame that large would.
#[tokio::test]
async fn fragments_past_the_read_limit_close_1009() {
    let app = spawn_app_with(Settings {
        max_message: 1024,
        ..Settings::default()
    })
    .await;
    let mut ws = connect(&app, "/topics/frag", &[]).await;
    let piece = "x".repeat(4096);
    ws.send(Message::Frame(Frame::message(
        format!("\"{piece}"),
        OpCode::Data(Data::Text),
        false,
    )))
    .await
    .unwrap();
    for _ in 0..4 {
        // The server may close while the rest is still being sent.
        let _ = ws
            .send(Message::Frame(Frame::message(
                piece.clone(),
                OpCode::Data(Data::Continue),
                false,
            )))
            .await;
    }
    assert_eq!(close_code(&mut ws).await, CloseCode::Size);
    assert_eq!(app.hub.info("frag").unwrap()["max"], 0, "nothing stored");
}
