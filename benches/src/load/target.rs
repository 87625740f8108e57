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
    /// Further nodes of the same cluster (servers sharing topics through
    /// one store, e.g. Redis), each replacing `{base}` like [`base`](Self::base).
    /// Subscribers and publishes are spread over `base` and these,
    /// round-robin; empty for one server. A separate field rather than a
    /// list replacing `base` so the single-server code (the soak, the
    /// park check) keeps reading one base.
    pub more_bases: Vec<String>,
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
            more_bases: Vec::new(),
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
            more_bases: Vec::new(),
            publish_url: NCHAN_PUBLISH_URL.to_string(),
            sub_url: NCHAN_SUB_URL.to_string(),
            poll_url: NCHAN_SUB_URL.to_string(),
            info_url: NCHAN_INFO_URL.to_string(),
            cursor_style: CursorStyle::Nchan,
        };
        target.check()?;
        Ok(target)
    }

    /// The same target spread over several nodes: `bases[0]` becomes
    /// [`base`](Self::base), the rest [`more_bases`](Self::more_bases).
    /// Refuses an empty list and any node that is not a loopback http URL.
    pub fn with_bases(mut self, bases: &[String]) -> Result<Target, LoadError> {
        let (first, rest) = bases
            .split_first()
            .ok_or_else(|| LoadError::Options("at least one --base is needed".into()))?;
        self.base = first.trim_end_matches('/').to_string();
        self.more_bases = rest
            .iter()
            .map(|b| b.trim_end_matches('/').to_string())
            .collect();
        self.check()?;
        Ok(self)
    }

    /// Every node's base: [`base`](Self::base) first, then
    /// [`more_bases`](Self::more_bases).
    pub fn bases(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.base.as_str()).chain(self.more_bases.iter().map(String::as_str))
    }

    /// How many nodes the load is spread over (at least 1).
    pub fn nodes(&self) -> usize {
        1 + self.more_bases.len()
    }

    /// Refuses templates that do not resolve to a loopback http URL on
    /// every node, before any connection is made.
    pub fn check(&self) -> Result<(), LoadError> {
        for template in [
            &self.publish_url,
            &self.sub_url,
            &self.poll_url,
            &self.info_url,
        ] {
            self.render_all(template, "t")?;
        }
        Ok(())
    }

    fn render(&self, template: &str, topic: &str) -> Result<Endpoint, LoadError> {
        render_at(template, &self.base, topic)
    }

    fn render_all(&self, template: &str, topic: &str) -> Result<Vec<Endpoint>, LoadError> {
        self.bases()
            .map(|base| render_at(template, base, topic))
            .collect()
    }

    /// Where to POST messages for `topic` on each node, in node order.
    pub fn publish_all(&self, topic: &str) -> Result<Vec<Endpoint>, LoadError> {
        self.render_all(&self.publish_url, topic)
    }

    /// Where to subscribe to `topic` by SSE on each node, in node order.
    pub fn sub_all(&self, topic: &str) -> Result<Vec<Endpoint>, LoadError> {
        self.render_all(&self.sub_url, topic)
    }

    /// Where to long-poll `topic` on each node, in node order.
    pub fn poll_all(&self, topic: &str) -> Result<Vec<Endpoint>, LoadError> {
        self.render_all(&self.poll_url, topic)
    }

    /// Where to read `topic`'s info on each node, in node order.
    pub fn info_all(&self, topic: &str) -> Result<Vec<Endpoint>, LoadError> {
        self.render_all(&self.info_url, topic)
    }

    /// Where to POST messages for `topic` (on the first node).
    pub fn publish(&self, topic: &str) -> Result<Endpoint, LoadError> {
        self.render(&self.publish_url, topic)
    }

    /// Where to subscribe to `topic` by SSE (on the first node).
    pub fn sub(&self, topic: &str) -> Result<Endpoint, LoadError> {
        self.render(&self.sub_url, topic)
    }

    /// Where to long-poll `topic` on the first node (the path may hold
    /// `{cursor}`).
    pub fn poll(&self, topic: &str) -> Result<Endpoint, LoadError> {
        self.render(&self.poll_url, topic)
    }

    /// Where to read `topic`'s info (on the first node).
    pub fn info(&self, topic: &str) -> Result<Endpoint, LoadError> {
        self.render(&self.info_url, topic)
    }
}

fn render_at(template: &str, base: &str, topic: &str) -> Result<Endpoint, LoadError> {
    Endpoint::parse(&template.replace("{base}", base).replace("{topic}", topic))
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

    #[test]
    fn several_bases_render_one_endpoint_per_node_in_order() {
        let bases = [
            "http://127.0.0.1:1/".to_string(),
            "http://127.0.0.2:2".into(),
        ];
        let target = Target::nchan("http://127.0.0.1:9")
            .unwrap()
            .with_bases(&bases)
            .unwrap();
        assert_eq!(target.nodes(), 2);
        assert_eq!(
            target.bases().collect::<Vec<_>>(),
            ["http://127.0.0.1:1", "http://127.0.0.2:2"]
        );
        let subs = target.sub_all("x").unwrap();
        assert_eq!(subs[0].addr, "127.0.0.1:1".parse().unwrap());
        assert_eq!(subs[1].host, "127.0.0.2:2");
        assert_eq!(subs[1].path, "/sub/x");
        assert_eq!(target.publish("x").unwrap().host, "127.0.0.1:1");
        assert_eq!(target.publish_all("x").unwrap().len(), 2);
        // One node outside loopback refuses the whole target.
        let bad = ["http://127.0.0.1:1".to_string(), "http://10.0.0.1:2".into()];
        assert!(matches!(
            Target::slosh("http://127.0.0.1:9")
                .unwrap()
                .with_bases(&bad),
            Err(LoadError::NotLoopback(_))
        ));
        assert!(Target::slosh("http://127.0.0.1:9")
            .unwrap()
            .with_bases(&[])
            .is_err());
    }
}
