//! Batched I/O on the media socket: `recvmmsg` (with UDP GRO where the kernel offers it) through
//! `quinn-udp` on receive, and `sendmmsg` through `nix` on send, so that one system call moves up
//! to [`BATCH`] datagrams.
//!
//! UDP GSO is not used on send. It needs equal-sized segments to one destination, and the
//! forwarder's output fans one packet out to many destinations instead.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
use quinn_udp::{RecvMeta, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tracing::debug;

use crate::sfu::Transmit;

/// Datagrams moved by one system call at most.
pub(crate) const BATCH: usize = 32;

/// Size of one receive buffer. With GRO a buffer contains several datagrams from one source, and
/// 64 KiB is the largest run the kernel coalesces.
const RECEIVE_BUFFER: usize = 64 * 1024;

/// Ancillary data sent with each datagram: none.
const NO_CONTROL_MESSAGES: [ControlMessage<'static>; 0] = [];

/// The media socket with its receive buffers, reused for every batch.
pub(crate) struct BatchSocket {
    socket: UdpSocket,
    state: UdpSocketState,
    /// [`BATCH`] receive buffers of [`RECEIVE_BUFFER`] bytes, back to back.
    buffers: Vec<u8>,
    metas: Vec<RecvMeta>,
    /// Receive buffers that the last read filled.
    filled: usize,
}

impl BatchSocket {
    /// Wraps a bound socket. Fails when the socket options for GRO and packet info cannot be set.
    pub fn new(socket: UdpSocket) -> io::Result<Self> {
        let state = UdpSocketState::new((&socket).into())?;
        Ok(Self {
            socket,
            state,
            buffers: vec![0u8; BATCH * RECEIVE_BUFFER],
            metas: vec![RecvMeta::default(); BATCH],
            filled: 0,
        })
    }

    /// Waits until the socket may have datagrams to read.
    pub async fn readable(&self) -> io::Result<()> {
        self.socket.readable().await
    }

    /// Reads one batch without waiting, to be walked with [`BatchSocket::datagrams`]. Returns
    /// false when no datagram was waiting.
    pub fn receive(&mut self) -> bool {
        self.filled = 0;
        let mut chunks = self.buffers.chunks_exact_mut(RECEIVE_BUFFER);
        // `buffers` contains exactly BATCH chunks, so `next` never runs out.
        let mut slices: [IoSliceMut<'_>; BATCH] =
            std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
        let result = self.socket.try_io(Interest::READABLE, || {
            self.state
                .recv((&self.socket).into(), &mut slices, &mut self.metas)
        });
        match result {
            Ok(count) => self.filled = count,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            // ICMP errors from earlier sends surface here on Linux, and each concerns one peer only.
            Err(error) => debug!(%error, "media receive failed"),
        }
        self.filled > 0
    }

    /// Returns each datagram of the last batch with its source and the kernel's receive time
    /// since the Unix epoch, when the kernel gave one.
    pub fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8], Option<Duration>)> {
        self.metas[..self.filled]
            .iter()
            .zip(self.buffers.chunks_exact(RECEIVE_BUFFER))
            .flat_map(|(meta, buffer)| {
                // With GRO one buffer contains a run of datagrams of `stride` bytes from one source.
                buffer[..meta.len]
                    .chunks(meta.stride.max(1))
                    .map(move |datagram| (meta.addr, datagram, meta.timestamp))
            })
    }

    /// Sends the transmits in order, up to [`BATCH`] per system call, waiting while the socket's
    /// send buffer is full. A datagram the kernel rejects is dropped and logged, and the rest
    /// still go out.
    pub async fn send_all(&self, transmits: &mut Vec<Transmit>) {
        let mut sent = 0;
        while sent < transmits.len() {
            let end = transmits.len().min(sent + BATCH);
            match self.send_batch(&transmits[sent..end]) {
                Ok(count) => sent += count.max(1),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(error) = self.socket.writable().await {
                        debug!(%error, "media socket not writable; dropping queued datagrams");
                        break;
                    }
                }
                // `sendmmsg` reports an error only when the first datagram of the batch failed.
                Err(error) => {
                    debug!(destination = %transmits[sent].destination, %error, "media send failed");
                    sent += 1;
                }
            }
        }
        transmits.clear();
    }

    /// Sends one batch of at most [`BATCH`] transmits with one `sendmmsg` call and returns how
    /// many the kernel took.
    fn send_batch(&self, batch: &[Transmit]) -> io::Result<usize> {
        let mut slices = [[IoSlice::new(&[])]; BATCH];
        let mut addresses = [None; BATCH];
        for ((slot, address), transmit) in slices.iter_mut().zip(&mut addresses).zip(batch) {
            *slot = [IoSlice::new(&transmit.payload)];
            *address = Some(SockaddrStorage::from(transmit.destination));
        }

        // NOTE: `MultiHeaders` holds raw pointers and is not `Send`, so it cannot live in this
        // struct across the driver's awaits. It is allocated per batch, not per datagram.
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(batch.len(), None);
        let socket = &self.socket;
        let addresses = &addresses[..batch.len()];
        socket.try_io(Interest::WRITABLE, || {
            let results = sendmmsg(
                socket.as_raw_fd(),
                &mut headers,
                &slices[..batch.len()],
                addresses,
                NO_CONTROL_MESSAGES,
                MsgFlags::empty(),
            )?;
            Ok(results.count())
        })
    }
}
