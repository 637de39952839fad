//! Any bytes as a kernel command line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = shim_common::cmdline::parse(data);
});
