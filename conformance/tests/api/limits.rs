//! Limits the server loops (`slosh_hyper::serve_with`, what `slosh-cli
//! serve` runs, and `slosh_actix::serve_with`) enforce at the connection
//! level: the request-head timeout, `431` for oversized headers, and the
//! connection limit.
//!
//! The two loops differ in details these tests allow for, documented in
//! docs/DECISIONS.md ("Connection limits"): at the head timeout actix writes
//! a `408` before closing where hyper just closes; past the connection limit
//! hyper closes the new connection at once where actix leaves it in the
//! listen backlog until a slot frees. Either way the slow or surplus client
//! is not served and everybody else is.

use std::time::Duration;

use slosh_core::Settings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::api::helpers::{spawn_app, spawn_app_with_options, Client, ServeOptions};

/// Asks `/healthz` on an open keep-alive connection. `Err` when the server
/// closed the connection without answering.
async fn ask_health(stream: &mut TcpStream) -> Result<(), String> {
    ask_health_within(stream, Duration::from_secs(5)).await
}

/// [`ask_health`], giving up after `patience`.
async fn ask_health_within(stream: &mut TcpStream, patience: Duration) -> Result<(), String> {
    let request = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n";
    if let Err(error) = stream.write_all(request).await {
        return Err(format!("write failed: {error}"));
    }
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.ends_with(b"\r\n\r\nok") {
        let read = tokio::time::timeout(patience, stream.read(&mut buf))
            .await
            .map_err(|_| format!("no answer within {patience:?}"))?;
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
    connect_and_ask_within(client, Duration::from_secs(5)).await
}

/// [`connect_and_ask`], giving up after `patience`.
async fn connect_and_ask_within(client: &Client, patience: Duration) -> Result<TcpStream, String> {
    let mut stream = TcpStream::connect(client.addr).await.unwrap();
    ask_health_within(&mut stream, patience)
        .await
        .map(|()| stream)
}

/// A whole second of timeout, not less: actix-http reads "now" from a clock
/// it refreshes every 500 ms, so a shorter timeout can fire on a fresh
/// connection before its first byte arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_dropped_after_the_header_timeout() {
    let options = crate::api::helpers::ServeOptions {
        header_timeout: std::time::Duration::from_secs(1),
        ..crate::api::helpers::ServeOptions::default()
    };
    let app = crate::api::helpers::spawn_app_with_options(Settings::default(), options).await;
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
        waited >= std::time::Duration::from_millis(450),
        "{waited:?}"
    );
    // Other clients are served meanwhile and afterwards.
    assert_eq!(app.get("/healthz").await.status, 200);
}

/// The head timeout runs only while the server waits for a request: a
/// long-poll parked for longer than it is answered at its own deadline on
/// the same keep-alive connection, and the connection, idle after that
/// answer, is closed. (hyper closes it at the head timeout; actix at its
/// keep-alive timeout of a few seconds.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_head_timeout_spares_a_parked_poll_and_closes_an_idle_connection() {
    let options = ServeOptions {
        header_timeout: Duration::from_secs(1),
        ..ServeOptions::default()
    };
    let settings = Settings {
        poll_timeout: Some(Duration::from_millis(2500)),
        ..Settings::default()
    };
    let app = spawn_app_with_options(settings, options).await;
    let mut stream = connect_and_ask(&app).await.unwrap();
    let started = std::time::Instant::now();
    stream
        .write_all(b"GET /topics/parked.json HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.ends_with(b"\"res\":[]}") {
        let read = tokio::time::timeout(Duration::from_secs(6), stream.read(&mut buf))
            .await
            .expect("the parked poll is answered");
        match read {
            Ok(0) => panic!("closed after {:?} with a poll parked", started.elapsed()),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(error) => panic!("read failed: {error}"),
        }
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(2400),
        "answered after {waited:?}"
    );
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));
    // Now idle: closed without a word, within the head (or keep-alive)
    // timeout.
    let idle = std::time::Instant::now();
    let read = tokio::time::timeout(Duration::from_secs(8), stream.read(&mut buf))
        .await
        .expect("an idle connection is closed");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "no more bytes, only the close: {read:?}"
    );
    assert!(
        idle.elapsed() >= Duration::from_millis(900),
        "{:?}",
        idle.elapsed()
    );
}

/// The client writes while it reads, as a browser would: a server that
/// answers 431 and closes before reading the whole head makes the rest of
/// the write fail, and that must not hide the answer.
#[tokio::test]
async fn oversized_request_headers_get_431() {
    let app = spawn_app().await;
    let stream = TcpStream::connect(app.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "GET /topics/t.json HTTP/1.1\r\nHost: test\r\nX-Huge: {}\r\n\r\n",
        "a".repeat(512 * 1024)
    );
    let writing = tokio::spawn(async move {
        // A reset once the server has answered is expected.
        let _ = writer.write_all(head.as_bytes()).await;
        writer
    });
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), reader.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => panic!("no answer within 5 s: {:?}", String::from_utf8_lossy(&seen)),
        }
    }
    drop(writing.await);
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    assert_eq!(app.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn a_connection_past_the_limit_is_not_served_and_the_others_are() {
    let options = ServeOptions {
        max_connections: 2,
        ..ServeOptions::default()
    };
    let app = spawn_app_with_options(Settings::default(), options).await;
    let mut first = connect_and_ask(&app).await.unwrap();
    let mut second = connect_and_ask(&app).await.unwrap();

    let third = connect_and_ask_within(&app, Duration::from_millis(700)).await;
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
