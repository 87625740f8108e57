//! The actix frontend over `--store file:PATH`, as a user runs it: the
//! `live_form` example (an actix app taking `slosh-cli`'s flags) restarted
//! over the same file goes on with the same ids and epoch, and killed with
//! `kill -9` in the middle of a burst loses no publish it answered `200`
//! (with `--sync batch`, only the last window's, never leaving a hole).
//! The checks are `slosh-cli/tests/restart`, the same as for the hyper
//! frontend; only the binary differs.

#[path = "../../slosh-cli/tests/restart/mod.rs"]
mod restart;

use std::path::PathBuf;
use std::time::Duration;

use restart::{ids_and_epoch_go_on_across_a_clean_restart, kill_9_loses_nothing_answered_before};

/// The `live_form` example's binary: `cargo test` builds a package's
/// examples beside its tests (`target/debug/examples`).
fn live_form() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let debug = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let example = debug.join("examples").join("live_form");
    assert!(
        example.exists(),
        "{} is not built: run this test with cargo test",
        example.display()
    );
    example
}

#[test]
fn a_restarted_actix_app_goes_on_with_the_same_ids_and_epoch() {
    ids_and_epoch_go_on_across_a_clean_restart(&live_form(), "always");
}

#[test]
fn kill_9_of_an_actix_app_mid_burst_loses_no_answered_publish_with_sync_always() {
    kill_9_loses_nothing_answered_before(&live_form(), "always", Duration::ZERO);
}

#[test]
fn kill_9_of_an_actix_app_mid_burst_with_sync_batch_loses_at_most_the_last_window() {
    // slosh_file::BATCH_WINDOW (50 ms), and room for a late flusher.
    kill_9_loses_nothing_answered_before(&live_form(), "batch", Duration::from_millis(50 + 450));
}
