//! Resume points: any `Last-Event-ID` header and any query string on an
//! SSE request, any query on a WebSocket upgrade and a long-poll, against
//! a topic holding some messages in a small buffer.
//!
//! Holds, against a model written here from the spec: a resume point is a
//! plain decimal u64 or the request is `400`; `Last-Event-ID` wins over
//! `n`; `n` given twice is `400`; what is then sent is exactly the buffered
//! messages after the resume point (all of them when the point is above
//! `max`), preceded by a gap of the right size when some fell out.

#![no_main]

use std::time::Instant;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use slosh_core::{Cursor, Hub, Outcome, Request, SocketStep, StreamStep};

#[derive(Arbitrary, Debug)]
struct Input {
    last_event_id: Option<Id>,
    query: Option<Query>,
    published: u8,
    queue: u8,
}

/// Mostly near-numbers, so that the model is tested where it matters.
#[derive(Arbitrary, Debug)]
enum Id {
    Number(u64),
    Padded(u8, u64),
    Text(String),
}

#[derive(Arbitrary, Debug)]
enum Query {
    N(Id),
    Pairs(Vec<(String, Id)>),
    Raw(String),
}

impl Id {
    fn render(&self) -> String {
        match self {
            Id::Number(n) => n.to_string(),
            Id::Padded(how, n) => match how % 6 {
                0 => format!(" {n}"),
                1 => format!("{n} "),
                2 => format!("0{n}"),
                3 => format!("+{n}"),
                4 => format!("{n}\t"),
                _ => format!("{n}0"),
            },
            Id::Text(text) => text.clone(),
        }
    }
}

impl Query {
    fn render(&self) -> String {
        match self {
            Query::N(id) => format!("n={}", id.render()),
            Query::Pairs(pairs) => pairs
                .iter()
                .take(4)
                .map(|(key, id)| format!("{key}={}", id.render()))
                .collect::<Vec<_>>()
                .join("&"),
            Query::Raw(raw) => raw.clone(),
        }
    }
}

/// The spec's cursor: a plain decimal u64, no sign, padding or leading zero.
fn model_cursor(text: &str) -> Option<u64> {
    let plain = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    plain.then(|| text.parse().ok()).flatten()
}

/// `Ok(None)` for no `n`, `Err(())` for a request that must be `400`.
fn model_n(query: Option<&str>) -> Result<Option<u64>, ()> {
    let mut found = None;
    for pair in query.unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "n" {
            if found.is_some() {
                return Err(());
            }
            found = Some(model_cursor(value).ok_or(())?);
        }
    }
    Ok(found)
}

/// What a feed resuming at `resume` first hands over: the missed count and
/// the ids, with `max` published and the last `queue` kept.
fn model_delivery(resume: Option<u64>, max: u64, queue: u64) -> (u64, Vec<u64>) {
    let Some(resume) = resume else {
        return (0, Vec::new());
    };
    let from = if resume > max { 0 } else { resume };
    let first_kept = max.saturating_sub(queue) + 1;
    let first = (from + 1).max(first_kept);
    let ids: Vec<u64> = (first..=max).collect();
    let saw = max - from;
    let missed = if ids.is_empty() {
        0
    } else {
        saw - ids.len() as u64
    };
    (missed, ids)
}

fuzz_target!(|input: Input| {
    // The cursor parser alone: whatever it accepts it would have written.
    if let Some(id) = &input.last_event_id {
        let text = id.render();
        match Cursor::parse(&text) {
            Ok(cursor) => assert_eq!(cursor.to_string(), text),
            Err(_) => assert_eq!(model_cursor(&text), None, "{text:?}"),
        }
    }

    let queue = u64::from(input.queue % 8) + 1;
    let published = u64::from(input.published % 24);
    let hub = Hub::builder().queue(queue as usize).build();
    for i in 0..published {
        hub.publish("t", &i).expect("publish");
    }
    let max = published;
    let query = input.query.as_ref().map(Query::render);
    let last_event_id = input.last_event_id.as_ref().map(Id::render);
    let now = Instant::now();

    // SSE: Last-Event-ID (trimmed, as headers are) wins over n.
    let target = match &query {
        Some(query) => format!("/topics/t.sse?{query}"),
        None => "/topics/t.sse".to_string(),
    };
    let mut request = Request::new("GET", &target);
    if let Some(id) = &last_event_id {
        request.header("Last-Event-ID", id);
    }
    let expected = match &last_event_id {
        Some(id) => model_cursor(id.trim()).map(Some).ok_or(()),
        None => model_n(query.as_deref()),
    };
    match (hub.handle(request, now), expected) {
        (Outcome::Respond(response), Err(())) => assert_eq!(response.status, 400),
        (Outcome::Stream(mut stream), Ok(resume)) => {
            let (missed, ids) = model_delivery(resume, max, queue);
            let mut want = String::from("retry: 3000\n\n");
            if missed > 0 {
                want.push_str(&format!("event: gap\ndata: {{\"missed\":{missed}}}\n\n"));
            }
            for id in &ids {
                want.push_str(&format!("id: {id}\ndata: {}\n\n", id - 1));
            }
            match stream.poll(now) {
                StreamStep::Send(chunks) => {
                    assert_eq!(String::from_utf8(chunks.to_vec()).unwrap(), want)
                }
                other => panic!("{other:?}"),
            }
            assert!(matches!(stream.poll(now), StreamStep::Wait(..)));
        }
        (outcome, expected) => panic!("{outcome:?} where {expected:?} was due"),
    }

    // WebSocket: n only; Last-Event-ID is not a WebSocket's.
    let target = match &query {
        Some(query) => format!("/topics/t?{query}"),
        None => "/topics/t".to_string(),
    };
    let mut request = Request::new("GET", &target)
        .with_header("Upgrade", "websocket")
        .with_header("Connection", "Upgrade")
        .with_header("Sec-WebSocket-Version", "13")
        .with_header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    if let Some(id) = &last_event_id {
        request.header("Last-Event-ID", id);
    }
    let expected = model_n(query.as_deref());
    match (hub.handle(request, now), expected) {
        (Outcome::Respond(response), Err(())) => assert_eq!(response.status, 400),
        (Outcome::Socket(mut socket), Ok(resume)) => {
            let (missed, ids) = model_delivery(resume, max, queue);
            let mut want = Vec::new();
            if missed > 0 {
                want.push(format!("{{\"missed\":{missed}}}"));
            }
            for id in &ids {
                want.push(format!("{{\"id\":{id},\"data\":{}}}", id - 1));
            }
            match socket.poll(now) {
                SocketStep::Send(frames) => {
                    let got: Vec<String> = frames
                        .iter()
                        .map(|f| String::from_utf8(f.to_vec()).unwrap())
                        .collect();
                    assert_eq!(got, want);
                }
                SocketStep::Wait(..) => assert!(want.is_empty()),
                other => panic!("{other:?}"),
            }
        }
        (outcome, expected) => panic!("{outcome:?} where {expected:?} was due"),
    }

    // Long-poll: the same n, and saw/delivering as the model says.
    let target = match &query {
        Some(query) => format!("/topics/t.json?{query}"),
        None => "/topics/t.json".to_string(),
    };
    match (
        hub.handle(Request::new("GET", &target), now),
        model_n(query.as_deref()),
    ) {
        (Outcome::Respond(response), Err(())) => assert_eq!(response.status, 400),
        (Outcome::Respond(response), Ok(Some(resume))) => {
            let (_, ids) = model_delivery(Some(resume), max, queue);
            let from = if resume > max { 0 } else { resume };
            let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
            assert_eq!(body["max"], max);
            assert_eq!(body["saw"], max - from);
            assert_eq!(body["delivering"], ids.len());
        }
        // Nothing newer: parked. No n: a new session at max, parked too.
        (Outcome::Park(_), Ok(resume)) => {
            let (_, ids) = model_delivery(resume, max, queue);
            assert!(ids.is_empty());
        }
        (outcome, expected) => panic!("{outcome:?} where {expected:?} was due"),
    }
});
