//! A Switchyard participant built from webrtc-rs peer connections: one signaling WebSocket, a
//! publisher connection on which the client offers, and a subscriber connection on which it
//! answers the server's offers.
//!
//! A driver task applies every server message to the right connection as it arrives, so offers
//! are answered while the test waits for something else. Everything the client sees becomes an
//! [`Event`] (or a [`ReceivedPacket`] for RTP) that the test consumes with a bounded wait.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rtc::interceptor::Slot;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use switchyard_proto::{
    Candidate, ClientFrame, ClientMessage, ParticipantInfo, ServerFrame, ServerMessage, Target,
    TrackKind,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceGatheringState,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription, Registry,
};

use crate::support::feedback::{DeliverKeyframeRequests, DELIVER_SLOT};
use crate::support::media::{MediaSender, OutgoingTrack};
use crate::support::signaling::{message_type, Signaling, SignalingEnd, SignalingSender};

/// Failure bound for every wait on the server or on ICE. On loopback on a 2-core machine a peer
/// connection took at most about 1.2 s to connect, so the margin covers a heavily loaded machine.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Something the client saw, in the order it happened.
#[derive(Clone, Debug)]
pub enum Event {
    /// A server message, after the driver applied it.
    Server(ServerMessage),
    /// The client sent its answer to a subscriber offer.
    SubscriberAnswered,
    /// A server message that carried `requestId`, reported right after its [`Event::Server`].
    Reply {
        request_id: String,
        /// The reply's `type`, such as `answer`, `ok` or `error`.
        reply_type: &'static str,
    },
    /// A peer connection changed state.
    ConnectionState(Target, RTCPeerConnectionState),
    /// A remote track opened on the subscriber connection.
    TrackOpened(Arc<RemoteTrack>),
    /// A remote track ended.
    TrackEnded(Arc<RemoteTrack>),
    /// A client-side step failed. The text names the step and the error.
    ClientFailure(String),
}

/// A track received on the subscriber connection.
pub struct RemoteTrack {
    /// Media stream id, which the server sets to the publisher's participant id.
    pub stream_id: String,
    pub track_id: String,
    pub kind: TrackKind,
    /// The webrtc-rs track, through which the subscriber sends RTCP feedback.
    remote: Arc<dyn TrackRemote>,
}

impl RemoteTrack {
    /// Sends RTCP packets, such as PLI or FIR, to the server as one compound packet.
    pub async fn send_rtcp(&self, packets: Vec<Box<dyn rtc::rtcp::Packet>>) {
        if let Err(error) = self.remote.write_rtcp(packets).await {
            panic!("sending RTCP on {self:?} failed: {error}");
        }
    }
}

impl std::fmt::Debug for RemoteTrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteTrack")
            .field("stream_id", &self.stream_id)
            .field("track_id", &self.track_id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Path of the publisher connection's media to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublisherRoute {
    /// Straight to the server's media socket.
    Direct,
    /// Through a [`crate::support::relay::UdpRelay`] with this client-side address. The
    /// server's publisher candidate is replaced by it, and the client's own publisher
    /// candidates are not sent, so the server learns only the relay's address, from the
    /// connectivity checks.
    Relay(SocketAddr),
}

/// One RTP packet received on the subscriber connection.
#[derive(Debug)]
pub struct ReceivedPacket {
    pub track: Arc<RemoteTrack>,
    /// SSRC the server sends the track on to this subscriber.
    pub ssrc: u32,
    pub payload_type: u8,
    /// MIME type that the subscriber connection negotiated for `payload_type` on this track, or
    /// `None` when that payload type was not negotiated.
    pub mime_type: Option<String>,
    pub payload: bytes::Bytes,
}

/// A send-only track on the publisher connection: its transceiver, kind, track and SSRC.
type SendOnlyTrack = (
    Arc<dyn webrtc::rtp_transceiver::RtpTransceiver>,
    TrackKind,
    Arc<TrackLocalStaticRTP>,
    u32,
);

/// Audio and video tracks offered on the publisher connection, not yet sending.
pub struct OfferedTracks {
    tracks: [SendOnlyTrack; 2],
}

/// Returns the request id of the participant's `number`th answer to a subscriber offer,
/// counting from 1.
pub fn subscriber_answer_id(number: u64) -> String {
    format!("subscriber-answer-{number}")
}

/// A joined participant with its two peer connections.
pub struct Participant {
    pub name: String,
    pub id: String,
    /// Participants already in the room when this one joined.
    pub present_at_join: Vec<ParticipantInfo>,
    signaling: SignalingSender,
    publisher: Arc<dyn PeerConnection>,
    subscriber: Arc<dyn PeerConnection>,
    events: mpsc::UnboundedReceiver<Event>,
    media: mpsc::UnboundedReceiver<ReceivedPacket>,
    /// Every event consumed so far, for later checks and failure transcripts.
    pub history: Vec<Event>,
    driver: JoinHandle<()>,
    signaling_tasks: (JoinHandle<SignalingEnd>, JoinHandle<()>),
}

impl Participant {
    /// Opens a signaling connection, joins `room` and builds both peer connections.
    pub async fn join(http_addr: SocketAddr, room: &str, name: &str) -> Participant {
        Participant::join_with_route(http_addr, room, name, PublisherRoute::Direct).await
    }

    /// Like [`Participant::join`], with the publisher connection's media on `route`.
    pub async fn join_with_route(
        http_addr: SocketAddr,
        room: &str,
        name: &str,
        route: PublisherRoute,
    ) -> Participant {
        Participant::join_with_hold(http_addr, room, name, route, None).await
    }

    /// Like [`Participant::join`], except that the client sends no answer to the first
    /// subscriber offer until the returned sender fires or is dropped. The offer is applied and
    /// reported as [`Event::Server`] first, and other server messages wait behind it.
    pub async fn join_holding_first_answer(
        http_addr: SocketAddr,
        room: &str,
        name: &str,
    ) -> (Participant, oneshot::Sender<()>) {
        let (release, hold) = oneshot::channel();
        let participant =
            Participant::join_with_hold(http_addr, room, name, PublisherRoute::Direct, Some(hold))
                .await;
        (participant, release)
    }

    async fn join_with_hold(
        http_addr: SocketAddr,
        room: &str,
        name: &str,
        route: PublisherRoute,
        hold: Option<oneshot::Receiver<()>>,
    ) -> Participant {
        let Signaling {
            sender,
            mut receiver,
            reader,
            writer,
        } = Signaling::connect(http_addr).await;
        send(
            &sender,
            ClientMessage::Join {
                room: room.to_owned(),
                name: name.to_owned(),
                token: None,
                identity: None,
            },
        );
        let first = tokio::time::timeout(WAIT_TIMEOUT, receiver.recv())
            .await
            .unwrap_or_else(|_| panic!("{name}: no reply to join within {WAIT_TIMEOUT:?}"))
            .map(|frame| frame.message);
        // `iceServers` goes unused: host candidates on loopback are all these tests need, and
        // no traffic may leave loopback.
        let Some(ServerMessage::Joined {
            participant_id,
            participants,
            ..
        }) = first
        else {
            panic!("{name}: expected `joined` as the reply to join, got {first:?}");
        };

        let (event_sender, events) = mpsc::unbounded_channel();
        let (media_sender, media) = mpsc::unbounded_channel();
        let handler = |target| PeerHandler {
            name: name.to_owned(),
            target,
            send_candidates: target == Target::Subscriber || route == PublisherRoute::Direct,
            signaling: sender.clone(),
            events: event_sender.clone(),
            media: media_sender.clone(),
        };
        let publisher = build_peer_connection(handler(Target::Publisher)).await;
        let subscriber = build_peer_connection(handler(Target::Subscriber)).await;

        let driver = tokio::spawn(drive(
            receiver,
            Arc::clone(&publisher),
            Arc::clone(&subscriber),
            sender.clone(),
            event_sender,
            route,
            hold,
        ));
        Participant {
            name: name.to_owned(),
            id: participant_id,
            present_at_join: participants,
            signaling: sender,
            publisher,
            subscriber,
            events,
            media,
            history: Vec::new(),
            driver,
            signaling_tasks: (reader, writer),
        }
    }

    /// Adds a send-only Opus track and a send-only VP8 track to the publisher connection, offers
    /// them, waits until the connection is up and starts writing test packets.
    pub async fn publish(&mut self) -> MediaSender {
        let offered = self.offer_tracks(None).await;
        self.start_publishing(offered).await
    }

    /// Adds a send-only Opus track and a send-only VP8 track to the publisher connection and
    /// sends the offer, with `request_id` as its `id` when given, without waiting for the
    /// answer. [`Participant::start_publishing`] finishes publishing.
    pub async fn offer_tracks(&mut self, request_id: Option<&str>) -> OfferedTracks {
        let audio = self.add_send_only_track(TrackKind::Audio).await;
        let video = self.add_send_only_track(TrackKind::Video).await;

        let offer = self
            .publisher
            .create_offer(None)
            .await
            .expect("publisher offer is created");
        self.publisher
            .set_local_description(offer.clone())
            .await
            .expect("publisher offer is applied locally");
        let frame = ClientFrame {
            id: request_id.map(str::to_owned),
            message: ClientMessage::Offer { sdp: offer.sdp },
        };
        let _ = self.signaling.send(frame);
        OfferedTracks {
            tracks: [audio, video],
        }
    }

    /// Waits until the publisher connection is up, then starts writing test packets on the
    /// offered tracks. An earlier wait may already have consumed the `Connected` event, so the
    /// last recorded state of the publisher connection counts too.
    pub async fn start_publishing(&mut self, offered: OfferedTracks) -> MediaSender {
        if !self.connected(Target::Publisher) {
            self.wait_for("the publisher connection to connect", |event| {
                connection_reached(event, Target::Publisher)
            })
            .await;
        }

        let mut tracks = Vec::new();
        for (transceiver, kind, track, ssrc) in offered.tracks {
            let payload_type = negotiated_payload_type(&transceiver, kind).await;
            tracks.push(OutgoingTrack {
                kind,
                track,
                ssrc,
                payload_type,
            });
        }
        MediaSender::start(tracks)
    }

    async fn add_send_only_track(&self, kind: TrackKind) -> SendOnlyTrack {
        let (codec, rtc_kind, ssrc) = match kind {
            TrackKind::Audio => (opus_codec(), RtpCodecKind::Audio, 0x5359_0001),
            TrackKind::Video => (vp8_codec(), RtpCodecKind::Video, 0x5359_0002),
        };
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            format!("{}-stream", self.name),
            format!("{}-{kind:?}", self.name),
            format!("{} {kind:?}", self.name),
            rtc_kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec,
                ..Default::default()
            }],
        )));
        let init = RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Sendonly,
            streams: vec![format!("{}-stream", self.name)],
            send_encodings: vec![],
        };
        let transceiver = self
            .publisher
            .add_transceiver_from_track(Arc::clone(&track) as Arc<dyn TrackLocal>, Some(init))
            .await
            .unwrap_or_else(|error| {
                panic!("{}: adding the {kind:?} track failed: {error}", self.name)
            });
        (transceiver, kind, track, ssrc)
    }

    /// Consumes events until `matcher` returns a value, and returns it. Panics with the event
    /// transcript on a server `error`, a client failure, or when [`WAIT_TIMEOUT`] passes.
    pub async fn wait_for<T>(
        &mut self,
        awaited: &str,
        mut matcher: impl FnMut(&Event) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + WAIT_TIMEOUT;
        loop {
            let event = match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => event,
                Ok(None) => panic!(
                    "{}: event channel closed while waiting for {awaited}",
                    self.name
                ),
                Err(_) => panic!(
                    "{}: timed out after {WAIT_TIMEOUT:?} waiting for {awaited}\n{}",
                    self.name,
                    self.transcript()
                ),
            };
            let event = self.record(event, awaited);
            if let Some(found) = matcher(&event) {
                return found;
            }
        }
    }

    /// Receives RTP until `count` audio and `count` video packets have arrived, passing every
    /// packet to `check`, which panics on a bad one, and returns the tracks they came on.
    /// Events that arrive meanwhile are recorded and checked for errors. Returns a description
    /// with the event transcript when [`WAIT_TIMEOUT`] passes first.
    pub async fn receive_media(
        &mut self,
        count: usize,
        mut check: impl FnMut(&ReceivedPacket),
    ) -> Result<Vec<Arc<RemoteTrack>>, String> {
        let deadline = Instant::now() + WAIT_TIMEOUT;
        let mut audio = 0;
        let mut video = 0;
        let mut tracks: Vec<Arc<RemoteTrack>> = Vec::new();
        let mut negotiated: HashMap<String, Vec<(u8, String)>> = HashMap::new();
        while audio < count || video < count {
            let packet = tokio::select! {
                packet = self.media.recv() => packet,
                event = self.events.recv() => {
                    if let Some(event) = event {
                        self.record(event, "media");
                    }
                    continue;
                }
                () = tokio::time::sleep_until(deadline) => {
                    return Err(format!(
                        "{}: timed out after {WAIT_TIMEOUT:?} waiting for media: {audio} of \
                         {count} audio and {video} of {count} video packets arrived\n{}",
                        self.name,
                        self.transcript()
                    ));
                }
            };
            let Some(mut packet) = packet else {
                panic!(
                    "{}: media channel closed while waiting for media",
                    self.name
                );
            };
            self.resolve_mime_type(&mut negotiated, &mut packet).await;
            check(&packet);
            match packet.track.kind {
                TrackKind::Audio => audio += 1,
                TrackKind::Video => video += 1,
            }
            if !tracks.iter().any(|track| Arc::ptr_eq(track, &packet.track)) {
                tracks.push(Arc::clone(&packet.track));
            }
        }
        Ok(tracks)
    }

    /// Sets the packet's MIME type from the codecs negotiated for its track, which `negotiated`
    /// caches per track id.
    async fn resolve_mime_type(
        &self,
        negotiated: &mut HashMap<String, Vec<(u8, String)>>,
        packet: &mut ReceivedPacket,
    ) {
        let track_id = &packet.track.track_id;
        if !negotiated.contains_key(track_id) {
            let codecs = self.negotiated_codecs(track_id).await;
            negotiated.insert(track_id.clone(), codecs);
        }
        packet.mime_type = negotiated[track_id]
            .iter()
            .find(|(payload_type, _)| *payload_type == packet.payload_type)
            .map(|(_, mime_type)| mime_type.clone());
    }

    /// Returns the payload types and MIME types that the subscriber connection negotiated for
    /// the remote track `track_id`.
    async fn negotiated_codecs(&self, track_id: &str) -> Vec<(u8, String)> {
        for receiver in self.subscriber.get_receivers().await {
            if receiver.track().track_id().await != track_id {
                continue;
            }
            let parameters = receiver.get_parameters().await.unwrap_or_else(|error| {
                panic!(
                    "{}: parameters of the receiver of {track_id} are not readable: {error}",
                    self.name
                )
            });
            return parameters
                .rtp_parameters
                .codecs
                .iter()
                .map(|codec| (codec.payload_type, codec.rtp_codec.mime_type.clone()))
                .collect();
        }
        panic!(
            "{}: no receiver on the subscriber connection has track {track_id}",
            self.name
        );
    }

    /// Records the events that are already queued, and panics on any error among them.
    pub fn record_queued_events(&mut self) {
        while let Ok(event) = self.events.try_recv() {
            self.record(event, "the end of the scenario");
        }
    }

    /// Discards RTP packets that are already queued.
    pub fn discard_received_media(&mut self) {
        while self.media.try_recv().is_ok() {}
    }

    /// Sends `leave`, checks that the server closes the WebSocket with code 1000, then closes
    /// both peer connections.
    pub async fn leave(mut self) {
        send(&self.signaling, ClientMessage::Leave);
        let end = match tokio::time::timeout(WAIT_TIMEOUT, &mut self.signaling_tasks.0).await {
            Ok(Ok(end)) => end,
            Ok(Err(error)) => panic!("{}: the signaling reader task failed: {error}", self.name),
            Err(_) => panic!(
                "{}: the server did not close the WebSocket within {WAIT_TIMEOUT:?} of leave",
                self.name
            ),
        };
        assert_eq!(
            end,
            SignalingEnd::Closed(Some(1000)),
            "{}: after leave the server should close the WebSocket with code 1000",
            self.name
        );
        self.close().await;
    }

    /// Closes the publisher connection only, without telling the server, while the WebSocket
    /// and the subscriber connection stay open.
    pub async fn close_publisher(&self) {
        if let Err(error) = self.publisher.close().await {
            panic!(
                "{}: closing the publisher connection failed: {error}",
                self.name
            );
        }
    }

    /// Closes both peer connections and stops the client's tasks.
    pub async fn close(self) {
        for pc in [&self.publisher, &self.subscriber] {
            if let Err(error) = pc.close().await {
                tracing::debug!(name = %self.name, %error, "closing a peer connection failed");
            }
        }
        self.driver.abort();
        self.signaling_tasks.0.abort();
        self.signaling_tasks.1.abort();
    }

    /// Adds an event to the history and returns it, or panics when it reports a failure.
    fn record(&mut self, event: Event, awaited: &str) -> Event {
        let failure = match &event {
            Event::Server(ServerMessage::Error { code, message }) => {
                Some(format!("server sent error {code:?}: {message}"))
            }
            Event::ClientFailure(failure) => Some(failure.clone()),
            _ => None,
        };
        self.history.push(event.clone());
        if let Some(failure) = failure {
            panic!(
                "{}: {failure} (while waiting for {awaited})\n{}",
                self.name,
                self.transcript()
            );
        }
        event
    }

    /// Returns true when the last recorded state of the `target` connection is `Connected`.
    pub fn connected(&self, target: Target) -> bool {
        let last_state = self.history.iter().rev().find_map(|event| match event {
            Event::ConnectionState(changed, state) if *changed == target => Some(*state),
            _ => None,
        });
        last_state == Some(RTCPeerConnectionState::Connected)
    }

    /// Describes every event so far, one per line, with SDP left out.
    pub fn transcript(&self) -> String {
        let mut lines = vec![format!("events of {} ({}):", self.name, self.id)];
        for event in &self.history {
            lines.push(format!("  {}", describe(event)));
        }
        lines.join("\n")
    }

    /// Returns the server messages received so far, in order.
    pub fn server_messages(&self) -> impl Iterator<Item = &ServerMessage> {
        self.history.iter().filter_map(|event| match event {
            Event::Server(message) => Some(message),
            _ => None,
        })
    }
}

/// Returns `Some(())` when `event` is `target`'s connection reaching `connected`, and panics
/// when it failed.
pub fn connection_reached(event: &Event, target: Target) -> Option<()> {
    match event {
        Event::ConnectionState(changed, state) if *changed == target => match state {
            RTCPeerConnectionState::Connected => Some(()),
            RTCPeerConnectionState::Failed => panic!("the {target:?} connection failed"),
            _ => None,
        },
        _ => None,
    }
}

fn describe(event: &Event) -> String {
    match event {
        Event::Server(ServerMessage::Offer { .. }) => "server: offer".to_owned(),
        Event::Server(ServerMessage::Answer { .. }) => "server: answer".to_owned(),
        Event::Server(message) => format!(
            "server: {} {}",
            message_type(message),
            serde_json::to_string(message).unwrap_or_default()
        ),
        Event::TrackOpened(track) => format!("track opened: {track:?}"),
        Event::TrackEnded(track) => format!("track ended: {track:?}"),
        other => format!("{other:?}"),
    }
}

/// Returns `candidate` with its address and port replaced by `address`.
fn with_address(candidate: &str, address: SocketAddr) -> Result<String, String> {
    // candidate:<foundation> <component> <transport> <priority> <address> <port> typ ...
    let mut fields: Vec<String> = candidate.split_whitespace().map(str::to_owned).collect();
    if fields.len() < 6 {
        return Err(format!(
            "server candidate {candidate:?} has no address and port"
        ));
    }
    fields[4] = address.ip().to_string();
    fields[5] = address.port().to_string();
    Ok(fields.join(" "))
}

fn is_loopback(address: &str) -> bool {
    address
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

fn send(signaling: &SignalingSender, message: ClientMessage) {
    // The writer task only stops when the connection fails; the reader reports that.
    let _ = signaling.send(ClientFrame { id: None, message });
}

fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

fn vp8_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: 90000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

/// Returns the payload type that the answer assigned to the track's codec.
async fn negotiated_payload_type(
    transceiver: &Arc<dyn webrtc::rtp_transceiver::RtpTransceiver>,
    kind: TrackKind,
) -> u8 {
    let mime_type = match kind {
        TrackKind::Audio => MIME_TYPE_OPUS,
        TrackKind::Video => MIME_TYPE_VP8,
    };
    let sender = transceiver
        .sender()
        .await
        .expect("transceiver is alive")
        .expect("send-only transceiver has a sender");
    let parameters = sender
        .get_parameters()
        .await
        .expect("sender parameters are readable");
    parameters
        .rtp_parameters
        .codecs
        .iter()
        .find(|codec| codec.rtp_codec.mime_type.eq_ignore_ascii_case(mime_type))
        .map(|codec| codec.payload_type)
        .unwrap_or_else(|| {
            panic!(
                "the server's answer has no {mime_type} for the {kind:?} track; negotiated: {:?}",
                parameters.rtp_parameters.codecs
            )
        })
}

/// Builds a peer connection with the default codecs and interceptors, plus delivery of inbound
/// keyframe requests to the sent tracks, that binds one UDP socket on 127.0.0.1, so its only
/// host candidate is on loopback.
async fn build_peer_connection(handler: PeerHandler) -> Arc<dyn PeerConnection> {
    let name = format!("{} {:?}", handler.name, handler.target);
    let mut media_engine = MediaEngine::default();
    media_engine
        .register_default_codecs()
        .expect("default codecs register");
    let registry = register_default_interceptors(Registry::new(), &mut media_engine)
        .expect("default interceptors register")
        .with(Slot::from(DELIVER_SLOT), DeliverKeyframeRequests::default());
    // With mDNS disabled no multicast socket is opened, and host candidates carry the plain
    // loopback address.
    let settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .build();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(media_engine)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .with_handler(Arc::new(handler))
        .with_udp_addrs(vec![SocketAddr::from(([127, 0, 0, 1], 0))])
        .build()
        .await
        .unwrap_or_else(|error| panic!("{name}: building the peer connection failed: {error}"));
    Arc::new(pc)
}

/// Applies server messages in arrival order and reports each one as an [`Event`].
///
/// Subscriber offers are answered after they are reported. When `hold` is given, the first one
/// is answered only after it fires or its sender is dropped. Answers carry
/// [`subscriber_answer_id`] as their request id.
async fn drive(
    mut receiver: mpsc::UnboundedReceiver<ServerFrame>,
    publisher: Arc<dyn PeerConnection>,
    subscriber: Arc<dyn PeerConnection>,
    signaling: SignalingSender,
    events: mpsc::UnboundedSender<Event>,
    route: PublisherRoute,
    mut hold: Option<oneshot::Receiver<()>>,
) {
    let mut answers = 0;
    while let Some(frame) = receiver.recv().await {
        let ServerFrame {
            request_id,
            message,
            ..
        } = frame;
        let outcome = apply(&message, &publisher, &subscriber, route).await;
        let is_offer = matches!(message, ServerMessage::Offer { .. });
        let reply_type = message_type(&message);
        let _ = events.send(Event::Server(message));
        if let Some(request_id) = request_id {
            let _ = events.send(Event::Reply {
                request_id,
                reply_type,
            });
        }

        let outcome = match outcome {
            Ok(()) if is_offer => {
                answers += 1;
                answer_offer(&subscriber, &signaling, hold.take(), answers).await
            }
            other => other,
        };
        match outcome {
            Err(failure) => {
                let _ = events.send(Event::ClientFailure(failure));
            }
            Ok(()) if is_offer => {
                let _ = events.send(Event::SubscriberAnswered);
            }
            Ok(()) => {}
        }
    }
}

/// Sends the answer to the subscriber offer that [`apply`] set, as answer number `number`,
/// after `hold` fires or its sender is dropped.
async fn answer_offer(
    subscriber: &Arc<dyn PeerConnection>,
    signaling: &SignalingSender,
    hold: Option<oneshot::Receiver<()>>,
    number: u64,
) -> Result<(), String> {
    if let Some(hold) = hold {
        if tokio::time::timeout(WAIT_TIMEOUT, hold).await.is_err() {
            return Err(format!(
                "the held subscriber answer was not released within {WAIT_TIMEOUT:?}"
            ));
        }
    }
    let answer = subscriber
        .create_answer(None)
        .await
        .map_err(|error| format!("no answer to the server offer: {error}"))?;
    subscriber
        .set_local_description(answer.clone())
        .await
        .map_err(|error| format!("subscriber answer could not be applied: {error}"))?;
    let frame = ClientFrame::request(
        subscriber_answer_id(number),
        ClientMessage::Answer { sdp: answer.sdp },
    );
    let _ = signaling.send(frame);
    Ok(())
}

/// Applies a server message to the peer connection it belongs to. A subscriber offer is only
/// set as the remote description, and [`answer_offer`] answers it.
async fn apply(
    message: &ServerMessage,
    publisher: &Arc<dyn PeerConnection>,
    subscriber: &Arc<dyn PeerConnection>,
    route: PublisherRoute,
) -> Result<(), String> {
    match message {
        ServerMessage::Answer { sdp } => {
            let answer = RTCSessionDescription::answer(sdp.clone())
                .map_err(|error| format!("server answer does not parse: {error}"))?;
            publisher
                .set_remote_description(answer)
                .await
                .map_err(|error| format!("server answer could not be applied: {error}"))
        }
        ServerMessage::Offer { sdp } => {
            let offer = RTCSessionDescription::offer(sdp.clone())
                .map_err(|error| format!("server offer does not parse: {error}"))?;
            subscriber
                .set_remote_description(offer)
                .await
                .map_err(|error| format!("server offer could not be applied: {error}"))
        }
        ServerMessage::Candidate { target, candidate } if !candidate.is_end_of_candidates() => {
            // candidate:<foundation> <component> <transport> <priority> <address> <port> typ ...
            let address = candidate.candidate.split_whitespace().nth(4).unwrap_or("");
            if !is_loopback(address) {
                return Err(format!(
                    "server {target:?} candidate {:?} is not on a loopback address",
                    candidate.candidate
                ));
            }
            let pc = match target {
                Target::Publisher => publisher,
                Target::Subscriber => subscriber,
            };
            let candidate_line = match (target, route) {
                (Target::Publisher, PublisherRoute::Relay(relay)) => {
                    with_address(&candidate.candidate, relay)?
                }
                _ => candidate.candidate.clone(),
            };
            let init = RTCIceCandidateInit {
                candidate: candidate_line,
                sdp_mid: candidate.sdp_mid.clone(),
                sdp_mline_index: candidate.sdp_mline_index,
                username_fragment: candidate.username_fragment.clone(),
                ..Default::default()
            };
            pc.add_ice_candidate(init).await.map_err(|error| {
                format!("server {target:?} candidate {candidate:?} was rejected: {error}")
            })
        }
        _ => Ok(()),
    }
}

/// Callbacks of one peer connection: trickles local candidates to the server and reports state
/// changes and remote tracks.
struct PeerHandler {
    name: String,
    target: Target,
    /// False when the connection's media goes through a relay, whose address the server learns
    /// from the connectivity checks instead.
    send_candidates: bool,
    signaling: SignalingSender,
    events: mpsc::UnboundedSender<Event>,
    media: mpsc::UnboundedSender<ReceivedPacket>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for PeerHandler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if !is_loopback(&event.candidate.address) {
            let failure = format!(
                "local {:?} candidate on {}, which is not a loopback address",
                self.target, event.candidate.address
            );
            let _ = self.events.send(Event::ClientFailure(failure));
            return;
        }
        if !self.send_candidates {
            return;
        }
        let init = match event.candidate.to_json() {
            Ok(init) => init,
            Err(error) => {
                let failure = format!(
                    "local {:?} candidate has no JSON form: {error}",
                    self.target
                );
                let _ = self.events.send(Event::ClientFailure(failure));
                return;
            }
        };
        let candidate = Candidate {
            candidate: init.candidate,
            sdp_mid: init.sdp_mid,
            sdp_mline_index: init.sdp_mline_index,
            username_fragment: init.username_fragment,
        };
        send(
            &self.signaling,
            ClientMessage::Candidate {
                target: self.target,
                candidate,
            },
        );
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let end_of_candidates = ClientMessage::Candidate {
                target: self.target,
                candidate: Candidate::default(),
            };
            send(&self.signaling, end_of_candidates);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(name = %self.name, target = ?self.target, %state, "connection state");
        let _ = self.events.send(Event::ConnectionState(self.target, state));
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        // Reading runs on its own task so this callback returns to the connection's driver.
        tokio::spawn(read_track(track, self.events.clone(), self.media.clone()));
    }
}

/// Reports a remote track, then forwards its RTP packets until it ends.
async fn read_track(
    track: Arc<dyn TrackRemote>,
    events: mpsc::UnboundedSender<Event>,
    media: mpsc::UnboundedSender<ReceivedPacket>,
) {
    let kind = match track.kind().await {
        RtpCodecKind::Audio => TrackKind::Audio,
        _ => TrackKind::Video,
    };
    let remote = Arc::new(RemoteTrack {
        stream_id: track.stream_id().await,
        track_id: track.track_id().await,
        kind,
        remote: Arc::clone(&track),
    });
    let _ = events.send(Event::TrackOpened(Arc::clone(&remote)));

    while let Some(event) = track.poll().await {
        match event {
            TrackRemoteEvent::OnRtpPacket(packet) => {
                let received = ReceivedPacket {
                    track: Arc::clone(&remote),
                    ssrc: packet.header.ssrc,
                    payload_type: packet.header.payload_type,
                    // Filled in by `Participant::receive_media`, which can reach the connection.
                    mime_type: None,
                    payload: packet.payload,
                };
                if media.send(received).is_err() {
                    return;
                }
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
    let _ = events.send(Event::TrackEnded(remote));
}
