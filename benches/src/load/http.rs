//! A minimal HTTP/1.1 client over one tokio socket: write a preformatted
//! request, read the answer's head, then a whole body (length, chunked or
//! until close) or stream one (SSE).
//!
//! The socket and its buffer are this module's, because the load
//! generator's cost per request must stay far below the server's; the
//! parsing is `slosh-client`'s ([`parse_head`], [`BodyDecoder`]), done in
//! place on the buffer, the same code slosh-cli and the conformance suite
//! read answers with.
//!
//! Everything it buffers is bounded: a head is at most
//! [`slosh_client::http::MAX_HEAD`], a whole body at most [`MAX_BODY`].

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use bytes::{Buf, BytesMut};
use slosh_client::http::{parse_head, Keep};
pub use slosh_client::http::{BodyDecoder, Framing, Head};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::LoadError;

/// The headers a load client reads: Nchan's cursor (`Last-Modified`,
/// `Etag`). Nothing else is copied out of a head.
const KEEP: Keep<'static> = Keep::Named(&["last-modified", "etag"]);

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
            if let Some((head, used)) = parse_head(&self.buf, KEEP)? {
                self.buf.advance(used);
                return Ok(head);
            }
            self.fill().await?;
        }
    }

    /// Reads one whole response: head and body.
    pub async fn read_response(&mut self) -> Result<Response, LoadError> {
        let head = self.read_head().await?;
        let mut body = Vec::new();
        let mut decoder = BodyDecoder::new(head.framing);
        loop {
            let progress = decoder.decode(&self.buf, &mut body)?;
            self.buf.advance(progress.used);
            if body.len() > MAX_BODY {
                return Err(LoadError::Protocol("response body too large".into()));
            }
            if progress.done {
                break;
            }
            match self.fill().await {
                Ok(()) => {}
                Err(LoadError::Closed) if head.framing == Framing::UntilClose => break,
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
            let progress = decoder.decode(&self.buf, out)?;
            self.buf.advance(progress.used);
            if progress.done {
                return Ok(true);
            }
            if out.len() > before {
                return Ok(false);
            }
            self.fill().await?;
        }
    }
}
