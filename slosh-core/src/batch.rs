//! The answer to a long-poll, and the three wire encodings of messages.
//!
//! Every encoder writes the message's stored text (or its XML, itself
//! encoded once per message) into the output: nothing here re-serializes a
//! message per subscriber.

use bytes::Bytes;

use crate::cursor::Cursor;
use crate::epoch::Epoch;
use crate::message::Message;
use crate::store::Log;

/// Messages newer than a client's cursor, with the counters that make loss
/// visible.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The topic's newest id when the batch was read.
    pub max: u64,
    /// The epoch of the topic life `max` belongs to: with it, `max` is a
    /// cursor the client can resume from (`n=MAX@EPOCH`).
    pub epoch: Epoch,
    /// The client's cursor was from another epoch (a restart of a memory
    /// store, a topic deleted and made again) and was read as 0: it missed
    /// an unknown number of messages of the earlier life.
    pub reset: bool,
    /// How many messages were published since the cursor: `max − cursor`.
    pub saw: u64,
    /// The messages, oldest first. `saw > messages.len()` means the ring
    /// buffer overflowed and the client missed the difference.
    pub messages: Vec<Message>,
}

/// Appends `n` in decimal (`write!` through `fmt` costs several times
/// as much, and every answer carries a few numbers).
pub(crate) fn push_u64(out: &mut String, n: u64) {
    let mut digits = [b'0'; 20];
    let mut rest = n;
    let mut start = digits.len();
    for slot in digits.iter_mut().rev() {
        // `rest % 10` is a single digit.
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
        start -= 1;
        if rest == 0 {
            break;
        }
    }
    if let Some(text) = digits
        .get(start..)
        .and_then(|d| std::str::from_utf8(d).ok())
    {
        out.push_str(text);
    }
}

/// What the first line of an SSE stream says: reconnect after 3 s.
pub const SSE_RETRY: &str = "retry: 3000\n\n";

/// The comment that keeps proxies from closing an idle stream.
pub const SSE_PING: &str = ": ping\n\n";

impl Batch {
    /// Reads every buffered message after `cursor` from `log`.
    ///
    /// A cursor above `max` came from an earlier life of the topic (a
    /// restart, an expiry) and counts as 0, so the client gets everything
    /// still buffered and `saw` says how much there was.
    pub fn read(log: &dyn Log, cursor: Cursor) -> Batch {
        Batch::read_from(log, cursor, false)
    }

    /// As [`Batch::read`], but a `confirmed` cursor (its epoch named by
    /// the client, see [`Resume::confirmed_in`](crate::cursor::Resume))
    /// above `max` is a place this server has not reached yet: nothing to
    /// deliver, and `max` is the cursor, so the client never goes back.
    pub fn read_from(log: &dyn Log, cursor: Cursor, confirmed: bool) -> Batch {
        if confirmed && cursor.0 > log.max() {
            return Batch::empty(cursor.0, log.epoch());
        }
        let mut messages = Vec::new();
        let mut max = log.read_after(cursor.0, &mut messages);
        let mut from = cursor.0;
        if cursor.0 > max {
            from = 0;
            messages.clear();
            max = log.read_after(0, &mut messages);
        }
        Batch {
            max,
            epoch: log.epoch(),
            reset: false,
            saw: max - from.min(max),
            messages,
        }
    }

    /// An empty answer at `max` of `epoch`: what a closed poll gets.
    pub fn empty(max: u64, epoch: Epoch) -> Batch {
        Batch {
            max,
            epoch,
            reset: false,
            saw: 0,
            messages: Vec::new(),
        }
    }

    /// How many messages this answer carries.
    pub fn delivering(&self) -> u64 {
        self.messages.len() as u64
    }

    /// How many messages the client missed because the buffer overflowed.
    pub fn missed(&self) -> u64 {
        self.saw.saturating_sub(self.delivering())
    }

    /// `{"max":4,"epoch":"E","saw":3,"delivering":3,"res":[MSG,…]}`, with
    /// `"reset":true` after the epoch when the cursor was reset.
    pub fn to_json(&self) -> String {
        let size: usize = self.messages.iter().map(|m| m.json().len() + 1).sum();
        let mut out = String::with_capacity(64 + size);
        // Every parked poll is answered through here: plain digit pushes,
        // not `write!`'s formatting machinery (docs/DECISIONS.md).
        out.push_str(r#"{"max":"#);
        push_u64(&mut out, self.max);
        out.push_str(r#","epoch":""#);
        out.push_str(self.epoch.as_str());
        out.push('"');
        if self.reset {
            out.push_str(r#","reset":true"#);
        }
        out.push_str(r#","saw":"#);
        push_u64(&mut out, self.saw);
        out.push_str(r#","delivering":"#);
        push_u64(&mut out, self.delivering());
        out.push_str(r#","res":["#);
        for (i, message) in self.messages.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(message.json().as_str());
        }
        out.push_str("]}");
        out
    }

    /// `<?xml …?>\n<res max=".." epoch=".." saw=".." delivering="..">`
    /// (`reset="true"` after the epoch when the cursor was reset) and one
    /// `<p>` per message.
    pub fn to_xml(&self) -> String {
        let xml: Vec<&str> = self.messages.iter().map(Message::xml).collect();
        let size: usize = xml.iter().map(|p| p.len()).sum();
        let mut out = String::with_capacity(128 + size);
        out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<res max=\"");
        push_u64(&mut out, self.max);
        out.push_str("\" epoch=\"");
        out.push_str(self.epoch.as_str());
        if self.reset {
            out.push_str("\" reset=\"true");
        }
        out.push_str("\" saw=\"");
        push_u64(&mut out, self.saw);
        out.push_str("\" delivering=\"");
        push_u64(&mut out, self.delivering());
        out.push_str("\">");
        for p in xml {
            out.push_str(p);
        }
        out.push_str("</res>");
        out
    }

    /// The batch as SSE events, appended to `out`: a `gap` event first when
    /// messages were missed, then each message's own cached event
    /// ([`Message::sse`]), shared with every other stream, not copied.
    pub fn sse_chunks(&self, out: &mut Vec<Bytes>) {
        let missed = self.missed();
        if missed > 0 {
            out.push(sse_gap(missed));
        }
        out.extend(self.messages.iter().map(|m| m.sse().clone()));
    }

    /// The batch as WebSocket text frames, appended to `out`: a
    /// `{"missed":K}` frame first when messages were missed, then each
    /// message's own cached frame ([`Message::frame`]).
    pub fn frames(&self, out: &mut Vec<Bytes>) {
        let missed = self.missed();
        if missed > 0 {
            out.push(Bytes::from(format!(r#"{{"missed":{missed}}}"#)));
        }
        out.extend(self.messages.iter().map(|m| m.frame().clone()));
    }
}

/// The `gap` event of a reset: the client's resume point was from another
/// epoch, so it missed an unknown number of messages of that earlier life.
pub fn sse_reset() -> Bytes {
    Bytes::from_static(b"event: gap\ndata: {\"missed\":null}\n\n")
}

/// The WebSocket frame of a reset (see [`sse_reset`]).
pub fn frame_reset() -> Bytes {
    Bytes::from_static(br#"{"missed":null}"#)
}

/// The `gap` event: `missed` messages fell out of the buffer before this
/// subscriber read them. It carries no id, so it does not move the browser's
/// `Last-Event-ID`.
pub fn sse_gap(missed: u64) -> Bytes {
    Bytes::from(format!("event: gap\ndata: {{\"missed\":{missed}}}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Json;
    use crate::store::MemoryLog;

    fn log(capacity: usize, values: &[serde_json::Value]) -> MemoryLog {
        let log = MemoryLog::new(capacity, crate::Epoch::from_bits(0));
        for value in values {
            log.append(Json::from(value)).unwrap();
        }
        log
    }

    #[test]
    fn numbers_are_written_in_plain_decimal() {
        for n in [0, 7, 9, 10, 99, 100, 4_294_967_296, u64::MAX] {
            let mut out = String::from("x");
            push_u64(&mut out, n);
            assert_eq!(out, format!("x{n}"));
        }
    }

    #[test]
    fn a_batch_counts_saw_and_delivering() {
        let log = log(10, &[1.into(), 2.into(), 3.into(), 4.into()]);
        let batch = Batch::read(&log, Cursor(1));
        assert_eq!((batch.max, batch.saw, batch.delivering()), (4, 3, 3));
        assert_eq!(
            batch.to_json(),
            r#"{"max":4,"epoch":"aaaaaaaa","saw":3,"delivering":3,"res":[2,3,4]}"#
        );
    }

    #[test]
    fn overflow_is_visible_as_saw_above_delivering() {
        let log = log(2, &[1.into(), 2.into(), 3.into(), 4.into(), 5.into()]);
        let batch = Batch::read(&log, Cursor(1));
        assert_eq!(
            (batch.max, batch.saw, batch.delivering(), batch.missed()),
            (5, 4, 2, 2)
        );
        let mut chunks = Vec::new();
        batch.sse_chunks(&mut chunks);
        assert_eq!(
            chunks.concat(),
            b"event: gap\ndata: {\"missed\":2}\n\nid: 4@aaaaaaaa\ndata: 4\n\nid: 5@aaaaaaaa\ndata: 5\n\n"
        );
        let mut frames = Vec::new();
        batch.frames(&mut frames);
        assert_eq!(
            frames,
            [
                &br#"{"missed":2}"#[..],
                br#"{"id":4,"epoch":"aaaaaaaa","data":4}"#,
                br#"{"id":5,"epoch":"aaaaaaaa","data":5}"#
            ]
        );
    }

    #[test]
    fn every_stream_shares_one_encoding_of_each_message() {
        // Two subscribers reading the same messages get the very same
        // allocations: a per-subscriber re-encoding would fail this.
        let log = log(10, &[1.into(), serde_json::json!({"a": "b"})]);
        let (mut first, mut second) = (Vec::new(), Vec::new());
        Batch::read(&log, Cursor(0)).sse_chunks(&mut first);
        Batch::read(&log, Cursor(0)).sse_chunks(&mut second);
        assert_eq!(first, second);
        for (a, b) in first.iter().zip(&second) {
            assert_eq!(a.as_ptr(), b.as_ptr());
        }
        let (mut first, mut second) = (Vec::new(), Vec::new());
        Batch::read(&log, Cursor(0)).frames(&mut first);
        Batch::read(&log, Cursor(1)).frames(&mut second);
        assert_eq!(first[1].as_ptr(), second[0].as_ptr());
    }

    #[test]
    fn a_cursor_above_max_counts_as_zero() {
        let log = log(10, &[1.into(), 2.into()]);
        let batch = Batch::read(&log, Cursor(99));
        assert_eq!((batch.max, batch.saw, batch.delivering()), (2, 2, 2));
    }

    #[test]
    fn the_original_xml_walkthrough_at_the_core_level() {
        let log = log(100, &[serde_json::json!({"x": ["hello!"]})]);
        assert_eq!(
            Batch::read(&log, Cursor(0)).to_xml(),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
             <res max=\"1\" epoch=\"aaaaaaaa\" saw=\"1\" delivering=\"1\"><p><x>hello!</x></p></res>"
        );
        assert_eq!(
            Batch::empty(1, Epoch::from_bits(0)).to_xml(),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<res max=\"1\" epoch=\"aaaaaaaa\" saw=\"0\" delivering=\"0\"></res>"
        );
        assert_eq!(
            Batch::empty(0, Epoch::from_bits(0)).to_json(),
            r#"{"max":0,"epoch":"aaaaaaaa","saw":0,"delivering":0,"res":[]}"#
        );
    }

    #[test]
    fn a_reset_is_said_in_both_encodings() {
        let log = log(100, &[serde_json::json!(1)]);
        let mut batch = Batch::read(&log, Cursor(0));
        batch.reset = true;
        assert_eq!(
            batch.to_json(),
            r#"{"max":1,"epoch":"aaaaaaaa","reset":true,"saw":1,"delivering":1,"res":[1]}"#
        );
        assert!(batch
            .to_xml()
            .contains(r#"<res max="1" epoch="aaaaaaaa" reset="true" saw="1" delivering="1">"#));
    }
}
