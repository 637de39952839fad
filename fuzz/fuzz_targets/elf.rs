//! Any bytes as an ELF payload: parse, load, relocate inside guard bytes (checks/elf.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    shim_fuzz::run("elf", data);
});
