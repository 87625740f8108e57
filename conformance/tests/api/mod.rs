//! Black-box tests: the real server on an ephemeral port, spoken to over
//! HTTP/1.1 with a deliberately plain client, so what is tested is exactly
//! what goes over the wire.

mod auth;
mod disconnect;
mod epochs;
mod expiry;
mod files;
pub mod helpers;
mod hostile;
mod limits;
mod long_poll;
mod multi;
mod panic;
mod server;
mod server_loop;
mod shared;
mod streams;
mod websocket;
