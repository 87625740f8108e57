//! Binds [`slosh_core`] to hyper 1.x on tokio.
//!
//! This crate decides nothing about the protocol. It turns a hyper request
//! into core's [`slosh_core::Request`] (reading the body up to the hub's
//! limit), hands it to [`Hub::handle`], and drives what comes back:
//!
//! - an immediate answer is converted and sent;
//! - a parked long-poll is awaited on its topic's listener, racing its
//!   deadline (dropping the future — the client went away — forgets it);
//! - an event stream becomes a streaming body that pulls chunks from core
//!   only when hyper can write them, so a slow reader never makes the server
//!   buffer on its behalf; while a write is blocked, the connection's socket
//!   (`stall.rs`) watches core's [`slosh_core::Stall`] and drops a reader
//!   that falls `max_unsent` behind; under [`serve`], an HTTP/1.1 `GET`
//!   stream is instead taken off hyper and written on the bare socket
//!   (`handoff.rs`), so an idle subscriber holds none of hyper's buffers;
//! - a WebSocket is answered `101` and handed to a task (`websocket.rs`)
//!   that frames core's [`slosh_core::Socket`] with tokio-tungstenite;
//! - a static file is opened at the canonical path core resolved and read
//!   in chunks as hyper asks for them, so a large file costs one chunk of
//!   memory and no blocked runtime thread.
//!
//! [`Slosh`] is the hyper `Service` to mount in an application of your own;
//! [`serve`] is the whole server loop (connection limit, header timeout,
//! the sweeper, graceful shutdown) that `slosh-cli serve` runs.
//!
//! # Example: the whole server
//!
//! [`serve`] runs until its `shutdown` future completes (`slosh-cli` passes
//! Ctrl-C / SIGTERM); here a channel stops it once a client has read back
//! what the application published.
//!
//! ```
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let hub = slosh_core::Hub::builder().build();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let address = listener.local_addr()?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(slosh_hyper::serve(listener, hub.clone(), async {
//!     let _ = stopped.await;
//! }));
//!
//! // The application publishes in-process, the same path as a POST…
//! hub.publish("chat", &serde_json::json!({ "x": "hi" })).unwrap();
//!
//! // …and a client reads it over HTTP.
//! let mut tcp = tokio::net::TcpStream::connect(address).await?;
//! let head = "GET /topics/chat.json?n=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
//! tcp.write_all(head.as_bytes()).await?;
//! let mut answer = String::new();
//! tcp.read_to_string(&mut answer).await?;
//! assert!(answer.starts_with("HTTP/1.1 200 OK"));
//! assert!(answer.ends_with(r#"{"max":1,"saw":1,"delivering":1,"res":[{"x":"hi"}]}"#));
//!
//! stop.send(()).unwrap();
//! server.await.unwrap()
//! # }
//! ```
//!
//! # Example: mounted next to your own routes
//!
//! [`Slosh`] is an ordinary hyper service: route `/topics` to it and keep
//! the rest for yourself. Serve connections `with_upgrades()` so WebSockets
//! work, and run a sweeper ([`Hub::sweep`]) so idle topics and sessions
//! expire; [`serve`] does both for you. A mounted `Slosh` streams SSE
//! through hyper (no hand-off) and notices a stalled reader at its next
//! read rather than at once; memory stays bounded either way.
//!
//! ```
//! use std::convert::Infallible;
//!
//! use http_body_util::{BodyExt, Full};
//! use hyper::body::Incoming;
//! use hyper::{Request, Response};
//! use hyper_util::rt::TokioIo;
//! use slosh_hyper::Slosh;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! async fn route(
//!     slosh: Slosh,
//!     request: Request<Incoming>,
//! ) -> Result<Response<slosh_hyper::Body>, Infallible> {
//!     if request.uri().path().starts_with("/topics") {
//!         return Ok(slosh.handle(request).await);
//!     }
//!     // The application's own page, which also publishes.
//!     let visit = serde_json::json!({ "path": request.uri().path() });
//!     let _ = slosh.hub().publish("visits", &visit);
//!     Ok(Response::new(Full::new("welcome\n".into()).boxed()))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let hub = slosh_core::Hub::builder().build();
//! tokio::spawn(slosh_hyper::sweep(hub.clone())); // expires idle topics
//! let slosh = Slosh::new(hub);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let address = listener.local_addr()?;
//! tokio::spawn(async move {
//!     loop {
//!         let Ok((tcp, _)) = listener.accept().await else { continue };
//!         let slosh = slosh.clone();
//!         let service =
//!             hyper::service::service_fn(move |request| route(slosh.clone(), request));
//!         tokio::spawn(
//!             hyper::server::conn::http1::Builder::new()
//!                 .serve_connection(TokioIo::new(tcp), service)
//!                 .with_upgrades(),
//!         );
//!     }
//! });
//!
//! for (path, expected_end) in [
//!     ("/hello", "welcome\n"),
//!     ("/topics/visits.json?n=0", r#""res":[{"path":"/hello"}]}"#),
//! ] {
//!     let mut tcp = tokio::net::TcpStream::connect(address).await?;
//!     let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
//!     tcp.write_all(head.as_bytes()).await?;
//!     let mut answer = String::new();
//!     tcp.read_to_string(&mut answer).await?;
//!     assert!(answer.ends_with(expected_end), "{answer}");
//! }
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]
// A panic on input would drop a connection (or, in an embedder built with
// `panic = "abort"`, the server): outside tests, every failure is handled.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod clock;
mod handoff;
mod stall;
mod websocket;

/// The Rust blocks of `docs/guide-hyper.md`, compiled as doctests (and
/// run, unless marked `no_run`) so the guide keeps up with the API.
#[cfg(doctest)]
#[doc = include_str!("../../docs/guide-hyper.md")]
struct GuideHyper;

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clock::Clock;
use handoff::HandoffSlot;
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::header::{HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use slosh_core::driver;
use slosh_core::{EventStream, Hub, LongPoll, Outcome, Pull, StaticFile};
use stall::{Guarded, StallSlot};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

pub use slosh_core;

/// The response body type: a whole answer or an event stream.
pub type Body = BoxBody<Bytes, Infallible>;

/// The hyper `Service` serving slosh's URLs: mount it, or hand it to
/// `serve_connection` yourself.
#[derive(Clone, Debug)]
pub struct Slosh {
    hub: Hub,
    /// Set by [`serve_with`] for each connection it accepts. Without it
    /// (a `Slosh` mounted in a server of the host's own) a stalled reader
    /// is dropped at its next read instead (memory is bounded either way),
    /// streams are served through hyper, a parked long-poll keeps a timer of
    /// its own, and the head timeout is the host's.
    connection: Option<Connection>,
}

/// What [`serve_with`] keeps per connection for the service answering on
/// it.
#[derive(Clone, Debug)]
struct Connection {
    /// Watched by the connection's socket for a stream's stall.
    stall: StallSlot,
    /// The connection's place under `max_connections`: a WebSocket keeps it
    /// after the upgrade, so sockets count as connections and shutdown
    /// waits for their close frames.
    permit: Arc<OwnedSemaphorePermit>,
    /// Where an event stream is left for the connection task to serve
    /// without hyper (`handoff.rs`).
    handoff: HandoffSlot,
    /// What the connection waits for, timed by its one timer (`clock.rs`).
    clock: Clock,
}

impl Slosh {
    /// A service over `hub`.
    pub fn new(hub: Hub) -> Slosh {
        Slosh {
            hub,
            connection: None,
        }
    }

    /// The connection's clock, when [`serve_with`] accepted it.
    fn clock(&self) -> Option<&Clock> {
        self.connection.as_ref().map(|connection| &connection.clock)
    }

    /// The hub, for publishing from the application.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Answers one request.
    pub async fn handle<B>(&self, request: hyper::Request<B>) -> hyper::Response<Body>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let (parts, body) = request.into_parts();
        let body = if body.is_end_stream() {
            slosh_core::Body::Empty
        } else {
            // Boxed: its state would otherwise sit in every request's
            // future, whatever state that future is in.
            match Box::pin(read_body(body, self.hub.body_limit())).await {
                Ok(body) => body,
                // The client stopped sending mid-body; core words the refusal.
                Err(()) => {
                    clock::answered(self.clock());
                    return whole(slosh_core::Response::error(
                        &slosh_core::Error::BodyUnreadable,
                    ));
                }
            }
        };
        match self.dispatch(parts, body) {
            Next::Answer(response) => {
                clock::answered(self.clock());
                response
            }
            next => match respond(next, self.clock().cloned()).await {
                Ok(response) => response,
                Err(never) => match never {},
            },
        }
    }

    /// Core's decision on a request whose body has been read, with
    /// everything that needs no waiting already done.
    fn dispatch(&self, mut parts: hyper::http::request::Parts, body: slosh_core::Body) -> Next {
        let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let mut core = slosh_core::Request::new(parts.method.as_str(), target);
        core.body = body;
        for (name, value) in &parts.headers {
            // A header that is not text cannot be one core reads (they are
            // all ASCII by definition); skipping it is the same as absent.
            if let Ok(value) = value.to_str() {
                core.header(name.as_str(), value);
            }
        }
        match self.hub.handle(core, Instant::now()) {
            Outcome::Respond(response) => Next::Answer(whole(response)),
            Outcome::Park(poll) => Next::Park(poll),
            Outcome::Stream(stream) => {
                if let Some(connection) = &self.connection {
                    if handoff::can_hand_off(&parts) {
                        connection.handoff.put(stream);
                        return Next::HandedOff;
                    }
                }
                let head = stream.head();
                let stall = self.connection.as_ref().map(|c| c.stall.clone());
                Next::Stream(convert(
                    head,
                    BoxBody::new(SseBody::new(stream, stall, self.clock().cloned())),
                ))
            }
            Outcome::Socket(socket) => {
                match parts.extensions.remove::<hyper::upgrade::OnUpgrade>() {
                    Some(on_upgrade) => {
                        let mut head = socket.head();
                        head.headers.push((
                            "Sec-WebSocket-Accept",
                            websocket::accept_key(&socket).into(),
                        ));
                        websocket::spawn(
                            socket,
                            on_upgrade,
                            self.connection.as_ref().map(|c| Arc::clone(&c.permit)),
                        );
                        Next::Answer(whole(head))
                    }
                    // An HTTP/2 connection, or one served without upgrades.
                    None => Next::Answer(whole(slosh_core::Response::error(
                        &slosh_core::Error::StreamsUnsupported,
                    ))),
                }
            }
            Outcome::File(file) => Next::File(file),
        }
    }
}

/// The future [`Slosh`] answers a request with, as hyper's `Service`.
type ServiceFuture =
    Pin<Box<dyn Future<Output = Result<hyper::Response<Body>, Infallible>> + Send>>;

/// Waits for what core's decision left to wait for, in a future as small
/// as that wait, and tells the connection's clock when the answer is out.
fn respond(next: Next, clock: Option<Clock>) -> ServiceFuture {
    match next {
        Next::Answer(response) => {
            clock::answered(clock.as_ref());
            Box::pin(std::future::ready(Ok(response)))
        }
        // Its body tells the clock when the stream is over.
        Next::Stream(response) => Box::pin(std::future::ready(Ok(response))),
        Next::Park(poll) => Box::pin(park(poll, clock)),
        Next::File(file) => Box::pin(async move { Ok(send_file(file, clock).await) }),
        // The connection task takes the connection from hyper, dropping
        // this future with it.
        Next::HandedOff => Box::pin(std::future::pending()),
    }
}

/// What [`Slosh::handle`] still has to wait for.
enum Next {
    /// The answer, complete.
    Answer(hyper::Response<Body>),
    /// An event stream served through hyper: its head, and a body that
    /// runs until the stream ends (no head timeout meanwhile).
    Stream(hyper::Response<Body>),
    /// A parked long-poll.
    Park(LongPoll),
    /// A static file to open.
    File(StaticFile),
    /// An event stream left in the connection's handoff slot.
    HandedOff,
}

impl<B> hyper::service::Service<hyper::Request<B>> for Slosh
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    type Response = hyper::Response<Body>;
    type Error = Infallible;
    type Future = ServiceFuture;

    fn call(&self, request: hyper::Request<B>) -> Self::Future {
        if let Some(clock) = self.clock() {
            clock.busy();
        }
        let (parts, body) = request.into_parts();
        if body.is_end_stream() {
            // Decided now, so the boxed future holds only what is left to
            // wait for: one is allocated per request and a parked
            // long-poll keeps it, and the whole of `handle` (over 1 KiB)
            // would leave the allocator's small-object path
            // (`benches/RESULTS.md`).
            return respond(
                self.dispatch(parts, slosh_core::Body::Empty),
                self.clock().cloned(),
            );
        }
        let this = self.clone();
        let request = hyper::Request::from_parts(parts, body);
        Box::pin(async move { Ok(this.handle(request).await) })
    }
}

/// Reads the body up to `limit` bytes (inclusive). Past it, reading stops
/// and core is told [`slosh_core::Body::TooLarge`], so an endless body never
/// costs more than `limit` bytes of memory.
async fn read_body<B>(body: B, limit: usize) -> Result<slosh_core::Body, ()>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => {
            let bytes = collected.to_bytes();
            Ok(if bytes.is_empty() {
                slosh_core::Body::Empty
            } else {
                slosh_core::Body::Full(bytes)
            })
        }
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Ok(slosh_core::Body::TooLarge)
        }
        Err(_) => Err(()),
    }
}

/// Waits for a parked long-poll's answer (core's [`driver::park`]). With
/// the connection's [`Clock`], the connection's one timer wakes it at the
/// deadline; without, it keeps a tokio timer of its own for the wait.
async fn park(poll: LongPoll, clock: Option<Clock>) -> Result<hyper::Response<Body>, Infallible> {
    let response = match &clock {
        Some(clock) => driver::park(poll, clock.clone()).await,
        None => driver::park(poll, Tokio).await,
    };
    clock::answered(clock.as_ref());
    Ok(whole(response))
}

/// tokio's timer, for core's drivers.
#[derive(Clone, Copy, Debug)]
struct Tokio;

impl driver::Timer for Tokio {
    type Sleep = Sleep;

    fn sleep_until(&self, at: Instant) -> Sleep {
        tokio::time::sleep_until(at.into())
    }

    fn reset(&self, sleep: Pin<&mut Sleep>, at: Instant) {
        sleep.reset(at.into());
    }
}

fn full(bytes: Bytes) -> Body {
    BoxBody::new(Full::new(bytes))
}

/// Core's immediate response as hyper's.
fn whole(mut response: slosh_core::Response) -> hyper::Response<Body> {
    let body = std::mem::take(&mut response.body);
    convert(response, full(body))
}

/// Core's response head as hyper's, with `body` as its body.
fn convert(response: slosh_core::Response, body: Body) -> hyper::Response<Body> {
    let mut out = hyper::Response::new(body);
    *out.status_mut() = hyper::StatusCode::from_u16(response.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = out.headers_mut();
    for (name, value) in response.headers {
        // Core writes only ASCII header values it built itself; a value that
        // still fails is dropped rather than sent malformed.
        if let (Ok(name), Some(value)) = (header_name(name), header_value(value)) {
            headers.append(name, value);
        }
    }
    out
}

/// hyper's value for one of core's header values: a constant is borrowed,
/// not copied. `None` for a value that would be malformed on the wire.
pub(crate) fn header_value(value: Cow<'static, str>) -> Option<HeaderValue> {
    // The values nearly every answer carries, built at compile time, so
    // their bytes are not checked again per answer (docs/DECISIONS.md).
    const JSON: HeaderValue = HeaderValue::from_static("application/json");
    const XML: HeaderValue = HeaderValue::from_static("text/xml; charset=utf-8");
    const NO_STORE: HeaderValue = HeaderValue::from_static("no-cache, no-store");
    match value {
        Cow::Borrowed("application/json") => Some(JSON),
        Cow::Borrowed("text/xml; charset=utf-8") => Some(XML),
        Cow::Borrowed("no-cache, no-store") => Some(NO_STORE),
        // `from_static` panics on a byte a header value cannot hold, so the
        // same bytes `HeaderValue::from_str` accepts are checked first.
        Cow::Borrowed(text) => text
            .bytes()
            .all(|byte| byte == b'\t' || (0x20..0x7f).contains(&byte))
            .then(|| HeaderValue::from_static(text)),
        Cow::Owned(text) => HeaderValue::try_from(text).ok(),
    }
}

/// hyper's name for one of core's header names. The two every answer
/// carries are matched to hyper's constants: `HeaderName::from_bytes`
/// lower-cases and looks up every name, which showed in the profile of a
/// publish.
fn header_name(name: &str) -> Result<HeaderName, hyper::header::InvalidHeaderName> {
    match name {
        "Content-Type" => Ok(hyper::header::CONTENT_TYPE),
        "Cache-Control" => Ok(hyper::header::CACHE_CONTROL),
        _ => HeaderName::from_bytes(name.as_bytes()),
    }
}

/// An SSE stream as a hyper body: each frame is pulled from core when hyper
/// asks for one, i.e. when the socket can take more.
struct SseBody {
    stream: EventStream,
    pull: Pull<Tokio>,
    /// The connection's slot for this stream's stall watch, if any.
    stall: Option<StallSlot>,
    /// Told when the stream is over, so the head timeout runs again.
    clock: Option<Clock>,
}

impl SseBody {
    fn new(stream: EventStream, stall: Option<StallSlot>, clock: Option<Clock>) -> SseBody {
        if let Some(slot) = &stall {
            slot.watch(stream.stall());
        }
        SseBody {
            stream,
            pull: Pull::new(Tokio),
            stall,
            clock,
        }
    }
}

impl Drop for SseBody {
    fn drop(&mut self) {
        if let Some(slot) = &self.stall {
            slot.clear();
        }
        clock::answered(self.clock.as_ref());
    }
}

impl http_body::Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let stream = &mut this.stream;
        this.pull
            .poll_next(cx, |now| Some(stream.poll(now)))
            .map(|piece| piece.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// Answers with a static file core resolved: its head, then its bytes
/// unless core said there are none (`HEAD`).
async fn send_file(file: StaticFile, clock: Option<Clock>) -> hyper::Response<Body> {
    if !file.has_body() {
        clock::answered(clock.as_ref());
        return whole(file.head());
    }
    match tokio::fs::File::open(file.path()).await {
        Ok(opened) => convert(
            file.head(),
            BoxBody::new(FileBody::new(opened, file.len(), clock)),
        ),
        // Gone (or unreadable) since core resolved it; core words the answer.
        Err(_) => {
            clock::answered(clock.as_ref());
            whole(file.gone())
        }
    }
}

/// A file as a hyper body: one chunk of at most
/// [`slosh_core::files::CHUNK_SIZE`] is read each time hyper asks for a
/// frame, and never more than the `Content-Length` core announced.
struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    buf: bytes::BytesMut,
    /// Told when the body is done (dropped): a large file to a slow reader
    /// is not cut off by the head timeout.
    clock: Option<Clock>,
}

impl FileBody {
    fn new(file: tokio::fs::File, len: u64, clock: Option<Clock>) -> FileBody {
        FileBody {
            file,
            remaining: len,
            buf: bytes::BytesMut::new(),
            clock,
        }
    }
}

impl Drop for FileBody {
    fn drop(&mut self) {
        clock::answered(self.clock.as_ref());
    }
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = usize::try_from(this.remaining)
            .unwrap_or(usize::MAX)
            .min(slosh_core::files::CHUNK_SIZE);
        this.buf.resize(want, 0);
        let mut read = ReadBuf::new(&mut this.buf[..]);
        match Pin::new(&mut this.file).poll_read(cx, &mut read) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) if !read.filled().is_empty() => {
                let n = read.filled().len();
                this.remaining -= n as u64;
                this.buf.truncate(n);
                Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze()))))
            }
            // The file shrank or cannot be read any more: end early. The
            // body is then shorter than its Content-Length, so hyper closes
            // the connection and the client sees a cut answer, not a whole
            // wrong one.
            Poll::Ready(_) => {
                this.remaining = 0;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

/// How [`serve_with`] runs the server loop.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// How long a client may take to send its request head; a slower one is
    /// disconnected (slowloris).
    pub header_timeout: Duration,
    /// Open connections at most; past it new connections are closed at once
    /// so the ones being served keep their share.
    pub max_connections: usize,
    /// How long shutdown waits for open connections before giving up.
    pub grace: Duration,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            header_timeout: Duration::from_secs(10),
            max_connections: 16_384,
            grace: Duration::from_secs(4),
        }
    }
}

/// Serves `hub` on `listener` with default [`ServeOptions`] until
/// `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    hub: Hub,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_with(listener, hub, ServeOptions::default(), shutdown).await
}

/// Serves `hub` on `listener` until `shutdown` completes; then stops
/// accepting, answers parked long-polls, ends streams and waits up to
/// `options.grace` for connections to finish.
pub async fn serve_with(
    listener: TcpListener,
    hub: Hub,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    // hyper-util's GracefulShutdown does not take connections with
    // upgrades (WebSocket), so each connection watches this flag itself and
    // the semaphore's permits count the ones still open.
    let (closing, _) = tokio::sync::watch::channel(false);
    let connections = Arc::new(Semaphore::new(options.max_connections));
    let sweeper = tokio::spawn(sweep(hub.clone()));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, _peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: pause rather
                        // than spin, and keep serving the connections we have.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
                    tracing::debug!("connection limit reached; closing a new connection");
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let slot = StallSlot::default();
                let clock = Clock::new();
                let permit = Arc::new(permit);
                let handoff = HandoffSlot::default();
                let service = Slosh {
                    hub: hub.clone(),
                    connection: Some(Connection {
                        stall: slot.clone(),
                        permit: Arc::clone(&permit),
                        handoff: handoff.clone(),
                        clock: clock.clone(),
                    }),
                };
                let io = Guarded::new(tcp, slot, Some(clock.clone()));
                let closing = closing.subscribe();
                let header_timeout = options.header_timeout;
                tokio::spawn(async move {
                    serve_connection(io, service, handoff, clock, header_timeout, closing).await;
                    drop(permit);
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    hub.shutdown();
    let _ = closing.send(true);
    let all = u32::try_from(options.max_connections).unwrap_or(u32::MAX);
    tokio::select! {
        _ = connections.acquire_many(all) => {}
        () = tokio::time::sleep(options.grace) => {
            tracing::warn!("connections still open after the shutdown grace period");
        }
    }
    sweeper.abort();
    Ok(())
}

/// hyper's connection future, as [`serve_connection`] drives it.
type HttpConnection = http1::UpgradeableConnection<TokioIo<Guarded<TcpStream>>, Slosh>;

/// Serves one connection: its requests through hyper until one is an event
/// stream the service hands off; that is served on the bare socket
/// (`handoff.rs`), then hyper takes the next request.
async fn serve_connection(
    mut io: Guarded<TcpStream>,
    mut service: Slosh,
    handoff: HandoffSlot,
    clock: Clock,
    header_timeout: Duration,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    // The connection's one timer (`clock.rs`): hyper is given none, so it
    // times nothing per request.
    let first = Instant::now() + header_timeout;
    let mut timer = Timer {
        sleep: std::pin::pin!(tokio::time::sleep_until(first.into())),
        armed: first,
    };
    loop {
        // Boxed so that the task, which lives as long as the connection,
        // is only as large as an idle stream needs: hyper's state (and its
        // buffers) are freed when a stream is handed off.
        let mut http: Pin<Box<HttpConnection>> = Box::pin(
            http1::Builder::new()
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades(),
        );
        let handed = tokio::select! {
            handed = until_handoff(http.as_mut(), &handoff, &clock, &mut timer, header_timeout) => handed,
            _ = closing.changed() => {
                http.as_mut().graceful_shutdown();
                until_handoff(http.as_mut(), &handoff, &clock, &mut timer, header_timeout).await
            }
        };
        let Some(stream) = handed else { return };
        // `None` only after an upgrade, which a stream is not.
        let Some(parts) = Pin::into_inner(http).into_parts() else {
            return;
        };
        io = parts.io.into_inner();
        service = parts.service;
        // Bytes the client sent after its stream request would be the next
        // request; hyper cannot be given them back, so such a connection
        // closes when the stream ends. Dropped here, not kept across the
        // stream: even empty, it holds hyper's whole 8 KiB read buffer.
        let pipelined = !parts.read_buf.is_empty();
        drop(parts.read_buf);
        match handoff::stream(&mut io, stream).await {
            handoff::Ended::Finished if !pipelined && !*closing.borrow() => clock.idle(),
            _ => return,
        }
    }
}

/// A connection's one timer and the instant it is set for.
struct Timer<'a> {
    sleep: Pin<&'a mut Sleep>,
    armed: Instant,
}

/// Drives hyper until the connection ends or its head timeout passes
/// (`None`), or the service hands off an event stream; between polls of
/// hyper, keeps the connection's timer no later than what its [`Clock`]
/// says it waits for.
async fn until_handoff(
    mut http: Pin<&mut HttpConnection>,
    handoff: &HandoffSlot,
    clock: &Clock,
    timer: &mut Timer<'_>,
    header_timeout: Duration,
) -> Option<EventStream> {
    std::future::poll_fn(|cx| {
        // hyper first: a parked long-poll whose deadline woke this task
        // answers here, before the timer below is looked at.
        if let Poll::Ready(ended) = http.as_mut().poll(cx) {
            if let Err(error) = ended {
                tracing::debug!(%error, "connection ended with an error");
            }
            return Poll::Ready(None);
        }
        // The service put it there during the poll above.
        if let Some(stream) = handoff.take() {
            return Poll::Ready(Some(stream));
        }
        loop {
            if let Some(due) = clock.wake_at(header_timeout) {
                if due < timer.armed {
                    timer.sleep.as_mut().reset(due.into());
                    timer.armed = due;
                }
            }
            if timer.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            if clock.head_timed_out(now, header_timeout) {
                tracing::debug!("no request head within the head timeout; closing");
                return Poll::Ready(None);
            }
            // Fired early for what the connection waits for now (or for
            // nothing): set again for that, or a head timeout from now. A
            // deadline already past (a poll hyper has not answered yet)
            // is looked at again a millisecond on.
            let next = clock
                .wake_at(header_timeout)
                .unwrap_or(now + header_timeout)
                .max(now + Duration::from_millis(1));
            timer.sleep.as_mut().reset(next.into());
            timer.armed = next;
        }
    })
    .await
}

/// Runs [`Hub::sweep`] whenever the hub asks, for ever: idle topics and
/// expired sessions go away. [`serve_with`] runs it; an application that
/// mounts [`Slosh`] in its own server spawns it once per hub.
pub async fn sweep(hub: Hub) {
    driver::sweep(hub, Tokio).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_match_what_hyper_parses() {
        for name in [
            "Content-Type",
            "Cache-Control",
            "Retry-After",
            "X-Accel-Buffering",
        ] {
            assert_eq!(
                header_name(name).unwrap(),
                HeaderName::from_bytes(name.as_bytes()).unwrap()
            );
        }
        assert!(header_name("bad name").is_err());
    }

    #[test]
    fn constant_header_values_are_borrowed_and_bad_ones_dropped() {
        let constant = "no-store";
        let value = header_value(Cow::Borrowed(constant)).unwrap();
        assert_eq!(value.as_bytes().as_ptr(), constant.as_ptr());
        for common in [
            "application/json",
            "text/xml; charset=utf-8",
            "no-cache, no-store",
        ] {
            assert_eq!(header_value(Cow::Borrowed(common)).unwrap(), common);
        }
        assert_eq!(
            header_value(Cow::Owned("a\tb".to_string())).unwrap(),
            "a\tb"
        );
        for bad in ["a\r\nb", "nul\0", "del\x7f"] {
            assert!(header_value(Cow::Borrowed(bad)).is_none(), "{bad:?}");
            assert!(
                header_value(Cow::Owned(bad.to_string())).is_none(),
                "{bad:?}"
            );
        }
    }

    /// The future hyper holds for each request (and a parked long-poll
    /// for its whole wait) stays small: under 1 KiB it is one allocation
    /// on the allocator's fast path, and a parked poll costs memory for as
    /// long as it waits. `handle` as one `async fn` made it 1 320 bytes.
    #[test]
    fn request_futures_stay_small() {
        use hyper::service::Service;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _entered = runtime.enter();
        let slosh = Slosh::new(Hub::builder().build());
        let publish = hyper::Request::post("/topics/t")
            .header("Content-Type", "text/plain")
            .body(Full::new(Bytes::from_static(b"hello")))
            .unwrap();
        let publishing = slosh.call(publish);
        assert!(std::mem::size_of_val(&*publishing) < 1024);
        let answered = runtime.block_on(publishing).unwrap();
        assert_eq!(answered.status(), 200);

        let get = |target: &str| {
            hyper::Request::get(target)
                .body(Full::new(Bytes::new()))
                .unwrap()
        };
        let parked = slosh.call(get("/topics/t?n=1"));
        assert!(
            std::mem::size_of_val(&*parked) <= 512,
            "a parked long-poll's future is {} bytes",
            std::mem::size_of_val(&*parked)
        );
        let parked_now = slosh_core::metrics::SubscriberKind::LongPoll;
        assert_eq!(slosh.hub().metrics().subscribers_now(parked_now), 1);
        let immediate = slosh.call(get("/topics/t?n=0"));
        assert!(std::mem::size_of_val(&*immediate) <= 256);
        assert_eq!(runtime.block_on(immediate).unwrap().status(), 200);
    }
}
