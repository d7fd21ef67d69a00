//! A scenario run: connect the participants, wait until every subscriber receives every track
//! it should, then measure over a fixed window and add up the results.
//!
//! The window is defined by sequence numbers, not by arrival times: at its start and end the
//! run reads each publisher track's next sequence number and the server's CPU time, and
//! afterwards counts, for each subscriber, which probes of the window arrived. Probes still in
//! flight at the end get [`DRAIN`] to arrive before the senders stop.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::cpu::process_cpu_time;
use crate::janus;
use crate::peer::{SendCounters, VideoProfile};
use crate::probe::Kind;
use crate::report::Report;
use crate::sfu_delay;
use crate::stats::{Delivery, Recorder, TrackWindow};
use crate::switchyard::{Participant, Role};

/// Time after the window's end for the probes still in flight to arrive.
const DRAIN: Duration = Duration::from_secs(1);
/// Upper bound on closing every connection at the end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(20);
/// Interval at which readiness is checked.
const READY_POLL: Duration = Duration::from_millis(100);

/// Which SFU the participants join, and where.
#[derive(Clone, Debug)]
pub enum Server {
    /// Switchyard's signaling at this HTTP address, in the room with this name.
    Switchyard { http: SocketAddr, room: String },
    /// Janus's WebSocket API at this URL, in the VideoRoom with this id.
    Janus { url: String, room: u64 },
}

impl Server {
    pub fn name(&self) -> &'static str {
        match self {
            Server::Switchyard { .. } => "switchyard",
            Server::Janus { .. } => "janus",
        }
    }
}

/// Who sends to whom.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    /// One publisher and this many participants that only subscribe.
    FanOut { subscribers: u32 },
    /// This many participants, each publishing and subscribing to all the others.
    Meeting { participants: u32 },
}

impl Shape {
    fn publishers(self) -> u32 {
        match self {
            Shape::FanOut { .. } => 1,
            Shape::Meeting { participants } => participants,
        }
    }

    pub fn label(self) -> String {
        match self {
            Shape::FanOut { subscribers } => format!("1-to-{subscribers}"),
            Shape::Meeting { participants } => format!("{participants}-by-{participants}"),
        }
    }
}

/// Settings of one run.
#[derive(Clone, Debug)]
pub struct Config {
    pub server: Server,
    pub shape: Shape,
    /// Process whose CPU time is measured, or `None` to measure none.
    pub server_pid: Option<u32>,
    /// Address the clients' peer connections bind to.
    pub client_ip: IpAddr,
    pub video: VideoProfile,
    pub warmup: Duration,
    pub duration: Duration,
    /// Bound on each signaling reply and each connection setup, and on the wait until every
    /// subscriber receives.
    pub connect_timeout: Duration,
    /// Participants that connect at the same time.
    pub join_concurrency: usize,
}

/// One receiving participant: its recorder and the tracks it should receive.
struct Receiver {
    recorder: Arc<Recorder>,
    publisher: Option<u32>,
}

/// A connected participant, kept open until the end of the run.
enum Endpoint {
    Switchyard(Participant),
    JanusPublisher(janus::Publisher),
    JanusSubscriber(janus::Subscriber),
}

/// Runs the scenario and returns its results.
pub async fn run(config: &Config) -> anyhow::Result<Report> {
    let receivers = receivers(config.shape);
    let setup_start = Instant::now();
    let (endpoints, publishers) = connect(config, &receivers).await?;
    let connect_time = setup_start.elapsed();

    let expected: Vec<Vec<(u32, Kind)>> = receivers
        .iter()
        .map(|receiver| expected_tracks(config.shape, receiver.publisher))
        .collect();
    let ready = wait_ready(&receivers, &expected, config.connect_timeout).await;
    if ready < receivers.len() {
        eprintln!(
            "warning: only {ready} of {} subscribers receive every track after {:?}; the others \
             count as loss",
            receivers.len(),
            config.connect_timeout
        );
    }
    tokio::time::sleep(config.warmup).await;

    let delay_start = scrape_delay(&config.server).await;
    let start = Snapshot::take(config.server_pid, &publishers)?;
    tokio::time::sleep(config.duration).await;
    let end = Snapshot::take(config.server_pid, &publishers)?;
    let delay_end = scrape_delay(&config.server).await;
    let sfu_delay = match (delay_start, delay_end) {
        (Some(start), Some(end)) => Some(sfu_delay::window(&start, &end)),
        _ => None,
    };
    tokio::time::sleep(DRAIN).await;

    let mut delivery = Delivery::default();
    for (receiver, tracks) in receivers.iter().zip(&expected) {
        let windows: Vec<TrackWindow> = tracks
            .iter()
            .map(|&(publisher, kind)| TrackWindow {
                publisher,
                kind,
                first: start.sequence(publisher, kind),
                end: end.sequence(publisher, kind),
            })
            .collect();
        delivery.add(&receiver.recorder, &windows);
    }
    let failed_writes = publishers
        .iter()
        .map(|(_, counters)| {
            counters
                .failed_writes
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum();
    close_all(endpoints).await;

    Ok(Report::new(
        config,
        receivers.len(),
        ready,
        connect_time,
        &start,
        &end,
        delivery,
        failed_writes,
        sfu_delay,
    ))
}

/// Reads the delay histogram of a Switchyard server. Janus has none, and a failed read is
/// reported and leaves the figure out.
async fn scrape_delay(server: &Server) -> Option<sfu_delay::Buckets> {
    let Server::Switchyard { http, .. } = server else {
        return None;
    };
    match sfu_delay::scrape(*http).await {
        Ok(buckets) => Some(buckets),
        Err(error) => {
            eprintln!("warning: no SFU delay figures: {error:#}");
            None
        }
    }
}

/// The receiving participants: in a fan-out the subscribers, in a meeting every participant,
/// each with its own publisher index.
fn receivers(shape: Shape) -> Vec<Receiver> {
    let (count, publishing) = match shape {
        Shape::FanOut { subscribers } => (subscribers, false),
        Shape::Meeting { participants } => (participants, true),
    };
    (0..count)
        .map(|index| Receiver {
            recorder: Arc::default(),
            publisher: publishing.then_some(index),
        })
        .collect()
}

/// Returns the tracks a receiver should get: both tracks of every publisher but itself.
fn expected_tracks(shape: Shape, own: Option<u32>) -> Vec<(u32, Kind)> {
    (0..shape.publishers())
        .filter(|publisher| Some(*publisher) != own)
        .flat_map(|publisher| [(publisher, Kind::Audio), (publisher, Kind::Video)])
        .collect()
}

type Publishers = Vec<(u32, Arc<SendCounters>)>;

/// Connects every participant, publishers first.
async fn connect(
    config: &Config,
    receivers: &[Receiver],
) -> anyhow::Result<(Vec<Endpoint>, Publishers)> {
    match &config.server {
        Server::Switchyard { http, room } => {
            connect_switchyard(config, *http, room, receivers).await
        }
        Server::Janus { url, room } => connect_janus(config, url, *room, receivers).await,
    }
}

async fn connect_switchyard(
    config: &Config,
    http: SocketAddr,
    room: &str,
    receivers: &[Receiver],
) -> anyhow::Result<(Vec<Endpoint>, Publishers)> {
    let mut roles = Vec::new();
    if let Shape::FanOut { .. } = config.shape {
        roles.push(Role {
            publish: Some(0),
            recorder: None,
            video: config.video,
        });
    }
    for receiver in receivers {
        roles.push(Role {
            publish: receiver.publisher,
            recorder: Some(Arc::clone(&receiver.recorder)),
            video: config.video,
        });
    }
    // The fan-out's publisher joins on its own first, so the subscribers find its tracks.
    let first_batch = usize::from(matches!(config.shape, Shape::FanOut { .. }));
    let mut endpoints = Vec::new();
    let mut publishers = Vec::new();
    let mut batches = vec![roles[..first_batch].to_vec(), roles[first_batch..].to_vec()];
    for batch in batches.drain(..) {
        let joins = batch.into_iter().enumerate().map(|(index, role)| {
            let room = room.to_owned();
            let (client_ip, timeout) = (config.client_ip, config.connect_timeout);
            let name = match role.publish {
                Some(publisher) => format!("publisher-{publisher}"),
                None => format!("subscriber-{index}"),
            };
            async move {
                let publisher = role.publish;
                let participant =
                    Participant::join(http, client_ip, &room, &name, role, timeout).await?;
                Ok((publisher, participant))
            }
        });
        for (publisher, participant) in bounded(config.join_concurrency, joins).await? {
            if let (Some(index), Some(counters)) = (publisher, &participant.counters) {
                publishers.push((index, Arc::clone(counters)));
            }
            endpoints.push(Endpoint::Switchyard(participant));
        }
    }
    Ok((endpoints, publishers))
}

async fn connect_janus(
    config: &Config,
    url: &str,
    room: u64,
    receivers: &[Receiver],
) -> anyhow::Result<(Vec<Endpoint>, Publishers)> {
    let (client_ip, timeout, video) = (config.client_ip, config.connect_timeout, config.video);
    let publisher_joins = (0..config.shape.publishers()).map(|index| {
        let url = url.to_owned();
        async move {
            let publisher =
                janus::Publisher::join(&url, client_ip, room, index, video, timeout).await?;
            Ok((index, publisher))
        }
    });
    let mut joined = bounded(config.join_concurrency, publisher_joins).await?;
    joined.sort_by_key(|(index, _)| *index);
    let feeds: Vec<u64> = joined.iter().map(|(_, publisher)| publisher.feed).collect();
    let publishers = joined
        .iter()
        .map(|(index, publisher)| (*index, Arc::clone(&publisher.counters)))
        .collect();
    let mut endpoints: Vec<Endpoint> = joined
        .into_iter()
        .map(|(_, publisher)| Endpoint::JanusPublisher(publisher))
        .collect();

    let subscriber_joins =
        receivers.iter().map(|receiver| {
            let own_feed = receiver.publisher.map(|index| feeds[index as usize]);
            let wanted: Vec<u64> = feeds
                .iter()
                .copied()
                .filter(|feed| Some(*feed) != own_feed)
                .collect();
            let recorder = Arc::clone(&receiver.recorder);
            let url = url.to_owned();
            async move {
                janus::Subscriber::join(&url, client_ip, room, &wanted, recorder, timeout).await
            }
        });
    for subscriber in bounded(config.join_concurrency, subscriber_joins).await? {
        endpoints.push(Endpoint::JanusSubscriber(subscriber));
    }
    Ok((endpoints, publishers))
}

/// Runs `joins` with at most `limit` at a time and returns their results, or the first error
/// with the count of those that succeeded.
async fn bounded<T: Send + 'static>(
    limit: usize,
    joins: impl Iterator<Item = impl std::future::Future<Output = anyhow::Result<T>> + Send + 'static>,
) -> anyhow::Result<Vec<T>> {
    let permits = Arc::new(Semaphore::new(limit.max(1)));
    let mut set = JoinSet::new();
    for join in joins {
        let permits = Arc::clone(&permits);
        set.spawn(async move {
            let _permit = permits.acquire_owned().await;
            join.await
        });
    }
    let mut done = Vec::new();
    while let Some(result) = set.join_next().await {
        let outcome = result.map_err(|error| anyhow!("a connecting task failed: {error}"))?;
        match outcome {
            Ok(value) => done.push(value),
            Err(error) => {
                set.abort_all();
                return Err(error).context(format!(
                    "a participant failed to connect ({} connected before)",
                    done.len()
                ));
            }
        }
    }
    Ok(done)
}

/// Waits until each receiver has received from all its expected tracks, for at most `timeout`,
/// and returns how many have.
async fn wait_ready(
    receivers: &[Receiver],
    expected: &[Vec<(u32, Kind)>],
    timeout: Duration,
) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let ready = receivers
            .iter()
            .zip(expected)
            .filter(|(receiver, tracks)| receiver.recorder.tracks_seen(tracks) == tracks.len())
            .count();
        if ready == receivers.len() || Instant::now() >= deadline {
            return ready;
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

async fn close_all(endpoints: Vec<Endpoint>) {
    let closing = async {
        for endpoint in endpoints {
            match endpoint {
                Endpoint::Switchyard(participant) => participant.close().await,
                Endpoint::JanusPublisher(publisher) => publisher.close().await,
                Endpoint::JanusSubscriber(subscriber) => subscriber.close().await,
            }
        }
    };
    if tokio::time::timeout(CLOSE_TIMEOUT, closing).await.is_err() {
        eprintln!("warning: closing the connections took over {CLOSE_TIMEOUT:?}; leaving the rest");
    }
}

/// Publisher sequence numbers and CPU times at one edge of the window.
pub struct Snapshot {
    pub at: Instant,
    pub server_cpu: Option<Duration>,
    pub own_cpu: Duration,
    sequences: Vec<(u32, [u32; 2])>,
}

impl Snapshot {
    fn take(server_pid: Option<u32>, publishers: &Publishers) -> anyhow::Result<Snapshot> {
        let sequences = publishers
            .iter()
            .map(|(index, counters)| {
                let next = [
                    counters.next_sequence(Kind::Audio),
                    counters.next_sequence(Kind::Video),
                ];
                (*index, next)
            })
            .collect();
        let server_cpu = match server_pid {
            Some(pid) => Some(process_cpu_time(pid).context("reading the server's CPU time")?),
            None => None,
        };
        Ok(Snapshot {
            at: Instant::now(),
            server_cpu,
            own_cpu: process_cpu_time(std::process::id())?,
            sequences,
        })
    }

    fn sequence(&self, publisher: u32, kind: Kind) -> u32 {
        self.sequences
            .iter()
            .find(|(index, _)| *index == publisher)
            .map(|(_, next)| next[usize::from(kind == Kind::Video)])
            .unwrap_or(0)
    }
}
