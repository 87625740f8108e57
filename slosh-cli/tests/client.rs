//! The client verbs as a user runs them: the built `slosh-cli` binary
//! against real slosh servers (slosh-hyper in this process), including
//! servers that restart under a running `watch` or `reflect`.
//!
//! Servers that restart keep their topics' logs in a store that outlives
//! them (as a persistent store would), so what was buffered before or
//! stored during the restart must come out exactly once, in order.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use slosh_core::{Epoch, Hub, Json, Log, MemoryLog, Settings, TopicName};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How long any one expectation may take.
const PATIENCE: Duration = Duration::from_secs(15);

// --- Servers over a store that outlives them --------------------------------

/// Topic logs kept across servers, handed out by each hub's log factory.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<HashMap<TopicName, Arc<MemoryLog>>>>);

impl Logs {
    fn log(&self, topic: &str, queue: usize, epoch: Epoch) -> Arc<MemoryLog> {
        let name = TopicName::parse(topic).unwrap();
        let mut logs = self.0.lock().unwrap();
        Arc::clone(
            logs.entry(name)
                .or_insert_with(|| Arc::new(MemoryLog::new(queue, epoch))),
        )
    }

    /// Stores a message as another server sharing the store would, while
    /// none of ours is running.
    fn append(&self, topic: &str, message: Value) {
        self.log(topic, 100, Epoch::from_bits(0))
            .append(Json::to_json(&message).unwrap())
            .unwrap();
    }

    /// Every buffered message of `topic`, oldest first.
    fn messages(&self, topic: &str) -> Vec<Value> {
        let mut out = Vec::new();
        self.log(topic, 100, Epoch::from_bits(0))
            .read_after(0, &mut out);
        out.iter()
            .map(|message| message.json().to_value().unwrap())
            .collect()
    }
}

/// A slosh-hyper server in this process.
struct Server {
    addr: SocketAddr,
    hub: Hub,
    settings: Settings,
    logs: Option<Logs>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// A server with `settings`, its topics in `logs` when given (else in
    /// its own memory, gone when it stops).
    async fn start(settings: Settings, logs: Option<Logs>) -> Server {
        Server::serve(listener_to_restart().await, settings, logs)
    }

    fn serve(listener: TcpListener, settings: Settings, logs: Option<Logs>) -> Server {
        let addr = listener.local_addr().unwrap();
        let mut builder = Hub::builder().settings(settings.clone());
        if let Some(logs) = logs.clone() {
            builder = builder.log_factory(move |name: &TopicName, queue, epoch| {
                Box::new(logs.log(name.as_str(), queue, epoch)) as Box<dyn Log>
            });
        }
        let hub = builder.build();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(slosh_hyper::serve(listener, hub.clone(), async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            hub,
            settings,
            logs,
            stop,
            task,
        }
    }

    fn url(&self, topic: &str) -> String {
        format!("http://{}/topics/{topic}", self.addr)
    }

    fn publish(&self, topic: &str, message: Value) -> u64 {
        self.hub.publish(topic, &message).unwrap().id.unwrap()
    }

    /// Stops the server and waits until it no longer listens.
    async fn stop(self) -> (SocketAddr, Settings, Option<Logs>) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the server stops within 5 s")
            .unwrap()
            .unwrap();
        (self.addr, self.settings, self.logs)
    }

    /// Starts again on the same address, over `logs` (a fresh memory store
    /// when `None`).
    async fn start_again(addr: SocketAddr, settings: Settings, logs: Option<Logs>) -> Server {
        // A process another test is starting may hold a copy of the old
        // listening socket between its fork and exec: try again briefly.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(listener) => break listener,
                Err(error) if tokio::time::Instant::now() > deadline => {
                    panic!("cannot listen on {addr} again: {error}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        };
        Server::serve(listener, settings, logs)
    }
}

/// A listener on a port below the kernel's ephemeral range (32768 and up
/// on Linux). A port from that range, once its server stops, may be taken
/// as the local port of any outgoing connection (ours reconnecting to it,
/// or another test's), and the restart could not bind it again.
async fn listener_to_restart() -> TcpListener {
    use std::hash::{BuildHasher, Hasher};
    loop {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        let port = 20_000 + (hasher.finish() % 12_000) as u16;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)).await {
            return listener;
        }
    }
}

fn settings() -> Settings {
    Settings::default()
}

// --- The binary --------------------------------------------------------------

/// A running `slosh-cli` verb: its stdout lines and stderr lines as they
/// come, killed if the test ends first.
struct Cli {
    child: Child,
    stdout: BufReader<ChildStdout>,
    stderr: mpsc::UnboundedReceiver<String>,
    /// Every stderr line so far.
    said: Vec<String>,
}

fn cli(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_slosh-cli"));
    command.args(args).kill_on_drop(true);
    for (name, _) in std::env::vars() {
        if name.starts_with("SLOSH_") {
            command.env_remove(name);
        }
    }
    command
}

impl Cli {
    fn spawn(args: &[&str]) -> Cli {
        let mut child = cli(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let (lines, received) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        Cli {
            child,
            stdout,
            stderr: received,
            said: Vec::new(),
        }
    }

    /// The next line on stdout.
    async fn line(&mut self) -> String {
        let mut line = String::new();
        let read = tokio::time::timeout(PATIENCE, self.stdout.read_line(&mut line))
            .await
            .unwrap_or_else(|_| panic!("no line on stdout; stderr: {:#?}", self.said))
            .unwrap();
        assert!(read > 0, "stdout ended; stderr: {:#?}", self.said);
        line.trim_end_matches('\n').to_string()
    }

    /// The next `count` lines on stdout.
    async fn lines(&mut self, count: usize) -> Vec<String> {
        let mut lines = Vec::new();
        for _ in 0..count {
            lines.push(self.line().await);
        }
        lines
    }

    /// Waits for a stderr line containing `text`; returns it.
    async fn says(&mut self, text: &str) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match tokio::time::timeout_at(deadline, self.stderr.recv()).await {
                Ok(Some(line)) => {
                    self.said.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                _ => panic!("never said {text:?}; said: {:#?}", self.said),
            }
        }
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    async fn exit(&mut self) -> ExitStatus {
        tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .expect("exits within 5 s")
            .unwrap()
    }

    /// Stops with `signal` and checks the exit is clean (status 0), and
    /// that nothing more was printed.
    async fn stop_with(&mut self, signal: &str) {
        self.signal(signal);
        let status = self.exit().await;
        assert_eq!(status.code(), Some(0), "{status:?}; said: {:#?}", self.said);
        let mut rest = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut self.stdout, &mut rest)
            .await
            .unwrap();
        assert_eq!(rest, "", "printed after the expected lines");
    }
}

/// `slosh-cli ARGS` run to its end with `stdin`: status, stdout, stderr.
async fn run(args: &[&str], env: &[(&str, &str)], stdin: &str) -> (ExitStatus, String, String) {
    let mut child = cli(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let output = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("the command ends")
        .unwrap();
    (
        output.status,
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// `n` as a message, and the line `watch` prints for it as message `id`.
fn message(n: u64) -> Value {
    json!({"n": n})
}

fn printed(id: u64, n: u64) -> String {
    format!("{id} {{\"n\":{n}}}")
}

// --- publish -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_prints_the_id_of_one_message_or_of_each_line_of_stdin() {
    let server = Server::start(settings(), None).await;
    let url = server.url("p");

    let (status, out, err) = run(&["publish", &url, r#"{"a":1}"#], &[], "").await;
    assert!(status.success(), "{err}");
    assert_eq!(out, "1\n");

    let lines = "{\"b\":2}\n\n   \n[3]\r\n\"four\"\n";
    let (status, out, err) = run(&["publish", &url, "-"], &[], lines).await;
    assert!(status.success(), "{err}");
    assert_eq!(out, "2\n3\n4\n", "empty lines are skipped");

    let answer = get(server.addr, "/topics/p.json?n=0").await;
    assert_eq!(
        answer["res"],
        json!([{"a":1}, {"b":2}, [3], "four"]),
        "each line is one message, as sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_explains_each_refusal_and_exits_non_zero() {
    let server = Server::start(
        Settings {
            max_message: 64,
            ..settings()
        },
        None,
    )
    .await;
    let url = server.url("r");

    let (status, out, err) = run(&["publish", &url, r#"{"a":"#], &[], "").await;
    assert_eq!(status.code(), Some(1));
    assert_eq!(out, "");
    assert!(
        err.contains("400") && err.contains("line 1 column"),
        "{err}"
    );

    let big = format!("\"{}\"", "x".repeat(100));
    let (status, _, err) = run(&["publish", &url, &big], &[], "").await;
    assert_eq!(status.code(), Some(1));
    assert!(
        err.contains("413") && err.contains("102 bytes") && err.contains("--max-message"),
        "{err}"
    );

    // Stdin stops at the first refusal and says where.
    let (status, out, err) = run(&["publish", &url, "-"], &[], "1\n2\nnot json\n4\n").await;
    assert_eq!(status.code(), Some(1));
    assert_eq!(out, "1\n2\n");
    assert!(
        err.contains("line 3") && err.contains("2 message(s) before it"),
        "{err}"
    );
    assert_eq!(server.hub.info("r").unwrap()["max"], 2);

    let (status, _, err) = run(&["publish", "https://example.org/topics/r", "1"], &[], "").await;
    assert_eq!(status.code(), Some(2));
    assert!(err.contains("TLS proxy"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_sends_the_token_from_the_flag_or_the_environment() {
    let server = Server::start(
        Settings {
            publish_token: Some("s3cret".into()),
            ..settings()
        },
        None,
    )
    .await;
    let url = server.url("t");

    let (status, _, err) = run(&["publish", &url, "1"], &[], "").await;
    assert_eq!(status.code(), Some(1));
    assert!(
        err.contains("401") && err.contains("--token") && err.contains("SLOSH_PUBLISH_TOKEN"),
        "{err}"
    );
    let (status, _, err) = run(&["publish", &url, "1", "--token", "wrong"], &[], "").await;
    assert_eq!(status.code(), Some(1));
    assert!(err.contains("not accepted"), "{err}");

    let (status, out, err) = run(&["publish", &url, "1", "--token", "s3cret"], &[], "").await;
    assert!(status.success(), "{err}");
    assert_eq!(out, "1\n");
    let (status, out, err) = run(
        &["publish", &url, "2"],
        &[("SLOSH_PUBLISH_TOKEN", "s3cret")],
        "",
    )
    .await;
    assert!(status.success(), "{err}");
    assert_eq!(out, "2\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_to_a_port_nobody_listens_on_asks_whether_the_server_runs() {
    // Outside the ephemeral range, so no connection takes it meanwhile.
    let listener = listener_to_restart().await;
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{addr}/topics/x");
    let (status, out, err) = run(&["publish", &url, "1"], &[], "").await;
    assert_eq!(status.code(), Some(1));
    assert_eq!(out, "");
    assert!(
        err.contains(&format!("is the server running at http://{addr}?")),
        "{err}"
    );
}

/// GET `target` on a fresh connection; the JSON body.
async fn get(addr: SocketAddr, target: &str) -> Value {
    use tokio::io::AsyncReadExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!("GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (_, body) = answer.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap_or_else(|_| panic!("{answer}"))
}

// --- watch -------------------------------------------------------------------

/// A `watch` in `format` through a restart of its server over a store that
/// survives it: only messages after the start, each once, in order.
async fn watch_across_a_restart(format: &str) {
    let logs = Logs::default();
    let server = Server::start(settings(), Some(logs.clone())).await;
    let url = server.url("w");
    server.publish("w", message(1));
    server.publish("w", message(2));

    let mut watch = Cli::spawn(&["watch", &url, "--format", format]);
    watch.says("connected").await;
    for n in 3..=5 {
        server.publish("w", message(n));
    }
    let expect = |range: std::ops::RangeInclusive<u64>| -> Vec<String> {
        range.map(|n| printed_as(format, n, n)).collect()
    };
    assert_eq!(watch.lines(3).await, expect(3..=5), "only new messages");

    // Down: stored meanwhile by another server sharing the store.
    let (addr, settings, logs_kept) = server.stop().await;
    logs.append("w", message(6));
    logs.append("w", message(7));
    watch.says("retrying in").await;
    let server = Server::start_again(addr, settings, logs_kept).await;
    server.publish("w", message(8));
    assert_eq!(watch.lines(3).await, expect(6..=8), "resumed after 5");
    watch.says("connected").await;
    server.publish("w", message(9));
    assert_eq!(watch.line().await, printed_as(format, 9, 9));

    watch.stop_with("INT").await;
    assert!(
        watch.said.iter().any(|line| line.contains("disconnected")),
        "{:#?}",
        watch.said
    );
}

fn printed_as(format: &str, id: u64, n: u64) -> String {
    match format {
        "xml" => format!("{id} <p><n>{n}</n></p>"),
        _ => printed(id, n),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_over_sse_resumes_by_id_across_a_server_restart() {
    watch_across_a_restart("sse").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_over_json_long_poll_resumes_by_id_across_a_server_restart() {
    watch_across_a_restart("json").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_over_xml_long_poll_resumes_by_id_across_a_server_restart() {
    watch_across_a_restart("xml").await;
}

/// Loss is said, never silent: a gap when the buffer no longer holds what
/// was asked for, and a notice when a restarted memory store counts from 1.
async fn watch_tells_of_gaps_and_forgotten_topics(format: &str) {
    let queue4 = Settings {
        queue: 4,
        ..settings()
    };
    let server = Server::start(queue4, None).await;
    let url = server.url("g");
    for n in 1..=10 {
        server.publish("g", message(n));
    }
    let mut watch = Cli::spawn(&["watch", &url, "--format", format, "--from", "0"]);
    let gap = watch.says("gap").await;
    assert!(gap.contains("6 message(s) missed"), "{gap}");
    let expect: Vec<String> = (7..=10).map(|n| printed_as(format, n, n)).collect();
    assert_eq!(watch.lines(4).await, expect);

    // The memory store dies with the server: ids start over at 1.
    let (addr, settings, _) = server.stop().await;
    watch.says("retrying in").await;
    let server = Server::start_again(addr, settings, None).await;
    watch.says("connected").await;
    server.publish("g", message(100));
    assert_eq!(watch.line().await, printed_as(format, 1, 100));
    let notice = watch.says("started over").await;
    assert!(notice.contains("after 10"), "{notice}");
    server.publish("g", message(101));
    assert_eq!(watch.line().await, printed_as(format, 2, 101));
    watch.stop_with("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_over_sse_tells_of_gaps_and_of_a_server_that_forgot_the_topic() {
    watch_tells_of_gaps_and_forgotten_topics("sse").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_over_json_tells_of_gaps_and_of_a_server_that_forgot_the_topic() {
    watch_tells_of_gaps_and_forgotten_topics("json").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_quiet_prints_only_messages_and_stops_on_ctrl_c() {
    let server = Server::start(settings(), None).await;
    server.publish("q", message(1));
    let mut watch = Cli::spawn(&["watch", &server.url("q"), "--quiet", "--from", "0"]);
    assert_eq!(watch.line().await, printed(1, 1));
    watch.stop_with("INT").await;
    while let Ok(line) = watch.stderr.try_recv() {
        watch.said.push(line);
    }
    assert!(watch.said.is_empty(), "{:#?}", watch.said);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_refuses_what_it_cannot_follow() {
    let server = Server::start(settings(), None).await;
    let (status, _, err) = run(&["watch", &format!("{}?n=3", server.url("x"))], &[], "").await;
    assert_eq!(status.code(), Some(2));
    assert!(err.contains("--from"), "{err}");
    let (status, _, err) = run(
        &["watch", &server.url("x.json"), "--format", "sse"],
        &[],
        "",
    )
    .await;
    assert_eq!(status.code(), Some(2));
    assert!(err.contains(".json"), "{err}");
    // A bad topic name is the server's 400, not worth retrying.
    let (status, _, err) = run(&["watch", &server.url("a%20b")], &[], "").await;
    assert_eq!(status.code(), Some(1));
    assert!(err.contains("400"), "{err}");
}

// --- reflect -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflect_republishes_in_order_once_across_restarts_of_either_side() {
    let source_logs = Logs::default();
    let target_logs = Logs::default();
    let source = Server::start(settings(), Some(source_logs.clone())).await;
    let target = Server::start(settings(), Some(target_logs.clone())).await;
    source.publish("src", message(0)); // before the reflect: not carried

    let mut reflect = Cli::spawn(&[
        "reflect",
        &source.url("src"),
        &target.url("dst"),
        &source.url("copy"),
    ]);
    reflect.says("connected").await;
    for n in 1..=3 {
        source.publish("src", message(n));
    }
    wait_for(&target_logs, "dst", 3).await;

    // The source restarts; two messages are stored while it is down.
    let (addr, settings_kept, logs_kept) = source.stop().await;
    source_logs.append("src", message(4));
    source_logs.append("src", message(5));
    reflect.says("retrying in").await;
    let source = Server::start_again(addr, settings_kept, logs_kept).await;
    source.publish("src", message(6));
    wait_for(&target_logs, "dst", 6).await;

    // The destination restarts; a message comes while it is down (the
    // source's id 8: its id 1 was message 0).
    let (addr, settings_kept, logs_kept) = target.stop().await;
    source.publish("src", message(7));
    let notice = reflect.says("publishing message 8 to").await;
    assert!(notice.contains("is the server running"), "{notice}");
    let target = Server::start_again(addr, settings_kept, logs_kept).await;
    source.publish("src", message(8));
    wait_for(&target_logs, "dst", 8).await;

    let expected: Vec<Value> = (1..=8).map(message).collect();
    assert_eq!(target_logs.messages("dst"), expected);
    let copies: Vec<Value> = source_logs.messages("copy");
    assert_eq!(copies, expected);
    reflect.stop_with("TERM").await;
    drop(target);
}

/// Waits until `topic` holds `count` messages.
async fn wait_for(logs: &Logs, topic: &str, count: usize) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let messages = logs.messages(topic);
        if messages.len() >= count {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{topic} has {messages:?}, expected {count}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflect_filters_and_reshapes_messages() {
    let logs = Logs::default();
    let server = Server::start(settings(), Some(logs.clone())).await;
    for (kind, n) in [("alert", 1), ("info", 2), ("alert", 3), ("debug", 4)] {
        server.publish("events", json!({"kind": kind, "payload": {"n": n}}));
    }
    let mut reflect = Cli::spawn(&[
        "reflect",
        &server.url("events"),
        &server.url("alerts"),
        "--from",
        "0",
        "--filter",
        r#".kind == "alert""#,
        "--filter",
        ".payload",
    ]);
    wait_for(&logs, "alerts", 2).await;
    server.publish("events", json!({"kind": "alert", "payload": {"n": 5}}));
    wait_for(&logs, "alerts", 3).await;
    assert_eq!(
        logs.messages("alerts"),
        vec![message(1), message(3), message(5)]
    );
    reflect.stop_with("INT").await;

    let (status, _, err) = run(
        &[
            "reflect",
            &server.url("events"),
            &server.url("x"),
            "--filter",
            ".kind = 1",
        ],
        &[],
        "",
    )
    .await;
    assert_eq!(status.code(), Some(2));
    assert!(err.contains("--filter") && err.contains("=="), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflect_does_not_publish_twice_when_an_answer_is_lost() {
    let source = Server::start(settings(), None).await;
    let target = LossyServer::start().await;
    let mut reflect = Cli::spawn(&[
        "reflect",
        &source.url("src"),
        &format!("http://{}/topics/dst", target.addr),
    ]);
    reflect.says("connected").await;
    for n in 1..=3 {
        source.publish("src", message(n));
    }
    // The first publish is stored and its connection dropped unanswered.
    let notice = reflect.says("publishing message 1").await;
    assert!(notice.contains("may or may not"), "{notice}");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while target
        .hub
        .info("dst")
        .and_then(|info| info["max"].as_u64())
        .unwrap_or(0)
        < 3
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            target.hub.info("dst")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answer = get(target.addr, "/topics/dst.json?n=0").await;
    assert_eq!(answer["res"], json!([message(1), message(2), message(3)]));
    assert!(target.dropped.load(Ordering::SeqCst));
    reflect.stop_with("TERM").await;
}

/// A slosh server that stores the first POST and then drops its
/// connection without answering, as a crash between the two would.
struct LossyServer {
    addr: SocketAddr,
    hub: Hub,
    dropped: Arc<AtomicBool>,
}

impl LossyServer {
    async fn start() -> LossyServer {
        use hyper::service::Service;

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hub = Hub::builder().build();
        let slosh = slosh_hyper::Slosh::new(hub.clone());
        let dropped = Arc::new(AtomicBool::new(false));
        let once = Arc::clone(&dropped);
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let slosh = slosh.clone();
                let once = Arc::clone(&once);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| {
                            let slosh = slosh.clone();
                            let once = Arc::clone(&once);
                            async move {
                                let post = request.method() == hyper::Method::POST;
                                let response = slosh.call(request).await.unwrap();
                                if post && !once.swap(true, Ordering::SeqCst) {
                                    return Err(std::io::Error::other("answer lost"));
                                }
                                Ok(response)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        LossyServer { addr, hub, dropped }
    }
}

// --- A server that sends without end ------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_stops_at_max_body_when_a_server_sends_without_end() {
    let addr = endless_server().await;
    let url = format!("http://{addr}/topics/flood");
    for format in ["sse", "json", "xml"] {
        let (status, out, err) = run(
            &[
                "watch",
                &url,
                "--format",
                format,
                "--from",
                "0",
                "--max-body",
                "4KiB",
            ],
            &[],
            "",
        )
        .await;
        assert_eq!(status.code(), Some(1), "{format}: {err}");
        assert_eq!(out, "");
        assert!(
            err.contains("4096") && err.contains("--max-body"),
            "{format}: {err}"
        );
    }
}

/// Answers `.info` with `max` 0, and anything else with a 200 whose body
/// (one SSE line, or a long-poll answer) never ends, until the client
/// hangs up.
async fn endless_server() -> SocketAddr {
    use tokio::io::AsyncReadExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head);
                if head.contains(".info") {
                    let body = r#"{"topic":"flood","max":0}"#;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                    return;
                }
                let (kind, start) = if head.contains(".sse") {
                    ("text/event-stream", "id: 1@aaaaaaaa\ndata: ")
                } else if head.contains(".xml") {
                    (
                        "text/xml",
                        "<res max=\"1\" epoch=\"aaaaaaaa\" saw=\"1\" delivering=\"1\"><p>",
                    )
                } else {
                    (
                        "application/json",
                        "{\"max\":1,\"epoch\":\"aaaaaaaa\",\"saw\":1,\"delivering\":1,\"res\":[\"",
                    )
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {kind}\r\ntransfer-encoding: chunked\r\n\r\n"
                );
                let chunk = |text: &str| format!("{:x}\r\n{text}\r\n", text.len());
                let mut out = head + &chunk(start);
                let filler = chunk(&"x".repeat(16 * 1024));
                loop {
                    if stream.write_all(out.as_bytes()).await.is_err() {
                        return;
                    }
                    out.clone_from(&filler);
                }
            });
        }
    });
    addr
}
