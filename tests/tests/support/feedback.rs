//! Keyframe requests seen by a publisher: an interceptor that hands inbound PLI and FIR to the
//! application, and a counter fed from the publisher's sent tracks.
//!
//! webrtc-rs stops inbound RTCP at the end of its interceptor chain unless an interceptor marks a
//! packet with `Attribute::DeliverToApplication`, so without [`DeliverKeyframeRequests`] a sent
//! track never reports feedback.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::sansio::Protocol;
use rtc::shared::error::Error as RtcError;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};

use crate::support::client::WAIT_TIMEOUT;

/// Interceptor slot of [`DeliverKeyframeRequests`]: after every default interceptor, so they
/// all see the inbound RTCP first.
pub const DELIVER_SLOT: usize = 14_000;

/// Marks inbound RTCP compounds that contain a PLI or FIR for delivery to the application and
/// leaves the rest to the end of the chain.
#[derive(Default)]
pub struct DeliverKeyframeRequests {
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for DeliverKeyframeRequests {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = RtcError;
    type Time = Instant;

    fn handle_read(&mut self, mut message: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &message.message.packet {
            let has_request = packets.iter().any(|packet| {
                let packet = packet.as_any();
                packet.is::<PictureLossIndication>() || packet.is::<FullIntraRequest>()
            });
            if has_request {
                message.message.add(Attribute::DeliverToApplication);
            }
        }
        self.read_queue.push_back(message);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, message: TaggedPacket) -> Result<(), Self::Error> {
        self.write_queue.push_back(message);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for DeliverKeyframeRequests {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// Keyframe requests received for one sent track, by the SSRC they name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// PLIs whose media SSRC is the track's SSRC.
    pub pli: u32,
    /// FIR entries that name the track's SSRC. The SFU turns requests into PLIs, so this stays
    /// 0 unless it forwards a FIR as it is.
    pub fir: u32,
    /// Requests that name any other SSRC, described for failure messages.
    pub foreign: Vec<String>,
}

/// Counts the keyframe requests that arrive on one sent track, from a background task that
/// reads the track's RTCP events until the track is unbound or [`KeyframeRequests::stop`].
pub struct KeyframeRequests {
    ssrc: u32,
    counts: watch::Receiver<RequestCounts>,
    task: JoinHandle<()>,
}

impl KeyframeRequests {
    /// Starts counting the requests for `track`, which sends on `ssrc`.
    pub fn start(track: Arc<TrackLocalStaticRTP>, ssrc: u32) -> KeyframeRequests {
        let (sender, counts) = watch::channel(RequestCounts::default());
        let task = tokio::spawn(count_requests(track, ssrc, sender));
        KeyframeRequests { ssrc, counts, task }
    }

    /// Returns the SSRC of the counted track.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Returns the counts so far.
    pub fn counts(&self) -> RequestCounts {
        self.counts.borrow().clone()
    }

    /// Returns the number of PLIs for the track's SSRC so far.
    pub fn pli_count(&self) -> u32 {
        self.counts.borrow().pli
    }

    /// Waits until more than `count` PLIs for the track's SSRC have arrived, and returns the new
    /// count. Panics with `awaited` when [`WAIT_TIMEOUT`] passes first.
    pub async fn wait_for_pli_above(&mut self, count: u32, awaited: &str) -> u32 {
        let waited = tokio::time::timeout(
            WAIT_TIMEOUT,
            self.counts.wait_for(|counts| counts.pli > count),
        )
        .await
        .map(|counts| counts.map(|counts| counts.pli));
        match waited {
            Ok(Ok(pli)) => pli,
            Ok(Err(_)) => panic!(
                "the publisher stopped reading RTCP on SSRC {:#010x} while waiting for {awaited}. \
                 Counts: {:?}",
                self.ssrc,
                self.counts()
            ),
            Err(_) => panic!(
                "timed out after {WAIT_TIMEOUT:?} waiting for {awaited}: the publisher has {:?} \
                 for SSRC {:#010x}",
                self.counts(),
                self.ssrc
            ),
        }
    }

    /// Stops counting.
    pub fn stop(&self) {
        self.task.abort();
    }
}

async fn count_requests(
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    counts: watch::Sender<RequestCounts>,
) {
    while let Some(event) = track.poll().await {
        let TrackLocalEvent::OnRtcpPacket(packets) = event else {
            continue;
        };
        for packet in &packets {
            let packet = packet.as_any();
            if let Some(pli) = packet.downcast_ref::<PictureLossIndication>() {
                counts.send_modify(|counts| {
                    if pli.media_ssrc == ssrc {
                        counts.pli += 1;
                    } else {
                        counts.foreign.push(format!("{pli:?}"));
                    }
                });
            } else if let Some(fir) = packet.downcast_ref::<FullIntraRequest>() {
                counts.send_modify(|counts| {
                    for entry in &fir.fir {
                        if entry.ssrc == ssrc {
                            counts.fir += 1;
                        } else {
                            counts.foreign.push(format!("{fir:?}"));
                        }
                    }
                });
            }
        }
    }
}
