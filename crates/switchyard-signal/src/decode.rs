//! Decoding of client text frames into [`ClientMessage`], with the error code for each kind of
//! bad input.

use serde::Deserialize;
use serde_json::Value;
use switchyard_proto::{ClientMessage, ErrorCode};

/// Maximum number of characters of an unknown `type` value repeated in the error message.
const MAX_ECHOED_TYPE_CHARS: usize = 32;

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
    #[error("unknown message type {0:?}, expected join, offer, answer, candidate or leave")]
    UnknownType(String),
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
            DecodeError::InvalidMessage { .. } => ErrorCode::InvalidMessage,
        }
    }
}

/// Values of `type` that [`ClientMessage`] accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MessageKind {
    Join,
    Offer,
    Answer,
    Candidate,
    Leave,
}

impl MessageKind {
    fn from_type(type_name: &str) -> Option<Self> {
        match type_name {
            "join" => Some(MessageKind::Join),
            "offer" => Some(MessageKind::Offer),
            "answer" => Some(MessageKind::Answer),
            "candidate" => Some(MessageKind::Candidate),
            "leave" => Some(MessageKind::Leave),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            MessageKind::Join => "join",
            MessageKind::Offer => "offer",
            MessageKind::Answer => "answer",
            MessageKind::Candidate => "candidate",
            MessageKind::Leave => "leave",
        }
    }
}

/// Decodes one text frame. Tells apart text that is not JSON, JSON without a known `type`,
/// and a known `type` with bad fields, so each gets its own error code.
pub fn decode(text: &str) -> Result<ClientMessage, DecodeError> {
    let value: Value = serde_json::from_str(text).map_err(DecodeError::InvalidJson)?;

    let Some(type_name) = value.get("type").and_then(Value::as_str) else {
        return Err(DecodeError::MissingType);
    };
    let Some(kind) = MessageKind::from_type(type_name) else {
        return Err(DecodeError::UnknownType(echo(type_name)));
    };

    ClientMessage::deserialize(value).map_err(|source| DecodeError::InvalidMessage {
        kind: kind.as_str(),
        source,
    })
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
            ClientMessage::Offer { .. } => "offer",
            ClientMessage::Answer { .. } => "answer",
            ClientMessage::Candidate { .. } => "candidate",
            ClientMessage::Leave => "leave",
        }
    }

    #[test]
    fn message_kind_names_round_trip() {
        for kind in [
            MessageKind::Join,
            MessageKind::Offer,
            MessageKind::Answer,
            MessageKind::Candidate,
            MessageKind::Leave,
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
            },
            ClientMessage::Offer { sdp: "v=0".into() },
            ClientMessage::Answer { sdp: "v=0".into() },
            ClientMessage::Candidate {
                target: Target::Subscriber,
                candidate: Candidate::default(),
            },
            ClientMessage::Leave,
        ];
        for message in messages {
            let text = serde_json::to_string(&message).unwrap();
            assert!(text.contains(type_name(&message)), "{text}");
            assert_eq!(decode(&text).unwrap(), message, "{text}");
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
            r#"{"type":"join","room":"demo"}"#,
            r#"{"type":"join","room":1,"name":"Ada"}"#,
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
        assert_eq!(decode(text).unwrap(), ClientMessage::Leave);
    }
}
