//! End to end in a real browser: headless Chromium (Debian's `chromium`,
//! installed here if missing) opens the built-in SSE demo page, sees
//! published messages arrive through `EventSource`, resumes by
//! `Last-Event-ID` across a server restart without losing or repeating a
//! buffered message, is told the topic started over after a restart that
//! forgot it (a new epoch), and stops reconnecting once its topic is
//! deleted.
//!
//! The browser is driven over the Chrome DevTools Protocol on a WebSocket,
//! with nothing but `tokio-tungstenite` and `serde_json`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use slosh_core::{Grant, Hub, Log, MemoryLog, Pattern, Settings, Signer, TokenKey, TopicName};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message as Frame;

const CHROMIUM: &str = "/usr/bin/chromium";

/// How long any one expectation may take. EventSource reconnects 3 s after a
/// drop, and a refused reconnect waits another 3 s.
const PATIENCE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sse_demo_receives_live_resumes_after_a_restart_and_stops_for_a_deleted_topic() {
    let logs = Logs::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::start(listener, &logs);

    let mut browser = Browser::launch().await;
    browser
        .open(&format!("http://{addr}/chat-sse.html?topic=e2e"))
        .await;
    browser.wait_for_text("#state", "connected").await;
    wait_for_subscribers(addr, "e2e", 1).await;

    // Live delivery.
    for i in 1..=3 {
        publish(addr, "e2e", i).await;
    }
    browser.wait_for_log(&ids(1..=3)).await;

    // The server restarts; the page's EventSource reconnects by itself. The
    // store outlives the server (as a shared store would), so messages
    // published before the page is back are still buffered for it.
    server.stop().await;
    let listener = TcpListener::bind(addr).await.unwrap();
    let server = Server::start(listener, &logs);
    publish(addr, "e2e", 4).await;
    publish(addr, "e2e", 5).await;
    // Only a resume from Last-Event-ID: 3 brings 4 and 5 (a fresh stream
    // starts at the newest message) without 1–3 again.
    browser.wait_for_log(&ids(1..=5)).await;
    wait_for_subscribers(addr, "e2e", 1).await;
    publish(addr, "e2e", 6).await;
    browser.wait_for_log(&ids(1..=6)).await;

    // A restart that forgets everything (a memory store): the reconnect's
    // Last-Event-ID is from the topic's old epoch, so the page is told the
    // topic started over instead of waiting in silence for an id 7.
    server.stop().await;
    let listener = TcpListener::bind(addr).await.unwrap();
    let server = Server::start(listener, &Logs::default());
    let mut expected = ids(1..=6);
    expected.push("|the topic started over; earlier messages may be missing".to_string());
    browser.wait_for_log(&expected).await;
    wait_for_subscribers(addr, "e2e", 1).await;
    publish(addr, "e2e", 1).await;
    expected.extend(ids(1..=1));
    browser.wait_for_log(&expected).await;

    // DELETE ends the stream; the reconnect gets 204 and EventSource gives
    // up instead of recreating the topic.
    let deleted = request(addr, "DELETE", "/topics/e2e", "").await;
    assert!(deleted.starts_with("HTTP/1.1 200"), "{deleted}");
    browser.wait_for_text("#state", ENDED).await;
    let info = request(addr, "GET", "/topics/e2e.info", "").await;
    assert!(info.starts_with("HTTP/1.1 404"), "recreated: {info}");

    browser.close().await;
    server.stop().await;
}

/// What the demo page says once the server ended its stream for good.
const ENDED: &str =
    "the server ended it (the topic is gone, or needs a token); reload to try again";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_topic_reaches_only_the_page_with_the_token_cookie() {
    const SECRET: &[u8] = b"browser-test-secret";
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hub = Hub::builder()
        .settings(Settings {
            private: vec![Pattern::parse("u-*").unwrap()],
            ..Settings::default()
        })
        .token_key(TokenKey::secret(SECRET).unwrap())
        .build();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(slosh_hyper::serve(listener, hub, async {
        let _ = stopped.await;
    }));
    let signer = Signer::secret(SECRET).unwrap();
    let mint = |subscribe: &str, publish: &str| {
        let grant = Grant {
            subscribe: vec![subscribe.to_string()],
            publish: vec![publish.to_string()],
            ttl: Duration::from_secs(600),
            ..Grant::default()
        };
        signer.token(&grant).unwrap()
    };
    let publisher = mint("", "*");

    // No cookie: the page is refused and EventSource gives up; the
    // refusal opened nothing.
    let mut browser = Browser::launch().await;
    let page = format!("http://{addr}/chat-sse.html?topic=u-1");
    browser.open(&page).await;
    browser.wait_for_text("#state", ENDED).await;
    let reader = mint("u-1", "");
    let info = request_as(addr, "GET", "/topics/u-1.info", "", &reader).await;
    assert!(info.starts_with("HTTP/1.1 404"), "opened: {info}");

    // The login cookie, as an application's token_cookie would set it.
    let set = browser
        .call(
            "Network.setCookie",
            json!({
                "name": "slosh_auth",
                "value": reader,
                "url": format!("http://{addr}/"),
                "httpOnly": true,
            }),
        )
        .await;
    assert_eq!(set["success"], json!(true), "{set}");
    browser.open(&page).await;
    browser.wait_for_text("#state", "connected").await;
    // A private topic describes itself only to a token that may read it.
    wait_for_subscribers_as(addr, "u-1", 1, Some(&reader)).await;
    for i in 1..=2 {
        let body = json!({"name": "t", "text": format!("m{i}")}).to_string();
        let answer = request_as(addr, "POST", "/topics/u-1", &body, &publisher).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    browser.wait_for_log(&ids(1..=2)).await;

    // The same cookie does not open another user's topic.
    browser
        .open(&format!("http://{addr}/chat-sse.html?topic=u-2"))
        .await;
    browser.wait_for_text("#state", ENDED).await;

    browser.close().await;
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_private_topics_on_one_event_source_resume_after_a_dropped_connection() {
    const SECRET: &[u8] = b"browser-multi-secret";
    let logs = Logs::default();
    let configure = |builder: slosh_core::Builder| {
        builder
            .settings(Settings {
                private: vec![Pattern::parse("u-*").unwrap()],
                ..Settings::default()
            })
            .token_key(TokenKey::secret(SECRET).unwrap())
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::start_with(listener, &logs, configure);
    let signer = Signer::secret(SECRET).unwrap();
    let mint = |subscribe: &str, publish: &str| {
        signer
            .token(&Grant {
                subscribe: vec![subscribe.to_string()],
                publish: vec![publish.to_string()],
                ttl: Duration::from_secs(600),
                ..Grant::default()
            })
            .unwrap()
    };
    let (reader, publisher) = (mint("u-*", ""), mint("", "*"));
    let publish = |topic: &'static str, i: u32| {
        let publisher = publisher.clone();
        async move {
            let answer = request_as(
                addr,
                "POST",
                &format!("/topics/{topic}"),
                &i.to_string(),
                &publisher,
            )
            .await;
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        }
    };

    let mut browser = Browser::launch().await;
    // Any page of the server's origin; the cookie is the login.
    browser
        .open(&format!("http://{addr}/chat-sse.html?topic=lobby"))
        .await;
    let set = browser
        .call(
            "Network.setCookie",
            json!({"name": "slosh_auth", "value": reader, "url": format!("http://{addr}/"), "httpOnly": true}),
        )
        .await;
    assert_eq!(set["success"], json!(true), "{set}");
    browser
        .eval(
            "window.seen = []; window.opened = 0; \
             const all = new EventSource('/subscribe.sse?topic=u-a&topic=u-b&topic=u-c'); \
             all.onopen = () => { window.opened += 1; }; \
             all.onmessage = (e) => { const m = JSON.parse(e.data); window.seen.push(m.topic + ':' + m.data); }; 'ok'",
        )
        .await;
    wait_for_seen(&mut browser, &[], 1).await;
    for topic in ["u-a", "u-b", "u-c"] {
        wait_for_subscribers_as(addr, topic, 1, Some(&reader)).await;
    }
    publish("u-a", 1).await;
    wait_for_seen(&mut browser, &["u-a:1"], 1).await;
    publish("u-b", 1).await;
    wait_for_seen(&mut browser, &["u-a:1", "u-b:1"], 1).await;
    publish("u-c", 1).await;
    wait_for_seen(&mut browser, &["u-a:1", "u-b:1", "u-c:1"], 1).await;

    // The connection drops (the server restarts over the same logs);
    // meanwhile two topics move on. The EventSource reconnects by itself
    // with every topic's place and gets exactly what it missed.
    server.stop().await;
    let listener = TcpListener::bind(addr).await.unwrap();
    let server = Server::start_with(listener, &logs, configure);
    publish("u-a", 2).await;
    publish("u-c", 2).await;
    wait_for_seen(
        &mut browser,
        &["u-a:1", "u-b:1", "u-c:1", "u-a:2", "u-c:2"],
        2,
    )
    .await;
    for topic in ["u-a", "u-b", "u-c"] {
        wait_for_subscribers_as(addr, topic, 1, Some(&reader)).await;
    }
    publish("u-b", 2).await;
    let all = ["u-a:1", "u-b:1", "u-c:1", "u-a:2", "u-c:2", "u-b:2"];
    wait_for_seen(&mut browser, &all, 2).await;

    browser.close().await;
    server.stop().await;
}

/// Waits until the page's `window.seen` is `expected` and its stream
/// opened `opened` times; fails at once on a repeat or a loss (what is
/// seen must always be a prefix of `expected`).
async fn wait_for_seen(browser: &mut Browser, expected: &[&str], opened: u64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let state = browser
            .eval("JSON.stringify([window.seen, window.opened])")
            .await;
        let (seen, count): (Vec<String>, u64) =
            serde_json::from_str(state.as_str().unwrap_or("[[],0]")).unwrap();
        assert!(
            seen.len() <= expected.len() && seen.iter().zip(expected).all(|(s, e)| s == e),
            "{seen:?} is not a prefix of {expected:?}"
        );
        if seen.len() == expected.len() && count >= opened {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "saw {seen:?} (opened {count}), expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `["1|t: m1", …]`: what the page's log shows for messages `range`.
fn ids(range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    range.map(|i| format!("{i}|t: m{i}")).collect()
}

// --- The server, restartable on the same port over the same store ---------

/// Topic logs kept across servers, handed out by the hubs' log factory.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<HashMap<TopicName, Arc<MemoryLog>>>>);

struct Server {
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    fn start(listener: TcpListener, logs: &Logs) -> Server {
        Server::start_with(listener, logs, |builder| builder)
    }

    /// [`Server::start`] with a hub builder `configure` adds to.
    fn start_with(
        listener: TcpListener,
        logs: &Logs,
        configure: impl FnOnce(slosh_core::Builder) -> slosh_core::Builder,
    ) -> Server {
        let logs = logs.clone();
        let hub = configure(Hub::builder().settings(Settings::default()))
            .log_factory(move |name: &TopicName, queue, epoch| {
                let mut logs = logs.0.lock().unwrap();
                let log = logs
                    .entry(name.clone())
                    .or_insert_with(|| Arc::new(MemoryLog::new(queue, epoch)));
                Box::new(Arc::clone(log)) as Box<dyn Log>
            })
            .build();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(slosh_hyper::serve(listener, hub, async {
            let _ = stopped.await;
        }));
        Server { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the server stops within 5 s")
            .unwrap()
            .unwrap();
    }
}

/// One request on a fresh connection; the whole answer as text.
async fn request(addr: SocketAddr, method: &str, target: &str, json: &str) -> String {
    send(addr, method, target, json, "").await
}

/// [`request`] with `Authorization: Bearer TOKEN`.
async fn request_as(
    addr: SocketAddr,
    method: &str,
    target: &str,
    json: &str,
    token: &str,
) -> String {
    send(
        addr,
        method,
        target,
        json,
        &format!("Authorization: Bearer {token}\r\n"),
    )
    .await
}

/// The request with the extra header lines `extra` (each ending in CRLF).
async fn send(addr: SocketAddr, method: &str, target: &str, json: &str, extra: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{extra}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
        json.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

async fn publish(addr: SocketAddr, topic: &str, i: u32) {
    let body = json!({"name": "t", "text": format!("m{i}")}).to_string();
    let answer = request(addr, "POST", &format!("/topics/{topic}"), &body).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(&format!(r#""id":{i}"#)), "{answer}");
}

async fn wait_for_subscribers(addr: SocketAddr, topic: &str, n: u64) {
    wait_for_subscribers_as(addr, topic, n, None).await;
}

/// [`wait_for_subscribers`], asking with `token` when there is one.
async fn wait_for_subscribers_as(addr: SocketAddr, topic: &str, n: u64, token: Option<&str>) {
    let wanted = format!(r#""subscribers":{n}"#);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let target = format!("/topics/{topic}.info");
        let info = match token {
            Some(token) => request_as(addr, "GET", &target, "", token).await,
            None => request(addr, "GET", &target, "").await,
        };
        if info.contains(&wanted) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {wanted}: {info}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// --- Headless Chromium over the DevTools protocol --------------------------

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

struct Browser {
    child: Child,
    devtools: Socket,
    next_id: u64,
    profile: PathBuf,
}

impl Browser {
    async fn launch() -> Browser {
        ensure_chromium().await;
        // One profile per browser: the tests of this file run at once.
        static LAUNCHED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = LAUNCHED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let profile =
            std::env::temp_dir().join(format!("slosh-chromium-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).unwrap();
        let mut child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium starts");
        // Chromium says where its DevTools endpoint is on stderr.
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let endpoint = tokio::time::timeout(PATIENCE, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    return url.trim().to_string();
                }
            }
            panic!("chromium exited without a DevTools endpoint");
        })
        .await
        .expect("chromium starts within 20 s");
        // Keep draining stderr so chromium never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let port: u16 = endpoint
            .trim_start_matches("ws://127.0.0.1:")
            .split('/')
            .next()
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("unexpected DevTools endpoint {endpoint}"));
        let page = page_endpoint(port).await;
        let (devtools, _) = tokio_tungstenite::connect_async(page.as_str())
            .await
            .expect("the page's DevTools socket opens");
        Browser {
            child,
            devtools,
            next_id: 0,
            profile,
        }
    }

    /// Calls a DevTools method and returns its result, skipping events.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let call = json!({"id": id, "method": method, "params": params}).to_string();
        self.devtools.send(Frame::text(call)).await.unwrap();
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.devtools.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method}"))
                .expect("the DevTools socket stays open")
                .unwrap();
            let Frame::Text(text) = frame else { continue };
            let answer: Value = serde_json::from_str(&text).unwrap();
            if answer["id"] == id {
                assert!(answer.get("error").is_none(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    async fn open(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url })).await;
    }

    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            )
            .await;
        result["result"]["value"].clone()
    }

    /// What the page's log shows, as `id|text` per line.
    async fn log(&mut self) -> Vec<String> {
        let shown = self
            .eval(
                "Array.from(document.querySelectorAll('#log li'), \
                 (li) => (li.dataset.id || '') + '|' + li.textContent)",
            )
            .await;
        serde_json::from_value(shown).unwrap_or_default()
    }

    /// Waits until the log is exactly `expected`; fails at once on a log that
    /// can no longer become it (a repeat, a loss, a wrong order).
    async fn wait_for_log(&mut self, expected: &[String]) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let shown = self.log().await;
            if shown == expected {
                return;
            }
            assert!(
                expected.starts_with(&shown),
                "the page shows {shown:?}, which is not on the way to {expected:?}"
            );
            assert!(
                tokio::time::Instant::now() < deadline,
                "the page shows {shown:?}, not {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_for_text(&mut self, selector: &str, text: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let expression = format!("document.querySelector({selector:?})?.textContent");
        loop {
            let shown = self.eval(&expression).await;
            if shown == text {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{selector} shows {shown}, not {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn close(mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// The DevTools WebSocket of the browser's first page. (Chromium's
/// endpoint keeps the connection open and builds the socket's URL from
/// `Host`, so the port goes there and the body is read by its length.)
async fn page_endpoint(port: u16) -> String {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut stream = BufReader::new(stream);
    let ask = format!("GET /json/list HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    stream.get_mut().write_all(ask.as_bytes()).await.unwrap();
    let mut length = 0;
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).await.unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.unwrap();
    let targets: Vec<Value> = serde_json::from_slice(&body).unwrap();
    targets
        .iter()
        .find(|target| target["type"] == "page")
        .and_then(|target| target["webSocketDebuggerUrl"].as_str())
        .unwrap_or_else(|| panic!("no page among {targets:?}"))
        .to_string()
}

/// Installs Debian's `chromium` when it is missing (CI does this before the
/// tests; a developer's machine may not have it yet).
async fn ensure_chromium() {
    if Path::new(CHROMIUM).exists() {
        return;
    }
    let installed = std::process::Command::new("sh")
        .args([
            "-c",
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium",
        ])
        .status();
    assert!(
        matches!(installed, Ok(status) if status.success()) && Path::new(CHROMIUM).exists(),
        "this test needs Debian's chromium at {CHROMIUM}: `apt-get install chromium` (as root)"
    );
}
