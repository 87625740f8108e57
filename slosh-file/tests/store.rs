//! The file store through its own API and through a hub: ids and epochs
//! across reopening, trimming, removal, bad files, and a property test
//! against a model of a topic's buffer.

use std::path::PathBuf;
use std::time::Instant;

use proptest::prelude::*;
use serde_json::{json, Value};
use slosh_core::{Epoch, Hub, Json, Log, Message, Outcome, Request, TopicName};
use slosh_file::{FileStore, OpenError, Sync};

/// A fresh path in a folder of the test's own, removed at the end.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!(
            "slosh-file-{name}-{}-{:?}",
            std::process::id(),
            Instant::now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn file(&self) -> PathBuf {
        self.0.join("slosh.db")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn hub(store: &FileStore, queue: usize) -> Hub {
    Hub::builder().queue(queue).store(store.clone()).build()
}

fn poll(hub: &Hub, target: &str) -> Value {
    // On this thread, which may block: the topic is opened in place.
    let mut request = Request::new("GET", target);
    request.opened = true;
    match hub.handle(request, Instant::now()) {
        Outcome::Respond(response) => serde_json::from_slice(&response.body).unwrap(),
        other => panic!("{target}: {other:?}"),
    }
}

#[test]
fn ids_and_the_epoch_go_on_after_the_file_is_opened_again() {
    let dir = Dir::new("reopen");
    let store = FileStore::open(&dir.file(), Sync::Always).unwrap();
    let first = hub(&store, 100);
    for n in 1..=3 {
        first.publish("t", &n).unwrap();
    }
    let epoch = first.info("t").unwrap()["epoch"].clone();
    drop(first);
    drop(store);

    let store = FileStore::open(&dir.file(), Sync::Always).unwrap();
    assert_eq!(store.topics().unwrap(), ["t"]);
    let second = hub(&store, 100);
    let body = poll(
        &second,
        &format!("/topics/t.json?n=1@{}", epoch.as_str().unwrap()),
    );
    assert_eq!(
        body,
        json!({"max": 3, "epoch": epoch, "saw": 2, "delivering": 2, "res": [2, 3]})
    );
    assert_eq!(second.publish("t", &4).unwrap().id, Some(4));
}

#[test]
fn the_file_keeps_only_the_newest_queue_messages() {
    let dir = Dir::new("trim");
    let store = FileStore::open(&dir.file(), Sync::Batch).unwrap();
    let name = TopicName::parse("t").unwrap();
    let log = store.log(&name, 3, Epoch::from_bits(1));
    for n in 1..=10 {
        log.append(Json::from(json!(n))).unwrap();
    }
    drop(log);
    // Read back with the same queue, then with a smaller one.
    let again = store.log(&name, 3, Epoch::from_bits(2));
    assert_eq!(ids(&again), [8, 9, 10]);
    assert_eq!(again.epoch(), Epoch::from_bits(1), "the file's epoch wins");
    let smaller = store.log(&name, 2, Epoch::from_bits(2));
    assert_eq!(ids(&smaller), [9, 10]);
    let larger = store.log(&name, 5, Epoch::from_bits(2));
    assert_eq!(ids(&larger), [9, 10], "what was trimmed is gone for good");
}

fn ids(log: &dyn Log) -> Vec<u64> {
    let mut out = Vec::new();
    log.read_after(0, &mut out);
    out.iter().map(Message::id).collect()
}

#[test]
fn a_deleted_topic_is_forgotten_and_comes_back_as_a_new_life() {
    let dir = Dir::new("delete");
    let store = FileStore::open(&dir.file(), Sync::Always).unwrap();
    let hub = hub(&store, 100);
    hub.publish("gone", &1).unwrap();
    let old = hub.info("gone").unwrap()["epoch"].clone();
    assert!(hub.delete("gone"));
    assert!(store.topics().unwrap().is_empty());
    drop(hub);
    let hub = self::hub(&store, 100);
    assert_eq!(hub.publish("gone", &2).unwrap().id, Some(1));
    assert_ne!(hub.info("gone").unwrap()["epoch"], old);
}

#[test]
fn a_file_that_cannot_be_made_is_an_error_naming_it() {
    let path = PathBuf::from("/proc/no-such-dir/slosh.db");
    let error = FileStore::open(&path, Sync::Always).unwrap_err();
    assert!(matches!(error, OpenError::Unopenable { .. }), "{error}");
    assert!(
        error.to_string().contains("/proc/no-such-dir/slosh.db"),
        "{error}"
    );
}

#[test]
fn a_truncated_or_foreign_file_is_an_error_naming_it_not_a_fresh_start() {
    let dir = Dir::new("bad");
    let path = dir.file();
    {
        let store = FileStore::open(&path, Sync::Batch).unwrap();
        let hub = hub(&store, 100);
        for n in 0..200 {
            hub.publish("t", &json!({"n": n, "pad": "x".repeat(200)}))
                .unwrap();
        }
    }
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 3]).unwrap();
    let error = FileStore::open(&path, Sync::Always).unwrap_err();
    assert!(
        error.to_string().contains(path.to_str().unwrap()),
        "{error}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap().len(),
        bytes.len() / 3,
        "left as it was"
    );

    std::fs::write(
        &path,
        b"this is not a database, just some text in a file\n".repeat(100),
    )
    .unwrap();
    let error = FileStore::open(&path, Sync::Always).unwrap_err();
    assert!(matches!(error, OpenError::Corrupt { .. }), "{error}");
    assert!(
        error.to_string().contains(path.to_str().unwrap()),
        "{error}"
    );
}

#[test]
fn a_file_from_a_newer_slosh_is_refused() {
    let dir = Dir::new("newer");
    let path = dir.file();
    drop(FileStore::open(&path, Sync::Always).unwrap());
    {
        let db = redb::Database::open(&path).unwrap();
        let write = db.begin_write().unwrap();
        {
            let mut meta = write
                .open_table(redb::TableDefinition::<&str, u64>::new("meta"))
                .unwrap();
            meta.insert("format", slosh_file::FORMAT + 1).unwrap();
        }
        write.commit().unwrap();
    }
    let error = FileStore::open(&path, Sync::Always).unwrap_err();
    assert!(
        matches!(error, OpenError::Newer { found, .. } if found == slosh_file::FORMAT + 1),
        "{error}"
    );
    assert!(error.to_string().contains("upgrade slosh"), "{error}");
}

#[test]
fn expired_messages_leave_the_file_too() {
    let dir = Dir::new("expire");
    let name = TopicName::parse("t").unwrap();
    {
        let store = FileStore::open(&dir.file(), Sync::Always).unwrap();
        let log = store.log(&name, 10, Epoch::from_bits(1));
        for n in 1..=2 {
            log.append(Json::from(json!(n))).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
        let cutoff = slosh_core::stamp_now();
        std::thread::sleep(std::time::Duration::from_millis(5));
        log.append(Json::from(json!(3))).unwrap();
        assert_eq!(log.expire(cutoff), 2);
        assert_eq!(ids(&log), [3]);
        assert_eq!(log.expire(cutoff), 0);
    }
    // The deletion had no fsync of its own; closing the store made it
    // durable, and the stamps survive the reopen.
    let store = FileStore::open(&dir.file(), Sync::Always).unwrap();
    let log = store.log(&name, 10, Epoch::from_bits(2));
    assert_eq!(ids(&log), [3]);
    assert_eq!(log.max(), 3);
    assert_eq!(log.expire(slosh_core::stamp_now() + 1), 1);
    drop(log);
    let log = store.log(&name, 10, Epoch::from_bits(2));
    assert_eq!((ids(&log), log.max()), (vec![], 3));
}

#[test]
fn a_format_1_file_is_upgraded_in_place_and_its_messages_kept() {
    let dir = Dir::new("format1");
    let path = dir.file();
    {
        let db = redb::Database::create(&path).unwrap();
        let write = db.begin_write().unwrap();
        {
            let mut meta = write
                .open_table(redb::TableDefinition::<&str, u64>::new("meta"))
                .unwrap();
            meta.insert("format", 1).unwrap();
            let mut topics = write
                .open_table(redb::TableDefinition::<&str, (&str, u64, u64)>::new(
                    "topics",
                ))
                .unwrap();
            topics.insert("old", ("abcdefgh", 2, 2)).unwrap();
            let mut messages = write
                .open_table(redb::TableDefinition::<(&str, u64), &str>::new("messages"))
                .unwrap();
            messages.insert(("old", 1), "1").unwrap();
            messages.insert(("old", 2), "2").unwrap();
        }
        write.commit().unwrap();
    }
    let store = FileStore::open(&path, Sync::Always).unwrap();
    let log = store.log(&TopicName::parse("old").unwrap(), 10, Epoch::from_bits(5));
    assert_eq!(ids(&log), [1, 2]);
    assert_eq!(log.epoch().as_str(), "abcdefgh");
    assert_eq!(log.append(Json::from(json!(3))).unwrap().id(), 3);
    // Counted from the upgrade, the old messages are young.
    assert_eq!(
        log.expire(slosh_core::stamp_now().saturating_sub(60_000)),
        0
    );
    drop(log);
    drop(store);
    let db = redb::Database::open(&path).unwrap();
    let read = db.begin_read().unwrap();
    let meta = read
        .open_table(redb::TableDefinition::<&str, u64>::new("meta"))
        .unwrap();
    assert_eq!(
        meta.get("format").unwrap().unwrap().value(),
        slosh_file::FORMAT
    );
}

/// Publishes message `n` of `ns`, padded with `pad` bytes, to topic
/// `t{n % 10}`.
fn publish_padded(hub: &Hub, ns: std::ops::Range<u32>, pad: usize) {
    let pad = "x".repeat(pad);
    for n in ns {
        hub.publish(&format!("t{}", n % 10), &json!({"n": n, "pad": pad}))
            .unwrap();
    }
}

#[test]
fn the_file_stays_bounded_by_what_is_buffered() {
    let dir = Dir::new("bounded");
    let path = dir.file();
    let store = FileStore::open(&path, Sync::Batch).unwrap();
    let hub = hub(&store, 10);
    let publish = |from: u32, to: u32| publish_padded(&hub, from..to, 200);
    publish(0, 2_000);
    store.flush().unwrap();
    let early = std::fs::metadata(&path).unwrap().len();
    publish(2_000, 20_000);
    store.flush().unwrap();
    let late = std::fs::metadata(&path).unwrap().len();
    // 100 messages of ~220 bytes are buffered throughout: ten times the
    // publishes must not make the file grow with them.
    assert!(
        late <= early * 2,
        "{early} bytes after 2 000, {late} after 20 000"
    );
    eprintln!("file: {early} B after 2 000 publishes, {late} B after 20 000");
}

#[test]
fn opening_gives_back_what_deleted_topics_held_and_restarts_do_not_grow_the_file() {
    let dir = Dir::new("compact");
    let path = dir.file();
    let size = || std::fs::metadata(&path).unwrap().len();
    let store = FileStore::open(&path, Sync::Batch).unwrap();
    let hub = hub(&store, 1_000);
    publish_padded(&hub, 0..10_000, 2_000);
    // In the file before the deletions: one batch holding both would never
    // have made it grow.
    store.flush().unwrap();
    for n in 0..10 {
        assert!(hub.delete(&format!("t{n}")));
    }
    drop(hub);
    drop(store);
    // 20 MB were buffered; nothing is now.
    let full = size();
    assert!(full > 20_000_000, "{full} bytes");
    drop(FileStore::open(&path, Sync::Batch).unwrap());
    let compacted = size();
    assert!(
        compacted < full / 4,
        "{full} bytes before compaction, {compacted} after"
    );
    for _ in 0..3 {
        drop(FileStore::open(&path, Sync::Batch).unwrap());
    }
    let again = size();
    // redb's compaction is not a strict fixed point (it can leave a few
    // pages more after one open than after another), so a restart may
    // move the size a little; what must not happen is growth per restart.
    assert!(
        again <= compacted + compacted / 10,
        "{compacted} bytes, then {again} after three restarts"
    );
    eprintln!("file: {full} B holding 20 MB, {compacted} B emptied and compacted");
}

#[derive(Debug, Clone)]
enum Op {
    Publish(i32),
    /// Read after `max + offset − 3` (clamped at 0).
    Read(u8),
    /// Close the file and open it again, as a restart does.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => any::<i32>().prop_map(Op::Publish),
        3 => (0u8..6).prop_map(Op::Read),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The file store reads as a plain model of a buffer does, across
    /// reopening: ids go on, the newest `queue` are kept, the epoch stays.
    #[test]
    fn the_file_store_reads_as_the_model_says(queue in 1usize..5, ops in proptest::collection::vec(op(), 1..40)) {
        let dir = Dir::new("model");
        let name = TopicName::parse("m").unwrap();
        let mut store = FileStore::open(&dir.file(), Sync::Batch).unwrap();
        let mut log = store.log(&name, queue, Epoch::from_bits(7));
        let mut model: Vec<i32> = Vec::new();
        // A life's epoch is the one its log had when its first message
        // was kept.
        let mut epoch = Epoch::from_bits(7);
        for op in ops {
            match op {
                Op::Publish(value) => {
                    let message = log.append(Json::from(json!(value))).unwrap();
                    model.push(value);
                    prop_assert_eq!(message.id(), model.len() as u64);
                }
                Op::Read(offset) => {
                    let max = model.len() as u64;
                    let after = (max + u64::from(offset)).saturating_sub(3).min(max);
                    let mut out = Vec::new();
                    prop_assert_eq!(log.read_after(after, &mut out), max);
                    let kept_from = model.len().saturating_sub(queue);
                    let want: Vec<(u64, i32)> = model.iter().enumerate().skip(kept_from)
                        .map(|(i, v)| (i as u64 + 1, *v))
                        .filter(|(id, _)| *id > after)
                        .collect();
                    let got: Vec<(u64, i32)> = out.iter()
                        .map(|m| (m.id(), m.json().as_str().parse().unwrap()))
                        .collect();
                    prop_assert_eq!(got, want);
                }
                Op::Reopen => {
                    drop(log);
                    drop(store);
                    store = FileStore::open(&dir.file(), Sync::Batch).unwrap();
                    log = store.log(&name, queue, Epoch::from_bits(8));
                    if model.is_empty() {
                        epoch = Epoch::from_bits(8);
                    }
                    prop_assert_eq!(log.epoch(), epoch);
                }
            }
            prop_assert_eq!(log.max(), model.len() as u64);
        }
    }
}
