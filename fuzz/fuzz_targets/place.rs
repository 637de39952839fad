//! A memory map, options and a payload from the bytes: layout and placement (checks/place.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    shim_fuzz::run("place", data);
});
