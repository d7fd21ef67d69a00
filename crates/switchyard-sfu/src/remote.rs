//! Rooms that span several shards.
//!
//! The shard of a publisher forwards each RTP packet to its own subscribers in the room and
//! hands one copy to every other shard with members there, which forwards it to theirs. Each
//! shard keeps a stand-in for every publisher of another shard, under a participant key of its
//! own. So subscriptions, `track_added` notices, subscriber offers and keyframe requests work
//! the same whether the publisher is local or not.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rtc::rtp_transceiver::rtp_sender::RTCRtpCodec;
use switchyard_proto::TrackKind;
use tracing::{debug, trace};

use crate::forward::{codec_of, KeyframeDecision, KeyframeThrottle, Outgoing};
use crate::metrics::DropReason;
use crate::sfu::{ParticipantKey, Sfu};

/// Work that one shard hands to another.
#[derive(Debug)]
pub(crate) enum ShardMessage {
    /// A track whose codec became known on the publisher's shard. Every other shard gets it,
    /// so that a member who joins one of them later subscribes at once.
    TrackAdded(Box<RemoteTrack>),
    /// The track with this global id ended.
    TrackRemoved { global: u64 },
    /// One RTP packet of a track, its header extensions already removed, and the kernel's
    /// receive time of the earliest RTP datagram of the read it came in, for the delay
    /// histogram.
    Rtp {
        global: u64,
        packet: rtc::rtp::Packet,
        received: Option<Duration>,
    },
    /// A subscriber on another shard requests a keyframe of this shard's track.
    KeyframeRequest { global: u64 },
}

/// A published track as other shards see it.
#[derive(Clone, Debug)]
pub(crate) struct RemoteTrack {
    /// Id unique across shards: the shard index in the top 16 bits.
    pub global: u64,
    /// Shard of the publisher.
    pub shard: usize,
    pub room: String,
    pub publisher_id: String,
    /// Public id of the track, as in `track_added`.
    pub track_id: String,
    pub kind: TrackKind,
    /// Codec of the track's first media packet.
    pub codec: RTCRtpCodec,
    /// Payload types negotiated on the publisher connection.
    pub incoming_codecs: Vec<(u8, RTCRtpCodec)>,
}

/// Tracks of publishers on other shards.
#[derive(Debug, Default)]
pub(crate) struct RemoteTracks {
    /// Each track and the local key of its publisher's stand-in, by global id.
    pub tracks: HashMap<u64, (ParticipantKey, RemoteTrack)>,
    /// Local key of each publisher on another shard, by participant id.
    pub publishers: HashMap<String, ParticipantKey>,
    /// Limits the keyframe requests this shard sends for each remote track, by global id, as
    /// the publisher's shard limits the PLIs it sends. A subscriber's stream of PLIs then
    /// becomes at most one message per interval.
    pub keyframe_throttles: HashMap<u64, KeyframeThrottle>,
}

impl RemoteTracks {
    /// Finds a track by the local key of its publisher and its public id.
    pub fn find(&self, publisher: ParticipantKey, track_id: &str) -> Option<&RemoteTrack> {
        self.tracks
            .values()
            .find(|(key, track)| *key == publisher && track.track_id == track_id)
            .map(|(_, track)| track)
    }
}

impl Sfu {
    /// Returns a track id that no other shard hands out.
    pub(crate) fn new_global_track_id(&mut self) -> u64 {
        self.next_global_track += 1;
        ((self.shard as u64) << 48) | self.next_global_track
    }

    /// Queues `message` for every other shard.
    pub(crate) fn broadcast(&mut self, message: impl Fn() -> ShardMessage) {
        for shard in (0..self.shards).filter(|shard| *shard != self.shard) {
            self.shard_out.push((shard, message()));
        }
    }

    /// Queues a copy of one RTP packet for every other shard with members in `room`.
    pub(crate) fn send_rtp_to_shards(
        &mut self,
        room: &str,
        global: u64,
        packet: &rtc::rtp::Packet,
    ) {
        if self.shards < 2 {
            return;
        }
        let mut shards = std::mem::take(&mut self.spread_scratch);
        self.routes
            .other_shards_of_room(room, self.shard, &mut shards);
        for shard in &shards {
            self.shard_out.push((
                *shard,
                ShardMessage::Rtp {
                    global,
                    packet: packet.clone(),
                    received: None,
                },
            ));
        }
        self.spread_scratch = shards;
    }

    /// Applies one message from another shard and drains the output it caused.
    pub fn handle_shard_message(&mut self, now: Instant, message: ShardMessage) {
        match message {
            ShardMessage::TrackAdded(track) => self.add_remote_track(now, *track),
            ShardMessage::TrackRemoved { global } => self.remove_remote_track(now, global),
            ShardMessage::Rtp { global, packet, .. } => {
                self.forward_remote_rtp(now, global, packet)
            }
            ShardMessage::KeyframeRequest { global } => {
                let local = self.participants.iter().find_map(|(key, participant)| {
                    participant
                        .published
                        .iter()
                        .find(|track| track.global == global)
                        .map(|track| (*key, track.id.clone()))
                });
                if let Some((key, track_id)) = local {
                    self.request_keyframe(now, key, &track_id);
                }
            }
        }
        self.drain_dirty(now);
    }

    fn add_remote_track(&mut self, now: Instant, track: RemoteTrack) {
        let key = match self.remote.publishers.get(&track.publisher_id) {
            Some(key) => *key,
            None => {
                let key = self.new_participant_key();
                self.remote
                    .publishers
                    .insert(track.publisher_id.clone(), key);
                key
            }
        };
        debug!(
            room_id = %track.room,
            participant_id = %track.publisher_id,
            track_id = %track.track_id,
            shard = track.shard,
            "track of another shard added"
        );
        let (room, track_id) = (track.room.clone(), track.track_id.clone());
        self.remote.tracks.insert(track.global, (key, track));
        for member in self.room_members(&room) {
            if self.add_subscription(member, key, &track_id) {
                self.request_subscriber_offer(now, member);
            }
        }
    }

    fn remove_remote_track(&mut self, now: Instant, global: u64) {
        let Some((key, track)) = self.remote.tracks.remove(&global) else {
            return;
        };
        self.remote.keyframe_throttles.remove(&global);
        let members = self.room_members(&track.room);
        self.remove_subscriptions(now, key, &track.publisher_id, &track.track_id, &members);
        if !self.remote.tracks.values().any(|(other, _)| *other == key) {
            self.remote.publishers.remove(&track.publisher_id);
        }
    }

    fn forward_remote_rtp(&mut self, now: Instant, global: u64, packet: rtc::rtp::Packet) {
        let Some((key, track)) = self.remote.tracks.get(&global) else {
            trace!(global, "RTP of an unknown track from another shard dropped");
            return;
        };
        let payload_type = packet.header.payload_type;
        let Some(codec) = codec_of(&track.incoming_codecs, payload_type) else {
            self.counters.rtp_dropped(DropReason::UnknownPayloadType);
            return;
        };
        let (key, track_id) = (*key, track.track_id.clone());
        let members = self.room_members(&track.room);
        let outgoing = Outgoing {
            publisher: key,
            track_id: &track_id,
            codec: &codec,
            payload_type,
            payload_bytes: packet.payload.len(),
            packet: &packet,
        };
        self.fan_out(now, &outgoing, &members);
    }

    /// Local members of `room`.
    pub(crate) fn room_members(&self, room: &str) -> Vec<ParticipantKey> {
        self.rooms.get(room).cloned().unwrap_or_default()
    }

    /// Sends a keyframe request for a video track of another shard to that shard, at most one
    /// per [`crate::sfu::KEYFRAME_REQUEST_INTERVAL`]. A request inside the interval is sent when
    /// it ends. Does nothing when `publisher` is not the stand-in of a remote publisher with
    /// that track.
    pub(crate) fn request_remote_keyframe(
        &mut self,
        now: Instant,
        publisher: ParticipantKey,
        track_id: &str,
    ) {
        let Some(track) = self.remote.find(publisher, track_id) else {
            return;
        };
        if track.kind != TrackKind::Video {
            return;
        }
        let (shard, global) = (track.shard, track.global);
        let throttle = self.remote.keyframe_throttles.entry(global).or_default();
        match throttle.request(now) {
            KeyframeDecision::SendNow => self
                .shard_out
                .push((shard, ShardMessage::KeyframeRequest { global })),
            KeyframeDecision::SendAt(at) => self.schedule_keyframe_flush(at),
        }
    }

    /// Sends the keyframe requests for remote tracks that the throttle held back.
    pub(crate) fn flush_remote_keyframe_requests(&mut self, now: Instant) {
        let pending: Vec<(ParticipantKey, String)> = self
            .remote
            .keyframe_throttles
            .iter()
            .filter(|(_, throttle)| throttle.is_pending())
            .filter_map(|(global, _)| self.remote.tracks.get(global))
            .map(|(key, track)| (*key, track.track_id.clone()))
            .collect();
        for (key, track_id) in pending {
            self.request_remote_keyframe(now, key, &track_id);
        }
    }
}
