//! `slosh-cli publish URL [JSON | -]`: one POST per message, the id of each
//! printed, and every refusal explained.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use tokio::io::AsyncBufReadExt;

use super::http::{self, Client, SMALL_BODY};
use super::target::Target;
use super::PublishArgs;

/// How long a publish may wait for its answer.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

/// What a publish got.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Published {
    /// Stored under this id.
    Id(u64),
    /// Accepted and dropped by the server's filter.
    Dropped,
}

/// Posts messages to one topic URL.
pub(crate) struct Publisher {
    target: Target,
    client: Client,
    /// `Authorization: Bearer …`, when a token was given.
    authorization: Option<String>,
}

impl Publisher {
    /// A publisher to `target`, sending `token` with each message if given.
    pub(crate) fn new(target: Target, token: Option<&str>) -> Publisher {
        Publisher {
            client: Client::new(&target),
            target,
            authorization: token.map(|token| format!("Bearer {token}")),
        }
    }

    /// Where it publishes.
    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    /// POSTs `message` (JSON text) once.
    pub(crate) async fn publish(&mut self, message: Bytes) -> Result<Published, Refused> {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(authorization) = &self.authorization {
            headers.push(("authorization", authorization.as_str()));
        }
        let size = message.len();
        let request = http::request(Method::POST, &self.target, &headers, message)
            .map_err(|text| Refused::Permanent { text })?;
        let answer = match self.client.send(request, SMALL_BODY, PUBLISH_TIMEOUT).await {
            Ok(answer) => answer,
            Err(failure) if failure.maybe_processed() => {
                return Err(Refused::Unknown {
                    text: format!("{failure}: the message may or may not have been published"),
                })
            }
            Err(failure) => {
                return Err(Refused::Transient {
                    text: failure.to_string(),
                })
            }
        };
        if answer.status == StatusCode::OK {
            return read_published(&answer.body).ok_or_else(|| Refused::Unknown {
                text: format!(
                    "{} answered 200 without {{\"ok\":true,\"id\":N}}: is it a slosh topic URL?",
                    self.target
                ),
            });
        }
        let text = answer.error_text();
        Err(match answer.status {
            StatusCode::UNAUTHORIZED if self.authorization.is_some() => Refused::Denied {
                text: format!(
                    "{text} (the token given with --token or SLOSH_PUBLISH_TOKEN was not accepted)"
                ),
            },
            StatusCode::UNAUTHORIZED => Refused::Denied {
                text: format!(
                    "{text} (this server wants its publish token: pass --token TOKEN or set SLOSH_PUBLISH_TOKEN)"
                ),
            },
            StatusCode::PAYLOAD_TOO_LARGE => Refused::Permanent {
                text: format!(
                    "{text} (the message is {size} bytes; the server's --max-message sets the limit)"
                ),
            },
            StatusCode::NOT_FOUND if text.contains("no such topic") => Refused::Permanent {
                text: format!(
                    "{text} (a server in mailbox mode takes messages only for topics somebody is watching)"
                ),
            },
            StatusCode::NOT_FOUND => Refused::Permanent {
                text: format!("{text} (is {} a topic URL, …/topics/NAME?)", self.target),
            },
            status
                if status.is_server_error()
                    || status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::REQUEST_TIMEOUT =>
            {
                Refused::Transient { text }
            }
            _ => Refused::Permanent { text },
        })
    }
}

/// Why a publish did not go through.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The server refused this message and would again (bad JSON, too
    /// large, no token…).
    Permanent {
        /// What to tell a person.
        text: String,
    },
    /// The server wants a publish token (`401`): no message will go
    /// through until the right one is given.
    Denied {
        /// What to tell a person.
        text: String,
    },
    /// Nothing was stored and a later try may work (no server, a server
    /// at a limit or restarting).
    Transient {
        /// What to tell a person.
        text: String,
    },
    /// The request left and no answer came: it may have been stored.
    Unknown {
        /// What to tell a person.
        text: String,
    },
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Permanent { text }
            | Refused::Denied { text }
            | Refused::Transient { text }
            | Refused::Unknown { text } => f.write_str(text),
        }
    }
}

/// `{"ok":true,"id":N}` or `{"ok":true,"id":null,"dropped":true}`.
fn read_published(body: &[u8]) -> Option<Published> {
    let answer: serde_json::Value = serde_json::from_slice(body).ok()?;
    if answer.get("ok")?.as_bool()? {
        match answer.get("id")? {
            serde_json::Value::Null => Some(Published::Dropped),
            id => id.as_u64().map(Published::Id),
        }
    } else {
        None
    }
}

/// The verb.
pub(crate) async fn run(args: PublishArgs) -> ExitCode {
    let target = match Target::parse(&args.url) {
        Ok(target) => target,
        Err(why) => {
            eprintln!("slosh-cli: {why}");
            return ExitCode::from(2);
        }
    };
    let mut publisher = Publisher::new(target, args.token.as_deref());
    if args.message != "-" {
        return match publisher.publish(Bytes::from(args.message)).await {
            Ok(published) => {
                print(&published);
                ExitCode::SUCCESS
            }
            Err(refused) => {
                eprintln!(
                    "slosh-cli: publish to {} failed: {refused}",
                    publisher.target()
                );
                ExitCode::FAILURE
            }
        };
    }
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut number = 0u64;
    let mut sent = 0u64;
    loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => return ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("slosh-cli: cannot read stdin after line {number}: {error}");
                return ExitCode::FAILURE;
            }
        };
        number += 1;
        if line.trim().is_empty() {
            continue;
        }
        match publisher.publish(Bytes::from(line)).await {
            Ok(published) => {
                print(&published);
                sent += 1;
            }
            Err(refused) => {
                eprintln!(
                    "slosh-cli: publish to {} failed at line {number}: {refused}; \
                     {sent} message(s) before it were published, none after",
                    publisher.target()
                );
                return ExitCode::FAILURE;
            }
        }
    }
}

/// One line per message on stdout: its id, or `dropped`. A closed stdout
/// does not stop the publishing.
fn print(published: &Published) {
    let mut stdout = std::io::stdout().lock();
    let _ = match published {
        Published::Id(id) => writeln!(stdout, "{id}"),
        Published::Dropped => writeln!(stdout, "dropped"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_publish_answer_gives_the_id_or_says_dropped() {
        assert_eq!(
            read_published(br#"{"ok":true,"id":7}"#),
            Some(Published::Id(7))
        );
        assert_eq!(
            read_published(br#"{"ok":true,"id":null,"dropped":true}"#),
            Some(Published::Dropped)
        );
        assert_eq!(read_published(br#"{"ok":false}"#), None);
        assert_eq!(read_published(b"<html>"), None);
    }
}
