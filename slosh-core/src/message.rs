//! Messages: an id and its JSON, serialized once and shared by every
//! subscriber.

use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::Serialize;

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
/// flight share the same allocation. The XML form is encoded the first time
/// an XML subscriber asks and then kept, so a message is encoded at most
/// once per format however many subscribers read it.
#[derive(Clone)]
pub struct Message(Arc<MessageInner>);

struct MessageInner {
    id: u64,
    json: Json,
    /// The `<p>…</p>` element, filled on first use: most deployments never
    /// ask for XML, so paying for it at publish would be waste.
    xml: OnceLock<Box<str>>,
}

impl Message {
    /// A message with the id its topic gave it.
    pub fn new(id: u64, json: Json) -> Message {
        Message(Arc::new(MessageInner {
            id,
            json,
            xml: OnceLock::new(),
        }))
    }

    /// The message's id: 1, 2, 3 … within its topic.
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The message's JSON.
    pub fn json(&self) -> &Json {
        &self.0.json
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
        let message = Message::new(1, Json::from(serde_json::json!({"x": ["hello!"]})));
        let copy = message.clone();
        assert_eq!(message.xml(), "<p><x>hello!</x></p>");
        assert!(std::ptr::eq(message.xml(), copy.xml()));
    }
}
