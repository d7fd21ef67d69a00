//! The tokio task that owns the media socket and the [`Sfu`] state machine.

use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, info};

use crate::handle::Command;
use crate::sfu::Sfu;

/// Largest datagram read from the socket. Media packets stay under the path MTU, but a larger
/// buffer keeps an oversized datagram from being truncated into something misleading.
const RECEIVE_BUFFER: usize = 64 * 1024;

/// How long the loop sleeps when no timer is pending.
const IDLE_WAIT: Duration = Duration::from_secs(3600);

/// Runs the SFU until every [`crate::SfuHandle`] is dropped.
pub(crate) async fn run(
    socket: UdpSocket,
    mut sfu: Sfu,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut buffer = vec![0u8; RECEIVE_BUFFER];
    loop {
        // Send everything the last step produced before waiting again.
        while let Some(transmit) = sfu.poll_transmit() {
            if let Err(error) = socket
                .send_to(&transmit.payload, transmit.destination)
                .await
            {
                debug!(destination = %transmit.destination, %error, "media send failed");
            }
        }

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
            received = socket.recv_from(&mut buffer) => match received {
                Ok((len, source)) => sfu.handle_datagram(Instant::now(), source, &buffer[..len]),
                // ICMP errors from earlier sends surface here on Linux; they concern one peer only.
                Err(error) => debug!(%error, "media receive failed"),
            },
            () = timer => sfu.handle_timeout(Instant::now()),
        }
    }
    info!("SFU stopped");
}
