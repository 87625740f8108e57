//! `slosh-floor` as a client sees it: the binary on a free loopback port,
//! SSE subscribers, a keep-alive publisher, and a refused request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The running server; killed when the test ends, however it ends.
struct Floor {
    child: Child,
    addr: String,
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_floor(max_subscribers: usize) -> Floor {
    let mut child = Command::new(env!("CARGO_BIN_EXE_slosh-floor"))
        .args(["--bind", "127.0.0.1:0", "--max-subscribers"])
        .arg(max_subscribers.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut floor = Floor {
        child,
        addr: String::new(),
    };
    BufReader::new(stdout).read_line(&mut floor.addr).unwrap();
    floor.addr = floor.addr.trim().to_string();
    assert!(floor.addr.starts_with("127.0.0.1:"), "{:?}", floor.addr);
    floor
}

fn connect(floor: &Floor) -> TcpStream {
    let stream = TcpStream::connect(&floor.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stream
}

/// Reads until what came so far ends with `end`.
fn read_until(stream: &mut TcpStream, got: &mut Vec<u8>, end: &[u8]) {
    let mut chunk = [0u8; 1024];
    while !got.ends_with(end) {
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(got));
        got.extend_from_slice(&chunk[..n]);
    }
}

/// Subscribes and returns once the stream's first block has arrived.
fn subscribe(floor: &Floor, topic: &str) -> TcpStream {
    let mut stream = connect(floor);
    write!(
        stream,
        "GET /topics/{topic}.sse HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    read_until(&mut stream, &mut got, b"retry: 3000\n\n");
    let head = String::from_utf8(got).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: text/event-stream\r\n"),
        "{head}"
    );
    assert!(head.contains("Cache-Control: no-cache\r\n"), "{head}");
    stream
}

/// Publishes on a kept-alive connection and returns the answer's body.
fn publish(publisher: &mut TcpStream, topic: &str, body: &str) -> String {
    write!(
        publisher,
        "POST /topics/{topic} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut got = Vec::new();
    read_until(publisher, &mut got, b"}");
    let answer = String::from_utf8(got).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    answer.split("\r\n\r\n").nth(1).unwrap().to_string()
}

#[test]
fn every_subscriber_gets_every_event_in_order_and_other_requests_are_refused() {
    let floor = spawn_floor(100);
    let mut subscribers: Vec<TcpStream> = (0..3).map(|_| subscribe(&floor, "room")).collect();
    let mut publisher = connect(&floor);
    assert_eq!(
        publish(&mut publisher, "room", r#"{"seq":0}"#),
        r#"{"ok":true,"id":1}"#
    );
    assert_eq!(
        publish(&mut publisher, "room", r#"{"seq":1}"#),
        r#"{"ok":true,"id":2}"#
    );
    let both = "id: 1\ndata: {\"seq\":0}\n\nid: 2\ndata: {\"seq\":1}\n\n";
    for subscriber in &mut subscribers {
        let mut got = Vec::new();
        read_until(subscriber, &mut got, b"id: 2\ndata: {\"seq\":1}\n\n");
        assert_eq!(String::from_utf8(got).unwrap(), both);
    }

    let mut refused = connect(&floor);
    refused
        .write_all(b"GET /topics/room.json HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    // Read to the end: the server closes after a refusal.
    refused.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 404 Not Found\r\n"), "{answer}");
}

#[test]
fn at_the_cap_closed_subscribers_make_room_and_live_ones_do_not() {
    let floor = spawn_floor(2);
    let kept = subscribe(&floor, "a");
    let closed = subscribe(&floor, "b");
    drop(closed);
    // Let the client's FIN reach the server's socket.
    std::thread::sleep(Duration::from_millis(50));
    let _third = subscribe(&floor, "a");

    let mut refused = connect(&floor);
    refused
        .write_all(b"GET /topics/a.sse HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    refused.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{answer}"
    );
    drop(kept);
}
