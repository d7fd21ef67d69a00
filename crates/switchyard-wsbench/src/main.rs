//! `switchyard-wsbench`: the load generator of `bench/signaling-fanout.sh` and
//! `bench/ws-memory.sh`. It speaks the subset of the signaling protocol that both Switchyard
//! and the Node.js reference server in `bench/reference` implement: `join`, `chat` and `ack`.

mod client;
mod fanout;
mod hold;
mod process;
mod stats;

use clap::{Parser, Subcommand};

/// Load generator for the signaling benchmarks. Each run prints one line of `key=value`
/// results on standard output.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Join clients to one room and fan chat messages out to them; reports deliveries per
    /// second, delivery latency and the servers' CPU time.
    Fanout(fanout::FanoutArgs),
    /// Open idle WebSocket connections and report the servers' memory per connection.
    Hold(hold::HoldArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        match cli.command {
            Command::Fanout(args) => fanout::run(args).await,
            Command::Hold(args) => hold::run(args).await,
        }
    });
    // Closing many connections one by one takes longer than letting the kernel do it at exit.
    std::process::exit(match result {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("switchyard-wsbench: {error:#}");
            1
        }
    })
}
