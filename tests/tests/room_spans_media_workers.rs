//! One room spread over two SFU workers: with `room_spread_after` at 1, members alternate
//! between the room's home worker and the other one, so the publisher and some subscribers sit
//! on different workers. Every subscriber receives the publisher's payloads intact, including
//! one that joins after the tracks started. The copies cross between the workers, which the
//! metrics show. A keyframe request from a subscriber on the other worker reaches the
//! publisher, and when the publisher leaves every subscriber loses its tracks.

mod support;

use std::sync::Arc;

use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use switchyard::ServerConfig;
use switchyard_proto::TrackKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::checks::{check_packet, receive_checked, wait_for_tracks_removed};
use support::client::{Participant, RemoteTrack};
use support::media::MediaSender;
use support::namespace::run_on_loopback_only;
use support::server::TestServer;

const ROOM: &str = "spread-room";

/// Verified packets required per track and subscriber.
const PACKETS_PER_TRACK: usize = 20;

#[test]
fn room_spans_media_workers() {
    run_on_loopback_only("room_spans_media_workers", || {
        support::server::runtime().block_on(scenario());
    });
}

async fn scenario() {
    let server = TestServer::start_with(ServerConfig {
        media_workers: 2,
        room_spread_after: 1,
        ..ServerConfig::default()
    })
    .await;

    // Members are placed in join order: home, other, home, other.
    let mut subscribers = vec![Participant::join(server.http_addr, ROOM, "viewer-1").await];
    let mut publisher = Participant::join(server.http_addr, ROOM, "speaker").await;
    subscribers.push(Participant::join(server.http_addr, ROOM, "viewer-2").await);
    subscribers.push(Participant::join(server.http_addr, ROOM, "viewer-3").await);
    let mut sender = publisher.publish().await;

    let mut tracks = Vec::new();
    for subscriber in &mut subscribers {
        tracks.push(receive_checked(subscriber, &publisher.id, PACKETS_PER_TRACK, &sender).await);
    }

    // A member who joins after the tracks started gets them on its own worker too.
    let mut late = Participant::join(server.http_addr, ROOM, "viewer-4").await;
    tracks.push(receive_checked(&mut late, &publisher.id, PACKETS_PER_TRACK, &sender).await);
    subscribers.push(late);

    let copies = metric(&server, "switchyard_sfu_rtp_shard_copies_total").await;
    assert!(copies > 0.0, "no RTP crossed between the workers");
    let dropped = metric(
        &server,
        "switchyard_sfu_rtp_dropped_packets_total{reason=\"shard_inbox_full\"}",
    )
    .await;
    assert_eq!(dropped, 0.0, "a worker dropped RTP from the other one");

    // viewer-1 is on the room's home worker and the publisher on the other one, so its PLI
    // crosses to the publisher's worker.
    let (video, video_ssrc) = receive_video(&mut subscribers[0], &publisher.id, &sender).await;
    let requests = &mut sender.keyframe_requests;
    let before = requests.pli_count();
    let pli = PictureLossIndication {
        sender_ssrc: 0,
        media_ssrc: video_ssrc,
    };
    video.send_rtcp(vec![Box::new(pli)]).await;
    requests
        .wait_for_pli_above(
            before,
            "a PLI after a subscriber on the other worker sent one",
        )
        .await;

    sender.stop();
    let publisher_id = publisher.id.clone();
    publisher.leave().await;
    for (subscriber, tracks) in subscribers.iter_mut().zip(&tracks) {
        wait_for_tracks_removed(subscriber, &publisher_id, tracks).await;
    }
    for mut subscriber in subscribers {
        subscriber.record_queued_events();
        subscriber.close().await;
    }
    server.stop().await;
}

/// Receives more media on `subscriber` and returns its video track and the SSRC the server
/// sends it on.
async fn receive_video(
    subscriber: &mut Participant,
    publisher_id: &str,
    sender: &MediaSender,
) -> (Arc<RemoteTrack>, u32) {
    let name = subscriber.name.clone();
    let mut video_ssrc = None;
    subscriber.discard_received_media();
    let tracks = subscriber
        .receive_media(PACKETS_PER_TRACK, |packet| {
            check_packet(&name, publisher_id, packet);
            if packet.track.kind == TrackKind::Video {
                video_ssrc = Some(packet.ssrc);
            }
        })
        .await
        .unwrap_or_else(|failure| panic!("{failure}\n{}", sender.status()));
    let video = tracks
        .into_iter()
        .find(|track| track.kind == TrackKind::Video)
        .unwrap_or_else(|| panic!("{name} receives no video"));
    let ssrc = video_ssrc.unwrap_or_else(|| panic!("{name} got no video packet"));
    (video, ssrc)
}

/// Reads one sample from the server's `/metrics`, by its name and labels as printed.
async fn metric(server: &TestServer, series: &str) -> f64 {
    let mut stream = TcpStream::connect(server.http_addr)
        .await
        .expect("connect to the metrics endpoint");
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        server.http_addr
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the metrics request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("read the metrics response");
    response
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} is missing from /metrics:\n{response}"))
}
