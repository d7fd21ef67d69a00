//! Server-Sent Events transport, for clients that cannot open a WebSocket.
//!
//! - `POST /v1/send` carries client messages: one JSON object, or an array of them handled in
//!   order. Without a session token it accepts only `join`, and the reply is
//!   `202 {"resumeToken": ...}`. With `?token=<resume token>` the messages go to that session
//!   and the reply is `202` with no body. Their replies arrive on the event stream.
//! - `GET /v1/events?token=<resume token>` streams the session's messages as
//!   `text/event-stream`, one event per message, each with `id:` set to the message's sequence
//!   number. The stream starts after `lastSeq` from the query, or after the `Last-Event-ID`
//!   header that a reconnecting `EventSource` sends, so it resumes like `resume` does.
//!
//! Errors that happen before a session exists come back as the HTTP response: the status code
//! and an `error` message as the JSON body.

use std::convert::Infallible;

use axum::extract::rejection::{QueryRejection, StringRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::{stream, Stream, StreamExt};
use serde::Deserialize;
use serde_json::Value;
use switchyard_proto::{ErrorCode, ServerFrame, ServerMessage};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, Instrument};

use crate::connection::origin_rejection;
use crate::join::{join, Rejected};
use crate::metrics::{self, decode_and_count, ConnectionGuard};
use crate::outbound::{self, Encoded, Outgoing};
use crate::participant::{Attach, Input, SessionHandle};
use crate::session::{unbound_step, TransportEnd, Unbound};
use crate::state::AppState;
use crate::trace::{request_span, TraceParent};

/// Path of the event stream.
pub const EVENTS_PATH: &str = "/v1/events";

/// Path for client messages sent with the event stream.
pub const SEND_PATH: &str = "/v1/send";

/// Interval of the keep-alive comments on an idle event stream.
const KEEP_ALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(15);

/// Query parameters of both endpoints.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SessionQuery {
    token: Option<String>,
    last_seq: Option<u64>,
}

/// Handles `POST /v1/send`.
pub(crate) async fn send(
    State(state): State<AppState>,
    query: Result<Query<SessionQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<String, StringRejection>,
) -> Response {
    if let Some(response) = origin_rejection(&state, &headers) {
        return response;
    }
    let query = match query {
        Ok(Query(query)) => query,
        Err(rejection) => return query_rejection(&rejection),
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                ErrorCode::MessageTooLarge,
                "request body is larger than the server's message size limit",
            );
        }
        Err(rejection) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                None,
                ErrorCode::InvalidMessage,
                &format!("invalid request body: {}", rejection.body_text()),
            );
        }
    };
    if state.shutdown.is_cancelled() {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            ErrorCode::ServerShutdown,
            "server is shutting down, reconnect later",
        );
    }
    if body.len() > state.config.max_message_size {
        return error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            ErrorCode::MessageTooLarge,
            "request body is larger than the server's message size limit",
        );
    }
    let trace = TraceParent::from_headers(&headers);
    match query.token {
        Some(token) => send_to_session(&state, &token, body, trace),
        None => join_without_session(&state, &body, trace).await,
    }
}

/// Passes the messages of a body to the session, in order.
fn send_to_session(
    state: &AppState,
    token: &str,
    body: String,
    trace: Option<TraceParent>,
) -> Response {
    let Some(session) = state.find_session(token) else {
        return error_response(
            StatusCode::NOT_FOUND,
            None,
            ErrorCode::SessionNotFound,
            "no session has this token, join again",
        );
    };
    for text in split_body(body) {
        if session
            .send(Input::Text {
                connection: None,
                text,
                trace,
            })
            .is_err()
        {
            return error_response(
                StatusCode::NOT_FOUND,
                None,
                ErrorCode::SessionNotFound,
                "the session has ended, join again",
            );
        }
    }
    StatusCode::ACCEPTED.into_response()
}

/// Returns the JSON text of each message in a body: the elements of an array, or the body.
fn split_body(body: String) -> Vec<String> {
    match serde_json::from_str::<Value>(&body) {
        Ok(Value::Array(items)) => items.iter().map(Value::to_string).collect(),
        // The session reports anything that is not an array, JSON or not.
        _ => vec![body],
    }
}

/// Handles a body without a session token, which must be `join`.
async fn join_without_session(
    state: &AppState,
    body: &str,
    trace: Option<TraceParent>,
) -> Response {
    let frame = match decode_and_count(body) {
        Ok(frame) => frame,
        Err((request_id, error)) => {
            crate::peer_log::invalid_message(&error);
            let reply = ServerMessage::error(error.code(), error.to_string());
            return frame_response(StatusCode::BAD_REQUEST, request_id, reply);
        }
    };
    let span = request_span(&frame.message, frame.id.as_deref(), "", "", trace);
    let request = match unbound_step(frame.message) {
        Unbound::Join(request) => request,
        Unbound::Reply(reply) => return frame_response(StatusCode::BAD_REQUEST, frame.id, reply),
        Unbound::Resume { .. } | Unbound::Leave => {
            let reply = ServerMessage::error(
                ErrorCode::NotJoined,
                "send `join` first; to resume, open the event stream with the resume token",
            );
            return frame_response(StatusCode::BAD_REQUEST, frame.id, reply);
        }
    };
    match join(state, request, frame.id.clone(), None)
        .instrument(span)
        .await
    {
        Ok(joined) => {
            debug!(participant_id = %joined.participant_id, "session started over SSE");
            let body = serde_json::json!({ "resumeToken": joined.resume_token });
            (StatusCode::ACCEPTED, Json(body)).into_response()
        }
        Err(Rejected { reply, .. }) => frame_response(status_for(&reply), frame.id, reply),
    }
}

/// Handles `GET /v1/events`.
pub(crate) async fn events(
    State(state): State<AppState>,
    query: Result<Query<SessionQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    if let Some(response) = origin_rejection(&state, &headers) {
        return response;
    }
    let query = match query {
        Ok(Query(query)) => query,
        Err(rejection) => return query_rejection(&rejection),
    };
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "server is shutting down").into_response();
    }
    let Some(token) = query.token else {
        return error_response(
            StatusCode::BAD_REQUEST,
            None,
            ErrorCode::InvalidMessage,
            "missing `token` query parameter; POST `join` to /v1/send first",
        );
    };
    // A stream that names a position to continue from is a reconnect; the first stream after
    // `join` names none.
    let mut is_resume = true;
    let last_seq = match last_event_id(&headers) {
        Ok(Some(seq)) => seq,
        Ok(None) => {
            is_resume = query.last_seq.is_some();
            query.last_seq.unwrap_or(0)
        }
        Err(()) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                None,
                ErrorCode::InvalidMessage,
                "Last-Event-ID must be a sequence number",
            )
        }
    };

    let connection = state.next_connection_id();
    let (outbound, queue) = outbound::channel(state.config.outbound_queue);
    let attached = match state.find_session(&token) {
        Some(session) => attach(&session, connection, outbound, last_seq).await,
        None => None,
    };
    if is_resume {
        metrics::counters().resume(attached.is_some());
    }
    let stream = match attached {
        Some(session) => event_stream(queue, last_seq, Some((session, connection))).boxed(),
        None => {
            debug!("event stream for an unknown or expired session");
            let frame = ServerFrame::event(ServerMessage::Resumed {
                resumed: false,
                last_seq: 0,
            });
            let event = outbound::encode(&frame).map(|encoded| to_event(encoded, last_seq));
            stream::iter(event.map(Ok)).boxed()
        }
    };
    let keep_alive = KeepAlive::new().interval(KEEP_ALIVE_INTERVAL);
    Sse::new(stream).keep_alive(keep_alive).into_response()
}

/// Attaches a new stream to a session. Returns the session, or `None` when it cannot continue
/// from `last_seq`.
async fn attach(
    session: &SessionHandle,
    connection: u64,
    outbound: outbound::Outbound,
    last_seq: u64,
) -> Option<SessionHandle> {
    let (reply, result) = oneshot::channel();
    let attach = Attach {
        connection,
        outbound,
        last_seq,
        request_id: None,
        reply,
    };
    session.send(Input::Attach(attach)).ok()?;
    match result.await {
        Ok(Ok(())) => Some(session.clone()),
        _ => None,
    }
}

/// Turns the queue into events. Dropping the stream, when the client goes away, detaches it
/// from the session.
fn event_stream(
    queue: mpsc::Receiver<Outgoing>,
    last_seq: u64,
    session: Option<(SessionHandle, u64)>,
) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    let state = StreamState {
        queue,
        last_id: last_seq,
        _open: metrics::counters().connection_opened(metrics::Transport::Sse),
        _detach: session.map(|(handle, connection)| Detach { handle, connection }),
    };
    stream::unfold(state, |mut state| async move {
        let events = match state.queue.recv().await? {
            Outgoing::Message(message) => vec![state.event(message)],
            Outgoing::Batch(messages) => messages.into_iter().map(|m| state.event(m)).collect(),
            // The session closed the stream: slow consumer, leave, shutdown or a resume
            // elsewhere.
            Outgoing::Close(code) => {
                debug!(code = code.code(), "event stream closed by the session");
                return None;
            }
        };
        Some((stream::iter(events.into_iter().map(Ok)), state))
    })
    .flatten()
}

struct StreamState {
    queue: mpsc::Receiver<Outgoing>,
    /// `id:` of the last event, reused by events without a sequence number.
    last_id: u64,
    _open: ConnectionGuard,
    _detach: Option<Detach>,
}

impl StreamState {
    fn event(&mut self, message: Encoded) -> Event {
        if let Some(seq) = message.seq {
            self.last_id = seq;
        }
        to_event(message, self.last_id)
    }
}

fn to_event(message: Encoded, last_id: u64) -> Event {
    let id = message.seq.unwrap_or(last_id);
    Event::default()
        .id(id.to_string())
        .data(message.text().as_str())
}

/// Tells the session that its stream is gone when dropped.
struct Detach {
    handle: SessionHandle,
    connection: u64,
}

impl Drop for Detach {
    fn drop(&mut self) {
        let _ = self.handle.send(Input::Detach {
            connection: self.connection,
            end: TransportEnd::Disconnected,
        });
    }
}

/// Reads `Last-Event-ID`. `Ok(None)` when absent, `Err` when it is not a number.
fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ()> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| ())?.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| ())
}

fn status_for(reply: &ServerMessage) -> StatusCode {
    match reply {
        ServerMessage::Error {
            code: ErrorCode::InternalError,
            ..
        } => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// Returns the `400 invalid_message` reply to a query string that does not parse, such as a
/// `lastSeq` that is not a number.
fn query_rejection(rejection: &QueryRejection) -> Response {
    error_response(
        StatusCode::BAD_REQUEST,
        None,
        ErrorCode::InvalidMessage,
        &format!("invalid query string: {}", rejection.body_text()),
    )
}

fn error_response(
    status: StatusCode,
    request_id: Option<String>,
    code: ErrorCode,
    message: &str,
) -> Response {
    frame_response(status, request_id, ServerMessage::error(code, message))
}

fn frame_response(
    status: StatusCode,
    request_id: Option<String>,
    message: ServerMessage,
) -> Response {
    metrics::counters().message_sent(&message);
    (status, Json(ServerFrame::reply(request_id, message))).into_response()
}
