//! A client offer and a server offer that cross on the wire both settle. While a publisher sends
//! media, a second participant joins and gets the server's subscriber offer for it. Before
//! answering that offer, the newcomer sends its own publisher offer, then answers. The server
//! answers the publisher offer and accepts the subscriber answer, each request gets exactly one
//! reply, matched by `requestId`, and media then flows both ways.

mod support;

use switchyard_proto::{ServerMessage, Target};

use support::checks::receive_checked;
use support::client::{connection_reached, subscriber_answer_id, Event, Participant};
use support::namespace::run_on_loopback_only;
use support::server::TestServer;

const ROOM: &str = "crossing-offers";

/// Request id of the newcomer's publisher offer.
const OFFER_ID: &str = "crossing-offer";

/// Verified packets required per track in each direction.
const PACKETS_PER_TRACK: usize = 25;

#[test]
fn crossing_offers_both_settle() {
    run_on_loopback_only("crossing_offers_both_settle", || {
        support::server::runtime().block_on(scenario());
    });
}

async fn scenario() {
    let server = TestServer::start().await;
    let mut first = Participant::join(server.http_addr, ROOM, "first").await;
    let first_sender = first.publish().await;

    // The newcomer's subscriber offer stays outstanding until `release` fires.
    let (mut newcomer, release) =
        Participant::join_holding_first_answer(server.http_addr, ROOM, "newcomer").await;
    newcomer
        .wait_for("the server's subscriber offer", |event| {
            matches!(event, Event::Server(ServerMessage::Offer { .. })).then_some(())
        })
        .await;
    let offered = newcomer.offer_tracks(Some(OFFER_ID)).await;
    release
        .send(())
        .expect("the newcomer's driver waits for the release of its first answer");

    // Both negotiations settle: the publisher offer gets an answer and the subscriber answer
    // gets `ok`.
    let answer_id = subscriber_answer_id(1);
    let mut offer_replied = false;
    let mut answer_replied = false;
    newcomer
        .wait_for("the replies to the crossing offer and answer", |event| {
            if let Event::Reply { request_id, .. } = event {
                offer_replied |= request_id == OFFER_ID;
                answer_replied |= *request_id == answer_id;
            }
            (offer_replied && answer_replied).then_some(())
        })
        .await;
    let newcomer_sender = newcomer.start_publishing(offered).await;
    // The connection may have come up during one of the waits above.
    if !newcomer.connected(Target::Subscriber) {
        newcomer
            .wait_for("the newcomer's subscriber connection to connect", |event| {
                connection_reached(event, Target::Subscriber)
            })
            .await;
    }

    // Media flows in both directions.
    receive_checked(&mut newcomer, &first.id, PACKETS_PER_TRACK, &first_sender).await;
    receive_checked(
        &mut first,
        &newcomer.id,
        PACKETS_PER_TRACK,
        &newcomer_sender,
    )
    .await;

    check_replies(&newcomer, OFFER_ID, "answer");
    check_replies(&newcomer, &answer_id, "ok");

    first_sender.stop();
    newcomer_sender.stop();
    for mut participant in [first, newcomer] {
        participant.record_queued_events();
        participant.close().await;
    }
    server.stop().await;
}

/// Checks that `participant` got exactly one reply to `request_id`, of type `expected`.
fn check_replies(participant: &Participant, request_id: &str, expected: &str) {
    let replies: Vec<&str> = participant
        .history
        .iter()
        .filter_map(|event| match event {
            Event::Reply {
                request_id: id,
                reply_type,
            } if id == request_id => Some(*reply_type),
            _ => None,
        })
        .collect();
    assert_eq!(
        replies.len(),
        1,
        "{}: request {request_id} should get exactly one reply, got {replies:?}\n{}",
        participant.name,
        participant.transcript()
    );
    assert_eq!(
        replies[0],
        expected,
        "{}: request {request_id} got the wrong reply type\n{}",
        participant.name,
        participant.transcript()
    );
}
