//! Where the payload goes: free memory from RAM and the avoid list, then a physical slot
//! and a virtual base, randomized unless `nokaslr` or the loader fixed them.
//! The arch backends gather the inputs; every decision is made here.
//!
//! ```text
//!  physical                                     virtual (TTBR1 on arm64)
//!  dram_base ─┬──────────────┐                  PAGE_OFFSET ─┐
//!             │ avoided: shim, fdt, initrd, ... │            │ + (phys - dram_base)
//!      phys ──┼─[ payload ]──┤  ───────────────────────────► │ + disp (random, granule-aligned,
//!             │              │                               │   below 2^window_bits)
//!             └──────────────┘                          virt ─┘
//! ```

use core::fmt;

use crate::entropy::Rng;
use crate::memmap::{Avoid, MemError, MemoryMap};
use crate::slot::{self, SlotError};

/// Alignment of the payload's physical slot and granule of the virtual displacement.
pub const SLOT_ALIGN: u64 = 2 << 20;

/// The virtual window a payload may be displaced within.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtWindow {
    /// Virtual address of `dram_base` before displacement (arm64: PAGE_OFFSET).
    pub base: u64,
    /// The random displacement is `k * SLOT_ALIGN` for `k` uniform below `2^disp_bits`.
    pub disp_bits: u32,
    /// `phys - dram_base + size` must stay below this, so `base + offset + disp` cannot
    /// leave the translation range.
    pub max_offset: u64,
}

/// arm64: PAGE_OFFSET for 48-bit VAs (`-(1 << 48)`), a 64 TiB displacement window
/// (2^25 positions of 2 MiB) and RAM offsets below 128 TiB: the sum stays below 2^48.
pub const ARM64_WINDOW: VirtWindow = VirtWindow {
    base: 0xffff_0000_0000_0000,
    disp_bits: 25,
    max_offset: 1 << 47,
};

/// x86_64: the start of the canonical higher half (4-level paging, 48-bit VAs: PML4
/// entries 256..511), a 64 TiB displacement window (2^25 positions of 2 MiB) and RAM
/// offsets below 64 TiB. `base + offset + size` stays below `base + 2^46` and the
/// displacement below 2^46, so the payload ends below 2^64: canonical, never wrapping.
pub const X86_64_WINDOW: VirtWindow = VirtWindow {
    base: 0xffff_8000_0000_0000,
    disp_bits: 25,
    max_offset: 1 << 46,
};

/// How the placement was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Uniform over every slot, plus a random virtual displacement.
    Random,
    /// `nokaslr`: the lowest slot, no displacement.
    Lowest,
    /// The loader's image offset (arm64 x1 or `shim.offset=`): `phys = dram_base + off`,
    /// `virt = base + off`.
    Loader,
}

/// The outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub phys: u64,
    pub virt: u64,
    pub mode: Mode,
    /// Physical slots the choice was drawn from (1 unless random).
    pub phys_slots: u64,
    /// log2 of the number of equally likely (phys, virt) outcomes, rounded down.
    pub bits: u32,
    /// A loader offset that was refused, and why; the shim then chose itself.
    pub refused_offset: Option<(u64, OffsetError)>,
}

/// Why a loader-supplied image offset is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetError {
    NotAligned,
    /// The payload would not lie wholly in free RAM there.
    NotFree,
    OutOfWindow,
}

impl fmt::Display for OffsetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OffsetError::NotAligned => "not 2 MiB aligned",
            OffsetError::NotFree => "payload would overlap memory in use or leave RAM",
            OffsetError::OutOfWindow => "beyond the virtual window",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanError {
    Slot(SlotError),
    Memory(MemError),
    /// Free memory exists but no offset keeps the image inside the virtual window.
    OutOfWindow,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::Slot(e) => write!(f, "{e}"),
            PlanError::Memory(e) => write!(f, "{e}"),
            PlanError::OutOfWindow => {
                f.write_str("no slot keeps the payload in the virtual window")
            }
        }
    }
}

impl From<SlotError> for PlanError {
    fn from(e: SlotError) -> Self {
        PlanError::Slot(e)
    }
}

impl From<MemError> for PlanError {
    fn from(e: MemError) -> Self {
        PlanError::Memory(e)
    }
}

/// Chooses the payload's physical slot and virtual base.
///
/// `free` is usable memory, `dram_base` the lowest RAM address (the origin of image
/// offsets), `size` the bytes the loaded payload spans, `loader_offset` the loader's
/// requested image offset (0 = none).
pub fn place(
    free: &MemoryMap,
    dram_base: u64,
    size: u64,
    window: &VirtWindow,
    nokaslr: bool,
    loader_offset: u64,
    rng: &mut Rng,
) -> Result<Placement, PlanError> {
    let req = slot::Request {
        size,
        align: SLOT_ALIGN,
        min_addr: dram_base,
        max_end: dram_base.saturating_add(window.max_offset),
    };
    place_request(
        free,
        &req,
        dram_base,
        Some(window),
        nokaslr,
        loader_offset,
        rng,
    )
}

/// Chooses a physical slot for `req` (and, with a `window`, a virtual base): the
/// loader's offset if it names a slot, else the lowest slot if `lowest`, else one
/// drawn uniformly. Without a window `virt` is 0 and the bits are the physical ones.
pub fn place_request(
    free: &MemoryMap,
    req: &slot::Request,
    dram_base: u64,
    window: Option<&VirtWindow>,
    lowest: bool,
    loader_offset: u64,
    rng: &mut Rng,
) -> Result<Placement, PlanError> {
    let mut refused_offset = None;
    if loader_offset != 0 {
        match check_offset(free, req, dram_base, loader_offset) {
            Ok(phys) => {
                let virt = window.map_or(0, |w| w.base.wrapping_add(loader_offset));
                return Ok(Placement {
                    phys,
                    virt,
                    mode: Mode::Loader,
                    phys_slots: 1,
                    bits: 0,
                    refused_offset,
                });
            }
            Err(e) => refused_offset = Some((loader_offset, e)),
        }
    }
    let disp_bits = window.map_or(0, |w| w.disp_bits);
    let (phys, phys_slots, disp, mode) = if lowest {
        (
            slot::lowest(free, req).ok_or(SlotError::NoSlot)?,
            1,
            0,
            Mode::Lowest,
        )
    } else {
        let choice = slot::choose(free, req, rng)?;
        let disp = match window {
            Some(_) => rng.below(1u64 << disp_bits).wrapping_mul(SLOT_ALIGN),
            None => 0,
        };
        (choice.addr, choice.slots, disp, Mode::Random)
    };
    let virt = match window {
        Some(w) => {
            let offset = phys.checked_sub(dram_base).ok_or(PlanError::OutOfWindow)?;
            w.base.wrapping_add(offset).wrapping_add(disp)
        }
        None => 0,
    };
    let bits = match mode {
        // A count for the log and the payload: at most 63 + disp_bits.
        Mode::Random => phys_slots.ilog2().saturating_add(disp_bits),
        _ => 0,
    };
    Ok(Placement {
        phys,
        virt,
        mode,
        phys_slots,
        bits,
        refused_offset,
    })
}

fn check_offset(
    free: &MemoryMap,
    req: &slot::Request,
    dram_base: u64,
    offset: u64,
) -> Result<u64, OffsetError> {
    if !offset.is_multiple_of(SLOT_ALIGN) {
        return Err(OffsetError::NotAligned);
    }
    let phys = dram_base.checked_add(offset).ok_or(OffsetError::NotFree)?;
    let end = offset
        .checked_add(req.size)
        .ok_or(OffsetError::OutOfWindow)?;
    if end > req.max_end.saturating_sub(dram_base) {
        return Err(OffsetError::OutOfWindow);
    }
    if !slot::is_slot(free, req, phys) {
        return Err(OffsetError::NotFree);
    }
    Ok(phys)
}

/// Describes RAM, the avoid list and what is free, one range per `line` call, for the
/// "no slot fits" report.
pub fn report(
    mut line: impl FnMut(fmt::Arguments<'_>),
    ram: &MemoryMap,
    avoid: &Avoid,
    free: &MemoryMap,
) {
    for r in ram.iter() {
        line(format_args!("  ram   {r}"));
    }
    for (r, label) in avoid.iter() {
        line(format_args!("  avoid {r} {label}"));
    }
    for r in free.iter() {
        line(format_args!("  free  {r}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::Rng;
    use crate::memmap::{free_memory, Range};
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn map(ranges: &[(u64, u64)]) -> MemoryMap {
        let mut m = MemoryMap::new();
        for &(s, e) in ranges {
            m.insert(Range { start: s, end: e }).unwrap();
        }
        m
    }

    fn rng(seed: u8) -> Rng {
        Rng::from_key([seed; 32])
    }

    #[test]
    fn nokaslr_is_the_lowest_slot_every_time() {
        let free = map(&[(GIB + 3 * MIB, 2 * GIB)]);
        for seed in 0..10 {
            let p = place(&free, GIB, 5 * MIB, &ARM64_WINDOW, true, 0, &mut rng(seed)).unwrap();
            assert_eq!(
                (p.phys, p.virt, p.mode, p.bits),
                (GIB + 4 * MIB, ARM64_WINDOW.base + 4 * MIB, Mode::Lowest, 0)
            );
        }
    }

    #[test]
    fn random_placement_spreads_and_stays_in_the_window() {
        let free = map(&[(GIB, 2 * GIB)]);
        let mut seen = std::collections::HashSet::new();
        for seed in 0..50 {
            let p = place(
                &free,
                GIB,
                10 * MIB,
                &ARM64_WINDOW,
                false,
                0,
                &mut rng(seed),
            )
            .unwrap();
            assert_eq!(p.phys % SLOT_ALIGN, 0);
            assert_eq!(p.virt % SLOT_ALIGN, 0);
            let disp = p.virt - ARM64_WINDOW.base - (p.phys - GIB);
            assert!(disp < (1 << 25) * SLOT_ALIGN);
            assert_eq!(p.phys_slots, (GIB - 10 * MIB) / SLOT_ALIGN + 1);
            assert_eq!(p.bits, p.phys_slots.ilog2() + 25);
            seen.insert((p.phys, p.virt));
        }
        assert!(seen.len() >= 49);
    }

    #[test]
    fn loader_offset_is_used_when_valid_and_refused_otherwise() {
        let free = map(&[(GIB + 16 * MIB, 2 * GIB)]);
        let p = place(
            &free,
            GIB,
            4 * MIB,
            &ARM64_WINDOW,
            false,
            64 * MIB,
            &mut rng(1),
        )
        .unwrap();
        assert_eq!(
            (p.phys, p.virt, p.mode),
            (GIB + 64 * MIB, ARM64_WINDOW.base + 64 * MIB, Mode::Loader)
        );
        for (offset, why) in [
            (64 * MIB + 4096, OffsetError::NotAligned),
            (2 * MIB, OffsetError::NotFree), // below the free range
            (GIB - 2 * MIB, OffsetError::NotFree), // runs off the end of RAM
        ] {
            let p = place(
                &free,
                GIB,
                4 * MIB,
                &ARM64_WINDOW,
                false,
                offset,
                &mut rng(1),
            )
            .unwrap();
            assert_eq!(p.refused_offset, Some((offset, why)));
            assert_eq!(p.mode, Mode::Random);
        }
    }

    #[test]
    fn no_slot_is_an_error() {
        let free = map(&[(GIB, GIB + MIB)]);
        let e = place(&free, GIB, 4 * MIB, &ARM64_WINDOW, false, 0, &mut rng(0)).unwrap_err();
        assert_eq!(e, PlanError::Slot(SlotError::NoSlot));
    }

    proptest! {
        /// Whatever the map, a chosen slot is aligned, wholly inside free memory (so inside
        /// RAM and clear of every avoided range), and its virtual base is consistent.
        #[test]
        fn chosen_slot_is_free_aligned_and_consistent(
            ram in proptest::collection::vec((0u64..64, 1u64..32), 1..6),
            avoid in proptest::collection::vec((0u64..96, 0u64..8), 0..8),
            size_mib in 1u64..16,
            seed: u8,
            nokaslr: bool,
        ) {
            let mut m = MemoryMap::new();
            for (s, l) in ram { m.insert(Range { start: GIB + s * MIB, end: GIB + (s + l) * MIB }).unwrap(); }
            let mut a = Avoid::new();
            for (s, l) in avoid { a.push(Range { start: GIB + s * MIB, end: GIB + (s + l) * MIB }, "test").unwrap(); }
            let free = free_memory(&m, &a).unwrap();
            let dram = m.first().unwrap().start;
            let size = size_mib * MIB;
            match place(&free, dram, size, &ARM64_WINDOW, nokaslr, 0, &mut rng(seed)) {
                Ok(p) => {
                    let r = Range { start: p.phys, end: p.phys + size };
                    prop_assert_eq!(p.phys % SLOT_ALIGN, 0);
                    prop_assert!(m.contains_range(&r));
                    prop_assert!(a.overlapping(r).is_none());
                    prop_assert_eq!((p.virt - ARM64_WINDOW.base - (p.phys - dram)) % SLOT_ALIGN, 0);
                }
                Err(e) => prop_assert_eq!(e, PlanError::Slot(SlotError::NoSlot)),
            }
        }
    }
}
