//! A Server-Sent Events stream of several topics at once
//! (`GET /subscribe.sse?topic=a&topic=b`), so a page follows them on one
//! connection (browsers allow six per origin over HTTP/1.1).
//!
//! **One feed per topic.** Each topic keeps its own [`Feed`]: cursor,
//! epoch, reset, gaps, `max_unsent` bound, exactly as a stream of that
//! topic alone would, so the per-topic rules hold by construction (and a
//! property test compares the two). What the stream adds is one heartbeat,
//! one token expiry and one wake-up: every topic notifies the stream's own
//! event ([`Topic::watch`](crate::topic::Topic)), so it waits on a single
//! listener whatever the number of topics.
//!
//! **The wire.** Each message is one event whose data says its topic,
//! `data: {"topic":"a","data":MSG}` (one `onmessage` serves every topic,
//! and a topic named like one of slosh's events cannot collide with it);
//! a gap is `event: gap` with `{"topic":"a","missed":N}` (`null` for a
//! reset). The event's id is every topic's place, in the order of the
//! `topic` parameters: `id: 5@E1,7@E2`. A reconnecting `EventSource` sends
//! it back as `Last-Event-ID` to the same URL, so every topic resumes
//! where it was; `n` takes the same form.
//!
//! **The end.** The stream ends when any of its topics ends (deleted,
//! expired, reset by a shared store), when it is too slow on any topic,
//! when its token runs out, or at shutdown; its reconnect then finds the
//! deleted topic gone (`204`), as a stream of that topic alone would.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use event_listener::Event;

use crate::batch::{Batch, SSE_PING};
use crate::cursor::{Cursor, Resume};
use crate::error::Error;
use crate::feed::{EndReason, Feed, FeedStep, Stall};
use crate::http::{add_cors, Response};
use crate::hub::Hub;
use crate::metrics::SubscriberKind;
use crate::name;
use crate::route::Format;
use crate::topic::Subscription;
use crate::wake::Wake;

/// What a [`Multi`] wants next; see [`crate::StreamStep`].
pub(crate) enum MultiStep {
    /// The chunks appended to the caller's buffer are to be sent.
    Send,
    /// Await the listener or the instant, then poll again.
    Wait(event_listener::EventListener, Instant),
    /// The stream is over.
    End(EndReason),
}

/// Several topics' feeds behind one stream.
pub(crate) struct Multi {
    feeds: Vec<Feed>,
    /// Notified by every topic of the stream.
    wake: Arc<Event>,
    heartbeat: Duration,
    next_ping: Instant,
    /// When the token that let the stream in stops being taken.
    expires: Option<Instant>,
    /// Sticky once set.
    ended: Option<EndReason>,
    /// The watch over every topic while a write is pending.
    stall: Stall,
}

impl Multi {
    /// The stream of `feeds` (in the order of the request's topics),
    /// pinging every `heartbeat`, ending at `expires`.
    /// `None` without feeds.
    pub(crate) fn new(
        feeds: Vec<Feed>,
        heartbeat: Duration,
        expires: Option<Instant>,
        now: Instant,
    ) -> Option<Multi> {
        let wake = Arc::new(Event::new());
        let hub = feeds.first()?.hub();
        let stall = Feed::stall_of_many(&hub, SubscriberKind::Sse, &feeds, &wake);
        for feed in &feeds {
            feed.topic().watch(&wake);
        }
        Some(Multi {
            feeds,
            wake,
            heartbeat,
            next_ping: now + heartbeat,
            expires,
            ended: None,
            stall,
        })
    }

    /// The gap events of topics whose resume point was from another life,
    /// once, at the start.
    pub(crate) fn take_resets(&mut self, out: &mut Vec<Bytes>) {
        for feed in &mut self.feeds {
            if feed.take_reset() {
                out.push(gap(feed.topic().name.as_str(), None));
            }
        }
    }

    /// Something was sent at `now`: the next ping is a heartbeat away.
    pub(crate) fn sent_at(&mut self, now: Instant) {
        self.next_ping = now + self.heartbeat;
    }

    /// The first feed's place (what [`crate::EventStream::cursor`] shows).
    pub(crate) fn first_cursor(&self) -> crate::Cursor {
        self.feeds.first().map_or(crate::Cursor(0), Feed::cursor)
    }

    /// The watch to keep while a write is pending: every topic's.
    pub(crate) fn stall(&self) -> Stall {
        self.stall.clone()
    }

    /// The topics, for `Debug`.
    pub(crate) fn names(&self) -> Vec<&str> {
        self.feeds
            .iter()
            .map(|feed| feed.topic().name.as_str())
            .collect()
    }

    /// The next step at `now`, with whatever is to be sent appended to
    /// `out`. Reads every feed once before listening, and again after, as
    /// a single feed does, so no publish slips between read and wait.
    pub(crate) fn poll(&mut self, now: Instant, out: &mut Vec<Bytes>) -> MultiStep {
        if let Some(reason) = self.ended {
            return MultiStep::End(reason);
        }
        if self.expires.is_some_and(|at| now >= at) {
            self.ended = Some(EndReason::TokenExpired);
            return MultiStep::End(EndReason::TokenExpired);
        }
        if let Some(step) = self.read(now, out) {
            return step;
        }
        let listener = self.wake.listen();
        if let Some(step) = self.read(now, out) {
            return step;
        }
        if now >= self.next_ping {
            self.sent_at(now);
            out.push(Bytes::from_static(SSE_PING.as_bytes()));
            return MultiStep::Send;
        }
        let wake = self
            .expires
            .map_or(self.next_ping, |at| at.min(self.next_ping));
        MultiStep::Wait(listener, wake)
    }

    /// Every feed's news appended to `out`; `None` when there was none.
    fn read(&mut self, now: Instant, out: &mut Vec<Bytes>) -> Option<MultiStep> {
        let before = out.len();
        for i in 0..self.feeds.len() {
            match self.feeds.get_mut(i).and_then(|feed| feed.poll_ready(now)) {
                Some(FeedStep::Deliver(batch)) => self.encode(i, &batch, out),
                Some(FeedStep::End(reason)) => {
                    self.ended = Some(reason);
                    // What was read before still goes out; the end is
                    // sticky, so the next poll ends the stream.
                    return Some(if out.len() > before {
                        MultiStep::Send
                    } else {
                        MultiStep::End(reason)
                    });
                }
                Some(FeedStep::Ping | FeedStep::Wait(..)) | None => {}
            }
        }
        if out.len() > before {
            self.sent_at(now);
            Some(MultiStep::Send)
        } else {
            None
        }
    }

    /// Feed `i`'s batch as events: its gap, then each message with its
    /// topic and the stream's place after it.
    fn encode(&self, i: usize, batch: &Batch, out: &mut Vec<Bytes>) {
        let Some(feed) = self.feeds.get(i) else {
            return;
        };
        let topic = feed.topic().name.as_str();
        let missed = batch.missed();
        if missed > 0 {
            out.push(gap(topic, Some(missed)));
        }
        if batch.messages.is_empty() {
            return;
        }
        // The other topics' places are the same for every message here.
        let place = |feed: &Feed| format!("{}@{}", feed.cursor().0, feed.topic().log.epoch());
        let before: Vec<String> = self.feeds.iter().take(i).map(place).collect();
        let after: Vec<String> = self.feeds.iter().skip(i + 1).map(place).collect();
        let epoch = batch.epoch;
        for message in &batch.messages {
            let mut places = before.clone();
            places.push(format!("{}@{epoch}", message.id()));
            places.extend(after.iter().cloned());
            out.push(Bytes::from(format!(
                "id: {}\ndata: {{\"topic\":\"{topic}\",\"data\":{}}}\n\n",
                places.join(","),
                message.json().as_str()
            )));
        }
    }
}

impl Drop for Multi {
    fn drop(&mut self) {
        for feed in &self.feeds {
            feed.topic().unwatch(&self.wake);
        }
    }
}

/// A long-poll of several topics (`/subscribe.json?topic=a&topic=b`):
/// it answers as soon as any topic has news (messages after its cursor, or
/// a gap), at its deadline, or when a topic ends or the hub shuts down,
/// with every topic's batch and the next resume point, `n`. Each topic's
/// batch follows the rules of a poll of that topic alone.
pub(crate) struct ManyPoll {
    hub: Hub,
    subscriptions: Vec<Subscription>,
    cursors: Vec<Cursor>,
    /// Per topic: the client named this life's epoch ([`Batch::read_from`]).
    confirmed: Vec<bool>,
    /// Per topic: the place given was from another life, read as 0.
    resets: Vec<bool>,
    format: Format,
    deadline: Option<Instant>,
    /// Notified by every topic of the poll.
    wake: Arc<Event>,
    /// The allowed CORS origin to answer with, if any.
    pub(crate) cors: Option<String>,
}

impl std::fmt::Debug for ManyPoll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let topics: Vec<&str> = self
            .subscriptions
            .iter()
            .map(|s| s.topic().name.as_str())
            .collect();
        f.debug_struct("LongPoll")
            .field("topics", &topics)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl ManyPoll {
    /// A poll of `subscriptions` (in the order of the request's topics),
    /// each from its `resume` point or, without one, from its `max` (only
    /// what comes next).
    pub(crate) fn new(
        hub: &Hub,
        subscriptions: Vec<Subscription>,
        resume: Vec<Option<Resume>>,
        format: Format,
        deadline: Option<Instant>,
    ) -> ManyPoll {
        let wake = Arc::new(Event::new());
        let (mut cursors, mut confirmed, mut resets) = (Vec::new(), Vec::new(), Vec::new());
        for (subscription, resume) in subscriptions.iter().zip(resume) {
            let log = &subscription.topic().log;
            let epoch = log.epoch();
            let (cursor, reset) = match resume {
                Some(resume) => resume.within(epoch),
                None => (Cursor(log.max()), false),
            };
            cursors.push(cursor);
            resets.push(reset);
            confirmed.push(resume.is_some_and(|resume| resume.confirmed_in(epoch)));
            subscription.topic().watch(&wake);
        }
        ManyPoll {
            hub: hub.clone(),
            subscriptions,
            cursors,
            confirmed,
            resets,
            format,
            deadline,
            wake,
            cors: None,
        }
    }

    /// When the poll answers empty.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The answer, or the listener to await (registered between two reads,
    /// so no publish slips between them).
    pub(crate) fn poll(&mut self, now: Instant) -> Wake<Response> {
        if let Some(response) = self.try_answer(now) {
            return Wake::Ready(response);
        }
        let listener = self.wake.listen();
        if let Some(response) = self.try_answer(now) {
            return Wake::Ready(response);
        }
        Wake::Wait(listener)
    }

    /// The answer, if there is one to give at `now`.
    pub(crate) fn try_answer(&mut self, now: Instant) -> Option<Response> {
        let mut batches = Vec::with_capacity(self.subscriptions.len());
        let mut news = false;
        let mut closed = false;
        for (i, subscription) in self.subscriptions.iter().enumerate() {
            let topic = subscription.topic();
            let cursor = self.cursors.get(i).copied().unwrap_or(Cursor(0));
            let confirmed = self.confirmed.get(i).copied().unwrap_or(false);
            let mut batch = if topic.is_closed() {
                closed = true;
                Batch::empty(0, topic.log.epoch())
            } else {
                Batch::read_from(topic.log.as_ref(), cursor, confirmed)
            };
            batch.reset = self.resets.get(i).copied().unwrap_or(false);
            news |= !batch.messages.is_empty() || batch.missed() > 0 || batch.reset;
            batches.push(batch);
        }
        let timed_out = self.deadline.is_some_and(|deadline| now >= deadline);
        if !(news || closed || timed_out || self.hub.is_shutting_down()) {
            return None;
        }
        Some(self.answer(&batches))
    }

    /// `{"topics":[{"topic":"a",BATCH…},…],"n":"5@E1,7@E2"}`, or in XML
    /// `<topics n="…"><topic name="a"><res …>…</res></topic>…</topics>`.
    fn answer(&self, batches: &[Batch]) -> Response {
        let n: Vec<String> = batches
            .iter()
            .map(|batch| format!("{}@{}", batch.max, batch.epoch))
            .collect();
        let n = n.join(",");
        let names = self.subscriptions.iter().map(|s| s.topic().name.as_str());
        for batch in batches {
            self.hub.inner.metrics.delivered(batch.delivering());
        }
        let mut response = match self.format {
            Format::Xml => {
                let mut out =
                    format!("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<topics n=\"{n}\">");
                for (name, batch) in names.zip(batches) {
                    let xml = batch.to_xml();
                    let body = xml.split_once('\n').map_or(xml.as_str(), |(_, body)| body);
                    out.push_str(&format!("<topic name=\"{name}\">{body}</topic>"));
                }
                out.push_str("</topics>");
                Response::new(200, "text/xml; charset=utf-8", out)
            }
            _ => {
                let topics: Vec<String> = names
                    .zip(batches)
                    .map(|(name, batch)| {
                        let json = batch.to_json();
                        format!("{{\"topic\":\"{name}\",{}", json.get(1..).unwrap_or("}"))
                    })
                    .collect();
                Response::json(
                    200,
                    format!("{{\"topics\":[{}],\"n\":\"{n}\"}}", topics.join(",")),
                )
            }
        };
        if let Some(allowed) = &self.cors {
            add_cors(&mut response, allowed);
        }
        response
    }
}

impl Drop for ManyPoll {
    fn drop(&mut self) {
        for subscription in &self.subscriptions {
            subscription.topic().unwatch(&self.wake);
        }
    }
}

/// A `gap` event of topic `topic`: `missed` messages, or `None` for a
/// reset.
fn gap(topic: &str, missed: Option<u64>) -> Bytes {
    let missed = missed.map_or_else(|| "null".to_string(), |n| n.to_string());
    Bytes::from(format!(
        "event: gap\ndata: {{\"topic\":\"{topic}\",\"missed\":{missed}}}\n\n"
    ))
}

/// The `topic` parameters of `query`, in order: at least one, at most
/// `limit`, each a valid name, none twice.
pub(crate) fn topics_param(query: Option<&str>, limit: usize) -> Result<Vec<&str>, Error> {
    let mut topics: Vec<&str> = Vec::new();
    for pair in query.unwrap_or("").split('&') {
        let Some(("topic", name)) = pair.split_once('=') else {
            continue;
        };
        name::validate(name).map_err(Error::BadTopicName)?;
        if topics.contains(&name) {
            return Err(Error::BadTopicList(format!("topic {name} is given twice")));
        }
        if topics.len() == limit {
            return Err(Error::BadTopicList(format!(
                "at most {limit} topics may share a stream"
            )));
        }
        topics.push(name);
    }
    if topics.is_empty() {
        return Err(Error::BadTopicList(
            "name the topics: /subscribe.sse?topic=a&topic=b".into(),
        ));
    }
    Ok(topics)
}

/// A place for each of `count` topics, from `text` (`5@E1,7@E2`, in the
/// order of the `topic` parameters).
pub(crate) fn places(text: &str, count: usize) -> Result<Vec<Resume>, Error> {
    let places: Vec<&str> = text.trim().split(',').collect();
    if places.len() != count {
        return Err(Error::BadTopicList(format!(
            "the resume point {text:?} must give one place per topic ({count}), in the order of the topic parameters"
        )));
    }
    places
        .into_iter()
        .map(|place| Resume::parse(place.trim()).map_err(Error::BadLastEventId))
        .collect()
}

/// A WebSocket of several topics (`GET /subscribe?topic=a&topic=b`
/// upgraded): the same feeds as [`Multi`], one per topic, but the set can
/// change while it runs, and its text frames are commands.
///
/// Out: `{"topic":"a","id":N,"epoch":"E","data":MSG}` per message,
/// `{"topic":"a","missed":K}` for a gap (`null` for a reset). In:
/// `{"subscribe":"c"}` (with `"n":"5@E"` to resume), `{"unsubscribe":"a"}`,
/// `{"publish":{"topic":"a","data":MSG}}`; each checked with the
/// credentials the upgrade request carried, as a request to that topic
/// would be; anything else is answered with an `{"error":…}` frame.
pub(crate) struct ManySocket {
    pub(crate) hub: Hub,
    pub(crate) feeds: Vec<Feed>,
    pub(crate) wake: Arc<Event>,
    heartbeat: Duration,
    next_ping: Instant,
    /// When the token that let the socket in stops being taken.
    pub(crate) expires: Option<Instant>,
    /// The token (or publish token) the upgrade request carried, to check
    /// the topics of later frames with.
    pub(crate) credential: Option<String>,
}

/// What a command frame on a [`ManySocket`] asks.
pub(crate) enum Command {
    Subscribe(String, Option<Resume>),
    Unsubscribe(String),
    Publish(String, crate::message::Json),
}

impl ManySocket {
    pub(crate) fn new(
        hub: &Hub,
        feeds: Vec<Feed>,
        expires: Option<Instant>,
        credential: Option<String>,
        now: Instant,
    ) -> ManySocket {
        let wake = Arc::new(Event::new());
        for feed in &feeds {
            feed.topic().watch(&wake);
        }
        let heartbeat = hub.inner.settings.heartbeat;
        ManySocket {
            hub: hub.clone(),
            feeds,
            wake,
            heartbeat,
            next_ping: now + heartbeat,
            expires,
            credential,
        }
    }

    /// A request carrying the upgrade's credential, to check a topic of a
    /// later frame exactly as a request to it would be.
    pub(crate) fn with_credential<T>(
        &self,
        check: impl FnOnce(&crate::http::Request<'_>) -> T,
    ) -> T {
        let bearer = self
            .credential
            .as_ref()
            .map(|token| format!("Bearer {token}"));
        let mut request = crate::http::Request::new("GET", "/");
        request.authorization = bearer.as_deref();
        check(&request)
    }

    /// Adds `feed` (a topic subscribed by a frame).
    pub(crate) fn add(&mut self, feed: Feed) {
        feed.topic().watch(&self.wake);
        self.feeds.push(feed);
    }

    /// Drops topic `name`'s feed; `false` if the socket did not follow it.
    pub(crate) fn remove(&mut self, name: &str) -> bool {
        let Some(at) = self
            .feeds
            .iter()
            .position(|feed| feed.topic().name.as_str() == name)
        else {
            return false;
        };
        let feed = self.feeds.remove(at);
        feed.topic().unwatch(&self.wake);
        true
    }

    /// Whether the socket follows topic `name`.
    pub(crate) fn follows(&self, name: &str) -> bool {
        self.feeds
            .iter()
            .any(|feed| feed.topic().name.as_str() == name)
    }

    /// The frames to send, a ping, the wait, or the end (any topic ending
    /// ends the socket, as it ends a stream of several topics).
    pub(crate) fn poll(&mut self, now: Instant) -> crate::socket::SocketStep {
        use crate::socket::SocketStep;
        if self.expires.is_some_and(|at| now >= at) {
            let (code, reason) = EndReason::TokenExpired.close_frame();
            return SocketStep::Close(code, reason);
        }
        let mut frames = Vec::new();
        if let Some(step) = self.read(now, &mut frames) {
            return step;
        }
        let listener = self.wake.listen();
        if let Some(step) = self.read(now, &mut frames) {
            return step;
        }
        if now >= self.next_ping {
            self.next_ping = now + self.heartbeat;
            return SocketStep::Ping;
        }
        let wake = self
            .expires
            .map_or(self.next_ping, |at| at.min(self.next_ping));
        SocketStep::Wait(listener, wake)
    }

    fn read(&mut self, now: Instant, frames: &mut Vec<Bytes>) -> Option<crate::socket::SocketStep> {
        use crate::socket::SocketStep;
        for feed in &mut self.feeds {
            let topic = feed.topic().name.clone();
            if feed.take_reset() {
                frames.push(Bytes::from(format!(
                    r#"{{"topic":"{topic}","missed":null}}"#
                )));
            }
            match feed.poll_ready(now) {
                Some(FeedStep::Deliver(batch)) => {
                    let missed = batch.missed();
                    if missed > 0 {
                        frames.push(Bytes::from(format!(
                            r#"{{"topic":"{topic}","missed":{missed}}}"#
                        )));
                    }
                    for message in &batch.messages {
                        let frame = message.frame();
                        // `{"id":…}` with the topic in front.
                        let rest =
                            std::str::from_utf8(frame.get(1..).unwrap_or_default()).unwrap_or("}");
                        frames.push(Bytes::from(format!(r#"{{"topic":"{topic}",{rest}"#)));
                    }
                }
                Some(FeedStep::End(reason)) => {
                    if frames.is_empty() {
                        let (code, reason) = reason.close_frame();
                        return Some(SocketStep::Close(code, reason));
                    }
                    return Some(SocketStep::Send(crate::Chunks(std::mem::take(frames))));
                }
                _ => {}
            }
        }
        if frames.is_empty() {
            return None;
        }
        self.next_ping = now + self.heartbeat;
        Some(SocketStep::Send(crate::Chunks(std::mem::take(frames))))
    }

    /// A stall watch over the topics followed now.
    pub(crate) fn stall(&self) -> Stall {
        Feed::stall_of_many(
            &self.hub,
            SubscriberKind::WebSocket,
            &self.feeds,
            &self.wake,
        )
    }
}

impl Drop for ManySocket {
    fn drop(&mut self) {
        for feed in &self.feeds {
            feed.topic().unwatch(&self.wake);
        }
    }
}

/// A command frame, parsed; the error says what a command looks like.
pub(crate) fn command(text: &str, limit: usize) -> Result<Command, Error> {
    let usage = || {
        Error::BadTopicList(
            r#"a frame on a socket of several topics is a command: {"subscribe":"t"}, {"unsubscribe":"t"} or {"publish":{"topic":"t","data":…}}"#
                .into(),
        )
    };
    if text.len() > limit.saturating_add(256) {
        return Err(Error::TooLarge { limit });
    }
    let value: serde_json::Value = serde_json::from_str(text).map_err(|_| usage())?;
    let object = value
        .as_object()
        .filter(|object| object.len() <= 2)
        .ok_or_else(usage)?;
    let name = |value: &serde_json::Value| -> Result<String, Error> {
        let name = value.as_str().ok_or_else(usage)?;
        name::validate(name).map_err(Error::BadTopicName)?;
        Ok(name.to_string())
    };
    if let Some(topic) = object.get("subscribe") {
        let resume = match object.get("n") {
            Some(n) => {
                Some(Resume::parse(n.as_str().ok_or_else(usage)?).map_err(Error::BadCursor)?)
            }
            None => None,
        };
        return Ok(Command::Subscribe(name(topic)?, resume));
    }
    if let (Some(topic), 1) = (object.get("unsubscribe"), object.len()) {
        return Ok(Command::Unsubscribe(name(topic)?));
    }
    if let (Some(publish), 1) = (object.get("publish"), object.len()) {
        let topic = name(publish.get("topic").ok_or_else(usage)?)?;
        let data = publish.get("data").ok_or_else(usage)?;
        let json = crate::message::Json::to_json(data)
            .map_err(|error| Error::Unserializable(error.to_string()))?;
        if json.len() > limit {
            return Err(Error::TooLarge { limit });
        }
        return Ok(Command::Publish(topic, json));
    }
    Err(usage())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_listed_in_order_once_each_within_the_limit() {
        assert_eq!(
            topics_param(Some("topic=a&n=1&topic=b"), 64).unwrap(),
            ["a", "b"]
        );
        for bad in [
            None,
            Some(""),
            Some("n=1"),
            Some("topic=a&topic=a"),
            Some("topic=a.b"),
            Some("topic="),
            Some("topic=a&topic=b&topic=c"),
        ] {
            assert!(topics_param(bad, 2).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn places_are_one_per_topic() {
        let two = places("5@aaaaaaaa,7", 2).unwrap();
        assert_eq!(two.len(), 2);
        assert!(places("5", 2).is_err());
        assert!(places("5,6,7", 2).is_err());
        assert!(places("5,x", 2).is_err());
    }
}
