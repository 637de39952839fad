//! Any bytes as a kernel command line: parse, strip shim options (checks/cmdline.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    shim_fuzz::run("cmdline", data);
});
