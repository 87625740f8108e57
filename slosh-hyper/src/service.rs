//! The [`Slosh`] service: a hyper request in, core's decision, and the
//! waits that decision leaves (a parked long-poll, a file) driven to an
//! answer.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use crate::clock::{self, Clock};
use crate::handoff::{self, HandoffSlot};
use crate::stall::StallSlot;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use slosh_core::driver;
use slosh_core::{Hub, LongPoll, Lookup, Outcome, Publish, StaticFile};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Sleep;

use crate::body::{send_file, SseBody};
use crate::convert::{convert, whole};
use crate::websocket;
use crate::Body;

/// The hyper `Service` serving slosh's URLs: mount it, or hand it to
/// `serve_connection` yourself.
#[derive(Clone, Debug)]
pub struct Slosh {
    pub(crate) hub: Hub,
    /// Set by [`serve_with`](crate::serve_with) for each connection it accepts. Without it
    /// (a `Slosh` mounted in a server of the host's own) a stalled reader
    /// is dropped at its next read instead (memory is bounded either way),
    /// streams are served through hyper, a parked long-poll keeps a timer of
    /// its own, and the head timeout is the host's.
    pub(crate) connection: Option<Connection>,
}

/// What [`serve_with`](crate::serve_with) keeps per connection for the service answering on
/// it.
#[derive(Clone, Debug)]
pub(crate) struct Connection {
    /// Watched by the connection's socket for a stream's stall.
    pub(crate) stall: StallSlot,
    /// The connection's place under `max_connections`: a WebSocket keeps it
    /// after the upgrade, so sockets count as connections and shutdown
    /// waits for their close frames.
    pub(crate) permit: Arc<OwnedSemaphorePermit>,
    /// Where an event stream is left for the connection task to serve
    /// without hyper (`handoff.rs`).
    pub(crate) handoff: HandoffSlot,
    /// What the connection waits for, timed by its one timer (`clock.rs`).
    pub(crate) clock: Clock,
}

impl Slosh {
    /// A service over `hub`.
    pub fn new(hub: Hub) -> Slosh {
        Slosh {
            hub,
            connection: None,
        }
    }

    /// The connection's clock, when [`serve_with`](crate::serve_with) accepted it.
    fn clock(&self) -> Option<&Clock> {
        self.connection.as_ref().map(|connection| &connection.clock)
    }

    /// The hub, for publishing from the application.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Answers one request.
    pub async fn handle<B>(&self, request: hyper::Request<B>) -> hyper::Response<Body>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let (parts, body) = request.into_parts();
        let body = if body.is_end_stream() {
            slosh_core::Body::Empty
        } else {
            // Boxed: its state would otherwise sit in every request's
            // future, whatever state that future is in.
            match Box::pin(read_body(body, self.hub.body_limit())).await {
                Ok(body) => body,
                // The client stopped sending mid-body; core words the refusal.
                Err(()) => {
                    clock::answered(self.clock());
                    return whole(slosh_core::Response::error(
                        &slosh_core::Error::BodyUnreadable,
                    ));
                }
            }
        };
        let next = match self.dispatch(parts, body, false) {
            // Boxed, like the body's read: only requests that open a
            // topic pay for the wait's state.
            Next::Open(open, parts) => Box::pin(self.reopen(open, *parts)).await,
            next => next,
        };
        match next {
            Next::Answer(response) => {
                clock::answered(self.clock());
                response
            }
            next => match respond(next, self.clock().cloned()).await {
                Ok(response) => response,
                Err(never) => match never {},
            },
        }
    }

    /// Opens the topic core asked for off the runtime thread, then decides
    /// on the request again.
    async fn reopen(&self, open: slosh_core::Open, parts: hyper::http::request::Parts) -> Next {
        if driver::open(open, &Tokio).await {
            self.dispatch(parts, slosh_core::Body::Empty, true)
        } else {
            // The runtime is shutting down.
            Next::Answer(whole(slosh_core::Response::error(
                &slosh_core::Error::ShuttingDown,
            )))
        }
    }

    /// Core's decision on a request whose body has been read, with
    /// everything that needs no waiting already done; `opened` after the
    /// [`Next::Open`] it gave first was run.
    fn dispatch(
        &self,
        mut parts: hyper::http::request::Parts,
        body: slosh_core::Body,
        opened: bool,
    ) -> Next {
        let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let mut core = slosh_core::Request::new(parts.method.as_str(), target);
        core.body = body;
        core.opened = opened;
        for (name, value) in &parts.headers {
            // A header that is not text cannot be one core reads (they are
            // all ASCII by definition); skipping it is the same as absent.
            if let Ok(value) = value.to_str() {
                core.header(name.as_str(), value);
            }
        }
        match self.hub.handle(core, Instant::now()) {
            Outcome::Respond(response) => Next::Answer(whole(response)),
            Outcome::Park(poll) => Next::Park(poll),
            Outcome::Stream(stream) => {
                if let Some(connection) = &self.connection {
                    if handoff::can_hand_off(&parts) {
                        connection.handoff.put(stream);
                        return Next::HandedOff;
                    }
                }
                let head = stream.head();
                let stall = self.connection.as_ref().map(|c| c.stall.clone());
                Next::Stream(convert(
                    head,
                    BoxBody::new(SseBody::new(stream, stall, self.clock().cloned())),
                ))
            }
            Outcome::Socket(socket) => {
                match parts.extensions.remove::<hyper::upgrade::OnUpgrade>() {
                    Some(on_upgrade) => {
                        let mut head = socket.head();
                        head.headers.push((
                            "Sec-WebSocket-Accept",
                            websocket::accept_key(&socket).into(),
                        ));
                        websocket::spawn(
                            socket,
                            on_upgrade,
                            self.connection.as_ref().map(|c| Arc::clone(&c.permit)),
                        );
                        Next::Answer(whole(head))
                    }
                    // An HTTP/2 connection, or one served without upgrades.
                    None => Next::Answer(whole(slosh_core::Response::error(
                        &slosh_core::Error::StreamsUnsupported,
                    ))),
                }
            }
            Outcome::File(file) => Next::File(file),
            Outcome::Lookup(lookup) => Next::Lookup(lookup),
            Outcome::Publish(publish) => Next::Publish(publish),
            Outcome::Open(open) => Next::Open(open, Box::new(parts)),
        }
    }
}

/// The future [`Slosh`] answers a request with, as hyper's `Service`.
pub(crate) type ServiceFuture =
    Pin<Box<dyn Future<Output = Result<hyper::Response<Body>, Infallible>> + Send>>;

/// Waits for what core's decision left to wait for, in a future as small
/// as that wait, and tells the connection's clock when the answer is out.
pub(crate) fn respond(next: Next, clock: Option<Clock>) -> ServiceFuture {
    match next {
        Next::Answer(response) => {
            clock::answered(clock.as_ref());
            Box::pin(std::future::ready(Ok(response)))
        }
        // Its body tells the clock when the stream is over.
        Next::Stream(response) => Box::pin(std::future::ready(Ok(response))),
        Next::Park(poll) => Box::pin(park(poll, clock)),
        Next::File(file) => Box::pin(async move { Ok(send_file(file, clock).await) }),
        Next::Lookup(lookup) => Box::pin(async move {
            // The file system calls run on tokio's blocking pool, not here.
            let response = match tokio::task::spawn_blocking(move || lookup.run()).await {
                Ok(Ok(file)) => return Ok(send_file(file, clock).await),
                Ok(Err(response)) => response,
                // Cancelled: the runtime is shutting down.
                Err(_) => slosh_core::Response::error(&slosh_core::Error::ShuttingDown),
            };
            clock::answered(clock.as_ref());
            Ok(whole(response))
        }),
        Next::Publish(publish) => Box::pin(async move {
            // The store's write (an fsync, a round trip to Redis) runs on
            // tokio's blocking pool, so a slow store holds up no other
            // connection of this worker.
            let response = tokio::task::spawn_blocking(move || publish.run())
                .await
                // Cancelled: the runtime is shutting down.
                .unwrap_or_else(|_| slosh_core::Response::error(&slosh_core::Error::ShuttingDown));
            clock::answered(clock.as_ref());
            Ok(whole(response))
        }),
        // The connection task takes the connection from hyper, dropping
        // this future with it.
        Next::HandedOff => Box::pin(std::future::pending()),
        // Core answers `Open` once per request and the callers run it
        // before they get here; were one to slip through, the client may
        // try again.
        Next::Open(..) => {
            clock::answered(clock.as_ref());
            Box::pin(std::future::ready(Ok(whole(slosh_core::Response::error(
                &slosh_core::Error::Store("the topic was not opened".to_string()),
            )))))
        }
    }
}

/// What [`Slosh::handle`] still has to wait for.
pub(crate) enum Next {
    /// The answer, complete.
    Answer(hyper::Response<Body>),
    /// An event stream served through hyper: its head, and a body that
    /// runs until the stream ends (no head timeout meanwhile).
    Stream(hyper::Response<Body>),
    /// A parked long-poll.
    Park(LongPoll),
    /// A static file to open.
    File(StaticFile),
    /// A static file to look up off the runtime thread.
    Lookup(Lookup),
    /// A publish to store off the runtime thread.
    Publish(Publish),
    /// An event stream left in the connection's handoff slot.
    HandedOff,
    /// A topic to open off the runtime thread, and the request to decide
    /// on again then.
    Open(slosh_core::Open, Box<hyper::http::request::Parts>),
}

impl<B> hyper::service::Service<hyper::Request<B>> for Slosh
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    type Response = hyper::Response<Body>;
    type Error = Infallible;
    type Future = ServiceFuture;

    fn call(&self, request: hyper::Request<B>) -> Self::Future {
        if let Some(clock) = self.clock() {
            clock.busy();
        }
        let (parts, body) = request.into_parts();
        if body.is_end_stream() {
            // Decided now, so the boxed future holds only what is left to
            // wait for: one is allocated per request and a parked
            // long-poll keeps it, and the whole of `handle` (over 1 KiB)
            // would leave the allocator's small-object path
            // (`benches/RESULTS.md`).
            return match self.dispatch(parts, slosh_core::Body::Empty, false) {
                Next::Open(open, parts) => {
                    let this = self.clone();
                    Box::pin(async move {
                        let next = this.reopen(open, *parts).await;
                        respond(next, this.clock().cloned()).await
                    })
                }
                next => respond(next, self.clock().cloned()),
            };
        }
        let this = self.clone();
        let request = hyper::Request::from_parts(parts, body);
        Box::pin(async move { Ok(this.handle(request).await) })
    }
}

/// Reads the body up to `limit` bytes (inclusive). Past it, reading stops
/// and core is told [`slosh_core::Body::TooLarge`], so an endless body never
/// costs more than `limit` bytes of memory.
pub(crate) async fn read_body<B>(body: B, limit: usize) -> Result<slosh_core::Body, ()>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => {
            let bytes = collected.to_bytes();
            Ok(if bytes.is_empty() {
                slosh_core::Body::Empty
            } else {
                slosh_core::Body::Full(bytes)
            })
        }
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Ok(slosh_core::Body::TooLarge)
        }
        Err(_) => Err(()),
    }
}

/// Waits for a parked long-poll's answer (core's [`driver::park`]). With
/// the connection's [`Clock`], the connection's one timer wakes it at the
/// deadline; without, it keeps a tokio timer of its own for the wait.
pub(crate) async fn park(
    poll: LongPoll,
    clock: Option<Clock>,
) -> Result<hyper::Response<Body>, Infallible> {
    let response = match &clock {
        Some(clock) => driver::park(poll, clock.clone()).await,
        None => driver::park(poll, Tokio).await,
    };
    clock::answered(clock.as_ref());
    Ok(whole(response))
}

/// tokio's timer, for core's drivers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tokio;

impl driver::Timer for Tokio {
    type Sleep = Sleep;

    fn sleep_until(&self, at: Instant) -> Sleep {
        tokio::time::sleep_until(at.into())
    }

    fn reset(&self, sleep: Pin<&mut Sleep>, at: Instant) {
        sleep.reset(at.into());
    }

    async fn blocking<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> Option<R> {
        tokio::task::spawn_blocking(work).await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::Full;
    use slosh_core::Hub;

    /// The future hyper holds for each request (and a parked long-poll
    /// for its whole wait) stays small: under 1 KiB it is one allocation
    /// on the allocator's fast path, and a parked poll costs memory for as
    /// long as it waits. `handle` as one `async fn` made it 1 320 bytes.
    #[test]
    fn request_futures_stay_small() {
        use hyper::service::Service;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _entered = runtime.enter();
        let slosh = Slosh::new(Hub::builder().build());
        let publish = hyper::Request::post("/topics/t")
            .header("Content-Type", "text/plain")
            .body(Full::new(Bytes::from_static(b"hello")))
            .unwrap();
        let publishing = slosh.call(publish);
        assert!(std::mem::size_of_val(&*publishing) < 1024);
        let answered = runtime.block_on(publishing).unwrap();
        assert_eq!(answered.status(), 200);

        let get = |target: &str| {
            hyper::Request::get(target)
                .body(Full::new(Bytes::new()))
                .unwrap()
        };
        let parked = slosh.call(get("/topics/t?n=1"));
        assert!(
            std::mem::size_of_val(&*parked) <= 512,
            "a parked long-poll's future is {} bytes",
            std::mem::size_of_val(&*parked)
        );
        let parked_now = slosh_core::metrics::SubscriberKind::LongPoll;
        assert_eq!(slosh.hub().metrics().subscribers_now(parked_now), 1);
        let immediate = slosh.call(get("/topics/t?n=0"));
        assert!(std::mem::size_of_val(&*immediate) <= 256);
        assert_eq!(runtime.block_on(immediate).unwrap().status(), 200);
    }
}
