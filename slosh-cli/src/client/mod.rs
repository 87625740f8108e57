//! The client verbs (feature `client`): `publish`, `watch` and `reflect`,
//! speaking plain HTTP/1.1 to any slosh server.
//!
//! - `target`: the URLs given, parsed once (`http://` only: there is no TLS
//!   here; put a TLS proxy in front of a remote hub, or run a local one).
//! - `http`: hyper's client connection, each failure sorted by whether the
//!   request may have reached the server; every answer read with a bound.
//! - `subscribe`: a subscription over SSE or long-poll that reconnects with
//!   backoff and resumes after the last message it handed out. It reads
//!   with `slosh-client`'s SSE parser (bounded per event by `--max-body`)
//!   and batch parsers, the ones the load generator and the conformance
//!   suite use.
//! - `publish`, `watch`, `reflect`: the verbs; `filter` is reflect's
//!   `--filter` language; `notice` the stderr lines and the backoff.
//!
//! Exit status: 0 when done or stopped by SIGINT/SIGTERM, 1 when the server
//! refused or could not be reached, 2 for a bad command line.

mod filter;
mod http;
mod notice;
mod publish;
mod reflect;
mod subscribe;
mod target;
mod token;
mod watch;

use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgMatches, Args, Command, FromArgMatches};
use slosh_core::settings::{parse_duration, parse_size};

pub use subscribe::Format;

/// `slosh-cli token`: what the token allows and how it is signed.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The server's --jwt-secret (HS256).
    #[arg(
        long,
        env = "SLOSH_JWT_SECRET",
        hide_env_values = true,
        conflicts_with = "private_key"
    )]
    pub secret: Option<String>,
    /// A private key (PEM, RSA or EC P-256) whose public half is the server's --jwt-public-key.
    #[arg(long, value_name = "FILE")]
    pub private_key: Option<std::path::PathBuf>,
    /// Topics it may subscribe to: a name, or a prefix ending in * (repeatable).
    #[arg(long, value_name = "PATTERN", value_parser = crate::parse_pattern)]
    pub subscribe: Vec<slosh_core::Pattern>,
    /// Topics it may publish to and delete: a name, or a prefix ending in * (repeatable).
    #[arg(long, value_name = "PATTERN", value_parser = crate::parse_pattern)]
    pub publish: Vec<slosh_core::Pattern>,
    /// How long it is valid (its exp).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub ttl: Duration,
    /// Whom it is for (its sub claim).
    #[arg(long)]
    pub sub: Option<String>,
}

/// `slosh-cli publish URL [JSON | -]`.
#[derive(Debug, Clone, Args)]
pub struct PublishArgs {
    /// The topic URL, such as http://127.0.0.1:8000/topics/chat.
    pub url: String,
    /// The message as JSON, or - to publish each non-empty line of stdin as one message.
    #[arg(value_name = "JSON|-", allow_hyphen_values = true)]
    pub message: String,
    /// The server's publish token, sent as Authorization: Bearer TOKEN.
    #[arg(long, env = "SLOSH_PUBLISH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// `slosh-cli watch URL`.
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// The topic URL, such as http://127.0.0.1:8000/topics/chat (a .sse, .json or .xml suffix picks the format).
    pub url: String,
    /// sse (one stream), or long-poll in json or xml [default: sse, or the URL's suffix].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Start after message N (0: everything still buffered) [default: only new messages].
    #[arg(long, value_name = "N")]
    pub from: Option<u64>,
    /// The largest event or long-poll answer read; a server sending more is an error.
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = parse_size)]
    pub max_body: usize,
    /// No connection notices on stderr (errors are still printed).
    #[arg(long, short)]
    pub quiet: bool,
}

/// `slosh-cli reflect FROM_URL TO_URL…`.
#[derive(Debug, Clone, Args)]
pub struct ReflectArgs {
    /// The topic to read (over SSE), such as http://a:8000/topics/chat.
    pub from_url: String,
    /// Topic URLs to publish each message to, on this or other slosh servers.
    #[arg(required = true, value_name = "TO_URL")]
    pub to_urls: Vec<String>,
    /// Keep or reshape messages: '.kind == "alert"', '.kind != "debug"', '.payload' (repeatable, applied in order).
    #[arg(long = "filter", value_name = "RULE")]
    pub filters: Vec<String>,
    /// Start after message N of the source (0: everything still buffered) [default: only new messages].
    #[arg(long, value_name = "N")]
    pub from: Option<u64>,
    /// The destinations' publish token, sent as Authorization: Bearer TOKEN.
    #[arg(long, env = "SLOSH_PUBLISH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// How long a failing publish is retried before that message is given up for that destination (0 = forever).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub retry_for: Duration,
    /// The largest event or answer read; a server sending more is an error.
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = parse_size)]
    pub max_body: usize,
    /// No connection notices on stderr (errors are still printed).
    #[arg(long, short)]
    pub quiet: bool,
}

/// Adds `publish`, `watch` and `reflect` to `command` (from [`crate::command`]).
pub fn add_verbs(command: Command) -> Command {
    command
        .subcommand(
            TokenArgs::augment_args(Command::new("token")).about(
                "Print a signed token (JWT) for a server's --jwt-secret or --jwt-public-key.",
            ),
        )
        .subcommand(
            PublishArgs::augment_args(Command::new("publish"))
                .about("Publish one message, or one per line of stdin; print each id."),
        )
        .subcommand(
            WatchArgs::augment_args(Command::new("watch"))
                .about("Print each message of a topic as it arrives: ID MESSAGE, one line each."),
        )
        .subcommand(
            ReflectArgs::augment_args(Command::new("reflect"))
                .about("Republish every message of one topic to other topics or servers."),
        )
}

/// Runs the client verb `matches` names (`None` for any other subcommand):
/// on a runtime of its own, until it ends, SIGINT or SIGTERM.
pub fn run_verb(matches: &ArgMatches) -> Option<ExitCode> {
    let (name, arguments) = matches.subcommand()?;
    if name == "token" {
        // No network: no runtime either.
        return Some(match TokenArgs::from_arg_matches(arguments) {
            Ok(args) => token::run(args),
            Err(error) => error.exit(),
        });
    }
    if !matches!(name, "publish" | "watch" | "reflect") {
        return None;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("slosh-cli: cannot start the runtime: {error}");
            return Some(ExitCode::FAILURE);
        }
    };
    let status = runtime.block_on(async move {
        match name {
            // A publish interrupted is not a publish done: the signal's
            // default (the process ends, status 130) says so.
            "publish" => match PublishArgs::from_arg_matches(arguments) {
                Ok(args) => publish::run(args).await,
                Err(error) => error.exit(),
            },
            "watch" => match WatchArgs::from_arg_matches(arguments) {
                Ok(args) => until_signal(watch::run(args)).await,
                Err(error) => error.exit(),
            },
            _ => match ReflectArgs::from_arg_matches(arguments) {
                Ok(args) => until_signal(reflect::run(args)).await,
                Err(error) => error.exit(),
            },
        }
    });
    // Connection tasks still running (an open stream) are dropped with
    // the runtime; nothing is waited for.
    runtime.shutdown_background();
    Some(status)
}

/// Runs `verb` until it ends, or until SIGINT or SIGTERM, which stop it
/// cleanly: status 0.
async fn until_signal(verb: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    tokio::select! {
        status = verb => status,
        () = crate::shutdown_signal() => ExitCode::SUCCESS,
    }
}
