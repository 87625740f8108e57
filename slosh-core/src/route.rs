//! Where a request goes: the path split into a [`Route`], and the [`Format`]
//! a subscription answers in.

use crate::error::Error;
use crate::name;

/// The prefix every topic URL starts with.
pub const TOPICS_PREFIX: &str = "/topics";

/// What a request path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/topics` or `/topics/`: the list of topics.
    List,
    /// `/topics/NAME[.suffix]`. The name is validated but not yet allocated,
    /// so looking up an existing topic costs nothing.
    Topic {
        /// The topic's name, already checked against the rule.
        name: &'a str,
        /// The suffix of the last segment.
        suffix: Suffix,
    },
    /// `/subscribe.sse`, `/subscribe.json`, `/subscribe.xml`: one stream,
    /// or one long-poll, of the topics its `topic` parameters name
    /// ([`crate::multi`]).
    Subscribe(Format),
    /// `/subscribe`: a WebSocket of the topics its `topic` parameters name,
    /// changed by its frames ([`crate::multi`]).
    SubscribeSocket,
    /// `/healthz`.
    Health,
    /// `/metrics`.
    Metrics,
    /// Anything else: left to the embedder (static files, its own routes).
    Elsewhere,
}

/// The suffix of a topic URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suffix {
    /// No suffix: the format is negotiated from `Accept`.
    None,
    /// `.json`: long-poll answered in JSON.
    Json,
    /// `.xml`: long-poll answered in XML.
    Xml,
    /// `.sse`: a Server-Sent Events stream.
    Sse,
    /// `.info`: the topic's counters, without creating it.
    Info,
}

/// How a subscription is answered, once suffix and `Accept` are weighed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Long-poll with a JSON batch.
    Json,
    /// Long-poll with an XML batch (the historical default).
    Xml,
    /// A Server-Sent Events stream.
    Sse,
}

/// Splits a request path (without its query) into a [`Route`].
///
/// The path is taken as sent, without percent-decoding: a topic name never
/// needs escaping, so any `%` in it is refused by the name rule rather than
/// decoded into something (like `/`) that would change what the path means.
pub fn route(path: &str) -> Result<Route<'_>, Error> {
    match path {
        "/healthz" => return Ok(Route::Health),
        "/metrics" => return Ok(Route::Metrics),
        "/subscribe" => return Ok(Route::SubscribeSocket),
        "/subscribe.sse" => return Ok(Route::Subscribe(Format::Sse)),
        "/subscribe.json" => return Ok(Route::Subscribe(Format::Json)),
        "/subscribe.xml" => return Ok(Route::Subscribe(Format::Xml)),
        _ => {}
    }
    let Some(rest) = path.strip_prefix(TOPICS_PREFIX) else {
        return Ok(Route::Elsewhere);
    };
    let segment = match rest {
        "" | "/" => return Ok(Route::List),
        _ => match rest.strip_prefix('/') {
            Some(segment) => segment,
            // `/topicsfoo` is not under `/topics/`.
            None => return Ok(Route::Elsewhere),
        },
    };
    let (name, suffix) = match segment.rsplit_once('.') {
        Some((name, suffix)) => (name, parse_suffix(suffix)?),
        None => (segment, Suffix::None),
    };
    name::validate(name).map_err(Error::BadTopicName)?;
    Ok(Route::Topic { name, suffix })
}

fn parse_suffix(suffix: &str) -> Result<Suffix, Error> {
    match suffix {
        "json" => Ok(Suffix::Json),
        "xml" => Ok(Suffix::Xml),
        "sse" => Ok(Suffix::Sse),
        "info" => Ok(Suffix::Info),
        _ => Err(Error::BadSuffix),
    }
}

impl Suffix {
    /// The subscription format this suffix selects, negotiating from
    /// `Accept` when there is none. `None` for `.info`, which is no
    /// subscription.
    pub fn format(self, accept: Option<&str>) -> Option<Format> {
        match self {
            Suffix::Json => Some(Format::Json),
            Suffix::Xml => Some(Format::Xml),
            Suffix::Sse => Some(Format::Sse),
            Suffix::Info => None,
            Suffix::None => Some(negotiate(accept)),
        }
    }
}

/// The spec's negotiation: `text/event-stream` anywhere means SSE (that is
/// what `EventSource` sends); a most preferred `application/json` means JSON;
/// anything else XML, the historical default.
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Xml;
    };
    let mut best: Option<(&str, u16)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("text/event-stream") {
            return Format::Sse;
        }
        let q = parts
            .filter_map(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .or_else(|| p.trim().strip_prefix("Q="))
            })
            .map(parse_q)
            .next()
            .unwrap_or(1000);
        if best.is_none_or(|(_, best_q)| q > best_q) {
            best = Some((media, q));
        }
    }
    match best {
        Some((media, q)) if q > 0 && media.eq_ignore_ascii_case("application/json") => Format::Json,
        _ => Format::Xml,
    }
}

/// A `q` value in thousandths; a malformed one counts as 0 (not acceptable),
/// so a garbled preference never wins.
fn parse_q(q: &str) -> u16 {
    let q = q.trim();
    let (int, frac) = q.split_once('.').unwrap_or((q, ""));
    let whole = match int {
        "0" => 0u16,
        "1" => 1000,
        _ => return 0,
    };
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    let mut thousandths = 0u16;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1].get(i).copied().unwrap_or(0);
    }
    (whole + thousandths).min(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_urls_split_into_name_and_suffix() {
        assert_eq!(
            route("/topics/chat"),
            Ok(Route::Topic {
                name: "chat",
                suffix: Suffix::None
            })
        );
        for (path, suffix) in [
            ("/topics/chat.json", Suffix::Json),
            ("/topics/chat.xml", Suffix::Xml),
            ("/topics/chat.sse", Suffix::Sse),
            ("/topics/chat.info", Suffix::Info),
        ] {
            assert_eq!(
                route(path),
                Ok(Route::Topic {
                    name: "chat",
                    suffix
                })
            );
        }
        assert_eq!(route("/topics"), Ok(Route::List));
        assert_eq!(route("/topics/"), Ok(Route::List));
        assert_eq!(route("/healthz"), Ok(Route::Health));
        assert_eq!(route("/metrics"), Ok(Route::Metrics));
        assert_eq!(route("/"), Ok(Route::Elsewhere));
        assert_eq!(route("/topicsx"), Ok(Route::Elsewhere));
    }

    #[test]
    fn bad_names_and_suffixes_are_refused_naming_the_rule() {
        for path in [
            "/topics/.json",
            "/topics/..",
            "/topics/a%2Fb",
            "/topics/a/b",
            "/topics/a b",
            "/topics/%2e%2e",
            "/topics/é",
        ] {
            let err = route(path)
                .err()
                .unwrap_or_else(|| panic!("{path} accepted"));
            assert_eq!(err.status(), 400, "{path}");
        }
        let long = format!("/topics/{}", "x".repeat(129));
        assert!(route(&long).unwrap_err().to_string().contains("128"));
        let suffix = route("/topics/chat.txt").unwrap_err().to_string();
        for named in ["json", "xml", "sse", "info"] {
            assert!(suffix.contains(named), "{suffix}");
        }
    }

    #[test]
    fn accept_negotiates_sse_json_or_the_xml_default() {
        assert_eq!(negotiate(None), Format::Xml);
        assert_eq!(negotiate(Some("*/*")), Format::Xml);
        assert_eq!(negotiate(Some("text/event-stream")), Format::Sse);
        assert_eq!(
            negotiate(Some("application/json;q=0.1, text/event-stream;q=0.2")),
            Format::Sse
        );
        assert_eq!(negotiate(Some("application/json")), Format::Json);
        assert_eq!(negotiate(Some("Application/JSON")), Format::Json);
        assert_eq!(negotiate(Some("application/json, text/xml")), Format::Json);
        assert_eq!(negotiate(Some("text/xml, application/json")), Format::Xml);
        assert_eq!(
            negotiate(Some("text/xml;q=0.5, application/json")),
            Format::Json
        );
        assert_eq!(
            negotiate(Some("text/xml;q=0.9, application/json;q=0.95")),
            Format::Json
        );
        assert_eq!(negotiate(Some("application/json;q=0")), Format::Xml);
        assert_eq!(
            negotiate(Some("application/json;q=bogus, text/xml;q=0.1")),
            Format::Xml
        );
    }
}
