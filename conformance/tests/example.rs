//! The black-box suite against the actix example application
//! (`slosh-actix/examples/live_form`): a host app with pages of its own at
//! `/`, `/form` and `/live`, and slosh answering every other path.

#[path = "api/mod.rs"]
mod api;

/// The frontend every `spawn_app()` of this binary starts.
const FRONTEND: api::helpers::Frontend = api::helpers::Frontend::Example;
