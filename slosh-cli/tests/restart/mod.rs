//! A server binary run over `--store file:PATH` as a user runs it,
//! restarted cleanly or killed with `kill -9`: the checks behind
//! `slosh-cli/tests/store.rs` (the hyper frontend, `slosh-cli serve`) and
//! `slosh-actix/tests/store.rs` (the actix `live_form` example), which
//! include this module by path. Each takes the binary to run. Also how
//! every test here starts a server process and learns its address
//! ([`spawn_listening`]; `serve.rs` and `cluster.rs` use it too).

// Each including test uses the part it needs.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A folder of the test's own, removed at the end.
pub struct Dir(pub PathBuf);

impl Dir {
    /// A fresh folder named after `name` and this process.
    pub fn new(name: &str) -> Dir {
        let dir =
            std::env::temp_dir().join(format!("slosh-cli-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts `command` (a slosh server) with `RUST_LOG=info` and its log
/// piped, and waits for the log's first line, `slosh listening …`: the
/// child, that line, and the rest of the log (read it, or the server
/// blocks on a full pipe).
pub fn spawn_listening(command: &mut Command) -> (Child, String, BufReader<ChildStderr>) {
    let mut child = command
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    log.read_line(&mut first).unwrap();
    assert!(first.contains("slosh listening"), "{first}");
    (child, first, log)
}

/// The `address=` of a `slosh listening` line.
/// Sends one raw request to `addr` and returns the whole raw answer (the
/// server closing the connection ends it; 5 s at most per read).
pub fn exchange(addr: &str, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

pub fn address_in(line: &str) -> String {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix("address="))
        .unwrap()
        .to_string()
}

/// `bin serve` on a free port over the store `file`; its address.
fn serve(bin: &Path, file: &Path, sync: &str) -> (Child, String) {
    let mut command = Command::new(bin);
    command
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--queue",
            "5000",
            "--sync",
            sync,
        ])
        .arg("--store")
        .arg(format!("file:{}", file.display()));
    let (child, first, mut log) = spawn_listening(&mut command);
    let addr = address_in(&first);
    // Keep reading the log so the server never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut log, &mut std::io::sink()));
    (child, addr)
}

pub fn send(addr: &str, method: &str, target: &str, body: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.get(9..12)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

fn batch(addr: &str, target: &str) -> Value {
    let (status, body) = send(addr, "GET", target, "").expect("an answer");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn kill(child: &mut Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    child.wait().unwrap();
}

/// Publish 3, stop with SIGTERM, start again: a client at `n=1` of the
/// same epoch gets 2 and 3, and the next publish is id 4.
pub fn ids_and_epoch_go_on_across_a_clean_restart(bin: &Path, sync: &str) {
    let dir = Dir::new(&format!("restart-{sync}"));
    let file = dir.0.join("topics.db");
    let (mut first, addr) = serve(bin, &file, sync);
    for n in 1..=3 {
        assert_eq!(
            send(&addr, "POST", "/topics/t", &n.to_string()).unwrap().0,
            200
        );
    }
    let epoch = batch(&addr, "/topics/t.json?n=0")["epoch"]
        .as_str()
        .unwrap()
        .to_string();
    kill(&mut first, "-TERM");

    let (mut second, addr) = serve(bin, &file, sync);
    let resumed = batch(&addr, &format!("/topics/t.json?n=1@{epoch}"));
    assert_eq!(resumed["epoch"], epoch.as_str());
    assert_eq!(resumed.get("reset"), None, "{resumed}");
    assert_eq!(resumed["res"], serde_json::json!([2, 3]));
    let (status, body) = send(&addr, "POST", "/topics/t", "4").unwrap();
    assert_eq!((status, body.as_str()), (200, r#"{"ok":true,"id":4}"#));
    kill(&mut second, "-TERM");
}

/// Publishes from four connections at once until stopped, recording every
/// publish answered `200` as (id, value, when the answer came).
type Answered = (u64, u64, Instant);

fn burst(addr: &str, stop: &Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<Vec<Answered>>> {
    (0..4u64)
        .map(|lane| {
            let addr = addr.to_string();
            let stop = Arc::clone(stop);
            std::thread::spawn(move || {
                let mut answered = Vec::new();
                for i in 0..1000u64 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let value = lane * 1000 + i;
                    match send(&addr, "POST", "/topics/burst", &value.to_string()) {
                        Some((200, body)) => {
                            let answer: Value = serde_json::from_str(&body).unwrap();
                            answered.push((answer["id"].as_u64().unwrap(), value, Instant::now()));
                        }
                        _ => break,
                    }
                }
                answered
            })
        })
        .collect()
}

/// Kills the server mid-burst and checks what the file kept: every id up
/// to its `max` with the value answered for it, and every publish answered
/// before `kill − window` (`window` zero: every publish answered at all).
pub fn kill_9_loses_nothing_answered_before(bin: &Path, sync: &str, window: Duration) {
    let dir = Dir::new(sync);
    let file = dir.0.join("topics.db");
    let (mut server, addr) = serve(bin, &file, sync);
    assert_eq!(send(&addr, "POST", "/topics/burst", "-1").unwrap().0, 200);
    let epoch = batch(&addr, "/topics/burst.json?n=0")["epoch"]
        .as_str()
        .unwrap()
        .to_string();
    // The first message is durable before the burst (with `batch`, once a
    // window has passed), so the topic outlives the kill whatever the
    // burst's last window loses: a burst killed within its first window
    // would otherwise leave no topic at all, and nothing to check.
    std::thread::sleep(window);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let lanes = burst(&addr, &stop);
    // Kill once a few hundred are in and at least a window has passed,
    // while the rest are in flight.
    let count = Arc::new(Mutex::new(0u64));
    for _ in 0..200 {
        std::thread::sleep(Duration::from_millis(20));
        let info = send(&addr, "GET", "/topics/burst.info", "");
        if let Some((200, body)) = info {
            let max = serde_json::from_str::<Value>(&body).unwrap()["max"]
                .as_u64()
                .unwrap();
            *count.lock().unwrap() = max;
            if max >= 300 && started.elapsed() >= window {
                break;
            }
        }
    }
    let killed = Instant::now();
    kill(&mut server, "-KILL");
    stop.store(true, Ordering::SeqCst);
    let answered: Vec<Answered> = lanes
        .into_iter()
        .flat_map(|lane| lane.join().unwrap())
        .collect();
    assert!(answered.len() >= 300, "the burst ran: {}", answered.len());

    let (mut again, addr) = serve(bin, &file, sync);
    let kept = batch(&addr, "/topics/burst.json?n=0");
    let res = kept["res"].as_array().unwrap();
    let max = kept["max"].as_u64().unwrap();
    // Batch mode may have lost ids it answered, which would be given out
    // again: the topic takes a new epoch, so a resuming client is told.
    let resumed = batch(&addr, &format!("/topics/burst.json?n={}@{epoch}", max - 1));
    if sync == "batch" {
        assert_ne!(kept["epoch"], epoch.as_str());
        assert_eq!(resumed["reset"], true, "{resumed}");
    } else {
        assert_eq!(kept["epoch"], epoch.as_str());
        assert_eq!(resumed.get("reset"), None, "{resumed}");
    }
    assert_eq!(res.len() as u64, max, "ids 1..=max, none missing");
    let mut lost = 0;
    for (id, value, at) in &answered {
        if *id > max {
            assert!(
                killed.saturating_duration_since(*at) < window,
                "id {id}, answered {:?} before the kill, is past max {max}",
                killed.saturating_duration_since(*at)
            );
            lost += 1;
            continue;
        }
        assert_eq!(res[(*id - 1) as usize], *value, "id {id}");
    }
    eprintln!(
        "--sync {sync}: {} answered, {lost} lost to kill -9",
        answered.len()
    );
    // And the next id follows on.
    let (_, body) = send(&addr, "POST", "/topics/burst", "0").unwrap();
    assert_eq!(body, format!(r#"{{"ok":true,"id":{}}}"#, max + 1));
    kill(&mut again, "-TERM");
}
