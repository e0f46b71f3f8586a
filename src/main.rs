//! The `shop` command: `shop serve` (the default) runs the API and, unless `WORKERS=0`,
//! payment, refund and webhook workers; `shop worker` runs only those workers (needs `REDIS_URL`);
//! `shop healthcheck` probes a running instance (for container health checks).

use std::{process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use std::sync::Arc;

use shop::{
    config::Config,
    events::relay,
    payments::worker,
    startup::{Application, build_state, spawn_webhooks, spawn_workers},
    telemetry,
    webhooks::dispatch,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "shop", version, about = "E-commerce order API")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API and, unless WORKERS=0, payment workers (the default).
    Serve,
    /// Run payment workers only, sharing the queue through Redis (REDIS_URL).
    Worker,
    /// Exit 0 when the instance on PORT answers /health with 200.
    Healthcheck,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        command @ (Command::Serve | Command::Worker) => {
            telemetry::init(config.log_format);
            let result = match command {
                Command::Worker => work(config).await,
                _ => serve(config).await,
            };
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    tracing::error!(error = format!("{err:#}"), "shop stopped");
                    eprintln!("shop: {err:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Healthcheck => match healthcheck(config.port).await {
            Ok(true) => ExitCode::SUCCESS,
            _ => ExitCode::FAILURE,
        },
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    app.run_until_stopped(shutdown_signal()).await?;
    tracing::info!("shop stopped");
    Ok(())
}

async fn work(config: Config) -> anyhow::Result<()> {
    if config.redis_url.is_none() {
        anyhow::bail!(
            "`shop worker` shares the payment queue through Redis: set REDIS_URL \
             (on the embedded default, `shop serve` runs the workers itself)"
        );
    }
    // A worker serves nothing: its events reach listeners through the log, which every
    // `shop serve` reads. Its relay only wakes the webhook dispatcher.
    let (state, _realtime) = build_state(config).await?;
    let stop = CancellationToken::new();
    let start = relay::Reader::new(state.db.clone()).end().await?;
    let wake = Arc::new(Notify::new());
    let relay = tokio::spawn(relay::run(
        state.db.clone(),
        start,
        state.notifier.log(),
        vec![Arc::new(dispatch::Wake(wake.clone()))],
        stop.clone(),
    ));
    let workers = spawn_workers(worker::Environment::from(&state), &stop);
    let webhooks = spawn_webhooks(&state, wake, &stop)?;
    tracing::info!("shop worker running");
    shutdown_signal().await;
    stop.cancel();
    tokio::join!(workers, webhooks);
    let _ = relay.await;
    tracing::info!("shop worker stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: no new connections, draining in-flight requests");
}

/// A plain HTTP/1.0 GET of /health on the loopback interface.
async fn healthcheck(port: u16) -> std::io::Result<bool> {
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream
            .write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        Ok::<bool, std::io::Error>(head.ends_with(b" 200"))
    };
    tokio::time::timeout(Duration::from_secs(3), probe)
        .await
        .unwrap_or(Ok(false))
}
