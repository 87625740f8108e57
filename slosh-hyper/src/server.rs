//! [`serve_with`]: the accept loop, its limits, and the driver of each
//! connection (one timer, the SSE handoff off hyper).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::handoff::{self, HandoffSlot};
use crate::stall::{Guarded, StallSlot};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use slosh_core::driver;
use slosh_core::{EventStream, Hub};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Sleep;

use crate::service::{Connection, Slosh, Tokio};

/// How [`serve_with`] runs the server loop: core's options, shared with
/// slosh-actix.
pub use slosh_core::ServeOptions;

/// Serves `hub` on `listener` with default [`ServeOptions`] until
/// `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    hub: Hub,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_with(listener, hub, ServeOptions::default(), shutdown).await
}

/// Serves `hub` on `listener` until `shutdown` completes; then stops
/// accepting, answers parked long-polls, ends streams and waits up to
/// `options.grace` for connections to finish.
pub async fn serve_with(
    listener: TcpListener,
    hub: Hub,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    // hyper-util's GracefulShutdown does not take connections with
    // upgrades (WebSocket), so each connection watches this flag itself and
    // the semaphore's permits count the ones still open.
    let (closing, _) = tokio::sync::watch::channel(false);
    let connections = Arc::new(Semaphore::new(options.max_connections));
    let sweeper = tokio::spawn(sweep(hub.clone()));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, _peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: pause rather
                        // than spin, and keep serving the connections we have.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
                    tracing::debug!("connection limit reached; closing a new connection");
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let slot = StallSlot::default();
                let clock = Clock::new();
                let permit = Arc::new(permit);
                let handoff = HandoffSlot::default();
                let service = Slosh {
                    hub: hub.clone(),
                    connection: Some(Connection {
                        stall: slot.clone(),
                        permit: Arc::clone(&permit),
                        handoff: handoff.clone(),
                        clock: clock.clone(),
                    }),
                };
                let io = Guarded::new(tcp, slot, Some(clock.clone()));
                let closing = closing.subscribe();
                let header_timeout = options.header_timeout;
                tokio::spawn(async move {
                    serve_connection(io, service, handoff, clock, header_timeout, closing).await;
                    drop(permit);
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    hub.shutdown();
    let _ = closing.send(true);
    let all = u32::try_from(options.max_connections).unwrap_or(u32::MAX);
    tokio::select! {
        _ = connections.acquire_many(all) => {}
        () = tokio::time::sleep(options.grace) => {
            tracing::warn!("connections still open after the shutdown grace period");
        }
    }
    sweeper.abort();
    Ok(())
}

/// hyper's connection future, as [`serve_connection`] drives it.
pub(crate) type HttpConnection = http1::UpgradeableConnection<TokioIo<Guarded<TcpStream>>, Slosh>;

/// Serves one connection: its requests through hyper until one is an event
/// stream the service hands off; that is served on the bare socket
/// (`handoff.rs`), then hyper takes the next request.
pub(crate) async fn serve_connection(
    mut io: Guarded<TcpStream>,
    mut service: Slosh,
    handoff: HandoffSlot,
    clock: Clock,
    header_timeout: Duration,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    // The connection's one timer (`clock.rs`): hyper is given none, so it
    // times nothing per request.
    let first = Instant::now() + header_timeout;
    let mut timer = Timer {
        sleep: std::pin::pin!(tokio::time::sleep_until(first.into())),
        armed: first,
    };
    loop {
        // Boxed so that the task, which lives as long as the connection,
        // is only as large as an idle stream needs: hyper's state (and its
        // buffers) are freed when a stream is handed off.
        let mut http: Pin<Box<HttpConnection>> = Box::pin(
            http1::Builder::new()
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades(),
        );
        let handed = tokio::select! {
            handed = until_handoff(http.as_mut(), &handoff, &clock, &mut timer, header_timeout) => handed,
            _ = closing.changed() => {
                http.as_mut().graceful_shutdown();
                until_handoff(http.as_mut(), &handoff, &clock, &mut timer, header_timeout).await
            }
        };
        let Some(stream) = handed else { return };
        // `None` only after an upgrade, which a stream is not.
        let Some(parts) = Pin::into_inner(http).into_parts() else {
            return;
        };
        io = parts.io.into_inner();
        service = parts.service;
        // Bytes the client sent after its stream request would be the next
        // request; hyper cannot be given them back, so such a connection
        // closes when the stream ends. Dropped here, not kept across the
        // stream: even empty, it holds hyper's whole 8 KiB read buffer.
        let pipelined = !parts.read_buf.is_empty();
        drop(parts.read_buf);
        match handoff::stream(&mut io, stream).await {
            handoff::Ended::Finished if !pipelined && !*closing.borrow() => clock.idle(),
            _ => return,
        }
    }
}

/// A connection's one timer and the instant it is set for.
pub(crate) struct Timer<'a> {
    sleep: Pin<&'a mut Sleep>,
    armed: Instant,
}

/// Drives hyper until the connection ends or its head timeout passes
/// (`None`), or the service hands off an event stream; between polls of
/// hyper, keeps the connection's timer no later than what its [`Clock`]
/// says it waits for.
pub(crate) async fn until_handoff(
    mut http: Pin<&mut HttpConnection>,
    handoff: &HandoffSlot,
    clock: &Clock,
    timer: &mut Timer<'_>,
    header_timeout: Duration,
) -> Option<EventStream> {
    std::future::poll_fn(|cx| {
        // hyper first: a parked long-poll whose deadline woke this task
        // answers here, before the timer below is looked at.
        if let Poll::Ready(ended) = http.as_mut().poll(cx) {
            if let Err(error) = ended {
                tracing::debug!(%error, "connection ended with an error");
            }
            return Poll::Ready(None);
        }
        // The service put it there during the poll above.
        if let Some(stream) = handoff.take() {
            return Poll::Ready(Some(stream));
        }
        loop {
            if let Some(due) = clock.wake_at(header_timeout) {
                if due < timer.armed {
                    timer.sleep.as_mut().reset(due.into());
                    timer.armed = due;
                }
            }
            if timer.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            if clock.head_timed_out(now, header_timeout) {
                tracing::debug!("no request head within the head timeout; closing");
                return Poll::Ready(None);
            }
            // Fired early for what the connection waits for now (or for
            // nothing): set again for that, or a head timeout from now. A
            // deadline already past (a poll hyper has not answered yet)
            // is looked at again a millisecond on.
            let next = clock
                .wake_at(header_timeout)
                .unwrap_or(now + header_timeout)
                .max(now + Duration::from_millis(1));
            timer.sleep.as_mut().reset(next.into());
            timer.armed = next;
        }
    })
    .await
}

/// Runs [`Hub::sweep`] whenever the hub asks, for ever: idle topics and
/// expired sessions go away. [`serve_with`] runs it; an application that
/// mounts [`Slosh`] in its own server spawns it once per hub.
pub async fn sweep(hub: Hub) {
    driver::sweep(hub, Tokio).await;
}
