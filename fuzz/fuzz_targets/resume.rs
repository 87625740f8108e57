//! Resume points: any `Last-Event-ID` header and any query string on an
//! SSE request, any query on a WebSocket upgrade and a long-poll, against
//! a topic holding some messages in a small buffer.
//!
//! Holds, against a model written here from the spec: a resume point is a
//! plain decimal u64, optionally `@` and an epoch, or the request is `400`;
//! `Last-Event-ID` wins over `n`; `n` given twice is `400`; what is then
//! sent is exactly the buffered messages after the resume point (all of
//! them when the point is above `max`), preceded by a gap of the right size
//! when some fell out; a point from another epoch is a reset (`"reset":true`,
//! a `{"missed":null}` gap, then everything buffered).

#![no_main]

use std::time::Instant;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use slosh_core::{Epoch, Hub, Outcome, Request, Resume, SocketStep, StreamStep};

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
    /// `N@EPOCH`: the topic's epoch when `true`, another one when not.
    Tagged(u64, bool),
    Text(String),
}

/// The epoch every topic of the fuzzed hub gets.
const EPOCH: &str = "aaaaaaaa";

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
            Id::Tagged(n, true) => format!("{n}@{EPOCH}"),
            Id::Tagged(n, false) => format!("{n}@zzzzzzzz"),
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

/// The spec's cursor: a plain decimal u64, no sign, padding or leading
/// zero, optionally `@` and 8 characters of the epoch alphabet: `(n,
/// reset, confirmed)`, `(0, true, false)` for a point from another epoch
/// (a reset, read as 0), `confirmed` when it names the topic's epoch (a
/// point above `max` is then waited for, not read as 0).
fn model_cursor(text: &str) -> Option<Point> {
    let (number, reset) = match text.split_once('@') {
        Some((number, epoch)) => {
            let valid = epoch.len() == 8
                && epoch
                    .bytes()
                    .all(|b| b"abcdefghijkmnpqrstuvwxyz23456789".contains(&b));
            if !valid {
                return None;
            }
            (number, epoch != EPOCH)
        }
        None => (text, false),
    };
    let plain = !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
        && (number == "0" || !number.starts_with('0'));
    let n: u64 = plain.then(|| number.parse().ok()).flatten()?;
    let confirmed = text.contains('@') && !reset;
    Some(if reset {
        (0, true, false)
    } else {
        (n, false, confirmed)
    })
}

/// A resume point as the model reads it: the cursor, whether it is a
/// reset, whether it named the topic's epoch.
type Point = (u64, bool, bool);

/// `Ok(None)` for no `n`, `Err(())` for a request that must be `400`.
fn model_n(query: Option<&str>) -> Result<Option<Point>, ()> {
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

/// What a feed resuming at `resume` first hands over: the missed count
/// (`None`: unknown, a reset) and the ids, with `max` published and the
/// last `queue` kept.
fn model_delivery(resume: Option<Point>, max: u64, queue: u64) -> (Option<u64>, Vec<u64>) {
    let Some((resume, reset, confirmed)) = resume else {
        return (Some(0), Vec::new());
    };
    if confirmed && resume > max {
        return (Some(0), Vec::new());
    }
    if reset {
        let first_kept = max.saturating_sub(queue) + 1;
        return (None, (first_kept..=max).collect());
    }
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
    (Some(missed), ids)
}

fuzz_target!(|input: Input| {
    // The cursor parser alone: whatever it accepts it would have written.
    if let Some(id) = &input.last_event_id {
        let text = id.render();
        match Resume::parse(&text) {
            Ok(resume) => {
                let written = match resume.epoch {
                    Some(epoch) => format!("{}@{epoch}", resume.cursor),
                    None => resume.cursor.to_string(),
                };
                assert_eq!(written, text);
            }
            Err(_) => assert_eq!(model_cursor(&text), None, "{text:?}"),
        }
    }

    let queue = u64::from(input.queue % 8) + 1;
    let published = u64::from(input.published % 24);
    let hub = Hub::builder()
        .queue(queue as usize)
        .epochs(|| Epoch::parse(EPOCH).unwrap_or(Epoch::from_bits(0)))
        .build();
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
            match missed {
                None => want.push_str("event: gap\ndata: {\"missed\":null}\n\n"),
                Some(0) => {}
                Some(missed) => {
                    want.push_str(&format!("event: gap\ndata: {{\"missed\":{missed}}}\n\n"))
                }
            }
            for id in &ids {
                want.push_str(&format!("id: {id}@{EPOCH}\ndata: {}\n\n", id - 1));
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
            if let Some(missed @ 1..) = missed {
                want.push(format!("{{\"missed\":{missed}}}"));
            }
            for id in &ids {
                want.push(format!(
                    "{{\"id\":{id},\"epoch\":\"{EPOCH}\",\"data\":{}}}",
                    id - 1
                ));
            }
            if missed.is_none() {
                // A reset is said in a frame of its own, at once.
                match socket.poll(now) {
                    SocketStep::Send(frames) => {
                        let got: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
                        assert_eq!(got, [&br#"{"missed":null}"#[..]]);
                    }
                    other => panic!("{other:?}"),
                }
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
        (Outcome::Respond(response), Ok(Some((resume, reset, confirmed)))) => {
            assert!(
                !(confirmed && resume > max),
                "answered a point not reached yet"
            );
            let (_, ids) = model_delivery(Some((resume, reset, confirmed)), max, queue);
            let from = if resume > max { 0 } else { resume };
            let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
            assert_eq!(body["max"], max);
            assert_eq!(body["epoch"], EPOCH);
            assert_eq!(body.get("reset").is_some(), reset);
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
