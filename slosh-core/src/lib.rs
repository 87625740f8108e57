//! The runtime-agnostic heart of slosh, a realtime web hub.
//!
//! Services publish by POSTing into a topic URL; browsers and scripts receive
//! those messages by long-poll (XML or JSON), Server-Sent Events or WebSocket.
//! This crate holds every rule of that protocol that does not need a socket:
//! topic state, cursors and sessions, publish decoding, the encodings, and the
//! decision of what to answer to a request. It never reads the clock and
//! never spawns anything: time comes in as a `now: Instant` argument, and
//! whatever has to wait (a parked long-poll, an event stream) is handed back
//! to the caller together with the deadline at which it must be polled again.
//! The adapters (`slosh-hyper`, `slosh-actix`) own the sockets, the timers
//! and the tasks; they only convert types.
//!
//! # Layout
//!
//! - [`name`]: [`TopicName`], the one validated form of a topic's name.
//! - [`cursor`]: [`Cursor`], a client's "what I have seen", parsed from `n`
//!   or `Last-Event-ID`.
//! - [`route`]: a request path split into a [`Route`], and the [`Format`] a
//!   long-poll or stream answers in (suffix or `Accept` negotiation).
//! - [`message`]: [`Json`] (compact JSON text, validated once) and
//!   [`Message`] (an id plus its JSON and its place in the topic's running
//!   byte count, with its XML, SSE event and WebSocket frame each encoded
//!   at most once and shared by every subscriber).
//! - `demo`: the built-in demo pages served at `/` when there is no static
//!   root.
//! - [`files`]: static files from `--root`: the path rules that keep every
//!   request inside the root, and [`StaticFile`], the file to stream.
//! - `decode`: a publish body (JSON, form fields, text) into [`Json`].
//! - `xml`: the JSON→XML mapping of a message.
//! - [`batch`]: [`Batch`] `{ max, saw, delivering, messages }` and its JSON,
//!   XML and SSE encodings.
//! - [`store`]: [`Log`], the narrow seam behind which a topic's messages,
//!   ids and running byte total ([`Head`]) live, and [`MemoryLog`], its
//!   in-memory ring buffer.
//! - [`feed`]: what SSE streams and WebSockets share: cursor, heartbeat,
//!   the end of a subscription ([`EndReason`]) and the `max_unsent` bound,
//!   with the [`Stall`] watch an adapter keeps while a write is blocked.
//! - [`stream`]: [`EventStream`], a feed written as SSE, and the [`Chunks`]
//!   every stream hands its adapter.
//! - [`driver`]: the waits every frontend runs, written once over a
//!   [`Timer`] the adapter supplies: [`driver::park`] (a long-poll's
//!   listener against its deadline), [`Pull`] (an event stream a piece at
//!   a time, with heartbeats) and [`driver::sweep`] (the sweeper's
//!   schedule).
//! - [`socket`]: [`Socket`], a feed written as WebSocket frames that also
//!   publishes the text frames its client sends; close codes.
//! - `topic`: a topic: its log, the event parked requests wait on, and the
//!   counters that decide when it expires.
//! - `session`: sessions (the `slosh_session` cookie) and their per-topic
//!   cursors.
//! - [`settings`]: [`Settings`] with the defaults of the spec, and the
//!   parsers for durations and sizes the frontends share.
//! - [`hub`]: [`Hub`], the cheap-to-clone handle that owns all of the above,
//!   with [`Hub::publish`] for in-process publishing and [`Hub::sweep`] for
//!   expiry.
//! - [`header`]: [`header::lists`], the one reading of a comma-separated
//!   header list, for core and every frontend.
//! - `dispatch`: [`Hub::handle`], the one place every request is routed
//!   and its [`Outcome`] decided (topics, streams, sockets, static files).
//! - [`http`]: the types of that decision: a framework-neutral [`Request`]
//!   in, an [`Outcome`] out: an immediate [`Response`], a parked
//!   [`LongPoll`], an [`EventStream`], a [`Socket`] or a [`StaticFile`].
//! - [`error`]: [`Error`], every refusal with its HTTP status and a message a
//!   person can act on.
//! - [`metrics`]: the counters behind `/metrics`.
//! - `gone`: recently deleted or expired topics, so a reconnecting
//!   `EventSource` is told to stop (`204`) instead of recreating them.
//!
//! # How a request flows
//!
//! An adapter builds a [`Request`] from its framework's request (reading the
//! body up to [`Hub::body_limit`]) and calls [`Hub::handle`] with the current
//! time. What comes back is one of:
//!
//! - [`Outcome::Respond`]: send it.
//! - [`Outcome::Park`]: a [`LongPoll`]. Await [`driver::park`] with the
//!   adapter's [`Timer`]; it answers at a publish or at
//!   [`LongPoll::deadline`]. Dropping it (the client went away) forgets the
//!   subscriber at once.
//! - [`Outcome::Stream`]: an [`EventStream`]. Send [`EventStream::head`],
//!   then write each piece [`Pull::poll_next`] hands out, until it ends.
//!   Poll only when the socket can take more; while a write is blocked,
//!   await [`Stall::check`] instead, and close the connection when it says
//!   the subscriber is over.
//! - [`Outcome::Socket`]: a [`Socket`]. Answer [`Socket::head`] plus the
//!   handshake's accept key and upgrade; then feed each text frame to
//!   [`Socket::receive_text`] (sending back the error frame it may return),
//!   and drain [`Socket::poll`] as for a stream: frames, pings at the
//!   heartbeat, and a close code at the end.
//! - [`Outcome::Lookup`]: a [`Lookup`], a static file still to be looked
//!   up. Run [`Lookup::run`] off the runtime thread (it calls the file
//!   system), then send the [`StaticFile`] or the [`Response`] it gives.
//! - [`Outcome::Publish`]: a [`Publish`], a POST for a store that may
//!   block (a file, Redis). Run [`Publish::run`] off the runtime thread,
//!   then send the [`Response`] it gives.
//! - [`Outcome::File`]: a [`StaticFile`]. Send [`StaticFile::head`], then
//!   (unless it is a `HEAD`) the file's bytes in chunks of
//!   [`files::CHUNK_SIZE`]; if it can no longer be opened, send
//!   [`StaticFile::gone`] instead.
//!
//! A sweeper calls [`Hub::sweep`] at the instant it returns, which removes
//! idle topics and expired sessions.
//!
//! # Example
//!
//! ```
//! use std::time::Instant;
//! use slosh_core::{Hub, Outcome, Request};
//!
//! let hub = Hub::builder().build();
//! let now = Instant::now();
//!
//! // A client long-polls topic "chat" from message 0 on; nothing is there yet,
//! // so the request is parked.
//! let mut poll = match hub.handle(Request::new("GET", "/topics/chat.json?n=0"), now) {
//!     Outcome::Park(poll) => poll,
//!     _ => unreachable!("an empty topic parks the request"),
//! };
//! assert!(poll.poll(now).is_wait());
//!
//! // A handler of the host application publishes; the parked client is answered.
//! let published = hub.publish("chat", &serde_json::json!({"x": ["hello!"]})).unwrap();
//! assert_eq!(published.id, Some(1));
//! let response = poll.poll(now).into_response().unwrap();
//! assert_eq!(response.status, 200);
//! // The topic's epoch names this life of its ids: a client resumes with
//! // `n=1@EPOCH`, and a cursor from another life is answered as a reset.
//! let epoch = hub.info("chat").unwrap()["epoch"].as_str().unwrap().to_string();
//! assert_eq!(
//!     std::str::from_utf8(&response.body).unwrap(),
//!     format!(r#"{{"max":1,"epoch":"{epoch}","saw":1,"delivering":1,"res":[{{"x":["hello!"]}}]}}"#)
//! );
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]
// A panic on input would drop a connection (or, in an embedder built with
// `panic = "abort"`, the server): outside tests, every failure is handled.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod auth;
pub mod batch;
pub mod cursor;
mod decode;
mod demo;
mod dispatch;
pub mod driver;
pub mod epoch;
pub mod error;
pub mod feed;
pub mod files;
mod gone;
pub mod header;
pub mod http;
pub mod hub;
pub mod message;
pub mod metrics;
mod multi;
pub mod name;
pub mod route;
mod session;
pub mod settings;
pub mod socket;
pub mod store;
pub mod stream;
mod topic;
mod wake;
mod xml;

pub use auth::{Grant, Pattern, Signer, TokenKey};
pub use batch::Batch;
pub use cursor::{Cursor, Resume};
pub use decode::{BodyKind, DecodeError};
pub use dispatch::{Open, Publish};
pub use driver::{Pull, Timer};
pub use epoch::Epoch;
pub use error::Error;
pub use feed::{EndReason, Stall};
pub use files::{Lookup, StaticFile};
pub use http::{Body, LongPoll, Outcome, Request, Response};
pub use hub::{Builder, Filter, Hub, Published, Verdict};
pub use message::{Json, Message};
pub use name::TopicName;
pub use route::{Format, Route, Suffix};
pub use settings::{Mode, ServeOptions, Settings};
pub use socket::{Incoming, Socket, SocketStep};
pub use store::{
    stamp_now, Change, Counts, Head, Log, MemoryLog, Notify, Removal, Stamp, Store, StoreError,
    TopicInfo,
};
pub use stream::{Chunks, EventStream, StreamStep};
pub use wake::Wake;

/// Re-exported so adapters name the listener type without depending on the
/// crate themselves.
pub use event_listener::{EventListener, Listener};
