//! ChannelData parsing and stream framing. The first byte of the input picks the size of the
//! reads the framer receives, so that frames split across reads are covered.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_turn::stun::{ChannelData, StreamFramer};

fuzz_target!(|data: &[u8]| {
    let _ = ChannelData::parse(data);
    let Some((&read_size, stream)) = data.split_first() else {
        return;
    };
    let read_size = usize::from(read_size).max(1);
    let mut framer = StreamFramer::default();
    for chunk in stream.chunks(read_size) {
        let spare = framer.spare();
        let n = chunk.len().min(spare.len());
        spare[..n].copy_from_slice(&chunk[..n]);
        framer.filled(n);
        loop {
            match framer.next_frame() {
                Ok(Some(frame)) => {
                    let _ = ChannelData::parse(frame);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
