//! The tokio task that owns one media socket and one [`Sfu`] state machine (a shard).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{error, info, trace};

use crate::batch::{BatchSocket, BATCH};
use crate::handle::Command;
use crate::sfu::Sfu;

/// How long the loop sleeps when no timer is pending.
const IDLE_WAIT: Duration = Duration::from_secs(3600);

/// Datagrams that may wait for a shard after another shard's socket read them. More are dropped,
/// as a full socket buffer would drop them.
pub(crate) const INBOX_CAPACITY: usize = 4096;

/// Receive times kept per batch for the delay histogram. A batch read with UDP GRO can hold
/// more RTP datagrams than this, and the rest of them are not measured.
const DELAY_SAMPLES: usize = 4 * BATCH;

/// A datagram that another shard's socket read for this shard's peers: its source, its bytes and
/// the kernel's receive time.
pub(crate) type Forwarded = (SocketAddr, Vec<u8>, Option<Duration>);

/// Channel of datagrams that another shard's socket read for this shard's peers.
pub(crate) type InboxSender = mpsc::Sender<Forwarded>;

/// Everything a shard receives besides its socket's datagrams.
pub(crate) struct Mailboxes {
    pub commands: mpsc::UnboundedReceiver<Command>,
    pub inbox: mpsc::Receiver<Forwarded>,
    /// Every shard's inbox, indexed by shard.
    pub shards: Arc<[InboxSender]>,
}

/// Runs one shard until every [`crate::SfuHandle`] is dropped.
pub(crate) async fn run(socket: UdpSocket, mut sfu: Sfu, mut mailboxes: Mailboxes) {
    let mut socket = match BatchSocket::new(socket) {
        Ok(socket) => socket,
        Err(error) => {
            error!(%error, shard = sfu.shard, "could not set up the media socket; SFU shard stopped");
            return;
        }
    };
    let mut transmits = Vec::with_capacity(BATCH);
    let mut received_at = Vec::with_capacity(DELAY_SAMPLES);
    loop {
        // Send everything the last step produced before waiting again, in one go so that runs
        // of datagrams to one destination stay whole.
        transmits.extend(std::iter::from_fn(|| sfu.poll_transmit()));
        if !transmits.is_empty() {
            let sent = socket.send_all(&mut transmits).await;
            sfu.counters.sent(sent.messages, sent.datagrams);
        }
        record_delays(&sfu, &mut received_at);

        let deadline = sfu
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + IDLE_WAIT);
        let timer = tokio::time::sleep_until(deadline.into());

        tokio::select! {
            biased;

            command = mailboxes.commands.recv() => match command {
                Some(command) => sfu.handle_command(Instant::now(), command),
                None => break,
            },
            readable = socket.readable() => {
                if readable.is_ok() && socket.receive() {
                    // One clock reading serves the whole batch: it was read in one system call.
                    let now = Instant::now();
                    for (source, payload, timestamp) in socket.datagrams() {
                        let handled_here =
                            dispatch(&mut sfu, &mailboxes.shards, now, source, payload, timestamp);
                        // A datagram passed to another shard is timed by that shard.
                        if handled_here {
                            note_receipt(&mut received_at, payload, timestamp);
                        }
                    }
                    // Draining once for the whole read, rather than after each datagram, keeps
                    // the copies of a burst for one subscriber together, and the send below
                    // passes each such run to the kernel as one GSO buffer.
                    sfu.drain_dirty(now);
                }
            },
            Some((source, payload, timestamp)) = mailboxes.inbox.recv() => {
                if sfu.handle_datagram(Instant::now(), source, &payload) {
                    note_receipt(&mut received_at, &payload, timestamp);
                } else {
                    trace!(%source, "datagram for a peer that has left dropped");
                }
            },
            () = timer => sfu.handle_timeout(Instant::now()),
        }
    }
    info!(shard = sfu.shard, "SFU shard stopped");
}

/// Keeps the receive time of an RTP datagram this shard handled, for [`record_delays`].
fn note_receipt(received_at: &mut Vec<Duration>, payload: &[u8], timestamp: Option<Duration>) {
    if let Some(timestamp) = timestamp.filter(|_| is_rtp(payload)) {
        if received_at.len() < DELAY_SAMPLES {
            received_at.push(timestamp);
        }
    }
}

/// Records, for each RTP datagram handled since the last send, the time from its kernel
/// receive timestamp until now, when every copy made from it has been sent. Both clocks are the
/// system's real-time clock.
fn record_delays(sfu: &Sfu, received_at: &mut Vec<Duration>) {
    if received_at.is_empty() {
        return;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    for at in received_at.drain(..) {
        sfu.counters.media_delay(now.saturating_sub(at));
    }
}

/// True for an RTP (not RTCP) packet: first byte 128 to 191 (RFC 7983) and an RTP payload type
/// outside RTCP's packet types 192 to 223 (RFC 5761).
fn is_rtp(datagram: &[u8]) -> bool {
    match datagram {
        [first, second, ..] => (128..=191).contains(first) && !(192..=223).contains(second),
        _ => false,
    }
}

/// Feeds a datagram that this shard's socket read to its connection, or passes it to the shard
/// that owns its peer. Datagrams of no known peer are dropped. Returns true when this shard
/// took it; its output waits for the caller's [`Sfu::drain_dirty`].
fn dispatch(
    sfu: &mut Sfu,
    shards: &[InboxSender],
    now: Instant,
    source: SocketAddr,
    payload: &[u8],
    received_at: Option<Duration>,
) -> bool {
    // The local lookup comes first, so a shard's own peers cost one routing lookup.
    if sfu.feed_datagram(now, source, payload) {
        return true;
    }
    match sfu.routes.owner(source, payload) {
        Some(owner) if owner != sfu.shard => {
            if let Some(inbox) = shards.get(owner) {
                if inbox
                    .try_send((source, payload.to_vec(), received_at))
                    .is_err()
                {
                    trace!(%source, owner, "shard inbox full; datagram dropped");
                }
            }
        }
        _ => trace!(%source, len = payload.len(), "datagram for no known peer dropped"),
    }
    false
}
