//! Every refusal the hub can answer, with its status and a message a person
//! can act on.

use crate::cursor::CursorError;
use crate::decode::DecodeError;
use crate::name::NameError;

/// Why a request was refused. Each variant knows its HTTP status
/// ([`Error::status`]) and its metrics label ([`Error::reason`]); its
/// `Display` is the `{"error":"…"}` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The topic segment breaks the name rule.
    #[error("{0}")]
    BadTopicName(NameError),
    /// A stream of several topics named none, one twice, or too many; or
    /// its resume point does not give one place per topic.
    #[error("{0}")]
    BadTopicList(String),
    /// The last segment has a suffix other than the four known ones.
    #[error("unknown suffix: a topic URL may end in .json, .xml, .sse or .info")]
    BadSuffix,
    /// `n` is not a plain decimal u64, or was given twice.
    #[error("invalid n: {0}")]
    BadCursor(CursorError),
    /// `Last-Event-ID` is not a plain decimal u64.
    #[error("invalid Last-Event-ID: {0}")]
    BadLastEventId(CursorError),
    /// The query names `n` more than once.
    #[error("n given more than once: send one cursor")]
    DuplicateCursor,
    /// The publish body could not become a message.
    #[error("{0}")]
    Decode(DecodeError),
    /// An in-process publish of a value serde_json cannot represent (a map
    /// with non-string keys).
    #[error("message cannot be written as JSON: {0}")]
    Unserializable(String),
    /// The client stopped sending in the middle of its body.
    #[error("could not read the request body: send it whole")]
    BodyUnreadable,
    /// The body is larger than `max_message`.
    #[error("message too large: at most {limit} bytes are accepted")]
    TooLarge {
        /// The limit in force.
        limit: usize,
    },
    /// POST or DELETE without the publish token.
    #[error("publishing needs the header Authorization: Bearer <publish token>")]
    Unauthorized,
    /// A request that needs a signed token (what it would do is named)
    /// carried none.
    #[error("{0} needs a token: send Authorization: Bearer <token>, ?access_token=<token> or the token cookie")]
    NoToken(&'static str),
    /// The token carried is not one this server takes: the reason is
    /// named (signature, algorithm, form).
    #[error("the token was refused: {0}")]
    BadToken(String),
    /// The token is valid, but does not allow this now.
    #[error("{0}")]
    Forbidden(Denied),
    /// `.info`, DELETE, or a mailbox POST on a topic that does not exist.
    #[error("no such topic: {0}")]
    NoSuchTopic(String),
    /// Nothing is served at this path.
    #[error("not found")]
    NotFound,
    /// A static path with a `%` escape that is not two hex digits, or that
    /// is not UTF-8 once decoded.
    #[error("invalid path: percent escapes must be %XX and decode to UTF-8")]
    BadPath,
    /// The method is not served at this path.
    #[error("method {method} not allowed here: use {allow}")]
    MethodNotAllowed {
        /// The method as sent (truncated).
        method: String,
        /// The methods that are served, as the `Allow` header lists them.
        allow: &'static str,
    },
    /// Creating one more topic would pass `max_topics`.
    #[error("too many topics (at most {limit}): try again later")]
    TooManyTopics {
        /// The limit in force.
        limit: usize,
    },
    /// One more subscriber would pass `max_subscribers` on this topic.
    #[error("too many subscribers on this topic (at most {limit}): try again later")]
    TooManySubscribers {
        /// The limit in force.
        limit: usize,
    },
    /// One more subscriber would pass `max_subscribers_total`.
    #[error("too many subscribers on this server (at most {limit}): try again later")]
    TooManySubscribersTotal {
        /// The limit in force.
        limit: usize,
    },
    /// The server is shutting down.
    #[error("the server is shutting down: try again in a moment")]
    ShuttingDown,
    /// A WebSocket upgrade that breaks RFC 6455's handshake rules; the
    /// text names the header it needs.
    #[error("a WebSocket upgrade needs {0}")]
    BadUpgrade(&'static str),
    /// A binary frame on a WebSocket: messages are JSON text.
    #[error("binary frames are not published: send the message as JSON in a text frame")]
    BinaryFrame,
    /// The store could not keep a message (a disk full, a file gone, a
    /// store server down): nothing was stored, the publisher may retry.
    #[error("the message could not be stored ({0}): nothing was stored; try again in a moment")]
    Store(String),
    /// A stream (SSE or a WebSocket) asked on a connection the frontend
    /// cannot stream on or upgrade (hyper mounted without upgrades, say).
    #[error("streams are not available on this connection: use long-poll (.json or .xml)")]
    StreamsUnsupported,
}

/// Why a valid token does not allow a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// Its `exp` has passed.
    #[error("the token has expired: get a new one")]
    Expired,
    /// Its `nbf` is still to come.
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    /// It names no pattern matching the topic for this (subscribing or
    /// publishing).
    #[error("the token does not allow {action} topic {topic}")]
    Topic {
        /// `subscribing to` or `publishing to`.
        action: &'static str,
        /// The topic.
        topic: String,
    },
}

impl Error {
    /// The HTTP status this refusal is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Error::BadTopicName(_)
            | Error::BadTopicList(_)
            | Error::BadSuffix
            | Error::BadCursor(_)
            | Error::BadLastEventId(_)
            | Error::DuplicateCursor
            | Error::BadPath
            | Error::BadUpgrade(_) => 400,
            Error::Decode(DecodeError::UnsupportedType(_)) | Error::BinaryFrame => 415,
            Error::Decode(_) | Error::Unserializable(_) | Error::BodyUnreadable => 400,
            Error::TooLarge { .. } => 413,
            Error::Unauthorized | Error::NoToken(_) | Error::BadToken(_) => 401,
            Error::Forbidden(_) => 403,
            Error::NoSuchTopic(_) | Error::NotFound => 404,
            Error::MethodNotAllowed { .. } => 405,
            Error::TooManyTopics { .. }
            | Error::TooManySubscribers { .. }
            | Error::TooManySubscribersTotal { .. }
            | Error::ShuttingDown
            | Error::Store(_) => 503,
            Error::StreamsUnsupported => 501,
        }
    }

    /// The `reason` label of the rejection counter in `/metrics`.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::BadTopicName(_) | Error::BadTopicList(_) | Error::BadSuffix => "bad_topic",
            Error::BadCursor(_) | Error::BadLastEventId(_) | Error::DuplicateCursor => "bad_cursor",
            Error::Decode(DecodeError::UnsupportedType(_)) | Error::BinaryFrame => {
                "unsupported_type"
            }
            Error::BadUpgrade(_) => "bad_upgrade",
            Error::Decode(DecodeError::Empty) => "empty",
            Error::Decode(_) | Error::Unserializable(_) | Error::BodyUnreadable => "bad_body",
            Error::TooLarge { .. } => "too_large",
            Error::Unauthorized | Error::NoToken(_) | Error::BadToken(_) => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::NoSuchTopic(_) | Error::NotFound => "not_found",
            Error::BadPath => "bad_path",
            Error::MethodNotAllowed { .. } => "method",
            Error::TooManyTopics { .. } => "max_topics",
            Error::TooManySubscribers { .. } | Error::TooManySubscribersTotal { .. } => {
                "max_subscribers"
            }
            Error::ShuttingDown => "shutdown",
            Error::Store(_) => "store",
            Error::StreamsUnsupported => "unsupported",
        }
    }

    /// Every reason label, so `/metrics` can list zero counters too.
    pub const REASONS: [&'static str; 17] = [
        "bad_topic",
        "bad_cursor",
        "unsupported_type",
        "empty",
        "bad_body",
        "too_large",
        "unauthorized",
        "forbidden",
        "not_found",
        "bad_path",
        "method",
        "max_topics",
        "max_subscribers",
        "shutdown",
        "unsupported",
        "bad_upgrade",
        "store",
    ];

    /// The `Retry-After` seconds a client should wait, for refusals that
    /// pass with time.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            Error::TooManyTopics { .. }
            | Error::TooManySubscribers { .. }
            | Error::TooManySubscribersTotal { .. } => Some(5),
            Error::ShuttingDown | Error::Store(_) => Some(1),
            _ => None,
        }
    }

    /// The `WWW-Authenticate` challenge of a refusal for want of a token
    /// (RFC 6750 §3): `invalid_token` for a token refused or expired,
    /// `insufficient_scope` for one that does not name the topic.
    pub fn www_authenticate(&self) -> Option<&'static str> {
        match self {
            Error::Unauthorized | Error::NoToken(_) => Some(r#"Bearer realm="slosh""#),
            Error::BadToken(_) | Error::Forbidden(Denied::Expired | Denied::NotYetValid) => {
                Some(r#"Bearer realm="slosh", error="invalid_token""#)
            }
            Error::Forbidden(Denied::Topic { .. }) => {
                Some(r#"Bearer realm="slosh", error="insufficient_scope""#)
            }
            _ => None,
        }
    }

    /// The methods to list in `Allow`, for a 405.
    pub fn allow(&self) -> Option<&'static str> {
        match self {
            Error::MethodNotAllowed { allow, .. } => Some(allow),
            _ => None,
        }
    }
}

impl From<DecodeError> for Error {
    fn from(error: DecodeError) -> Error {
        Error::Decode(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_listed() {
        let samples = [
            Error::BadSuffix,
            Error::DuplicateCursor,
            Error::Decode(DecodeError::UnsupportedType("text/xml".into())),
            Error::Decode(DecodeError::Empty),
            Error::Decode(DecodeError::NotUtf8),
            Error::TooLarge { limit: 1 },
            Error::Unauthorized,
            Error::NoToken("subscribing"),
            Error::BadToken("bad".into()),
            Error::Forbidden(Denied::Expired),
            Error::NotFound,
            Error::BadPath,
            Error::MethodNotAllowed {
                method: "FROB".into(),
                allow: "GET",
            },
            Error::TooManyTopics { limit: 1 },
            Error::TooManySubscribers { limit: 1 },
            Error::ShuttingDown,
            Error::StreamsUnsupported,
            Error::BadUpgrade("Connection: Upgrade"),
            Error::BinaryFrame,
            Error::Store("disk full".into()),
        ];
        for error in samples {
            assert!(Error::REASONS.contains(&error.reason()), "{error:?}");
        }
    }
}
