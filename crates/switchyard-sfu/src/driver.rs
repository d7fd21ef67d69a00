//! The tokio task that owns one media socket and one [`Sfu`] state machine (a shard).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{error, info, trace};

use crate::batch::{BatchSocket, BATCH};
use crate::handle::Command;
use crate::metrics::DropReason;
use crate::remote::ShardMessage;
use crate::sfu::{Sfu, Transmit};

/// How long the loop sleeps when no timer is pending.
const IDLE_WAIT: Duration = Duration::from_secs(3600);

/// Datagrams that may wait for a shard after another shard's socket read them. More are dropped,
/// as a full socket buffer would drop them.
pub(crate) const INBOX_CAPACITY: usize = 4096;

/// Receive times kept per batch for the delay histogram. A batch read with UDP GRO can hold
/// more RTP datagrams than this, and the rest of them are not measured.
const DELAY_SAMPLES: usize = 4 * BATCH;

/// Datagrams of one read that are drained and sent together. Runs for GSO grow up to this
/// length, and the first packet of a full read with GRO waits for the copies of this many
/// packets instead of all of them.
const DATAGRAMS_PER_DRAIN: usize = 8;

/// A datagram that another shard's socket read for this shard's peers: its source, its bytes and
/// the kernel's receive time.
pub(crate) type Forwarded = (SocketAddr, Vec<u8>, Option<Duration>);

/// Channel of datagrams that another shard's socket read for this shard's peers.
pub(crate) type InboxSender = mpsc::Sender<Forwarded>;

/// RTP packets from other shards that may wait for a shard. More are dropped, as a full
/// socket buffer would drop them.
pub(crate) const MEDIA_INBOX_CAPACITY: usize = 4096;

/// The channels that carry [`ShardMessage`]s to one shard: RTP on a bounded one, everything
/// else on an unbounded one, so that track and keyframe messages are never dropped.
#[derive(Clone)]
pub(crate) struct ShardLink {
    pub control: mpsc::UnboundedSender<ShardMessage>,
    pub media: mpsc::Sender<ShardMessage>,
}

/// Everything a shard receives besides its socket's datagrams.
pub(crate) struct Mailboxes {
    pub commands: mpsc::UnboundedReceiver<Command>,
    pub inbox: mpsc::Receiver<Forwarded>,
    /// Every shard's inbox, indexed by shard.
    pub shards: Arc<[InboxSender]>,
    /// Track and keyframe messages from other shards.
    pub control: mpsc::UnboundedReceiver<ShardMessage>,
    /// RTP from other shards.
    pub media: mpsc::Receiver<ShardMessage>,
    /// Every shard's links, indexed by shard.
    pub links: Arc<[ShardLink]>,
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
        flush(
            &mut sfu,
            &socket,
            &mailboxes.links,
            &mut transmits,
            &mut received_at,
        )
        .await;

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
                    let mut datagrams = socket.datagrams().peekable();
                    while datagrams.peek().is_some() {
                        handle_read(
                            &mut sfu,
                            &mailboxes.shards,
                            now,
                            datagrams.by_ref().take(DATAGRAMS_PER_DRAIN),
                            &mut received_at,
                        );
                        // The copies of a large room leave before the next part of the read
                        // is handled, so its first packets do not wait for all of it.
                        flush(
                            &mut sfu,
                            &socket,
                            &mailboxes.links,
                            &mut transmits,
                            &mut received_at,
                        )
                        .await;
                    }
                }
                // The socket branch wins every turn while datagrams keep arriving, so what
                // other shards sent is taken here as well.
                handle_mailboxes(&mut sfu, &mut mailboxes, &mut received_at);
            },
            Some(datagram) = mailboxes.inbox.recv() => {
                handle_inbox_datagram(&mut sfu, datagram, &mut received_at);
                handle_mailboxes(&mut sfu, &mut mailboxes, &mut received_at);
            },
            Some(message) = mailboxes.control.recv() => {
                sfu.handle_shard_message(Instant::now(), message);
                handle_mailboxes(&mut sfu, &mut mailboxes, &mut received_at);
            },
            Some(message) = mailboxes.media.recv() => {
                // A track's RTP is sent after its TrackAdded, but on another channel, so the
                // track messages that are waiting go first.
                handle_control(&mut sfu, &mut mailboxes.control);
                handle_media(&mut sfu, message, &mut received_at);
                handle_mailboxes(&mut sfu, &mut mailboxes, &mut received_at);
            },
            () = timer => sfu.handle_timeout(Instant::now()),
        }
    }
    info!(shard = sfu.shard, "SFU shard stopped");
}

/// Hands the shard's messages to other shards, sends its datagrams, and records the delay of
/// the RTP datagrams handled since the last flush.
async fn flush(
    sfu: &mut Sfu,
    socket: &BatchSocket,
    links: &[ShardLink],
    transmits: &mut Vec<Transmit>,
    received_at: &mut Vec<Duration>,
) {
    send_to_shards(sfu, links, received_at);
    transmits.extend(std::iter::from_fn(|| sfu.poll_transmit()));
    if !transmits.is_empty() {
        let sent = socket.send_all(transmits).await;
        sfu.counters.sent(sent.messages, sent.datagrams);
    }
    record_delays(sfu, received_at);
}

/// Messages or datagrams taken from each channel from other shards in one call of
/// [`handle_mailboxes`].
const MAILBOX_BATCH: usize = 64;

/// Handles, without waiting, what other shards sent: track and keyframe messages first, then
/// RTP and forwarded datagrams, at most [`MAILBOX_BATCH`] of each of those two. Their output is sent together
/// at the next turn of the loop.
fn handle_mailboxes(sfu: &mut Sfu, mailboxes: &mut Mailboxes, received_at: &mut Vec<Duration>) {
    handle_control(sfu, &mut mailboxes.control);
    for _ in 0..MAILBOX_BATCH {
        let Ok(message) = mailboxes.media.try_recv() else {
            break;
        };
        handle_media(sfu, message, received_at);
    }
    for _ in 0..MAILBOX_BATCH {
        let Ok(datagram) = mailboxes.inbox.try_recv() else {
            break;
        };
        handle_inbox_datagram(sfu, datagram, received_at);
    }
}

/// Track and keyframe messages taken in one call of [`handle_control`]. They are few, because
/// keyframe requests are throttled per track, so this bound is only a guard. A track's RTP is
/// dropped when it arrives before its TrackAdded was handled.
const CONTROL_BATCH: usize = 1024;

/// Handles up to [`CONTROL_BATCH`] waiting track and keyframe messages.
fn handle_control(sfu: &mut Sfu, control: &mut mpsc::UnboundedReceiver<ShardMessage>) {
    let now = Instant::now();
    for _ in 0..CONTROL_BATCH {
        let Ok(message) = control.try_recv() else {
            break;
        };
        sfu.handle_shard_message(now, message);
    }
}

/// Forwards one RTP packet from another shard, and keeps its receive time for the delay
/// histogram.
fn handle_media(sfu: &mut Sfu, message: ShardMessage, received_at: &mut Vec<Duration>) {
    if let ShardMessage::Rtp {
        received: Some(at), ..
    } = &message
    {
        if received_at.len() < DELAY_SAMPLES {
            received_at.push(*at);
        }
    }
    sfu.handle_shard_message(Instant::now(), message);
}

/// Handles a datagram that another shard's socket read for this shard's peers.
fn handle_inbox_datagram(sfu: &mut Sfu, datagram: Forwarded, received_at: &mut Vec<Duration>) {
    let (source, payload, timestamp) = datagram;
    if sfu.handle_datagram(Instant::now(), source, &payload) {
        note_receipt(received_at, &payload, timestamp);
    } else {
        trace!(%source, "datagram for a peer that has left dropped");
    }
}

/// Sends the messages the shard queued for other shards. Each RTP packet carries the earliest
/// receive time in `received_at`, which contains those of the datagrams handled since the last
/// send. RTP that does not fit a full media inbox is dropped and counted.
fn send_to_shards(sfu: &mut Sfu, links: &[ShardLink], received_at: &[Duration]) {
    let earliest = received_at.iter().min().copied();
    for (shard, mut message) in sfu.shard_out.drain(..) {
        let Some(link) = links.get(shard) else {
            continue;
        };
        match message {
            ShardMessage::Rtp {
                ref mut received, ..
            } => {
                *received = received.or(earliest);
                if link.media.try_send(message).is_ok() {
                    sfu.counters.shard_copy();
                } else {
                    sfu.counters.rtp_dropped(DropReason::ShardInboxFull);
                    trace!(shard, "media inbox of another shard full; RTP dropped");
                }
            }
            // The receiving shard stops only when every handle is gone, and then so does this
            // one, so a failed send is harmless.
            message => {
                let _ = link.control.send(message);
            }
        }
    }
}

/// Feeds datagrams of one socket read, at most [`DATAGRAMS_PER_DRAIN`], to the shard or to the
/// shards that own their peers.
///
/// RTP and RTCP wait for one drain at the end. That keeps the copies of a burst for one
/// subscriber together, and the send after it passes each such run to the kernel as one GSO
/// buffer. A STUN or DTLS datagram is drained at once. It can change a connection's
/// state, and `rtc` hands such a change on inside the connection only when its events are
/// polled: the DTLS handshake's end gives the SRTP layer its keys that way. Without the drain,
/// the SRTP packets that a browser sends right behind its last handshake flight, in the same
/// read, would find no keys and be dropped.
fn handle_read<'a>(
    sfu: &mut Sfu,
    shards: &[InboxSender],
    now: Instant,
    datagrams: impl IntoIterator<Item = (SocketAddr, &'a [u8], Option<Duration>)>,
    received_at: &mut Vec<Duration>,
) {
    for (source, payload, timestamp) in datagrams {
        // A datagram passed to another shard is timed, and drained, by that shard.
        if dispatch(sfu, shards, now, source, payload, timestamp) {
            note_receipt(received_at, payload, timestamp);
            if !is_rtp_or_rtcp(payload) {
                sfu.drain_dirty(now);
            }
        }
    }
    sfu.drain_dirty(now);
}

/// True for RTP and RTCP: first byte 128 to 191 (RFC 7983). STUN and DTLS start lower.
fn is_rtp_or_rtcp(datagram: &[u8]) -> bool {
    datagram
        .first()
        .is_some_and(|first| (128..=191).contains(first))
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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use bytes::{Bytes, BytesMut};
    use rtc::media_stream::MediaStreamTrack;
    use rtc::peer_connection::configuration::media_engine::{MediaEngine, MIME_TYPE_VP8};
    use rtc::peer_connection::configuration::RTCConfigurationBuilder;
    use rtc::peer_connection::event::RTCPeerConnectionEvent;
    use rtc::peer_connection::state::RTCPeerConnectionState;
    use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
    use rtc::rtp_transceiver::rtp_sender::{
        RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
        RtpCodecKind,
    };
    use rtc::sansio::Protocol;
    use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
    use switchyard_proto::ServerMessage;
    use tokio::sync::mpsc;

    use super::handle_read;
    use crate::handle::Command;
    use crate::peer::host_candidate;
    use crate::sfu::Sfu;
    use crate::SfuConfig;

    const SSRC: u32 = 0x5157_0001;

    fn vp8() -> RTCRtpCodec {
        RTCRtpCodec {
            mime_type: MIME_TYPE_VP8.to_owned(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: String::new(),
            rtcp_feedback: vec![],
        }
    }

    /// Builds a publishing client at `address` that offers one VP8 track.
    fn publisher(now: Instant, address: SocketAddr) -> RTCPeerConnection {
        let mut media_engine = MediaEngine::default();
        media_engine
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: vp8(),
                    payload_type: 96,
                },
                RtpCodecKind::Video,
            )
            .unwrap();
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media_engine)
            .build(now)
            .unwrap();
        pc.add_track(MediaStreamTrack::new(
            "client".to_owned(),
            "video".to_owned(),
            "video".to_owned(),
            RtpCodecKind::Video,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(SSRC),
                    ..Default::default()
                },
                codec: vp8(),
                ..Default::default()
            }],
        ))
        .unwrap();
        pc.add_local_candidate(host_candidate(address).unwrap())
            .unwrap();
        pc
    }

    /// The SFU's SDP answer carries `a=setup:active`, so the browser is the DTLS server. Its
    /// last handshake flight completes the SFU's handshake, and it sends SRTP right behind that
    /// flight. When both arrive in one read, the SFU must still accept the SRTP.
    #[test]
    fn handle_read_srtp_after_last_flight() {
        let sfu_address: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let client_address: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let mut now = Instant::now();
        let mut sfu = Sfu::new(SfuConfig::default(), sfu_address, sfu_address).unwrap();
        let mut client = publisher(now, client_address);

        let (events, mut replies) = mpsc::unbounded_channel();
        sfu.handle_command(
            now,
            Command::Join {
                room: "room".into(),
                participant_id: "client".into(),
                subscribe: false,
                events,
            },
        );
        let offer = client.create_offer(None).unwrap();
        client.set_local_description(now, offer.clone()).unwrap();
        sfu.handle_command(
            now,
            Command::PublishOffer {
                participant_id: "client".into(),
                request_id: None,
                sdp: offer.sdp,
            },
        );
        let mut answer = None;
        while let Ok(frame) = replies.try_recv() {
            if let ServerMessage::Answer { sdp } = &frame.message {
                answer = Some(sdp.clone());
            }
        }
        let answer = answer.expect("the SFU answers the offer");
        assert!(answer.contains("a=setup:active"), "{answer}");
        let description = rtc::peer_connection::sdp::RTCSessionDescription::answer(answer).unwrap();
        client.set_remote_description(now, description).unwrap();
        client
            .add_remote_candidate(sfu.host_candidate.clone())
            .unwrap();
        let sender = client
            .get_senders()
            .next()
            .expect("the client has a sender");

        let shards: Vec<super::InboxSender> = Vec::new();
        let mut received_at = Vec::new();
        let mut media_sent = false;
        for _ in 0..10_000 {
            // Everything the client wrote since the last turn.
            let mut batch: Vec<BytesMut> = std::iter::from_fn(|| client.poll_write())
                .map(|transmit| transmit.message)
                .collect();
            let mut connected = false;
            while let Some(event) = client.poll_event() {
                if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) = event {
                    assert_ne!(state, RTCPeerConnectionState::Failed);
                    connected |= state == RTCPeerConnectionState::Connected;
                }
            }
            if connected {
                // The client's handshake ended in this turn, so `batch` contains its last flight.
                // Its first media packet follows in the same read.
                let packet = rtc::rtp::Packet {
                    header: rtc::rtp::header::Header {
                        version: 2,
                        payload_type: 96,
                        sequence_number: 1,
                        timestamp: 3000,
                        ssrc: SSRC,
                        ..Default::default()
                    },
                    payload: Bytes::from_static(&[0x10, 0, 0, 0x9d, 1, 0x2a]),
                };
                let mut rtp_sender = client.rtp_sender(sender).unwrap();
                rtp_sender.write_rtp(now, packet).unwrap();
                let flight = batch.len();
                batch.extend(std::iter::from_fn(|| client.poll_write()).map(|t| t.message));
                assert!(
                    flight > 0 && batch.len() > flight,
                    "{flight} of {}",
                    batch.len()
                );
                media_sent = true;
            }
            handle_read(
                &mut sfu,
                &shards,
                now,
                batch
                    .iter()
                    .map(|datagram| (client_address, &datagram[..], None)),
                &mut received_at,
            );
            if media_sent {
                break;
            }
            let mut idle = true;
            while let Some(transmit) = sfu.poll_transmit() {
                idle = false;
                assert_eq!(transmit.destination, client_address);
                client
                    .handle_read(TaggedBytesMut {
                        now,
                        transport: TransportContext {
                            local_addr: client_address,
                            peer_addr: sfu_address,
                            ecn: None,
                            transport_protocol: TransportProtocol::UDP,
                        },
                        message: transmit.payload,
                    })
                    .unwrap();
            }
            if idle && batch.is_empty() {
                // Nothing in flight: move the clock to the next timer.
                let next = [client.poll_timeout(), sfu.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap_or(now + Duration::from_millis(10));
                now = next.max(now + Duration::from_millis(1));
                client.handle_timeout(now).unwrap();
                sfu.handle_timeout(now);
            }
        }
        assert!(media_sent, "the client never connected");
        assert_eq!(
            sfu.counters.snapshot().received_packets,
            1,
            "the SFU dropped the RTP packet behind the handshake's last flight"
        );
    }
}
