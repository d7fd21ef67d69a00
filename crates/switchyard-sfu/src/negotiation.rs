//! Offer/answer on both connections and remote candidates.
//!
//! Who offers is fixed per connection, so offers never collide: the client offers on the
//! publisher connection and the server answers; the server offers on the subscriber connection
//! and the client answers. On the subscriber connection the server keeps one offer outstanding
//! at a time and folds later changes into the next one.

use std::time::Instant;

use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::RTCPeerConnection;
use rtc::shared::error::Error as RtcError;
use switchyard_proto::{Candidate, ErrorCode, ServerMessage, Target};
use tracing::{debug, info};

use rtc::peer_connection::transport::RTCIceCandidateInit;

use crate::peer::{
    from_rtc_candidate, is_mdns_candidate, to_rtc_candidate, MAX_PENDING_CANDIDATES,
};
use crate::sfu::{ParticipantKey, PeerKey, Sfu};

/// Returns a connection to the stable signaling state after a remote offer failed, so the next
/// offer can be applied. `rtc` exposes no signaling state getter, so this always tries, and the
/// error for rolling back from stable is expected.
fn roll_back_remote(now: Instant, pc: &mut RTCPeerConnection) {
    let rollback = RTCSessionDescription::rollback(None)
        .and_then(|rollback| pc.set_remote_description(now, rollback));
    match rollback {
        Ok(()) | Err(RtcError::ErrSignalingStateCannotRollback) => {}
        Err(error) => tracing::error!(%error, "rollback of a failed remote offer failed"),
    }
}

/// Returns the host candidate as sent over signaling, tied to the first m-section of `sdp` (the
/// one that carries the BUNDLE transport) and to the connection's ufrag. Browsers match a
/// candidate by `sdpMid` before `sdpMLineIndex` and reject one whose `sdpMid` names no section.
fn signaled_host_candidate(host: &RTCIceCandidateInit, sdp: &str, ufrag: &str) -> Candidate {
    let mut candidate = from_rtc_candidate(host);
    candidate.sdp_mid = sdp
        .lines()
        .find_map(|line| line.strip_prefix("a=mid:"))
        .map(|mid| mid.trim().to_owned());
    candidate.sdp_mline_index = Some(0);
    candidate.username_fragment = Some(ufrag.to_owned());
    candidate
}

impl Sfu {
    /// Applies the client's publisher offer and sends the answer, then the server's candidate
    /// and end-of-candidates. Bad SDP gets an `error` and leaves the connection as it was.
    pub(crate) fn handle_publish_offer(
        &mut self,
        now: Instant,
        key: ParticipantKey,
        request_id: Option<String>,
        sdp: String,
    ) {
        let host_candidate = self.host_candidate.clone();
        let Some(participant) = self.participants.get_mut(&key) else {
            return;
        };
        let offer = match RTCSessionDescription::offer(sdp) {
            Ok(offer) => offer,
            Err(error) => {
                debug!(participant_id = %participant.id, %error, "publisher offer is not valid SDP");
                participant.reply(
                    request_id,
                    ServerMessage::error(
                        ErrorCode::InvalidSdp,
                        format!("offer is not valid SDP: {error}"),
                    ),
                );
                return;
            }
        };

        let peer = &mut participant.publisher;
        if let Err(error) = peer.pc.set_remote_description(now, offer) {
            debug!(participant_id = %participant.id, %error, "publisher offer could not be applied");
            // A failed description can still move the signaling state; return to stable.
            roll_back_remote(now, &mut peer.pc);
            participant.reply(
                request_id,
                ServerMessage::error(
                    ErrorCode::NegotiationFailed,
                    format!("offer could not be applied: {error}"),
                ),
            );
            return;
        }
        if !peer.host_candidate_added {
            match peer.pc.add_local_candidate(host_candidate.clone()) {
                Ok(()) => peer.host_candidate_added = true,
                Err(error) => {
                    tracing::error!(participant_id = %participant.id, %error, "failed to add host candidate");
                }
            }
        }
        let answer = peer
            .pc
            .create_answer(None)
            .and_then(|answer| peer.pc.set_local_description(now, answer));
        if let Err(error) = answer {
            debug!(participant_id = %participant.id, %error, "no answer for publisher offer");
            roll_back_remote(now, &mut peer.pc);
            participant.reply(
                request_id,
                ServerMessage::error(
                    ErrorCode::NegotiationFailed,
                    format!("offer could not be answered: {error}"),
                ),
            );
            return;
        }
        let Some(local) = peer.pc.local_description() else {
            participant.reply(
                request_id,
                ServerMessage::error(ErrorCode::InternalError, "answer was not created"),
            );
            return;
        };
        peer.has_remote_description = true;
        let first_answer = !peer.host_candidate_sent;
        peer.host_candidate_sent = true;
        let pending = std::mem::take(&mut peer.pending_candidates);
        for candidate in pending {
            if let Err(error) = peer.pc.add_remote_candidate(candidate) {
                debug!(participant_id = %participant.id, %error, "buffered candidate rejected");
            }
        }

        let host = signaled_host_candidate(&host_candidate, &local.sdp, &peer.ufrag);
        participant.reply(request_id, ServerMessage::Answer { sdp: local.sdp });
        let publisher_key = PeerKey {
            participant: key,
            target: Target::Publisher,
        };
        if first_answer {
            participant.send(ServerMessage::Candidate {
                target: Target::Publisher,
                candidate: host.clone(),
            });
            participant.send(ServerMessage::Candidate {
                target: Target::Publisher,
                candidate: Candidate::default(),
            });
        }
        self.replay_early_checks(now, publisher_key);
    }

    /// Applies the client's answer to the outstanding subscriber offer, then sends the next offer
    /// if changes piled up meanwhile.
    pub(crate) fn handle_subscriber_answer(
        &mut self,
        now: Instant,
        key: ParticipantKey,
        request_id: Option<String>,
        sdp: String,
    ) {
        let Some(participant) = self.participants.get_mut(&key) else {
            return;
        };
        if !participant.negotiation.offer_in_flight {
            participant.reply(
                request_id,
                ServerMessage::error(
                    ErrorCode::NegotiationFailed,
                    "answer received but no subscriber offer is outstanding",
                ),
            );
            return;
        }
        let answer = match RTCSessionDescription::answer(sdp) {
            Ok(answer) => answer,
            Err(error) => {
                debug!(participant_id = %participant.id, %error, "subscriber answer is not valid SDP");
                participant.reply(
                    request_id,
                    ServerMessage::error(
                        ErrorCode::InvalidSdp,
                        format!("answer is not valid SDP: {error}"),
                    ),
                );
                return;
            }
        };
        let peer = &mut participant.subscriber;
        if let Err(error) = peer.pc.set_remote_description(now, answer) {
            debug!(participant_id = %participant.id, %error, "subscriber answer could not be applied");
            participant.reply(
                request_id,
                ServerMessage::error(
                    ErrorCode::NegotiationFailed,
                    format!("answer could not be applied: {error}"),
                ),
            );
            return;
        }
        peer.has_remote_description = true;
        for candidate in std::mem::take(&mut peer.pending_candidates) {
            if let Err(error) = peer.pc.add_remote_candidate(candidate) {
                debug!(participant_id = %participant.id, %error, "buffered candidate rejected");
            }
        }
        participant.negotiation.offer_in_flight = false;
        participant.reply(request_id, ServerMessage::Ok);
        for subscription in &mut participant.subscriptions {
            subscription.payload_types.clear();
        }
        let needs_offer = participant.negotiation.needs_offer;
        self.replay_early_checks(
            now,
            PeerKey {
                participant: key,
                target: Target::Subscriber,
            },
        );

        if needs_offer {
            self.send_subscriber_offer(now, key);
        }
        // Tracks added by this offer need a keyframe to start decoding.
        self.request_keyframes_for_subscriber(now, key);
    }

    /// Marks the subscriber connection as changed and sends an offer unless one is outstanding.
    pub(crate) fn request_subscriber_offer(&mut self, now: Instant, key: ParticipantKey) {
        let Some(participant) = self.participants.get_mut(&key) else {
            return;
        };
        participant.negotiation.needs_offer = true;
        if !participant.negotiation.offer_in_flight {
            self.send_subscriber_offer(now, key);
        }
    }

    fn send_subscriber_offer(&mut self, now: Instant, key: ParticipantKey) {
        let host_candidate = self.host_candidate.clone();
        let Some(participant) = self.participants.get_mut(&key) else {
            return;
        };
        let peer = &mut participant.subscriber;
        let offer = peer
            .pc
            .create_offer(None)
            .and_then(|offer| peer.pc.set_local_description(now, offer));
        if let Err(error) = offer {
            tracing::error!(participant_id = %participant.id, %error, "failed to create subscriber offer");
            participant.send(ServerMessage::error(
                ErrorCode::InternalError,
                "failed to create subscriber offer",
            ));
            participant.negotiation.needs_offer = false;
            return;
        }
        if !peer.host_candidate_added {
            match peer.pc.add_local_candidate(host_candidate.clone()) {
                Ok(()) => peer.host_candidate_added = true,
                Err(error) => {
                    tracing::error!(participant_id = %participant.id, %error, "failed to add host candidate");
                }
            }
        }
        let first_offer = !peer.host_candidate_sent;
        peer.host_candidate_sent = true;
        let Some(local) = peer.pc.local_description() else {
            return;
        };
        let host = signaled_host_candidate(&host_candidate, &local.sdp, &peer.ufrag);

        participant.negotiation.offer_in_flight = true;
        participant.negotiation.needs_offer = false;
        for notice in std::mem::take(&mut participant.negotiation.notices) {
            participant.send(notice);
        }
        participant.send(ServerMessage::Offer { sdp: local.sdp });
        if first_offer {
            participant.send(ServerMessage::Candidate {
                target: Target::Subscriber,
                candidate: host.clone(),
            });
            participant.send(ServerMessage::Candidate {
                target: Target::Subscriber,
                candidate: Candidate::default(),
            });
        }
        self.dirty.push(PeerKey {
            participant: key,
            target: Target::Subscriber,
        });
    }

    /// Adds a remote candidate, or buffers it until the connection has a remote description.
    /// End-of-candidates and mDNS host candidates are accepted and skipped.
    pub(crate) fn handle_remote_candidate(
        &mut self,
        key: ParticipantKey,
        request_id: Option<String>,
        target: Target,
        candidate: &Candidate,
    ) {
        let Some(participant) = self.participants.get_mut(&key) else {
            return;
        };
        if candidate.is_end_of_candidates() {
            participant.reply(request_id, ServerMessage::Ok);
            return;
        }
        if is_mdns_candidate(&candidate.candidate) {
            debug!(participant_id = %participant.id, "mDNS candidate skipped; the address arrives as peer-reflexive");
            participant.reply(request_id, ServerMessage::Ok);
            return;
        }
        let peer = participant.peer_mut(target);
        let init = to_rtc_candidate(candidate);
        if !peer.has_remote_description {
            if peer.pending_candidates.len() >= MAX_PENDING_CANDIDATES {
                participant.reply(
                    request_id,
                    ServerMessage::error(
                        ErrorCode::TooManyCandidates,
                        format!(
                            "more than {MAX_PENDING_CANDIDATES} candidates before the description"
                        ),
                    ),
                );
                return;
            }
            peer.pending_candidates.push(init);
            participant.reply(request_id, ServerMessage::Ok);
            return;
        }
        match peer.pc.add_remote_candidate(init) {
            Ok(()) => participant.reply(request_id, ServerMessage::Ok),
            Err(error) => {
                debug!(participant_id = %participant.id, %error, "remote candidate rejected");
                participant.reply(
                    request_id,
                    ServerMessage::error(
                        ErrorCode::InvalidCandidate,
                        format!("candidate could not be applied: {error}"),
                    ),
                );
            }
        }
    }

    /// Reacts to a peer connection event: connection state and remote tracks.
    pub(crate) fn handle_peer_event(
        &mut self,
        now: Instant,
        peer_key: PeerKey,
        event: RTCPeerConnectionEvent,
    ) {
        let key = peer_key.participant;
        match event {
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                let Some(participant) = self.participants.get_mut(&key) else {
                    return;
                };
                info!(
                    room_id = %participant.room,
                    participant_id = %participant.id,
                    target = ?peer_key.target,
                    %state,
                    "peer connection state changed"
                );
                let peer = participant.peer_mut(peer_key.target);
                peer.connected = state == RTCPeerConnectionState::Connected;
                self.counters
                    .peer_state_changed(Some(peer.state), Some(state));
                peer.state = state;
                match (peer_key.target, state) {
                    (Target::Subscriber, RTCPeerConnectionState::Connected) => {
                        self.request_keyframes_for_subscriber(now, key);
                    }
                    (
                        Target::Publisher,
                        RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed,
                    ) => self.unpublish_all(now, key),
                    _ => {}
                }
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init))
                if peer_key.target == Target::Publisher =>
            {
                self.open_published_track(key, init);
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnClose(track_id))
                if peer_key.target == Target::Publisher =>
            {
                self.unpublish(now, key, &track_id);
            }
            _ => {}
        }
    }
}
