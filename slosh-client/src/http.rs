//! HTTP/1.1 answers without a socket: [`parse_head`] reads a response head
//! (with `httparse`) once it is all buffered, and a [`BodyDecoder`] turns
//! framed body bytes (`Content-Length`, chunked, or until close) into body
//! bytes as they arrive, however the reads split them.
//!
//! Callers own the buffer and the socket: the load generator parses
//! straight out of its `BytesMut` and advances it by what was used, the
//! conformance suite parses a whole answer it read to the end.
//!
//! Everything that could grow without bound is bounded: a head at
//! [`MAX_HEAD`], a chunk-size line or a trailer line likewise. A whole body
//! has no bound here, since only the caller knows what it can hold.

/// Largest response head accepted; slosh's and Nchan's are a few hundred
/// bytes, so more is a server (or something posing as one) gone wrong.
pub const MAX_HEAD: usize = 64 * 1024;

/// Header lines a head may have: httparse wants a fixed array, and slosh
/// sends about ten.
const MAX_HEADERS: usize = 64;

/// Why an answer cannot be read. Each is the server's fault, never the
/// caller's: the text says what the server sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The status line or a header line is not HTTP/1.x.
    #[error("bad response head: {0}")]
    BadHead(httparse::Error),
    /// The head did not end within [`MAX_HEAD`] bytes.
    #[error("response head over {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// `Content-Length` is not a decimal size.
    #[error("bad Content-Length")]
    BadLength,
    /// A chunk-size line is not hexadecimal, or too large for memory.
    #[error("bad chunk size")]
    BadChunkSize,
    /// A chunk's data was not followed by CRLF.
    #[error("chunk not followed by CRLF")]
    ChunkEnd,
    /// A chunk-size or trailer line did not end within [`MAX_HEAD`] bytes.
    #[error("chunk size or trailer line over {MAX_HEAD} bytes")]
    LineTooLong,
    /// A chunked body ended before its last chunk (see [`dechunk`]).
    #[error("chunked body cut short")]
    Truncated,
}

/// How the body of an answer ends: decided by the head, needed before a
/// single body byte can be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body (1xx such as `101 Switching Protocols`, 204, 304).
    Empty,
    /// `Content-Length`.
    Length(usize),
    /// `Transfer-Encoding: chunked`: slosh's streams and long-polls.
    Chunked,
    /// Neither: the body is whatever comes until the server closes.
    UntilClose,
}

/// Which header lines [`parse_head`] copies into [`Head::headers`]: the
/// load generator's hot path wants none or two, a test wants every one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep<'a> {
    /// Only what framing needs (read, never copied).
    FramingOnly,
    /// These, compared ignoring ASCII case.
    Named(&'a [&'a str]),
    /// Every header line, in the order sent.
    All,
}

/// The parts of a response head a client decides on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// The minor version, `1` for HTTP/1.1 and `0` for HTTP/1.0 (whose
    /// connections close by default).
    pub version: u8,
    /// How the body is framed.
    pub framing: Framing,
    /// Whether the server closes the connection after this answer: a
    /// keep-alive client must reconnect before its next request.
    pub close: bool,
    /// The header lines [`Keep`] asked for: names as sent, values trimmed
    /// (and made UTF-8, lossily, since a client only ever shows or compares
    /// them).
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first kept header called `name` (ignoring ASCII case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the response head at the start of `buf`: `Ok(None)` while it is
/// incomplete (read more and call again), else the head and how many bytes
/// of `buf` it took. The body starts right after those.
pub fn parse_head(buf: &[u8], keep: Keep<'_>) -> Result<Option<(Head, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let used = match response.parse(buf) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(HttpError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(HttpError::BadHead(error)),
    };
    let status = response.code.unwrap_or(0);
    let version = response.version.unwrap_or(1);
    let mut length = None;
    let mut chunked = false;
    let mut close = version == 0;
    let mut kept = Vec::new();
    for header in response.headers.iter() {
        let name = header.name;
        let value = trim(header.value);
        if name.eq_ignore_ascii_case("content-length") {
            let digits = std::str::from_utf8(value).map_err(|_| HttpError::BadLength)?;
            length = Some(digits.parse::<usize>().map_err(|_| HttpError::BadLength)?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = tokens(value).any(|token| token.eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            if tokens(value).any(|token| token.eq_ignore_ascii_case(b"close")) {
                close = true;
            } else if tokens(value).any(|token| token.eq_ignore_ascii_case(b"keep-alive")) {
                close = false;
            }
        }
        let wanted = match keep {
            Keep::FramingOnly => false,
            Keep::Named(names) => names.iter().any(|n| n.eq_ignore_ascii_case(name)),
            Keep::All => true,
        };
        if wanted {
            kept.push((
                name.to_string(),
                String::from_utf8_lossy(value).into_owned(),
            ));
        }
    }
    let framing = if status < 200 || status == 204 || status == 304 {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if let Some(length) = length {
        Framing::Length(length)
    } else {
        close = true;
        Framing::UntilClose
    };
    Ok(Some((
        Head {
            status,
            version,
            framing,
            close,
            headers: kept,
        },
        used,
    )))
}

fn trim(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    value.get(start..end).unwrap_or_default()
}

/// The comma-separated tokens of a header value, trimmed.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim)
}

/// How far one [`BodyDecoder::decode`] call got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the input consumed; the caller drops them from its buffer.
    /// Bytes after a finished body are never consumed: they are the next
    /// answer's.
    pub used: usize,
    /// The body is complete.
    pub done: bool,
}

/// Turns framed body bytes into body bytes, as they arrive.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: Decode,
}

#[derive(Debug, Clone)]
enum Decode {
    /// This many body bytes remain (Content-Length or the current chunk).
    Remaining {
        left: usize,
        chunked: bool,
    },
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// A chunk-size line.
    ChunkSize,
    /// Trailer lines after the last chunk, up to the blank line.
    Trailer,
    /// Everything until the peer closes.
    UntilClose,
    Done,
}

impl BodyDecoder {
    /// A decoder for a body framed as `framing`.
    pub fn new(framing: Framing) -> BodyDecoder {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => Decode::Done,
            Framing::Length(left) => Decode::Remaining {
                left,
                chunked: false,
            },
            Framing::Chunked => Decode::ChunkSize,
            Framing::UntilClose => Decode::UntilClose,
        };
        BodyDecoder { state }
    }

    /// Whether the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        matches!(self.state, Decode::Done)
    }

    /// Appends to `out` the body bytes `input` holds.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Progress, HttpError> {
        self.decode_pieces(input, |piece| out.extend_from_slice(piece))
    }

    /// Hands each run of body bytes in `input` to `piece`, borrowed from
    /// `input`: a caller that parses the body (SSE) as it comes need not
    /// copy it first.
    pub fn decode_pieces(
        &mut self,
        input: &[u8],
        mut piece: impl FnMut(&[u8]),
    ) -> Result<Progress, HttpError> {
        let mut used = 0;
        loop {
            let rest = input.get(used..).unwrap_or_default();
            match &mut self.state {
                Decode::Done => return Ok(Progress { used, done: true }),
                Decode::UntilClose => {
                    if !rest.is_empty() {
                        piece(rest);
                    }
                    return Ok(Progress {
                        used: input.len(),
                        done: false,
                    });
                }
                Decode::Remaining { left, chunked } => {
                    let take = (*left).min(rest.len());
                    if take > 0 {
                        piece(&rest[..take]);
                    }
                    used += take;
                    *left -= take;
                    if *left > 0 {
                        return Ok(Progress { used, done: false });
                    }
                    self.state = if *chunked {
                        Decode::ChunkEnd
                    } else {
                        Decode::Done
                    };
                }
                Decode::ChunkEnd => {
                    match rest {
                        [b'\r', b'\n', ..] => {}
                        [] | [b'\r'] => return Ok(Progress { used, done: false }),
                        _ => return Err(HttpError::ChunkEnd),
                    }
                    used += 2;
                    self.state = Decode::ChunkSize;
                }
                Decode::ChunkSize => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((line, size))) => {
                        used += line;
                        self.state = if size == 0 {
                            Decode::Trailer
                        } else {
                            let left =
                                usize::try_from(size).map_err(|_| HttpError::BadChunkSize)?;
                            Decode::Remaining {
                                left,
                                chunked: true,
                            }
                        };
                    }
                    Ok(httparse::Status::Partial) if rest.len() > MAX_HEAD => {
                        return Err(HttpError::LineTooLong)
                    }
                    Ok(httparse::Status::Partial) => return Ok(Progress { used, done: false }),
                    Err(_) => return Err(HttpError::BadChunkSize),
                },
                Decode::Trailer => {
                    let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                        if rest.len() > MAX_HEAD {
                            return Err(HttpError::LineTooLong);
                        }
                        return Ok(Progress { used, done: false });
                    };
                    let blank = rest[..end].iter().all(|&b| b == b'\r');
                    used += end + 1;
                    if blank {
                        self.state = Decode::Done;
                    }
                }
            }
        }
    }
}

/// Undoes chunked transfer coding of a body held whole: what a test that
/// read an answer to its end wants. Bytes after the last chunk's trailer
/// are ignored; a body without its last chunk is [`HttpError::Truncated`].
pub fn dechunk(body: &[u8]) -> Result<Vec<u8>, HttpError> {
    let mut decoder = BodyDecoder::new(Framing::Chunked);
    let mut out = Vec::new();
    if decoder.decode(body, &mut out)?.done {
        Ok(out)
    } else {
        Err(HttpError::Truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `wire` fed in two reads split at `split`, as a socket
    /// buffer would: unconsumed bytes stay and the next read appends.
    fn decode_split(framing: Framing, wire: &[u8], split: usize) -> (Vec<u8>, bool, Vec<u8>) {
        let mut decoder = BodyDecoder::new(framing);
        let mut buf = wire[..split].to_vec();
        let mut out = Vec::new();
        let progress = decoder.decode(&buf, &mut out).unwrap();
        buf.drain(..progress.used);
        buf.extend_from_slice(&wire[split..]);
        let progress = decoder.decode(&buf, &mut out).unwrap();
        buf.drain(..progress.used);
        (out, progress.done, buf)
    }

    #[test]
    fn chunked_bodies_decode_across_arbitrary_splits() {
        let wire = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for split in 0..=wire.len() {
            let (out, done, left) = decode_split(Framing::Chunked, wire, split);
            assert!(done, "split {split}");
            assert_eq!(out, b"hello, world", "split {split}");
            assert_eq!(left, b"NEXT", "split {split}");
        }
    }

    #[test]
    fn a_chunk_split_over_many_reads_arrives_byte_by_byte() {
        let wire = b"a\r\n0123456789\r\n0\r\n\r\n";
        let mut decoder = BodyDecoder::new(Framing::Chunked);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        let mut done = false;
        for &byte in wire {
            buf.push(byte);
            let progress = decoder.decode(&buf, &mut out).unwrap();
            buf.drain(..progress.used);
            done = progress.done;
        }
        assert!(done && decoder.is_done());
        assert_eq!(out, b"0123456789");
        assert!(buf.is_empty());
    }

    #[test]
    fn pieces_are_borrowed_from_the_input_chunk_by_chunk() {
        let mut decoder = BodyDecoder::new(Framing::Chunked);
        let mut pieces = Vec::new();
        let progress = decoder
            .decode_pieces(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", |p| {
                pieces.push(p.to_vec())
            })
            .unwrap();
        assert!(progress.done);
        assert_eq!(pieces, vec![b"abc".to_vec(), b"de".to_vec()]);
    }

    #[test]
    fn a_content_length_body_stops_at_its_length() {
        for split in 0..=8 {
            let (out, done, left) = decode_split(Framing::Length(5), b"helloGET", split);
            assert!(done);
            assert_eq!(
                (out.as_slice(), left.as_slice()),
                (&b"hello"[..], &b"GET"[..])
            );
        }
        let mut decoder = BodyDecoder::new(Framing::UntilClose);
        let mut out = Vec::new();
        let progress = decoder.decode(b"all of it", &mut out).unwrap();
        assert_eq!((progress.used, progress.done), (9, false));
        assert!(BodyDecoder::new(Framing::Empty).is_done());
    }

    #[test]
    fn broken_chunking_is_an_error_not_a_panic() {
        let bad = |wire: &[u8]| {
            BodyDecoder::new(Framing::Chunked)
                .decode(wire, &mut Vec::new())
                .unwrap_err()
        };
        assert_eq!(bad(b"zz\r\n"), HttpError::BadChunkSize);
        assert_eq!(bad(b"2\r\nabXY"), HttpError::ChunkEnd);
        let mut endless = b"1;ext=".to_vec();
        endless.resize(MAX_HEAD + 1, b'x');
        assert_eq!(bad(&endless), HttpError::LineTooLong);
        assert_eq!(bad(b"ffffffffffffffffff\r\n"), HttpError::BadChunkSize);
        assert_eq!(dechunk(b"2\r\nab\r\n"), Err(HttpError::Truncated));
        assert_eq!(dechunk(b"2\r\nab\r\n0\r\n\r\n").unwrap(), b"ab");
    }

    #[test]
    fn heads_give_status_framing_and_the_headers_asked_for() {
        let wire: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nLast-Modified: Thu, 01 Jan 1970 00:00:01 GMT\r\nEtag:  0 \r\nX-Other: y\r\n\r\nabc";
        let named = Keep::Named(&["last-modified", "etag"]);
        let (head, used) = parse_head(wire, named).unwrap().unwrap();
        assert_eq!((head.status, head.version), (200, 1));
        assert_eq!(head.framing, Framing::Length(3));
        assert!(!head.close);
        assert_eq!(head.header("ETag"), Some("0"));
        assert!(head.header("last-modified").is_some());
        assert_eq!(head.header("x-other"), None);
        assert_eq!(&wire[used..], b"abc");

        let (all, _) = parse_head(wire, Keep::All).unwrap().unwrap();
        assert_eq!(all.headers.len(), 4);
        assert_eq!(all.headers[0], ("Content-Length".into(), "3".into()));
        let (none, _) = parse_head(wire, Keep::FramingOnly).unwrap().unwrap();
        assert!(none.headers.is_empty());
    }

    #[test]
    fn heads_decide_framing_and_whether_the_connection_closes() {
        let head = |wire: &[u8]| parse_head(wire, Keep::FramingOnly).unwrap().unwrap().0;
        let chunked = head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!((chunked.framing, chunked.close), (Framing::Chunked, false));
        let upgrade = head(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n");
        assert_eq!(upgrade.framing, Framing::Empty);
        assert_eq!(
            head(b"HTTP/1.1 304 Not Modified\r\n\r\n").framing,
            Framing::Empty
        );
        let until = head(b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!((until.framing, until.close), (Framing::UntilClose, true));
        assert!(
            head(b"HTTP/1.1 200 OK\r\nConnection: Upgrade, close\r\nContent-Length: 0\r\n\r\n")
                .close
        );
        assert!(head(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").close);
        assert!(
            !head(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n").close
        );
    }

    #[test]
    fn incomplete_heads_wait_and_bad_ones_are_errors() {
        let wire: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        for end in 0..wire.len() - 2 {
            assert_eq!(parse_head(&wire[..end], Keep::All), Ok(None), "{end}");
        }
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", Keep::All),
            Err(HttpError::BadLength)
        );
        assert!(matches!(
            parse_head(b"SMTP ready\r\n\r\n", Keep::All),
            Err(HttpError::BadHead(_))
        ));
        let mut endless = b"HTTP/1.1 200 OK\r\n".to_vec();
        endless.extend(std::iter::repeat_n(b'x', MAX_HEAD));
        assert_eq!(
            parse_head(&endless, Keep::All),
            Err(HttpError::HeadTooLarge)
        );
    }
}
