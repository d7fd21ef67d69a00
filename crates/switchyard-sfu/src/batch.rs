//! Batched I/O on the media socket: `recvmmsg` (with UDP GRO where the kernel offers it) through
//! `quinn-udp` on receive, and `sendmmsg` through `nix` on send, so that one system call moves up
//! to [`BATCH`] messages.
//!
//! On send, consecutive datagrams to one destination with the same size (the last may be
//! shorter) form one message with UDP GSO. The kernel then routes and queues them once and
//! splits them only at the device, or for a loopback receiver at its socket. The forwarder
//! fans each packet out to many destinations, so runs come from a read that carried several
//! packets of one stream, such as the packets of one video frame. The driver feeds up to 8
//! datagrams of a read before it drains and sends, which puts each subscriber's copies of them
//! side by side.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
use quinn_udp::{RecvMeta, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tracing::{debug, info};

use crate::sfu::Transmit;

/// Datagrams moved by one system call at most.
pub(crate) const BATCH: usize = 32;

/// Size of one receive buffer. With GRO a buffer contains several datagrams from one source, and
/// 64 KiB is the largest run the kernel coalesces.
const RECEIVE_BUFFER: usize = 64 * 1024;

/// Messages and datagrams that one [`BatchSocket::send_all`] handed to the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sent {
    /// Messages that the kernel took. With UDP GSO one message carries several datagrams.
    pub messages: u64,
    /// Datagrams in those messages.
    pub datagrams: u64,
}

/// The media socket with its receive buffers, reused for every batch.
pub(crate) struct BatchSocket {
    socket: UdpSocket,
    state: UdpSocketState,
    /// [`BATCH`] receive buffers of [`RECEIVE_BUFFER`] bytes, back to back.
    buffers: Vec<u8>,
    metas: Vec<RecvMeta>,
    /// Receive buffers that the last read filled.
    filled: usize,
    /// Set once a send with UDP GSO failed, so that no later send uses it.
    gso_failed: AtomicBool,
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
            gso_failed: AtomicBool::new(false),
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

    /// Sends the transmits, up to [`BATCH`] messages per system call, waiting while the socket's
    /// send buffer is full. Consecutive transmits to one destination whose sizes allow it go
    /// out as one GSO message, which the kernel splits into datagrams again. A message the
    /// kernel rejects is dropped and logged, and the rest still go out.
    pub async fn send_all(&self, transmits: &mut Vec<Transmit>) -> Sent {
        let mut messages = Vec::with_capacity(transmits.len());
        plan(transmits, self.max_segments(), &mut messages);
        let mut totals = Sent::default();
        let mut sent = 0;
        while sent < messages.len() {
            let (count, segment) = next_call(&messages[sent..]);
            let call = &messages[sent..sent + count];
            match self.send_call(transmits, call, segment) {
                Ok(count) => {
                    let count = count.clamp(1, call.len());
                    totals.messages += count as u64;
                    totals.datagrams += call[..count]
                        .iter()
                        .map(|message| (message.end - message.start) as u64)
                        .sum::<u64>();
                    sent += count;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(error) = self.socket.writable().await {
                        debug!(%error, "media socket not writable; dropping queued datagrams");
                        break;
                    }
                }
                // Linux rejects a send with UDP_SEGMENT with EIO or EINVAL where it cannot
                // segment, for example on kernels from before mid-2024 when the device has no
                // checksum offload. The rest goes out one datagram per message from then on.
                // The test `send_all_gso_rejected` takes this path.
                Err(error) if segment.is_some() && is_gso_error(&error) => {
                    info!(%error, "UDP segmentation offload failed; sending single datagrams");
                    self.gso_failed.store(true, Ordering::Relaxed);
                    let rest = messages[sent].start;
                    messages.truncate(sent);
                    plan_from(transmits, rest, 1, &mut messages);
                }
                // `sendmmsg` reports an error only when the first message of the call failed.
                Err(error) => {
                    let destination = transmits[messages[sent].start].destination;
                    debug!(%destination, %error, "media send failed");
                    sent += 1;
                }
            }
        }
        transmits.clear();
        totals
    }

    /// Datagrams one GSO message may carry: 1 where the kernel offers no UDP GSO or a send
    /// with it failed.
    fn max_segments(&self) -> usize {
        if self.gso_failed.load(Ordering::Relaxed) {
            1
        } else {
            self.state.max_gso_segments().max(1)
        }
    }

    /// Sends `call`, messages of `transmits` that share the GSO segment size `segment`, with
    /// one `sendmmsg` call, and returns how many messages the kernel took.
    fn send_call(
        &self,
        transmits: &[Transmit],
        call: &[Message],
        segment: Option<u16>,
    ) -> io::Result<usize> {
        let (Some(first), Some(last)) = (call.first(), call.last()) else {
            return Ok(0);
        };
        let base = first.start;
        let slices: Vec<IoSlice<'_>> = transmits[base..last.end]
            .iter()
            .map(|transmit| IoSlice::new(&transmit.payload))
            .collect();
        let groups: Vec<&[IoSlice<'_>]> = call
            .iter()
            .map(|message| &slices[message.start - base..message.end - base])
            .collect();
        let addresses: Vec<Option<SockaddrStorage>> = call
            .iter()
            .map(|message| Some(SockaddrStorage::from(transmits[message.start].destination)))
            .collect();
        let segment_size = segment.unwrap_or(0);
        let gso = [ControlMessage::UdpGsoSegments(&segment_size)];
        let control: &[ControlMessage<'_>] = if segment.is_some() { &gso } else { &[] };

        // NOTE: `MultiHeaders` holds raw pointers and is not `Send`, so it cannot live in this
        // struct across the driver's awaits. It is allocated per call, not per datagram.
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(
            call.len(),
            segment.map(|_| nix::cmsg_space!(u16)),
        );
        let socket = &self.socket;
        socket.try_io(Interest::WRITABLE, || {
            let results = sendmmsg(
                socket.as_raw_fd(),
                &mut headers,
                &groups,
                &addresses,
                control,
                MsgFlags::empty(),
            )?;
            Ok(results.count())
        })
    }
}

/// True for the errors with which Linux rejects a GSO send that the device cannot segment.
fn is_gso_error(error: &io::Error) -> bool {
    let code = error.raw_os_error();
    code == Some(Errno::EIO as i32) || code == Some(Errno::EINVAL as i32)
}

/// Largest payload of one GSO message. The UDP length field allows 65,535 bytes with the
/// 8-byte header, and IPv4 takes 20 more of the IP packet's 65,535.
const GSO_MAX_BYTES: usize = 65_000;

/// One message of a `sendmmsg` call: a single datagram, or a run of datagrams to one
/// destination, all `segment` bytes but the last, which may be shorter (UDP GSO).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Message {
    /// The transmits it carries, `start..end`.
    start: usize,
    end: usize,
    /// Size of its first datagram, and of every one but the last.
    segment: usize,
}

impl Message {
    fn is_run(&self) -> bool {
        self.end - self.start > 1
    }
}

/// Splits `transmits` into messages of at most `max_segments` datagrams each.
fn plan(transmits: &[Transmit], max_segments: usize, messages: &mut Vec<Message>) {
    plan_from(transmits, 0, max_segments, messages);
}

/// Appends the messages for `transmits[start..]` to `messages`.
fn plan_from(
    transmits: &[Transmit],
    mut start: usize,
    max_segments: usize,
    messages: &mut Vec<Message>,
) {
    while start < transmits.len() {
        let first = &transmits[start];
        let segment = first.payload.len();
        let mut end = start + 1;
        let mut total = segment;
        while segment > 0 && end < transmits.len() && end - start < max_segments {
            let next = &transmits[end];
            let len = next.payload.len();
            if next.destination != first.destination || len == 0 || len > segment {
                break;
            }
            if total + len > GSO_MAX_BYTES {
                break;
            }
            total += len;
            end += 1;
            // Only the last datagram of a run may be shorter than the others.
            if len < segment {
                break;
            }
        }
        messages.push(Message {
            start,
            end,
            segment,
        });
        start = end;
    }
}

/// Returns how many of `messages`, from the first, one `sendmmsg` call can carry, and the GSO
/// segment size it sets for all of them. The kernel reads the size from each message's control
/// data and leaves a datagram no longer than it unsplit, so single datagrams up to that size
/// can share a call with runs. Runs of another size need a call of their own.
fn next_call(messages: &[Message]) -> (usize, Option<u16>) {
    let mut segment: Option<usize> = None;
    let mut longest_single = 0;
    let mut count = 0;
    for message in messages.iter().take(BATCH) {
        if message.is_run() {
            match segment {
                None if longest_single <= message.segment => segment = Some(message.segment),
                Some(size) if size == message.segment => {}
                _ => break,
            }
        } else {
            if segment.is_some_and(|size| message.segment > size) {
                break;
            }
            longest_single = longest_single.max(message.segment);
        }
        count += 1;
    }
    // `plan` keeps runs within GSO_MAX_BYTES, so their segment size fits in 16 bits. Without
    // the size a run would leave as one datagram of all its parts.
    let segment = segment.map(|size| {
        debug_assert!(size <= GSO_MAX_BYTES, "run segment of {size} bytes");
        u16::try_from(size).unwrap_or(u16::MAX)
    });
    (count.max(1), segment)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use bytes::BytesMut;

    use super::*;

    fn transmit(destination: &str, len: usize, fill: u8) -> Transmit {
        Transmit {
            destination: destination.parse().unwrap(),
            payload: BytesMut::from(&vec![fill; len][..]),
        }
    }

    fn planned(transmits: &[Transmit], max_segments: usize) -> Vec<(usize, usize)> {
        let mut messages = Vec::new();
        plan(transmits, max_segments, &mut messages);
        messages.iter().map(|m| (m.start, m.end)).collect()
    }

    #[test]
    fn plan_joins_runs_per_destination() {
        let a = "127.0.0.1:1000";
        let b = "127.0.0.1:2000";
        let transmits = [
            transmit(a, 1100, 1),
            transmit(a, 1100, 2),
            transmit(a, 700, 3),
            // A shorter datagram ends a run, so this one starts the next.
            transmit(a, 1100, 4),
            transmit(b, 1100, 5),
            // Longer than the run's first datagram: a message of its own.
            transmit(b, 1200, 6),
            transmit(a, 90, 7),
        ];
        assert_eq!(
            planned(&transmits, 64),
            [(0, 3), (3, 4), (4, 5), (5, 6), (6, 7)]
        );
        // Without GSO every datagram is a message.
        assert_eq!(planned(&transmits, 1).len(), transmits.len());
    }

    #[test]
    fn plan_limits_run_length() {
        let a = "127.0.0.1:1000";
        let transmits: Vec<Transmit> = (0..10).map(|i| transmit(a, 1000, i)).collect();
        assert_eq!(planned(&transmits, 4), [(0, 4), (4, 8), (8, 10)]);

        // 65 datagrams of 1,000 bytes exceed one message's 65,000 bytes.
        let transmits: Vec<Transmit> = (0..70).map(|i| transmit(a, 1000, i as u8)).collect();
        assert_eq!(planned(&transmits, 64), [(0, 64), (64, 70)]);
        let transmits: Vec<Transmit> = (0..3).map(|i| transmit(a, 30_000, i)).collect();
        assert_eq!(planned(&transmits, 64), [(0, 2), (2, 3)]);
    }

    #[test]
    fn next_call_shares_segment_size() {
        let message = |start: usize, end: usize, segment: usize| Message {
            start,
            end,
            segment,
        };
        // Singles no longer than the run's segment size join it.
        let messages = [
            message(0, 1, 200),
            message(1, 4, 1100),
            message(4, 5, 1100),
            message(5, 7, 1100),
            message(7, 9, 900),
        ];
        assert_eq!(next_call(&messages), (4, Some(1100)));
        assert_eq!(next_call(&messages[4..]), (1, Some(900)));
        // A single longer than the runs before it ends the call.
        let messages = [message(0, 2, 900), message(2, 3, 1000)];
        assert_eq!(next_call(&messages), (1, Some(900)));
        // And a run after a longer single needs a call of its own.
        let messages = [message(0, 1, 1000), message(1, 3, 900)];
        assert_eq!(next_call(&messages), (1, None));
        // Singles alone carry no control data.
        let messages: Vec<Message> = (0..40).map(|i| message(i, i + 1, 100)).collect();
        assert_eq!(next_call(&messages), (BATCH, None));
    }

    /// Returns transmits to `first` and `second`, with the `(destination, length, fill)` of
    /// each: runs, single datagrams and a run longer than one message.
    fn burst(first: &str, second: &str) -> (Vec<Transmit>, Vec<(SocketAddr, usize, u8)>) {
        let mut expected: Vec<(SocketAddr, usize, u8)> = Vec::new();
        let mut transmits = Vec::new();
        let mut add = |to: &str, len: usize, fill: u8| {
            transmits.push(transmit(to, len, fill));
            expected.push((to.parse().unwrap(), len, fill));
        };
        for fill in 0..3 {
            add(first, 1100, fill);
        }
        add(first, 400, 3);
        add(second, 1100, 4);
        add(second, 60, 5);
        for fill in 6..80 {
            add(second, 500, fill);
        }
        add(first, 1100, 80);
        (transmits, expected)
    }

    /// Checks that each receiver got its datagrams of `expected` one by one, whole and in order.
    fn assert_arrived(receivers: &[&std::net::UdpSocket], expected: &[(SocketAddr, usize, u8)]) {
        let mut buffer = vec![0u8; 65_536];
        for receiver in receivers {
            receiver
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let address = receiver.local_addr().unwrap();
            for &(_, len, fill) in expected.iter().filter(|(to, _, _)| *to == address) {
                let (got, _) = receiver.recv_from(&mut buffer).unwrap();
                assert_eq!(got, len, "datagram {fill} to {address}");
                assert!(buffer[..got].iter().all(|&byte| byte == fill));
            }
        }
    }

    /// Sends runs, single datagrams and a run longer than one call through a real socket on
    /// loopback, and checks that every datagram arrives on its own, whole and in order.
    #[tokio::test]
    async fn send_all_splits_gso_runs() {
        send_burst_on_loopback("127.0.0.1").await;
    }

    /// Does the same over IPv6, where the host has an IPv6 loopback address.
    #[tokio::test]
    async fn send_all_splits_gso_runs_ipv6() {
        if let Err(error) = std::net::UdpSocket::bind("[::1]:0") {
            eprintln!("skipped: binding to [::1] failed: {error}");
            return;
        }
        send_burst_on_loopback("[::1]").await;
    }

    /// Sends [`burst`] from and to sockets on `host` and checks the counts and the receipt.
    async fn send_burst_on_loopback(host: &str) {
        let address = format!("{host}:0");
        let sender = BatchSocket::new(UdpSocket::bind(&address).await.unwrap()).unwrap();
        let first = std::net::UdpSocket::bind(&address).unwrap();
        let second = std::net::UdpSocket::bind(&address).unwrap();
        let (mut transmits, expected) = burst(
            &first.local_addr().unwrap().to_string(),
            &second.local_addr().unwrap().to_string(),
        );
        let sent = sender.send_all(&mut transmits).await;
        assert!(transmits.is_empty());
        assert_eq!(sent.datagrams, expected.len() as u64);
        // Runs of 4 (the shorter last datagram included), 2, 64, 10 and 1 datagrams, or one
        // message each without GSO.
        if sender.max_segments() > 1 {
            assert_eq!(sent.messages, 5);
        } else {
            assert_eq!(sent.messages, sent.datagrams);
        }
        assert_arrived(&[&first, &second], &expected);
    }

    /// Opens a UDP-Lite socket bound to `address`. Linux rejects UDP GSO on UDP-Lite with EIO.
    fn udp_lite(address: &str) -> io::Result<std::net::UdpSocket> {
        let address: SocketAddr = address.parse().unwrap();
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(address),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDPLITE),
        )?;
        socket.bind(&address.into())?;
        socket.set_nonblocking(true)?;
        Ok(socket.into())
    }

    /// Takes the fallback through the real kernel: the first send with UDP_SEGMENT fails, GSO
    /// stays off for the socket, and every datagram still arrives once, whole and in order.
    #[tokio::test]
    async fn send_all_gso_rejected() {
        for host in ["127.0.0.1", "[::1]"] {
            let address = format!("{host}:0");
            let (sender, first, second) =
                match (udp_lite(&address), udp_lite(&address), udp_lite(&address)) {
                    (Ok(sender), Ok(first), Ok(second)) => (sender, first, second),
                    (Err(error), ..) | (_, Err(error), _) | (.., Err(error)) => {
                        eprintln!("skipped for {host}: creating a UDP-Lite socket failed: {error}");
                        continue;
                    }
                };
            let sender = BatchSocket::new(UdpSocket::from_std(sender).unwrap()).unwrap();
            if sender.max_segments() == 1 {
                eprintln!("skipped for {host}: the kernel offers no UDP GSO");
                continue;
            }
            first.set_nonblocking(false).unwrap();
            second.set_nonblocking(false).unwrap();
            let (mut transmits, expected) = burst(
                &first.local_addr().unwrap().to_string(),
                &second.local_addr().unwrap().to_string(),
            );
            let sent = sender.send_all(&mut transmits).await;
            assert!(transmits.is_empty());
            if sender.max_segments() > 1 {
                // A later kernel may segment UDP-Lite. Then the fallback did not run, and the
                // runs must have arrived whole all the same.
                eprintln!("fallback not taken for {host}: the kernel sent GSO over UDP-Lite");
                assert_eq!(
                    sent.messages, 5,
                    "GSO stayed on, so each run is one message"
                );
            } else {
                // The first call carried a run and failed, so every datagram went out alone.
                assert_eq!(sent.messages, expected.len() as u64);
            }
            assert_eq!(sent.datagrams, expected.len() as u64);
            assert_arrived(&[&first, &second], &expected);

            // Later sends start without GSO and still deliver everything.
            let (mut transmits, expected) = burst(
                &first.local_addr().unwrap().to_string(),
                &second.local_addr().unwrap().to_string(),
            );
            let sent = sender.send_all(&mut transmits).await;
            assert_eq!(sent.datagrams, expected.len() as u64);
            assert_arrived(&[&first, &second], &expected);
        }
    }
}
