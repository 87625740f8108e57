//! Server-wide behaviour over HTTP: CORS, health, metrics, the demo.

use slosh_core::Settings;

use super::helpers::{host_owns_root, spawn_app, spawn_app_with};

#[tokio::test]
async fn a_cors_preflight_is_answered_and_creates_no_topic() {
    let app = spawn_app_with(Settings {
        cors_origins: vec!["http://app.test".into()],
        ..Settings::default()
    })
    .await;
    let answer = app
        .send(
            "OPTIONS",
            "/topics/fresh",
            &[
                ("Origin", "http://app.test"),
                ("Access-Control-Request-Method", "POST"),
            ],
            b"",
        )
        .await;
    assert_eq!(answer.status, 204);
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some("http://app.test")
    );
    assert_eq!(app.hub.topic_count(), 0);
}

#[tokio::test]
async fn health_metrics_and_the_demo_answer() {
    let app = spawn_app().await;
    let health = app.get("/healthz").await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));
    app.post_form("t", "x=1").await;
    let metrics = app.get("/metrics").await;
    assert!(
        metrics
            .body
            .lines()
            .any(|l| l == "slosh_messages_published_total 1"),
        "{}",
        metrics.body
    );
    let demo = app
        .get(if host_owns_root() {
            "/chat-sse.html"
        } else {
            "/"
        })
        .await;
    assert_eq!(demo.status, 200);
    assert_eq!(
        demo.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(app.get("/nothing-here").await.status, 404);
}

/// Health checkers and link checkers send HEAD: the health, metrics and
/// demo pages answer it as GET without the body; topic URLs still refuse.
#[tokio::test]
async fn head_is_answered_on_health_metrics_and_demo_pages() {
    let app = spawn_app().await;
    for target in ["/healthz", "/metrics", "/chat-sse.html"] {
        let raw = app.send_raw("HEAD", target).await;
        let answer = String::from_utf8(raw).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{target}: {answer}");
        assert!(
            answer.ends_with("\r\n\r\n"),
            "{target} sent a body: {answer}"
        );
        let get = app.get(target).await;
        let length = format!("content-length: {}\r\n", get.body.len());
        if target != "/metrics" {
            // (metrics change between the two requests)
            assert!(
                answer.to_ascii_lowercase().contains(&length),
                "{target}: {answer}"
            );
        }
    }
    let topic = app.send("HEAD", "/topics/t.json", &[], b"").await;
    assert_eq!(topic.status, 405);
}
