//! A URL the client verbs are given, parsed once at start: plain
//! `http://host[:port]/path`, nothing else.

use std::fmt;

/// The suffixes a topic URL's last segment may carry (SPEC section 2).
const SUFFIXES: [&str; 4] = [".json", ".xml", ".sse", ".info"];

/// Where a request goes: the host to connect to and what the request line
/// and `Host` header say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// Host name or address to connect to (an IPv6 address without brackets).
    pub(crate) host: String,
    /// TCP port (80 when the URL names none).
    pub(crate) port: u16,
    /// The `Host` header: the authority as written in the URL.
    pub(crate) authority: String,
    /// Path and query, as sent on the request line.
    pub(crate) path: String,
}

impl Target {
    /// Parses `url`. Only `http://` is spoken: there is no TLS in this
    /// client, and a message saying so beats a handshake failure.
    pub(crate) fn parse(url: &str) -> Result<Target, String> {
        let scheme_end = url.find("://").ok_or_else(|| {
            format!("{url:?} is not a URL: write it as http://HOST:PORT/topics/NAME")
        })?;
        let scheme = &url[..scheme_end];
        if scheme.eq_ignore_ascii_case("https") {
            return Err(format!(
                "{url}: https is not spoken by slosh-cli (plain http only); \
                 use a local hub, or put a TLS proxy in front and give its http:// address"
            ));
        }
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(format!("{url}: only http:// URLs are supported"));
        }
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        let mut path = rest[authority_end..].to_string();
        if authority.contains('@') {
            return Err(format!(
                "{url}: user names and passwords in URLs are not supported (use --token)"
            ));
        }
        if path.contains('#') {
            return Err(format!("{url}: a URL for slosh-cli has no #fragment"));
        }
        if path.is_empty() || path.starts_with('?') {
            path.insert(0, '/');
        }
        if path
            .bytes()
            .any(|b| b.is_ascii_control() || b == b' ' || !b.is_ascii())
        {
            return Err(format!(
                "{url}: the path has spaces, control or non-ASCII characters; percent-encode them"
            ));
        }
        let (host, port) = split_host_port(authority).map_err(|why| format!("{url}: {why}"))?;
        Ok(Target {
            host,
            port,
            authority: authority.to_string(),
            path,
        })
    }

    /// Parses a topic URL for subscribing: no query (the client keeps its
    /// own cursor) and no `.info`. The suffix it has, if any, is returned
    /// apart (`"sse"`, `"json"`, `"xml"`) and removed from the path.
    pub(crate) fn parse_topic(url: &str) -> Result<(Target, Option<&'static str>), String> {
        let mut target = Target::parse(url)?;
        if target.path.contains('?') {
            return Err(format!(
                "{url}: give the topic URL without a query; use --from N to start after message N"
            ));
        }
        let suffix = target.suffix();
        if suffix == Some("info") {
            return Err(format!(
                "{url}: .info describes a topic; give the topic URL itself (…/topics/NAME)"
            ));
        }
        if let Some(suffix) = suffix {
            target.path.truncate(target.path.len() - suffix.len() - 1);
        }
        Ok((target, suffix))
    }

    /// The known suffix the last segment ends with, without its dot.
    fn suffix(&self) -> Option<&'static str> {
        let path = self.path.split('?').next().unwrap_or_default();
        let last = path.rsplit('/').next().unwrap_or_default();
        SUFFIXES
            .iter()
            .find(|suffix| last.len() > suffix.len() && last.ends_with(*suffix))
            .map(|suffix| &suffix[1..])
    }

    /// This topic URL with `suffix` (`"sse"`, `"info"`…) in place of the
    /// one it has, and `query` (without `?`) if not empty.
    pub(crate) fn with_suffix(&self, suffix: &str, query: &str) -> Target {
        let mut path = self.path.split('?').next().unwrap_or_default().to_string();
        if let Some(old) = self.suffix() {
            path.truncate(path.len() - old.len() - 1);
        }
        path.push('.');
        path.push_str(suffix);
        if !query.is_empty() {
            path.push('?');
            path.push_str(query);
        }
        Target {
            path,
            ..self.clone()
        }
    }

    /// Whether both URLs name the same topic on the same server (suffixes
    /// and queries aside), so a reflect into itself can be refused.
    pub(crate) fn same_topic(&self, other: &Target) -> bool {
        let base = |target: &Target| {
            let mut path = target
                .path
                .split('?')
                .next()
                .unwrap_or_default()
                .to_string();
            if let Some(suffix) = target.suffix() {
                path.truncate(path.len() - suffix.len() - 1);
            }
            path
        };
        self.host.eq_ignore_ascii_case(&other.host)
            && self.port == other.port
            && base(self) == base(other)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority, self.path)
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(authority: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or("an IPv6 address needs its closing ]")?;
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return Err("unexpected text after the IPv6 address".into()),
        };
        (&rest[..end], port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("the URL names no host".into());
    }
    let port = match port {
        None | Some("") => 80,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| format!("invalid port {port:?}"))?,
    };
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_http_url_is_split_into_host_port_and_path() {
        let target = Target::parse("http://127.0.0.1:8000/topics/chat").unwrap();
        assert_eq!(target.host, "127.0.0.1");
        assert_eq!(target.port, 8000);
        assert_eq!(target.authority, "127.0.0.1:8000");
        assert_eq!(target.path, "/topics/chat");
        assert_eq!(target.to_string(), "http://127.0.0.1:8000/topics/chat");

        let target = Target::parse("HTTP://example.org").unwrap();
        assert_eq!((target.port, target.path.as_str()), (80, "/"));
        let target = Target::parse("http://[::1]:9/t?n=1").unwrap();
        assert_eq!((target.host.as_str(), target.port), ("::1", 9));
        assert_eq!(target.path, "/t?n=1");
    }

    #[test]
    fn https_and_other_urls_are_refused_with_what_to_do() {
        let error = Target::parse("https://hub.example/topics/a").unwrap_err();
        assert!(error.contains("TLS proxy"), "{error}");
        assert!(Target::parse("hub.example/topics/a")
            .unwrap_err()
            .contains("http://HOST:PORT"));
        assert!(Target::parse("ftp://x/").is_err());
        assert!(Target::parse("http://u:p@x/")
            .unwrap_err()
            .contains("--token"));
        assert!(Target::parse("http://x:99999/")
            .unwrap_err()
            .contains("port"));
        assert!(Target::parse("http://:80/").is_err());
        assert!(Target::parse("http://x/a b").is_err());
        assert!(Target::parse("http://x/a#b").is_err());
    }

    #[test]
    fn a_topic_url_loses_its_suffix_and_may_not_carry_a_query() {
        let (target, suffix) = Target::parse_topic("http://h:1/topics/chat.xml").unwrap();
        assert_eq!(target.path, "/topics/chat");
        assert_eq!(suffix, Some("xml"));
        assert_eq!(
            target.with_suffix("json", "n=4").path,
            "/topics/chat.json?n=4"
        );
        assert_eq!(target.with_suffix("info", "").path, "/topics/chat.info");
        assert!(Target::parse_topic("http://h/topics/chat?n=1")
            .unwrap_err()
            .contains("--from"));
        assert!(Target::parse_topic("http://h/topics/chat.info").is_err());
        let (target, suffix) = Target::parse_topic("http://h/topics/.json").unwrap();
        assert_eq!((target.path.as_str(), suffix), ("/topics/.json", None));
    }

    #[test]
    fn the_same_topic_is_recognised_whatever_its_suffix() {
        let a = Target::parse("http://H:1/topics/a.sse").unwrap();
        assert!(a.same_topic(&Target::parse("http://h:1/topics/a").unwrap()));
        assert!(!a.same_topic(&Target::parse("http://h:2/topics/a").unwrap()));
        assert!(!a.same_topic(&Target::parse("http://h:1/topics/b").unwrap()));
    }
}
