//! `switchyard-loadgen`: runs one scenario against Switchyard or Janus and prints the results,
//! as text or as one JSON line with `--json`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::bail;
use clap::{Parser, ValueEnum};
use switchyard_loadgen::peer::VideoProfile;
use switchyard_loadgen::probe;
use switchyard_loadgen::scenario::{self, Config, Server, Shape};
use tracing_subscriber::EnvFilter;

/// Smallest and largest video payload, in bytes. The upper bound keeps a packet with its RTP,
/// SRTP, UDP and IP headers inside a 1,500-byte MTU.
const VIDEO_PACKET_BYTES: std::ops::RangeInclusive<usize> = probe::HEADER_LEN..=1200;

/// Synthetic WebRTC publishers and subscribers that measure an SFU's forwarding cost, loss and
/// latency.
#[derive(Debug, Parser)]
#[command(name = "switchyard-loadgen", version)]
struct Cli {
    /// Server under test
    #[arg(long, value_enum, default_value_t = ServerKind::Switchyard)]
    server: ServerKind,

    /// Switchyard: HTTP address of the signaling endpoint, such as 127.0.0.1:8080. Janus: URL
    /// of its WebSocket API, such as ws://10.200.0.1:8188/
    #[arg(long)]
    target: String,

    /// Room to join: a name on Switchyard, a numeric VideoRoom id on Janus (which must exist)
    #[arg(long, default_value = "loadgen")]
    room: String,

    /// Scenario: one publisher to --subscribers, or a meeting of --participants who all publish
    /// and subscribe to each other
    #[arg(long, value_enum, default_value_t = ScenarioKind::Fanout)]
    scenario: ScenarioKind,

    /// Subscribers of the fan-out scenario
    #[arg(long, default_value_t = 10)]
    subscribers: u32,

    /// Participants of the meeting scenario
    #[arg(long, default_value_t = 4)]
    participants: u32,

    /// PID of the server process whose CPU time (utime + stime) is measured
    #[arg(long)]
    server_pid: Option<u32>,

    /// Local address the clients' peer connections bind to; it must reach the server's media
    /// address
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    client_ip: IpAddr,

    /// Video bitrate of each publisher, in kbit/s
    #[arg(long, default_value_t = 1000)]
    video_kbps: u32,

    /// Video frames per second of each publisher
    #[arg(long, default_value_t = 30)]
    video_fps: u32,

    /// Payload bytes of each video packet
    #[arg(long, default_value_t = 1100)]
    video_packet_bytes: usize,

    /// Seconds between the moment every subscriber receives and the start of the window
    #[arg(long, default_value_t = 3)]
    warmup: u64,

    /// Length of the measurement window, in seconds
    #[arg(long, default_value_t = 20)]
    duration: u64,

    /// Seconds allowed for each signaling reply and connection, and for every subscriber to
    /// start receiving
    #[arg(long, default_value_t = 60)]
    connect_timeout: u64,

    /// Participants that connect at the same time
    #[arg(long, default_value_t = 8)]
    join_concurrency: usize,

    /// Print one JSON line with the results after the text
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ServerKind {
    Switchyard,
    Janus,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ScenarioKind {
    Fanout,
    Meeting,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let config = config(&cli)?;
    // Fixes the probes' time reference before any sender starts.
    probe::epoch();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(scenario::run(&config))?;
    println!("{}", report.text());
    if cli.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    // Dropping the runtime would wait for webrtc-rs tasks that may still be closing.
    runtime.shutdown_timeout(Duration::from_secs(2));
    Ok(())
}

fn config(cli: &Cli) -> anyhow::Result<Config> {
    let server = match cli.server {
        ServerKind::Switchyard => {
            let Ok(http) = cli.target.parse::<SocketAddr>() else {
                bail!(
                    "invalid --target {:?}: Switchyard needs the HTTP address as IP:PORT, such \
                     as 127.0.0.1:8080",
                    cli.target
                );
            };
            Server::Switchyard {
                http,
                room: cli.room.clone(),
            }
        }
        ServerKind::Janus => {
            let Ok(room) = cli.room.parse::<u64>() else {
                bail!(
                    "invalid --room {:?}: Janus VideoRoom ids are numbers",
                    cli.room
                );
            };
            Server::Janus {
                url: cli.target.clone(),
                room,
            }
        }
    };
    let shape = match cli.scenario {
        ScenarioKind::Fanout if cli.subscribers == 0 => bail!("--subscribers must be at least 1"),
        ScenarioKind::Fanout => Shape::FanOut {
            subscribers: cli.subscribers,
        },
        ScenarioKind::Meeting if cli.participants < 2 => {
            bail!("--participants must be at least 2")
        }
        ScenarioKind::Meeting => Shape::Meeting {
            participants: cli.participants,
        },
    };
    if !VIDEO_PACKET_BYTES.contains(&cli.video_packet_bytes) {
        bail!(
            "invalid --video-packet-bytes {}: use {} to {}",
            cli.video_packet_bytes,
            VIDEO_PACKET_BYTES.start(),
            VIDEO_PACKET_BYTES.end()
        );
    }
    if cli.video_kbps == 0 || !(1..=120).contains(&cli.video_fps) {
        bail!("--video-kbps must be at least 1 and --video-fps from 1 to 120");
    }
    if cli.duration == 0 {
        bail!("--duration must be at least 1 second");
    }
    Ok(Config {
        server,
        shape,
        server_pid: cli.server_pid,
        client_ip: cli.client_ip,
        video: VideoProfile {
            kbps: cli.video_kbps,
            frames_per_second: cli.video_fps,
            packet_len: cli.video_packet_bytes,
        },
        warmup: Duration::from_secs(cli.warmup),
        duration: Duration::from_secs(cli.duration),
        connect_timeout: Duration::from_secs(cli.connect_timeout),
        join_concurrency: cli.join_concurrency,
    })
}
