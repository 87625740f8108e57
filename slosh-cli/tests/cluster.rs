//! Three `slosh-cli serve` nodes on one real redis-server, as a user runs
//! them behind a load balancer: publishes spread over every node,
//! subscribers over every node and transport (SSE, long-poll JSON and XML
//! through `slosh-cli watch`, WebSocket), and every subscriber gets every
//! message answered `200` exactly once, in one id order, through a
//! subscriber moving nodes with `Last-Event-ID`, a node killed with
//! `kill -9` and restarted, and Redis stopped for 5 s and restarted.

mod restart;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use slosh_redis::test_server::TestRedis;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a subscriber received: id → message, and whether any id came twice
/// or out of order.
#[derive(Default)]
struct Received {
    messages: BTreeMap<u64, Value>,
    faults: Vec<String>,
    last: u64,
}

impl Received {
    fn take(&mut self, id: u64, message: Value) {
        if id <= self.last {
            self.faults.push(format!("id {id} after {}", self.last));
        }
        self.last = id;
        self.messages.insert(id, message);
    }
}

type Shared = Arc<Mutex<Received>>;

/// One `serve` node on a port of its own, kept across restarts.
struct Node {
    port: u16,
    redis: String,
    child: Option<Child>,
}

impl Node {
    fn start(redis: &TestRedis) -> Node {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut node = Node {
            port,
            redis: redis.url(),
            child: None,
        };
        node.restart();
        node
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_slosh-cli"));
        command
            .args(["serve", "--bind", &self.addr(), "--store", &self.redis])
            .args(["--heartbeat", "1s", "--poll-timeout", "2s"]);
        let (child, _, mut log) = restart::spawn_listening(&mut command);
        std::thread::spawn(move || std::io::copy(&mut log, &mut std::io::sink()));
        self.child = Some(child);
    }

    fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// One request on its own connection: (status, headers and body).
async fn send(addr: &str, method: &str, target: &str, body: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
        .await
        .ok()?
        .ok()?;
    Some((answer.get(9..12)?.parse().ok()?, answer))
}

/// `slosh-cli watch` of `url` in `format`, from the start, collecting.
fn watch(url: String, format: &str, into: Shared) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_slosh-cli"))
        .args(["watch", "--from", "0", "-q", "--format", format, &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            let (id, message) = line.split_once(' ').unwrap();
            let id = id.split('@').next().unwrap().parse().unwrap();
            // JSON as sent, or (for XML) the message's element as text.
            let message = serde_json::from_str(message)
                .unwrap_or_else(|_| Value::String(message.to_string()));
            into.lock().unwrap().take(id, message);
        }
    });
    child
}

/// An SSE subscriber reading `addrs[0]` from the start; after `move_after`
/// events it hangs up and goes on at `addrs[1]` with `Last-Event-ID`, and
/// after any failure it reconnects (to the node it is on) the same way.
async fn sse(addrs: [String; 2], move_after: usize, into: Shared, until: Instant) {
    let mut last_id: Option<String> = None;
    let mut on = 0;
    let mut seen = 0;
    while Instant::now() < until {
        let Ok(mut stream) = tokio::net::TcpStream::connect(&addrs[on]).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let resume = last_id
            .as_ref()
            .map_or_else(String::new, |id| format!("Last-Event-ID: {id}\r\n"));
        let target = if last_id.is_some() {
            "/topics/c.sse"
        } else {
            "/topics/c.sse?n=0"
        };
        let request = format!("GET {target} HTTP/1.1\r\nHost: t\r\n{resume}\r\n");
        if stream.write_all(request.as_bytes()).await.is_err() {
            continue;
        }
        let mut buf = Vec::new();
        let mut decoder = None;
        let mut parser = slosh_client::sse::Parser::new(1 << 20);
        let mut body = Vec::new();
        let mut chunk = [0u8; 4096];
        'read: loop {
            let read = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut chunk)).await;
            let n = match read {
                Ok(Ok(n)) if n > 0 => n,
                _ => break 'read,
            };
            buf.extend_from_slice(&chunk[..n]);
            if decoder.is_none() {
                match slosh_client::http::parse_head(&buf, slosh_client::http::Keep::FramingOnly) {
                    Ok(Some((head, used))) => {
                        assert_eq!(head.status, 200);
                        decoder = Some(slosh_client::http::BodyDecoder::new(head.framing));
                        buf.drain(..used);
                    }
                    Ok(None) => continue,
                    Err(error) => panic!("{error}"),
                }
            }
            let Some(decoder) = decoder.as_mut() else {
                continue;
            };
            body.clear();
            if decoder.decode(&buf, &mut body).is_err() {
                break 'read;
            }
            buf.clear();
            let mut hang_up = false;
            let fed = parser.feed(&body, |event| {
                if !event.is_message() {
                    // A gap or a reset: worth seeing when a check fails.
                    into.lock().unwrap().faults.push(format!(
                        "note: {:?} {} after {:?} on node {on}",
                        event.kind,
                        event.text(),
                        last_id
                    ));
                }
                if event.is_message() {
                    let id = event.id.clone().unwrap_or_default();
                    let number = id.split('@').next().unwrap().parse().unwrap();
                    into.lock()
                        .unwrap()
                        .take(number, serde_json::from_str(&event.text()).unwrap());
                    last_id = Some(id);
                    seen += 1;
                    if seen == move_after && on == 0 {
                        hang_up = true;
                    }
                }
            });
            if fed.is_err() {
                break 'read;
            }
            if hang_up {
                on = 1;
                break 'read;
            }
        }
    }
}

/// A WebSocket subscriber on `addr`, resuming with `n` after any failure.
async fn websocket(addr: String, into: Shared, until: Instant) {
    let mut cursor = "0".to_string();
    while Instant::now() < until {
        let url = format!("ws://{addr}/topics/c?n={cursor}");
        let Ok((mut socket, _)) = tokio_tungstenite::connect_async(&url).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        while let Ok(Some(Ok(frame))) =
            tokio::time::timeout(Duration::from_secs(3), socket.next()).await
        {
            let Ok(text) = frame.to_text() else { continue };
            let Ok(frame) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            if let (Some(id), Some(epoch)) = (frame["id"].as_u64(), frame["epoch"].as_str()) {
                into.lock().unwrap().take(id, frame["data"].clone());
                cursor = format!("{id}@{epoch}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_on_one_redis_deliver_every_message_once_in_order_through_faults() {
    let mut redis = TestRedis::start_persistent();
    let mut nodes = [
        Node::start(&redis),
        Node::start(&redis),
        Node::start(&redis),
    ];
    let addrs: Vec<String> = nodes.iter().map(Node::addr).collect();
    let until = Instant::now() + Duration::from_secs(90);

    // Subscribers, spread over the nodes and transports.
    let subscribers: Vec<(&str, Shared)> = ["sse (moves 0→1)", "json on 1", "xml on 2", "ws on 2"]
        .into_iter()
        .map(|name| (name, Shared::default()))
        .collect();
    let sse_task = tokio::spawn(sse(
        [addrs[0].clone(), addrs[1].clone()],
        10,
        Arc::clone(&subscribers[0].1),
        until,
    ));
    let mut watchers = vec![
        watch(
            format!("http://{}/topics/c.json", addrs[1]),
            "json",
            Arc::clone(&subscribers[1].1),
        ),
        watch(
            format!("http://{}/topics/c.xml", addrs[2]),
            "xml",
            Arc::clone(&subscribers[2].1),
        ),
    ];
    let ws_task = tokio::spawn(websocket(
        addrs[2].clone(),
        Arc::clone(&subscribers[3].1),
        until,
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Publishes round the nodes; every one answered 200 must arrive.
    let mut answered: BTreeMap<u64, Value> = BTreeMap::new();
    let mut next = 0u64;
    let publish = |node: usize, next: u64| {
        let addr = addrs[node].clone();
        async move {
            let body = format!(r#"{{"n":{next}}}"#);
            send(&addr, "POST", "/topics/c", &body)
                .await
                .map(|(status, answer)| {
                    let id = (status == 200).then(|| {
                        let body = answer.split_once("\r\n\r\n").unwrap().1;
                        serde_json::from_str::<Value>(body).unwrap()["id"]
                            .as_u64()
                            .unwrap()
                    });
                    (
                        status,
                        id,
                        serde_json::from_str::<Value>(&body).unwrap(),
                        answer,
                    )
                })
        }
    };
    let mut round = |count: usize, on: Vec<usize>| {
        let jobs: Vec<(usize, u64)> = (0..count)
            .map(|i| {
                next += 1;
                (on[i % on.len()], next)
            })
            .collect();
        jobs
    };
    for (node, n) in round(30, vec![0, 1, 2]) {
        let (status, id, message, answer) = publish(node, n).await.unwrap();
        assert_eq!(status, 200, "{answer}");
        answered.insert(id.unwrap(), message);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // kill -9 a node in the middle of publishing, and bring it back.
    nodes[2].kill_9();
    for (node, n) in round(10, vec![0, 1]) {
        let (status, id, message, answer) = publish(node, n).await.unwrap();
        assert_eq!(status, 200, "{answer}");
        answered.insert(id.unwrap(), message);
    }
    nodes[2].restart();
    for (node, n) in round(10, vec![2, 0, 1]) {
        let (status, id, message, answer) = publish(node, n).await.unwrap();
        assert_eq!(status, 200, "{answer}");
        answered.insert(id.unwrap(), message);
    }

    // Redis away for 5 s: publishes are refused, plainly, and /healthz says so.
    redis.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, _, _, answer) = publish(1, 0).await.unwrap();
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer.contains("Retry-After") || answer.contains("retry-after"),
        "{answer}"
    );
    assert!(answer.contains("Redis"), "{answer}");
    let (_, health) = send(&addrs[0], "GET", "/healthz", "").await.unwrap();
    assert!(health.contains("degraded"), "{health}");
    tokio::time::sleep(Duration::from_millis(4500)).await;
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, health) = send(&addrs[0], "GET", "/healthz", "").await.unwrap();
        if health.ends_with("ok") {
            break;
        }
        assert!(Instant::now() < deadline, "never healthy again: {health}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (node, n) in round(10, vec![1, 2, 0]) {
        let (status, id, message, answer) = publish(node, n).await.unwrap();
        assert_eq!(status, 200, "{answer}");
        answered.insert(id.unwrap(), message);
    }
    let ids: Vec<u64> = answered.keys().copied().collect();
    assert_eq!(
        ids,
        (1..=60).collect::<Vec<u64>>(),
        "ids given once each, none skipped"
    );

    // Every subscriber gets every answered message, once, in order.
    let deadline = Instant::now() + Duration::from_secs(30);
    for (name, received) in &subscribers {
        loop {
            let done = received.lock().unwrap().messages.len() >= answered.len();
            if done || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let received = received.lock().unwrap();
        assert!(received.faults.is_empty(), "{name}: {:?}", received.faults);
        let expected: BTreeMap<u64, Value> = if name.starts_with("xml") {
            // What SPEC 3's mapping makes of {"n":N}.
            answered
                .iter()
                .map(|(id, message)| {
                    (
                        *id,
                        Value::String(format!("<p><n>{}</n></p>", message["n"])),
                    )
                })
                .collect()
        } else {
            answered.clone()
        };
        assert_eq!(received.messages, expected, "{name}");
    }
    for watcher in &mut watchers {
        let _ = watcher.kill();
        let _ = watcher.wait();
    }
    sse_task.abort();
    ws_task.abort();
}
