//! UDP sockets that tokio watches for incoming datagrams only.
//!
//! `tokio::net::UdpSocket` registers with epoll for both read and write readiness. On Linux a UDP socket
//! becomes writable again each time the kernel frees a datagram it sent, which on loopback is
//! during the send itself, so every batch of sends came back as one more epoll event for a
//! task that was not waiting to write. The relay drops a datagram that does not fit the send
//! buffer, as the network would, so it never needs write readiness.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tracing::{debug, trace};

/// Socket buffer size requested for listener and relay sockets. Linux caps it at
/// `net.core.rmem_max` and `net.core.wmem_max`.
const SOCKET_BUFFER: usize = 4 << 20;

/// How often and how long [`UdpSocket::send_to_waiting`] retries a full send buffer.
const SEND_RETRIES: u32 = 20;
const SEND_RETRY_INTERVAL: Duration = Duration::from_millis(1);

/// A non-blocking UDP socket registered with tokio for read readiness only.
pub(crate) struct UdpSocket {
    inner: AsyncFd<std::net::UdpSocket>,
    local: SocketAddr,
}

impl UdpSocket {
    /// Binds to `addr`, requests large buffers and registers with the current runtime.
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let socket = std::net::UdpSocket::bind(addr)?;
        socket.set_nonblocking(true)?;
        let local = socket.local_addr()?;
        enlarge_buffers(&socket);
        // Deprecated because a type may hand out different file descriptors over its life.
        // `std::net::UdpSocket` owns one descriptor from creation to drop, and the
        // replacement is an `unsafe fn`, which this workspace forbids.
        #[allow(deprecated)]
        let inner = AsyncFd::with_interest(socket, Interest::READABLE)?;
        Ok(Self { inner, local })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Waits until a datagram may be waiting. The readiness stays set until a read through
    /// [`UdpSocket::try_read`] finds the queue empty.
    pub async fn readable(&self) -> io::Result<()> {
        self.inner.readable().await.map(drop)
    }

    /// Runs `read` on the socket, and clears the read readiness when it returns `WouldBlock`.
    pub fn try_read<R>(
        &self,
        read: impl FnOnce(&std::net::UdpSocket) -> io::Result<R>,
    ) -> io::Result<R> {
        self.inner.try_io(Interest::READABLE, read)
    }

    /// Sends one datagram without waiting. A full send buffer gives `WouldBlock`.
    pub fn send_to(&self, data: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.inner.get_ref().send_to(data, to)
    }

    /// Sends one datagram, retrying for up to about 20 ms while the send buffer is full, then
    /// drops it. A client on TCP or TLS is slowed down this way rather than losing a burst.
    pub async fn send_to_waiting(&self, data: &[u8], to: SocketAddr) {
        for _ in 0..SEND_RETRIES {
            match self.send_to(data, to) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    tokio::time::sleep(SEND_RETRY_INTERVAL).await;
                }
                Ok(_) => return,
                Err(error) => {
                    trace!(%to, %error, "failed to send a datagram");
                    return;
                }
            }
        }
        trace!(%to, "dropped a datagram: the send buffer stayed full");
    }
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

/// Asks for large socket buffers, so that bursts are queued rather than dropped.
fn enlarge_buffers(socket: &std::net::UdpSocket) {
    let socket = socket2::SockRef::from(socket);
    if let Err(error) = socket
        .set_recv_buffer_size(SOCKET_BUFFER)
        .and_then(|()| socket.set_send_buffer_size(SOCKET_BUFFER))
    {
        debug!(%error, "failed to enlarge UDP socket buffers");
    }
}
