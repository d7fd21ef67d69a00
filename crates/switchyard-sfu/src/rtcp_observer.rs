//! An interceptor next to the wire that counts RTCP feedback in both directions and measures
//! the round-trip time to the remote from its receiver reports.
//!
//! The round-trip time follows RFC 3550 section 6.4.1. A report block names, in LSR, the middle
//! 32 bits of the NTP timestamp of the last sender report the remote received from us. DLSR is
//! how long the remote held that report, in units of 1/65536 s. The observer remembers when each of its recent
//! sender reports left, so the round trip is the time since that report minus DLSR. This does
//! not depend on how `rtc` maps its clock to NTP time.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::interceptor::{Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtcp::Packet as RtcpPacket;
use rtc::sansio::Protocol;
use rtc::shared::error::Error as RtcError;

use crate::metrics::{Feedback, SfuCounters};

/// Sender reports remembered per connection. Browsers send receiver reports every few seconds and the
/// `rtc` sender report interval is one second, so a handful covers every stream of a call.
const REMEMBERED_REPORTS: usize = 16;

/// Round trips above this are discarded as stale or bogus report blocks.
const MAX_RTT: Duration = Duration::from_secs(60);

/// Counts feedback and measures round trips for one peer connection.
pub(crate) struct RtcpObserver {
    counters: Arc<SfuCounters>,
    /// Middle 32 bits of the NTP timestamp of each recent sender report, with its send time.
    sent_reports: [(u32, Option<Instant>); REMEMBERED_REPORTS],
    next_slot: usize,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl RtcpObserver {
    pub(crate) fn new(counters: Arc<SfuCounters>) -> Self {
        RtcpObserver {
            counters,
            sent_reports: [(0, None); REMEMBERED_REPORTS],
            next_slot: 0,
            read_queue: VecDeque::new(),
            write_queue: VecDeque::new(),
        }
    }

    fn observe_inbound(&self, now: Instant, packets: &[Box<dyn RtcpPacket>]) {
        for packet in packets {
            let packet = packet.as_any();
            if let Some(kind) = feedback_kind(packet) {
                self.counters.feedback_received(kind);
            } else if let Some(report) = packet.downcast_ref::<ReceiverReport>() {
                self.observe_blocks(now, &report.reports);
            } else if let Some(report) = packet.downcast_ref::<SenderReport>() {
                self.observe_blocks(now, &report.reports);
            }
        }
    }

    fn observe_outbound(&mut self, now: Instant, packets: &[Box<dyn RtcpPacket>]) {
        for packet in packets {
            let packet = packet.as_any();
            if let Some(kind) = feedback_kind(packet) {
                self.counters.feedback_sent(kind);
            } else if let Some(report) = packet.downcast_ref::<SenderReport>() {
                let middle = (report.ntp_time >> 16) as u32;
                self.sent_reports[self.next_slot] = (middle, Some(now));
                self.next_slot = (self.next_slot + 1) % REMEMBERED_REPORTS;
            }
        }
    }

    fn observe_blocks(&self, now: Instant, blocks: &[ReceptionReport]) {
        for block in blocks {
            // LSR 0 means the remote has received no sender report yet.
            if block.last_sender_report == 0 {
                continue;
            }
            if let Some(rtt) = self.round_trip(now, block) {
                self.counters.round_trip(rtt);
            }
        }
    }

    fn round_trip(&self, now: Instant, block: &ReceptionReport) -> Option<Duration> {
        let sent = self
            .sent_reports
            .iter()
            .find(|(middle, _)| *middle == block.last_sender_report)
            .and_then(|(_, sent)| *sent)?;
        let held = Duration::from_secs_f64(f64::from(block.delay) / 65536.0);
        let rtt = now.checked_duration_since(sent)?.checked_sub(held)?;
        (rtt <= MAX_RTT).then_some(rtt)
    }
}

fn feedback_kind(packet: &dyn std::any::Any) -> Option<Feedback> {
    if packet.is::<TransportLayerNack>() {
        Some(Feedback::Nack)
    } else if packet.is::<PictureLossIndication>() {
        Some(Feedback::Pli)
    } else if packet.is::<FullIntraRequest>() {
        Some(Feedback::Fir)
    } else {
        None
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for RtcpObserver {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = RtcError;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            self.observe_inbound(msg.now, packets);
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            self.observe_outbound(msg.now, packets);
        }
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }

    fn handle_timeout(&mut self, _now: Instant) -> Result<(), Self::Error> {
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        None
    }
}

impl Interceptor for RtcpObserver {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtcp(now: Instant, packets: Vec<Box<dyn RtcpPacket>>) -> TaggedPacket {
        TaggedPacket {
            now,
            transport: Default::default(),
            message: Packet::Rtcp(packets).into(),
        }
    }

    #[test]
    fn feedback_is_counted_both_ways() {
        let counters = Arc::new(SfuCounters::default());
        let mut observer = RtcpObserver::new(counters.clone());
        let now = Instant::now();
        let pli = PictureLossIndication {
            sender_ssrc: 1,
            media_ssrc: 2,
        };
        observer
            .handle_read(rtcp(now, vec![Box::new(TransportLayerNack::default())]))
            .unwrap();
        observer
            .handle_write(rtcp(now, vec![Box::new(pli)]))
            .unwrap();
        assert!(observer.poll_read().is_some());
        assert!(observer.poll_write().is_some());

        let snapshot = counters.snapshot();
        assert!(snapshot.feedback_received.contains(&("nack", 1)));
        assert!(snapshot.feedback_received.contains(&("pli", 0)));
        assert!(snapshot.feedback_sent.contains(&("pli", 1)));
    }

    #[test]
    fn receiver_report_gives_round_trip() {
        let counters = Arc::new(SfuCounters::default());
        let mut observer = RtcpObserver::new(counters.clone());
        let sent = Instant::now();
        let report = SenderReport {
            ssrc: 7,
            ntp_time: 0x0001_2345_6789_0000,
            ..Default::default()
        };
        observer
            .handle_write(rtcp(sent, vec![Box::new(report)]))
            .unwrap();

        // The remote held the report for 0.5 s, and its reply arrives 0.52 s after we sent it.
        let block = ReceptionReport {
            ssrc: 7,
            last_sender_report: 0x2345_6789,
            delay: 32768,
            ..Default::default()
        };
        let reply = ReceiverReport {
            ssrc: 9,
            reports: vec![block],
            ..Default::default()
        };
        let arrival = sent + Duration::from_millis(520);
        observer
            .handle_read(rtcp(arrival, vec![Box::new(reply)]))
            .unwrap();

        let rtt = counters.snapshot().rtt;
        assert_eq!(rtt.count, 1);
        assert!((rtt.sum_seconds - 0.02).abs() < 0.001, "{rtt:?}");
    }

    #[test]
    fn report_for_unknown_sender_report_is_ignored() {
        let counters = Arc::new(SfuCounters::default());
        let mut observer = RtcpObserver::new(counters.clone());
        let block = ReceptionReport {
            ssrc: 7,
            last_sender_report: 42,
            ..Default::default()
        };
        let reply = ReceiverReport {
            reports: vec![block],
            ..Default::default()
        };
        observer
            .handle_read(rtcp(Instant::now(), vec![Box::new(reply)]))
            .unwrap();
        assert_eq!(counters.snapshot().rtt.count, 0);
    }
}
