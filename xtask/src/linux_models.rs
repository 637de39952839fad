//! How Linux's own loaders would randomize the same memory map, for `xtask simulate`
//! to set beside the shim's rule. Pure models of:
//! - the arm64 EFI stub, drivers/firmware/efi/libstub/randomalloc.c `efi_random_alloc`
//!   as arm64 calls it (kaslr.c `efi_kaslr_relocate_kernel`): slots aligned to
//!   `efi_get_kimg_min_align()` = EFI_KIMG_ALIGN (64 KiB: max(SEGMENT_ALIGN 64K,
//!   THREAD_ALIGN)) when KASLR is on, the size rounded up to EFI_ALLOC_ALIGN (64 KiB),
//!   slots ending at EFI_ALLOC_LIMIT (2^48 - 1), counted per EFI_CONVENTIONAL_MEMORY
//!   descriptor, and `target = (total_slots * (seed & 0xffffffff)) >> 32` from a
//!   32-bit seed;
//! - x86 arch/x86/boot/compressed/kaslr.c: `__process_mem_region` per e820 RAM entry
//!   split around `mem_avoid`, at most MAX_SLOT_AREA (100) slot areas of
//!   `1 + (size - image_size) / CONFIG_PHYSICAL_ALIGN` slots, a floor of
//!   `min(load address, 512 MiB)`, `random % slot_max` from a 64-bit value; virtual
//!   slots over [LOAD_PHYSICAL_ADDR, KERNEL_IMAGE_SIZE) at CONFIG_PHYSICAL_ALIGN;
//! - U-Boot `booti`: one address, the start of DRAM (flag bit 3 clear) or where the
//!   Image was loaded, rounded to 2 MiB plus text_offset.
//!
//! They live in xtask, not shim-common: no shim runs them, they need `Vec` and `f64`,
//! and keeping them here leaves common to the rules the shim itself follows.

use shim_common::memmap::Range;

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// arm64 EFI stub constants (arch/arm64/include/asm/efi.h).
pub const EFI_KIMG_ALIGN: u64 = 64 * KIB;
pub const EFI_ALLOC_ALIGN: u64 = 64 * KIB;
pub const EFI_ALLOC_LIMIT: u64 = (1 << 48) - 1;

/// x86_64 constants (Kconfig defaults, arch/x86/include/asm/page_64_types.h).
pub const PHYSICAL_ALIGN: u64 = 2 * MIB;
pub const LOAD_PHYSICAL_ADDR: u64 = 16 * MIB;
pub const KERNEL_IMAGE_SIZE: u64 = GIB;
pub const MAX_SLOT_AREA: usize = 100;
/// MAXMEM with 4-level paging: 2^46.
pub const MAXMEM: u64 = 1 << 46;

/// How many outcomes a rule has and how far from uniform its draw is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Outcomes {
    /// Positions the rule can choose among (before the draw's bias).
    pub slots: u64,
    /// Positions the draw can reach at all (a 32-bit seed reaches at most 2^32).
    pub reachable: u64,
    /// Largest over smallest probability of a reachable position: 1 for a uniform
    /// draw.
    pub bias: f64,
    /// `bias - 1`, computed exactly enough to show a 64-bit modulo's 1e-16.
    pub bias_excess: f64,
    /// `-log2` of the most likely position's probability (min-entropy).
    pub min_entropy: f64,
}

impl Outcomes {
    /// A uniform draw over `slots` (the shim's rejection sampling; a single address).
    pub fn uniform(slots: u64) -> Outcomes {
        Outcomes {
            slots,
            reachable: slots,
            bias: 1.0,
            bias_excess: 0.0,
            min_entropy: log2(slots),
        }
    }

    /// `(slots * (seed & 0xffffffff)) >> 32`: each slot gets `floor` or `ceil` of
    /// `2^32 / slots` seeds; past 2^32 slots some get none.
    pub fn seed32(slots: u64) -> Outcomes {
        Self::from_range(slots, 32)
    }

    /// `random % slots` with a `bits`-bit random value: the first `2^bits % slots`
    /// positions get one extra value. Same counts as `seed32`'s, in another order.
    pub fn modulo(slots: u64, bits: u32) -> Outcomes {
        Self::from_range(slots, bits)
    }

    fn from_range(slots: u64, bits: u32) -> Outcomes {
        if slots == 0 {
            return Outcomes {
                slots,
                reachable: 0,
                bias: 1.0,
                bias_excess: 0.0,
                min_entropy: 0.0,
            };
        }
        let values = 1u128 << bits;
        let n = u128::from(slots);
        let (q, rem) = (values / n, values % n);
        if q == 0 {
            // Fewer values than slots: each value one slot, the rest unreachable.
            return Outcomes {
                slots,
                reachable: values as u64,
                bias: 1.0,
                bias_excess: 0.0,
                min_entropy: f64::from(bits),
            };
        }
        let max = if rem == 0 { q } else { q + 1 };
        Outcomes {
            slots,
            reachable: slots,
            bias: max as f64 / q as f64,
            bias_excess: (max - q) as f64 / q as f64,
            min_entropy: f64::from(bits) - (max as f64).log2(),
        }
    }

    /// log2 of the positions: the bits if they were equally likely.
    pub fn bits(&self) -> f64 {
        log2(self.reachable)
    }
}

pub fn log2(n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        (n as f64).log2()
    }
}

fn round_up(x: u64, align: u64) -> Option<u64> {
    x.checked_add(align - 1).map(|v| v & !(align - 1))
}

/// randomalloc.c `get_entry_num_slots` for one conventional-memory descriptor.
pub fn efi_entry_slots(desc: Range, size: u64, align: u64, alloc_max: u64) -> u64 {
    if desc.is_empty() {
        return 0;
    }
    let region_end = (desc.end - 1).min(alloc_max);
    if region_end < size {
        return 0;
    }
    let Some(first) = round_up(desc.start, align) else {
        return 0;
    };
    let last = (region_end - size + 1) & !(align - 1);
    if first > last {
        return 0;
    }
    (last - first) / align + 1
}

/// The arm64 EFI stub's slots over `descs` (its conventional memory), each
/// descriptor's count, for a kernel reserving `size` bytes.
pub fn efi_slots(descs: &[Range], size: u64) -> Vec<u64> {
    let size = round_up(size, EFI_ALLOC_ALIGN).unwrap_or(u64::MAX);
    descs
        .iter()
        .map(|&d| efi_entry_slots(d, size, EFI_KIMG_ALIGN, EFI_ALLOC_LIMIT))
        .collect()
}

/// The address `efi_random_alloc` picks for a 32-bit seed.
pub fn efi_pick(descs: &[Range], size: u64, seed: u32) -> Option<u64> {
    let counts = efi_slots(descs, size);
    let total: u64 = counts.iter().sum();
    let mut target = ((u128::from(total) * u128::from(seed)) >> 32) as u64;
    for (d, n) in descs.iter().zip(counts) {
        if target >= n {
            target -= n;
            continue;
        }
        return Some(round_up(d.start, EFI_KIMG_ALIGN)? + target * EFI_KIMG_ALIGN);
    }
    None
}

/// A kaslr.c `slot_area`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotArea {
    pub addr: u64,
    pub num: u64,
}

/// x86 kaslr.c's physical slot areas: each e820 RAM entry (in table order, as
/// `[start, end)`) clipped to `[minimum, mem_limit)` and split around the lowest
/// `avoid` range it overlaps, as `__process_mem_region` does, until 100 areas.
pub fn x86_slot_areas(
    ram_entries: &[Range],
    avoid: &[Range],
    minimum: u64,
    image_size: u64,
    mem_limit: u64,
) -> Vec<SlotArea> {
    let mut areas = Vec::new();
    // find_random_phys_addr: "Bail out early if it's impossible to succeed."
    if minimum.saturating_add(image_size) > mem_limit {
        return areas;
    }
    let store = |areas: &mut Vec<SlotArea>, start: u64, size: u64| {
        if areas.len() < MAX_SLOT_AREA {
            areas.push(SlotArea {
                addr: start,
                num: 1 + (size - image_size) / PHYSICAL_ALIGN,
            });
        }
    };
    for entry in ram_entries {
        if areas.len() == MAX_SLOT_AREA {
            break;
        }
        let mut start = entry.start.max(minimum);
        let end = entry.end.min(mem_limit);
        while areas.len() < MAX_SLOT_AREA {
            let Some(aligned) = round_up(start, PHYSICAL_ALIGN) else {
                break;
            };
            start = aligned;
            if start > end {
                break;
            }
            let size = end - start;
            if size < image_size {
                break;
            }
            let region = Range { start, end };
            // mem_avoid_overlap: the overlapping avoided range that starts lowest.
            let overlap = avoid
                .iter()
                .filter(|a| a.overlaps(&region))
                .min_by_key(|a| a.start);
            let Some(overlap) = overlap else {
                store(&mut areas, start, size);
                break;
            };
            if overlap.start >= start.saturating_add(image_size) {
                store(&mut areas, start, overlap.start - start);
            }
            start = overlap.end;
        }
    }
    areas
}

/// kaslr.c `find_random_virt_addr`'s slot count for an image of `image_size`.
pub fn x86_virt_slots(image_size: u64) -> u64 {
    KERNEL_IMAGE_SIZE
        .checked_sub(LOAD_PHYSICAL_ADDR)
        .and_then(|room| room.checked_sub(image_size))
        .map_or(0, |room| 1 + room / PHYSICAL_ALIGN)
}

/// `slots_fetch_random`: the address for a 64-bit random value.
pub fn x86_pick(areas: &[SlotArea], random: u64) -> Option<u64> {
    let total: u64 = areas.iter().map(|a| a.num).sum();
    if total == 0 {
        return None;
    }
    let mut slot = random % total;
    for a in areas {
        if slot >= a.num {
            slot -= a.num;
            continue;
        }
        return Some(a.addr + slot * PHYSICAL_ALIGN);
    }
    None
}

/// U-Boot `booti` (boot/image-board.c `booti_setup`): flag bit 3 set, the Image stays
/// where it was loaded, rounded down to 2 MiB; clear, it goes to the start of DRAM.
/// Either way `align_up(dst, 2 MiB) + text_offset`: one address.
pub fn booti_address(dram_start: u64, loaded_at: u64, text_offset: u64, anywhere: bool) -> u64 {
    let dst = if anywhere {
        loaded_at.saturating_sub(text_offset)
    } else {
        dram_start
    };
    round_up(dst, 2 * MIB).unwrap_or(dst) + text_offset
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> Range {
        Range { start, end }
    }

    #[test]
    fn uniform_and_biased_draws() {
        let u = Outcomes::uniform(509);
        assert_eq!((u.slots, u.reachable, u.bias), (509, 509, 1.0));
        assert!((u.bits() - 8.991).abs() < 0.001);
        // 2^32 seeds over 3 slots: 1431655766, 1431655765, 1431655765.
        let s = Outcomes::seed32(3);
        assert!((s.bias - 1431655766.0 / 1431655765.0).abs() < 1e-12);
        assert_eq!(Outcomes::seed32(1 << 20).bias, 1.0);
        // More slots than seeds: only 2^32 reachable, 32 bits at most.
        let big = Outcomes::seed32(6 << 30);
        assert_eq!((big.reachable, big.bits()), (1 << 32, 32.0));
        // 16384 + 1 slots: 262128 or 262129 seeds each.
        let odd = Outcomes::seed32((1 << 14) + 1);
        assert!((odd.bias - 262129.0 / 262128.0).abs() < 1e-12);
        assert!(odd.min_entropy < odd.bits());
        // A 64-bit modulo is almost uniform.
        let m = Outcomes::modulo(3070, 64);
        assert!(m.bias_excess > 1e-17 && m.bias_excess < 1e-15, "{m:?}");
        assert_eq!(Outcomes::modulo(0, 64).reachable, 0);
    }

    /// Every seed's pick, the long way, on a small map: each slot gets its share.
    #[test]
    fn efi_random_alloc_by_brute_force() {
        let descs = [r(0x4000_0000, 0x4010_0000), r(0x4020_0000, 0x4030_8000)];
        // 0x30000 rounds to 0x30000; slots 64K apart: (0x100000-0x30000)/0x10000+1 = 14,
        // and (0x108000 - 0x30000) down to 64K: 13 + 1 = 14.
        let counts = efi_slots(&descs, 0x2_a000);
        assert_eq!(counts, [14, 14]);
        let total: u64 = counts.iter().sum();
        let mut hits = std::collections::BTreeMap::new();
        for seed in (0..=u32::MAX).step_by(1 << 12) {
            let a = efi_pick(&descs, 0x2_a000, seed).unwrap();
            assert_eq!(a % EFI_KIMG_ALIGN, 0);
            assert!(descs.iter().any(|d| a >= d.start && a + 0x3_0000 <= d.end));
            *hits.entry(a).or_insert(0u32) += 1;
        }
        assert_eq!(hits.len() as u64, total);
        assert_eq!(efi_pick(&descs, 0x2_a000, 0), Some(0x4000_0000));
        assert_eq!(
            efi_pick(&descs, 0x2_a000, u32::MAX),
            Some(0x4020_0000 + 13 * 0x1_0000)
        );
        // Descriptors too small or past the limit give nothing.
        assert_eq!(
            efi_entry_slots(r(0x1000, 0x2000), 0x1_0000, EFI_KIMG_ALIGN, EFI_ALLOC_LIMIT),
            0
        );
        assert_eq!(
            efi_entry_slots(
                r(1 << 48, (1 << 48) + GIB),
                MIB,
                EFI_KIMG_ALIGN,
                EFI_ALLOC_LIMIT
            ),
            0
        );
    }

    #[test]
    fn x86_areas_split_around_avoided_ranges() {
        // q35 with 6 GiB: RAM below 2 GiB and 4..8 GiB; the kernel at 16 MiB.
        let ram = [r(0, 0x9_fc00), r(MIB, 0x7ffd_f000), r(4 * GIB, 8 * GIB)];
        let size = 0x1ab_0000;
        let kernel = r(MIB, 16 * MIB + size);
        let areas = x86_slot_areas(&ram, &[kernel], 16 * MIB, size, MAXMEM);
        let start = round_up(kernel.end, PHYSICAL_ALIGN).unwrap();
        assert_eq!(
            areas,
            [
                SlotArea {
                    addr: start,
                    num: 1 + (0x7ffd_f000 - start - size) / PHYSICAL_ALIGN
                },
                SlotArea {
                    addr: 4 * GIB,
                    num: 1 + (4 * GIB - size) / PHYSICAL_ALIGN
                },
            ]
        );
        // The first entry below the floor gives nothing; the pick walks the areas.
        assert_eq!(x86_pick(&areas, 0), Some(start));
        assert_eq!(x86_pick(&areas, areas[0].num), Some(4 * GIB));
        // 512 MiB floor at most: a kernel loaded at 1 GiB still draws from 512 MiB.
        let high = x86_slot_areas(&ram, &[], (GIB).min(512 * MIB), size, MAXMEM);
        assert_eq!(high[0].addr, 512 * MIB);
        // mem= below the floor plus the image: nothing.
        assert!(x86_slot_areas(&ram, &[], 16 * MIB, size, 32 * MIB).is_empty());
    }

    #[test]
    fn x86_stops_at_100_areas() {
        // One RAM entry with 150 one-page holes 8 MiB apart: 151 pieces, 100 kept.
        let ram = [r(0, 2 * GIB)];
        let holes: Vec<Range> = (1..=150)
            .map(|i| r(i * 8 * MIB, i * 8 * MIB + 4096))
            .collect();
        let areas = x86_slot_areas(&ram, &holes, 0, 2 * MIB, MAXMEM);
        assert_eq!(areas.len(), MAX_SLOT_AREA);
        assert_eq!(areas[0], SlotArea { addr: 0, num: 4 });
        // Each later piece starts 2 MiB above its hole: [8i + 2, 8i + 8) MiB, 3 slots.
        assert_eq!(
            areas[1],
            SlotArea {
                addr: 10 * MIB,
                num: 3
            }
        );
        let total: u64 = areas.iter().map(|a| a.num).sum();
        assert_eq!(total, 4 + 99 * 3);
    }

    #[test]
    fn x86_virtual_slots() {
        // (1 GiB - 16 MiB - 0x1ab0000) / 2 MiB = 490 (rounded down), plus one.
        assert_eq!(x86_virt_slots(0x1ab_0000), 491);
        assert_eq!(x86_virt_slots(2 * GIB), 0);
    }

    #[test]
    fn booti_is_one_address() {
        assert_eq!(
            booti_address(0x4000_0000, 0x4040_0000, 0, true),
            0x4040_0000
        );
        assert_eq!(
            booti_address(0x4000_0000, 0x4050_0000, 0, true),
            0x4060_0000
        );
        assert_eq!(
            booti_address(0x4000_0000, 0x4040_0000, 0x8_0000, false),
            0x4008_0000
        );
    }
}
