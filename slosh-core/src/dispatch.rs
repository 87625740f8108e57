//! The request dispatch of [`Hub`]: [`Hub::handle`] routes a framework-
//! neutral [`Request`] and decides its [`Outcome`]: an answer now, a parked
//! long-poll, an event stream, a WebSocket, or a static file. Every branch
//! of that decision is here; the rules each branch applies live in their
//! own modules (cursors, sessions, decoding, encodings, files).

use std::sync::Arc;
use std::time::Instant;

use crate::batch::Batch;
use crate::cursor::Resume;
use crate::decode::{self, BodyKind};
use crate::error::{Denied, Error};
use crate::feed::Feed;
use crate::http::{
    add_cors, constant_time_eq, no_content, not_allowed, options, preflight, Body, LongPoll,
    OnePoll, Outcome, Polling, Request, Response, TOPIC_METHODS,
};
use crate::hub::{Hub, Published};
use crate::message::Json;
use crate::metrics::SubscriberKind;
use crate::route::{self, Format, Route, Suffix};
use crate::session;
use crate::socket::{check_handshake, Socket, SocketKind};
use crate::stream::EventStream;

impl Hub {
    /// Decides what to answer to `request` at `now`.
    pub fn handle(&self, request: Request<'_>, now: Instant) -> Outcome {
        let cors = self.cors_origin(request.origin);
        if let (Some(allowed), "OPTIONS") = (&cors, request.method) {
            // A preflight is answered before routing: it never creates a
            // topic and needs no valid name to be answered.
            return Outcome::Respond(preflight(allowed));
        }
        let outcome = match self.decide(&request, now) {
            Ok(outcome) => outcome,
            Err(error) => self.refuse(&error),
        };
        with_cors(cors, outcome)
    }

    /// The answer to a refused request, counted.
    pub(crate) fn refuse(&self, error: &Error) -> Outcome {
        self.inner.metrics.rejected(error);
        Outcome::Respond(Response::error(error))
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`:
    /// the origin itself when it is listed, `*` when everything is allowed,
    /// nothing (no CORS header at all) otherwise.
    fn cors_origin(&self, origin: Option<&str>) -> Option<String> {
        let allowed = &self.inner.settings.cors_origins;
        let origin = origin?;
        if allowed.iter().any(|o| o == origin) {
            Some(origin.to_string())
        } else if allowed.iter().any(|o| o == "*") {
            Some("*".to_string())
        } else {
            None
        }
    }

    fn decide(&self, request: &Request<'_>, now: Instant) -> Result<Outcome, Error> {
        let method = request.method;
        let respond = |response| Ok(Outcome::Respond(response));
        match route::route(request.path)? {
            // HEAD is answered as GET: both HTTP libraries keep the
            // length and drop the body. Health checkers like HEAD.
            Route::Health => match method {
                // Still 200 when degraded: subscribers are served, and a
                // load balancer taking every node out over a shared
                // store's outage would help nobody.
                "GET" | "HEAD" => respond(Response::new(
                    200,
                    "text/plain; charset=utf-8",
                    self.store_health()
                        .map_or_else(|| "ok".to_string(), |why| format!("degraded: {why}")),
                )),
                _ => Err(not_allowed(method, "GET, HEAD")),
            },
            Route::Metrics => match method {
                "GET" | "HEAD" => respond(Response::new(
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    self.inner.metrics.to_prometheus(self.topic_count()),
                )),
                _ => Err(not_allowed(method, "GET, HEAD")),
            },
            // A static root, when there is one, owns every other path.
            Route::Elsewhere if self.inner.static_root.is_some() => {
                self.serve_static(method, request.path)
            }
            Route::Elsewhere => match crate::demo::page(request.path) {
                Some(page) if self.inner.settings.builtin_demo => match method {
                    "GET" | "HEAD" => respond(Response::new(200, "text/html; charset=utf-8", page)),
                    _ => Err(not_allowed(method, "GET, HEAD")),
                },
                _ => Err(Error::NotFound),
            },
            Route::SubscribeSocket => match method {
                "GET" if request.wants_websocket() => self.open_sockets(request, now),
                "GET" => Err(Error::BadUpgrade(
                    "a WebSocket upgrade here (or use /subscribe.sse, .json or .xml)",
                )),
                _ => Err(not_allowed(method, "GET")),
            },
            Route::Subscribe(format) => match method {
                "GET" if format == Format::Sse => self.open_streams(request, now),
                "GET" => self.poll_many(request, format, now),
                "OPTIONS" => respond(options("GET, OPTIONS")),
                _ => Err(not_allowed(method, "GET, OPTIONS")),
            },
            Route::List => match method {
                "GET" => respond(Response::json(200, self.list_for(request).to_string())),
                "OPTIONS" => respond(options("GET, OPTIONS")),
                _ => Err(not_allowed(method, "GET, OPTIONS")),
            },
            Route::Topic { name, suffix } => match (method, suffix) {
                ("GET", Suffix::Info) => {
                    match self.may_subscribe(request, name).map(|_| self.info(name))? {
                        Some(info) => respond(Response::json(200, info.to_string())),
                        None => Err(Error::NoSuchTopic(name.to_string())),
                    }
                }
                ("GET", Suffix::None | Suffix::Json) if request.wants_websocket() => {
                    self.open_socket(request, name, now)
                }
                ("GET", _) => match suffix.format(request.accept) {
                    Some(Format::Sse) => self.open_stream(request, name, now),
                    Some(format) => self.long_poll(request, name, format, now),
                    None => Err(Error::NotFound),
                },
                ("POST", Suffix::Info) => Err(not_allowed(method, "GET")),
                ("POST", _) => {
                    self.authorize(request, name)?;
                    let json = self.publish_body(request)?;
                    if self.inner.store.is_some() {
                        return Ok(Outcome::Publish(Publish::new(self, name, json)));
                    }
                    let published = self.publish_accepted(name, json)?;
                    respond(Response::json(200, published.to_json()))
                }
                ("DELETE", _) => {
                    self.authorize(request, name)?;
                    if self.delete(name) {
                        respond(Response::json(200, r#"{"ok":true}"#))
                    } else {
                        Err(Error::NoSuchTopic(name.to_string()))
                    }
                }
                ("OPTIONS", _) => respond(options(TOPIC_METHODS)),
                _ => Err(not_allowed(method, TOPIC_METHODS)),
            },
        }
    }

    /// Whether `request` may publish to (and delete) topic `topic`: with
    /// no publish token and no token key, anyone may; the publish token
    /// (compared in constant time, so the time an answer takes says nothing
    /// about how much of a guess was right) allows every topic; a signed
    /// token allows the topics it names for publishing. `Some(until)` when
    /// a signed token allowed it that stops being taken at `until`.
    pub(crate) fn authorize(
        &self,
        request: &Request<'_>,
        topic: &str,
    ) -> Result<Option<u64>, Error> {
        let auth = &self.inner.auth;
        let publish_token = &self.inner.settings.publish_token;
        if publish_token.is_none() && !auth.has_key() {
            return Ok(None);
        }
        if let Some(expected) = publish_token {
            let given = crate::auth::bearer(request).unwrap_or("");
            if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
                return Ok(None);
            }
            if !auth.has_key() {
                return Err(Error::Unauthorized);
            }
        }
        let presented = auth
            .presented(request)
            .ok_or(Error::NoToken("publishing"))?;
        let token = auth.verify(presented)?;
        if token.may_publish(topic) {
            Ok(token.until)
        } else {
            Err(Error::Forbidden(Denied::Topic {
                action: "publishing to",
                topic: topic.to_string(),
            }))
        }
    }

    /// Whether `request` may subscribe to topic `topic`: anyone may to a
    /// topic that is not private; a private one needs a signed token
    /// naming it. `Some(until)` when a token let it in that stops being
    /// taken at `until` (seconds since the Unix epoch): a stream ends then.
    pub(crate) fn may_subscribe(
        &self,
        request: &Request<'_>,
        topic: &str,
    ) -> Result<Option<u64>, Error> {
        let auth = &self.inner.auth;
        if !auth.is_private(topic) {
            return Ok(None);
        }
        let presented = auth
            .presented(request)
            .ok_or(Error::NoToken("subscribing to this topic"))?;
        let token = auth.verify(presented)?;
        if token.may_subscribe(topic) {
            Ok(token.until)
        } else {
            Err(Error::Forbidden(Denied::Topic {
                action: "subscribing to",
                topic: topic.to_string(),
            }))
        }
    }

    /// The message a POST's body makes, within the size limit.
    fn publish_body(&self, request: &Request<'_>) -> Result<Json, Error> {
        let limit = self.body_limit();
        let body: &[u8] = match &request.body {
            Body::TooLarge => return Err(Error::TooLarge { limit }),
            Body::Full(bytes) if bytes.len() > limit => return Err(Error::TooLarge { limit }),
            Body::Full(bytes) => bytes,
            Body::Empty => &[],
        };
        let kind = BodyKind::from_content_type(request.content_type)?;
        Ok(decode::decode_message(kind, body)?)
    }

    fn long_poll(
        &self,
        request: &Request<'_>,
        name: &str,
        format: Format,
        now: Instant,
    ) -> Result<Outcome, Error> {
        let explicit = request.cursor_param()?;
        if self.is_shutting_down() {
            return Err(Error::ShuttingDown);
        }
        // On a store shared by several servers, a session client's place
        // travels in its cursor cookie, since the server it reaches may not
        // know its session; it is no more trusted than `n`, which the
        // client could send as well.
        let shared = self
            .inner
            .store
            .as_ref()
            .is_some_and(|store| store.shared());
        let cursor_cookie = shared && explicit.is_none();
        let n = match (explicit, cursor_cookie) {
            (None, true) => session::find_cursor(&request.cookies, name),
            (n, _) => n,
        };
        let until = self.may_subscribe(request, name)?;
        if let Some(open) = self.opening(request, name) {
            return Ok(Outcome::Open(open));
        }
        let subscription = self.subscribe(name, SubscriberKind::LongPoll)?;
        let cookie = session::find_cookie(&request.cookies);
        let epoch = subscription.topic().log.epoch();
        let confirmed = n.is_some_and(|n| n.confirmed_in(epoch));
        let (n, reset) = match n.map(|n| n.within(epoch)) {
            Some((cursor, reset)) => (Some(cursor), reset),
            None => (None, false),
        };
        let begun = self
            .inner
            .sessions
            .begin(cookie, subscription.topic(), n, now);
        let mut poll = OnePoll {
            hub: self.clone(),
            subscription,
            cursor: begun.cursor,
            reset,
            confirmed,
            cursor_cookie,
            format,
            session: begun.session,
            new_session: begun.new,
            // A poll let in by a token waits no longer than the token
            // lasts: it answers (empty) then, and the next one is refused.
            deadline: [
                self.inner.settings.poll_timeout.map(|t| now + t),
                until.map(|until| crate::auth::instant_at(until, now)),
            ]
            .into_iter()
            .flatten()
            .min(),
            answered: false,
            checked: false,
            cors: None,
        };
        // Answer at once when something is buffered, or when messages
        // after the cursor aged out (the loss is told now); the
        // subscription is dropped with the poll, so an immediate answer
        // never counts as a parked subscriber afterwards.
        let batch = Batch::read_from(poll.topic().log.as_ref(), poll.cursor, poll.confirmed);
        if batch.messages.is_empty() && batch.missed() == 0 {
            poll.checked = true;
            Ok(Outcome::Park(LongPoll(Polling::One(poll))))
        } else {
            Ok(Outcome::Respond(poll.answer(batch, now)))
        }
    }

    fn open_stream(
        &self,
        request: &Request<'_>,
        name: &str,
        now: Instant,
    ) -> Result<Outcome, Error> {
        // Last-Event-ID wins over `n`: it is where the browser really is.
        let resume = match request.last_event_id {
            Some(id) => Some(Resume::parse(id.trim()).map_err(Error::BadLastEventId)?),
            None => request.cursor_param()?,
        };
        if self.is_shutting_down() {
            return Err(Error::ShuttingDown);
        }
        // Before the 204 below: whether a private topic was deleted is
        // for those who may read it to learn.
        let until = self.may_subscribe(request, name)?;
        if request.last_event_id.is_some() && self.inner.gone.contains(name) {
            // A browser reconnecting to a topic that was deleted or expired:
            // 204 is what makes an EventSource stop for good.
            return Ok(Outcome::Respond(no_content()));
        }
        if let Some(open) = self.opening(request, name) {
            return Ok(Outcome::Open(open));
        }
        let subscription = self.subscribe(name, SubscriberKind::Sse)?;
        let feed = Feed::open(self, subscription, SubscriberKind::Sse, resume, until, now);
        Ok(Outcome::Stream(EventStream::new(feed)))
    }

    /// One SSE stream of the topics `request`'s `topic` parameters name
    /// ([`crate::multi`]), each subscribed and authorized as a stream of it
    /// alone would be.
    fn open_streams(&self, request: &Request<'_>, now: Instant) -> Result<Outcome, Error> {
        // Last-Event-ID wins over `n`: it is where the browser really is.
        let places = request.last_event_id.or_else(|| request.param("n"));
        let Many {
            names,
            resume,
            until,
        } = self.many(request, places, false)?;
        let settings = &self.inner.settings;
        if request.last_event_id.is_some()
            && names.iter().any(|name| self.inner.gone.contains(name))
        {
            // A reconnect to a stream one of whose topics was deleted or
            // expired: 204 stops the EventSource, as for that topic alone.
            return Ok(Outcome::Respond(no_content()));
        }
        if let Some(open) = self.opening_all(request, &names) {
            return Ok(Outcome::Open(open));
        }
        let mut feeds = Vec::with_capacity(names.len());
        for (name, resume) in names.iter().zip(resume) {
            let subscription = self.subscribe(name, SubscriberKind::Sse)?;
            feeds.push(Feed::open(
                self,
                subscription,
                SubscriberKind::Sse,
                resume,
                None,
                now,
            ));
        }
        let expires = until.map(|until| crate::auth::instant_at(until, now));
        match crate::multi::Multi::new(feeds, settings.heartbeat, expires, now) {
            Some(multi) => Ok(Outcome::Stream(EventStream::many(multi))),
            None => Err(Error::BadTopicList("name the topics".into())),
        }
    }

    /// What a request for several topics names and may read: its `topic`
    /// parameters (none only if `empty_ok`), each one's place from
    /// `places` (`5@E1,7@E2`; none: from its newest message), and when the
    /// token that let it in ends, if one did. Refused whole if any topic
    /// is (a bad name, a private topic without the right).
    fn many<'a>(
        &self,
        request: &Request<'a>,
        places: Option<&str>,
        empty_ok: bool,
    ) -> Result<Many<'a>, Error> {
        let limit = self.inner.settings.max_topics_per_subscriber;
        let names = if empty_ok && request.param("topic").is_none() {
            Vec::new()
        } else {
            crate::multi::topics_param(request.query, limit)?
        };
        let resume = match places {
            Some(places) => crate::multi::places(places, names.len())?
                .into_iter()
                .map(Some)
                .collect(),
            None => vec![None; names.len()],
        };
        if self.is_shutting_down() {
            return Err(Error::ShuttingDown);
        }
        let mut until: Option<u64> = None;
        for name in &names {
            if let Some(expiry) = self.may_subscribe(request, name)? {
                until = Some(until.map_or(expiry, |until| until.min(expiry)));
            }
        }
        Ok(Many {
            names,
            resume,
            until,
        })
    }

    /// One long-poll of the topics `request`'s `topic` parameters name,
    /// from the places its `n` gives (`5@E1,7@E2`, one per topic) or, with
    /// none, from each topic's newest message.
    fn poll_many(
        &self,
        request: &Request<'_>,
        format: Format,
        now: Instant,
    ) -> Result<Outcome, Error> {
        let Many {
            names,
            resume,
            until,
        } = self.many(request, request.param("n"), false)?;
        let settings = &self.inner.settings;
        if let Some(open) = self.opening_all(request, &names) {
            return Ok(Outcome::Open(open));
        }
        let subscriptions = names
            .iter()
            .map(|name| self.subscribe(name, SubscriberKind::LongPoll))
            .collect::<Result<Vec<_>, Error>>()?;
        let deadline = [
            settings.poll_timeout.map(|t| now + t),
            until.map(|until| crate::auth::instant_at(until, now)),
        ]
        .into_iter()
        .flatten()
        .min();
        let mut poll = crate::multi::ManyPoll::new(self, subscriptions, resume, format, deadline);
        Ok(match poll.try_answer(now) {
            Some(response) => Outcome::Respond(response),
            None => Outcome::Park(LongPoll(Polling::Many(Box::new(poll)))),
        })
    }

    /// Accepts a WebSocket upgrade following the topics `request`'s `topic`
    /// parameters name (none is fine: frames subscribe later), each from
    /// its place in `n` (`5@E1,7@E2`) or its newest message.
    fn open_sockets(&self, request: &Request<'_>, now: Instant) -> Result<Outcome, Error> {
        let key = check_handshake(request)?.to_string();
        let Many {
            names,
            resume,
            until,
        } = self.many(request, request.param("n"), true)?;
        if let Some(open) = self.opening_all(request, &names) {
            return Ok(Outcome::Open(open));
        }
        let mut feeds = Vec::with_capacity(names.len());
        for (name, resume) in names.iter().zip(resume) {
            let subscription = self.subscribe(name, SubscriberKind::WebSocket)?;
            feeds.push(Feed::open(
                self,
                subscription,
                SubscriberKind::WebSocket,
                resume,
                None,
                now,
            ));
        }
        let expires = until.map(|until| crate::auth::instant_at(until, now));
        let credential = self.inner.auth.presented(request).map(str::to_string);
        let many = crate::multi::ManySocket::new(self, feeds, expires, credential, now);
        Ok(Outcome::Socket(Socket {
            hub: self.clone(),
            key,
            kind: SocketKind::Many(Box::new(many)),
        }))
    }

    /// Accepts a WebSocket upgrade on topic `name`, or refuses it with the
    /// status an ordinary GET would get.
    pub(crate) fn open_socket(
        &self,
        request: &Request<'_>,
        name: &str,
        now: Instant,
    ) -> Result<Outcome, Error> {
        let key = check_handshake(request)?.to_string();
        let resume = request.cursor_param()?;
        if self.is_shutting_down() {
            return Err(Error::ShuttingDown);
        }
        let until = self.may_subscribe(request, name)?;
        let publish = self.authorize(request, name);
        // A right a token gave ends with the token: a socket that may
        // publish by one is ended at its expiry too, even on a topic
        // anyone may read.
        let (publish_until, publish_refusal) = match publish {
            Ok(until) => (until, None),
            Err(refusal) => (None, Some(refusal)),
        };
        let until = [until, publish_until].into_iter().flatten().min();
        if let Some(open) = self.opening(request, name) {
            return Ok(Outcome::Open(open));
        }
        let subscription = self.subscribe(name, SubscriberKind::WebSocket)?;
        let name = subscription.topic().name.clone();
        let feed = Feed::open(
            self,
            subscription,
            SubscriberKind::WebSocket,
            resume,
            until,
            now,
        );
        Ok(Outcome::Socket(Socket {
            hub: self.clone(),
            key,
            kind: SocketKind::One {
                feed,
                name,
                publish_refusal,
            },
        }))
    }

    /// Answers a request outside the hub's own URLs from the static root:
    /// the method is checked now, the file system is left to
    /// [`Lookup::run`](crate::files::Lookup::run), off the runtime thread.
    pub(crate) fn serve_static(&self, method: &str, path: &str) -> Result<Outcome, Error> {
        let with_body = crate::files::with_body(method)?;
        Ok(Outcome::Lookup(crate::files::Lookup::new(
            self.clone(),
            path,
            with_body,
        )))
    }
}

/// `outcome` answering an allowed origin `cors`: its CORS headers, now or
/// when the answer is made.
pub(crate) fn with_cors(cors: Option<String>, outcome: Outcome) -> Outcome {
    match (cors, outcome) {
        (None, outcome) => outcome,
        (Some(allowed), Outcome::Respond(mut response)) => {
            add_cors(&mut response, &allowed);
            Outcome::Respond(response)
        }
        (Some(allowed), Outcome::Park(mut poll)) => {
            poll.set_cors(allowed);
            Outcome::Park(poll)
        }
        (Some(allowed), Outcome::Stream(mut stream)) => {
            stream.cors = Some(allowed);
            Outcome::Stream(stream)
        }
        (Some(allowed), Outcome::File(mut file)) => {
            file.cors = Some(allowed);
            Outcome::File(file)
        }
        (Some(allowed), Outcome::Lookup(mut lookup)) => {
            lookup.cors = Some(allowed);
            Outcome::Lookup(lookup)
        }
        (Some(allowed), Outcome::Publish(mut publish)) => {
            publish.cors = Some(allowed);
            Outcome::Publish(publish)
        }
        // CORS does not govern WebSockets; the upgrade answer carries
        // none of its headers.
        (Some(_), socket @ Outcome::Socket(_)) => socket,
        // The request is handled again once the topic is open, and that
        // answer carries them.
        (Some(_), open @ Outcome::Open(_)) => open,
    }
}

impl Hub {
    /// `/topics` as `request` may see it: a private topic is listed only to
    /// a token that may read it.
    fn list_for(&self, request: &Request<'_>) -> serde_json::Value {
        let auth = &self.inner.auth;
        if !auth.has_private() {
            return self.list();
        }
        let token = auth
            .presented(request)
            .and_then(|token| auth.verify(token).ok());
        self.list_where(|name| {
            !auth.is_private(name)
                || token
                    .as_ref()
                    .is_some_and(|token| token.may_subscribe(name))
        })
    }

    /// What `request`, a valid subscription to topic `name`, must wait
    /// for before it subscribes, if anything: the topic opened off the
    /// runtime thread ([`Outcome::Open`]), when this server does not hold
    /// it and its store may block (memory opens at once).
    fn opening(&self, request: &Request<'_>, name: &str) -> Option<Open> {
        if request.opened || self.inner.store.is_none() || self.find(name).is_some() {
            return None;
        }
        Some(Open(match self.begin_open(name) {
            Ok(opening) => Step::Run(Running {
                hub: self.clone(),
                name: name.to_string(),
                opening,
            }),
            Err(listener) => Step::Wait(listener),
        }))
    }
}

impl Hub {
    /// For a stream of several topics: the topics this server does not hold
    /// yet, opened off the runtime thread one after the other, when its
    /// store may block.
    fn opening_all(&self, request: &Request<'_>, names: &[&str]) -> Option<Open> {
        if request.opened || self.inner.store.is_none() {
            return None;
        }
        let missing: Vec<String> = names
            .iter()
            .filter(|name| self.find(name).is_none())
            .map(|name| name.to_string())
            .collect();
        (!missing.is_empty()).then(|| {
            Open(Step::RunAll {
                hub: self.clone(),
                names: missing,
            })
        })
    }
}

/// See [`Hub::many`].
struct Many<'a> {
    names: Vec<&'a str>,
    resume: Vec<Option<Resume>>,
    until: Option<u64>,
}

/// A topic to open before a subscription to it is handled, for a store
/// that may block: see [`Outcome::Open`]. The first subscription to ask
/// opens it; the others, arriving while it is under way, wait for that
/// one instead of each taking a blocking thread (a thousand subscribers
/// arriving together would otherwise take a thousand).
#[derive(Debug)]
pub struct Open(Step);

#[derive(Debug)]
enum Step {
    Run(Running),
    Wait(event_listener::EventListener),
    /// Several topics of one stream, each opened in turn (the hub's lock
    /// per opening still makes each log once).
    RunAll {
        hub: Hub,
        names: Vec<String>,
    },
}

/// The opening this subscription runs: told over when dropped, run or
/// not (a client gone before its turn must not leave the others waiting).
struct Running {
    hub: Hub,
    name: String,
    opening: Arc<crate::hub::Opening>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.hub.close_gate(&self.name, &self.opening);
    }
}

impl Open {
    /// The opening of topics `names` one after the other.
    pub(crate) fn all(hub: &Hub, names: Vec<String>) -> Open {
        Open(Step::RunAll {
            hub: hub.clone(),
            names,
        })
    }

    /// Whether [`Open::run`] would block on the store (this subscription
    /// opens the topic) rather than only wait for another's opening,
    /// which [`Open::wait`] does without a thread.
    pub fn blocks(&self) -> bool {
        !matches!(self.0, Step::Wait(_))
    }

    /// Opens the topic (this may block on the store) unless it is open
    /// already, or waits for the opening under way. Whatever goes wrong (a
    /// bad name, too many topics) is answered when the request is handled
    /// again.
    pub fn run(self) {
        match self.0 {
            Step::Run(running) => running.hub.open(&running.name),
            Step::Wait(listener) => event_listener::Listener::wait(listener),
            Step::RunAll { hub, names } => {
                for name in &names {
                    hub.open(name);
                }
            }
        }
    }

    /// Waits for the opening under way, if this is such a wait; gives
    /// itself back when it must [`run`](Open::run) instead.
    pub async fn wait(self) -> Result<(), Open> {
        match self.0 {
            Step::Wait(listener) => {
                listener.await;
                Ok(())
            }
            step => Err(Open(step)),
        }
    }
}

/// A decoded, authorized publish still to be stored, for a store that may
/// block: see [`Outcome::Publish`].
#[derive(Debug)]
pub struct Publish {
    hub: Hub,
    topic: String,
    json: Json,
    /// The allowed CORS origin to answer with, if any.
    pub(crate) cors: Option<String>,
}

impl Publish {
    /// `json`, accepted for `topic`, to store.
    pub(crate) fn new(hub: &Hub, topic: &str, json: Json) -> Publish {
        Publish {
            hub: hub.clone(),
            topic: topic.to_string(),
            json,
            cors: None,
        }
    }

    /// Stores the message (this may block on the store): its id, or why it
    /// was refused.
    pub fn store(self) -> Result<Published, Error> {
        self.hub.publish_accepted(&self.topic, self.json)
    }

    /// Stores the message (this may block on the store) and gives the
    /// answer: `{"ok":true,"id":N}`, or the refusal, counted as any other.
    pub fn run(self) -> Response {
        let mut response = match self.hub.publish_accepted(&self.topic, self.json) {
            Ok(published) => Response::json(200, published.to_json()),
            Err(error) => match self.hub.refuse(&error) {
                Outcome::Respond(response) => response,
                // `refuse` only answers; anything else is a bug here,
                // answered rather than panicked on.
                _ => Response::error(&error),
            },
        };
        if let Some(allowed) = &self.cors {
            add_cors(&mut response, allowed);
        }
        response
    }
}
