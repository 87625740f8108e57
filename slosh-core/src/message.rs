//! Messages: an id and its JSON, serialized once and shared by every
//! subscriber.

use std::fmt;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde::Serialize;

use crate::epoch::Epoch;

/// A message's JSON as compact text (no insignificant whitespace, the
/// publisher's key order), validated once when it came in.
///
/// Cloning is a reference-count increment: every subscriber of every format
/// shares this one copy, and no encoder ever re-serializes it.
#[derive(Clone, PartialEq, Eq)]
pub struct Json(Arc<str>);

impl Json {
    /// Serializes `value` compactly. Fails only for values serde_json cannot
    /// represent (a map with non-string keys).
    pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<Json, serde_json::Error> {
        serde_json::to_string(value).map(|text| Json(Arc::from(text)))
    }

    /// Wraps text the caller has already validated and compacted: decoding
    /// did both in one pass, so doing either again would waste the hot path.
    pub(crate) fn from_compact(text: String) -> Json {
        Json(Arc::from(text))
    }

    /// [`Json::from_compact`] for borrowed text: one allocation and one
    /// copy, straight from the request body.
    pub(crate) fn from_compact_str(text: &str) -> Json {
        Json(Arc::from(text))
    }

    /// Text a store kept from an earlier [`Json::as_str`] (a file, a shared
    /// store), taken as it is: it was validated and compacted when it was
    /// published, and re-validating every message at startup would cost a
    /// parse each. A store must hand back only what it was given.
    pub fn from_stored(text: &str) -> Json {
        Json(Arc::from(text))
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its length in bytes (what `max_message` limits).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty (never, for a [`Json`] built by this crate).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses the text into a tree, for the rare reader that needs one (the
    /// XML encoder, a filter that rewrites messages).
    ///
    /// This fails only for the rare text that is valid JSON by the grammar
    /// but beyond what a tree can hold (a number like `1e999`, a lone
    /// surrogate escape): publish validates without building a tree, so
    /// such text is stored as sent.
    pub fn to_value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(&self.0)
    }
}

impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&serde_json::Value> for Json {
    fn from(value: &serde_json::Value) -> Json {
        // Serializing a Value cannot fail: its map keys are strings.
        Json(Arc::from(value.to_string()))
    }
}

impl From<serde_json::Value> for Json {
    fn from(value: serde_json::Value) -> Json {
        Json::from(&value)
    }
}

/// One accepted message: its id in its topic and its JSON.
///
/// Cheap to clone (one reference count): the ring buffer and every batch in
/// flight share the same allocation. The XML element, the SSE event and the
/// WebSocket frame are each encoded the first time a subscriber of that kind
/// asks and then kept, so a message is encoded at most once per format
/// however many subscribers read it; streams hand the cached [`Bytes`] to
/// the socket as they are, without a copy.
#[derive(Clone)]
pub struct Message(Arc<MessageInner>);

struct MessageInner {
    id: u64,
    /// The epoch of the topic life that gave the id: SSE ids and WebSocket
    /// frames carry it, so a cursor names its life.
    epoch: Epoch,
    json: Json,
    /// The topic's running byte total after this message (see
    /// [`Message::end`]): what lets a stream tell in O(1) how much it still
    /// owes its reader.
    end: u64,
    /// The `<p>…</p>` element, filled on first use: most deployments never
    /// ask for XML, so paying for it at publish would be waste.
    xml: OnceLock<Box<str>>,
    /// `id: N@EPOCH\ndata: JSON\n\n`, filled when the first SSE stream
    /// sends it.
    sse: OnceLock<Bytes>,
    /// `{"id":N,"epoch":"EPOCH","data":JSON}`, filled when the first
    /// WebSocket sends it.
    frame: OnceLock<Bytes>,
}

impl Message {
    /// A message with the id its topic gave it; `end` is the topic's running
    /// byte total once this message is counted in it (the previous message's
    /// `end` plus this one's [`size`](Message::size)).
    pub fn new(id: u64, epoch: Epoch, json: Json, end: u64) -> Message {
        Message(Arc::new(MessageInner {
            id,
            epoch,
            json,
            end,
            xml: OnceLock::new(),
            sse: OnceLock::new(),
            frame: OnceLock::new(),
        }))
    }

    /// The message's id: 1, 2, 3 … within its topic.
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The epoch of the topic life the id belongs to.
    pub fn epoch(&self) -> Epoch {
        self.0.epoch
    }

    /// The message's JSON.
    pub fn json(&self) -> &Json {
        &self.0.json
    }

    /// What this message counts for in a stream's unsent data: the length
    /// of its JSON, the same whatever format carries it.
    pub fn size(&self) -> u64 {
        self.0.json.len() as u64
    }

    /// The topic's running byte total after this message: the sum of the
    /// [`size`](Message::size) of every message of the topic up to and
    /// including this one.
    pub fn end(&self) -> u64 {
        self.0.end
    }

    /// The running byte total just before this message.
    pub fn start(&self) -> u64 {
        self.0.end.saturating_sub(self.size())
    }

    /// The message as one SSE event, `id: N@EPOCH\ndata: JSON\n\n`, encoded
    /// once and shared by every stream (the JSON is compact, so one line).
    /// The id carries the epoch so that the `Last-Event-ID` a browser sends
    /// back names the topic life it is from.
    pub fn sse(&self) -> &Bytes {
        self.0.sse.get_or_init(|| {
            let json = self.0.json.as_str();
            let mut out = String::with_capacity(json.len() + 32);
            let _ = write!(out, "id: {}@{}\ndata: {json}\n\n", self.0.id, self.0.epoch);
            Bytes::from(out)
        })
    }

    /// The message as one WebSocket text frame's payload,
    /// `{"id":N,"epoch":"EPOCH","data":JSON}`, encoded once and shared by
    /// every socket.
    pub fn frame(&self) -> &Bytes {
        self.0.frame.get_or_init(|| {
            let json = self.0.json.as_str();
            let mut out = String::with_capacity(json.len() + 32);
            let _ = write!(
                out,
                r#"{{"id":{},"epoch":"{}","data":{json}}}"#,
                self.0.id, self.0.epoch
            );
            Bytes::from(out)
        })
    }

    /// The message as one `<p>` element (SPEC 3's mapping), encoded once.
    pub fn xml(&self) -> &str {
        self.0.xml.get_or_init(|| {
            let mut out = String::with_capacity(self.0.json.len() + 16);
            // Text no tree can hold still reaches XML readers, as the text
            // of `<p>`, rather than vanishing.
            let value =
                self.0.json.to_value().unwrap_or_else(|_| {
                    serde_json::Value::String(self.0.json.as_str().to_string())
                });
            crate::xml::write_message(&mut out, &value);
            out.into_boxed_str()
        })
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} {}", self.0.id, self.0.json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keeps_the_publishers_key_order() {
        let value: serde_json::Value =
            serde_json::from_str(r#"{"b":1,"a":2,"c":{"z":0,"y":1}}"#).unwrap();
        assert_eq!(
            Json::from(&value).as_str(),
            r#"{"b":1,"a":2,"c":{"z":0,"y":1}}"#
        );
    }

    #[test]
    fn xml_is_encoded_once_and_shared_by_clones() {
        let message = Message::new(
            1,
            Epoch::from_bits(0),
            Json::from(serde_json::json!({"x": ["hello!"]})),
            14,
        );
        let copy = message.clone();
        assert_eq!(message.xml(), "<p><x>hello!</x></p>");
        assert!(std::ptr::eq(message.xml(), copy.xml()));
    }

    #[test]
    fn sse_and_websocket_forms_are_encoded_once_and_shared_by_clones() {
        let message = Message::new(
            7,
            Epoch::from_bits(0),
            Json::from(serde_json::json!({"b": 1, "a": "x"})),
            100,
        );
        let copy = message.clone();
        assert_eq!(
            &message.sse()[..],
            b"id: 7@aaaaaaaa\ndata: {\"b\":1,\"a\":\"x\"}\n\n"
        );
        assert_eq!(
            &message.frame()[..],
            br#"{"id":7,"epoch":"aaaaaaaa","data":{"b":1,"a":"x"}}"#
        );
        assert_eq!(message.sse().as_ptr(), copy.sse().as_ptr());
        assert_eq!(message.frame().as_ptr(), copy.frame().as_ptr());
    }

    #[test]
    fn a_message_knows_where_it_sits_in_its_topics_byte_count() {
        let message = Message::new(
            3,
            Epoch::from_bits(0),
            Json::from(serde_json::json!("abc")),
            40,
        );
        assert_eq!(
            (message.size(), message.start(), message.end()),
            (5, 35, 40)
        );
    }
}
