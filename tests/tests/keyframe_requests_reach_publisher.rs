//! A subscriber's keyframe requests reach the publisher. A PLI, and separately a FIR, that the
//! subscriber sends for the video track it receives each arrive at the publisher as a PLI for
//! the publisher's own SSRC. So does a PLI in a compound packet behind a receiver report, as
//! browsers send it. A burst of 20 PLIs arrives as at least one and fewer than 20, because the
//! SFU sends at most one keyframe request per track every 500 ms.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rtc::rtcp::payload_feedbacks::full_intra_request::{FirEntry, FullIntraRequest};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use switchyard_proto::TrackKind;

use support::checks::check_packet;
use support::client::{Participant, RemoteTrack};
use support::namespace::run_on_loopback_only;
use support::server::TestServer;

const ROOM: &str = "keyframe-requests";

/// Verified packets per track that the subscriber receives before its first request. At 50
/// packets a second that takes about a second, twice the SFU's 500 ms throttle interval. So the
/// PLIs the SFU sends by itself when the subscriber answers and connects, including one the
/// throttle held back, have gone out before the scenario reads its baseline.
const WARM_UP_PACKETS: usize = 50;

/// PLIs in the burst.
const BURST_LEN: u32 = 20;

/// How long the scenario keeps counting PLIs after the first one the burst caused. Only the
/// upper bound depends on it, and only in one direction: an SFU that forwarded every PLI would
/// send all 20 within milliseconds of the first, and a throttling SFU sends at most one more,
/// 500 ms later. A stalled machine can therefore hide a missing throttle but never fail a
/// correct SFU.
const BURST_COUNT_WINDOW: Duration = Duration::from_secs(2);

#[test]
fn keyframe_requests_reach_publisher() {
    run_on_loopback_only("keyframe_requests_reach_publisher", || {
        support::server::runtime().block_on(scenario());
    });
}

async fn scenario() {
    let server = TestServer::start().await;
    let mut subscriber = Participant::join(server.http_addr, ROOM, "subscriber").await;
    let mut publisher = Participant::join(server.http_addr, ROOM, "publisher").await;
    let mut sender = publisher.publish().await;

    let (video, ssrc, audio_ssrc) = receive_video(&mut subscriber, &publisher.id).await;
    let requests = &mut sender.keyframe_requests;

    // One PLI for the SSRC the subscriber receives on.
    let before = requests.pli_count();
    video.send_rtcp(vec![Box::new(pli(ssrc))]).await;
    let after_pli = requests
        .wait_for_pli_above(before, "a PLI after the subscriber sent one")
        .await;

    // One FIR for the same SSRC, which the publisher also gets as a PLI.
    video.send_rtcp(vec![Box::new(fir(ssrc, 1))]).await;
    requests
        .wait_for_pli_above(after_pli, "a PLI after the subscriber sent a FIR")
        .await;

    // A PLI behind a receiver report in one compound packet, as a browser sends it when
    // reduced-size RTCP is not negotiated. The report names the audio SSRC first, or no SSRC.
    for report_blocks in [vec![audio_ssrc, ssrc], vec![]] {
        let before = requests.pli_count();
        let compound: Vec<Box<dyn rtc::rtcp::Packet>> = vec![
            Box::new(receiver_report(&report_blocks)),
            Box::new(pli(ssrc)),
        ];
        video.send_rtcp(compound).await;
        let awaited = format!(
            "a PLI after the subscriber sent one behind a receiver report with blocks for \
             SSRCs {report_blocks:?}"
        );
        requests.wait_for_pli_above(before, &awaited).await;
    }

    // A burst, sent back to back, is throttled.
    let before_burst = requests.pli_count();
    for _ in 0..BURST_LEN {
        video.send_rtcp(vec![Box::new(pli(ssrc))]).await;
    }
    requests
        .wait_for_pli_above(before_burst, "a PLI after a burst of PLIs")
        .await;
    tokio::time::sleep(BURST_COUNT_WINDOW).await;
    let forwarded = requests.pli_count() - before_burst;
    assert!(
        forwarded < BURST_LEN,
        "a burst of {BURST_LEN} PLIs reached the publisher as {forwarded} PLIs within \
         {BURST_COUNT_WINDOW:?} of the first; the SFU should send at most one per 500 ms per \
         track, so 1 or 2 were expected"
    );

    let counts = requests.counts();
    assert!(
        counts.foreign.is_empty(),
        "the publisher received keyframe requests for SSRCs other than its video SSRC \
         {:#010x}: {:?}",
        requests.ssrc(),
        counts.foreign
    );

    sender.stop();
    publisher.record_queued_events();
    publisher.close().await;
    subscriber.record_queued_events();
    subscriber.close().await;
    server.stop().await;
}

/// Receives and checks [`WARM_UP_PACKETS`] per track from `publisher_id`, and returns the video
/// track with the SSRCs the server sends video and audio on.
async fn receive_video(
    subscriber: &mut Participant,
    publisher_id: &str,
) -> (Arc<RemoteTrack>, u32, u32) {
    let name = subscriber.name.clone();
    let mut video_ssrc = None;
    let mut audio_ssrc = None;
    let tracks = subscriber
        .receive_media(WARM_UP_PACKETS, |packet| {
            check_packet(&name, publisher_id, packet);
            let ssrc = match packet.track.kind {
                TrackKind::Video => &mut video_ssrc,
                TrackKind::Audio => &mut audio_ssrc,
            };
            let first = *ssrc.get_or_insert(packet.ssrc);
            assert_eq!(
                packet.ssrc, first,
                "{name}: the {:?} track arrived on two SSRCs",
                packet.track.kind
            );
        })
        .await
        .unwrap_or_else(|failure| panic!("{failure}"));
    let video = tracks
        .into_iter()
        .find(|track| track.kind == TrackKind::Video)
        .expect("receive_media returns only after video packets arrived");
    let video_ssrc = video_ssrc.expect("a video packet set the SSRC");
    let audio_ssrc = audio_ssrc.expect("an audio packet set the SSRC");
    (video, video_ssrc, audio_ssrc)
}

/// Builds a receiver report with one empty report block for each of `ssrcs`.
fn receiver_report(ssrcs: &[u32]) -> ReceiverReport {
    ReceiverReport {
        ssrc: 0,
        reports: ssrcs
            .iter()
            .map(|&ssrc| ReceptionReport {
                ssrc,
                ..Default::default()
            })
            .collect(),
        profile_extensions: Bytes::new(),
    }
}

fn pli(media_ssrc: u32) -> PictureLossIndication {
    PictureLossIndication {
        sender_ssrc: 0,
        media_ssrc,
    }
}

fn fir(ssrc: u32, sequence_number: u8) -> FullIntraRequest {
    FullIntraRequest {
        sender_ssrc: 0,
        media_ssrc: 0,
        fir: vec![FirEntry {
            ssrc,
            sequence_number,
        }],
    }
}
