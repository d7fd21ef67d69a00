//! Idle connections for memory measurements: opens many WebSockets, optionally joins them to
//! rooms, and reports how much the server's memory grew per connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Socket, Target, ACK_DELAY, ACK_EVERY};
use crate::process::{self, Measured, Memory};
use crate::stats::wait_until_quiet;

/// Settings of one memory run.
#[derive(Debug, clap::Args)]
pub struct HoldArgs {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    server: SocketAddr,
    /// Path of the WebSocket endpoint.
    #[arg(long, default_value = "/v1/ws")]
    path: String,
    /// WebSocket connections to open.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Number of loopback source addresses (127.0.1.1 and up) the clients connect from.
    #[arg(long, default_value_t = 1)]
    sources: u8,
    /// Send `join` on every connection, in rooms of `--room-size` participants. Without it the
    /// connections stay upgraded but not joined.
    #[arg(long)]
    join: bool,
    /// Participants per room with `--join`.
    #[arg(long, default_value_t = 100)]
    room_size: usize,
    /// Connections opening at the same time.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Server process to measure, as NAME=PID; repeat for several processes.
    #[arg(long = "pid")]
    pids: Vec<Measured>,
}

/// Opens the connections, measures the servers' memory before and after, prints the growth
/// per connection and exits, which closes the connections.
pub async fn run(args: HoldArgs) -> anyhow::Result<()> {
    if args.connections == 0 || args.room_size == 0 {
        bail!("--connections and --room-size must be at least 1");
    }
    let target = Target {
        server: args.server,
        path: args.path.clone(),
        sources: client::loopback_sources(args.sources),
    };
    let before = memories(&args.pids)?;

    let start = Instant::now();
    let frames = Arc::new(AtomicU64::new(0));
    let permits = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    for index in 0..args.connections {
        let target = target.clone();
        let room = args.join.then(|| format!("m{}", index / args.room_size));
        let frames = frames.clone();
        let permits = permits.clone();
        let ready = ready_tx.clone();
        tokio::spawn(async move {
            let permit = permits.acquire_owned().await;
            let opened = open(&target, index, room.as_deref()).await;
            drop(permit);
            match opened {
                Ok((socket, last_seq)) => {
                    let _ = ready.send(Ok(()));
                    idle(socket, last_seq, &frames).await;
                }
                Err(error) => {
                    let _ = ready.send(Err(error));
                }
            }
        });
    }
    drop(ready_tx);
    let mut failed = 0;
    for _ in 0..args.connections {
        match ready_rx.recv().await {
            Some(Ok(())) => {}
            Some(Err(error)) => {
                failed += 1;
                if failed <= 5 {
                    eprintln!("connection failed: {error:#}");
                }
            }
            None => break,
        }
    }
    let open_seconds = start.elapsed().as_secs_f64();
    let connected = args.connections - failed;
    eprintln!("{connected} connections open in {open_seconds:.1} s, waiting for quiet");
    wait_until_quiet(&frames, Duration::from_secs(2), Duration::from_secs(300)).await;
    let after = memories(&args.pids)?;

    let mut line = format!(
        "memory connections={connected} failed={failed} joined={} open_seconds={open_seconds:.1}",
        args.join
    );
    for ((measured, before), after) in args.pids.iter().zip(&before).zip(&after) {
        let name = &measured.name;
        let per = |before_kib: u64, after_kib: u64| {
            (after_kib.saturating_sub(before_kib) * 1024) as f64 / connected.max(1) as f64
        };
        line += &format!(
            " rss_before_kib_{name}={} rss_after_kib_{name}={} rss_bytes_per_connection_{name}={:.0} \
             pss_bytes_per_connection_{name}={:.0}",
            before.rss_kib,
            after.rss_kib,
            per(before.rss_kib, after.rss_kib),
            per(before.pss_kib, after.pss_kib),
        );
    }
    println!("{line}");
    if failed > 0 {
        bail!("{failed} of {} connections failed", args.connections);
    }
    Ok(())
}

fn memories(pids: &[Measured]) -> anyhow::Result<Vec<Memory>> {
    pids.iter()
        .map(|measured| process::memory(measured.pid))
        .collect()
}

async fn open(target: &Target, index: usize, room: Option<&str>) -> anyhow::Result<(Socket, u64)> {
    let mut socket = client::connect(target, target.source(index)).await?;
    let last_seq = match room {
        Some(room) => client::join(&mut socket, room, &format!("m{index}")).await?,
        None => 0,
    };
    Ok((socket, last_seq))
}

/// Reads frames, so that pings get their pongs, and acknowledges them as the web client does.
async fn idle(mut socket: Socket, mut last_seq: u64, frames: &AtomicU64) {
    let mut unacked = u64::from(last_seq > 0);
    let mut ack_deadline = tokio::time::Instant::now() + ACK_DELAY;
    loop {
        let sent = tokio::select! {
            frame = socket.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    frames.fetch_add(1, Ordering::Relaxed);
                    if let Some(seq) = client::seq(text.as_str()) {
                        last_seq = seq;
                        if unacked == 0 {
                            ack_deadline = tokio::time::Instant::now() + ACK_DELAY;
                        }
                        unacked += 1;
                    }
                    if unacked >= ACK_EVERY {
                        unacked = 0;
                        socket.send(client::ack(last_seq)).await
                    } else {
                        Ok(())
                    }
                }
                Some(Ok(_)) => Ok(()),
                Some(Err(_)) | None => return,
            },
            () = tokio::time::sleep_until(ack_deadline), if unacked > 0 => {
                unacked = 0;
                socket.send(client::ack(last_seq)).await
            }
        };
        if sent.is_err() {
            return;
        }
    }
}
