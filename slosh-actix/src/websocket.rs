//! WebSocket subscriptions on actix: the handshake answer, then one task
//! per socket that runs core's [`websocket::run`] over actix-ws's framing.
//!
//! actix keeps the connection; actix-ws hands us a [`Session`] that queues
//! frames into a channel of 32 which the response body drains whenever
//! actix can write, and a [`MessageStream`] of the client's frames. Every
//! rule of the loop is core's (pulling only once what came before is
//! queued, the slow-reader close, reassembling fragments within
//! [`Socket::read_limit`], answering pings and closes); this file converts
//! frames. A client that stops reading fills the channel and stops the
//! pulls, and costs at most those 32 frames (each a shared encoding of a
//! message) plus actix's write buffer.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::http::header::{
    HeaderName, HeaderValue, SEC_WEBSOCKET_ACCEPT, TRANSFER_ENCODING, UPGRADE,
};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason, Item, Message, MessageStream, ProtocolError, Session};
use bytes::Bytes;
use bytestring::ByteString;
use futures_core::Stream;
use futures_util::SinkExt;
use slosh_core::driver::websocket::{self, Closed, Fragment, Framing, Outgoing, Received};
use slosh_core::Socket;

use crate::Rt;

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
    let limit = socket.read_limit();
    actix_web::rt::spawn(websocket::run(
        socket,
        ActixWs {
            session,
            messages: messages.max_frame_size(limit),
        },
        Rt,
    ));
    response
}

/// actix-ws's session and frames as core's [`Framing`]. actix-ws hands
/// fragments over as they come and leaves pings and a client's close to
/// us, so core reassembles and answers them.
struct ActixWs {
    session: Session,
    messages: MessageStream,
}

impl Framing for ActixWs {
    const ANSWERS_CONTROL: bool = false;

    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<Received> {
        loop {
            let Poll::Ready(message) = Pin::new(&mut self.messages).poll_next(cx) else {
                return Poll::Pending;
            };
            return Poll::Ready(match message {
                Some(Ok(Message::Text(text))) => Received::Text(text.into_bytes()),
                Some(Ok(Message::Binary(_))) => Received::Binary,
                Some(Ok(Message::Continuation(item))) => Received::Fragment(match item {
                    Item::FirstText(bytes) => fragment(Some(true), bytes, false),
                    Item::FirstBinary(bytes) => fragment(Some(false), bytes, false),
                    Item::Continue(bytes) => fragment(None, bytes, false),
                    Item::Last(bytes) => fragment(None, bytes, true),
                }),
                Some(Ok(Message::Ping(payload))) => Received::Ping(payload),
                Some(Ok(Message::Pong(_))) => Received::Pong,
                Some(Ok(Message::Close(reason))) => {
                    Received::Close(reason.map(|reason| reason.code.into()))
                }
                Some(Ok(Message::Nop)) => continue,
                Some(Err(ProtocolError::Overflow)) => Received::TooBig,
                Some(Err(_)) | None => Received::Gone,
            });
        }
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Closed>> {
        self.session.poll_ready_unpin(cx).map_err(|_| Closed)
    }

    fn start_send(&mut self, frame: Outgoing) -> Result<(), Closed> {
        let message = match frame {
            // Core builds only UTF-8; anything else is skipped rather than
            // sent malformed.
            Outgoing::Text(bytes) => match ByteString::try_from(bytes) {
                Ok(text) => Message::Text(text),
                Err(_) => return Ok(()),
            },
            Outgoing::Ping => Message::Ping(Bytes::new()),
            Outgoing::Pong(payload) => Message::Pong(payload),
            // actix-ws ends the response body once a close is written.
            Outgoing::Close(frame) => Message::Close(frame.map(|(code, reason)| CloseReason {
                code: CloseCode::from(code),
                description: (!reason.is_empty()).then(|| reason.to_string()),
            })),
        };
        self.session.start_send_unpin(message).map_err(|_| Closed)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Closed>> {
        self.session.poll_flush_unpin(cx).map_err(|_| Closed)
    }
}

fn fragment(first: Option<bool>, bytes: Bytes, last: bool) -> Fragment {
    Fragment { first, bytes, last }
}
