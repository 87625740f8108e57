//! A subscription that outlives its connections: SSE or long-poll,
//! reconnecting with backoff and resuming after the last message it
//! handed out, saying on stderr what happens to it.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, StatusCode};
use serde_json::value::RawValue;

use super::http::{self, Client, Failure, SMALL_BODY};
use slosh_client::cursor::Cursor;
use slosh_client::{batch, sse};

use super::notice::{seconds, Backoff, Notices};
use super::target::Target;

/// A stream or a poll that brings nothing at all for this long is taken
/// for a dead connection (a server sends a heartbeat every 15 s by
/// default, and answers a long-poll after 30 s) and replaced.
const IDLE: Duration = Duration::from_secs(60);

/// How `.info` and other one-shot requests may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How messages are received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Server-Sent Events (`.sse`): one stream, messages as they happen.
    Sse,
    /// Long-poll in JSON (`.json?n=…`).
    Json,
    /// Long-poll in XML (`.xml?n=…`).
    Xml,
}

impl Format {
    fn suffix(self) -> &'static str {
        match self {
            Format::Sse => "sse",
            Format::Json => "json",
            Format::Xml => "xml",
        }
    }

    /// The format a topic URL's suffix names.
    pub(crate) fn from_suffix(suffix: &str) -> Option<Format> {
        match suffix {
            "sse" => Some(Format::Sse),
            "json" => Some(Format::Json),
            "xml" => Some(Format::Xml),
            _ => None,
        }
    }
}

/// What a subscription hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    /// A message: its id and its text on one line (compact JSON, or its
    /// `<p>` element for XML).
    Message {
        /// The topic's id for it.
        id: u64,
        /// The message.
        data: String,
    },
    /// The topic's ids went back: the server forgot the topic (a restart
    /// without a persistent store, a deletion) and counts from 1 again.
    /// What follows is from its new life.
    Restarted,
}

/// Why a subscription cannot go on.
#[derive(Debug)]
pub(crate) struct Fatal(pub(crate) String);

/// What one attempt ended with.
enum Outcome {
    /// Try again after the backoff, saying why.
    Retry(String),
    /// Stop.
    Fatal(String),
}

/// An open event stream.
struct Stream {
    body: Incoming,
    parser: sse::Parser,
    /// The newest id seen on this connection (starting at the resume
    /// point): the server only ever sends newer ones within a topic's life.
    newest: Cursor,
}

/// One topic, subscribed for as long as it is read.
pub(crate) struct Subscription {
    /// The topic URL without a suffix.
    topic: Target,
    format: Format,
    /// The last message handed out (or where to start), with the epoch of
    /// the topic life it is from when known; `None` until the topic's
    /// current `max` is known.
    cursor: Option<Cursor>,
    /// The epoch of the messages waiting in `pending`: one stream or one
    /// batch is always of a single life.
    epoch: Option<String>,
    /// Resume with `?n=` rather than `Last-Event-ID`: for the first
    /// connection and after the server said the topic is gone (`204`), so
    /// a fresh stream of the topic's next life is asked for.
    by_query: bool,
    /// The largest event or answer read.
    max_body: usize,
    notices: Notices,
    backoff: Backoff,
    client: Client,
    stream: Option<Stream>,
    pending: VecDeque<Item>,
    /// Whether the last attempt worked (so "connected" is said once).
    connected: bool,
}

impl Subscription {
    /// A subscription to `topic` (a topic URL without suffix) starting
    /// after message `from`, or at the topic's newest message when `None`.
    pub(crate) fn new(
        topic: Target,
        format: Format,
        from: Option<u64>,
        max_body: usize,
        notices: Notices,
    ) -> Subscription {
        Subscription {
            client: Client::new(&topic),
            topic,
            format,
            cursor: from.map(|id| Cursor::new(id, None)),
            epoch: None,
            by_query: true,
            max_body,
            notices,
            backoff: Backoff::default(),
            stream: None,
            pending: VecDeque::new(),
            connected: false,
        }
    }

    /// The next message (or restart), waiting as long as it takes and
    /// reconnecting as often as needed.
    pub(crate) async fn next(&mut self) -> Result<Item, Fatal> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                if let Item::Message { id, .. } = &item {
                    self.cursor = Some(Cursor::new(*id, self.epoch.as_deref()));
                    self.by_query = false;
                }
                return Ok(item);
            }
            let outcome = match self.stream.take() {
                Some(stream) => self.read_stream(stream).await,
                None => self.attempt().await,
            };
            match outcome {
                None => {}
                Some(Outcome::Fatal(why)) => return Err(Fatal(why)),
                Some(Outcome::Retry(why)) => {
                    if self.connected {
                        self.notices.say(format!("disconnected: {why}"));
                    } else {
                        self.notices.say(format!("not connected: {why}"));
                    }
                    self.connected = false;
                    let wait = self.backoff.next_wait();
                    self.notices.say(format!("retrying in {}", seconds(wait)));
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// One connection attempt (and, for long-poll, one poll).
    async fn attempt(&mut self) -> Option<Outcome> {
        let long_poll = self.format != Format::Sse;
        if !self.connected {
            self.notices.say(format!(
                "connecting to {}",
                self.topic.with_suffix(self.format.suffix(), "")
            ));
        }
        // `.info` gives the starting point when none was asked for; for a
        // long-poll it also shows the server is up, where a parked poll
        // would say nothing until a message came.
        if self.cursor.is_none() || (long_poll && !self.connected) {
            match self.topic_max().await {
                Ok(max) => {
                    self.cursor = Some(self.cursor.take().unwrap_or(max));
                    if long_poll {
                        self.now_connected();
                    }
                }
                Err(outcome) => return Some(outcome),
            }
        }
        let cursor = self.cursor.clone().unwrap_or_default();
        match self.format {
            Format::Sse => self.open_stream(cursor).await,
            Format::Json | Format::Xml => self.poll(cursor).await,
        }
    }

    /// The topic's newest id from `.info`, with its epoch (0 when the topic
    /// does not exist yet: its first message will be 1).
    async fn topic_max(&mut self) -> Result<Cursor, Outcome> {
        let target = self.topic.with_suffix("info", "");
        let request =
            http::request(Method::GET, &target, &[], Bytes::new()).map_err(Outcome::Fatal)?;
        let answer = self
            .client
            .send(request, SMALL_BODY, REQUEST_TIMEOUT)
            .await
            .map_err(|failure| Outcome::Retry(failure.to_string()))?;
        match answer.status {
            StatusCode::OK => serde_json::from_slice::<serde_json::Value>(&answer.body)
                .ok()
                .and_then(|info| {
                    let max = info.get("max")?.as_u64()?;
                    Some(Cursor::new(max, info.get("epoch").and_then(|e| e.as_str())))
                })
                .ok_or_else(|| {
                    Outcome::Fatal(format!("{target} did not answer a slosh topic's .info"))
                }),
            StatusCode::NOT_FOUND => Ok(Cursor::default()),
            status => Err(refusal(status, &answer.error_text())),
        }
    }

    async fn open_stream(&mut self, cursor: Cursor) -> Option<Outcome> {
        let query = if self.by_query {
            format!("n={cursor}")
        } else {
            String::new()
        };
        let target = self.topic.with_suffix("sse", &query);
        let last_event_id = cursor.to_string();
        let mut headers = vec![("accept", "text/event-stream")];
        if !self.by_query {
            headers.push(("last-event-id", last_event_id.as_str()));
        }
        let request = match http::request(Method::GET, &target, &headers, Bytes::new()) {
            Ok(request) => request,
            Err(why) => return Some(Outcome::Fatal(why)),
        };
        let response = match http::stream(&self.topic, request).await {
            Ok(response) => response,
            Err(failure) => return Some(Outcome::Retry(failure.to_string())),
        };
        let status = response.status();
        if status == StatusCode::NO_CONTENT {
            self.notices.say(
                "the topic was removed (deleted or expired); following it again from its first message",
            );
            self.cursor = Some(Cursor::default());
            self.epoch = None;
            self.by_query = true;
            self.pending.push_back(Item::Restarted);
            return None;
        }
        if status != StatusCode::OK {
            let body = http::read_refusal(response.into_body(), SMALL_BODY).await;
            return Some(refusal(status, &http::error_text(status, &body)));
        }
        let content_type = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_string();
        if !content_type.starts_with("text/event-stream") {
            return Some(Outcome::Fatal(format!(
                "{target} answered {content_type:?}, not an event stream: is it a slosh topic URL?"
            )));
        }
        self.now_connected();
        self.stream = Some(Stream {
            body: response.into_body(),
            parser: sse::Parser::new(self.max_body),
            newest: cursor,
        });
        None
    }

    fn now_connected(&mut self) {
        if !self.connected {
            self.notices.say("connected");
        }
        self.connected = true;
        self.backoff.reset();
    }

    /// Reads the stream until it yields something or ends.
    async fn read_stream(&mut self, mut stream: Stream) -> Option<Outcome> {
        let mut events = Vec::new();
        while events.is_empty() {
            let frame = match tokio::time::timeout(IDLE, stream.body.frame()).await {
                Err(_) => {
                    return Some(Outcome::Retry(format!(
                        "nothing received for {}s, not even a heartbeat",
                        IDLE.as_secs()
                    )))
                }
                Ok(None) => return Some(Outcome::Retry("the server ended the stream".into())),
                Ok(Some(Err(error))) => {
                    return Some(Outcome::Retry(format!("the stream broke: {error}")))
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            let fed = stream
                .parser
                .feed(&data, |event| events.push(event.clone()));
            if let Err(sse::TooLarge(limit)) = fed {
                return Some(Outcome::Fatal(format!(
                    "the server sent an event over {limit} bytes: raise --max-body to read it"
                )));
            }
        }
        for event in events {
            match event.kind.as_str() {
                "" | "message" => {
                    let Some(id) = event.id.as_deref().and_then(Cursor::parse) else {
                        self.notices
                            .say("skipped an event without a numeric id: not a slosh stream?");
                        continue;
                    };
                    if stream.newest.other_life(&id)
                        || (id.id <= stream.newest.id && stream.newest.id > 0)
                    {
                        self.restarted(stream.newest.id, id.id);
                    }
                    self.epoch.clone_from(&id.epoch);
                    self.pending.push_back(Item::Message {
                        id: id.id,
                        data: one_line(&event.text()),
                    });
                    stream.newest = id;
                }
                // `{"missed":null}`: the resume point was from another life
                // of the topic, so the count is unknown.
                "gap" if is_reset(&event.data) => {
                    self.reset(stream.newest.id);
                    stream.newest = Cursor::default();
                }
                "gap" => self.gap(missed_of(&event.data)),
                _ => {}
            }
        }
        self.stream = Some(stream);
        None
    }

    /// One long-poll: messages after `cursor`.
    async fn poll(&mut self, cursor: Cursor) -> Option<Outcome> {
        let target = self
            .topic
            .with_suffix(self.format.suffix(), &format!("n={cursor}"));
        let request = match http::request(Method::GET, &target, &[], Bytes::new()) {
            Ok(request) => request,
            Err(why) => return Some(Outcome::Fatal(why)),
        };
        // The server answers a parked poll after its poll timeout; past
        // ours the poll is simply asked again.
        let answer =
            match tokio::time::timeout(IDLE, self.client.send(request, self.max_body, IDLE * 2))
                .await
            {
                Err(_) => return None,
                Ok(Err(failure @ Failure::TooLarge(_))) => {
                    return Some(Outcome::Fatal(failure.to_string()))
                }
                Ok(Err(failure)) => return Some(Outcome::Retry(failure.to_string())),
                Ok(Ok(answer)) => answer,
            };
        if answer.status != StatusCode::OK {
            return Some(refusal(answer.status, &answer.error_text()));
        }
        let batch = match self.format {
            Format::Xml => parse_xml_batch(&answer.body),
            _ => parse_json_batch(&answer.body),
        };
        let batch = match batch {
            Ok(batch) => batch,
            Err(why) => return Some(Outcome::Fatal(format!("{target}: {why}"))),
        };
        self.now_connected();
        if batch.reset {
            self.reset(cursor.id);
        } else if batch.max < cursor.id {
            self.restarted(cursor.id, batch.max);
        }
        let count = batch.messages.len() as u64;
        let missed = batch.saw.saturating_sub(count);
        if missed > 0 && !batch.reset {
            self.gap(Some(missed));
        }
        let next = batch.cursor();
        self.epoch.clone_from(&next.epoch);
        // The answer holds the newest messages, up to max.
        for (id, data) in batch.with_ids() {
            self.pending.push_back(Item::Message { id, data });
        }
        self.cursor = Some(next);
        None
    }

    /// The server said the cursor was from another epoch of the topic.
    fn reset(&mut self, newest: u64) {
        self.notices.say(format!(
            "the topic started over after {newest} (a new epoch): the server forgot it \
             (a restart without a persistent store, or a deletion); some messages may be \
             missing; following its new messages"
        ));
        self.pending.push_back(Item::Restarted);
    }

    fn restarted(&mut self, newest: u64, now: u64) {
        self.notices.say(format!(
            "the topic's ids started over (at {now}, after {newest}): the server forgot it \
             (a restart without a persistent store, or a deletion); following its new messages"
        ));
        self.pending.push_back(Item::Restarted);
    }

    fn gap(&self, missed: Option<u64>) {
        match missed {
            Some(missed) => self.notices.say(format!(
                "gap: {missed} message(s) missed, no longer buffered by the server"
            )),
            None => self
                .notices
                .say("gap: messages missed, no longer buffered by the server"),
        }
    }
}

/// What a refusal means: a server at a limit or restarting is waited for;
/// anything else is a mistake a person must fix.
fn refusal(status: StatusCode, text: &str) -> Outcome {
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        Outcome::Retry(text.to_string())
    } else {
        Outcome::Fatal(format!("the server refused to subscribe: {text}"))
    }
}

/// `K` of a gap event's `{"missed":K}`.
/// Whether a gap's data is `{"missed":null}`: a reset, count unknown.
fn is_reset(data: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|gap| gap.get("missed").map(serde_json::Value::is_null))
        .unwrap_or(false)
}

fn missed_of(data: &[u8]) -> Option<u64> {
    serde_json::from_slice::<serde_json::Value>(data)
        .ok()?
        .get("missed")?
        .as_u64()
}

/// A message as one line: JSON has no line break outside its strings, so
/// any in the text are layout.
fn one_line(text: &str) -> String {
    if text.contains(['\n', '\r']) {
        text.replace(['\n', '\r'], " ")
    } else {
        text.to_string()
    }
}

/// A long-poll answer, each message on one line as [`Item::Message`]
/// hands it out.
pub(crate) type Batch = batch::Batch<String>;

/// A JSON batch (parsed by `slosh-client`), each message kept as the
/// server wrote it, on one line.
pub(crate) fn parse_json_batch(body: &[u8]) -> Result<Batch, String> {
    let parsed = batch::json::<&RawValue>(body).map_err(|why| why.to_string())?;
    Ok(parsed.map(|raw| one_line(raw.get())))
}

/// An XML batch (parsed by `slosh-client`): each `<p>` element as the
/// server wrote it, on one line.
fn parse_xml_batch(body: &[u8]) -> Result<Batch, String> {
    let parsed = batch::xml(body).map_err(|why| why.to_string())?;
    Ok(parsed.map(xml_line))
}

/// An element on one line: the text's line breaks become `&#10;` and
/// `&#13;`, which an XML reader reads back as the same characters.
fn xml_line(element: &str) -> String {
    element.replace('\r', "&#13;").replace('\n', "&#10;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_batchs_messages_are_printed_as_written_on_one_line_each() {
        let body = br#"{"max":9,"saw":4,"delivering":3,"res":[{"b":1,"a":[2]},1e999,"x\ny"]}"#;
        let batch = parse_json_batch(body).unwrap();
        assert_eq!((batch.max, batch.saw), (9, 4));
        assert_eq!(
            batch.messages,
            vec![r#"{"b":1,"a":[2]}"#, "1e999", r#""x\ny""#]
        );
        let pretty = b"{\"max\":1,\"saw\":1,\"delivering\":1,\"res\":[{\n \"a\": 1\n}]}";
        assert_eq!(
            parse_json_batch(pretty).unwrap().messages,
            vec!["{  \"a\": 1 }"]
        );
        assert_eq!(
            parse_json_batch(b"<html>").unwrap_err(),
            "the answer is not a slosh long-poll batch"
        );
        assert!(parse_json_batch(br#"{"max":1,"saw":2,"res":[1,2]}"#).is_err());
    }

    #[test]
    fn an_xml_batchs_p_elements_are_printed_one_line_each() {
        let body = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<res max=\"5\" saw=\"3\" delivering=\"3\">\
                    <p><x>a</x></p><p a=\"1\"/><p><p>nested\r\nline</p></p></res>";
        assert_eq!(
            parse_xml_batch(body.as_bytes()).unwrap().messages,
            vec![
                "<p><x>a</x></p>",
                "<p a=\"1\"/>",
                "<p><p>nested&#13;&#10;line</p></p>",
            ]
        );
        assert!(parse_xml_batch(b"<html></html>").is_err());
    }

    #[test]
    fn a_gap_events_count_is_read() {
        assert_eq!(missed_of(br#"{"missed":6}"#), Some(6));
        assert_eq!(missed_of(b"?"), None);
    }
}
