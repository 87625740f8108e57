//! The same requests to `slosh-hyper` and `slosh-actix`, answers compared:
//! same status, the same headers with the same values (but `Date`, and the
//! session id inside `Set-Cookie`), and bodies identical byte for byte.
//!
//! Each frontend gets a fresh server with the same settings, and the
//! requests go in the same order, so every id, counter and cursor matches.
//! Bodies are compared after chunked framing is removed: where a body is
//! split into chunks is the HTTP library's business, what it says is ours.

#[allow(dead_code)] // the suite's helpers, of which this binary uses a few
#[path = "api/helpers.rs"]
mod helpers;

use std::time::Duration;

use helpers::{dechunk, spawn_frontend, Frontend, ServeOptions};
use slosh_core::Settings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `spawn_app()` is not used here; the helpers want the constant anyway.
const FRONTEND: Frontend = Frontend::Hyper;

/// One request of the script: method, target, extra header lines, body.
struct Step {
    method: &'static str,
    target: &'static str,
    headers: &'static str,
    body: &'static [u8],
}

const fn step(
    method: &'static str,
    target: &'static str,
    headers: &'static str,
    body: &'static [u8],
) -> Step {
    Step {
        method,
        target,
        headers,
        body,
    }
}

const JSON: &str = "Content-Type: application/json\r\n";
const AUTH: &str = "Authorization: Bearer sesame\r\n";
/// A WebSocket handshake by the book (the key is RFC 6455's example).
const UPGRADE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

/// The script: every kind of answer the hub gives that fits in one
/// request, in an order that builds on itself (publish, then read).
const SCRIPT: &[Step] = &[
    step("GET", "/healthz", "", b""),
    step("GET", "/", "", b""),
    step("GET", "/chat-sse.html", "", b""),
    step("HEAD", "/chat-json.html", "", b""),
    step("GET", "/no-such-page.html", "", b""),
    step("GET", "/topics/a.json", "", b""),
    step("POST", "/topics/a", AUTH, b"x=hello!&x=again&y=1"),
    step("POST", "/topics/a", "", b"x=no-token"),
    step(
        "POST",
        "/topics/a",
        "Authorization: Bearer wrong\r\n",
        b"x=1",
    ),
    step(
        "POST",
        "/topics/a",
        "Content-Type: application/json\r\nAuthorization: Bearer sesame\r\n",
        br#"{"response":{"message":[{"@id":"123","event":"Some Event Text"}]}}"#,
    ),
    step(
        "POST",
        "/topics/a",
        "Content-Type: text/plain; charset=utf-8\r\nAuthorization: Bearer sesame\r\n",
        "plain text, é".as_bytes(),
    ),
    step(
        "POST",
        "/topics/a",
        "Content-Type: application/json\r\nAuthorization: Bearer sesame\r\n",
        b"{\"broken\": ",
    ),
    step(
        "POST",
        "/topics/a",
        "Content-Type: text/xml\r\nAuthorization: Bearer sesame\r\n",
        b"<x/>",
    ),
    step("POST", "/topics/a", AUTH, b""),
    step("POST", "/topics/a", AUTH, &[b'x'; 1025]),
    step("POST", "/topics/a", AUTH, &[b'x'; 1024]),
    step("GET", "/topics/a.json?n=0", "", b""),
    step("GET", "/topics/a.xml?n=0", "", b""),
    step("GET", "/topics/a?n=2", "Accept: application/json\r\n", b""),
    step("GET", "/topics/a.json?n=-1", "", b""),
    step("GET", "/topics/a.json?n=1&n=2", "", b""),
    step("GET", "/topics/a.json?n=99", "", b""),
    step("HEAD", "/topics/a.json?n=0", "", b""),
    step("GET", "/topics/a.info", "", b""),
    step("GET", "/topics", "", b""),
    step("GET", "/topics/.json", "", b""),
    step("GET", "/topics/a.yaml", "", b""),
    step("FROB", "/topics/a", "", b""),
    step("PUT", "/topics/a", JSON, b"{}"),
    step(
        "OPTIONS",
        "/topics/a",
        "Origin: https://app.example\r\nAccess-Control-Request-Method: POST\r\n",
        b"",
    ),
    step(
        "GET",
        "/topics/a.json?n=0",
        "Origin: https://app.example\r\n",
        b"",
    ),
    step(
        "GET",
        "/topics/a.json?n=0",
        "Origin: https://elsewhere.example\r\n",
        b"",
    ),
    step("GET", "/topics/%ff.json", "", b""),
    step(
        "GET",
        "/topics/a",
        "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        b"",
    ),
    step("GET", "/topics/a?n=1", UPGRADE, b""),
    step("GET", "/%2e%2e/etc/passwd", "", b""),
    step("DELETE", "/topics/a", "", b""),
    step("DELETE", "/topics/a", AUTH, b""),
    step("DELETE", "/topics/a", AUTH, b""),
    step("GET", "/topics/a.info", "", b""),
    step("GET", "/topics/a.sse", "Last-Event-ID: 3\r\n", b""),
    step("GET", "/topics/a.sse?n=0", "Last-Event-ID: 3\r\n", b""),
    step("GET", "/metrics", "", b""),
];

/// The same settings for both servers: small limits so the limits are
/// reachable, a token and a CORS origin so their headers show.
fn settings() -> Settings {
    Settings {
        poll_timeout: Some(Duration::from_millis(200)),
        max_message: 1024,
        publish_token: Some("sesame".into()),
        cors_origins: vec!["https://app.example".into()],
        ..Settings::default()
    }
}

/// An answer reduced to what must match.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    status: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Sends `step` on a fresh connection and reads the answer to its end.
async fn exchange(addr: std::net::SocketAddr, step: &Step) -> Seen {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{}",
        step.method, step.target, step.headers
    );
    if !step.body.is_empty() || step.method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", step.body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(step.body).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
        .await
        .unwrap_or_else(|_| panic!("{} {}: no end within 5 s", step.method, step.target))
        .unwrap();
    reduce(&raw, step.method == "HEAD")
}

/// Splits a raw answer into status line, normalized headers and body.
fn reduce(raw: &[u8], head_only: bool) -> Seen {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().to_string();
    let mut headers: Vec<(String, String)> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.trim().to_ascii_lowercase(), value.trim().to_string())
        })
        .filter(|(name, _)| name != "date")
        .map(|(name, value)| {
            let value = if name == "set-cookie" {
                hide_session_id(&value)
            } else {
                value
            };
            (name, value)
        })
        .collect();
    headers.sort();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if head_only {
        rest.to_vec()
    } else if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Seen {
        status,
        headers,
        body,
    }
}

/// `slosh=ID; Path=…` → `slosh=*; Path=…`: ids are random.
fn hide_session_id(cookie: &str) -> String {
    match cookie.split_once('=') {
        Some((name, rest)) => {
            let attributes = rest.split_once(';').map_or("", |(_, after)| after);
            format!("{name}=*;{attributes}")
        }
        None => cookie.to_string(),
    }
}

/// Runs the whole script against `frontend` and returns every answer.
async fn run(frontend: Frontend) -> Vec<Seen> {
    let app = spawn_frontend(frontend, settings(), ServeOptions::default()).await;
    let mut seen = Vec::new();
    for step in SCRIPT {
        if step.headers == UPGRADE {
            seen.push(upgrade_head(app.addr, step).await);
        } else if step.target.ends_with(".sse?n=0") {
            // A stream has no end of its own: end it by deleting the
            // topic while it is open, then read it whole.
            seen.push(stream_until_deleted(&app, step).await);
        } else {
            seen.push(exchange(app.addr, step).await);
        }
    }
    seen
}

/// Sends the upgrade step and returns the `101` head (a socket has no end
/// to read to; its frames are the WebSocket tests' business).
async fn upgrade_head(addr: std::net::SocketAddr, step: &Step) -> Seen {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET {} HTTP/1.1\r\nHost: test\r\n{}\r\n",
        step.target, step.headers
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte))
            .await
            .expect("the upgrade answer within 5 s")
            .unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&raw));
        raw.push(byte[0]);
    }
    reduce(&raw, true)
}

/// Opens the SSE step, waits for its buffered events, deletes the topic
/// (which ends the stream) and returns the whole answer.
async fn stream_until_deleted(app: &helpers::App, step: &Step) -> Seen {
    // The topic was deleted above; publish two messages so there is
    // something to resume into.
    for body in ["4th", "5th"] {
        let publish = Step {
            method: "POST",
            target: "/topics/a",
            headers: "Content-Type: text/plain\r\nAuthorization: Bearer sesame\r\n",
            body: body.as_bytes(),
        };
        assert!(exchange(app.addr, &publish).await.status.contains("200"));
    }
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "GET {} HTTP/1.1\r\nHost: test\r\n{}\r\n",
        step.target, step.headers
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&raw).contains("5th") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("the buffered events within 5 s")
            .unwrap();
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&raw));
        raw.extend_from_slice(&buf[..n]);
    }
    let delete = Step {
        method: "DELETE",
        target: "/topics/a",
        headers: AUTH,
        body: b"",
    };
    assert!(exchange(app.addr, &delete).await.status.contains("200"));
    // The stream ends with its last chunk; the connection itself may stay
    // open for the next request, so read up to the terminating chunk.
    while !raw.ends_with(b"0\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("the end of the stream within 5 s")
            .unwrap();
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    reduce(&raw, false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_frontends_answer_the_same_requests_with_the_same_bytes() {
    let hyper = run(Frontend::Hyper).await;
    let actix = run(Frontend::Actix).await;
    let mut differences = Vec::new();
    for ((step, h), a) in SCRIPT.iter().zip(&hyper).zip(&actix) {
        if h != a {
            differences.push(format!(
                "{} {} {}\n  hyper: {} {:?}\n         {:?}\n  actix: {} {:?}\n         {:?}",
                step.method,
                step.target,
                step.headers.trim(),
                h.status,
                h.headers,
                String::from_utf8_lossy(&h.body),
                a.status,
                a.headers,
                String::from_utf8_lossy(&a.body),
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} answers differ:\n{}",
        differences.len(),
        SCRIPT.len(),
        differences.join("\n")
    );
    // The script reached what it meant to: not every answer the same.
    let statuses: std::collections::BTreeSet<&str> = hyper
        .iter()
        .map(|seen| seen.status.split(' ').nth(1).unwrap())
        .collect();
    for status in ["200", "204", "400", "401", "404", "405", "413", "415"] {
        assert!(statuses.contains(status), "no {status} in {statuses:?}");
    }
}
