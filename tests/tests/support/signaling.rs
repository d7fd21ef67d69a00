//! WebSocket client for `GET /v1/ws`: JSON text frames in both directions, with one task that
//! writes and one that reads, so peer connection callbacks can send from any task.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use switchyard_proto::{ClientFrame, ServerFrame, ServerMessage};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// Cloneable sender of client frames. They reach the server in the order they were sent.
pub type SignalingSender = mpsc::UnboundedSender<ClientFrame>;

/// Why the reading side of a signaling connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum SignalingEnd {
    /// The server sent a close frame with this status code, or with none.
    Closed(Option<u16>),
    /// The connection failed, ended without a close frame, or carried an invalid message.
    Failed(String),
    /// The client dropped its receiver of server messages.
    ReceiverDropped,
}

/// An open signaling connection, split into its two directions.
pub struct Signaling {
    pub sender: SignalingSender,
    pub receiver: mpsc::UnboundedReceiver<ServerFrame>,
    /// Ends when the server closes the connection or sends a frame that is not a
    /// [`ServerFrame`].
    pub reader: JoinHandle<SignalingEnd>,
    pub writer: JoinHandle<()>,
}

impl Signaling {
    /// Opens the WebSocket at `ws://{http_addr}/v1/ws`.
    pub async fn connect(http_addr: SocketAddr) -> Signaling {
        let url = format!("ws://{http_addr}/v1/ws");
        let (socket, _response) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap_or_else(|error| panic!("WebSocket connection to {url} failed: {error}"));
        let (mut sink, mut stream) = socket.split();

        let (sender, mut outgoing) = mpsc::unbounded_channel::<ClientFrame>();
        let writer = tokio::spawn(async move {
            while let Some(message) = outgoing.recv().await {
                let json = serde_json::to_string(&message).expect("client messages serialize");
                tracing::debug!(%json, "signaling message sent");
                if sink.send(Message::text(json)).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });

        let (incoming, receiver) = mpsc::unbounded_channel::<ServerFrame>();
        let reader = tokio::spawn(async move {
            while let Some(frame) = stream.next().await {
                let text = match frame {
                    Ok(Message::Text(text)) => text,
                    Ok(Message::Close(frame)) => {
                        return SignalingEnd::Closed(frame.map(|frame| u16::from(frame.code)));
                    }
                    Ok(_) => continue,
                    Err(error) => {
                        return SignalingEnd::Failed(format!("WebSocket read failed: {error}"));
                    }
                };
                tracing::debug!(json = %text.as_str(), "signaling message received");
                let message = match serde_json::from_str::<ServerFrame>(&text) {
                    Ok(message) => message,
                    Err(error) => {
                        let text = text.as_str();
                        return SignalingEnd::Failed(format!(
                            "invalid server message {text}: {error}"
                        ));
                    }
                };
                if incoming.send(message).is_err() {
                    return SignalingEnd::ReceiverDropped;
                }
            }
            SignalingEnd::Failed("connection ended without a close frame".to_owned())
        });

        Signaling {
            sender,
            receiver,
            reader,
            writer,
        }
    }
}

/// Returns the `type` tag of a server message, for transcripts in failure messages.
pub fn message_type(message: &ServerMessage) -> &'static str {
    match message {
        ServerMessage::Joined { .. } => "joined",
        ServerMessage::ParticipantJoined { .. } => "participant_joined",
        ServerMessage::ParticipantLeft { .. } => "participant_left",
        ServerMessage::Answer { .. } => "answer",
        ServerMessage::Offer { .. } => "offer",
        ServerMessage::Candidate { .. } => "candidate",
        ServerMessage::TrackAdded { .. } => "track_added",
        ServerMessage::TrackRemoved { .. } => "track_removed",
        ServerMessage::Error { .. } => "error",
        ServerMessage::Resumed { .. } => "resumed",
        ServerMessage::Ok => "ok",
        ServerMessage::RoomMetadata { .. } => "room_metadata",
        ServerMessage::ParticipantMetadata { .. } => "participant_metadata",
        ServerMessage::Chat { .. } => "chat",
        ServerMessage::PeerSignal { .. } => "peer_signal",
    }
}
