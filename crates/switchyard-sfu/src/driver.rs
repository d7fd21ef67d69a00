//! The tokio task that owns one media socket and one [`Sfu`] state machine (a shard).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// Channel of datagrams that another shard's socket read for this shard's peers.
pub(crate) type InboxSender = mpsc::Sender<(SocketAddr, Vec<u8>)>;

/// Everything a shard receives besides its socket's datagrams.
pub(crate) struct Mailboxes {
    pub commands: mpsc::UnboundedReceiver<Command>,
    pub inbox: mpsc::Receiver<(SocketAddr, Vec<u8>)>,
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
    loop {
        // Send everything the last step produced before waiting again.
        while let Some(transmit) = sfu.poll_transmit() {
            transmits.push(transmit);
            if transmits.len() == BATCH {
                socket.send_all(&mut transmits).await;
            }
        }
        socket.send_all(&mut transmits).await;

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
                if readable.is_ok() {
                    // One clock reading serves the whole batch: it was read in one system call.
                    let now = Instant::now();
                    socket.receive_batch(|source, payload| {
                        dispatch(&mut sfu, &mailboxes.shards, now, source, payload);
                    });
                }
            },
            Some((source, payload)) = mailboxes.inbox.recv() => {
                if !sfu.handle_datagram(Instant::now(), source, &payload) {
                    trace!(%source, "datagram for a peer that has left dropped");
                }
            },
            () = timer => sfu.handle_timeout(Instant::now()),
        }
    }
    info!(shard = sfu.shard, "SFU shard stopped");
}

/// Handles a datagram that this shard's socket read, or passes it to the shard that owns its
/// peer. Datagrams of no known peer are dropped.
fn dispatch(
    sfu: &mut Sfu,
    shards: &[InboxSender],
    now: Instant,
    source: SocketAddr,
    payload: &[u8],
) {
    // The local lookup comes first, so a shard's own peers cost one routing lookup.
    if sfu.handle_datagram(now, source, payload) {
        return;
    }
    match sfu.routes.owner(source, payload) {
        Some(owner) if owner != sfu.shard => {
            if let Some(inbox) = shards.get(owner) {
                if inbox.try_send((source, payload.to_vec())).is_err() {
                    trace!(%source, owner, "shard inbox full; datagram dropped");
                }
            }
        }
        _ => trace!(%source, len = payload.len(), "datagram for no known peer dropped"),
    }
}
