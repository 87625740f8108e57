//! The XML encoder: any JSON (a tree the fuzzer builds, or raw text a
//! publisher POSTs, including text no tree holds such as `1e999`) becomes
//! a long-poll answer that quick-xml parses from start to end, with no
//! character XML 1.0 forbids and with one `<res>` holding one `<p>` per
//! message.

#![no_main]

use std::time::Instant;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use quick_xml::events::Event;
use quick_xml::XmlVersion;
use serde_json::{Map, Number, Value};
use slosh_core::{Batch, Hub, Json, Message, Outcome, Request};

#[derive(Debug)]
struct Tree(Value);

/// Builds JSON with keys and strings drawn towards what the encoder treats
/// specially (`@`, `#text`, `:`, controls, U+FFFE) as often as at random.
fn value(u: &mut Unstructured<'_>, depth: u32) -> arbitrary::Result<Value> {
    let choice = if depth > 5 {
        u.int_in_range(0..=3)?
    } else {
        u.int_in_range(0..=5)?
    };
    Ok(match choice {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => {
            let f: f64 = u.arbitrary()?;
            Number::from_f64(f).map_or_else(
                || Value::from(u64::arbitrary(u).unwrap_or(0)),
                Value::Number,
            )
        }
        3 => Value::String(text(u)?),
        4 => {
            let len = u.int_in_range(0..=4)?;
            Value::Array(
                (0..len)
                    .map(|_| value(u, depth + 1))
                    .collect::<Result<_, _>>()?,
            )
        }
        _ => {
            let len = u.int_in_range(0..=4)?;
            let mut map = Map::new();
            for _ in 0..len {
                map.insert(key(u)?, value(u, depth + 1)?);
            }
            Value::Object(map)
        }
    })
}

fn key(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    const KEYS: [&str; 14] = [
        "a", "@id", "#text", "@", "#", "a:b", "@a:b", "@xmlns", "xmlns", "1a", "-", "é", "@name",
        "item",
    ];
    if u.arbitrary()? {
        Ok(KEYS[u.choose_index(KEYS.len())?].to_string())
    } else {
        let prefix = if u.arbitrary()? { "@" } else { "" };
        Ok(format!("{prefix}{}", text(u)?))
    }
}

fn text(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    const ODD: [&str; 10] = [
        "\u{0}",
        "\r",
        "\n",
        "\t",
        "\u{FFFE}",
        "\u{FFFF}",
        "]]>",
        "&amp;",
        "\"'<>",
        "\u{EFFFF}",
    ];
    let mut out = String::new();
    for _ in 0..u.int_in_range(0..=4)? {
        if u.arbitrary()? {
            out.push_str(ODD[u.choose_index(ODD.len())?]);
        } else {
            out.push_str(u.arbitrary()?);
        }
    }
    Ok(out)
}

impl<'a> Arbitrary<'a> for Tree {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Tree> {
        value(u, 0).map(Tree)
    }
}

#[derive(Arbitrary, Debug)]
enum Input {
    Tree(Tree),
    Raw(String),
}

/// Every character XML 1.0 allows (its `Char` production).
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

fn check(xml: &str, messages: usize) {
    assert!(
        xml.chars().all(is_xml_char),
        "a forbidden character: {xml:?}"
    );
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut depth = 0usize;
    let mut roots = 0;
    let mut paragraphs = 0;
    loop {
        let event = reader
            .read_event()
            .unwrap_or_else(|error| panic!("{error}: {xml:?}"));
        let empty = matches!(event, Event::Empty(_));
        match event {
            Event::Eof => break,
            Event::Start(start) | Event::Empty(start) => {
                let name = start.name();
                let name: &str = name.as_ref();
                assert!(!name.contains(':'), "a prefixed name: {name}");
                if depth == 0 {
                    roots += 1;
                    assert_eq!(name, "res");
                } else if depth == 1 {
                    paragraphs += 1;
                    assert_eq!(name, "p");
                }
                let mut seen = Vec::new();
                for attribute in start.attributes() {
                    let attribute = attribute.unwrap_or_else(|e| panic!("{e}: {xml:?}"));
                    let key: &str = attribute.key.as_ref();
                    let key = key.to_string();
                    assert!(!seen.contains(&key), "a repeated attribute: {xml:?}");
                    assert!(!key.contains(':'), "a prefixed attribute: {xml:?}");
                    attribute
                        .normalized_value(XmlVersion::Explicit1_0)
                        .unwrap_or_else(|e| panic!("{e}: {xml:?}"));
                    seen.push(key);
                }
                if !empty {
                    depth += 1;
                }
            }
            Event::End(_) => depth -= 1,
            Event::Text(_) => {}
            Event::GeneralRef(reference) => {
                let name: &str = &reference;
                assert!(
                    matches!(name, "amp" | "lt" | "gt" | "quot" | "apos")
                        || reference.resolve_char_ref().ok().flatten().is_some(),
                    "an unknown entity {name}: {xml:?}"
                );
            }
            Event::Decl(_) => assert_eq!(depth, 0),
            other => panic!("unexpected {other:?} in {xml:?}"),
        }
    }
    assert_eq!((roots, depth, paragraphs), (1, 0, messages), "{xml:?}");
}

fuzz_target!(|input: Input| {
    match input {
        Input::Tree(Tree(value)) => {
            let Ok(json) = Json::to_json(&value) else {
                return;
            };
            let len = json.len() as u64;
            let epoch = slosh_core::Epoch::from_bits(0);
            let batch = Batch {
                max: 1,
                epoch,
                reset: false,
                saw: 1,
                messages: vec![Message::new(1, epoch, json, len)],
            };
            check(&batch.to_xml(), 1);
        }
        Input::Raw(text) => {
            let hub = Hub::builder().build();
            let now = Instant::now();
            let request = Request::new("POST", "/topics/t")
                .with_header("Content-Type", "application/json")
                .with_body(text.into_bytes());
            let Some(response) = hub.handle(request, now).into_response() else {
                panic!("a POST answers at once");
            };
            if response.status != 200 {
                return;
            }
            let Outcome::Respond(answer) =
                hub.handle(Request::new("GET", "/topics/t.xml?n=0"), now)
            else {
                panic!("a buffered message is answered at once");
            };
            check(std::str::from_utf8(&answer.body).expect("UTF-8"), 1);
        }
    }
});
