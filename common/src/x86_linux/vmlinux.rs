//! The decompressed kernel: `vmlinux.bin` (vmlinux after `objcopy -R .comment -S`, an
//! ELF64 x86_64 executable) followed by `vmlinux.relocs`. Its PT_LOAD segments are laid
//! out in place as misc.c's parse_elf() does: by `p_paddr`, never by `p_vaddr`.

use core::fmt;

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, KnownLayout};

use super::relocs::{KERNEL_IMAGE_SIZE, START_KERNEL_MAP};
use super::MIN_KERNEL_ALIGN;
use crate::elf::{Ehdr, Phdr};

/// At most this many PT_LOAD segments (vmlinux has 3 or 4: text, data, percpu on older
/// SMP kernels, init and bss).
pub const MAX_LOAD_SEGMENTS: usize = 8;

const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const EV_CURRENT: u8 = 1;
const ET_EXEC: u16 = 2;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const SHT_NOBITS: u32 = 8;
const EHDR_SIZE: u64 = 64;
const PHDR_SIZE: u64 = 56;
const SHDR_SIZE: u64 = 64;

#[repr(C)]
#[derive(FromBytes, KnownLayout, Immutable)]
struct Shdr {
    sh_name: U32,
    sh_type: U32,
    sh_flags: U64,
    sh_addr: U64,
    sh_offset: U64,
    sh_size: U64,
    sh_link: U32,
    sh_info: U32,
    sh_addralign: U64,
    sh_entsize: U64,
}

const _: () = {
    assert!(core::mem::size_of::<Ehdr>() == EHDR_SIZE as usize);
    assert!(core::mem::size_of::<Phdr>() == PHDR_SIZE as usize);
    assert!(core::mem::size_of::<Shdr>() == SHDR_SIZE as usize);
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmlinuxError {
    /// The decompressed kernel ends before `what` does.
    Truncated {
        what: &'static str,
        need: u64,
        have: u64,
    },
    BadMagic,
    NotElf64,
    NotLittleEndian,
    BadVersion,
    NotExecutable {
        e_type: u16,
    },
    NotX86_64 {
        e_machine: u16,
    },
    BadPhentsize {
        found: u16,
    },
    BadShentsize {
        found: u16,
    },
    NoLoadSegments,
    TooManySegments,
    /// `p_align` is not a multiple of 2 MiB (parse_elf: "Alignment of LOAD segment
    /// isn't multiple of 2MB").
    SegmentAlign {
        paddr: u64,
        align: u64,
    },
    FileszExceedsMemsz {
        paddr: u64,
    },
    /// A segment's file bytes lie outside the ELF file, or its addresses wrap.
    SegmentOutOfFile {
        paddr: u64,
    },
    /// PT_LOAD segments must come in `p_paddr` order.
    SegmentsUnsorted {
        paddr: u64,
    },
    /// A segment's memory overlaps the previous one's.
    SegmentsOverlap {
        paddr: u64,
    },
    /// The lowest `p_paddr` (LOAD_PHYSICAL_ADDR) is not a multiple of 2 MiB.
    LoadAddrMisaligned {
        paddr: u64,
    },
    /// A segment with a virtual address other than `__START_KERNEL_map + p_paddr` (the
    /// relocation entries assume that mapping; 0 is allowed: the percpu segment).
    VaddrMismatch {
        paddr: u64,
        vaddr: u64,
    },
    /// `_end - _text` exceeds KERNEL_IMAGE_SIZE.
    ImageTooLarge {
        size: u64,
    },
    EntryOutsideImage {
        entry: u64,
    },
    /// A section's bytes, as the section headers give them, lie outside the file.
    SectionOutOfFile {
        index: u64,
    },
    /// `output_len` is larger than the buffer.
    OutputPastBuffer {
        output_len: u64,
        buf_len: u64,
    },
    /// `output_len` is shorter than the ELF file the headers describe.
    OutputShorterThanElf {
        output_len: u64,
        elf_len: u64,
    },
    /// The buffer cannot hold the laid-out image (`image_size`) and the output.
    SlotTooSmall {
        need: u64,
        have: u64,
    },
    /// Moving the segment at `paddr` would overwrite the file bytes of the later segment
    /// at `other`, not yet moved.
    SegmentClobbers {
        paddr: u64,
        other: u64,
    },
    /// Moving the segment at `paddr` would overwrite the relocation table after the ELF.
    SegmentOverRelocs {
        paddr: u64,
    },
}

impl fmt::Display for VmlinuxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use VmlinuxError as E;
        match *self {
            E::Truncated { what, need, have } => write!(
                f,
                "vmlinux truncated: {what} needs {need:#x} bytes, there are {have:#x}"
            ),
            E::BadMagic => f.write_str("the kernel is not an ELF file"),
            E::NotElf64 => f.write_str("vmlinux is not ELFCLASS64"),
            E::NotLittleEndian => f.write_str("vmlinux is not little-endian"),
            E::BadVersion => f.write_str("vmlinux version is not EV_CURRENT"),
            E::NotExecutable { e_type } => {
                write!(f, "vmlinux e_type {e_type} is not ET_EXEC (2)")
            }
            E::NotX86_64 { e_machine } => {
                write!(f, "vmlinux e_machine {e_machine} is not x86_64 (62)")
            }
            E::BadPhentsize { found } => write!(f, "vmlinux e_phentsize {found}, want 56"),
            E::BadShentsize { found } => write!(f, "vmlinux e_shentsize {found}, want 64"),
            E::NoLoadSegments => f.write_str("vmlinux has no PT_LOAD segment"),
            E::TooManySegments => {
                write!(
                    f,
                    "vmlinux has more than {MAX_LOAD_SEGMENTS} PT_LOAD segments"
                )
            }
            E::SegmentAlign { paddr, align } => write!(
                f,
                "PT_LOAD at {paddr:#x}: alignment {align:#x} is not a multiple of 2 MiB"
            ),
            E::FileszExceedsMemsz { paddr } => {
                write!(f, "PT_LOAD at {paddr:#x}: p_filesz > p_memsz")
            }
            E::SegmentOutOfFile { paddr } => write!(
                f,
                "PT_LOAD at {paddr:#x} lies outside the file or its addresses wrap"
            ),
            E::SegmentsUnsorted { paddr } => {
                write!(f, "PT_LOAD at {paddr:#x} is out of p_paddr order")
            }
            E::SegmentsOverlap { paddr } => {
                write!(f, "PT_LOAD at {paddr:#x} overlaps the previous one")
            }
            E::LoadAddrMisaligned { paddr } => write!(
                f,
                "lowest PT_LOAD address {paddr:#x} (LOAD_PHYSICAL_ADDR) is not 2 MiB aligned"
            ),
            E::VaddrMismatch { paddr, vaddr } => write!(
                f,
                "PT_LOAD at {paddr:#x} has p_vaddr {vaddr:#x}, not __START_KERNEL_map + p_paddr"
            ),
            E::ImageTooLarge { size } => write!(
                f,
                "kernel image of {size:#x} bytes exceeds KERNEL_IMAGE_SIZE {KERNEL_IMAGE_SIZE:#x}"
            ),
            E::EntryOutsideImage { entry } => {
                write!(f, "entry point {entry:#x} is outside the loaded image")
            }
            E::SectionOutOfFile { index } => {
                write!(f, "section {index} lies outside the file")
            }
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
                "output of {output_len:#x} bytes is shorter than the {elf_len:#x}-byte ELF file"
            ),
            E::SlotTooSmall { need, have } => write!(
                f,
                "the kernel needs {need:#x} bytes laid out, the slot has {have:#x}"
            ),
            E::SegmentClobbers { paddr, other } => write!(
                f,
                "moving PT_LOAD at {paddr:#x} would overwrite PT_LOAD at {other:#x} before it moves"
            ),
            E::SegmentOverRelocs { paddr } => write!(
                f,
                "moving PT_LOAD at {paddr:#x} would overwrite the relocation table"
            ),
        }
    }
}

/// One PT_LOAD segment of vmlinux.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadSegment {
    /// File offset of its `filesz` bytes.
    pub offset: u64,
    /// Physical (link) address: where it goes, relative to LOAD_PHYSICAL_ADDR.
    pub paddr: u64,
    /// Virtual address (0 for the percpu segment of SMP kernels before 6.15).
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    /// `p_flags` (PF_X 1, PF_W 2, PF_R 4).
    pub flags: u32,
}

impl LoadSegment {
    /// Where its bytes go in the slot: `p_paddr - LOAD_PHYSICAL_ADDR`.
    fn dest(&self, load: u64) -> Option<u64> {
        self.paddr.checked_sub(load)
    }
}

/// A checked vmlinux: its segments and the sizes the loader needs, all relative to
/// LOAD_PHYSICAL_ADDR (the slot's first byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vmlinux {
    segments: [LoadSegment; MAX_LOAD_SEGMENTS],
    count: usize,
    load_physical_addr: u64,
    entry_offset: u64,
    image_size: u64,
    file_end: u64,
    elf_len: u64,
}

impl Vmlinux {
    /// The PT_LOAD segments, in `p_paddr` order.
    pub fn segments(&self) -> &[LoadSegment] {
        self.segments.get(..self.count).unwrap_or_default()
    }

    /// The lowest PT_LOAD `p_paddr`: the kernel's LOAD_PHYSICAL_ADDR (CONFIG_PHYSICAL_START
    /// aligned up; 0x1000000 by default), the address of `_text`.
    pub fn load_physical_addr(&self) -> u64 {
        self.load_physical_addr
    }

    /// `e_entry - LOAD_PHYSICAL_ADDR`: where startup_64 lies in the slot (parse_elf's
    /// return value, normally 0).
    pub fn entry_offset(&self) -> u64 {
        self.entry_offset
    }

    /// `max(p_paddr + p_memsz) - LOAD_PHYSICAL_ADDR`: what the laid-out image spans,
    /// `_end - _text` (misc.c's `kernel_total_size`) or more: Debian's 6.1 has a 4 MiB
    /// `.init.scratch` past `_end` inside the last segment, so 0x2e00000 against 0x2830000.
    pub fn image_size(&self) -> u64 {
        self.image_size
    }

    /// `max(p_paddr + p_filesz) - LOAD_PHYSICAL_ADDR`: the bytes that hold file data once
    /// laid out, up to `__bss_start` or, where a section with file bytes follows bss (as
    /// `.init.scratch` in Debian's 6.1), up to its end. Relocated fields must lie below
    /// it (misc.c's bound is `__bss_start`, which the header does not give).
    pub fn file_end(&self) -> u64 {
        self.file_end
    }

    /// Where the ELF file ends (the furthest of its headers, segments and sections):
    /// vmlinux.relocs starts here.
    pub fn elf_len(&self) -> u64 {
        self.elf_len
    }
}

/// `[offset, offset + len)` as indices, with the arithmetic checked.
fn range(offset: u64, len: u64) -> Option<(usize, usize)> {
    let start = usize::try_from(offset).ok()?;
    Some((start, start.checked_add(usize::try_from(len).ok()?)?))
}

/// Reads the ELF headers at the start of the decompressed kernel (`elf` may include the
/// relocation table after the file) and checks them as the laying out and relocating
/// need: x86_64 ET_EXEC, PT_LOAD segments in `p_paddr` order without overlap, each
/// `p_align` a multiple of 2 MiB (as parse_elf()), the lowest `p_paddr` 2 MiB aligned,
/// the entry inside the file bytes.
pub fn parse_vmlinux(elf: &[u8]) -> Result<Vmlinux, VmlinuxError> {
    let have = elf.len() as u64;
    let trunc = |what, need| VmlinuxError::Truncated { what, need, have };
    let (eh, _) = Ehdr::ref_from_prefix(elf).map_err(|_| trunc("the ELF header", EHDR_SIZE))?;
    let ident = &eh.e_ident;
    if ident.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err(VmlinuxError::BadMagic);
    }
    if ident.get(4) != Some(&ELFCLASS64) {
        return Err(VmlinuxError::NotElf64);
    }
    if ident.get(5) != Some(&ELFDATA2LSB) {
        return Err(VmlinuxError::NotLittleEndian);
    }
    if ident.get(6) != Some(&EV_CURRENT) || eh.e_version.get() != u32::from(EV_CURRENT) {
        return Err(VmlinuxError::BadVersion);
    }
    if eh.e_type.get() != ET_EXEC {
        return Err(VmlinuxError::NotExecutable {
            e_type: eh.e_type.get(),
        });
    }
    if eh.e_machine.get() != EM_X86_64 {
        return Err(VmlinuxError::NotX86_64 {
            e_machine: eh.e_machine.get(),
        });
    }
    if u64::from(eh.e_phentsize.get()) != PHDR_SIZE {
        return Err(VmlinuxError::BadPhentsize {
            found: eh.e_phentsize.get(),
        });
    }
    let phoff = eh.e_phoff.get();
    let phnum = u64::from(eh.e_phnum.get());
    let ph_end = phoff
        .checked_add(phnum * PHDR_SIZE)
        .ok_or(trunc("the program headers", u64::MAX))?;
    let (phdrs, _) = usize::try_from(phoff)
        .ok()
        .and_then(|o| elf.get(o..))
        .and_then(|b| <[Phdr]>::ref_from_prefix_with_elems(b, usize::from(eh.e_phnum.get())).ok())
        .ok_or(trunc("the program headers", ph_end))?;
    let mut elf_len = EHDR_SIZE.max(ph_end);

    let mut segments = [LoadSegment::default(); MAX_LOAD_SEGMENTS];
    let mut count = 0usize;
    for ph in phdrs {
        let (offset, filesz) = (ph.p_offset.get(), ph.p_filesz.get());
        let paddr = ph.p_paddr.get();
        let file_end = offset
            .checked_add(filesz)
            .filter(|&e| e <= have)
            .ok_or(VmlinuxError::SegmentOutOfFile { paddr })?;
        elf_len = elf_len.max(file_end);
        if ph.p_type.get() != PT_LOAD {
            continue;
        }
        let s = LoadSegment {
            offset,
            paddr,
            vaddr: ph.p_vaddr.get(),
            filesz,
            memsz: ph.p_memsz.get(),
            flags: ph.p_flags.get(),
        };
        let align = ph.p_align.get();
        if align % MIN_KERNEL_ALIGN != 0 {
            return Err(VmlinuxError::SegmentAlign { paddr, align });
        }
        if s.filesz > s.memsz {
            return Err(VmlinuxError::FileszExceedsMemsz { paddr });
        }
        if paddr.checked_add(s.memsz).is_none() {
            return Err(VmlinuxError::SegmentOutOfFile { paddr });
        }
        if s.vaddr != 0 && START_KERNEL_MAP.checked_add(paddr) != Some(s.vaddr) {
            return Err(VmlinuxError::VaddrMismatch {
                paddr,
                vaddr: s.vaddr,
            });
        }
        if let Some(prev) = count.checked_sub(1).and_then(|i| segments.get(i)) {
            if paddr < prev.paddr {
                return Err(VmlinuxError::SegmentsUnsorted { paddr });
            }
            // Checked when `prev` was taken.
            if prev
                .paddr
                .checked_add(prev.memsz)
                .is_none_or(|end| paddr < end)
            {
                return Err(VmlinuxError::SegmentsOverlap { paddr });
            }
        }
        *segments
            .get_mut(count)
            .ok_or(VmlinuxError::TooManySegments)? = s;
        count = count.checked_add(1).ok_or(VmlinuxError::TooManySegments)?;
    }
    let segs = segments.get(..count).unwrap_or_default();
    let load = segs.first().ok_or(VmlinuxError::NoLoadSegments)?.paddr;
    if load % MIN_KERNEL_ALIGN != 0 {
        return Err(VmlinuxError::LoadAddrMisaligned { paddr: load });
    }
    // Sorted and checked for wrapping above: each segment ends past `load`.
    let (mut image_size, mut file_end) = (0, 0);
    for s in segs {
        let end = |len: u64| s.paddr.checked_add(len)?.checked_sub(load);
        let out = VmlinuxError::SegmentOutOfFile { paddr: s.paddr };
        image_size = end(s.memsz).ok_or(out)?.max(image_size);
        file_end = end(s.filesz).ok_or(out)?.max(file_end);
    }
    if image_size > KERNEL_IMAGE_SIZE {
        return Err(VmlinuxError::ImageTooLarge { size: image_size });
    }
    let entry = eh.e_entry.get();
    let entry_offset = entry
        .checked_sub(load)
        .filter(|&o| o < file_end)
        .ok_or(VmlinuxError::EntryOutsideImage { entry })?;

    elf_len = elf_len.max(sections_end(elf, eh)?);
    Ok(Vmlinux {
        segments,
        count,
        load_physical_addr: load,
        entry_offset,
        image_size,
        file_end,
        elf_len,
    })
}

/// The end of the section header table and of every section with file bytes (0 without
/// section headers). With more than 0xff00 sections `e_shnum` is 0 and section 0's
/// `sh_size` holds the count (ELF extended numbering).
fn sections_end(elf: &[u8], eh: &Ehdr) -> Result<u64, VmlinuxError> {
    let shoff = eh.e_shoff.get();
    if shoff == 0 {
        return Ok(0);
    }
    if u64::from(eh.e_shentsize.get()) != SHDR_SIZE {
        return Err(VmlinuxError::BadShentsize {
            found: eh.e_shentsize.get(),
        });
    }
    let have = elf.len() as u64;
    let trunc = |need| VmlinuxError::Truncated {
        what: "the section headers",
        need,
        have,
    };
    let table = usize::try_from(shoff)
        .ok()
        .and_then(|o| elf.get(o..))
        .ok_or(trunc(shoff))?;
    let first = Shdr::ref_from_prefix(table)
        .map_err(|_| trunc(shoff.saturating_add(SHDR_SIZE)))?
        .0;
    let shnum = match eh.e_shnum.get() {
        0 => first.sh_size.get(),
        n => u64::from(n),
    };
    let table_end = shnum
        .checked_mul(SHDR_SIZE)
        .and_then(|n| shoff.checked_add(n))
        .ok_or(trunc(u64::MAX))?;
    let (shdrs, _) = usize::try_from(shnum)
        .ok()
        .and_then(|n| <[Shdr]>::ref_from_prefix_with_elems(table, n).ok())
        .ok_or(trunc(table_end))?;
    let mut end = table_end;
    for (index, sh) in (0u64..).zip(shdrs) {
        if sh.sh_type.get() == SHT_NOBITS || sh.sh_size.get() == 0 {
            continue;
        }
        let e = sh
            .sh_offset
            .get()
            .checked_add(sh.sh_size.get())
            .filter(|&e| e <= have)
            .ok_or(VmlinuxError::SectionOutOfFile { index })?;
        end = end.max(e);
    }
    Ok(end)
}

/// Lays the segments out in place as parse_elf() does: `buf` is the slot with the
/// decompressed kernel in `buf[..output_len]`; each segment's `p_filesz` bytes move
/// from `p_offset` to `p_paddr - LOAD_PHYSICAL_ADDR`, in order. Refused before anything
/// moves: a buffer smaller than the image or the output, a move that would overwrite a
/// later segment's bytes before they move or the relocation table after the ELF file.
/// bss is not cleared (the kernel clears its own, as after Linux's decompressor).
pub fn place_segments(buf: &mut [u8], output_len: usize, vm: &Vmlinux) -> Result<(), VmlinuxError> {
    let buf_len = buf.len() as u64;
    let output = output_len as u64;
    if output > buf_len {
        return Err(VmlinuxError::OutputPastBuffer {
            output_len: output,
            buf_len,
        });
    }
    if output < vm.elf_len {
        return Err(VmlinuxError::OutputShorterThanElf {
            output_len: output,
            elf_len: vm.elf_len,
        });
    }
    if vm.image_size > buf_len {
        return Err(VmlinuxError::SlotTooSmall {
            need: vm.image_size,
            have: buf_len,
        });
    }
    let load = vm.load_physical_addr;
    let segs = vm.segments();
    let mut rest = segs;
    while let Some((s, after)) = rest.split_first() {
        rest = after;
        // Within the image (checked in parse_vmlinux), so within `buf`.
        let out = VmlinuxError::SegmentOutOfFile { paddr: s.paddr };
        let dest = s.dest(load).ok_or(out)?;
        let dest_end = dest.checked_add(s.filesz).ok_or(out)?;
        let overlaps = |start: u64, end: u64| start < end && dest < end && start < dest_end;
        for later in after {
            let later_end = later
                .offset
                .checked_add(later.filesz)
                .ok_or(VmlinuxError::SegmentOutOfFile { paddr: later.paddr })?;
            if overlaps(later.offset, later_end) {
                return Err(VmlinuxError::SegmentClobbers {
                    paddr: s.paddr,
                    other: later.paddr,
                });
            }
        }
        if overlaps(vm.elf_len, output) {
            return Err(VmlinuxError::SegmentOverRelocs { paddr: s.paddr });
        }
    }
    for s in segs {
        // Both ranges were checked above; checked again so copy_within cannot panic.
        let src = range(s.offset, s.filesz).filter(|&(_, end)| end <= output_len);
        let dest = s
            .dest(load)
            .and_then(|d| range(d, s.filesz))
            .filter(|&(_, end)| end <= buf.len());
        match (src, dest) {
            (Some((start, end)), Some((dest, _))) => buf.copy_within(start..end, dest),
            _ => return Err(VmlinuxError::SegmentOutOfFile { paddr: s.paddr }),
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A segment for [`elf`]: (p_offset, p_paddr, p_vaddr, p_filesz, p_memsz).
    pub type Seg = (u64, u64, u64, u64, u64);

    pub const MB2: u64 = 2 << 20;
    pub const LOAD: u64 = 0x100_0000;

    /// A vmlinux with `segs` (p_align 2 MiB), entry at LOAD, no section headers, `len`
    /// bytes long; byte `i` of the file is `i % 251` outside the headers, so moved
    /// bytes can be traced.
    pub fn elf(segs: &[Seg], len: usize) -> Vec<u8> {
        let mut f: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let ph = 64;
        f[..ph + segs.len() * 56].fill(0);
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = ELFCLASS64;
        f[5] = ELFDATA2LSB;
        f[6] = EV_CURRENT;
        f[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        f[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[24..32].copy_from_slice(&LOAD.to_le_bytes());
        f[32..40].copy_from_slice(&(ph as u64).to_le_bytes());
        f[52..54].copy_from_slice(&64u16.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&(segs.len() as u16).to_le_bytes());
        f[58..60].copy_from_slice(&64u16.to_le_bytes());
        for (i, &(offset, paddr, vaddr, filesz, memsz)) in segs.iter().enumerate() {
            let p = &mut f[ph + i * 56..ph + (i + 1) * 56];
            p[..4].copy_from_slice(&PT_LOAD.to_le_bytes());
            p[4..8].copy_from_slice(&6u32.to_le_bytes());
            for (k, v) in [offset, vaddr, paddr, filesz, memsz, MB2]
                .into_iter()
                .enumerate()
            {
                p[8 + k * 8..16 + k * 8].copy_from_slice(&v.to_le_bytes());
            }
        }
        f
    }

    pub const KVA: u64 = START_KERNEL_MAP;

    /// Like Debian's 6.1: text, data, a percpu segment at vaddr 0, init + bss; each
    /// moves down by 0x1000 or more (offsets scaled down from the real ones).
    pub fn debian_like() -> Vec<Seg> {
        vec![
            (0x1000, LOAD, KVA + LOAD, 0x3000, 0x3000),
            (0x5000, LOAD + 0x4000, KVA + LOAD + 0x4000, 0x1000, 0x1000),
            (0x6000, LOAD + 0x5000, 0, 0x800, 0x800),
            (0x7000, LOAD + 0x5800, KVA + LOAD + 0x5800, 0x800, 0x2800),
        ]
    }

    #[test]
    fn parses_and_places_like_parse_elf() {
        let segs = debian_like();
        let mut f = elf(&segs, 0x7800 + 0x40);
        let original = f.clone();
        let vm = parse_vmlinux(&f).unwrap();
        assert_eq!(vm.load_physical_addr(), LOAD);
        assert_eq!(vm.entry_offset(), 0);
        assert_eq!(vm.image_size(), 0x8000);
        assert_eq!(vm.file_end(), 0x6000);
        assert_eq!(vm.elf_len(), 0x7800);
        assert_eq!(vm.segments().len(), 4);
        assert_eq!(vm.segments()[2].vaddr, 0);
        let out_len = f.len();
        f.resize(0x9000, 0xee);
        place_segments(&mut f, out_len, &vm).unwrap();
        for &(offset, paddr, _, filesz, _) in &segs {
            let (o, d, n) = (offset as usize, (paddr - LOAD) as usize, filesz as usize);
            assert_eq!(f[d..d + n], original[o..o + n], "segment at {paddr:#x}");
        }
        // The relocation table after the ELF file is untouched.
        assert_eq!(f[0x7800..out_len], original[0x7800..]);
        assert!(f[out_len..].iter().all(|&b| b == 0xee));
    }

    #[test]
    fn header_errors() {
        let good = elf(&debian_like(), 0x7840);
        let with = |at: usize, v: &[u8]| {
            let mut b = good.clone();
            b[at..at + v.len()].copy_from_slice(v);
            parse_vmlinux(&b).unwrap_err()
        };
        assert_eq!(with(0, b"\x7fELG"), VmlinuxError::BadMagic);
        assert_eq!(with(4, &[1]), VmlinuxError::NotElf64);
        assert_eq!(with(5, &[2]), VmlinuxError::NotLittleEndian);
        assert_eq!(with(6, &[0]), VmlinuxError::BadVersion);
        assert_eq!(with(16, &[3, 0]), VmlinuxError::NotExecutable { e_type: 3 });
        assert_eq!(
            with(18, &[183, 0]),
            VmlinuxError::NotX86_64 { e_machine: 183 }
        );
        assert_eq!(with(54, &[32, 0]), VmlinuxError::BadPhentsize { found: 32 });
        assert_eq!(with(56, &[0, 0]), VmlinuxError::NoLoadSegments);
        assert!(matches!(
            with(32, &u64::MAX.to_le_bytes()),
            VmlinuxError::Truncated { .. }
        ));
        assert!(matches!(
            with(24, &(LOAD + 0x6000).to_le_bytes()),
            VmlinuxError::EntryOutsideImage { .. }
        ));
        assert!(matches!(
            with(24, &(LOAD - 1).to_le_bytes()),
            VmlinuxError::EntryOutsideImage { .. }
        ));
        // Section headers that do not fit, or a section running out of the file.
        assert!(matches!(
            with(40, &0x7800u64.to_le_bytes()),
            VmlinuxError::Truncated { .. }
        ));
        let mut b = good.clone();
        b[40..48].copy_from_slice(&0x7800u64.to_le_bytes());
        b[58] = 40;
        assert_eq!(
            parse_vmlinux(&b).unwrap_err().to_string(),
            "vmlinux e_shentsize 40, want 64"
        );
        for n in 0..good.len().min(0x7800) {
            assert!(parse_vmlinux(&good[..n]).is_err(), "truncated to {n}");
        }
    }

    #[test]
    fn section_headers_extend_the_elf() {
        let mut f = elf(&debian_like(), 0x7840 + 3 * 64);
        // Two section headers after the segments, the second a 0x30-byte section at
        // 0x7800; then a third (NOBITS, ignored) reaching far.
        let sh = 0x7840;
        f[40..48].copy_from_slice(&(sh as u64).to_le_bytes());
        f[60..62].copy_from_slice(&3u16.to_le_bytes());
        f[sh..sh + 3 * 64].fill(0);
        let s1 = sh + 64;
        f[s1 + 4..s1 + 8].copy_from_slice(&1u32.to_le_bytes());
        f[s1 + 24..s1 + 32].copy_from_slice(&0x7800u64.to_le_bytes());
        f[s1 + 32..s1 + 40].copy_from_slice(&0x30u64.to_le_bytes());
        let s2 = sh + 128;
        f[s2 + 4..s2 + 8].copy_from_slice(&SHT_NOBITS.to_le_bytes());
        f[s2 + 24..s2 + 32].copy_from_slice(&0x10_0000u64.to_le_bytes());
        f[s2 + 32..s2 + 40].copy_from_slice(&0x10_0000u64.to_le_bytes());
        let vm = parse_vmlinux(&f).unwrap();
        assert_eq!(vm.elf_len(), sh as u64 + 3 * 64);
        // A PROGBITS section past the end is refused.
        f[s2 + 4..s2 + 8].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(
            parse_vmlinux(&f),
            Err(VmlinuxError::SectionOutOfFile { index: 2 })
        );
        // Extended numbering: e_shnum 0, the count in section 0's sh_size.
        f[s2 + 4..s2 + 8].copy_from_slice(&SHT_NOBITS.to_le_bytes());
        f[60..62].copy_from_slice(&0u16.to_le_bytes());
        f[sh + 32..sh + 40].copy_from_slice(&3u64.to_le_bytes());
        assert_eq!(parse_vmlinux(&f).unwrap().elf_len(), sh as u64 + 3 * 64);
        f[sh + 32..sh + 40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            parse_vmlinux(&f),
            Err(VmlinuxError::Truncated { .. })
        ));
    }

    #[test]
    fn segment_errors() {
        let base = debian_like();
        let err = |segs: &[Seg]| parse_vmlinux(&elf(segs, 0x7840)).unwrap_err();
        let mut s = base.clone();
        s[1].3 = 0x1001;
        assert_eq!(
            err(&s),
            VmlinuxError::FileszExceedsMemsz {
                paddr: LOAD + 0x4000
            }
        );
        let mut s = base.clone();
        s[3].3 = 0x1000;
        s[3].4 = 0x1000;
        assert_eq!(
            err(&s),
            VmlinuxError::SegmentOutOfFile {
                paddr: LOAD + 0x5800
            }
        );
        let mut s = base.clone();
        s[1].1 = LOAD + 0x2000;
        s[1].2 = KVA + LOAD + 0x2000;
        assert_eq!(
            err(&s),
            VmlinuxError::SegmentsOverlap {
                paddr: LOAD + 0x2000
            }
        );
        let mut s = base.clone();
        s.swap(0, 1);
        assert_eq!(err(&s), VmlinuxError::SegmentsUnsorted { paddr: LOAD });
        let mut s = base.clone();
        s[2].2 = KVA + LOAD + 0x5001;
        assert_eq!(
            err(&s),
            VmlinuxError::VaddrMismatch {
                paddr: LOAD + 0x5000,
                vaddr: KVA + LOAD + 0x5001
            }
        );
        let s: Vec<Seg> = vec![(0x1000, LOAD + 0x1000, 0, 0x100, 0x100)];
        assert_eq!(
            err(&s),
            VmlinuxError::LoadAddrMisaligned {
                paddr: LOAD + 0x1000
            }
        );
        let s: Vec<Seg> = vec![(0x1000, LOAD, 0, 0x100, KERNEL_IMAGE_SIZE + 1)];
        assert_eq!(
            err(&s),
            VmlinuxError::ImageTooLarge {
                size: KERNEL_IMAGE_SIZE + 1
            }
        );
        let s: Vec<Seg> = vec![(0x1000, u64::MAX - 0x10, 0, 0x100, 0x100)];
        assert!(matches!(err(&s), VmlinuxError::SegmentOutOfFile { .. }));
        let many: Vec<Seg> = (0..9)
            .map(|i| (0x1000, LOAD + i * 0x100, 0, 0x100, 0x100))
            .collect();
        assert_eq!(err(&many), VmlinuxError::TooManySegments);
        // p_align: a multiple of 2 MiB (0 included, as parse_elf's `%` test).
        let mut f = elf(&base, 0x7840);
        f[64 + 48..64 + 56].copy_from_slice(&0x1000u64.to_le_bytes());
        assert_eq!(
            parse_vmlinux(&f),
            Err(VmlinuxError::SegmentAlign {
                paddr: LOAD,
                align: 0x1000
            })
        );
        f[64 + 48..64 + 56].copy_from_slice(&0u64.to_le_bytes());
        assert!(parse_vmlinux(&f).is_ok());
        f[64 + 48..64 + 56].copy_from_slice(&(8 * MB2).to_le_bytes());
        assert!(parse_vmlinux(&f).is_ok());
    }

    #[test]
    fn placement_errors_move_nothing() {
        let check = |segs: &[Seg], len: usize, buf_len: usize, out_len: usize| {
            let f = elf(segs, len);
            let vm = parse_vmlinux(&f).unwrap();
            let mut buf = f.clone();
            buf.resize(buf_len, 0);
            let before = buf.clone();
            let e = place_segments(&mut buf, out_len, &vm).unwrap_err();
            assert_eq!(buf, before, "{e}");
            e
        };
        let base = debian_like();
        assert_eq!(
            check(&base, 0x7840, 0x7840, 0x7841),
            VmlinuxError::OutputPastBuffer {
                output_len: 0x7841,
                buf_len: 0x7840
            }
        );
        assert_eq!(
            check(&base, 0x7840, 0x9000, 0x77ff),
            VmlinuxError::OutputShorterThanElf {
                output_len: 0x77ff,
                elf_len: 0x7800
            }
        );
        assert_eq!(
            check(&base, 0x7840, 0x7840, 0x7840),
            VmlinuxError::SlotTooSmall {
                need: 0x8000,
                have: 0x7840
            }
        );
        // The second segment moving up over the third's file bytes, not yet moved.
        let up: Vec<Seg> = vec![
            (0x100, LOAD, 0, 0x100, 0x100),
            (0x200, LOAD + 0x1000, 0, 0x100, 0x100),
            (0x1080, LOAD + 0x2000, 0, 0x100, 0x100),
        ];
        assert_eq!(
            check(&up, 0x1180, 0x4000, 0x1180),
            VmlinuxError::SegmentClobbers {
                paddr: LOAD + 0x1000,
                other: LOAD + 0x2000
            }
        );
        // A segment moving up into the relocation table.
        let over: Vec<Seg> = vec![
            (0x100, LOAD, 0, 0x100, 0x100),
            (0x200, LOAD + 0x1f80, 0, 0x100, 0x100),
        ];
        assert_eq!(
            check(&over, 0x300, 0x4000, 0x2000),
            VmlinuxError::SegmentOverRelocs {
                paddr: LOAD + 0x1f80
            }
        );
    }
}
