//! Where the load goes: URL templates for publish, SSE and long-poll, the
//! cursor style, and the rule that only loopback hosts are ever targets.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use super::LoadError;

/// The slosh publish URL: a POST to the topic.
pub const SLOSH_PUBLISH_URL: &str = "{base}/topics/{topic}";
/// The slosh SSE URL.
pub const SLOSH_SUB_URL: &str = "{base}/topics/{topic}.sse";
/// The slosh long-poll URL; `{cursor}` is the last `max` seen.
pub const SLOSH_POLL_URL: &str = "{base}/topics/{topic}.json?n={cursor}";
/// The slosh topic info URL, used to see that long-polls are parked.
pub const SLOSH_INFO_URL: &str = "{base}/topics/{topic}.info";
/// Nchan's publisher location in `benches/peers/nchan.conf`.
pub const NCHAN_PUBLISH_URL: &str = "{base}/pub/{topic}";
/// Nchan's subscriber location in `benches/peers/nchan.conf`: SSE with
/// `Accept: text/event-stream`, a long-poll otherwise.
pub const NCHAN_SUB_URL: &str = "{base}/sub/{topic}";
/// Nchan's channel info: a `GET` on the publisher location, JSON when asked
/// for (`{"messages":…,"subscribers":…}`).
pub const NCHAN_INFO_URL: &str = "{base}/pub/{topic}";

/// How a long-poll client says what it has already seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CursorStyle {
    /// `?n=<max of the previous answer>`; the answer is a slosh JSON batch
    /// `{"max","saw","delivering","res":[…]}`.
    Slosh,
    /// Nchan's HTTP-cache walk: `If-Modified-Since` / `If-None-Match` set to
    /// the previous answer's `Last-Modified` / `Etag`; the answer's body is
    /// one message.
    Nchan,
}

/// One URL resolved for a topic: where to connect and what to send.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// The server's address (always in 127.0.0.0/8).
    pub addr: SocketAddr,
    /// The `Host` header value, as written in the URL.
    pub host: String,
    /// Path and query, possibly still holding `{cursor}`.
    pub path: String,
}

impl Endpoint {
    /// Parses `http://host[:port][/path][?query]`. The host must be an IPv4
    /// address in 127.0.0.0/8 or `localhost`: this tool never loads anything
    /// but the machine it runs on.
    pub fn parse(url: &str) -> Result<Endpoint, LoadError> {
        let rest = url
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("http://"))
            .map(|_| &url[7..])
            .ok_or_else(|| LoadError::Url(format!("{url}: only http:// URLs are supported")))?;
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        let path = match path.chars().next() {
            None => "/".to_string(),
            Some('?') => format!("/{path}"),
            Some(_) => path.to_string(),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => {
                let port = port
                    .parse::<u16>()
                    .map_err(|_| LoadError::Url(format!("{url}: bad port {port:?}")))?;
                (host, port)
            }
            None => (authority, 80),
        };
        let ip = if host.eq_ignore_ascii_case("localhost") {
            Ipv4Addr::LOCALHOST
        } else {
            host.parse::<Ipv4Addr>()
                .map_err(|_| LoadError::NotLoopback(url.to_string()))?
        };
        if !ip.is_loopback() {
            return Err(LoadError::NotLoopback(url.to_string()));
        }
        Ok(Endpoint {
            addr: SocketAddr::V4(SocketAddrV4::new(ip, port)),
            host: authority.to_string(),
            path,
        })
    }

    /// The path with `{cursor}` replaced.
    pub fn with_cursor(&self, cursor: u64) -> String {
        self.path.replace("{cursor}", &cursor.to_string())
    }
}

/// The server under load: its URL templates and cursor style.
#[derive(Clone, Debug)]
pub struct Target {
    /// Replaces `{base}` in the templates, e.g. `http://127.0.0.1:8000`.
    pub base: String,
    /// Template of the publish URL (POST).
    pub publish_url: String,
    /// Template of the SSE subscribe URL.
    pub sub_url: String,
    /// Template of the long-poll URL.
    pub poll_url: String,
    /// Template of the topic info URL, read to see long-polls parked before
    /// publishing starts (JSON with a `subscribers` count).
    pub info_url: String,
    /// How long-poll clients walk the topic.
    pub cursor_style: CursorStyle,
}

impl Target {
    /// A slosh server at `base` with the default URLs.
    pub fn slosh(base: &str) -> Result<Target, LoadError> {
        let target = Target {
            base: base.trim_end_matches('/').to_string(),
            publish_url: SLOSH_PUBLISH_URL.to_string(),
            sub_url: SLOSH_SUB_URL.to_string(),
            poll_url: SLOSH_POLL_URL.to_string(),
            info_url: SLOSH_INFO_URL.to_string(),
            cursor_style: CursorStyle::Slosh,
        };
        target.check()?;
        Ok(target)
    }

    /// An Nchan server at `base` configured as `benches/peers/nchan.conf`.
    pub fn nchan(base: &str) -> Result<Target, LoadError> {
        let target = Target {
            base: base.trim_end_matches('/').to_string(),
            publish_url: NCHAN_PUBLISH_URL.to_string(),
            sub_url: NCHAN_SUB_URL.to_string(),
            poll_url: NCHAN_SUB_URL.to_string(),
            info_url: NCHAN_INFO_URL.to_string(),
            cursor_style: CursorStyle::Nchan,
        };
        target.check()?;
        Ok(target)
    }

    /// Refuses templates that do not resolve to a loopback http URL, before
    /// any connection is made.
    pub fn check(&self) -> Result<(), LoadError> {
        self.publish("t")?;
        self.sub("t")?;
        self.poll("t")?;
        self.info("t")?;
        Ok(())
    }

    fn render(&self, template: &str, topic: &str) -> Result<Endpoint, LoadError> {
        Endpoint::parse(
            &template
                .replace("{base}", &self.base)
                .replace("{topic}", topic),
        )
    }

    /// Where to POST messages for `topic`.
    pub fn publish(&self, topic: &str) -> Result<Endpoint, LoadError> {
        self.render(&self.publish_url, topic)
    }

    /// Where to subscribe to `topic` by SSE.
    pub fn sub(&self, topic: &str) -> Result<Endpoint, LoadError> {
        self.render(&self.sub_url, topic)
    }

    /// Where to long-poll `topic` (the path may hold `{cursor}`).
    pub fn poll(&self, topic: &str) -> Result<Endpoint, LoadError> {
        self.render(&self.poll_url, topic)
    }

    /// Where to read `topic`'s info.
    pub fn info(&self, topic: &str) -> Result<Endpoint, LoadError> {
        self.render(&self.info_url, topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_resolve_to_address_host_and_path() {
        let e = Endpoint::parse("http://127.0.0.5:8080/topics/a.json?n={cursor}").unwrap();
        assert_eq!(e.addr, "127.0.0.5:8080".parse().unwrap());
        assert_eq!(e.host, "127.0.0.5:8080");
        assert_eq!(e.with_cursor(7), "/topics/a.json?n=7");
        let e = Endpoint::parse("http://localhost?x=1").unwrap();
        assert_eq!(e.addr, "127.0.0.1:80".parse().unwrap());
        assert_eq!(e.path, "/?x=1");
    }

    #[test]
    fn hosts_outside_loopback_are_refused() {
        for url in [
            "http://10.0.0.1:8000/",
            "http://example.com/",
            "http://[::1]:8000/",
            "https://127.0.0.1/",
            "http://128.0.0.1/",
        ] {
            assert!(Endpoint::parse(url).is_err(), "{url}");
        }
        let mut target = Target::slosh("http://127.0.0.1:8000").unwrap();
        target.publish_url = "http://192.168.1.1/{topic}".into();
        assert!(matches!(target.check(), Err(LoadError::NotLoopback(_))));
    }
}
