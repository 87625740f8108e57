//! Two servers of this frontend on one real Redis (`slosh-redis`): what
//! one accepts, the other's subscribers get, with the same ids and epoch;
//! while Redis is away a publish is a plain `503` and `/healthz` says
//! "degraded", and afterwards everything goes on.

use std::time::Duration;

use serde_json::json;
use slosh_core::Hub;
use slosh_redis::test_server::TestRedis;
use slosh_redis::RedisStore;

use super::helpers::{read_until, spawn_hub, App, ServeOptions};

async fn spawn(redis: &TestRedis) -> (App, RedisStore) {
    let store = RedisStore::open(&redis.url()).unwrap();
    let hub = Hub::builder().store(store.clone()).build();
    (
        spawn_hub(crate::FRONTEND, hub, ServeOptions::default()).await,
        store,
    )
}

#[tokio::test]
async fn two_servers_on_one_redis_share_ids_epochs_and_subscribers() {
    let mut redis = TestRedis::start_persistent();
    let (a, store) = spawn(&redis).await;
    let (b, _) = spawn(&redis).await;
    assert_eq!(a.post_json("s", "1").await.body, r#"{"ok":true,"id":1}"#);
    let first = b.get("/topics/s.json?n=0").await.json();
    let epoch = first["epoch"].as_str().unwrap().to_string();
    assert_eq!(first["res"], json!([1]));

    // An SSE subscriber on B gets what A accepts.
    let mut stream = b
        .open("/topics/s.sse", &[("Last-Event-ID", &format!("1@{epoch}"))])
        .await;
    b.wait_for_subscribers("s", 1).await;
    assert_eq!(a.post_json("s", "2").await.body, r#"{"ok":true,"id":2}"#);
    let mut seen = String::new();
    read_until(
        &mut stream,
        &mut seen,
        &format!("id: 2@{epoch}\ndata: 2\n\n"),
    )
    .await;

    // Redis away: refused plainly, nothing kept, the stream stays.
    redis.stop();
    for _ in 0..200 {
        if !store.is_up() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = a.post_json("s", "3").await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.header("Retry-After"), Some("1"));
    assert!(refused.json()["error"].as_str().unwrap().contains("Redis"));
    let health = a.get("/healthz").await;
    assert_eq!(health.status, 200);
    assert!(
        health.body.starts_with("degraded: Redis at"),
        "{}",
        health.body
    );
    assert_eq!(
        b.hub.info("s").unwrap()["subscribers"],
        1,
        "still connected"
    );

    // Back: the same life goes on, on both servers.
    redis.restart();
    for _ in 0..500 {
        if store.is_up() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(a.get("/healthz").await.body, "ok");
    assert_eq!(b.post_json("s", "4").await.body, r#"{"ok":true,"id":3}"#);
    read_until(
        &mut stream,
        &mut seen,
        &format!("id: 3@{epoch}\ndata: 4\n\n"),
    )
    .await;
    assert!(!seen.contains("event: gap"), "{seen:?}");
}
