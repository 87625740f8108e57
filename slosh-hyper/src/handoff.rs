//! Serving an SSE stream without hyper's per-connection buffers.
//!
//! hyper keeps two 8 KiB buffers for every HTTP/1 connection for as long
//! as the connection lives: the read buffer (reserved at the first read
//! and refilled before every later one) and the write buffer for response
//! heads (allocated when the connection is made). Each holds a few hundred
//! bytes of a request or response head, so each keeps at least one page
//! resident: about 8 KiB of RSS per connection that no builder option
//! shrinks (`max_buf_size` cannot go under 8 KiB). For an idle SSE
//! subscriber that was two thirds of its 12.4 KB (see `benches/README.md`).
//!
//! So when [`serve_with`](crate::serve_with) serves a connection, an SSE
//! subscription on it is handed off: the service leaves the
//! [`EventStream`] in the connection's [`HandoffSlot`] and never answers;
//! the connection task sees it, takes hyper's connection apart
//! (`into_parts`, which frees hyper's buffers and its connection state) and
//! runs [`stream`] on the bare socket. That writes core's head and chunks
//! in HTTP/1.1 chunked framing straight from core's shared `Bytes`, so an
//! idle subscriber holds its socket, its stream, one listener and one
//! timer entry. When the stream ends, the connection goes back to hyper
//! for the next request, as keep-alive would have it.
//!
//! Only a `GET` over HTTP/1.1 that does not ask to close is handed off;
//! anything else (and a [`Slosh`](crate::Slosh) mounted elsewhere) streams
//! through hyper as before.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use hyper::header::HeaderName;
use slosh_core::{EventStream, StreamStep};
use tokio::io::{AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::stall::Guarded;

/// Where the service leaves an SSE stream for its connection task to
/// serve on the bare socket. One per connection.
#[derive(Clone, Default, Debug)]
pub(crate) struct HandoffSlot(Arc<Mutex<Option<EventStream>>>);

impl HandoffSlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<EventStream>> {
        // Only ever replaced whole, so a poisoned value is still sound.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The service hands `stream` over (and then never answers).
    pub(crate) fn put(&self, stream: EventStream) {
        *self.lock() = Some(stream);
    }

    /// The connection task takes the stream handed over, if any.
    pub(crate) fn take(&self) -> Option<EventStream> {
        self.lock().take()
    }
}

/// Whether a request may be handed off: hyper answers the rest, because
/// they need framing other than HTTP/1.1 chunked with keep-alive (`HEAD`,
/// HTTP/1.0, `Connection: close`).
pub(crate) fn can_hand_off(parts: &hyper::http::request::Parts) -> bool {
    parts.method == hyper::Method::GET
        && parts.version == hyper::Version::HTTP_11
        && !parts
            .headers
            .get_all(hyper::header::CONNECTION)
            .iter()
            .any(|value| {
                value
                    .to_str()
                    .is_ok_and(|v| slosh_core::header::lists(v, "close"))
            })
}

/// How a handed-off stream ended.
pub(crate) enum Ended {
    /// Core ended it and the last chunk went out: the connection may serve
    /// another request.
    Finished,
    /// The reader went away, was dropped as too slow, or a write failed:
    /// close the connection.
    Broken,
}

/// Serves `stream` on `io`: core's head, then its chunks as HTTP/1.1
/// chunks, until core ends it or the reader goes away.
pub(crate) async fn stream(io: &mut Guarded<TcpStream>, mut stream: EventStream) -> Ended {
    io.watch(stream.stall());
    let ended = serve(io, &mut stream).await;
    io.unwatch();
    match ended {
        Ok(true) => Ended::Finished,
        Ok(false) | Err(_) => Ended::Broken,
    }
}

/// The loop of [`stream`]: `Ok(true)` when core ended the stream and the
/// last chunk is written, `Ok(false)` when the reader closed.
async fn serve(io: &mut Guarded<TcpStream>, stream: &mut EventStream) -> io::Result<bool> {
    // Sent with the first step's chunks, which core always opens with
    // `retry:`: one write per new subscriber instead of two (on loopback
    // each write also pays for the reader's side of TCP).
    let mut head = Some(head(stream));
    // Once the client sends anything (it has no business to on an event
    // stream) its socket stays readable, so stop looking for its close
    // there and notice it at the next write instead, as hyper does.
    let mut watch_reads = true;
    // The heartbeat timer, one for the whole stream and not boxed: it lives
    // in the connection task, which is allocated once. Every delivery moves
    // the next heartbeat later, but the timer is moved only when it fired
    // or must fire sooner: re-arming it per delivery cost a timer-wheel
    // insert and removal per message. Firing early costs one extra poll of
    // the stream, which answers with the later instant.
    let sleep = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(sleep);
    let mut armed = false;
    loop {
        match stream.poll(Instant::now()) {
            StreamStep::Send(chunks) => {
                let head = head.take().unwrap_or_default();
                write_chunks(io, &head, chunks.0).await?;
            }
            StreamStep::Wait(mut listener, at) => {
                if let Some(head) = head.take() {
                    io.write_all(&head).await?;
                }
                let at = tokio::time::Instant::from(at);
                if !armed || sleep.is_elapsed() || at < sleep.deadline() {
                    sleep.as_mut().reset(at);
                    armed = true;
                }
                let closed = std::future::poll_fn(|cx| {
                    if Pin::new(&mut listener).poll(cx).is_ready()
                        || sleep.as_mut().poll(cx).is_ready()
                    {
                        return Poll::Ready(false);
                    }
                    if watch_reads {
                        let mut byte = [0u8; 1];
                        match io.get_ref().poll_peek(cx, &mut ReadBuf::new(&mut byte)) {
                            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(true),
                            Poll::Ready(Ok(_)) => watch_reads = false,
                            Poll::Pending => {}
                        }
                    }
                    Poll::Pending
                })
                .await;
                if closed {
                    return Ok(false);
                }
            }
            StreamStep::End(_) => {
                if let Some(head) = head.take() {
                    io.write_all(&head).await?;
                }
                io.write_all(b"0\r\n\r\n").await?;
                io.flush().await?;
                return Ok(true);
            }
        }
    }
}

/// Core's head as hyper would write it for a chunked body: header names
/// lower-cased, a `date`, and `transfer-encoding: chunked`.
fn head(stream: &EventStream) -> Vec<u8> {
    let head = stream.head();
    let status = hyper::StatusCode::from_u16(head.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in head.headers {
        // The same rule as `convert`: a header that would be malformed on
        // the wire is dropped.
        if let (Ok(name), Some(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            crate::convert::header_value(value),
        ) {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"transfer-encoding: chunked\r\ndate: ");
    out.extend_from_slice(httpdate::fmt_http_date(SystemTime::now()).as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out
}

/// At most this many pieces go to one `writev`, as hyper does.
const MAX_PIECES: usize = 64;

/// Chunks framed per `writev`: each is three pieces (size line, data, CRLF),
/// after one piece of unframed bytes.
const CHUNKS_PER_WRITE: usize = (MAX_PIECES - 1) / 3;

/// The longest chunk-size line: 16 hex digits and CRLF.
const SIZE_LINE: usize = 18;

/// Writes `len` as a chunk-size line (upper-case hex, CRLF) into `line`
/// and returns the part used.
fn size_line(len: usize, line: &mut [u8; SIZE_LINE]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1) as usize;
    for (i, slot) in line.iter_mut().take(digits).enumerate() {
        let shift = 4 * (digits - 1 - i);
        // A nibble is always under 16.
        *slot = HEX.get((len >> shift) & 0xF).copied().unwrap_or(b'0');
    }
    for (slot, byte) in line.iter_mut().skip(digits).zip(b"\r\n") {
        *slot = *byte;
    }
    // At most 16 digits and CRLF: always within the line.
    line.get(..digits + 2).unwrap_or_default()
}

/// A chunk's length on the wire: size line, data, CRLF; 0 for an empty
/// chunk, which is skipped (it would end the body).
fn framed_len(chunk: &Bytes) -> usize {
    if chunk.is_empty() {
        return 0;
    }
    let digits = (usize::BITS - chunk.len().leading_zeros())
        .div_ceil(4)
        .max(1) as usize;
    digits + 2 + chunk.len() + 2
}

/// Writes `raw` as it is (the response head, or nothing), then `chunks` as
/// HTTP/1.1 chunks: each its size line, itself and a CRLF, gathered into
/// as few `writev` calls as the socket allows. The messages are core's
/// shared encodings, written from where they are; the size lines are
/// formatted on the stack at each attempt, so a write allocates nothing
/// and the task keeps only a position across a wait.
async fn write_chunks<W>(io: &mut W, mut raw: &[u8], chunks: Vec<Bytes>) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    // The first chunk not wholly written, and how much of its framing was.
    let mut first = 0;
    let mut done = 0;
    while !raw.is_empty() || first < chunks.len() {
        let written = std::future::poll_fn(|cx| {
            let mut lines = [[0u8; SIZE_LINE]; CHUNKS_PER_WRITE];
            let mut slices = [IoSlice::new(&[]); MAX_PIECES];
            let mut count = 0;
            if let (false, Some(slot)) = (raw.is_empty(), slices.first_mut()) {
                *slot = IoSlice::new(raw);
                count = 1;
            }
            let mut skip = done;
            for (chunk, line) in chunks
                .get(first..)
                .unwrap_or_default()
                .iter()
                .filter(|chunk| !chunk.is_empty())
                .zip(lines.iter_mut())
            {
                for piece in [size_line(chunk.len(), line), chunk, b"\r\n"] {
                    if skip >= piece.len() {
                        skip -= piece.len();
                        continue;
                    }
                    // One piece of raw bytes and three per chunk for at
                    // most CHUNKS_PER_WRITE chunks fill MAX_PIECES exactly.
                    if let (Some(slot), Some(rest)) = (slices.get_mut(count), piece.get(skip..)) {
                        *slot = IoSlice::new(rest);
                        count += 1;
                    }
                    skip = 0;
                }
            }
            Pin::new(&mut *io).poll_write_vectored(cx, slices.get(..count).unwrap_or_default())
        })
        .await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_raw = written.min(raw.len());
        raw = raw.get(from_raw..).unwrap_or_default();
        done += written - from_raw;
        while let Some(chunk) = chunks.get(first) {
            let len = framed_len(chunk);
            if done < len {
                break;
            }
            done -= len;
            first += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use slosh_core::Hub;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// A server on a free port, its address, and the task to abort after.
    async fn serve() -> (Hub, std::net::SocketAddr, tokio::task::JoinHandle<()>) {
        serve_hub(
            Hub::builder()
                .epochs(|| slosh_core::Epoch::from_bits(0))
                .build(),
        )
        .await
    }

    async fn serve_hub(hub: Hub) -> (Hub, std::net::SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn({
            let hub = hub.clone();
            async move {
                let _ = crate::serve(listener, hub, std::future::pending()).await;
            }
        });
        (hub, addr, server)
    }

    /// Sends one request on its own connection and reads the answer whole.
    async fn request(addr: std::net::SocketAddr, head: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = String::new();
        read_until(&mut stream, &mut answer, "\r\n\r\n").await;
        answer
    }

    async fn read_until(stream: &mut TcpStream, seen: &mut String, needle: &str) {
        let mut buf = [0u8; 4096];
        // One deadline for the whole wait: heartbeats would keep a
        // per-read timeout from ever firing.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !seen.contains(needle) {
            let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {needle:?}; got {seen:?}"))
                .unwrap();
            assert!(n > 0, "closed before {needle:?}; got {seen:?}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }

    async fn wait_for_subscribers(hub: &Hub, topic: &str, n: u64) {
        for _ in 0..500 {
            if hub.info(topic).is_some_and(|info| info["subscribers"] == n) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{topic} never had {n} subscribers: {:?}", hub.info(topic));
    }

    #[tokio::test]
    async fn a_handed_off_stream_is_chunked_and_its_connection_serves_the_next_request() {
        let (_hub, addr, server) = serve().await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /topics/kept.sse HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        let mut seen = String::new();
        read_until(&mut stream, &mut seen, "retry: 3000\n\n\r\n").await;
        assert!(seen.starts_with("HTTP/1.1 200 OK\r\n"), "{seen}");
        assert!(
            seen.contains("content-type: text/event-stream\r\n"),
            "{seen}"
        );
        assert!(seen.contains("transfer-encoding: chunked\r\n"), "{seen}");
        assert!(seen.contains("\r\ndate: "), "{seen}");
        let post = "POST /topics/kept HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 1\r\n\r\n7";
        assert!(request(addr, post).await.starts_with("HTTP/1.1 200"));
        read_until(
            &mut stream,
            &mut seen,
            "\r\nid: 1@aaaaaaaa\ndata: 7\n\n\r\n",
        )
        .await;
        let delete = "DELETE /topics/kept HTTP/1.1\r\nHost: test\r\n\r\n";
        assert!(request(addr, delete).await.starts_with("HTTP/1.1 200"));
        read_until(&mut stream, &mut seen, "\r\n0\r\n\r\n").await;
        // Keep-alive: the same connection answers another request.
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        let mut next = String::new();
        read_until(&mut stream, &mut next, "\r\n\r\n").await;
        assert!(next.starts_with("HTTP/1.1 200"), "{next}");
        server.abort();
    }

    #[tokio::test]
    async fn a_handed_off_stream_stops_counting_as_soon_as_its_reader_closes() {
        let (hub, addr, server) = serve().await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /topics/left.sse HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        let mut seen = String::new();
        read_until(&mut stream, &mut seen, "retry: 3000").await;
        wait_for_subscribers(&hub, "left", 1).await;
        drop(stream);
        // No publish: the close is seen on the socket, not at a write.
        wait_for_subscribers(&hub, "left", 0).await;
        server.abort();
    }

    #[tokio::test]
    async fn an_http_1_0_stream_is_still_served_through_hyper() {
        let (_hub, addr, server) = serve().await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /topics/old.sse HTTP/1.0\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        let mut seen = String::new();
        read_until(&mut stream, &mut seen, "retry: 3000\n\n").await;
        assert!(
            seen.contains("content-type: text/event-stream\r\n"),
            "{seen}"
        );
        assert!(!seen.contains("transfer-encoding"), "{seen}");
        server.abort();
    }

    #[tokio::test]
    async fn heartbeats_keep_coming_after_deliveries_move_them() {
        let settings = slosh_core::Settings {
            heartbeat: Duration::from_millis(150),
            ..Default::default()
        };
        let (_hub, addr, server) = serve_hub(
            Hub::builder()
                .settings(settings)
                .epochs(|| slosh_core::Epoch::from_bits(0))
                .build(),
        )
        .await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /topics/beat.sse HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        let mut seen = String::new();
        read_until(&mut stream, &mut seen, "retry: 3000").await;
        // Each delivery moves the next heartbeat later while the timer is
        // still armed for the earlier one.
        for i in 1..=3 {
            let post = format!("POST /topics/beat HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 1\r\n\r\n{i}");
            assert!(request(addr, &post).await.starts_with("HTTP/1.1 200"));
            read_until(
                &mut stream,
                &mut seen,
                &format!("id: {i}@aaaaaaaa\ndata: {i}\n\n"),
            )
            .await;
        }
        // The timer fires early (armed before the deliveries), is moved,
        // and fires again for each heartbeat after.
        for _ in 0..2 {
            let mut next = String::new();
            read_until(&mut stream, &mut next, ": ping\n\n").await;
        }
        server.abort();
    }

    /// Takes at most `step` bytes per write, and one slice of a vectored
    /// write at a time, so every partial-write path is taken.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
    }

    impl tokio::io::AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.out.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// The same framing written naively, to compare with.
    fn framed(chunks: &[bytes::Bytes]) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in chunks.iter().filter(|c| !c.is_empty()) {
            out.extend_from_slice(format!("{:X}\r\n", chunk.len()).as_bytes());
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[tokio::test]
    async fn chunks_are_framed_whole_whatever_each_write_takes() {
        let sizes = [1usize, 0, 15, 16, 255, 256, 4095, 4096, 70_000, 0, 3];
        // More chunks than one writev takes, empty ones among them.
        let chunks: Vec<bytes::Bytes> = (0..50)
            .map(|i| bytes::Bytes::from(vec![b'a' + (i % 26) as u8; sizes[i % sizes.len()]]))
            .collect();
        let expected = framed(&chunks);
        for step in [1, 2, 3, 7, 100, 5000, usize::MAX] {
            let mut out = Trickle {
                out: Vec::new(),
                step,
            };
            super::write_chunks(&mut out, b"", chunks.clone())
                .await
                .unwrap();
            assert!(out.out == expected, "step {step}");
            let mut out = Trickle {
                out: Vec::new(),
                step,
            };
            let head = b"HTTP/1.1 200 OK\r\n\r\n";
            super::write_chunks(&mut out, head, chunks.clone())
                .await
                .unwrap();
            assert!(out.out[..head.len()] == head[..], "step {step}");
            assert!(out.out[head.len()..] == expected, "step {step}");
        }
    }

    #[test]
    fn size_lines_are_upper_case_hex() {
        let mut line = [0u8; super::SIZE_LINE];
        for (len, text) in [
            (0usize, "0\r\n"),
            (1, "1\r\n"),
            (15, "F\r\n"),
            (16, "10\r\n"),
            (0xABCDEF, "ABCDEF\r\n"),
            (usize::MAX, "FFFFFFFFFFFFFFFF\r\n"),
        ] {
            assert_eq!(super::size_line(len, &mut line), text.as_bytes());
            let chunk = bytes::Bytes::from(vec![0u8; len.min(100_000)]);
            if len == chunk.len() && len > 0 {
                assert_eq!(super::framed_len(&chunk), text.len() + len + 2);
            }
        }
    }
}
