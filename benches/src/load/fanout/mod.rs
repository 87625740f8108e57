//! Many subscribers, one publisher: `longpoll`, `sse-fanout` and
//! `connect`.
//!
//! Each message is a [`Stamp`](crate::load::Stamp): its seq and its send
//! time on a clock shared by publisher and subscribers (one `Instant`, one
//! process), so a subscriber knows each delivery's latency and which seqs
//! it never got.
//!
//! A run: subscribers connect (at most [`CONNECTING_AT_ONCE`] at a time,
//! so the server's accept queue is not flooded) and say when they are
//! subscribed; the publisher then posts M messages at R/s, or back-to-back
//! (rate 0: the next as soon as every live subscriber has the previous);
//! subscribers stop once they hold every seq, or at the drain deadline, or
//! at the run's timeout, and hand back what they counted.
//!
//! # Layout
//!
//! - `scenario`: the run's plan and its orchestration: the options, the
//!   state subscribers and publisher share, spawning the subscribers,
//!   waiting for them to subscribe (and for long-polls to park), then
//!   publishing, draining, and summing their tallies.
//! - `clients`: the tasks that speak to the server: the SSE, long-poll and
//!   idle WebSocket subscribers with their per-subscriber tally, and the
//!   publisher.
//! - `report`: what a run measured ([`FanoutReport`], [`ConnectReport`]),
//!   the summary it prints and the JSON line `benches/compare.sh` reads.

mod clients;
mod report;
mod scenario;

pub use report::{ConnectReport, FanoutReport};
pub use scenario::{
    connect, longpoll, sse_fanout, ConnectOptions, FanoutOptions, CONNECTING_AT_ONCE, MAX_MSGS,
};
