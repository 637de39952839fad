//! What the x86 shim reads of the machine through boot_params: RAM from every e820
//! source, the memory to avoid, and the RNG seeds handed over in setup_data.

use super::{
    e820_ext, ram_from_e820, walk_setup_data, BootParams, BootParamsError, MAX_SETUP_DATA_NODES,
    SETUP_E820_EXT, SETUP_RNG_SEED, ZERO_PAGE_SIZE,
};
use crate::memmap::{Avoid, MemoryMap, Range};

/// What the shim reads from boot_params and the memory it points at: the x86
/// counterpart of `fdt::Machine`.
#[derive(Debug)]
pub struct Machine<'m> {
    /// The e820 table and every SETUP_E820_EXT node, reserved beating RAM.
    pub ram: MemoryMap,
    /// RAM left out because it came in more pieces than `ram` holds (its smallest).
    pub ram_dropped: u64,
    /// boot_params itself, every setup_data node (and what a SETUP_INDIRECT node
    /// points at), the initrd.
    pub avoid: Avoid,
    /// Every SETUP_RNG_SEED node (kexec passes one): its bytes, and the physical
    /// address of the node, whose data and `len` the shim zeroes once it has them.
    rng_seeds: [(&'m [u8], u64); MAX_SETUP_DATA_NODES],
    n_rng_seeds: usize,
}

impl<'m> Machine<'m> {
    /// Reads boot_params at `bp_pa` and walks its setup_data list through `read(pa,
    /// len)`, which returns exactly `len` bytes of physical memory or `None`.
    pub fn read(
        bp_pa: u64,
        bp: &BootParams<'_>,
        mut read: impl FnMut(u64, u64) -> Option<&'m [u8]>,
    ) -> Result<Machine<'m>, BootParamsError> {
        let mut avoid = Avoid::new();
        avoid.push(
            Range::from_base_size(bp_pa, ZERO_PAGE_SIZE as u64)?,
            "boot_params",
        )?;
        if let Some(initrd) = bp.initrd() {
            avoid.push(initrd, "initrd")?;
        }
        let mut ext: [&[u8]; MAX_SETUP_DATA_NODES] = [&[]; MAX_SETUP_DATA_NODES];
        let mut n_ext = 0usize;
        let mut rng_seeds = [(&[][..], 0u64); MAX_SETUP_DATA_NODES];
        let mut n_rng_seeds = 0usize;
        for node in walk_setup_data(bp.setup_data(), &mut read) {
            let node = node?;
            avoid.push(node.range(), "setup_data")?;
            if let Some(target) = node.indirect()? {
                avoid.push(target, "setup_data indirect")?;
            }
            match node.typ {
                SETUP_E820_EXT => {
                    // A malformed node stops the boot here, not silently in the chain.
                    let _valid = e820_ext(node.data)?;
                    if let (Some(slot), Some(n)) = (ext.get_mut(n_ext), n_ext.checked_add(1)) {
                        *slot = node.data;
                        n_ext = n;
                    }
                }
                SETUP_RNG_SEED => {
                    let next = n_rng_seeds.checked_add(1);
                    if let (Some(slot), Some(n)) = (rng_seeds.get_mut(n_rng_seeds), next) {
                        *slot = (node.data, node.pa);
                        n_rng_seeds = n;
                    }
                }
                _ => {}
            }
        }
        let extra = ext
            .iter()
            .take(n_ext)
            .flat_map(|data| e820_ext(data).into_iter().flatten());
        let mut ram = MemoryMap::new();
        let ram_dropped = ram_from_e820(bp.e820()?.chain(extra), &mut ram)?;
        Ok(Machine {
            ram,
            ram_dropped,
            avoid,
            rng_seeds,
            n_rng_seeds,
        })
    }

    /// Every SETUP_RNG_SEED node: its bytes and the node's physical address.
    pub fn rng_seeds(&self) -> impl Iterator<Item = (&'m [u8], u64)> + '_ {
        self.rng_seeds.iter().take(self.n_rng_seeds).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootparams::testutil::*;
    use crate::bootparams::*;

    use std::collections::HashMap;

    #[test]
    fn every_rng_seed_node_is_kept() {
        let mut page = zero_page(&[(0x10_0000, 0x3ff0_0000, E820_TYPE_RAM)]);
        page[0x250..0x258].copy_from_slice(&0x9_0000u64.to_le_bytes());
        let mut mem = Memory(HashMap::new());
        mem.0
            .insert(0x9_0000, node(0x9_1000, SETUP_RNG_SEED, &[1; 32]));
        mem.0
            .insert(0x9_1000, node(0x9_2000, SETUP_RNG_SEED, &[2; 16]));
        mem.0.insert(0x9_2000, node(0, SETUP_RNG_SEED, &[3; 8]));
        let bp = BootParams::new(&page).unwrap();
        let m = Machine::read(0x8_0000, &bp, |pa, len| mem.read(pa, len)).unwrap();
        let seeds: Vec<_> = m.rng_seeds().map(|(d, pa)| (d.len(), pa)).collect();
        assert_eq!(seeds, [(32, 0x9_0000), (16, 0x9_1000), (8, 0x9_2000)]);
    }

    #[test]
    fn machine_gathers_ram_avoid_and_seed_from_every_source() {
        let mut page = zero_page(&[
            (0, 0x9fc00, E820_TYPE_RAM),
            (0x10_0000, 0x3ff0_0000, E820_TYPE_RAM),
        ]);
        page[0x250..0x258].copy_from_slice(&0x9_0000u64.to_le_bytes()); // setup_data
        page[0x218..0x21c].copy_from_slice(&0x3000_0000u32.to_le_bytes()); // ramdisk_image
        page[0x21c..0x220].copy_from_slice(&0x10_0000u32.to_le_bytes()); // ramdisk_size
        let mut mem = Memory(HashMap::new());
        let ext = e820_bytes(&[
            (0x1_0000_0000, 0x4000_0000, E820_TYPE_RAM),
            (0x2000_0000, 0x1000, E820_TYPE_RESERVED),
        ]);
        mem.0
            .insert(0x9_0000, node(0x9_1000, SETUP_RNG_SEED, &[9; 32]));
        mem.0.insert(0x9_1000, node(0, SETUP_E820_EXT, &ext));
        let bp = BootParams::new(&page).unwrap();
        let m = Machine::read(0x8_0000, &bp, |pa, len| mem.read(pa, len)).unwrap();
        assert_eq!(
            m.ram.as_slice(),
            [
                r(0, 0x9fc00),
                r(0x10_0000, 0x2000_0000),
                r(0x2000_1000, 0x4000_0000),
                r(0x1_0000_0000, 0x1_4000_0000)
            ]
        );
        let avoided: Vec<_> = m.avoid.iter().map(|(r, l)| (r.start, r.end, l)).collect();
        assert_eq!(
            avoided,
            [
                (0x8_0000, 0x8_1000, "boot_params"),
                (0x3000_0000, 0x3010_0000, "initrd"),
                (0x9_0000, 0x9_0000 + 16 + 32, "setup_data"),
                (0x9_1000, 0x9_1000 + 16 + 40, "setup_data"),
            ]
        );
        assert_eq!(
            m.rng_seeds().collect::<Vec<_>>(),
            [(&[9u8; 32][..], 0x9_0000)]
        );
        let (len, data) = consumed_fields(0x9_0000, 32);
        assert_eq!(
            (len.start, len.end, data.start, data.end),
            (0x9_000c, 0x9_0010, 0x9_0010, 0x9_0030)
        );
        // A malformed E820_EXT node is an error, not a shorter map.
        mem.0.insert(0x9_1000, node(0, SETUP_E820_EXT, &ext[..30]));
        let e = Machine::read(0x8_0000, &bp, |pa, len| mem.read(pa, len)).unwrap_err();
        assert_eq!(e, BootParamsError::BadE820Ext { len: 30 });
    }
}
