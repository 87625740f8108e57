//! Server-wide behaviour over HTTP: CORS, health, metrics, the demo.

use slosh_core::Settings;

use super::helpers::{spawn_app, spawn_app_with};

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
    let demo = app.get("/").await;
    assert_eq!(demo.status, 200);
    assert_eq!(
        demo.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(app.get("/nothing-here").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_dropped_after_the_header_timeout() {
    let options = super::helpers::ServeOptions {
        header_timeout: std::time::Duration::from_millis(300),
        ..super::helpers::ServeOptions::default()
    };
    let app = super::helpers::spawn_app_with_options(Settings::default(), options).await;
    let addr = app.addr;
    let (closed, waited) = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut slow = std::net::TcpStream::connect(addr).unwrap();
        slow.write_all(b"GET /topics/t.json HTTP/1.1\r\nHost: t\r\nX-Slow: ")
            .unwrap();
        slow.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let started = std::time::Instant::now();
        let mut rest = Vec::new();
        let closed = slow.read_to_end(&mut rest).is_ok();
        (closed, started.elapsed())
    })
    .await
    .unwrap();
    assert!(
        closed,
        "the server closed the connection (waited {waited:?})"
    );
    assert!(
        waited >= std::time::Duration::from_millis(250),
        "{waited:?}"
    );
    // Other clients are served meanwhile and afterwards.
    assert_eq!(app.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn oversized_request_headers_get_431() {
    let app = spawn_app().await;
    let huge = "a".repeat(512 * 1024);
    let answer = app
        .send("GET", "/topics/t.json", &[("X-Huge", &huge)], b"")
        .await;
    assert_eq!(answer.status, 431);
    assert_eq!(app.get("/healthz").await.status, 200);
}
