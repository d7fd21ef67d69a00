//! A publisher leaves while two subscribers receive its media. Each subscriber gets
//! `participant_left` and `track_removed` for both tracks, and a new offer that it answers. A
//! second publisher then joins, and both subscribers receive its media over the renegotiated
//! connection.

mod support;

use std::collections::HashSet;
use std::sync::Arc;

use switchyard_proto::ServerMessage;

use support::checks::receive_checked;
use support::client::{Event, Participant, RemoteTrack};
use support::namespace::run_on_loopback_only;
use support::server::TestServer;

const ROOM: &str = "leave-and-rejoin";

/// Verified packets required per track and subscriber.
const PACKETS_PER_TRACK: usize = 25;

#[test]
fn publisher_leave_renegotiates_subscribers() {
    run_on_loopback_only("publisher_leave_renegotiates_subscribers", || {
        support::server::runtime().block_on(scenario());
    });
}

async fn scenario() {
    let server = TestServer::start().await;
    let mut subscribers = vec![
        Participant::join(server.http_addr, ROOM, "subscriber-1").await,
        Participant::join(server.http_addr, ROOM, "subscriber-2").await,
    ];

    // The first publisher's media reaches both subscribers.
    let mut first = Participant::join(server.http_addr, ROOM, "first-publisher").await;
    let sender = first.publish().await;
    let mut first_tracks = Vec::new();
    for subscriber in &mut subscribers {
        first_tracks.push(receive_checked(subscriber, &first.id, PACKETS_PER_TRACK, &sender).await);
    }

    // The first publisher leaves; each subscriber loses its tracks through a new offer.
    sender.stop();
    let first_id = first.id.clone();
    first.leave().await;
    for (subscriber, tracks) in subscribers.iter_mut().zip(&first_tracks) {
        wait_for_departure(subscriber, &first_id, tracks).await;
    }

    // A second publisher's media reaches both subscribers over the renegotiated connection.
    let mut second = Participant::join(server.http_addr, ROOM, "second-publisher").await;
    let sender = second.publish().await;
    for subscriber in &mut subscribers {
        subscriber.discard_received_media();
        let tracks = receive_checked(subscriber, &second.id, PACKETS_PER_TRACK, &sender).await;
        for track in &tracks {
            assert!(
                !first_tracks
                    .iter()
                    .flatten()
                    .any(|old| old.track_id == track.track_id),
                "{}: the second publisher's {track:?} reuses a track id of the first",
                subscriber.name
            );
        }
    }

    sender.stop();
    second.record_queued_events();
    second.close().await;
    for mut subscriber in subscribers {
        subscriber.record_queued_events();
        subscriber.close().await;
    }
    server.stop().await;
}

/// Waits until `subscriber` has seen `participant_left` for `publisher_id`, `track_removed` for
/// each of `tracks`, and has answered an offer that arrived after both removals.
async fn wait_for_departure(
    subscriber: &mut Participant,
    publisher_id: &str,
    tracks: &[Arc<RemoteTrack>],
) {
    let mut left = false;
    let mut removed = HashSet::new();
    let mut offer_after_removal = false;
    let mut answered = false;
    subscriber
        .wait_for(
            "participant_left, track_removed for both tracks and an answered offer",
            |event| {
                match event {
                    Event::Server(ServerMessage::ParticipantLeft { participant_id }) => {
                        assert_eq!(
                            participant_id, publisher_id,
                            "participant_left names the wrong participant"
                        );
                        left = true;
                    }
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
                    Event::SubscriberAnswered if offer_after_removal => answered = true,
                    _ => {}
                }
                (left && answered).then_some(())
            },
        )
        .await;
}
