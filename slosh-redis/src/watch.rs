//! The watcher: one thread and one pub/sub connection per server, holding
//! one subscription per topic the server follows, reconnecting (and
//! catching every topic up) whenever the connection is lost.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use slosh_core::Counts;

use crate::entry::Entry;
use crate::follow::Follow;
use crate::{Keys, Shared};

/// How long a read of the pub/sub connection waits before the watcher
/// looks at its commands: the longest a new topic waits for its
/// subscription (its log caught up at open; the subscription's own
/// catch-up covers what came between).
const READ_TIMEOUT: Duration = Duration::from_millis(100);

/// How often this server tells Redis what it holds, and reads what the
/// others hold.
const PRESENCE_EVERY: Duration = Duration::from_secs(1);

/// How long a server's entry counts after its last round: a server that
/// died stops counting after this.
pub(crate) const PRESENCE_TTL: Duration = Duration::from_secs(5);

/// The longest wait between two tries to reach Redis.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// What logs tell the watcher.
pub(crate) enum Command {
    /// A topic's log was made: subscribe to its channel.
    Follow(Arc<Follow>),
    /// A topic's log was dropped: unsubscribe, unless a newer log of the
    /// same name took its place.
    Unfollow(Weak<Follow>),
    /// A topic's life ended: tell its hub, from here, where no lock of the
    /// hub is held.
    Ended(Arc<Follow>, slosh_core::Change),
    /// The store is gone.
    Stop,
}

/// The channel of each followed topic, and its follows: one, but for a
/// moment two or more when requests opened the same topic at once (the
/// hub keeps one log and drops the others) or a new life's log came
/// before the old one's drop was told.
type Follows = HashMap<String, Vec<Weak<Follow>>>;

/// Every live follow.
fn live(follows: &Follows) -> impl Iterator<Item = Arc<Follow>> + '_ {
    follows.values().flatten().filter_map(Weak::upgrade)
}

/// The watcher thread's body; returns when the store is dropped.
pub(crate) fn run(shared: &Weak<Shared>, commands: &Receiver<Command>) {
    let mut follows = Follows::new();
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(store) = shared.upgrade() else {
            return;
        };
        if drain(&store, commands, &mut follows, None).is_err() {
            return;
        }
        let connected = store.connect().and_then(|con| {
            con.set_read_timeout(Some(READ_TIMEOUT))?;
            Ok(con)
        });
        // Any step failing (Redis down, or up but still loading its file)
        // waits before the next try, longer each time.
        let mut retry = |store: Arc<Shared>| {
            store.up.store(false, Ordering::SeqCst);
            drop(store);
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        };
        let Ok(mut con) = connected else {
            retry(store);
            continue;
        };
        let mut pubsub = con.as_pubsub();
        let channels: Vec<&String> = follows.keys().collect();
        if !channels.is_empty() && pubsub.subscribe(&channels).is_err() {
            drop(pubsub);
            retry(store);
            continue;
        }
        // Whatever was published (or lost) while we were not listening;
        // a topic that cannot be caught up means Redis went away again.
        let caught_up =
            live(&follows).all(|follow| follow.catch_up(&store).is_ok() || follow.has_ended());
        if !caught_up {
            drop(pubsub);
            retry(store);
            continue;
        }
        backoff = Duration::from_millis(50);
        store.up.store(true, Ordering::SeqCst);
        drop(store);
        let mut refreshed = Instant::now();
        let mut told = Instant::now();
        loop {
            let Some(store) = shared.upgrade() else {
                return;
            };
            match drain(&store, commands, &mut follows, Some(&mut pubsub)) {
                Err(Stop) => return,
                Ok(true) => {}
                Ok(false) => {
                    store.up.store(false, Ordering::SeqCst);
                    break;
                }
            }
            if told.elapsed() >= PRESENCE_EVERY {
                presence(&store, &follows);
                list(&store);
                told = Instant::now();
            }
            if refreshed.elapsed() >= store.options.ttl / 4 {
                refresh(&store, &follows);
                refreshed = Instant::now();
            }
            match pubsub.get_message() {
                Ok(message) => announced(&store, &follows, &message),
                Err(error) if error.is_timeout() => {}
                Err(_) => {
                    store.up.store(false, Ordering::SeqCst);
                    break;
                }
            }
        }
    }
}

/// The store asked the watcher to stop.
struct Stop;

/// Takes every waiting command; with a connection, subscribes and
/// unsubscribes as they say. `Ok(false)` when the connection failed.
fn drain(
    store: &Shared,
    commands: &Receiver<Command>,
    follows: &mut Follows,
    mut pubsub: Option<&mut redis::PubSub<'_>>,
) -> Result<bool, Stop> {
    loop {
        let command = match commands.try_recv() {
            Ok(command) => command,
            Err(TryRecvError::Empty) => return Ok(true),
            Err(TryRecvError::Disconnected) => return Err(Stop),
        };
        match command {
            Command::Stop => return Err(Stop),
            Command::Ended(follow, change) => follow.tell(change),
            // Removed before its turn came: nothing to follow.
            Command::Follow(follow) if follow.has_ended() => {}
            Command::Follow(follow) => {
                let channel = follow.keys.channel.clone();
                let held = follows.entry(channel.clone()).or_default();
                held.retain(|held| held.strong_count() > 0);
                let first = held.is_empty();
                held.push(Arc::downgrade(&follow));
                if let Some(pubsub) = pubsub.as_deref_mut() {
                    if first && pubsub.subscribe(&channel).is_err() {
                        return Ok(false);
                    }
                    // What came between the log's opening read and now.
                    let _ = follow.catch_up(store);
                }
            }
            Command::Unfollow(gone) => {
                // The follow is dropped, so its channel is found by the
                // pointer; another follow of the same name keeps it.
                let channel = follows
                    .iter()
                    .find(|(_, held)| held.iter().any(|held| Weak::ptr_eq(held, &gone)))
                    .map(|(channel, _)| channel.clone());
                let unheld = channel.filter(|channel| {
                    let held = follows.entry(channel.clone()).or_default();
                    held.retain(|held| !Weak::ptr_eq(held, &gone) && held.strong_count() > 0);
                    held.is_empty()
                });
                if let Some(channel) = unheld {
                    follows.remove(&channel);
                    // No longer held here: stop counting at once.
                    if let Some(name) = channel
                        .strip_prefix(&format!("{}:", store.options.prefix))
                        .and_then(|rest| rest.strip_suffix(":ch"))
                    {
                        let nodes = Keys::of(&store.options.prefix, name).nodes;
                        let _ = store.command(|con| {
                            redis::cmd("HDEL")
                                .arg(&nodes)
                                .arg(&store.node)
                                .query::<u64>(con)
                        });
                    }
                    if let Some(pubsub) = pubsub.as_deref_mut() {
                        if pubsub.unsubscribe(&channel).is_err() {
                            return Ok(false);
                        }
                    }
                }
            }
        }
    }
}

/// A message on a topic's channel: `EPOCH ENTRY` or `deleted EPOCH`.
fn announced(store: &Shared, follows: &Follows, message: &redis::Msg) {
    let Some(held) = follows.get(message.get_channel_name()) else {
        return;
    };
    let Ok(payload) = message.get_payload::<String>() else {
        return;
    };
    for follow in held.iter().filter_map(Weak::upgrade) {
        match payload.split_once(' ') {
            Some(("deleted", epoch)) => follow.deleted(epoch, store),
            Some((epoch, entry)) => match Entry::parse(entry) {
                Some(entry) => follow.announced(store, epoch, entry),
                None => {
                    let _ = follow.catch_up(store);
                }
            },
            None => {}
        }
    }
}

/// Keeps the keys of every topic this server holds alive, in one pipeline.
fn refresh(store: &Shared, follows: &Follows) {
    let ttl = crate::ttl_ms(store.options.ttl);
    let mut pipe = redis::pipe();
    for follow in live(follows) {
        let keys = &follow.keys;
        pipe.cmd("PEXPIRE").arg(&keys.head).arg(ttl).ignore();
        pipe.cmd("PEXPIRE").arg(&keys.log).arg(ttl).ignore();
    }
    let _ = store.command(|con| pipe.query::<()>(con));
}

/// Tells Redis what this server holds of every topic it follows and reads
/// the other servers' counts back, in one pipeline.
fn presence(store: &Shared, follows: &Follows) {
    let held: Vec<Arc<Follow>> = live(follows).collect();
    if held.is_empty() {
        return;
    }
    let ttl = crate::ttl_ms(PRESENCE_TTL);
    let mut pipe = redis::pipe();
    for follow in &held {
        let here = Follow::read(&follow.here);
        let keys = &follow.keys;
        let script = &*crate::scripts::PRESENCE;
        // EVALSHA in a pipeline cannot fall back to EVAL: load it first.
        pipe.cmd("EVALSHA")
            .arg(script.get_hash())
            .arg(1)
            .arg(&keys.nodes)
            .arg(&store.node)
            .arg(here.subscribers)
            .arg(here.sessions)
            .arg(ttl);
    }
    let answered = store.command(|con| {
        crate::scripts::PRESENCE.prepare_invoke().load(con)?;
        pipe.query::<Vec<(usize, usize)>>(con)
    });
    if let Ok(counts) = answered {
        for (follow, (subscribers, sessions)) in held.iter().zip(counts) {
            Follow::write(
                &follow.elsewhere,
                Counts {
                    subscribers,
                    sessions,
                },
            );
        }
    }
}

/// How long after `/topics` last asked the watcher keeps its list fresh.
const LISTED_FOR: Duration = Duration::from_secs(30);

/// Reads every topic Redis holds, for `/topics`, while it is asked for.
fn list(store: &Shared) {
    let asked = store
        .listing
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .asked;
    if asked.is_none_or(|at| at.elapsed() >= LISTED_FOR) {
        return;
    }
    let set = Keys::of(&store.options.prefix, "").topics;
    let read = store.command(|con| {
        crate::scripts::LIST
            .key(&set)
            .arg(&store.options.prefix)
            .invoke::<Vec<(String, String, u64, usize, usize, usize)>>(con)
    });
    if let Ok(rows) = read {
        let topics = rows
            .into_iter()
            .map(
                |(name, epoch, max, buffered, subscribers, sessions)| slosh_core::TopicInfo {
                    name,
                    epoch,
                    max,
                    buffered,
                    counts: Counts {
                        subscribers,
                        sessions,
                    },
                },
            )
            .collect();
        store
            .listing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .topics = topics;
    }
}
