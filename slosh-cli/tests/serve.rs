//! The `slosh-cli serve` binary as a user runs it: flags, log lines, signals.

mod restart;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use restart::exchange as send;

#[test]
fn serve_logs_its_start_never_a_body_and_exits_0_on_sigterm() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_slosh-cli"));
    command
        .args(["serve", "--bind", "127.0.0.1:0", "--queue", "7"])
        .env("SLOSH_MAX_TOPICS", "5");
    let (mut child, first, mut log) = restart::spawn_listening(&mut command);
    assert!(
        first.contains("queue=7") && first.contains("max_topics=5"),
        "flags and env reach the hub: {first}"
    );
    let addr = restart::address_in(&first);

    let secret = "x=a-message-body-that-must-not-be-logged";
    let answer = send(
        &addr,
        &format!("POST /topics/t HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{secret}", secret.len()),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let started = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "serve did not exit within 5 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    let mut rest = String::new();
    log.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("slosh stopped"), "{rest}");
    assert!(!first.contains("a-message-body") && !rest.contains("a-message-body"));
}

#[test]
fn a_bad_flag_value_is_refused_with_a_message() {
    let output = Command::new(env!("CARGO_BIN_EXE_slosh-cli"))
        .args(["serve", "--poll-timeout", "soon"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid duration"), "{stderr}");
}

/// Runs `serve` with `root` given as `--root` or `SLOSH_ROOT` and returns its
/// stderr once it exits; a server that starts instead is killed and fails
/// the test rather than hanging it.
fn serve_refused(root: &std::path::Path, by_env: bool) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_slosh-cli"));
    command.args(["serve", "--bind", "127.0.0.1:0"]);
    if by_env {
        command.env("SLOSH_ROOT", root);
    } else {
        command.arg("--root").arg(root);
    }
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            panic!("serve started with the bad root {}", root.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!stderr.contains("slosh listening"), "{stderr}");
    stderr
}

#[test]
fn a_missing_root_is_refused_at_start_with_a_message() {
    let missing = std::env::temp_dir().join(format!("slosh-no-such-root-{}", std::process::id()));
    let stderr = serve_refused(&missing, false);
    assert!(
        stderr.contains("--root") && stderr.contains("slosh-no-such-root"),
        "{stderr}"
    );
}

#[test]
fn a_root_that_is_a_file_is_refused_at_start() {
    let file = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
    let stderr = serve_refused(file, true);
    assert!(stderr.contains("not a directory"), "{stderr}");
}

/// Starts `serve` on a free port with `env`, returning the child, its
/// stderr and the address from the start line.
fn spawn_serve(
    env: &[(&str, &str)],
) -> (
    std::process::Child,
    BufReader<std::process::ChildStderr>,
    String,
) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_slosh-cli"));
    command.args(["serve", "--bind", "127.0.0.1:0", "--poll-timeout", "1"]);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
    let mut log = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    // At trace level other lines may come before the start line.
    while !first.contains("slosh listening") {
        first.clear();
        assert!(log.read_line(&mut first).unwrap() > 0, "serve ended early");
    }
    let addr = first
        .split_whitespace()
        .find_map(|word| word.strip_prefix("address="))
        .unwrap()
        .to_string();
    (child, log, addr)
}

/// Stops `child` with SIGTERM and returns the rest of its log.
fn stop_serve(
    mut child: std::process::Child,
    mut log: BufReader<std::process::ChildStderr>,
) -> String {
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut rest = String::new();
    log.read_to_string(&mut rest).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0), "{rest}");
    rest
}

#[test]
fn no_token_is_logged_even_at_trace_from_a_header_or_the_query_string() {
    const TOKEN: &str = "tok-configured-9f2c";
    const WRONG: &str = "tok-wrong-guess-51ab";
    const IN_QUERY: &str = "tok-in-the-query-77d0";
    let (child, log, addr) = spawn_serve(&[("RUST_LOG", "trace"), ("SLOSH_PUBLISH_TOKEN", TOKEN)]);
    let mut seen = String::new();
    let head = |method: &str, target: &str, extra: &str| {
        format!("{method} {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}")
    };
    let requests = [
        head("POST", &format!("/topics/t?token={IN_QUERY}"), &format!("Authorization: Bearer {WRONG}\r\nContent-Length: 3\r\n\r\nx=1")),
        head("POST", &format!("/topics/t?token={IN_QUERY}&n=1"), &format!("Authorization: Bearer {TOKEN}\r\nContent-Length: 3\r\n\r\nx=1")),
        head("DELETE", &format!("/topics/nope?access_token={IN_QUERY}"), &format!("Authorization: Bearer {WRONG}\r\n\r\n")),
        head("GET", &format!("/topics/t.json?n=0&token={IN_QUERY}"), "\r\n"),
        head("GET", &format!("/topics/t.json?n={IN_QUERY}"), "\r\n"),
        head("GET", &format!("/topics/{IN_QUERY}.sse?token={IN_QUERY}"), &format!("Last-Event-ID: {IN_QUERY}\r\n\r\n")),
        // Its own head: an upgrade's `Connection` must list `upgrade`.
        format!("GET /topics/t?token={IN_QUERY} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer {WRONG}\r\n\r\n"),
        head("GET", &format!("/no/such/file?token={IN_QUERY}"), "\r\n"),
        // Not HTTP at all: what the parser's error says.
        format!("BROKEN /?token={IN_QUERY} {WRONG}\r\n\r\n"),
        format!("GET /?token={IN_QUERY} HTTP/1.1\r\nAuthorization: Bearer {WRONG}\r\nBad Header {IN_QUERY}\r\n\r\n"),
    ];
    for request in &requests {
        let mut stream = TcpStream::connect(&addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = Vec::new();
        // A WebSocket stays open: its 101 is all we wait for.
        let _ = stream.read_to_end(&mut answer);
        seen.push_str(&String::from_utf8_lossy(&answer));
    }
    assert!(seen.contains("HTTP/1.1 401"), "{seen}");
    assert!(seen.contains("HTTP/1.1 101"), "{seen}");
    let rest = stop_serve(child, log);
    // The server did log below info (the broken requests' errors), so the
    // absence below means something.
    assert!(
        rest.contains("DEBUG") && rest.contains("slosh stopped"),
        "{rest}"
    );
    for secret in [TOKEN, WRONG, IN_QUERY] {
        assert!(!rest.contains(secret), "{secret} was logged:\n{rest}");
    }
}

/// One worker means tokio's current-thread scheduler: the server is the
/// main thread alone (`server_runtime`); more workers mean the
/// multi-thread one, with the main thread waiting beside them.
#[cfg(target_os = "linux")]
#[test]
fn one_worker_serves_on_the_main_thread_alone() {
    for (workers, threads) in [("1", 1), ("2", 3)] {
        let (child, log, addr) =
            spawn_serve(&[("RUST_LOG", "info"), ("TOKIO_WORKER_THREADS", workers)]);
        let answer = send(
            &addr,
            "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        );
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let tasks = std::fs::read_dir(format!("/proc/{}/task", child.id()))
            .unwrap()
            .count();
        stop_serve(child, log);
        assert_eq!(
            tasks, threads,
            "threads with TOKIO_WORKER_THREADS={workers}"
        );
    }
}
