//! An actix application whose pages go live through the hub it embeds: a
//! form at `/` (and `/form`) whose POST handler publishes each submission
//! with `hub.publish`, and a page at `/live` that shows them as they come,
//! over Server-Sent Events from `/topics/submissions.sse`. Every other path
//! is slosh's: topics (long-poll, SSE, WebSocket), `/healthz`, `/metrics`
//! and the built-in demo.
//!
//! It takes the same flags, environment variables and `--config` file as
//! `slosh-cli serve`, parsed by the same code:
//!
//! ```text
//! cargo run -p slosh-actix --example live_form -- serve --bind 127.0.0.1:8001
//! ```

use std::process::ExitCode;

mod app;

#[actix_web::main]
async fn main() -> ExitCode {
    let args = slosh_cli::serve_args(slosh_cli::command(
        "live_form",
        "An actix form whose submissions appear live on another page.",
    ));
    slosh_cli::init_logging();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("live_form: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &slosh_cli::ServeArgs) -> std::io::Result<()> {
    args.check_root()?;
    let listener = listen(args.bind)?;
    slosh_cli::log_listening(listener.local_addr()?, args);
    app::serve(listener, args, shutdown_signal()).await?;
    slosh_cli::log_stopped();
    Ok(())
}

/// Binds with a 4 096-connection accept queue, as `slosh-cli serve` does:
/// `std`'s bind asks for 128, and a burst of reconnecting EventSources
/// overflows that (10 000 subscribers took 4.4 s to connect instead of
/// under half a second, each dropped handshake retried after a second).
fn listen(address: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use actix_web::rt::net::TcpSocket;
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(4096)?.into_std()
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    use actix_web::rt::signal;
    #[cfg(unix)]
    {
        let mut terminate = match signal::unix::signal(signal::unix::SignalKind::terminate()) {
            Ok(terminate) => terminate,
            Err(_) => {
                let _ = signal::ctrl_c().await;
                return;
            }
        };
        let interrupt = std::pin::pin!(signal::ctrl_c());
        let terminate = std::pin::pin!(terminate.recv());
        futures_util::future::select(interrupt, terminate).await;
    }
    #[cfg(not(unix))]
    {
        let _ = signal::ctrl_c().await;
    }
}
