//! STUN message parsing: the borrowed view, attribute iteration, address decoding and both
//! integrity checks.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_turn::stun::{decode_xor_address, verify_integrity, Integrity, MessageView};

fuzz_target!(|data: &[u8]| {
    let Ok(message) = MessageView::parse(data) else {
        return;
    };
    let transaction_id = message.transaction_id();
    for attribute in message.attributes() {
        let _ = decode_xor_address(attribute.value, &transaction_id);
        for kind in [Integrity::Sha1, Integrity::Sha256] {
            let _ = verify_integrity(&message, attribute, kind, b"0123456789abcdef");
        }
    }
});
