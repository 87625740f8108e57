//! Binds [`slosh_core`] to hyper 1.x. The adapter arrives with the HTTP
//! issue; until then this crate only re-exports the hub so the workspace
//! shape is in place.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub use slosh_core::Hub;
