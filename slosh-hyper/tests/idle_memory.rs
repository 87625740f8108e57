//! What an idle WebSocket costs the server, in a test binary of its own so
//! no other test's allocations move the process's RSS meanwhile. The
//! precise figures come from `slosh-load connect --websocket` against a
//! release server (benches/README.md); this catches a regression by an
//! order of magnitude, such as tungstenite's default read buffer, which it
//! zero-fills whole (128 KiB) at a socket's first read.

use std::time::Duration;

use slosh_core::Hub;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Pages resident, in bytes.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Upgrades a raw connection and returns it once the `101` is read.
async fn idle_socket(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"GET /topics/idle HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "closed early");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_websocket_costs_kilobytes_not_a_read_buffer_of_128_kib() {
    const SOCKETS: u64 = 400;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hub = Hub::builder().build();
    tokio::spawn(slosh_hyper::serve(
        listener,
        hub.clone(),
        std::future::pending(),
    ));
    // Warm up: the first sockets pay for the runtime's and allocator's
    // one-time growth.
    let mut sockets = Vec::new();
    for _ in 0..50 {
        sockets.push(idle_socket(addr).await);
    }
    let before = rss_bytes();
    for _ in 0..SOCKETS {
        sockets.push(idle_socket(addr).await);
    }
    // Every socket's task has run its first read by now.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let each = rss_bytes().saturating_sub(before) / SOCKETS;
    eprintln!("{each} bytes of RSS per idle WebSocket");
    let info = hub.info("idle").unwrap();
    assert_eq!(info["subscribers"], 450, "{info}");
    // Release builds measure about 4 KB; a debug build and the client's
    // side of each connection add some. 128 KiB would be far past this.
    assert!(each < 32 * 1024, "{each} bytes of RSS per idle WebSocket");
}
