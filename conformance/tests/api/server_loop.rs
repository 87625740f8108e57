//! What `serve_with` adds around the service: the connection limit and the
//! sweeper that expires topics.

use std::time::Duration;

use slosh_core::{Mode, Settings};

use super::helpers::{read_until, spawn_app_with};

#[tokio::test]
async fn a_mailbox_topic_lives_while_watched_and_is_gone_a_linger_after_its_last_subscriber() {
    let app = spawn_app_with(Settings {
        mode: Mode::Mailbox,
        linger: Duration::from_millis(300),
        ..Settings::default()
    })
    .await;
    assert_eq!(app.get("/topics/box.info").await.status, 404);
    assert_eq!(app.post_form("box", "x=early").await.status, 404);

    let mut poll = app.open("/topics/box.json", &[]).await;
    app.wait_for_subscribers("box", 1).await;
    assert_eq!(app.get("/topics/box.info").await.status, 200);
    assert_eq!(app.post_form("box", "x=hello").await.status, 200);
    let mut seen = String::new();
    read_until(&mut poll, &mut seen, "hello").await;
    drop(poll);
    app.wait_for_subscribers("box", 0).await;
    assert_eq!(
        app.get("/topics/box.info").await.status,
        200,
        "never removed before the linger"
    );

    let started = std::time::Instant::now();
    while app.get("/topics/box.info").await.status == 200 {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the topic outlived its linger by far"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.post_form("box", "x=late").await.status, 404);
}
