//! WebSocket subscriptions on actix: the handshake answer, then one task
//! per socket that drives core's [`Socket`] with actix-ws framing.
//!
//! actix keeps the connection; actix-ws hands us a [`Session`] that queues
//! frames into a channel of 32 which the response body drains whenever
//! actix can write, and a [`MessageStream`] of the client's frames. The task
//! pulls from core only once everything it was given before has been
//! queued, so a client that stops reading fills the channel, stops the
//! pulls, and costs at most those 32 frames (each a shared encoding of a
//! message) plus actix's write buffer. Meanwhile the task watches the
//! socket's [`Stall`], which ends it once its unsent data passes
//! `max_unsent`. Reading is bounded too: frames and reassembled messages
//! past [`Socket::read_limit`] are refused before they are buffered, and no
//! more frames are read while replies are queued.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::http::header::{
    HeaderName, HeaderValue, SEC_WEBSOCKET_ACCEPT, TRANSFER_ENCODING, UPGRADE,
};
use actix_web::http::StatusCode;
use actix_web::rt::time::{sleep, timeout, Sleep};
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason, Item, Message, MessageStream, ProtocolError, Session};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use futures_core::Stream;
use futures_util::SinkExt;
use slosh_core::{EndReason, EventListener, Socket, SocketStep, Stall, Wake};

use slosh_core::socket::{CLOSE_GRACE, MAX_QUEUED};

/// Whether actix reads this request's payload as the connection's raw
/// stream (its test for a WebSocket upgrade): such a payload only ends with
/// the connection, so it is kept for the socket instead of read as a body.
///
/// This mirrors actix-http's own request decoder, which compares each
/// `Transfer-Encoding` and `Upgrade` header whole rather than as a list
/// (`Upgrade: h2c, websocket` is a body to actix), so it deliberately does
/// not use [`slosh_core::header::lists`]: what counts is what actix does
/// with the payload. Whether the request *is* a WebSocket handshake core
/// decides, with the list rule.
pub(crate) fn is_upgrade_stream(request: &HttpRequest) -> bool {
    let headers = request.headers();
    let chunked = headers.get_all(TRANSFER_ENCODING).any(|value| {
        value
            .to_str()
            .is_ok_and(|v| v.to_ascii_lowercase().contains("chunked"))
    });
    let websocket = headers.get_all(UPGRADE).any(|value| {
        value
            .to_str()
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
    });
    websocket && !chunked
}

/// Answers the upgrade request with core's head and starts the socket's
/// task. Core has already checked the handshake by RFC 6455's rules, the
/// same ones actix-ws checks, so actix-ws refusing it is not expected; if it
/// does, the client gets core's answer to a bad upgrade.
pub(crate) fn answer(socket: Socket, request: &HttpRequest, payload: web::Payload) -> HttpResponse {
    let (mut response, session, messages) = match actix_ws::handle(request, payload) {
        Ok(parts) => parts,
        Err(_) => {
            return crate::whole(slosh_core::Response::error(&slosh_core::Error::BadUpgrade(
                "a handshake by RFC 6455",
            )))
        }
    };
    // actix-ws derived the accept value from the same key core read; the
    // rest of the head is core's. The response keeps actix-ws's body and
    // its "upgrade" connection type, which makes actix hand the connection
    // over to that body.
    let accept = response.headers().get(SEC_WEBSOCKET_ACCEPT).cloned();
    let head = socket.head();
    *response.status_mut() =
        StatusCode::from_u16(head.status).unwrap_or(StatusCode::SWITCHING_PROTOCOLS);
    let headers = response.headers_mut();
    headers.clear();
    for (name, value) in &head.headers {
        // Core writes only valid names and values; one that is not would be
        // skipped rather than sent malformed.
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(*name),
            HeaderValue::try_from(value.as_ref()),
        ) {
            headers.append(name, value);
        }
    }
    if let Some(accept) = accept {
        headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    actix_web::rt::spawn(run(socket, session, messages));
    response
}

/// What woke the socket's task.
enum Event {
    Incoming(Option<Result<Message, ProtocolError>>),
    /// Everything in the outbox is queued.
    Queued,
    /// The connection is gone (actix dropped the response body).
    Gone,
    Woken,
    Stalled(EndReason),
}

/// The socket's task: core's frames out, the client's frames in.
async fn run(mut socket: Socket, mut session: Session, messages: MessageStream) {
    let limit = socket.read_limit();
    let mut incoming = messages.max_frame_size(limit);
    let mut partial = Partial::default();
    let stall = socket.stall();
    let mut stall_listener: Option<EventListener> = None;
    let mut outbox: VecDeque<Message> = VecDeque::new();
    let mut sleep = Box::pin(sleep(Duration::ZERO));
    loop {
        let mut wait: Option<EventListener> = None;
        // Core is pulled only once what it gave before is queued.
        if outbox.is_empty() {
            match socket.poll(Instant::now()) {
                SocketStep::Send(frames) => outbox.extend(frames.into_iter().filter_map(text)),
                SocketStep::Ping => outbox.push_back(Message::Ping(Bytes::new())),
                SocketStep::Wait(listener, at) => {
                    sleep.as_mut().reset(at.into());
                    wait = Some(listener);
                }
                SocketStep::Close(code, reason) => return close(session, code, reason).await,
            }
        }
        let event = poll_fn(|cx| {
            next_event(
                cx,
                &mut session,
                &mut outbox,
                &mut incoming,
                &mut wait,
                sleep.as_mut(),
                &stall,
                &mut stall_listener,
            )
        })
        .await;
        match event {
            Event::Incoming(Some(Ok(message))) => {
                let message = match partial.add(message, limit) {
                    Ok(Some(message)) => message,
                    Ok(None) => continue,
                    Err(Refusal::TooBig) => break,
                    // Text that is not UTF-8 ends the socket, as an
                    // unfragmented one does in actix-ws.
                    Err(Refusal::NotUtf8) => return,
                };
                match message {
                    Message::Text(frame) => {
                        if let Some(reply) = socket.receive_text(&frame, Instant::now()) {
                            outbox.extend(text(reply));
                        }
                    }
                    Message::Binary(_) => outbox.extend(text(socket.receive_binary())),
                    // actix-ws leaves pings to us; the pong is queued like
                    // any reply.
                    Message::Ping(payload) => outbox.push_back(Message::Pong(payload)),
                    Message::Pong(_) | Message::Nop | Message::Continuation(_) => {}
                    // The client's close is echoed, as RFC 6455 asks.
                    Message::Close(reason) => {
                        let _ = timeout(CLOSE_GRACE, session.close(reason)).await;
                        return;
                    }
                }
            }
            Event::Incoming(Some(Err(ProtocolError::Overflow))) => break,
            Event::Incoming(Some(Err(_)) | None) | Event::Gone => return,
            Event::Queued | Event::Woken => {}
            Event::Stalled(reason) => {
                let (code, reason) = reason.close_frame();
                return close(session, code, reason).await;
            }
        }
    }
    // Only a frame or message past the read limit leaves the loop.
    if let SocketStep::Close(code, reason) = socket.too_big() {
        close(session, code, reason).await;
    }
}

/// Polls everything the task waits on, writes first, and says what
/// happened. Reads are polled even when a write finished, so a busy topic
/// does not starve the client's frames.
#[allow(clippy::too_many_arguments)]
fn next_event(
    cx: &mut Context<'_>,
    session: &mut Session,
    outbox: &mut VecDeque<Message>,
    incoming: &mut MessageStream,
    wait: &mut Option<EventListener>,
    mut sleep: Pin<&mut Sleep>,
    stall: &Stall,
    stall_listener: &mut Option<EventListener>,
) -> Poll<Event> {
    let mut queued = false;
    if !outbox.is_empty() {
        match push(cx, session, outbox) {
            Poll::Ready(Ok(())) => queued = true,
            Poll::Ready(Err(actix_ws::Closed)) => return Poll::Ready(Event::Gone),
            Poll::Pending => {}
        }
    }
    if outbox.len() < MAX_QUEUED {
        if let Poll::Ready(item) = Pin::new(&mut *incoming).poll_next(cx) {
            return Poll::Ready(Event::Incoming(item));
        }
    }
    if queued {
        return Poll::Ready(Event::Queued);
    }
    if let Some(listener) = wait {
        if Pin::new(listener).poll(cx).is_ready() || sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Event::Woken);
        }
    }
    if !outbox.is_empty() {
        // Writes are blocked: core decides whether the reader is too slow,
        // re-checked on every publish to the topic.
        loop {
            let listener = match stall_listener {
                Some(listener) => listener,
                None => match stall.check() {
                    Wake::Ready(reason) => return Poll::Ready(Event::Stalled(reason)),
                    Wake::Wait(listener) => stall_listener.insert(listener),
                },
            };
            if Pin::new(listener).poll(cx).is_pending() {
                break;
            }
            *stall_listener = None;
        }
    }
    Poll::Pending
}

/// Queues the outbox into the session's channel. A frame leaves the outbox
/// only once the channel has room for it, so nothing is lost when this is
/// polled again later.
fn push(
    cx: &mut Context<'_>,
    session: &mut Session,
    outbox: &mut VecDeque<Message>,
) -> Poll<Result<(), actix_ws::Closed>> {
    while !outbox.is_empty() {
        match session.poll_ready_unpin(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(closed)) => return Poll::Ready(Err(closed)),
            Poll::Pending => return Poll::Pending,
        }
        if let Some(message) = outbox.pop_front() {
            session.start_send_unpin(message)?;
        }
    }
    session.poll_flush_unpin(cx)
}

/// A frame core built as a text frame; core only builds UTF-8, so a
/// failure is skipped rather than sent malformed.
fn text(frame: Bytes) -> Option<Message> {
    ByteString::try_from(frame).ok().map(Message::Text)
}

/// Queues a close frame (giving up after [`CLOSE_GRACE`]); the session is
/// dropped when this returns, which ends the response body.
async fn close(session: Session, code: u16, reason: &'static str) {
    let reason = CloseReason {
        code: CloseCode::from(code),
        description: Some(reason.to_string()),
    };
    let _ = timeout(CLOSE_GRACE, session.close(Some(reason))).await;
}

/// Why a fragmented message is refused.
enum Refusal {
    /// It grew past the read limit.
    TooBig,
    /// It is text but not UTF-8.
    NotUtf8,
}

/// A fragmented message being reassembled (actix-ws hands fragments over
/// as they come), bounded by the read limit like a single frame.
#[derive(Default)]
struct Partial {
    /// Whether the message is text, and its bytes so far; `None` between
    /// messages.
    message: Option<(bool, BytesMut)>,
}

impl Partial {
    /// Takes one message from the stream: whole ones pass through, a
    /// fragment is kept until its last piece completes the message.
    fn add(&mut self, message: Message, limit: usize) -> Result<Option<Message>, Refusal> {
        let Message::Continuation(item) = message else {
            return Ok(Some(message));
        };
        let (is_text, piece, last) = match item {
            Item::FirstText(piece) => (Some(true), piece, false),
            Item::FirstBinary(piece) => (Some(false), piece, false),
            Item::Continue(piece) => (None, piece, false),
            Item::Last(piece) => (None, piece, true),
        };
        if let Some(is_text) = is_text {
            self.message = Some((is_text, BytesMut::new()));
        }
        // A continuation without a first fragment is ignored, as nothing
        // can be made of it.
        let Some((is_text, bytes)) = &mut self.message else {
            return Ok(None);
        };
        if bytes.len() + piece.len() > limit {
            return Err(Refusal::TooBig);
        }
        bytes.extend_from_slice(&piece);
        if !last {
            return Ok(None);
        }
        let is_text = *is_text;
        let bytes = std::mem::take(bytes).freeze();
        self.message = None;
        if !is_text {
            return Ok(Some(Message::Binary(bytes)));
        }
        match ByteString::try_from(bytes) {
            Ok(text) => Ok(Some(Message::Text(text))),
            Err(_) => Err(Refusal::NotUtf8),
        }
    }
}
