//! Any bytes as a Linux bzImage: parse the setup header and decompress the payload into
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    shim_fuzz::run("x86_bzimage", data);
});
