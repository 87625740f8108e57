//! The `slosh-cli` binary's pieces, as a library so other frontends (the
//! actix example) parse the same server flags instead of copying them.
//!
//! - [`ServeArgs`]: every server setting as a flag, each also read from an
//!   environment variable `SLOSH_<NAME>` and from the `--config` TOML file
//!   (module `config`: keys derived from the flags, [`ConfigError`]).
//! - [`command`], [`serve_args`], [`try_serve_args`]: a `NAME serve
//!   [FLAGS]` command line, parsed and completed from the config file.
//! - [`init_logging`], [`log_listening`], [`log_stopped`]: the log lines
//!   every frontend writes.
//! - [`run_server`] (feature `server`, on by default): binds, logs one
//!   start line, serves with `slosh-hyper` until SIGINT/SIGTERM, logs one
//!   stop line.
//! - [`client`] (feature `client`, on by default): the verbs `publish`,
//!   `watch` and `reflect`, a plain-HTTP client on hyper and tokio.
//!
//! With neither feature, nothing of hyper or tokio is compiled.
//!
//! # Example
//!
//! Another frontend takes the same command line as `slosh-cli serve` and
//! builds its hub from it (`slosh-actix`'s `live_form` example does this):
//!
//! ```
//! use slosh_cli::{command, try_serve_args};
//! use slosh_core::Hub;
//!
//! let argv = ["my-server", "serve", "--queue", "5", "--poll-timeout", "0"];
//! let args = try_serve_args(command("my-server", "My live pages."), argv).unwrap();
//!
//! let settings = args.settings();
//! assert_eq!(settings.queue, 5);
//! assert_eq!(settings.poll_timeout, None); // 0 means "park until a message comes"
//!
//! let hub = Hub::builder().settings(settings).build();
//! assert_eq!(hub.publish("chat", "hello").unwrap().id, Some(1));
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

#[cfg(feature = "client")]
pub mod client;
mod config;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgMatches, Args, Command, FromArgMatches};
use slosh_core::settings::{parse_duration, parse_size};
use slosh_core::{Mode, Settings};

pub use config::ConfigError;

/// The flags of `slosh-cli serve`. A flag beats its environment variable,
/// which beats the `--config` file (see [`ServeArgs::apply_config`]).
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// TOML file with settings as top-level keys: the flags' names in snake case.
    #[arg(long, env = "SLOSH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "SLOSH_BIND", default_value = "127.0.0.1:8000")]
    pub bind: SocketAddr,
    /// Topic mode: normal (GET or POST creates) or mailbox (only watched topics exist).
    #[arg(long, env = "SLOSH_MODE", default_value = "normal")]
    pub mode: Mode,
    /// Messages kept per topic.
    #[arg(long, env = "SLOSH_QUEUE", default_value_t = 100)]
    pub queue: usize,
    /// Drop messages older than this from every topic, checked each second (default: none; 0 = none).
    #[arg(long, env = "SLOSH_MAX_AGE", value_parser = parse_duration)]
    pub max_age: Option<Duration>,
    /// Long-poll timeout (0 = never).
    #[arg(long, env = "SLOSH_POLL_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub poll_timeout: Duration,
    /// How long a session lives without a request.
    #[arg(long, env = "SLOSH_SESSION_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub session_timeout: Duration,
    /// How long a mailbox topic outlives its last subscriber.
    #[arg(long, env = "SLOSH_LINGER", default_value = "30s", value_parser = parse_duration)]
    pub linger: Duration,
    /// How long an unwatched topic lives after its last publish (normal mode).
    #[arg(long, env = "SLOSH_TOPIC_IDLE", default_value = "300s", value_parser = parse_duration)]
    pub topic_idle: Duration,
    /// Largest message body accepted (inclusive).
    #[arg(long, env = "SLOSH_MAX_MESSAGE", default_value = "64KiB", value_parser = parse_size)]
    pub max_message: usize,
    /// Topics at most.
    #[arg(long, env = "SLOSH_MAX_TOPICS", default_value_t = 100_000)]
    pub max_topics: usize,
    /// Interval of the SSE heartbeat comment.
    #[arg(long, env = "SLOSH_HEARTBEAT", default_value = "15s", value_parser = parse_duration)]
    pub heartbeat: Duration,
    /// Time a client has to send its request head.
    #[arg(long, env = "SLOSH_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// Open connections at most.
    #[arg(long, env = "SLOSH_MAX_CONNECTIONS", default_value_t = 16_384)]
    pub max_connections: usize,
    /// Subscribers at most per topic.
    #[arg(long, env = "SLOSH_MAX_SUBSCRIBERS", default_value_t = 10_000)]
    pub max_subscribers: usize,
    /// Subscribers at most over all topics.
    #[arg(long, env = "SLOSH_MAX_SUBSCRIBERS_TOTAL", default_value_t = 100_000)]
    pub max_subscribers_total: usize,
    /// Topics at most on one stream of several (/subscribe.sse?topic=a&topic=b).
    #[arg(long, env = "SLOSH_MAX_TOPICS_PER_SUBSCRIBER", default_value_t = 64)]
    pub max_topics_per_subscriber: usize,
    /// Unsent bytes at most per streaming subscriber before it is dropped.
    #[arg(long, env = "SLOSH_MAX_UNSENT", default_value = "1MiB", value_parser = parse_size)]
    pub max_unsent: usize,
    /// When set, POST and DELETE need `Authorization: Bearer <token>`.
    #[arg(long, env = "SLOSH_PUBLISH_TOKEN", hide_env_values = true)]
    pub publish_token: Option<String>,
    /// Check signed tokens (JWT) with this HS256 secret: publishing then needs a token allowing the topic, and so does subscribing to a --private topic.
    #[arg(
        long,
        env = "SLOSH_JWT_SECRET",
        hide_env_values = true,
        conflicts_with = "jwt_public_key"
    )]
    pub jwt_secret: Option<String>,
    /// Check signed tokens (JWT) with this public key (PEM, RSA for RS256 or EC P-256 for ES256) instead of a secret.
    #[arg(long, env = "SLOSH_JWT_PUBLIC_KEY", value_name = "FILE")]
    pub jwt_public_key: Option<PathBuf>,
    /// The cookie a token is read from (besides Authorization: Bearer and ?access_token=).
    #[arg(long, env = "SLOSH_JWT_COOKIE", default_value = slosh_core::auth::DEFAULT_COOKIE)]
    pub jwt_cookie: String,
    /// Topics whose subscribers need a token naming them: a topic name, or a prefix ending in * (repeatable).
    #[arg(long = "private", env = "SLOSH_PRIVATE", value_delimiter = ',', value_name = "PATTERN", value_parser = parse_pattern)]
    pub private: Vec<slosh_core::Pattern>,
    /// An origin allowed to call cross-origin (repeatable, or `*`); none sends no CORS header.
    #[arg(long = "cors-origin", env = "SLOSH_CORS_ORIGIN", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Serve the files of this folder at `/` (instead of the built-in demo).
    #[arg(long, env = "SLOSH_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Where topics live: memory (forgotten on restart), file:PATH (one file; ids go on across restarts) or redis://HOST:PORT[/DB] (shared by every slosh on that Redis; rediss:// for TLS).
    #[arg(long, env = "SLOSH_STORE", default_value = "memory", value_parser = parse_store)]
    pub store: Store,
    /// When a file store's writes reach the disk: always (before each publish is answered) or batch (within 50 ms).
    #[arg(long, env = "SLOSH_SYNC", value_enum, default_value = "always")]
    pub sync: SyncMode,
}

/// Where `serve` keeps topics.
#[derive(Clone, PartialEq, Eq)]
pub enum Store {
    /// In memory: a restart starts every topic over, in a new epoch.
    Memory,
    /// In one file (`file:PATH`), with slosh-file.
    File(PathBuf),
    /// In a Redis shared with other servers (`redis://…` or `rediss://…`),
    /// with slosh-redis.
    Redis(String),
}

/// As logged at start: a Redis URL's password never is.
impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Store::Memory => f.write_str("Memory"),
            Store::File(path) => f.debug_tuple("File").field(path).finish(),
            Store::Redis(url) => f
                .debug_tuple("Redis")
                .field(&without_password(url))
                .finish(),
        }
    }
}

/// `--sync`: when a file store's commits are fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncMode {
    /// Before each publish is answered.
    Always,
    /// In groups, within 50 ms.
    Batch,
}

/// A topic pattern of `--private` (and of `slosh-cli token`).
pub(crate) fn parse_pattern(text: &str) -> Result<slosh_core::Pattern, String> {
    slosh_core::Pattern::parse(text).map_err(|error| error.to_string())
}

/// `memory`, `file:PATH`, `redis://…` or `rediss://…`.
fn parse_store(text: &str) -> Result<Store, String> {
    if text == "memory" {
        return Ok(Store::Memory);
    }
    if text.starts_with("redis://") || text.starts_with("rediss://") {
        return Ok(Store::Redis(text.to_string()));
    }
    match text.strip_prefix("file:") {
        Some("") | None => Err(format!(
            "{:?} is no store: give memory, file:PATH (file:/var/lib/slosh/topics.db) or redis://HOST:PORT[/DB]",
            without_password(text)
        )),
        Some(path) => Ok(Store::File(PathBuf::from(path))),
    }
}

/// A store argument as it may be shown (logs, errors): never a password.
fn without_password(text: &str) -> String {
    match text.split_once("://") {
        Some((scheme, rest)) if rest.contains('@') => {
            let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://***@{host}")
        }
        _ => text.to_string(),
    }
}

impl ServeArgs {
    /// Fills in, from the `--config` file if one is named, every setting
    /// the command line and the environment left at its default. `matches`
    /// are the ones these args were parsed from (the `serve` subcommand's).
    /// The whole file is checked even where a flag wins; a missing file, an
    /// unknown key or a value the flag would refuse is an error naming the
    /// file and the key.
    pub fn apply_config(&mut self, matches: &ArgMatches) -> Result<(), ConfigError> {
        match self.config.clone() {
            Some(path) => config::apply_file(self, matches, &path),
            None => Ok(()),
        }
    }

    /// The hub's settings these flags ask for.
    pub fn settings(&self) -> Settings {
        Settings {
            mode: self.mode,
            queue: self.queue,
            max_age: self.max_age.filter(|age| !age.is_zero()),
            poll_timeout: (!self.poll_timeout.is_zero()).then_some(self.poll_timeout),
            session_timeout: self.session_timeout,
            linger: self.linger,
            topic_idle: self.topic_idle,
            max_message: self.max_message,
            max_topics: self.max_topics,
            heartbeat: self.heartbeat,
            max_subscribers: self.max_subscribers,
            max_subscribers_total: self.max_subscribers_total,
            max_unsent: self.max_unsent,
            publish_token: self.publish_token.clone(),
            cors_origins: self.cors_origins.clone(),
            root: self.root.clone(),
            private: self.private.clone(),
            max_topics_per_subscriber: self.max_topics_per_subscriber,
            token_cookie: Some(self.jwt_cookie.clone()),
            ..Settings::default()
        }
    }

    /// A hub builder with these flags' settings and store: the file of
    /// `--store file:PATH` is opened here, so a file that cannot be used
    /// stops the start (an error naming it) before anything listens. What
    /// `serve` builds its hub with, and any embedder taking these flags
    /// (the actix example) the same way.
    #[cfg(feature = "stores")]
    pub fn hub_builder(&self) -> std::io::Result<slosh_core::Builder> {
        let mut builder = slosh_core::Hub::builder().settings(self.settings());
        if let Some(key) = self.token_key()? {
            builder = builder.token_key(key);
        }
        Ok(match &self.store {
            Store::Memory => builder,
            Store::File(path) => {
                let sync = match self.sync {
                    SyncMode::Always => slosh_file::Sync::Always,
                    SyncMode::Batch => slosh_file::Sync::Batch,
                };
                let store = slosh_file::FileStore::open(path, sync)
                    .map_err(|error| std::io::Error::other(format!("--store: {error}")))?;
                builder.store(store)
            }
            Store::Redis(url) => {
                let options = slosh_redis::Options {
                    // Keys outlive the last server holding the topic by
                    // more than a server's own idle rule, so a topic idle
                    // on every server is not dropped while one still keeps it.
                    ttl: (self.topic_idle * 2)
                        .max(self.linger * 2)
                        .max(std::time::Duration::from_secs(3600)),
                    ..slosh_redis::Options::default()
                };
                let store = slosh_redis::RedisStore::with_options(url, options)
                    .map_err(|error| std::io::Error::other(format!("--store: {error}")))?;
                builder.store(store)
            }
        })
    }

    /// The key tokens are checked with, from `--jwt-secret` or
    /// `--jwt-public-key` (read now, so a key that cannot be used stops the
    /// start with an error naming the file). A `--private` topic with no
    /// key could never be read: that is refused too.
    pub fn token_key(&self) -> std::io::Result<Option<slosh_core::TokenKey>> {
        let invalid =
            |message: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, message);
        let key = match (&self.jwt_secret, &self.jwt_public_key) {
            (Some(secret), _) => Some(
                slosh_core::TokenKey::secret(secret.as_bytes())
                    .map_err(|error| invalid(format!("--jwt-secret: {error}")))?,
            ),
            (None, Some(path)) => {
                let pem = std::fs::read(path).map_err(|error| {
                    invalid(format!("--jwt-public-key {}: {error}", path.display()))
                })?;
                Some(slosh_core::TokenKey::public_pem(&pem).map_err(|error| {
                    invalid(format!("--jwt-public-key {}: {error}", path.display()))
                })?)
            }
            (None, None) => None,
        };
        if key.is_none() && !self.private.is_empty() {
            return Err(invalid(
                "--private needs --jwt-secret or --jwt-public-key: without a key no token can open a private topic".into(),
            ));
        }
        Ok(key)
    }

    /// How the hyper server loop runs.
    #[cfg(feature = "server")]
    pub fn serve_options(&self) -> slosh_hyper::ServeOptions {
        slosh_hyper::ServeOptions {
            header_timeout: self.header_timeout,
            max_connections: self.max_connections,
            ..slosh_hyper::ServeOptions::default()
        }
    }

    /// Refuses a `--root` that is not a readable folder, at start: a typo
    /// would otherwise be a server answering 404 to everything.
    pub fn check_root(&self) -> std::io::Result<()> {
        match &self.root {
            Some(root) => slosh_core::files::check_root(root)
                .map(|_| ())
                .map_err(|message| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!("--root: {message}"),
                    )
                }),
            None => Ok(()),
        }
    }
}

/// Why a command line was refused.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    /// A flag or value clap refuses (or `--help`, `--version`).
    #[error(transparent)]
    Flags(#[from] clap::Error),
    /// The `--config` file.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The command line `NAME serve [FLAGS]`, with [`ServeArgs`] as `serve`'s
/// flags; add `.version(..)` or more to it as the program needs.
pub fn command(name: &'static str, about: &'static str) -> Command {
    // The about comes after the flags, which would otherwise set it from
    // `ServeArgs`'s own docs.
    let serve = ServeArgs::augment_args(Command::new("serve"))
        .about("Run the server (defaults: 127.0.0.1:8000).");
    Command::new(name)
        .about(about)
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommand(serve)
}

/// Parses `argv` (the program's name first) with `command` (from
/// [`command`]) and fills in the `serve` flags left at their defaults from
/// the `--config` file.
pub fn try_serve_args<I, T>(command: Command, argv: I) -> Result<ServeArgs, ArgsError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = command.try_get_matches_from(argv)?;
    let Some(("serve", serve)) = matches.subcommand() else {
        // `command` requires a subcommand and `serve` is its only one.
        return Err(clap::Error::new(clap::error::ErrorKind::MissingSubcommand).into());
    };
    let mut args = ServeArgs::from_arg_matches(serve)?;
    args.apply_config(serve)?;
    Ok(args)
}

/// [`try_serve_args`] on the process's own arguments, ending the process
/// as clap does (status 2) on a bad flag or config file, before anything
/// is bound or logged.
pub fn serve_args(command: Command) -> ServeArgs {
    match try_serve_args(command, std::env::args_os()) {
        Ok(args) => args,
        Err(ArgsError::Flags(error)) => error.exit(),
        Err(ArgsError::Config(error)) => {
            eprintln!("error: {error}");
            std::process::exit(2);
        }
    }
}

/// Logs to stderr at `RUST_LOG`'s level (`info` when unset).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// The start line: where the server listens and the settings that bound
/// it. Never a secret (the token is logged as present or not).
pub fn log_listening(address: SocketAddr, args: &ServeArgs) {
    let settings = args.settings();
    tracing::info!(
        address = %address,
        mode = ?settings.mode,
        queue = settings.queue,
        max_message = settings.max_message,
        max_topics = settings.max_topics,
        max_unsent = settings.max_unsent,
        max_connections = args.max_connections,
        publish_token = settings.publish_token.is_some(),
        jwt = args.jwt_secret.is_some() || args.jwt_public_key.is_some(),
        private = settings.private.len(),
        store = ?args.store,
        "slosh listening"
    );
}

/// The stop line.
pub fn log_stopped() {
    tracing::info!("slosh stopped");
}

/// Runs the server until SIGINT or SIGTERM, logging a line at start and stop.
#[cfg(feature = "server")]
pub async fn run_server(args: ServeArgs) -> std::io::Result<()> {
    args.check_root()?;
    let hub = args.hub_builder()?.build();
    let listener = listen(args.bind)?;
    log_listening(listener.local_addr()?, &args);
    slosh_hyper::serve_with(listener, hub, args.serve_options(), shutdown_signal()).await?;
    log_stopped();
    Ok(())
}

/// The tokio runtime `serve` runs on: one worker thread per CPU this
/// process may use (its affinity counts, so a `taskset` to one CPU means
/// one), or `TOKIO_WORKER_THREADS` as tokio reads it.
///
/// With one worker it is tokio's current-thread scheduler rather than the
/// multi-thread one with a single worker. That one keeps at most 256 woken
/// tasks in its own queue and moves the rest to a shared queue it looks at
/// only every 31 polls, so a publish that answers 1 000 long-polls had
/// most of them wait behind connections whose next request had come in;
/// the current-thread queue is first in, first out (docs/DECISIONS.md).
#[cfg(feature = "server")]
pub fn server_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let workers = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|value| value.trim().parse::<usize>().ok())
        .filter(|&workers| workers > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1);
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    };
    builder.enable_all().build()
}

/// Connections the kernel may queue for `accept` (capped by
/// `net.core.somaxconn`). tokio's `TcpListener::bind` asks for 1 024; a
/// burst of EventSource connections (a restart, after which every client
/// reconnects within its `retry:` 3 s) overflows that, and a client whose
/// handshake was dropped retries only after a second: 10 000 subscribers
/// took 2 to 4 s to connect instead of under 1 (`benches/RESULTS.md`).
#[cfg(feature = "server")]
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `address` as `TcpListener::bind` does (address reuse, so a
/// restart does not wait for old connections' `TIME_WAIT`), with a longer
/// accept queue.
#[cfg(feature = "server")]
fn listen(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
#[cfg(any(feature = "server", feature = "client"))]
pub(crate) async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM; stopping on Ctrl-C only");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_is_memory_a_file_or_a_redis_and_its_password_is_never_shown() {
        assert_eq!(parse_store("memory"), Ok(Store::Memory));
        assert_eq!(
            parse_store("file:/tmp/t.db"),
            Ok(Store::File(PathBuf::from("/tmp/t.db")))
        );
        let url = "redis://:hunter2@127.0.0.1:6379/1";
        assert_eq!(parse_store(url), Ok(Store::Redis(url.to_string())));
        assert!(parse_store("rediss://h:6380").is_ok());
        let shown = format!("{:?}", Store::Redis(url.to_string()));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("127.0.0.1:6379/1"), "{shown}");
        for bad in ["file:", "postgres://u:hunter2@h/db", ""] {
            let error = parse_store(bad).unwrap_err();
            assert!(error.contains("redis://"), "{error}");
            assert!(!error.contains("hunter2"), "{error}");
        }
    }
}
