//! A participant who joins mid-call gets a keyframe. While a publisher sends to one subscriber, a
//! second subscriber joins. Once the newcomer's subscriber connection is connected, the
//! publisher has received a new PLI, because the SFU requests a keyframe after each subscriber
//! answer and when a subscriber connection connects, and the newcomer receives the media.

mod support;

use switchyard_proto::Target;

use support::checks::receive_checked;
use support::client::{connection_reached, Participant};
use support::namespace::run_on_loopback_only;
use support::server::TestServer;

const ROOM: &str = "late-subscriber";

/// Verified packets per track that the first subscriber receives before the newcomer joins. At
/// 50 packets a second that takes about a second, twice the SFU's 500 ms throttle interval. So
/// the PLIs the SFU sent for the first subscriber, including one the throttle held back, have
/// gone out before the scenario reads its baseline.
const WARM_UP_PACKETS: usize = 50;

/// Verified packets required per track for the newcomer.
const PACKETS_PER_TRACK: usize = 25;

#[test]
fn late_subscriber_gets_keyframe() {
    run_on_loopback_only("late_subscriber_gets_keyframe", || {
        support::server::runtime().block_on(scenario());
    });
}

async fn scenario() {
    let server = TestServer::start().await;
    let mut publisher = Participant::join(server.http_addr, ROOM, "publisher").await;
    let mut sender = publisher.publish().await;
    let mut early = Participant::join(server.http_addr, ROOM, "early-subscriber").await;
    receive_checked(&mut early, &publisher.id, WARM_UP_PACKETS, &sender).await;

    let before = sender.keyframe_requests.pli_count();
    let mut late = Participant::join(server.http_addr, ROOM, "late-subscriber").await;
    late.wait_for(
        "the late subscriber's subscriber connection to connect",
        |event| connection_reached(event, Target::Subscriber),
    )
    .await;
    sender
        .keyframe_requests
        .wait_for_pli_above(before, "a PLI after the late subscriber connected")
        .await;
    receive_checked(&mut late, &publisher.id, PACKETS_PER_TRACK, &sender).await;

    let foreign = sender.keyframe_requests.counts().foreign;
    assert!(
        foreign.is_empty(),
        "the publisher received keyframe requests for SSRCs other than its video SSRC: \
         {foreign:?}"
    );

    sender.stop();
    publisher.record_queued_events();
    publisher.close().await;
    for mut subscriber in [early, late] {
        subscriber.record_queued_events();
        subscriber.close().await;
    }
    server.stop().await;
}
