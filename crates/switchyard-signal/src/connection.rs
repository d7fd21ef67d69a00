//! WebSocket driver for one client connection: upgrades the request, reads frames, and hands
//! them to the session the connection carries.
//!
//! Until `join` or `resume`, the driver replies to messages itself, without sequence numbers.
//! `join` starts a session task that takes over the connection's outbound queue; `resume` gives
//! the queue to an existing session. From then on the driver passes every text frame to the
//! session and only watches the connection: a close frame, a read error, an oversized message
//! or a missing pong detaches it from the session, which then waits for a resume.

use std::error::Error as _;
use std::future::Future;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::stream::SplitStream;
use futures_util::StreamExt;
use switchyard_proto::{ClientFrame, CloseCode, ErrorCode, ServerFrame, ServerMessage};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tracing::{debug, error, info_span, Instrument};

use crate::join::{join, Rejected};
use crate::metrics::{self, decode_and_count};
use crate::outbound::{self, encode, Outbound, OutboundError};
use crate::participant::{rate_limit_close, Attach, Input, SessionHandle};
use crate::rate::{Admission, RateLimiter};
use crate::session::{unbound_step, JoinRequest, SessionEnd, TransportEnd, Unbound};
use crate::state::AppState;
use crate::trace::{request_span, TraceParent};

/// Handles `GET /v1/ws`: applies the message size limit and starts the driver after the
/// upgrade.
pub(crate) async fn upgrade(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Response {
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "server is shutting down").into_response();
    }
    if let Some(response) = origin_rejection(&state, &headers) {
        return response;
    }

    let connection_id = state.next_connection_id();
    let trace = TraceParent::from_headers(&headers);
    // Taken before the upgrade so that shutdown also waits for connections that are starting.
    let tracker_token = state.sessions.token();
    let limit = state.config.max_message_size;

    // tungstenite checks the frame limit on each frame header, before reading the payload, and
    // the message limit on reassembled fragments. Without both, tungstenite 0.29's defaults of
    // 16 MiB per frame and 64 MiB per message would apply.
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(READ_BUFFER_SIZE)
        .on_failed_upgrade(move |error| debug!(connection_id, %error, "WebSocket upgrade failed"))
        .on_upgrade(move |socket| {
            let span = info_span!("connection", connection_id);
            // A future keeps room for what it captures for as long as it lives, so the socket
            // is taken apart before the connection's long-lived future is built. That future
            // gets a task of its own, because axum's upgrade task is several KiB larger.
            let connection =
                span.in_scope(|| start(socket, state, connection_id, trace, tracker_token));
            let task = connection.instrument(span);
            tokio::spawn(task);
            std::future::ready(())
        })
}

/// Bytes tungstenite reads from the socket at a time. Its default, 128 KiB, is allocated and
/// zero-filled before every read on every connection, idle or not, while signaling messages
/// are mostly under 1 KiB. A longer frame takes one read per KiB, which is cheap at signaling
/// message rates.
const READ_BUFFER_SIZE: usize = 1024;

/// Text of the `rate_limited` error for one dropped message.
const RATE_LIMITED_MESSAGE: &str =
    "too many messages per second, the message was dropped; slow down";

/// Returns the 403 `origin_not_allowed` response for a request whose `Origin` is not in
/// [`crate::SignalConfig::allowed_origins`], or `None` to accept it. An empty list accepts
/// every request.
pub(crate) fn origin_rejection(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let allowed = &state.config.allowed_origins;
    if allowed.is_empty() {
        return None;
    }
    let origin = headers
        .get(axum::http::header::ORIGIN)
        .and_then(|value| value.to_str().ok());
    if origin.is_some_and(|origin| allowed.iter().any(|a| a == origin)) {
        return None;
    }
    debug!(?origin, "request from an origin that is not allowed");
    let frame = ServerFrame::event(ServerMessage::error(
        ErrorCode::OriginNotAllowed,
        "the page's origin is not in the server's allowed origins",
    ));
    metrics::counters().message_sent(&frame.message);
    Some((StatusCode::FORBIDDEN, axum::Json(frame)).into_response())
}

/// Starts the writer task and returns the driver's future, which reads until the connection
/// ends and then releases `tracker_token`.
fn start(
    socket: WebSocket,
    state: AppState,
    connection_id: u64,
    trace: Option<TraceParent>,
    tracker_token: TaskTrackerToken,
) -> impl Future<Output = ()> {
    debug!("connection opened");
    let open = metrics::counters().connection_opened(metrics::Transport::WebSocket);
    let (sink, stream) = socket.split();
    let (outbound, socket) = outbound::websocket_channel(state.config.outbound_queue, sink);
    let ping_interval = state.config.ping_interval;
    let writer = tokio::spawn(crate::writer::write_loop(socket, ping_interval).in_current_span());

    let rate = RateLimiter::new(
        state.config.max_messages_per_second,
        Instant::now().into_std(),
    );
    let mut driver = Driver {
        rate,
        state,
        connection_id,
        stream,
        binding: Binding::Unbound(outbound),
        trace,
        writer,
        writer_done: false,
    };
    async move {
        let _open = open;
        let end = driver.serve().await;
        // Boxed, like join and resume, to keep the future of an open connection small.
        Box::pin(driver.finish(end)).await;
        drop(tracker_token);
    }
}

/// Owner of the connection's outbound queue.
enum Binding {
    /// No session yet: the driver owns the queue.
    Unbound(Outbound),
    /// A session, which owns the queue.
    Bound(SessionHandle),
    /// Nothing any more: the queue was closed.
    Closed,
}

/// Reason the driver stopped reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DriverEnd {
    /// The connection ended or failed on the client's side.
    Transport(TransportEnd),
    /// The writer sent its close frame or failed.
    WriterDone,
    /// The server is shutting down while no session owns the queue.
    Shutdown,
}

/// Result of handling one frame. `Err` stops reading.
type Handled = Result<(), DriverEnd>;

struct Driver {
    rate: RateLimiter,
    state: AppState,
    connection_id: u64,
    stream: SplitStream<WebSocket>,
    binding: Binding,
    /// Trace context from the upgrade request's `traceparent`, the parent of every request
    /// span on this connection.
    trace: Option<TraceParent>,
    writer: JoinHandle<Result<(), OutboundError>>,
    writer_done: bool,
}

impl Driver {
    /// Reads frames until the connection ends, the writer stops or, before `join`, the server
    /// shuts down.
    async fn serve(&mut self) -> DriverEnd {
        let ping_timeout = self.state.config.ping_timeout;
        let mut last_read = Instant::now();
        // Moved forward only when it fires, instead of set again for every frame, which would
        // cost a timer wheel insert and removal per frame.
        let idle = tokio::time::sleep_until(last_read + ping_timeout);
        tokio::pin!(idle);
        loop {
            // Frames that arrived in one read are decoded from memory without touching the
            // socket, so without this a burst of input would be handled without yielding.
            tokio::task::consume_budget().await;

            let unbound = matches!(self.binding, Binding::Unbound(_));
            let handled = tokio::select! {
                frame = self.stream.next() => {
                    last_read = Instant::now();
                    self.on_frame(frame).await
                }
                result = &mut self.writer, if !self.writer_done => {
                    self.writer_done = true;
                    log_writer_result(result);
                    Err(DriverEnd::WriterDone)
                }
                () = &mut idle => {
                    let deadline = last_read + ping_timeout;
                    if deadline > Instant::now() {
                        idle.as_mut().reset(deadline);
                        Ok(())
                    } else {
                        debug!(?ping_timeout, "no frame from the client within the ping timeout");
                        Err(DriverEnd::Transport(TransportEnd::PingTimeout))
                    }
                }
                () = self.state.shutdown.cancelled(), if unbound => Err(DriverEnd::Shutdown),
            };
            if let Err(end) = handled {
                return end;
            }
        }
    }

    async fn on_frame(&mut self, frame: Option<Result<Message, axum::Error>>) -> Handled {
        match frame {
            Some(Ok(Message::Text(text))) => match self.rate.admit(Instant::now().into_std()) {
                Admission::Allow => self.on_text(text.as_str()).await,
                Admission::Drop => {
                    debug!("message over the rate limit dropped");
                    self.reject(ErrorCode::RateLimited, RATE_LIMITED_MESSAGE)
                }
                Admission::Close => {
                    debug!("client kept sending over the rate limit");
                    Err(DriverEnd::Transport(TransportEnd::RateLimited))
                }
            },
            Some(Ok(Message::Binary(data))) => {
                crate::peer_log::binary_frame(data.len());
                self.reject(
                    ErrorCode::InvalidJson,
                    "binary frames are not accepted, send JSON in text frames",
                )
            }
            // tungstenite replies to pings itself; a pong only shows that the client is alive,
            // and gives the round trip when it echoes one of our pings.
            Some(Ok(Message::Ping(_))) => Ok(()),
            Some(Ok(Message::Pong(payload))) => {
                if let Some(rtt) = metrics::pong_round_trip(&payload) {
                    metrics::counters().ping_round_trip(rtt);
                }
                Ok(())
            }
            Some(Ok(Message::Close(frame))) => {
                debug!(?frame, "client sent close frame");
                Err(DriverEnd::Transport(TransportEnd::ClientClosed))
            }
            Some(Err(error)) if is_message_too_large(&error) => {
                debug!(%error, limit = self.state.config.max_message_size, "client message too large");
                Err(DriverEnd::Transport(TransportEnd::MessageTooLarge))
            }
            Some(Err(error)) => {
                // Protocol violations and text frames that are not UTF-8 end up here. The
                // connection cannot go on, because tungstenite reads nothing more after any
                // error.
                debug!(%error, "reading from the WebSocket failed");
                Err(DriverEnd::Transport(TransportEnd::Disconnected))
            }
            None => Err(DriverEnd::Transport(TransportEnd::Disconnected)),
        }
    }

    async fn on_text(&mut self, text: &str) -> Handled {
        match &self.binding {
            Binding::Bound(session) => {
                let input = Input::Text {
                    connection: Some(self.connection_id),
                    text: text.to_owned(),
                    trace: self.trace,
                };
                // A session that ended has closed the queue, and the writer stops soon.
                let _ = session.send(input);
                Ok(())
            }
            Binding::Unbound(_) => self.on_unbound_text(text).await,
            Binding::Closed => Ok(()),
        }
    }

    fn reject(&mut self, code: ErrorCode, message: &'static str) -> Handled {
        match &self.binding {
            Binding::Bound(session) => {
                let _ = session.send(Input::Rejected {
                    connection: self.connection_id,
                    code,
                    message,
                });
                Ok(())
            }
            Binding::Unbound(_) => self.reply(None, ServerMessage::error(code, message)),
            Binding::Closed => Ok(()),
        }
    }

    async fn on_unbound_text(&mut self, text: &str) -> Handled {
        let frame = match decode_and_count(text) {
            Ok(frame) => frame,
            Err((request_id, error)) => {
                crate::peer_log::invalid_message(&error);
                let reply = ServerMessage::error(error.code(), error.to_string());
                return self.reply(request_id, reply);
            }
        };
        let span = request_span(&frame.message, frame.id.as_deref(), "", "", self.trace);
        self.on_unbound_frame(frame).instrument(span).await
    }

    /// Handles one decoded message before the connection carries a session.
    async fn on_unbound_frame(&mut self, frame: ClientFrame) -> Handled {
        match unbound_step(frame.message) {
            Unbound::Reply(reply) => {
                debug!(?reply, "rejected client message");
                self.reply(frame.id, reply)
            }
            // Boxed because an open connection keeps its driver's future for its whole life,
            // and these two, run once per connection, would make up much of its size.
            Unbound::Join(request) => Box::pin(self.join(request, frame.id)).await,
            Unbound::Resume { token, last_seq } => {
                Box::pin(self.resume(&token, last_seq, frame.id)).await
            }
            Unbound::Leave => {
                self.reply(frame.id, ServerMessage::Ok)?;
                self.close(CloseCode::Normal, None);
                Ok(())
            }
        }
    }

    async fn join(&mut self, request: JoinRequest, request_id: Option<String>) -> Handled {
        let Binding::Unbound(outbound) = std::mem::replace(&mut self.binding, Binding::Closed)
        else {
            return Ok(());
        };
        let connection = Some((self.connection_id, outbound));
        match join(&self.state, request, request_id.clone(), connection).await {
            Ok(joined) => {
                debug!(participant_id = %joined.participant_id, "connection carries a new session");
                self.binding = Binding::Bound(joined.handle);
                Ok(())
            }
            Err(Rejected { reply, outbound }) => {
                if let Some(outbound) = outbound {
                    self.binding = Binding::Unbound(outbound);
                }
                self.reply(request_id, reply)
            }
        }
    }

    async fn resume(&mut self, token: &str, last_seq: u64, request_id: Option<String>) -> Handled {
        let Some(session) = self.state.find_session(token) else {
            debug!("resume with an unknown or expired token");
            metrics::counters().resume(false);
            return self.reply(request_id, not_resumed());
        };
        let Binding::Unbound(outbound) = std::mem::replace(&mut self.binding, Binding::Closed)
        else {
            return Ok(());
        };
        let (reply, result) = oneshot::channel();
        let attach = Attach {
            connection: self.connection_id,
            outbound,
            last_seq,
            request_id: request_id.clone(),
            reply,
        };
        if let Err(mpsc_error) = session.send(Input::Attach(attach)) {
            // The session ended between the lookup and the send.
            let Input::Attach(attach) = mpsc_error.0 else {
                unreachable!("the input sent was an Attach");
            };
            self.binding = Binding::Unbound(attach.outbound);
            return self.reply(request_id, not_resumed());
        }
        match result.await {
            Ok(Ok(())) => {
                metrics::counters().resume(true);
                self.binding = Binding::Bound(session);
                Ok(())
            }
            Ok(Err(outbound)) => {
                metrics::counters().resume(false);
                self.binding = Binding::Unbound(outbound);
                self.reply(request_id, not_resumed())
            }
            // The session ended while taking the connection, and dropped its queue.
            Err(_) => Err(DriverEnd::WriterDone),
        }
    }

    /// Queues a reply without a sequence number, before the connection carries a session.
    fn reply(&mut self, request_id: Option<String>, message: ServerMessage) -> Handled {
        let Binding::Unbound(outbound) = &self.binding else {
            return Ok(());
        };
        let Some(encoded) = encode(&ServerFrame::reply(request_id, message)) else {
            return Ok(());
        };
        match outbound.push(encoded) {
            Ok(()) => {
                outbound.write_queued();
                Ok(())
            }
            Err(OutboundError::Full { capacity }) => {
                debug!(
                    capacity,
                    "outbound queue is full because the client is not reading"
                );
                self.close(CloseCode::SlowConsumer, None);
                Ok(())
            }
            Err(OutboundError::WriterStopped | OutboundError::Write(_)) => {
                Err(DriverEnd::Transport(TransportEnd::Disconnected))
            }
        }
    }

    /// Queues `farewell` and a close frame, if the driver still owns the queue.
    fn close(&mut self, code: CloseCode, farewell: Option<ServerMessage>) {
        if let Binding::Unbound(outbound) = std::mem::replace(&mut self.binding, Binding::Closed) {
            let farewell = farewell.and_then(|message| encode(&ServerFrame::event(message)));
            outbound.close(farewell, code);
        }
    }

    /// Detaches the connection from its session or closes it, then waits, at most
    /// `close_timeout` for each, for the writer and for the client's close reply.
    async fn finish(mut self, end: DriverEnd) {
        let client_gone = matches!(
            end,
            DriverEnd::Transport(
                TransportEnd::ClientClosed | TransportEnd::Disconnected | TransportEnd::PingTimeout
            )
        );
        match (&self.binding, end) {
            (Binding::Bound(session), DriverEnd::Transport(transport_end)) => {
                let _ = session.send(Input::Detach {
                    connection: self.connection_id,
                    end: transport_end,
                });
            }
            (Binding::Unbound(_), DriverEnd::Transport(TransportEnd::MessageTooLarge)) => {
                self.close(
                    CloseCode::MessageTooBig,
                    SessionEnd::MessageTooLarge.farewell(),
                );
            }
            (Binding::Unbound(_), DriverEnd::Transport(TransportEnd::RateLimited)) => {
                self.close(CloseCode::RateLimited, Some(rate_limit_close()));
            }
            (Binding::Unbound(_), DriverEnd::Shutdown) => {
                self.close(CloseCode::GoingAway, SessionEnd::Shutdown.farewell());
            }
            _ => {}
        }
        self.binding = Binding::Closed;

        let close_timeout = self.state.config.close_timeout;
        if client_gone {
            // The client is gone or already closing, so what is still queued is of no use.
            self.writer.abort();
        }
        if !self.writer_done {
            match tokio::time::timeout(close_timeout, &mut self.writer).await {
                Ok(result) => log_writer_result(result),
                Err(_) => {
                    debug!(?close_timeout, "timed out sending the close frame");
                    self.writer.abort();
                }
            }
        }

        // Reading on lets tungstenite send its reply to a client's close frame, or see the
        // client's reply to ours. Either ends the stream.
        let drain = async { while self.stream.next().await.is_some() {} };
        if tokio::time::timeout(close_timeout, drain).await.is_err() {
            debug!(?close_timeout, "timed out waiting for the client to close");
        }

        // After an oversized message the stream has already ended with the rest of the message
        // unread, so dropping the socket sends RST. A client that gets the RST before it has
        // read the error and the 1009 close frame loses them (Chromium then reports 1006).
        // Holding the socket a little longer gives the client time to read them first.
        if matches!(end, DriverEnd::Transport(TransportEnd::MessageTooLarge)) {
            tokio::time::sleep(close_timeout.min(OVERSIZED_LINGER)).await;
        }
        debug!(?end, "connection closed");
    }
}

/// Time a connection that sent an oversized message stays open after its close frame, so the
/// client reads the error and close frame before the RST that closing the socket sends.
const OVERSIZED_LINGER: Duration = Duration::from_secs(1);

fn not_resumed() -> ServerMessage {
    ServerMessage::Resumed {
        resumed: false,
        last_seq: 0,
    }
}

fn log_writer_result(result: Result<Result<(), OutboundError>, tokio::task::JoinError>) {
    match result {
        Ok(Ok(())) => {}
        Ok(Err(err)) => debug!(error = %err, "writer stopped"),
        Err(join_error) if join_error.is_cancelled() => {}
        Err(join_error) => error!(error = %join_error, "writer task failed"),
    }
}

/// Tells whether a read failed because a frame or message was over the configured limit.
fn is_message_too_large(error: &axum::Error) -> bool {
    let Some(source) = error.source() else {
        return false;
    };
    matches!(
        source.downcast_ref::<tokio_tungstenite::tungstenite::Error>(),
        Some(tokio_tungstenite::tungstenite::Error::Capacity(
            CapacityError::MessageTooLong { .. }
        ))
    )
}
