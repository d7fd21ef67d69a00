//! Encoding of STUN messages into a caller-owned buffer.

use std::net::{IpAddr, SocketAddr};

use rtc_stun::error_code::{ErrorCode, ERROR_REASONS};
use rtc_stun::fingerprint::fingerprint_value;

use super::integrity::{sign, Integrity};
use super::{
    padded, AttrType, MessageType, ATTR_ERROR_CODE, ATTR_FINGERPRINT, HEADER_LEN, MAGIC_COOKIE,
};

/// Appends one STUN message to a buffer. The header's length field is kept current after every
/// attribute, so the message is complete whenever the writer is dropped.
pub struct MessageWriter<'b> {
    buf: &'b mut Vec<u8>,
    start: usize,
    transaction_id: [u8; 12],
}

impl<'b> MessageWriter<'b> {
    /// Starts a message of type `typ` at the end of `buf`.
    pub fn new(buf: &'b mut Vec<u8>, typ: MessageType, transaction_id: [u8; 12]) -> Self {
        let start = buf.len();
        buf.extend_from_slice(&typ.value().to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(&transaction_id);
        MessageWriter {
            buf,
            start,
            transaction_id,
        }
    }

    /// Appends an attribute with `value`, padded with zero bytes.
    pub fn attr(&mut self, typ: AttrType, value: &[u8]) {
        self.attr_parts(typ, &[value]);
    }

    /// Appends an attribute whose value is the concatenation of `parts`.
    pub fn attr_parts(&mut self, typ: AttrType, parts: &[&[u8]]) {
        let len: usize = parts.iter().map(|part| part.len()).sum();
        // Values come from this server and stay far below 64 KiB; a longer one is cut rather than
        // written with a wrong length field.
        let len16 = u16::try_from(len).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&typ.0.to_be_bytes());
        self.buf.extend_from_slice(&len16.to_be_bytes());
        for part in parts {
            self.buf.extend_from_slice(part);
        }
        self.buf.resize(self.buf.len() + padded(len) - len, 0);
        self.write_len();
    }

    /// Appends a four-byte big-endian attribute such as LIFETIME.
    pub fn attr_u32(&mut self, typ: AttrType, value: u32) {
        self.attr(typ, &value.to_be_bytes());
    }

    /// Appends an XOR-encoded address (<https://www.rfc-editor.org/rfc/rfc8489#section-14.2>).
    pub fn xor_address(&mut self, typ: AttrType, addr: SocketAddr) {
        let cookie = MAGIC_COOKIE.to_be_bytes();
        let port = (addr.port() ^ (MAGIC_COOKIE >> 16) as u16).to_be_bytes();
        match addr.ip() {
            IpAddr::V4(ip) => {
                let mut octets = ip.octets();
                for (octet, mask) in octets.iter_mut().zip(cookie) {
                    *octet ^= mask;
                }
                self.attr_parts(typ, &[&[0, 0x01], &port, &octets]);
            }
            IpAddr::V6(ip) => {
                let mut octets = ip.octets();
                let masks = cookie.iter().chain(self.transaction_id.iter());
                for (octet, mask) in octets.iter_mut().zip(masks) {
                    *octet ^= mask;
                }
                self.attr_parts(typ, &[&[0, 0x02], &port, &octets]);
            }
        }
    }

    /// Appends ERROR-CODE with the standard reason phrase of `code`
    /// (<https://www.rfc-editor.org/rfc/rfc8489#section-14.8>).
    pub fn error_code(&mut self, code: u16) {
        let reason = ERROR_REASONS
            .get(&ErrorCode(code))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let class_number = [0, 0, (code / 100) as u8, (code % 100) as u8];
        self.attr_parts(ATTR_ERROR_CODE, &[&class_number, reason]);
    }

    /// Appends MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256 keyed with `key`, computed over
    /// everything written so far.
    pub fn integrity(&mut self, kind: Integrity, key: &[u8]) {
        let tag_len = kind.tag_len();
        self.set_len(self.len_field() + 4 + tag_len);
        let tag = sign(kind, key, &[&self.buf[self.start..]]);
        self.attr(kind.attr_type(), &tag.as_ref()[..tag_len]);
    }

    /// Appends FINGERPRINT (<https://www.rfc-editor.org/rfc/rfc8489#section-14.7>).
    pub fn fingerprint(&mut self) {
        self.set_len(self.len_field() + 8);
        let crc = fingerprint_value(&self.buf[self.start..]);
        self.attr(ATTR_FINGERPRINT, &crc.to_be_bytes());
    }

    /// Length of the message written so far, header included.
    fn message_len(&self) -> usize {
        self.buf.len() - self.start
    }

    fn len_field(&self) -> usize {
        self.message_len() - HEADER_LEN
    }

    fn write_len(&mut self) {
        self.set_len(self.len_field());
    }

    fn set_len(&mut self, len: usize) {
        let len16 = u16::try_from(len).unwrap_or(u16::MAX);
        self.buf[self.start + 2..self.start + 4].copy_from_slice(&len16.to_be_bytes());
    }
}
