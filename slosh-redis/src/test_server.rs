//! A real `redis-server` on a free loopback port, for tests (feature
//! `test-server`): the tests that claim cluster behaviour run against
//! Redis itself, never a stand-in. Debian's `redis-server` must be on the
//! `PATH` (`.ci/run` installs it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` process the test owns; killed when dropped.
pub struct TestRedis {
    child: Option<Child>,
    port: u16,
    /// Where it keeps its append-only file, when persistent.
    dir: PathBuf,
    persistent: bool,
    /// `requirepass`, when set.
    password: Option<String>,
    /// Serving TLS only, with a certificate for `localhost` signed by the
    /// test's own CA ([`TestRedis::ca`]).
    tls: bool,
}

impl TestRedis {
    /// A Redis that keeps nothing on disk: a restart loses everything.
    pub fn start() -> TestRedis {
        TestRedis::launch(false)
    }

    /// A Redis that appends every write to its file and fsyncs it, so a
    /// restart keeps what it acknowledged.
    pub fn start_persistent() -> TestRedis {
        TestRedis::launch(true)
    }

    /// A Redis (keeping nothing on disk) that wants `password` (`AUTH`).
    pub fn start_with_password(password: &str) -> TestRedis {
        TestRedis::launch_with(false, Some(password.to_string()))
    }

    /// A Redis (keeping nothing on disk) that speaks TLS only: its URL is
    /// `rediss://localhost:PORT/0`, and a client trusts it through the CA
    /// file [`TestRedis::ca`] (as `SSL_CERT_FILE`).
    pub fn start_tls() -> TestRedis {
        let mut redis = TestRedis::prepare(false, None);
        redis.tls = true;
        redis.make_certificates();
        redis.restart();
        redis
    }

    fn launch(persistent: bool) -> TestRedis {
        TestRedis::launch_with(persistent, None)
    }

    fn launch_with(persistent: bool, password: Option<String>) -> TestRedis {
        let mut redis = TestRedis::prepare(persistent, password);
        redis.restart();
        redis
    }

    fn prepare(persistent: bool, password: Option<String>) -> TestRedis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .unwrap();
        let dir = std::env::temp_dir().join(format!("slosh-redis-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TestRedis {
            child: None,
            port,
            dir,
            persistent,
            password,
            tls: false,
        }
    }

    /// The CA that signed a TLS Redis's certificate (PEM).
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A CA and a server certificate for `localhost` and 127.0.0.1, made
    /// with the `openssl` command.
    fn make_certificates(&self) {
        let openssl = |args: &[&str]| {
            let status = Command::new("openssl")
                .args(args)
                .current_dir(&self.dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("the openssl command");
            assert!(status.success(), "openssl {args:?}");
        };
        std::fs::write(
            self.dir.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=slosh test CA",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
    }

    /// `redis://127.0.0.1:PORT/0`, with the password when it wants one
    /// (`rediss://localhost:PORT/0` for TLS).
    pub fn url(&self) -> String {
        if self.tls {
            return format!("rediss://localhost:{}/0", self.port);
        }
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops it (`SIGKILL`: nothing is written at exit) and waits.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (and file), and waits until it
    /// answers.
    pub fn restart(&mut self) {
        self.stop();
        let port = self.port.to_string();
        let (appendonly, fsync) = if self.persistent {
            ("yes", "always")
        } else {
            ("no", "no")
        };
        let (plain, tls) = if self.tls {
            ("0", port.as_str())
        } else {
            (port.as_str(), "0")
        };
        let tls_files = if self.tls {
            vec![
                "--tls-cert-file",
                "server.crt",
                "--tls-key-file",
                "server.key",
            ]
            .into_iter()
            .chain(["--tls-ca-cert-file", "ca.crt", "--tls-auth-clients", "no"])
            .collect()
        } else {
            Vec::new()
        };
        let child = Command::new("redis-server")
            .args([
                "--port",
                plain,
                "--tls-port",
                tls,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(tls_files)
            .current_dir(&self.dir)
            .args(["--appendonly", appendonly, "--appendfsync", fsync])
            .args(
                self.password
                    .iter()
                    .flat_map(|password| ["--requirepass", password.as_str()]),
            )
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot start redis-server ({error}): install Debian's redis-server")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(if self.tls {
            self.listens()
        } else {
            self.answers()
        }) {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the TLS port takes connections (speaking TLS is the test's).
    fn listens(&self) -> bool {
        TcpStream::connect(("127.0.0.1", self.port)).is_ok()
    }

    fn answers(&self) -> bool {
        let Ok(mut con) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = con.set_read_timeout(Some(Duration::from_secs(1)));
        // Without the password a PING is refused (-NOAUTH), which still
        // says the server is up.
        let mut answer = [0u8; 1];
        con.write_all(b"PING\r\n").is_ok()
            && con.read_exact(&mut answer).is_ok()
            && (&answer == b"+" || &answer == b"-")
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
