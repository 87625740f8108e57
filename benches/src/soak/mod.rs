//! `slosh-soak`: a long run of connection churn against one slosh server,
//! then the checks that nothing was lost and nothing was left behind.
//!
//! While a publisher sends numbered messages (`{"seq":S}`) at a steady
//! rate, three *stayers* (a long-poll, an SSE stream and a WebSocket) stay
//! connected to one topic for the whole run, and *churners* connect and
//! drop subscribers of every kind over and over: a long-poll dropped while
//! parked, an SSE stream cut mid-read, a WebSocket closed politely or just
//! dropped, some publishing a frame first. At the end:
//!
//! - every acknowledged message reached every stayer, in order;
//! - the server's RSS is within 10 % of what it was after the warm-up;
//! - `/metrics` counts no subscriber (and, when the soak knows the server's
//!   idle timeouts, no topic): nothing the churn created is left.
//!
//! Everything is bounded: the run stops at its duration, each churned
//! connection at its hold time, and each wait at [`SoakOptions::settle`].
//!
//! # Layout
//!
//! - `scenario`: the run's plan and orchestration: [`SoakOptions`], the
//!   state every task shares, starting the stayers, publisher and churners,
//!   the warm-up and the end checks against `/metrics`, and the soak's own
//!   server ([`spawn_server`]).
//! - `clients`: the tasks that speak to the server: the publisher, the
//!   stayers and churners, and the long-poll, SSE and WebSocket
//!   subscriptions they run, each checking the order of what it receives.
//! - `report`: what the soak found ([`SoakReport`]), its verdict, the
//!   summary it prints and its JSON.

mod clients;
mod report;
mod scenario;

pub use clients::Kind;
pub use report::{SoakReport, StayerReport, RSS_TOLERANCE};
pub use scenario::{server_settings, soak, spawn_server, SoakOptions, SERVER_FLAGS};
