//! Splitting a TCP or TLS byte stream into STUN and ChannelData messages
//! (<https://www.rfc-editor.org/rfc/rfc8656#section-12.5>).

use super::{channel_data_frame_len, padded, HEADER_LEN};

/// Capacity of the receive buffer: two of the largest frames (a STUN message with a 64 KiB
/// attribute section), so that after compaction one whole frame always fits.
const BUFFER_LEN: usize = 2 * (HEADER_LEN + 65_536);

/// A stream that does not carry STUN or ChannelData framing. The connection should be closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The first two bits of a frame are neither 0b00 (STUN) nor 0b01 (ChannelData).
    #[error("frame starts with {0:#04x}, which is neither STUN nor ChannelData")]
    UnknownFrame(u8),
}

/// Receive buffer of one stream connection. The driver reads into [`spare`](Self::spare),
/// reports the count with [`filled`](Self::filled) and takes complete messages from
/// [`next_frame`](Self::next_frame). It allocates once, when created.
pub struct StreamFramer {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Default for StreamFramer {
    fn default() -> Self {
        StreamFramer {
            buf: vec![0; BUFFER_LEN].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }
}

impl StreamFramer {
    /// Free space to read into, never empty.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.buf.len() - self.end < BUFFER_LEN / 2 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// Records that `n` bytes were read into [`spare`](Self::spare).
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Returns the next complete message with its padding, or `None` until more bytes arrive.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        let available = &self.buf[self.start..self.end];
        if available.len() < 4 {
            return Ok(None);
        }
        let header = [available[0], available[1], available[2], available[3]];
        let frame_len = match header[0] >> 6 {
            0b00 => HEADER_LEN + padded(usize::from(u16::from_be_bytes([header[2], header[3]]))),
            0b01 => channel_data_frame_len(header),
            _ => return Err(FrameError::UnknownFrame(header[0])),
        };
        if available.len() < frame_len {
            return Ok(None);
        }
        let frame = &self.buf[self.start..self.start + frame_len];
        self.start += frame_len;
        Ok(Some(frame))
    }

    /// Bytes received but not yet returned as frames; after ConnectionBind they belong to the
    /// peer connection (RFC 6062).
    pub fn take_remaining(&mut self) -> &[u8] {
        let remaining = &self.buf[self.start..self.end];
        self.start = self.end;
        remaining
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(framer: &mut StreamFramer, bytes: &[u8]) {
        framer.spare()[..bytes.len()].copy_from_slice(bytes);
        framer.filled(bytes.len());
    }

    #[test]
    fn channel_data_split_across_reads() {
        let frame = [0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0];
        let mut framer = StreamFramer::default();
        feed(&mut framer, &frame[..3]);
        assert_eq!(framer.next_frame(), Ok(None));
        feed(&mut framer, &frame[3..9]);
        assert_eq!(framer.next_frame(), Ok(None));
        feed(&mut framer, &frame[9..]);
        assert_eq!(framer.next_frame(), Ok(Some(&frame[..])));
        assert_eq!(framer.next_frame(), Ok(None));
    }

    #[test]
    fn stun_after_channel_data_in_one_read() {
        let mut bytes = vec![0x40, 0x01, 0x00, 0x04, 9, 9, 9, 9];
        let stun = [
            0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
        ];
        bytes.extend_from_slice(&stun);
        let mut framer = StreamFramer::default();
        feed(&mut framer, &bytes);
        assert_eq!(framer.next_frame(), Ok(Some(&bytes[..8])));
        assert_eq!(framer.next_frame(), Ok(Some(&stun[..])));
    }

    #[test]
    fn unknown_first_bits_are_an_error() {
        let mut framer = StreamFramer::default();
        feed(&mut framer, &[0x80, 0, 0, 0]);
        assert_eq!(framer.next_frame(), Err(FrameError::UnknownFrame(0x80)));
    }

    #[test]
    fn compaction_keeps_partial_frame() {
        let mut framer = StreamFramer::default();
        let big = [0x40, 0x00, 0xff, 0xfc];
        let mut frame = big.to_vec();
        frame.resize(4 + 0xfffc, 7);
        for _ in 0..3 {
            feed(&mut framer, &frame[..40_000]);
            assert_eq!(framer.next_frame(), Ok(None));
            feed(&mut framer, &frame[40_000..]);
            assert_eq!(
                framer.next_frame().map(|f| f.map(<[u8]>::len)),
                Ok(Some(frame.len()))
            );
        }
    }
}
