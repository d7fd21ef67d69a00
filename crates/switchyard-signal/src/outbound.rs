//! The one ordered, bounded queue of frames for a client connection. For a WebSocket it is
//! written to the socket as [`crate::writer`] describes; a Server-Sent Events stream reads it.
//!
//! Room events, SFU events and replies all pass through [`Outbound::push`], so frames reach the
//! client in the order they were pushed. The queue has one producer at a time: the connection
//! driver before `join`, the session after. That producer keeps one slot free for the close
//! frame, so a connection can always end with its close code even when the client stopped
//! reading and the queue is full.

use std::io::Write as _;
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use switchyard_proto::{CloseCode, ServerFrame, ServerMessage};
use tokio::sync::mpsc;
use tracing::error;

use crate::writer::SharedSocket;

/// A server message encoded as JSON, with its sequence number if it has one.
///
/// `body` is the JSON object without `seq`. [`Encoded::text`] puts `seq` in front when the
/// frame is written, so the recipients of one broadcast share one encoded body and each gets
/// its own number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Encoded {
    pub seq: Option<u64>,
    pub body: Utf8Bytes,
}

impl Encoded {
    /// Returns the JSON text as it goes on the wire: `body` with `"seq":N` as its first member.
    /// That is the text `serde_json` makes of the [`ServerFrame`] with `seq` set, because
    /// `seq` is the frame's first field.
    pub(crate) fn text(&self) -> Utf8Bytes {
        let mut prefix = SeqPrefix::default();
        let members = self.split(&mut prefix);
        if prefix.len == 0 {
            return self.body.clone();
        }
        let mut text = String::with_capacity(prefix.len + members.len());
        text.push_str(prefix.as_str());
        text.push_str(members);
        text.into()
    }

    /// Appends the message as a WebSocket text frame, with the same text as [`Encoded::text`].
    pub(crate) fn put_frame(&self, out: &mut Vec<u8>) {
        let mut prefix = SeqPrefix::default();
        let members = self.split(&mut prefix);
        crate::websocket::put_text(out, &[prefix.as_str().as_bytes(), members.as_bytes()]);
    }

    /// Writes `{"seq":N,` into `prefix` and returns the rest of the body after its `{`, or
    /// leaves `prefix` empty and returns the whole body when there is no `seq`.
    fn split<'a>(&'a self, prefix: &mut SeqPrefix) -> &'a str {
        let Some(seq) = self.seq else {
            return self.body.as_str();
        };
        // `encode` writes a JSON object, so the body starts with `{`.
        let Some(members) = self.body.as_str().strip_prefix('{') else {
            error!(body = %self.body, "encoded message is not a JSON object, sending it without seq");
            return self.body.as_str();
        };
        let separator = if members == "}" { "" } else { "," };
        let mut cursor = &mut prefix.bytes[..];
        // The buffer fits the longest prefix, so writing to it cannot fail.
        let _ = write!(cursor, "{{\"seq\":{seq}{separator}");
        prefix.len = MAX_SEQ_PREFIX_BYTES - cursor.len();
        members
    }
}

/// The `{"seq":N,` in front of a numbered message, built without allocating.
#[derive(Default)]
struct SeqPrefix {
    bytes: [u8; MAX_SEQ_PREFIX_BYTES],
    len: usize,
}

impl SeqPrefix {
    fn as_str(&self) -> &str {
        // Only ASCII is written.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

/// Maximum length of `{"seq":N,`, with the 20 digits of the largest `u64`.
const MAX_SEQ_PREFIX_BYTES: usize = "{\"seq\":,".len() + 20;

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
    Write(#[source] std::io::Error),
}

/// Producer side of the queue. Deliberately not `Clone`: the free slot for the close frame is
/// only guaranteed while there is a single producer.
#[derive(Debug)]
pub(crate) struct Outbound {
    target: Target,
    capacity: usize,
}

/// Destination of queued items.
#[derive(Debug)]
enum Target {
    /// A channel that a Server-Sent Events stream reads.
    Channel(mpsc::Sender<Outgoing>),
    /// A WebSocket, which the producer writes to itself in [`Outbound::write_queued`].
    Socket(Arc<SharedSocket>),
}

/// Creates a queue for `capacity` messages, plus the slot kept for the close frame.
pub(crate) fn channel(capacity: usize) -> (Outbound, mpsc::Receiver<Outgoing>) {
    let capacity = capacity.max(1);
    let (sender, receiver) = mpsc::channel(capacity + 1);
    let outbound = Outbound {
        target: Target::Channel(sender),
        capacity,
    };
    (outbound, receiver)
}

/// Creates a queue for `capacity` messages that is written to `socket`.
pub(crate) fn websocket_queue(capacity: usize, socket: Arc<SharedSocket>) -> Outbound {
    Outbound {
        target: Target::Socket(socket),
        capacity: capacity.max(1),
    }
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
        let sender = match &self.target {
            Target::Socket(socket) => return socket.push(item, self.capacity),
            Target::Channel(sender) => sender,
        };
        if sender.is_closed() {
            return Err(OutboundError::WriterStopped);
        }
        // Only the reader consumes, so the free capacity can only grow between this check and
        // the send below.
        if sender.capacity() <= 1 {
            return Err(OutboundError::Full {
                capacity: self.capacity,
            });
        }
        sender
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
        let _ = match &self.target {
            Target::Socket(socket) => socket.push(Outgoing::Close(code), self.capacity),
            Target::Channel(sender) => sender
                .try_send(Outgoing::Close(code))
                .map_err(|_| OutboundError::WriterStopped),
        };
        self.write_queued();
    }

    /// Writes the queued messages to the WebSocket now if it takes them without waiting, and
    /// otherwise wakes the connection's driver to write them. Frames pushed since the last call
    /// wait until the next one, so a producer calls it after each batch of pushes.
    pub(crate) fn write_queued(&self) {
        if let Target::Socket(socket) = &self.target {
            socket.write_queued();
        }
    }
}

impl Drop for Outbound {
    fn drop(&mut self) {
        if let Target::Socket(socket) = &self.target {
            socket.producer_dropped();
        }
    }
}

/// Encodes a frame as JSON and counts it as sent. Returns `None`, after logging, if encoding
/// fails, which would be a bug: `ServerFrame` has only string keys and plain values.
pub(crate) fn encode(frame: &ServerFrame) -> Option<Encoded> {
    crate::metrics::counters().message_sent(&frame.message);
    let body = encode_body(frame.request_id.as_deref(), &frame.message)?;
    Some(Encoded {
        seq: frame.seq,
        body,
    })
}

/// Encodes a message as the JSON object of a [`ServerFrame`] without `seq`, which
/// [`Encoded::text`] adds. Does not count it as sent.
pub(crate) fn encode_body(request_id: Option<&str>, message: &ServerMessage) -> Option<Utf8Bytes> {
    let body = FrameBody {
        request_id,
        message,
    };
    match serde_json::to_string(&body) {
        Ok(text) => Some(text.into()),
        Err(err) => {
            error!(error = %err, ?message, "could not encode server message, dropping it");
            None
        }
    }
}

/// A [`ServerFrame`] without `seq`, serialized with the same field names and order.
#[derive(serde::Serialize)]
struct FrameBody<'a> {
    #[serde(rename = "requestId", skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(flatten)]
    message: &'a ServerMessage,
}

#[cfg(test)]
mod tests {
    use super::*;
    fn message(n: usize) -> Encoded {
        Encoded {
            seq: Some(n as u64),
            body: Utf8Bytes::from(format!("{{\"n\":{n}}}")),
        }
    }

    #[test]
    fn text_equals_serde_encoding_of_the_frame() {
        let messages = [
            (None, ServerMessage::Ok),
            (
                Some("r1".to_owned()),
                ServerMessage::error(switchyard_proto::ErrorCode::InvalidMessage, "bad \"x\""),
            ),
            (
                None,
                ServerMessage::Chat {
                    from: "p1".into(),
                    text: "hi \u{2603}\n".into(),
                    ts: 17,
                },
            ),
        ];
        for (request_id, message) in messages {
            for seq in [None, Some(1), Some(10), Some(u64::MAX)] {
                let frame = ServerFrame {
                    seq,
                    request_id: request_id.clone(),
                    message: message.clone(),
                };
                let expected = serde_json::to_string(&frame).unwrap();
                let encoded = encode(&frame).unwrap();
                assert_eq!(encoded.seq, seq);
                assert_eq!(encoded.text().as_str(), expected);
            }
        }
    }

    #[test]
    fn text_of_an_empty_body_has_only_seq() {
        let encoded = Encoded {
            seq: Some(3),
            body: Utf8Bytes::from_static("{}"),
        };
        assert_eq!(encoded.text().as_str(), r#"{"seq":3}"#);
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
}
