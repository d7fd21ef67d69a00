//! Published tracks, subscriptions, RTP forwarding and keyframe requests.

use std::collections::HashMap;
use std::time::Instant;

use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::event::RTCTrackEventInit;
use rtc::peer_connection::message::RTCMessage;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::Packet as RtcpPacket;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{
    RTCRtpReceiverId, RTCRtpSenderId, RTCRtpTransceiverDirection, RTCRtpTransceiverInit,
};
use switchyard_proto::{ServerMessage, Target, TrackKind};
use tracing::{debug, info, trace};

use crate::metrics::DropReason;
use crate::peer::random_token;
use crate::remote::{RemoteTrack, ShardMessage};
use crate::sfu::{ParticipantKey, PeerKey, Sfu, KEYFRAME_REQUEST_INTERVAL};

/// A track received on a publisher connection.
pub(crate) struct PublishedTrack {
    /// Track id inside the publisher's own peer connection.
    pub rtc_track_id: String,
    pub receiver_id: RTCRtpReceiverId,
    pub ssrc: u32,
    pub kind: TrackKind,
    /// Id shown to subscribers (`a=msid` and `track_added`). Fresh for every published track, so
    /// a publisher that rejoins never revives an ended track on a subscriber.
    pub id: String,
    /// Codec of the media, known from the first media packet. Subscribers get the track then.
    pub codec: Option<RTCRtpCodec>,
    /// Payload types negotiated on the publisher connection.
    pub incoming_codecs: Vec<(u8, RTCRtpCodec)>,
    pub keyframe_throttle: KeyframeThrottle,
    /// Id of the track across shards, see [`Sfu::new_global_track_id`].
    pub global: u64,
}

/// Outcome of a keyframe request against the throttle.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KeyframeDecision {
    /// Send a PLI now.
    SendNow,
    /// A PLI went out recently; send one at this time unless one is sent before.
    SendAt(Instant),
}

/// Limits keyframe requests to one publisher track to one per [`KEYFRAME_REQUEST_INTERVAL`],
/// without losing a request: one that arrives inside the interval is held until it ends.
#[derive(Debug, Default)]
pub(crate) struct KeyframeThrottle {
    last_sent: Option<Instant>,
    pending: bool,
}

impl KeyframeThrottle {
    /// Records a request and decides when its PLI goes out.
    pub fn request(&mut self, now: Instant) -> KeyframeDecision {
        if let Some(last) = self.last_sent {
            let allowed_at = last + KEYFRAME_REQUEST_INTERVAL;
            if now < allowed_at {
                self.pending = true;
                return KeyframeDecision::SendAt(allowed_at);
            }
        }
        self.last_sent = Some(now);
        self.pending = false;
        KeyframeDecision::SendNow
    }

    /// Returns true when a held request is waiting.
    pub fn is_pending(&self) -> bool {
        self.pending
    }
}

/// A published track sent to one subscriber.
pub(crate) struct Subscription {
    pub publisher: ParticipantKey,
    /// Public id of the published track; also the sender's track id on this connection.
    pub track_id: String,
    pub sender_id: RTCRtpSenderId,
    pub ssrc: u32,
    pub kind: TrackKind,
    /// Incoming payload type to the one negotiated on this subscriber connection. Cleared after
    /// each renegotiation.
    pub payload_types: HashMap<u8, u8>,
}

/// One RTP packet of a track on its way to subscribers.
#[derive(Clone, Copy)]
pub(crate) struct Outgoing<'a> {
    /// Local key of the publisher, or of its stand-in when it is on another shard.
    pub publisher: ParticipantKey,
    pub track_id: &'a str,
    /// Codec of the packet's payload type on the publisher connection.
    pub codec: &'a RTCRtpCodec,
    pub payload_type: u8,
    pub payload_bytes: usize,
    pub packet: &'a rtc::rtp::Packet,
}

fn track_kind(kind: RtpCodecKind) -> TrackKind {
    match kind {
        RtpCodecKind::Audio => TrackKind::Audio,
        _ => TrackKind::Video,
    }
}

/// Returns the media SSRCs that the PLIs and FIRs among `packets` request a keyframe for, each
/// once, in ascending order.
fn keyframe_request_ssrcs(packets: &[Box<dyn RtcpPacket>]) -> Vec<u32> {
    let mut ssrcs = Vec::new();
    for packet in packets {
        let packet = packet.as_any();
        if let Some(pli) = packet.downcast_ref::<PictureLossIndication>() {
            ssrcs.push(pli.media_ssrc);
        } else if let Some(fir) = packet.downcast_ref::<FullIntraRequest>() {
            ssrcs.extend(fir.fir.iter().map(|entry| entry.ssrc));
        }
    }
    ssrcs.sort_unstable();
    ssrcs.dedup();
    ssrcs
}

/// Returns the codec negotiated for `payload_type` among a publisher's `codecs`.
pub(crate) fn codec_of(codecs: &[(u8, RTCRtpCodec)], payload_type: u8) -> Option<RTCRtpCodec> {
    codecs
        .iter()
        .find(|(pt, _)| *pt == payload_type)
        .map(|(_, codec)| codec.clone())
}

fn is_same_codec(a: &RTCRtpCodec, b: &RTCRtpCodec) -> bool {
    a.mime_type.eq_ignore_ascii_case(&b.mime_type)
}

impl Sfu {
    /// Records a track that opened on a publisher connection. Subscribers get it once its first
    /// media packet shows the codec.
    pub(crate) fn open_published_track(&mut self, key: ParticipantKey, init: RTCTrackEventInit) {
        let Some(participant) = self.participants.get_mut(&key) else {
            return;
        };
        let Some(mut receiver) = participant.publisher.pc.rtp_receiver(init.receiver_id) else {
            return;
        };
        let kind = track_kind(receiver.track().kind());
        let incoming_codecs = receiver
            .get_parameters()
            .rtp_parameters
            .codecs
            .iter()
            .map(|codec| (codec.payload_type, codec.rtp_codec.clone()))
            .collect();
        let id = format!("TR_{}", random_token(12));
        let global = self.new_global_track_id();
        let Some(participant) = self.participants.get_mut(&key) else {
            return;
        };
        info!(
            room_id = %participant.room,
            participant_id = %participant.id,
            track_id = %id,
            ?kind,
            "track published"
        );
        self.counters.track_opened(kind);
        participant.published.push(PublishedTrack {
            rtc_track_id: init.track_id,
            receiver_id: init.receiver_id,
            ssrc: init.ssrc,
            kind,
            id,
            codec: None,
            incoming_codecs,
            keyframe_throttle: KeyframeThrottle::default(),
            global,
        });
    }

    /// Handles an application message from a connection: RTP from a publisher is forwarded,
    /// keyframe requests from a subscriber go to the publisher.
    pub(crate) fn handle_peer_message(
        &mut self,
        now: Instant,
        peer_key: PeerKey,
        message: RTCMessage,
    ) {
        match (peer_key.target, message) {
            (Target::Publisher, RTCMessage::RtpPacket(track_id, packet)) => {
                self.forward_rtp(now, peer_key.participant, &track_id, packet);
            }
            (Target::Subscriber, RTCMessage::RtcpPacket(_track_id, packets)) => {
                self.forward_keyframe_requests(now, peer_key.participant, &packets);
            }
            _ => {}
        }
    }

    /// Requests a keyframe from the publisher of each subscription that a subscriber's PLI or FIR
    /// names by SSRC. The SSRCs decide rather than the track `rtc` tagged the compound with,
    /// because one compound can carry requests for several tracks.
    fn forward_keyframe_requests(
        &mut self,
        now: Instant,
        key: ParticipantKey,
        packets: &[Box<dyn RtcpPacket>],
    ) {
        let Some(participant) = self.participants.get(&key) else {
            return;
        };
        let sources: Vec<(ParticipantKey, String)> = keyframe_request_ssrcs(packets)
            .into_iter()
            .filter_map(|ssrc| {
                let subscription = participant.subscriptions.iter().find(|s| s.ssrc == ssrc);
                if subscription.is_none() {
                    trace!(participant_id = %participant.id, ssrc, "keyframe request for unknown SSRC ignored");
                }
                subscription.map(|s| (s.publisher, s.track_id.clone()))
            })
            .collect();
        for (publisher, track_id) in sources {
            self.request_keyframe(now, publisher, &track_id);
        }
    }

    fn forward_rtp(
        &mut self,
        now: Instant,
        key: ParticipantKey,
        rtc_track_id: &str,
        mut packet: rtc::rtp::Packet,
    ) {
        if packet.payload.is_empty() {
            // Padding-only probes are for the publisher's bandwidth estimate, not for subscribers.
            return;
        }
        let payload_bytes = packet.payload.len();
        self.counters.rtp_received(payload_bytes);
        let Some(participant) = self.participants.get_mut(&key) else {
            return;
        };
        let Some(track) = participant
            .published
            .iter_mut()
            .find(|track| track.rtc_track_id == rtc_track_id)
        else {
            return;
        };
        let payload_type = packet.header.payload_type;
        let Some(codec) = codec_of(&track.incoming_codecs, payload_type) else {
            trace!(payload_type, "RTP with unnegotiated payload type dropped");
            self.counters.rtp_dropped(DropReason::UnknownPayloadType);
            return;
        };
        if codec.mime_type.to_ascii_lowercase().ends_with("/rtx") {
            return;
        }
        let track_id = track.id.clone();
        let global = track.global;
        if track.codec.is_none() {
            track.codec = Some(codec.clone());
            let announced = RemoteTrack {
                global,
                shard: self.shard,
                room: participant.room.clone(),
                publisher_id: participant.id.clone(),
                track_id: track_id.clone(),
                kind: track.kind,
                codec: codec.clone(),
                incoming_codecs: track.incoming_codecs.clone(),
            };
            self.broadcast(|| ShardMessage::TrackAdded(Box::new(announced.clone())));
            for subscriber in self.room_peers(key) {
                if self.add_subscription(subscriber, key, &track_id) {
                    self.request_subscriber_offer(now, subscriber);
                }
            }
        }

        // Header extension ids are negotiated per connection; forward none rather than wrong ids.
        packet.header.extension = false;
        packet.header.extension_profile = 0;
        packet.header.extensions.clear();
        packet.header.extensions_padding = 0;

        let subscribers = self.room_peers(key);
        let outgoing = Outgoing {
            publisher: key,
            track_id: &track_id,
            codec: &codec,
            payload_type,
            payload_bytes,
            packet: &packet,
        };
        self.fan_out(now, &outgoing, &subscribers);
        // Rooms that never spread, most of them, skip the copy of the room id.
        if self.shards > 1 && self.routes.any_room_spread() {
            if let Some(participant) = self.participants.get(&key) {
                let room = participant.room.clone();
                self.send_rtp_to_shards(&room, global, &packet);
            }
        }
    }

    /// Sends one RTP packet of a track to each of `subscribers` that subscribes to it and is
    /// connected, on its own SSRC and negotiated payload type.
    pub(crate) fn fan_out(
        &mut self,
        now: Instant,
        outgoing: &Outgoing<'_>,
        subscribers: &[ParticipantKey],
    ) {
        let Outgoing {
            publisher,
            track_id,
            codec,
            payload_type,
            payload_bytes,
            packet,
        } = *outgoing;
        for &subscriber_key in subscribers {
            let Some(subscriber) = self.participants.get_mut(&subscriber_key) else {
                continue;
            };
            if !subscriber.subscriber.connected {
                continue;
            }
            let Some(subscription) = subscriber
                .subscriptions
                .iter_mut()
                .find(|s| s.publisher == publisher && s.track_id == track_id)
            else {
                continue;
            };
            let Some(mut sender) = subscriber.subscriber.pc.rtp_sender(subscription.sender_id)
            else {
                continue;
            };
            let outgoing_type = match subscription.payload_types.get(&payload_type) {
                Some(pt) => *pt,
                None => {
                    let codecs = &sender.get_parameters().rtp_parameters.codecs;
                    let negotiated = codecs
                        .iter()
                        .find(|candidate| {
                            is_same_codec(&candidate.rtp_codec, codec)
                                && candidate.rtp_codec.sdp_fmtp_line == codec.sdp_fmtp_line
                        })
                        .or_else(|| {
                            codecs
                                .iter()
                                .find(|candidate| is_same_codec(&candidate.rtp_codec, codec))
                        })
                        .map(|candidate| candidate.payload_type);
                    let Some(pt) = negotiated else {
                        // The subscriber did not accept this codec; nothing can be sent.
                        self.counters.rtp_dropped(DropReason::CodecNotNegotiated);
                        continue;
                    };
                    subscription.payload_types.insert(payload_type, pt);
                    pt
                }
            };
            let mut copy = packet.clone();
            copy.header.ssrc = subscription.ssrc;
            copy.header.payload_type = outgoing_type;
            if let Err(error) = sender.write_rtp(now, copy) {
                trace!(participant_id = %subscriber.id, %error, "forwarding RTP failed");
                self.counters.rtp_dropped(DropReason::WriteFailed);
                continue;
            }
            self.counters.rtp_forwarded(payload_bytes);
            self.dirty.push(PeerKey {
                participant: subscriber_key,
                target: Target::Subscriber,
            });
        }
    }

    /// Returns the publisher id, kind and codec of a track, local or from another shard.
    fn track_source(
        &self,
        publisher_key: ParticipantKey,
        track_id: &str,
    ) -> Option<(String, TrackKind, RTCRtpCodec)> {
        if let Some(publisher) = self.participants.get(&publisher_key) {
            let track = publisher.published.iter().find(|t| t.id == track_id)?;
            return Some((publisher.id.clone(), track.kind, track.codec.clone()?));
        }
        let track = self.remote.find(publisher_key, track_id)?;
        Some((track.publisher_id.clone(), track.kind, track.codec.clone()))
    }

    /// Adds one published track of `publisher` to `subscriber`'s connection and queues its
    /// `track_added` notice. Returns true when a track was added, so the caller requests one
    /// subscriber offer for all the tracks it adds.
    pub(crate) fn add_subscription(
        &mut self,
        subscriber_key: ParticipantKey,
        publisher_key: ParticipantKey,
        track_id: &str,
    ) -> bool {
        let Some((publisher_id, kind, codec)) = self.track_source(publisher_key, track_id) else {
            return false;
        };
        let Some(subscriber) = self.participants.get_mut(&subscriber_key) else {
            return false;
        };
        if !subscriber.subscribe {
            return false;
        }
        if subscriber
            .subscriptions
            .iter()
            .any(|s| s.publisher == publisher_key && s.track_id == track_id)
        {
            return false;
        }

        let ssrc = rand::random::<u32>();
        let rtc_kind = match kind {
            TrackKind::Audio => RtpCodecKind::Audio,
            TrackKind::Video => RtpCodecKind::Video,
        };
        let egress = MediaStreamTrack::new(
            publisher_id.clone(),
            track_id.to_owned(),
            track_id.to_owned(),
            rtc_kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec,
                ..Default::default()
            }],
        );
        // A new transceiver per track, never a reused one, so the browser sees a new track id.
        // NOTE: the subscriber SDP grows by one m-section per track ever sent to it.
        let init = RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Sendonly,
            streams: vec![publisher_id.clone()],
            send_encodings: vec![],
        };
        let transceiver = match subscriber
            .subscriber
            .pc
            .add_transceiver_from_track(egress, Some(init))
        {
            Ok(transceiver) => transceiver,
            Err(error) => {
                tracing::error!(participant_id = %subscriber.id, %error, "failed to add track to subscriber");
                return false;
            }
        };
        debug!(participant_id = %subscriber.id, track_id, "track added to subscriber");
        subscriber.subscriptions.push(Subscription {
            publisher: publisher_key,
            track_id: track_id.to_owned(),
            sender_id: RTCRtpSenderId::from(transceiver),
            ssrc,
            kind,
            payload_types: HashMap::new(),
        });
        subscriber
            .negotiation
            .notices
            .push(ServerMessage::TrackAdded {
                participant_id: publisher_id,
                track_id: track_id.to_owned(),
                kind,
            });
        true
    }

    /// Gives a newly joined participant every track already published in its room.
    pub(crate) fn subscribe_to_room(&mut self, now: Instant, key: ParticipantKey) {
        let mut added = false;
        for publisher in self.room_peers(key) {
            let tracks: Vec<String> = self.participants[&publisher]
                .published
                .iter()
                .filter(|track| track.codec.is_some())
                .map(|track| track.id.clone())
                .collect();
            for track_id in tracks {
                added |= self.add_subscription(key, publisher, &track_id);
            }
        }
        if let Some(room) = self.participants.get(&key).map(|p| p.room.clone()) {
            let remote: Vec<(ParticipantKey, String)> = self
                .remote
                .tracks
                .values()
                .filter(|(_, track)| track.room == room)
                .map(|(publisher, track)| (*publisher, track.track_id.clone()))
                .collect();
            for (publisher, track_id) in remote {
                added |= self.add_subscription(key, publisher, &track_id);
            }
        }
        if added {
            self.request_subscriber_offer(now, key);
        }
    }

    /// Removes one published track from its publisher and from every subscriber.
    pub(crate) fn unpublish(&mut self, now: Instant, key: ParticipantKey, rtc_track_id: &str) {
        let Some(participant) = self.participants.get_mut(&key) else {
            return;
        };
        let Some(index) = participant
            .published
            .iter()
            .position(|track| track.rtc_track_id == rtc_track_id)
        else {
            return;
        };
        let track = participant.published.remove(index);
        self.counters.track_closed(track.kind);
        info!(participant_id = %participant.id, track_id = %track.id, "track unpublished");
        let publisher_id = participant.id.clone();
        let global = track.global;
        if track.codec.is_some() {
            self.broadcast(|| ShardMessage::TrackRemoved { global });
        }
        let subscribers = self.room_peers(key);
        self.remove_subscriptions(now, key, &publisher_id, &track.id, &subscribers);
    }

    /// Removes one track from each of `subscribers` that receives it, with a `track_removed`
    /// notice and a new subscriber offer.
    pub(crate) fn remove_subscriptions(
        &mut self,
        now: Instant,
        publisher: ParticipantKey,
        publisher_id: &str,
        track_id: &str,
        subscribers: &[ParticipantKey],
    ) {
        for &subscriber_key in subscribers {
            let Some(subscriber) = self.participants.get_mut(&subscriber_key) else {
                continue;
            };
            let Some(position) = subscriber
                .subscriptions
                .iter()
                .position(|s| s.publisher == publisher && s.track_id == track_id)
            else {
                continue;
            };
            let subscription = subscriber.subscriptions.remove(position);
            if let Err(error) = subscriber
                .subscriber
                .pc
                .remove_track(subscription.sender_id)
            {
                debug!(participant_id = %subscriber.id, %error, "removing track from subscriber failed");
            }
            subscriber
                .negotiation
                .notices
                .push(ServerMessage::TrackRemoved {
                    participant_id: publisher_id.to_owned(),
                    track_id: track_id.to_owned(),
                });
            self.request_subscriber_offer(now, subscriber_key);
        }
    }

    /// Removes every track of a publisher, when it leaves or its connection fails.
    pub(crate) fn unpublish_all(&mut self, now: Instant, key: ParticipantKey) {
        let tracks: Vec<String> = match self.participants.get(&key) {
            Some(participant) => participant
                .published
                .iter()
                .map(|track| track.rtc_track_id.clone())
                .collect(),
            None => return,
        };
        for track in tracks {
            self.unpublish(now, key, &track);
        }
    }

    /// Sends a PLI for one video track to its publisher, at most once per
    /// [`KEYFRAME_REQUEST_INTERVAL`]. A request inside the interval is sent when it ends.
    pub(crate) fn request_keyframe(&mut self, now: Instant, key: ParticipantKey, track_id: &str) {
        if !self.participants.contains_key(&key) {
            self.request_remote_keyframe(now, key, track_id);
            return;
        }
        let Some(participant) = self.participants.get_mut(&key) else {
            return;
        };
        let Some(track) = participant
            .published
            .iter_mut()
            .find(|track| track.id == track_id && track.kind == TrackKind::Video)
        else {
            return;
        };
        if let KeyframeDecision::SendAt(at) = track.keyframe_throttle.request(now) {
            self.schedule_keyframe_flush(at);
            return;
        }
        let (receiver_id, media_ssrc) = (track.receiver_id, track.ssrc);
        let Some(mut receiver) = participant.publisher.pc.rtp_receiver(receiver_id) else {
            return;
        };
        let pli = PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc,
        };
        if let Err(error) = receiver.write_rtcp(now, vec![Box::new(pli)]) {
            debug!(participant_id = %participant.id, %error, "sending PLI failed");
            return;
        }
        trace!(participant_id = %participant.id, track_id, "keyframe requested");
        self.dirty.push(PeerKey {
            participant: key,
            target: Target::Publisher,
        });
    }

    /// Sends the keyframe requests that were held back by the throttle.
    pub(crate) fn flush_keyframe_requests(&mut self, now: Instant) {
        let pending: Vec<(ParticipantKey, String)> = self
            .participants
            .iter()
            .flat_map(|(key, participant)| {
                participant
                    .published
                    .iter()
                    .filter(|track| track.keyframe_throttle.is_pending())
                    .map(|track| (*key, track.id.clone()))
            })
            .collect();
        for (key, track_id) in pending {
            self.request_keyframe(now, key, &track_id);
        }
        self.flush_remote_keyframe_requests(now);
    }

    /// Asks the publishers of every video track a subscriber receives for a keyframe, so a
    /// participant who joins mid-call sees video at once.
    pub(crate) fn request_keyframes_for_subscriber(&mut self, now: Instant, key: ParticipantKey) {
        let Some(participant) = self.participants.get(&key) else {
            return;
        };
        let sources: Vec<(ParticipantKey, String)> = participant
            .subscriptions
            .iter()
            .filter(|s| s.kind == TrackKind::Video)
            .map(|s| (s.publisher, s.track_id.clone()))
            .collect();
        for (publisher, track_id) in sources {
            self.request_keyframe(now, publisher, &track_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn keyframe_throttle_holds_burst() {
        let start = Instant::now();
        let mut throttle = KeyframeThrottle::default();
        assert_eq!(throttle.request(start), KeyframeDecision::SendNow);
        assert!(!throttle.is_pending());

        let allowed_at = start + KEYFRAME_REQUEST_INTERVAL;
        for step in 1..20 {
            let now = start + Duration::from_millis(step * 10);
            assert_eq!(throttle.request(now), KeyframeDecision::SendAt(allowed_at));
        }
        assert!(throttle.is_pending());

        assert_eq!(throttle.request(allowed_at), KeyframeDecision::SendNow);
        assert!(!throttle.is_pending());
    }

    #[test]
    fn keyframe_request_ssrcs_read_pli_and_fir() {
        use rtc::rtcp::payload_feedbacks::full_intra_request::FirEntry;
        use rtc::rtcp::receiver_report::ReceiverReport;

        let fir = FullIntraRequest {
            sender_ssrc: 9,
            media_ssrc: 0,
            fir: vec![
                FirEntry {
                    ssrc: 3,
                    sequence_number: 1,
                },
                FirEntry {
                    ssrc: 2,
                    sequence_number: 1,
                },
            ],
        };
        let packets: Vec<Box<dyn RtcpPacket>> = vec![
            Box::new(ReceiverReport::default()),
            Box::new(PictureLossIndication {
                sender_ssrc: 9,
                media_ssrc: 2,
            }),
            Box::new(fir),
        ];
        assert_eq!(keyframe_request_ssrcs(&packets), [2, 3]);
        assert!(keyframe_request_ssrcs(&packets[..1]).is_empty());
    }

    #[test]
    fn keyframe_throttle_passes_spaced_requests() {
        let start = Instant::now();
        let mut throttle = KeyframeThrottle::default();
        for step in 0..5 {
            let now = start + KEYFRAME_REQUEST_INTERVAL * step;
            assert_eq!(throttle.request(now), KeyframeDecision::SendNow);
        }
    }
}
