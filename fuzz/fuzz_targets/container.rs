//! Any bytes as a payload container: parse, unpack into a bounded buffer, verify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shim_common::container::{self, DecompressorOxide};

fuzz_target!(|data: &[u8]| {
    let Ok(payload) = container::parse(data) else { return };
    if payload.unpacked_size > 1 << 20 {
        return;
    }
    let mut out = vec![0u8; payload.unpacked_size as usize];
    let mut inflater = DecompressorOxide::new();
    if container::unpack(&payload, &mut out, &mut inflater).is_ok() {
        let _ = container::verify(&payload, &out);
    }
});
