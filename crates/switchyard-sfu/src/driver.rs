//! The tokio task that owns the media socket and the [`Sfu`] state machine.

use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{error, info};

use crate::batch::{BatchSocket, BATCH};
use crate::handle::Command;
use crate::sfu::Sfu;

/// How long the loop sleeps when no timer is pending.
const IDLE_WAIT: Duration = Duration::from_secs(3600);

/// Runs the SFU until every [`crate::SfuHandle`] is dropped.
pub(crate) async fn run(
    socket: UdpSocket,
    mut sfu: Sfu,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut socket = match BatchSocket::new(socket) {
        Ok(socket) => socket,
        Err(error) => {
            error!(%error, "could not set up the media socket; SFU stopped");
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

            command = commands.recv() => match command {
                Some(command) => sfu.handle_command(Instant::now(), command),
                None => break,
            },
            readable = socket.readable() => {
                if readable.is_ok() {
                    // One clock reading serves the whole batch: it was read in one system call.
                    let now = Instant::now();
                    socket.receive_batch(|source, payload| sfu.handle_datagram(now, source, payload));
                }
            },
            () = timer => sfu.handle_timeout(Instant::now()),
        }
    }
    info!("SFU stopped");
}
