//! `slosh-cli serve --config FILE` as a user runs it: the file's settings
//! reach the server, the environment and flags beat it, a broken file is
//! refused before anything is served.

mod restart;

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Writes `text` to a file of its own under cargo's scratch directory.
fn config_file(name: &str, text: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// `slosh-cli serve` with `args` and `env`, nothing inherited from the
/// test's own `SLOSH_*` environment.
fn serve(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_slosh-cli"));
    command.arg("serve").args(args).env("RUST_LOG", "info");
    for (name, _) in std::env::vars() {
        if name.starts_with("SLOSH_") {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    command
}

/// A running server, killed when the test ends however it ends.
struct Server {
    child: Child,
    /// The `slosh listening` line.
    start: String,
    address: String,
    _log: BufReader<ChildStderr>,
}

impl Server {
    fn start(mut command: Command) -> Server {
        let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
        let mut log = BufReader::new(child.stderr.take().unwrap());
        let mut start = String::new();
        log.read_line(&mut start).unwrap();
        assert!(start.contains("slosh listening"), "{start}");
        let address = start
            .split_whitespace()
            .find_map(|word| word.strip_prefix("address="))
            .unwrap()
            .to_string();
        Server {
            child,
            start,
            address,
            _log: log,
        }
    }

    /// Sends one request and returns the whole raw answer.
    fn send(&self, request: &str) -> String {
        restart::exchange(&self.address, request)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a server that is expected to refuse to start; its exit status and
/// stderr. Killed after 5 s so a server that starts anyway fails the test
/// instead of hanging it.
fn refused(mut command: Command) -> (ExitStatus, String) {
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
            panic!("serve started despite a broken config file");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status, stderr)
}

#[test]
fn a_config_file_sets_the_servers_settings() {
    let file = config_file(
        "sets",
        r#"
bind = "127.0.0.1:0"
queue = 4
poll_timeout = "300ms"
max_topics = 3
max_unsent = "2MiB"
cors_origin = ["https://a.example", "https://b.example"]
"#,
    );
    let server = Server::start(serve(&["--config", file.to_str().unwrap()], &[]));
    let start = &server.start;
    assert!(!server.address.ends_with(":8000"), "{start}");
    for setting in ["queue=4", "max_topics=3", "max_unsent=2097152"] {
        assert!(start.contains(setting), "{setting} in {start}");
    }

    let asked = Instant::now();
    let poll = server.send("GET /topics/x.json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let waited = asked.elapsed();
    assert!(poll.starts_with("HTTP/1.1 200"), "{poll}");
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "the long-poll ended after poll_timeout, not the default 30 s: {waited:?}"
    );

    for origin in ["https://a.example", "https://b.example"] {
        let answer = server.send(&format!(
            "GET /topics/x.json?n=0 HTTP/1.1\r\nHost: t\r\nOrigin: {origin}\r\nConnection: close\r\n\r\n"
        ));
        assert!(
            answer
                .to_ascii_lowercase()
                .contains(&format!("access-control-allow-origin: {origin}")),
            "{origin} is allowed: {answer}"
        );
    }
    let stranger = server.send(
        "GET /topics/x.json?n=0 HTTP/1.1\r\nHost: t\r\nOrigin: https://c.example\r\nConnection: close\r\n\r\n",
    );
    assert!(
        !stranger
            .to_ascii_lowercase()
            .contains("access-control-allow-origin"),
        "{stranger}"
    );
}

#[test]
fn the_environment_beats_the_file_and_a_flag_beats_both() {
    let file = config_file(
        "precedence",
        "bind = \"127.0.0.1:0\"\nqueue = 4\nmax_topics = 3\nmax_message = \"1KiB\"\n",
    );
    let server = Server::start(serve(
        &["--queue", "7"],
        &[
            ("SLOSH_CONFIG", file.to_str().unwrap()),
            ("SLOSH_QUEUE", "5"),
            ("SLOSH_MAX_TOPICS", "6"),
        ],
    ));
    let start = &server.start;
    assert!(start.contains("queue=7"), "the flag wins: {start}");
    assert!(start.contains("max_topics=6"), "the env wins: {start}");
    assert!(
        start.contains("max_message=1024"),
        "the file fills in: {start}"
    );
}

#[test]
fn a_config_file_with_an_unknown_key_is_refused_naming_the_key() {
    let file = config_file("unknown", "bind = \"127.0.0.1:0\"\nqeueu = 4\n");
    let (status, stderr) = refused(serve(&["--config", file.to_str().unwrap()], &[]));
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown.toml"), "{stderr}");
    assert!(stderr.contains("\"qeueu\""), "{stderr}");
    assert!(!stderr.contains("slosh listening"), "{stderr}");
}

#[test]
fn a_config_file_with_a_bad_value_is_refused_even_where_a_flag_wins() {
    let file = config_file(
        "bad-value",
        "bind = \"127.0.0.1:0\"\npoll_timeout = \"soon\"\n",
    );
    let (status, stderr) = refused(serve(
        &["--config", file.to_str().unwrap(), "--poll-timeout", "5s"],
        &[],
    ));
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad-value.toml"), "{stderr}");
    assert!(stderr.contains("\"poll_timeout\""), "{stderr}");
    assert!(stderr.contains("invalid duration"), "{stderr}");
}

#[test]
fn a_config_value_of_the_wrong_type_is_refused_saying_what_the_key_takes() {
    let file = config_file("wrong-type", "bind = \"127.0.0.1:0\"\nqueue = [4]\n");
    let (status, stderr) = refused(serve(&["--config", file.to_str().unwrap()], &[]));
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("\"queue\" must be a string or a number"),
        "{stderr}"
    );
}

#[test]
fn a_missing_config_file_is_refused_naming_it() {
    let missing = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("no-such-slosh.toml");
    let (status, stderr) = refused(serve(
        &[
            "--bind",
            "127.0.0.1:0",
            "--config",
            missing.to_str().unwrap(),
        ],
        &[],
    ));
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no-such-slosh.toml"), "{stderr}");
}
