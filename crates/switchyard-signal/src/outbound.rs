//! The one ordered, bounded queue of frames for a client connection, and the WebSocket writer
//! task that drains it.
//!
//! Room events, SFU events and replies all pass through [`Outbound::push`], so frames reach the
//! client in the order they were pushed. The queue has one producer at a time: the connection
//! driver before `join`, the session after. That producer keeps one slot free for the close
//! frame, so a connection can always end with its close code even when the client stopped
//! reading and the queue is full.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::SplitSink;
use futures_util::SinkExt;
use switchyard_proto::{CloseCode, ServerFrame};
use tokio::sync::mpsc;
use tracing::{error, trace};

/// A server message encoded as JSON text, with its sequence number if it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Encoded {
    pub seq: Option<u64>,
    pub text: Utf8Bytes,
}

/// Item of the outbound queue.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// A message to send as a JSON text frame.
    Message(Encoded),
    /// Messages to send one after another, for example the replay after a resume. They take
    /// one slot of the queue.
    Batch(Vec<Encoded>),
    /// A close frame, after which the writer stops.
    Close(CloseCode),
}

/// Failure to queue or write a frame.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OutboundError {
    /// The client is not reading and `capacity` messages are already waiting.
    #[error("outbound queue is full ({capacity} messages waiting)")]
    Full {
        /// Configured queue length.
        capacity: usize,
    },
    /// The writer task has stopped because writing to the socket failed.
    #[error("writer task has stopped")]
    WriterStopped,
    /// Writing a frame to the socket failed.
    #[error("writing to the WebSocket failed: {0}")]
    Write(#[source] axum::Error),
}

/// Producer side of the queue. Deliberately not `Clone`: the free slot for the close frame is
/// only guaranteed while there is a single producer.
#[derive(Debug)]
pub(crate) struct Outbound {
    sender: mpsc::Sender<Outgoing>,
    capacity: usize,
}

/// Creates a queue for `capacity` messages, plus the slot kept for the close frame.
pub(crate) fn channel(capacity: usize) -> (Outbound, mpsc::Receiver<Outgoing>) {
    let capacity = capacity.max(1);
    let (sender, receiver) = mpsc::channel(capacity + 1);
    (Outbound { sender, capacity }, receiver)
}

impl Outbound {
    /// Queues a message without waiting.
    pub(crate) fn push(&self, message: Encoded) -> Result<(), OutboundError> {
        self.push_item(Outgoing::Message(message))
    }

    /// Queues several messages in one slot without waiting.
    pub(crate) fn push_batch(&self, messages: Vec<Encoded>) -> Result<(), OutboundError> {
        self.push_item(Outgoing::Batch(messages))
    }

    fn push_item(&self, item: Outgoing) -> Result<(), OutboundError> {
        if self.sender.is_closed() {
            return Err(OutboundError::WriterStopped);
        }
        // Only the writer consumes, so the free capacity can only grow between this check and
        // the send below.
        if self.sender.capacity() <= 1 {
            return Err(OutboundError::Full {
                capacity: self.capacity,
            });
        }
        self.sender
            .try_send(item)
            .map_err(|_| OutboundError::WriterStopped)
    }

    /// Queues `farewell` if there is room for it, then the close frame, and consumes the queue.
    pub(crate) fn close(self, farewell: Option<Encoded>, code: CloseCode) {
        if let Some(message) = farewell {
            // A full queue means a slow client, which gets only the close code.
            let _ = self.push(message);
        }
        // The slot kept free by `push` guarantees room. A stopped writer needs no close frame.
        let _ = self.sender.try_send(Outgoing::Close(code));
    }
}

/// Sends the queued frames in order until a close frame was sent, the queue's producer is
/// dropped, or the socket fails. Sends a ping every `ping_interval` so that the reader can
/// tell a dead peer from a quiet one.
pub(crate) async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut queue: mpsc::Receiver<Outgoing>,
    ping_interval: Duration,
) -> Result<(), OutboundError> {
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + ping_interval, ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            item = queue.recv() => match item {
                Some(item) => item,
                None => return Ok(()),
            },
            _ = ping.tick() => {
                let payload = crate::metrics::ping_payload();
                sink.send(Message::Ping(payload.to_vec().into()))
                    .await
                    .map_err(OutboundError::Write)?;
                continue;
            }
        };
        // Buffer everything already waiting and flush once, instead of once per frame.
        let mut next = Some(first);
        while let Some(item) = next {
            match item {
                Outgoing::Message(message) => feed(&mut sink, message).await?,
                Outgoing::Batch(messages) => {
                    for message in messages {
                        feed(&mut sink, message).await?;
                    }
                }
                Outgoing::Close(code) => {
                    sink.send(close_frame(code))
                        .await
                        .map_err(OutboundError::Write)?;
                    return Ok(());
                }
            }
            next = queue.try_recv().ok();
        }
        sink.flush().await.map_err(OutboundError::Write)?;
    }
}

async fn feed(
    sink: &mut SplitSink<WebSocket, Message>,
    message: Encoded,
) -> Result<(), OutboundError> {
    trace!(
        seq = message.seq,
        bytes = message.text.len(),
        "sending message"
    );
    sink.feed(Message::Text(message.text))
        .await
        .map_err(OutboundError::Write)
}

/// Encodes a frame as JSON text. Returns `None`, after logging, if encoding fails, which would
/// be a bug: `ServerFrame` has only string keys and plain values.
pub(crate) fn encode(frame: &ServerFrame) -> Option<Encoded> {
    crate::metrics::counters().message_sent(&frame.message);
    match serde_json::to_string(frame) {
        Ok(text) => Some(Encoded {
            seq: frame.seq,
            text: text.into(),
        }),
        Err(err) => {
            error!(error = %err, ?frame, "could not encode server message, dropping it");
            None
        }
    }
}

fn close_frame(code: CloseCode) -> Message {
    let reason = match code {
        CloseCode::Normal => "left",
        CloseCode::GoingAway => "server shutdown",
        CloseCode::MessageTooBig => "message too large",
        CloseCode::SlowConsumer => "slow consumer",
        CloseCode::Superseded => "resumed on another connection",
        CloseCode::Replaced => "replaced by a new join",
        CloseCode::RateLimited => "message rate limit exceeded",
    };
    Message::Close(Some(CloseFrame {
        code: code.code(),
        reason: Utf8Bytes::from_static(reason),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    fn message(n: usize) -> Encoded {
        Encoded {
            seq: Some(n as u64),
            text: Utf8Bytes::from(n.to_string()),
        }
    }

    #[test]
    fn push_fails_when_capacity_messages_wait() {
        let (outbound, _queue) = channel(3);
        for n in 0..3 {
            outbound.push(message(n)).unwrap();
        }
        assert!(matches!(
            outbound.push(message(3)),
            Err(OutboundError::Full { capacity: 3 })
        ));
    }

    #[test]
    fn close_fits_into_a_full_queue() {
        let (outbound, mut queue) = channel(2);
        outbound.push(message(0)).unwrap();
        outbound.push(message(1)).unwrap();
        outbound.close(Some(message(2)), CloseCode::SlowConsumer);

        let mut items = Vec::new();
        while let Ok(item) = queue.try_recv() {
            items.push(item);
        }
        assert_eq!(items.len(), 3);
        assert!(matches!(
            items.last(),
            Some(Outgoing::Close(CloseCode::SlowConsumer))
        ));
    }

    #[test]
    fn farewell_precedes_close_when_there_is_room() {
        let (outbound, mut queue) = channel(4);
        outbound.close(Some(message(7)), CloseCode::GoingAway);
        assert!(matches!(queue.try_recv(), Ok(Outgoing::Message(_))));
        assert!(matches!(
            queue.try_recv(),
            Ok(Outgoing::Close(CloseCode::GoingAway))
        ));
    }

    #[test]
    fn push_fails_after_writer_stops() {
        let (outbound, queue) = channel(4);
        drop(queue);
        assert!(matches!(
            outbound.push(message(0)),
            Err(OutboundError::WriterStopped)
        ));
    }

    #[test]
    fn zero_capacity_counts_as_one() {
        let (outbound, _queue) = channel(0);
        outbound.push(message(0)).unwrap();
        assert!(matches!(
            outbound.push(message(1)),
            Err(OutboundError::Full { capacity: 1 })
        ));
    }

    #[test]
    fn close_reasons_fit_a_control_frame() {
        let codes = [
            CloseCode::Normal,
            CloseCode::GoingAway,
            CloseCode::MessageTooBig,
            CloseCode::SlowConsumer,
            CloseCode::Superseded,
            CloseCode::Replaced,
        ];
        for code in codes {
            let Message::Close(Some(frame)) = close_frame(code) else {
                panic!("not a close frame");
            };
            assert_eq!(frame.code, code.code());
            // RFC 6455 section 5.5: control frame payloads are at most 125 bytes, two of which
            // carry the code.
            assert!(frame.reason.len() <= 123);
        }
    }
}
