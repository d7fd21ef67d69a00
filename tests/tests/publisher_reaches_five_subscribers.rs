//! One participant publishes an Opus and a VP8 track to a room of five others. Two of them joined
//! before the publisher and three after it started sending. Each receives both tracks with
//! byte-exact payloads and the publisher's participant id as the stream id.

mod support;

use support::checks::{check_packet, check_tracks_announced};
use support::client::Participant;
use support::namespace::run_on_loopback_only;
use support::server::TestServer;

const ROOM: &str = "fan-out";

/// Verified packets required per track and subscriber.
const PACKETS_PER_TRACK: usize = 25;

#[test]
fn publisher_reaches_five_subscribers() {
    run_on_loopback_only("publisher_reaches_five_subscribers", || {
        support::server::runtime().block_on(scenario());
    });
}

async fn scenario() {
    let server = TestServer::start().await;

    let mut subscribers = Vec::new();
    for name in ["early-1", "early-2"] {
        subscribers.push(Participant::join(server.http_addr, ROOM, name).await);
    }
    let mut publisher = Participant::join(server.http_addr, ROOM, "publisher").await;
    assert_eq!(
        publisher.present_at_join.len(),
        2,
        "the publisher should see both early subscribers in `joined`"
    );
    let sender = publisher.publish().await;

    for name in ["late-1", "late-2", "late-3"] {
        let late = Participant::join(server.http_addr, ROOM, name).await;
        assert!(
            late.present_at_join.iter().any(|p| p.id == publisher.id),
            "{name} should see the publisher in `joined`"
        );
        subscribers.push(late);
    }

    for subscriber in &mut subscribers {
        let publisher_id = publisher.id.clone();
        let name = subscriber.name.clone();
        let tracks = subscriber
            .receive_media(PACKETS_PER_TRACK, |packet| {
                check_packet(&name, &publisher_id, packet);
            })
            .await
            .unwrap_or_else(|failure| panic!("{failure}\n{}", sender.status()));
        subscriber.record_queued_events();
        check_tracks_announced(subscriber, &publisher_id, &tracks);
    }

    sender.stop();
    publisher.record_queued_events();
    publisher.close().await;
    for mut subscriber in subscribers {
        subscriber.record_queued_events();
        subscriber.close().await;
    }
    server.stop().await;
}
