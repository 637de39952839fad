//! Any bytes as a device tree: an error or a machine description, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shim_common::fdt::{wipe_seeds, Fdt, Machine};

fuzz_target!(|data: &[u8]| {
    let Ok(fdt) = Fdt::new(data) else { return };
    if let Ok(m) = Machine::read(&fdt) {
        let mut copy = data.to_vec();
        let seeds: Vec<_> = m.seeds().map(|(v, o)| (o, v.len())).collect();
        wipe_seeds(&mut copy, seeds);
    }
});
