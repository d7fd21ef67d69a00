//! The session task of one joined participant. It outlives the connections that carry it:
//! a WebSocket or an SSE stream attaches, detaches when it drops, and a new one attaches with
//! `resume`.
//!
//! The task owns the session's [`Outbox`] and [`RequestCache`], reads room and SFU events,
//! numbers every message it sends, and pushes it into the attached connection's queue. Without
//! a connection, messages wait in the outbox, and the participant stays in the room until
//! [`SignalConfig::reconnect_grace`](crate::SignalConfig::reconnect_grace) has passed.

use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::ws::Utf8Bytes;
use switchyard_proto::{ClientFrame, CloseCode, ErrorCode, ServerFrame, ServerMessage};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Sleep;
use tokio_util::sync::WaitForCancellationFutureOwned;
use tracing::{debug, error, info, info_span, Instrument};

use crate::metrics::{self, decode_and_count};
use crate::names::{ParticipantId, RoomName};
use crate::outbound::{encode, encode_body, Encoded, Outbound, OutboundError};
use crate::outbox::{Outbox, OutboxConfig};
use crate::rate::{Admission, RateLimiter};
use crate::requests::{Lookup, RequestCache, DEFAULT_REQUEST_CACHE};
use crate::session::{
    joined_step, SessionEnd, SessionIdentity, SfuRequest, Step, StoreRequest, TransportEnd,
};
use crate::state::AppState;
use crate::store::{EncodedEvent, RoomEvent, RoomSnapshot, SharedRoomEvent, StoreError};
use crate::token::Grants;
use crate::trace::{request_span, TraceParent};

/// Channel into a session task.
#[derive(Clone, Debug)]
pub(crate) struct SessionHandle(mpsc::UnboundedSender<Box<Input>>);

impl SessionHandle {
    /// Passes an input to the session, or returns it when the session has ended.
    ///
    /// Inputs travel boxed: tokio allocates a channel's first block of 32 slots when the
    /// channel is made, and 32 unboxed inputs would cost every session about 2.5 KB.
    pub(crate) fn send(&self, input: Input) -> Result<(), Input> {
        self.0.send(Box::new(input)).map_err(|error| *error.0)
    }
}

/// Input from a connection driver to the session it carries.
#[derive(Debug)]
pub(crate) enum Input {
    /// Text of one client message, from the attached connection or, with `connection` set to
    /// `None`, from `POST /v1/send`, with the client's trace context if it sent one.
    Text {
        connection: Option<u64>,
        text: String,
        trace: Option<TraceParent>,
    },
    /// A client frame the driver already rejected, for example a binary frame.
    Rejected {
        connection: u64,
        code: ErrorCode,
        message: &'static str,
    },
    /// A connection wants to carry the session from now on.
    Attach(Attach),
    /// The connection stopped carrying the session.
    Detach { connection: u64, end: TransportEnd },
}

/// Request to attach a connection to a session, sent for `resume`.
#[derive(Debug)]
pub(crate) struct Attach {
    pub connection: u64,
    pub outbound: Outbound,
    pub last_seq: u64,
    pub request_id: Option<String>,
    /// Gets `Ok` once the session took the connection, or the queue back when the session
    /// cannot continue from `last_seq`.
    pub reply: oneshot::Sender<Result<(), Outbound>>,
}

/// A participant that the room store has just accepted.
#[derive(Debug)]
pub(crate) struct NewSession {
    pub room: RoomName,
    pub participant_id: ParticipantId,
    pub room_events: mpsc::UnboundedReceiver<SharedRoomEvent>,
    /// The room as the store admitted the participant to it.
    pub snapshot: RoomSnapshot,
    /// What the participant may do.
    pub grants: Grants,
    /// Request id of the `join`, echoed in `joined`.
    pub join_request_id: Option<String>,
    /// The connection that sent `join`, if it carries the session from the start.
    pub connection: Option<(u64, Outbound)>,
}

/// Starts the session task and registers its resume token. Returns the handle and the token.
pub(crate) fn start(state: &AppState, session: NewSession) -> (SessionHandle, String) {
    let token = crate::names::random_token();
    let (sender, inputs) = mpsc::unbounded_channel();
    let handle = SessionHandle(sender);
    state.register_session(&token, handle.clone());

    let session_id = state.next_connection_id();
    // A root: the session outlives the request that started it.
    let span = info_span!(
        parent: None,
        "session",
        room_id = %session.room,
        participant_id = %session.participant_id,
        session_id,
    );
    let config = &state.config;
    let actor = Actor {
        state: state.clone(),
        identity: SessionIdentity {
            room: session.room.clone(),
            participant_id: session.participant_id.clone(),
            grants: session.grants,
        },
        room: session.room,
        participant_id: session.participant_id,
        posted_rate: RateLimiter::new(config.max_messages_per_second, Instant::now()),
        token: token.clone(),
        inputs,
        room_events: Some(session.room_events),
        sfu_events: None,
        outbox: Outbox::new(OutboxConfig {
            max_messages: config.outbox_messages,
            max_age: config.outbox_age,
        }),
        requests: RequestCache::new(DEFAULT_REQUEST_CACHE),
        transport: session.connection.map(|(connection, outbound)| Transport {
            connection,
            outbound,
        }),
        grace_deadline: None,
        timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
        timer_deadline: None,
        shutdown: Box::pin(state.shutdown.clone().cancelled_owned()),
    };
    let first = (session.join_request_id, session.snapshot);
    state.sessions.spawn(actor.run(first).instrument(span));
    (handle, token)
}

/// Maximum number of room events a session delivers in one turn of its loop. A larger batch
/// means fewer turns, but a client message that arrives meanwhile waits behind the whole batch.
const ROOM_EVENT_BATCH: usize = 64;

/// Result of handling one input. `Err` ends the session.
type Handled = Result<(), SessionEnd>;

#[derive(Debug)]
struct Transport {
    connection: u64,
    outbound: Outbound,
}

struct Actor {
    state: AppState,
    identity: SessionIdentity,
    /// Rate limit of the messages that arrive through `POST /v1/send`. WebSocket drivers
    /// apply the limit themselves.
    posted_rate: RateLimiter,
    room: RoomName,
    participant_id: ParticipantId,
    token: String,
    inputs: mpsc::UnboundedReceiver<Box<Input>>,
    room_events: Option<mpsc::UnboundedReceiver<SharedRoomEvent>>,
    sfu_events: Option<mpsc::UnboundedReceiver<Box<ServerFrame>>>,
    outbox: Outbox,
    requests: RequestCache,
    /// The connection that carries the session, if any.
    transport: Option<Transport>,
    /// End of the grace period while no connection is attached.
    grace_deadline: Option<Instant>,
    /// Timer for the grace period and the outbox's age limit. Kept from one turn of the loop
    /// to the next, because setting a timer on every room event costs a timer wheel insert and
    /// removal each.
    timer: Pin<Box<Sleep>>,
    /// When `timer` fires, or `None` when it is not set.
    timer_deadline: Option<Instant>,
    /// Completes when the server shuts down. Kept for the same reason as `timer`.
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Actor {
    async fn run(mut self, (join_request_id, snapshot): (Option<String>, RoomSnapshot)) {
        info!(others = snapshot.others.len(), "participant joined");
        let end = match self.start(join_request_id, snapshot) {
            Ok(()) => self.serve().await,
            Err(end) => end,
        };
        self.finish(end).await;
    }

    /// Joins the SFU and sends `joined`, which is the session's first message.
    fn start(&mut self, join_request_id: Option<String>, snapshot: RoomSnapshot) -> Handled {
        let (sfu_events, sfu_receiver) = mpsc::unbounded_channel();
        self.state.sfu.join_with(
            self.room.as_str(),
            self.participant_id.as_str(),
            self.identity.grants.subscribe,
            sfu_events,
        );
        self.sfu_events = Some(sfu_receiver);
        if self.transport.is_none() {
            self.start_grace();
        }

        let joined = ServerMessage::Joined {
            room: self.room.as_str().to_owned(),
            participant_id: self.participant_id.as_str().to_owned(),
            participants: snapshot.others,
            ice_servers: self
                .state
                .config
                .ice_servers_for(self.participant_id.as_str(), SystemTime::now()),
            resume_token: self.token.clone(),
            room_metadata: snapshot.metadata,
            max_file_size: self.state.config.max_file_size,
        };
        self.reply(join_request_id, joined)
    }

    /// Handles inputs, room events, SFU events and timers until the session ends.
    async fn serve(&mut self) -> SessionEnd {
        loop {
            // Inputs that are already queued are handled without touching a socket, so without
            // this a burst would starve the writer tasks.
            tokio::task::consume_budget().await;

            // Writes what the last turn queued with one `send` system call, unless the socket
            // is full.
            if let Some(transport) = &self.transport {
                transport.outbound.write_queued();
            }

            self.set_timer();
            let timer_set = self.timer_deadline.is_some();
            let handled = tokio::select! {
                Some(input) = self.inputs.recv() => self.on_input(*input).await,
                Some(event) = next_event(&mut self.room_events) => self.on_room_events(event),
                Some(frame) = next_event(&mut self.sfu_events) => self.on_sfu_frame(*frame),
                () = &mut self.timer, if timer_set => {
                    self.timer_deadline = None;
                    self.on_timeout()
                }
                () = &mut self.shutdown => Err(SessionEnd::Shutdown),
            };
            if let Err(end) = handled {
                return end;
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        match (self.grace_deadline, self.outbox.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Sets the timer for the next deadline if it is not set or set for a later time. A
    /// timer set too early fires, finds nothing due, and is set again.
    fn set_timer(&mut self) {
        let Some(deadline) = self.next_deadline() else {
            return;
        };
        if self.timer_deadline.is_none_or(|set| deadline < set) {
            self.timer.as_mut().reset(deadline.into());
            self.timer_deadline = Some(deadline);
        }
    }

    fn on_timeout(&mut self) -> Handled {
        let now = Instant::now();
        self.outbox.trim(now);
        match self.grace_deadline {
            Some(deadline) if deadline <= now => Err(SessionEnd::GraceExpired),
            _ => Ok(()),
        }
    }

    async fn on_input(&mut self, input: Input) -> Handled {
        match input {
            Input::Text {
                connection: None,
                text,
                trace,
            } => match self.posted_rate.admit(Instant::now()) {
                Admission::Allow => self.on_text(&text, trace).await,
                Admission::Drop | Admission::Close => {
                    debug!("posted message over the rate limit dropped");
                    self.reply(None, rate_limited())
                }
            },
            Input::Text {
                connection: Some(connection),
                text,
                trace,
            } if self.is_attached(connection) => self.on_text(&text, trace).await,
            Input::Rejected {
                connection,
                code,
                message,
            } if self.is_attached(connection) => {
                self.reply(None, ServerMessage::error(code, message))
            }
            Input::Attach(attach) => self.attach(attach),
            Input::Detach { connection, end } if self.is_attached(connection) => self.detach(end),
            // Input from a connection that was replaced or closed already.
            Input::Text { .. } | Input::Rejected { .. } | Input::Detach { .. } => Ok(()),
        }
    }

    fn is_attached(&self, connection: u64) -> bool {
        self.transport
            .as_ref()
            .is_some_and(|transport| transport.connection == connection)
    }

    async fn on_text(&mut self, text: &str, trace: Option<TraceParent>) -> Handled {
        let frame = match decode_and_count(text) {
            Ok(frame) => frame,
            Err((request_id, error)) => {
                crate::peer_log::invalid_message(&error);
                return self.reply(
                    request_id,
                    ServerMessage::error(error.code(), error.to_string()),
                );
            }
        };
        let span = request_span(
            &frame.message,
            frame.id.as_deref(),
            self.room.as_str(),
            self.participant_id.as_str(),
            trace,
        );
        self.on_frame(frame).instrument(span).await
    }

    /// Handles one decoded client message inside its request span.
    async fn on_frame(&mut self, frame: ClientFrame) -> Handled {
        let step = joined_step(&self.identity, frame.message);

        // Acknowledgements are not requests: they get no reply and are never cached.
        if let Step::Ack(seq) = step {
            return self.ack(seq);
        }
        if let Some(id) = &frame.id {
            match self.requests.begin(id) {
                Lookup::New => {}
                Lookup::Running => {
                    debug!(request_id = %id, "retry of a running request ignored");
                    return Ok(());
                }
                Lookup::Done(reply) => {
                    debug!(request_id = %id, "retry answered with the first reply");
                    return self.deliver(ServerFrame::reply(frame.id, reply));
                }
            }
        }
        self.execute(frame.id, step).await
    }

    async fn execute(&mut self, request_id: Option<String>, step: Step) -> Handled {
        match step {
            Step::Reply(reply) => {
                debug!(?reply, "rejected client message");
                self.reply(request_id, reply)
            }
            Step::Forward(request) => {
                self.forward(request_id, request);
                Ok(())
            }
            Step::Ack(seq) => self.ack(seq),
            Step::Store(request) => {
                let reply = self.store_request(request).await;
                self.reply(request_id, reply)
            }
            Step::Leave => {
                self.reply(request_id, ServerMessage::Ok)?;
                Err(SessionEnd::Left)
            }
        }
    }

    fn ack(&mut self, seq: u64) -> Handled {
        match self.outbox.ack(seq) {
            Ok(sent_at) => {
                if let Some(sent_at) = sent_at {
                    metrics::counters().ack_round_trip(sent_at.elapsed());
                }
                Ok(())
            }
            Err(error) => {
                debug!(%error, "invalid acknowledgement");
                self.reply(
                    None,
                    ServerMessage::error(
                        ErrorCode::InvalidMessage,
                        format!("invalid ack: {error}"),
                    ),
                )
            }
        }
    }

    /// Runs a room store request and returns the reply: `ok`, or an `error`.
    async fn store_request(&self, request: StoreRequest) -> ServerMessage {
        let store = &self.state.store;
        let room = &self.room;
        let result = match request {
            StoreRequest::RoomMetadata(metadata) => store.set_room_metadata(room, metadata).await,
            StoreRequest::ParticipantMetadata(id, metadata) => {
                store.set_participant_metadata(room, &id, metadata).await
            }
            StoreRequest::Chat(text) => {
                let ts = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |since| since.as_millis() as u64);
                store.chat(room, &self.participant_id, text, ts).await
            }
            StoreRequest::PeerSignal {
                to,
                session,
                signal,
            } => {
                store
                    .peer_signal(room, &self.participant_id, &to, session, signal)
                    .await
            }
        };
        match result {
            Ok(()) => ServerMessage::Ok,
            Err(StoreError::ParticipantNotFound { participant_id, .. }) => {
                debug!(%participant_id, "request names a participant not in the room");
                ServerMessage::error(
                    ErrorCode::ParticipantNotFound,
                    format!("participant {participant_id} is not in this room"),
                )
            }
            Err(err) => {
                error!(
                    error = &err as &dyn std::error::Error,
                    "room store request failed"
                );
                ServerMessage::error(ErrorCode::InternalError, "room store failed, try again")
            }
        }
    }

    fn forward(&self, request_id: Option<String>, request: SfuRequest) {
        let sfu = &self.state.sfu;
        let id = self.participant_id.as_str();
        match request {
            SfuRequest::PublishOffer(sdp) => sfu.publish_offer(id, request_id, sdp),
            SfuRequest::SubscriberAnswer(sdp) => sfu.subscriber_answer(id, request_id, sdp),
            SfuRequest::Candidate(target, candidate) => {
                sfu.add_candidate(id, request_id, target, candidate)
            }
        }
    }

    fn on_sfu_frame(&mut self, frame: ServerFrame) -> Handled {
        if let Some(id) = &frame.request_id {
            self.requests.complete(id, &frame.message);
        }
        self.deliver(frame)
    }

    /// Sends the reply to a request and remembers it for retries.
    fn reply(&mut self, request_id: Option<String>, message: ServerMessage) -> Handled {
        if let Some(id) = &request_id {
            self.requests.complete(id, &message);
        }
        self.deliver(ServerFrame::reply(request_id, message))
    }

    /// Delivers `first` and then the room events already queued behind it, at most
    /// [`ROOM_EVENT_BATCH`] in all, without a turn of the `select!` loop for each.
    fn on_room_events(&mut self, first: SharedRoomEvent) -> Handled {
        let now = Instant::now();
        self.on_room_event(&first, now)?;
        for _ in 1..ROOM_EVENT_BATCH {
            let Some(receiver) = &mut self.room_events else {
                break;
            };
            let Ok(event) = receiver.try_recv() else {
                break;
            };
            self.on_room_event(&event, now)?;
        }
        Ok(())
    }

    /// Delivers a room event, encoded once for all the members that get it.
    fn on_room_event(&mut self, event: &SharedRoomEvent, now: Instant) -> Handled {
        if matches!(**event, RoomEvent::Replaced) {
            return Err(SessionEnd::Replaced);
        }
        let Some(encoded) = event.encoded(encode_room_event) else {
            return Ok(());
        };
        metrics::counters().message_type_sent(encoded.message_type);
        self.deliver_body(encoded.body.clone(), now)
    }

    /// Numbers a message, keeps it in the outbox and queues it on the attached connection.
    fn deliver(&mut self, frame: ServerFrame) -> Handled {
        let Some(encoded) = encode(&frame) else {
            return Ok(());
        };
        self.deliver_body(encoded.body, Instant::now())
    }

    /// Numbers an encoded message body, keeps it in the outbox as sent at `now` and queues it
    /// on the attached connection.
    fn deliver_body(&mut self, body: Utf8Bytes, now: Instant) -> Handled {
        let seq = self.outbox.push(now, body.clone());
        let Some(transport) = &self.transport else {
            return Ok(());
        };
        let encoded = Encoded {
            seq: Some(seq),
            body,
        };
        match transport.outbound.push(encoded) {
            Ok(()) => Ok(()),
            Err(OutboundError::Full { capacity }) => {
                debug!(
                    capacity,
                    "outbound queue is full because the client is not reading"
                );
                self.close_transport(None, CloseCode::SlowConsumer);
                self.start_grace_or_end()
            }
            Err(OutboundError::WriterStopped | OutboundError::Write(_)) => {
                self.transport = None;
                self.start_grace_or_end()
            }
        }
    }

    /// Takes over a new connection for `resume`, and replays what the client missed.
    fn attach(&mut self, attach: Attach) -> Handled {
        let Attach {
            connection,
            outbound,
            last_seq,
            request_id,
            reply,
        } = attach;
        let missed = match self.outbox.replay(last_seq) {
            Ok(missed) => missed,
            Err(error) => {
                info!(%error, last_seq, "resume failed");
                let _ = reply.send(Err(outbound));
                return Err(SessionEnd::ResumeFailed);
            }
        };

        self.close_transport(None, CloseCode::Superseded);
        let resumed = ServerFrame::reply(
            request_id,
            ServerMessage::Resumed {
                resumed: true,
                last_seq: self.outbox.last_seq(),
            },
        );
        let mut batch: Vec<Encoded> = encode(&resumed).into_iter().collect();
        batch.extend(missed.into_iter().map(|message| Encoded {
            seq: Some(message.seq),
            body: message.body,
        }));
        info!(
            connection,
            last_seq,
            replayed = batch.len() - 1,
            "session resumed"
        );
        if outbound.push_batch(batch).is_err() {
            let _ = reply.send(Err(outbound));
            return self.start_grace_or_end();
        }
        if reply.send(Ok(())).is_err() {
            // The driver stopped waiting, so no driver reads this connection.
            return self.start_grace_or_end();
        }
        self.transport = Some(Transport {
            connection,
            outbound,
        });
        self.grace_deadline = None;
        Ok(())
    }

    fn detach(&mut self, end: TransportEnd) -> Handled {
        info!(reason = %end, "connection lost");
        match end {
            TransportEnd::MessageTooLarge => {
                let farewell = SessionEnd::MessageTooLarge.farewell();
                self.close_transport(farewell, CloseCode::MessageTooBig);
            }
            TransportEnd::RateLimited => {
                self.close_transport(Some(rate_limit_close()), CloseCode::RateLimited);
            }
            _ => self.transport = None,
        }
        self.start_grace_or_end()
    }

    /// Queues `farewell` and a close frame on the attached connection and lets it go.
    fn close_transport(&mut self, farewell: Option<ServerMessage>, code: CloseCode) {
        let farewell = farewell.and_then(|message| {
            let body = encode(&ServerFrame::event(message))?.body;
            let seq = self.outbox.push(Instant::now(), body.clone());
            Some(Encoded {
                seq: Some(seq),
                body,
            })
        });
        if let Some(transport) = self.transport.take() {
            transport.outbound.close(farewell, code);
        }
    }

    fn start_grace(&mut self) {
        self.grace_deadline = Some(Instant::now() + self.state.config.reconnect_grace);
    }

    fn start_grace_or_end(&mut self) -> Handled {
        if self.state.config.reconnect_grace.is_zero() {
            return Err(SessionEnd::GraceExpired);
        }
        self.start_grace();
        Ok(())
    }

    /// Removes the participant from the SFU and the room, and closes the attached connection
    /// with the close code for `end`.
    async fn finish(mut self, end: SessionEnd) {
        self.state.unregister_session(&self.token);
        self.state.sfu.leave(self.participant_id.as_str());
        if let Err(err) = self
            .state
            .store
            .leave(&self.room, &self.participant_id)
            .await
        {
            error!(
                error = &err as &dyn std::error::Error,
                "room store failed to remove participant"
            );
        }
        match end.close_code() {
            Some(code) => self.close_transport(end.farewell(), code),
            None => self.transport = None,
        }
        metrics::counters().session_ended(metrics::session_end_label(end));
        info!(reason = %end, "session ended");
    }
}

/// Encodes the message of a room event for [`SharedRoomEvent::encoded`]. Returns `None` for
/// [`RoomEvent::Replaced`], which has no message.
fn encode_room_event(event: &RoomEvent) -> Option<EncodedEvent> {
    let message = event.clone().into_message()?;
    Some(EncodedEvent {
        message_type: metrics::server_type(&message),
        body: encode_body(None, &message)?,
    })
}

/// Returns the `error` for a message over the rate limit.
pub(crate) fn rate_limited() -> ServerMessage {
    ServerMessage::error(
        ErrorCode::RateLimited,
        "too many messages per second, the message was dropped; slow down",
    )
}

/// Returns the `error` sent before close code 4029.
pub(crate) fn rate_limit_close() -> ServerMessage {
    ServerMessage::error(
        ErrorCode::RateLimited,
        "too many messages over the rate limit, closing the connection",
    )
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
