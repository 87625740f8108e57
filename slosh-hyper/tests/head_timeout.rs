//! What the head timeout spares (`clock.rs`): nothing is timed while a
//! write to the client is blocked, and the timeout runs from the later of
//! the answer and the last write, so a reader that keeps reading gets all
//! of a large answer however long it takes; and an event stream is a
//! request in progress for as long as it runs.

use std::time::{Duration, Instant};

use slosh_core::{Hub, Settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

const MESSAGE: usize = 1 << 20;
const MESSAGES: usize = 8;
const HEAD_TIMEOUT: Duration = Duration::from_secs(1);

/// A server with one topic holding eight 1 MiB messages, and the address.
async fn server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hub = Hub::builder()
        .settings(Settings {
            queue: MESSAGES,
            max_message: MESSAGE + 16,
            ..Settings::default()
        })
        .build();
    let text = "x".repeat(MESSAGE);
    for _ in 0..MESSAGES {
        hub.publish("big", &text).unwrap();
    }
    let options = slosh_hyper::ServeOptions {
        header_timeout: HEAD_TIMEOUT,
        ..slosh_hyper::ServeOptions::default()
    };
    tokio::spawn(slosh_hyper::serve_with(
        listener,
        hub,
        options,
        std::future::pending(),
    ));
    addr
}

/// Asks for the whole topic (8 MiB) with a small receive buffer, so most of
/// the answer waits in the server until the client reads.
async fn ask(addr: std::net::SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream
        .write_all(b"GET /topics/big.json?n=0 HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    stream
}

#[tokio::test]
async fn a_slow_reader_gets_the_whole_answer_past_the_head_timeout() {
    let addr = server().await;
    let mut stream = ask(addr).await;
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut expected = None;
    // About 3 MiB/s: the 8 MiB answer takes more than two head timeouts.
    while expected.is_none_or(|expected| seen.len() < expected) {
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("the answer keeps coming");
        match read {
            Ok(0) => panic!(
                "closed after {} bytes and {:?}",
                seen.len(),
                started.elapsed()
            ),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(error) => panic!("read failed after {} bytes: {error}", seen.len()),
        }
        if expected.is_none() {
            if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&seen[..end]).to_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length: "))
                    .expect("a whole answer has a length")
                    .parse()
                    .unwrap();
                expected = Some(end + 4 + length);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        started.elapsed() > HEAD_TIMEOUT * 2,
        "the reader was slow enough to matter ({:?})",
        started.elapsed()
    );
    assert!(seen.starts_with(b"HTTP/1.1 200"));
    assert!(seen.len() > MESSAGES * MESSAGE);
}

/// An event stream that stays with hyper (`Connection: close` keeps it
/// from being handed off) is a request in progress for as long as it
/// runs: a message published after three head timeouts still arrives.
#[tokio::test]
async fn a_stream_through_hyper_outlives_the_head_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hub = Hub::builder().build();
    let options = slosh_hyper::ServeOptions {
        header_timeout: HEAD_TIMEOUT,
        ..slosh_hyper::ServeOptions::default()
    };
    tokio::spawn(slosh_hyper::serve_with(
        listener,
        hub.clone(),
        options,
        std::future::pending(),
    ));
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /topics/s.sse HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            tokio::time::sleep(HEAD_TIMEOUT * 3).await;
            hub.publish("s", &"late").unwrap();
        })
    };
    while !String::from_utf8_lossy(&seen).contains("data: \"late\"") {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("the stream stays open");
        match read {
            Ok(0) => panic!("closed: {}", String::from_utf8_lossy(&seen)),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(error) => panic!("read failed: {error}"),
        }
    }
    publisher.await.unwrap();
}
