//! ChannelData messages (<https://www.rfc-editor.org/rfc/rfc8656#section-12.4>).

/// Length of the ChannelData header: channel number and length, two bytes each.
pub const CHANNEL_DATA_HEADER_LEN: usize = 4;

/// A borrowed ChannelData message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelData<'a> {
    /// Channel number, 0x4000 through 0x7FFF.
    pub number: u16,
    /// Application data, without padding.
    pub payload: &'a [u8],
}

impl<'a> ChannelData<'a> {
    /// Parses one ChannelData message. Bytes after the declared length are padding (up to
    /// three, or any amount over UDP) and are ignored. Returns `None` when the channel number
    /// is outside 0x4000..=0x7FFF or the length exceeds the input.
    pub fn parse(bytes: &'a [u8]) -> Option<Self> {
        let header = bytes.get(..CHANNEL_DATA_HEADER_LEN)?;
        let number = u16::from_be_bytes([header[0], header[1]]);
        if !is_channel_number(number) {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let payload = bytes.get(CHANNEL_DATA_HEADER_LEN..CHANNEL_DATA_HEADER_LEN + len)?;
        Some(ChannelData { number, payload })
    }

    /// Appends a ChannelData message for `payload` to `buf`. With `pad`, zero bytes follow up to
    /// a multiple of four, as TCP and TLS need
    /// (<https://www.rfc-editor.org/rfc/rfc8656#section-12.5>).
    pub fn write(buf: &mut Vec<u8>, number: u16, payload: &[u8], pad: bool) {
        let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
        buf.extend_from_slice(&number.to_be_bytes());
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(&payload[..usize::from(len)]);
        if pad {
            let padding = super::padded(payload.len()) - payload.len();
            buf.extend_from_slice(&[0; 3][..padding]);
        }
    }
}

/// Channel numbers a client may bind: 0x4000 through 0x7FFF, the range of RFC 5766.
///
/// NOTE: RFC 8656 section 12 narrows the range to 0x4000 through 0x4FFF
/// (<https://www.rfc-editor.org/rfc/rfc8656#section-12>), but coturn's clients (turnutils_uclient
/// 4.6) pick numbers up to 0x7FFF, so the server keeps accepting the old range.
pub fn is_channel_number(number: u16) -> bool {
    (0x4000..=0x7fff).contains(&number)
}

/// Bytes one ChannelData message takes on a stream, padding included, judged from its header.
pub fn channel_data_frame_len(header: [u8; 4]) -> usize {
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    CHANNEL_DATA_HEADER_LEN + super::padded(len)
}
