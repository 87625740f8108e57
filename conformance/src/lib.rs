//! The conformance suite of slosh: no code of its own, only tests.
//!
//! `tests/api/` holds the black-box tests: each starts a real server on an
//! ephemeral port through `spawn_app()` and speaks HTTP/1.1 (and WebSocket)
//! to it with a deliberately plain client, so what is tested is exactly
//! what goes over the wire. The suite is compiled three times:
//!
//! - `tests/hyper.rs` runs it against `slosh-hyper` (what `slosh-cli serve`
//!   runs);
//! - `tests/actix.rs` runs it against `slosh-actix`;
//! - `tests/example.rs` runs it against the actix example application
//!   (`slosh-actix/examples/live_form`), whose own pages own `/`; the few
//!   tests of `/` ask `host_owns_root()` and check the host's page there.
//!
//! `tests/compare.rs` sends the same requests to both frontends and checks
//! the answers are the same: status, headers (but `Date` and the session
//! id) and body, byte for byte.

#![forbid(unsafe_code)]
