//! A minimal HTTP/1.1 client over one tokio socket: write a request, parse
//! the answer's head with `httparse`, read a whole body (length, chunked or
//! until close) or stream one (SSE) through [`BodyDecoder`].
//!
//! Everything it buffers is bounded: a head is at most [`MAX_HEAD`], a
//! whole body at most [`MAX_BODY`].

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::LoadError;

/// Largest response head we accept; slosh's and Nchan's are a few hundred
/// bytes.
pub const MAX_HEAD: usize = 64 * 1024;
/// Largest whole body we accept (a long-poll batch of a large buffer).
pub const MAX_BODY: usize = 16 * 1024 * 1024;
/// Read granularity; small so ten thousand idle streams stay cheap.
const READ_CHUNK: usize = 4096;

/// An open keep-alive connection.
pub struct Connection {
    stream: TcpStream,
    /// Bytes read and not yet consumed.
    buf: BytesMut,
}

/// How the body of an answer ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// No body (204, 304, 1xx).
    Empty,
    /// `Content-Length`.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Read until the server closes.
    UntilClose,
}

/// The parts of a response head the scenarios use.
#[derive(Clone, Debug)]
pub struct Head {
    /// Status code.
    pub status: u16,
    /// How the body is framed.
    pub body: BodyKind,
    /// The server will close after this answer.
    pub close: bool,
    /// `Last-Modified` (Nchan's cursor, first half).
    pub last_modified: Option<String>,
    /// `Etag` (Nchan's cursor, second half).
    pub etag: Option<String>,
}

/// A whole answer.
#[derive(Debug)]
pub struct Response {
    /// The head.
    pub head: Head,
    /// The decoded body.
    pub body: Vec<u8>,
}

impl Connection {
    /// Connects to `addr`, from `source` (port chosen by the kernel) when
    /// given, so many connections can spread over several loopback source
    /// addresses and their ephemeral ports.
    pub async fn open(addr: SocketAddr, source: Option<Ipv4Addr>) -> Result<Connection, LoadError> {
        let socket = TcpSocket::new_v4()?;
        if let Some(ip) = source {
            socket.bind(SocketAddr::V4(SocketAddrV4::new(ip, 0)))?;
        }
        let stream = socket.connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            buf: BytesMut::new(),
        })
    }

    /// Writes a whole request.
    pub async fn send(&mut self, request: &[u8]) -> Result<(), LoadError> {
        self.stream.write_all(request).await?;
        Ok(())
    }

    /// Reads more bytes into the buffer; an error when the peer closed.
    async fn fill(&mut self) -> Result<(), LoadError> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        let n = self.stream.read_buf(&mut self.buf).await?;
        if n == 0 {
            return Err(LoadError::Closed);
        }
        Ok(())
    }

    /// Reads and drops whatever comes until the peer closes (an error).
    pub async fn drain(&mut self) -> Result<(), LoadError> {
        loop {
            self.buf.clear();
            self.fill().await?;
        }
    }

    /// Reads one response head.
    pub async fn read_head(&mut self) -> Result<Head, LoadError> {
        loop {
            if let Some((head, used)) = parse_head(&self.buf)? {
                self.buf.advance(used);
                return Ok(head);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(LoadError::Protocol("response head too large".into()));
            }
            self.fill().await?;
        }
    }

    /// Reads one whole response: head and body.
    pub async fn read_response(&mut self) -> Result<Response, LoadError> {
        let head = self.read_head().await?;
        let mut body = Vec::new();
        let mut decoder = BodyDecoder::new(head.body);
        loop {
            let done = decoder.decode(&mut self.buf, &mut body)?;
            if body.len() > MAX_BODY {
                return Err(LoadError::Protocol("response body too large".into()));
            }
            if done {
                break;
            }
            match self.fill().await {
                Ok(()) => {}
                Err(LoadError::Closed) if head.body == BodyKind::UntilClose => break,
                Err(e) => return Err(e),
            }
        }
        Ok(Response { head, body })
    }

    /// Streams a body: decodes what is buffered into `out`, reading from the
    /// socket only when nothing was. Returns `true` once the body ended.
    pub async fn stream_body(
        &mut self,
        decoder: &mut BodyDecoder,
        out: &mut Vec<u8>,
    ) -> Result<bool, LoadError> {
        loop {
            let before = out.len();
            if decoder.decode(&mut self.buf, out)? {
                return Ok(true);
            }
            if out.len() > before {
                return Ok(false);
            }
            self.fill().await?;
        }
    }
}

fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, LoadError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let used = match response.parse(buf) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(LoadError::Protocol(format!("bad response head: {e}"))),
    };
    let status = response.code.unwrap_or(0);
    let mut length = None;
    let mut chunked = false;
    let mut close = response.version == Some(0);
    let mut last_modified = None;
    let mut etag = None;
    for header in response.headers.iter() {
        let value = std::str::from_utf8(header.value).unwrap_or("").trim();
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| LoadError::Protocol("bad Content-Length".into()))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        } else if name.eq_ignore_ascii_case("last-modified") {
            last_modified = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("etag") {
            etag = Some(value.to_string());
        }
    }
    let body = if status < 200 || status == 204 || status == 304 {
        BodyKind::Empty
    } else if chunked {
        BodyKind::Chunked
    } else if let Some(length) = length {
        BodyKind::Length(length)
    } else {
        close = true;
        BodyKind::UntilClose
    };
    Ok(Some((
        Head {
            status,
            body,
            close,
            last_modified,
            etag,
        },
        used,
    )))
}

/// Turns framed body bytes into body bytes, as they arrive.
#[derive(Debug)]
pub struct BodyDecoder {
    state: Decode,
}

#[derive(Debug)]
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
    /// A decoder for a body framed as `kind`.
    pub fn new(kind: BodyKind) -> BodyDecoder {
        let state = match kind {
            BodyKind::Empty | BodyKind::Length(0) => Decode::Done,
            BodyKind::Length(left) => Decode::Remaining {
                left,
                chunked: false,
            },
            BodyKind::Chunked => Decode::ChunkSize,
            BodyKind::UntilClose => Decode::UntilClose,
        };
        BodyDecoder { state }
    }

    /// Moves as much as `input` holds into `out`; `true` once the body is
    /// complete. Bytes after the body stay in `input` (the next answer).
    pub fn decode(&mut self, input: &mut BytesMut, out: &mut Vec<u8>) -> Result<bool, LoadError> {
        loop {
            match &mut self.state {
                Decode::Done => return Ok(true),
                Decode::UntilClose => {
                    out.extend_from_slice(input);
                    input.clear();
                    return Ok(false);
                }
                Decode::Remaining { left, chunked } => {
                    let take = (*left).min(input.len());
                    out.extend_from_slice(&input[..take]);
                    input.advance(take);
                    *left -= take;
                    if *left > 0 {
                        return Ok(false);
                    }
                    self.state = if *chunked {
                        Decode::ChunkEnd
                    } else {
                        Decode::Done
                    };
                }
                Decode::ChunkEnd => {
                    if input.len() < 2 {
                        return Ok(false);
                    }
                    if &input[..2] != b"\r\n" {
                        return Err(LoadError::Protocol("chunk not followed by CRLF".into()));
                    }
                    input.advance(2);
                    self.state = Decode::ChunkSize;
                }
                Decode::ChunkSize => match httparse::parse_chunk_size(input) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        input.advance(used);
                        self.state = if size == 0 {
                            Decode::Trailer
                        } else {
                            let left = usize::try_from(size)
                                .map_err(|_| LoadError::Protocol("chunk too large".into()))?;
                            Decode::Remaining {
                                left,
                                chunked: true,
                            }
                        };
                    }
                    Ok(httparse::Status::Partial) => {
                        if input.len() > MAX_HEAD {
                            return Err(LoadError::Protocol("chunk size line too long".into()));
                        }
                        return Ok(false);
                    }
                    Err(_) => return Err(LoadError::Protocol("bad chunk size".into())),
                },
                Decode::Trailer => {
                    let Some(end) = input.iter().position(|&b| b == b'\n') else {
                        if input.len() > MAX_HEAD {
                            return Err(LoadError::Protocol("trailer too long".into()));
                        }
                        return Ok(false);
                    };
                    let blank = input[..end].iter().all(|&b| b == b'\r');
                    input.advance(end + 1);
                    if blank {
                        self.state = Decode::Done;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_decode_across_arbitrary_splits() {
        let wire = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for split in 0..wire.len() {
            let mut decoder = BodyDecoder::new(BodyKind::Chunked);
            let mut input = BytesMut::from(&wire[..split]);
            let mut out = Vec::new();
            let mut done = decoder.decode(&mut input, &mut out).unwrap();
            input.extend_from_slice(&wire[split..]);
            if !done {
                done = decoder.decode(&mut input, &mut out).unwrap();
            }
            assert!(done, "split {split}");
            assert_eq!(out, b"hello, world");
            assert_eq!(&input[..], b"NEXT", "split {split}");
        }
    }

    #[test]
    fn heads_give_status_framing_and_nchan_cursor_headers() {
        let wire: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nLast-Modified: Thu, 01 Jan 1970 00:00:01 GMT\r\nEtag: 0\r\n\r\nabc";
        let (head, used) = parse_head(wire).unwrap().unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.body, BodyKind::Length(3));
        assert_eq!(head.etag.as_deref(), Some("0"));
        assert!(head.last_modified.is_some());
        assert_eq!(&wire[used..], b"abc");
        let (head, _) = parse_head(b"HTTP/1.1 304 Not Modified\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.body, BodyKind::Empty);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le")
            .unwrap()
            .is_none());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
    }
}
