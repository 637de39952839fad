//! Any bytes as an x86 zero page, its e820 table and a setup_data chain inside it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shim_common::bootparams::{ram_from_e820, walk_setup_data, BootParams};
use shim_common::memmap::MemoryMap;

fuzz_target!(|data: &[u8]| {
    let Ok(bp) = BootParams::new(data) else { return };
    let _ = bp.initrd();
    let _ = bp.cmd_line_ptr();
    if let Ok(e820) = bp.e820() {
        let mut ram = MemoryMap::new();
        let _ = ram_from_e820(e820, &mut ram);
    }
    // setup_data nodes addressed as offsets into the same bytes.
    let read = |pa: u64, len: u64| {
        let start = usize::try_from(pa).ok()?;
        data.get(start..start.checked_add(usize::try_from(len).ok()?)?)
    };
    for node in walk_setup_data(bp.setup_data() % 8192, read) {
        if let Ok(node) = node {
            let _ = node.indirect();
        }
    }
});
