//! WebSocket driver for one client connection: upgrades the request, reads frames, and hands
//! them to the session the connection carries.
//!
//! Until `join` or `resume`, the driver replies to messages itself, without sequence numbers.
//! `join` starts a session task that takes over the connection's outbound queue; `resume` gives
//! the queue to an existing session. From then on the driver passes every text frame to the
//! session and only watches the connection: a close frame, a read error, an oversized message
//! or a missing pong detaches it from the session, which then waits for a resume.

use std::future::{poll_fn, Future};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use switchyard_proto::{ClientFrame, CloseCode, ErrorCode, ServerFrame, ServerMessage};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tracing::{debug, debug_span, Instrument};

use crate::join::{join, Rejected};
use crate::metrics::{self, decode_and_count};
use crate::outbound::{self, encode, Outbound, OutboundError};
use crate::participant::{rate_limit_close, Attach, Input, SessionHandle};
use crate::rate::{Admission, RateLimiter};
use crate::session::{unbound_step, JoinRequest, SessionEnd, TransportEnd, Unbound};
use crate::state::AppState;
use crate::trace::{request_span, TraceParent};
use crate::websocket::{self, Incoming, ReadError};
use crate::writer::{Io, SharedSocket, Written};

/// Handles `GET /v1/ws`: checks the upgrade request, replies 101 and starts the driver once
/// hyper hands over the connection.
pub(crate) async fn upgrade(State(state): State<AppState>, mut request: Request) -> Response {
    let accept = match websocket::accept_key(request.headers()) {
        Ok(accept) => accept,
        Err((status, text)) => return handshake_rejection(status, text),
    };
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "server is shutting down").into_response();
    }
    if let Some(response) = origin_rejection(&state, request.headers()) {
        return response;
    }
    let Some(on_upgrade) = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
    else {
        return (
            StatusCode::UPGRADE_REQUIRED,
            "this connection cannot be upgraded; WebSockets need HTTP/1.1",
        )
            .into_response();
    };

    let connection_id = state.next_connection_id();
    let trace = TraceParent::from_headers(request.headers());
    // Taken before the upgrade so that shutdown also waits for connections that are starting.
    let tracker_token = state.sessions.token();
    tokio::spawn(async move {
        let io = match on_upgrade.await {
            Ok(upgraded) => TokioIo::new(upgraded),
            Err(error) => {
                debug!(connection_id, %error, "WebSocket upgrade failed");
                return;
            }
        };
        // A debug span, so that at the default log level an open connection costs no span
        // data. The connection gets a task of its own, because this task's future would keep
        // room for the upgrade for as long as the connection lives.
        let span = debug_span!("connection", connection_id);
        let connection = span.in_scope(|| start(io, state, connection_id, trace, tracker_token));
        tokio::spawn(connection.instrument(span));
    });

    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    response
}

/// Builds the response to an upgrade request that [`websocket::accept_key`] rejected. It names
/// the one WebSocket version the server speaks, which RFC 6455 section 4.4 requires when the
/// client asked for another. A 426 also names the protocol to upgrade to, as RFC 7231 section
/// 6.5.15 requires.
fn handshake_rejection(status: StatusCode, text: &'static str) -> Response {
    let mut response = (status, text).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::SEC_WEBSOCKET_VERSION,
        HeaderValue::from_static("13"),
    );
    if status == StatusCode::UPGRADE_REQUIRED {
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    response
}

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

/// Builds the driver of a new connection and returns its future, which reads until the
/// connection ends and then releases `tracker_token`.
fn start(
    io: Io,
    state: AppState,
    connection_id: u64,
    trace: Option<TraceParent>,
    tracker_token: TaskTrackerToken,
) -> impl Future<Output = ()> {
    debug!("connection opened");
    let open = metrics::counters().connection_opened(metrics::Transport::WebSocket);
    let socket = SharedSocket::new(io);
    let outbound = outbound::websocket_queue(state.config.outbound_queue, socket.clone());
    let rate = RateLimiter::new(
        state.config.max_messages_per_second,
        Instant::now().into_std(),
    );
    let mut driver = Driver {
        rate,
        state,
        connection_id,
        socket,
        binding: Binding::Unbound(outbound),
        trace: trace.map(Box::new),
        write_pending: false,
        writer_done: false,
        read_ended: false,
        close_sent: false,
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
    /// The close frame was written, writing failed, or the queue's producer is gone.
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
    socket: Arc<SharedSocket>,
    binding: Binding,
    /// Trace context from the upgrade request's `traceparent`, the parent of every request
    /// span on this connection. Boxed, because most connections have none.
    trace: Option<Box<TraceParent>>,
    /// The output buffer or the queue has frames that the producer left to the driver.
    write_pending: bool,
    /// The close frame was written or writing failed.
    writer_done: bool,
    /// Reading reached the end of the stream or an error.
    read_ended: bool,
    /// A close frame in reply to the client's, or to a protocol violation, is in the output
    /// buffer.
    close_sent: bool,
}

impl Driver {
    /// Reads frames until the connection ends, the writing ends or, before `join`, the server
    /// shuts down. Sends the pings and writes what the queue's producer leaves to it.
    async fn serve(&mut self) -> DriverEnd {
        let ping_timeout = self.state.config.ping_timeout;
        let ping_interval = self.state.config.ping_interval;
        let limit = self.state.config.max_message_size;
        let mut last_read = Instant::now();
        let mut next_ping = last_read + ping_interval;
        // One timer for pings and the ping timeout. It moves only when it fires, instead of
        // for every frame, which would cost a timer wheel insert and removal per frame.
        let timer = tokio::time::sleep_until(next_ping.min(last_read + ping_timeout));
        tokio::pin!(timer);
        loop {
            // Frames that arrived in one read are decoded from memory without touching the
            // socket, so without this a burst of input would be handled without yielding.
            tokio::task::consume_budget().await;

            let unbound = matches!(self.binding, Binding::Unbound(_));
            let socket = &*self.socket;
            let handled = tokio::select! {
                incoming = poll_fn(|cx| socket.poll_read(cx, limit)) => {
                    last_read = Instant::now();
                    match self.on_incoming(incoming) {
                        // Boxed: before `join` the driver decodes and replies to messages itself,
                        // and that future would otherwise make up most of the size of every
                        // open connection's task.
                        Ok(Some(text)) => Box::pin(self.on_unbound_text(text)).await,
                        Ok(None) => Ok(()),
                        Err(end) => Err(end),
                    }
                }
                written = poll_fn(|cx| socket.poll_write(cx)), if self.write_pending => {
                    self.on_written(written)
                }
                () = poll_fn(|cx| socket.poll_woken(cx)) => {
                    self.write_pending = true;
                    Ok(())
                }
                () = &mut timer => {
                    let now = Instant::now();
                    if now >= last_read + ping_timeout {
                        debug!(?ping_timeout, "no frame from the client within the ping timeout");
                        Err(DriverEnd::Transport(TransportEnd::PingTimeout))
                    } else {
                        if now >= next_ping {
                            self.socket.ping(&metrics::ping_payload());
                            self.write_pending = true;
                            next_ping = now + ping_interval;
                        }
                        timer.as_mut().reset(next_ping.min(last_read + ping_timeout));
                        Ok(())
                    }
                }
                () = self.state.shutdown.cancelled(), if unbound => Err(DriverEnd::Shutdown),
            };
            if let Err(end) = handled {
                return end;
            }
        }
    }

    fn on_written(&mut self, written: Written) -> Handled {
        match written {
            Written::Idle => {
                self.write_pending = false;
                if self.socket.is_producer_dropped() && !matches!(self.binding, Binding::Unbound(_))
                {
                    return Err(DriverEnd::WriterDone);
                }
                Ok(())
            }
            Written::Finished => {
                self.writer_done = true;
                log_write_error(&self.socket);
                Err(DriverEnd::WriterDone)
            }
        }
    }

    /// Handles what was read, except text before `join`, which it returns for
    /// [`Driver::on_unbound_text`].
    fn on_incoming(
        &mut self,
        incoming: Result<Incoming, ReadError>,
    ) -> Result<Option<String>, DriverEnd> {
        // Binary messages count too, because each one gets an error in reply.
        if let Ok(Incoming::Text(_) | Incoming::Binary(_)) = &incoming {
            match self.rate.admit(Instant::now().into_std()) {
                Admission::Allow => {}
                Admission::Drop => {
                    debug!("message over the rate limit dropped");
                    return self
                        .reject(ErrorCode::RateLimited, RATE_LIMITED_MESSAGE)
                        .map(|()| None);
                }
                Admission::Close => {
                    debug!("client kept sending over the rate limit");
                    return Err(DriverEnd::Transport(TransportEnd::RateLimited));
                }
            }
        }
        let handled = match incoming {
            Ok(Incoming::Text(text)) => return self.on_text(text),
            Ok(Incoming::Binary(length)) => {
                crate::peer_log::binary_frame(length);
                self.reject(
                    ErrorCode::InvalidJson,
                    "binary frames are not accepted, send JSON in text frames",
                )
            }
            Ok(Incoming::Ping(payload)) => {
                self.socket.pong(&payload);
                self.write_pending = true;
                Ok(())
            }
            // A pong only shows that the client is alive, and gives the round trip when it
            // echoes one of our pings.
            Ok(Incoming::Pong(payload)) => {
                if let Some(rtt) = metrics::pong_round_trip(&payload) {
                    metrics::counters().ping_round_trip(rtt);
                }
                Ok(())
            }
            Ok(Incoming::Close(code)) => {
                debug!(?code, "client sent close frame");
                // RFC 6455 section 5.5.1: reply with a close frame that echoes the code.
                self.socket.close_now(code.unwrap_or(1000), "");
                self.close_sent = true;
                // The close handshake is complete once the reply is written, and the server
                // closes the TCP connection first (RFC 6455 section 7.1.1).
                self.read_ended = true;
                Err(DriverEnd::Transport(TransportEnd::ClientClosed))
            }
            Err(ReadError::TooLarge { limit }) => {
                debug!(limit, "client message too large");
                Err(DriverEnd::Transport(TransportEnd::MessageTooLarge))
            }
            Err(error) => {
                // Protocol violations and text that is not UTF-8 get a close frame with 1002 or
                // 1007, because the connection cannot go on after either.
                debug!(%error, "reading from the WebSocket failed");
                self.read_ended = true;
                if let Some(code) = error.close_code() {
                    self.socket.close_now(code, "");
                    self.close_sent = true;
                }
                Err(DriverEnd::Transport(TransportEnd::Disconnected))
            }
        };
        handled.map(|()| None)
    }

    /// Passes text to the session, or returns it when there is no session yet.
    fn on_text(&mut self, text: String) -> Result<Option<String>, DriverEnd> {
        match &self.binding {
            Binding::Bound(session) => {
                let input = Input::Text {
                    connection: Some(self.connection_id),
                    text,
                    trace: self.trace.as_deref().copied(),
                };
                // A session that ended has closed the queue, and the writer stops soon.
                let _ = session.send(input);
                Ok(None)
            }
            Binding::Unbound(_) => Ok(Some(text)),
            Binding::Closed => Ok(None),
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

    async fn on_unbound_text(&mut self, text: String) -> Handled {
        let frame = match decode_and_count(&text) {
            Ok(frame) => frame,
            Err((request_id, error)) => {
                crate::peer_log::invalid_message(&error);
                let reply = ServerMessage::error(error.code(), error.to_string());
                return self.reply(request_id, reply);
            }
        };
        let span = request_span(
            &frame.message,
            frame.id.as_deref(),
            "",
            "",
            self.trace.as_deref().copied(),
        );
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
        if let Err(input) = session.send(Input::Attach(attach)) {
            // The session ended between the lookup and the send.
            let Input::Attach(attach) = input else {
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
    /// `close_timeout` for each, until the close frame is written and the client has closed.
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
            // The client is gone or already closing, so what is still queued is of no use. A
            // close frame in reply to the client's is already in the output buffer.
            self.socket.stop_queue(true);
        }
        let flush = !self.writer_done && (!client_gone || self.close_sent);
        if flush
            && tokio::time::timeout(close_timeout, self.flush(client_gone))
                .await
                .is_err()
        {
            debug!(?close_timeout, "timed out sending the close frame");
        }
        self.socket.stop_queue(true);

        // Reading on shows the client's reply to our close frame, or the end of the stream
        // after it got our reply to its own.
        if !self.read_ended {
            let limit = self.state.config.max_message_size;
            let socket = &self.socket;
            let drain = async {
                loop {
                    match poll_fn(|cx| socket.poll_read(cx, limit)).await {
                        Ok(Incoming::Close(_)) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            };
            if tokio::time::timeout(close_timeout, drain).await.is_err() {
                debug!(?close_timeout, "timed out waiting for the client to close");
            }
        }

        // After an oversized message the rest of it is unread, so closing the socket sends RST.
        // A client that gets the RST before it has read the error and the 1009 close frame loses
        // them (Chromium then reports 1006). Holding the socket a little longer gives the client
        // time to read them first.
        if matches!(end, DriverEnd::Transport(TransportEnd::MessageTooLarge)) {
            tokio::time::sleep(close_timeout.min(OVERSIZED_LINGER)).await;
        }
        debug!(?end, "connection closed");
    }

    /// Writes until the close frame is out, or, when nothing more will be queued, until what is
    /// queued is out.
    async fn flush(&mut self, queue_stopped: bool) {
        let socket = &self.socket;
        loop {
            match poll_fn(|cx| socket.poll_write(cx)).await {
                Written::Finished => {
                    self.writer_done = true;
                    log_write_error(socket);
                    return;
                }
                Written::Idle if queue_stopped || socket.is_producer_dropped() => return,
                Written::Idle => poll_fn(|cx| socket.poll_woken(cx)).await,
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // A session that still has the queue gets `WriterStopped` from now on.
        self.socket.stop_queue(true);
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

fn log_write_error(socket: &SharedSocket) {
    if let Some(error) = socket.take_error() {
        debug!(error = %OutboundError::Write(error), "writing stopped");
    }
}
