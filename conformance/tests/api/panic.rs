//! A panic while one request is handled (here, in an embedder's filter)
//! costs that request its connection and nothing else: the server keeps
//! answering, streams and parked polls opened before it keep going, and no
//! connection slot or subscriber is left counted.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use slosh_core::metrics::SubscriberKind;
use slosh_core::{Hub, Json, TopicName, Verdict};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use super::helpers::{read_until, spawn_hub, App, ServeOptions};

/// A hub whose filter panics on any message containing `boom`.
fn hub_that_panics_on_boom() -> Hub {
    Hub::builder()
        .epochs(|| slosh_core::Epoch::from_bits(0))
        .filter(|_: &TopicName, message: &Json| {
            assert!(
                !message.as_str().contains("boom"),
                "this filter panics on purpose (the test expects this message)"
            );
            Verdict::Keep
        })
        .build()
}

/// POSTs `boom` on a fresh connection and returns whatever came back
/// before the connection ended (nothing, or a 5xx).
async fn post_boom(app: &App, topic: &str) -> String {
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let request = format!(
        "POST /topics/{topic} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
         Content-Length: 4\r\n\r\nboom"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
        .await
        .expect("the connection ends")
        .ok();
    String::from_utf8_lossy(&raw).into_owned()
}

#[tokio::test]
async fn a_panic_in_one_request_leaves_every_other_connection_served() {
    // Few connection slots, so a slot a panic failed to give back would
    // show: the SSE stream, the parked poll and the socket hold three.
    let options = ServeOptions {
        max_connections: 4,
        ..ServeOptions::default()
    };
    let app = spawn_hub(crate::FRONTEND, hub_that_panics_on_boom(), options).await;
    let mut sse = app.open("/topics/t.sse", &[]).await;
    let mut seen = String::new();
    read_until(&mut sse, &mut seen, "retry: 3000").await;
    let client = *app;
    let parked = tokio::spawn(async move { client.get("/topics/u.json?n=0").await });
    app.wait_for_subscribers("t", 1).await;
    app.wait_for_subscribers("u", 1).await;

    // More panics than there are free slots.
    for _ in 0..6 {
        let answer = post_boom(&app, "t").await;
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 5"),
            "a panicking request is not answered as if it went well: {answer}"
        );
    }
    // A socket whose own publish panics: that socket ends.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/topics/w", app.addr))
        .await
        .unwrap();
    app.wait_for_subscribers("w", 1).await;
    ws.send(Message::text("\"boom\"")).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the socket that panicked was left open");

    // Everything else goes on.
    assert_eq!(app.get("/healthz").await.status, 200);
    assert_eq!(
        app.post_form("t", "x=fine").await.body,
        r#"{"ok":true,"id":1}"#
    );
    read_until(
        &mut sse,
        &mut seen,
        "id: 1@aaaaaaaa\ndata: {\"x\":[\"fine\"]}",
    )
    .await;
    assert_eq!(app.post_form("u", "x=also").await.status, 200);
    let answer = tokio::time::timeout(Duration::from_secs(5), parked)
        .await
        .expect("the parked poll answers")
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["res"][0]["x"][0], "also");

    // No subscriber outlives its connection, the panicked socket's included.
    // A closed SSE reader is noticed at the latest when a write to it fails
    // (actix notices no sooner), so publish meanwhile.
    drop(sse);
    for i in 0..200 {
        if i % 10 == 0 {
            app.hub.publish("t", &i).unwrap();
        }
        let left: usize = [
            SubscriberKind::Sse,
            SubscriberKind::WebSocket,
            SubscriberKind::LongPoll,
        ]
        .into_iter()
        .map(|kind| app.hub.metrics().subscribers_now(kind))
        .sum();
        if left == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "subscribers left: {}",
        app.hub.metrics().to_prometheus(app.hub.topic_count())
    );
}
