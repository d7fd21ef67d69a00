//! Validated room and display names, and server-assigned participant ids.

use std::fmt;

use rand::Rng;

/// Maximum length of a room name, in Unicode scalar values.
pub const MAX_ROOM_NAME_CHARS: usize = 64;

/// Maximum length of a display name, in Unicode scalar values.
pub const MAX_DISPLAY_NAME_CHARS: usize = 64;

/// Maximum length of a participant identity, from a join token's `sub` or a tokenless join's
/// `identity`, in Unicode scalar values.
pub const MAX_IDENTITY_CHARS: usize = 128;

/// Reason a room or display name was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    /// The name is empty or only whitespace and zero-width characters.
    #[error("{field} must not be empty")]
    Empty {
        /// `room`, `name` or `identity`.
        field: &'static str,
    },
    /// The name is longer than its limit.
    #[error("{field} is {length} characters long but the maximum is {max}")]
    TooLong {
        /// `room`, `name` or `identity`.
        field: &'static str,
        /// Length of the rejected name in characters.
        length: usize,
        /// Limit for this field.
        max: usize,
    },
    /// The name contains a control character such as a newline, or a bidirectional override.
    #[error("{field} must not contain control or bidirectional override characters")]
    ControlCharacter {
        /// `room`, `name` or `identity`.
        field: &'static str,
    },
}

/// Room name as the client sent it: 1 to [`MAX_ROOM_NAME_CHARS`] characters, not only
/// whitespace, no control characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(String);

impl RoomName {
    /// Validates `name` as a room name.
    pub fn parse(name: String) -> Result<Self, NameError> {
        validate("room", &name, MAX_ROOM_NAME_CHARS)?;
        Ok(RoomName(name))
    }

    /// Returns the name as sent by the client.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Display name shown to the other participants: 1 to [`MAX_DISPLAY_NAME_CHARS`] characters,
/// not only whitespace, no control characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DisplayName(String);

impl DisplayName {
    /// Validates `name` as a display name.
    pub fn parse(name: String) -> Result<Self, NameError> {
        validate("name", &name, MAX_DISPLAY_NAME_CHARS)?;
        Ok(DisplayName(name))
    }

    /// Returns the name as sent by the client.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns the inner string.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// Validates a participant identity: 1 to [`MAX_IDENTITY_CHARS`] characters, not only
/// whitespace, no control characters.
pub fn validate_identity(identity: &str) -> Result<(), NameError> {
    validate("identity", identity, MAX_IDENTITY_CHARS)
}

fn validate(field: &'static str, name: &str, max: usize) -> Result<(), NameError> {
    if name.chars().all(is_invisible) {
        return Err(NameError::Empty { field });
    }
    let length = name.chars().count();
    if length > max {
        return Err(NameError::TooLong { field, length, max });
    }
    if name.chars().any(|c| c.is_control() || is_bidi_override(c)) {
        return Err(NameError::ControlCharacter { field });
    }
    Ok(())
}

/// Tells whether a character shows nothing on its own: whitespace, zero-width characters and
/// the soft hyphen. A name made only of these would be blank on screen.
fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{00AD}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{2060}' | '\u{FEFF}'
        )
}

/// Tells whether a character is a bidirectional embedding, override or isolate (U+202A to
/// U+202E, U+2066 to U+2069), which can make a name display differently from how it reads.
fn is_bidi_override(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Server-assigned participant id: 128 random bits as 32 lowercase hex digits, so a client
/// cannot guess the id of a participant it has not received in a roster or event.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantId(String);

impl ParticipantId {
    /// Generates a new id from the thread-local CSPRNG.
    pub fn random() -> Self {
        let bits: u128 = rand::rng().random();
        ParticipantId(format!("{bits:032x}"))
    }

    /// Wraps an existing id, for example one read back from a shared store.
    pub fn from_string(id: String) -> Self {
        ParticipantId(id)
    }

    /// Returns the id as it appears on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Returns 128 random bits from the thread-local CSPRNG as 32 lowercase hex digits, for resume
/// tokens.
pub(crate) fn random_token() -> String {
    let bits: u128 = rand::rng().random();
    format!("{bits:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_name_accepts_unicode_up_to_limit() {
        let name = "ä".repeat(MAX_ROOM_NAME_CHARS);
        assert_eq!(RoomName::parse(name.clone()).unwrap().as_str(), name);
    }

    #[test]
    fn room_name_rejects_over_limit() {
        let name = "a".repeat(MAX_ROOM_NAME_CHARS + 1);
        assert_eq!(
            RoomName::parse(name),
            Err(NameError::TooLong {
                field: "room",
                length: MAX_ROOM_NAME_CHARS + 1,
                max: MAX_ROOM_NAME_CHARS,
            })
        );
    }

    #[test]
    fn names_reject_empty_and_whitespace() {
        for name in ["", "   ", "\t"] {
            assert_eq!(
                DisplayName::parse(name.into()),
                Err(NameError::Empty { field: "name" }),
                "{name:?}"
            );
        }
    }

    #[test]
    fn names_reject_control_characters() {
        assert_eq!(
            DisplayName::parse("Ada\nLovelace".into()),
            Err(NameError::ControlCharacter { field: "name" })
        );
        assert_eq!(
            RoomName::parse("demo\u{0}".into()),
            Err(NameError::ControlCharacter { field: "room" })
        );
    }

    #[test]
    fn names_reject_invisible_and_bidi_override_characters() {
        for name in ["\u{200B}", " \u{200D}\u{FEFF} ", "\u{00AD}"] {
            assert_eq!(
                DisplayName::parse(name.into()),
                Err(NameError::Empty { field: "name" }),
                "{name:?}"
            );
        }
        for name in ["abc\u{202E}def", "\u{2066}Ada\u{2069}"] {
            assert_eq!(
                DisplayName::parse(name.into()),
                Err(NameError::ControlCharacter { field: "name" }),
                "{name:?}"
            );
        }
        // Joiners inside a name are part of many scripts and emoji, and stay allowed.
        assert!(
            DisplayName::parse("\u{0645}\u{200C}\u{06CC} \u{1F469}\u{200D}\u{1F52C}".into())
                .is_ok()
        );
    }

    #[test]
    fn display_name_rejects_over_limit() {
        let name = "x".repeat(MAX_DISPLAY_NAME_CHARS + 1);
        assert!(matches!(
            DisplayName::parse(name),
            Err(NameError::TooLong { field: "name", .. })
        ));
    }

    #[test]
    fn participant_ids_are_128_bit_hex_and_distinct() {
        let first = ParticipantId::random();
        let second = ParticipantId::random();
        assert_eq!(first.as_str().len(), 32);
        assert!(first.as_str().chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(first, second);
    }
}
