//! A client that leaves is noticed at once, while its request is parked or
//! its stream is idle, not at the next write: subscriber counts, mailbox
//! refusal and linger depend on it. Every frontend must behave the same.

use std::time::Duration;

use slosh_core::{Mode, Settings};

use super::helpers::{read_until, spawn_app, spawn_app_with};

#[tokio::test]
async fn long_polls_whose_clients_disconnect_are_no_longer_counted() {
    let app = spawn_app().await;
    let mut polls = Vec::new();
    for _ in 0..10 {
        polls.push(app.open("/topics/left.json", &[]).await);
    }
    let mut stays = app.open("/topics/left.json", &[]).await;
    app.wait_for_subscribers("left", 11).await;

    drop(polls);
    // Nothing is published and no timeout runs out: only the closed
    // sockets can tell the server.
    app.wait_for_subscribers("left", 1).await;

    // The one still waiting is answered as before.
    assert_eq!(app.post_form("left", "x=still").await.status, 200);
    let mut seen = String::new();
    read_until(&mut stays, &mut seen, "still").await;
}

#[tokio::test]
async fn an_idle_event_stream_whose_client_closes_is_no_longer_counted() {
    let app = spawn_app().await;
    let mut stream = app.open("/topics/quiet.sse", &[]).await;
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, "retry: 3000").await;
    app.wait_for_subscribers("quiet", 1).await;
    drop(stream);
    // No publish, no heartbeat (15 s away): the close alone is noticed.
    app.wait_for_subscribers("quiet", 0).await;
}

#[tokio::test]
async fn a_mailbox_refuses_publishes_once_its_only_sse_watcher_has_left() {
    let app = spawn_app_with(Settings {
        mode: Mode::Mailbox,
        linger: Duration::from_millis(200),
        ..Settings::default()
    })
    .await;
    let mut stream = app.open("/topics/inbox.sse", &[]).await;
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, "retry: 3000").await;
    app.wait_for_subscribers("inbox", 1).await;
    assert_eq!(app.post_form("inbox", "x=seen").await.status, 200);
    read_until(&mut stream, &mut seen, "seen").await;
    drop(stream);

    // Without a publish to reveal the closed socket, the topic must still
    // go once the linger after its last watcher runs out, and a publish
    // then reaches nobody: 404.
    let started = std::time::Instant::now();
    while app.get("/topics/inbox.info").await.status == 200 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the mailbox outlived its watcher: {:?}",
            app.hub.info("inbox")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.post_form("inbox", "x=nobody").await.status, 404);
}
