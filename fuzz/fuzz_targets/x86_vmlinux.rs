//! Any bytes as a decompressed x86_64 kernel (vmlinux.bin and its relocation table):
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    shim_fuzz::run("x86_vmlinux", data);
});
