//! STUN message codec for the server: a borrowed, validating view of received messages and a
//! writer that encodes responses into a reused buffer.
//!
//! Message types, attribute codes, error codes and reason phrases come from `rtc-stun`. Its own
//! `Message` copies every attribute value on decode and has no MESSAGE-INTEGRITY-SHA256, so the
//! per-packet path here reads attributes in place instead.

mod attr;
mod channel_data;
mod framing;
mod integrity;
mod view;
mod writer;

pub use attr::{decode_xor_address, AttrError};
pub use channel_data::{
    channel_data_frame_len, is_channel_number, ChannelData, CHANNEL_DATA_HEADER_LEN,
};
pub use framing::{FrameError, StreamFramer};
pub use integrity::{verify_integrity, Integrity};
pub use view::{Attribute, MessageView, ParseError};
pub use writer::MessageWriter;

pub use rtc_stun::attributes::*;
pub use rtc_stun::message::{
    MessageClass, MessageType, Method, CLASS_ERROR_RESPONSE, CLASS_INDICATION, CLASS_REQUEST,
    CLASS_SUCCESS_RESPONSE, MAGIC_COOKIE, METHOD_ALLOCATE, METHOD_BINDING, METHOD_CHANNEL_BIND,
    METHOD_CONNECT, METHOD_CONNECTION_ATTEMPT, METHOD_CONNECTION_BIND, METHOD_CREATE_PERMISSION,
    METHOD_DATA, METHOD_REFRESH, METHOD_SEND,
};

/// Length of the STUN header (RFC 8489 section 5).
pub const HEADER_LEN: usize = 20;

/// Attribute type of ADDITIONAL-ADDRESS-FAMILY (RFC 8656 section 18.11).
pub const ATTR_ADDITIONAL_ADDRESS_FAMILY: AttrType = AttrType(0x8000);
/// Attribute type of ADDRESS-ERROR-CODE (RFC 8656 section 18.12).
pub const ATTR_ADDRESS_ERROR_CODE: AttrType = AttrType(0x8001);
/// Attribute type of ICMP (RFC 8656 section 18.13).
pub const ATTR_ICMP: AttrType = AttrType(0x8004);

/// Rounds `len` up to a multiple of four, the STUN and stream ChannelData alignment.
pub fn padded(len: usize) -> usize {
    (len + 3) & !3
}
