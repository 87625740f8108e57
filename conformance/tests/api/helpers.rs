//! `spawn_app()` and a small HTTP client with named request methods.

use std::net::SocketAddr;
use std::time::Duration;

use slosh_client::http::{self, BodyDecoder, Framing, Keep};
use slosh_core::{Hub, Settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The server a test binary runs the suite against.
#[allow(dead_code)] // each test binary names one of them
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frontend {
    Hyper,
    Actix,
    /// The actix example application (`slosh-actix/examples/live_form`):
    /// its own pages at `/`, `/form` and `/live`, slosh behind them.
    Example,
}

/// The example application's routes, as its `main` serves them.
#[allow(dead_code)] // its `serve` takes CLI flags; the suite passes settings
#[path = "../../../slosh-actix/examples/live_form/app.rs"]
mod example;

/// Whether the application under test keeps `/` for a page of its own,
/// as a host application does (so the demo or `--root` index is not there).
#[allow(dead_code)]
pub fn host_owns_root() -> bool {
    crate::FRONTEND == Frontend::Example
}

/// The epoch of every topic in the suite's hubs, so that answers can be
/// compared byte for byte ([`test_hub`]). Tests of epochs themselves build
/// hubs with the random default.
#[allow(dead_code)]
pub const EPOCH: &str = "aaaaaaaa";

/// A hub with `settings` whose every topic life has the epoch [`EPOCH`].
pub fn test_hub(settings: Settings) -> Hub {
    Hub::builder()
        .settings(settings)
        .epochs(|| slosh_core::Epoch::from_bits(0))
        .build()
}

/// How the server loop runs, for either frontend.
pub use slosh_core::ServeOptions;

/// A running server of either frontend.
enum Server {
    /// `slosh-hyper` on the test's own runtime.
    Task(JoinHandle<std::io::Result<()>>),
    /// `slosh-actix` in an actix system on its own thread.
    Thread(std::thread::JoinHandle<std::io::Result<()>>),
}

impl Server {
    async fn finished(self) -> std::io::Result<()> {
        match self {
            Server::Task(task) => task.await.unwrap(),
            Server::Thread(thread) => tokio::task::spawn_blocking(move || thread.join())
                .await
                .unwrap()
                .unwrap(),
        }
    }
}

/// A client of the server at `addr`, with named request methods.
#[derive(Clone, Copy)]
pub struct Client {
    pub addr: SocketAddr,
}

/// A running server, and a client of it (`App` derefs to [`Client`]).
pub struct App {
    pub addr: SocketAddr,
    client: Client,
    pub hub: Hub,
    stop: Option<oneshot::Sender<()>>,
    server: Option<Server>,
}

/// A parsed answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }
}

pub async fn spawn_app() -> App {
    spawn_app_with(Settings::default()).await
}

pub async fn spawn_app_with(settings: Settings) -> App {
    spawn_app_with_options(settings, ServeOptions::default()).await
}

pub async fn spawn_app_with_options(settings: Settings, options: ServeOptions) -> App {
    spawn_frontend(crate::FRONTEND, settings, options).await
}

/// Starts `frontend` on an ephemeral port with `settings` and `options`.
pub async fn spawn_frontend(frontend: Frontend, settings: Settings, options: ServeOptions) -> App {
    spawn_hub(frontend, test_hub(settings), options).await
}

/// Starts `frontend` on an ephemeral port serving `hub`, a hub the test
/// built itself (with a filter, say), with `options`.
pub async fn spawn_hub(frontend: Frontend, hub: Hub, options: ServeOptions) -> App {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let stopped = async {
        let _ = stopped.await;
    };
    let server = match frontend {
        Frontend::Hyper => {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            Server::Task(tokio::spawn(slosh_hyper::serve_with(
                listener,
                hub.clone(),
                options,
                stopped,
            )))
        }
        Frontend::Actix | Frontend::Example => {
            let options = slosh_actix::ServeOptions {
                header_timeout: options.header_timeout,
                max_connections: options.max_connections,
                grace: options.grace,
                workers: 1,
            };
            let hub = hub.clone();
            Server::Thread(std::thread::spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    if frontend == Frontend::Example {
                        slosh_actix::serve_app_with(
                            listener,
                            hub,
                            options,
                            example::routes,
                            stopped,
                        )
                        .await
                    } else {
                        slosh_actix::serve_with(listener, hub, options, stopped).await
                    }
                })
            }))
        }
    };
    App {
        addr,
        client: Client { addr },
        hub,
        stop: Some(stop),
        server: Some(server),
    }
}

impl std::ops::Deref for App {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Client {
    /// Sends one request on a fresh connection and reads the whole answer.
    pub async fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        let mut head = format!("{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        parse_answer(&raw, method == "HEAD")
    }

    /// Sends a bodyless request and returns the answer's raw bytes (for
    /// bodies that are not text).
    pub async fn send_raw(&self, method: &str, target: &str) -> Vec<u8> {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        let head = format!("{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        raw
    }

    pub async fn get(&self, target: &str) -> Answer {
        self.send("GET", target, &[], b"").await
    }

    pub async fn post_form(&self, topic: &str, body: &str) -> Answer {
        self.send("POST", &format!("/topics/{topic}"), &[], body.as_bytes())
            .await
    }

    pub async fn post_json(&self, topic: &str, body: &str) -> Answer {
        self.send(
            "POST",
            &format!("/topics/{topic}"),
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .await
    }

    /// Opens a stream and returns the socket after the request is sent.
    pub async fn open(&self, target: &str, headers: &[(&str, &str)]) -> TcpStream {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        let mut head = format!("GET {target} HTTP/1.1\r\nHost: test\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        stream
    }
}

impl App {
    /// Waits until the hub counts `n` subscribers on `topic`.
    pub async fn wait_for_subscribers(&self, topic: &str, n: u64) {
        for _ in 0..500 {
            if let Some(info) = self.hub.info(topic) {
                if info["subscribers"] == n {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "{topic} never had {n} subscribers: {:?}",
            self.hub.info(topic)
        );
    }

    /// Signals shutdown and waits for the server to return.
    pub async fn stop(&mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.server.take() {
            Some(server) => server.finished().await,
            None => Ok(()),
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Parses a whole HTTP/1.1 answer, read to its end, with the head parser
/// and body decoder every slosh client uses (`slosh-client`): the body
/// must end where its framing says, with nothing after it.
pub fn parse(raw: &[u8]) -> Answer {
    parse_answer(raw, false)
}

/// [`parse`], for the answer to a `HEAD` request when `head_only`: its
/// framing describes the body a GET would get, and nothing may follow the
/// head.
pub fn parse_answer(raw: &[u8], head_only: bool) -> Answer {
    let shown = || String::from_utf8_lossy(raw).into_owned();
    let (head, used) = http::parse_head(raw, Keep::All)
        .unwrap_or_else(|e| panic!("{e} in {:?}", shown()))
        .unwrap_or_else(|| panic!("no head in {:?}", shown()));
    let rest = &raw[used..];
    let body = if head_only {
        rest.to_vec()
    } else {
        let mut body = Vec::new();
        let mut decoder = BodyDecoder::new(head.framing);
        let progress = decoder
            .decode(rest, &mut body)
            .unwrap_or_else(|e| panic!("{e} in {:?}", shown()));
        let complete = progress.done || head.framing == Framing::UntilClose;
        assert!(complete, "the body was cut short: {:?}", shown());
        assert_eq!(
            progress.used,
            rest.len(),
            "bytes after the answer: {:?}",
            shown()
        );
        body
    };
    Answer {
        status: head.status,
        headers: head.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Undoes chunked transfer coding, up to the last chunk.
#[allow(dead_code)] // compare.rs reads streams whole with it
pub fn dechunk(body: &[u8]) -> Vec<u8> {
    http::dechunk(body).unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(body)))
}

/// Reads from `stream` until `needle` has been seen (or 5 s pass).
pub async fn read_until(stream: &mut TcpStream, seen: &mut String, needle: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    while !seen.contains(needle) {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {needle:?}; got {seen:?}"))
            .unwrap();
        assert!(n > 0, "connection closed before {needle:?}; got {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}
