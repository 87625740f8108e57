//! Reading a `text/event-stream` as the WHATWG rules say, with every line
//! and event bounded so a server cannot make the client hold without limit.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    /// The `event:` field; empty for a plain message.
    pub(crate) kind: String,
    /// The `id:` field of this event, if it had one.
    pub(crate) id: Option<String>,
    /// The `data:` lines joined by `\n`.
    pub(crate) data: String,
}

/// An event (or a line) longer than the limit the parser was made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TooLarge(pub(crate) usize);

/// Turns bytes as they arrive into events.
#[derive(Debug)]
pub(crate) struct Parser {
    /// At most this many bytes of one event (its lines as sent).
    limit: usize,
    /// The line being read.
    line: Vec<u8>,
    /// The last byte was `\r`: a `\n` right after it ends nothing more.
    after_cr: bool,
    /// Bytes of the event so far, against `limit`.
    size: usize,
    kind: String,
    id: Option<String>,
    data: String,
    /// Whether a `data:` line came (an event without one is not dispatched).
    has_data: bool,
}

impl Parser {
    /// A parser refusing events over `limit` bytes.
    pub(crate) fn new(limit: usize) -> Parser {
        Parser {
            limit,
            line: Vec::new(),
            after_cr: false,
            size: 0,
            kind: String::new(),
            id: None,
            data: String::new(),
            has_data: false,
        }
    }

    /// Reads `bytes`, appending each event they complete to `out`.
    pub(crate) fn feed(&mut self, bytes: &[u8], out: &mut Vec<Event>) -> Result<(), TooLarge> {
        for &byte in bytes {
            match byte {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.line);
                    self.line_done(&line, out);
                    // Keep the allocation for the next line.
                    self.line = line;
                    self.line.clear();
                }
                _ => {
                    self.after_cr = false;
                    self.size += 1;
                    if self.size > self.limit {
                        return Err(TooLarge(self.limit));
                    }
                    self.line.push(byte);
                }
            }
        }
        Ok(())
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<Event>) {
        if line.is_empty() {
            if self.has_data {
                out.push(Event {
                    kind: std::mem::take(&mut self.kind),
                    id: self.id.take(),
                    data: std::mem::take(&mut self.data),
                });
            }
            self.kind.clear();
            self.id = None;
            self.data.clear();
            self.has_data = false;
            self.size = 0;
            return;
        }
        if line[0] == b':' {
            return; // a comment: the heartbeat
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.kind = value.to_string(),
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            _ => {} // `retry` and unknown fields: the client keeps its own pace
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&[u8]]) -> Vec<Event> {
        let mut parser = Parser::new(1024);
        let mut out = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, &mut out).unwrap();
        }
        out
    }

    fn message(id: &str, data: &str) -> Event {
        Event {
            kind: String::new(),
            id: Some(id.into()),
            data: data.into(),
        }
    }

    #[test]
    fn a_slosh_stream_gives_its_messages_and_gap_events() {
        let stream = b"retry: 3000\n\nevent: gap\ndata: {\"missed\":2}\n\n: ping\n\nid: 7\ndata: {\"a\":1}\n\n";
        assert_eq!(
            events(&[stream]),
            vec![
                Event {
                    kind: "gap".into(),
                    id: None,
                    data: "{\"missed\":2}".into()
                },
                message("7", "{\"a\":1}"),
            ]
        );
    }

    #[test]
    fn events_split_anywhere_and_any_line_ending_read_the_same() {
        let whole = b"id: 1\r\ndata: x\r\n\r\nid:2\rdata:y\r\rid: 3\ndata: a\ndata: b\n\n";
        let expected = vec![message("1", "x"), message("2", "y"), message("3", "a\nb")];
        assert_eq!(events(&[whole]), expected);
        let bytes: Vec<&[u8]> = whole.chunks(1).collect();
        assert_eq!(events(&bytes), expected);
        // A CR ending one chunk and the LF starting the next are one line end.
        assert_eq!(
            events(&[b"id: 1\r", b"\ndata: x\r", b"\n\r", b"\n"]),
            vec![message("1", "x")]
        );
    }

    #[test]
    fn an_event_over_the_limit_is_refused_however_it_is_sent() {
        let mut parser = Parser::new(16);
        let mut out = Vec::new();
        assert_eq!(
            parser.feed(b"data: 0123456789abcdef\n", &mut out),
            Err(TooLarge(16))
        );
        let mut parser = Parser::new(16);
        let many_lines = b"data: 1\ndata: 2\ndata: 3\ndata: 4\n\n";
        assert!(parser.feed(many_lines, &mut out).is_err());
        // Blank lines and small events reset the count.
        let mut parser = Parser::new(16);
        for _ in 0..100 {
            parser.feed(b"data: 12345\n\n", &mut out).unwrap();
        }
        assert_eq!(out.len(), 100);
    }
}
