//! Writing a WebSocket connection's outbound queue to its socket.
//!
//! The queue's producer, usually the session task, writes what it queued itself, once per turn
//! of its loop, by calling [`Outbound::write_queued`](crate::outbound::Outbound::write_queued).
//! That saves a task wake-up and a hand-over per batch of frames. The connection's writer task
//! takes over whenever the producer cannot finish: when the socket is full, when the other side
//! holds the lock, when the close frame was written, and for pings. Both write under one lock
//! and take frames from the queue in order, so frames reach the client in the order they were
//! queued.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::SplitSink;
use futures_util::Sink;
use switchyard_proto::CloseCode;
use tokio::sync::{mpsc, Notify};
use tracing::trace;

use crate::outbound::{Encoded, OutboundError, Outgoing};

/// The socket and queue of one connection, shared by the queue's producer and the writer task.
#[derive(Debug)]
pub(crate) struct SharedSocket {
    state: Mutex<SocketState>,
    /// Wakes the writer task to write what the producer could not.
    wake_writer: Notify,
    /// Set when the producer is dropped, after which nothing more is queued.
    producer_dropped: AtomicBool,
}

#[derive(Debug)]
struct SocketState {
    sink: SplitSink<WebSocket, Message>,
    queue: mpsc::Receiver<Outgoing>,
    /// Frames taken from the queue, in order, that the sink has not accepted yet.
    held: VecDeque<Message>,
    /// Frames were given to the sink since its last flush.
    unflushed: bool,
    /// The close frame was taken from the queue, so nothing after it is written.
    closing: bool,
    /// The close frame was flushed or the socket failed, so nothing more is written.
    finished: bool,
    /// Error of a write the producer made, for the writer task to return.
    error: Option<axum::Error>,
}

/// State of the socket after a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Written {
    /// Everything queued so far is flushed.
    Idle,
    /// The close frame is flushed, or the socket failed.
    Finished,
}

impl SharedSocket {
    /// Wraps the sending half of a socket and the receiving end of its outbound queue.
    pub(crate) fn new(
        sink: SplitSink<WebSocket, Message>,
        queue: mpsc::Receiver<Outgoing>,
    ) -> Arc<Self> {
        Arc::new(SharedSocket {
            state: Mutex::new(SocketState {
                sink,
                queue,
                held: VecDeque::new(),
                unflushed: false,
                closing: false,
                finished: false,
                error: None,
            }),
            wake_writer: Notify::new(),
            producer_dropped: AtomicBool::new(false),
        })
    }

    /// Writes and flushes the queued frames if the socket takes them now, without waiting, and
    /// otherwise leaves them to the writer task.
    pub(crate) fn write_queued(&self) {
        let state = match self.state.try_lock() {
            Ok(state) => Some(state),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            // The writer task is writing, and it takes the new frames after the wake-up below.
            Err(TryLockError::WouldBlock) => None,
        };
        if let Some(mut state) = state {
            // A waker that does nothing: when the socket is full, the writer task polls again
            // with its own waker, because it is woken below.
            let mut context = Context::from_waker(Waker::noop());
            if let Poll::Ready(Written::Idle) = state.poll_write(&mut context) {
                return;
            }
        }
        self.wake_writer.notify_one();
    }

    /// Records that the producer is gone and wakes the writer task so that it stops after
    /// writing what is queued.
    pub(crate) fn producer_dropped(&self) {
        self.producer_dropped.store(true, Ordering::Release);
        self.wake_writer.notify_one();
    }

    fn lock(&self) -> MutexGuard<'_, SocketState> {
        // The state is consistent between polls, so a panic in another holder leaves it usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SocketState {
    /// Gives the held and queued frames to the sink, up to and including a close frame, and
    /// flushes it. Returns `Pending` when the socket is full, after registering `context`'s
    /// waker.
    fn poll_write(&mut self, context: &mut Context<'_>) -> Poll<Written> {
        if self.finished {
            return Poll::Ready(Written::Finished);
        }
        match self.poll_write_inner(context) {
            Poll::Ready(Ok(())) if self.closing => {
                self.finished = true;
                Poll::Ready(Written::Finished)
            }
            Poll::Ready(Ok(())) => Poll::Ready(Written::Idle),
            Poll::Ready(Err(error)) => {
                self.error = Some(error);
                self.finished = true;
                Poll::Ready(Written::Finished)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write_inner(&mut self, context: &mut Context<'_>) -> Poll<Result<(), axum::Error>> {
        loop {
            while !self.held.is_empty() {
                ready!(Pin::new(&mut self.sink).poll_ready(context))?;
                let Some(message) = self.held.pop_front() else {
                    break;
                };
                Pin::new(&mut self.sink).start_send(message)?;
                self.unflushed = true;
            }
            if self.closing {
                break;
            }
            match self.queue.try_recv() {
                Ok(item) => self.hold(item),
                // Empty, or the producer is gone: the writer task checks which.
                Err(_) => break,
            }
        }
        if self.unflushed {
            ready!(Pin::new(&mut self.sink).poll_flush(context))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }

    fn hold(&mut self, item: Outgoing) {
        match item {
            Outgoing::Message(message) => self.held.push_back(text_frame(&message)),
            Outgoing::Batch(messages) => {
                self.held.extend(messages.iter().map(text_frame));
            }
            Outgoing::Close(code) => {
                self.held.push_back(close_frame(code));
                self.closing = true;
            }
        }
    }
}

/// Closes the queue when the writer task ends or is aborted, so that the producer's next push
/// fails with [`OutboundError::WriterStopped`].
struct CloseQueueOnDrop(Arc<SharedSocket>);

impl Drop for CloseQueueOnDrop {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.finished = true;
        state.queue.close();
    }
}

/// Writes what the producer leaves to it until a close frame was sent, the producer is dropped,
/// or the socket fails. Sends a ping every `ping_interval` so that the reader can tell a dead
/// peer from a quiet one.
pub(crate) async fn write_loop(
    socket: Arc<SharedSocket>,
    ping_interval: Duration,
) -> Result<(), OutboundError> {
    let _close_queue = CloseQueueOnDrop(socket.clone());
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + ping_interval, ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Read before writing: once it is set, nothing is queued after the write below.
        let producer_dropped = socket.producer_dropped.load(Ordering::Acquire);
        // Listening before writing, so a wake-up sent during the write is not lost.
        let woken = socket.wake_writer.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();

        let written = tokio::select! {
            written = poll_fn(|context| socket.lock().poll_write(context)) => written,
            // The producer wrote while the socket was full, and its waker replaced ours, so
            // write again to register ours.
            () = &mut woken => continue,
        };
        if written == Written::Finished {
            return match socket.lock().error.take() {
                Some(error) => Err(OutboundError::Write(error)),
                None => Ok(()),
            };
        }
        if producer_dropped {
            return Ok(());
        }

        tokio::select! {
            () = woken => {}
            _ = ping.tick() => {
                let payload = crate::metrics::ping_payload();
                let mut state = socket.lock();
                if !state.closing {
                    state.held.push_back(Message::Ping(payload.to_vec().into()));
                }
            }
        }
    }
}

fn text_frame(message: &Encoded) -> Message {
    let text = message.text();
    trace!(seq = message.seq, bytes = text.len(), "sending message");
    Message::Text(text)
}

pub(crate) fn close_frame(code: CloseCode) -> Message {
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
