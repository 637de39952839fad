//! Any bytes as a device tree: read, rebuilt with edits, seeds wiped (checks/tree.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    shim_fuzz::run("fdt", data);
});
