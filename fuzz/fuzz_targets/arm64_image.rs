//! Any bytes as an arm64 Image header.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = shim_common::image::parse_arm64(data);
});
