//! Publish decoding: any body under any of the content types (and some
//! that are refused), POSTed through `Hub::handle`, then read back.
//!
//! Holds: a refused body stores nothing; an accepted one is stored as one
//! line of valid JSON that means what was sent (a text body is that string,
//! a JSON body the same value, a form body an object of string arrays), and
//! a WebSocket text frame decodes exactly as a JSON POST does.

#![no_main]

use std::time::Instant;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use slosh_core::{Hub, Outcome, Request, Response};

#[derive(Arbitrary, Debug)]
struct Input {
    kind: Kind,
    body: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
enum Kind {
    Json,
    JsonWithCharset,
    Form,
    Text,
    Missing,
    Other(String),
}

impl Kind {
    fn header(&self) -> Option<&str> {
        match self {
            Kind::Json => Some("application/json"),
            Kind::JsonWithCharset => Some("Application/JSON; charset=utf-8"),
            Kind::Form => Some("application/x-www-form-urlencoded"),
            Kind::Text => Some("text/plain"),
            Kind::Missing => None,
            Kind::Other(other) => Some(other),
        }
    }
}

const LIMIT: usize = 1024;

fn respond(hub: &Hub, request: Request<'_>) -> Response {
    match hub.handle(request, Instant::now()) {
        Outcome::Respond(response) => response,
        other => panic!("{other:?}"),
    }
}

/// The one message stored on `topic`, as the text the long-poll answer
/// carries (cut out of the batch, so messages no tree holds still count).
fn stored(hub: &Hub, topic: &str) -> String {
    let target = format!("/topics/{topic}.sse?n=0");
    let mut stream = match hub.handle(Request::new("GET", &target), Instant::now()) {
        Outcome::Stream(stream) => stream,
        other => panic!("{other:?}"),
    };
    let chunks = match stream.poll(Instant::now()) {
        slosh_core::StreamStep::Send(chunks) => chunks.to_vec(),
        other => panic!("{other:?}"),
    };
    let text = String::from_utf8(chunks).expect("SSE is UTF-8");
    let event = text
        .strip_prefix("retry: 3000\n\nid: 1@aaaaaaaa\ndata: ")
        .and_then(|rest| rest.strip_suffix("\n\n"))
        .unwrap_or_else(|| panic!("one event: {text:?}"));
    assert!(!event.contains(['\n', '\r']), "one line: {event:?}");
    event.to_string()
}

fuzz_target!(|input: Input| {
    let hub = Hub::builder()
        .max_message(LIMIT)
        .epochs(|| slosh_core::Epoch::from_bits(0))
        .build();
    let mut request = Request::new("POST", "/topics/t").with_body(input.body.clone());
    if let Some(content_type) = input.kind.header() {
        request.header("Content-Type", content_type);
    }
    let response = respond(&hub, request);
    let media_type = input
        .kind
        .header()
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let kind = match media_type.as_str() {
        "" | "application/x-www-form-urlencoded" => "form",
        "application/json" => "json",
        "text/plain" => "text",
        _ => "refused",
    };
    if response.status != 200 {
        assert!(matches!(response.status, 400 | 413 | 415), "{response:?}");
        assert_eq!(hub.topic_count(), 0, "a refused publish stored something");
        // The size is judged first, then the type.
        if input.body.len() > LIMIT {
            assert_eq!(response.status, 413);
        } else if kind == "refused" {
            assert_eq!(response.status, 415);
        }
        // JSON's and text's refusals are the only 400s besides emptiness.
        if response.status == 400 && !input.body.is_empty() {
            assert!(kind == "json" || kind == "text", "{kind}: {response:?}");
        }
        return;
    }
    assert!(kind != "refused" && !input.body.is_empty() && input.body.len() <= LIMIT);
    let message = stored(&hub, "t");
    serde_json::from_str::<serde::de::IgnoredAny>(&message).expect("stored JSON is valid");
    let sent_value = serde_json::from_slice::<Value>(&input.body).ok();
    let stored_value = serde_json::from_str::<Value>(&message).ok();
    match kind {
        "text" => {
            let text = std::str::from_utf8(&input.body).expect("accepted text is UTF-8");
            assert_eq!(stored_value, Some(Value::String(text.to_string())));
        }
        "json" => {
            // Stored as sent, only compacted.
            assert!(message.len() <= input.body.len());
            if sent_value.is_some() {
                assert_eq!(stored_value, sent_value);
            }
            check_socket_agrees(&input.body, &message);
        }
        _ => {
            let first = input
                .body
                .iter()
                .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
            let as_json = matches!(first, Some(b'{' | b'['))
                && serde_json::from_slice::<serde::de::IgnoredAny>(&input.body).is_ok()
                && std::str::from_utf8(&input.body).is_ok();
            if as_json {
                if sent_value.is_some() {
                    assert_eq!(stored_value, sent_value);
                }
            } else {
                let Some(Value::Object(fields)) = stored_value else {
                    panic!("form data is an object: {message}");
                };
                let pieces = input
                    .body
                    .split(|&b| b == b'&')
                    .filter(|p| !p.is_empty())
                    .count();
                let values: usize = fields
                    .values()
                    .map(|v| {
                        let items = v.as_array().expect("each field is an array");
                        assert!(items.iter().all(Value::is_string));
                        items.len()
                    })
                    .sum();
                assert_eq!(values, pieces, "every piece is one value");
            }
        }
    }
});

/// A text frame on a WebSocket decodes as a JSON POST does.
fn check_socket_agrees(body: &[u8], posted: &str) {
    let Ok(text) = std::str::from_utf8(body) else {
        return;
    };
    let hub = Hub::builder()
        .max_message(LIMIT)
        .epochs(|| slosh_core::Epoch::from_bits(0))
        .build();
    let request = Request::new("GET", "/topics/w")
        .with_header("Upgrade", "websocket")
        .with_header("Connection", "Upgrade")
        .with_header("Sec-WebSocket-Version", "13")
        .with_header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    let mut socket = match hub.handle(request, Instant::now()) {
        Outcome::Socket(socket) => socket,
        other => panic!("{other:?}"),
    };
    assert_eq!(socket.receive_text_here(text, Instant::now()), None);
    assert_eq!(stored(&hub, "w"), posted);
}
