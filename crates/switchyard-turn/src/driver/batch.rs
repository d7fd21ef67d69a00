//! Batched datagram I/O for the UDP listener and relay sockets: `recvmmsg` and `sendmmsg`
//! through `nix`, so that one system call moves up to [`BATCH`] datagrams.
//!
//! The receive buffers belong to the thread rather than to a socket, because each relay socket
//! would otherwise carry [`BATCH`] buffers of 64 KiB. A task borrows them from one read to the
//! end of its synchronous handling and never across an `.await`, so the tasks that share a
//! worker thread take turns and never contend for them.

use std::cell::RefCell;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::ops::Range;
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage,
};
use tracing::trace;

use super::socket::UdpSocket;

/// Datagrams moved by one system call at most.
pub(crate) const BATCH: usize = 32;

/// Size of one receive buffer: the largest UDP payload fits, so nothing is truncated.
const SLOT: usize = 65_536;

/// Distance between the starts of two receive buffers. A multiple of 64 KiB would put the
/// first bytes of every buffer in the same sets of the CPU caches, so that the datagrams of one
/// batch evict each other between the receive and the send. 17 cache lines more spreads them.
const STRIDE: usize = SLOT + 17 * 64;

/// Ancillary data sent with each datagram: none.
const NO_CONTROL_MESSAGES: [ControlMessage<'static>; 0] = [];

/// The receive buffers of one thread.
struct ReceiveBuffers {
    /// [`BATCH`] buffers of [`SLOT`] bytes, [`STRIDE`] bytes apart.
    slots: Vec<u8>,
    /// Message headers for IPv4 and for IPv6 sockets. The kernel writes the source address
    /// length back into a header and the next call reuses it as the capacity, so a header that
    /// served an IPv4 socket must not serve an IPv6 one.
    headers_v4: MultiHeaders<SockaddrStorage>,
    headers_v6: MultiHeaders<SockaddrStorage>,
    /// Source and length of each datagram of the current batch.
    received: Vec<(SocketAddr, usize)>,
}

impl ReceiveBuffers {
    fn new() -> Self {
        Self {
            slots: vec![0; BATCH * STRIDE],
            headers_v4: MultiHeaders::preallocate(BATCH, None),
            headers_v6: MultiHeaders::preallocate(BATCH, None),
            received: Vec::with_capacity(BATCH),
        }
    }
}

thread_local! {
    static RECEIVE_BUFFERS: RefCell<Option<ReceiveBuffers>> = const { RefCell::new(None) };
}

/// The datagrams of one batch, in the order they arrived.
pub(crate) struct Datagrams<'a> {
    slots: &'a [u8],
    received: &'a [(SocketAddr, usize)],
}

impl<'a> Datagrams<'a> {
    /// Source and bytes of each datagram.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &'a [u8])> + 'a {
        let slots = self.slots;
        self.received
            .iter()
            .enumerate()
            // A source that is not an IP address is kept as port 0; no datagram comes from it.
            .filter(|(_, (from, _))| from.port() != 0)
            .map(move |(index, &(from, len))| (from, &slots[index * STRIDE..index * STRIDE + len]))
    }
}

/// Reads up to [`BATCH`] datagrams from `socket` without waiting and passes them to `handle`.
/// Returns `WouldBlock` when no datagram was waiting. `ipv6` tells whether the socket is bound
/// to an IPv6 address.
///
/// A batch shorter than [`BATCH`] means that the socket's queue was empty at that moment, so
/// its readiness is cleared right away. That saves the extra call that would only return
/// `EAGAIN` before the task waits again.
pub(crate) fn receive<R>(
    socket: &UdpSocket,
    ipv6: bool,
    handle: impl FnOnce(Datagrams<'_>) -> R,
) -> io::Result<R> {
    RECEIVE_BUFFERS.with(|cell| {
        // Only a `handle` that reads again could find the buffers borrowed, and none does.
        let Ok(mut borrowed) = cell.try_borrow_mut() else {
            return Err(io::Error::other("receive buffers are already in use"));
        };
        let buffers = borrowed.get_or_insert_with(ReceiveBuffers::new);
        read_batch(socket, ipv6, buffers)?;
        Ok(handle(Datagrams {
            slots: &buffers.slots,
            received: &buffers.received,
        }))
    })
}

/// Fills `buffers` with one batch from `socket`.
fn read_batch(socket: &UdpSocket, ipv6: bool, buffers: &mut ReceiveBuffers) -> io::Result<()> {
    let ReceiveBuffers {
        slots,
        headers_v4,
        headers_v6,
        received,
    } = buffers;
    let headers = if ipv6 { headers_v6 } else { headers_v4 };
    received.clear();

    let mut chunks = slots.chunks_exact_mut(STRIDE);
    // `slots` is exactly BATCH chunks long, so `next` never runs out.
    let mut slices: [[IoSliceMut<'_>; 1]; BATCH] = std::array::from_fn(|_| {
        [IoSliceMut::new(
            chunks
                .next()
                .map_or(&mut [][..], |chunk| &mut chunk[..SLOT]),
        )]
    });
    let result = socket.try_read(|_| {
        let messages = recvmmsg(
            socket.as_raw_fd(),
            headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )?;
        let mut count = 0;
        for message in messages {
            count += 1;
            match message.address.as_ref().and_then(socket_addr) {
                Some(from) => received.push((from, message.bytes)),
                // Keeps the slot index equal to the position in `received`.
                None => received.push((SocketAddr::from(([0, 0, 0, 0], 0)), 0)),
            }
        }
        if count < BATCH {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(())
    });
    match result {
        Err(error) if error.kind() == io::ErrorKind::WouldBlock && !received.is_empty() => Ok(()),
        result => result,
    }
}

fn socket_addr(storage: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = storage.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    storage
        .as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}

/// Messages waiting to be sent from one socket: their bytes back to back, and the destination
/// and byte range of each. Reused from batch to batch.
#[derive(Default)]
pub(crate) struct Outbox {
    bytes: Vec<u8>,
    messages: Vec<(SocketAddr, Range<usize>)>,
}

impl Outbox {
    /// Queues a copy of `data` for `to`.
    pub fn push(&mut self, to: SocketAddr, data: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(data);
        self.messages.push((to, start..self.bytes.len()));
    }

    /// True when no message is queued.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Bytes of each queued message.
    pub fn messages(&self) -> impl Iterator<Item = &[u8]> {
        self.messages
            .iter()
            .map(|(_, range)| &self.bytes[range.clone()])
    }

    /// Sends every queued message from `socket` and empties the outbox. A message that does
    /// not fit the socket's send buffer is dropped, as the network would drop it.
    pub fn send(&mut self, socket: &UdpSocket) {
        if let [(to, range)] = &self.messages[..] {
            if let Err(error) = socket.send_to(&self.bytes[range.clone()], *to) {
                trace!(%to, %error, "dropped datagram that failed to send");
            }
        } else {
            let mut sent = 0;
            while sent < self.messages.len() {
                let end = self.messages.len().min(sent + BATCH);
                match self.send_batch(socket, sent..end) {
                    Ok(count) => sent += count.max(1),
                    // `sendmmsg` fails only when the first datagram of the batch failed.
                    Err(error) => {
                        trace!(to = %self.messages[sent].0, %error, "dropped datagram that failed to send");
                        if error.kind() == io::ErrorKind::WouldBlock {
                            break;
                        }
                        sent += 1;
                    }
                }
            }
        }
        self.clear();
    }

    /// Empties the outbox without sending.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.messages.clear();
    }

    /// Sends the messages in `range`, at most [`BATCH`], with one `sendmmsg` call and returns
    /// how many the kernel took.
    fn send_batch(&self, socket: &UdpSocket, range: Range<usize>) -> io::Result<usize> {
        let messages = &self.messages[range];
        let mut slices = [[IoSlice::new(&[])]; BATCH];
        let mut addresses = [None; BATCH];
        for ((slice, address), (to, bytes)) in slices.iter_mut().zip(&mut addresses).zip(messages) {
            *slice = [IoSlice::new(&self.bytes[bytes.clone()])];
            *address = Some(SockaddrStorage::from(*to));
        }
        SEND_HEADERS.with(|cell| {
            let Ok(mut headers) = cell.try_borrow_mut() else {
                return Err(io::Error::other("send headers are already in use"));
            };
            let headers = headers.get_or_insert_with(|| MultiHeaders::preallocate(BATCH, None));
            let results = sendmmsg(
                socket.as_raw_fd(),
                headers,
                &slices[..messages.len()],
                &addresses[..messages.len()],
                NO_CONTROL_MESSAGES,
                MsgFlags::MSG_DONTWAIT,
            )?;
            Ok(results.count())
        })
    }
}

thread_local! {
    /// Message headers for `sendmmsg`, which sets every field it uses on each call.
    static SEND_HEADERS: RefCell<Option<MultiHeaders<SockaddrStorage>>> = const { RefCell::new(None) };
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Binds a plain tokio socket to send from or receive with.
    async fn bound() -> tokio::net::UdpSocket {
        tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap()
    }

    /// Binds a socket of the driver's own kind.
    fn ours(addr: &str) -> io::Result<UdpSocket> {
        UdpSocket::bind(addr.parse().unwrap())
    }

    #[tokio::test]
    async fn receive_returns_waiting_datagrams_in_order() {
        let receiver = ours("127.0.0.1:0").unwrap();
        let sender = bound().await;
        let to = receiver.local_addr();
        for len in [1, 1200, 65_507] {
            sender.send_to(&vec![len as u8; len], to).await.unwrap();
        }

        receiver.readable().await.unwrap();
        // Loopback delivers before send_to returns, so all three are queued.
        let lengths = receive(&receiver, false, |datagrams| {
            datagrams
                .iter()
                .map(|(from, data)| {
                    assert_eq!(from, sender.local_addr().unwrap());
                    assert!(data.iter().all(|&byte| byte == data.len() as u8));
                    data.len()
                })
                .collect::<Vec<_>>()
        })
        .unwrap();
        assert_eq!(lengths, [1, 1200, 65_507]);

        let empty = receive(&receiver, false, |datagrams| datagrams.iter().count());
        assert_eq!(empty.unwrap_err().kind(), io::ErrorKind::WouldBlock);
    }

    #[tokio::test]
    async fn outbox_sends_every_message() {
        let receiver = bound().await;
        let other = bound().await;
        let sender = ours("127.0.0.1:0").unwrap();
        let mut outbox = Outbox::default();
        for index in 0..BATCH + 3 {
            let to = if index % 2 == 0 { &receiver } else { &other };
            outbox.push(to.local_addr().unwrap(), &[index as u8; 100]);
        }
        outbox.send(&sender);
        assert!(outbox.is_empty());

        let mut buf = [0; 200];
        let mut seen = Vec::new();
        for (socket, count) in [(&receiver, BATCH / 2 + 2), (&other, BATCH / 2 + 1)] {
            for _ in 0..count {
                let received =
                    tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf));
                let (len, from) = received.await.unwrap().unwrap();
                assert_eq!(len, 100);
                assert_eq!(from, sender.local_addr());
                seen.push(buf[0] as usize);
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..BATCH + 3).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn receive_keeps_ipv6_sources_apart_from_ipv4() {
        let Ok(receiver6) = ours("[::1]:0") else {
            return;
        };
        let receiver4 = ours("127.0.0.1:0").unwrap();
        let sender4 = bound().await;
        let sender6 = tokio::net::UdpSocket::bind("[::1]:0").await.unwrap();
        for _ in 0..2 {
            sender4
                .send_to(b"v4", receiver4.local_addr())
                .await
                .unwrap();
            sender6
                .send_to(b"v6", receiver6.local_addr())
                .await
                .unwrap();
            receiver4.readable().await.unwrap();
            let from4 = receive(&receiver4, false, |datagrams| {
                datagrams.iter().next().unwrap().0
            });
            assert_eq!(from4.unwrap(), sender4.local_addr().unwrap());
            receiver6.readable().await.unwrap();
            let from6 = receive(&receiver6, true, |datagrams| {
                datagrams.iter().next().unwrap().0
            });
            assert_eq!(from6.unwrap(), sender6.local_addr().unwrap());
        }
    }
}
