//! `slosh-cli`: the slosh server (`serve`).

#![forbid(unsafe_code)]

use std::process::ExitCode;

use slosh_cli::{command, serve_args};

fn main() -> ExitCode {
    let args = serve_args(
        command(
            "slosh-cli",
            "slosh, a realtime web hub: POST into topic URLs, receive by long-poll.",
        )
        .version(env!("CARGO_PKG_VERSION")),
    );
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
