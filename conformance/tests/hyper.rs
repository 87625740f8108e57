//! The black-box suite against `slosh-hyper`.

#[path = "api/mod.rs"]
mod api;

/// The frontend every `spawn_app()` of this binary starts.
const FRONTEND: api::helpers::Frontend = api::helpers::Frontend::Hyper;

/// Connection-level limits of hyper's server loop (not yet matched by
/// actix's; see the file's docs).
#[path = "api/limits.rs"]
mod limits;
