//! Long-poll and publish over real HTTP.

use std::time::Duration;

use serde_json::json;
use slosh_core::Settings;

use super::helpers::{spawn_app, spawn_app_with};

#[tokio::test]
async fn the_readme_walkthrough_byte_for_byte() {
    let app = spawn_app().await;
    // A GET that waits …
    let waiting = {
        let addr = app.addr;
        tokio::spawn(async move {
            let app = super::helpers::Client { addr };
            app.get("/topics/chat").await
        })
    };
    app.wait_for_subscribers("chat", 1).await;
    // … is answered by curl -d 'x=hello!'.
    let published = app.post_form("chat", "x=hello!").await;
    assert_eq!(published.status, 200);
    assert_eq!(published.body, r#"{"ok":true,"id":1}"#);
    let answer = waiting.await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("content-type"),
        Some("text/xml; charset=utf-8")
    );
    assert_eq!(answer.header("cache-control"), Some("no-cache, no-store"));
    assert!(answer
        .header("set-cookie")
        .unwrap()
        .starts_with("slosh_session="));
    assert_eq!(
        answer.body,
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<res max=\"1\" epoch=\"aaaaaaaa\" saw=\"1\" delivering=\"1\"><p><x>hello!</x></p></res>"
    );
    // The JSON version, and saw.
    for text in ["two", "three", "four"] {
        app.post_form("chat", &format!("x={text}")).await;
    }
    let answer = app.get("/topics/chat.json?n=1").await;
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(
        answer.body,
        r#"{"max":4,"epoch":"aaaaaaaa","saw":3,"delivering":3,"res":[{"x":["two"]},{"x":["three"]},{"x":["four"]}]}"#
    );
}

#[tokio::test]
async fn five_hundred_parked_polls_are_all_answered_by_one_publish() {
    let app = spawn_app().await;
    let mut polls = Vec::new();
    for _ in 0..500 {
        let app = super::helpers::Client { addr: app.addr };
        polls.push(tokio::spawn(async move {
            app.get("/topics/crowd.json?n=0").await
        }));
    }
    app.wait_for_subscribers("crowd", 500).await;
    app.post_json("crowd", r#"{"hello":"everyone"}"#).await;
    for poll in polls {
        let answer = poll.await.unwrap();
        assert_eq!(
            answer.json(),
            json!({"max":1,"epoch":"aaaaaaaa","saw":1,"delivering":1,"res":[{"hello":"everyone"}]})
        );
    }
}

#[tokio::test]
async fn a_burst_of_a_thousand_posts_is_retrievable_in_order() {
    let app = spawn_app_with(Settings {
        queue: 2000,
        ..Settings::default()
    })
    .await;
    for i in 1..=1000 {
        let answer = app.post_json("burst", &i.to_string()).await;
        assert_eq!(answer.json()["id"], i);
    }
    let answer = app.get("/topics/burst.json?n=0").await.json();
    let expected: Vec<u64> = (1..=1000).collect();
    assert_eq!(answer["res"], json!(expected));
    assert_eq!(
        (answer["saw"].clone(), answer["delivering"].clone()),
        (json!(1000), json!(1000))
    );
}

#[tokio::test]
async fn a_parked_poll_times_out_with_an_empty_batch() {
    let app = spawn_app_with(Settings {
        poll_timeout: Some(Duration::from_millis(300)),
        ..Settings::default()
    })
    .await;
    let answer = app.get("/topics/quiet.json?n=0").await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.json(),
        json!({"max":0,"epoch":"aaaaaaaa","saw":0,"delivering":0,"res":[]})
    );
}

#[tokio::test]
async fn errors_carry_the_specs_status_and_a_json_body() {
    let app = spawn_app_with(Settings {
        max_message: 8,
        publish_token: Some("t0ken".into()),
        ..Settings::default()
    })
    .await;
    let cases = [
        ("GET", "/topics/a%2Fb", vec![], "", 400),
        ("GET", "/topics/a.txt", vec![], "", 400),
        ("GET", "/topics/a?n=1.5", vec![], "", 400),
        ("FROB", "/topics/a", vec![], "", 405),
        ("POST", "/topics/a", vec![], "x=1", 401),
        (
            "POST",
            "/topics/a",
            vec![("Authorization", "Bearer t0ken")],
            "",
            400,
        ),
        (
            "POST",
            "/topics/a",
            vec![("Authorization", "Bearer t0ken")],
            "x=123456789",
            413,
        ),
        (
            "POST",
            "/topics/a",
            vec![
                ("Authorization", "Bearer t0ken"),
                ("Content-Type", "text/xml"),
            ],
            "<a/>",
            415,
        ),
        ("GET", "/topics/none.info", vec![], "", 404),
    ];
    for (method, target, headers, body, status) in cases {
        let answer = app.send(method, target, &headers, body.as_bytes()).await;
        assert_eq!(answer.status, status, "{method} {target} {body:?}");
        assert!(answer.json()["error"].is_string(), "{method} {target}");
    }
    assert_eq!(
        app.hub.info("a"),
        None,
        "no refused publish stored anything"
    );
    let ok = app
        .send(
            "POST",
            "/topics/a",
            &[("Authorization", "Bearer t0ken")],
            b"x=1",
        )
        .await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn a_body_of_exactly_max_message_is_accepted_and_one_more_is_413() {
    let app = spawn_app_with(Settings {
        max_message: 16,
        ..Settings::default()
    })
    .await;
    let plain = [("Content-Type", "text/plain")];
    assert_eq!(
        app.send("POST", "/topics/t", &plain, &[b'a'; 16])
            .await
            .status,
        200
    );
    assert_eq!(
        app.send("POST", "/topics/t", &plain, &[b'a'; 17])
            .await
            .status,
        413
    );
    assert_eq!(app.hub.info("t").unwrap()["max"], 1);
}

#[tokio::test]
async fn shutdown_answers_parked_polls_and_returns_promptly() {
    let mut app = spawn_app().await;
    let mut polls = Vec::new();
    for _ in 0..20 {
        let app = super::helpers::Client { addr: app.addr };
        polls.push(tokio::spawn(
            async move { app.get("/topics/t.json?n=0").await },
        ));
    }
    app.wait_for_subscribers("t", 20).await;
    let started = std::time::Instant::now();
    app.stop().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    for poll in polls {
        let answer = poll.await.unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.json()["delivering"], 0);
    }
}
