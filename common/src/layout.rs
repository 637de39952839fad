//! The machine's memory as the shim uses it, composed in one place: what must survive
//! until the payload runs (the avoid list), what the identity map makes normal memory,
//! and what the placer may hand out. One answer, so the map and the placer cannot
//! disagree: every byte the placer hands out is Normal in the identity map (ARM ARM
//! B2.8: one page Normal in one mapping and Device in another is a mismatched-attribute
//! bug), and `no-map` memory is never Normal.
//!
//! ```text
//!  RAM ──────────────────────────────────────────────────┬── mapped_limit (clipped)
//!  normal  = RAM - no-map, plus the shim and the device tree, page-granular
//!  avoid   = shim, handoff (FDT or boot_params), initrd, reserved, ...
//!  usable  = RAM below the limits (mem=, mapped_limit) - avoid - memmap= , inside normal
//! ```

use crate::cmdline::Options;
use crate::memmap::{free_memory, Avoid, MemError, MemoryMap, Range};

/// The identity map's granule: it maps RAM exactly to the page.
pub const PAGE: u64 = 4096;

/// What `mem=` means on the architecture (Documentation/admin-guide/kernel-parameters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemLimit {
    /// arm64: "Force usage of a specific amount of memory": the first N bytes of RAM,
    /// counted across its ranges (memblock_mem_limit_remove_map).
    Amount,
    /// x86: memory at or above the address is ignored (what x86 KASLR reads).
    Address,
}

/// What the composition starts from.
pub struct Machine<'a> {
    /// All RAM.
    pub ram: &'a MemoryMap,
    /// Firmware reservations: reserved-memory, memreserve, setup_data, ...
    pub reserved: &'a Avoid,
    /// Reserved memory that must not be mapped at all (`no-map`).
    pub no_map: &'a MemoryMap,
    /// The shim's own image (container, bss and stack included).
    pub shim: Range,
    /// The device tree or boot_params.
    pub handoff: Range,
    pub initrd: Option<Range>,
    /// Where the identity map ends: RAM above it is clipped, not used.
    pub mapped_limit: u64,
    pub mem_limit: MemLimit,
}

/// The composition.
#[derive(Clone, Debug)]
pub struct Layout {
    /// What must survive until the payload runs.
    pub avoid: Avoid,
    /// What the identity map maps as normal memory; everything else is Device.
    pub normal: MemoryMap,
    /// What the placer may hand out: inside `normal`, clear of `avoid`.
    pub usable: MemoryMap,
    /// Bytes of RAM above `mapped_limit`, left unused.
    pub clipped: u64,
    pub mapped_limit: u64,
}

impl Layout {
    /// The console line owed when RAM was clipped.
    pub fn clipped_note(&self) -> Option<impl core::fmt::Display> {
        (self.clipped > 0).then_some(Clipped {
            bytes: self.clipped,
            limit: self.mapped_limit,
        })
    }
}

struct Clipped {
    bytes: u64,
    limit: u64,
}

impl core::fmt::Display for Clipped {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{:#x} bytes of RAM above the {} GiB the identity map covers are left unused",
            self.bytes,
            self.limit >> 30
        )
    }
}

fn pages_out(r: Range) -> Range {
    Range {
        start: r.start & !(PAGE - 1),
        end: r.end.checked_next_multiple_of(PAGE).unwrap_or(!(PAGE - 1)),
    }
}

/// Composes the avoid list, the normal map and the usable memory.
pub fn compose(m: &Machine<'_>, opts: &Options) -> Result<Layout, MemError> {
    let mut avoid = Avoid::new();
    avoid.push(m.shim, "shim")?;
    avoid.push(m.handoff, "handoff")?;
    if let Some(initrd) = m.initrd {
        avoid.push(initrd, "initrd")?;
    }
    for (range, label) in m.reserved.iter() {
        avoid.push(range, label)?;
    }

    let mut ram = *m.ram;
    let clipped = ram.truncate_above(m.mapped_limit);

    // Normal memory: RAM, and the pages the shim and the tree occupy (a tree may lie
    // outside RAM), never no-map memory, page by page.
    let mut normal = ram;
    normal.insert(pages_out(m.shim))?;
    normal.insert(pages_out(m.handoff))?;
    for r in m.no_map.iter() {
        normal.remove(pages_out(r))?;
    }

    // Usable: RAM within the command line's limits, clear of the avoid list and of
    // memmap= exclusions, and only where the map is normal.
    if let Some(limit) = opts.memory_limit() {
        let end = match m.mem_limit {
            MemLimit::Address => limit,
            MemLimit::Amount => amount_end(&ram, limit)?,
        };
        ram.truncate_above(end);
    }
    let mut usable = free_memory(&ram, &avoid)?;
    // Less usable memory is safe: a map too fragmented to split loses small pieces.
    for range in opts.memmap_avoid() {
        usable.remove_lossy(range);
    }
    for r in m.no_map.iter() {
        usable.remove_lossy(pages_out(r));
    }
    Ok(Layout {
        avoid,
        normal,
        usable,
        clipped,
        mapped_limit: m.mapped_limit,
    })
}

/// The address where the first `amount` bytes of `ram` end.
fn amount_end(ram: &MemoryMap, amount: u64) -> Result<u64, MemError> {
    let mut left = amount;
    for r in ram.iter() {
        match left.checked_sub(r.len()) {
            Some(rest) if rest > 0 => left = rest,
            _ => return Ok(Range::from_base_size(r.start, left)?.end),
        }
    }
    Ok(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmdline;
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn set(ranges: &[(u64, u64)]) -> MemoryMap {
        let mut m = MemoryMap::new();
        for &(start, end) in ranges {
            m.insert(Range { start, end }).unwrap();
        }
        m
    }

    fn machine<'a>(ram: &'a MemoryMap, reserved: &'a Avoid, no_map: &'a MemoryMap) -> Machine<'a> {
        Machine {
            ram,
            reserved,
            no_map,
            shim: Range::from_base_size(GIB + 2 * MIB, 3 * MIB + 0x123).unwrap(),
            handoff: Range::from_base_size(GIB + 100 * MIB + 8, 0x2000).unwrap(),
            initrd: Some(Range::from_base_size(GIB + 200 * MIB, 5 * MIB).unwrap()),
            mapped_limit: 512 * GIB,
            mem_limit: MemLimit::Amount,
        }
    }

    #[test]
    fn no_map_memory_is_never_normal_nor_usable() {
        let ram = set(&[(GIB, 2 * GIB)]);
        // A no-map region that shares 2 MiB blocks with RAM on both sides.
        let secmon = Range::from_base_size(GIB + 51 * MIB + 4096, 3 * 4096).unwrap();
        let mut reserved = Avoid::new();
        reserved.push(secmon, "reserved-memory").unwrap();
        let no_map = set(&[(secmon.start, secmon.end)]);
        let l = compose(&machine(&ram, &reserved, &no_map), &Options::default()).unwrap();
        assert!(l.normal.iter().all(|r| !r.overlaps(&secmon)));
        assert!(l.usable.iter().all(|r| !r.overlaps(&secmon)));
        // The pages around it stay normal: the map is page-granular.
        assert!(l
            .normal
            .contains_range(&Range::from_base_size(secmon.start - 4096, 4096).unwrap()));
        assert!(l
            .normal
            .contains_range(&Range::from_base_size(secmon.end, 4096).unwrap()));
        // Everything usable is normal.
        for r in l.usable.iter() {
            assert!(l.normal.contains_range(&r), "{r}");
        }
    }

    #[test]
    fn ram_beyond_the_map_is_clipped() {
        let ram = set(&[(GIB, 2 * GIB), (510 * GIB, 514 * GIB)]);
        let (reserved, no_map) = (Avoid::new(), MemoryMap::new());
        let l = compose(&machine(&ram, &reserved, &no_map), &Options::default()).unwrap();
        assert_eq!(l.clipped, 2 * GIB);
        assert_eq!(
            l.clipped_note().unwrap().to_string(),
            "0x80000000 bytes of RAM above the 512 GiB the identity map covers are left unused"
        );
        assert_eq!(l.usable.last().unwrap().end, 512 * GIB);
        assert_eq!(l.normal.last().unwrap().end, 512 * GIB);
    }

    #[test]
    fn mem_is_an_amount_on_arm64_and_an_address_on_x86() {
        let ram = set(&[(GIB, 2 * GIB), (4 * GIB, 6 * GIB)]);
        let (reserved, no_map) = (Avoid::new(), MemoryMap::new());
        let opts = cmdline::parse(b"mem=1536M").unwrap();
        let arm = compose(&machine(&ram, &reserved, &no_map), &opts).unwrap();
        // 1 GiB from the first bank, 512 MiB from the second.
        assert_eq!(arm.usable.last().unwrap().end, 4 * GIB + 512 * MIB);
        let x86 = Machine {
            mem_limit: MemLimit::Address,
            ..machine(&ram, &reserved, &no_map)
        };
        let x86 = compose(&x86, &opts).unwrap();
        assert_eq!(x86.usable.last().unwrap().end, 1536 * MIB);
        assert_eq!(amount_end(&ram, 10 * GIB), Ok(u64::MAX));
    }

    #[test]
    fn the_avoid_list_names_everything() {
        let ram = set(&[(GIB, 2 * GIB)]);
        let mut reserved = Avoid::new();
        reserved
            .push(Range::from_base_size(GIB, MIB).unwrap(), "memreserve")
            .unwrap();
        let no_map = MemoryMap::new();
        let l = compose(&machine(&ram, &reserved, &no_map), &Options::default()).unwrap();
        let labels: Vec<_> = l.avoid.iter().map(|(_, label)| label).collect();
        assert_eq!(labels, ["shim", "handoff", "initrd", "memreserve"]);
        for (r, label) in l.avoid.iter() {
            assert!(l.usable.iter().all(|u| !u.overlaps(&r)), "{label}");
        }
    }

    proptest! {
        /// Whatever the map: usable memory is RAM, normal, clear of every avoided range
        /// and of no-map memory; the shim and the tree are normal unless no-map.
        #[test]
        fn one_consistent_answer(
            ram in proptest::collection::vec((0u64..4096, 1u64..2048), 1..5),
            no_map in proptest::collection::vec((0u64..4096, 1u64..64), 0..4),
            reserved in proptest::collection::vec((0u64..4096, 1u64..64), 0..4),
        ) {
            let page = |p: u64| GIB + p * 4096;
            let mut r = MemoryMap::new();
            for (s, l) in ram { r.insert(Range { start: page(s), end: page(s + l) }).unwrap(); }
            let mut nm = MemoryMap::new();
            let mut res = Avoid::new();
            for (s, l) in no_map {
                let range = Range { start: page(s), end: page(s + l) };
                nm.insert(range).unwrap();
                res.push(range, "reserved-memory").unwrap();
            }
            for (s, l) in reserved {
                res.push(Range { start: page(s), end: page(s + l) }, "memreserve").unwrap();
            }
            let m = Machine {
                ram: &r, reserved: &res, no_map: &nm,
                shim: Range::from_base_size(page(10), 12345).unwrap(),
                handoff: Range::from_base_size(page(3000) + 8, 999).unwrap(),
                initrd: None, mapped_limit: 512 * GIB, mem_limit: MemLimit::Amount,
            };
            let l = compose(&m, &Options::default()).unwrap();
            for u in l.usable.iter() {
                prop_assert!(r.contains_range(&u));
                prop_assert!(l.normal.contains_range(&u));
                prop_assert!(l.avoid.overlapping(u).is_none());
                prop_assert!(nm.iter().all(|n| !n.overlaps(&u)));
            }
            prop_assert!(nm.iter().all(|n| l.normal.iter().all(|x| !x.overlaps(&n))));
        }
    }
}
