//! Four rooms on a server with three SFU workers sharing the media port. The kernel hands each
//! peer's datagrams to whichever worker's socket its address hashes to, so most connections are
//! reached through another worker than the one that owns their room. In every room the
//! subscriber receives its own publisher's payloads intact, and nothing from the other rooms.

mod support;

use switchyard::ServerConfig;

use support::checks::{check_packet, check_tracks_announced};
use support::client::Participant;
use support::namespace::run_on_loopback_only;
use support::server::TestServer;

const ROOMS: [&str; 4] = ["shard-a", "shard-b", "shard-c", "shard-d"];

const WORKERS: usize = 3;

/// Verified packets required per track and subscriber.
const PACKETS_PER_TRACK: usize = 20;

#[test]
fn rooms_spread_over_media_workers() {
    run_on_loopback_only("rooms_spread_over_media_workers", || {
        support::server::runtime().block_on(scenario());
    });
}

async fn scenario() {
    let server = TestServer::start_with(ServerConfig {
        media_workers: WORKERS,
        ..ServerConfig::default()
    })
    .await;

    let mut calls = Vec::new();
    for room in ROOMS {
        let subscriber = Participant::join(server.http_addr, room, &format!("{room}-viewer")).await;
        let mut publisher =
            Participant::join(server.http_addr, room, &format!("{room}-speaker")).await;
        let sender = publisher.publish().await;
        calls.push((publisher, sender, subscriber));
    }

    for (publisher, sender, subscriber) in &mut calls {
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

    for (mut publisher, sender, mut subscriber) in calls {
        sender.stop();
        publisher.record_queued_events();
        publisher.close().await;
        subscriber.record_queued_events();
        subscriber.close().await;
    }
    server.stop().await;
}
