//! Minimal STUN inspection for routing: enough to tell a STUN message from DTLS, SRTP and SRTCP,
//! and to read the USERNAME of a Binding request. Full parsing is left to the ICE agent.

/// Magic cookie at bytes 4..8 of every RFC 5389 / RFC 8489 message.
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const HEADER_LEN: usize = 20;
const ATTRIBUTE_USERNAME: u16 = 0x0006;

/// Returns true when the datagram looks like STUN: the first two bits are zero (RFC 7983
/// section 7 demultiplexing) and the magic cookie is present.
pub(crate) fn is_stun(datagram: &[u8]) -> bool {
    datagram.len() >= HEADER_LEN && datagram[0] < 4 && datagram[4..8] == MAGIC_COOKIE
}

/// Returns the local (first) username fragment of a STUN message's USERNAME attribute, which is
/// `<receiver ufrag>:<sender ufrag>` in ICE connectivity checks (RFC 8445 section 7.2.2).
/// Returns `None` for anything malformed; never panics on any input.
pub(crate) fn local_ufrag(datagram: &[u8]) -> Option<&str> {
    if !is_stun(datagram) {
        return None;
    }
    let declared = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    let end = HEADER_LEN.checked_add(declared)?;
    let body = datagram.get(HEADER_LEN..end)?;

    let mut offset = 0;
    while let Some(header) = body.get(offset..offset + 4) {
        let kind = u16::from_be_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let value = body.get(offset + 4..offset + 4 + len)?;
        if kind == ATTRIBUTE_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next();
        }
        // Attribute values are padded to a multiple of 4 bytes.
        offset += 4 + len.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &[u8]) -> Vec<u8> {
        let padded = username.len().div_ceil(4) * 4;
        let mut message = vec![0x00, 0x01];
        message.extend_from_slice(&((4 + padded) as u16).to_be_bytes());
        message.extend_from_slice(&MAGIC_COOKIE);
        message.extend_from_slice(&[7; 12]);
        message.extend_from_slice(&ATTRIBUTE_USERNAME.to_be_bytes());
        message.extend_from_slice(&(username.len() as u16).to_be_bytes());
        message.extend_from_slice(username);
        message.resize(HEADER_LEN + 4 + padded, 0);
        message
    }

    #[test]
    fn username_ufrag_extracted() {
        let message = binding_request(b"serverufrag:clientufrag");
        assert_eq!(local_ufrag(&message), Some("serverufrag"));
    }

    #[test]
    fn malformed_messages_rejected() {
        let message = binding_request(b"abc:def");
        for cut in 0..message.len() {
            assert_eq!(local_ufrag(&message[..cut]), None, "cut at {cut}");
        }
        let mut overlong = message.clone();
        overlong[2] = 0xff;
        assert_eq!(local_ufrag(&overlong), None);
        let mut bad_attribute_len = message.clone();
        bad_attribute_len[HEADER_LEN + 3] = 0xff;
        assert_eq!(local_ufrag(&bad_attribute_len), None);
    }

    #[test]
    fn non_stun_rejected() {
        assert!(!is_stun(&[0x80; 40]));
        assert!(!is_stun(&[0x16; 40]));
    }
}
