//! The protocol's request and answer types: a framework-neutral
//! [`Request`] in, an [`Outcome`] out, with the answers' shared shapes
//! (status, headers, error bodies, CORS) and the parked [`LongPoll`].
//! [`Hub::handle`](crate::Hub::handle), in `dispatch.rs`, decides which
//! outcome a request gets, once for every adapter.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::batch::Batch;
use crate::cursor::{Cursor, Resume};
use crate::dispatch::{Open, Publish};
use crate::error::Error;
use crate::files::{Lookup, StaticFile};
use crate::hub::Hub;
use crate::route::Format;
use crate::session::SessionId;
use crate::socket::Socket;
use crate::stream::EventStream;
use crate::topic::{Subscription, Topic};
use crate::wake::Wake;

/// `Cache-Control` of every answer that must never be cached.
pub(crate) const NO_STORE: &str = "no-cache, no-store";

/// The methods a topic URL serves, for `Allow`.
pub(crate) const TOPIC_METHODS: &str = "GET, POST, DELETE, OPTIONS";

/// The longest method name echoed back in a 405.
const MAX_ECHOED_METHOD: usize = 32;

/// A request as core sees it: the few parts that matter, borrowed from the
/// framework's own request.
#[derive(Debug, Clone, Default)]
pub struct Request<'a> {
    /// The method, as sent (`GET`, `POST`, …).
    pub method: &'a str,
    /// The path, still percent-encoded, without the query.
    pub path: &'a str,
    /// The query string after `?`, if any.
    pub query: Option<&'a str>,
    /// `Accept`.
    pub accept: Option<&'a str>,
    /// `Content-Type`.
    pub content_type: Option<&'a str>,
    /// Every `Cookie` header (HTTP/2 may split them).
    pub cookies: Vec<&'a str>,
    /// `Last-Event-ID`, what a reconnecting `EventSource` sends.
    pub last_event_id: Option<&'a str>,
    /// `Authorization`.
    pub authorization: Option<&'a str>,
    /// `Origin`, for CORS.
    pub origin: Option<&'a str>,
    /// `Upgrade` (`websocket` asks for a WebSocket).
    pub upgrade: Option<&'a str>,
    /// `Sec-WebSocket-Key`, which a WebSocket upgrade must carry.
    pub websocket_key: Option<&'a str>,
    /// `Sec-WebSocket-Version`, which must be `13` on an upgrade.
    pub websocket_version: Option<&'a str>,
    /// `Connection`, which must list `upgrade` on an upgrade.
    pub connection: Option<&'a str>,
    /// The body, read up to [`Hub::body_limit`].
    pub body: Body,
    /// Set by an adapter handling the request again after running the
    /// [`Outcome::Open`] it was answered: the hub then never answers
    /// `Open` twice, and opens the topic in place in the rare case it is
    /// missing again.
    pub opened: bool,
}

/// A request body as the adapter read it.
#[derive(Debug, Clone, Default)]
pub enum Body {
    /// The whole body (empty for none).
    #[default]
    Empty,
    /// The whole body, at most [`Hub::body_limit`] bytes.
    Full(Bytes),
    /// The body went past [`Hub::body_limit`]; the adapter stopped reading.
    TooLarge,
}

impl<'a> Request<'a> {
    /// A request for `target` (`/topics/chat.json?n=3`) with no headers.
    pub fn new(method: &'a str, target: &'a str) -> Request<'a> {
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        Request {
            method,
            path,
            query,
            ..Request::default()
        }
    }

    /// Takes note of one header if it is one that matters; the name is
    /// matched case-insensitively. Adapters call this for every header.
    pub fn header(&mut self, name: &str, value: &'a str) {
        let slot = if name.eq_ignore_ascii_case("accept") {
            &mut self.accept
        } else if name.eq_ignore_ascii_case("content-type") {
            &mut self.content_type
        } else if name.eq_ignore_ascii_case("cookie") {
            self.cookies.push(value);
            return;
        } else if name.eq_ignore_ascii_case("last-event-id") {
            &mut self.last_event_id
        } else if name.eq_ignore_ascii_case("authorization") {
            &mut self.authorization
        } else if name.eq_ignore_ascii_case("origin") {
            &mut self.origin
        } else if name.eq_ignore_ascii_case("upgrade") {
            &mut self.upgrade
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            &mut self.websocket_key
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            &mut self.websocket_version
        } else if name.eq_ignore_ascii_case("connection") {
            &mut self.connection
        } else {
            return;
        };
        // The first of repeated headers wins, so a second one smuggled in
        // later cannot override it.
        slot.get_or_insert(value);
    }

    /// Builder form of [`Request::header`].
    pub fn with_header(mut self, name: &str, value: &'a str) -> Request<'a> {
        self.header(name, value);
        self
    }

    /// Builder form for the body.
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Request<'a> {
        self.body = Body::Full(body.into());
        self
    }

    /// Whether this asks to become a WebSocket (`Upgrade: websocket`).
    pub(crate) fn wants_websocket(&self) -> bool {
        self.upgrade
            .is_some_and(|value| crate::header::lists(value, "websocket"))
    }

    /// The resume point given by `n`, if any.
    /// The first value of query parameter `name`, as sent.
    pub(crate) fn param(&self, name: &str) -> Option<&'a str> {
        self.query?
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    }

    pub(crate) fn cursor_param(&self) -> Result<Option<Resume>, Error> {
        let mut found = None;
        for pair in self.query.unwrap_or("").split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if key == "n" {
                if found.is_some() {
                    return Err(Error::DuplicateCursor);
                }
                found = Some(Resume::parse(value).map_err(Error::BadCursor)?);
            }
        }
        Ok(found)
    }
}

/// An immediate answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// Headers, in the order to send them.
    /// Values are mostly constants, borrowed rather than allocated per
    /// answer.
    pub headers: Vec<(&'static str, Cow<'static, str>)>,
    /// The body.
    pub body: Bytes,
}

impl Response {
    pub(crate) fn new(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Response {
        Response {
            status,
            headers: vec![
                ("Content-Type", content_type.into()),
                ("Cache-Control", NO_STORE.into()),
            ],
            body: body.into(),
        }
    }

    pub(crate) fn json(status: u16, body: impl Into<Bytes>) -> Response {
        Response::new(status, "application/json", body)
    }

    /// The answer for a refusal: `{"error":"…"}` with its status, and
    /// `Allow` / `Retry-After` where the refusal calls for them.
    pub fn error(error: &Error) -> Response {
        let body = serde_json::json!({ "error": error.to_string() }).to_string();
        let mut response = Response::json(error.status(), body);
        if let Some(allow) = error.allow() {
            response.headers.push(("Allow", allow.into()));
        }
        if let Some(challenge) = error.www_authenticate() {
            response
                .headers
                .push(("WWW-Authenticate", challenge.into()));
        }
        if let Some(seconds) = error.retry_after() {
            response
                .headers
                .push(("Retry-After", seconds.to_string().into()));
        }
        response
    }

    /// The value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }
}

/// What to do with a request.
#[derive(Debug)]
pub enum Outcome {
    /// Answer at once.
    Respond(Response),
    /// Park the request until [`LongPoll::poll`] answers it.
    Park(LongPoll),
    /// Send [`EventStream::head`], then stream [`EventStream::poll`]'s chunks.
    Stream(EventStream),
    /// Send [`StaticFile::head`], then, if [`StaticFile::has_body`], the
    /// file at [`StaticFile::path`] in chunks; if it cannot be opened,
    /// send [`StaticFile::gone`] instead.
    File(StaticFile),
    /// A static file still to be looked up: run [`Lookup::run`] where
    /// blocking on the file system is fine (not on a runtime thread), then
    /// send the file or the answer it gives as for [`Outcome::File`] and
    /// [`Outcome::Respond`].
    Lookup(Lookup),
    /// A publish into a store that may block (a file's fsync, a round trip
    /// to Redis): run [`Publish::run`] where blocking is fine (not on a
    /// runtime thread), then send the answer it gives. A hub on the memory
    /// store publishes at once instead.
    Publish(Publish),
    /// A subscription to a topic this server does not hold yet, in a
    /// store whose opening may block (reading a file, a round trip to
    /// Redis): run [`Open::run`] where blocking is fine (not on a runtime
    /// thread), then set [`Request::opened`] and handle the same request
    /// again. Only `GET`s are answered so, and slosh reads no `GET`'s
    /// body: the second handling may pass [`Body::Empty`].
    Open(Open),
    /// Answer [`Socket::head`] and upgrade to a WebSocket driven by
    /// [`Socket::poll`] and [`Socket::receive_text`].
    Socket(Socket),
}

impl Outcome {
    /// The immediate response, if this is one (handy in tests).
    pub fn into_response(self) -> Option<Response> {
        match self.resolved() {
            Outcome::Respond(response) => Some(response),
            _ => None,
        }
    }

    /// This outcome with a [`Outcome::Lookup`] or [`Outcome::Publish`] run
    /// here and now, on the calling thread: for tests and for callers that
    /// may block. ([`Outcome::Open`] needs the request again and is left
    /// as it is: such callers set [`Request::opened`] from the start.)
    pub fn resolved(self) -> Outcome {
        match self {
            Outcome::Lookup(lookup) => match lookup.run() {
                Ok(file) => Outcome::File(file),
                Err(response) => Outcome::Respond(response),
            },
            Outcome::Publish(publish) => Outcome::Respond(publish.run()),
            other => other,
        }
    }
}

pub(crate) fn not_allowed(method: &str, allow: &'static str) -> Error {
    Error::MethodNotAllowed {
        method: method.chars().take(MAX_ECHOED_METHOD).collect(),
        allow,
    }
}

/// `Access-Control-*` headers on an answer to an allowed origin. A listed
/// origin also gets credentials (the session cookie); `*` cannot, by the
/// CORS rules.
pub(crate) fn add_cors(response: &mut Response, allowed: &str) {
    response
        .headers
        .push(("Access-Control-Allow-Origin", allowed.to_string().into()));
    if allowed != "*" {
        response
            .headers
            .push(("Access-Control-Allow-Credentials", "true".into()));
        response.headers.push(("Vary", "Origin".into()));
    }
    // A page elsewhere may read why it was refused and when to retry.
    response.headers.push((
        "Access-Control-Expose-Headers",
        "WWW-Authenticate, Retry-After".into(),
    ));
}

/// The answer to a CORS preflight from an allowed origin.
pub(crate) fn preflight(allowed: &str) -> Response {
    let mut response = options(TOPIC_METHODS);
    add_cors(&mut response, allowed);
    response
        .headers
        .push(("Access-Control-Allow-Methods", TOPIC_METHODS.into()));
    response.headers.push((
        "Access-Control-Allow-Headers",
        "Content-Type, Authorization, Last-Event-ID".into(),
    ));
    response
        .headers
        .push(("Access-Control-Max-Age", "600".into()));
    response
}

/// `204` with no body, still marked uncacheable.
pub(crate) fn no_content() -> Response {
    let mut response = Response::new(204, "text/plain", Bytes::new());
    response.headers.retain(|(name, _)| *name != "Content-Type");
    response
}

pub(crate) fn options(allow: &'static str) -> Response {
    let mut response = no_content();
    response.headers.push(("Allow", allow.into()));
    response
}

/// Compares two byte strings in time that depends only on the length of
/// `expected` (the token): every one of its bytes is looked at whatever
/// `given` holds, the differences are OR-ed together with no branch on
/// them, and `black_box` keeps the optimizer from turning the loop into one
/// that stops at the first difference.
pub(crate) fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != expected.len());
    for (i, e) in expected.iter().enumerate() {
        diff |= e ^ given.get(i).copied().unwrap_or(!e);
        diff = std::hint::black_box(diff);
    }
    diff == 0
}

/// A long-poll waiting for messages newer than its cursor (or, of several
/// topics, newer than any of their cursors).
///
/// Drive it with [`LongPoll::poll`]: each call either answers or hands back
/// a listener to await, racing [`LongPoll::deadline`]. Dropping it is the
/// client going away: it stops counting as a subscriber at once, and its
/// session keeps the cursor it had.
pub struct LongPoll(pub(crate) Polling);

/// What a [`LongPoll`] waits on.
pub(crate) enum Polling {
    /// One topic (`/topics/NAME.json`).
    One(OnePoll),
    /// Several (`/subscribe.json?topic=a&topic=b`); boxed, so a parked
    /// poll of one topic (the common case, and the future hyper keeps for
    /// its whole wait) stays as small as it was.
    Many(Box<crate::multi::ManyPoll>),
}

impl std::fmt::Debug for LongPoll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Polling::One(poll) => poll.fmt(f),
            Polling::Many(poll) => poll.fmt(f),
        }
    }
}

impl LongPoll {
    /// When the poll times out with an empty batch; `None` for never.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.0 {
            Polling::One(poll) => poll.deadline,
            Polling::Many(poll) => poll.deadline(),
        }
    }

    /// Answers if there is something to answer (messages after the cursor,
    /// the deadline passed, the topic closed, the hub shutting down);
    /// otherwise returns the listener to await.
    pub fn poll(&mut self, now: Instant) -> Wake<Response> {
        match &mut self.0 {
            Polling::One(poll) => poll.poll(now),
            Polling::Many(poll) => poll.poll(now),
        }
    }

    /// Answers to the allowed CORS origin `allowed`.
    pub(crate) fn set_cors(&mut self, allowed: String) {
        match &mut self.0 {
            Polling::One(poll) => poll.cors = Some(allowed),
            Polling::Many(poll) => poll.cors = Some(allowed),
        }
    }
}

/// A long-poll of one topic.
pub(crate) struct OnePoll {
    pub(crate) hub: Hub,
    pub(crate) subscription: Subscription,
    pub(crate) cursor: Cursor,
    /// The `n` given was from another epoch and was read as 0: every answer
    /// says so (`"reset":true`).
    pub(crate) reset: bool,
    /// The client named this life's epoch with its cursor (see
    /// [`Batch::read_from`]).
    pub(crate) confirmed: bool,
    /// Answer with the cursor cookie (a session client on a shared store).
    pub(crate) cursor_cookie: bool,
    pub(crate) format: Format,
    pub(crate) session: Option<SessionId>,
    pub(crate) new_session: bool,
    pub(crate) deadline: Option<Instant>,
    pub(crate) answered: bool,
    /// The log was read and had nothing for this poll an instant ago (at
    /// parking), so the next [`poll`](Self::poll) can start by listening:
    /// a long-poll delivery is then one read fewer.
    pub(crate) checked: bool,
    /// The allowed CORS origin to answer with, if any.
    pub(crate) cors: Option<String>,
}

impl std::fmt::Debug for OnePoll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LongPoll")
            .field("topic", &self.topic().name)
            .field("cursor", &self.cursor)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl OnePoll {
    pub(crate) fn topic(&self) -> &Arc<Topic> {
        self.subscription.topic()
    }

    /// Answers if there is something to answer (messages after the cursor,
    /// the deadline passed, the topic closed, the hub shutting down);
    /// otherwise returns the listener to await.
    ///
    /// As a feed does, the log is read once before any listener is
    /// registered: a poll woken by a publish answers from that read and
    /// needs no listener. Only when it is empty is the listener registered
    /// and the log read again, so no publish can slip between the two. The
    /// first poll after parking skips the read before listening: the hub
    /// read the log empty when it parked the request.
    pub(crate) fn poll(&mut self, now: Instant) -> Wake<Response> {
        if !std::mem::take(&mut self.checked) {
            if let Some(response) = self.try_answer(now) {
                return Wake::Ready(response);
            }
        }
        let listener = self.topic().listen();
        if let Some(response) = self.try_answer(now) {
            return Wake::Ready(response);
        }
        Wake::Wait(listener)
    }

    /// The answer, if there is one to give at `now`.
    fn try_answer(&mut self, now: Instant) -> Option<Response> {
        let topic = Arc::clone(self.topic());
        if topic.is_closed() {
            return Some(self.answer(Batch::empty(0, topic.log.epoch()), now));
        }
        let batch = Batch::read_from(topic.log.as_ref(), self.cursor, self.confirmed);
        let timed_out = self.deadline.is_some_and(|deadline| now >= deadline);
        let news = !batch.messages.is_empty() || batch.missed() > 0;
        if news || timed_out || self.hub.is_shutting_down() {
            return Some(self.answer(batch, now));
        }
        None
    }

    pub(crate) fn answer(&mut self, mut batch: Batch, now: Instant) -> Response {
        batch.reset = self.reset;
        if let Some(id) = self.session {
            if !self.answered {
                self.hub
                    .inner
                    .sessions
                    .finish(id, self.topic(), batch.max, now);
            }
        }
        self.answered = true;
        self.hub.inner.metrics.delivered(batch.delivering());
        let mut response = match self.format {
            Format::Xml => Response::new(200, "text/xml; charset=utf-8", batch.to_xml()),
            _ => Response::json(200, batch.to_json()),
        };
        if let (Some(id), true) = (self.session, self.new_session) {
            response
                .headers
                .push(("Set-Cookie", id.set_cookie().into()));
        }
        if self.cursor_cookie {
            let cookie = crate::session::set_cursor_cookie(
                self.topic().name.as_str(),
                batch.max,
                batch.epoch,
                self.hub.inner.settings.session_timeout,
            );
            response.headers.push(("Set-Cookie", cookie.into()));
        }
        if let Some(allowed) = &self.cors {
            add_cors(&mut response, allowed);
        }
        response
    }
}

impl Drop for OnePoll {
    fn drop(&mut self) {
        if let (Some(id), false) = (self.session, self.answered) {
            self.hub.inner.sessions.release(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_whole_strings() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secreT", b"secret"));
        assert!(!constant_time_eq(b"secret2", b"secret"));
        assert!(!constant_time_eq(b"secre", b"secret"));
        assert!(!constant_time_eq(b"", b"secret"));
        assert!(constant_time_eq(b"", b""));
        // A difference anywhere counts, the first byte as much as the last.
        for i in 0..6 {
            let mut given = *b"secret";
            given[i] ^= 0x20;
            assert!(!constant_time_eq(&given, b"secret"), "{i}");
        }
    }

    /// Every way to be almost right, each refused on POST, DELETE and a
    /// WebSocket's publish alike; only the exact token passes.
    #[test]
    fn only_the_exact_token_publishes_by_post_delete_or_socket() {
        let hub = Hub::builder().publish_token("s3cret").build();
        let now = Instant::now();
        let status = |method: &'static str, target: &'static str, auth: Option<&str>| {
            let mut request = Request::new(method, target).with_body("x=1");
            if let Some(auth) = auth {
                request.header("Authorization", auth);
            }
            match hub.handle(request, now) {
                Outcome::Respond(response) => response.status,
                other => panic!("{other:?}"),
            }
        };
        let socket_publishes = |target: &'static str, auth: Option<&str>| {
            let mut request = Request::new("GET", target)
                .with_header("Upgrade", "websocket")
                .with_header("Connection", "Upgrade")
                .with_header("Sec-WebSocket-Version", "13")
                .with_header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
            if let Some(auth) = auth {
                request.header("Authorization", auth);
            }
            match hub.handle(request, now) {
                Outcome::Socket(mut socket) => socket.receive_text_here("1", now).is_none(),
                other => panic!("{other:?}"),
            }
        };
        let near_misses = [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer "),
            Some("s3cret"),
            Some("Basic s3cret"),
            Some("Bearer s3cre"),
            Some("Bearer s3crett"),
            Some("Bearer s3cret2"),
            Some("Bearer S3cret"),
            Some("Bearer s3creT"),
            Some("Bearer x3cret"),
            Some("Bearer s3cr\u{0}t"),
            Some("Bearer Bearer s3cret"),
            Some("Bearer s3cret s3cret"),
        ];
        for auth in near_misses {
            assert_eq!(status("POST", "/topics/t", auth), 401, "{auth:?}");
            // The token in the query string is not a credential.
            assert_eq!(status("POST", "/topics/t?token=s3cret", auth), 401);
            assert!(!socket_publishes("/topics/t", auth), "{auth:?}");
            assert!(!socket_publishes("/topics/t?token=s3cret", auth));
        }
        assert_eq!(
            hub.info("t").map(|info| info["max"].clone()),
            Some(0.into())
        );
        assert_eq!(status("POST", "/topics/t", Some("Bearer s3cret")), 200);
        assert!(socket_publishes("/topics/t", Some("Bearer s3cret")));
        for scheme in ["bearer", "BEARER", "bEaReR"] {
            let auth = format!("{scheme} s3cret");
            assert_eq!(status("POST", "/topics/t", Some(&auth)), 200, "{auth}");
            assert!(socket_publishes("/topics/t", Some(&auth)), "{auth}");
        }
        for auth in near_misses {
            assert_eq!(status("DELETE", "/topics/t", auth), 401, "{auth:?}");
        }
        assert_eq!(status("DELETE", "/topics/t", Some("Bearer s3cret")), 200);
    }

    #[test]
    fn the_cursor_parameter_is_found_among_others() {
        assert_eq!(
            Request::new("GET", "/topics/a?x=1&n=3").cursor_param(),
            Ok(Some(Resume {
                cursor: Cursor(3),
                epoch: None
            }))
        );
        assert_eq!(
            Request::new("GET", "/topics/a?n=3@aaaaaaab").cursor_param(),
            Ok(Some(Resume {
                cursor: Cursor(3),
                epoch: Some(crate::Epoch::from_bits(1))
            }))
        );
        assert_eq!(
            Request::new("GET", "/topics/a?nn=3").cursor_param(),
            Ok(None)
        );
        assert_eq!(Request::new("GET", "/topics/a").cursor_param(), Ok(None));
        assert_eq!(
            Request::new("GET", "/topics/a?n=1&n=2").cursor_param(),
            Err(Error::DuplicateCursor)
        );
        assert!(Request::new("GET", "/topics/a?n").cursor_param().is_err());
        assert!(Request::new("GET", "/topics/a?n=%31")
            .cursor_param()
            .is_err());
    }
}
