//! The delivery rules of SPEC 2–5 through core's public API, with injected
//! time: no sockets, no sleeps.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use slosh_core::{
    Epoch, Hub, Listener, LongPoll, Mode, Outcome, Request, Response, Settings, StreamStep,
    Verdict, Wake,
};

/// A hub and a clock the test moves by hand.
struct Clock {
    hub: Hub,
    now: Instant,
}

impl Clock {
    fn new(hub: Hub) -> Clock {
        Clock {
            hub,
            now: Instant::now(),
        }
    }

    fn with(settings: Settings) -> Clock {
        Clock::new(
            Hub::builder()
                .epochs(|| Epoch::from_bits(0))
                .settings(settings)
                .build(),
        )
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    fn sweep(&self) {
        self.hub.sweep(self.now);
    }

    /// Lets `seconds` pass with a sweep every second, as a frontend's
    /// sweeper does.
    fn run_for(&mut self, seconds: u64) {
        for _ in 0..seconds {
            self.advance(Duration::from_secs(1));
            self.sweep();
        }
    }

    fn request(&self, request: Request<'_>) -> Outcome {
        self.hub.handle(request, self.now)
    }

    fn get(&self, target: &str) -> Outcome {
        self.request(Request::new("GET", target))
    }

    fn get_with_cookie(&self, target: &str, cookie: &str) -> Outcome {
        self.request(Request::new("GET", target).with_header("Cookie", cookie))
    }

    fn respond(&self, request: Request<'_>) -> Response {
        match self.request(request) {
            Outcome::Respond(response) => response,
            other => panic!("expected an immediate answer, got {other:?}"),
        }
    }

    fn post(&self, topic: &str, content_type: Option<&str>, body: &str) -> Response {
        let target = format!("/topics/{topic}");
        let mut request = Request::new("POST", &target).with_body(body.to_string());
        if let Some(content_type) = content_type {
            request.header("Content-Type", content_type);
        }
        self.respond(request)
    }

    fn post_json(&self, topic: &str, body: &str) -> Response {
        self.post(topic, Some("application/json"), body)
    }

    fn info(&self, topic: &str) -> Option<Value> {
        let response = self.respond(Request::new("GET", &format!("/topics/{topic}.info")));
        (response.status == 200).then(|| body_json(&response))
    }

    /// A GET that must answer at once.
    fn get_now(&self, target: &str) -> Response {
        match self.get(target) {
            Outcome::Respond(response) => response,
            other => panic!("{target}: expected an immediate answer, got {other:?}"),
        }
    }

    /// A GET that must park.
    fn park(&self, target: &str) -> LongPoll {
        match self.get(target) {
            Outcome::Park(poll) => poll,
            other => panic!("{target}: expected to park, got {other:?}"),
        }
    }
}

fn body_json(response: &Response) -> Value {
    serde_json::from_slice(&response.body).unwrap_or_else(|e| panic!("{e}: {:?}", response.body))
}

fn body_text(response: &Response) -> &str {
    std::str::from_utf8(&response.body).unwrap()
}

fn ready(poll: &mut LongPoll, now: Instant) -> Response {
    match poll.poll(now) {
        Wake::Ready(response) => response,
        Wake::Wait(_) => panic!("expected the poll to answer"),
    }
}

fn cookie_of(response: &Response) -> String {
    let set = response
        .header("Set-Cookie")
        .expect("a new session sets its cookie");
    set.split(';').next().unwrap().to_string()
}

#[test]
fn the_original_xml_walkthrough() {
    let clock = Clock::new(Hub::builder().epochs(|| Epoch::from_bits(0)).build());
    // A GET that waits …
    let mut poll = clock.park("/topics/chat");
    assert!(poll.poll(clock.now).is_wait());
    // … until somebody publishes with curl -d.
    let published = clock.post("chat", None, "x=hello!");
    assert_eq!(body_text(&published), r#"{"ok":true,"id":1}"#);
    let answer = ready(&mut poll, clock.now);
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("Content-Type"),
        Some("text/xml; charset=utf-8")
    );
    assert_eq!(answer.header("Cache-Control"), Some("no-cache, no-store"));
    assert_eq!(
        body_text(&answer),
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<res max=\"1\" epoch=\"aaaaaaaa\" saw=\"1\" delivering=\"1\"><p><x>hello!</x></p></res>"
    );
    // Three more, then a client that saw only the first.
    for text in ["two", "three", "four"] {
        clock.post("chat", None, &format!("x={text}"));
    }
    let answer = clock.get_now("/topics/chat.json?n=1");
    assert_eq!(
        body_text(&answer),
        r#"{"max":4,"epoch":"aaaaaaaa","saw":3,"delivering":3,"res":[{"x":["two"]},{"x":["three"]},{"x":["four"]}]}"#
    );
    assert_eq!(answer.header("Content-Type"), Some("application/json"));
}

#[test]
fn long_poll_answers_at_once_when_messages_are_buffered() {
    let clock = Clock::new(Hub::builder().epochs(|| Epoch::from_bits(0)).build());
    clock.post_json("t", "1");
    clock.post_json("t", "2");
    let answer = body_json(&clock.get_now("/topics/t.json?n=0"));
    assert_eq!(
        answer,
        json!({"max":2,"epoch":"aaaaaaaa","saw":2,"delivering":2,"res":[1,2]})
    );
}

#[test]
fn long_poll_times_out_with_an_empty_batch_at_the_deadline() {
    let mut clock = Clock::new(Hub::builder().epochs(|| Epoch::from_bits(0)).build());
    clock.post_json("t", "1");
    let mut poll = clock.park("/topics/t.json?n=1");
    assert_eq!(poll.deadline(), Some(clock.now + Duration::from_secs(30)));
    clock.advance(Duration::from_secs(29));
    assert!(poll.poll(clock.now).is_wait());
    clock.advance(Duration::from_secs(1));
    let answer = body_json(&ready(&mut poll, clock.now));
    assert_eq!(
        answer,
        json!({"max":1,"epoch":"aaaaaaaa","saw":0,"delivering":0,"res":[]})
    );
}

#[test]
fn a_zero_poll_timeout_parks_without_a_deadline() {
    let clock = Clock::with(Settings {
        poll_timeout: None,
        ..Settings::default()
    });
    let poll = clock.park("/topics/t.json");
    assert_eq!(poll.deadline(), None);
}

#[test]
fn every_parked_poll_is_answered_by_one_publish() {
    let clock = Clock::new(Hub::builder().epochs(|| Epoch::from_bits(0)).build());
    let mut polls: Vec<LongPoll> = (0..500).map(|_| clock.park("/topics/t.json?n=0")).collect();
    let listeners: Vec<_> = polls
        .iter_mut()
        .map(|p| match p.poll(clock.now) {
            Wake::Wait(listener) => listener,
            Wake::Ready(_) => panic!("nothing published yet"),
        })
        .collect();
    assert_eq!(clock.info("t").unwrap()["subscribers"], 500);
    clock.post_json("t", r#"{"a":1}"#);
    for listener in listeners {
        assert!(
            listener.wait_timeout(Duration::ZERO).is_some(),
            "every waiter is woken"
        );
    }
    for mut poll in polls {
        assert_eq!(
            body_json(&ready(&mut poll, clock.now))["res"],
            json!([{"a":1}])
        );
    }
    assert_eq!(clock.info("t").unwrap()["subscribers"], 0);
}

#[test]
fn a_client_that_goes_away_is_forgotten_at_once() {
    let clock = Clock::new(Hub::builder().epochs(|| Epoch::from_bits(0)).build());
    let poll = clock.park("/topics/t.json?n=0");
    assert_eq!(clock.info("t").unwrap()["subscribers"], 1);
    drop(poll);
    assert_eq!(clock.info("t").unwrap()["subscribers"], 0);
}

#[test]
fn session_ids_come_from_the_source_the_hub_was_given() {
    let next = std::sync::atomic::AtomicU8::new(0);
    let hub = Hub::builder()
        .session_ids(move |bytes| {
            let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            bytes.fill(0);
            if let Some(last) = bytes.last_mut() {
                *last = n;
            }
            // The third draw fails, as a broken system source would.
            n != 2
        })
        .build();
    let clock = Clock::new(hub);
    let mut cookies = Vec::new();
    for _ in 0..3 {
        let mut poll = clock.park("/topics/t.json");
        clock.post_json("t", "1");
        let answer = ready(&mut poll, clock.now);
        cookies.push(
            answer
                .header("Set-Cookie")
                .map(|c| c.split(';').next().unwrap().to_string()),
        );
    }
    assert_eq!(
        cookies,
        [
            Some("slosh_session=00000000000000000000000000000000".to_string()),
            Some("slosh_session=00000000000000000000000000000001".to_string()),
            // Served without a session rather than with a bad one.
            None,
        ]
    );
}

#[test]
fn a_new_client_gets_a_session_at_max_and_sees_only_new_messages() {
    let clock = Clock::new(Hub::builder().epochs(|| Epoch::from_bits(0)).build());
    clock.post_json("t", "1");
    let mut poll = clock.park("/topics/t.json");
    clock.post_json("t", "2");
    let answer = ready(&mut poll, clock.now);
    assert_eq!(
        body_json(&answer),
        json!({"max":2,"epoch":"aaaaaaaa","saw":1,"delivering":1,"res":[2]})
    );
    let set_cookie = answer.header("Set-Cookie").unwrap();
    assert!(set_cookie.starts_with("slosh_session="));
    assert!(set_cookie.ends_with("; Path=/topics; HttpOnly; SameSite=Lax"));
    let cookie = cookie_of(&answer);

    // The session remembers: messages published while away come at once.
    clock.post_json("t", "3");
    clock.post_json("t", "4");
    let answer = match clock.get_with_cookie("/topics/t.json", &cookie) {
        Outcome::Respond(response) => response,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        body_json(&answer),
        json!({"max":4,"epoch":"aaaaaaaa","saw":2,"delivering":2,"res":[3,4]})
    );
    assert_eq!(
        answer.header("Set-Cookie"),
        None,
        "a known session is not set again"
    );
    assert_eq!(clock.info("t").unwrap()["sessions"], 1);

    // Up to date: the next poll parks.
    assert!(matches!(
        clock.get_with_cookie("/topics/t.json", &cookie),
        Outcome::Park(_)
    ));
}

#[test]
fn n_moves_the_session_cursor_to_max() {
    let clock = Clock::new(Hub::builder().epochs(|| Epoch::from_bits(0)).build());
    let cookie = {
        let mut poll = clock.park("/topics/t.json");
        clock.post_json("t", "1");
        cookie_of(&ready(&mut poll, clock.now))
    };
    clock.post_json("t", "2");
    clock.post_json("t", "3");
    let answer =
        clock.respond(Request::new("GET", "/topics/t.json?n=2").with_header("Cookie", &cookie));
    assert_eq!(body_json(&answer)["res"], json!([3]));
    // The session was moved to max=3 by the request with n.
    assert!(matches!(
        clock.get_with_cookie("/topics/t.json", &cookie),
        Outcome::Park(_)
    ));
}

#[test]
fn cursors_are_per_topic() {
    let clock = Clock::new(Hub::builder().epochs(|| Epoch::from_bits(0)).build());
    let cookie = {
        let mut poll = clock.park("/topics/a.json");
        clock.post_json("a", "1");
        cookie_of(&ready(&mut poll, clock.now))
    };
    clock.post_json("b", "1");
    // The session has no cursor for b: it starts at b's max, like a new one.
    let mut poll = match clock.get_with_cookie("/topics/b.json", &cookie) {
        Outcome::Park(poll) => poll,
        other => panic!("{other:?}"),
    };
    clock.post_json("b", "2");
    assert_eq!(body_json(&ready(&mut poll, clock.now))["res"], json!([2]));
    assert_eq!(clock.info("b").unwrap()["sessions"], 1);
}

#[test]
fn an_unknown_cookie_is_treated_as_no_session() {
    let clock = Clock::new(Hub::builder().epochs(|| Epoch::from_bits(0)).build());
    clock.post_json("t", "1");
    let mut poll = match clock.get_with_cookie(
        "/topics/t.json",
        "slosh_session=00000000000000000000000000000000",
    ) {
        Outcome::Park(poll) => poll,
        other => panic!("{other:?}"),
    };
    clock.post_json("t", "2");
    let answer = ready(&mut poll, clock.now);
    assert_eq!(body_json(&answer)["res"], json!([2]));
    assert!(
        answer.header("Set-Cookie").is_some(),
        "a fresh session replaces the unknown one"
    );
}

#[test]
fn sessions_expire_when_idle_but_not_while_parked() {
    let mut clock = Clock::new(Hub::builder().epochs(|| Epoch::from_bits(0)).build());
    let cookie = {
        let mut poll = clock.park("/topics/t.json");
        clock.post_json("t", "1");
        cookie_of(&ready(&mut poll, clock.now))
    };
    // Parked for longer than the session timeout: the session survives.
    let mut poll = match clock.get_with_cookie("/topics/t.json", &cookie) {
        Outcome::Park(poll) => poll,
        other => panic!("{other:?}"),
    };
    clock.advance(Duration::from_secs(31));
    clock.sweep();
    assert_eq!(clock.hub.session_count(), 1);
    let answer = ready(&mut poll, clock.now);
    assert_eq!(body_json(&answer)["saw"], 0);
    // Idle for the session timeout: gone, and its topic count drops.
    clock.advance(Duration::from_secs(30));
    clock.sweep();
    assert_eq!(clock.hub.session_count(), 0);
    assert_eq!(clock.info("t").unwrap()["sessions"], 0);
}

#[test]
fn a_cursor_above_max_counts_as_zero() {
    let clock = Clock::new(Hub::builder().epochs(|| Epoch::from_bits(0)).build());
    clock.post_json("t", "1");
    clock.post_json("t", "2");
    let answer = body_json(&clock.get_now("/topics/t.json?n=999"));
    assert_eq!(
        answer,
        json!({"max":2,"epoch":"aaaaaaaa","saw":2,"delivering":2,"res":[1,2]})
    );
}

#[test]
fn a_session_cursor_from_an_earlier_life_of_the_topic_counts_as_zero() {
    let clock = Clock::new(Hub::builder().epochs(|| Epoch::from_bits(0)).build());
    let cookie = {
        let mut poll = clock.park("/topics/t.json");
        for i in 1..=5 {
            clock.post_json("t", &i.to_string());
        }
        cookie_of(&ready(&mut poll, clock.now))
    };
    assert!(clock.hub.delete("t"));
    clock.post_json("t", r#""new life""#);
    let answer = match clock.get_with_cookie("/topics/t.json", &cookie) {
        Outcome::Respond(response) => response,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        body_json(&answer),
        json!({"max":1,"epoch":"aaaaaaaa","saw":1,"delivering":1,"res":["new life"]})
    );
}

#[test]
fn buffer_overflow_is_visible_as_saw_above_delivering() {
    let clock = Clock::with(Settings {
        queue: 3,
        ..Settings::default()
    });
    for i in 1..=10 {
        clock.post_json("t", &i.to_string());
    }
    let answer = body_json(&clock.get_now("/topics/t.json?n=2"));
    assert_eq!(
        answer,
        json!({"max":10,"epoch":"aaaaaaaa","saw":8,"delivering":3,"res":[8,9,10]})
    );
}

#[test]
fn messages_past_max_age_are_dropped_and_counted_in_saw() {
    let clock = Clock::with(Settings {
        max_age: Some(Duration::from_millis(1)),
        ..Settings::default()
    });
    for i in 1..=3 {
        clock.post_json("t", &i.to_string());
    }
    // The sweep, run by every frontend's sweeper, applies max_age by the
    // wall clock; 20 ms make every message older than 1 ms.
    std::thread::sleep(Duration::from_millis(20));
    clock.sweep();
    assert_eq!(clock.info("t").unwrap()["buffered"], 0);
    assert_eq!(clock.info("t").unwrap()["max"], 3);
    // Nothing left to deliver, but three missed: the poll is answered at
    // once with the loss, rather than waiting for a publish that may
    // never come to tell it.
    assert_eq!(
        body_json(&clock.get_now("/topics/t.json?n=0")),
        json!({"max":3,"epoch":"aaaaaaaa","saw":3,"delivering":0,"res":[]})
    );
    // At max, the poll waits as always.
    let mut parked = clock.park("/topics/t.json?n=3");
    clock.post_json("t", "4");
    assert_eq!(
        body_json(&ready(&mut parked, clock.now)),
        json!({"max":4,"epoch":"aaaaaaaa","saw":1,"delivering":1,"res":[4]})
    );
    let metrics = body_text(&clock.get_now("/metrics")).to_string();
    assert!(
        metrics
            .lines()
            .any(|l| l == "slosh_messages_expired_total 3"),
        "{metrics}"
    );
}

#[test]
fn without_max_age_nothing_expires_and_the_cutoff_is_exact() {
    let clock = Clock::with(Settings::default());
    clock.post_json("t", "1");
    std::thread::sleep(Duration::from_millis(5));
    clock.sweep();
    assert_eq!(clock.info("t").unwrap()["buffered"], 1);
    // A cutoff at or before the stamp keeps the message; after it drops it.
    let before = slosh_core::stamp_now().saturating_sub(60_000);
    assert_eq!(clock.hub.expire(before), 0);
    clock.post_json("t", "2");
    assert_eq!(clock.hub.expire(slosh_core::stamp_now() + 1), 2);
    assert_eq!(clock.info("t").unwrap()["buffered"], 0);
}

#[test]
fn format_follows_suffix_then_accept() {
    let clock = Clock::new(Hub::builder().epochs(|| Epoch::from_bits(0)).build());
    clock.post_json("t", "1");
    let json = clock
        .respond(Request::new("GET", "/topics/t?n=0").with_header("Accept", "application/json"));
    assert_eq!(json.header("Content-Type"), Some("application/json"));
    let xml =
        clock.respond(Request::new("GET", "/topics/t?n=0").with_header("Accept", "text/html, */*"));
    assert_eq!(xml.header("Content-Type"), Some("text/xml; charset=utf-8"));
    let xml = clock.respond(
        Request::new("GET", "/topics/t.xml?n=0").with_header("Accept", "application/json"),
    );
    assert_eq!(xml.header("Content-Type"), Some("text/xml; charset=utf-8"));
    let sse = clock
        .request(Request::new("GET", "/topics/t?n=0").with_header("Accept", "text/event-stream"));
    assert!(matches!(sse, Outcome::Stream(_)));
}

#[test]
fn publish_bodies_of_every_kind() {
    let clock = Clock::new(Hub::builder().epochs(|| Epoch::from_bits(0)).build());
    let cases: [(Option<&str>, &str, Value); 8] = [
        (
            Some("application/json"),
            "{\n  \"b\": 1,\n  \"a\": [true, null]\n}",
            json!({"b":1,"a":[true,null]}),
        ),
        (Some("application/json; charset=utf-8"), "42", json!(42)),
        (
            None,
            "x=hello!&x=again&y=1",
            json!({"x":["hello!","again"],"y":["1"]}),
        ),
        (
            Some("application/x-www-form-urlencoded"),
            r#"{"k":"v"}"#,
            json!({"k":"v"}),
        ),
        (
            Some("application/x-www-form-urlencoded"),
            "42",
            json!({"42":[""]}),
        ),
        (None, "c=", json!({"c":[""]})),
        (Some("text/plain"), "just text", json!("just text")),
        (None, "[1,2]", json!([1, 2])),
    ];
    for (i, (content_type, body, _)) in cases.iter().enumerate() {
        let response = clock.post("t", *content_type, body);
        assert_eq!(response.status, 200, "{body}");
        assert_eq!(body_json(&response), json!({"ok":true,"id":i + 1}));
    }
    let stored = body_json(&clock.get_now("/topics/t.json?n=0"));
    let expected: Vec<Value> = cases.into_iter().map(|(_, _, v)| v).collect();
    assert_eq!(stored["res"], Value::Array(expected));
    // Key order is the publisher's, byte for byte.
    let text = clock.get_now("/topics/t.json?n=0");
    assert!(body_text(&text).contains(r#"{"b":1,"a":[true,null]}"#));
}

#[test]
fn rejected_publishes_store_nothing_and_wake_nobody() {
    let clock = Clock::with(Settings {
        max_message: 16,
        ..Settings::default()
    });
    let mut poll = clock.park("/topics/t.json?n=0");
    let listener = match poll.poll(clock.now) {
        Wake::Wait(listener) => listener,
        Wake::Ready(_) => panic!(),
    };
    let bad = [
        (Some("application/json"), "{\"a\":\n  tru}", 400, "line 2"),
        (Some("application/json"), "", 400, "empty"),
        (Some("text/xml"), "<a/>", 415, "text/xml"),
        (Some("multipart/form-data"), "a", 415, "application/json"),
        (Some("application/octet-stream"), "a", 415, "text/plain"),
        (
            Some("application/json"),
            "\"12345678901234567\"",
            413,
            "16 bytes",
        ),
    ];
    for (content_type, body, status, says) in bad {
        let response = clock.post("t", content_type, body);
        assert_eq!(response.status, status, "{body}");
        let error = body_json(&response)["error"].as_str().unwrap().to_string();
        assert!(error.contains(says), "{error:?} should say {says:?}");
    }
    let json_error = body_json(&clock.post_json("t", "{\"a\":\n  tru}"))["error"].to_string();
    assert!(json_error.contains("column"), "{json_error}");
    assert!(listener.wait_timeout(Duration::ZERO).is_none());
    assert_eq!(clock.info("t").unwrap()["max"], 0);
    assert!(poll.poll(clock.now).is_wait());
}

#[test]
fn max_message_is_inclusive() {
    let clock = Clock::with(Settings {
        max_message: 10,
        ..Settings::default()
    });
    assert_eq!(
        clock.post("t", Some("text/plain"), "0123456789").status,
        200
    );
    assert_eq!(
        clock.post("t", Some("text/plain"), "0123456789a").status,
        413
    );
    let too_large = Request::new("POST", "/topics/t").with_header("Content-Type", "text/plain");
    let too_large = Request {
        body: slosh_core::Body::TooLarge,
        ..too_large
    };
    assert_eq!(clock.respond(too_large).status, 413);
    assert_eq!(clock.info("t").unwrap()["max"], 1);
}

#[test]
fn a_filter_may_rewrite_or_drop_messages() {
    let hub = Hub::builder()
        .filter(
            |topic: &slosh_core::TopicName, message: &slosh_core::Json| {
                if message.as_str().contains("spam") {
                    Verdict::Drop
                } else if topic.as_str() == "loud" {
                    Verdict::Replace(slosh_core::Json::from(json!(message
                        .as_str()
                        .to_uppercase())))
                } else {
                    Verdict::Keep
                }
            },
        )
        .build();
    let clock = Clock::new(hub);
    assert_eq!(
        body_text(&clock.post_json("t", r#""spam""#)),
        r#"{"ok":true,"id":null,"dropped":true}"#
    );
    assert_eq!(
        body_text(&clock.post_json("loud", r#""hi""#)),
        r#"{"ok":true,"id":1}"#
    );
    assert_eq!(
        body_json(&clock.get_now("/topics/loud.json?n=0"))["res"],
        json!(["\"HI\""])
    );
    assert_eq!(clock.hub.metrics().dropped_total(), 1);
    assert_eq!(clock.info("t"), None, "a dropped message creates nothing");
}

#[test]
fn in_process_publish_takes_the_same_path_as_a_post() {
    let clock = Clock::with(Settings {
        max_message: 20,
        ..Settings::default()
    });
    let mut poll = clock.park("/topics/chat.json?n=0");
    assert_eq!(
        clock
            .hub
            .publish("chat", &json!({"from":"app"}))
            .unwrap()
            .id,
        Some(1)
    );
    assert_eq!(
        body_json(&ready(&mut poll, clock.now))["res"],
        json!([{"from":"app"}])
    );
    assert_eq!(
        clock
            .hub
            .publish("bad name", &json!(1))
            .unwrap_err()
            .status(),
        400
    );
    assert_eq!(
        clock
            .hub
            .publish("chat", &"x".repeat(30))
            .unwrap_err()
            .status(),
        413
    );
}

#[test]
fn mailbox_topics_exist_only_while_watched() {
    let mut clock = Clock::with(Settings {
        mode: Mode::Mailbox,
        ..Settings::default()
    });
    // POST to a topic nobody watches: 404, nothing stored, nothing created.
    let response = clock.post_json("box", "1");
    assert_eq!(response.status, 404);
    assert_eq!(clock.info("box"), None);
    // A GET creates it; a POST then reaches the watcher.
    let mut poll = clock.park("/topics/box.json?n=0");
    clock.run_for(100);
    assert_eq!(clock.post_json("box", "1").status, 200);
    drop(ready(&mut poll, clock.now));
    drop(poll);
    // Inside the linger window a POST is kept for the subscriber who returns.
    clock.run_for(20);
    assert_eq!(clock.post_json("box", "2").status, 200);
    assert_eq!(
        body_json(&clock.get_now("/topics/box.json?n=1"))["res"],
        json!([2])
    );
    // Never removed early …
    clock.run_for(9);
    assert!(clock.info("box").is_some());
    // … and gone, with its buffer, within a sweep after the linger.
    clock.run_for(2);
    assert_eq!(clock.info("box"), None);
    assert_eq!(clock.post_json("box", "3").status, 404);
}

#[test]
fn mailbox_topics_are_kept_by_subscribers_not_sessions() {
    let mut clock = Clock::with(Settings {
        mode: Mode::Mailbox,
        ..Settings::default()
    });
    let poll = clock.park("/topics/box.json?n=0");
    clock.run_for(300);
    assert!(clock.info("box").is_some(), "a parked subscriber keeps it");
    drop(poll);
    // The session made by a poll without `n` does not keep a mailbox topic.
    let session_poll = clock.park("/topics/box.json");
    drop(session_poll);
    assert_eq!(clock.hub.session_count(), 1);
    clock.run_for(31);
    assert_eq!(clock.info("box"), None);
}

#[test]
fn normal_topics_are_removed_after_topic_idle() {
    let mut clock = Clock::new(Hub::builder().epochs(|| Epoch::from_bits(0)).build());
    clock.post_json("t", "1");
    clock.run_for(250);
    clock.post_json("t", "2");
    clock.run_for(299);
    assert!(
        clock.info("t").is_some(),
        "the publish restarted the idle clock"
    );
    clock.run_for(2);
    assert_eq!(clock.info("t"), None);
}

#[test]
fn a_live_session_keeps_a_normal_topic() {
    let mut clock = Clock::with(Settings {
        topic_idle: Duration::from_secs(5),
        ..Settings::default()
    });
    let mut poll = clock.park("/topics/t.json");
    clock.post_json("t", "1");
    drop(ready(&mut poll, clock.now));
    drop(poll);
    clock.run_for(20);
    assert!(clock.info("t").is_some(), "the session is alive for 30 s");
    clock.run_for(11); // the session expires
    assert_eq!(clock.hub.session_count(), 0);
    clock.run_for(7);
    assert_eq!(clock.info("t"), None);
}

#[test]
fn too_many_topics_is_503_with_retry_after_for_get_and_post() {
    let clock = Clock::with(Settings {
        max_topics: 2,
        ..Settings::default()
    });
    clock.post_json("a", "1");
    drop(clock.get("/topics/b.json"));
    let post = clock.post_json("c", "1");
    assert_eq!(post.status, 503);
    assert!(post.header("Retry-After").is_some());
    let get = clock.get_now("/topics/c.json");
    assert_eq!(get.status, 503);
    assert!(get.header("Retry-After").is_some());
    assert_eq!(
        clock.post_json("a", "2").status,
        200,
        "existing topics still work"
    );
}

#[test]
fn too_many_subscribers_is_503() {
    let clock = Clock::with(Settings {
        max_subscribers: 2,
        max_subscribers_total: 3,
        ..Settings::default()
    });
    let _a = clock.park("/topics/a.json");
    let _b = clock.park("/topics/a.json");
    assert_eq!(clock.get_now("/topics/a.json").status, 503);
    let _c = clock.park("/topics/b.json");
    let refused = clock.get_now("/topics/b.json");
    assert_eq!(refused.status, 503);
    assert!(body_json(&refused)["error"]
        .as_str()
        .unwrap()
        .contains("server"));
}

#[test]
fn delete_answers_parked_polls_and_removes_the_buffer() {
    let clock = Clock::new(Hub::builder().epochs(|| Epoch::from_bits(0)).build());
    clock.post_json("t", "1");
    let mut poll = clock.park("/topics/t.json?n=1");
    let deleted = clock.respond(Request::new("DELETE", "/topics/t"));
    assert_eq!(deleted.status, 200);
    assert_eq!(body_json(&ready(&mut poll, clock.now))["delivering"], 0);
    assert_eq!(clock.info("t"), None);
    assert_eq!(
        clock.respond(Request::new("DELETE", "/topics/t")).status,
        404
    );
}

#[test]
fn shutdown_answers_parked_polls_and_ends_streams() {
    let clock = Clock::new(Hub::builder().epochs(|| Epoch::from_bits(0)).build());
    let mut poll = clock.park("/topics/t.json");
    let mut stream = match clock.get("/topics/t.sse") {
        Outcome::Stream(stream) => stream,
        other => panic!("{other:?}"),
    };
    assert!(matches!(stream.poll(clock.now), StreamStep::Send(_)));
    assert!(poll.poll(clock.now).is_wait());
    clock.hub.shutdown();
    assert_eq!(ready(&mut poll, clock.now).status, 200);
    assert!(matches!(stream.poll(clock.now), StreamStep::End(_)));
    assert_eq!(clock.get_now("/topics/t.json").status, 503);
}

#[test]
fn info_and_list_describe_topics_without_creating_them() {
    let clock = Clock::new(Hub::builder().epochs(|| Epoch::from_bits(0)).build());
    assert_eq!(clock.get_now("/topics/none.info").status, 404);
    assert_eq!(clock.hub.topic_count(), 0);
    clock.post_json("b", "1");
    clock.post_json("a", "1");
    clock.post_json("a", "2");
    let _poll = clock.park("/topics/a.json");
    assert_eq!(
        clock.info("a").unwrap(),
        json!({"topic":"a","max":2,"epoch":"aaaaaaaa","buffered":2,"subscribers":1,"sessions":1})
    );
    let list = body_json(&clock.get_now("/topics"));
    assert_eq!(list["topics"].as_array().unwrap().len(), 2);
    assert_eq!(list["topics"][0]["topic"], "a");
    assert_eq!(
        list["topics"][1],
        json!({"topic":"b","max":1,"epoch":"aaaaaaaa","buffered":1,"subscribers":0,"sessions":0})
    );
}

#[test]
fn bad_requests_get_the_status_the_spec_names() {
    let clock = Clock::new(Hub::builder().epochs(|| Epoch::from_bits(0)).build());
    let cases: [(&str, &str, u16); 12] = [
        ("GET", "/topics/a%2Fb", 400),
        ("GET", "/topics/.json", 400),
        ("GET", "/topics/a.txt", 400),
        ("GET", "/topics/a?n=-1", 400),
        ("GET", "/topics/a?n=01", 400),
        ("GET", "/topics/a?n=", 400),
        ("GET", "/topics/a?n=1e3", 400),
        ("GET", "/topics/a?n=18446744073709551616", 400),
        ("FROB", "/topics/a", 405),
        ("PUT", "/topics", 405),
        ("GET", "/elsewhere", 404),
        ("POST", "/topics/a.info", 405),
    ];
    for (method, target, status) in cases {
        let response = clock.respond(Request::new(method, target));
        assert_eq!(response.status, status, "{method} {target}");
        assert_eq!(response.header("Content-Type"), Some("application/json"));
        assert!(body_json(&response)["error"].is_string());
    }
    let frob = clock.respond(Request::new("FROB", "/topics/a"));
    assert_eq!(frob.header("Allow"), Some("GET, POST, DELETE, OPTIONS"));
    assert_eq!(
        clock.hub.topic_count(),
        0,
        "no refused request created a topic"
    );
    assert_eq!(clock.hub.metrics().rejected_total("bad_cursor"), 5);
}

#[test]
fn publish_needs_the_token_when_one_is_set() {
    let clock = Clock::new(
        Hub::builder()
            .epochs(|| Epoch::from_bits(0))
            .publish_token("s3cret")
            .build(),
    );
    let refused = clock.post_json("t", "1");
    assert_eq!(refused.status, 401);
    let wrong = clock.respond(
        Request::new("POST", "/topics/t")
            .with_header("Authorization", "Bearer s3creT")
            .with_body("x=1"),
    );
    assert_eq!(wrong.status, 401);
    assert_eq!(clock.info("t"), None, "nothing stored");
    let ok = clock.respond(
        Request::new("POST", "/topics/t")
            .with_header("Authorization", "Bearer s3cret")
            .with_body("x=1"),
    );
    assert_eq!(ok.status, 200);
    assert_eq!(
        clock.respond(Request::new("DELETE", "/topics/t")).status,
        401
    );
    assert_eq!(
        clock.get_now("/topics/t.json?n=0").status,
        200,
        "reading needs no token"
    );
}

#[test]
fn health_and_metrics_answer() {
    let clock = Clock::new(Hub::builder().epochs(|| Epoch::from_bits(0)).build());
    clock.post_json("t", "1");
    let health = clock.get_now("/healthz");
    assert_eq!((health.status, body_text(&health)), (200, "ok"));
    let metrics = clock.get_now("/metrics");
    assert!(body_text(&metrics).contains("slosh_messages_published_total 1"));
    assert!(body_text(&metrics).contains("slosh_topics 1"));
}

// --- Server-Sent Events ---------------------------------------------------

fn open_stream(clock: &Clock, request: Request<'_>) -> slosh_core::EventStream {
    match clock.request(request) {
        Outcome::Stream(stream) => stream,
        other => panic!("expected a stream, got {other:?}"),
    }
}

fn sent(step: StreamStep) -> String {
    match step {
        StreamStep::Send(bytes) => String::from_utf8(bytes.to_vec()).unwrap(),
        other => panic!("expected data, got {other:?}"),
    }
}

#[test]
fn sse_opens_with_retry_then_sends_only_new_messages() {
    let clock = Clock::new(Hub::builder().epochs(|| Epoch::from_bits(0)).build());
    clock.post_json("t", "1");
    let mut stream = open_stream(&clock, Request::new("GET", "/topics/t.sse"));
    let head = stream.head();
    assert_eq!(head.header("Content-Type"), Some("text/event-stream"));
    assert_eq!(head.header("Cache-Control"), Some("no-cache"));
    assert_eq!(head.header("X-Accel-Buffering"), Some("no"));
    assert_eq!(sent(stream.poll(clock.now)), "retry: 3000\n\n");
    assert!(matches!(stream.poll(clock.now), StreamStep::Wait(..)));
    clock.post_json("t", r#"{"event":"Some Event Text"}"#);
    clock.post_json("t", "3");
    assert_eq!(
        sent(stream.poll(clock.now)),
        "id: 2@aaaaaaaa\ndata: {\"event\":\"Some Event Text\"}\n\nid: 3@aaaaaaaa\ndata: 3\n\n"
    );
}

#[test]
fn sse_resumes_from_last_event_id_which_wins_over_n() {
    let clock = Clock::new(Hub::builder().epochs(|| Epoch::from_bits(0)).build());
    for i in 1..=4 {
        clock.post_json("t", &i.to_string());
    }
    let mut stream = open_stream(
        &clock,
        Request::new("GET", "/topics/t.sse?n=1").with_header("Last-Event-ID", "2"),
    );
    assert_eq!(
        sent(stream.poll(clock.now)),
        "retry: 3000\n\nid: 3@aaaaaaaa\ndata: 3\n\nid: 4@aaaaaaaa\ndata: 4\n\n"
    );
    let mut stream = open_stream(&clock, Request::new("GET", "/topics/t.sse?n=3"));
    assert_eq!(
        sent(stream.poll(clock.now)),
        "retry: 3000\n\nid: 4@aaaaaaaa\ndata: 4\n\n"
    );
    // A resume point above max counts as 0.
    let mut stream = open_stream(&clock, Request::new("GET", "/topics/t.sse?n=99"));
    assert!(sent(stream.poll(clock.now)).contains("id: 1@aaaaaaaa\ndata: 1\n\n"));
    let bad = clock.respond(Request::new("GET", "/topics/t.sse").with_header("Last-Event-ID", "x"));
    assert_eq!(bad.status, 400);
}

#[test]
fn sse_announces_a_gap_when_the_resume_point_is_older_than_the_buffer() {
    let clock = Clock::with(Settings {
        queue: 2,
        ..Settings::default()
    });
    for i in 1..=5 {
        clock.post_json("t", &i.to_string());
    }
    let mut stream = open_stream(
        &clock,
        Request::new("GET", "/topics/t.sse").with_header("Last-Event-ID", "1"),
    );
    assert_eq!(
        sent(stream.poll(clock.now)),
        "retry: 3000\n\nevent: gap\ndata: {\"missed\":2}\n\nid: 4@aaaaaaaa\ndata: 4\n\nid: 5@aaaaaaaa\ndata: 5\n\n"
    );
}

#[test]
fn sse_tells_a_gap_of_aged_out_messages_at_once_not_at_the_next_publish() {
    let clock = Clock::with(Settings::default());
    for i in 1..=3 {
        clock.post_json("t", &i.to_string());
    }
    assert_eq!(clock.hub.expire(slosh_core::stamp_now() + 1), 3);
    let mut stream = open_stream(
        &clock,
        Request::new("GET", "/topics/t.sse").with_header("Last-Event-ID", "1"),
    );
    assert_eq!(
        sent(stream.poll(clock.now)),
        "retry: 3000\n\nevent: gap\ndata: {\"missed\":2}\n\n"
    );
    // The stream is now at 3: the next message follows with no second gap.
    clock.post_json("t", "4");
    assert_eq!(sent(stream.poll(clock.now)), "id: 4@aaaaaaaa\ndata: 4\n\n");
}

#[test]
fn sse_pings_after_each_idle_heartbeat() {
    let mut clock = Clock::new(Hub::builder().epochs(|| Epoch::from_bits(0)).build());
    let mut stream = open_stream(&clock, Request::new("GET", "/topics/t.sse"));
    sent(stream.poll(clock.now));
    let deadline = match stream.poll(clock.now) {
        StreamStep::Wait(_, deadline) => deadline,
        other => panic!("{other:?}"),
    };
    assert_eq!(deadline, clock.now + Duration::from_secs(15));
    clock.advance(Duration::from_secs(15));
    assert_eq!(sent(stream.poll(clock.now)), ": ping\n\n");
    // Data resets the heartbeat.
    clock.advance(Duration::from_secs(10));
    clock.post_json("t", "1");
    sent(stream.poll(clock.now));
    match stream.poll(clock.now) {
        StreamStep::Wait(_, deadline) => assert_eq!(deadline, clock.now + Duration::from_secs(15)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn sse_ends_when_the_topic_is_deleted() {
    let clock = Clock::new(Hub::builder().epochs(|| Epoch::from_bits(0)).build());
    let mut stream = open_stream(&clock, Request::new("GET", "/topics/t.sse"));
    sent(stream.poll(clock.now));
    assert_eq!(clock.info("t").unwrap()["subscribers"], 1);
    clock.hub.delete("t");
    assert!(matches!(stream.poll(clock.now), StreamStep::End(_)));
}

#[test]
fn a_browser_reconnecting_to_a_deleted_topic_is_told_to_stop() {
    let mut clock = Clock::new(Hub::builder().epochs(|| Epoch::from_bits(0)).build());
    clock.post_json("t", "1");
    clock.hub.delete("t");
    // What EventSource sends when it reconnects: 204 ends its retries, and
    // the topic is not created again.
    let reconnect = || Request::new("GET", "/topics/t.sse").with_header("Last-Event-ID", "1");
    let answer = clock.respond(reconnect());
    assert_eq!(answer.status, 204);
    assert!(answer.body.is_empty());
    assert_eq!(answer.header("Cache-Control"), Some("no-cache, no-store"));
    assert!(clock.info("t").is_none());
    // Still told after a while…
    clock.run_for(60);
    assert_eq!(clock.respond(reconnect()).status, 204);
    // …but a page opened afresh subscribes, and from then on the topic is
    // alive again, for reconnects too.
    open_stream(&clock, Request::new("GET", "/topics/t.sse"));
    assert!(matches!(clock.request(reconnect()), Outcome::Stream(_)));
}

#[test]
fn a_removed_topic_is_forgotten_after_five_minutes_or_a_publish() {
    let mut clock = Clock::new(Hub::builder().epochs(|| Epoch::from_bits(0)).build());
    clock.post_json("a", "1");
    clock.post_json("b", "1");
    clock.hub.delete("a");
    clock.hub.delete("b");
    clock.post_json("a", "2");
    let reconnect = |target| Request::new("GET", target).with_header("Last-Event-ID", "1");
    assert!(matches!(
        clock.request(reconnect("/topics/a.sse")),
        Outcome::Stream(_)
    ));
    assert_eq!(clock.respond(reconnect("/topics/b.sse")).status, 204);
    clock.run_for(301);
    assert!(matches!(
        clock.request(reconnect("/topics/b.sse")),
        Outcome::Stream(_)
    ));
}

#[test]
fn a_browser_reconnecting_to_an_expired_mailbox_is_told_to_stop() {
    let mut clock = Clock::with(Settings {
        mode: Mode::Mailbox,
        linger: Duration::from_secs(5),
        ..Settings::default()
    });
    let mut stream = open_stream(&clock, Request::new("GET", "/topics/box.sse"));
    sent(stream.poll(clock.now));
    clock.post_json("box", "1");
    sent(stream.poll(clock.now));
    // The connection drops (a laptop sleeps); the mailbox expires.
    drop(stream);
    clock.run_for(7);
    assert!(clock.info("box").is_none());
    let answer =
        clock.respond(Request::new("GET", "/topics/box.sse").with_header("Last-Event-ID", "1"));
    assert_eq!(answer.status, 204);
    assert!(clock.info("box").is_none());
}

#[test]
fn the_built_in_demo_is_served_outside_topics_unless_turned_off() {
    let clock = Clock::new(Hub::builder().epochs(|| Epoch::from_bits(0)).build());
    for path in [
        "/",
        "/index.html",
        "/chat-sse.html",
        "/chat-json.html",
        "/chat-xml.html",
    ] {
        let page = clock.get_now(path);
        assert_eq!(page.status, 200, "{path}");
        assert_eq!(
            page.header("Content-Type"),
            Some("text/html; charset=utf-8")
        );
        assert!(body_text(&page).starts_with("<!doctype html>"));
        for external in ["src=\"http", "href=\"http", "<link", "@import"] {
            assert!(
                !body_text(&page).contains(external),
                "{path} loads nothing from elsewhere"
            );
        }
    }
    assert!(body_text(&clock.get_now("/chat-json.html")).contains(".json"));
    assert!(body_text(&clock.get_now("/chat-xml.html")).contains(".xml"));
    assert_eq!(clock.get_now("/missing.html").status, 404);
    assert_eq!(clock.respond(Request::new("POST", "/")).status, 405);
    let embedded = Clock::with(Settings {
        builtin_demo: false,
        ..Settings::default()
    });
    assert_eq!(embedded.get_now("/").status, 404);
}

#[test]
fn without_cors_origins_no_cors_header_is_sent() {
    let clock = Clock::new(Hub::builder().epochs(|| Epoch::from_bits(0)).build());
    clock.post_json("t", "1");
    let answer = clock.respond(
        Request::new("GET", "/topics/t.json?n=0").with_header("Origin", "https://a.example"),
    );
    assert!(answer
        .headers
        .iter()
        .all(|(name, _)| !name.starts_with("Access-Control")));
}

#[test]
fn listed_origins_get_cors_headers_and_preflights_create_nothing() {
    let clock = Clock::with(Settings {
        cors_origins: vec!["https://a.example".into()],
        ..Settings::default()
    });
    let preflight = clock.respond(
        Request::new("OPTIONS", "/topics/new")
            .with_header("Origin", "https://a.example")
            .with_header("Access-Control-Request-Method", "POST"),
    );
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("Access-Control-Allow-Origin"),
        Some("https://a.example")
    );
    assert_eq!(
        preflight.header("Access-Control-Allow-Credentials"),
        Some("true")
    );
    assert!(preflight
        .header("Access-Control-Allow-Methods")
        .unwrap()
        .contains("POST"));
    assert!(preflight
        .header("Access-Control-Allow-Headers")
        .unwrap()
        .contains("Content-Type"));
    assert_eq!(
        clock.hub.topic_count(),
        0,
        "a preflight never creates a topic"
    );

    let published = clock.respond(
        Request::new("POST", "/topics/t")
            .with_header("Origin", "https://a.example")
            .with_body("x=1"),
    );
    assert_eq!(
        published.header("Access-Control-Allow-Origin"),
        Some("https://a.example")
    );
    assert_eq!(published.header("Vary"), Some("Origin"));

    // Parked answers and streams carry the headers too.
    let mut poll = match clock.request(
        Request::new("GET", "/topics/t.json?n=1").with_header("Origin", "https://a.example"),
    ) {
        Outcome::Park(poll) => poll,
        other => panic!("{other:?}"),
    };
    clock.post_json("t", "2");
    assert_eq!(
        ready(&mut poll, clock.now).header("Access-Control-Allow-Origin"),
        Some("https://a.example")
    );
    let stream = open_stream(
        &clock,
        Request::new("GET", "/topics/t.sse").with_header("Origin", "https://a.example"),
    );
    assert_eq!(
        stream.head().header("Access-Control-Allow-Origin"),
        Some("https://a.example")
    );

    // An origin that is not listed gets nothing.
    let other = clock.respond(
        Request::new("GET", "/topics/t.json?n=0").with_header("Origin", "https://evil.example"),
    );
    assert_eq!(other.header("Access-Control-Allow-Origin"), None);
}

#[test]
fn a_star_origin_allows_everyone_without_credentials() {
    let clock = Clock::with(Settings {
        cors_origins: vec!["*".into()],
        ..Settings::default()
    });
    clock.post_json("t", "1");
    let answer = clock.respond(
        Request::new("GET", "/topics/t.json?n=0").with_header("Origin", "https://b.example"),
    );
    assert_eq!(answer.header("Access-Control-Allow-Origin"), Some("*"));
    assert_eq!(answer.header("Access-Control-Allow-Credentials"), None);
}

/// A log whose store is down: every append fails and keeps nothing.
struct Down(
    slosh_core::MemoryLog,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
);

impl slosh_core::Log for Down {
    fn append(
        &self,
        json: slosh_core::Json,
    ) -> Result<slosh_core::Message, slosh_core::StoreError> {
        if self.1.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(slosh_core::StoreError("the disk is full".into()));
        }
        self.0.append(json)
    }
    fn read_after(&self, after: u64, out: &mut Vec<slosh_core::Message>) -> u64 {
        self.0.read_after(after, out)
    }
    fn max(&self) -> u64 {
        self.0.max()
    }
    fn head(&self) -> slosh_core::Head {
        self.0.head()
    }
    fn buffered(&self) -> usize {
        self.0.buffered()
    }
    fn expire(&self, before: slosh_core::Stamp) -> usize {
        self.0.expire(before)
    }
    fn epoch(&self) -> Epoch {
        self.0.epoch()
    }
    fn remove(&self, _why: slosh_core::Removal) {
        // The test reads a removal as the flag going up.
        self.1.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn a_store_that_cannot_keep_a_message_is_503_and_wakes_nobody() {
    let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&down);
    let clock = Clock::new(
        Hub::builder()
            .epochs(|| Epoch::from_bits(0))
            .log_factory(move |_, queue, epoch| {
                Box::new(Down(
                    slosh_core::MemoryLog::new(queue, epoch),
                    std::sync::Arc::clone(&flag),
                )) as Box<dyn slosh_core::Log>
            })
            .build(),
    );
    assert_eq!(clock.post_json("d", "1").status, 200);
    let mut poll = clock.park("/topics/d.json?n=1");
    down.store(true, std::sync::atomic::Ordering::SeqCst);
    let refused = clock.post_json("d", "2");
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("Retry-After"), Some("1"));
    assert!(
        body_text(&refused).contains("the disk is full"),
        "{}",
        body_text(&refused)
    );
    assert!(
        matches!(poll.poll(clock.now), Wake::Wait(_)),
        "nobody woken"
    );
    assert_eq!(clock.info("d").unwrap()["max"], 1, "nothing stored");
    assert!(clock.hub.publish("d", &3).is_err());
    down.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(clock.post_json("d", "4").status, 200);
    assert_eq!(
        body_json(&ready(&mut poll, clock.now)),
        json!({"max": 2, "epoch": "aaaaaaaa", "saw": 1, "delivering": 1, "res": [4]})
    );
    // DELETE tells the store to forget the topic.
    assert_eq!(
        clock.respond(Request::new("DELETE", "/topics/d")).status,
        200
    );
    assert!(down.load(std::sync::atomic::Ordering::SeqCst), "removed");
}

/// A log as a store shared by several servers hands it out: its cache is
/// the test's, so the test can append "on another server", and the notice
/// callback the hub gives it is kept for the test to call.
struct Watched {
    cache: std::sync::Arc<slosh_core::MemoryLog>,
    /// Every life's callback, in the order the lives were made.
    notify: std::sync::Arc<std::sync::Mutex<Vec<slosh_core::Notify>>>,
}

impl slosh_core::Log for Watched {
    fn append(
        &self,
        json: slosh_core::Json,
    ) -> Result<slosh_core::Message, slosh_core::StoreError> {
        self.cache.append(json)
    }
    fn read_after(&self, after: u64, out: &mut Vec<slosh_core::Message>) -> u64 {
        self.cache.read_after(after, out)
    }
    fn max(&self) -> u64 {
        self.cache.max()
    }
    fn head(&self) -> slosh_core::Head {
        self.cache.head()
    }
    fn buffered(&self) -> usize {
        self.cache.buffered()
    }
    fn expire(&self, before: slosh_core::Stamp) -> usize {
        self.cache.expire(before)
    }
    fn epoch(&self) -> Epoch {
        self.cache.epoch()
    }
    fn watch(&self, notify: slosh_core::Notify) {
        self.notify.lock().unwrap().push(notify);
    }
}

#[test]
fn a_shared_stores_notices_wake_end_and_delete_topics() {
    use slosh_core::Change;
    type Slot = std::sync::Arc<std::sync::Mutex<Vec<slosh_core::Notify>>>;
    let caches = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let notify: Slot = std::sync::Arc::default();
    let (made, slot) = (
        std::sync::Arc::clone(&caches),
        std::sync::Arc::clone(&notify),
    );
    let clock = Clock::new(
        Hub::builder()
            .epochs(|| Epoch::from_bits(0))
            .log_factory(move |_, queue, epoch| {
                let cache = std::sync::Arc::new(slosh_core::MemoryLog::new(queue, epoch));
                made.lock().unwrap().push(std::sync::Arc::clone(&cache));
                Box::new(Watched {
                    cache,
                    notify: std::sync::Arc::clone(&slot),
                }) as Box<dyn slosh_core::Log>
            })
            .build(),
    );
    // What the store says to the newest life, or to an earlier one.
    let tell_life = |life: usize, change| (notify.lock().unwrap()[life])(change);
    let tell = |change| {
        let newest = notify.lock().unwrap().len() - 1;
        tell_life(newest, change)
    };

    // Appended elsewhere: the store has it in the cache, the notice wakes.
    let mut poll = clock.park("/topics/s.json?n=0");
    let cache = std::sync::Arc::clone(&caches.lock().unwrap()[0]);
    let Wake::Wait(listener) = poll.poll(clock.now) else {
        panic!("parked before the push")
    };
    let mut listener = Box::pin(listener);
    let mut woken = || {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        std::future::Future::poll(listener.as_mut(), &mut cx).is_ready()
    };
    cache.push(slosh_core::Json::from(json!("elsewhere")), 0);
    assert!(!woken(), "a push alone wakes nobody");
    tell(Change::Appended);
    assert!(woken(), "the notice wakes the parked poll");
    assert_eq!(
        body_json(&ready(&mut poll, clock.now))["res"],
        json!(["elsewhere"])
    );

    // Reset: the topic ends here, leaves the table, and a reconnecting
    // browser is served (into a new life), not told to stop.
    let mut stream = open_stream(&clock, Request::new("GET", "/topics/s.sse"));
    sent(stream.poll(clock.now));
    tell(Change::Reset);
    assert!(matches!(stream.poll(clock.now), StreamStep::End(_)));
    assert!(clock.info("s").is_none());
    let reconnect = || Request::new("GET", "/topics/s.sse").with_header("Last-Event-ID", "1");
    let again = match clock.request(reconnect()) {
        Outcome::Stream(stream) => stream,
        other => panic!("expected a stream, got {other:?}"),
    };
    assert_eq!(caches.lock().unwrap().len(), 2, "a new life's log");

    // Deleted elsewhere: as a local DELETE, reconnects are told to stop.
    let mut again = again;
    sent(again.poll(clock.now));
    tell(Change::Deleted);
    assert!(matches!(again.poll(clock.now), StreamStep::End(_)));
    assert!(clock.info("s").is_none());
    assert_eq!(clock.respond(reconnect()).status, 204);

    // A late notice about an earlier life leaves the newest one alone.
    let _third = open_stream(&clock, Request::new("GET", "/topics/s.sse"));
    tell_life(1, Change::Deleted);
    assert!(clock.info("s").is_some());
    assert!(matches!(clock.request(reconnect()), Outcome::Stream(_)));
}
