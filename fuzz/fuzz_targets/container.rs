//! Any bytes as a payload container: parse, unpack, verify (checks/container.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    shim_fuzz::run("container", data);
});
