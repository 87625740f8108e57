//! The live form example served as its `main` serves it (same flag parsing,
//! same app), on a free port, spoken to over real sockets: its own pages
//! and form, SSE, and WebSockets on the actix frontend.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

#[path = "../examples/live_form/app.rs"]
mod app;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The example's server on its own actix system thread; stopped on drop.
struct LiveForm {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

/// Starts the example with `serve --bind 127.0.0.1:0` and `flags`.
fn spawn_live_form(flags: &[&str]) -> LiveForm {
    let mut argv = vec!["live_form", "serve", "--bind", "127.0.0.1:0"];
    argv.extend_from_slice(flags);
    let args = slosh_cli::try_serve_args(slosh_cli::command("live_form", "test"), argv).unwrap();
    let listener = std::net::TcpListener::bind(args.bind).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(app::serve(listener, &args, async {
            let _ = stopped.await;
        }))
    });
    LiveForm {
        addr,
        stop: Some(stop),
        thread: Some(thread),
    }
}

impl Drop for LiveForm {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A whole answer: status, lower-cased header lines, body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl LiveForm {
    /// Sends one request (closing the connection after it) and reads the
    /// whole answer.
    async fn send(&self, method: &str, target: &str, headers: &[&str], body: &str) -> Answer {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        let mut request =
            format!("{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
        for header in headers {
            request.push_str(header);
            request.push_str("\r\n");
        }
        request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        let raw = String::from_utf8(raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        Answer {
            status: head[9..12].parse().unwrap(),
            head: head.to_ascii_lowercase(),
            body: body.to_string(),
        }
    }

    async fn post_form(&self, body: &str) -> Answer {
        self.send(
            "POST",
            "/form",
            &["Content-Type: application/x-www-form-urlencoded"],
            body,
        )
        .await
    }

    /// Waits until `topic` has `n` subscribers.
    async fn wait_for_subscribers(&self, topic: &str, n: u64) {
        for _ in 0..500 {
            let info = self
                .send("GET", &format!("/topics/{topic}.info"), &[], "")
                .await;
            if info.status == 200 {
                let info: Value = serde_json::from_str(&info.body).unwrap();
                if info["subscribers"] == json!(n) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{topic} never had {n} subscribers");
    }

    async fn connect(&self, target: &str) -> Ws {
        let url = format!("ws://{}{target}", self.addr);
        let (ws, response) = tokio_tungstenite::connect_async(url).await.unwrap();
        assert_eq!(response.status(), 101);
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok());
        assert_eq!(header("upgrade"), Some("websocket"));
        assert_eq!(header("connection"), Some("upgrade"));
        ws
    }
}

/// Reads from `stream` until `seen` contains `needle`.
async fn read_until(stream: &mut TcpStream, seen: &mut String, needle: &str) {
    let mut buffer = [0; 4096];
    while !seen.contains(needle) {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer))
            .await
            .unwrap_or_else(|_| panic!("{needle:?} within 10 s; saw {seen:?}"))
            .unwrap();
        assert!(n > 0, "closed before {needle:?}; saw {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
}

/// The next data frame as JSON (pings are skipped; tungstenite answers them).
async fn next_frame(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("the socket is open")
            .expect("a well-formed frame");
        match message {
            Message::Text(text) => {
                let mut frame: Value = serde_json::from_str(text.as_str()).unwrap();
                // A message frame carries its topic's epoch, random in the
                // example app: checked here, then left out of comparisons.
                if let Some(epoch) = frame.as_object_mut().and_then(|f| f.remove("epoch")) {
                    assert!(
                        epoch.as_str().and_then(slosh_core::Epoch::parse).is_some(),
                        "{epoch}"
                    );
                }
                return frame;
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Reads until the server's close frame and returns its code.
async fn close_code(ws: &mut Ws) -> CloseCode {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a close frame within 10 s");
        match message {
            Some(Ok(Message::Close(Some(frame)))) => return frame.code,
            Some(Ok(Message::Close(None))) | None => panic!("closed without a code"),
            Some(Ok(_)) => {}
            Some(Err(error)) => panic!("{error}"),
        }
    }
}

#[tokio::test]
async fn the_app_serves_its_own_form_and_live_page() {
    let app = spawn_live_form(&[]);
    let form = app.send("GET", "/", &[], "").await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains(r#"<form method="post" action="/form">"#));
    let live = app.send("GET", "/live", &[], "").await;
    assert!(live
        .body
        .contains(r#"new EventSource("/topics/submissions.sse")"#));
    // Everything else is slosh's.
    assert_eq!(app.send("GET", "/healthz", &[], "").await.status, 200);
}

#[tokio::test]
async fn a_submitted_form_reaches_an_sse_subscriber() {
    let app = spawn_live_form(&[]);
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(b"GET /topics/submissions.sse HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, "retry: 3000").await;
    app.wait_for_subscribers(app::TOPIC, 1).await;

    let sent = app
        .post_form("name=Ada&message=hello+there&extra=dropped")
        .await;
    assert_eq!(sent.status, 303);
    assert!(
        sent.head.contains("\r\nlocation: /form?sent"),
        "{}",
        sent.head
    );

    read_until(&mut stream, &mut seen, "hello there").await;
    let epoch = seen
        .split("id: 1@")
        .nth(1)
        .and_then(|rest| rest.get(..slosh_core::epoch::EPOCH_LEN))
        .and_then(slosh_core::Epoch::parse);
    assert!(epoch.is_some(), "{seen:?}");
    assert!(
        seen.contains("\ndata: {\"name\":\"Ada\",\"message\":\"hello there\"}\n\n"),
        "{seen:?}"
    );
}

#[tokio::test]
async fn the_server_flags_reach_the_hub() {
    let app = spawn_live_form(&["--max-message", "40"]);
    let long = "x".repeat(100);
    let refused = app.post_form(&format!("name=Ada&message={long}")).await;
    assert_eq!(refused.status, 413, "{}", refused.body);
    assert_eq!(app.post_form("name=Ada&message=short").await.status, 303);
}

#[tokio::test]
async fn with_a_file_store_the_ids_go_on_after_a_restart() {
    let dir = std::env::temp_dir().join(format!("live-form-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = format!("file:{}", dir.join("topics.db").display());
    let app = spawn_live_form(&["--store", &store]);
    for n in 1..=2 {
        assert_eq!(
            app.post_form(&format!("name=Ada&message={n}")).await.status,
            303
        );
    }
    drop(app);
    // actix's workers drop their app (and its hub's handle on the file)
    // just after they report stopped, so the file can be held for a moment
    // after the server returns; a new process would never see that.
    let file = dir.join("topics.db");
    let mut tries = 0;
    while let Err(error) = slosh_file::FileStore::open(&file, slosh_file::Sync::Always) {
        tries += 1;
        assert!(tries < 500, "the file stayed open: {error}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let app = spawn_live_form(&["--store", &store]);
    // The file's topic is there before any request names it.
    let list = app.send("GET", "/topics", &[], "").await;
    assert!(
        list.body.contains(r#""topic":"submissions""#),
        "{}",
        list.body
    );
    assert_eq!(app.post_form("name=Ada&message=3").await.status, 303);
    let kept = app
        .send("GET", "/topics/submissions.json?n=0", &[], "")
        .await;
    let kept: Value = serde_json::from_str(&kept.body).unwrap();
    assert_eq!(kept["max"], 3, "{kept}");
    assert_eq!(kept["res"][0]["message"], "1", "{kept}");
    drop(app);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_socket_gets_frames_publishes_by_text_and_survives_bad_json() {
    let app = spawn_live_form(&[]);
    let mut ws = app.connect("/topics/chat").await;
    app.wait_for_subscribers("chat", 1).await;

    let posted = app
        .send(
            "POST",
            "/topics/chat",
            &["Content-Type: application/json"],
            r#"{"a":1}"#,
        )
        .await;
    assert_eq!(posted.status, 200);
    assert_eq!(
        next_frame(&mut ws).await,
        json!({"id": 1, "data": {"a": 1}})
    );

    ws.send(Message::text(r#"{"b":2}"#)).await.unwrap();
    assert_eq!(
        next_frame(&mut ws).await,
        json!({"id": 2, "data": {"b": 2}})
    );

    ws.send(Message::text("{nope")).await.unwrap();
    let error = next_frame(&mut ws).await;
    let message = error["error"].as_str().unwrap_or_default();
    assert!(message.contains("line 1"), "{error}");

    ws.send(Message::text("3")).await.unwrap();
    assert_eq!(next_frame(&mut ws).await, json!({"id": 3, "data": 3}));
}

#[tokio::test]
async fn a_far_too_large_frame_closes_the_socket_1009_and_stores_nothing() {
    let app = spawn_live_form(&["--max-message", "100"]);
    let mut ws = app.connect("/topics/big").await;
    ws.send(Message::text(format!("\"{}\"", "x".repeat(100_000))))
        .await
        .unwrap();
    assert_eq!(close_code(&mut ws).await, CloseCode::Size);
    let info = app.send("GET", "/topics/big.info", &[], "").await;
    let info: Value = serde_json::from_str(&info.body).unwrap();
    assert_eq!(info["max"], json!(0), "{info}");
}

#[tokio::test]
async fn delete_closes_a_socket_going_away() {
    let app = spawn_live_form(&[]);
    let mut ws = app.connect("/topics/doomed").await;
    app.wait_for_subscribers("doomed", 1).await;
    assert_eq!(
        app.send("DELETE", "/topics/doomed", &[], "").await.status,
        200
    );
    assert_eq!(close_code(&mut ws).await, CloseCode::Away);
}

#[tokio::test]
async fn a_socket_stops_counting_as_a_subscriber_when_its_client_goes() {
    let app = spawn_live_form(&[]);
    let mut polite = app.connect("/topics/gone").await;
    let abrupt = app.connect("/topics/gone").await;
    app.wait_for_subscribers("gone", 2).await;
    // A close handshake is answered with the client's own code.
    polite.close(None).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(10), polite.next())
        .await
        .expect("the close echoed within 10 s");
    assert!(
        matches!(echoed, Some(Ok(Message::Close(_))) | None),
        "{echoed:?}"
    );
    app.wait_for_subscribers("gone", 1).await;
    // A dropped connection, no close frame.
    drop(abrupt);
    app.wait_for_subscribers("gone", 0).await;
}

/// Logs `user` in and returns the `Cookie` header the browser sends back
/// (read from the raw answer: the token is case-sensitive).
async fn log_in(app: &LiveForm, user: &str) -> String {
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let request =
        format!("GET /login?user={user} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    assert!(raw.starts_with("HTTP/1.1 303"), "{raw}");
    let lower = raw.to_ascii_lowercase();
    assert!(
        lower.contains(&format!("location: /notifications?user={user}")),
        "{raw}"
    );
    assert!(lower.contains("httponly"), "{raw}");
    let line = raw
        .lines()
        .find(|line| line.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap();
    let pair = line
        .split_once(':')
        .unwrap()
        .1
        .trim()
        .split(';')
        .next()
        .unwrap();
    assert!(pair.starts_with("slosh_auth="), "{pair}");
    format!("Cookie: {pair}")
}

#[tokio::test]
async fn each_logged_in_user_reads_only_their_own_notifications() {
    let app = spawn_live_form(&["--jwt-secret", "live-form-test-secret"]);
    let alice = log_in(&app, "alice").await;
    let bob = log_in(&app, "bob").await;
    for (user, message) in [("alice", "for-alice"), ("bob", "for-bob")] {
        let sent = app
            .send(
                "POST",
                "/notify",
                &["Content-Type: application/x-www-form-urlencoded"],
                &format!("user={user}&message={message}"),
            )
            .await;
        assert_eq!(sent.status, 303, "{}", sent.body);
    }
    let read = |cookie: &str, user: &str| {
        let headers: Vec<String> = Some(cookie.to_string())
            .filter(|c| !c.is_empty())
            .into_iter()
            .collect();
        let target = format!("/topics/notify-{user}.json?n=0");
        let app = &app;
        async move {
            let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
            app.send("GET", &target, &headers, "").await
        }
    };
    let res = |answer: &Answer| serde_json::from_str::<Value>(&answer.body).unwrap()["res"].clone();
    let mine = read(&alice, "alice").await;
    assert_eq!(mine.status, 200, "{}", mine.body);
    assert_eq!(res(&mine), json!(["for-alice"]));
    let theirs = read(&bob, "bob").await;
    assert_eq!(res(&theirs), json!(["for-bob"]));
    assert_eq!(read(&alice, "bob").await.status, 403, "alice read bob's");
    assert_eq!(read(&bob, "alice").await.status, 403, "bob read alice's");
    assert_eq!(
        read("", "alice").await.status,
        401,
        "nobody logged in read alice's"
    );
    // The public form and its live topic need no login.
    assert_eq!(app.post_form("name=a&message=b").await.status, 303);
    let public = app
        .send("GET", "/topics/submissions.json?n=0", &[], "")
        .await;
    assert_eq!(public.status, 200, "{}", public.body);
}

#[tokio::test]
async fn without_a_secret_there_are_no_logins() {
    let app = spawn_live_form(&[]);
    let answer = app.send("GET", "/login?user=alice", &[], "").await;
    assert_eq!(answer.status, 503);
    assert!(answer.body.contains("--jwt-secret"), "{}", answer.body);
}
