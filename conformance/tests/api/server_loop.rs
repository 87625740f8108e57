//! What `serve_with` adds around the service: the connection limit and the
//! sweeper that expires topics.

use std::time::Duration;

use slosh_core::{Mode, Settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::helpers::{read_until, spawn_app_with, spawn_app_with_options, Client, ServeOptions};

/// Asks `/healthz` on an open keep-alive connection. `Err` when the server
/// closed the connection without answering.
async fn ask_health(stream: &mut TcpStream) -> Result<(), String> {
    let request = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n";
    if let Err(error) = stream.write_all(request).await {
        return Err(format!("write failed: {error}"));
    }
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.ends_with(b"\r\n\r\nok") {
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .map_err(|_| "no answer within 5 s".to_string())?;
        match read {
            Ok(0) => return Err("closed without an answer".into()),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(error) => return Err(format!("read failed: {error}")),
        }
    }
    Ok(())
}

/// Opens a connection and asks `/healthz` on it.
async fn connect_and_ask(client: &Client) -> Result<TcpStream, String> {
    let mut stream = TcpStream::connect(client.addr).await.unwrap();
    ask_health(&mut stream).await.map(|()| stream)
}

#[tokio::test]
async fn a_connection_past_the_limit_is_closed_unanswered_and_the_others_are_served() {
    let options = ServeOptions {
        max_connections: 2,
        ..ServeOptions::default()
    };
    let app = spawn_app_with_options(Settings::default(), options).await;
    let mut first = connect_and_ask(&app).await.unwrap();
    let mut second = connect_and_ask(&app).await.unwrap();

    let third = connect_and_ask(&app).await;
    assert!(third.is_err(), "a third connection was served");

    ask_health(&mut first).await.unwrap();
    ask_health(&mut second).await.unwrap();

    // The slot comes free when the server has seen the close, not at once:
    // retry briefly instead of sleeping a guessed time.
    drop(first);
    let mut last = String::new();
    for _ in 0..100 {
        match connect_and_ask(&app).await {
            Ok(_) => {
                ask_health(&mut second).await.unwrap();
                return;
            }
            Err(error) => last = error,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no connection served after one of two closed: {last}");
}

/// Real time on purpose: the expiry rule itself is tested with injected
/// time in core; this checks that `serve_with` runs the sweeper at all. The
/// sweeper runs once a second and starts the linger at the first sweep that
/// finds the topic unwatched, so expiry comes within 2 s plus the linger.
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
