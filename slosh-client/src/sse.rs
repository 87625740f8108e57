//! Reading a `text/event-stream` body as the WHATWG rules say: bytes in, as
//! they arrive and however they are split, dispatched events out.
//!
//! Lines end in LF, CR or CRLF (a CRLF split across two reads is still one
//! line end); a blank line dispatches the event being built, if it had a
//! `data:` line. Every event is bounded by the limit the [`Parser`] was made
//! with, so a server cannot make a client hold without limit.
//!
//! Both slosh (`retry: 3000` first) and Nchan (`: hi` first) open their
//! streams with a block that is not an event; [`Parser::blocks`] counts
//! every block, so "the stream has started" is `blocks() > 0`.
//!
//! Lines that arrive whole in one read are parsed where they lie; only a
//! line split across reads is copied, so the load generator's ten thousand
//! streams cost no allocation per event.

use std::borrow::Cow;

/// One dispatched event. The parser lends it to the caller's callback and
/// reuses its buffers for the next one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field; empty for a plain message (which a browser's
    /// `EventSource` calls `message`).
    pub kind: String,
    /// This event's own `id:` field, if it had one. slosh gives every
    /// message one; unlike a browser's last-event-ID, it is not carried
    /// over to the next event, so an event without one says so.
    pub id: Option<String>,
    /// The `data:` lines joined by LF, as bytes: a load client parses JSON
    /// from them without a UTF-8 pass.
    pub data: Vec<u8>,
}

impl Event {
    /// The data as text (invalid UTF-8 replaced), for clients that print it.
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.data)
    }

    /// Whether this is a plain message rather than a named event such as
    /// slosh's `gap`.
    pub fn is_message(&self) -> bool {
        self.kind.is_empty() || self.kind == "message"
    }
}

/// An event (or a line) longer than the limit the parser was made with.
/// The stream cannot be read on from there: its next bytes would be the
/// middle of that event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an event over {0} bytes")]
pub struct TooLarge(pub usize);

/// Turns bytes as they arrive into events.
#[derive(Debug)]
pub struct Parser {
    /// At most this many bytes of one event (its lines as sent, without
    /// their line ends).
    limit: usize,
    /// A line begun in an earlier read.
    pending: Vec<u8>,
    /// The last byte read was CR: an LF right after it ends nothing more.
    after_cr: bool,
    /// Bytes of the block so far, against `limit`.
    size: usize,
    /// The event being built.
    current: Event,
    /// Whether a `data:` line came (an event without one is not
    /// dispatched).
    has_data: bool,
    /// The current block had any line (field or comment).
    in_block: bool,
    blocks: u64,
    retry: Option<u64>,
}

impl Parser {
    /// A parser at the start of a stream, refusing events over `limit`
    /// bytes.
    pub fn new(limit: usize) -> Parser {
        Parser {
            limit,
            pending: Vec::new(),
            after_cr: false,
            size: 0,
            current: Event::default(),
            has_data: false,
            in_block: false,
            blocks: 0,
            retry: None,
        }
    }

    /// How many blocks (blank-line-terminated groups of lines, events or
    /// not) have ended so far.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// The last `retry:` the server sent, in milliseconds: how long it asks
    /// a client to wait before reconnecting.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// Parses `bytes`, calling `on_event` for every event they complete.
    /// Events completed before an error have been handed out already.
    pub fn feed(&mut self, bytes: &[u8], mut on_event: impl FnMut(&Event)) -> Result<(), TooLarge> {
        let mut rest = bytes;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            let (line, tail) = rest.split_at(end);
            self.count(line.len())?;
            rest = match tail {
                [b'\r', b'\n', after @ ..] => after,
                [b'\r'] => {
                    self.after_cr = true;
                    &[]
                }
                [_, after @ ..] => after,
                [] => &[],
            };
            if self.pending.is_empty() {
                self.line(line, &mut on_event);
            } else {
                let mut whole = std::mem::take(&mut self.pending);
                whole.extend_from_slice(line);
                self.line(&whole, &mut on_event);
                // Keep the allocation for the next split line.
                whole.clear();
                self.pending = whole;
            }
        }
        self.count(rest.len())?;
        self.pending.extend_from_slice(rest);
        Ok(())
    }

    fn count(&mut self, bytes: usize) -> Result<(), TooLarge> {
        self.size = self.size.saturating_add(bytes);
        if self.size > self.limit {
            return Err(TooLarge(self.limit));
        }
        Ok(())
    }

    fn line(&mut self, line: &[u8], on_event: &mut impl FnMut(&Event)) {
        if line.is_empty() {
            if self.in_block {
                self.blocks += 1;
            }
            if self.has_data {
                on_event(&self.current);
            }
            self.current.kind.clear();
            self.current.id = None;
            self.current.data.clear();
            self.has_data = false;
            self.in_block = false;
            self.size = 0;
            return;
        }
        self.in_block = true;
        if line[0] == b':' {
            return; // a comment: the heartbeat
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.current.data.push(b'\n');
                }
                self.current.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => {
                self.current.kind.clear();
                self.current.kind.push_str(&String::from_utf8_lossy(value));
            }
            b"id" if !value.contains(&0) => {
                self.current.id = Some(String::from_utf8_lossy(value).into_owned());
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                self.retry = std::str::from_utf8(value)
                    .ok()
                    .and_then(|digits| digits.parse().ok());
            }
            _ => {} // unknown fields are ignored, as the standard says
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(kind, id, data)` of every event `chunks` give, fed one by one.
    fn events(limit: usize, chunks: &[&[u8]]) -> Vec<(String, Option<String>, String)> {
        let mut parser = Parser::new(limit);
        let mut out = Vec::new();
        for chunk in chunks {
            parser
                .feed(chunk, |e| {
                    out.push((e.kind.clone(), e.id.clone(), e.text().into_owned()))
                })
                .unwrap();
        }
        out
    }

    fn message(id: &str, data: &str) -> (String, Option<String>, String) {
        (String::new(), Some(id.into()), data.into())
    }

    #[test]
    fn a_slosh_stream_gives_its_messages_and_gap_events() {
        let stream = b"retry: 3000\n\nevent: gap\ndata: {\"missed\":2}\n\n: ping\n\nid: 7\ndata: {\"a\":1}\n\n";
        assert_eq!(
            events(1024, &[stream]),
            vec![
                ("gap".into(), None, "{\"missed\":2}".into()),
                message("7", "{\"a\":1}"),
            ]
        );
    }

    #[test]
    fn multi_line_data_is_joined_by_line_feeds() {
        assert_eq!(
            events(1024, &[b"id: 3\ndata: a\ndata:b\ndata\ndata: \n\n"]),
            vec![message("3", "a\nb\n\n")]
        );
    }

    #[test]
    fn comments_and_blocks_without_data_dispatch_nothing_but_count_as_blocks() {
        let mut parser = Parser::new(1024);
        let mut seen = 0;
        parser
            .feed(b": hi\n\nretry: 3000\n\nid: 4\nevent: x\n\n\n\n", |_| {
                seen += 1
            })
            .unwrap();
        assert_eq!(seen, 0);
        // Extra blank lines end no block.
        assert_eq!(parser.blocks(), 3);
    }

    #[test]
    fn id_event_and_retry_fields_are_read() {
        let mut parser = Parser::new(1024);
        let mut out = Vec::new();
        parser
            .feed(
                b"retry: 2500\nid: 9\nevent: note\ndata: x\n\nretry: soon\ndata: y\n\nid: a\0b\ndata: z\n\n",
                |e| out.push(e.clone()),
            )
            .unwrap();
        assert_eq!(
            parser.retry(),
            Some(2500),
            "a retry that is not digits is ignored"
        );
        assert_eq!(out[0].kind, "note");
        assert_eq!(out[0].id.as_deref(), Some("9"));
        assert!(!out[0].is_message());
        // Each event's id is its own: the next one had none.
        assert_eq!((out[1].id.as_deref(), out[1].is_message()), (None, true));
        assert_eq!(out[2].id, None, "an id with NUL is ignored");
    }

    #[test]
    fn events_split_anywhere_and_any_line_ending_read_the_same() {
        let whole = b"id: 1\r\ndata: x\r\n\r\nid:2\rdata:y\r\rid: 3\ndata: a\ndata: b\n\n";
        let expected = vec![message("1", "x"), message("2", "y"), message("3", "a\nb")];
        assert_eq!(events(1024, &[whole]), expected);
        let bytes: Vec<&[u8]> = whole.chunks(1).collect();
        assert_eq!(events(1024, &bytes), expected);
        for split in 0..=whole.len() {
            let (a, b) = whole.split_at(split);
            assert_eq!(events(1024, &[a, b]), expected, "split {split}");
        }
        // A CR ending one read and the LF starting the next are one line end.
        assert_eq!(
            events(1024, &[b"id: 1\r", b"\ndata: x\r", b"\n\r", b"\n"]),
            vec![message("1", "x")]
        );
        // An empty read in between changes nothing.
        assert_eq!(
            events(1024, &[b"id: 1\r", b"", b"\ndata: x\r\n\r", b"", b"\n"]),
            vec![message("1", "x")]
        );
    }

    #[test]
    fn an_event_over_the_limit_is_refused_however_it_is_sent() {
        let mut parser = Parser::new(16);
        assert_eq!(
            parser.feed(b"data: 0123456789abcdef\n", |_| {}),
            Err(TooLarge(16))
        );
        // Split so no one read holds a whole line.
        let mut parser = Parser::new(16);
        assert_eq!(parser.feed(b"data: 01234", |_| {}), Ok(()));
        assert_eq!(parser.feed(b"56789abcdef", |_| {}), Err(TooLarge(16)));
        let mut parser = Parser::new(16);
        let many_lines = b"data: 1\ndata: 2\ndata: 3\ndata: 4\n\n";
        assert!(parser.feed(many_lines, |_| {}).is_err());
        // Blank lines reset the count, and exactly the limit is allowed.
        let mut parser = Parser::new(16);
        let mut n = 0;
        for _ in 0..100 {
            parser.feed(b"data: 0123456789\n\n", |_| n += 1).unwrap();
        }
        assert_eq!(n, 100);
        assert_eq!(TooLarge(16).to_string(), "an event over 16 bytes");
    }
}
