//! `slosh-cli`: the slosh server (`serve`) and its client verbs
//! (`publish`, `watch`, `reflect`).

#![forbid(unsafe_code)]

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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("slosh-cli: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(slosh_cli::run_server(args));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "slosh failed");
            ExitCode::FAILURE
        }
    }
}
