//! A publisher's peer connection dies without `leave` while its WebSocket stays open. Its media
//! runs through a UDP relay that the scenario cuts before it closes the connection, so nothing,
//! not even a DTLS close alert, reaches the server, which can only notice through its ICE
//! timeouts. Each subscriber then gets `track_removed` for both tracks and a new offer that it
//! answers, without `participant_left`. A second publisher's media then reaches both
//! subscribers with new track ids.

mod support;

use std::time::Duration;

use switchyard::ServerConfig;
use switchyard_proto::ServerMessage;

use support::checks::{receive_checked, wait_for_tracks_removed};
use support::client::{Participant, PublisherRoute};
use support::namespace::run_on_loopback_only;
use support::relay::UdpRelay;
use support::server::TestServer;

const ROOM: &str = "publisher-connection-failure";

/// Verified packets required per track and subscriber.
const PACKETS_PER_TRACK: usize = 25;

/// ICE timeouts of the server, short so that a dead connection fails within a few seconds.
/// The server's ICE agent counts only STUN traffic, not media, so the disconnected timeout stays
/// above the 2-second keepalive interval of both sides. With 1 second, healthy connections
/// turned disconnected between keepalives.
const ICE_DISCONNECTED_TIMEOUT: Duration = Duration::from_secs(3);
const ICE_FAILED_TIMEOUT: Duration = Duration::from_secs(2);

#[test]
fn publisher_connection_failure_removes_tracks() {
    run_on_loopback_only("publisher_connection_failure_removes_tracks", || {
        support::server::runtime().block_on(scenario());
    });
}

async fn scenario() {
    let server = TestServer::start_with(ServerConfig {
        ice_disconnected_timeout: ICE_DISCONNECTED_TIMEOUT,
        ice_failed_timeout: ICE_FAILED_TIMEOUT,
        ..ServerConfig::default()
    })
    .await;
    let mut subscribers = vec![
        Participant::join(server.http_addr, ROOM, "subscriber-1").await,
        Participant::join(server.http_addr, ROOM, "subscriber-2").await,
    ];

    // The first publisher's media reaches both subscribers through the relay.
    let relay = UdpRelay::start(server.media_addr).await;
    let route = PublisherRoute::Relay(relay.client_addr());
    let mut first =
        Participant::join_with_route(server.http_addr, ROOM, "first-publisher", route).await;
    let sender = first.publish().await;
    let mut first_tracks = Vec::new();
    for subscriber in &mut subscribers {
        first_tracks.push(receive_checked(subscriber, &first.id, PACKETS_PER_TRACK, &sender).await);
    }

    // The first publisher's connection goes silent, then closes. Its WebSocket stays open.
    sender.stop();
    relay.cut();
    first.close_publisher().await;
    for (subscriber, tracks) in subscribers.iter_mut().zip(&first_tracks) {
        wait_for_tracks_removed(subscriber, &first.id, tracks).await;
        let left = subscriber.server_messages().any(|message| {
            matches!(message, ServerMessage::ParticipantLeft { participant_id } if *participant_id == first.id)
        });
        assert!(
            !left,
            "{}: participant_left arrived for the first publisher, whose WebSocket is still open",
            subscriber.name
        );
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
    relay.stop();
    for participant in [first, second] {
        participant.close().await;
    }
    for mut subscriber in subscribers {
        subscriber.record_queued_events();
        subscriber.close().await;
    }
    server.stop().await;
}
