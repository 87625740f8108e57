//! `slosh-cli`: the slosh server (`serve`).

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use slosh_cli::ServeArgs;

/// slosh, a realtime web hub: POST into topic URLs, receive by long-poll.
#[derive(Debug, Parser)]
#[command(name = "slosh-cli", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (defaults: 127.0.0.1:8000).
    Serve(ServeArgs),
}

fn main() -> ExitCode {
    // Parsed in two steps rather than `Cli::parse()` because the config
    // file needs the matches: they say which flags came from where.
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    let command = match (cli.command, matches.subcommand()) {
        (Command::Serve(mut args), Some((_, serve))) => match args.apply_config(serve) {
            Ok(()) => Command::Serve(args),
            Err(error) => {
                // Refused like a bad flag: before anything is bound or logged.
                eprintln!("error: {error}");
                return ExitCode::from(2);
            }
        },
        (command, _) => command,
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
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
    let result = match command {
        Command::Serve(args) => runtime.block_on(slosh_cli::run_server(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "slosh failed");
            ExitCode::FAILURE
        }
    }
}
