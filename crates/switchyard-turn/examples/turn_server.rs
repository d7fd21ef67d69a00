//! Runs a TURN server from a TOML file until Ctrl-C, for interop checks with other TURN clients.
//!
//! `cargo run --release -p switchyard-turn --example turn_server -- turn.toml`
//!
//! The `switchyard turn --config FILE` subcommand is the supported way to run a relay node; this
//! example has no metrics endpoint and no config logging.

use std::error::Error;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: turn_server CONFIG.toml")?;
    let config: switchyard_turn::TurnConfig = toml::from_str(&std::fs::read_to_string(&path)?)?;
    let server = switchyard_turn::start(config).await?;
    println!(
        "udp {:?} tcp {:?} tls {:?}",
        server.udp_addrs(),
        server.tcp_addrs(),
        server.tls_addrs()
    );
    tokio::signal::ctrl_c().await?;
    let counters = server.counters();
    server.shutdown().await;
    println!("{:#?}", counters.snapshot());
    Ok(())
}
