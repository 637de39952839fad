//! vmlinux.relocs applied for a new virtual base, as misc.c's handle_relocations().

/// `__START_KERNEL_map`: the virtual address of physical 0 in the kernel's mapping;
/// `_text` runs at `__START_KERNEL_map + LOAD_PHYSICAL_ADDR` before relocation.
pub const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;
/// `KERNEL_IMAGE_SIZE` with CONFIG_RANDOMIZE_BASE (arch/x86/include/asm/page_64_types.h):
/// the kernel's whole virtual range, `[__START_KERNEL_map, + 1 GiB)`.
pub const KERNEL_IMAGE_SIZE: u64 = 1 << 30;
