//! WebSocket subscriptions on hyper: the handshake answer, then one task
//! per socket that runs core's [`websocket::run`] over tokio-tungstenite's
//! framing. Every rule of the loop (back-pressure, the slow-reader close,
//! the reply queue's bound, close grace) is core's; this file converts
//! frames. Reading is bounded by the framing too: frames and messages past
//! [`Socket::read_limit`] are refused before they are buffered.

use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use slosh_core::driver::websocket::{self, Closed, Framing, Outgoing, Received};
use slosh_core::Socket;
use tokio::sync::OwnedSemaphorePermit;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::service::Tokio;

/// tungstenite's read buffer per socket.
const READ_BUFFER: usize = 1024;

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

/// tungstenite's socket as core's [`Framing`]: it reassembles fragments
/// and answers pings and a client's close itself, on its next flush.
struct Tungstenite(WebSocketStream<TokioIo<Upgraded>>);

impl Framing for Tungstenite {
    const ANSWERS_CONTROL: bool = true;

    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<Received> {
        loop {
            return Poll::Ready(match ready!(self.0.poll_next_unpin(cx)) {
                Some(Ok(Message::Text(text))) => Received::Text(text.into()),
                Some(Ok(Message::Binary(_))) => Received::Binary,
                Some(Ok(Message::Ping(payload))) => Received::Ping(payload),
                Some(Ok(Message::Pong(_))) => Received::Pong,
                Some(Ok(Message::Close(frame))) => {
                    Received::Close(frame.map(|frame| frame.code.into()))
                }
                // Only ever written, never read.
                Some(Ok(Message::Frame(_))) => continue,
                Some(Err(WsError::Capacity(_))) => Received::TooBig,
                Some(Err(_)) | None => Received::Gone,
            });
        }
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Closed>> {
        self.0.poll_ready_unpin(cx).map_err(|_| Closed)
    }

    fn start_send(&mut self, frame: Outgoing) -> Result<(), Closed> {
        let message = match frame {
            // Core builds only UTF-8; anything else is skipped rather than
            // sent malformed.
            Outgoing::Text(bytes) => match Utf8Bytes::try_from(bytes) {
                Ok(text) => Message::Text(text),
                Err(_) => return Ok(()),
            },
            Outgoing::Ping => Message::Ping(Bytes::new()),
            Outgoing::Pong(payload) => Message::Pong(payload),
            Outgoing::Close(frame) => Message::Close(frame.map(|(code, reason)| CloseFrame {
                code: CloseCode::from(code),
                reason: Utf8Bytes::from_static(reason),
            })),
        };
        self.0.start_send_unpin(message).map_err(|_| Closed)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Closed>> {
        self.0.poll_flush_unpin(cx).map_err(|_| Closed)
    }
}

async fn run(socket: Socket, upgraded: Upgraded) {
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
    websocket::run(socket, Tungstenite(ws), Tokio).await;
}
