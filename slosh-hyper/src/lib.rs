//! Binds [`slosh_core`] to hyper 1.x on tokio.
//!
//! This crate decides nothing about the protocol. It turns a hyper request
//! into core's [`slosh_core::Request`] (reading the body up to the hub's
//! limit), hands it to [`Hub::handle`](slosh_core::Hub::handle), and drives
//! what comes back:
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
//! # Layout
//!
//! - `service.rs`: [`Slosh`] and its dispatch: a request to core and the
//!   wait core's answer leaves, through core's drivers (`slosh_core::driver`).
//! - `convert.rs`: core's answers as hyper's (status, headers, whole bodies).
//! - `body.rs`: the bodies hyper pulls from, an event stream and a file.
//! - `server.rs`: [`serve_with`], the accept loop and each connection's
//!   driver; with `clock.rs` (one timer per connection), `stall.rs` (the
//!   socket wrapper that sees a blocked write) and `handoff.rs` (an event
//!   stream served on the bare socket).
//! - `websocket.rs`: core's [`slosh_core::Socket`] framed by tungstenite.
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
//! // The epoch (random) names this life of the topic's ids.
//! assert!(answer.contains(r#"{"max":1,"epoch":""#));
//! assert!(answer.ends_with(r#","saw":1,"delivering":1,"res":[{"x":"hi"}]}"#));
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
//! work, and run a sweeper ([`Hub::sweep`](slosh_core::Hub::sweep)) so idle topics and sessions
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

mod body;
mod clock;
mod convert;
mod handoff;
mod server;
mod service;
mod stall;
mod websocket;

/// The Rust blocks of `docs/guide-hyper.md`, compiled as doctests (and
/// run, unless marked `no_run`) so the guide keeps up with the API.
#[cfg(doctest)]
#[doc = include_str!("../../docs/guide-hyper.md")]
struct GuideHyper;

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;

pub use server::{serve, serve_with, sweep, ServeOptions};

/// The `Set-Cookie` header that logs a browser in to its private topics:
/// a token for `grant` signed by `signer`, in the hub's token cookie, so
/// the page's `EventSource("/topics/NAME.sse")` carries it with no script.
///
/// ```
/// use std::time::Duration;
/// use slosh_hyper::slosh_core::{Grant, Hub, Signer};
///
/// let signer = Signer::secret(b"the --jwt-secret").unwrap();
/// let grant = Grant {
///     subscribe: vec!["notify-bob".into()],
///     ttl: Duration::from_secs(600),
///     ..Grant::default()
/// };
/// let (name, value) = slosh_hyper::token_cookie(&Hub::default(), &signer, &grant).unwrap();
/// let answer = hyper::Response::builder()
///     .header(name, value)
///     .body(())
///     .unwrap();
/// assert!(answer.headers()["set-cookie"].to_str().unwrap().contains("HttpOnly"));
/// ```
pub fn token_cookie(
    hub: &slosh_core::Hub,
    signer: &slosh_core::Signer,
    grant: &slosh_core::Grant,
) -> Result<(hyper::header::HeaderName, hyper::header::HeaderValue), slosh_core::auth::KeyError> {
    let cookie = hub.token_cookie(signer, grant)?;
    let value = hyper::header::HeaderValue::from_str(&cookie)
        .map_err(|error| slosh_core::auth::KeyError::Cookie(error.to_string()))?;
    Ok((hyper::header::SET_COOKIE, value))
}
pub use service::Slosh;
pub use slosh_core;

/// The response body type: a whole answer or an event stream.
pub type Body = BoxBody<Bytes, Infallible>;
