//! slosh's long-poll answer, a batch: `{"max":4,"saw":3,"delivering":3,
//! "res":[MSG,…]}` in JSON, `<res max="4" saw="3" delivering="3"><p>…</p>…
//! </res>` in XML (SPEC section 3).
//!
//! What a message becomes is the caller's choice, because the needs differ:
//! the load generator deserializes each straight into its stamp struct (one
//! pass, no tree), the soak into a `serde_json::Value`, slosh-cli keeps each
//! as the server wrote it (`Box<RawValue>`, so even `1e999` prints as sent).
//! [`json`] is generic over it; [`xml`] gives each `<p>` element as the
//! text it was, borrowed from the body.
//!
//! Either way the batch is checked against the one rule a client relies on
//! to number messages: it cannot carry more messages than `max`.

use serde::Deserialize;

/// A long-poll answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch<M> {
    /// The topic's newest id; the last message of a non-empty batch is it.
    pub max: u64,
    /// The epoch of the topic life `max` is from (`None` from a server
    /// without epochs): the next poll resumes from `max@epoch`.
    pub epoch: Option<String>,
    /// The cursor the poll sent was from another epoch (the server
    /// restarted without keeping the topic, or it was deleted and made
    /// again) and was read as 0: an unknown number of messages was missed.
    pub reset: bool,
    /// Messages published after the cursor the poll asked from.
    pub saw: u64,
    /// Messages in this answer (the length of `messages`, when the server
    /// left the field out).
    pub delivering: u64,
    /// The messages, oldest first.
    pub messages: Vec<M>,
}

impl<M> Batch<M> {
    /// The same batch with each message turned into an `N` (for a reader
    /// that keeps messages in its own form).
    pub fn map<N>(self, f: impl FnMut(M) -> N) -> Batch<N> {
        Batch {
            max: self.max,
            epoch: self.epoch,
            reset: self.reset,
            saw: self.saw,
            delivering: self.delivering,
            messages: self.messages.into_iter().map(f).collect(),
        }
    }

    /// Where the next poll resumes: `max`, with the epoch when there is one.
    pub fn cursor(&self) -> crate::cursor::Cursor {
        crate::cursor::Cursor::new(self.max, self.epoch.as_deref())
    }

    /// Messages the server no longer had: published after the cursor but
    /// fallen out of its buffer. Loss is visible, never silent.
    pub fn missed(&self) -> u64 {
        self.saw.saturating_sub(self.delivering)
    }

    /// The id of the first message: the batch holds the newest ones, up to
    /// `max`, so they are numbered back from it.
    pub fn first_id(&self) -> u64 {
        // Parsed batches hold at most `max` messages; a hand-made one that
        // does not gets a wrong id, never a panic.
        self.max
            .wrapping_sub(self.messages.len() as u64)
            .wrapping_add(1)
    }

    /// Each message with its id, oldest first.
    pub fn with_ids(self) -> impl Iterator<Item = (u64, M)> {
        let first = self.first_id();
        (0u64..)
            .map(move |k| first.wrapping_add(k))
            .zip(self.messages)
    }

    fn checked(self) -> Result<Batch<M>, BatchError> {
        if self.messages.len() as u64 > self.max {
            return Err(BatchError::TooManyMessages {
                messages: self.messages.len(),
                max: self.max,
            });
        }
        Ok(self)
    }
}

/// Why a body is not a batch, worded for the person running the client
/// (who most likely pointed it at something that is not a slosh topic).
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Not JSON, or JSON of another shape (or a message the caller's type
    /// could not hold).
    #[error("the answer is not a slosh long-poll batch")]
    NotJson(#[source] serde_json::Error),
    /// An XML body that is not UTF-8 (slosh's always is).
    #[error("the XML answer is not UTF-8")]
    NotUtf8,
    /// XML, but not a `<res>` batch.
    #[error("the answer is not a slosh XML batch: {0}")]
    NotXml(String),
    /// More messages than `max`: they cannot be numbered.
    #[error("the answer carries {messages} messages but says max={max}: not a slosh topic?")]
    TooManyMessages {
        /// Messages carried.
        messages: usize,
        /// The `max` it gave.
        max: u64,
    },
}

/// The JSON as sent; `delivering` is optional for servers that predate it.
#[derive(Deserialize)]
struct Wire<M> {
    max: u64,
    #[serde(default)]
    epoch: Option<String>,
    #[serde(default)]
    reset: bool,
    saw: u64,
    #[serde(default)]
    delivering: Option<u64>,
    res: Vec<M>,
}

/// Parses a JSON batch, each message into an `M`. `M` may borrow from
/// `body` (`&RawValue`, `&str`): the batch then lives no longer than it.
pub fn json<'a, M: Deserialize<'a>>(body: &'a [u8]) -> Result<Batch<M>, BatchError> {
    let wire: Wire<M> = serde_json::from_slice(body).map_err(BatchError::NotJson)?;
    Batch {
        max: wire.max,
        epoch: wire.epoch,
        reset: wire.reset,
        saw: wire.saw,
        delivering: wire.delivering.unwrap_or(wire.res.len() as u64),
        messages: wire.res,
    }
    .checked()
}

/// Parses an XML batch: each child element of `<res>` (a `<p>`) as the
/// text the server wrote, borrowed from `body`.
pub fn xml(body: &[u8]) -> Result<Batch<&str>, BatchError> {
    use quick_xml::events::Event;

    let text = std::str::from_utf8(body).map_err(|_| BatchError::NotUtf8)?;
    let bad = |why: &dyn std::fmt::Display| BatchError::NotXml(why.to_string());
    let mut reader = quick_xml::Reader::from_str(text);
    let mut depth = 0usize;
    let mut max = None;
    let mut epoch = None;
    let mut reset = false;
    let mut saw = None;
    let mut delivering = None;
    let mut start = 0usize;
    let mut messages = Vec::new();
    loop {
        let before = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let event = reader.read_event().map_err(|error| bad(&error))?;
        let after = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        match event {
            Event::Start(element) if depth == 0 => {
                if element.name().as_ref() != "res" {
                    return Err(bad(&"its root is not <res>"));
                }
                let number = |name: &str| -> Option<u64> {
                    element
                        .try_get_attribute(name)
                        .ok()??
                        .value
                        .parse::<u64>()
                        .ok()
                };
                max = number("max");
                epoch = element
                    .try_get_attribute("epoch")
                    .ok()
                    .flatten()
                    .map(|a| a.value.into_owned());
                reset = element
                    .try_get_attribute("reset")
                    .ok()
                    .flatten()
                    .is_some_and(|a| a.value.as_ref() == "true");
                saw = number("saw");
                delivering = number("delivering");
                depth = 1;
            }
            Event::Start(_) => {
                if depth == 1 {
                    start = before;
                }
                depth += 1;
            }
            Event::Empty(_) if depth == 1 => {
                messages.push(text.get(before..after).unwrap_or_default());
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                if depth == 1 {
                    messages.push(text.get(start..after).unwrap_or_default());
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let delivering = delivering.unwrap_or(messages.len() as u64);
    Batch {
        max: max.ok_or_else(|| bad(&"<res> has no max"))?,
        epoch,
        reset,
        saw: saw.ok_or_else(|| bad(&"<res> has no saw"))?,
        delivering,
        messages,
    }
    .checked()
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;

    use super::*;

    #[test]
    fn the_epoch_and_a_reset_are_read_in_both_encodings() {
        let body =
            br#"{"max":2,"epoch":"k3fq9a2x","reset":true,"saw":2,"delivering":2,"res":[1,2]}"#;
        let batch: Batch<Box<RawValue>> = json(body).unwrap();
        assert_eq!(batch.epoch.as_deref(), Some("k3fq9a2x"));
        assert!(batch.reset);
        assert_eq!(batch.cursor().to_string(), "2@k3fq9a2x");
        let old: Batch<Box<RawValue>> = json(br#"{"max":2,"saw":0,"res":[]}"#).unwrap();
        assert_eq!((old.epoch, old.reset), (None, false));
        let xml = xml(br#"<?xml version="1.0" encoding="utf-8"?>
<res max="1" epoch="k3fq9a2x" reset="true" saw="1" delivering="1"><p>a</p></res>"#)
        .unwrap();
        assert_eq!((xml.epoch.as_deref(), xml.reset), (Some("k3fq9a2x"), true));
    }

    #[test]
    fn a_json_batch_keeps_each_message_as_written() {
        let body = br#"{"max":9,"saw":4,"delivering":3,"res":[{"b":1,"a":[2]},1e999,"x\ny"]}"#;
        let batch: Batch<Box<RawValue>> = json(body).unwrap();
        assert_eq!((batch.max, batch.saw, batch.delivering), (9, 4, 3));
        assert_eq!(batch.missed(), 1);
        let written: Vec<&str> = batch.messages.iter().map(|m| m.get()).collect();
        assert_eq!(written, [r#"{"b":1,"a":[2]}"#, "1e999", r#""x\ny""#]);
        let ids: Vec<u64> = batch.with_ids().map(|(id, _)| id).collect();
        assert_eq!(ids, [7, 8, 9]);
    }

    #[test]
    fn a_json_batch_deserializes_into_the_callers_type_and_may_borrow() {
        #[derive(Deserialize, Debug, PartialEq)]
        struct Stamp {
            t: u64,
            seq: u64,
        }
        let body = br#"{"max":2,"saw":2,"delivering":2,"res":[{"t":5,"seq":0},{"t":6,"seq":1}]}"#;
        let batch: Batch<Stamp> = json(body).unwrap();
        assert_eq!(batch.messages[1], Stamp { t: 6, seq: 1 });
        assert_eq!(batch.first_id(), 1);
        let borrowed: Batch<&RawValue> = json(body).unwrap();
        assert_eq!(borrowed.messages[0].get(), r#"{"t":5,"seq":0}"#);
        // A message the type cannot hold makes the answer unreadable.
        assert!(json::<Stamp>(br#"{"max":1,"saw":1,"res":["x"]}"#).is_err());
    }

    #[test]
    fn an_empty_json_batch_is_a_poll_timeout_and_delivering_may_be_absent() {
        let batch: Batch<serde_json::Value> =
            json(br#"{"max":3,"saw":0,"delivering":0,"res":[]}"#).unwrap();
        assert_eq!((batch.messages.len(), batch.missed()), (0, 0));
        let old: Batch<serde_json::Value> = json(br#"{"max":3,"saw":5,"res":[1,2]}"#).unwrap();
        assert_eq!((old.delivering, old.missed()), (2, 3));
    }

    #[test]
    fn what_is_not_a_json_batch_says_so() {
        let err = |body: &[u8]| json::<Box<RawValue>>(body).unwrap_err().to_string();
        assert_eq!(err(b"<html>"), "the answer is not a slosh long-poll batch");
        assert_eq!(
            err(br#"{"max":-1,"saw":0,"res":[]}"#),
            "the answer is not a slosh long-poll batch"
        );
        assert_eq!(
            err(br#"{"max":1.5,"saw":0,"res":[]}"#),
            "the answer is not a slosh long-poll batch"
        );
        assert_eq!(
            err(br#"{"max":1,"saw":2,"res":[1,2]}"#),
            "the answer carries 2 messages but says max=1: not a slosh topic?"
        );
    }

    #[test]
    fn an_xml_batch_is_split_into_its_p_elements_as_written() {
        let body = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<res max=\"5\" saw=\"4\" delivering=\"3\">\
                    <p><x>a</x></p><p a=\"1\"/><p><p>nested\nline</p></p></res>";
        let batch = xml(body.as_bytes()).unwrap();
        assert_eq!((batch.max, batch.saw, batch.delivering), (5, 4, 3));
        assert_eq!(
            batch.messages,
            [
                "<p><x>a</x></p>",
                "<p a=\"1\"/>",
                "<p><p>nested\nline</p></p>"
            ]
        );
        assert_eq!(batch.first_id(), 3);
        let empty = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<res max=\"0\" saw=\"0\" delivering=\"0\"></res>";
        assert_eq!(xml(empty.as_bytes()).unwrap().messages.len(), 0);
    }

    #[test]
    fn what_is_not_an_xml_batch_says_so() {
        let err = |body: &[u8]| xml(body).unwrap_err().to_string();
        assert_eq!(
            err(b"<html></html>"),
            "the answer is not a slosh XML batch: its root is not <res>"
        );
        assert_eq!(
            err(b"<res saw=\"1\"><p/></res>"),
            "the answer is not a slosh XML batch: <res> has no max"
        );
        assert_eq!(err(b"\xff<res/>"), "the XML answer is not UTF-8");
        assert!(err(b"<res max=\"1\" saw=\"1\"><p></q></res>").starts_with("the answer is not"));
        assert_eq!(
            err(b"<res max=\"1\" saw=\"2\"><p/><p/></res>"),
            "the answer carries 2 messages but says max=1: not a slosh topic?"
        );
    }
}
