//! The WebSocket protocol (RFC 6455) as the signaling server speaks it: the opening handshake
//! and the frame format, without extensions or subprotocols.
//!
//! Switchyard implements it itself instead of through tungstenite so that an idle connection
//! keeps no buffers. Bytes read from the socket stay in memory only while they make up an
//! incomplete frame, and encoded frames only until the socket takes them; [`Decoder`] and
//! [`crate::writer`] free their buffers whenever they are empty.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use base64::Engine as _;

/// Opcodes of RFC 6455 section 5.2.
const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// Largest payload of a control frame (RFC 6455 section 5.5).
pub(crate) const MAX_CONTROL_PAYLOAD: usize = 125;

/// Close code for a protocol violation (RFC 6455 section 7.4.1).
pub(crate) const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// Close code for a text message that is not UTF-8.
pub(crate) const CLOSE_INVALID_PAYLOAD: u16 = 1007;

/// Checks the headers of an upgrade request and returns the `Sec-WebSocket-Accept` value for
/// the 101 response, or the status and text of the rejection.
pub(crate) fn accept_key(headers: &HeaderMap) -> Result<HeaderValue, (StatusCode, &'static str)> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|value| {
                value
                    .split(',')
                    .any(|item| item.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return Err((
            StatusCode::UPGRADE_REQUIRED,
            "this endpoint only accepts WebSocket upgrade requests",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|version| version.as_bytes() != b"13")
    {
        return Err((StatusCode::BAD_REQUEST, "Sec-WebSocket-Version must be 13"));
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .map(HeaderValue::as_bytes)
        .filter(|key| {
            base64::engine::general_purpose::STANDARD
                .decode(key)
                .is_ok_and(|nonce| nonce.len() == 16)
        })
        .ok_or((
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Key must be 16 bytes in base64",
        ))?;
    Ok(accept_value(key))
}

/// Computes `Sec-WebSocket-Accept` from `Sec-WebSocket-Key` (RFC 6455 section 4.2.2).
fn accept_value(key: &[u8]) -> HeaderValue {
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut context = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    context.update(key);
    context.update(GUID);
    let accept = base64::engine::general_purpose::STANDARD.encode(context.finish());
    HeaderValue::from_str(&accept).expect("base64 is a valid header value")
}

/// A complete message or control frame from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A text message, checked to be UTF-8.
    Text(String),
    /// A binary message, of which only the length is kept.
    Binary(usize),
    /// A ping, with its payload of at most 125 bytes.
    Ping(Vec<u8>),
    /// A pong, with its payload of at most 125 bytes.
    Pong(Vec<u8>),
    /// A close frame, with its code if it had one.
    Close(Option<u16>),
}

/// Reason reading from a client stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A frame or a message is longer than the configured limit.
    #[error("message longer than {limit} bytes")]
    TooLarge {
        /// The limit passed to [`Decoder::decode`].
        limit: usize,
    },
    /// The client broke the framing rules, and the connection closes with 1002.
    #[error("WebSocket protocol violation: {0}")]
    Protocol(&'static str),
    /// A text message or close reason is not UTF-8, and the connection closes with 1007.
    #[error("text that is not UTF-8")]
    InvalidUtf8,
    /// The client closed the TCP connection.
    #[error("connection closed without a close frame")]
    Eof,
    /// Reading from the socket failed.
    #[error("reading from the socket failed: {0}")]
    Io(#[from] std::io::Error),
}

impl ReadError {
    /// Returns the close code the server sends for this error, or `None` when it sends none.
    pub(crate) fn close_code(&self) -> Option<u16> {
        match self {
            ReadError::Protocol(_) => Some(CLOSE_PROTOCOL_ERROR),
            ReadError::InvalidUtf8 => Some(CLOSE_INVALID_PAYLOAD),
            ReadError::TooLarge { .. } | ReadError::Eof | ReadError::Io(_) => None,
        }
    }
}

/// A data message received in several frames.
#[derive(Debug)]
struct Fragments {
    text: bool,
    data: Vec<u8>,
}

/// Turns bytes from the client into [`Incoming`] messages.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Bytes received and not decoded yet, from `start` on.
    buffer: Vec<u8>,
    start: usize,
    /// The data message whose final frame has not arrived.
    fragments: Option<Box<Fragments>>,
}

/// Parsed frame header.
struct Header {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    /// Bytes of the header, mask included.
    length: usize,
    payload: usize,
}

impl Decoder {
    /// Appends bytes read from the socket.
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// Decodes the next complete message from the bytes received so far. Returns `Ok(None)`
    /// when more bytes are needed. `limit` bounds the payload of one data frame and of one
    /// reassembled message. Control frames are bounded by [`MAX_CONTROL_PAYLOAD`] instead.
    pub fn decode(&mut self, limit: usize) -> Result<Option<Incoming>, ReadError> {
        loop {
            let available = &self.buffer[self.start..];
            let Some(header) = parse_header(available)? else {
                return Ok(None);
            };
            let data_so_far = self.fragments.as_ref().map_or(0, |f| f.data.len());
            if header.opcode < CLOSE && header.payload.saturating_add(data_so_far) > limit {
                return Err(ReadError::TooLarge { limit });
            }
            let end = header.length + header.payload;
            if available.len() < end {
                // Reserve the rest of the frame once half of it is here, so the buffer does
                // not overshoot it. Reserving from the header alone would let a client pin
                // `limit` bytes per connection by sending a 14-byte header.
                let missing = end - available.len();
                if missing <= available.len() {
                    self.buffer.reserve_exact(missing);
                }
                return Ok(None);
            }
            let mut payload = available[header.length..end].to_vec();
            unmask(&mut payload, header.mask);
            self.start += end;
            if self.start == self.buffer.len() {
                // Nothing left over, so an idle connection keeps no buffer.
                self.buffer = Vec::new();
                self.start = 0;
            }
            if let Some(message) = self.on_frame(&header, payload)? {
                return Ok(Some(message));
            }
        }
    }

    fn on_frame(
        &mut self,
        header: &Header,
        payload: Vec<u8>,
    ) -> Result<Option<Incoming>, ReadError> {
        match header.opcode {
            TEXT | BINARY => {
                if self.fragments.is_some() {
                    return Err(ReadError::Protocol(
                        "a new message started before the fragmented one ended",
                    ));
                }
                let text = header.opcode == TEXT;
                if header.fin {
                    return complete(text, payload).map(Some);
                }
                self.fragments = Some(Box::new(Fragments {
                    text,
                    data: payload,
                }));
                Ok(None)
            }
            CONTINUATION => {
                let Some(fragments) = self.fragments.as_mut() else {
                    return Err(ReadError::Protocol(
                        "continuation frame without a message to continue",
                    ));
                };
                fragments.data.extend_from_slice(&payload);
                if !header.fin {
                    return Ok(None);
                }
                let Fragments { text, data } = *self.fragments.take().expect("checked above");
                complete(text, data).map(Some)
            }
            CLOSE => parse_close(&payload).map(|code| Some(Incoming::Close(code))),
            PING => Ok(Some(Incoming::Ping(payload))),
            PONG => Ok(Some(Incoming::Pong(payload))),
            _ => unreachable!("parse_header rejects other opcodes"),
        }
    }
}

fn complete(text: bool, data: Vec<u8>) -> Result<Incoming, ReadError> {
    if text {
        String::from_utf8(data)
            .map(Incoming::Text)
            .map_err(|_| ReadError::InvalidUtf8)
    } else {
        Ok(Incoming::Binary(data.len()))
    }
}

/// Parses a frame header from the start of `bytes`, or returns `Ok(None)` if it is incomplete.
fn parse_header(bytes: &[u8]) -> Result<Option<Header>, ReadError> {
    let [first, second, ..] = *bytes else {
        return Ok(None);
    };
    if first & 0x70 != 0 {
        return Err(ReadError::Protocol(
            "reserved bits set without a negotiated extension",
        ));
    }
    let fin = first & 0x80 != 0;
    let opcode = first & 0x0F;
    if second & 0x80 == 0 {
        return Err(ReadError::Protocol("client frames must be masked"));
    }
    let (extended, payload) = match second & 0x7F {
        126 => match bytes.get(2..4) {
            Some(length) => (2, usize::from(u16::from_be_bytes([length[0], length[1]]))),
            None => return Ok(None),
        },
        127 => match bytes.get(2..10) {
            Some(length) => {
                let length = u64::from_be_bytes(length.try_into().expect("8 bytes"));
                if length >> 63 != 0 {
                    return Err(ReadError::Protocol("frame length with the top bit set"));
                }
                (8, usize::try_from(length).unwrap_or(usize::MAX))
            }
            None => return Ok(None),
        },
        short => (0, usize::from(short)),
    };
    match opcode {
        CONTINUATION | TEXT | BINARY => {}
        CLOSE | PING | PONG => {
            if !fin {
                return Err(ReadError::Protocol("fragmented control frame"));
            }
            if payload > MAX_CONTROL_PAYLOAD {
                return Err(ReadError::Protocol("control frame longer than 125 bytes"));
            }
        }
        _ => return Err(ReadError::Protocol("unknown opcode")),
    }
    let length = 2 + extended + 4;
    let Some(mask) = bytes.get(length - 4..length) else {
        return Ok(None);
    };
    Ok(Some(Header {
        fin,
        opcode,
        mask: mask.try_into().expect("4 bytes"),
        length,
        payload,
    }))
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let mut chunks = payload.chunks_exact_mut(4);
    let word = u32::from_ne_bytes(mask);
    for chunk in &mut chunks {
        let value = u32::from_ne_bytes(chunk.try_into().expect("4 bytes")) ^ word;
        chunk.copy_from_slice(&value.to_ne_bytes());
    }
    for (byte, key) in chunks.into_remainder().iter_mut().zip(mask) {
        *byte ^= key;
    }
}

/// Returns the code of a close frame's payload after checking it: the codes RFC 6455 section
/// 7.4 defines for use in close frames, those IANA registered since (1012 to 1014), and the
/// ranges for libraries and applications.
fn parse_close(payload: &[u8]) -> Result<Option<u16>, ReadError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ReadError::Protocol("close frame with a one-byte payload")),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            let allowed = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !allowed {
                return Err(ReadError::Protocol("close frame with a reserved code"));
            }
            std::str::from_utf8(reason).map_err(|_| ReadError::InvalidUtf8)?;
            Ok(Some(code))
        }
    }
}

/// Appends the header of an unmasked, final server frame.
fn put_header(out: &mut Vec<u8>, opcode: u8, payload: usize) {
    out.push(0x80 | opcode);
    if payload < 126 {
        out.push(payload as u8);
    } else if let Ok(short) = u16::try_from(payload) {
        out.push(126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(payload as u64).to_be_bytes());
    }
}

/// Appends a text frame whose payload is the concatenation of `parts`.
pub(crate) fn put_text(out: &mut Vec<u8>, parts: &[&[u8]]) {
    let payload = parts.iter().map(|part| part.len()).sum();
    out.reserve(10 + payload);
    put_header(out, TEXT, payload);
    for part in parts {
        out.extend_from_slice(part);
    }
}

/// Appends a ping frame. `payload` is at most 125 bytes.
pub(crate) fn put_ping(out: &mut Vec<u8>, payload: &[u8]) {
    put_header(out, PING, payload.len());
    out.extend_from_slice(payload);
}

/// Appends a pong frame. `payload` is at most 125 bytes.
pub(crate) fn put_pong(out: &mut Vec<u8>, payload: &[u8]) {
    put_header(out, PONG, payload.len());
    out.extend_from_slice(payload);
}

/// Appends a close frame. `reason` is at most 123 bytes.
pub(crate) fn put_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    put_header(out, CLOSE, 2 + reason.len());
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(reason.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a masked client frame.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut frame = vec![if fin { 0x80 } else { 0 } | opcode];
        if payload.len() < 126 {
            frame.push(0x80 | payload.len() as u8);
        } else if payload.len() <= usize::from(u16::MAX) {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        frame
    }

    fn decode_all(bytes: &[u8], limit: usize) -> Result<Vec<Incoming>, ReadError> {
        let mut decoder = Decoder::default();
        decoder.extend(bytes);
        let mut messages = Vec::new();
        while let Some(message) = decoder.decode(limit)? {
            messages.push(message);
        }
        Ok(messages)
    }

    #[test]
    fn accept_value_matches_the_rfc_example() {
        // RFC 6455 section 1.3.
        let accept = accept_value(b"dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn upgrade_headers_are_checked() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        headers.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        assert!(accept_key(&headers).is_ok());

        let mut bad_key = headers.clone();
        bad_key.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("c2hvcnQ="),
        );
        assert_eq!(accept_key(&bad_key).unwrap_err().0, StatusCode::BAD_REQUEST);

        let mut old_version = headers.clone();
        old_version.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        assert_eq!(
            accept_key(&old_version).unwrap_err().0,
            StatusCode::BAD_REQUEST
        );

        let mut plain = headers.clone();
        plain.remove(header::UPGRADE);
        assert_eq!(
            accept_key(&plain).unwrap_err().0,
            StatusCode::UPGRADE_REQUIRED
        );
    }

    #[test]
    fn decodes_frames_split_at_every_byte() {
        let long = "x".repeat(70_000);
        let mut bytes = client_frame(true, TEXT, b"hello");
        bytes.extend(client_frame(false, TEXT, "caf".as_bytes()));
        bytes.extend(client_frame(true, PING, b"p"));
        bytes.extend(client_frame(true, CONTINUATION, "\u{e9}".as_bytes()));
        bytes.extend(client_frame(true, TEXT, long.as_bytes()));
        bytes.extend(client_frame(true, BINARY, &[1, 2, 3]));
        bytes.extend(client_frame(true, CLOSE, &[0x03, 0xe8, b'o', b'k']));
        let expected = vec![
            Incoming::Text("hello".into()),
            Incoming::Ping(b"p".to_vec()),
            Incoming::Text("caf\u{e9}".into()),
            Incoming::Text(long),
            Incoming::Binary(3),
            Incoming::Close(Some(1000)),
        ];
        assert_eq!(decode_all(&bytes, 100_000).unwrap(), expected);

        let mut decoder = Decoder::default();
        let mut messages = Vec::new();
        for byte in &bytes {
            decoder.extend(std::slice::from_ref(byte));
            while let Some(message) = decoder.decode(100_000).unwrap() {
                messages.push(message);
            }
        }
        assert_eq!(messages, expected);
        assert_eq!(
            decoder.buffer.capacity(),
            0,
            "an idle decoder keeps no buffer"
        );
    }

    #[test]
    fn limit_applies_to_frames_and_to_messages() {
        let frame = client_frame(true, TEXT, &[b'a'; 11]);
        // The header alone is enough to reject it.
        assert!(matches!(
            decode_all(&frame[..6], 10),
            Err(ReadError::TooLarge { limit: 10 })
        ));
        let mut fragmented = client_frame(false, TEXT, &[b'a'; 6]);
        fragmented.extend(client_frame(true, CONTINUATION, &[b'a'; 6]));
        assert!(matches!(
            decode_all(&fragmented, 10),
            Err(ReadError::TooLarge { .. })
        ));
        assert_eq!(decode_all(&fragmented, 12).unwrap().len(), 1);
    }

    #[test]
    fn declared_length_reserves_no_memory() {
        let limit = 1 << 20;
        let frame = client_frame(true, TEXT, &vec![b'a'; limit]);
        let mut decoder = Decoder::default();
        decoder.extend(&frame[..100]);
        assert!(decoder.decode(limit).unwrap().is_none());
        assert!(
            decoder.buffer.capacity() < 64 * 1024,
            "a header declaring {limit} bytes made the buffer reserve {}",
            decoder.buffer.capacity()
        );
        decoder.extend(&frame[100..]);
        assert_eq!(
            decoder.decode(limit).unwrap(),
            Some(Incoming::Text("a".repeat(limit)))
        );
    }

    #[test]
    fn protocol_violations_are_errors() {
        let mut unmasked = client_frame(true, TEXT, b"hi");
        unmasked[1] &= 0x7F;
        let mut reserved = client_frame(true, TEXT, b"hi");
        reserved[0] |= 0x40;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("unmasked", unmasked),
            ("reserved bits", reserved),
            ("unknown opcode", client_frame(true, 0x3, b"")),
            ("fragmented ping", client_frame(false, PING, b"")),
            ("long ping", client_frame(true, PING, &[0; 126])),
            ("lone continuation", client_frame(true, CONTINUATION, b"x")),
            ("close with one byte", client_frame(true, CLOSE, &[3])),
            (
                "close with code 1005",
                client_frame(true, CLOSE, &[0x03, 0xed]),
            ),
            (
                "close with code 1015",
                client_frame(true, CLOSE, &[0x03, 0xf7]),
            ),
            ("interleaved message", {
                let mut bytes = client_frame(false, TEXT, b"a");
                bytes.extend(client_frame(true, TEXT, b"b"));
                bytes
            }),
        ];
        for (name, bytes) in cases {
            let result = decode_all(&bytes, 1000);
            assert!(
                matches!(result, Err(ReadError::Protocol(_))),
                "{name}: {result:?}"
            );
        }
        assert!(matches!(
            decode_all(&client_frame(true, TEXT, &[0xff, 0xfe]), 1000),
            Err(ReadError::InvalidUtf8)
        ));
        assert!(matches!(
            decode_all(&client_frame(true, CLOSE, &[0x03, 0xe8, 0xff]), 1000),
            Err(ReadError::InvalidUtf8)
        ));
    }

    #[test]
    fn registered_close_codes_are_accepted() {
        for code in [1000u16, 1001, 1011, 1012, 1013, 1014, 3000, 4999] {
            let frame = client_frame(true, CLOSE, &code.to_be_bytes());
            assert_eq!(
                decode_all(&frame, 1000).unwrap(),
                vec![Incoming::Close(Some(code))],
                "{code}"
            );
        }
    }

    #[test]
    fn server_frames_use_the_shortest_length() {
        for (length, header) in [(0, 2), (125, 2), (126, 4), (65_535, 4), (65_536, 10)] {
            let mut out = Vec::new();
            let payload = vec![b'a'; length];
            put_text(&mut out, &[&payload]);
            assert_eq!(out.len(), header + length, "{length}");
            assert_eq!(out[0], 0x81);
            assert_eq!(out[1] & 0x80, 0, "server frames are not masked");
        }
        let mut close = Vec::new();
        put_close(&mut close, 1000, "left");
        assert_eq!(close, [0x88, 6, 0x03, 0xe8, b'l', b'e', b'f', b't']);
    }
}
