//! WebSocket frame decoding in the signaling server. The first input byte sets the size limit
//! (1 to 256 bytes) and the second seeds the sizes of the reads the decoder receives. The rest
//! is the byte stream from the client, decoded once in a single read and once in reads of 1
//! to 32 bytes.
//!
//! Checks that decoding never panics, that no message is longer than the limit and no control
//! frame longer than 125 bytes, and that both ways of reading give the same messages and the
//! same error.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_signal::fuzzing::{Decoder, Incoming};

/// Largest payload of a control frame (RFC 6455 section 5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

fuzz_target!(|data: &[u8]| {
    let [limit, split_seed, stream @ ..] = data else {
        return;
    };
    let limit = usize::from(*limit) + 1;

    let whole = decode(stream, limit, |remaining| remaining);
    // A linear congruential generator picks the read sizes, so that one seed byte gives
    // irregular split points.
    let mut state = u32::from(*split_seed);
    let split = decode(stream, limit, |_| {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        (state >> 16) as usize % 32 + 1
    });
    assert_eq!(whole, split, "the split points changed the result");
});

/// Messages decoded from `stream` and the error that stopped decoding, if any, as text.
type Outcome = (Vec<Incoming>, Option<String>);

/// Feeds `stream` to a new decoder in reads whose sizes `read_size` picks from the number of
/// bytes remaining, and decodes after each read.
fn decode(stream: &[u8], limit: usize, mut read_size: impl FnMut(usize) -> usize) -> Outcome {
    let mut decoder = Decoder::default();
    let mut messages = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let size = read_size(rest.len()).clamp(1, rest.len());
        let (read, after) = rest.split_at(size);
        rest = after;
        decoder.extend(read);
        loop {
            match decoder.decode(limit) {
                Ok(Some(message)) => {
                    check_length(&message, limit);
                    messages.push(message);
                }
                Ok(None) => break,
                Err(error) => return (messages, Some(error.to_string())),
            }
        }
    }
    (messages, None)
}

fn check_length(message: &Incoming, limit: usize) {
    match message {
        Incoming::Text(text) => assert!(text.len() <= limit, "text of {} bytes", text.len()),
        Incoming::Binary(length) => assert!(*length <= limit, "binary of {length} bytes"),
        Incoming::Ping(payload) | Incoming::Pong(payload) => assert!(
            payload.len() <= MAX_CONTROL_PAYLOAD,
            "control frame of {} bytes",
            payload.len()
        ),
        Incoming::Close(_) => {}
    }
}
