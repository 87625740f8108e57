//! Binds [`slosh_core`] to actix-web 4: the hub's URLs inside any actix
//! application, next to the application's own routes and middleware.
//!
//! Like `slosh-hyper`, this crate decides nothing about the protocol. It
//! turns an actix request into core's [`slosh_core::Request`] (reading the
//! body up to the hub's limit), hands it to [`Hub::handle`], and drives what
//! comes back on actix's runtime:
//!
//! - an immediate answer is converted and sent;
//! - a parked long-poll is awaited on its topic's listener, racing its
//!   deadline (actix drops the future when the client goes away, which
//!   forgets the subscriber);
//! - an event stream becomes a streaming body that actix pulls from only
//!   when it can write, so a slow reader never makes the server buffer;
//! - a static file is read a chunk at a time on actix's blocking pool;
//! - a WebSocket is answered with core's `101` head and handed to a task
//!   (`websocket.rs`) that frames core's [`slosh_core::Socket`] with
//!   actix-ws.
//!
//! Two ways to mount it:
//!
//! - [`mount`]: `/topics` and everything under it, for an application that
//!   serves its own pages. The host's middleware (auth, logging) wraps it.
//! - [`mount_everything`]: every path the application does not route itself
//!   goes to slosh (`/healthz`, `/metrics`, the demo or the static root), for
//!   a standalone server.
//!
//! [`serve_with`] runs the second as a whole server (limits, graceful
//! shutdown); [`serve_app_with`] does the same behind an application's own
//! routes (the `live_form` example).
//!
//! Either way the [`Hub`] is registered as `web::Data<Hub>`, so the host's
//! own handlers publish with `hub.publish("topic", &value)`. Run
//! [`sweep`] once per application so idle topics and sessions expire.
//!
//! # Example
//!
//! The host's own route `/shout` publishes; `/topics/...` is slosh's. In an
//! application, bind a fixed address and `.await` the server; here it
//! listens on a free port and stops once a client has read the message
//! back.
//!
//! ```
//! use actix_web::{web, App, HttpResponse, HttpServer};
//! use slosh_actix::slosh_core::Hub;
//!
//! async fn shout(hub: web::Data<Hub>, text: String) -> HttpResponse {
//!     // A handler of the host publishes straight to the browsers.
//!     match hub.publish("chat", &serde_json::json!({ "text": text })) {
//!         Ok(_) => HttpResponse::Accepted().finish(),
//!         Err(error) => HttpResponse::BadRequest().body(error.to_string()),
//!     }
//! }
//!
//! #[actix_web::main]
//! async fn main() -> std::io::Result<()> {
//!     let hub = Hub::builder().build();
//!     actix_web::rt::spawn(slosh_actix::sweep(hub.clone())); // expires idle topics
//!     let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
//!     let address = listener.local_addr()?;
//!     let server = HttpServer::new(move || {
//!         App::new()
//!             .route("/shout", web::post().to(shout))
//!             .configure(slosh_actix::mount(hub.clone()))
//!     })
//!     .workers(1)
//!     // A client that closes its connection is dropped at once.
//!     .h1_allow_half_closed(false)
//!     .listen(listener)?
//!     .run();
//!     let handle = server.handle();
//!     actix_web::rt::spawn(server);
//!
//!     // A client shouts, then reads the topic by long-poll.
//!     let (shouted, read) = actix_web::rt::task::spawn_blocking(move || {
//!         let shouted = request(address, "POST /shout", "hi")?;
//!         let read = request(address, "GET /topics/chat.json?n=0", "")?;
//!         Ok::<_, std::io::Error>((shouted, read))
//!     })
//!     .await
//!     .expect("the client ran")?;
//!     assert!(shouted.starts_with("HTTP/1.1 202"), "{shouted}");
//!     assert!(read.contains(r#"{"max":1,"epoch":""#));
//!     assert!(read.ends_with(r#","saw":1,"delivering":1,"res":[{"text":"hi"}]}"#));
//!
//!     handle.stop(true).await;
//!     Ok(())
//! }
//! # /// One request on its own connection; the whole answer.
//! # fn request(address: std::net::SocketAddr, line: &str, body: &str) -> std::io::Result<String> {
//! #     use std::io::{Read, Write};
//! #     let mut tcp = std::net::TcpStream::connect(address)?;
//! #     write!(tcp, "{line} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len())?;
//! #     let mut answer = String::new();
//! #     tcp.read_to_string(&mut answer)?;
//! #     Ok(answer)
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

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::io::{Read, Seek, SeekFrom};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::body::SizedStream;
use actix_web::http::StatusCode;
use actix_web::rt::task::JoinHandle;
use actix_web::rt::time::{sleep_until, Sleep};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpResponseBuilder, HttpServer};
use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use slosh_core::driver::{self, Pull, StallWatch, Timer};
use slosh_core::files::CHUNK_SIZE;
use slosh_core::{EventStream, Hub, Outcome, Stall, StaticFile};

pub use slosh_core;

mod websocket;

/// The Rust blocks of `docs/guide-actix.md`, compiled as doctests (and
/// run, unless marked `no_run`) so the guide keeps up with the API.
#[cfg(doctest)]
#[doc = include_str!("../../docs/guide-actix.md")]
struct GuideActix;

/// Registers the hub as `web::Data<Hub>` and serves `/topics` and every
/// path under it. Use it with `App::configure`.
pub fn mount(hub: Hub) -> impl FnOnce(&mut web::ServiceConfig) {
    move |config| {
        config
            .app_data(web::Data::new(hub))
            .service(web::resource("/topics").to(handle))
            .service(web::resource("/topics/{tail:.*}").to(handle));
    }
}

/// Registers the hub as `web::Data<Hub>` and answers every request the
/// application does not route itself: topics, `/healthz`, `/metrics`, and
/// the built-in demo or the static root. For a standalone server.
pub fn mount_everything(hub: Hub) -> impl FnOnce(&mut web::ServiceConfig) {
    move |config| {
        config
            .app_data(web::Data::new(hub))
            .default_service(web::to(handle));
    }
}

/// How [`serve_with`] runs a standalone server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// How long a client may take to send its request head; a slower one is
    /// answered `408` and disconnected (slowloris). actix-http reads the time
    /// from a clock it refreshes every 500 ms, so the cut comes up to half a
    /// second early; keep this at a second or more.
    pub header_timeout: Duration,
    /// Open connections at most, over all workers. At the limit actix stops
    /// accepting, so new connections wait in the listen backlog until one
    /// closes (hyper's loop closes them at once instead).
    pub max_connections: usize,
    /// How long shutdown waits for open connections before giving up.
    pub grace: Duration,
    /// Worker threads (each runs its own event loop).
    pub workers: usize,
}

impl Default for ServeOptions {
    /// Core's defaults ([`slosh_core::ServeOptions`]), one worker per CPU.
    fn default() -> ServeOptions {
        let shared = slosh_core::ServeOptions::default();
        ServeOptions {
            header_timeout: shared.header_timeout,
            max_connections: shared.max_connections,
            grace: shared.grace,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// Serves `hub` (every path, as [`mount_everything`]) on `listener` until
/// `shutdown` completes; then answers parked long-polls, ends streams, and
/// waits up to `options.grace` for connections to finish. Must run inside an
/// actix system (`#[actix_web::main]` or `actix_web::rt::System`).
pub async fn serve_with(
    listener: std::net::TcpListener,
    hub: Hub,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_app_with(listener, hub, options, |_| {}, shutdown).await
}

/// [`serve_with`] for an application with pages of its own: `routes`
/// configures them first (they see the hub as `web::Data<Hub>`), and slosh
/// answers every path they do not route.
pub async fn serve_app_with<F>(
    listener: std::net::TcpListener,
    hub: Hub,
    options: ServeOptions,
    routes: F,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    let workers = options.workers.max(1);
    let app_hub = hub.clone();
    let server = HttpServer::new(move || {
        App::new()
            .configure(routes.clone())
            .configure(mount_everything(app_hub.clone()))
    })
    .workers(workers)
    // actix counts per worker.
    .max_connections(options.max_connections.div_ceil(workers).max(1))
    .client_request_timeout(options.header_timeout)
    // A client that closes its side is gone: end its parked long-poll or
    // idle stream at once (dropping it forgets the subscriber), as hyper
    // does, instead of when a write to it next fails.
    .h1_allow_half_closed(false)
    .shutdown_timeout(options.grace.as_secs().max(1))
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    let sweeper = actix_web::rt::spawn(sweep(hub.clone()));
    let running = actix_web::rt::spawn(server);
    shutdown.await;
    hub.shutdown();
    handle.stop(true).await;
    let _ = running.await;
    sweeper.abort();
    Ok(())
}

/// The `Set-Cookie` header that logs a browser in to its private topics:
/// a token for `grant` signed by `signer`, in the hub's token cookie, so
/// the page's `EventSource("/topics/NAME.sse")` carries it with no script.
///
/// ```
/// use std::time::Duration;
/// use actix_web::HttpResponse;
/// use slosh_actix::slosh_core::{Grant, Hub, Signer};
///
/// let signer = Signer::secret(b"the --jwt-secret").unwrap();
/// let hub = Hub::default();
/// let grant = Grant {
///     subject: Some("alice".into()),
///     subscribe: vec!["notify-alice".into()],
///     ttl: Duration::from_secs(3600),
///     ..Grant::default()
/// };
/// let answer = HttpResponse::Ok()
///     .insert_header(slosh_actix::token_cookie(&hub, &signer, &grant).unwrap())
///     .finish();
/// let cookie = answer.headers().get("set-cookie").unwrap().to_str().unwrap();
/// assert!(cookie.starts_with("slosh_auth="));
/// ```
pub fn token_cookie(
    hub: &Hub,
    signer: &slosh_core::Signer,
    grant: &slosh_core::Grant,
) -> Result<
    (
        actix_web::http::header::HeaderName,
        actix_web::http::header::HeaderValue,
    ),
    slosh_core::auth::KeyError,
> {
    let cookie = hub.token_cookie(signer, grant)?;
    let value = actix_web::http::header::HeaderValue::from_str(&cookie)
        .map_err(|error| slosh_core::auth::KeyError::Cookie(error.to_string()))?;
    Ok((actix_web::http::header::SET_COOKIE, value))
}

/// Runs [`Hub::sweep`] whenever the hub asks, for ever: idle topics and
/// expired sessions go away. Spawn it once per hub.
pub async fn sweep(hub: Hub) {
    driver::sweep(hub, Rt).await;
}

/// Answers one request to a slosh URL.
async fn handle(request: HttpRequest, payload: web::Payload, hub: web::Data<Hub>) -> HttpResponse {
    let mut payload = payload;
    let upgrading = websocket::is_upgrade_stream(&request);
    let body = if upgrading {
        slosh_core::Body::Empty
    } else {
        match read_body(&mut payload, hub.body_limit()).await {
            Ok(body) => body,
            // The client stopped sending mid-body; core words the refusal.
            Err(()) => {
                return whole(slosh_core::Response::error(
                    &slosh_core::Error::BodyUnreadable,
                ))
            }
        }
    };
    let (upgrade, unread) = if upgrading {
        (Some(payload), None)
    } else if matches!(body, slosh_core::Body::TooLarge) {
        (None, Some(payload))
    } else {
        (None, None)
    };
    let outcome = match hub.handle(core_request(&request, body, false), Instant::now()) {
        // Opening the topic may read a file or ask Redis: actix's
        // blocking pool does it, then core decides again.
        Outcome::Open(open) => {
            if !driver::open(open, &Rt).await {
                return whole(slosh_core::Response::error(
                    &slosh_core::Error::ShuttingDown,
                ));
            }
            hub.handle(
                core_request(&request, slosh_core::Body::Empty, true),
                Instant::now(),
            )
        }
        outcome => outcome,
    };
    match outcome {
        Outcome::Respond(response) => match unread {
            Some(payload) => whole_unread(response, payload),
            None => whole(response),
        },
        Outcome::Park(poll) => whole(driver::park(poll, Rt).await),
        Outcome::Stream(stream) => {
            let head = stream.head();
            builder(&head).streaming(SseBody::new(stream))
        }
        Outcome::File(file) => send_file(file),
        // The file system calls run on actix's blocking pool.
        Outcome::Lookup(lookup) => match web::block(move || lookup.run()).await {
            Ok(Ok(file)) => send_file(file),
            Ok(Err(response)) => whole(response),
            // The pool is gone: the server is shutting down.
            Err(_) => whole(slosh_core::Response::error(
                &slosh_core::Error::ShuttingDown,
            )),
        },
        // The store's write runs on actix's blocking pool.
        Outcome::Publish(publish) => match web::block(move || publish.run()).await {
            Ok(response) => whole(response),
            Err(_) => whole(slosh_core::Response::error(
                &slosh_core::Error::ShuttingDown,
            )),
        },
        // Core answers `Open` once per request; were a second to slip
        // through, the client may try again.
        Outcome::Open(_) => whole(slosh_core::Response::error(&slosh_core::Error::Store(
            "the topic was not opened".to_string(),
        ))),
        Outcome::Socket(socket) => match upgrade {
            Some(payload) => websocket::answer(socket, &request, payload),
            // Core read an upgrade where actix did not (a chunked body, a
            // list of protocols): actix will not hand the connection over.
            None => whole(slosh_core::Response::error(&slosh_core::Error::BadUpgrade(
                "a request without a body",
            ))),
        },
    }
}

/// Core's view of `request`, with its `body` read; `opened` once the
/// [`Outcome::Open`] core gave was run.
fn core_request(
    request: &HttpRequest,
    body: slosh_core::Body,
    opened: bool,
) -> slosh_core::Request<'_> {
    let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let mut core = slosh_core::Request::new(request.method().as_str(), target);
    core.body = body;
    core.opened = opened;
    for (name, value) in request.headers() {
        // A header that is not text cannot be one core reads (they are all
        // ASCII by definition); skipping it is the same as absent.
        if let Ok(value) = value.to_str() {
            core.header(name.as_str(), value);
        }
    }
    core
}

/// Reads the body up to `limit` bytes (inclusive). Past it, reading stops
/// and core is told [`slosh_core::Body::TooLarge`], so an endless body never
/// costs more than `limit` bytes of memory.
async fn read_body(payload: &mut web::Payload, limit: usize) -> Result<slosh_core::Body, ()> {
    let mut body = BytesMut::new();
    loop {
        let chunk = poll_fn(|cx| Pin::new(&mut *payload).poll_next(cx)).await;
        match chunk {
            None => break,
            Some(Ok(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Ok(slosh_core::Body::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Some(Err(_)) => return Err(()),
        }
    }
    Ok(if body.is_empty() {
        slosh_core::Body::Empty
    } else {
        slosh_core::Body::Full(body.freeze())
    })
}

/// actix's timer (tokio's, underneath), for core's drivers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rt;

impl Timer for Rt {
    type Sleep = Sleep;

    fn sleep_until(&self, at: Instant) -> Sleep {
        sleep_until(at.into())
    }

    fn reset(&self, sleep: Pin<&mut Sleep>, at: Instant) {
        sleep.reset(at.into());
    }

    async fn blocking<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> Option<R> {
        web::block(work).await.ok()
    }
}

/// Core's response head as an actix builder.
fn builder(response: &slosh_core::Response) -> HttpResponseBuilder {
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut out = HttpResponse::build(status);
    for (name, value) in &response.headers {
        // actix writes Content-Length itself, from the body it is given.
        if !name.eq_ignore_ascii_case("content-length") {
            out.append_header((*name, value.as_ref()));
        }
    }
    out
}

/// Core's immediate response as actix's.
fn whole(mut response: slosh_core::Response) -> HttpResponse {
    let body = std::mem::take(&mut response.body);
    builder(&response).body(body)
}

/// [`whole`] for a request whose body was cut off unread (`413`). The
/// payload rides along in the response body: actix reads a chunked body to
/// its end once the handler has dropped the payload, however long it runs,
/// but with the payload still held it closes the connection after the
/// answer (after a 1 s linger) instead.
fn whole_unread(mut response: slosh_core::Response, payload: web::Payload) -> HttpResponse {
    let body = std::mem::take(&mut response.body);
    let length = body.len() as u64;
    builder(&response).body(SizedStream::new(
        length,
        Unread {
            body: Some(body),
            _payload: payload,
        },
    ))
}

/// A whole body that holds the request's unread payload until it is sent.
struct Unread {
    body: Option<Bytes>,
    _payload: web::Payload,
}

impl Stream for Unread {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(self.get_mut().body.take().map(Ok))
    }
}

/// An SSE stream as an actix body: each chunk is pulled from core when
/// actix asks for one, i.e. when the socket can take more.
///
/// While actix cannot write (the reader stopped reading) it does not poll
/// the body at all, so a watcher task awaits core's [`Stall`] meanwhile and
/// takes the stream away when the reader falls `max_unsent` behind: the
/// subscriber is dropped and counted at once, and the body ends when actix
/// next polls it. actix owns the connection, so the socket itself closes
/// only when the client reads again or goes away; memory stays bounded by
/// actix's write buffer either way.
struct SseBody {
    stream: Arc<Mutex<Option<EventStream>>>,
    pull: Pull<Rt>,
    /// The stall watcher, stopped with the body.
    watcher: JoinHandle<()>,
}

impl SseBody {
    fn new(stream: EventStream) -> SseBody {
        let stall = stream.stall();
        let stream = Arc::new(Mutex::new(Some(stream)));
        let watcher = actix_web::rt::spawn(watch_stall(stall, Arc::downgrade(&stream)));
        SseBody {
            stream,
            pull: Pull::new(Rt),
            watcher,
        }
    }
}

impl Drop for SseBody {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

/// Ends `stream` when core says its subscriber is over without it being
/// polled (too slow, topic gone, shutdown).
async fn watch_stall(stall: Stall, stream: Weak<Mutex<Option<EventStream>>>) {
    StallWatch::new(stall).await;
    if let Some(stream) = stream.upgrade() {
        drop(lock(&stream).take());
    }
}

fn lock(stream: &Mutex<Option<EventStream>>) -> MutexGuard<'_, Option<EventStream>> {
    // Only `take` and `poll` run under it; neither leaves it half-changed.
    stream.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Stream for SseBody {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let stream = &this.stream;
        this.pull
            // `None` once the watcher took the stream away.
            .poll_next(cx, |now| lock(stream).as_mut().map(|s| s.poll(now)))
            .map(|piece| piece.map(Ok))
    }
}

/// Sends a static file core resolved, or core's answer when it cannot be
/// opened any more.
fn send_file(file: StaticFile) -> HttpResponse {
    if !file.has_body() {
        // HEAD: the length of the body that a GET would get.
        // HEAD: the length a GET would get, and no body (actix never polls
        // the body of an answer to HEAD).
        return builder(&file.head()).body(SizedStream::new(file.len(), NoBody));
    }
    match std::fs::File::open(file.path()) {
        Ok(opened) => builder(&file.head()).body(SizedStream::new(
            file.len(),
            FileBody::new(opened, file.len()),
        )),
        Err(_) => whole(file.gone()),
    }
}

/// The body of an answer to `HEAD`.
struct NoBody;

impl Stream for NoBody {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(None)
    }
}

/// A file read one chunk at a time on actix's blocking pool, never more
/// than its announced length.
struct FileBody {
    /// The file and where the next chunk starts; `None` while a read runs.
    file: Option<std::fs::File>,
    offset: u64,
    remaining: u64,
    reading: Option<Pin<Box<dyn Future<Output = ChunkRead> + Send>>>,
}

/// What one blocking read gives back: the file (to read on) and the chunk.
type ChunkRead = Result<(std::fs::File, std::io::Result<Vec<u8>>), actix_web::error::BlockingError>;

impl FileBody {
    fn new(file: std::fs::File, len: u64) -> FileBody {
        FileBody {
            file: Some(file),
            offset: 0,
            remaining: len,
            reading: None,
        }
    }
}

impl Stream for FileBody {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        if this.reading.is_none() {
            let Some(mut file) = this.file.take() else {
                return Poll::Ready(None);
            };
            let offset = this.offset;
            let want = this.remaining.min(CHUNK_SIZE as u64) as usize;
            this.reading = Some(Box::pin(web::block(move || {
                let mut chunk = vec![0; want];
                let read = file
                    .seek(SeekFrom::Start(offset))
                    .and_then(|_| file.read(&mut chunk))
                    .map(|n| {
                        chunk.truncate(n);
                        chunk
                    });
                (file, read)
            })));
        }
        let Some(reading) = &mut this.reading else {
            return Poll::Ready(None);
        };
        let done = match reading.as_mut().poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(done) => done,
        };
        this.reading = None;
        match done {
            Ok((file, Ok(chunk))) if !chunk.is_empty() => {
                this.file = Some(file);
                let n = chunk.len() as u64;
                this.offset += n;
                this.remaining = this.remaining.saturating_sub(n);
                Poll::Ready(Some(Ok(Bytes::from(chunk))))
            }
            // The file shrank since its length was announced: end here; the
            // client sees a short body, as from any file server.
            Ok((_, Ok(_))) => Poll::Ready(Some(Err(std::io::Error::from(
                std::io::ErrorKind::UnexpectedEof,
            )))),
            Ok((_, Err(error))) => Poll::Ready(Some(Err(error))),
            Err(_) => Poll::Ready(Some(Err(std::io::Error::other("blocking pool gone")))),
        }
    }
}
