//! Binds [`slosh_core`] to actix-web 4. The adapter arrives with the actix
//! issue; until then this crate only re-exports the hub so the workspace
//! shape is in place.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub use slosh_core::Hub;
