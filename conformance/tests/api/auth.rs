//! Signed tokens (JWT): who may subscribe to private topics, who may
//! publish and delete once a key is configured, how streams end when their
//! token expires, CORS with credentials, and the refusals' metrics.
//!
//! Tokens the hub should take are minted with [`Signer`]; those it must
//! refuse (expired, not yet valid, `alg: none`, signed with another key or
//! algorithm, malformed) are made with `jsonwebtoken` or by hand. RS256 and
//! ES256 key pairs are made at test time with the `openssl` command.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use slosh_client::http::{self, Framing, Keep};
use slosh_core::auth::{Grant, Pattern, Signer, TokenKey, DEFAULT_COOKIE, LEEWAY};
use slosh_core::stream::SSE_TOKEN_EXPIRED;
use slosh_core::{Epoch, Hub, Settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use super::helpers::{parse, read_until, spawn_hub, Answer, App, ServeOptions, EPOCH};
use super::websocket::{connect, next_frame, send, Ws};

/// The HS256 secret of the suite's hubs.
const SECRET: &[u8] = b"the conformance suite's HS256 secret";

/// `WWW-Authenticate` of a refusal for want of a token.
const CHALLENGE: &str = r#"Bearer realm="slosh""#;
/// … of a token refused (signature, algorithm, form) or expired.
const INVALID: &str = r#"Bearer realm="slosh", error="invalid_token""#;
/// … of a valid token that does not name the topic.
const SCOPE: &str = r#"Bearer realm="slosh", error="insufficient_scope""#;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A hub with `settings`, checking tokens with `key` (if any), whose topics
/// have the suite's epoch.
fn hub_with(settings: Settings, key: Option<TokenKey>) -> Hub {
    let builder = Hub::builder()
        .settings(settings)
        .epochs(|| Epoch::from_bits(0));
    match key {
        Some(key) => builder.token_key(key).build(),
        None => builder.build(),
    }
}

/// The frontend under test serving a hub with `settings` and the HS256
/// key [`SECRET`].
async fn serve(settings: Settings) -> App {
    let key = TokenKey::secret(SECRET).unwrap();
    serve_hub(hub_with(settings, Some(key))).await
}

async fn serve_hub(hub: Hub) -> App {
    spawn_hub(crate::FRONTEND, hub, ServeOptions::default()).await
}

/// Settings whose topics matching `patterns` are private.
fn private(patterns: &[&str]) -> Settings {
    Settings {
        private: patterns
            .iter()
            .map(|p| Pattern::parse(p).unwrap())
            .collect(),
        ..Settings::default()
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A token valid for a minute, minted as an application would.
fn token(subscribe: &[&str], publish: &[&str]) -> String {
    Signer::secret(SECRET)
        .unwrap()
        .token(&Grant {
            subject: Some("user-42".into()),
            subscribe: strings(subscribe),
            publish: strings(publish),
            ttl: Duration::from_secs(60),
        })
        .unwrap()
}

/// An HS256 token signed with [`SECRET`] carrying exactly `claims`.
fn signed(claims: &Value) -> String {
    signed_with(Algorithm::HS256, &EncodingKey::from_secret(SECRET), claims)
}

fn signed_with(algorithm: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(algorithm), claims, key).unwrap()
}

/// Unpadded base64url, as JWT segments are written.
fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// A JWT written by hand: `header.payload.signature`.
fn hand_made(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    )
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A long-poll of `topic` from the start (it answers at once when the
/// topic holds a message, which every test publishes first).
async fn poll(app: &App, topic: &str, headers: &[(&str, &str)]) -> Answer {
    soon(app.send("GET", &format!("/topics/{topic}.json?n=0"), headers, b"")).await
}

/// The answer `request` gets, which must come at once: a refusal, or a
/// long-poll of buffered messages (neither parks nor streams).
async fn soon(request: impl std::future::Future<Output = Answer>) -> Answer {
    tokio::time::timeout(Duration::from_secs(5), request)
        .await
        .expect("an answer at once, not a parked poll or a stream")
}

/// Asserts that `answer` is a refusal with `status` and challenge
/// `challenge`, with a JSON error a person can read.
#[track_caller]
fn assert_refused(answer: &Answer, status: u16, challenge: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    assert_eq!(
        answer.header("WWW-Authenticate"),
        Some(challenge),
        "{answer:?}"
    );
    assert!(
        answer
            .header("Content-Type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{answer:?}"
    );
    let error = answer.json();
    assert!(
        error["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{answer:?}"
    );
}

/// Asserts that `answer` is a long-poll answer delivering `messages`.
#[track_caller]
fn assert_delivers(answer: &Answer, messages: Value) {
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()["res"], messages, "{answer:?}");
}

/// A key pair in PEM form (PKCS#8 private key, SPKI public key).
struct KeyPair {
    private: Vec<u8>,
    public: Vec<u8>,
}

fn openssl(args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the openssl command (the RS256/ES256 tests make their keys with it)");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn key_pair(algorithm: &[&str]) -> KeyPair {
    let private = openssl(&[&["genpkey"], algorithm].concat(), b"");
    let public = openssl(&["pkey", "-pubout"], &private);
    KeyPair { private, public }
}

fn rsa() -> &'static KeyPair {
    static KEY: OnceLock<KeyPair> = OnceLock::new();
    KEY.get_or_init(|| key_pair(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]))
}

fn ec() -> &'static KeyPair {
    static KEY: OnceLock<KeyPair> = OnceLock::new();
    KEY.get_or_init(|| key_pair(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]))
}

/// Another P-256 key: same algorithm, wrong key.
fn other_ec() -> &'static KeyPair {
    static KEY: OnceLock<KeyPair> = OnceLock::new();
    KEY.get_or_init(|| key_pair(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]))
}

/// Sends a WebSocket upgrade for `target` with `extra` header lines and
/// reads the answer (for upgrades that are refused): as far as its framing
/// says, not until the server closes, which one frontend does only a
/// second later.
async fn refused_upgrade(app: &App, target: &str, extra: &str) -> Answer {
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "GET {target} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n\
         Connection: Upgrade, close\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some((head, used)) = http::parse_head(&raw, Keep::FramingOnly).unwrap() {
            let complete = match head.framing {
                Framing::Length(length) => raw.len() >= used + length,
                Framing::Empty => true,
                _ => false,
            };
            if complete {
                return parse(&raw);
            }
        }
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no whole answer within 5 s: {raw:?}"))
            .unwrap();
        if n == 0 {
            return parse(&raw);
        }
        raw.extend_from_slice(&buf[..n]);
    }
}

/// Reads until the server's close frame: its code and reason.
async fn close_frame(ws: &mut Ws) -> (u16, String) {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a close frame within 5 s");
        match message {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (u16::from(frame.code), frame.reason.to_string())
            }
            Some(Ok(Message::Close(None))) | None => panic!("closed without a code"),
            Some(Ok(_)) => {}
            Some(Err(error)) => panic!("{error}"),
        }
    }
}

/// Reads `stream` to its end (the server closes it), within 5 s.
async fn read_to_close(stream: &mut TcpStream, seen: &mut String) {
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
        .await
        .unwrap_or_else(|_| panic!("the stream stayed open; got {seen:?}"))
        .unwrap();
    seen.push_str(&String::from_utf8_lossy(&rest));
}

// 1. Where a token is read from.

#[tokio::test]
async fn a_private_topic_needs_a_token_in_the_header_the_query_or_the_cookie() {
    let app = serve(private(&["secret-*"])).await;
    app.hub.publish("secret-a", "hi").unwrap();
    let none = poll(&app, "secret-a", &[]).await;
    assert_refused(&none, 401, CHALLENGE);
    assert_eq!(none.header("Set-Cookie"), None, "no session for a refusal");

    let token = token(&["secret-*"], &[]);
    let header = poll(&app, "secret-a", &[("Authorization", &bearer(&token))]).await;
    assert_delivers(&header, json!(["hi"]));
    // The scheme is case-insensitive.
    let lower = poll(
        &app,
        "secret-a",
        &[("Authorization", &format!("bearer {token}"))],
    )
    .await;
    assert_delivers(&lower, json!(["hi"]));
    let query = soon(app.get(&format!("/topics/secret-a.json?n=0&access_token={token}"))).await;
    assert_delivers(&query, json!(["hi"]));
    let cookie = format!("theme=dark; {DEFAULT_COOKIE}={token}");
    let by_cookie = poll(&app, "secret-a", &[("Cookie", &cookie)]).await;
    assert_delivers(&by_cookie, json!(["hi"]));
    // An empty query token is none: it does not hide the cookie.
    let empty = soon(app.send(
        "GET",
        "/topics/secret-a.json?n=0&access_token=",
        &[("Cookie", &cookie)],
        b"",
    ))
    .await;
    assert_delivers(&empty, json!(["hi"]));
    // XML long-poll is a subscription too.
    let xml = soon(app.send(
        "GET",
        "/topics/secret-a.xml?n=0",
        &[("Authorization", &bearer(&token))],
        b"",
    ))
    .await;
    assert_eq!(xml.status, 200, "{xml:?}");
    assert!(xml.body.contains("<p>hi</p>"), "{xml:?}");
    assert_refused(
        &app.send("GET", "/topics/secret-a.xml?n=0", &[], b"").await,
        401,
        CHALLENGE,
    );
}

#[tokio::test]
async fn a_custom_token_cookie_replaces_the_default_one() {
    let app = serve(Settings {
        token_cookie: Some("app_jwt".into()),
        ..private(&["secret-*"])
    })
    .await;
    app.hub.publish("secret-a", "hi").unwrap();
    let token = token(&["secret-*"], &[]);
    let custom = poll(&app, "secret-a", &[("Cookie", &format!("app_jwt={token}"))]).await;
    assert_delivers(&custom, json!(["hi"]));
    let default = format!("{DEFAULT_COOKIE}={token}");
    let default = poll(&app, "secret-a", &[("Cookie", &default)]).await;
    assert_refused(&default, 401, CHALLENGE);
}

// 2. Tokens that are refused, and the leeway.

#[tokio::test]
async fn an_expired_token_is_403_but_one_within_the_leeway_is_taken() {
    assert_eq!(LEEWAY, 5, "the times below assume 5 s of leeway");
    let app = serve(private(&["secret-*"])).await;
    app.hub.publish("secret-a", "hi").unwrap();
    let rights = json!({"subscribe": ["secret-*"]});
    let long_gone = signed(&json!({"exp": unix_now() - 60, "slosh": rights}));
    let answer = poll(&app, "secret-a", &[("Authorization", &bearer(&long_gone))]).await;
    assert_refused(&answer, 403, INVALID);
    assert!(
        answer.json()["error"].as_str().unwrap().contains("expired"),
        "{answer:?}"
    );
    let just_gone = signed(&json!({"exp": unix_now() - 2, "slosh": rights}));
    let answer = poll(&app, "secret-a", &[("Authorization", &bearer(&just_gone))]).await;
    assert_delivers(&answer, json!(["hi"]));
    // `exp` is optional.
    let forever = signed(&json!({"slosh": rights}));
    let answer = poll(&app, "secret-a", &[("Authorization", &bearer(&forever))]).await;
    assert_delivers(&answer, json!(["hi"]));
}

#[tokio::test]
async fn a_token_not_valid_yet_is_403_but_one_within_the_leeway_is_taken() {
    let app = serve(private(&["secret-*"])).await;
    app.hub.publish("secret-a", "hi").unwrap();
    let rights = json!({"subscribe": ["secret-*"]});
    let later = signed(&json!({"nbf": unix_now() + 60, "exp": unix_now() + 120, "slosh": rights}));
    let answer = poll(&app, "secret-a", &[("Authorization", &bearer(&later))]).await;
    assert_refused(&answer, 403, INVALID);
    let soon = signed(&json!({"nbf": unix_now() + 2, "exp": unix_now() + 120, "slosh": rights}));
    let answer = poll(&app, "secret-a", &[("Authorization", &bearer(&soon))]).await;
    assert_delivers(&answer, json!(["hi"]));
}

#[tokio::test]
async fn a_token_with_a_wrong_signature_algorithm_or_form_is_401() {
    let app = serve(private(&["secret-*"])).await;
    app.hub.publish("secret-a", "hi").unwrap();
    let claims = json!({"exp": unix_now() + 60, "slosh": {"subscribe": ["*"]}});
    let other_secret = signed_with(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another secret"),
        &claims,
    );
    // A real token whose payload was swapped for one granting more.
    let real = token(&["nothing-here"], &[]);
    let parts: Vec<&str> = real.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64url(claims.to_string().as_bytes()),
        parts[2]
    );
    let alg_none = hand_made(&json!({"alg": "none", "typ": "JWT"}), &claims, "");
    let rs256 = Signer::private_pem(&rsa().private)
        .unwrap()
        .token(&Grant {
            subscribe: strings(&["*"]),
            ttl: Duration::from_secs(60),
            ..Grant::default()
        })
        .unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(&rs256).unwrap().alg,
        Algorithm::RS256
    );
    // HS512 with the right secret: still not the key's algorithm.
    let hs512 = signed_with(Algorithm::HS512, &EncodingKey::from_secret(SECRET), &claims);
    let two_segments = format!(
        "{}.{}",
        b64url(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64url(claims.to_string().as_bytes())
    );
    for (what, bad) in [
        ("another secret's signature", other_secret.as_str()),
        ("a tampered payload", tampered.as_str()),
        ("alg none", alg_none.as_str()),
        ("RS256 to an HS256 hub", rs256.as_str()),
        ("HS512 to an HS256 hub", hs512.as_str()),
        ("garbage", "garbage"),
        ("two segments", two_segments.as_str()),
        ("three empty segments", ".."),
        ("not base64", "a!.b!.c!"),
    ] {
        let answer = poll(&app, "secret-a", &[("Authorization", &bearer(bad))]).await;
        assert_eq!(answer.status, 401, "{what}: {answer:?}");
        assert_refused(&answer, 401, INVALID);
        // The same token in the query and the cookie.
        let query = soon(app.get(&format!("/topics/secret-a.json?n=0&access_token={bad}"))).await;
        assert_eq!(query.status, 401, "{what} in the query: {query:?}");
        let cookie = format!("{DEFAULT_COOKIE}={bad}");
        let cookie = poll(&app, "secret-a", &[("Cookie", &cookie)]).await;
        assert_eq!(cookie.status, 401, "{what} in the cookie: {cookie:?}");
    }
}

#[tokio::test]
async fn a_refused_subscription_creates_nothing() {
    let app = serve(private(&["secret-*"])).await;
    let wrong = token(&["secret-other"], &[]);
    let expired = signed(&json!({"exp": unix_now() - 60, "slosh": {"subscribe": ["*"]}}));
    let wrong = bearer(&wrong);
    let expired = bearer(&expired);
    for (headers, status) in [
        (vec![], 401),
        (vec![("Authorization", "Bearer garbage")], 401),
        (vec![("Authorization", wrong.as_str())], 403),
        (vec![("Authorization", expired.as_str())], 403),
    ] {
        for target in ["/topics/secret-new.json", "/topics/secret-new.sse"] {
            let answer = soon(app.send("GET", target, &headers, b"")).await;
            assert_eq!(answer.status, status, "{target} {headers:?}: {answer:?}");
            assert_eq!(answer.header("Set-Cookie"), None, "{answer:?}");
        }
        let extra: String = headers
            .iter()
            .map(|(name, value)| format!("{name}: {value}\r\n"))
            .collect();
        let upgrade = refused_upgrade(&app, "/topics/secret-new", &extra).await;
        assert_eq!(upgrade.status, status, "{headers:?}: {upgrade:?}");
    }
    assert_eq!(app.hub.info("secret-new"), None);
    assert_eq!(app.get("/topics").await.json(), json!({"topics": []}));
}

// 3. Patterns.

/// Polls each of `topics` with `token`: those in `allowed` answer, the
/// others are 403 for want of scope.
async fn check(app: &App, topics: &[&str], token: String, allowed: &[&str]) {
    for topic in topics {
        let answer = poll(app, topic, &[("Authorization", &bearer(&token))]).await;
        if allowed.contains(topic) {
            assert_delivers(&answer, json!([topic]));
        } else {
            assert_eq!(answer.status, 403, "{topic} ({allowed:?}): {answer:?}");
            assert_refused(&answer, 403, SCOPE);
        }
    }
}

#[tokio::test]
async fn token_patterns_match_a_topic_name_or_a_prefix() {
    let app = serve(private(&["*"])).await;
    let topics = [
        "user-42-inbox",
        "user-42-",
        "user-4",
        "user-420",
        "user-43-x",
        "my-user-42-x",
        "news",
        "news2",
        "axb",
        "ab",
        "a",
        "x",
        "ba",
    ];
    for topic in topics {
        app.hub.publish(topic, topic).unwrap();
    }
    check(
        &app,
        &topics,
        token(&["user-42-*"], &[]),
        &["user-42-inbox", "user-42-"],
    )
    .await;
    check(&app, &topics, token(&["*"], &[]), &topics).await;
    check(&app, &topics, token(&["news"], &[]), &["news"]).await;
    check(
        &app,
        &topics,
        token(&["news", "user-42-inbox"], &[]),
        &["news", "user-42-inbox"],
    )
    .await;
    // A pattern that is not one matches nothing, not even what it looks like.
    check(
        &app,
        &topics,
        token(&["a*b", "", "**", "*a", "a b", "x.y"], &[]),
        &[],
    )
    .await;
    // Publishing rights give no subscribing rights.
    check(&app, &topics, token(&[], &["*"]), &[]).await;
    // A valid token without the `slosh` claim allows nothing.
    check(
        &app,
        &topics,
        signed(&json!({"sub": "u", "exp": unix_now() + 60})),
        &[],
    )
    .await;
}

// 4. Topics that are not private.

#[tokio::test]
async fn topics_not_private_stay_open_with_no_token_or_a_bad_one() {
    let app = serve(private(&["secret-*"])).await;
    app.hub.publish("public", "hi").unwrap();
    let expired = signed(&json!({"exp": unix_now() - 60, "slosh": {"subscribe": ["*"]}}));
    let expired = bearer(&expired);
    let bad_cookie = format!("{DEFAULT_COOKIE}=garbage");
    for headers in [
        vec![],
        vec![("Authorization", "Bearer garbage")],
        vec![("Authorization", expired.as_str())],
        vec![("Cookie", bad_cookie.as_str())],
    ] {
        let answer = poll(&app, "public", &headers).await;
        assert_delivers(&answer, json!(["hi"]));
    }
    let query = app
        .get("/topics/public.json?n=0&access_token=garbage")
        .await;
    assert_delivers(&query, json!(["hi"]));
    // Streams too.
    let mut stream = app
        .open(
            "/topics/public.sse?n=0",
            &[("Authorization", "Bearer garbage")],
        )
        .await;
    let mut seen = String::new();
    read_until(
        &mut stream,
        &mut seen,
        &format!("id: 1@{EPOCH}\ndata: \"hi\"\n\n"),
    )
    .await;
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen:?}");
    let mut ws = connect(&app, "/topics/public?n=0", &[("Authorization", &expired)]).await;
    assert_eq!(
        next_frame(&mut ws).await,
        json!({"id": 1, "epoch": EPOCH, "data": "hi"})
    );
}

// 5. Publishing and deleting.

async fn post(app: &App, target: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    app.send("POST", target, &all, body.as_bytes()).await
}

#[tokio::test]
async fn with_a_key_publishing_needs_a_token_with_the_publish_right() {
    let app = serve(Settings::default()).await;
    let none = post(&app, "/topics/out", &[], "1").await;
    assert_refused(&none, 401, CHALLENGE);
    assert_eq!(app.hub.info("out"), None, "nothing stored, nothing created");

    let writer = token(&[], &["out"]);
    let answer = post(
        &app,
        "/topics/out",
        &[("Authorization", &bearer(&writer))],
        "1",
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body, r#"{"ok":true,"id":1}"#);
    let answer = post(
        &app,
        &format!("/topics/out?access_token={writer}"),
        &[],
        "2",
    )
    .await;
    assert_eq!(answer.body, r#"{"ok":true,"id":2}"#, "{answer:?}");

    let reader = token(&["out"], &[]);
    let answer = post(
        &app,
        "/topics/out",
        &[("Authorization", &bearer(&reader))],
        "3",
    )
    .await;
    assert_refused(&answer, 403, SCOPE);
    let answer = post(
        &app,
        "/topics/elsewhere",
        &[("Authorization", &bearer(&writer))],
        "3",
    )
    .await;
    assert_refused(&answer, 403, SCOPE);
    assert_eq!(app.hub.info("elsewhere"), None);
    let expired = signed(&json!({"exp": unix_now() - 60, "slosh": {"publish": ["out"]}}));
    let answer = post(
        &app,
        "/topics/out",
        &[("Authorization", &bearer(&expired))],
        "3",
    )
    .await;
    assert_refused(&answer, 403, INVALID);
    let answer = post(
        &app,
        "/topics/out",
        &[("Authorization", "Bearer garbage")],
        "3",
    )
    .await;
    assert_refused(&answer, 401, INVALID);
    assert_eq!(app.hub.info("out").unwrap()["max"], 2, "no refusal stored");
}

#[tokio::test]
async fn the_publish_token_still_works_beside_a_key() {
    let app = serve(Settings {
        publish_token: Some("old-token".into()),
        ..Settings::default()
    })
    .await;
    let answer = post(
        &app,
        "/topics/out",
        &[("Authorization", "Bearer old-token")],
        "1",
    )
    .await;
    assert_eq!(answer.body, r#"{"ok":true,"id":1}"#, "{answer:?}");
    let writer = token(&[], &["out"]);
    let answer = post(
        &app,
        "/topics/out",
        &[("Authorization", &bearer(&writer))],
        "2",
    )
    .await;
    assert_eq!(answer.body, r#"{"ok":true,"id":2}"#, "{answer:?}");
    assert_refused(&post(&app, "/topics/out", &[], "3").await, 401, CHALLENGE);
    let wrong = post(
        &app,
        "/topics/out",
        &[("Authorization", "Bearer old-tokeN")],
        "3",
    )
    .await;
    assert_refused(&wrong, 401, INVALID);
    assert_eq!(app.hub.info("out").unwrap()["max"], 2);
}

async fn delete(app: &App, headers: &[(&str, &str)]) -> Answer {
    soon(app.send("DELETE", "/topics/doomed", headers, b"")).await
}

#[tokio::test]
async fn delete_needs_the_publish_right_too() {
    let app = serve(Settings {
        publish_token: Some("old-token".into()),
        ..Settings::default()
    })
    .await;
    app.hub.publish("doomed", &1).unwrap();
    assert_refused(&delete(&app, &[]).await, 401, CHALLENGE);
    let reader = bearer(&token(&["doomed"], &[]));
    assert_refused(
        &delete(&app, &[("Authorization", &reader)]).await,
        403,
        SCOPE,
    );
    let other = bearer(&token(&[], &["doomed-not"]));
    assert_refused(
        &delete(&app, &[("Authorization", &other)]).await,
        403,
        SCOPE,
    );
    assert!(app.hub.info("doomed").is_some(), "still there");

    let writer = bearer(&token(&[], &["doom*"]));
    let answer = delete(&app, &[("Authorization", &writer)]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(app.hub.info("doomed"), None);

    app.hub.publish("doomed", &1).unwrap();
    let answer = delete(&app, &[("Authorization", "Bearer old-token")]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(app.hub.info("doomed"), None);
}

#[tokio::test]
async fn without_a_key_or_publish_token_publishing_stays_open() {
    let app = serve_hub(hub_with(Settings::default(), None)).await;
    let answer = post(&app, "/topics/open", &[], "1").await;
    assert_eq!(answer.body, r#"{"ok":true,"id":1}"#, "{answer:?}");
    // A token nobody checks is no reason to refuse.
    let answer = post(
        &app,
        "/topics/open",
        &[("Authorization", "Bearer garbage")],
        "2",
    )
    .await;
    assert_eq!(answer.body, r#"{"ok":true,"id":2}"#, "{answer:?}");
    assert_delivers(&poll(&app, "open", &[]).await, json!([1, 2]));
    let answer = app.send("DELETE", "/topics/open", &[], b"").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("WWW-Authenticate"), None);
}

// 6. Server-Sent Events.

#[tokio::test]
async fn an_sse_stream_ends_with_an_end_event_when_its_token_expires() {
    assert_eq!(LEEWAY, 5, "the times below assume 5 s of leeway");
    let app = serve(private(&["live-*"])).await;
    app.hub.publish("live-a", &1).unwrap();
    // `exp` 3 s ago is still taken (5 s of leeway) until 2 s from now: the
    // stream ends 1 to 2 s after it opens (the hub counts whole seconds).
    let token = signed(&json!({"exp": unix_now() - 3, "slosh": {"subscribe": ["live-*"]}}));
    let opened = Instant::now();
    let mut stream = app
        .open(
            "/topics/live-a.sse?n=0",
            &[("Connection", "close"), ("Authorization", &bearer(&token))],
        )
        .await;
    let mut seen = String::new();
    read_until(
        &mut stream,
        &mut seen,
        &format!("id: 1@{EPOCH}\ndata: 1\n\n"),
    )
    .await;
    app.hub.publish("live-a", &2).unwrap();
    read_until(
        &mut stream,
        &mut seen,
        &format!("id: 2@{EPOCH}\ndata: 2\n\n"),
    )
    .await;
    read_until(&mut stream, &mut seen, SSE_TOKEN_EXPIRED).await;
    let ended = opened.elapsed();
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(4)).contains(&ended),
        "ended after {ended:?}"
    );
    // Then the body ends, and the connection with it.
    read_to_close(&mut stream, &mut seen).await;
    let answer = parse(seen.as_bytes());
    assert_eq!(answer.status, 200);
    let events = format!("id: 1@{EPOCH}\ndata: 1\n\nid: 2@{EPOCH}\ndata: 2\n\n");
    assert_eq!(
        answer.body,
        format!("retry: 3000\n\n{events}{SSE_TOKEN_EXPIRED}"),
        "the end event is the last thing sent"
    );
    app.wait_for_subscribers("live-a", 0).await;
}

#[tokio::test]
async fn an_sse_stream_takes_its_token_from_the_query() {
    let app = serve(private(&["live-*"])).await;
    let refused = soon(app.get("/topics/live-b.sse")).await;
    assert_refused(&refused, 401, CHALLENGE);
    let token = token(&["live-b"], &[]);
    let mut stream = app
        .open(&format!("/topics/live-b.sse?access_token={token}"), &[])
        .await;
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, "retry: 3000\n\n").await;
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen:?}");
    app.wait_for_subscribers("live-b", 1).await;
    app.hub.publish("live-b", "hello").unwrap();
    read_until(
        &mut stream,
        &mut seen,
        &format!("id: 1@{EPOCH}\ndata: \"hello\"\n\n"),
    )
    .await;
    // By `Accept` rather than `.sse`, with the token in the cookie.
    let cookie = format!("{DEFAULT_COOKIE}={token}");
    let mut stream = app
        .open(
            "/topics/live-b?n=0",
            &[("Accept", "text/event-stream"), ("Cookie", &cookie)],
        )
        .await;
    let mut seen = String::new();
    read_until(
        &mut stream,
        &mut seen,
        &format!("id: 1@{EPOCH}\ndata: \"hello\"\n\n"),
    )
    .await;
}

// 7. WebSockets.

#[tokio::test]
async fn a_websocket_upgrade_on_a_private_topic_needs_a_token() {
    let app = serve(private(&["room-*"])).await;
    let answer = refused_upgrade(&app, "/topics/room-1", "").await;
    assert_refused(&answer, 401, CHALLENGE);
    let reader = token(&["room-2"], &[]);
    let answer = refused_upgrade(
        &app,
        "/topics/room-1",
        &format!("Authorization: Bearer {reader}\r\n"),
    )
    .await;
    assert_refused(&answer, 403, SCOPE);
    // A token that only publishes does not let a socket in either.
    let writer = token(&[], &["room-1"]);
    let answer = refused_upgrade(&app, &format!("/topics/room-1?access_token={writer}"), "").await;
    assert_refused(&answer, 403, SCOPE);
    assert_eq!(app.hub.info("room-1"), None);
}

#[tokio::test]
async fn a_subscribe_only_socket_receives_but_may_not_publish() {
    let app = serve(private(&["room-*"])).await;
    let reader = token(&["room-*"], &[]);
    let mut ws = connect(
        &app,
        "/topics/room-1",
        &[("Authorization", &bearer(&reader))],
    )
    .await;
    app.wait_for_subscribers("room-1", 1).await;
    app.hub.publish("room-1", "hi").unwrap();
    assert_eq!(
        next_frame(&mut ws).await,
        json!({"id": 1, "epoch": EPOCH, "data": "hi"})
    );
    send(&mut ws, r#"{"from":"reader"}"#).await;
    let error = next_frame(&mut ws).await;
    assert!(error["error"].is_string(), "{error}");
    assert_eq!(error.as_object().unwrap().len(), 1, "{error}");
    assert_eq!(app.hub.info("room-1").unwrap()["max"], 1, "nothing stored");
    // The socket stays usable.
    app.hub.publish("room-1", "again").unwrap();
    assert_eq!(
        next_frame(&mut ws).await,
        json!({"id": 2, "epoch": EPOCH, "data": "again"})
    );
}

#[tokio::test]
async fn a_socket_whose_token_has_the_publish_right_publishes() {
    let app = serve(private(&["room-*"])).await;
    let mut reader = connect(
        &app,
        "/topics/room-1",
        &[("Authorization", &bearer(&token(&["room-1"], &[])))],
    )
    .await;
    // In the query, as a browser's WebSocket must send it.
    let both = token(&["room-1"], &["room-1"]);
    let mut writer = connect(&app, &format!("/topics/room-1?access_token={both}"), &[]).await;
    app.wait_for_subscribers("room-1", 2).await;
    send(&mut writer, r#"{"from":"writer"}"#).await;
    let published = json!({"id": 1, "epoch": EPOCH, "data": {"from": "writer"}});
    assert_eq!(next_frame(&mut writer).await, published);
    assert_eq!(next_frame(&mut reader).await, published);
    assert_eq!(app.hub.info("room-1").unwrap()["max"], 1);
}

#[tokio::test]
async fn a_socket_whose_token_expires_is_closed_1008() {
    let app = serve(private(&["room-*"])).await;
    // Taken until 1 to 2 s from now, as in the SSE test above.
    let token = signed(&json!({"exp": unix_now() - 3, "slosh": {"subscribe": ["room-*"]}}));
    let opened = Instant::now();
    let mut ws = connect(
        &app,
        "/topics/room-1",
        &[("Authorization", &bearer(&token))],
    )
    .await;
    app.wait_for_subscribers("room-1", 1).await;
    app.hub.publish("room-1", "hi").unwrap();
    assert_eq!(
        next_frame(&mut ws).await,
        json!({"id": 1, "epoch": EPOCH, "data": "hi"})
    );
    let (code, reason) = close_frame(&mut ws).await;
    let ended = opened.elapsed();
    assert_eq!((code, reason.as_str()), (1008, "token expired"));
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(4)).contains(&ended),
        "closed after {ended:?}"
    );
    app.wait_for_subscribers("room-1", 0).await;
}

/// The publish right a token gave a socket must not outlive the token: on a
/// topic anyone may read, the socket is ended at its expiry all the same.
#[tokio::test]
async fn a_socket_let_publish_by_a_token_is_closed_1008_when_it_expires() {
    let app = serve(private(&["room-*"])).await;
    // A reader that shows no token, which nothing ends.
    let mut reader = connect(&app, "/topics/lobby", &[]).await;
    let token = signed(&json!({"exp": unix_now() - 3, "slosh": {"publish": ["lobby"]}}));
    let opened = Instant::now();
    let mut writer = connect(&app, "/topics/lobby", &[("Authorization", &bearer(&token))]).await;
    send(&mut writer, "1").await;
    let first = json!({"id": 1, "epoch": EPOCH, "data": 1});
    assert_eq!(next_frame(&mut writer).await, first);
    let (code, reason) = close_frame(&mut writer).await;
    let ended = opened.elapsed();
    assert_eq!((code, reason.as_str()), (1008, "token expired"));
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(4)).contains(&ended),
        "closed after {ended:?}"
    );
    app.hub.publish("lobby", &2).unwrap();
    assert_eq!(next_frame(&mut reader).await, first);
    assert_eq!(
        next_frame(&mut reader).await,
        json!({"id": 2, "epoch": EPOCH, "data": 2})
    );
    assert_eq!(app.hub.info("lobby").unwrap()["subscribers"], 1);
}

// 8. CORS with credentials.

fn lists(value: Option<&str>, item: &str) -> bool {
    value.is_some_and(|v| v.split(',').any(|i| i.trim().eq_ignore_ascii_case(item)))
}

#[tokio::test]
async fn a_listed_origin_may_send_credentials_and_any_origin_may_not() {
    let app = serve(Settings {
        cors_origins: vec!["https://app.example".into()],
        ..private(&["secret-*"])
    })
    .await;
    app.hub.publish("secret-a", "hi").unwrap();
    let cookie = format!("{DEFAULT_COOKIE}={}", token(&["secret-*"], &[]));
    let origin = ("Origin", "https://app.example");
    let answer = poll(&app, "secret-a", &[origin, ("Cookie", &cookie)]).await;
    assert_delivers(&answer, json!(["hi"]));
    assert_eq!(
        answer.header("Access-Control-Allow-Origin"),
        Some("https://app.example")
    );
    assert_eq!(
        answer.header("Access-Control-Allow-Credentials"),
        Some("true")
    );
    assert!(lists(answer.header("Vary"), "Origin"), "{answer:?}");
    // A refusal carries them too, so the page can read why.
    let refused = poll(&app, "secret-a", &[origin]).await;
    assert_refused(&refused, 401, CHALLENGE);
    assert_eq!(
        refused.header("Access-Control-Allow-Credentials"),
        Some("true")
    );
    // An origin not listed gets no CORS header at all.
    let stranger = poll(
        &app,
        "secret-a",
        &[("Origin", "https://evil.example"), ("Cookie", &cookie)],
    )
    .await;
    assert_eq!(stranger.header("Access-Control-Allow-Origin"), None);
    assert_eq!(stranger.header("Access-Control-Allow-Credentials"), None);
    // The preflight of a request carrying a bearer token.
    let preflight = app
        .send(
            "OPTIONS",
            "/topics/secret-a",
            &[
                origin,
                ("Access-Control-Request-Method", "POST"),
                (
                    "Access-Control-Request-Headers",
                    "authorization, content-type",
                ),
            ],
            b"",
        )
        .await;
    assert!(
        preflight.status == 200 || preflight.status == 204,
        "{preflight:?}"
    );
    assert!(
        lists(
            preflight.header("Access-Control-Allow-Headers"),
            "Authorization"
        ),
        "{preflight:?}"
    );
    assert!(
        lists(preflight.header("Access-Control-Allow-Methods"), "POST"),
        "{preflight:?}"
    );
    assert_eq!(
        preflight.header("Access-Control-Allow-Credentials"),
        Some("true")
    );

    let any = serve(Settings {
        cors_origins: vec!["*".into()],
        ..private(&["secret-*"])
    })
    .await;
    any.hub.publish("secret-a", "hi").unwrap();
    let answer = poll(&any, "secret-a", &[origin, ("Cookie", &cookie)]).await;
    assert_delivers(&answer, json!(["hi"]));
    assert_eq!(answer.header("Access-Control-Allow-Origin"), Some("*"));
    assert_eq!(answer.header("Access-Control-Allow-Credentials"), None);
    let preflight = any
        .send(
            "OPTIONS",
            "/topics/secret-a",
            &[origin, ("Access-Control-Request-Method", "GET")],
            b"",
        )
        .await;
    assert_eq!(preflight.header("Access-Control-Allow-Origin"), Some("*"));
    assert_eq!(preflight.header("Access-Control-Allow-Credentials"), None);
    assert!(
        lists(
            preflight.header("Access-Control-Allow-Headers"),
            "Authorization"
        ),
        "{preflight:?}"
    );
}

// 9. Metrics.

#[tokio::test]
async fn refusals_are_counted_as_unauthorized_or_forbidden() {
    let app = serve(private(&["secret-*"])).await;
    app.hub.publish("secret-a", "hi").unwrap();
    let metrics = app.hub.metrics();
    assert_eq!(metrics.rejected_total("unauthorized"), 0);
    assert_eq!(metrics.rejected_total("forbidden"), 0);
    let wrong = bearer(&token(&["secret-b"], &[]));
    let expired = signed(&json!({"exp": unix_now() - 60, "slosh": {"subscribe": ["*"]}}));
    let expired = bearer(&expired);
    // Unauthorized: no token, a bad one (long-poll, SSE, WebSocket, POST).
    poll(&app, "secret-a", &[]).await;
    soon(app.send(
        "GET",
        "/topics/secret-a.sse",
        &[("Authorization", "Bearer garbage")],
        b"",
    ))
    .await;
    refused_upgrade(&app, "/topics/secret-a", "").await;
    post(&app, "/topics/secret-a", &[], "1").await;
    // Forbidden: a token for another topic, an expired one.
    poll(&app, "secret-a", &[("Authorization", &wrong)]).await;
    poll(&app, "secret-a", &[("Authorization", &expired)]).await;
    refused_upgrade(
        &app,
        "/topics/secret-a",
        &format!("Authorization: {wrong}\r\n"),
    )
    .await;
    // Let in: not counted.
    let good = bearer(&token(&["secret-*"], &[]));
    assert_delivers(
        &poll(&app, "secret-a", &[("Authorization", &good)]).await,
        json!(["hi"]),
    );
    assert_eq!(metrics.rejected_total("unauthorized"), 4);
    assert_eq!(metrics.rejected_total("forbidden"), 3);
    let text = app.get("/metrics").await.body;
    assert!(
        text.contains("slosh_requests_rejected_total{reason=\"unauthorized\"} 4\n"),
        "{text}"
    );
    assert!(
        text.contains("slosh_requests_rejected_total{reason=\"forbidden\"} 3\n"),
        "{text}"
    );
}

// Public keys.

#[tokio::test]
async fn a_hub_with_a_public_key_takes_only_tokens_its_private_key_signed() {
    let grant = Grant {
        subscribe: strings(&["k-*"]),
        ttl: Duration::from_secs(60),
        ..Grant::default()
    };
    let claims = json!({"exp": unix_now() + 60, "slosh": {"subscribe": ["k-*"]}});
    for (pair, algorithm, stranger) in [(rsa(), "RS256", ec()), (ec(), "ES256", other_ec())] {
        let key = TokenKey::public_pem(&pair.public).unwrap();
        assert_eq!(key.algorithm(), algorithm);
        let app = serve_hub(hub_with(private(&["k-*"]), Some(key))).await;
        app.hub.publish("k-1", &1).unwrap();
        let good = Signer::private_pem(&pair.private)
            .unwrap()
            .token(&grant)
            .unwrap();
        assert_delivers(
            &poll(&app, "k-1", &[("Authorization", &bearer(&good))]).await,
            json!([1]),
        );
        let stranger = Signer::private_pem(&stranger.private)
            .unwrap()
            .token(&grant)
            .unwrap();
        // HS256 with the public key as the secret: the classic confusion.
        let confused = signed_with(
            Algorithm::HS256,
            &EncodingKey::from_secret(&pair.public),
            &claims,
        );
        let hs256 = signed(&claims);
        for (what, bad) in [
            ("another key", stranger),
            ("HS256 keyed with the public key", confused),
            ("HS256", hs256),
        ] {
            let answer = poll(&app, "k-1", &[("Authorization", &bearer(&bad))]).await;
            assert_eq!(answer.status, 401, "{algorithm} hub, {what}: {answer:?}");
            assert_refused(&answer, 401, INVALID);
        }
    }
}

// 10. What a private topic shows to those who may not read it.

#[tokio::test]
async fn a_private_topic_is_described_and_listed_only_to_a_token_that_may_read_it() {
    let app = serve(private(&["own-*"])).await;
    app.hub.publish("own-a", &1).unwrap();
    app.hub.publish("open", &1).unwrap();
    assert_refused(&app.get("/topics/own-a.info").await, 401, CHALLENGE);
    let reader = token(&["own-a"], &[]);
    let info = app
        .send(
            "GET",
            "/topics/own-a.info",
            &[("Authorization", &bearer(&reader))],
            b"",
        )
        .await;
    assert_eq!(info.status, 200, "{info:?}");
    assert_eq!(info.json()["max"], json!(1));
    let names = |answer: &Answer| -> Vec<String> {
        answer.json()["topics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|topic| topic["topic"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&app.get("/topics").await), ["open"]);
    let listed = app.get(&format!("/topics?access_token={reader}")).await;
    assert_eq!(names(&listed), ["open", "own-a"]);
    let other = token(&["own-b"], &[]);
    let listed = app.get(&format!("/topics?access_token={other}")).await;
    assert_eq!(names(&listed), ["open"]);
}

#[tokio::test]
async fn a_deleted_private_topic_is_no_news_to_a_reconnect_without_a_token() {
    let app = serve(private(&["own-*"])).await;
    app.hub.publish("own-a", &1).unwrap();
    assert!(app.hub.delete("own-a"));
    let anonymous = app
        .send("GET", "/topics/own-a.sse", &[("Last-Event-ID", "1")], b"")
        .await;
    assert_refused(&anonymous, 401, CHALLENGE);
    let reader = token(&["own-a"], &[]);
    let told = app
        .send(
            "GET",
            "/topics/own-a.sse",
            &[("Last-Event-ID", "1"), ("Authorization", &bearer(&reader))],
            b"",
        )
        .await;
    assert_eq!(told.status, 204, "{told:?}");
}

#[tokio::test]
async fn a_parked_long_poll_answers_when_its_token_expires() {
    assert_eq!(LEEWAY, 5, "the times below assume 5 s of leeway");
    let app = serve(private(&["own-*"])).await;
    // Taken for 1 to 2 s more; the poll timeout is 30 s.
    let token = signed(&json!({"exp": unix_now() - 4, "slosh": {"subscribe": ["own-*"]}}));
    let opened = Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        app.send(
            "GET",
            "/topics/own-a.json?n=0",
            &[("Authorization", &bearer(&token))],
            b"",
        ),
    )
    .await
    .expect("the poll answered at the token's expiry");
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()["res"], json!([]));
    assert!(
        opened.elapsed() >= Duration::from_millis(500),
        "{:?}",
        opened.elapsed()
    );
    let again = app
        .send(
            "GET",
            "/topics/own-a.json?n=0",
            &[("Authorization", &bearer(&token))],
            b"",
        )
        .await;
    assert_refused(&again, 403, INVALID);
}

#[tokio::test]
async fn a_page_elsewhere_may_read_why_it_was_refused() {
    let app = serve(Settings {
        cors_origins: vec!["https://app.example".into()],
        ..private(&["own-*"])
    })
    .await;
    let refused = app
        .send(
            "GET",
            "/topics/own-a.json",
            &[("Origin", "https://app.example")],
            b"",
        )
        .await;
    assert_eq!(refused.status, 401);
    assert_eq!(
        refused.header("Access-Control-Expose-Headers"),
        Some("WWW-Authenticate, Retry-After")
    );
}
