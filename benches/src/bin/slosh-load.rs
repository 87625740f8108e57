//! `slosh-load`: drives HTTP load at slosh (or Nchan) on this machine and
//! prints one JSON line per scenario on stdout, a readable summary on
//! stderr. See `benches/README.md` for the scenarios and their fields.
//!
//! Many connections need file descriptors: the generator does not raise its
//! own limit (that needs `unsafe` libc calls); run `ulimit -n` first.

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use benches::load::{
    self, ConnectOptions, CursorStyle, FanoutOptions, PublishOptions, Run, ServerProcess, Target,
};
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "slosh-load",
    about = "HTTP load generator for slosh (and Nchan)"
)]
struct Cli {
    #[command(flatten)]
    target: TargetArgs,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Args)]
struct TargetArgs {
    /// Replaces {base} in the URL templates; the host must be in 127.0.0.0/8.
    /// Repeat it (or give a comma-separated list) for the nodes of a
    /// cluster: subscribers and publishes are spread over them round-robin.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8000"
    )]
    base: Vec<String>,
    /// Which server's URLs and cursor style the flags below start from.
    #[arg(long, global = true, value_enum, default_value_t = Preset::Slosh)]
    preset: Preset,
    /// Publish URL template ({base}, {topic}).
    #[arg(long, global = true)]
    publish_url: Option<String>,
    /// SSE subscribe URL template ({base}, {topic}).
    #[arg(long, global = true)]
    sub_url: Option<String>,
    /// Long-poll URL template ({base}, {topic}, {cursor}).
    #[arg(long, global = true)]
    poll_url: Option<String>,
    /// Topic info URL template, read (JSON `subscribers`) to see long-polls parked.
    #[arg(long, global = true)]
    info_url: Option<String>,
    /// How long-poll clients walk a topic.
    #[arg(long, global = true, value_enum)]
    cursor_style: Option<Style>,
    /// The server's pid, for its CPU (/proc/PID/stat) and RSS (/proc/PID/status).
    /// Repeat it (or give a comma-separated list) for a cluster's nodes and
    /// its store: CPU and RSS are then the sums over every pid.
    #[arg(long, global = true, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// Stop the scenario after this many seconds and report what it has.
    #[arg(long, global = true, default_value_t = 60.0)]
    timeout: f64,
    /// Topic name prefix (default: unique per run).
    #[arg(long, global = true)]
    topic_prefix: Option<String>,
    /// Loopback source addresses 127.0.0.1..N to spread connections over
    /// (0: one per 10 000 connections past 10 000).
    #[arg(long, global = true, default_value_t = 0)]
    source_addrs: usize,
    /// Runtime worker threads (1: a single-threaded runtime).
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
}

#[derive(Clone, Copy, ValueEnum)]
enum Preset {
    /// slosh's `/topics/…` URLs and `?n=` cursors.
    Slosh,
    /// `benches/peers/nchan.conf`: `/pub/…`, `/sub/…`, HTTP-cache cursors.
    Nchan,
}

#[derive(Clone, Copy, ValueEnum)]
enum Style {
    /// `?n=<max>` and slosh JSON batches.
    Slosh,
    /// `If-Modified-Since` / `If-None-Match` from `Last-Modified` / `Etag`.
    Nchan,
}

#[derive(Subcommand)]
enum Scenario {
    /// C keep-alive connections POST as fast as answered, round-robin over T topics.
    Publish {
        /// Connections.
        #[arg(long, default_value_t = 32)]
        conns: usize,
        /// Topics.
        #[arg(long, default_value_t = 100)]
        topics: usize,
        /// Seconds to publish.
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
        /// Message body size in bytes.
        #[arg(long, default_value_t = 100)]
        size: usize,
    },
    /// S long-poll clients on one topic; a publisher posts M messages at R/s.
    Longpoll(FanoutArgs),
    /// S SSE subscribers on one topic; a publisher posts M messages at R/s.
    SseFanout(FanoutArgs),
    /// Open S SSE subscriptions and time them; server RSS per subscriber.
    Connect {
        /// Subscriptions.
        #[arg(long, default_value_t = 1000)]
        subs: usize,
        /// Topics to spread them over.
        #[arg(long, default_value_t = 1)]
        topics: usize,
        /// Idle WebSockets (slosh's upgrade on the topic URL) instead of SSE.
        #[arg(long)]
        websocket: bool,
    },
}

#[derive(Args)]
struct FanoutArgs {
    /// Subscribers.
    #[arg(long, default_value_t = 1000)]
    subs: usize,
    /// Messages.
    #[arg(long, default_value_t = 200)]
    msgs: u64,
    /// Messages per second; 0 = back-to-back (next once all have the last).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
}

impl FanoutArgs {
    fn options(&self) -> FanoutOptions {
        FanoutOptions {
            subs: self.subs,
            msgs: self.msgs,
            rate: self.rate,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = &cli.target;
    let first = args.base.first().map_or("", String::as_str);
    let preset = match args.preset {
        Preset::Slosh => Target::slosh(first),
        Preset::Nchan => Target::nchan(first),
    }
    .and_then(|target| target.with_bases(&args.base));
    let mut target = match preset {
        Ok(target) => target,
        Err(e) => {
            eprintln!("slosh-load: {e}");
            return ExitCode::from(2);
        }
    };
    let templates = [
        (&args.publish_url, &mut target.publish_url),
        (&args.sub_url, &mut target.sub_url),
        (&args.poll_url, &mut target.poll_url),
        (&args.info_url, &mut target.info_url),
    ];
    for (flag, template) in templates {
        if let Some(flag) = flag {
            template.clone_from(flag);
        }
    }
    match args.cursor_style {
        Some(Style::Slosh) => target.cursor_style = CursorStyle::Slosh,
        Some(Style::Nchan) => target.cursor_style = CursorStyle::Nchan,
        None => {}
    }
    if let Err(e) = target.check() {
        eprintln!("slosh-load: {e}");
        return ExitCode::from(2);
    }
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        eprintln!("slosh-load: --timeout must be a positive number of seconds");
        return ExitCode::from(2);
    }
    let mut run = Run::new(target);
    run.servers = args
        .server_pid
        .iter()
        .map(|&pid| ServerProcess { pid })
        .collect();
    run.timeout = Duration::from_secs_f64(args.timeout);
    run.source_addrs = args.source_addrs;
    if let Some(prefix) = &args.topic_prefix {
        run.topic_prefix = prefix.clone();
    }
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("slosh-load: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match &cli.scenario {
            Scenario::Publish {
                conns,
                topics,
                secs,
                size,
            } => {
                if !(secs.is_finite() && *secs > 0.0) {
                    return Err(load::LoadError::Options("--secs must be positive".into()));
                }
                let options = PublishOptions {
                    conns: *conns,
                    topics: *topics,
                    duration: Duration::from_secs_f64(*secs),
                    size: *size,
                };
                load::publish(&run, options)
                    .await
                    .map(|r| (r.json(), r.to_string()))
            }
            Scenario::Longpoll(fanout) => load::longpoll(&run, fanout.options())
                .await
                .map(|r| (r.json(), r.to_string())),
            Scenario::SseFanout(fanout) => load::sse_fanout(&run, fanout.options())
                .await
                .map(|r| (r.json(), r.to_string())),
            Scenario::Connect {
                subs,
                topics,
                websocket,
            } => {
                let options = ConnectOptions {
                    subs: *subs,
                    topics: *topics,
                    websocket: *websocket,
                };
                load::connect(&run, options)
                    .await
                    .map(|r| (r.json(), r.to_string()))
            }
        }
    });
    match outcome {
        Ok((json, summary)) => {
            println!("{json}");
            eprintln!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("slosh-load: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("slosh-load").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn one_base_and_one_pid_as_before() {
        let cli = parse(&["sse-fanout"]);
        assert_eq!(cli.target.base, ["http://127.0.0.1:8000"]);
        assert!(cli.target.server_pid.is_empty());
        let cli = parse(&[
            "--base",
            "http://127.0.0.1:9",
            "--server-pid",
            "7",
            "publish",
        ]);
        assert_eq!(cli.target.base, ["http://127.0.0.1:9"]);
        assert_eq!(cli.target.server_pid, [7]);
    }

    #[test]
    fn bases_and_pids_repeat_or_come_comma_separated_in_order() {
        let want_bases = [
            "http://127.0.0.1:1",
            "http://127.0.0.1:2",
            "http://127.0.0.1:3",
        ];
        // Before the subcommand (as compare.sh passes them) or after it: in
        // either place repeats and lists add up. (Split between the two
        // places, clap keeps only the ones after the subcommand.)
        let flags = [
            "--base",
            "http://127.0.0.1:1,http://127.0.0.1:2",
            "--server-pid",
            "10,11",
            "--base",
            "http://127.0.0.1:3",
            "--server-pid",
            "12",
        ];
        let before: Vec<&str> = flags.iter().copied().chain(["publish"]).collect();
        let after: Vec<&str> = std::iter::once("sse-fanout").chain(flags).collect();
        for args in [before, after] {
            let cli = parse(&args);
            assert_eq!(cli.target.base, want_bases, "{args:?}");
            assert_eq!(cli.target.server_pid, [10, 11, 12], "{args:?}");
        }
    }

    #[test]
    fn a_bad_pid_in_a_list_is_refused() {
        let args = ["slosh-load", "--server-pid", "10,x", "publish"];
        assert!(Cli::try_parse_from(args).is_err());
    }
}
