//! `slosh-cli serve --store file:PATH` as a user runs it: ids go on across
//! a restart, a `kill -9` in the middle of a burst of publishes loses none
//! that was answered `200` with `--sync always` (and only the last
//! window's with `--sync batch`, never leaving a hole), and a store that
//! cannot be opened stops the start with an error naming the file. The
//! same restarts of the actix frontend are `slosh-actix/tests/store.rs`.

mod restart;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use restart::{
    ids_and_epoch_go_on_across_a_clean_restart, kill_9_loses_nothing_answered_before, Dir,
};

fn slosh_cli() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_slosh-cli"))
}

#[test]
fn ids_go_on_across_a_restart_over_the_same_file() {
    ids_and_epoch_go_on_across_a_clean_restart(slosh_cli(), "always");
}

#[test]
fn with_sync_batch_a_clean_restart_keeps_the_epoch_too() {
    ids_and_epoch_go_on_across_a_clean_restart(slosh_cli(), "batch");
}

#[test]
fn kill_9_mid_burst_loses_no_answered_publish_with_sync_always() {
    kill_9_loses_nothing_answered_before(slosh_cli(), "always", Duration::ZERO);
}

#[test]
fn kill_9_mid_burst_with_sync_batch_loses_at_most_the_last_window() {
    // The flusher's window (slosh_file::BATCH_WINDOW, 50 ms), and room for a flusher thread a loaded
    // machine schedules late.
    let window = Duration::from_millis(50 + 450);
    kill_9_loses_nothing_answered_before(slosh_cli(), "batch", window);
}

#[test]
fn a_store_that_cannot_be_opened_stops_the_start_naming_the_file() {
    let dir = Dir::new("bad");
    let file = dir.0.join("not-a-db");
    std::fs::write(&file, b"hello, this is not a slosh store\n".repeat(200)).unwrap();
    for store in [
        format!("file:{}", file.display()),
        "file:/proc/no-such-dir/topics.db".to_string(),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_slosh-cli"))
            .args(["serve", "--bind", "127.0.0.1:0", "--store", &store])
            .env("RUST_LOG", "info")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{store}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let path = store.trim_start_matches("file:");
        assert!(stderr.contains(path), "{stderr}");
        assert!(!stderr.contains("slosh listening"), "{stderr}");
    }
    let output = Command::new(env!("CARGO_BIN_EXE_slosh-cli"))
        .args(["serve", "--store", "disk"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("file:PATH"));
}
