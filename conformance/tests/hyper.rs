//! The black-box suite against `slosh-hyper`.

#[path = "api/mod.rs"]
mod api;

/// The frontend every `spawn_app()` of this binary starts.
const FRONTEND: api::helpers::Frontend = api::helpers::Frontend::Hyper;
