//! Two hubs on one real Redis, as two slosh servers: ids are shared and
//! never skipped, appends on one wake subscribers on the other, a deletion
//! or a lost topic ends it everywhere, and a Redis that goes away is a
//! refusal, not a hang, until it comes back.

mod common;

use std::time::{Duration, Instant};

use common::{eventually, poll};
use serde_json::{json, Value};
use slosh_core::{Epoch, Hub};
use slosh_redis::test_server::TestRedis;
use slosh_redis::RedisStore;

/// A hub on `redis`, as server number `server`: its epochs are its own,
/// each new life a new one, so a test can tell whose claim won.
fn hub(redis: &TestRedis, server: u64) -> (Hub, RedisStore) {
    let store = RedisStore::open(&redis.url()).unwrap();
    let lives = std::sync::atomic::AtomicU64::new(0);
    let hub = Hub::builder()
        .epochs(move || {
            let life = lives.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Epoch::from_bits(server << 20 | life)
        })
        .store(store.clone())
        .build();
    (hub, store)
}

#[test]
fn a_publish_on_one_server_wakes_a_subscriber_on_another_with_the_same_ids_and_epoch() {
    let redis = TestRedis::start();
    let (a, _) = hub(&redis, 1);
    let (b, _) = hub(&redis, 2);
    assert_eq!(a.publish("t", &1).unwrap().id, Some(1));
    // B opens the topic A made: its epoch, its ids.
    let first = poll(&b, "/topics/t.json?n=0", Duration::from_secs(5));
    assert_eq!(first["res"], json!([1]));
    assert_eq!(first["epoch"], a.info("t").unwrap()["epoch"]);
    // Parked on B, woken by A.
    let waiting = std::thread::spawn({
        let b = b.clone();
        move || poll(&b, "/topics/t.json?n=1", Duration::from_secs(5))
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(a.publish("t", &2).unwrap().id, Some(2));
    let woken = waiting.join().unwrap();
    assert_eq!(
        (woken["max"].clone(), woken["res"].clone()),
        (json!(2), json!([2]))
    );
    // And the other way round.
    assert_eq!(b.publish("t", &3).unwrap().id, Some(3));
    assert_eq!(
        poll(&a, "/topics/t.json?n=2", Duration::from_secs(5))["res"],
        json!([3])
    );
}

#[test]
fn two_servers_publishing_at_once_never_share_or_skip_an_id() {
    let redis = TestRedis::start();
    let (a, _) = hub(&redis, 1);
    let (b, _) = hub(&redis, 2);
    let lanes: Vec<_> = [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
        .map(|(lane, hub)| {
            std::thread::spawn(move || {
                (0..100)
                    .map(|i| {
                        let value = lane * 1000 + i;
                        (hub.publish("race", &value).unwrap().id.unwrap(), value)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut answered: Vec<(u64, usize)> = lanes
        .into_iter()
        .flat_map(|lane| lane.join().unwrap())
        .collect();
    answered.sort();
    let ids: Vec<u64> = answered.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (1..=400).collect::<Vec<u64>>());
    // Both servers' caches end up holding the same 100 newest, in order.
    let newest: Vec<Value> = answered[300..].iter().map(|(_, v)| json!(v)).collect();
    for hub in [&a, &b] {
        eventually("every message reached both caches", || {
            hub.info("race").is_some_and(|info| info["max"] == 400)
        });
        let batch = poll(hub, "/topics/race.json?n=300", Duration::from_secs(5));
        assert_eq!(batch["res"], Value::Array(newest.clone()));
    }
}

#[test]
fn a_delete_on_one_server_ends_the_topic_on_every_server() {
    let redis = TestRedis::start();
    let (a, _) = hub(&redis, 1);
    let (b, _) = hub(&redis, 2);
    a.publish("d", &1).unwrap();
    let old = poll(&b, "/topics/d.json?n=0", Duration::from_secs(5))["epoch"].clone();
    assert!(a.delete("d"));
    eventually("B forgot the topic", || b.info("d").is_none());
    // The next life is new everywhere, and both agree on it.
    assert_eq!(b.publish("d", &2).unwrap().id, Some(1));
    let new = poll(&a, "/topics/d.json?n=0", Duration::from_secs(5));
    assert_eq!(new["res"], json!([2]));
    assert_ne!(new["epoch"], old);
    assert_eq!(new["epoch"], b.info("d").unwrap()["epoch"]);
}

#[test]
fn without_redis_a_publish_is_refused_and_after_it_everything_goes_on() {
    let mut redis = TestRedis::start_persistent();
    let (a, store) = hub(&redis, 1);
    let (b, _) = hub(&redis, 2);
    a.publish("p", &1).unwrap();
    poll(&b, "/topics/p.json?n=0", Duration::from_secs(5));
    redis.stop();
    eventually("the store noticed", || !store.is_up());
    let refused = a.publish("p", &2).unwrap_err();
    assert_eq!(refused.status(), 503, "{refused}");
    assert!(refused.to_string().contains("Redis"), "{refused}");
    assert_eq!(a.info("p").unwrap()["max"], 1, "nothing kept");
    redis.restart();
    eventually("the store is back", || store.is_up());
    assert_eq!(a.publish("p", &3).unwrap().id, Some(2));
    let caught = poll(&b, "/topics/p.json?n=1", Duration::from_secs(5));
    assert_eq!(caught["res"], json!([3]));
    assert_eq!(caught["epoch"], a.info("p").unwrap()["epoch"], "same life");
}

#[test]
fn a_redis_that_lost_a_topic_ends_it_with_a_reset_never_silently() {
    let mut redis = TestRedis::start();
    let (a, store) = hub(&redis, 1);
    let (b, _) = hub(&redis, 2);
    a.publish("l", &1).unwrap();
    let old = poll(&b, "/topics/l.json?n=0", Duration::from_secs(5))["epoch"].clone();
    // No persistence: the restart loses everything.
    redis.restart();
    eventually("both servers ended the old life", || {
        store.is_up() && a.info("l").is_none() && b.info("l").is_none()
    });
    assert_eq!(a.publish("l", &2).unwrap().id, Some(1));
    let reset = poll(
        &b,
        &format!("/topics/l.json?n=1@{}", old.as_str().unwrap()),
        Duration::from_secs(5),
    );
    assert_eq!(reset["reset"], true, "{reset}");
    assert_eq!(reset["res"], json!([2]));
}

#[test]
fn a_publish_into_a_life_redis_no_longer_holds_is_refused_and_ends_it() {
    let redis = TestRedis::start();
    let (a, _) = hub(&redis, 1);
    assert_eq!(a.publish("gone", &1).unwrap().id, Some(1));
    // Redis loses the topic without a word (an eviction, a FLUSHDB).
    let mut con = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    redis::cmd("DEL")
        .arg("slosh:gone")
        .arg("slosh:gone:log")
        .query::<u64>(&mut con)
        .unwrap();
    // The append finds another life (none): refused, and this one ends
    // (without deadlocking the hub that appends under its table's lock).
    let refused = a.publish("gone", &2).unwrap_err();
    assert_eq!(refused.status(), 503, "{refused}");
    eventually("the old life ended", || a.info("gone").is_none());
    assert_eq!(a.publish("gone", &3).unwrap().id, Some(1), "a new life");
}

#[test]
fn a_redis_that_wants_a_password_is_used_with_it_and_refused_without() {
    let redis = TestRedis::start_with_password("s3cret pass");
    let url = redis.url();
    assert!(url.contains("s3cret"), "{url}");
    let store = RedisStore::open(&url).unwrap();
    assert!(store.is_up());
    assert!(!store.url().contains("s3cret"), "{}", store.url());
    let hub = Hub::builder().store(store).build();
    assert_eq!(hub.publish("a", &1).unwrap().id, Some(1));

    let wrong = RedisStore::open(&url.replace("s3cret", "wrong")).unwrap();
    assert!(!wrong.is_up());
    let refused = Hub::builder()
        .store(wrong)
        .build()
        .publish("a", &2)
        .unwrap_err();
    assert_eq!(refused.status(), 503, "{refused}");
    assert!(!refused.to_string().contains("wrong"), "{refused}");
}

#[test]
fn counts_and_mailbox_watchers_are_the_whole_clusters() {
    let redis = TestRedis::start();
    let mailbox = |server: u64| {
        let store = RedisStore::open(&redis.url()).unwrap();
        Hub::builder()
            .epochs(move || Epoch::from_bits(server))
            .settings(slosh_core::Settings {
                mode: slosh_core::Mode::Mailbox,
                ..slosh_core::Settings::default()
            })
            .store(store)
            .build()
    };
    let (a, b) = (mailbox(1), mailbox(2));
    // Nobody holds the mailbox anywhere: refused, as on one server.
    assert_eq!(a.publish("m", &0).unwrap_err().status(), 404);

    // B's subscriber, told to Redis by B's sweep.
    let waiting = std::thread::spawn({
        let b = b.clone();
        move || poll(&b, "/topics/m.json?n=0", Duration::from_secs(10))
    });
    eventually("B holds the topic", || b.info("m").is_some());
    let sweeps = std::thread::spawn({
        let b = b.clone();
        move || {
            for _ in 0..30 {
                b.sweep(Instant::now());
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });
    // A accepts the POST because B watches.
    eventually("A hears B holds it", || a.publish("m", &1).is_ok());
    assert_eq!(waiting.join().unwrap()["res"], json!([1]));
    // A's .info counts B's parked subscriber, and stops when it leaves.
    let waiting = std::thread::spawn({
        let b = b.clone();
        move || poll(&b, "/topics/m.json?n=1", Duration::from_secs(10))
    });
    eventually("A counts B's subscriber", || {
        a.sweep(Instant::now());
        a.info("m").is_some_and(|info| info["subscribers"] == 1)
    });
    assert_eq!(a.publish("m", &2).unwrap().id, Some(2));
    assert_eq!(waiting.join().unwrap()["res"], json!([2]));
    eventually("A no longer counts it", || {
        a.info("m").is_some_and(|info| info["subscribers"] == 0)
    });
    sweeps.join().unwrap();
}

#[test]
fn topics_lists_what_every_server_holds() {
    let redis = TestRedis::start();
    let (a, _) = hub(&redis, 1);
    let (b, _) = hub(&redis, 2);
    a.publish("x", &1).unwrap();
    a.publish("x", &2).unwrap();
    a.publish("y", &3).unwrap();
    b.publish("z", &4).unwrap();
    // B holds only z, and lists x and y from Redis (within a second or two
    // of being asked), with A's figures and epochs.
    let names = |hub: &Hub| -> Vec<(String, Value)> {
        hub.list()["topics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|info| {
                (
                    info["topic"].as_str().unwrap().to_string(),
                    info["max"].clone(),
                )
            })
            .collect()
    };
    let all = vec![
        ("x".to_string(), json!(2)),
        ("y".to_string(), json!(1)),
        ("z".to_string(), json!(1)),
    ];
    eventually("B lists every topic", || names(&b) == all);
    let x = b.list()["topics"][0].clone();
    assert_eq!(x["epoch"], a.info("x").unwrap()["epoch"]);
    assert!(b.info("x").is_none(), "listed, not opened");
    assert!(a.delete("x"));
    eventually("B no longer lists x", || names(&b) == all[1..]);
}

#[test]
fn a_second_log_of_a_topic_dropped_leaves_the_first_following_it() {
    // Requests opening one topic at once each make a log; the hub keeps
    // the first and drops the rest, and the first must go on hearing what
    // other servers publish (it did not: the drop unsubscribed the topic).
    use slosh_core::{Log, TopicName};
    let redis = TestRedis::start();
    let (a, _) = hub(&redis, 1);
    let store = RedisStore::open(&redis.url()).unwrap();
    let name = TopicName::parse("twice").unwrap();
    let kept = store.log(&name, 10, Epoch::from_bits(7));
    let dropped = store.log(&name, 10, Epoch::from_bits(8));
    drop(dropped);
    // The drop has reached the watcher once a later follow has: a third
    // log, made and kept, is subscribed after it.
    let later = store.log(&TopicName::parse("later").unwrap(), 10, Epoch::from_bits(9));
    eventually("the watcher subscribed the later topic", || {
        a.publish("later", &0).unwrap();
        later.max() > 0
    });
    for n in 1..=3 {
        a.publish("twice", &n).unwrap();
    }
    eventually("the kept log heard all three", || kept.max() == 3);
}
