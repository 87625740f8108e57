//! Two servers of this frontend on one real Redis (`slosh-redis`): what
//! one accepts, the other's subscribers get, with the same ids and epoch;
//! while Redis is away a publish is a plain `503` and `/healthz` says
//! "degraded", and afterwards everything goes on. And a store that stalls
//! (a Redis that stopped answering) holds up no other topic: its writes
//! run off the server's runtime.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::json;
use slosh_core::{Epoch, Hub, TopicName};
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

/// A store whose appends to topic `slow`, and whose opening of topic
/// `slow-open`, wait until the test opens the gate: a Redis that stopped
/// answering, a disk that stalls.
struct Stalled(Arc<(Mutex<bool>, Condvar)>);

/// Waits at the gate until the test opens it, or for 10 s: a frontend that
/// waits on its runtime thread then fails the test instead of hanging it.
fn wait_at(gate: &(Mutex<bool>, Condvar)) {
    let (open, opened) = gate;
    let open = open.lock().unwrap();
    let _ = opened
        .wait_timeout_while(open, Duration::from_secs(10), |open| !*open)
        .unwrap();
}

/// Opens the gate.
fn open_gate(gate: &(Mutex<bool>, Condvar)) {
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
}

struct StalledLog {
    cache: slosh_core::MemoryLog,
    gate: Option<Arc<(Mutex<bool>, Condvar)>>,
}

impl slosh_core::Store for Stalled {
    fn log(&self, name: &TopicName, queue: usize, fresh: Epoch) -> Box<dyn slosh_core::Log> {
        if name.as_str() == "slow-open" {
            wait_at(&self.0);
        }
        Box::new(StalledLog {
            cache: slosh_core::MemoryLog::new(queue, fresh),
            gate: (name.as_str() == "slow").then(|| Arc::clone(&self.0)),
        })
    }

    fn topics(&self) -> Vec<TopicName> {
        Vec::new()
    }
}

impl slosh_core::Log for StalledLog {
    fn append(
        &self,
        json: slosh_core::Json,
    ) -> Result<slosh_core::Message, slosh_core::StoreError> {
        if let Some(gate) = &self.gate {
            wait_at(gate);
        }
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
}

#[tokio::test]
async fn a_store_that_stalls_on_one_topic_holds_up_no_other() {
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let hub = Hub::builder().store(Stalled(Arc::clone(&gate))).build();
    let app = spawn_hub(crate::FRONTEND, hub, ServeOptions::default()).await;
    let addr = app.addr;
    let stuck = tokio::spawn(async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = "POST /topics/slow HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 1\r\nConnection: close\r\n\r\n1";
        tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
            .await
            .unwrap();
        let mut answer = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut answer)
            .await
            .unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    });
    for _ in 0..500 {
        if app.hub.info("slow").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(app.hub.info("slow").is_some(), "the stalled publish began");
    // A WebSocket publishing to the stalled topic waits too.
    let mut socket = super::websocket::connect(&app, "/topics/slow", &[]).await;
    super::websocket::send(&mut socket, "5").await;
    // The stalled appends run off the server's runtime thread: every other
    // topic is served meanwhile, publishes included.
    let other = tokio::time::timeout(Duration::from_secs(5), async {
        (
            app.post_json("fast", "2").await,
            app.get("/topics/fast.json?n=0").await,
        )
    })
    .await
    .expect("another topic was held up by the stalled store");
    assert_eq!(other.0.body, r#"{"ok":true,"id":1}"#);
    assert_eq!(other.1.json()["res"], json!([2]));
    assert!(!stuck.is_finished(), "the stalled publish is still waiting");
    open_gate(&gate);
    let answer = tokio::time::timeout(Duration::from_secs(5), stuck)
        .await
        .unwrap()
        .unwrap();
    // Released together, the POST and the socket's frame take ids 1 and 2
    // in either order.
    assert!(
        answer.ends_with(r#"{"ok":true,"id":1}"#) || answer.ends_with(r#"{"ok":true,"id":2}"#),
        "{answer}"
    );
    // The socket's frame was stored once the store went on, and comes
    // back to it (after the POST's message, if that one was first).
    let mut seen = Vec::new();
    while seen.last() != Some(&json!(5)) {
        seen.push(super::websocket::next_frame(&mut socket).await["data"].clone());
        assert!(seen.len() <= 2, "{seen:?}");
    }
}

/// Sends `request` on a connection of its own and reads the answer until
/// the server closes it.
async fn exchange(addr: std::net::SocketAddr, request: String) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut answer)
        .await
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_store_slow_to_open_one_topic_holds_up_no_other() {
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let hub = Hub::builder().store(Stalled(Arc::clone(&gate))).build();
    let app = spawn_hub(crate::FRONTEND, hub, ServeOptions::default()).await;
    let addr = app.addr;
    // Subscribers of a topic whose opening stalls: by long-poll and SSE.
    let polling = tokio::spawn(exchange(
        addr,
        "GET /topics/slow-open.json?n=0 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".into(),
    ));
    let streaming = tokio::spawn(exchange(
        addr,
        "GET /topics/slow-open.sse?n=0 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".into(),
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Meanwhile the server serves everything else: a topic it holds, one
    // it opens now, a publish that creates one.
    app.post_json("held", "1").await;
    let other = tokio::time::timeout(Duration::from_secs(5), async {
        (
            app.get("/topics/held.json?n=0").await,
            app.post_json("made", "2").await,
            app.get("/topics/made.json?n=0").await,
        )
    })
    .await
    .expect("another topic was held up by the store's slow opening");
    assert_eq!(other.0.json()["res"], json!([1]));
    assert_eq!(other.1.body, r#"{"ok":true,"id":1}"#);
    assert_eq!(other.2.json()["res"], json!([2]));
    // A subscriber opening another topic parks on it at once.
    let _parked = tokio::spawn(exchange(
        addr,
        "GET /topics/opened.json?n=0 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".into(),
    ));
    for _ in 0..500 {
        if app
            .hub
            .info("opened")
            .is_some_and(|info| info["subscribers"] == 1)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(app.hub.info("opened").unwrap()["subscribers"], 1);
    assert!(
        app.hub.info("slow-open").is_none(),
        "the opening is stalled"
    );
    assert!(!polling.is_finished() && !streaming.is_finished());
    open_gate(&gate);
    // Opened, the topic takes both subscribers, which get what follows.
    for _ in 0..500 {
        if app
            .hub
            .info("slow-open")
            .is_some_and(|info| info["subscribers"] == 2)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(app.hub.info("slow-open").unwrap()["subscribers"], 2);
    app.post_json("slow-open", "3").await;
    let polled = tokio::time::timeout(Duration::from_secs(5), polling)
        .await
        .unwrap()
        .unwrap();
    assert!(polled.contains(r#""res":[3]"#), "{polled}");
    app.hub.delete("slow-open");
    let streamed = tokio::time::timeout(Duration::from_secs(5), streaming)
        .await
        .unwrap()
        .unwrap();
    assert!(streamed.contains("id: 1@"), "{streamed}");
    assert!(streamed.contains("data: 3"), "{streamed}");
}

/// A store that counts its openings of topic `crowd` and holds the first
/// at the gate until the test opens it.
struct Counted {
    gate: Arc<(Mutex<bool>, Condvar)>,
    opened: Arc<std::sync::atomic::AtomicUsize>,
}

impl slosh_core::Store for Counted {
    fn log(&self, name: &TopicName, queue: usize, fresh: Epoch) -> Box<dyn slosh_core::Log> {
        if name.as_str() == "crowd" {
            self.opened
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            wait_at(&self.gate);
        }
        Box::new(slosh_core::MemoryLog::new(queue, fresh))
    }

    fn topics(&self) -> Vec<TopicName> {
        Vec::new()
    }
}

/// Threads of this process now.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |tasks| tasks.count())
}

#[tokio::test]
async fn subscribers_arriving_together_open_a_topic_once_on_one_thread() {
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let opened = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let store = Counted {
        gate: Arc::clone(&gate),
        opened: Arc::clone(&opened),
    };
    let app = spawn_hub(
        crate::FRONTEND,
        Hub::builder().store(store).build(),
        ServeOptions::default(),
    )
    .await;
    let before = threads();
    const CROWD: usize = 200;
    let subscribers: Vec<_> = (0..CROWD)
        .map(|_| {
            tokio::spawn(exchange(
                app.addr,
                "GET /topics/crowd.json?n=0 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                    .into(),
            ))
        })
        .collect();
    // Every request has reached the server and waits for the opening.
    for _ in 0..500 {
        if opened.load(std::sync::atomic::Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = threads();
    // One blocking thread opens; the rest wait without one (other tests
    // of this binary run meanwhile, hence the margin).
    assert!(
        during < before + CROWD / 2,
        "{before} threads before, {during} while {CROWD} subscribers waited"
    );
    open_gate(&gate);
    for _ in 0..500 {
        if app
            .hub
            .info("crowd")
            .is_some_and(|info| info["subscribers"] == CROWD)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(app.hub.info("crowd").unwrap()["subscribers"], CROWD);
    assert_eq!(opened.load(std::sync::atomic::Ordering::SeqCst), 1);
    app.post_json("crowd", "7").await;
    for subscriber in subscribers {
        let answer = tokio::time::timeout(Duration::from_secs(5), subscriber)
            .await
            .unwrap()
            .unwrap();
        assert!(answer.contains(r#""res":[7]"#), "{answer}");
    }
}

/// The `Cookie` header a browser would send after `answer`, on top of the
/// cookies it had (`jar`): every `Set-Cookie` of the answer replaces the
/// cookie of the same name.
fn keep_cookies(jar: &mut Vec<(String, String)>, answer: &super::helpers::Answer) {
    for (name, value) in &answer.headers {
        if !name.eq_ignore_ascii_case("Set-Cookie") {
            continue;
        }
        let pair = value.split(';').next().unwrap_or("");
        if let Some((name, value)) = pair.split_once('=') {
            jar.retain(|(kept, _)| kept != name);
            jar.push((name.to_string(), value.to_string()));
        }
    }
}

fn cookie_header(jar: &[(String, String)]) -> String {
    jar.iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test]
async fn a_session_client_keeps_its_place_on_whichever_server_it_reaches() {
    let redis = TestRedis::start();
    let (a, _) = spawn(&redis).await;
    let (b, _) = spawn(&redis).await;
    let mut jar = Vec::new();
    let poll = |app: &App, jar: &[(String, String)]| {
        let (cookie, addr) = (cookie_header(jar), app.addr);
        async move {
            let headers: Vec<(&str, &str)> = if cookie.is_empty() {
                Vec::new()
            } else {
                vec![("Cookie", cookie.as_str())]
            };
            super::helpers::Client { addr }
                .send("GET", "/topics/s.json", &headers, b"")
                .await
        }
    };
    // A new client on A starts at max (nothing yet) and gets 1, published
    // on B, with its session cookie and its place.
    assert_eq!(a.post_json("s", "0").await.status, 200);
    let waiting = tokio::spawn(poll(&a, &jar));
    a.wait_for_subscribers("s", 1).await;
    assert_eq!(b.post_json("s", "1").await.status, 200);
    let first = waiting.await.unwrap();
    assert_eq!(first.json()["res"], json!([1]));
    keep_cookies(&mut jar, &first);
    assert!(
        jar.iter()
            .any(|(name, value)| name == "slosh_cursor_s" && value.starts_with("2@")),
        "{jar:?}"
    );

    // 2 is published while the client is between polls; its next poll
    // reaches B, which never saw its session: it still gets 2, not
    // "a new client starting at max".
    assert_eq!(a.post_json("s", "2").await.status, 200);
    let second = poll(&b, &jar).await;
    assert_eq!(second.json()["res"], json!([2]), "{}", second.body);
    keep_cookies(&mut jar, &second);

    // Back on A, whose session says 1: the cookie's place (3) wins, so
    // nothing is sent twice.
    assert_eq!(b.post_json("s", "3").await.status, 200);
    let third = poll(&a, &jar).await;
    assert_eq!(third.json()["res"], json!([3]), "{}", third.body);
}
