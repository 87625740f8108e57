//! Server-Sent Events parsing: body bytes in, dispatched events out.
//!
//! Lines end in LF (a trailing CR is dropped); a blank line dispatches the
//! event being built. Both slosh (`retry: 3000` first) and Nchan (`: hi`
//! first) open their streams with a block that is not an event; [`blocks`]
//! counts every block, so "the stream has started" is `blocks() > 0`.
//!
//! [`blocks`]: EventParser::blocks

use super::LoadError;

/// A line longer than this is refused rather than buffered: our messages are
/// tiny.
const MAX_LINE: usize = 1024 * 1024;

/// One dispatched event.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field (empty for a plain message).
    pub event: String,
    /// The `data:` lines, joined by LF.
    pub data: Vec<u8>,
}

/// Incremental SSE parser.
#[derive(Debug, Default)]
pub struct EventParser {
    /// An unfinished line.
    pending: Vec<u8>,
    /// The event being built.
    current: Event,
    /// The current block had any line (field or comment).
    in_block: bool,
    has_data: bool,
    blocks: u64,
}

impl EventParser {
    /// A parser at the start of a stream.
    pub fn new() -> EventParser {
        EventParser::default()
    }

    /// How many blocks (blank-line-terminated groups of lines, events or
    /// not) have ended so far.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Parses `bytes`, calling `on_event` for every complete event.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        mut on_event: impl FnMut(&Event),
    ) -> Result<(), LoadError> {
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let (line, tail) = rest.split_at(end);
            rest = &tail[1..];
            if self.pending.is_empty() {
                self.line(line, &mut on_event);
            } else {
                let mut whole = std::mem::take(&mut self.pending);
                whole.extend_from_slice(line);
                self.line(&whole, &mut on_event);
            }
        }
        self.pending.extend_from_slice(rest);
        if self.pending.len() > MAX_LINE {
            return Err(LoadError::Protocol("SSE line too long".into()));
        }
        Ok(())
    }

    fn line(&mut self, line: &[u8], on_event: &mut impl FnMut(&Event)) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if self.in_block {
                self.blocks += 1;
            }
            if self.has_data {
                on_event(&self.current);
            }
            self.current.event.clear();
            self.current.data.clear();
            self.in_block = false;
            self.has_data = false;
            return;
        }
        self.in_block = true;
        if line[0] == b':' {
            return;
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
                self.current.event = String::from_utf8_lossy(value).into_owned();
            }
            // `id` and `retry` matter to a reconnecting client; this one
            // counts seqs from the data instead.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_dispatched_at_blank_lines_whatever_the_splits() {
        let wire = b"retry: 3000\n\nid: 1\ndata: {\"a\":1}\n\n: ping\n\nevent: gap\r\ndata: {\"missed\":2}\r\n\r\nid: 4\ndata: x\ndata: y\n\n";
        for split in 0..wire.len() {
            let mut parser = EventParser::new();
            let mut seen = Vec::new();
            parser
                .feed(&wire[..split], |e| {
                    seen.push((e.event.clone(), e.data.clone()))
                })
                .unwrap();
            parser
                .feed(&wire[split..], |e| {
                    seen.push((e.event.clone(), e.data.clone()))
                })
                .unwrap();
            assert_eq!(
                seen,
                vec![
                    (String::new(), b"{\"a\":1}".to_vec()),
                    ("gap".to_string(), b"{\"missed\":2}".to_vec()),
                    (String::new(), b"x\ny".to_vec()),
                ],
                "split {split}"
            );
            assert_eq!(parser.blocks(), 5);
        }
    }
}
