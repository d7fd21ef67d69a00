//! The socket of one WebSocket connection, shared by the connection's driver task, which reads
//! it, and by the producer of its outbound queue (the driver before `join`, the session after),
//! which writes to it.
//!
//! The producer writes what it queued itself, once per turn of its loop, by calling
//! [`Outbound::write_queued`](crate::outbound::Outbound::write_queued). That saves a task wake-up
//! and a hand-over per batch of frames. The driver takes over whenever the producer cannot
//! finish: when the socket is full or the driver holds the lock at that moment. Both write under
//! one lock and take frames from the queue in order, so frames reach the client in the order
//! they were queued. Control frames (pings, pongs, the close reply) go straight into the
//! output buffer, ahead of queued frames.
//!
//! An idle connection keeps no buffers: the queue, the bytes not yet written and the bytes of
//! an incomplete incoming frame are each freed when they become empty.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::task::{ready, Context, Poll, Waker};

use futures_util::task::AtomicWaker;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use switchyard_proto::CloseCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::trace;

use crate::outbound::{OutboundError, Outgoing};
use crate::websocket::{self, Decoder, Incoming, ReadError};

/// The upgraded HTTP connection.
pub(crate) type Io = TokioIo<Upgraded>;

/// Bytes read from the socket per read. The buffer is on the stack of the read call, so it
/// costs an idle connection nothing.
const READ_CHUNK: usize = 4096;

/// Queued frames are encoded until the output buffer has this many bytes, then written.
const WRITE_BATCH: usize = 64 * 1024;

/// A pong is left out while the output buffer has more unwritten bytes than this, so that a
/// client that sends pings and never reads cannot grow the buffer without bound. The buffer
/// reaches this size only while the socket accepts nothing. RFC 6455 section 5.5.3 allows a pong
/// for only the latest of several pings. This also leaves out the latest, so the client gets
/// its next pong for a ping sent after the backlog is written.
const MAX_UNWRITTEN_FOR_PONG: usize = 4 * WRITE_BATCH;

/// The socket, queue and buffers of one connection.
#[derive(Debug)]
pub(crate) struct SharedSocket {
    io: Mutex<IoState>,
    queue: Mutex<Queue>,
    /// Wakes the driver to write what the producer could not, when `wake_pending` is set. A
    /// flag and a waker take less room in every connection than a `Notify` and the driver's
    /// future waiting on it.
    wake_driver: AtomicWaker,
    wake_pending: AtomicBool,
    /// Set when the producer is dropped, after which nothing more is queued.
    producer_dropped: AtomicBool,
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Outgoing>,
    /// Set when nothing will be written any more, after which pushes fail.
    stopped: bool,
}

#[derive(Debug)]
struct IoState {
    io: Io,
    decoder: Decoder,
    /// Encoded frames, of which the first `written` bytes are on the socket.
    out: Vec<u8>,
    written: usize,
    /// A close frame is in `out`, so nothing after it is added.
    closing: bool,
    /// The close frame was written or the socket failed, so nothing more is written.
    finished: bool,
    /// Error of a failed write, for the driver to log.
    error: Option<io::Error>,
}

/// State of the socket after a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Written {
    /// Everything queued so far is written.
    Idle,
    /// The close frame is written, or the socket failed.
    Finished,
}

impl SharedSocket {
    /// Wraps an upgraded connection.
    pub(crate) fn new(io: Io) -> Arc<Self> {
        Arc::new(SharedSocket {
            io: Mutex::new(IoState {
                io,
                decoder: Decoder::default(),
                out: Vec::new(),
                written: 0,
                closing: false,
                finished: false,
                error: None,
            }),
            queue: Mutex::new(Queue::default()),
            wake_driver: AtomicWaker::new(),
            wake_pending: AtomicBool::new(false),
            producer_dropped: AtomicBool::new(false),
        })
    }

    /// Queues an item unless `capacity` messages already wait. A close frame always fits.
    pub(crate) fn push(&self, item: Outgoing, capacity: usize) -> Result<(), OutboundError> {
        let mut queue = lock(&self.queue);
        if queue.stopped {
            return Err(OutboundError::WriterStopped);
        }
        if !matches!(item, Outgoing::Close(_)) && queue.items.len() >= capacity {
            return Err(OutboundError::Full { capacity });
        }
        queue.items.push_back(item);
        Ok(())
    }

    /// Writes the queued frames if the socket takes them now, without waiting, and otherwise
    /// leaves them to the driver.
    pub(crate) fn write_queued(&self) {
        let state = match self.io.try_lock() {
            Ok(state) => Some(state),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            // The driver holds the lock, and writes after the wake-up below.
            Err(TryLockError::WouldBlock) => None,
        };
        if let Some(mut state) = state {
            // A waker that does nothing: when the socket is full, the driver polls again with
            // its own waker, because it is woken below.
            let mut context = Context::from_waker(Waker::noop());
            if let Poll::Ready(Written::Idle) = state.poll_write(&mut context, &self.queue) {
                return;
            }
        }
        self.wake();
    }

    /// Records that the producer is gone and wakes the driver.
    pub(crate) fn producer_dropped(&self) {
        self.producer_dropped.store(true, Ordering::Release);
        self.wake();
    }

    fn wake(&self) {
        self.wake_pending.store(true, Ordering::Release);
        self.wake_driver.wake();
    }

    /// Returns whether the producer is gone.
    pub(crate) fn is_producer_dropped(&self) -> bool {
        self.producer_dropped.load(Ordering::Acquire)
    }

    /// Returns `Ready` once for each time the producer left frames for the driver to write
    /// or was dropped since the last call, and otherwise registers the driver's waker.
    pub(crate) fn poll_woken(&self, context: &mut Context<'_>) -> Poll<()> {
        if self.wake_pending.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        self.wake_driver.register(context.waker());
        // A wake-up between the check and the registration found no waker to wake.
        if self.wake_pending.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Writes the output buffer and the queued frames, up to and including a close frame.
    /// Returns `Pending` when the socket is full, after registering `context`'s waker.
    pub(crate) fn poll_write(&self, context: &mut Context<'_>) -> Poll<Written> {
        let written = ready!(lock(&self.io).poll_write(context, &self.queue));
        if written == Written::Finished {
            self.stop_queue(false);
        }
        Poll::Ready(written)
    }

    /// Reads the next message or control frame. `limit` bounds its size.
    pub(crate) fn poll_read(
        &self,
        context: &mut Context<'_>,
        limit: usize,
    ) -> Poll<Result<Incoming, ReadError>> {
        lock(&self.io).poll_read(context, limit)
    }

    /// Adds a ping to the output buffer unless a close frame is already there or writing has
    /// finished. The caller writes it with [`SharedSocket::poll_write`].
    pub(crate) fn ping(&self, payload: &[u8]) {
        let mut state = lock(&self.io);
        if !state.closing && !state.finished {
            websocket::put_ping(&mut state.out, payload);
        }
    }

    /// Adds a pong echoing `payload` to the output buffer unless a close frame is already there,
    /// writing has finished, or more than [`MAX_UNWRITTEN_FOR_PONG`] bytes wait to be written.
    pub(crate) fn pong(&self, payload: &[u8]) {
        let mut state = lock(&self.io);
        let unwritten = state.out.len().saturating_sub(state.written);
        if !state.closing && !state.finished && unwritten <= MAX_UNWRITTEN_FOR_PONG {
            websocket::put_pong(&mut state.out, payload);
        }
    }

    /// Adds a close frame to the output buffer, ahead of anything still queued, unless one is
    /// already there. Used to reply to the client's close frame and to protocol violations.
    pub(crate) fn close_now(&self, code: u16, reason: &str) {
        let mut state = lock(&self.io);
        if !state.closing {
            websocket::put_close(&mut state.out, code, reason);
            state.closing = true;
        }
    }

    /// Stops taking frames, so that later pushes fail with [`OutboundError::WriterStopped`].
    /// With `discard`, what is queued is dropped unwritten.
    pub(crate) fn stop_queue(&self, discard: bool) {
        let mut queue = lock(&self.queue);
        queue.stopped = true;
        if discard {
            queue.items = VecDeque::new();
        }
    }

    /// Takes the error of a failed write.
    pub(crate) fn take_error(&self) -> Option<io::Error> {
        lock(&self.io).error.take()
    }
}

/// Locks a mutex. The states are consistent between calls, so a panic in another holder
/// leaves them usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl IoState {
    fn poll_write(&mut self, context: &mut Context<'_>, queue: &Mutex<Queue>) -> Poll<Written> {
        if self.finished {
            return Poll::Ready(Written::Finished);
        }
        match self.poll_write_inner(context, queue) {
            Poll::Ready(Ok(())) if self.closing => {
                self.finished = true;
                Poll::Ready(Written::Finished)
            }
            Poll::Ready(Ok(())) => Poll::Ready(Written::Idle),
            Poll::Ready(Err(error)) => {
                self.error = Some(error);
                self.finished = true;
                self.out = Vec::new();
                self.written = 0;
                Poll::Ready(Written::Finished)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write_inner(
        &mut self,
        context: &mut Context<'_>,
        queue: &Mutex<Queue>,
    ) -> Poll<io::Result<()>> {
        loop {
            while self.written < self.out.len() {
                let n =
                    ready!(Pin::new(&mut self.io).poll_write(context, &self.out[self.written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.written += n;
            }
            self.out.clear();
            self.written = 0;
            if self.closing || !self.encode_queued(queue) {
                break;
            }
        }
        // Free the buffer, so that an idle connection does not keep it.
        self.out = Vec::new();
        Pin::new(&mut self.io).poll_flush(context)
    }

    /// Encodes queued frames into the output buffer, up to [`WRITE_BATCH`] bytes or a close
    /// frame. Returns whether it encoded any.
    fn encode_queued(&mut self, queue: &Mutex<Queue>) -> bool {
        let mut queue = lock(queue);
        let mut any = false;
        while self.out.len() < WRITE_BATCH && !self.closing {
            let Some(item) = queue.items.pop_front() else {
                break;
            };
            any = true;
            match item {
                Outgoing::Message(message) => {
                    trace!(seq = message.seq, "sending message");
                    message.put_frame(&mut self.out);
                }
                Outgoing::Batch(messages) => {
                    for message in &messages {
                        message.put_frame(&mut self.out);
                    }
                }
                Outgoing::Close(code) => {
                    websocket::put_close(&mut self.out, code.code(), close_reason(code));
                    self.closing = true;
                }
            }
        }
        if queue.items.is_empty() && queue.items.capacity() > 0 {
            queue.items = VecDeque::new();
        }
        any
    }

    fn poll_read(
        &mut self,
        context: &mut Context<'_>,
        limit: usize,
    ) -> Poll<Result<Incoming, ReadError>> {
        loop {
            if let Some(message) = self.decoder.decode(limit)? {
                return Poll::Ready(Ok(message));
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut buf = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut self.io).poll_read(context, &mut buf))?;
            if buf.filled().is_empty() {
                return Poll::Ready(Err(ReadError::Eof));
            }
            self.decoder.extend(buf.filled());
        }
    }
}

/// Returns the reason text sent with a close code.
pub(crate) fn close_reason(code: CloseCode) -> &'static str {
    match code {
        CloseCode::Normal => "left",
        CloseCode::GoingAway => "server shutdown",
        CloseCode::MessageTooBig => "message too large",
        CloseCode::SlowConsumer => "slow consumer",
        CloseCode::Superseded => "resumed on another connection",
        CloseCode::Replaced => "replaced by a new join",
        CloseCode::RateLimited => "message rate limit exceeded",
    }
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
            CloseCode::RateLimited,
        ];
        for code in codes {
            // RFC 6455 section 5.5: control frame payloads are at most 125 bytes, two of which
            // carry the code.
            assert!(close_reason(code).len() <= websocket::MAX_CONTROL_PAYLOAD - 2);
        }
    }
}
