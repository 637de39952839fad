//! A distribution's x86_64 bzImage as the payload: what Linux's own decompressor
//! (arch/x86/boot/compressed/misc.c) and its EFI stub do, as pure steps on byte slices:
//! read the setup header, decompress the kernel, lay out vmlinux, apply its relocations.
//!
//! The order the boot sequence calls them in, all on one slot-sized buffer `buf` (the
//! random 2 MiB-aligned physical slot):
//!
//! ```text
//! parse_bzimage(file)                      setup header, payload, sizes, version
//! slot_size(bz)                            the slot to choose, from the header alone
//! decompress(bz, buf, ..) -> output_len    buf[..output_len] = vmlinux.bin ++ vmlinux.relocs
//! parse_vmlinux(&buf[..output_len])        PT_LOAD segments (by p_paddr), sizes, entry
//! needed_size(bz, vm) <= slot_size(bz)     or refuse: the header understated the image
//! place_segments(buf, output_len, vm)      each segment moved to p_paddr - LOAD_PHYSICAL_ADDR
//! reloc_layout(bz.version)                 or detect_layout(buf, output_len, vm)
//! relocate(buf, output_len, vm, delta, ..) delta = virt_addr(k, ..) - LOAD_PHYSICAL_ADDR,
//!                                          k uniform below virt_slots(needed, ..)
//! jump to slot + vm.entry_offset()         (startup_64, rsi = boot_params)
//! ```

mod bzimage;
mod decompress;
mod relocs;
mod vmlinux;

#[cfg(test)]
mod debian;

/// A file of Debian's x86_64 cloud kernel from the directory `SHIM_LINUX_X86` names
/// (`cargo xtask test` sets it), or `None`, saying so, when it is unset: the tests
/// that read it skip.
#[cfg(test)]
pub(crate) fn debian_file(name: &str) -> Option<std::vec::Vec<u8>> {
    let Some(dir) = std::env::var_os("SHIM_LINUX_X86") else {
        std::eprintln!("SHIM_LINUX_X86 unset: Debian's x86_64 kernel not read");
        return None;
    };
    let path = std::path::Path::new(&dir).join(name);
    Some(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

pub use crate::lz4::{Lz4Failure, LZ4_CHUNK};
pub use bzimage::{is_bzimage, parse_bzimage, BzImage, BzImageError, Compression, KernelVersion};
pub use decompress::{decodes, decompress, DecompressError};
pub use relocs::{
    detect_layout, needed_size, reloc_layout, relocate, scan_relocs, slot_size, virt_addr,
    virt_slots, RelocCounts, RelocError, RelocKind, RelocLayout, KERNEL_IMAGE_SIZE,
    START_KERNEL_MAP,
};
pub use vmlinux::{
    parse_vmlinux, place_segments, LoadSegment, Vmlinux, VmlinuxError, MAX_LOAD_SEGMENTS,
};

/// 2 MiB: the x86_64 kernel's `MIN_KERNEL_ALIGN` (PMD size). Physical and virtual
/// bases must both be multiples of it (misc.c checks both).
pub const MIN_KERNEL_ALIGN: u64 = 2 << 20;
