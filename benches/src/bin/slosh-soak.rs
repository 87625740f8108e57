//! `slosh-soak`: minutes of subscriber churn (long-poll, SSE, WebSocket)
//! against one slosh server while messages are published, then the checks:
//! every acknowledged message reached every subscriber that stayed, in
//! order; the server's RSS came back to within 10 % of its level after the
//! warm-up; `/metrics` counts no subscriber (and no topic) left behind.
//!
//! The server is one of: started here in-process (the default; its RSS is
//! then this whole process's), a `slosh-cli` binary it starts itself
//! (`--server-bin`, the cleanest RSS figure), or one already running
//! (`--base`, with `--server-pid` for RSS). Loopback only.
//!
//! Prints the report on stderr and one JSON line on stdout; exits 1 when a
//! check failed.

#![forbid(unsafe_code)]

use std::io::BufRead;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

use benches::load::{Run, ServerProcess, Target};
use benches::soak::{self, SoakOptions};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "slosh-soak",
    about = "Subscriber churn against slosh, then checks for loss and leaks"
)]
struct Cli {
    /// How long to churn, in minutes.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Churn before the RSS reference, in seconds (default: a tenth of the
    /// run, at most 60).
    #[arg(long)]
    warmup: Option<f64>,
    /// Churning clients at any moment.
    #[arg(long, default_value_t = 32)]
    churners: usize,
    /// Messages per second (to the stayers' topic, and as many to the
    /// churners' topics).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Longest a churned subscriber stays, in milliseconds.
    #[arg(long, default_value_t = 1500)]
    hold_ms: u64,
    /// How long the end checks wait for counts to settle, in seconds.
    #[arg(long, default_value_t = 15.0)]
    settle: f64,
    /// Seed of the churn's choices.
    #[arg(long, default_value_t = 0x5eed)]
    seed: u64,
    /// A running server to soak (127.0.0.0/8 only), e.g. http://127.0.0.1:8000.
    #[arg(long, conflicts_with = "server_bin")]
    base: Option<String>,
    /// The running server's pid, for its RSS.
    #[arg(long, requires = "base")]
    server_pid: Option<u32>,
    /// Whether the running server removes idle topics within --settle
    /// (started with --topic-idle 1 --session-timeout 1).
    #[arg(long, requires = "base")]
    expect_topics_gone: bool,
    /// A `slosh-cli` binary to start (`serve --bind 127.0.0.1:0` with
    /// short idle timeouts) and soak.
    #[arg(long)]
    server_bin: Option<String>,
    /// Runtime worker threads of the soak's clients (and its in-process server).
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("slosh-soak: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut child: Option<Child> = None;
    let result = runtime.block_on(async {
        let (base, server, expect_topics_gone) = match (&cli.base, &cli.server_bin) {
            (Some(base), _) => (base.clone(), cli.server_pid, cli.expect_topics_gone),
            (None, Some(bin)) => {
                let (started, base) = start_server(bin)?;
                let pid = started.id();
                child = Some(started);
                (base, Some(pid), true)
            }
            (None, None) => (
                soak::spawn_server().await.map_err(|e| e.to_string())?,
                Some(std::process::id()),
                true,
            ),
        };
        let target = Target::slosh(&base).map_err(|e| e.to_string())?;
        let mut run = Run::new(target);
        run.servers = server
            .map(|pid| ServerProcess { pid })
            .into_iter()
            .collect();
        let duration = Duration::from_secs_f64(cli.minutes.max(0.0) * 60.0);
        let warmup = cli
            .warmup
            .map_or(duration.div_f64(10.0).min(Duration::from_secs(60)), |s| {
                Duration::from_secs_f64(s.max(0.0))
            });
        let options = SoakOptions {
            duration,
            warmup,
            churners: cli.churners,
            rate: cli.rate,
            hold_max: Duration::from_millis(cli.hold_ms),
            settle: Duration::from_secs_f64(cli.settle.max(0.0)),
            expect_topics_gone,
            seed: cli.seed,
        };
        soak::soak(&run, options).await.map_err(|e| e.to_string())
    });
    if let Some(mut child) = child {
        let _ = child.kill();
        let _ = child.wait();
    }
    match result {
        Ok(report) => {
            eprintln!("{report}");
            println!("{}", report.json());
            if report.problems().is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("slosh-soak: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Starts `bin serve` on a free loopback port with the soak's settings and
/// returns it with its base URL, read from its start line.
fn start_server(bin: &str) -> Result<(Child, String), String> {
    let mut child = Command::new(bin)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .args(soak::SERVER_FLAGS)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{bin}: {e}"))?;
    let Some(stderr) = child.stderr.take() else {
        return Err("no stderr".into());
    };
    let mut lines = std::io::BufReader::new(stderr).lines();
    let address = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(address) = line
                    .split_whitespace()
                    .find_map(|word| word.strip_prefix("address="))
                {
                    break address.to_string();
                }
            }
            _ => {
                let _ = child.kill();
                return Err(format!("{bin} did not print its address"));
            }
        }
    };
    // Keep reading its log so it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Ok((child, format!("http://{address}")))
}
