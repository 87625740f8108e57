//! A stream of several topics delivers, for each topic, exactly what a
//! stream of that topic alone delivers: the same messages with the same
//! ids, the same gaps, across reconnects (a property test against N single
//! streams driven side by side, with injected time).

use std::time::Instant;

use proptest::prelude::*;
use serde_json::Value;
use slosh_core::{Epoch, EventStream, Hub, Outcome, Request, Settings, StreamStep};

const TOPICS: [&str; 3] = ["t0", "t1", "t2"];

#[derive(Debug, Clone)]
enum Op {
    /// Publish a value to topic `i`.
    Publish(usize, u8),
    /// Poll every stream until it waits.
    Read,
    /// Drop every stream and open it again where its client was.
    Reconnect,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..TOPICS.len(), any::<u8>()).prop_map(|(i, v)| Op::Publish(i, v)),
        2 => Just(Op::Read),
        1 => Just(Op::Reconnect),
    ]
}

/// What a client saw of one topic: messages (`N`, data) and gaps (missed).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Message(u64, String),
    Gap(Option<u64>),
}

fn open(hub: &Hub, target: &str, last: Option<&str>, now: Instant) -> EventStream {
    let mut request = Request::new("GET", target);
    if let Some(last) = last {
        request.header("Last-Event-ID", last);
    }
    match hub.handle(request, now) {
        Outcome::Stream(stream) => stream,
        other => panic!("{target}: expected a stream, got {other:?}"),
    }
}

/// Everything `stream` has to send now, as text.
fn drain(stream: &mut EventStream, now: Instant) -> String {
    let mut text = String::new();
    loop {
        match stream.poll(now) {
            StreamStep::Send(chunks) => text.push_str(&String::from_utf8(chunks.to_vec()).unwrap()),
            StreamStep::Wait(..) => return text,
            StreamStep::End(reason) => panic!("the stream ended: {reason:?}"),
        }
    }
}

/// The SSE events of `text`: (event, id, data) each.
fn events(text: &str) -> Vec<(Option<String>, Option<String>, String)> {
    text.split("\n\n")
        .filter(|event| !event.is_empty())
        .filter_map(|event| {
            let (mut name, mut id, mut data) = (None, None, None);
            for line in event.lines() {
                if let Some(value) = line.strip_prefix("event: ") {
                    name = Some(value.to_string());
                } else if let Some(value) = line.strip_prefix("id: ") {
                    id = Some(value.to_string());
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data = Some(value.to_string());
                }
            }
            data.map(|data| (name, id, data))
        })
        .collect()
}

fn number(place: &str) -> u64 {
    place.split('@').next().unwrap().parse().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn each_topic_of_a_multi_stream_gets_what_its_own_stream_gets(
        queue in 1usize..5,
        ops in proptest::collection::vec(op(), 1..50),
    ) {
        let hub = Hub::builder()
            .settings(Settings { queue, ..Settings::default() })
            .epochs(|| Epoch::from_bits(0))
            .build();
        let now = Instant::now();
        let multi_target = "/subscribe.sse?topic=t0&topic=t1&topic=t2&n=0,0,0";
        let single_target = |i: usize| format!("/topics/{}.sse?n=0", TOPICS[i]);
        let mut multi = open(&hub, multi_target, None, now);
        let mut singles: Vec<EventStream> =
            (0..TOPICS.len()).map(|i| open(&hub, &single_target(i), None, now)).collect();
        let mut multi_last: Option<String> = None;
        let mut single_last: Vec<Option<String>> = vec![None; TOPICS.len()];
        let mut multi_seen: Vec<Vec<Seen>> = vec![Vec::new(); TOPICS.len()];
        let mut single_seen: Vec<Vec<Seen>> = vec![Vec::new(); TOPICS.len()];

        let read = |multi: &mut EventStream,
                    singles: &mut Vec<EventStream>,
                    multi_last: &mut Option<String>,
                    single_last: &mut Vec<Option<String>>,
                    multi_seen: &mut Vec<Vec<Seen>>,
                    single_seen: &mut Vec<Vec<Seen>>| {
            for (name, id, data) in events(&drain(multi, now)) {
                let data: Value = serde_json::from_str(&data).unwrap();
                let topic = TOPICS.iter().position(|t| *t == data["topic"]).unwrap();
                match name.as_deref() {
                    Some("gap") => multi_seen[topic].push(Seen::Gap(data["missed"].as_u64())),
                    _ => {
                        let id = id.unwrap();
                        let place = id.split(',').nth(topic).unwrap();
                        multi_seen[topic].push(Seen::Message(number(place), data["data"].to_string()));
                        *multi_last = Some(id);
                    }
                }
            }
            for (i, single) in singles.iter_mut().enumerate() {
                for (name, id, data) in events(&drain(single, now)) {
                    match name.as_deref() {
                        Some("gap") => {
                            let data: Value = serde_json::from_str(&data).unwrap();
                            single_seen[i].push(Seen::Gap(data["missed"].as_u64()));
                        }
                        _ => {
                            let id = id.unwrap();
                            single_seen[i].push(Seen::Message(number(&id), data));
                            single_last[i] = Some(id);
                        }
                    }
                }
            }
        };

        for op in ops {
            match op {
                Op::Publish(i, value) => {
                    hub.publish(TOPICS[i], &value).unwrap();
                }
                Op::Read => read(&mut multi, &mut singles, &mut multi_last, &mut single_last, &mut multi_seen, &mut single_seen),
                Op::Reconnect => {
                    let base = "/subscribe.sse?topic=t0&topic=t1&topic=t2";
                    multi = match &multi_last {
                        Some(last) => open(&hub, base, Some(last), now),
                        None => open(&hub, multi_target, None, now),
                    };
                    for i in 0..TOPICS.len() {
                        let target = format!("/topics/{}.sse", TOPICS[i]);
                        singles[i] = match &single_last[i] {
                            Some(last) => open(&hub, &target, Some(last), now),
                            None => open(&hub, &single_target(i), None, now),
                        };
                    }
                }
            }
        }
        read(&mut multi, &mut singles, &mut multi_last, &mut single_last, &mut multi_seen, &mut single_seen);
        prop_assert_eq!(multi_seen, single_seen);
    }
}
