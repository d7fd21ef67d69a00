//! Decoding of client text frames into [`ClientFrame`], with the error code for each kind of
//! bad input.

use serde::Deserialize;
use serde_json::Value;
use switchyard_proto::{ClientFrame, ClientMessage, ErrorCode};

/// Maximum number of characters of an unknown `type` value repeated in the error message.
const MAX_ECHOED_TYPE_CHARS: usize = 32;

/// Maximum length of a request id, in characters.
pub const MAX_REQUEST_ID_CHARS: usize = 64;

/// Reason a text frame is not a valid client message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The frame is not JSON.
    #[error("invalid JSON: {0}")]
    InvalidJson(#[source] serde_json::Error),
    /// The JSON value is not an object with a string `type` field.
    #[error("missing `type` field, expected an object such as {{\"type\":\"join\",...}}")]
    MissingType,
    /// The `type` field names no client message.
    #[error(
        "unknown message type {0:?}, expected join, resume, offer, answer, candidate, ack, leave, set_metadata, chat or peer_signal"
    )]
    UnknownType(String),
    /// The `id` field is not a string of 1 to [`MAX_REQUEST_ID_CHARS`] characters.
    #[error("invalid request id: expected a string of 1 to {MAX_REQUEST_ID_CHARS} characters")]
    InvalidRequestId,
    /// The `type` is known but a field is missing or has the wrong type.
    #[error("invalid `{kind}` message: {source}")]
    InvalidMessage {
        /// The message's `type`.
        kind: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
}

impl DecodeError {
    /// Returns the code sent to the client in the `error` message.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::InvalidJson(_) => ErrorCode::InvalidJson,
            DecodeError::MissingType | DecodeError::UnknownType(_) => ErrorCode::UnknownType,
            DecodeError::InvalidMessage { .. } | DecodeError::InvalidRequestId => {
                ErrorCode::InvalidMessage
            }
        }
    }
}

/// Values of `type` that [`ClientMessage`] accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MessageKind {
    Join,
    Resume,
    Offer,
    Answer,
    Candidate,
    Ack,
    Leave,
    SetMetadata,
    Chat,
    PeerSignal,
}

impl MessageKind {
    fn from_type(type_name: &str) -> Option<Self> {
        match type_name {
            "join" => Some(MessageKind::Join),
            "resume" => Some(MessageKind::Resume),
            "ack" => Some(MessageKind::Ack),
            "offer" => Some(MessageKind::Offer),
            "answer" => Some(MessageKind::Answer),
            "candidate" => Some(MessageKind::Candidate),
            "leave" => Some(MessageKind::Leave),
            "set_metadata" => Some(MessageKind::SetMetadata),
            "chat" => Some(MessageKind::Chat),
            "peer_signal" => Some(MessageKind::PeerSignal),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            MessageKind::Join => "join",
            MessageKind::Resume => "resume",
            MessageKind::Offer => "offer",
            MessageKind::Answer => "answer",
            MessageKind::Candidate => "candidate",
            MessageKind::Ack => "ack",
            MessageKind::Leave => "leave",
            MessageKind::SetMetadata => "set_metadata",
            MessageKind::Chat => "chat",
            MessageKind::PeerSignal => "peer_signal",
        }
    }
}

/// Decodes one text frame. Tells apart text that is not JSON, JSON without a known `type`,
/// and a known `type` with bad fields, so each gets its own error code.
pub fn decode(text: &str) -> Result<ClientFrame, DecodeError> {
    decode_with_id(text).map_err(|(_, error)| error)
}

/// Like [`decode`], and on failure also returns the request id when the frame had a valid
/// one, so the error reply can carry it.
pub fn decode_with_id(text: &str) -> Result<ClientFrame, (Option<String>, DecodeError)> {
    let mut value: Value =
        serde_json::from_str(text).map_err(|error| (None, DecodeError::InvalidJson(error)))?;
    let id = take_request_id(&mut value).map_err(|error| (None, error))?;

    let Some(type_name) = value.get("type").and_then(Value::as_str) else {
        return Err((id, DecodeError::MissingType));
    };
    let Some(kind) = MessageKind::from_type(type_name) else {
        return Err((id, DecodeError::UnknownType(echo(type_name))));
    };

    match ClientMessage::deserialize(value) {
        Ok(message) => Ok(ClientFrame { id, message }),
        Err(source) => Err((
            id,
            DecodeError::InvalidMessage {
                kind: kind.as_str(),
                source,
            },
        )),
    }
}

/// Removes and validates the `id` field of an object.
fn take_request_id(value: &mut Value) -> Result<Option<String>, DecodeError> {
    let Some(object) = value.as_object_mut() else {
        return Ok(None);
    };
    match object.remove("id") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(id)) => {
            let length = id.chars().count();
            if length == 0 || length > MAX_REQUEST_ID_CHARS {
                return Err(DecodeError::InvalidRequestId);
            }
            Ok(Some(id))
        }
        Some(_) => Err(DecodeError::InvalidRequestId),
    }
}

/// Shortens client text before it is repeated in an error message.
fn echo(text: &str) -> String {
    text.chars().take(MAX_ECHOED_TYPE_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_proto::{Candidate, Target};

    /// Exhaustive on purpose: a new `ClientMessage` variant fails to compile here until it is
    /// added to `MessageKind`.
    fn type_name(message: &ClientMessage) -> &'static str {
        match message {
            ClientMessage::Join { .. } => "join",
            ClientMessage::Resume { .. } => "resume",
            ClientMessage::Offer { .. } => "offer",
            ClientMessage::Answer { .. } => "answer",
            ClientMessage::Candidate { .. } => "candidate",
            ClientMessage::Ack { .. } => "ack",
            ClientMessage::Leave => "leave",
            ClientMessage::SetMetadata { .. } => "set_metadata",
            ClientMessage::Chat { .. } => "chat",
            ClientMessage::PeerSignal { .. } => "peer_signal",
        }
    }

    #[test]
    fn message_kind_names_round_trip() {
        for kind in [
            MessageKind::Join,
            MessageKind::Resume,
            MessageKind::Offer,
            MessageKind::Answer,
            MessageKind::Candidate,
            MessageKind::Ack,
            MessageKind::Leave,
            MessageKind::SetMetadata,
            MessageKind::Chat,
            MessageKind::PeerSignal,
        ] {
            assert_eq!(MessageKind::from_type(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn every_client_message_decodes() {
        let messages = [
            ClientMessage::Join {
                room: "demo".into(),
                name: "Ada".into(),
                token: Some("t".into()),
                identity: None,
            },
            ClientMessage::Resume {
                token: "t".into(),
                last_seq: 4,
            },
            ClientMessage::Ack { seq: 9 },
            ClientMessage::Offer { sdp: "v=0".into() },
            ClientMessage::Answer { sdp: "v=0".into() },
            ClientMessage::Candidate {
                target: Target::Subscriber,
                candidate: Candidate::default(),
            },
            ClientMessage::Leave,
            ClientMessage::SetMetadata {
                scope: switchyard_proto::MetadataScope::Room,
                participant_id: None,
                metadata: "m".into(),
            },
            ClientMessage::Chat { text: "hi".into() },
            ClientMessage::PeerSignal {
                to: "p".into(),
                session: "s".into(),
                signal: switchyard_proto::PeerSignal::Answer { sdp: "v=0".into() },
            },
        ];
        for message in messages {
            let text = serde_json::to_string(&message).unwrap();
            assert!(text.contains(type_name(&message)), "{text}");
            assert_eq!(decode(&text).unwrap().message, message, "{text}");
        }
    }

    #[test]
    fn not_json_is_invalid_json() {
        for text in ["", "{", "join", "{\"type\":\"join\""] {
            let error = decode(text).unwrap_err();
            assert_eq!(error.code(), ErrorCode::InvalidJson, "{text:?}");
        }
    }

    #[test]
    fn missing_or_unknown_type_is_unknown_type() {
        for text in [
            "{}",
            "[]",
            "42",
            "null",
            r#"{"room":"demo"}"#,
            r#"{"type":7}"#,
            r#"{"type":"shout"}"#,
            r#"{"type":"JOIN","room":"demo","name":"Ada"}"#,
        ] {
            let error = decode(text).unwrap_err();
            assert_eq!(error.code(), ErrorCode::UnknownType, "{text}");
        }
    }

    #[test]
    fn bad_fields_are_invalid_message() {
        for text in [
            r#"{"type":"join"}"#,
            r#"{"type":"join","room":1,"name":"Ada"}"#,
            r#"{"type":"resume","token":"t"}"#,
            r#"{"type":"ack","seq":-1}"#,
            r#"{"type":"offer"}"#,
            r#"{"type":"candidate","target":"sideways","candidate":""}"#,
            r#"{"type":"candidate","sdpMLineIndex":-1,"candidate":""}"#,
        ] {
            let error = decode(text).unwrap_err();
            assert_eq!(error.code(), ErrorCode::InvalidMessage, "{text}");
        }
    }

    #[test]
    fn unknown_type_echo_is_shortened() {
        let long_type = "x".repeat(10_000);
        let text = format!(r#"{{"type":"{long_type}"}}"#);
        let DecodeError::UnknownType(echoed) = decode(&text).unwrap_err() else {
            panic!("expected UnknownType");
        };
        assert_eq!(echoed.chars().count(), MAX_ECHOED_TYPE_CHARS);
    }

    #[test]
    fn extra_fields_are_ignored() {
        let text = r#"{"type":"leave","reason":"done"}"#;
        assert_eq!(decode(text).unwrap().message, ClientMessage::Leave);
    }

    #[test]
    fn request_id_is_taken_from_the_frame() {
        let frame = decode(r#"{"type":"leave","id":"r1"}"#).unwrap();
        assert_eq!(frame.id.as_deref(), Some("r1"));
        assert_eq!(frame.message, ClientMessage::Leave);
    }

    #[test]
    fn bad_request_ids_are_invalid_message() {
        let long = format!(r#"{{"type":"leave","id":"{}"}}"#, "x".repeat(65));
        for text in [
            r#"{"type":"leave","id":""}"#,
            r#"{"type":"leave","id":7}"#,
            r#"{"type":"leave","id":{}}"#,
            long.as_str(),
        ] {
            let error = decode(text).unwrap_err();
            assert_eq!(error.code(), ErrorCode::InvalidMessage, "{text}");
        }
    }

    #[test]
    fn errors_keep_the_request_id() {
        let (id, error) = decode_with_id(r#"{"type":"offer","id":"o1"}"#).unwrap_err();
        assert_eq!(id.as_deref(), Some("o1"));
        assert_eq!(error.code(), ErrorCode::InvalidMessage);
        let (id, _) = decode_with_id(r#"{"type":"shout","id":"s1"}"#).unwrap_err();
        assert_eq!(id.as_deref(), Some("s1"));
    }
}
