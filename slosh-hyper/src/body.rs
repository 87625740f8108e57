//! The bodies hyper pulls from: an event stream (core's [`Pull`]) and a
//! static file, each a chunk at a time when the socket can take more.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::clock::{self, Clock};
use crate::stall::StallSlot;
use bytes::Bytes;
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use slosh_core::{EventStream, Pull, StaticFile};
use tokio::io::{AsyncRead, ReadBuf};

use crate::convert::{convert, whole};
use crate::service::Tokio;
use crate::Body;

/// An SSE stream as a hyper body: each frame is pulled from core when hyper
/// asks for one, i.e. when the socket can take more.
pub(crate) struct SseBody {
    stream: EventStream,
    pull: Pull<Tokio>,
    /// The connection's slot for this stream's stall watch, if any.
    stall: Option<StallSlot>,
    /// Told when the stream is over, so the head timeout runs again.
    clock: Option<Clock>,
}

impl SseBody {
    pub(crate) fn new(
        stream: EventStream,
        stall: Option<StallSlot>,
        clock: Option<Clock>,
    ) -> SseBody {
        if let Some(slot) = &stall {
            slot.watch(stream.stall());
        }
        SseBody {
            stream,
            pull: Pull::new(Tokio),
            stall,
            clock,
        }
    }
}

impl Drop for SseBody {
    fn drop(&mut self) {
        if let Some(slot) = &self.stall {
            slot.clear();
        }
        clock::answered(self.clock.as_ref());
    }
}

impl http_body::Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let stream = &mut this.stream;
        this.pull
            .poll_next(cx, |now| Some(stream.poll(now)))
            .map(|piece| piece.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// Answers with a static file core resolved: its head, then its bytes
/// unless core said there are none (`HEAD`).
pub(crate) async fn send_file(file: StaticFile, clock: Option<Clock>) -> hyper::Response<Body> {
    if !file.has_body() {
        clock::answered(clock.as_ref());
        return whole(file.head());
    }
    match tokio::fs::File::open(file.path()).await {
        Ok(opened) => convert(
            file.head(),
            BoxBody::new(FileBody::new(opened, file.len(), clock)),
        ),
        // Gone (or unreadable) since core resolved it; core words the answer.
        Err(_) => {
            clock::answered(clock.as_ref());
            whole(file.gone())
        }
    }
}

/// A file as a hyper body: one chunk of at most
/// [`slosh_core::files::CHUNK_SIZE`] is read each time hyper asks for a
/// frame, and never more than the `Content-Length` core announced.
pub(crate) struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    buf: bytes::BytesMut,
    /// Told when the body is done (dropped): a large file to a slow reader
    /// is not cut off by the head timeout.
    clock: Option<Clock>,
}

impl FileBody {
    fn new(file: tokio::fs::File, len: u64, clock: Option<Clock>) -> FileBody {
        FileBody {
            file,
            remaining: len,
            buf: bytes::BytesMut::new(),
            clock,
        }
    }
}

impl Drop for FileBody {
    fn drop(&mut self) {
        clock::answered(self.clock.as_ref());
    }
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = usize::try_from(this.remaining)
            .unwrap_or(usize::MAX)
            .min(slosh_core::files::CHUNK_SIZE);
        this.buf.resize(want, 0);
        let mut read = ReadBuf::new(&mut this.buf[..]);
        match Pin::new(&mut this.file).poll_read(cx, &mut read) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) if !read.filled().is_empty() => {
                let n = read.filled().len();
                this.remaining -= n as u64;
                this.buf.truncate(n);
                Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze()))))
            }
            // The file shrank or cannot be read any more: end early. The
            // body is then shorter than its Content-Length, so hyper closes
            // the connection and the client sees a cut answer, not a whole
            // wrong one.
            Poll::Ready(_) => {
                this.remaining = 0;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}
