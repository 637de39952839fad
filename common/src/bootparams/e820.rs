//! The E820 memory map (arch/x86/include/asm/e820/types.h, bootparam.h): its packed
//! entries, the types, and usable RAM from every source of them.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::BootParamsError;
use crate::memmap::{MemoryMap, Range};

/// `E820_MAX_ENTRIES_ZEROPAGE`.
pub const E820_MAX_ENTRIES_ZEROPAGE: usize = 128;
/// Bytes of one packed [`E820Entry`].
pub const E820_ENTRY_SIZE: usize = 20;

// E820 types (arch/x86/include/asm/e820/types.h). Only `E820_TYPE_RAM` is usable.
pub const E820_TYPE_RAM: u32 = 1;
pub const E820_TYPE_RESERVED: u32 = 2;
pub const E820_TYPE_ACPI: u32 = 3;
pub const E820_TYPE_NVS: u32 = 4;
pub const E820_TYPE_UNUSABLE: u32 = 5;
pub const E820_TYPE_PMEM: u32 = 7;
/// Legacy persistent memory (`memmap=nn!ss`).
pub const E820_TYPE_PRAM: u32 = 12;
/// EFI "specific purpose" memory.
pub const E820_TYPE_SOFT_RESERVED: u32 = 0xefff_ffff;

/// `struct boot_e820_entry`: 20 packed bytes.
#[repr(C, packed)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned,
)]
pub struct E820Entry {
    pub addr: U64,
    pub size: U64,
    /// `E820_TYPE_*`.
    pub typ: U32,
}

const _: () = assert!(core::mem::size_of::<E820Entry>() == E820_ENTRY_SIZE);

impl E820Entry {
    pub fn new(addr: u64, size: u64, typ: u32) -> E820Entry {
        E820Entry {
            addr: U64::new(addr),
            size: U64::new(size),
            typ: U32::new(typ),
        }
    }

    /// `(addr, size, type)`, what [`ram_from_e820`] takes.
    pub fn get(&self) -> (u64, u64, u32) {
        (self.addr.get(), self.size.get(), self.typ.get())
    }
}

/// Usable RAM from an E820 map: the union of every `E820_TYPE_RAM` entry minus every
/// other entry, whatever their order. Repeated, overlapping and zero-length entries are
/// fine; where a non-RAM entry overlaps RAM the non-RAM entry wins (conservative, as
/// Linux's `e820__update_table` prefers the higher type). Pass every source at once
/// (the zero-page table chained with each `SETUP_E820_EXT` node) so a reserved entry in
/// one trims RAM from another. `out` is replaced only on success.
///
/// RAM in more pieces than the map holds keeps its largest pieces (Linux too ignores
/// entries past its table's end); the bytes left out are returned, for the log. No
/// reserved byte is ever counted as RAM.
///
/// An entry whose `addr + size` passes 2^64 is an error naming it (Linux gives up on
/// such a table too); ending exactly at `u64::MAX` is fine.
pub fn ram_from_e820(
    entries: impl Iterator<Item = (u64, u64, u32)> + Clone,
    out: &mut MemoryMap,
) -> Result<u64, BootParamsError> {
    let range = |(index, (addr, size, typ)): (usize, (u64, u64, u32))| {
        Range::from_base_size(addr, size)
            .map(|r| (r, typ))
            .map_err(|_| BootParamsError::E820Overflow {
                index,
                addr,
                size,
                typ,
            })
    };
    // RAM first, then every other entry taken out of it: two passes, so that no
    // table of reserved ranges is needed, whatever their number.
    let mut ram = MemoryMap::new();
    let mut dropped = 0u64;
    for entry in entries.clone().enumerate() {
        let (r, typ) = range(entry)?;
        if typ == E820_TYPE_RAM {
            dropped = dropped.saturating_add(ram.insert_lossy(r));
        }
    }
    for entry in entries.enumerate() {
        let (r, typ) = range(entry)?;
        if typ != E820_TYPE_RAM {
            dropped = dropped.saturating_add(ram.remove_lossy(r));
        }
    }
    *out = ram;
    Ok(dropped)
}

/// The entries of a `SETUP_E820_EXT` node's data: a packed [`E820Entry`] array whose
/// length must be a multiple of 20.
pub fn e820_ext(
    data: &[u8],
) -> Result<impl Iterator<Item = (u64, u64, u32)> + Clone + '_, BootParamsError> {
    let entries = <[E820Entry]>::ref_from_bytes(data)
        .map_err(|_| BootParamsError::BadE820Ext { len: data.len() })?;
    Ok(entries.iter().map(E820Entry::get))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootparams::testutil::*;
    use crate::bootparams::*;
    use crate::memmap::MemoryMap;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn qemu_like_map() {
        // Shaped like SeaBIOS's map for QEMU q35 with 2 GiB, in BIOS order.
        let map = [
            (0, 0x9fc00, E820_TYPE_RAM),
            (0x9fc00, 0x400, E820_TYPE_RESERVED),
            (0xf0000, 0x10000, E820_TYPE_RESERVED),
            (0x10_0000, 0x7fee_0000, E820_TYPE_RAM),
            (0x7ffe_0000, 0x2_0000, E820_TYPE_RESERVED),
            (0xb000_0000, 0x1000_0000, E820_TYPE_RESERVED),
            (0xfed1_c000, 0x4000, E820_TYPE_RESERVED),
            (0xfeff_c000, 0x4000, E820_TYPE_RESERVED),
            (0xfffc_0000, 0x4_0000, E820_TYPE_RESERVED),
            (0xfd_0000_0000, 0x3_0000_0000, E820_TYPE_RESERVED),
        ];
        let page = zero_page(&map);
        let bp = BootParams::new(&page).unwrap();
        let mut out = MemoryMap::new();
        ram_from_e820(bp.e820().unwrap(), &mut out).unwrap();
        assert_eq!(out.as_slice(), [r(0, 0x9fc00), r(0x10_0000, 0x7ffe_0000)]);
    }

    #[test]
    fn e820_normalisation() {
        const RAM: u32 = E820_TYPE_RAM;
        const RES: u32 = E820_TYPE_RESERVED;
        // Unsorted, duplicated, adjacent RAM merges.
        assert_eq!(
            ram(&[
                (0x3000, 0x1000, RAM),
                (0x1000, 0x1000, RAM),
                (0x2000, 0x1000, RAM),
                (0x1000, 0x1000, RAM),
                (0x9000, 0x1000, RAM),
            ]),
            Ok(vec![r(0x1000, 0x4000), r(0x9000, 0xa000)])
        );
        // Reserved wins over RAM, whichever comes first, for every non-RAM type.
        for typ in [
            RES,
            E820_TYPE_ACPI,
            E820_TYPE_NVS,
            E820_TYPE_UNUSABLE,
            E820_TYPE_PMEM,
            E820_TYPE_PRAM,
            E820_TYPE_SOFT_RESERVED,
            6,
            0,
            0xdead,
        ] {
            assert_eq!(
                ram(&[(0x1800, 0x1000, typ), (0x1000, 0x4000, RAM)]),
                Ok(vec![r(0x1000, 0x1800), r(0x2800, 0x5000)]),
                "type {typ}"
            );
            assert_eq!(
                ram(&[(0x1000, 0x4000, RAM), (0x800, 0x1000, typ)]),
                Ok(vec![r(0x1800, 0x5000)]),
                "type {typ}"
            );
        }
        // Reserved covering all RAM: nothing left.
        assert_eq!(ram(&[(0x1000, 0x1000, RAM), (0, 0x10000, RES)]), Ok(vec![]));
        // Zero-length entries are ignored, even at addresses that would overflow.
        assert_eq!(
            ram(&[
                (0x1000, 0x1000, RAM),
                (0x1800, 0, RES),
                (u64::MAX, 0, RAM),
                (0x5000, 0, RAM)
            ]),
            Ok(vec![r(0x1000, 0x2000)])
        );
        // An entry ending exactly at u64::MAX is fine.
        assert_eq!(
            ram(&[(u64::MAX - 0x1000, 0x1000, RAM), (0, 0x1000, RAM)]),
            Ok(vec![r(0, 0x1000), r(u64::MAX - 0x1000, u64::MAX)])
        );
        // One byte further overflows: an error naming the entry.
        let e = ram(&[(0, 0x1000, RAM), (u64::MAX - 0xfff, 0x1000, RES)]).unwrap_err();
        assert_eq!(
            e,
            BootParamsError::E820Overflow {
                index: 1,
                addr: u64::MAX - 0xfff,
                size: 0x1000,
                typ: RES
            }
        );
        assert_eq!(
            e.to_string(),
            "e820 entry 1 (addr 0xfffffffffffff000 size 0x1000 type 2) overflows 64 bits"
        );
        // `out` is untouched on error.
        let mut out = MemoryMap::new();
        out.insert(r(1, 2)).unwrap();
        assert!(ram_from_e820([(u64::MAX, 2, RAM)].into_iter(), &mut out).is_err());
        assert_eq!(out.as_slice(), [r(1, 2)]);
        // ... and replaced on success.
        ram_from_e820([(0x10, 0x10, RAM)].into_iter(), &mut out).unwrap();
        assert_eq!(out.as_slice(), [r(0x10, 0x20)]);
    }

    #[test]
    fn e820_with_more_ram_ranges_than_the_map_keeps_the_largest() {
        use crate::memmap::MAX_RANGES;
        const RAM: u32 = E820_TYPE_RAM;
        const RES: u32 = E820_TYPE_RESERVED;
        // 200 RAM pages with gaps, and one larger range: the map keeps 128 ranges, the
        // large one among them, and says how much it left out.
        let mut entries: Vec<_> = (0..200u64).map(|i| (i * 0x2000, 0x1000, RAM)).collect();
        entries.push((0x100_0000, 0x10_0000, RAM));
        let mut out = MemoryMap::new();
        let dropped = ram_from_e820(entries.iter().copied(), &mut out).unwrap();
        assert_eq!(out.len(), MAX_RANGES);
        assert!(out.contains_range(&r(0x100_0000, 0x110_0000)));
        assert_eq!(dropped, (201 - MAX_RANGES as u64) * 0x1000);
        // 248 reserved holes in one RAM range: RAM splits past the map, never over a
        // hole.
        let mut entries = vec![(0, 0x2000_0000, RAM)];
        entries.extend((0..248u64).map(|i| (0x100_0000 + i * 0x20_0000, 0x1_0000, RES)));
        let dropped = ram_from_e820(entries.iter().copied(), &mut out).unwrap();
        assert!(dropped > 0);
        assert!(out.len() <= MAX_RANGES);
        for (addr, size, _) in entries.iter().skip(1) {
            let hole = r(*addr, addr + size);
            assert!(
                out.iter().all(|x| !x.overlaps(&hole)),
                "{hole:x?} kept as RAM"
            );
        }
        let total_holes = 248 * 0x1_0000;
        assert_eq!(out.total() + dropped + total_holes, 0x2000_0000);
    }

    #[test]
    fn e820_ext_length() {
        assert_eq!(e820_ext(&[]).unwrap().count(), 0);
        let two = e820_bytes(&[(1, 2, 3), (4, 5, 6)]);
        assert_eq!(
            e820_ext(&two).unwrap().collect::<Vec<_>>(),
            [(1, 2, 3), (4, 5, 6)]
        );
        assert_eq!(
            e820_ext(&two[..39]).err(),
            Some(BootParamsError::BadE820Ext { len: 39 })
        );
        assert_eq!(
            e820_ext(&[0; 21]).err(),
            Some(BootParamsError::BadE820Ext { len: 21 })
        );
    }

    #[test]
    fn more_than_128_entries_via_e820_ext() {
        // 128 RAM pages in the table, shuffled; they merge into [0, 0x80000).
        let mut table: Vec<_> = (0..128u64)
            .map(|i| ((i * 37 % 128) * 0x1000, 0x1000, E820_TYPE_RAM))
            .collect();
        table.rotate_left(5);
        let page = zero_page(&table);
        // 10 more in a SETUP_E820_EXT node: 8 RAM pages above, and two reserved pages,
        // one of them inside RAM from the zero-page table.
        let mut ext: Vec<_> = (0..8u64)
            .map(|j| (0x80000 + j * 0x1000, 0x1000, E820_TYPE_RAM))
            .collect();
        ext.push((0x1000, 0x1000, E820_TYPE_RESERVED));
        ext.push((0x84000, 0x1000, E820_TYPE_ACPI));
        let mut mem = Memory(HashMap::new());
        mem.0
            .insert(0x9_0000, node(0x9_1000, SETUP_RNG_SEED, &[7; 32]));
        mem.0
            .insert(0x9_1000, node(0, SETUP_E820_EXT, &e820_bytes(&ext)));

        let mut page = page;
        page[0x250..0x258].copy_from_slice(&0x9_0000u64.to_le_bytes());
        let bp = BootParams::new(&page).unwrap();
        assert_eq!(bp.setup_data(), 0x9_0000);

        let nodes: Vec<_> = walk_setup_data(bp.setup_data(), |pa, len| mem.read(pa, len))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].typ, SETUP_RNG_SEED);
        assert_eq!(nodes[0].data, [7; 32]);
        assert_eq!(nodes[0].range(), r(0x9_0000, 0x9_0000 + 16 + 32));
        assert_eq!(nodes[1].range(), r(0x9_1000, 0x9_1000 + 16 + 200));
        assert_eq!(nodes[1].indirect(), Ok(None));

        assert_eq!(bp.e820().unwrap().count(), 128);
        let mut chained: Vec<(u64, u64, u32)> = bp.e820().unwrap().collect();
        for n in nodes.iter().filter(|n| n.typ == SETUP_E820_EXT) {
            chained.extend(e820_ext(n.data).unwrap());
        }
        assert_eq!(chained.len(), 138, "every entry counted");
        let mut out = MemoryMap::new();
        ram_from_e820(chained.into_iter(), &mut out).unwrap();
        assert_eq!(
            out.as_slice(),
            [r(0, 0x1000), r(0x2000, 0x84000), r(0x85000, 0x88000)]
        );
    }

    /// The model of [`ram_from_e820`]: a byte is RAM when a RAM entry covers it and no
    /// other entry does.
    fn model(entries: &[(u64, u64, u32)]) -> [bool; 320] {
        let mut ram = [false; 320];
        let mut other = [false; 320];
        for &(a, s, t) in entries {
            for b in a..a + s {
                if t == E820_TYPE_RAM {
                    ram[b as usize] = true;
                } else {
                    other[b as usize] = true;
                }
            }
        }
        core::array::from_fn(|i| ram[i] && !other[i])
    }

    proptest! {
        #[test]
        fn e820_matches_model(entries in proptest::collection::vec(
            (0u64..256, 0u64..64, prop::sample::select(vec![1u32, 1, 1, 2, 3, 4, 5, 7, 12])), 0..40)
        ) {
            let got = ram(&entries).unwrap();
            for w in got.windows(2) {
                prop_assert!(w[0].end < w[1].start);
            }
            let want = model(&entries);
            for (b, &is_ram) in want.iter().enumerate() {
                let b = b as u64;
                prop_assert_eq!(is_ram, got.iter().any(|x| x.start <= b && b < x.end), "byte {}", b);
            }
        }

        #[test]
        fn random_e820_never_panics(
            entries in proptest::collection::vec((any::<u64>(), any::<u64>(), any::<u32>()), 0..200),
            raw in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut out = MemoryMap::new();
            let _ = ram_from_e820(entries.into_iter(), &mut out);
            if let Ok(e) = e820_ext(&raw) {
                let _ = ram_from_e820(e, &mut out);
            }
        }
    }
}
