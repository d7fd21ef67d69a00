//! A validated, borrowed view of one STUN message.

use std::fmt;

use super::{padded, AttrType, MessageType, ATTR_FINGERPRINT, HEADER_LEN, MAGIC_COOKIE};

/// Parse failure of bytes that are not a STUN message this server accepts. Every variant is
/// peer-caused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Shorter than the 20-byte header.
    #[error("shorter than a STUN header")]
    TooShort,
    /// The first two bits are not zero or the magic cookie is wrong.
    #[error("not a STUN message")]
    NotStun,
    /// The length field is not a multiple of four.
    #[error("message length {0} is not a multiple of four")]
    UnalignedLength(usize),
    /// The length field does not match the bytes received.
    #[error("message length {declared} does not match the {received} bytes after the header")]
    LengthMismatch {
        /// Value of the length field.
        declared: usize,
        /// Bytes after the header.
        received: usize,
    },
    /// An attribute runs past the end of the message.
    #[error("attribute {typ:#06x} at offset {offset} runs past the end of the message")]
    AttributeOverrun {
        /// Attribute type.
        typ: u16,
        /// Offset of the attribute header in the message.
        offset: usize,
    },
    /// FINGERPRINT is not the last attribute.
    #[error("FINGERPRINT is not the last attribute")]
    FingerprintNotLast,
}

/// A STUN message whose header and attribute layout have been checked, so that iterating its
/// attributes cannot fail. It borrows the received bytes.
#[derive(Clone, Copy)]
pub struct MessageView<'a> {
    raw: &'a [u8],
    typ: MessageType,
}

/// One attribute of a [`MessageView`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attribute<'a> {
    /// Attribute type.
    pub typ: AttrType,
    /// Value without padding.
    pub value: &'a [u8],
    /// Offset of the attribute header from the start of the message.
    pub offset: usize,
}

impl fmt::Debug for MessageView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageView")
            .field("type", &self.typ)
            .field("len", &self.raw.len())
            .finish()
    }
}

impl<'a> MessageView<'a> {
    /// Parses `bytes`, which must hold exactly one message
    /// (<https://www.rfc-editor.org/rfc/rfc8489#section-5>).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ParseError> {
        if bytes.len() < HEADER_LEN {
            return Err(ParseError::TooShort);
        }
        let cookie = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        if bytes[0] & 0xc0 != 0 || cookie != MAGIC_COOKIE {
            return Err(ParseError::NotStun);
        }
        let declared = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
        if declared % 4 != 0 {
            return Err(ParseError::UnalignedLength(declared));
        }
        let received = bytes.len() - HEADER_LEN;
        if declared != received {
            return Err(ParseError::LengthMismatch { declared, received });
        }
        check_attributes(bytes)?;
        let mut typ = MessageType::default();
        typ.read_value(u16::from_be_bytes([bytes[0], bytes[1]]));
        Ok(MessageView { raw: bytes, typ })
    }

    /// Method and class.
    pub fn message_type(&self) -> MessageType {
        self.typ
    }

    /// Returns the 96-bit transaction id.
    pub fn transaction_id(&self) -> [u8; 12] {
        let mut id = [0; 12];
        id.copy_from_slice(&self.raw[8..HEADER_LEN]);
        id
    }

    /// Returns the whole message.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Iterates over the attributes in order.
    pub fn attributes(&self) -> Attributes<'a> {
        Attributes {
            raw: self.raw,
            offset: HEADER_LEN,
        }
    }

    /// Returns the first attribute of type `typ`. Later duplicates are ignored, as RFC 8489 section 14
    /// allows (<https://www.rfc-editor.org/rfc/rfc8489#section-14>).
    pub fn get(&self, typ: AttrType) -> Option<Attribute<'a>> {
        self.attributes().find(|attribute| attribute.typ == typ)
    }

    /// True when the message carries an attribute of type `typ`.
    pub fn contains(&self, typ: AttrType) -> bool {
        self.get(typ).is_some()
    }
}

fn check_attributes(bytes: &[u8]) -> Result<(), ParseError> {
    let mut offset = HEADER_LEN;
    while offset < bytes.len() {
        if bytes.len() - offset < 4 {
            return Err(ParseError::AttributeOverrun { typ: 0, offset });
        }
        let typ = u16::from_be_bytes([bytes[offset], bytes[offset + 1]]);
        let len = usize::from(u16::from_be_bytes([bytes[offset + 2], bytes[offset + 3]]));
        let end = offset + 4 + padded(len);
        if end > bytes.len() {
            return Err(ParseError::AttributeOverrun { typ, offset });
        }
        if typ == ATTR_FINGERPRINT.0 && end != bytes.len() {
            return Err(ParseError::FingerprintNotLast);
        }
        offset = end;
    }
    Ok(())
}

/// Iterator over the attributes of a [`MessageView`].
#[derive(Clone, Debug)]
pub struct Attributes<'a> {
    raw: &'a [u8],
    offset: usize,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Attribute<'a>;

    fn next(&mut self) -> Option<Attribute<'a>> {
        // `MessageView::parse` checked that every attribute header and padded value fits, so
        // `get` only returns `None` at the end of the message.
        let header = self.raw.get(self.offset..self.offset + 4)?;
        let typ = AttrType(u16::from_be_bytes([header[0], header[1]]));
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let value = self.raw.get(self.offset + 4..self.offset + 4 + len)?;
        let attribute = Attribute {
            typ,
            value,
            offset: self.offset,
        };
        self.offset += 4 + padded(len);
        Some(attribute)
    }
}
