//! The boot-info block the shim hands to its payload in x1 (arm64) or rdi (x86_64).
//! Versioned `#[repr(C)]` plain data: the payload reads it with the same type.
//! Layout changes bump `VERSION`; fields are only ever appended.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `b"SHIMBOOT"` read as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHIMBOOT");
/// Version of the layout below (2 added `phys_bits` and `virt_bits`, 3 the timings).
pub const VERSION: u32 = 3;

/// Entropy source bits, as in [`BootInfo::entropy_sources`].
pub mod source {
    /// `/chosen/kaslr-seed` (arm64 device tree).
    pub const KASLR_SEED: u32 = 1 << 0;
    /// `/chosen/rng-seed` (arm64 device tree).
    pub const RNG_SEED: u32 = 1 << 1;
    /// The CPU's random number instruction (RNDR on arm64, RDRAND on x86_64).
    pub const CPU_RNG: u32 = 1 << 2;
    /// RDSEED (x86_64).
    pub const CPU_SEED: u32 = 1 << 3;
    /// A free-running counter (CNTPCT_EL0, RDTSC): present everywhere, never strong.
    pub const COUNTER: u32 = 1 << 4;
}

/// What the payload learns about its own placement. All addresses are physical
/// unless named `virt_*`; the block itself lies in identity-mapped memory.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct BootInfo {
    /// [`MAGIC`].
    pub magic: u64,
    /// [`VERSION`].
    pub version: u32,
    /// `size_of::<BootInfo>()` as the shim built it.
    pub size: u32,
    /// Physical address of the payload's lowest loaded byte (its link address 0).
    pub phys_base: u64,
    /// Virtual address the payload was relocated to run at (its link address 0).
    pub virt_base: u64,
    /// Bytes from `phys_base`/`virt_base` that the loaded image spans (bss included).
    pub image_size: u64,
    /// Physical address and size of the memory the shim still occupies (itself, its
    /// page tables, this block). The payload must not reuse it before it is done with
    /// the page tables and this block.
    pub shim_base: u64,
    pub shim_size: u64,
    /// Physical address of the device tree (arm64) or boot_params (x86_64).
    pub fdt_or_boot_params: u64,
    /// Bitmask of [`source`] bits that contributed to the placement.
    pub entropy_sources: u32,
    /// 1 if at least one strong source was present, else 0.
    pub entropy_strong: u32,
    /// Number of physical slots the placement was drawn from (1 when not randomized).
    pub phys_slots: u64,
    /// Bits of entropy behind the (physical, virtual) choice: `phys_bits + virt_bits`
    /// when a strong source contributed; 0 when randomization was off, and 0 when only
    /// the counter did (a counter is guessable: the layout's bits are not entropy).
    pub kaslr_bits: u32,
    /// 1 if `nokaslr` (or a loader-chosen offset) fixed the placement.
    pub fixed: u32,
    /// A fresh 32-byte seed, drawn from the same mixer after placement, for the
    /// payload's own randomization. Never equal to anything that chose the placement.
    pub seed: [u8; 32],
    /// log2 of the physical slots drawn from (rounded down), and the bits of the
    /// virtual displacement: what the layout allowed, whatever the sources.
    pub phys_bits: u32,
    pub virt_bits: u32,
    /// The counter the timings below count (CNTPCT_EL0; the TSC): its frequency in Hz,
    /// 0 if unknown.
    pub counter_hz: u64,
    /// The counter at the shim's entry (on QEMU: since reset, what firmware and loader
    /// took).
    pub entry_ticks: u64,
    /// Ticks from the shim's entry to the jump, as `timing total=` prints.
    pub total_ticks: u64,
    /// Ticks in the phases `timing` prints: unpacking (inflate), checking the unpacked
    /// payload's SHA-256, and relocating.
    pub unpack_ticks: u64,
    pub verify_ticks: u64,
    pub relocate_ticks: u64,
}

impl BootInfo {
    /// Reads a boot-info block from bytes, checking magic, version and size.
    pub fn read(bytes: &[u8]) -> Option<BootInfo> {
        let (info, _) = BootInfo::read_from_prefix(bytes).ok()?;
        let ok = info.magic == MAGIC
            && info.version == VERSION
            && info.size as usize == core::mem::size_of::<BootInfo>();
        ok.then_some(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    /// The layout is an ABI: the README's table is this test.
    #[test]
    fn layout_matches_the_readme() {
        assert_eq!(size_of::<BootInfo>(), 176);
        assert_eq!(offset_of!(BootInfo, version), 0x08);
        assert_eq!(offset_of!(BootInfo, phys_base), 0x10);
        assert_eq!(offset_of!(BootInfo, virt_base), 0x18);
        assert_eq!(offset_of!(BootInfo, image_size), 0x20);
        assert_eq!(offset_of!(BootInfo, shim_base), 0x28);
        assert_eq!(offset_of!(BootInfo, fdt_or_boot_params), 0x38);
        assert_eq!(offset_of!(BootInfo, entropy_sources), 0x40);
        assert_eq!(offset_of!(BootInfo, phys_slots), 0x48);
        assert_eq!(offset_of!(BootInfo, kaslr_bits), 0x50);
        assert_eq!(offset_of!(BootInfo, seed), 0x58);
        assert_eq!(offset_of!(BootInfo, phys_bits), 0x78);
        assert_eq!(offset_of!(BootInfo, virt_bits), 0x7c);
        assert_eq!(offset_of!(BootInfo, counter_hz), 0x80);
        assert_eq!(offset_of!(BootInfo, entry_ticks), 0x88);
        assert_eq!(offset_of!(BootInfo, total_ticks), 0x90);
        assert_eq!(offset_of!(BootInfo, unpack_ticks), 0x98);
        assert_eq!(offset_of!(BootInfo, verify_ticks), 0xa0);
        assert_eq!(offset_of!(BootInfo, relocate_ticks), 0xa8);
    }

    #[test]
    fn read_checks_magic_version_and_size() {
        let info = BootInfo {
            magic: MAGIC,
            version: VERSION,
            size: 176,
            ..Default::default()
        };
        assert_eq!(BootInfo::read(info.as_bytes()), Some(info));
        let bad = BootInfo { version: 1, ..info };
        assert_eq!(BootInfo::read(bad.as_bytes()), None);
        assert_eq!(BootInfo::read(&info.as_bytes()[..100]), None);
    }
}
