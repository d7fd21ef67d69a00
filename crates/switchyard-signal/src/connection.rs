//! WebSocket driver for one client: upgrades the request, reads frames, carries out the
//! [`Step`]s of the [`Session`], forwards room and SFU events into the outbound queue, and
//! cleans up when the session ends.

use std::error::Error as _;
use std::time::SystemTime;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::stream::SplitStream;
use futures_util::StreamExt;
use switchyard_proto::{ErrorCode, ServerMessage};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::error::CapacityError;
use tracing::{debug, error, field, info, info_span, Instrument, Span};

use crate::decode::decode;
use crate::names::{DisplayName, ParticipantId, RoomName};
use crate::outbound::{self, Outbound, OutboundError};
use crate::session::{Session, SessionEnd, SfuRequest, Step};
use crate::state::AppState;
use crate::store::{Member, RoomEvent};

/// Handles `GET /v1/ws`: applies the message size limit and starts a session after the upgrade.
pub(crate) async fn upgrade(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "server is shutting down").into_response();
    }

    let session_id = state.next_session_id();
    // Taken before the upgrade so that shutdown also waits for sessions that are starting.
    let tracker_token = state.sessions.token();
    let limit = state.config.max_message_size;

    // tungstenite checks the frame limit on each frame header, before reading the payload, and
    // the message limit on reassembled fragments. Without both, tungstenite 0.29's defaults of
    // 16 MiB per frame and 64 MiB per message would apply.
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .on_failed_upgrade(move |error| debug!(session_id, %error, "WebSocket upgrade failed"))
        .on_upgrade(move |socket| {
            let span = info_span!(
                "session",
                session_id,
                room_id = field::Empty,
                participant_id = field::Empty
            );
            async move {
                run(socket, state).await;
                drop(tracker_token);
            }
            .instrument(span)
        })
}

async fn run(socket: WebSocket, state: AppState) {
    debug!("session started");
    let (sink, stream) = socket.split();
    let (outbound, queue) = outbound::channel(state.config.outbound_queue);
    let writer = tokio::spawn(outbound::write_loop(sink, queue).in_current_span());

    let mut connection = Connection {
        state,
        stream,
        outbound,
        session: Session::new(),
        room_events: None,
        sfu_events: None,
    };
    let end = connection.serve().await;
    connection.finish(end, writer).await;
}

/// Result of handling one input. `Err` ends the session.
type Handled = Result<(), SessionEnd>;

struct Connection {
    state: AppState,
    stream: SplitStream<WebSocket>,
    outbound: Outbound,
    session: Session,
    /// Events of the joined room, or `None` before `join`.
    room_events: Option<mpsc::UnboundedReceiver<RoomEvent>>,
    /// Events from the SFU, or `None` before `join` and after the SFU dropped its sender.
    sfu_events: Option<mpsc::UnboundedReceiver<ServerMessage>>,
}

impl Connection {
    /// Handles client frames, room events, SFU events and shutdown until the session ends.
    async fn serve(&mut self) -> SessionEnd {
        loop {
            // Frames that arrived in one read are decoded from memory without touching the
            // socket, so without this a burst of input would be handled without yielding and
            // the writer task could not drain the queue in between. Yields only once the task's
            // cooperative budget is spent.
            tokio::task::consume_budget().await;

            let handled = tokio::select! {
                frame = self.stream.next() => self.on_frame(frame).await,
                Some(event) = next_event(&mut self.room_events) => self.send(event.into()),
                Some(message) = next_event(&mut self.sfu_events) => self.send(message),
                () = self.state.shutdown.cancelled() => Err(SessionEnd::Shutdown),
            };
            if let Err(end) = handled {
                return end;
            }
        }
    }

    async fn on_frame(&mut self, frame: Option<Result<Message, axum::Error>>) -> Handled {
        match frame {
            Some(Ok(Message::Text(text))) => self.on_text(text.as_str()).await,
            Some(Ok(Message::Binary(data))) => {
                debug!(bytes = data.len(), "binary frame rejected");
                self.reply_error(
                    ErrorCode::InvalidJson,
                    "binary frames are not accepted, send JSON in text frames",
                )
            }
            // tungstenite replies to pings itself.
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(()),
            Some(Ok(Message::Close(frame))) => {
                debug!(?frame, "client sent close frame");
                Err(SessionEnd::ClientClosed)
            }
            Some(Err(error)) if is_message_too_large(&error) => {
                debug!(%error, limit = self.state.config.max_message_size, "client message too large");
                Err(SessionEnd::MessageTooLarge)
            }
            Some(Err(error)) => {
                // Protocol violations and text frames that are not UTF-8 end up here. The session
                // cannot go on, because tungstenite reads nothing more after any error.
                debug!(%error, "reading from the WebSocket failed");
                Err(SessionEnd::Disconnected)
            }
            None => Err(SessionEnd::Disconnected),
        }
    }

    async fn on_text(&mut self, text: &str) -> Handled {
        let message = match decode(text) {
            Ok(message) => message,
            Err(error) => {
                debug!(%error, "invalid client message");
                return self.reply_error(error.code(), error.to_string());
            }
        };

        match self.session.handle(message) {
            Step::Reply(reply) => {
                debug!(?reply, "rejected client message");
                self.send(reply)
            }
            Step::Join { room, name } => self.join(room, name).await,
            Step::Forward {
                participant_id,
                request,
            } => {
                self.forward(&participant_id, request);
                Ok(())
            }
            Step::Leave => Err(SessionEnd::Left),
        }
    }

    async fn join(&mut self, room: RoomName, name: DisplayName) -> Handled {
        let participant_id = ParticipantId::random();
        let (room_events, room_receiver) = mpsc::unbounded_channel();
        let member = Member {
            id: participant_id.clone(),
            name: name.into_string(),
            events: room_events,
        };
        let others = match self.state.store.join(&room, member).await {
            Ok(others) => others,
            Err(err) => {
                error!(
                    error = &err as &dyn std::error::Error,
                    room_id = %room,
                    "room store failed to add participant"
                );
                return self.reply_error(
                    ErrorCode::InternalError,
                    "could not join the room, try again",
                );
            }
        };

        // From here on, `finish` removes the participant from the room and the SFU however the
        // session ends.
        self.session.joined(room.clone(), participant_id.clone());
        let span = Span::current();
        span.record("room_id", room.as_str());
        span.record("participant_id", participant_id.as_str());
        info!(others = others.len(), "participant joined");

        // Room and SFU events are read only after `joined` is queued, so it reaches the client
        // first.
        self.room_events = Some(room_receiver);
        let (sfu_events, sfu_receiver) = mpsc::unbounded_channel();
        self.state
            .sfu
            .join(room.as_str(), participant_id.as_str(), sfu_events);
        self.sfu_events = Some(sfu_receiver);

        self.send(ServerMessage::Joined {
            room: room.as_str().to_owned(),
            participant_id: participant_id.as_str().to_owned(),
            participants: others,
            ice_servers: self
                .state
                .config
                .ice_servers_for(participant_id.as_str(), SystemTime::now()),
        })
    }

    fn forward(&self, participant_id: &ParticipantId, request: SfuRequest) {
        let sfu = &self.state.sfu;
        let id = participant_id.as_str();
        match request {
            SfuRequest::PublishOffer(sdp) => sfu.publish_offer(id, sdp),
            SfuRequest::SubscriberAnswer(sdp) => sfu.subscriber_answer(id, sdp),
            SfuRequest::Candidate(target, candidate) => sfu.add_candidate(id, target, candidate),
        }
    }

    fn reply_error(&self, code: ErrorCode, message: impl Into<String>) -> Handled {
        self.send(ServerMessage::error(code, message))
    }

    /// Queues a message for the client. A full queue ends the session as a slow consumer.
    fn send(&self, message: ServerMessage) -> Handled {
        match self.outbound.push(message) {
            Ok(()) => Ok(()),
            Err(OutboundError::Full { capacity }) => {
                debug!(
                    capacity,
                    "outbound queue is full because the client is not reading"
                );
                Err(SessionEnd::SlowConsumer)
            }
            Err(OutboundError::WriterStopped | OutboundError::Write(_)) => {
                Err(SessionEnd::Disconnected)
            }
        }
    }

    /// Removes the participant from the SFU and the room, sends the farewell and close frame,
    /// and waits, at most `close_timeout` for each, for the writer and for the client's close
    /// reply.
    async fn finish(mut self, end: SessionEnd, mut writer: JoinHandle<Result<(), OutboundError>>) {
        // Leave first, so the others hear about it even when the client is too slow for the
        // close frame.
        if let Some((room, participant_id)) = self.session.membership() {
            self.state.sfu.leave(participant_id.as_str());
            if let Err(err) = self.state.store.leave(room, participant_id).await {
                error!(
                    error = &err as &dyn std::error::Error,
                    "room store failed to remove participant"
                );
            }
        }

        let close_timeout = self.state.config.close_timeout;
        match end.close_code() {
            Some(code) => self.outbound.close(end.farewell(), code),
            // The client is gone or already closing, so what is still queued is of no use.
            None => writer.abort(),
        }
        match tokio::time::timeout(close_timeout, &mut writer).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(err))) => debug!(error = %err, "writer stopped"),
            Ok(Err(join_error)) if join_error.is_cancelled() => {}
            Ok(Err(join_error)) => error!(error = %join_error, "writer task failed"),
            Err(_) => {
                debug!(?close_timeout, "timed out sending the close frame");
                writer.abort();
            }
        }

        // Reading on lets tungstenite send its reply to a client's close frame, or see the
        // client's reply to ours. Either ends the stream.
        // NOTE: after an oversized message the stream has already ended, with the rest of the
        // message unread. Dropping the socket then sends RST, and a client on Linux still reads
        // the error and close frame written before it. Other client kernels may discard them.
        let drain = async { while self.stream.next().await.is_some() {} };
        if tokio::time::timeout(close_timeout, drain).await.is_err() {
            debug!(?close_timeout, "timed out waiting for the client to close");
        }
        info!(reason = %end, "session ended");
    }
}

/// Receives from an optional channel. Stays pending while there is no channel, and drops the
/// channel once it is closed so the caller's `select!` does not poll it again.
async fn next_event<T>(receiver: &mut Option<mpsc::UnboundedReceiver<T>>) -> Option<T> {
    let Some(channel) = receiver else {
        return std::future::pending().await;
    };
    let event = channel.recv().await;
    if event.is_none() {
        *receiver = None;
    }
    event
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
