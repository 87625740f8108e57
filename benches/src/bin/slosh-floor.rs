//! `slosh-floor`: the least any server can spend per SSE delivery.
//!
//! A hub stripped to what `slosh-load --preset slosh sse-fanout` needs and
//! nothing more, so that its CPU per delivery is a floor no real server
//! goes below on the same kernel:
//!
//! - `GET /topics/NAME.sse` answers the head and `retry: 3000` (the first
//!   block, which the generator counts as "subscribed") in one write, and
//!   keeps the socket in the topic's list. The body runs until the server
//!   closes, so an event needs no chunk framing.
//! - `POST /topics/NAME` with a `Content-Length` body frames the message
//!   once (`id: N`, one `data:` line per body line, a blank line) and
//!   writes it to every subscriber with one `write` each, then answers
//!   `{"ok":true,"id":N}` on the kept-alive connection. A subscriber whose
//!   write fails (or stalls past [`WRITE_TIMEOUT`]) is dropped.
//! - Anything else is `404`, and the connection is closed.
//!
//! Per delivery there is the one `write` and no user-space work to speak
//! of: no allocation, no wakeup, no readiness bookkeeping, no per-subscriber
//! encoding. What is left is the kernel's cost of a small TCP write, which
//! on loopback includes the receiving socket's TCP work, done in the
//! sender's context.
//!
//! Blocking sockets, one short-lived thread per connection: a subscriber's
//! thread ends once its socket is in the list, so during a fan-out only
//! the publisher's thread runs. It listens on loopback only and prints the
//! address it bound as the first line of stdout (so `--bind 127.0.0.1:0`
//! can be used by tests).

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;

/// Largest request head: the generator's are under 200 bytes.
const MAX_HEAD: usize = 8 * 1024;
/// Largest publish body.
const MAX_BODY: usize = 64 * 1024;
/// Topics kept at once; when full, topics without subscribers are dropped
/// (with their id counter) to make room.
const MAX_TOPICS: usize = 10_000;
/// Connection threads at once; a connection beyond that is closed at once.
/// Subscriber threads end within a request's time, so only the generator's
/// 256 connects in flight and its publishers count here.
const MAX_CONNECTIONS: usize = 1024;
/// Stack per connection thread: the buffers are on the heap.
const STACK: usize = 128 * 1024;
/// How long a connection may take to send its next request (a publisher's
/// keep-alive wait, or a subscriber's head) before it is closed.
const IDLE: Duration = Duration::from_secs(30);
/// How long one event write may block on a subscriber that does not read
/// before that subscriber is dropped: one stuck client must not stop the
/// fan-out for good.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// At the subscriber cap, closed subscribers are looked for at most this
/// often (each look is a few syscalls per subscriber).
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// The head and first block of every SSE answer, written at once.
const SSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\n\
Content-Type: text/event-stream\r\n\
Cache-Control: no-cache\r\n\
Connection: close\r\n\
\r\n\
retry: 3000\n\n";

#[derive(Parser)]
#[command(
    name = "slosh-floor",
    about = "The least a server can spend per SSE delivery: one write per subscriber and nothing else"
)]
struct Cli {
    /// Address to listen on; must be in 127.0.0.0/8 (port 0 picks one; the
    /// bound address is printed on stdout's first line).
    #[arg(long, default_value = "127.0.0.1:8713")]
    bind: SocketAddr,
    /// Most SSE subscribers at once, over all topics; more get `503`.
    #[arg(long, default_value_t = 30_000)]
    max_subscribers: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !cli.bind.ip().is_loopback() {
        eprintln!("slosh-floor: --bind {}: only loopback addresses", cli.bind);
        return ExitCode::from(2);
    }
    let listener = match TcpListener::bind(cli.bind) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("slosh-floor: bind {}: {e}", cli.bind);
            return ExitCode::FAILURE;
        }
    };
    let bound = match listener.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("slosh-floor: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{bound}");
    // Whoever reads the address waits for this line; a closed stdout is
    // no reason to stop serving.
    let _ = io::stdout().flush();
    let hub = Arc::new(Hub::new(cli.max_subscribers));
    let connections = Arc::new(AtomicUsize::new(0));
    // Runs until the process is stopped; each turn accepts one connection
    // or backs off after an accept error (EMFILE must not spin).
    loop {
        match listener.accept() {
            Ok((stream, _)) => spawn_connection(stream, &hub, &connections),
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Serves `stream` on its own thread, or closes it when
/// [`MAX_CONNECTIONS`] threads are busy.
fn spawn_connection(stream: TcpStream, hub: &Arc<Hub>, connections: &Arc<AtomicUsize>) {
    if connections.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
        connections.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    let hub = hub.clone();
    let count = connections.clone();
    let spawned = thread::Builder::new().stack_size(STACK).spawn(move || {
        serve(stream, &hub);
        count.fetch_sub(1, Ordering::SeqCst);
    });
    if spawned.is_err() {
        connections.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Every topic's subscribers, behind one lock: a publish holds it for its
/// whole fan-out, and a subscriber joins under it, so a subscriber that
/// has read its first block is in the list of the next publish.
struct Hub {
    state: Mutex<Topics>,
    max_subscribers: usize,
}

struct Topics {
    by_name: HashMap<String, Topic>,
    /// Σ subscribers over `by_name`.
    subscribers: usize,
    last_sweep: Option<Instant>,
}

struct Topic {
    /// The last message's id: ids are 1, 2, 3 … per topic, as in slosh.
    last_id: u64,
    subscribers: Vec<TcpStream>,
}

/// Why a request is refused; each is answered and the connection closed.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    BadRequest,
    NotFound,
    TooLarge,
    HeadTooLarge,
    Full,
}

impl Refusal {
    fn answer(self) -> &'static [u8] {
        match self {
            Refusal::BadRequest => b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            Refusal::NotFound => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            Refusal::TooLarge => b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            Refusal::HeadTooLarge => b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            Refusal::Full => b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        }
    }
}

impl Hub {
    fn new(max_subscribers: usize) -> Hub {
        Hub {
            state: Mutex::new(Topics {
                by_name: HashMap::new(),
                subscribers: 0,
                last_sweep: None,
            }),
            max_subscribers,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Topics> {
        // A thread that panicked mid-fan-out leaves lists that are still
        // valid (at worst a subscriber missed one event).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the SSE head and keeps `stream` as a subscriber of `topic`,
    /// or answers why not and drops it.
    fn subscribe(&self, topic: &str, mut stream: TcpStream) {
        // Set once here so that a delivery is only the write. Nagle would
        // hold an event back until the client acknowledged the last one.
        if stream.set_nodelay(true).is_err()
            || stream.set_write_timeout(Some(WRITE_TIMEOUT)).is_err()
        {
            return;
        }
        let mut topics = self.lock();
        if topics.subscribers >= self.max_subscribers {
            topics.sweep();
        }
        if topics.subscribers >= self.max_subscribers {
            return refuse(&mut stream, Refusal::Full);
        }
        let Some(topic) = topics.topic(topic) else {
            return refuse(&mut stream, Refusal::Full);
        };
        // Written under the lock: once the client has read its first
        // block, the next publish already has it in the list.
        if stream.write_all(SSE_HEAD).is_ok() {
            topic.subscribers.push(stream);
            topics.subscribers += 1;
        }
    }

    /// Frames `body` once, writes it to every subscriber of `topic`, and
    /// returns its id.
    fn publish(&self, topic: &str, body: &[u8]) -> Result<u64, Refusal> {
        let mut topics = self.lock();
        let topic = topics.topic(topic).ok_or(Refusal::Full)?;
        topic.last_id += 1;
        let event = frame(topic.last_id, body);
        let before = topic.subscribers.len();
        // The delivery: one write per subscriber, nothing else.
        topic
            .subscribers
            .retain_mut(|subscriber| subscriber.write_all(&event).is_ok());
        let id = topic.last_id;
        let dropped = before - topic.subscribers.len();
        topics.subscribers -= dropped;
        Ok(id)
    }
}

impl Topics {
    /// The topic, created if there is room.
    fn topic(&mut self, name: &str) -> Option<&mut Topic> {
        if !self.by_name.contains_key(name) && self.by_name.len() >= MAX_TOPICS {
            self.by_name
                .retain(|_, topic| !topic.subscribers.is_empty());
            if self.by_name.len() >= MAX_TOPICS {
                return None;
            }
        }
        Some(
            self.by_name
                .entry(name.to_string())
                .or_insert_with(|| Topic {
                    last_id: 0,
                    subscribers: Vec::new(),
                }),
        )
    }

    /// Drops subscribers that closed their end. Nothing reads a subscriber
    /// socket, so a closed one is otherwise noticed only by the next
    /// publish to its topic, which may never come (every `slosh-load` run
    /// uses fresh topics).
    fn sweep(&mut self) {
        let now = Instant::now();
        if self
            .last_sweep
            .is_some_and(|last| now.duration_since(last) < SWEEP_EVERY)
        {
            return;
        }
        self.last_sweep = Some(now);
        let mut left = 0;
        for topic in self.by_name.values_mut() {
            topic.subscribers.retain(still_open);
            left += topic.subscribers.len();
        }
        self.subscribers = left;
        self.by_name
            .retain(|_, topic| !topic.subscribers.is_empty());
    }
}

/// A subscriber socket the client has not closed: a non-blocking peek
/// that would block means open; end of stream or an error means gone.
fn still_open(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let mut byte = [0u8; 1];
    let open = match stream.peek(&mut byte) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
    };
    open && stream.set_nonblocking(false).is_ok()
}

/// One SSE event: `id: N`, a `data:` line per line of `body` (CRLF, LF and
/// CR all end a line, as in the SSE grammar), and the blank line.
fn frame(id: u64, body: &[u8]) -> Vec<u8> {
    let mut event = Vec::with_capacity(body.len() + 32);
    event.extend_from_slice(b"id: ");
    event.extend_from_slice(id.to_string().as_bytes());
    event.extend_from_slice(b"\ndata: ");
    let mut rest = body;
    while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
        event.extend_from_slice(&rest[..end]);
        event.extend_from_slice(b"\ndata: ");
        let skip = if rest[end..].starts_with(b"\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
    }
    event.extend_from_slice(rest);
    event.extend_from_slice(b"\n\n");
    event
}

/// A topic name as slosh accepts it: 1–128 of `A-Z a-z 0-9 _ -`.
fn topic_name(name: &str) -> Option<&str> {
    let ok = (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    ok.then_some(name)
}

/// What a request asks for, with its topic's name.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Subscribe(String),
    Publish(String),
}

fn route(method: &str, path: &str) -> Option<Route> {
    let name = path.strip_prefix("/topics/")?;
    match method {
        "GET" => name
            .strip_suffix(".sse")
            .and_then(topic_name)
            .map(|name| Route::Subscribe(name.to_string())),
        "POST" => topic_name(name).map(|name| Route::Publish(name.to_string())),
        _ => None,
    }
}

/// One parsed request head.
struct Head {
    /// `None`: not a request this server serves (`404`).
    route: Option<Route>,
    content_length: usize,
    close: bool,
    /// Bytes of the head in the buffer.
    used: usize,
}

/// Serves one connection: requests until a subscribe hands the socket to
/// the hub, a refusal, the client's close, or [`IDLE`].
fn serve(mut stream: TcpStream, hub: &Hub) {
    if stream.set_read_timeout(Some(IDLE)).is_err() {
        return;
    }
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    // Each turn answers one request; the read timeout ends an idle
    // connection, so the loop is bounded in time.
    loop {
        let head = match read_head(&mut stream, &mut buf) {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(refusal) => return refuse(&mut stream, refusal),
        };
        buf.drain(..head.used);
        let topic = match head.route {
            None => return refuse(&mut stream, Refusal::NotFound),
            // Anything pipelined after an SSE request is never read.
            Some(Route::Subscribe(topic)) => return hub.subscribe(&topic, stream),
            Some(Route::Publish(topic)) => topic,
        };
        if head.content_length > MAX_BODY {
            return refuse(&mut stream, Refusal::TooLarge);
        }
        if read_body(&mut stream, &mut buf, head.content_length).is_err() {
            return;
        }
        let answer = match hub.publish(&topic, &buf[..head.content_length]) {
            Ok(id) => published(id),
            Err(refusal) => return refuse(&mut stream, refusal),
        };
        buf.drain(..head.content_length);
        if stream.write_all(&answer).is_err() || head.close {
            return;
        }
    }
}

/// `200 {"ok":true,"id":N}`, kept alive.
fn published(id: u64) -> Vec<u8> {
    let body = format!("{{\"ok\":true,\"id\":{id}}}");
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn refuse(stream: &mut TcpStream, refusal: Refusal) {
    let _ = stream.write_all(refusal.answer());
}

/// Reads until `buf` holds a whole request head; `None` when the client
/// closed (or went idle) between requests.
fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Option<Head>, Refusal> {
    // Bounded: each turn grows `buf` or returns, and `buf` stops at
    // MAX_HEAD.
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(buf) {
            Ok(httparse::Status::Complete(used)) => return head(&request, used).map(Some),
            Ok(httparse::Status::Partial) => {}
            Err(_) => return Err(Refusal::BadRequest),
        }
        if buf.len() >= MAX_HEAD {
            return Err(Refusal::HeadTooLarge);
        }
        match fill(stream, buf, MAX_HEAD) {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
    }
}

fn head(request: &httparse::Request<'_, '_>, used: usize) -> Result<Head, Refusal> {
    let mut content_length = 0;
    let mut close = request.version == Some(0);
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            content_length = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or(Refusal::BadRequest)?;
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only Content-Length bodies are read here.
            return Err(Refusal::BadRequest);
        } else if header.name.eq_ignore_ascii_case("connection") {
            close = header.value.eq_ignore_ascii_case(b"close");
        }
    }
    let route = match (request.method, request.path) {
        (Some(method), Some(path)) => route(method, path),
        _ => None,
    };
    Ok(Head {
        route,
        content_length,
        close,
        used,
    })
}

/// Reads until `buf` holds `len` bytes.
fn read_body(stream: &mut TcpStream, buf: &mut Vec<u8>, len: usize) -> io::Result<()> {
    // Bounded: each turn adds at least one byte, up to len ≤ MAX_BODY.
    while buf.len() < len {
        if fill(stream, buf, len)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

/// One read appending to `buf`, never past `limit` bytes in all.
fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, limit: usize) -> io::Result<usize> {
    let start = buf.len();
    let room = limit.saturating_sub(start).clamp(1, 16 * 1024);
    buf.resize(start + room, 0);
    let read = stream.read(&mut buf[start..]);
    buf.truncate(start + *read.as_ref().unwrap_or(&0));
    read
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_of_a_body_becomes_a_data_line() {
        assert_eq!(frame(7, b"{\"a\":1}"), b"id: 7\ndata: {\"a\":1}\n\n");
        assert_eq!(
            frame(1, b"a\r\nb\nc\rd"),
            b"id: 1\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
        );
        assert_eq!(frame(2, b""), b"id: 2\ndata: \n\n");
    }

    #[test]
    fn only_sse_gets_and_bare_posts_on_valid_names_are_routed() {
        assert_eq!(
            route("GET", "/topics/a-1.sse"),
            Some(Route::Subscribe("a-1".into()))
        );
        assert_eq!(
            route("POST", "/topics/a_1"),
            Some(Route::Publish("a_1".into()))
        );
        for (method, path) in [
            ("GET", "/topics/a"),
            ("GET", "/topics/a.json"),
            ("GET", "/topics/.sse"),
            ("POST", "/topics/a.sse"),
            ("POST", "/topics/a%2Fb"),
            ("DELETE", "/topics/a"),
            ("GET", "/"),
        ] {
            assert!(route(method, path).is_none(), "{method} {path}");
        }
        let long = format!("/topics/{}", "x".repeat(129));
        assert!(route("POST", &long).is_none());
    }
}
