//! Checks of what a subscriber received, shared by the scenarios.

use std::collections::HashSet;
use std::sync::Arc;

use switchyard_proto::{ServerMessage, TrackKind};

use crate::support::client::{Event, Participant, ReceivedPacket, RemoteTrack};
use crate::support::media::{check_payload, MediaSender};

/// Receives `packets` verified packets per track of `publisher_id` on `subscriber`, checks
/// that each track was announced, and returns the tracks. A failure panics with the sender's
/// status.
pub async fn receive_checked(
    subscriber: &mut Participant,
    publisher_id: &str,
    packets: usize,
    sender: &MediaSender,
) -> Vec<Arc<RemoteTrack>> {
    let name = subscriber.name.clone();
    let tracks = subscriber
        .receive_media(packets, |packet| {
            check_packet(&name, publisher_id, packet);
        })
        .await
        .unwrap_or_else(|failure| panic!("{failure}\n{}", sender.status()));
    subscriber.record_queued_events();
    check_tracks_announced(subscriber, publisher_id, &tracks);
    tracks
}

/// Checks one forwarded packet: stream id, payload type against the subscriber's negotiated
/// codecs, and payload bytes.
pub fn check_packet(subscriber: &str, publisher_id: &str, packet: &ReceivedPacket) {
    let track = &packet.track;
    assert_eq!(
        track.stream_id, publisher_id,
        "{subscriber}: the stream id of {track:?} should be the publisher's participant id"
    );
    let expected_mime = match track.kind {
        TrackKind::Audio => "audio/opus",
        TrackKind::Video => "video/vp8",
    };
    let mime_type = packet.mime_type.as_deref().unwrap_or("(not negotiated)");
    assert!(
        mime_type.eq_ignore_ascii_case(expected_mime),
        "{subscriber}: {track:?} carries payload type {}, which the subscriber connection \
         negotiated as {mime_type}; expected {expected_mime}",
        packet.payload_type
    );
    if let Err(difference) = check_payload(track.kind, &packet.payload) {
        panic!("{subscriber}: payload on {track:?} is not what the publisher sent: {difference}");
    }
}

/// Checks that each received track was announced with `track_added` for the publisher before
/// the offer that carried it, with the same track id and kind.
pub fn check_tracks_announced(
    subscriber: &Participant,
    publisher_id: &str,
    tracks: &[Arc<RemoteTrack>],
) {
    let kinds: HashSet<TrackKind> = tracks.iter().map(|track| track.kind).collect();
    assert_eq!(
        kinds.len(),
        2,
        "{}: expected one audio and one video track, got {tracks:?}",
        subscriber.name
    );
    for track in tracks {
        let announced = subscriber.server_messages().any(|message| {
            matches!(
                message,
                ServerMessage::TrackAdded { participant_id, track_id, kind }
                    if participant_id == publisher_id
                        && *track_id == track.track_id
                        && *kind == track.kind
            )
        });
        assert!(
            announced,
            "{}: {track:?} arrived without a matching track_added\n{}",
            subscriber.name,
            subscriber.transcript()
        );
    }
}

/// Waits until `subscriber` has seen `track_removed` for each of `tracks` from `publisher_id`
/// and has answered an offer that arrived after both removals.
pub async fn wait_for_tracks_removed(
    subscriber: &mut Participant,
    publisher_id: &str,
    tracks: &[Arc<RemoteTrack>],
) {
    let mut removed = HashSet::new();
    let mut offer_after_removal = false;
    subscriber
        .wait_for(
            "track_removed for every track and an answered offer after them",
            |event| {
                match event {
                    Event::Server(ServerMessage::TrackRemoved {
                        participant_id,
                        track_id,
                    }) => {
                        assert_eq!(
                            participant_id, publisher_id,
                            "track_removed names the wrong publisher"
                        );
                        assert!(
                            tracks.iter().any(|track| track.track_id == *track_id),
                            "track_removed names {track_id}, which is none of {tracks:?}"
                        );
                        assert!(
                            !offer_after_removal,
                            "track_removed arrived after the offer that removes it"
                        );
                        removed.insert(track_id.clone());
                    }
                    Event::Server(ServerMessage::Offer { .. }) if removed.len() == tracks.len() => {
                        offer_after_removal = true;
                    }
                    Event::SubscriberAnswered if offer_after_removal => return Some(()),
                    _ => {}
                }
                None
            },
        )
        .await;
}
