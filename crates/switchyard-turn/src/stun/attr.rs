//! Decoding of attribute values the server reads.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::MAGIC_COOKIE;

/// An attribute value with the wrong size or an unknown encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AttrError {
    /// The value has the wrong size for its address family.
    #[error("invalid address attribute length {0}")]
    AddressLength(usize),
    /// The address family byte is neither 0x01 nor 0x02.
    #[error("unknown address family {0:#04x}")]
    AddressFamily(u8),
}

/// Decodes an XOR-MAPPED-ADDRESS style value (XOR-PEER-ADDRESS, XOR-RELAYED-ADDRESS), as
/// <https://www.rfc-editor.org/rfc/rfc8489#section-14.2> defines it.
pub fn decode_xor_address(
    value: &[u8],
    transaction_id: &[u8; 12],
) -> Result<SocketAddr, AttrError> {
    if value.len() < 4 {
        return Err(AttrError::AddressLength(value.len()));
    }
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port = u16::from_be_bytes([value[2], value[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
    let ip = match (value[1], value.len()) {
        (0x01, 8) => {
            let mut octets = [0; 4];
            for (i, octet) in octets.iter_mut().enumerate() {
                *octet = value[4 + i] ^ cookie[i];
            }
            IpAddr::V4(Ipv4Addr::from(octets))
        }
        (0x02, 20) => {
            let mut octets = [0; 16];
            for (i, octet) in octets.iter_mut().enumerate() {
                let mask = if i < 4 {
                    cookie[i]
                } else {
                    transaction_id[i - 4]
                };
                *octet = value[4 + i] ^ mask;
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        (0x01 | 0x02, len) => return Err(AttrError::AddressLength(len)),
        (family, _) => return Err(AttrError::AddressFamily(family)),
    };
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xor_address_rejects_bad_lengths() {
        let id = [0; 12];
        assert_eq!(
            decode_xor_address(&[], &id),
            Err(AttrError::AddressLength(0))
        );
        assert_eq!(
            decode_xor_address(&[0, 1, 0, 0, 1], &id),
            Err(AttrError::AddressLength(5))
        );
        assert_eq!(
            decode_xor_address(&[0, 2, 0, 0, 1, 2, 3, 4], &id),
            Err(AttrError::AddressLength(8))
        );
        assert_eq!(
            decode_xor_address(&[0, 3, 0, 0, 1, 2, 3, 4], &id),
            Err(AttrError::AddressFamily(3))
        );
    }
}
