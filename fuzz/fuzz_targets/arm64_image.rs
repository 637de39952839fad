//! Any bytes as a Linux arm64 Image header (checks/arm64_image.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    shim_fuzz::run("arm64_image", data);
});
