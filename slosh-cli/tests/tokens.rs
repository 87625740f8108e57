//! Signed tokens from the command line: `serve --jwt-secret … --private …`
//! with a token minted by `slosh-cli token`, keys refused at start, and
//! neither the secret nor a token ever logged.

mod restart;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "cli-test-secret-3b7e";

use restart::exchange as send;

/// What `slosh-cli token ARGS` prints, trimmed.
fn mint(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_slosh-cli"))
        .arg("token")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn a_token_from_the_token_verb_opens_a_private_topic_and_nothing_secret_is_logged() {
    let dir = std::env::temp_dir().join(format!("slosh-tokens-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The pattern comes from the config file, the secret from the
    // environment: both reach the hub.
    let config = dir.join("slosh.toml");
    std::fs::write(&config, "private = [\"me-*\"]\npoll_timeout = \"1s\"\n").unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_slosh-cli"));
    command
        .args(["serve", "--bind", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env("SLOSH_JWT_SECRET", SECRET)
        .env("RUST_LOG", "trace");
    let (child, first, mut log) = restart::spawn_listening(&mut command);
    // Killed if an assertion below fails, so no server outlives the test.
    let mut child = KillOnDrop(child);
    assert!(
        first.contains("jwt=true") && first.contains("private=1"),
        "{first}"
    );
    let addr = restart::address_in(&first);
    let token = mint(&[
        "--secret",
        SECRET,
        "--subscribe",
        "me-*",
        "--publish",
        "me-*",
        "--ttl",
        "10m",
    ]);
    let reader = mint(&["--secret", SECRET, "--subscribe", "me-1"]);

    let post = |topic: &str, token: &str| {
        send(
            &addr,
            &format!("POST /topics/{topic} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 1\r\n\r\n7"),
        )
    };
    let get = |target: &str| {
        send(
            &addr,
            &format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        )
    };
    assert!(post("me-1", &token).starts_with("HTTP/1.1 200"));
    // A subscribe-only token may not publish.
    assert!(post("me-1", &reader).starts_with("HTTP/1.1 403"));
    let refused = get("/topics/me-1.json?n=0");
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert!(
        refused
            .to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{refused}"
    );
    let read = get(&format!("/topics/me-1.json?n=0&access_token={reader}"));
    assert!(
        read.starts_with("HTTP/1.1 200") && read.contains("[7]"),
        "{read}"
    );
    // Another user's topic: the token does not name it.
    let other = get(&format!("/topics/me-2.json?n=0&access_token={reader}"));
    assert!(other.starts_with("HTTP/1.1 403"), "{other}");
    // A topic that is not private needs nothing to read.
    assert!(get("/topics/open.json?n=0").starts_with("HTTP/1.1 200"));

    let started = Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap()
        .success());
    while child.0.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "serve did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut rest = String::new();
    log.read_to_string(&mut rest).unwrap();
    // (serve.rs's test shows requests are logged at trace without their
    // query; this one covers the secret and the tokens of this path.)
    for secret in [SECRET, token.as_str(), reader.as_str()] {
        assert!(!rest.contains(secret), "{secret} was logged:\n{rest}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A child process killed when dropped (a no-op once it has exited).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `serve ARGS` must refuse to start; returns its stderr.
fn refused(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_slosh-cli"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "started: {stderr}");
    assert!(!stderr.contains("slosh listening"), "{stderr}");
    stderr
}

#[test]
fn keys_that_cannot_be_used_stop_the_start_with_a_message() {
    let stderr = refused(&["--private", "me-*"]);
    assert!(stderr.contains("--private needs --jwt-secret"), "{stderr}");
    let stderr = refused(&["--jwt-public-key", "/no/such/key.pem"]);
    assert!(stderr.contains("/no/such/key.pem"), "{stderr}");
    let not_pem = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let stderr = refused(&["--jwt-public-key", not_pem]);
    assert!(
        stderr.contains("Cargo.toml") && stderr.contains("PEM"),
        "{stderr}"
    );
    let stderr = refused(&["--jwt-secret", "s", "--private", "a*b"]);
    assert!(stderr.contains("not a topic pattern"), "{stderr}");
}
