//! Chat fan-out: N clients join one room, one of them sends chat messages, and every client
//! records how long each message took to reach it.
//!
//! The sender puts its send time, in nanoseconds since the load generator started, into the
//! chat text. All clients run in this process, so receivers subtract it from their own clock
//! and no clock synchronisation is needed. Without `--rate` the sender keeps at most
//! `--window` messages in flight: it sends message k once messages up to k - window have
//! reached every client. That finds the server's throughput without letting queues grow
//! until the server disconnects slow clients.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Socket, Target, ACK_DELAY, ACK_EVERY};
use crate::process::{self, Measured};
use crate::stats::{percentile, wait_until_quiet};

/// Settings of one fan-out run.
#[derive(Debug, clap::Args)]
pub struct FanoutArgs {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    server: SocketAddr,
    /// Path of the WebSocket endpoint.
    #[arg(long, default_value = "/v1/ws")]
    path: String,
    /// Clients in the room, the sender included.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Number of loopback source addresses (127.0.1.1 and up) the clients connect from.
    #[arg(long, default_value_t = 1)]
    sources: u8,
    /// Chat messages the sender sends.
    #[arg(long, default_value_t = 100)]
    messages: u64,
    /// Messages per second. 0 sends as fast as the clients receive them, with at most
    /// `--window` messages in flight.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Messages in flight when `--rate` is 0.
    #[arg(long, default_value_t = 4)]
    window: u64,
    /// Length of each chat text in bytes.
    #[arg(long, default_value_t = 100)]
    text_bytes: usize,
    /// Clients connecting and joining at the same time.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Room name.
    #[arg(long, default_value = "bench")]
    room: String,
    /// Server process to measure, as NAME=PID; repeat for several processes.
    #[arg(long = "pid")]
    pids: Vec<Measured>,
    /// Seconds to wait for the last deliveries after the last message was sent.
    #[arg(long, default_value_t = 30)]
    drain_timeout: u64,
}

/// Counters shared by the clients and the sender.
#[derive(Debug)]
struct Shared {
    /// Origin of the send timestamps in chat texts.
    origin: Instant,
    /// Benchmark chat messages received, summed over all clients.
    delivered: AtomicU64,
    /// `delivered` value at which the sender wants to be woken.
    wake_at: AtomicU64,
    progress: Notify,
    /// Frames of any kind received, for telling when the room has settled after the joins.
    frames: AtomicU64,
    errors: AtomicU64,
}

/// Prefix of the benchmark chat texts.
const MARKER: &str = "bench ";

pub async fn run(args: FanoutArgs) -> anyhow::Result<()> {
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    let target = Target {
        server: args.server,
        path: args.path.clone(),
        sources: client::loopback_sources(args.sources),
    };
    let shared = Arc::new(Shared {
        origin: Instant::now(),
        delivered: AtomicU64::new(0),
        wake_at: AtomicU64::new(u64::MAX),
        progress: Notify::new(),
        frames: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let (stop_tx, stop_rx) = watch::channel(false);

    // Join every client; each keeps reading and acknowledging while the others join.
    let join_start = Instant::now();
    let (outgoing_tx, outgoing_rx) = mpsc::channel(1024);
    let mut outgoing_rx = Some(outgoing_rx);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let permits = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let mut clients = JoinSet::new();
    for index in 0..args.clients {
        let client = Client {
            index,
            target: target.clone(),
            room: args.room.clone(),
            shared: shared.clone(),
            outgoing: if index == 0 { outgoing_rx.take() } else { None },
            stop: stop_rx.clone(),
        };
        clients.spawn(client.run(permits.clone(), ready_tx.clone()));
    }
    drop(ready_tx);
    for _ in 0..args.clients {
        match ready_rx.recv().await {
            Some(Ok(())) => {}
            Some(Err(error)) => return Err(error.context("a client could not join")),
            None => bail!("clients stopped before joining"),
        }
    }
    let join_seconds = join_start.elapsed().as_secs_f64();
    eprintln!(
        "{} clients joined in {join_seconds:.1} s, waiting for the room to settle",
        args.clients
    );
    wait_until_quiet(
        &shared.frames,
        Duration::from_secs(1),
        Duration::from_secs(300),
    )
    .await;

    // Send the chat messages and wait for their deliveries.
    let cpu_before = cpu_times(&args.pids)?;
    let start = Instant::now();
    let expected = args.messages * args.clients as u64;
    send_all(&args, &shared, &outgoing_tx).await?;
    let sent_seconds = start.elapsed().as_secs_f64();
    wait_for_deliveries(&shared, expected, Duration::from_secs(args.drain_timeout)).await;
    let seconds = start.elapsed().as_secs_f64();
    let cpu_after = cpu_times(&args.pids)?;

    let _ = stop_tx.send(true);
    let mut latencies = Vec::new();
    while let Some(result) = clients.join_next().await {
        latencies.extend(result.context("client task failed")?);
    }
    latencies.sort_unstable();

    let delivered = shared.delivered.load(Ordering::Relaxed);
    let mut line = format!(
        "fanout clients={} messages={} delivered={delivered} missing={} join_seconds={join_seconds:.2} \
         send_seconds={sent_seconds:.3} seconds={seconds:.3} deliveries_per_second={:.0} \
         p50_ms={:.2} p99_ms={:.2} max_ms={:.2} errors={}",
        args.clients,
        args.messages,
        expected.saturating_sub(delivered),
        delivered as f64 / seconds,
        percentile(&latencies, 0.50) as f64 / 1000.0,
        percentile(&latencies, 0.99) as f64 / 1000.0,
        latencies.last().copied().unwrap_or(0) as f64 / 1000.0,
        shared.errors.load(Ordering::Relaxed),
    );
    let mut cpu_total = 0.0;
    for ((measured, before), after) in args.pids.iter().zip(&cpu_before).zip(&cpu_after) {
        let cpu = after - before;
        cpu_total += cpu;
        line += &format!(" cpu_{}={cpu:.2}", measured.name);
    }
    if !args.pids.is_empty() {
        line += &format!(" cpu_total={cpu_total:.2}");
        if cpu_total > 0.0 {
            line += &format!(
                " deliveries_per_cpu_second={:.0}",
                delivered as f64 / cpu_total
            );
        }
    }
    println!("{line}");
    Ok(())
}

fn cpu_times(pids: &[Measured]) -> anyhow::Result<Vec<f64>> {
    pids.iter()
        .map(|measured| process::cpu_seconds(measured.pid))
        .collect()
}

/// Sends `--messages` chat messages from the first client, paced by `--rate` or `--window`.
async fn send_all(
    args: &FanoutArgs,
    shared: &Shared,
    outgoing: &mpsc::Sender<Message>,
) -> anyhow::Result<()> {
    let clients = args.clients as u64;
    let interval = (args.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / args.rate));
    let start = tokio::time::Instant::now();
    for index in 0..args.messages {
        match interval {
            Some(interval) => {
                tokio::time::sleep_until(start + interval.mul_f64(index as f64)).await;
            }
            None => {
                let needed = (index + 1).saturating_sub(args.window.max(1)) * clients;
                wait_for_deliveries(shared, needed, Duration::from_secs(args.drain_timeout)).await;
            }
        }
        let sent_at = shared.origin.elapsed().as_nanos();
        let mut text = format!("{MARKER}{index} {sent_at} ");
        let padding = args.text_bytes.saturating_sub(text.len());
        text.extend(std::iter::repeat_n('x', padding));
        let chat = format!(r#"{{"type":"chat","id":"c{index}","text":"{text}"}}"#);
        outgoing
            .send(Message::text(chat))
            .await
            .context("the sending client stopped")?;
    }
    Ok(())
}

/// Waits until `target` benchmark messages have been delivered, or for at most `timeout`
/// without progress.
async fn wait_for_deliveries(shared: &Shared, target: u64, timeout: Duration) {
    loop {
        let notified = shared.progress.notified();
        shared.wake_at.store(target, Ordering::Relaxed);
        let before = shared.delivered.load(Ordering::Relaxed);
        if before >= target {
            shared.wake_at.store(u64::MAX, Ordering::Relaxed);
            return;
        }
        if tokio::time::timeout(timeout, notified).await.is_err()
            && shared.delivered.load(Ordering::Relaxed) == before
        {
            eprintln!("no progress for {timeout:?}: {before} of {target} deliveries");
            return;
        }
    }
}

/// One client of the room.
struct Client {
    index: usize,
    target: Target,
    room: String,
    shared: Arc<Shared>,
    /// Messages to send, for the sending client.
    outgoing: Option<mpsc::Receiver<Message>>,
    stop: watch::Receiver<bool>,
}

impl Client {
    /// Connects, joins, reports on `ready`, then reads until `stop` changes. Returns the
    /// latencies of the benchmark messages in microseconds.
    async fn run(
        mut self,
        permits: Arc<Semaphore>,
        ready: mpsc::UnboundedSender<anyhow::Result<()>>,
    ) -> Vec<u32> {
        let permit = permits.acquire_owned().await;
        let joined = async {
            let mut socket = client::connect(&self.target, self.target.source(self.index)).await?;
            let name = format!("c{}", self.index);
            let last_seq = client::join(&mut socket, &self.room, &name).await?;
            anyhow::Ok((socket, last_seq))
        }
        .await;
        drop(permit);
        match joined {
            Ok((socket, last_seq)) => {
                let _ = ready.send(Ok(()));
                self.read(socket, last_seq).await
            }
            Err(error) => {
                let _ = ready.send(Err(error.context(format!("client {}", self.index))));
                Vec::new()
            }
        }
    }

    async fn read(&mut self, mut socket: Socket, mut last_seq: u64) -> Vec<u32> {
        let mut latencies = Vec::new();
        let mut unacked = u64::from(last_seq > 0);
        let mut ack_deadline = tokio::time::Instant::now() + ACK_DELAY;
        loop {
            let outgoing = async {
                match &mut self.outgoing {
                    Some(receiver) => receiver.recv().await,
                    None => std::future::pending().await,
                }
            };
            let sent = tokio::select! {
                biased;
                _ = self.stop.changed() => break,
                frame = socket.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        let text = text.as_str();
                        self.shared.frames.fetch_add(1, Ordering::Relaxed);
                        if let Some(seq) = client::seq(text) {
                            last_seq = seq;
                            if unacked == 0 {
                                ack_deadline = tokio::time::Instant::now() + ACK_DELAY;
                            }
                            unacked += 1;
                        }
                        self.on_text(text, &mut latencies);
                        if unacked >= ACK_EVERY {
                            unacked = 0;
                            socket.send(client::ack(last_seq)).await
                        } else {
                            Ok(())
                        }
                    }
                    Some(Ok(_)) => Ok(()),
                    Some(Err(error)) => {
                        eprintln!("client {}: {error}", self.index);
                        break;
                    }
                    None => {
                        eprintln!("client {}: server closed the connection", self.index);
                        break;
                    }
                },
                Some(message) = outgoing => socket.send(message).await,
                () = tokio::time::sleep_until(ack_deadline), if unacked > 0 => {
                    unacked = 0;
                    socket.send(client::ack(last_seq)).await
                }
            };
            if let Err(error) = sent {
                eprintln!("client {}: sending failed: {error}", self.index);
                break;
            }
        }
        latencies
    }

    fn on_text(&self, text: &str, latencies: &mut Vec<u32>) {
        match client::message_type(text) {
            Some("chat") => {
                let Some(start) = text.find(MARKER) else {
                    return;
                };
                let mut fields = text[start + MARKER.len()..].split(' ');
                let _index = fields.next();
                let Some(sent_at) = fields.next().and_then(client::leading_number) else {
                    return;
                };
                let now = self.shared.origin.elapsed().as_nanos() as u64;
                let micros = now.saturating_sub(sent_at) / 1000;
                latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
                let delivered = self.shared.delivered.fetch_add(1, Ordering::Relaxed) + 1;
                if delivered >= self.shared.wake_at.load(Ordering::Relaxed) {
                    self.shared.progress.notify_one();
                }
            }
            Some("error") => {
                let errors = self.shared.errors.fetch_add(1, Ordering::Relaxed);
                if errors < 5 {
                    eprintln!("client {}: {text}", self.index);
                }
            }
            _ => {}
        }
    }
}
