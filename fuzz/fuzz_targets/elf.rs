//! Any bytes as an ELF payload: parse, load and relocate into an image with guard
//! bytes after it, which must never change.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shim_common::elf::{Elf, Machine};

fuzz_target!(|data: &[u8]| {
    for machine in [Machine::Aarch64, Machine::X86_64] {
        let Ok(elf) = Elf::parse(data, machine) else { continue };
        let Ok(span) = usize::try_from(elf.span()) else { continue };
        if span > 1 << 22 {
            continue;
        }
        let mut image = vec![0xa5u8; span + 64];
        let (body, guard) = image.split_at_mut(span);
        if elf.load(body).is_ok() {
            let _ = elf.relocate(body, 0xffff_0000_1234_0000);
        }
        assert!(guard.iter().all(|&b| b == 0xa5), "wrote past the image");
    }
});
