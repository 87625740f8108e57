//! Any sequence of requests (method, path, query, headers, body) through
//! `Hub::handle`, with every outcome driven a little: parked polls polled,
//! streams and sockets stepped, socket frames published, time moved on.
//!
//! Holds: nothing panics; every answer is well-formed (a status the
//! protocol uses, header values without control characters, error bodies
//! as `{"error":"…"}`, JSON answers that parse, XML answers that parse);
//! a static file is inside the root; and once every request is gone, no
//! subscriber is left counted.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use slosh_core::metrics::SubscriberKind;
use slosh_core::{
    Body, Hub, Mode, Outcome, Request, Response, Settings, SocketStep, StreamStep, Wake,
};

#[derive(Arbitrary, Debug)]
struct Input {
    config: Config,
    requests: Vec<Req>,
    /// Seconds to move the clock by between rounds of polling.
    ticks: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
struct Config {
    mailbox: bool,
    token: bool,
    cors: bool,
    root: bool,
    no_poll_timeout: bool,
    /// Check signed tokens (HS256 with `fuzz-key`), topic `a` private.
    jwt: bool,
}

#[derive(Arbitrary, Debug)]
struct Req {
    method: Method,
    target: Target,
    headers: Vec<(HeaderName, String)>,
    body: Option<Vec<u8>>,
    too_large: bool,
    /// Text frames sent if this becomes a WebSocket.
    frames: Vec<String>,
}

#[derive(Arbitrary, Debug)]
enum Method {
    Get,
    Post,
    Delete,
    Options,
    Head,
    Other(String),
}

/// Mostly topic URLs, so that the fuzzer spends its time past routing.
#[derive(Arbitrary, Debug)]
enum Target {
    Topic {
        name: TopicPick,
        suffix: Option<SuffixPick>,
        query: Option<String>,
    },
    Raw(String),
    /// `/subscribe[.sse|.json|.xml]?topic=…&…`: several topics at once.
    Several {
        format: Option<SuffixPick>,
        topics: Vec<TopicPick>,
        query: Option<String>,
    },
}

#[derive(Arbitrary, Debug)]
enum TopicPick {
    A,
    B,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum SuffixPick {
    Json,
    Xml,
    Sse,
    Info,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum HeaderName {
    Accept,
    ContentType,
    Cookie,
    LastEventId,
    Authorization,
    Origin,
    Upgrade,
    WebSocketKey,
    WebSocketVersion,
    Connection,
    Other(String),
}

impl HeaderName {
    fn as_str(&self) -> &str {
        match self {
            HeaderName::Accept => "Accept",
            HeaderName::ContentType => "Content-Type",
            HeaderName::Cookie => "Cookie",
            HeaderName::LastEventId => "Last-Event-ID",
            HeaderName::Authorization => "Authorization",
            HeaderName::Origin => "Origin",
            HeaderName::Upgrade => "Upgrade",
            HeaderName::WebSocketKey => "Sec-WebSocket-Key",
            HeaderName::WebSocketVersion => "Sec-WebSocket-Version",
            HeaderName::Connection => "Connection",
            HeaderName::Other(name) => name,
        }
    }
}

impl Target {
    fn render(&self) -> String {
        match self {
            Target::Raw(raw) => raw.clone(),
            Target::Several {
                format,
                topics,
                query,
            } => {
                let mut out = String::from("/subscribe");
                push_suffix(&mut out, format.as_ref());
                let mut separator = '?';
                for topic in topics.iter().take(6) {
                    out.push(separator);
                    separator = '&';
                    out.push_str("topic=");
                    out.push_str(match topic {
                        TopicPick::A => "a",
                        TopicPick::B => "b",
                        TopicPick::Other(other) => other,
                    });
                }
                if let Some(query) = query {
                    out.push(separator);
                    out.push_str(query);
                }
                out
            }
            Target::Topic {
                name,
                suffix,
                query,
            } => {
                let mut out = String::from("/topics/");
                out.push_str(match name {
                    TopicPick::A => "a",
                    TopicPick::B => "b",
                    TopicPick::Other(other) => other,
                });
                push_suffix(&mut out, suffix.as_ref());
                if let Some(query) = query {
                    out.push('?');
                    out.push_str(query);
                }
                out
            }
        }
    }
}

/// `.json`, `.sse`, … as picked, or nothing.
fn push_suffix(out: &mut String, suffix: Option<&SuffixPick>) {
    match suffix {
        None => {}
        Some(SuffixPick::Json) => out.push_str(".json"),
        Some(SuffixPick::Xml) => out.push_str(".xml"),
        Some(SuffixPick::Sse) => out.push_str(".sse"),
        Some(SuffixPick::Info) => out.push_str(".info"),
        Some(SuffixPick::Other(other)) => {
            out.push('.');
            out.push_str(other);
        }
    }
}

/// A static root shared by every run: two files, a folder, and a symlink
/// out of it to a secret.
fn root() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let base = std::env::temp_dir().join(format!("slosh-fuzz-{}", std::process::id()));
        let www = base.join("www");
        let _ = std::fs::create_dir_all(www.join("docs"));
        let _ = std::fs::write(www.join("index.html"), "home");
        let _ = std::fs::write(www.join("docs/index.html"), "docs");
        let _ = std::fs::write(base.join("secret.txt"), "secret");
        #[cfg(unix)]
        let _ = std::os::unix::fs::symlink(base.join("secret.txt"), www.join("out"));
        www
    })
}

fn hub(config: &Config) -> Hub {
    let settings = Settings {
        mode: if config.mailbox {
            Mode::Mailbox
        } else {
            Mode::Normal
        },
        queue: 3,
        poll_timeout: if config.no_poll_timeout {
            None
        } else {
            Some(Duration::from_secs(2))
        },
        max_message: 64,
        max_topics: 4,
        max_subscribers: 3,
        max_subscribers_total: 6,
        max_unsent: 128,
        heartbeat: Duration::from_secs(3),
        publish_token: config.token.then(|| "s3cret".to_string()),
        cors_origins: if config.cors {
            vec!["https://ok.example".to_string()]
        } else {
            Vec::new()
        },
        root: config.root.then(|| root().clone()),
        private: if config.jwt {
            vec![slosh_core::Pattern::parse("a").expect("a pattern")]
        } else {
            Vec::new()
        },
        max_topics_per_subscriber: 3,
        ..Settings::default()
    };
    let builder = Hub::builder().settings(settings);
    if config.jwt {
        builder
            .token_key(slosh_core::TokenKey::secret(b"fuzz-key").expect("a key"))
            .build()
    } else {
        builder.build()
    }
}

/// Statuses the protocol answers with.
const STATUSES: [u16; 13] = [
    101, 200, 204, 301, 400, 401, 404, 405, 413, 415, 431, 500, 503,
];

fn check_response(response: &Response) {
    assert!(STATUSES.contains(&response.status), "{response:?}");
    for (name, value) in &response.headers {
        assert!(
            value.chars().all(|c| c == '\t' || !c.is_control()),
            "header {name} carries a control character: {value:?}"
        );
    }
    if response.status >= 400 {
        let error: serde_json::Value =
            serde_json::from_slice(&response.body).expect("an error body is JSON");
        assert!(error["error"].is_string(), "{error}");
        if response.status == 405 {
            assert!(response.header("Allow").is_some());
        }
        if response.status == 503 {
            assert!(response.header("Retry-After").is_some());
        }
    }
    if response.status == 301 {
        let location = response
            .header("Location")
            .expect("a redirect has Location");
        assert!(location.starts_with('/') && !location.starts_with("//"));
        assert!(!location.starts_with("/\\"));
    }
    let content_type = response.header("Content-Type").unwrap_or("");
    if content_type.starts_with("application/json") {
        // Messages that no tree holds (`1e999`) are stored as sent, so the
        // answer is checked by the grammar, not by building a tree.
        serde_json::from_slice::<serde::de::IgnoredAny>(&response.body)
            .expect("a JSON answer parses");
    }
    if content_type.starts_with("text/xml") {
        check_xml(&response.body);
    }
}

fn check_xml(body: &[u8]) {
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(error) => panic!("XML answer does not parse: {error}"),
        }
        buf.clear();
    }
}

/// What is kept alive between rounds.
enum Live {
    Poll(slosh_core::LongPoll),
    Stream(slosh_core::EventStream),
    Socket(slosh_core::Socket),
}

fuzz_target!(|input: Input| {
    let hub = hub(&input.config);
    let canonical_root = input
        .config
        .root
        .then(|| std::fs::canonicalize(root()).ok())
        .flatten();
    let start = Instant::now();
    let mut now = start;
    let mut live: Vec<Live> = Vec::new();
    let mut ticks = input.ticks.iter();
    for req in input.requests.iter().take(12) {
        let method = match &req.method {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Head => "HEAD",
            Method::Other(other) => other.as_str(),
        };
        let target = req.target.render();
        let mut request = Request::new(method, &target);
        for (name, value) in req.headers.iter().take(8) {
            request.header(name.as_str(), value);
        }
        request.body = match (&req.body, req.too_large) {
            (_, true) => Body::TooLarge,
            (Some(body), false) => Body::Full(bytes::Bytes::copy_from_slice(body)),
            (None, false) => Body::Empty,
        };
        match hub.handle(request, now).resolved() {
            Outcome::Respond(response) => check_response(&response),
            Outcome::Park(poll) => live.push(Live::Poll(poll)),
            Outcome::Stream(stream) => {
                check_response(&stream.head());
                live.push(Live::Stream(stream));
            }
            Outcome::Socket(mut socket) => {
                check_response(&socket.head());
                for frame in req.frames.iter().take(4) {
                    if let Some(error) = socket.receive_text_here(frame, now) {
                        let error: serde_json::Value =
                            serde_json::from_slice(&error).expect("an error frame is JSON");
                        assert!(error["error"].is_string());
                    }
                }
                let _ = socket.receive_binary();
                live.push(Live::Socket(socket));
            }
            Outcome::File(file) => {
                let head = file.head();
                check_response(&head);
                let root = canonical_root.as_deref().expect("files only with a root");
                assert!(file.path().starts_with(root), "{:?}", file.path());
                assert_eq!(
                    head.header("Content-Length"),
                    Some(&*file.len().to_string())
                );
                check_response(&file.gone());
            }
            Outcome::Lookup(_) => panic!("resolved() left a lookup unmade"),
            Outcome::Publish(_) => panic!("resolved() left a publish unmade"),
            Outcome::Open(_) => panic!("a hub on memory asked for a topic to be opened"),
        }
        if let Some(tick) = ticks.next() {
            now += Duration::from_millis(u64::from(*tick) * 20);
            let _ = hub.sweep(now);
        }
        drive(&mut live, now);
    }
    now += Duration::from_secs(5);
    let _ = hub.sweep(now);
    drive(&mut live, now);
    drop(live);
    for kind in [
        SubscriberKind::LongPoll,
        SubscriberKind::Sse,
        SubscriberKind::WebSocket,
    ] {
        assert_eq!(
            hub.metrics().subscribers_now(kind),
            0,
            "a {} subscriber outlived its request",
            kind.label()
        );
    }
    let list = hub.list();
    for topic in list["topics"].as_array().into_iter().flatten() {
        assert_eq!(topic["subscribers"], 0, "{topic}");
    }
});

/// Steps every live outcome once at `now`, dropping the finished ones.
fn drive(live: &mut Vec<Live>, now: Instant) {
    live.retain_mut(|item| match item {
        Live::Poll(poll) => match poll.poll(now) {
            Wake::Ready(response) => {
                check_response(&response);
                false
            }
            Wake::Wait(_) => true,
        },
        Live::Stream(stream) => match stream.poll(now) {
            StreamStep::Send(chunks) => {
                let text = chunks.to_vec();
                assert!(std::str::from_utf8(&text).is_ok());
                true
            }
            StreamStep::Wait(..) => true,
            StreamStep::End(_) => false,
        },
        Live::Socket(socket) => match socket.poll(now) {
            SocketStep::Send(frames) => {
                for frame in frames.iter() {
                    serde_json::from_slice::<serde::de::IgnoredAny>(frame)
                        .expect("a frame is JSON");
                }
                true
            }
            SocketStep::Ping | SocketStep::Wait(..) => true,
            SocketStep::Close(code, _) => {
                assert!(matches!(code, 1001 | 1009 | 1013));
                false
            }
        },
    });
}
