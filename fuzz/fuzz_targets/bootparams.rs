//! Any bytes as an x86 zero page and the memory after it (checks/bootparams.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    shim_fuzz::run("bootparams", data);
});
