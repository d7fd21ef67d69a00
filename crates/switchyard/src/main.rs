//! `switchyard` binary: parses the command line, sets up logging and runs the server, or the
//! TURN relay alone, until SIGINT or SIGTERM.

use anyhow::Context;
use clap::Parser;
use switchyard::cli::{Cli, Command, ServeArgs, TokenArgs, TurnArgs};
use switchyard::{run, telemetry, turn_config, turn_metrics, CancellationToken, ServerConfig};
use tracing::{error, info, warn};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = cli.runtime.worker_threads {
        runtime.worker_threads(usize::from(threads));
    }
    let runtime = runtime
        .build()
        .context("could not start the async runtime")?;
    runtime.block_on(run_command(cli))
}

/// Sets up logging and runs the chosen subcommand on the runtime.
async fn run_command(cli: Cli) -> anyhow::Result<()> {
    let telemetry = telemetry::init(&cli.telemetry)?;

    let result = match cli.into_command() {
        Command::Serve(args) => serve(args).await,
        Command::Turn(args) => turn(args).await,
        Command::Token(args) => token(args),
    };
    // The exporter's last requests run on this runtime while this thread waits for them.
    tokio::task::block_in_place(|| telemetry.shutdown());
    result
}

/// Prints a join token signed with the given API key's secret.
fn token(args: TokenArgs) -> anyhow::Result<()> {
    if args.api_key.is_empty() || args.api_secret.is_empty() {
        anyhow::bail!("--api-key and --api-secret must not be empty");
    }
    if args.ttl == 0 {
        anyhow::bail!("--ttl must be at least 1 second");
    }
    switchyard_signal::RoomName::parse(args.room.clone()).context("invalid --room")?;
    switchyard_signal::validate_identity(&args.identity).context("invalid --identity")?;
    let grants = switchyard::token::Grants::parse_list(&args.grants)
        .map_err(|name| anyhow::anyhow!("unknown grant {name:?} in --grants; expected publish, subscribe, publish_data or room_admin"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs();
    let claims = switchyard::token::Claims {
        room: args.room,
        sub: args.identity,
        name: args.name,
        grants,
        exp: now.saturating_add(args.ttl),
        nbf: None,
    };
    println!(
        "{}",
        switchyard::token::sign(&claims, &args.api_key, &args.api_secret)
    );
    Ok(())
}

/// Runs signaling, the SFU and the bundled relay until a signal arrives.
async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = ServerConfig::from_args(args)?;
    // API keys show only their names. The bundled relay logs its own settings, without
    // secrets, when it starts.
    info!(
        http = %config.http,
        media = %config.media,
        public_ip = ?config.public_ip,
        ice_servers = ?config.ice_servers,
        max_message_size = config.max_message_size,
        outbound_queue = config.outbound_queue,
        close_timeout = ?config.close_timeout,
        ice_disconnected_timeout = ?config.ice_disconnected_timeout,
        ice_failed_timeout = ?config.ice_failed_timeout,
        media_workers = config.media_workers,
        room_spread_after = config.room_spread_after,
        srtp_aead_only = config.srtp_aead_only,
        worker_threads = tokio::runtime::Handle::current().metrics().num_workers(),
        reconnect_grace = ?config.reconnect_grace,
        drain_delay = ?config.drain_delay,
        outbox_messages = config.outbox_messages,
        outbox_age = ?config.outbox_age,
        ping_interval = ?config.ping_interval,
        ping_timeout = ?config.ping_timeout,
        duplicate_identity = ?config.duplicate_identity,
        api_keys = ?config.api_keys,
        max_messages_per_second = config.max_messages_per_second,
        max_participants_per_room = config.max_participants_per_room,
        max_rooms = config.max_rooms,
        max_file_size = config.max_file_size,
        allowed_origins = ?config.allowed_origins,
        turn = config.turn.is_some(),
        turn_urls = ?config.turn_urls,
        "starting switchyard {}",
        env!("CARGO_PKG_VERSION")
    );

    if config.development_mode() {
        warn!(
            http = %config.http,
            "development mode: no API keys are configured, so joins without a token get every \
             grant; configure --api-key before exposing the server"
        );
    }

    // Installed before the sockets are bound, so a signal sent as soon as the server logs
    // "listening" is never handled by the default action.
    let mut signals = Signals::install().context("could not install signal handlers")?;
    let shutdown = CancellationToken::new();
    let drain_delay = config.drain_delay;
    let server = run(config, shutdown.clone()).await?;
    let readiness = server.readiness().clone();

    tokio::spawn(async move {
        let name = signals.recv().await;
        readiness.start_draining();
        if !drain_delay.is_zero() {
            info!(
                signal = name,
                ?drain_delay,
                "signal received; draining before shutdown"
            );
            tokio::select! {
                () = tokio::time::sleep(drain_delay) => {}
                name = signals.recv() => {
                    warn!(signal = name, "second signal; exiting without waiting for sessions");
                    std::process::exit(1);
                }
            }
        }
        info!(signal = name, "signal received; shutting down");
        shutdown.cancel();
        let name = signals.recv().await;
        warn!(
            signal = name,
            "second signal; exiting without waiting for sessions"
        );
        std::process::exit(1);
    });

    server.wait().await.inspect_err(|err| {
        error!(error = err as &dyn std::error::Error, "server failed");
    })?;
    Ok(())
}

/// Runs the TURN relay alone until a signal arrives. A second signal exits at once.
async fn turn(args: TurnArgs) -> anyhow::Result<()> {
    let config = turn_config::load(&args.config)?;
    turn_config::log_effective(
        &config,
        &format!(
            "starting switchyard {} TURN relay",
            env!("CARGO_PKG_VERSION")
        ),
    );

    let metrics_listen = config.metrics_listen;
    let mut signals = Signals::install().context("could not install signal handlers")?;
    let server = switchyard_turn::start(config)
        .await
        .context("could not start the TURN relay")?;
    info!(
        udp = ?server.udp_addrs(),
        tcp = ?server.tcp_addrs(),
        tls = ?server.tls_addrs(),
        worker_threads = tokio::runtime::Handle::current().metrics().num_workers(),
        "TURN relay listening"
    );

    let metrics_shutdown = CancellationToken::new();
    let metrics = match metrics_listen {
        Some(addr) => Some(
            turn_metrics::start(addr, server.counters(), metrics_shutdown.clone())
                .await
                .with_context(|| format!("could not bind the TURN metrics endpoint on {addr}"))?,
        ),
        None => None,
    };

    let name = signals.recv().await;
    info!(signal = name, "signal received; shutting down");
    metrics_shutdown.cancel();
    let stopped = async {
        if let Some(metrics) = metrics {
            let _ = metrics.task.await;
        }
        server.shutdown().await;
    };
    tokio::select! {
        () = stopped => info!("TURN relay stopped"),
        name = signals.recv() => {
            warn!(signal = name, "second signal; exiting without a clean shutdown");
            std::process::exit(1);
        }
    }
    Ok(())
}

/// SIGINT and SIGTERM, or Ctrl-C where Unix signals do not exist.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    #[cfg(not(unix))]
    fn install() -> std::io::Result<Self> {
        Ok(Signals {})
    }

    /// Waits for the next signal and returns its name.
    #[cfg(unix)]
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }

    #[cfg(not(unix))]
    async fn recv(&mut self) -> &'static str {
        // NOTE: only Ctrl-C stops the server on platforms without Unix signals.
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
