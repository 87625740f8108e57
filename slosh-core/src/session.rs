//! Sessions: the `slosh_session` cookie, and for each topic the cursor of
//! what that client has seen.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use crate::cursor::Cursor;
use crate::name::TopicName;
use crate::topic::Topic;

/// The cookie's name.
pub(crate) const COOKIE: &str = "slosh_session";

/// Sessions at most. A client that never returns its cookie makes a new
/// session on every poll; each lives only `session_timeout`, and past this
/// bound new clients are simply served without one (they still start at
/// `max`), so memory stays bounded whatever clients do.
pub(crate) const MAX_SESSIONS: usize = 200_000;

/// A session id: 128 random bits, written as 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct SessionId([u8; 16]);

impl SessionId {
    /// A fresh id from `source`; `None` if that source fails, in which
    /// case the client is served without a session.
    fn random(source: &RandomSource) -> Option<SessionId> {
        let mut bytes = [0u8; 16];
        source(&mut bytes).then_some(SessionId(bytes))
    }

    /// Parses exactly 32 hex digits; anything else is no session.
    pub(crate) fn parse(text: &str) -> Option<SessionId> {
        if text.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            let hex = std::str::from_utf8(pair).ok()?;
            *byte = u8::from_str_radix(hex, 16).ok()?;
        }
        Some(SessionId(bytes))
    }

    /// The `Set-Cookie` value that hands this id to the client.
    pub(crate) fn set_cookie(&self) -> String {
        let mut out = String::with_capacity(96);
        out.push_str(COOKIE);
        out.push('=');
        for byte in self.0 {
            let _ = write!(out, "{byte:02x}");
        }
        out.push_str("; Path=/topics; HttpOnly; SameSite=Lax");
        out
    }
}

/// Finds our cookie among `Cookie` headers (`a=1; slosh_session=…`).
pub(crate) fn find_cookie<'a>(headers: &[&'a str]) -> Option<&'a str> {
    find_named(headers, COOKIE)
}

/// The value of cookie `wanted` among `Cookie` headers.
pub(crate) fn find_named<'a>(headers: &[&'a str], wanted: &str) -> Option<&'a str> {
    headers
        .iter()
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| value.trim().trim_matches('"'))
}

/// The cursor cookie's name for `topic`: one per topic, so a page polling
/// several topics keeps a place in each.
fn cursor_cookie_name(topic: &str) -> String {
    format!("{CURSOR_COOKIE}{topic}")
}

/// The prefix of the cursor cookies, which a hub on a store shared by
/// several servers sets on every session long-poll answer: the client's
/// place (`N@EPOCH`) travels with it to whichever server it reaches next.
pub(crate) const CURSOR_COOKIE: &str = "slosh_cursor_";

/// The place the client's cursor cookie for `topic` names; `None` when it
/// has none (or one that is not ours: it is ignored, not refused).
pub(crate) fn find_cursor(headers: &[&str], topic: &str) -> Option<crate::cursor::Resume> {
    find_named(headers, &cursor_cookie_name(topic))
        .and_then(|value| crate::cursor::Resume::parse(value).ok())
}

/// The `Set-Cookie` value of the cursor cookie for `topic` at `max` of
/// `epoch`, living as long as an idle session (`timeout`).
pub(crate) fn set_cursor_cookie(
    topic: &str,
    max: u64,
    epoch: crate::epoch::Epoch,
    timeout: std::time::Duration,
) -> String {
    format!(
        "{}={max}@{}; Path=/topics; Max-Age={}; HttpOnly; SameSite=Lax",
        cursor_cookie_name(topic),
        epoch.as_str(),
        timeout.as_secs().max(1)
    )
}

struct Session {
    cursors: HashMap<TopicName, SessionCursor>,
    last_used: Instant,
    /// Requests of this session parked now: a session is never expired
    /// under a client that is waiting in a long-poll.
    parked: u32,
}

struct SessionCursor {
    /// Which life of the topic the cursor belongs to: a topic deleted and
    /// created again under the same name is a different `Topic`.
    topic: Weak<Topic>,
    cursor: u64,
}

/// How a long-poll's cursor was found.
pub(crate) struct Begun {
    /// The session the answer will move, if any.
    pub(crate) session: Option<SessionId>,
    /// Whether that session is new, so the answer must set the cookie.
    pub(crate) new: bool,
    /// The cursor to read after.
    pub(crate) cursor: Cursor,
}

/// Every live session.
pub(crate) struct Sessions {
    map: Mutex<HashMap<SessionId, Session>>,
    timeout: Duration,
    random: Box<RandomSource>,
}

/// Where session ids come from: fills the buffer with random bytes and
/// says whether it could. The operating system's source
/// ([`os_random`]) unless a test gives the hub its own
/// ([`Builder::session_ids`](crate::Builder::session_ids)).
pub(crate) type RandomSource = dyn Fn(&mut [u8]) -> bool + Send + Sync;

/// The operating system's random source (`getrandom`).
pub(crate) fn os_random(bytes: &mut [u8]) -> bool {
    getrandom::fill(bytes).is_ok()
}

impl Sessions {
    pub(crate) fn new(timeout: Duration, random: Box<RandomSource>) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            timeout,
            random,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SessionId, Session>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Resolves a long-poll's cursor by the rules of SPEC 3: `n`, else the
    /// session's cursor for this topic, else a new cursor (and, without a
    /// session, a new session) at the topic's `max`. The session is marked
    /// parked until [`Sessions::finish`] or [`Sessions::release`].
    pub(crate) fn begin(
        &self,
        cookie: Option<&str>,
        topic: &Arc<Topic>,
        n: Option<Cursor>,
        now: Instant,
    ) -> Begun {
        let mut map = self.lock();
        let known = cookie
            .and_then(SessionId::parse)
            .filter(|id| map.contains_key(id));
        if let Some(id) = known {
            if let Some(session) = map.get_mut(&id) {
                session.last_used = now;
                session.parked += 1;
                let cursor = match (n, session.cursors.get(&topic.name)) {
                    (Some(n), _) => n,
                    (None, Some(entry)) if Weak::ptr_eq(&entry.topic, &Arc::downgrade(topic)) => {
                        Cursor(entry.cursor)
                    }
                    // A cursor from an earlier life of the topic: everything
                    // in this life is new to the client.
                    (None, Some(_)) => Cursor(0),
                    (None, None) => {
                        let max = topic.log.max();
                        set_cursor(session, topic, max);
                        Cursor(max)
                    }
                };
                return Begun {
                    session: Some(id),
                    new: false,
                    cursor,
                };
            }
        }
        if let Some(n) = n {
            return Begun {
                session: None,
                new: false,
                cursor: n,
            };
        }
        let max = topic.log.max();
        let new_id = if map.len() < MAX_SESSIONS {
            SessionId::random(&self.random)
        } else {
            None
        };
        let Some(id) = new_id else {
            return Begun {
                session: None,
                new: false,
                cursor: Cursor(max),
            };
        };
        let mut session = Session {
            cursors: HashMap::new(),
            last_used: now,
            parked: 1,
        };
        set_cursor(&mut session, topic, max);
        map.insert(id, session);
        Begun {
            session: Some(id),
            new: true,
            cursor: Cursor(max),
        }
    }

    /// The answer went out at `max`: the session's cursor becomes `max`.
    pub(crate) fn finish(&self, id: SessionId, topic: &Arc<Topic>, max: u64, now: Instant) {
        let mut map = self.lock();
        if let Some(session) = map.get_mut(&id) {
            session.last_used = now;
            session.parked = session.parked.saturating_sub(1);
            set_cursor(session, topic, max);
        }
    }

    /// The client went away unanswered: its cursor stays where it was.
    pub(crate) fn release(&self, id: SessionId) {
        let mut map = self.lock();
        if let Some(session) = map.get_mut(&id) {
            session.parked = session.parked.saturating_sub(1);
        }
    }

    /// Removes sessions idle for `session_timeout`; returns when the next
    /// one would expire.
    pub(crate) fn sweep(&self, now: Instant) -> Option<Instant> {
        let mut map = self.lock();
        let mut next: Option<Instant> = None;
        map.retain(|_, session| {
            let expires = session.last_used + self.timeout;
            if session.parked > 0 || expires > now {
                next = Some(next.map_or(expires, |n| n.min(expires)));
                return true;
            }
            for entry in session.cursors.values() {
                if let Some(topic) = entry.topic.upgrade() {
                    topic.sessions.fetch_sub(1, Ordering::SeqCst);
                }
            }
            false
        });
        next
    }

    /// Live sessions (for tests and metrics).
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Points `session`'s cursor for `topic` at `max`, keeping the topic's count
/// of sessions in step when the cursor is new or moves to a new life.
fn set_cursor(session: &mut Session, topic: &Arc<Topic>, max: u64) {
    let weak = Arc::downgrade(topic);
    match session.cursors.get_mut(&topic.name) {
        Some(entry) if Weak::ptr_eq(&entry.topic, &weak) => entry.cursor = max,
        Some(entry) => {
            if let Some(old) = entry.topic.upgrade() {
                old.sessions.fetch_sub(1, Ordering::SeqCst);
            }
            topic.sessions.fetch_add(1, Ordering::SeqCst);
            *entry = SessionCursor {
                topic: weak,
                cursor: max,
            };
        }
        None => {
            topic.sessions.fetch_add(1, Ordering::SeqCst);
            session.cursors.insert(
                topic.name.clone(),
                SessionCursor {
                    topic: weak,
                    cursor: max,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_round_trip_through_the_cookie() {
        let id = SessionId::random(&os_random).unwrap();
        let cookie = id.set_cookie();
        assert!(cookie.ends_with("; Path=/topics; HttpOnly; SameSite=Lax"));
        let value = find_cookie(&["theme=dark", &cookie]).unwrap();
        let value = value.split(';').next().unwrap();
        assert_eq!(value.len(), 32);
        assert_eq!(SessionId::parse(value), Some(id));
    }

    #[test]
    fn malformed_session_ids_are_no_session() {
        for bad in [
            "",
            "abc",
            &"g".repeat(32),
            &"0".repeat(33),
            "é".repeat(16).as_str(),
        ] {
            assert_eq!(SessionId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn our_cookie_is_found_among_others() {
        assert_eq!(find_cookie(&["a=1; slosh_session=abc; b=2"]), Some("abc"));
        assert_eq!(find_cookie(&["a=1", "slosh_session=xyz"]), Some("xyz"));
        assert_eq!(find_cookie(&["xslosh_session=1"]), None);
        assert_eq!(find_cookie(&[]), None);
    }
}
