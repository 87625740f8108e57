//! `--max-age` over the wire: the frontend's own sweeper drops messages
//! older than it, and every transport tells a client that resumes before
//! them what it missed at once (SPEC 3's `saw`, the SSE `gap` event, the
//! WebSocket `{"missed":K}` frame), not at some later publish.

use std::time::Duration;

use serde_json::json;
use slosh_core::Settings;

use super::helpers::{read_until, spawn_app_with, App, EPOCH};
use super::websocket::{connect, next_frame};

/// Waits until the sweeper has aged out everything buffered in `topic`.
async fn wait_until_empty(app: &App, topic: &str) {
    for _ in 0..500 {
        if app
            .hub
            .info(topic)
            .is_some_and(|info| info["buffered"] == 0)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{topic} still buffers: {:?}", app.hub.info(topic));
}

#[tokio::test]
async fn messages_older_than_max_age_leave_and_every_transport_counts_them() {
    let app = spawn_app_with(Settings {
        max_age: Some(Duration::from_millis(200)),
        ..Settings::default()
    })
    .await;
    for n in 1..=3 {
        assert_eq!(app.post_json("old", &n.to_string()).await.status, 200);
    }
    // The sweeper runs at least once a second; the messages are 200 ms old
    // well before its second run.
    wait_until_empty(&app, "old").await;
    let info = app.get("/topics/old.info").await.json();
    assert_eq!(
        (info["max"].clone(), info["buffered"].clone()),
        (json!(3), json!(0))
    );

    // Long-poll: answered at once, the loss in saw.
    assert_eq!(
        app.get("/topics/old.json?n=1").await.json(),
        json!({"max": 3, "epoch": EPOCH, "saw": 2, "delivering": 0, "res": []})
    );
    let xml = app.get("/topics/old.xml?n=0").await.body;
    assert!(xml.contains(r#"saw="3" delivering="0">"#), "{xml}");

    // SSE: the gap comes before anything is published again.
    let mut stream = app.open("/topics/old.sse", &[("Last-Event-ID", "1")]).await;
    let mut seen = String::new();
    read_until(
        &mut stream,
        &mut seen,
        "event: gap\ndata: {\"missed\":2}\n\n",
    )
    .await;

    // WebSocket: the same count as a frame.
    let mut ws = connect(&app, "/topics/old?n=0", &[]).await;
    assert_eq!(next_frame(&mut ws).await, json!({"missed": 3}));

    // What is published now is delivered once, with no second gap.
    assert_eq!(app.post_json("old", "4").await.status, 200);
    assert_eq!(
        next_frame(&mut ws).await,
        json!({"id": 4, "epoch": EPOCH, "data": 4})
    );
    read_until(
        &mut stream,
        &mut seen,
        &format!("id: 4@{EPOCH}\ndata: 4\n\n"),
    )
    .await;
    assert_eq!(seen.matches("event: gap").count(), 1, "{seen:?}");

    let metrics = app.get("/metrics").await.body;
    assert!(
        metrics
            .lines()
            .any(|l| l == "slosh_messages_expired_total 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn without_max_age_nothing_ages_out() {
    let app = spawn_app_with(Settings::default()).await;
    assert_eq!(app.post_json("kept", "1").await.status, 200);
    // Two sweeps at least.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(app.hub.info("kept").unwrap()["buffered"], 1);
}
