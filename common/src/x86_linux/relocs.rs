//! vmlinux.relocs applied for a new virtual base, as misc.c's handle_relocations(), and
//! the sizes and virtual range misc.c and kaslr.c work with.
//!
//! The table is what arch/x86/tools/relocs.c appends to vmlinux.bin, LE u32 words, read
//! backwards from the end of the decompressed output:
//!
//! ```text
//! before v6.15:  [0][rel64 ...][0][rel32neg ...][0][rel32 ...]   (ThreeLists)
//! v6.15 on:      [0][rel64 ...][0][rel32 ...]                    (TwoLists, a8327be7b2aa)
//!                ^ vmlinux.bin ends here                  output_len ^
//! ```
//!
//! Each entry is the link-time virtual address of a field, sign-extended from 32 bits;
//! the field lies at `VA - __START_KERNEL_map - LOAD_PHYSICAL_ADDR` in the slot once the
//! segments are laid out. rel32 fields get `+= delta`, rel32neg `-= delta`, rel64
//! `+= delta`, in that order.

use core::fmt;

use super::bzimage::{BzImage, KernelVersion};
use super::vmlinux::Vmlinux;
use super::MIN_KERNEL_ALIGN;

/// `__START_KERNEL_map`: the virtual address of physical 0 in the kernel's mapping;
/// `_text` runs at `__START_KERNEL_map + LOAD_PHYSICAL_ADDR` before relocation.
pub const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;
/// `KERNEL_IMAGE_SIZE` with CONFIG_RANDOMIZE_BASE (arch/x86/include/asm/page_64_types.h):
/// the kernel's whole virtual range, `[__START_KERNEL_map, + 1 GiB)`. Kernels built
/// without RANDOMIZE_BASE map only 512 MiB; the header does not say which.
pub const KERNEL_IMAGE_SIZE: u64 = 1 << 30;

/// The first release whose table has two lists: commit a8327be7b2aa ("x86/boot/64:
/// Remove inverse relocations", merged for v6.15-rc1 with the percpu rework that made
/// the inverse list empty).
const TWO_LISTS_SINCE: KernelVersion = KernelVersion::new(6, 15, 0);

/// How the relocation table is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelocLayout {
    /// `[0][rel64...][0][rel32neg...][0][rel32...]`: kernels before v6.15.
    ThreeLists,
    /// `[0][rel64...][0][rel32...]`: v6.15 and later.
    TwoLists,
}

/// One list of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelocKind {
    /// `*(u32 *)ptr += delta`.
    Rel32,
    /// `*(s32 *)ptr -= delta` (percpu references; gone in v6.15).
    Rel32Neg,
    /// `*(u64 *)ptr += delta`.
    Rel64,
}

impl RelocKind {
    fn width(self) -> u64 {
        match self {
            RelocKind::Rel32 | RelocKind::Rel32Neg => 4,
            RelocKind::Rel64 => 8,
        }
    }
}

impl fmt::Display for RelocKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RelocKind::Rel32 => "32-bit",
            RelocKind::Rel32Neg => "inverse 32-bit",
            RelocKind::Rel64 => "64-bit",
        })
    }
}

impl RelocLayout {
    /// The lists in the order they are read (backwards from the end).
    fn lists(self) -> &'static [RelocKind] {
        match self {
            RelocLayout::ThreeLists => &[RelocKind::Rel32, RelocKind::Rel32Neg, RelocKind::Rel64],
            RelocLayout::TwoLists => &[RelocKind::Rel32, RelocKind::Rel64],
        }
    }
}

/// How many fields each list holds, and where the table starts in the buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelocCounts {
    pub rel32: usize,
    /// Always 0 with [`RelocLayout::TwoLists`].
    pub rel32neg: usize,
    pub rel64: usize,
    /// The table's first byte (its leading 0): always the ELF file's end.
    pub table_start: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelocError {
    /// `output_len` is larger than the buffer.
    OutputPastBuffer { output_len: u64, buf_len: u64 },
    /// `output_len` is shorter than the ELF file: there is no room for a table.
    OutputShorterThanElf { output_len: u64, elf_len: u64 },
    /// Reading backwards, the `list` ran into the ELF file (at byte `at`) before its 0.
    TableRunsOff { list: RelocKind, at: u64 },
    /// The lists end at `table_start`, short of the ELF file's end: bytes between them
    /// belong to no list. The layout is the wrong one for this kernel.
    TableNotAtElfEnd { table_start: u64, elf_len: u64 },
    /// An entry whose field lies outside the laid-out file bytes `[0, file_end)`
    /// (misc.c: "32-bit relocation outside of kernel!").
    OutsideKernel { list: RelocKind, entry: u32 },
    /// An entry whose field overlaps the relocation table.
    InTable { list: RelocKind, entry: u32 },
    /// Neither layout reads the table to exactly the ELF file's end.
    NoLayoutFits,
}

impl fmt::Display for RelocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use RelocError as E;
        match *self {
            E::OutputPastBuffer {
                output_len,
                buf_len,
            } => write!(
                f,
                "output of {output_len:#x} bytes is longer than the {buf_len:#x}-byte buffer"
            ),
            E::OutputShorterThanElf {
                output_len,
                elf_len,
            } => write!(
                f,
                "output of {output_len:#x} bytes leaves no relocation table after the {elf_len:#x}-byte ELF file"
            ),
            E::TableRunsOff { list, at } => write!(
                f,
                "the {list} relocation list runs into the ELF file at {at:#x} (wrong table layout?)"
            ),
            E::TableNotAtElfEnd {
                table_start,
                elf_len,
            } => write!(
                f,
                "the relocation lists end at {table_start:#x}, not at the ELF file's end {elf_len:#x} (wrong table layout?)"
            ),
            E::OutsideKernel { list, entry } => write!(
                f,
                "{list} relocation {entry:#010x} outside of kernel"
            ),
            E::InTable { list, entry } => write!(
                f,
                "{list} relocation {entry:#010x} points into the relocation table"
            ),
            E::NoLayoutFits => f.write_str(
                "the relocation table fits neither the two-list nor the three-list layout",
            ),
        }
    }
}

/// The layout a kernel of `version` writes: two lists from v6.15 on, three before;
/// `None` when the version is unknown (then [`detect_layout`] tells from the table).
pub fn reloc_layout(version: Option<KernelVersion>) -> Option<RelocLayout> {
    version.map(|v| match v >= TWO_LISTS_SINCE {
        true => RelocLayout::TwoLists,
        false => RelocLayout::ThreeLists,
    })
}

fn word(buf: &[u8], at: usize) -> Option<u32> {
    buf.get(at..)?
        .first_chunk::<4>()
        .map(|w| u32::from_le_bytes(*w))
}

/// Reads the whole table and checks every entry without writing: the lists as `layout`
/// says, each ended by a 0 read before the ELF file's end, the first 0 exactly at that
/// end, and each field inside `[0, file_end)` and clear of the table.
pub fn scan_relocs(
    buf: &[u8],
    output_len: usize,
    vm: &Vmlinux,
    layout: RelocLayout,
) -> Result<RelocCounts, RelocError> {
    let (out, elf_len) = (output_len as u64, vm.elf_len());
    if out > buf.len() as u64 {
        return Err(RelocError::OutputPastBuffer {
            output_len: out,
            buf_len: buf.len() as u64,
        });
    }
    if out < elf_len {
        return Err(RelocError::OutputShorterThanElf {
            output_len: out,
            elf_len,
        });
    }
    let mut counts = RelocCounts::default();
    let mut pos = output_len;
    for &list in layout.lists() {
        let (zero, n) = scan_list(buf, pos, vm, out, list)?;
        pos = zero;
        match list {
            RelocKind::Rel32 => counts.rel32 = n,
            RelocKind::Rel32Neg => counts.rel32neg = n,
            RelocKind::Rel64 => counts.rel64 = n,
        }
    }
    counts.table_start = pos as u64;
    if counts.table_start != elf_len {
        return Err(RelocError::TableNotAtElfEnd {
            table_start: counts.table_start,
            elf_len,
        });
    }
    Ok(counts)
}

/// Checks one `list`, read backwards from `pos` to its 0 (before the ELF file's end):
/// returns where the 0 is and how many entries came before it. Each entry's field
/// (`(long)(int)entry + map`, map taking the slot to offset 0) must lie inside the
/// laid-out file bytes `[0, file_end)` and clear of the table `[elf_len, output_len)`.
/// One list a loop, the bounds computed once.
fn scan_list(
    buf: &[u8],
    mut pos: usize,
    vm: &Vmlinux,
    output_len: u64,
    list: RelocKind,
) -> Result<(usize, usize), RelocError> {
    let elf_len = vm.elf_len();
    let base = START_KERNEL_MAP.wrapping_add(vm.load_physical_addr());
    // A field's offset may be at most `last` (so it ends by the file's end), and if it
    // starts before the table's end it must end by the table's start.
    let last = vm.file_end().checked_sub(list.width());
    let below_table = elf_len.checked_sub(list.width());
    let mut n = 0usize;
    loop {
        let at = pos.checked_sub(4).filter(|&a| a as u64 >= elf_len);
        let at = at.ok_or(RelocError::TableRunsOff {
            list,
            at: pos as u64,
        })?;
        pos = at;
        let entry = word(buf, at).ok_or(RelocError::TableRunsOff {
            list,
            at: at as u64,
        })?;
        if entry == 0 {
            return Ok((pos, n));
        }
        let offset = (i64::from(entry as i32) as u64).wrapping_sub(base);
        if last.is_none_or(|last| offset > last) {
            return Err(RelocError::OutsideKernel { list, entry });
        }
        if offset < output_len && below_table.is_none_or(|b| offset > b) {
            return Err(RelocError::InTable { list, entry });
        }
        n = n.wrapping_add(1);
    }
}

/// The layout whose lists end exactly at the ELF file's end (at most one can: the
/// three-list reading is the two-list one plus at least one more word).
pub fn detect_layout(
    buf: &[u8],
    output_len: usize,
    vm: &Vmlinux,
) -> Result<RelocLayout, RelocError> {
    let three = scan_relocs(buf, output_len, vm, RelocLayout::ThreeLists);
    let two = scan_relocs(buf, output_len, vm, RelocLayout::TwoLists);
    match (three, two) {
        (Ok(_), Err(_)) => Ok(RelocLayout::ThreeLists),
        (Err(_), Ok(_)) => Ok(RelocLayout::TwoLists),
        _ => Err(RelocError::NoLayoutFits),
    }
}

/// handle_relocations(): applies the table at the end of `buf[..output_len]` to the
/// laid-out kernel in `buf` (after [`place_segments`](super::place_segments)) so it runs
/// at virtual `__START_KERNEL_map + LOAD_PHYSICAL_ADDR + delta`, i.e.
/// `delta = virt_addr - LOAD_PHYSICAL_ADDR` with `virt_addr` from [`virt_addr`]. The
/// additions wrap as the kernel's `unsigned long` arithmetic does; 32-bit fields take
/// the low 32 bits of `delta`. The whole table is checked ([`scan_relocs`]) before the
/// first write, so an error leaves `buf` as it was. `delta` 0 writes nothing.
pub fn relocate(
    buf: &mut [u8],
    output_len: usize,
    vm: &Vmlinux,
    delta: u64,
    layout: RelocLayout,
) -> Result<RelocCounts, RelocError> {
    let counts = scan_relocs(buf, output_len, vm, layout)?;
    if delta == 0 {
        return Ok(counts);
    }
    // Every read and field was checked by the scan: the loops below only keep their
    // reads and writes in `buf` (errors here cannot happen but are still reported).
    // 32-bit fields take the low half of `delta`, as the kernel's `int` arithmetic does.
    let base = START_KERNEL_MAP.wrapping_add(vm.load_physical_addr());
    let d32 = delta as u32;
    let mut pos = output_len;
    for &list in layout.lists() {
        pos = match list {
            RelocKind::Rel32 => apply(buf, pos, base, list, |f: [u8; 4]| {
                u32::from_le_bytes(f).wrapping_add(d32).to_le_bytes()
            })?,
            RelocKind::Rel32Neg => apply(buf, pos, base, list, |f: [u8; 4]| {
                u32::from_le_bytes(f).wrapping_sub(d32).to_le_bytes()
            })?,
            RelocKind::Rel64 => apply(buf, pos, base, list, |f: [u8; 8]| {
                u64::from_le_bytes(f).wrapping_add(delta).to_le_bytes()
            })?,
        };
    }
    Ok(counts)
}

/// Applies one `list` of a table [`scan_relocs`] accepted, reading backwards from
/// `pos` to the list's 0, whose position it returns: each field (at `entry`, sign
/// extended, less `base`) becomes `patch` of it. One list a loop, so a field takes a
/// dozen instructions (Debian's x86 kernel has 202,926).
fn apply<const W: usize>(
    buf: &mut [u8],
    mut pos: usize,
    base: u64,
    list: RelocKind,
    patch: impl Fn([u8; W]) -> [u8; W],
) -> Result<usize, RelocError> {
    loop {
        let at = pos.checked_sub(4);
        let entry = at.and_then(|at| word(buf, at));
        let (Some(at), Some(entry)) = (at, entry) else {
            return Err(RelocError::TableRunsOff {
                list,
                at: pos as u64,
            });
        };
        pos = at;
        if entry == 0 {
            return Ok(pos);
        }
        let offset = (i64::from(entry as i32) as u64).wrapping_sub(base);
        let field = usize::try_from(offset)
            .ok()
            .and_then(|o| buf.get_mut(o..)?.first_chunk_mut::<W>())
            .ok_or(RelocError::OutsideKernel { list, entry })?;
        *field = patch(*field);
    }
}

/// `x` rounded up to 2 MiB, or `u64::MAX` (more than any slot holds) if that overflows.
fn align_up_2m(x: u64) -> u64 {
    x.checked_next_multiple_of(MIN_KERNEL_ALIGN)
        .unwrap_or(u64::MAX)
}

/// The bytes the slot must hold, as misc.c's extract_kernel() computes `needed_size`
/// (`ALIGN(max(output_len, _end - _text), 2 MiB)`), with the header's `init_size` also
/// in the max: boot.rst promises the kernel `init_size` bytes from its start, and the
/// header can be read before anything is decompressed, so [`slot_size`] can choose the
/// slot first. header.S makes `init_size >= _end - _text`, so this is [`slot_size`]
/// unless the header understates the image (then the slot chosen by it is too small and
/// the caller must refuse).
pub fn needed_size(bz: &BzImage<'_>, vm: &Vmlinux) -> u64 {
    align_up_2m(bz.init_size.max(bz.decompressed_len).max(vm.image_size()))
}

/// `ALIGN(max(init_size, decompressed length), 2 MiB)`: the slot size known from the
/// header alone, before decompressing (see [`needed_size`]).
pub fn slot_size(bz: &BzImage<'_>) -> u64 {
    align_up_2m(bz.init_size.max(bz.decompressed_len))
}

/// The number of virtual bases kaslr.c's find_random_virt_addr() chooses from for an
/// image of `needed` bytes: `1 + (KERNEL_IMAGE_SIZE - LOAD_PHYSICAL_ADDR - needed) /
/// align`, the bases being `LOAD_PHYSICAL_ADDR + k * align` with the whole image below
/// KERNEL_IMAGE_SIZE. `align` is the header's `kernel_alignment` (CONFIG_PHYSICAL_ALIGN);
/// 0 slots if it is not a power of two of at least 2 MiB, or the image does not fit.
pub fn virt_slots(needed: u64, vm: &Vmlinux, align: u64) -> u64 {
    if !align.is_power_of_two() || align < MIN_KERNEL_ALIGN {
        return 0;
    }
    KERNEL_IMAGE_SIZE
        .checked_sub(vm.load_physical_addr())
        .and_then(|room| room.checked_sub(needed))
        .and_then(|spare| spare.checked_div(align)?.checked_add(1))
        .unwrap_or(0)
}

/// The `index`-th virtual base, `LOAD_PHYSICAL_ADDR + index * align` (an offset from
/// `__START_KERNEL_map`); `index` below [`virt_slots`]. `None` for a bad `align` or an
/// address past KERNEL_IMAGE_SIZE. `delta` for [`relocate`] is this minus
/// LOAD_PHYSICAL_ADDR.
pub fn virt_addr(index: u64, vm: &Vmlinux, align: u64) -> Option<u64> {
    if !align.is_power_of_two() || align < MIN_KERNEL_ALIGN {
        return None;
    }
    index
        .checked_mul(align)?
        .checked_add(vm.load_physical_addr())
        .filter(|&a| a < KERNEL_IMAGE_SIZE)
}

#[cfg(test)]
mod tests {
    use super::super::vmlinux::tests::{elf, Seg, KVA, LOAD};
    use super::super::vmlinux::{parse_vmlinux, place_segments};
    use super::*;

    /// A field's relocation entry: its link-time VA, truncated to 32 bits.
    fn va(offset: u64) -> u32 {
        (KVA + LOAD + offset) as u32
    }

    /// One segment of 0x1000 file bytes (0x2000 in memory) at LOAD from file offset
    /// 0x1000, then `table` as LE words: the ELF ends at 0x2000.
    fn kernel(table: &[u32]) -> (Vec<u8>, usize) {
        let segs: [Seg; 1] = [(0x1000, LOAD, KVA + LOAD, 0x1000, 0x2000)];
        let mut f = elf(&segs, 0x2000);
        for w in table {
            f.extend(w.to_le_bytes());
        }
        let n = f.len();
        f.resize(0x4000, 0);
        (f, n)
    }

    fn three() -> Vec<u32> {
        vec![
            0,
            va(0x100),
            va(0x10c),
            0,
            va(0x200),
            0,
            va(0x300),
            va(0x304),
            va(0x31),
        ]
    }

    fn two() -> Vec<u32> {
        vec![0, va(0x100), va(0x10c), 0, va(0x300), va(0x304), va(0x31)]
    }

    fn placed(table: &[u32]) -> (Vec<u8>, usize, Vmlinux) {
        let (mut f, n) = kernel(table);
        let vm = parse_vmlinux(&f[..n]).unwrap();
        place_segments(&mut f, n, &vm).unwrap();
        (f, n, vm)
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn both_layouts_apply_as_handle_relocations() {
        let delta = 0x3e0_0000u64;
        for (layout, table) in [
            (RelocLayout::ThreeLists, three()),
            (RelocLayout::TwoLists, two()),
        ] {
            let (mut f, n, vm) = placed(&table);
            let before = f.clone();
            let counts = relocate(&mut f, n, &vm, delta, layout).unwrap();
            let neg = usize::from(layout == RelocLayout::ThreeLists);
            assert_eq!(
                counts,
                RelocCounts {
                    rel32: 3,
                    rel32neg: neg,
                    rel64: 2,
                    table_start: 0x2000
                }
            );
            assert_eq!(
                u32_at(&f, 0x300),
                u32_at(&before, 0x300).wrapping_add(delta as u32)
            );
            assert_eq!(
                u32_at(&f, 0x304),
                u32_at(&before, 0x304).wrapping_add(delta as u32)
            );
            // Unaligned fields are fine.
            assert_eq!(
                u32_at(&f, 0x31),
                u32_at(&before, 0x31).wrapping_add(delta as u32)
            );
            assert_eq!(
                u64_at(&f, 0x100),
                u64_at(&before, 0x100).wrapping_add(delta)
            );
            assert_eq!(
                u64_at(&f, 0x10c),
                u64_at(&before, 0x10c).wrapping_add(delta)
            );
            if neg == 1 {
                assert_eq!(
                    u32_at(&f, 0x200),
                    u32_at(&before, 0x200).wrapping_sub(delta as u32)
                );
            }
            let changed: Vec<usize> = (0..f.len()).filter(|&i| f[i] != before[i]).collect();
            assert!(changed
                .iter()
                .all(|&i| [0x31, 0x100, 0x10c, 0x200, 0x300, 0x304]
                    .iter()
                    .any(|&s| (s..s + 8).contains(&i))));
            // delta 0 changes nothing, and still reads the table.
            let (mut f, n, vm) = placed(&table);
            let before = f.clone();
            assert_eq!(relocate(&mut f, n, &vm, 0, layout), Ok(counts));
            assert_eq!(f, before);
        }
    }

    #[test]
    fn the_layout_by_version_and_by_table() {
        let v = |a, b| Some(KernelVersion::new(a, b, 0));
        assert_eq!(reloc_layout(v(6, 1)), Some(RelocLayout::ThreeLists));
        assert_eq!(reloc_layout(v(6, 14)), Some(RelocLayout::ThreeLists));
        assert_eq!(reloc_layout(v(6, 15)), Some(RelocLayout::TwoLists));
        assert_eq!(reloc_layout(v(7, 0)), Some(RelocLayout::TwoLists));
        assert_eq!(reloc_layout(v(5, 99)), Some(RelocLayout::ThreeLists));
        assert_eq!(reloc_layout(None), None);
        let (f, n, vm) = placed(&three());
        assert_eq!(detect_layout(&f, n, &vm), Ok(RelocLayout::ThreeLists));
        let (f, n, vm) = placed(&two());
        assert_eq!(detect_layout(&f, n, &vm), Ok(RelocLayout::TwoLists));
        // An empty inverse list: still told apart.
        let (f, n, vm) = placed(&[0, va(0x100), 0, 0, va(0x300)]);
        assert_eq!(detect_layout(&f, n, &vm), Ok(RelocLayout::ThreeLists));
    }

    #[test]
    fn the_wrong_layout_is_refused_before_any_write() {
        // Three lists read as two: the lists end at the middle 0, short of the ELF end.
        let (mut f, n, vm) = placed(&three());
        let before = f.clone();
        assert_eq!(
            relocate(&mut f, n, &vm, 0x20_0000, RelocLayout::TwoLists),
            Err(RelocError::TableNotAtElfEnd {
                table_start: 0x2000 + 3 * 4,
                elf_len: 0x2000
            })
        );
        assert_eq!(f, before);
        // Two lists read as three: the third runs into the ELF file.
        let (mut f, n, vm) = placed(&two());
        let before = f.clone();
        assert_eq!(
            relocate(&mut f, n, &vm, 0x20_0000, RelocLayout::ThreeLists),
            Err(RelocError::TableRunsOff {
                list: RelocKind::Rel64,
                at: 0x2000
            })
        );
        assert_eq!(f, before);
    }

    #[test]
    fn bad_entries_and_tables() {
        let run = |table: &[u32]| {
            let (mut f, n, vm) = placed(table);
            let before = f.clone();
            let r = relocate(&mut f, n, &vm, 0x40_0000, RelocLayout::TwoLists);
            assert_eq!(f, before, "{r:?}");
            r.unwrap_err()
        };
        let out = |list, entry| RelocError::OutsideKernel { list, entry };
        // Below the kernel, at file_end, straddling it, a positive 32-bit value.
        for e in [va(0) - 1, va(0x1000), va(0xffd), 0x10_0000] {
            assert_eq!(run(&[0, 0, e]), out(RelocKind::Rel32, e));
        }
        assert_eq!(run(&[0, va(0xff9), 0]), out(RelocKind::Rel64, va(0xff9)));
        // The last whole field below file_end is fine.
        let (mut f, n, vm) = placed(&[0, va(0xff8), 0, va(0xffc)]);
        assert!(relocate(&mut f, n, &vm, 1, RelocLayout::TwoLists).is_ok());
        // No terminating zeros: the first list runs into the ELF file.
        assert_eq!(
            run(&[va(0x10)]),
            RelocError::TableRunsOff {
                list: RelocKind::Rel32,
                at: 0x2000
            }
        );
        // Only one zero.
        assert_eq!(
            run(&[0, va(0x10)]),
            RelocError::TableRunsOff {
                list: RelocKind::Rel64,
                at: 0x2000
            }
        );
        // Extra words before the table's first zero.
        assert_eq!(
            run(&[7, 0, 0, va(0x10)]),
            RelocError::TableNotAtElfEnd {
                table_start: 0x2004,
                elf_len: 0x2000
            }
        );
        let err = relocate(
            &mut [0u8; 16],
            17,
            &placed(&two()).2,
            1,
            RelocLayout::TwoLists,
        );
        assert_eq!(
            err,
            Err(RelocError::OutputPastBuffer {
                output_len: 17,
                buf_len: 16
            })
        );
        let (mut f, _, vm) = placed(&two());
        assert_eq!(
            relocate(&mut f, 0x1ffc, &vm, 1, RelocLayout::TwoLists),
            Err(RelocError::OutputShorterThanElf {
                output_len: 0x1ffc,
                elf_len: 0x2000
            })
        );
        assert_eq!(
            RelocError::OutsideKernel {
                list: RelocKind::Rel32,
                entry: 0x10
            }
            .to_string(),
            "32-bit relocation 0x00000010 outside of kernel"
        );
    }

    #[test]
    fn every_cut_and_flip_of_the_table_fails_cleanly() {
        use proptest::prelude::*;
        for (layout, table) in [
            (RelocLayout::ThreeLists, three()),
            (RelocLayout::TwoLists, two()),
        ] {
            let (f, n, vm) = placed(&table);
            // Shorter outputs: the end moves into the table; only whole tables pass.
            for cut in 0..n {
                let mut g = f.clone();
                let r = relocate(&mut g, cut, &vm, 0x20_0000, layout);
                if r.is_err() {
                    assert_eq!(g, f, "cut {cut}: {r:?}");
                }
            }
            proptest!(|(at in 0x2000..n, bit in 0..8u8, delta in any::<u64>())| {
                let mut g = f.clone();
                g[at] ^= 1 << bit;
                let before = g.clone();
                if relocate(&mut g, n, &vm, delta, layout).is_err() {
                    prop_assert_eq!(g, before);
                }
            });
        }
    }

    #[test]
    fn a_field_inside_the_table_is_refused() {
        // Segments laid out past the output (moved up beyond the table): fields there
        // are fine, fields on the table are not.
        let segs: [Seg; 2] = [
            (0x1000, LOAD, KVA + LOAD, 0x100, 0x100),
            (0x1100, LOAD + 0x3000, KVA + LOAD + 0x3000, 0x100, 0x100),
        ];
        let mut f = elf(&segs, 0x1200);
        for w in [0, va(0x1204), 0, va(0x3010)] {
            f.extend(w.to_le_bytes());
        }
        let n = f.len();
        f.resize(0x4000, 0);
        let vm = parse_vmlinux(&f[..n]).unwrap();
        assert_eq!((vm.elf_len(), vm.file_end()), (0x1200, 0x3100));
        assert_eq!(
            scan_relocs(&f, n, &vm, RelocLayout::TwoLists),
            Err(RelocError::InTable {
                list: RelocKind::Rel64,
                entry: va(0x1204)
            })
        );
    }

    #[test]
    fn sizes_and_virtual_slots() {
        let (_, _, vm) = placed(&two());
        // 6.1 cloud: LOAD_PHYSICAL_ADDR 16 MiB; a 52 MiB image leaves
        // (1024 - 16 - 52) / 2 + 1 = 479 bases.
        let mb = 1u64 << 20;
        assert_eq!(virt_slots(52 * mb, &vm, 2 * mb), 479);
        assert_eq!(virt_slots(52 * mb, &vm, 4 * mb), 240);
        assert_eq!(virt_slots(1008 * mb, &vm, 2 * mb), 1);
        assert_eq!(virt_slots(1008 * mb + 1, &vm, 2 * mb), 0);
        assert_eq!(virt_slots(52 * mb, &vm, 3 * mb), 0);
        assert_eq!(virt_slots(52 * mb, &vm, mb), 0);
        assert_eq!(virt_addr(0, &vm, 2 * mb), Some(LOAD));
        assert_eq!(virt_addr(478, &vm, 2 * mb), Some(LOAD + 478 * 2 * mb));
        assert_eq!(virt_addr(504, &vm, 2 * mb), None);
        assert_eq!(virt_addr(u64::MAX, &vm, 2 * mb), None);
        assert_eq!(virt_addr(1, &vm, 0), None);
        // The last base's image ends at KERNEL_IMAGE_SIZE exactly.
        let last = virt_addr(virt_slots(52 * mb, &vm, 2 * mb) - 1, &vm, 2 * mb).unwrap();
        assert_eq!(last + 52 * mb, KERNEL_IMAGE_SIZE);

        use super::super::bzimage::{parse_bzimage, tests::image};
        let mut payload = b"\x02\x21\x4c\x18".to_vec();
        payload.extend(0x32c_6e34u32.to_le_bytes());
        let file = image(&payload);
        let mut bz = parse_bzimage(&file).unwrap();
        // Debian's 6.1 cloud kernel: init_size 0x3378000, output 0x32c6e34.
        bz.init_size = 0x337_8000;
        assert_eq!(slot_size(&bz), 0x340_0000);
        assert_eq!(needed_size(&bz, &vm), 0x340_0000);
        bz.init_size = 0x1000;
        assert_eq!(needed_size(&bz, &vm), 0x340_0000, "the output counts");
        bz.decompressed_len = 0x1000;
        assert_eq!(
            needed_size(&bz, &vm),
            0x20_0000,
            "image_size 0x2000, aligned"
        );
        assert_eq!(slot_size(&bz), 0x20_0000);
        // A size past the last 2 MiB multiple is more than any slot, not wrapped to 0.
        bz.init_size = u64::MAX - 1;
        assert_eq!(
            (slot_size(&bz), needed_size(&bz, &vm)),
            (u64::MAX, u64::MAX)
        );
    }
}
