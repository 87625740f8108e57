//! WebSocket subscriptions on hyper: the handshake answer, then one task
//! per socket that drives core's [`Socket`] with tokio-tungstenite framing.
//!
//! The task pulls from core only when everything written before has been
//! flushed to the socket, so a client that stops reading stops the pulls;
//! meanwhile it watches the socket's [`Stall`](slosh_core::Stall), which
//! closes it once its unsent data passes `max_unsent`. Reading is bounded
//! too: frames and messages past [`Socket::read_limit`] are refused by the
//! framing before they are buffered, and no more frames are read while
//! replies are queued.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::ready;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{SplitSink, StreamExt};
use futures_util::SinkExt;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use slosh_core::{EndReason, EventListener, Socket, SocketStep, Stall, Wake};
use tokio::sync::OwnedSemaphorePermit;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

/// tungstenite's read buffer per socket.
const READ_BUFFER: usize = 1024;

use slosh_core::socket::{CLOSE_GRACE, MAX_QUEUED};

type Sink = SplitSink<WebSocketStream<TokioIo<Upgraded>>, Message>;

/// The `Sec-WebSocket-Accept` value answering this socket's key.
pub(crate) fn accept_key(socket: &Socket) -> String {
    derive_accept_key(socket.key().as_bytes())
}

/// Runs `socket` on the connection once hyper hands it over, holding
/// `permit` (the connection's place under `max_connections`) until it ends.
pub(crate) fn spawn(
    socket: Socket,
    on_upgrade: OnUpgrade,
    permit: Option<Arc<OwnedSemaphorePermit>>,
) {
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => run(socket, upgraded).await,
            Err(error) => tracing::debug!(%error, "WebSocket upgrade failed"),
        }
        drop(permit);
    });
}

/// What woke the socket's task.
enum Event {
    Incoming(Option<Result<Message, WsError>>),
    Flushed(Result<(), WsError>),
    Woken,
    Stalled(EndReason),
}

async fn run(mut socket: Socket, upgraded: Upgraded) {
    let limit = socket.read_limit();
    // tungstenite zero-fills its whole read buffer on the first read (128
    // KiB by default), which made an idle socket cost 137 KB of RSS. Frames
    // from clients are small; a larger one grows the buffer for itself.
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    let ws =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
    let (mut sink, mut source) = ws.split();
    let stall = socket.stall();
    let mut outbox: VecDeque<Message> = VecDeque::new();
    // Written to the sink but not yet flushed: while set, core is not polled.
    let mut unflushed = false;
    let sleep = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(sleep);
    loop {
        let mut wait: Option<EventListener> = None;
        if !unflushed {
            match socket.poll(Instant::now()) {
                SocketStep::Send(frames) => {
                    outbox.extend(frames.into_iter().filter_map(text));
                    unflushed = true;
                }
                SocketStep::Ping => {
                    outbox.push_back(Message::Ping(Bytes::new()));
                    unflushed = true;
                }
                SocketStep::Wait(listener, at) => {
                    sleep.as_mut().reset(at.into());
                    wait = Some(listener);
                }
                SocketStep::Close(code, reason) => return close(&mut sink, code, reason).await,
            }
        }
        let waiting = wait.is_some();
        let event = tokio::select! {
            incoming = source.next(), if outbox.len() < MAX_QUEUED => Event::Incoming(incoming),
            flushed = flush(&mut sink, &mut outbox), if unflushed => Event::Flushed(flushed),
            () = async { if let Some(listener) = wait { listener.await } }, if waiting => Event::Woken,
            () = &mut sleep, if waiting => Event::Woken,
            reason = stalled(&stall), if unflushed => Event::Stalled(reason),
        };
        match event {
            Event::Incoming(Some(Ok(message))) => {
                let reply = match message {
                    Message::Text(frame) => socket.receive_text(frame.as_str(), Instant::now()),
                    Message::Binary(_) => Some(socket.receive_binary()),
                    // tungstenite answers pings and close frames itself.
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => None,
                    Message::Close(_) => {
                        // tungstenite has queued the reply; it goes out on
                        // a flush, without which the client sees 1006.
                        let _ = tokio::time::timeout(CLOSE_GRACE, sink.flush()).await;
                        return;
                    }
                };
                if let Some(reply) = reply.and_then(text) {
                    outbox.push_back(reply);
                    unflushed = true;
                }
            }
            Event::Incoming(Some(Err(WsError::Capacity(_)))) => {
                if let SocketStep::Close(code, reason) = socket.too_big() {
                    close(&mut sink, code, reason).await;
                }
                return;
            }
            Event::Incoming(Some(Err(_)) | None) | Event::Flushed(Err(_)) => return,
            Event::Flushed(Ok(())) => unflushed = false,
            Event::Woken => {}
            Event::Stalled(reason) => {
                let (code, reason) = reason.close_frame();
                return close(&mut sink, code, reason).await;
            }
        }
    }
}

/// A frame core built as a text frame; core only builds UTF-8, so a
/// failure is skipped rather than sent malformed.
fn text(frame: Bytes) -> Option<Message> {
    Utf8Bytes::try_from(frame).ok().map(Message::Text)
}

/// Writes the queued frames and flushes them. A frame leaves the queue only
/// once the sink has accepted it, so dropping this future loses nothing.
async fn flush(sink: &mut Sink, outbox: &mut VecDeque<Message>) -> Result<(), WsError> {
    poll_fn(|cx| {
        while !outbox.is_empty() {
            ready!(sink.poll_ready_unpin(cx))?;
            if let Some(message) = outbox.pop_front() {
                sink.start_send_unpin(message)?;
            }
        }
        sink.poll_flush_unpin(cx)
    })
    .await
}

/// Resolves when core says a socket whose writes are blocked is over.
async fn stalled(stall: &Stall) -> EndReason {
    loop {
        match stall.check() {
            Wake::Ready(reason) => return reason,
            Wake::Wait(listener) => listener.await,
        }
    }
}

/// Sends a close frame (giving up after [`CLOSE_GRACE`]); the connection
/// is dropped when the task ends.
async fn close(sink: &mut Sink, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: Utf8Bytes::from_static(reason),
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, sink.send(Message::Close(Some(frame)))).await;
}
