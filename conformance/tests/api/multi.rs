//! One SSE stream of several topics (`/subscribe.sse?topic=a&topic=b`):
//! each event names its topic, the id is every topic's place, a reconnect
//! resumes each topic where it was, and gaps, resets, tokens, limits and
//! deletions work per topic as on a stream of that topic alone.

use std::time::Duration;

use serde_json::json;
use slosh_core::auth::{Grant, Pattern, Signer, TokenKey};
use slosh_core::{Epoch, Hub, Settings};

use super::helpers::{read_until, spawn_app_with, spawn_hub, App, ServeOptions, EPOCH};

/// `id: …\ndata: {"topic":T,"data":MSG}` as the stream writes it.
fn event(places: &str, topic: &str, data: &str) -> String {
    format!("id: {places}\ndata: {{\"topic\":\"{topic}\",\"data\":{data}}}\n\n")
}

/// `N@EPOCH` for each of `ids`, comma-separated.
fn places(ids: &[u64]) -> String {
    ids.iter()
        .map(|id| format!("{id}@{EPOCH}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test]
async fn events_of_three_topics_arrive_on_one_stream_each_naming_its_topic() {
    let app = spawn_app_with(Settings::default()).await;
    app.hub.publish("a", &"a1").unwrap();
    let mut stream = app
        .open("/subscribe.sse?topic=a&topic=b&topic=c&n=0,0,0", &[])
        .await;
    let mut seen = String::new();
    read_until(
        &mut stream,
        &mut seen,
        &event(&places(&[1, 0, 0]), "a", "\"a1\""),
    )
    .await;
    for topic in ["a", "b", "c"] {
        app.wait_for_subscribers(topic, 1).await;
    }
    // Order across topics is the order the stream finds them in; within
    // a topic it is always the topic's.
    app.hub.publish("c", &"c1").unwrap();
    let c1 = event(&places(&[1, 0, 1]), "c", "\"c1\"");
    read_until(&mut stream, &mut seen, &c1).await;
    app.hub.publish("b", &json!({"x": 1})).unwrap();
    let b1 = event(&places(&[1, 1, 1]), "b", r#"{"x":1}"#);
    read_until(&mut stream, &mut seen, &b1).await;
    app.hub.publish("a", &"a2").unwrap();
    let a2 = event(&places(&[2, 1, 1]), "a", "\"a2\"");
    read_until(&mut stream, &mut seen, &a2).await;
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(seen
        .to_ascii_lowercase()
        .contains("content-type: text/event-stream"));
    drop(stream);
    for topic in ["a", "b", "c"] {
        app.wait_for_subscribers(topic, 0).await;
    }
}

#[tokio::test]
async fn a_reconnect_resumes_every_topic_where_it_was() {
    let app = spawn_app_with(Settings::default()).await;
    for n in 1..=2 {
        app.hub.publish("a", &n).unwrap();
        app.hub.publish("b", &(10 + n)).unwrap();
    }
    // Away at a=1, b=2; meanwhile both move on.
    app.hub.publish("a", &3).unwrap();
    app.hub.publish("b", &13).unwrap();
    let mut stream = app
        .open(
            "/subscribe.sse?topic=a&topic=b",
            &[("Last-Event-ID", &places(&[1, 2]))],
        )
        .await;
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, &event(&places(&[3, 2]), "a", "3")).await;
    read_until(&mut stream, &mut seen, &event(&places(&[3, 3]), "b", "13")).await;
    // a's 2 comes before its 3, and nothing already seen comes again.
    assert!(seen.contains(&event(&places(&[2, 2]), "a", "2")), "{seen}");
    assert!(
        !seen.contains("\"data\":1}")
            && !seen.contains("\"data\":11}")
            && !seen.contains("\"data\":12}"),
        "{seen}"
    );
    assert!(!seen.contains("event: gap"), "{seen}");
}

#[tokio::test]
async fn gaps_and_resets_are_told_for_their_topic_only() {
    let app = spawn_app_with(Settings {
        queue: 2,
        ..Settings::default()
    })
    .await;
    for n in 1..=5 {
        app.hub.publish("b", &n).unwrap();
    }
    app.hub.publish("a", &1).unwrap();
    // b resumes at 1: 2 messages fell out of its buffer; a's place is of
    // another life: a reset.
    let mut stream = app
        .open(
            "/subscribe.sse?topic=a&topic=b",
            &[("Last-Event-ID", "0@bbbbbbbb,1")],
        )
        .await;
    let mut seen = String::new();
    read_until(
        &mut stream,
        &mut seen,
        "event: gap\ndata: {\"topic\":\"a\",\"missed\":null}\n\n",
    )
    .await;
    read_until(
        &mut stream,
        &mut seen,
        "event: gap\ndata: {\"topic\":\"b\",\"missed\":2}\n\n",
    )
    .await;
    read_until(&mut stream, &mut seen, &event(&places(&[1, 5]), "b", "5")).await;
    assert!(seen.contains(&event(&places(&[1, 1]), "a", "1")), "{seen}");
}

#[tokio::test]
async fn the_topic_list_is_checked_and_bounded() {
    let app = spawn_app_with(Settings {
        max_topics_per_subscriber: 3,
        ..Settings::default()
    })
    .await;
    for (target, needle) in [
        ("/subscribe.sse", "name the topics"),
        ("/subscribe.sse?topic=a&topic=a", "given twice"),
        (
            "/subscribe.sse?topic=a&topic=b&topic=c&topic=d",
            "at most 3 topics",
        ),
        ("/subscribe.sse?topic=a%2Fb", "topic name"),
        ("/subscribe.sse?topic=a&topic=b&n=1", "one place per topic"),
    ] {
        let answer = app.get(target).await;
        assert_eq!(answer.status, 400, "{target}: {answer:?}");
        assert!(answer.body.contains(needle), "{target}: {}", answer.body);
    }
    assert!(
        app.hub.info("a").is_none(),
        "a refused stream opened a topic"
    );
    let answer = app.send("POST", "/subscribe.sse?topic=a", &[], b"1").await;
    assert_eq!(answer.status, 405);
}

#[tokio::test]
async fn every_private_topic_of_a_stream_needs_the_token() {
    const SECRET: &[u8] = b"multi-topic secret";
    let hub = Hub::builder()
        .settings(Settings {
            private: vec![Pattern::parse("p-*").unwrap()],
            ..Settings::default()
        })
        .epochs(|| Epoch::from_bits(0))
        .token_key(TokenKey::secret(SECRET).unwrap())
        .build();
    let app: App = spawn_hub(crate::FRONTEND, hub, ServeOptions::default()).await;
    let target = "/subscribe.sse?topic=open&topic=p-1";
    let refused = app.get(target).await;
    assert_eq!(refused.status, 401, "{refused:?}");
    let token = |subscribe: &str, ttl: u64| {
        Signer::secret(SECRET)
            .unwrap()
            .token(&Grant {
                subscribe: vec![subscribe.to_string()],
                ttl: Duration::from_secs(ttl),
                ..Grant::default()
            })
            .unwrap()
    };
    let other = app
        .get(&format!("{target}&access_token={}", token("p-2", 60)))
        .await;
    assert_eq!(other.status, 403, "{other:?}");
    app.hub.publish("p-1", &1).unwrap();
    let mut stream = app
        .open(
            &format!("{target}&n=0,0&access_token={}", token("p-1", 60)),
            &[],
        )
        .await;
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, &event(&places(&[0, 1]), "p-1", "1")).await;
}

#[tokio::test]
async fn a_deleted_topic_ends_the_stream_and_its_reconnect_is_told_to_stop() {
    let app = spawn_app_with(Settings::default()).await;
    app.hub.publish("a", &1).unwrap();
    app.hub.publish("b", &1).unwrap();
    let mut stream = app
        .open(
            "/subscribe.sse?topic=a&topic=b&n=0,0",
            &[("Connection", "close")],
        )
        .await;
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, &event(&places(&[1, 1]), "b", "1")).await;
    assert!(app.hub.delete("b"));
    // The body ends (the chunked terminator) and the connection closes.
    read_until(&mut stream, &mut seen, "0\r\n\r\n").await;
    app.wait_for_subscribers("a", 0).await;
    let again = app
        .send(
            "GET",
            "/subscribe.sse?topic=a&topic=b",
            &[("Last-Event-ID", &places(&[1, 1]))],
            b"",
        )
        .await;
    assert_eq!(again.status, 204, "{again:?}");
    assert!(app.hub.info("b").is_none(), "the reconnect made b again");
}

// Long-poll of several topics.

#[tokio::test]
async fn a_long_poll_of_several_topics_answers_each_topics_batch_and_the_next_n() {
    let app = spawn_app_with(Settings {
        queue: 2,
        ..Settings::default()
    })
    .await;
    app.hub.publish("a", &1).unwrap();
    for n in 1..=4 {
        app.hub.publish("b", &n).unwrap();
    }
    // From the start of each: a's one message, b's newest two and a gap of 2.
    let answer = app.get("/subscribe.json?topic=a&topic=b&n=0,0").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let body = answer.json();
    assert_eq!(body["n"], json!(places(&[1, 4])));
    assert_eq!(body["topics"][0]["topic"], json!("a"));
    assert_eq!(body["topics"][0]["res"], json!([1]));
    assert_eq!(body["topics"][1]["topic"], json!("b"));
    assert_eq!(body["topics"][1]["res"], json!([3, 4]));
    assert_eq!(body["topics"][1]["saw"], json!(4));
    assert_eq!(body["topics"][1]["delivering"], json!(2));
    // With that n, the next poll parks until either topic moves; b does.
    let next = format!("/subscribe.json?topic=a&topic=b&n={}", places(&[1, 4]));
    let app2 = *app;
    let waiting = tokio::spawn(async move { app2.get(&next).await });
    app.wait_for_subscribers("a", 1).await;
    app.wait_for_subscribers("b", 1).await;
    app.hub.publish("b", &5).unwrap();
    let woken = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap()
        .json();
    assert_eq!(woken["n"], json!(places(&[1, 5])));
    assert_eq!(woken["topics"][0]["res"], json!([]));
    assert_eq!(woken["topics"][1]["res"], json!([5]));
    // XML: one <topic> per topic around its usual batch.
    let xml = app.get("/subscribe.xml?topic=a&topic=b&n=0,4").await;
    assert_eq!(xml.status, 200);
    assert!(
        xml.body
            .contains(&format!("<topics n=\"{}\">", places(&[1, 5])))
            && xml.body.contains("<topic name=\"a\"><res max=\"1\"")
            && xml.body.contains("<p>1</p></res></topic>"),
        "{}",
        xml.body
    );
}

#[tokio::test]
async fn a_long_poll_of_several_topics_times_out_empty_and_checks_tokens() {
    let app = spawn_app_with(Settings {
        poll_timeout: Some(Duration::from_millis(300)),
        ..Settings::default()
    })
    .await;
    let answer = app.get("/subscribe.json?topic=a&topic=b").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["n"], json!(places(&[0, 0])));
    assert_eq!(answer.json()["topics"][1]["res"], json!([]));

    const SECRET: &[u8] = b"multi-poll secret";
    let hub = Hub::builder()
        .settings(Settings {
            private: vec![Pattern::parse("p-*").unwrap()],
            ..Settings::default()
        })
        .epochs(|| Epoch::from_bits(0))
        .token_key(TokenKey::secret(SECRET).unwrap())
        .build();
    let private = spawn_hub(crate::FRONTEND, hub, ServeOptions::default()).await;
    private.hub.publish("p-1", &1).unwrap();
    let refused = private
        .get("/subscribe.json?topic=open&topic=p-1&n=0,0")
        .await;
    assert_eq!(refused.status, 401, "{refused:?}");
    let token = Signer::secret(SECRET)
        .unwrap()
        .token(&Grant {
            subscribe: vec!["p-*".into()],
            ttl: Duration::from_secs(60),
            ..Grant::default()
        })
        .unwrap();
    let allowed = private
        .get(&format!(
            "/subscribe.json?topic=open&topic=p-1&n=0,0&access_token={token}"
        ))
        .await;
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert_eq!(allowed.json()["topics"][1]["res"], json!([1]));
}

// A WebSocket of several topics.

#[tokio::test]
async fn a_socket_of_several_topics_subscribes_unsubscribes_and_publishes_by_frames() {
    use super::websocket::{connect, next_frame, send};
    let app = spawn_app_with(Settings::default()).await;
    app.hub.publish("a", &1).unwrap();
    let mut ws = connect(&app, "/subscribe?topic=a&topic=b&n=0,0", &[]).await;
    let frame = next_frame(&mut ws).await;
    assert_eq!(
        frame,
        json!({"topic": "a", "id": 1, "epoch": EPOCH, "data": 1})
    );
    app.wait_for_subscribers("b", 1).await;
    app.hub.publish("b", &"x").unwrap();
    assert_eq!(next_frame(&mut ws).await["topic"], json!("b"));

    // Subscribe to c by frame; it counts as c's subscriber.
    send(&mut ws, r#"{"subscribe":"c"}"#).await;
    app.wait_for_subscribers("c", 1).await;
    app.hub.publish("c", &3).unwrap();
    let frame = next_frame(&mut ws).await;
    assert_eq!(
        (frame["topic"].clone(), frame["data"].clone()),
        (json!("c"), json!(3))
    );

    // Unsubscribe from a: its next message does not come; b's does.
    send(&mut ws, r#"{"unsubscribe":"a"}"#).await;
    app.wait_for_subscribers("a", 0).await;
    app.hub.publish("a", &2).unwrap();
    // Publish by frame to b: it comes back, as every message of b does.
    send(&mut ws, r#"{"publish":{"topic":"b","data":{"k":5}}}"#).await;
    let frame = next_frame(&mut ws).await;
    assert_eq!(
        frame["topic"],
        json!("b"),
        "a's message came after unsubscribing: {frame}"
    );
    assert_eq!(frame["data"], json!({"k": 5}));
    assert_eq!(app.hub.info("b").unwrap()["max"], json!(2));

    // Frames that are not commands get an error frame; the socket goes on.
    for bad in [
        r#""hello""#,
        r#"{"subscribe":"a b"}"#,
        r#"{"unsubscribe":"zz"}"#,
        r#"{"publish":{"topic":"b"}}"#,
        "not json",
    ] {
        send(&mut ws, bad).await;
        let frame = next_frame(&mut ws).await;
        assert!(frame["error"].is_string(), "{bad}: {frame}");
    }
    app.hub.publish("c", &4).unwrap();
    assert_eq!(next_frame(&mut ws).await["data"], json!(4));
}

#[tokio::test]
async fn a_socket_of_several_topics_needs_a_token_for_each_private_one() {
    use super::websocket::{connect, next_frame, send};
    const SECRET: &[u8] = b"multi-socket secret";
    let hub = Hub::builder()
        .settings(Settings {
            private: vec![Pattern::parse("p-*").unwrap()],
            ..Settings::default()
        })
        .epochs(|| Epoch::from_bits(0))
        .token_key(TokenKey::secret(SECRET).unwrap())
        .build();
    let app = spawn_hub(crate::FRONTEND, hub, ServeOptions::default()).await;
    // Without a token: open topics only; a private subscribe is refused.
    let mut anonymous = connect(&app, "/subscribe?topic=open", &[]).await;
    send(&mut anonymous, r#"{"subscribe":"p-1"}"#).await;
    let refused = next_frame(&mut anonymous).await;
    assert!(
        refused["error"].as_str().unwrap().contains("needs a token"),
        "{refused}"
    );
    // Publishing needs a right once a key is set.
    send(&mut anonymous, r#"{"publish":{"topic":"open","data":1}}"#).await;
    assert!(next_frame(&mut anonymous).await["error"].is_string());

    let token = Signer::secret(SECRET)
        .unwrap()
        .token(&Grant {
            subscribe: vec!["p-1".into()],
            publish: vec!["p-1".into()],
            ttl: Duration::from_secs(60),
            ..Grant::default()
        })
        .unwrap();
    let mut allowed = connect(&app, &format!("/subscribe?access_token={token}"), &[]).await;
    send(&mut allowed, r#"{"subscribe":"p-2"}"#).await;
    assert!(
        next_frame(&mut allowed).await["error"].is_string(),
        "p-2 is not the token's"
    );
    send(&mut allowed, r#"{"subscribe":"p-1"}"#).await;
    app.wait_for_subscribers("p-1", 1).await;
    send(&mut allowed, r#"{"publish":{"topic":"p-1","data":"mine"}}"#).await;
    let frame = next_frame(&mut allowed).await;
    assert_eq!(
        (frame["topic"].clone(), frame["data"].clone()),
        (json!("p-1"), json!("mine"))
    );
}
