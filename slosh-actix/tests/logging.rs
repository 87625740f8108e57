//! What the actix frontend (actix-web, actix-http, actix-server and this
//! adapter) logs at the most verbose level: never a token, whether it came
//! in `Authorization` or in the query string. Its own test binary, because
//! it installs the process-wide subscriber.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use slosh_core::{Hub, Settings};

/// Every log line, as the subscriber wrote it.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn no_token_is_logged_even_at_trace_from_a_header_or_the_query_string() {
    const TOKEN: &str = "tok-configured-9f2c";
    const WRONG: &str = "tok-wrong-guess-51ab";
    const IN_QUERY: &str = "tok-in-the-query-77d0";
    let captured = Captured::default();
    let writer = captured.clone();
    // `init` also forwards the `log` crate's records (actix-web uses both).
    tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let hub = Hub::builder()
        .settings(Settings {
            publish_token: Some(TOKEN.to_string()),
            poll_timeout: Some(Duration::from_secs(1)),
            ..Settings::default()
        })
        .build();
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let options = slosh_actix::ServeOptions {
            workers: 1,
            grace: Duration::from_secs(1),
            ..slosh_actix::ServeOptions::default()
        };
        actix_web::rt::System::new().block_on(slosh_actix::serve_with(
            listener,
            hub,
            options,
            async move {
                let _ = actix_web::rt::task::spawn_blocking(move || stopped.recv()).await;
            },
        ))
    });

    let head = |method: &str, target: &str, extra: &str| {
        format!("{method} {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}")
    };
    let requests = [
        head(
            "POST",
            &format!("/topics/t?token={IN_QUERY}"),
            &format!("Authorization: Bearer {WRONG}\r\nContent-Length: 3\r\n\r\nx=1"),
        ),
        head(
            "POST",
            &format!("/topics/t?token={IN_QUERY}"),
            &format!("Authorization: Bearer {TOKEN}\r\nContent-Length: 3\r\n\r\nx=1"),
        ),
        head(
            "DELETE",
            &format!("/topics/nope?access_token={IN_QUERY}"),
            &format!("Authorization: Bearer {WRONG}\r\n\r\n"),
        ),
        head("GET", &format!("/topics/t.json?n=0&token={IN_QUERY}"), "\r\n"),
        head("GET", &format!("/topics/t.json?n={IN_QUERY}"), "\r\n"),
        head(
            "GET",
            &format!("/topics/t.sse?token={IN_QUERY}"),
            &format!("Last-Event-ID: {IN_QUERY}\r\n\r\n"),
        ),
        format!(
            "GET /topics/t?token={IN_QUERY} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer {WRONG}\r\n\r\n"
        ),
        head("GET", &format!("/no/such/file?token={IN_QUERY}"), "\r\n"),
        // Not HTTP at all: what the parser's error says.
        format!("BROKEN /?token={IN_QUERY} {WRONG}\r\n\r\n"),
        format!("GET /?token={IN_QUERY} HTTP/1.1\r\nAuthorization: Bearer {WRONG}\r\nBad Header {IN_QUERY}\r\n\r\n"),
    ];
    let mut seen = String::new();
    for request in &requests {
        let mut stream = TcpStream::connect(addr).unwrap();
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
    stop.send(()).unwrap();
    server.join().unwrap().unwrap();

    let log = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    // actix did log at trace, so the absence below means something.
    assert!(log.contains("TRACE"), "{log}");
    for secret in [TOKEN, WRONG, IN_QUERY] {
        assert!(!log.contains(secret), "{secret} was logged:\n{log}");
    }
}
