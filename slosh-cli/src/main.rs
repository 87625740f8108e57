//! `slosh-cli`: the slosh server (`serve`) and its client verbs
//! (`publish`, `watch`, `reflect`).

#![forbid(unsafe_code)]

/// mimalloc, not the system allocator: a delivery allocates and frees a
/// few dozen small blocks, where glibc's malloc was costly
/// (docs/DECISIONS.md, "How `slosh-cli serve` spends its CPU").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::FromArgMatches;
use slosh_cli::{client, command, ServeArgs};

fn main() -> ExitCode {
    let matches = client::add_verbs(
        command(
            "slosh-cli",
            "slosh, a realtime web hub: POST into topic URLs, receive by long-poll or SSE.",
        )
        .version(env!("CARGO_PKG_VERSION")),
    )
    .get_matches();
    if let Some(status) = client::run_verb(&matches) {
        return status;
    }
    let Some(("serve", serve)) = matches.subcommand() else {
        // clap requires a subcommand, and the others are client verbs.
        return ExitCode::from(2);
    };
    let mut args = ServeArgs::from_arg_matches(serve).unwrap_or_else(|error| error.exit());
    if let Err(error) = args.apply_config(serve) {
        // As clap does for a bad flag: before anything is bound or logged.
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }
    slosh_cli::init_logging();
    let runtime = match slosh_cli::server_runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("slosh-cli: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Spawned, not run in `block_on` itself: with worker threads,
    // `block_on` polls its future on this main thread, so the accept loop
    // would hand every connection across threads to a worker (an eventfd
    // write and an extra epoll wakeup per connection, measured in
    // `benches/RESULTS.md`).
    let result = runtime.block_on(async { tokio::spawn(slosh_cli::run_server(args)).await });
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(error)) => {
            tracing::error!(%error, "slosh failed");
            ExitCode::FAILURE
        }
        Err(error) => {
            tracing::error!(%error, "the server task panicked");
            ExitCode::FAILURE
        }
    }
}
