//! WebSocket subscriptions (SPEC 6): a [`Socket`] is a feed that writes
//! `{"id":N,"epoch":"E","data":MSG}` text frames, and a publisher of the text frames its
//! client sends. The adapter does the handshake and the framing; every
//! decision (acceptance, what a frame publishes, errors, keepalive, closing
//! and its code) is made here, in the quinn style: inputs are fed in
//! ([`Socket::receive_text`]) and outputs drained ([`Socket::poll`]) by
//! [`driver::websocket::run`](crate::driver::websocket::run), the one loop
//! every frontend runs over its WebSocket library.
//!
//! **URL.** An upgrade on `GET /topics/NAME` or `/topics/NAME.json` is a
//! socket; on any other suffix the `Upgrade` header is ignored and the GET
//! is served as usual, as HTTP allows.
//!
//! **Close codes.** Topic deleted or expired, and shutdown: 1001 (going
//! away). A subscriber too slow for `max_unsent`: 1013 (try again later),
//! since reconnecting and resuming with `n` is exactly what it should do. A
//! frame past [`Socket::read_limit`]: 1009 (message too big).

use std::time::Instant;

use bytes::Bytes;
use event_listener::EventListener;

use crate::cursor::Cursor;
use crate::decode::{self, BodyKind};
use crate::dispatch::Publish;
use crate::error::Error;
use crate::feed::{EndReason, Feed, FeedStep, Stall};
use crate::http::{Request, Response};
use crate::hub::{Hub, Published};
use crate::message::Json;
use crate::name::TopicName;

/// Close code 1001: the topic or the server is going away.
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// How long a close frame may take to go out before the driver drops the
/// connection anyway: a client that does not read never takes it.
pub const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Frames queued for a client (error replies, pongs) past which the driver
/// reads no more frames from it, so a client that sends without reading
/// cannot grow the queue.
pub const MAX_QUEUED: usize = 32;
/// Close code 1008: the token that let the socket in expired.
pub const CLOSE_POLICY_VIOLATION: u16 = 1008;
/// Close code 1009: a frame larger than the socket accepts.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close code 1013: too slow for now; reconnect and resume.
pub const CLOSE_TRY_AGAIN_LATER: u16 = 1013;

/// How far past `max_message` a frame may go before the framing layer
/// refuses it outright (close 1009) instead of core answering it with an
/// error frame: enough for a client a little over the limit to learn the
/// limit, small enough that no client makes us allocate much more than a
/// message.
const READ_SLACK: usize = 4096;

impl EndReason {
    /// The WebSocket close code and reason for this end.
    pub fn close_frame(self) -> (u16, &'static str) {
        match self {
            EndReason::TopicGone => (CLOSE_GOING_AWAY, "topic deleted"),
            EndReason::TokenExpired => (CLOSE_POLICY_VIOLATION, "token expired"),
            EndReason::ShuttingDown => (CLOSE_GOING_AWAY, "server shutting down"),
            EndReason::TooSlow => (
                CLOSE_TRY_AGAIN_LATER,
                "too far behind: reconnect and resume with n",
            ),
        }
    }
}

/// What a [`Socket`] wants next.
#[derive(Debug)]
pub enum SocketStep {
    /// Send each piece as one text frame, in order, then poll again.
    Send(crate::Chunks),
    /// Nothing was sent for a heartbeat: send a ping, then poll again.
    Ping,
    /// Await the listener or the instant, whichever comes first, then poll
    /// again.
    Wait(EventListener, Instant),
    /// Send a close frame with this code and reason, then drop the
    /// connection.
    Close(u16, &'static str),
}

/// A WebSocket subscription and publisher: on one topic
/// (`/topics/NAME`), or on several that its frames may change
/// (`/subscribe?topic=a&topic=b`, see [`crate::multi`]).
pub struct Socket {
    pub(crate) hub: Hub,
    /// `Sec-WebSocket-Key`, for the adapter's handshake answer.
    pub(crate) key: String,
    pub(crate) kind: SocketKind,
}

/// What a [`Socket`] follows.
pub(crate) enum SocketKind {
    /// One topic; text frames are publishes to it.
    One {
        feed: Feed,
        name: TopicName,
        /// Why the socket may not publish, if it may not: its upgrade
        /// request carried no publish right for the topic (the publish
        /// token, or a signed token naming it). Each frame it sends is
        /// refused with this.
        publish_refusal: Option<Error>,
    },
    /// Several; text frames are commands.
    Many(Box<crate::multi::ManySocket>),
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            SocketKind::One {
                feed,
                name,
                publish_refusal,
            } => f
                .debug_struct("Socket")
                .field("topic", name)
                .field("cursor", &feed.cursor())
                .field("may_publish", &publish_refusal.is_none())
                .finish_non_exhaustive(),
            SocketKind::Many(many) => f
                .debug_struct("Socket")
                .field(
                    "topics",
                    &many
                        .feeds
                        .iter()
                        .map(|feed| feed.topic().name.as_str())
                        .collect::<Vec<_>>(),
                )
                .finish_non_exhaustive(),
        }
    }
}

/// RFC 6455 section 4.2.1's rules for the opening handshake, checked here so
/// every adapter accepts and refuses the same requests (a WebSocket library
/// behind an adapter may check less, or more). Returns the key.
pub(crate) fn check_handshake<'a>(request: &Request<'a>) -> Result<&'a str, Error> {
    let lists = |value: Option<&str>, token: &str| {
        value.is_some_and(|value| crate::header::lists(value, token))
    };
    if request.method != "GET" {
        return Err(Error::BadUpgrade("the GET method"));
    }
    if !lists(request.connection, "upgrade") {
        return Err(Error::BadUpgrade("the header Connection: Upgrade"));
    }
    if request.websocket_version.map(str::trim) != Some("13") {
        return Err(Error::BadUpgrade("the header Sec-WebSocket-Version: 13"));
    }
    match request.websocket_key.map(str::trim) {
        Some(key) if is_websocket_key(key) => Ok(key),
        _ => Err(Error::BadUpgrade(
            "the header Sec-WebSocket-Key: 16 random bytes in base64 (24 characters)",
        )),
    }
}

/// Whether `key` is 16 bytes in canonical padded base64: 21 characters of
/// the alphabet, a 22nd carrying only 2 bits (so its low 4 are zero), `==`.
fn is_websocket_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    let Some((body, padding)) = bytes.split_at_checked(22) else {
        return false;
    };
    let in_alphabet = |b: &u8| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/';
    padding == b"=="
        && body.iter().all(in_alphabet)
        && body.last().is_some_and(|last| b"AQgw".contains(last))
}

impl Socket {
    /// The answer to the upgrade request: `101` with `Upgrade` and
    /// `Connection`. The adapter adds `Sec-WebSocket-Accept`, derived from
    /// [`Socket::key`] by its WebSocket library.
    pub fn head(&self) -> Response {
        Response {
            status: 101,
            headers: vec![
                ("Upgrade", "websocket".into()),
                // Lower case because actix writes this header itself, in
                // lower case, whatever it is given; the token is
                // case-insensitive, and both frontends then send the same.
                ("Connection", "upgrade".into()),
            ],
            body: Bytes::new(),
        }
    }

    /// The client's `Sec-WebSocket-Key`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The largest frame and message the adapter's framing should read at
    /// all: `max_message` plus a little, so a frame slightly over the limit
    /// gets an error frame from [`Socket::receive_text`] and a larger one
    /// is cut off (close [`CLOSE_TOO_BIG`]) before it is buffered.
    pub fn read_limit(&self) -> usize {
        self.hub
            .inner
            .settings
            .max_message
            .saturating_add(READ_SLACK)
    }

    /// What to close with when a frame passed [`Socket::read_limit`].
    pub fn too_big(&self) -> SocketStep {
        SocketStep::Close(CLOSE_TOO_BIG, "message too large")
    }

    /// The id of the newest message sent (or the resume point); of the
    /// first topic, on a socket of several.
    pub fn cursor(&self) -> Cursor {
        match &self.kind {
            SocketKind::One { feed, .. } => feed.cursor(),
            SocketKind::Many(many) => many.feeds.first().map_or(Cursor(0), Feed::cursor),
        }
    }

    /// The watch to keep while a write is pending (see [`Stall`]).
    pub fn stall(&self) -> Stall {
        match &self.kind {
            SocketKind::One { feed, .. } => feed.stall(),
            SocketKind::Many(many) => many.stall(),
        }
    }

    /// The next step at `now`.
    pub fn poll(&mut self, now: Instant) -> SocketStep {
        let feed = match &mut self.kind {
            SocketKind::One { feed, .. } => feed,
            SocketKind::Many(many) => return many.poll(now),
        };
        if feed.take_reset() {
            // Said at once, before anything of the new life arrives.
            feed.sent_at(now);
            return SocketStep::Send(crate::Chunks(vec![crate::batch::frame_reset()]));
        }
        match feed.poll(now) {
            FeedStep::Deliver(batch) => {
                let mut frames = Vec::with_capacity(batch.messages.len() + 1);
                batch.frames(&mut frames);
                SocketStep::Send(crate::Chunks(frames))
            }
            FeedStep::Ping => SocketStep::Ping,
            FeedStep::Wait(listener, at) => SocketStep::Wait(listener, at),
            FeedStep::End(reason) => {
                let (code, reason) = reason.close_frame();
                SocketStep::Close(code, reason)
            }
        }
    }

    /// Publishes a text frame from the client as if it were POSTed as JSON:
    /// same token rule, size limit, decoding and errors. Answers `None` when
    /// it was published (the message comes back to every subscriber of the
    /// topic, this socket included, as `{"id":N,"data":MSG}`), or the
    /// `{"error":"…"}` frame to send back; the socket stays usable either
    /// way.
    ///
    /// On a hub with a store, whose write may block, an accepted frame is
    /// [`Incoming::Publish`]: store it off the runtime thread, then pass
    /// the result to [`Socket::published`] for the reply.
    ///
    /// On a socket of several topics a frame is a command instead (see
    /// [`crate::multi`]); subscribing to a topic this server does not hold
    /// yet, on a hub with a store, is [`Incoming::Open`]: run it off the
    /// runtime thread, then give the same frame again.
    pub fn receive_text(&mut self, text: &str, now: Instant) -> Incoming {
        let name = match &self.kind {
            SocketKind::One { name, .. } => name.clone(),
            SocketKind::Many(_) => return self.command(text, now),
        };
        let json = match self.accept(text) {
            Ok(json) => json,
            Err(error) => return Incoming::Reply(self.published(Err(error))),
        };
        self.publish_to(name.as_str(), json)
    }

    /// Publishes `json` to `topic`: off the runtime thread on a hub with a
    /// store.
    fn publish_to(&mut self, topic: &str, json: Json) -> Incoming {
        if self.hub.inner.store.is_some() {
            return Incoming::Publish(Publish::new(&self.hub, topic, json));
        }
        let result = self.hub.publish_accepted(topic, json);
        Incoming::Reply(self.published(result))
    }

    /// A command frame on a socket of several topics.
    fn command(&mut self, text: &str, now: Instant) -> Incoming {
        use crate::multi::Command;
        let SocketKind::Many(many) = &mut self.kind else {
            return Incoming::Reply(None);
        };
        let hub = self.hub.clone();
        let limit = hub.body_limit();
        let done = |result: Result<(), Error>| result.map(|()| Published { id: None });
        let result = match crate::multi::command(text, limit) {
            Err(error) => Err(error),
            Ok(Command::Unsubscribe(name)) => {
                if many.remove(&name) {
                    Ok(())
                } else {
                    Err(Error::BadTopicList(format!(
                        "this socket does not follow topic {name}"
                    )))
                }
            }
            Ok(Command::Publish(topic, json)) => {
                match many.with_credential(|request| hub.authorize(request, &topic)) {
                    Ok(_) => return self.publish_to(&topic, json),
                    Err(error) => Err(error),
                }
            }
            Ok(Command::Subscribe(name, resume)) => {
                if many.follows(&name) {
                    Ok(())
                } else if many.feeds.len() >= hub.inner.settings.max_topics_per_subscriber {
                    Err(Error::BadTopicList(format!(
                        "at most {} topics may share a socket",
                        hub.inner.settings.max_topics_per_subscriber
                    )))
                } else {
                    match many.with_credential(|request| hub.may_subscribe(request, &name)) {
                        Err(error) => Err(error),
                        Ok(until) => {
                            if hub.inner.store.is_some() && hub.find(&name).is_none() {
                                return Incoming::Open(crate::dispatch::Open::all(
                                    &hub,
                                    vec![name],
                                ));
                            }
                            match hub.subscribe(&name, crate::metrics::SubscriberKind::WebSocket) {
                                Err(error) => Err(error),
                                Ok(subscription) => {
                                    let feed = Feed::open(
                                        &hub,
                                        subscription,
                                        crate::metrics::SubscriberKind::WebSocket,
                                        resume,
                                        None,
                                        now,
                                    );
                                    many.add(feed);
                                    if let Some(until) = until {
                                        let at = crate::auth::instant_at(until, now);
                                        many.expires =
                                            Some(many.expires.map_or(at, |now| now.min(at)));
                                    }
                                    Ok(())
                                }
                            }
                        }
                    }
                }
            }
        };
        Incoming::Reply(self.published(done(result)))
    }

    /// [`Socket::receive_text`] with any store write done here and now,
    /// on the calling thread: for tests and for callers that may block.
    pub fn receive_text_here(&mut self, text: &str, now: Instant) -> Option<Bytes> {
        match self.receive_text(text, now) {
            Incoming::Reply(reply) => reply,
            Incoming::Publish(publish) => self.published(publish.store()),
            Incoming::Open(open) => {
                open.run();
                match self.receive_text(text, now) {
                    Incoming::Reply(reply) => reply,
                    Incoming::Publish(publish) => self.published(publish.store()),
                    // Opened just now: a second ask means it went again.
                    Incoming::Open(_) => Some(error_frame(&Error::Store(
                        "the topic was not opened".into(),
                    ))),
                }
            }
        }
    }

    /// The reply to a text frame once its message was published (or
    /// refused): none, or the `{"error":"…"}` frame, counted.
    pub fn published(&mut self, result: Result<Published, Error>) -> Option<Bytes> {
        match result {
            Ok(_) => None,
            Err(error) => {
                self.hub.inner.metrics.rejected(&error);
                Some(error_frame(&error))
            }
        }
    }

    /// The answer to a binary frame: messages are JSON text, so it is
    /// refused with an error frame and nothing is stored.
    pub fn receive_binary(&mut self) -> Bytes {
        let error = Error::BinaryFrame;
        self.hub.inner.metrics.rejected(&error);
        error_frame(&error)
    }

    /// The message a text frame publishes, if the socket may publish it.
    fn accept(&self, text: &str) -> Result<Json, Error> {
        if let SocketKind::One {
            publish_refusal: Some(refusal),
            ..
        } = &self.kind
        {
            return Err(refusal.clone());
        }
        let limit = self.hub.body_limit();
        if text.len() > limit {
            return Err(Error::TooLarge { limit });
        }
        Ok(decode::decode_message(BodyKind::Json, text.as_bytes())?)
    }
}

/// What a text frame from the client comes to; see [`Socket::receive_text`].
#[derive(Debug)]
pub enum Incoming {
    /// Done: send this frame back, if any.
    Reply(Option<Bytes>),
    /// A message to store where blocking is fine ([`Publish::store`]),
    /// then answered by [`Socket::published`].
    Publish(Publish),
    /// A topic to open where blocking is fine ([`Open::run`](crate::Open::run)),
    /// then the same frame to give [`Socket::receive_text`] again.
    Open(crate::dispatch::Open),
}

/// `{"error":"…"}` as a frame.
fn error_frame(error: &Error) -> Bytes {
    Bytes::from(serde_json::json!({ "error": error.to_string() }).to_string())
}
