//! Epochs over the wire (docs/protocol.md, "Epochs"): a server restarted
//! over a memory store, or a topic deleted and made again, starts a new
//! life of ids in a new epoch, and a client resuming from the old one is
//! told so on every transport instead of waiting in silence.

use serde_json::{json, Value};
use slosh_core::{Epoch, Hub};

use super::helpers::{read_until, spawn_hub, App, ServeOptions};
use super::websocket::{connect, next_frame};

/// A server with the production default: random epochs.
async fn spawn() -> App {
    spawn_hub(
        crate::FRONTEND,
        Hub::builder().build(),
        ServeOptions::default(),
    )
    .await
}

fn epoch_of(body: &Value) -> String {
    let epoch = body["epoch"].as_str().expect("an epoch").to_string();
    assert!(Epoch::parse(&epoch).is_some(), "{epoch}");
    epoch
}

#[tokio::test]
async fn a_restarted_memory_store_answers_an_old_cursor_with_a_reset_on_every_transport() {
    let mut before = spawn().await;
    for n in 1..=3 {
        assert_eq!(before.post_json("life", &n.to_string()).await.status, 200);
    }
    let old = epoch_of(&before.get("/topics/life.json?n=0").await.json());
    before.stop().await.unwrap();

    // The server comes back with nothing: one message of its new life.
    let after = spawn().await;
    assert_eq!(after.post_json("life", r#""new""#).await.status, 200);
    let cursor = format!("3@{old}");

    // Long-poll: reset, counted from 0 in the new life.
    let body = after
        .get(&format!("/topics/life.json?n={cursor}"))
        .await
        .json();
    let new = epoch_of(&body);
    assert_ne!(new, old);
    assert_eq!(
        body,
        json!({"max": 1, "epoch": new, "reset": true, "saw": 1, "delivering": 1, "res": ["new"]})
    );
    let xml = after
        .get(&format!("/topics/life.xml?n={cursor}"))
        .await
        .body;
    assert!(
        xml.contains(&format!(
            r#"<res max="1" epoch="{new}" reset="true" saw="1" delivering="1">"#
        )),
        "{xml}"
    );

    // SSE: an uncounted gap, then the new life from its first message.
    let mut stream = after
        .open("/topics/life.sse", &[("Last-Event-ID", &cursor)])
        .await;
    let mut seen = String::new();
    let expected = format!(
        "retry: 3000\n\nevent: gap\ndata: {{\"missed\":null}}\n\nid: 1@{new}\ndata: \"new\"\n\n"
    );
    read_until(
        &mut stream,
        &mut seen,
        &format!("id: 1@{new}\ndata: \"new\"\n\n"),
    )
    .await;
    // Chunk framing sits between the events; their order is what counts.
    let events = expected.split_inclusive("\n\n").collect::<Vec<_>>();
    let mut at = 0;
    for event in events {
        let found = seen[at..]
            .find(event)
            .unwrap_or_else(|| panic!("{event:?} in {seen:?}"));
        at += found + event.len();
    }

    // WebSocket: the same, as frames.
    let mut ws = connect(&after, &format!("/topics/life?n={cursor}"), &[]).await;
    let got = [next_frame(&mut ws).await, next_frame(&mut ws).await];
    assert_eq!(
        got,
        [
            json!({"missed": null}),
            json!({"id": 1, "epoch": new, "data": "new"})
        ]
    );

    // A bare cursor keeps SPEC's meaning: above max counts as 0, no reset.
    let bare = after.get("/topics/life.json?n=3").await.json();
    assert_eq!(bare.get("reset"), None, "{bare}");
    assert_eq!(bare["saw"], 1);
}

#[tokio::test]
async fn a_cursor_of_the_current_epoch_resumes_exactly() {
    let app = spawn().await;
    for n in 1..=3 {
        app.post_json("same", &n.to_string()).await;
    }
    let epoch = epoch_of(&app.get("/topics/same.json?n=0").await.json());
    let body = app
        .get(&format!("/topics/same.json?n=2@{epoch}"))
        .await
        .json();
    assert_eq!(
        body,
        json!({"max": 3, "epoch": epoch, "saw": 1, "delivering": 1, "res": [3]})
    );
    let mut stream = app
        .open(
            "/topics/same.sse",
            &[("Last-Event-ID", &format!("1@{epoch}"))],
        )
        .await;
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, &format!("id: 3@{epoch}\n")).await;
    assert!(!seen.contains("event: gap"), "{seen:?}");
    assert!(seen.contains(&format!("id: 2@{epoch}\n")), "{seen:?}");
    assert_eq!(app.hub.info("same").unwrap()["epoch"], epoch);
}

#[tokio::test]
async fn a_topic_deleted_and_made_again_is_a_new_epoch() {
    let app = spawn().await;
    app.post_json("again", "1").await;
    app.post_json("again", "2").await;
    let old = epoch_of(&app.get("/topics/again.json?n=0").await.json());
    assert_eq!(
        app.send("DELETE", "/topics/again", &[], b"").await.status,
        200
    );
    app.post_json("again", "3").await;
    let body = app
        .get(&format!("/topics/again.json?n=2@{old}"))
        .await
        .json();
    assert_ne!(epoch_of(&body), old);
    assert_eq!(body["reset"], true);
    assert_eq!(body["res"], json!([3]));
}

#[tokio::test]
async fn a_malformed_epoch_is_400_and_creates_nothing() {
    let app = spawn().await;
    for n in [
        "1@",
        "1@AAAAAAAA",
        "1@aaaa",
        "1@aaaaaaaa@aaaaaaaa",
        "01@aaaaaaaa",
        "@aaaaaaaa",
    ] {
        let answer = app.get(&format!("/topics/bad.json?n={n}")).await;
        assert_eq!(answer.status, 400, "n={n}: {}", answer.body);
        assert!(answer.body.contains("epoch"), "{}", answer.body);
    }
    let answer = app
        .send("GET", "/topics/bad.sse", &[("Last-Event-ID", "1@zz")], b"")
        .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(app.hub.info("bad").is_none());
}

/// With the file store the epoch outlives the server: a client resumes
/// exactly where it was, on this frontend as on the others.
#[tokio::test]
async fn over_a_file_store_a_restart_resumes_exactly() {
    let dir = std::env::temp_dir().join(format!(
        "slosh-conformance-{:?}-{}",
        crate::FRONTEND,
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("topics.db");
    let serve = |store: &slosh_file::FileStore| {
        let hub = Hub::builder().store(store.clone()).build();
        spawn_hub(crate::FRONTEND, hub, ServeOptions::default())
    };
    let store = slosh_file::FileStore::open(&file, slosh_file::Sync::Always).unwrap();
    let mut before = serve(&store).await;
    for n in 1..=3 {
        assert_eq!(before.post_json("kept", &n.to_string()).await.status, 200);
    }
    let epoch = epoch_of(&before.get("/topics/kept.json?n=0").await.json());
    before.stop().await.unwrap();
    drop(before);
    drop(store);

    // actix's workers drop their app, and with it the hub's handle on the
    // file, just after they report stopped: the file may stay open a
    // moment after the server returns (a new process never sees that).
    let mut tries = 0;
    let store = loop {
        match slosh_file::FileStore::open(&file, slosh_file::Sync::Always) {
            Ok(store) => break store,
            Err(error) => {
                tries += 1;
                assert!(tries < 500, "the file stayed open: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    };
    let after = serve(&store).await;
    let body = after
        .get(&format!("/topics/kept.json?n=1@{epoch}"))
        .await
        .json();
    assert_eq!(
        body,
        json!({"max": 3, "epoch": epoch, "saw": 2, "delivering": 2, "res": [2, 3]})
    );
    let mut stream = after
        .open(
            "/topics/kept.sse",
            &[("Last-Event-ID", &format!("2@{epoch}"))],
        )
        .await;
    let mut seen = String::new();
    read_until(
        &mut stream,
        &mut seen,
        &format!("id: 3@{epoch}\ndata: 3\n\n"),
    )
    .await;
    assert!(!seen.contains("event: gap"), "{seen:?}");
    assert_eq!(
        after.post_json("kept", "4").await.body,
        r#"{"ok":true,"id":4}"#
    );
    drop(after);
    let _ = std::fs::remove_dir_all(&dir);
}
