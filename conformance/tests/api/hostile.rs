//! Hostile clients: an endless body, garbage, half-closed and silent
//! sockets, and attempts to inject headers. Each must get a clear answer
//! (or a closed connection) while every other client is served as usual.
//! The slow head, oversized head and connection limit are in `limits.rs`;
//! a WebSocket that never reads is in `websocket.rs`.

use std::time::Duration;

use slosh_core::Settings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::helpers::{parse, spawn_app, spawn_app_with, spawn_app_with_options, ServeOptions};

/// Reads whatever the server sends until it closes the connection, an error
/// ends the read, or `patience` passes; returns the bytes and whether the
/// connection ended (rather than patience running out).
async fn read_until_closed(stream: &mut TcpStream, patience: Duration) -> (Vec<u8>, bool) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (seen, true),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => return (seen, false),
        }
    }
}

/// A chunked body that never ends is cut at `max_message`: the client gets
/// `413`, nothing is stored, and the server does not read on for ever.
#[tokio::test]
async fn an_endless_chunked_body_is_cut_at_max_message_with_413() {
    let app = spawn_app_with(Settings {
        max_message: 4096,
        ..Settings::default()
    })
    .await;
    let stream = TcpStream::connect(app.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move {
        let head = "POST /topics/endless HTTP/1.1\r\nHost: test\r\n\
                    Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";
        writer.write_all(head.as_bytes()).await?;
        let chunk = format!("4000\r\n{}\r\n", "x".repeat(0x4000));
        // Until the server stops reading, or for 15 s at most.
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(15) {
            writer.write_all(chunk.as_bytes()).await?;
        }
        Ok::<_, std::io::Error>(())
    });
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), reader.read(&mut buf))
            .await
            .expect("an answer before the body ends")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    // The writer is stopped by the server closing, not by running out.
    let wrote_everything = tokio::time::timeout(Duration::from_secs(10), writing)
        .await
        .expect("the server stops reading the endless body")
        .unwrap()
        .is_ok();
    assert!(
        !wrote_everything,
        "the server read 64 MiB of an endless body"
    );
    assert_eq!(app.get("/topics/endless.info").await.status, 404);
    assert_eq!(app.get("/healthz").await.status, 200);
}

/// Garbage instead of HTTP gets `400` or a closed connection, never a hang
/// or a crash; other clients are served throughout.
#[tokio::test]
async fn garbage_bytes_get_400_or_a_close_and_disturb_nobody() {
    let app = spawn_app().await;
    let garbage: [&[u8]; 6] = [
        b"\x00\x01\x02\x03\xff\xfe\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /topics/t.json HTTP/9.9\r\n\r\n",
        b"GET /topics/t.json HTTP/1.1\r\nHost: t\r\nContent-Length: -5\r\n\r\n",
        b"POST /topics/t HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 7\r\n\r\nabc",
        b"GET /topics/t.json HTTP/1.1\r\nHo\x00st: t\r\n\r\n",
    ];
    for bytes in garbage {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        let (answer, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(
            closed,
            "{:?}: the connection was left open",
            String::from_utf8_lossy(bytes)
        );
        assert!(
            answer.is_empty()
                || text.starts_with("HTTP/1.1 400")
                || text.starts_with("HTTP/1.0 400"),
            "{:?}: {text}",
            String::from_utf8_lossy(bytes)
        );
        assert_eq!(app.get("/healthz").await.status, 200);
    }
    // Nothing the garbage said was taken as a publish.
    assert_eq!(app.get("/topics/t.info").await.status, 404);
}

/// A client that sends its request and shuts its write side is still
/// answered; one that half-closes mid-request is dropped. Neither holds up
/// anybody else.
#[tokio::test]
async fn half_closed_sockets_are_answered_or_dropped_and_disturb_nobody() {
    let app = spawn_app().await;

    let mut whole = TcpStream::connect(app.addr).await.unwrap();
    whole
        .write_all(b"POST /topics/half HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nx=1&y")
        .await
        .unwrap();
    whole.shutdown().await.unwrap();
    let (answer, closed) = read_until_closed(&mut whole, Duration::from_secs(5)).await;
    assert!(closed);
    assert_eq!(parse(&answer).status, 200);

    let mut partial = TcpStream::connect(app.addr).await.unwrap();
    partial
        .write_all(b"POST /topics/half HTTP/1.1\r\nHost: t\r\nContent-Length: 50\r\n\r\nx=1")
        .await
        .unwrap();
    partial.shutdown().await.unwrap();
    let (answer, closed) = read_until_closed(&mut partial, Duration::from_secs(5)).await;
    assert!(closed, "a half-closed, half-sent request is not waited on");
    if !answer.is_empty() {
        assert_eq!(parse(&answer).status, 400);
    }

    let mut head_only = TcpStream::connect(app.addr).await.unwrap();
    head_only
        .write_all(b"GET /topics/half.json?n=0 HTTP/1.1\r\nHo")
        .await
        .unwrap();
    head_only.shutdown().await.unwrap();
    let (_, closed) = read_until_closed(&mut head_only, Duration::from_secs(5)).await;
    assert!(closed);

    // Only the whole request was stored.
    let batch = app.get("/topics/half.json?n=0").await.json();
    assert_eq!(batch["max"], 1, "{batch}");
    assert_eq!(batch["res"][0]["y"][0], "", "{batch}");
}

/// Hundreds of connections that never send a byte hold at most the
/// connection limit, and are dropped at the head timeout, after which a
/// new client is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_bounded_and_dropped_at_the_head_timeout() {
    let app = spawn_app_with_options(
        Settings::default(),
        ServeOptions {
            header_timeout: Duration::from_secs(1),
            max_connections: 50,
            ..ServeOptions::default()
        },
    )
    .await;
    let mut silent = Vec::new();
    for _ in 0..300 {
        silent.push(TcpStream::connect(app.addr).await.unwrap());
    }
    // Within the head timeout (and actix's 500 ms clock) plus slack every
    // silent connection the server took is closed.
    let started = std::time::Instant::now();
    let mut served = false;
    while started.elapsed() < Duration::from_secs(8) {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let (answer, _) = read_until_closed(&mut stream, Duration::from_millis(500)).await;
        if answer.starts_with(b"HTTP/1.1 200") {
            served = true;
            break;
        }
    }
    assert!(served, "no client served within 8 s of 300 silent ones");
    let mut closed = 0;
    for stream in &mut silent {
        let (_, ended) = read_until_closed(stream, Duration::from_millis(10)).await;
        closed += usize::from(ended);
    }
    // Every connection the server accepted was dropped; the rest wait in
    // the backlog (actix) or were closed at once (hyper).
    assert!(
        closed >= 50,
        "only {closed} of 300 silent connections closed"
    );
}

/// CR and LF cannot reach a header through anything a client controls:
/// topic names, cursors, `Last-Event-ID`, the `Origin` echoed by CORS.
#[tokio::test]
async fn no_header_can_be_injected_through_names_cursors_or_origins() {
    let app = spawn_app_with(Settings {
        cors_origins: vec!["*".into()],
        ..Settings::default()
    })
    .await;
    let probes = [
        "/topics/a%0d%0aSet-Cookie:%20x=1.json",
        "/topics/a%0aX-Injected:%201",
        "/topics/a.json?n=1%0d%0aX-Injected:%201",
        "/topics/a.sse?n=%0d%0aX-Injected:%201",
        "/%0d%0aX-Injected:%201",
    ];
    for target in probes {
        let answer = app.get(target).await;
        assert!(
            answer.status == 400 || answer.status == 404,
            "{target}: {}",
            answer.status
        );
        assert!(
            !answer.headers.iter().any(|(name, value)| {
                let injected = name.eq_ignore_ascii_case("x-injected");
                let cookie = name.eq_ignore_ascii_case("set-cookie") && value.contains("x=1");
                injected || cookie
            }),
            "{target}: {:?}",
            answer.headers
        );
    }
    // A header value is one line by HTTP's own rules, so what arrives is
    // already free of CR/LF; check the echoes keep to the value sent.
    assert_eq!(app.post_form("a", "x=1").await.status, 200);
    let answer = app
        .send(
            "GET",
            "/topics/a.json?n=0",
            &[
                ("Origin", "https://x.example"),
                ("Last-Event-ID", "1 X-Injected: 1"),
            ],
            b"",
        )
        .await;
    assert_eq!(answer.status, 200);
    assert!(answer
        .headers
        .iter()
        .all(|(name, _)| !name.eq_ignore_ascii_case("x-injected")));
}
