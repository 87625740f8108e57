//! The tasks that speak to the server during a fan-out: one subscriber
//! per connection (SSE, long-poll or an idle WebSocket), each keeping its
//! own [`Tally`], and the one publisher.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use slosh_client::{batch, sse};
use tokio::sync::Semaphore;

use super::scenario::{FanoutOptions, Kind, Plan, Shared};
use crate::load::http::{BodyDecoder, Connection};
use crate::load::{CursorStyle, Endpoint, LoadError, Stamp};

/// How long a back-to-back publisher waits for the slowest subscriber
/// before publishing the next message anyway (counted as a stalled step).
const STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// Failed requests a long-poll subscriber tolerates before giving up.
const MAX_POLL_ERRORS: u64 = 10;

/// One subscriber's counts; outside its loop, so a stop keeps them.
pub(super) struct Tally {
    /// One bit per seq.
    pub(super) seen: Vec<u64>,
    pub(super) received: u64,
    pub(super) duplicates: u64,
    pub(super) visible_loss: u64,
    pub(super) polls: u64,
    pub(super) errors: u64,
    pub(super) ready: bool,
    pub(super) last_delivery: Option<Instant>,
}

impl Tally {
    pub(super) fn new(msgs: u64) -> Tally {
        Tally {
            seen: vec![0; msgs.div_ceil(64) as usize],
            received: 0,
            duplicates: 0,
            visible_loss: 0,
            polls: 0,
            errors: 0,
            ready: false,
            last_delivery: None,
        }
    }

    fn subscribed(&mut self, shared: &Shared) {
        if !self.ready {
            self.ready = true;
            shared.alive.fetch_add(1, Ordering::SeqCst);
            shared.ready.fetch_add(1, Ordering::SeqCst);
            shared.arrivals.notify_one();
        }
    }

    /// Holds the last seq: messages arrive in order, so whatever is still
    /// missing is lost. Never for `connect`, which publishes nothing and
    /// keeps its subscribers until stopped.
    fn done(&self, shared: &Shared) -> bool {
        shared.msgs > 0 && self.has(shared.msgs - 1)
    }

    fn has(&self, seq: u64) -> bool {
        self.seen
            .get((seq / 64) as usize)
            .is_some_and(|word| word & (1 << (seq % 64)) != 0)
    }

    fn record(&mut self, shared: &Shared, data: &[u8]) {
        let Ok(stamp) = serde_json::from_slice::<Stamp>(data) else {
            self.errors += 1;
            return;
        };
        self.stamp(shared, stamp);
    }

    fn stamp(&mut self, shared: &Shared, stamp: Stamp) {
        let now = Instant::now();
        let Some(word) = self.seen.get_mut((stamp.seq / 64) as usize) else {
            self.duplicates += 1;
            return;
        };
        let bit = 1u64 << (stamp.seq % 64);
        if *word & bit != 0 || stamp.seq >= shared.msgs {
            self.duplicates += 1;
            return;
        }
        *word |= bit;
        self.received += 1;
        self.last_delivery = Some(now);
        let latency = (now.duration_since(shared.start).as_nanos() as u64).saturating_sub(stamp.t);
        if let Ok(mut histogram) = shared.latency.lock() {
            histogram.record(latency);
        }
        let holders = shared.holders[stamp.seq as usize].fetch_add(1, Ordering::SeqCst) + 1;
        if holders as usize >= shared.alive.load(Ordering::SeqCst) {
            shared.progress.notify_one();
        }
    }
}

pub(super) async fn subscribe(
    plan: &Plan,
    endpoint: &Endpoint,
    source: Option<std::net::Ipv4Addr>,
    connecting: &Semaphore,
    shared: &Shared,
    tally: &mut Tally,
) -> Result<(), LoadError> {
    let conn = {
        let _permit = connecting.acquire().await;
        let mut conn = Connection::open(endpoint.addr, source).await?;
        if plan.kind == Kind::Sse {
            let request = format!(
                "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
                endpoint.path, endpoint.host
            );
            conn.send(request.as_bytes()).await?;
        }
        if plan.kind == Kind::WebSocket {
            // The bare topic URL: slosh's SSE template ends in `.sse`.
            let path = endpoint.path.strip_suffix(".sse").unwrap_or(&endpoint.path);
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
                endpoint.host
            );
            conn.send(request.as_bytes()).await?;
        }
        conn
    };
    match plan.kind {
        Kind::Sse => sse_subscriber(conn, shared, tally).await,
        Kind::WebSocket => idle_socket(conn, shared, tally).await,
        Kind::LongPoll => {
            long_poll_subscriber(conn, plan.style, endpoint, source, shared, tally).await
        }
    }
}

/// A WebSocket that only holds its place: subscribed at the `101`, then
/// reading (and dropping) whatever comes until the run stops it.
async fn idle_socket(
    mut conn: Connection,
    shared: &Shared,
    tally: &mut Tally,
) -> Result<(), LoadError> {
    let head = conn.read_head().await?;
    if head.status != 101 {
        return Err(LoadError::Status(head.status));
    }
    tally.subscribed(shared);
    conn.drain().await
}

async fn sse_subscriber(
    mut conn: Connection,
    shared: &Shared,
    tally: &mut Tally,
) -> Result<(), LoadError> {
    let head = conn.read_head().await?;
    if head.status != 200 {
        return Err(LoadError::Status(head.status));
    }
    let mut decoder = BodyDecoder::new(head.framing);
    let mut parser = sse::Parser::new(crate::load::MAX_EVENT);
    let mut bytes = Vec::with_capacity(4096);
    loop {
        bytes.clear();
        let ended = conn.stream_body(&mut decoder, &mut bytes).await?;
        parser.feed(&bytes, |event| {
            if event.kind == "gap" {
                // slosh's `data: {"missed":K}`: loss the server owned up to.
                let missed = serde_json::from_slice::<serde_json::Value>(&event.data)
                    .ok()
                    .and_then(|v| v.get("missed").and_then(serde_json::Value::as_u64));
                tally.visible_loss += missed.unwrap_or(0);
            } else {
                tally.record(shared, &event.data);
            }
        })?;
        if parser.blocks() > 0 {
            tally.subscribed(shared);
        }
        if tally.ready && tally.done(shared) {
            return Ok(());
        }
        if ended {
            return Err(LoadError::Closed);
        }
    }
}

async fn long_poll_subscriber(
    mut conn: Connection,
    style: CursorStyle,
    endpoint: &Endpoint,
    source: Option<std::net::Ipv4Addr>,
    shared: &Shared,
    tally: &mut Tally,
) -> Result<(), LoadError> {
    // slosh: a fresh topic starts at 0. Nchan: no cache headers asks for
    // the channel's first message.
    let mut cursor = 0u64;
    let mut last_modified: Option<String> = None;
    let mut etag: Option<String> = None;
    let mut failures = 0;
    // Bounded by the run's stop (time); each answer is at least one
    // message or a server-side poll timeout.
    loop {
        let mut request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\n",
            endpoint.with_cursor(cursor),
            endpoint.host
        );
        if style == CursorStyle::Nchan {
            if let Some(value) = &last_modified {
                request.push_str(&format!("If-Modified-Since: {value}\r\n"));
            }
            if let Some(value) = &etag {
                request.push_str(&format!("If-None-Match: {value}\r\n"));
            }
        }
        request.push_str("\r\n");
        conn.send(request.as_bytes()).await?;
        tally.polls += 1;
        tally.subscribed(shared);
        let response = conn.read_response().await?;
        let status = response.head.status;
        match style {
            CursorStyle::Slosh if status == 200 => match batch::json::<Stamp>(&response.body) {
                Ok(batch) => {
                    tally.visible_loss += batch.missed();
                    for stamp in batch.messages {
                        tally.stamp(shared, stamp);
                    }
                    cursor = batch.max;
                }
                Err(_) => tally.errors += 1,
            },
            CursorStyle::Nchan if status == 200 => {
                tally.record(shared, &response.body);
                last_modified = response.head.header("last-modified").map(str::to_string);
                etag = response.head.header("etag").map(str::to_string);
            }
            // Nchan's answers to a long-poll that timed out.
            CursorStyle::Nchan if status == 304 || status == 408 => {}
            _ => {
                tally.errors += 1;
                failures += 1;
                if failures >= MAX_POLL_ERRORS {
                    return Err(LoadError::Status(status));
                }
            }
        }
        if tally.done(shared) {
            return Ok(());
        }
        if response.head.close {
            conn = Connection::open(endpoint.addr, source).await?;
        }
    }
}

pub(super) struct Published {
    pub(super) ok: u64,
    pub(super) errors: u64,
    pub(super) stalled: u64,
    pub(super) first: Option<Instant>,
}

/// Posts the messages: at `rate`, or back-to-back; message `seq` goes to
/// `endpoints[seq mod N]` (one keep-alive connection per node), so on a
/// cluster every node publishes. One at a time either way: each POST is
/// answered before the next is sent, so the store numbers them in seq
/// order whichever node they went through.
pub(super) async fn publisher(
    endpoints: &[Endpoint],
    options: &FanoutOptions,
    shared: &Shared,
    deadline: Instant,
) -> Published {
    let mut published = Published {
        ok: 0,
        errors: 0,
        stalled: 0,
        first: None,
    };
    let heads: Vec<String> = endpoints
        .iter()
        .map(|endpoint| {
            format!(
                "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: ",
                endpoint.path, endpoint.host
            )
        })
        .collect();
    let mut conns: Vec<Option<Connection>> = endpoints.iter().map(|_| None).collect();
    for seq in 0..options.msgs {
        let node = (seq % endpoints.len().max(1) as u64) as usize;
        let (Some(endpoint), Some(head), Some(conn)) =
            (endpoints.get(node), heads.get(node), conns.get_mut(node))
        else {
            break;
        };
        if Instant::now() >= deadline {
            break;
        }
        // The schedule starts at the first publish, not before the
        // publisher's connection is open: M messages at R/s span
        // (M − 1) / R seconds from the first.
        if let (true, Some(first)) = (options.rate > 0.0, published.first) {
            let due = first + Duration::from_secs_f64(seq as f64 / options.rate);
            tokio::time::sleep_until(due.min(deadline).into()).await;
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Connection::open(endpoint.addr, None).await {
                Ok(c) => conn.insert(c),
                Err(_) => {
                    published.errors += 1;
                    continue;
                }
            },
        };
        let now = Instant::now();
        published.first.get_or_insert(now);
        let t = now.duration_since(shared.start).as_nanos() as u64;
        let body = Stamp { t, seq }.body(0);
        let request = format!("{head}{}\r\n\r\n{body}", body.len());
        let answer = match c.send(request.as_bytes()).await {
            Ok(()) => tokio::time::timeout_at(deadline.into(), c.read_response())
                .await
                .unwrap_or(Err(LoadError::Closed)),
            Err(e) => Err(e),
        };
        let accepted = match answer {
            Ok(response) => {
                if response.head.close {
                    *conn = None;
                }
                (200..300).contains(&response.head.status)
            }
            Err(_) => {
                *conn = None;
                false
            }
        };
        if !accepted {
            published.errors += 1;
            continue;
        }
        published.ok += 1;
        if options.rate <= 0.0 {
            let step = deadline.min(Instant::now() + STEP_TIMEOUT);
            let holders = &shared.holders[seq as usize];
            let everyone = shared
                .wait(&shared.progress, step, || {
                    holders.load(Ordering::SeqCst) as usize >= shared.alive.load(Ordering::SeqCst)
                })
                .await;
            published.stalled += u64::from(!everyone);
        }
    }
    published
}
