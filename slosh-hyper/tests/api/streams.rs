//! Server-Sent Events over a real socket.

use crate::helpers::{read_until, spawn_app};

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
        "id: 1\ndata: {\"event\":\"Some Event Text\"}\n\n",
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
    read_until(&mut stream, &mut seen, "id: 3\ndata: 3\n\n").await;
    assert!(seen.contains("id: 2\ndata: 2\n\n"));
    assert!(!seen.contains("id: 1\n"));
}

#[tokio::test]
async fn delete_ends_the_stream_and_a_reconnect_is_told_to_stop() {
    let app = spawn_app().await;
    let mut stream = app.open("/topics/doomed.sse", &[]).await;
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, "retry: 3000\n\n").await;
    app.post_json("doomed", "1").await;
    read_until(&mut stream, &mut seen, "id: 1\ndata: 1\n\n").await;
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
    // The server notices when it next writes; a publish makes it write.
    app.post_json("gone", "1").await;
    app.wait_for_subscribers("gone", 0).await;
}
