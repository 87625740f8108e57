//! The tasks that speak to the server during a soak: the publisher, the
//! stayers, the churners, and the subscriptions of each kind they open,
//! every one checking with an [`Order`] that seqs come in order.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use slosh_client::{batch, sse};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::scenario::{lock, Rng, Shared};
use crate::load::http::{BodyDecoder, Connection};
use crate::load::LoadError;

/// Subscriber kinds, as the churn and the stayers use them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `GET /topics/T.json`, parked until a message.
    LongPoll,
    /// `GET /topics/T.sse`.
    Sse,
    /// A WebSocket upgrade on `/topics/T`.
    WebSocket,
}

impl Kind {
    pub(super) const ALL: [Kind; 3] = [Kind::LongPoll, Kind::Sse, Kind::WebSocket];

    /// The name `/metrics` uses.
    pub fn label(self) -> &'static str {
        match self {
            Kind::LongPoll => "longpoll",
            Kind::Sse => "sse",
            Kind::WebSocket => "websocket",
        }
    }
}

/// Seqs seen by one subscriber, checked as they come: only the gaps are
/// kept, so memory does not grow with the run.
#[derive(Debug, Default)]
pub(super) struct Order {
    pub(super) last: Option<u64>,
    pub(super) delivered: u64,
    pub(super) out_of_order: u64,
    /// Ranges of seqs skipped (inclusive), at most [`MAX_GAPS`] of them.
    pub(super) gaps: Vec<(u64, u64)>,
    pub(super) error: Option<String>,
}

/// Gaps remembered per subscriber; past it the run has failed anyway.
const MAX_GAPS: usize = 1000;

impl Order {
    pub(super) fn see(&mut self, seq: u64) {
        self.delivered += 1;
        let expected = self.last.map_or(0, |last| last + 1);
        if self.last.is_some_and(|last| seq <= last) {
            self.out_of_order += 1;
            return;
        }
        if seq > expected && self.gaps.len() < MAX_GAPS {
            self.gaps.push((expected, seq - 1));
        }
        self.last = Some(seq);
    }

    /// Acknowledged seqs (all of `0..=last_acked` except `unacked`) this
    /// subscriber never saw.
    pub(super) fn missing(&self, last_acked: Option<u64>, unacked: &BTreeSet<u64>) -> u64 {
        let Some(last_acked) = last_acked else {
            return 0;
        };
        let mut ranges = self.gaps.clone();
        let seen_to = self.last.map_or(0, |last| last + 1);
        if seen_to <= last_acked {
            ranges.push((seen_to, last_acked));
        }
        ranges
            .iter()
            .map(|&(from, to)| {
                let to = to.min(last_acked);
                if from > to {
                    return 0;
                }
                let refused = unacked.range(from..=to).count() as u64;
                (to - from + 1) - refused
            })
            .sum()
    }
}

/// The seq in a message `{"seq":S}` (also inside a WebSocket frame's
/// `data`).
fn seq_of(value: &serde_json::Value) -> Option<u64> {
    value.get("seq").and_then(serde_json::Value::as_u64)
}

/// What a churning WebSocket publishes (on churn topics only): not a
/// numbered message, and skipped by the order checks.
const CHURNERS_MESSAGE: &str = r#"{"from":"churner"}"#;

fn is_churners(message: &serde_json::Value) -> bool {
    message.get("from").is_some()
}

/// One GET on a fresh connection; the body of a 200.
pub(super) async fn get(shared: &Shared, path: &str) -> Result<Vec<u8>, LoadError> {
    let endpoint = shared.endpoint(path)?;
    let mut conn = Connection::open(endpoint.addr, None).await?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        endpoint.path, endpoint.host
    );
    conn.send(request.as_bytes()).await?;
    let response = conn.read_response().await?;
    if response.head.status != 200 {
        return Err(LoadError::Status(response.head.status));
    }
    Ok(response.body)
}

/// Publishes `{"seq":S}` to the stayers' topic and to one churn topic at
/// `rate`, until stopped.
pub(super) async fn publisher(shared: Arc<Shared>, rate: f64, mut stopped: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stable: Option<Connection> = None;
    let mut churn: Option<Connection> = None;
    while !*stopped.borrow() {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped.changed() => break,
        }
        let seq = shared.next_seq.fetch_add(1, Ordering::Relaxed);
        let body = format!(r#"{{"seq":{seq}}}"#);
        let stable_topic = shared.stable.clone();
        match post(&shared, &mut stable, &stable_topic, &body).await {
            Ok(()) => {
                shared.published.fetch_add(1, Ordering::Relaxed);
                *lock(&shared.last_acked) = Some(seq);
            }
            Err(_) => {
                lock(&shared.unacked).insert(seq);
                stable = None;
            }
        }
        let Some(topic) = shared
            .churn_topics
            .get(seq as usize % shared.churn_topics.len())
        else {
            continue;
        };
        let topic = topic.clone();
        if post(&shared, &mut churn, &topic, &body).await.is_err() {
            churn = None;
        }
    }
}

/// One POST over a kept-alive connection (opened when `conn` is `None`).
async fn post(
    shared: &Shared,
    conn: &mut Option<Connection>,
    topic: &str,
    body: &str,
) -> Result<(), LoadError> {
    let endpoint = shared.endpoint(&format!("/topics/{topic}"))?;
    if conn.is_none() {
        *conn = Some(Connection::open(endpoint.addr, None).await?);
    }
    let Some(open) = conn.as_mut() else {
        return Err(LoadError::Closed);
    };
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        endpoint.path,
        endpoint.host,
        body.len()
    );
    open.send(request.as_bytes()).await?;
    let response = open.read_response().await?;
    if response.head.close {
        *conn = None;
    }
    if response.head.status != 200 {
        return Err(LoadError::Status(response.head.status));
    }
    Ok(())
}

/// A subscriber connected for the whole run; records every seq into
/// `order` until aborted.
pub(super) async fn stayer(shared: Arc<Shared>, kind: Kind, order: Arc<Mutex<Order>>) {
    let topic = shared.stable.clone();
    let result = match kind {
        Kind::LongPoll => {
            long_poll(&shared, &topic, Some(0), None, |seq| lock(&order).see(seq)).await
        }
        Kind::Sse => sse(&shared, &topic, "?n=0", None, |seq| lock(&order).see(seq)).await,
        Kind::WebSocket => {
            websocket(&shared, &topic, "?n=0", None, false, |seq| {
                lock(&order).see(seq)
            })
            .await
        }
    };
    let error = match result {
        Ok(()) => "the server ended the subscription".to_string(),
        Err(error) => error.to_string(),
    };
    lock(&order).error = Some(error);
}

/// Connects and drops subscribers until stopped.
pub(super) async fn churner(
    shared: Arc<Shared>,
    mut rng: Rng,
    hold_max: Duration,
    stopped: watch::Receiver<bool>,
) {
    while !*stopped.borrow() {
        let kind = match rng.below(3) {
            0 => Kind::LongPoll,
            1 => Kind::Sse,
            _ => Kind::WebSocket,
        };
        let topic = if rng.below(4) == 0 {
            shared.stable.clone()
        } else {
            let k = rng.below(shared.churn_topics.len() as u64) as usize;
            shared.churn_topics.get(k).cloned().unwrap_or_default()
        };
        let hold = hold_max.mul_f64(rng.below(1000) as f64 / 1000.0);
        let until = Instant::now() + hold;
        let mut order = Order::default();
        let see = |seq| order.see(seq);
        // Each subscription ends by the hold time running out: that drop
        // is the churn. Anything that ends it earlier is a failure.
        let ended = match kind {
            // New clients: from the topic's newest message on (a resume
            // further back could legitimately find it left the buffer).
            Kind::LongPoll => long_poll(&shared, &topic, None, Some(until), see).await,
            Kind::Sse => sse(&shared, &topic, "", Some(until), see).await,
            Kind::WebSocket => {
                // Never on the stayers' topic, which holds numbered
                // messages only.
                let publish = rng.below(4) == 0 && topic != shared.stable;
                websocket(&shared, &topic, "", Some(until), publish, see).await
            }
        };
        if let Some(slot) = shared.churned.get(kind_index(kind)) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
        shared
            .churn_out_of_order
            .fetch_add(order.out_of_order, Ordering::Relaxed);
        match ended {
            Err(LoadError::Io(error)) if error.kind() == std::io::ErrorKind::TimedOut => {}
            Ok(()) => {}
            Err(error) => shared.churn_error(format!("{} on {topic}: {error}", kind.label())),
        }
    }
}

fn kind_index(kind: Kind) -> usize {
    match kind {
        Kind::LongPoll => 0,
        Kind::Sse => 1,
        Kind::WebSocket => 2,
    }
}

/// The error a subscription returns when its hold time ran out: the
/// planned end of a churned subscriber.
fn held() -> LoadError {
    LoadError::Io(std::io::ErrorKind::TimedOut.into())
}

/// Runs `future` until `until` (never, for `None`); past it, [`held`].
async fn within<T>(
    until: Option<Instant>,
    future: impl std::future::Future<Output = Result<T, LoadError>>,
) -> Result<T, LoadError> {
    match until {
        None => future.await,
        Some(until) => tokio::time::timeout_at(until.into(), future)
            .await
            .unwrap_or_else(|_| Err(held())),
    }
}

/// Long-polls `topic` from `cursor` (or as a new client, which the server
/// gives a session) until `until`, calling `see` for every seq.
async fn long_poll(
    shared: &Shared,
    topic: &str,
    mut cursor: Option<u64>,
    until: Option<Instant>,
    mut see: impl FnMut(u64),
) -> Result<(), LoadError> {
    let endpoint = shared.endpoint(&format!("/topics/{topic}.json"))?;
    let mut conn = within(until, Connection::open(endpoint.addr, None)).await?;
    loop {
        // Without a cursor the server starts a session at `max` (and sets
        // a cookie this client drops): a new client. After its first
        // answer it goes on by cursor.
        let path = match cursor {
            Some(n) => format!("{}?n={n}", endpoint.path),
            None => endpoint.path.clone(),
        };
        let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", endpoint.host);
        within(until, conn.send(request.as_bytes())).await?;
        let response = within(until, conn.read_response()).await?;
        if response.head.status != 200 {
            return Err(LoadError::Status(response.head.status));
        }
        let batch = batch::json::<serde_json::Value>(&response.body)
            .map_err(|e| LoadError::Protocol(format!("long-poll answer: {e}")))?;
        if batch.missed() > 0 {
            return Err(LoadError::Protocol(format!(
                "{} messages fell out of the buffer",
                batch.missed()
            )));
        }
        for message in &batch.messages {
            match seq_of(message) {
                Some(seq) => see(seq),
                None if is_churners(message) => {}
                None => return Err(LoadError::Protocol(format!("message {message}"))),
            }
        }
        cursor = Some(batch.max);
        if response.head.close {
            conn = within(until, Connection::open(endpoint.addr, None)).await?;
        }
    }
}

/// Reads `topic`'s SSE stream (with `query`) until `until`, calling `see`
/// for every seq.
async fn sse(
    shared: &Shared,
    topic: &str,
    query: &str,
    until: Option<Instant>,
    mut see: impl FnMut(u64),
) -> Result<(), LoadError> {
    let endpoint = shared.endpoint(&format!("/topics/{topic}.sse{query}"))?;
    let mut conn = within(until, Connection::open(endpoint.addr, None)).await?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\n\r\n",
        endpoint.path, endpoint.host
    );
    within(until, conn.send(request.as_bytes())).await?;
    let head = within(until, conn.read_head()).await?;
    if head.status != 200 {
        return Err(LoadError::Status(head.status));
    }
    let mut decoder = BodyDecoder::new(head.framing);
    let mut parser = sse::Parser::new(crate::load::MAX_EVENT);
    let mut bytes = Vec::with_capacity(4096);
    loop {
        bytes.clear();
        let ended = within(until, conn.stream_body(&mut decoder, &mut bytes)).await?;
        let mut bad = None;
        parser.feed(&bytes, |event| {
            if event.kind == "gap" {
                bad = Some("a gap event".to_string());
                return;
            }
            let message =
                serde_json::from_slice::<serde_json::Value>(&event.data).unwrap_or_default();
            match seq_of(&message) {
                Some(seq) => see(seq),
                None if is_churners(&message) => {}
                None => bad = Some(format!("event {message}")),
            }
        })?;
        if let Some(bad) = bad {
            return Err(LoadError::Protocol(bad));
        }
        if ended {
            return Ok(());
        }
    }
}

/// Reads `topic`'s WebSocket (with `query`) until `until`, calling `see`
/// for every seq; publishes one frame first when `publish`. At the end it
/// either sends a close frame or just drops the connection, alternately.
async fn websocket(
    shared: &Shared,
    topic: &str,
    query: &str,
    until: Option<Instant>,
    publish: bool,
    mut see: impl FnMut(u64),
) -> Result<(), LoadError> {
    let endpoint = shared.endpoint(&format!("/topics/{topic}{query}"))?;
    let url = format!("ws://{}{}", endpoint.host, endpoint.path);
    let request = url
        .into_client_request()
        .map_err(|e| LoadError::Protocol(e.to_string()))?;
    let tcp = within(until, async {
        TcpStream::connect(endpoint.addr)
            .await
            .map_err(LoadError::from)
    })
    .await?;
    let (mut ws, _) = within(until, async {
        tokio_tungstenite::client_async(request, tcp)
            .await
            .map_err(|e| LoadError::Protocol(format!("WebSocket handshake: {e}")))
    })
    .await?;
    if publish {
        within(until, async {
            ws.send(Message::text(CHURNERS_MESSAGE))
                .await
                .map_err(|e| LoadError::Protocol(e.to_string()))
        })
        .await?;
    }
    let polite = publish;
    let read = async {
        while let Some(message) = ws.next().await {
            match message.map_err(|e| LoadError::Protocol(e.to_string()))? {
                Message::Text(text) => {
                    let frame: serde_json::Value = serde_json::from_str(text.as_str())
                        .map_err(|e| LoadError::Protocol(format!("frame: {e}")))?;
                    if frame.get("error").is_some() || frame.get("missed").is_some() {
                        return Err(LoadError::Protocol(format!("frame {frame}")));
                    }
                    if let Some(seq) = seq_of(&frame["data"]) {
                        see(seq);
                    } else if !is_churners(&frame["data"]) {
                        return Err(LoadError::Protocol(format!("frame {frame}")));
                    }
                }
                Message::Close(_) => return Ok(()),
                _ => {}
            }
        }
        Ok(())
    };
    let result = within(until, read).await;
    if polite && matches!(&result, Err(LoadError::Io(_))) {
        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    }
    result
}
