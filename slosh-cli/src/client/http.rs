//! A small HTTP/1.1 client on hyper's connection API: one reusable
//! connection per server for requests, a fresh one per event stream, and
//! every failure sorted by how far the request got, since that decides
//! whether a publish may be sent again.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::target::Target;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A kept connection is reused only if its last request ended this
/// recently. A server closes idle connections after a while; reusing one it
/// is closing at that very moment would leave a publish's fate unknown, so
/// a connection idle for longer is replaced instead of risked.
const REUSE_WITHIN: Duration = Duration::from_secs(2);

/// The largest body of an answer that is not a stream of messages (a
/// publish's `{"ok":true,"id":N}`, `.info`, an error): a server cannot make
/// the client hold more.
pub(crate) const SMALL_BODY: usize = 64 * 1024;

/// Why a request got no answer, by how far it got.
#[derive(Debug)]
pub(crate) enum Failure {
    /// No connection could be made: nothing was sent.
    Connect {
        /// `host:port` as tried.
        address: String,
        /// What the system said.
        error: String,
        /// The OS refused the connection: nothing listens there.
        refused: bool,
    },
    /// Connected, but the request was not sent.
    NotSent(String),
    /// The request may have reached the server, and no (whole) answer came.
    NoAnswer(String),
    /// The answer came, larger than the limit it was read with.
    TooLarge(usize),
}

impl Failure {
    /// Whether the server may have acted on the request.
    pub(crate) fn maybe_processed(&self) -> bool {
        matches!(self, Failure::NoAnswer(_) | Failure::TooLarge(_))
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect {
                address,
                error,
                refused: true,
            } => write!(
                f,
                "cannot connect to {address} ({error}): is the server running at http://{address}?"
            ),
            Failure::Connect { address, error, .. } => {
                write!(f, "cannot connect to {address}: {error}")
            }
            Failure::NotSent(error) => write!(f, "the request could not be sent: {error}"),
            Failure::NoAnswer(error) => write!(f, "no answer from the server: {error}"),
            Failure::TooLarge(limit) => write!(
                f,
                "the server's answer is larger than {limit} bytes (raise --max-body to read it)"
            ),
        }
    }
}

/// An answer read whole.
#[derive(Debug)]
pub(crate) struct Answer {
    /// Its status.
    pub(crate) status: StatusCode,
    /// Its body, at most the limit the request was read with.
    pub(crate) body: Bytes,
}

impl Answer {
    /// What a person should read of a refusal: the server's
    /// `{"error":"…"}` text, else the start of the body, else the status.
    pub(crate) fn error_text(&self) -> String {
        error_text(self.status, &self.body)
    }
}

/// The text of a refusal, bounded so a hostile server cannot flood the
/// terminal.
pub(crate) fn error_text(status: StatusCode, body: &[u8]) -> String {
    const SHOWN: usize = 300;
    let from_json = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|json| json.get("error")?.as_str().map(str::to_string));
    let text = from_json.unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(SHOWN)
        .collect();
    let status_line = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .trim_end()
    .to_string();
    if text.is_empty() {
        status_line
    } else {
        format!("{status_line}: {text}")
    }
}

/// Opens a fresh HTTP/1.1 connection to `target`'s server. Its driver runs
/// on a task of its own and ends when the connection does.
pub(crate) async fn open(target: &Target) -> Result<SendRequest<Full<Bytes>>, Failure> {
    let address = format!("{}:{}", bracketed(&target.host), target.port);
    let connect_failure = |error: std::io::Error| Failure::Connect {
        address: address.clone(),
        refused: error.kind() == std::io::ErrorKind::ConnectionRefused,
        error: error.to_string(),
    };
    let stream = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect((target.host.as_str(), target.port)),
    )
    .await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(connect_failure(error)),
        Err(_) => {
            return Err(connect_failure(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no connection within {}s", CONNECT_TIMEOUT.as_secs()),
            )))
        }
    };
    // Messages are small and often; Nagle would hold each back.
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| Failure::NotSent(error.to_string()))?;
    tokio::spawn(async move {
        // The request that used it sees any error.
        let _ = connection.await;
    });
    Ok(sender)
}

fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// A request to `target` (its path and `Host`), with `headers` and `body`.
pub(crate) fn request(
    method: Method,
    target: &Target,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Request<Full<Bytes>>, String> {
    let mut builder = Request::builder()
        .method(method)
        .uri(target.path.as_str())
        .header(hyper::header::HOST, target.authority.as_str())
        .header(
            hyper::header::USER_AGENT,
            concat!("slosh-cli/", env!("CARGO_PKG_VERSION")),
        );
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(Full::new(body))
        .map_err(|error| format!("cannot make a request for {target}: {error}"))
}

/// Sends `request` on `sender`: a failure says whether it left.
async fn send_on(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<Response<Incoming>, (Failure, Option<Request<Full<Bytes>>>)> {
    if let Err(error) = sender.ready().await {
        return Err((Failure::NotSent(error.to_string()), Some(request)));
    }
    match sender.try_send_request(request).await {
        Ok(response) => Ok(response),
        Err(mut error) => {
            let unsent = error.take_message();
            let text = error.into_error().to_string();
            Err(match unsent {
                Some(request) => (Failure::NotSent(text), Some(request)),
                None => (Failure::NoAnswer(text), None),
            })
        }
    }
}

/// Sends `request` on a fresh connection and returns the answer's head:
/// what an event stream needs, since it holds its connection to itself.
pub(crate) async fn stream(
    target: &Target,
    request: Request<Full<Bytes>>,
) -> Result<Response<Incoming>, Failure> {
    let mut sender = open(target).await?;
    send_on(&mut sender, request)
        .await
        .map_err(|(failure, _)| failure)
}

/// Requests to one server over one kept connection.
#[derive(Debug)]
pub(crate) struct Client {
    /// The server (its path is not used).
    target: Target,
    /// The kept connection and when its last request ended.
    kept: Option<(SendRequest<Full<Bytes>>, Instant)>,
}

impl Client {
    /// A client for `target`'s server; it connects on its first request.
    pub(crate) fn new(target: &Target) -> Client {
        Client {
            target: target.clone(),
            kept: None,
        }
    }

    /// Sends `request` and reads its whole answer, at most `limit` bytes of
    /// body, all within `timeout`. A kept connection the server closed
    /// before the request left is replaced and the request sent on the new
    /// one; one it closed after is [`Failure::NoAnswer`].
    pub(crate) async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
        limit: usize,
        timeout: Duration,
    ) -> Result<Answer, Failure> {
        match tokio::time::timeout(timeout, self.send_untimed(request, limit)).await {
            Ok(result) => result,
            Err(_) => {
                // Dropping the request closed the connection.
                self.kept = None;
                Err(Failure::NoAnswer(format!(
                    "no answer within {}s",
                    timeout.as_secs_f64()
                )))
            }
        }
    }

    async fn send_untimed(
        &mut self,
        request: Request<Full<Bytes>>,
        limit: usize,
    ) -> Result<Answer, Failure> {
        let mut request = request;
        let kept = self
            .kept
            .take()
            .filter(|(sender, used)| !sender.is_closed() && used.elapsed() < REUSE_WITHIN);
        let response = match kept {
            Some((mut sender, _)) => match send_on(&mut sender, request).await {
                Ok(response) => (sender, response),
                Err((_, Some(unsent))) => {
                    request = unsent;
                    self.fresh(request).await?
                }
                Err((failure, None)) => return Err(failure),
            },
            None => self.fresh(request).await?,
        };
        let (sender, response) = response;
        let status = response.status();
        let body = match Limited::new(response.into_body(), limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                return Err(Failure::TooLarge(limit))
            }
            Err(error) => {
                return Err(Failure::NoAnswer(format!(
                    "the answer was cut short: {error}"
                )))
            }
        };
        self.kept = Some((sender, Instant::now()));
        Ok(Answer { status, body })
    }

    async fn fresh(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<(SendRequest<Full<Bytes>>, Response<Incoming>), Failure> {
        let mut sender = open(&self.target).await?;
        let response = send_on(&mut sender, request)
            .await
            .map_err(|(failure, _)| failure)?;
        Ok((sender, response))
    }
}

/// Reads a refusal's body, at most `limit` bytes of it (none if it is
/// larger or broken: the status still says what happened).
pub(crate) async fn read_refusal(body: Incoming, limit: usize) -> Bytes {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_shows_the_servers_error_text() {
        let body = br#"{"error":"invalid JSON at line 1 column 2"}"#;
        assert_eq!(
            error_text(StatusCode::BAD_REQUEST, body),
            "400 Bad Request: invalid JSON at line 1 column 2"
        );
        assert_eq!(
            error_text(StatusCode::BAD_GATEWAY, b"  upstream\ndown "),
            "502 Bad Gateway: upstream down"
        );
        assert_eq!(error_text(StatusCode::NOT_FOUND, b""), "404 Not Found");
        let long = "x".repeat(10_000);
        assert!(error_text(StatusCode::BAD_REQUEST, long.as_bytes()).len() < 400);
    }
}
