//! Reading an ELF64 ET_DYN file: the ELF header, the PT_LOAD and PT_DYNAMIC program
//! headers and the dynamic entries, all checked.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::reloc::{RELA_SIZE, RELR_SIZE};
use super::{slice, Elf, ElfError, Machine, Table};

pub(super) const PAGE: u64 = 4096;
/// At most this many PT_LOAD segments.
pub const MAX_SEGMENTS: usize = 16;

pub(super) const ET_DYN: u16 = 3;
pub(super) const EV_CURRENT: u8 = 1;
pub(super) const ELFCLASS64: u8 = 2;
pub(super) const ELFDATA2LSB: u8 = 1;
pub(super) const PT_LOAD: u32 = 1;
pub(super) const PT_DYNAMIC: u32 = 2;
pub(super) const PF_X: u32 = 1;
pub(super) const PF_W: u32 = 2;
pub(super) const PF_R: u32 = 4;

pub(super) const DT_NULL: u64 = 0;
pub(super) const DT_RELA: u64 = 7;
pub(super) const DT_RELASZ: u64 = 8;
pub(super) const DT_RELAENT: u64 = 9;
pub(super) const DT_REL: u64 = 17;
#[cfg(test)]
pub(super) const DT_TEXTREL: u64 = 22;
#[cfg(test)]
pub(super) const DT_FLAGS: u64 = 30;
#[cfg(test)]
pub(super) const DF_TEXTREL: u64 = 0x4;
pub(super) const DT_RELRSZ: u64 = 35;
pub(super) const DT_RELR: u64 = 36;
pub(super) const DT_RELRENT: u64 = 37;

#[repr(C)]
/// The ELF64 file header (little-endian), as the payload and vmlinux parsers read it.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct Ehdr {
    pub(crate) e_ident: [u8; 16],
    pub(crate) e_type: U16,
    pub(crate) e_machine: U16,
    pub(crate) e_version: U32,
    pub(crate) e_entry: U64,
    pub(crate) e_phoff: U64,
    pub(crate) e_shoff: U64,
    pub(crate) e_flags: U32,
    pub(crate) e_ehsize: U16,
    pub(crate) e_phentsize: U16,
    pub(crate) e_phnum: U16,
    pub(crate) e_shentsize: U16,
    pub(crate) e_shnum: U16,
    pub(crate) e_shstrndx: U16,
}

#[repr(C)]
/// An ELF64 program header.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct Phdr {
    pub(crate) p_type: U32,
    pub(crate) p_flags: U32,
    pub(crate) p_offset: U64,
    pub(crate) p_vaddr: U64,
    pub(crate) p_paddr: U64,
    pub(crate) p_filesz: U64,
    pub(crate) p_memsz: U64,
    pub(crate) p_align: U64,
}

#[repr(C)]
#[derive(FromBytes, KnownLayout, Immutable)]
struct Dyn {
    d_tag: U64,
    d_val: U64,
}

const _: () = {
    use core::mem::size_of;
    assert!(size_of::<Ehdr>() == 64);
    assert!(size_of::<Phdr>() == 56);
    assert!(size_of::<Dyn>() == 16);
};

/// Segment permissions (`p_flags`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}

/// One PT_LOAD segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Link-time address.
    pub vaddr: u64,
    pub memsz: u64,
    pub filesz: u64,
    /// File offset of the `filesz` bytes.
    pub offset: u64,
    pub flags: Flags,
}

/// The dynamic entries this loader reads.
#[derive(Default)]
struct Dynamic {
    rela: Option<u64>,
    relasz: Option<u64>,
    relaent: Option<u64>,
    relr: Option<u64>,
    relrsz: Option<u64>,
    relrent: Option<u64>,
}

impl Dynamic {
    /// Reads entries up to DT_NULL or the end of the segment's file bytes.
    fn read(bytes: &[u8]) -> Result<Dynamic, ElfError> {
        let mut d = Dynamic::default();
        for chunk in bytes.chunks_exact(core::mem::size_of::<Dyn>()) {
            let e = Dyn::ref_from_bytes(chunk).map_err(|_| ElfError::DynamicOutOfFile)?;
            let (tag, val) = (e.d_tag.get(), e.d_val.get());
            match tag {
                DT_NULL => break,
                DT_RELA => d.rela = Some(val),
                DT_RELASZ => d.relasz = Some(val),
                DT_RELAENT => d.relaent = Some(val),
                DT_RELR => d.relr = Some(val),
                DT_RELRSZ => d.relrsz = Some(val),
                DT_RELRENT => d.relrent = Some(val),
                // DT_TEXTREL / DF_TEXTREL (relocations in read-only segments) are fine:
                // relocation happens before the segments are mapped read-only.
                DT_REL => return Err(ElfError::UnsupportedDynamic { tag }),
                _ => {}
            }
        }
        if let Some(found) = d.relaent.filter(|&n| n != RELA_SIZE as u64) {
            return Err(ElfError::BadRelaEnt { found });
        }
        if let Some(found) = d.relrent.filter(|&n| n != RELR_SIZE as u64) {
            return Err(ElfError::BadRelrEnt { found });
        }
        Ok(d)
    }
}

/// The table `(address, size)` as `(vaddr, bytes)`; both tags or neither (a zero size
/// alone is fine).
fn table(
    addr: Option<u64>,
    size: Option<u64>,
    (addr_tag, size_tag): (u64, u64),
    entry: usize,
) -> Result<Option<(u64, u64)>, ElfError> {
    match (addr, size) {
        (None, None | Some(0)) => Ok(None),
        (None, Some(_)) => Err(ElfError::MissingDynamic { tag: size_tag }),
        (Some(_), None) => Err(ElfError::MissingDynamic { tag: addr_tag }),
        (Some(a), Some(s)) if s.is_multiple_of(entry as u64) => Ok(Some((a, s))),
        (Some(_), Some(s)) => Err(ElfError::BadTableSize {
            tag: size_tag,
            size: s,
        }),
    }
}

impl Elf {
    /// Validates `file` as an ELF64 little-endian ET_DYN for `machine`, its dynamic
    /// table and relocation tables included.
    pub fn parse(file: &[u8], machine: Machine) -> Result<Elf, ElfError> {
        let mut elf = Elf::headers(file, file.len() as u64, machine)?;
        if let Some(d) = elf.dynamic {
            let bytes = slice(file, d.offset, d.len).ok_or(ElfError::DynamicOutOfFile)?;
            elf.read_dynamic(bytes)?;
        }
        Ok(elf)
    }

    /// What the image will span and need, from the first bytes of a file of `file_len`
    /// bytes that hold its ELF and program headers: enough to place it before its
    /// segments are read. The same checks as [`Elf::parse`], except that segments and
    /// the dynamic table are checked against `file_len`, not read: the relocation
    /// tables stay empty until [`Elf::read_tables`] reads them from the image.
    pub fn headers(prefix: &[u8], file_len: u64, machine: Machine) -> Result<Elf, ElfError> {
        // Whether `[offset, offset + len)` lies in the file (read or not).
        let in_file =
            |offset: u64, len: u64| offset.checked_add(len).is_some_and(|e| e <= file_len);
        let (eh, _) = Ehdr::ref_from_prefix(prefix).map_err(|_| ElfError::Truncated)?;
        let ident = &eh.e_ident;
        if ident.get(..4) != Some(b"\x7fELF".as_slice()) {
            return Err(ElfError::BadMagic);
        }
        if ident.get(4) != Some(&ELFCLASS64) {
            return Err(ElfError::NotElf64);
        }
        if ident.get(5) != Some(&ELFDATA2LSB) {
            return Err(ElfError::NotLittleEndian);
        }
        if ident.get(6) != Some(&EV_CURRENT) || eh.e_version.get() != u32::from(EV_CURRENT) {
            return Err(ElfError::BadVersion);
        }
        if eh.e_type.get() != ET_DYN {
            return Err(ElfError::NotDyn {
                e_type: eh.e_type.get(),
            });
        }
        if eh.e_machine.get() != machine.e_machine() {
            return Err(ElfError::WrongMachine {
                expected: machine.e_machine(),
                found: eh.e_machine.get(),
            });
        }
        if usize::from(eh.e_phentsize.get()) != core::mem::size_of::<Phdr>() {
            return Err(ElfError::BadPhentsize {
                found: eh.e_phentsize.get(),
            });
        }
        let phdr_bytes = usize::try_from(eh.e_phoff.get())
            .ok()
            .and_then(|off| prefix.get(off..))
            .ok_or(ElfError::Truncated)?;
        let (phdrs, _) =
            <[Phdr]>::ref_from_prefix_with_elems(phdr_bytes, usize::from(eh.e_phnum.get()))
                .map_err(|_| ElfError::Truncated)?;

        let mut segments = [Segment::default(); MAX_SEGMENTS];
        let mut count: usize = 0;
        let mut align = PAGE;
        let mut prev_end: Option<u64> = None;
        let mut dynamic: Option<Table> = None;
        for ph in phdrs {
            let vaddr = ph.p_vaddr.get();
            match ph.p_type.get() {
                PT_DYNAMIC => {
                    if dynamic.is_some() {
                        return Err(ElfError::MultipleDynamic);
                    }
                    let (offset, len) = (ph.p_offset.get(), ph.p_filesz.get());
                    if !in_file(offset, len) {
                        return Err(ElfError::DynamicOutOfFile);
                    }
                    dynamic = Some(Table { vaddr, offset, len });
                }
                PT_LOAD => {
                    let (filesz, memsz, offset) =
                        (ph.p_filesz.get(), ph.p_memsz.get(), ph.p_offset.get());
                    if filesz > memsz {
                        return Err(ElfError::FileszExceedsMemsz { vaddr });
                    }
                    let end = vaddr
                        .checked_add(memsz)
                        .and_then(|e| e.checked_next_multiple_of(PAGE));
                    if end.is_none() || !in_file(offset, filesz) {
                        return Err(ElfError::SegmentOutOfFile { vaddr });
                    }
                    let p_align = ph.p_align.get();
                    if p_align > 1 && !p_align.is_power_of_two() {
                        return Err(ElfError::BadSegmentAlign { align: p_align });
                    }
                    align = align.max(p_align);
                    let prev = count.checked_sub(1).and_then(|i| segments.get(i));
                    if let (Some(prev), Some(prev_end)) = (prev, prev_end) {
                        if vaddr < prev.vaddr {
                            return Err(ElfError::SegmentsUnsorted { vaddr });
                        }
                        if vaddr < prev_end {
                            return Err(ElfError::SegmentsOverlap { vaddr });
                        }
                    }
                    let p = ph.p_flags.get();
                    let flags = Flags {
                        read: p & PF_R != 0,
                        write: p & PF_W != 0,
                        exec: p & PF_X != 0,
                    };
                    let slot = segments.get_mut(count).ok_or(ElfError::TooManySegments)?;
                    *slot = Segment {
                        vaddr,
                        memsz,
                        filesz,
                        offset,
                        flags,
                    };
                    count = count.checked_add(1).ok_or(ElfError::TooManySegments)?;
                    prev_end = Some(vaddr.saturating_add(memsz));
                }
                _ => {}
            }
        }
        let segs = segments.get(..count).unwrap_or(&[]);
        let (first, last) = match (segs.first(), segs.last()) {
            (Some(f), Some(l)) => (f, l),
            _ => return Err(ElfError::NoLoadSegments),
        };
        let link_base = first.vaddr & !(PAGE - 1);
        let top = last
            .vaddr
            .checked_add(last.memsz)
            .and_then(|e| e.checked_next_multiple_of(PAGE))
            .ok_or(ElfError::SegmentOutOfFile { vaddr: last.vaddr })?;
        // Sorted above: the last segment ends at or after the first begins.
        let span = top
            .checked_sub(link_base)
            .ok_or(ElfError::SegmentsUnsorted { vaddr: last.vaddr })?;
        let entry = eh.e_entry.get();
        if entry < link_base || entry >= top {
            return Err(ElfError::EntryOutsideImage { entry });
        }
        let elf = Elf {
            machine,
            entry,
            segments,
            count,
            link_base,
            span,
            align,
            dynamic,
            rela: Table::default(),
            relr: Table::default(),
        };
        // The dynamic table is read where it loads (as ld.so reads it), so its file
        // bytes must be the ones a segment loads at its address.
        if let Some(d) = dynamic {
            if elf.locate(d.vaddr, d.len).map(|t| t.offset) != Some(d.offset) {
                return Err(ElfError::DynamicNotLoaded);
            }
        }
        Ok(elf)
    }

    /// How many leading bytes of the file hold its ELF and program headers, as the
    /// 64-byte ELF header at the start of `prefix` says (`None` if `prefix` is shorter
    /// or the sum overflows): what [`Elf::headers`] needs. Nothing is checked here.
    pub fn headers_len(prefix: &[u8]) -> Option<u64> {
        let (eh, _) = Ehdr::ref_from_prefix(prefix).ok()?;
        let phdrs = u64::from(eh.e_phnum.get()).checked_mul(size_of::<Phdr>() as u64)?;
        let end = eh.e_phoff.get().checked_add(phdrs)?;
        Some(end.max(size_of::<Ehdr>() as u64))
    }

    /// Whether a loader whose load bias (run address minus link address) is always a
    /// multiple of `granule` (a power of two) honours every PT_LOAD's `p_align`: the
    /// gABI asks that a segment land at an address congruent to its `p_vaddr` modulo
    /// `p_align`. That holds when the largest `p_align` divides `granule` and image
    /// byte 0 (`link_base`, which lands on a granule boundary) is a multiple of it.
    /// A larger alignment is refused, not dropped.
    pub fn check_align(&self, granule: u64) -> Result<(), ElfError> {
        if self.align > granule {
            return Err(ElfError::AlignAboveGranule {
                align: self.align,
                granule,
            });
        }
        if !self.link_base.is_multiple_of(self.align) {
            return Err(ElfError::LinkBaseMisaligned {
                link_base: self.link_base,
                align: self.align,
            });
        }
        Ok(())
    }

    /// Reads the dynamic table from the loaded `image` (byte 0 at `link_base`): the
    /// relocation tables of a file unpacked in place, whose headers alone were
    /// parsed.
    pub fn read_tables(&mut self, image: &[u8]) -> Result<(), ElfError> {
        let Some(d) = self.dynamic else {
            return Ok(());
        };
        let at = d.vaddr.wrapping_sub(self.link_base);
        let bytes = slice(image, at, d.len).ok_or(ElfError::DynamicNotLoaded)?;
        self.read_dynamic(bytes)
    }

    /// Finds the relocation tables named by the dynamic entries in `bytes`.
    fn read_dynamic(&mut self, bytes: &[u8]) -> Result<(), ElfError> {
        let d = Dynamic::read(bytes)?;
        if let Some((a, s)) = table(d.rela, d.relasz, (DT_RELA, DT_RELASZ), RELA_SIZE)? {
            self.rela = self
                .locate(a, s)
                .ok_or(ElfError::TableOutOfFile { vaddr: a })?;
        }
        if let Some((a, s)) = table(d.relr, d.relrsz, (DT_RELR, DT_RELRSZ), RELR_SIZE)? {
            self.relr = self
                .locate(a, s)
                .ok_or(ElfError::TableOutOfFile { vaddr: a })?;
        }
        Ok(())
    }

    /// `[vaddr, vaddr + len)` and its file offset, if it lies inside one segment's
    /// file bytes.
    pub(super) fn locate(&self, vaddr: u64, len: u64) -> Option<Table> {
        let end = vaddr.checked_add(len)?;
        let seg = self.segments().find(|s| {
            s.vaddr <= vaddr && s.vaddr.checked_add(s.filesz).is_some_and(|e| end <= e)
        })?;
        let offset = seg.offset.checked_add(vaddr.checked_sub(seg.vaddr)?)?;
        Some(Table { vaddr, offset, len })
    }

    /// Link-time entry address.
    pub fn entry(&self) -> u64 {
        self.entry
    }

    /// PT_LOAD segments in vaddr order.
    pub fn segments(&self) -> impl Iterator<Item = Segment> + '_ {
        self.segments.iter().take(self.count).copied()
    }

    /// Lowest PT_LOAD vaddr rounded down to 4 KiB: image byte 0.
    pub fn link_base(&self) -> u64 {
        self.link_base
    }

    /// Bytes from `link_base` to the end of the highest segment, rounded up to 4 KiB.
    pub fn span(&self) -> u64 {
        self.span
    }

    /// Largest PT_LOAD `p_align`, at least 4 KiB: the alignment the image base needs.
    pub fn align(&self) -> u64 {
        self.align
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::builder::*;
    use crate::elf::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_loads() {
        let file = sample(&[], &[]);
        let elf = Elf::parse(&file, Machine::Aarch64).unwrap();
        assert_eq!(elf.entry(), BASE + 0x10);
        assert_eq!(elf.link_base(), BASE);
        assert_eq!(elf.span(), 0x3000);
        assert_eq!(elf.align(), 4096);
        let segs: Vec<_> = elf.segments().collect();
        assert_eq!(segs.len(), 2);
        assert_eq!(
            segs[0].flags,
            Flags {
                read: true,
                write: false,
                exec: true
            }
        );
        assert_eq!((segs[1].vaddr, segs[1].memsz), (BASE + 0x1000, 0x2000));
        let mut image = vec![0x55u8; 0x3000 + 16];
        elf.load(&file, &mut image).unwrap();
        assert!(image[..0x100].iter().all(|&b| b == 0xaa));
        assert!(image[0x100..0x1000].iter().all(|&b| b == 0));
        assert_eq!(word(&image, BASE + 0x1008), BASE + 0x1008);
        assert!(image[0x2000..0x3000].iter().all(|&b| b == 0), "bss zeroed");
        assert!(
            image[0x3000..].iter().all(|&b| b == 0x55),
            "past span untouched"
        );
        assert_eq!(
            elf.load(&file, &mut image[..0x2fff]),
            Err(ElfError::ImageTooSmall {
                need: 0x3000,
                have: 0x2fff
            })
        );
        assert_eq!(
            Elf::parse(&file, Machine::X86_64).err(),
            Some(ElfError::WrongMachine {
                expected: 62,
                found: 183
            })
        );
    }

    #[test]
    fn headers_len_is_what_headers_needs() {
        let file = sample(&[], &[]);
        let len = Elf::headers_len(&file[..64]).unwrap() as usize;
        let full = Elf::headers(&file, file.len() as u64, Machine::Aarch64).unwrap();
        let from_prefix = Elf::headers(&file[..len], file.len() as u64, Machine::Aarch64).unwrap();
        let facts = |e: &Elf| (e.span(), e.align(), e.link_base(), e.entry());
        assert_eq!(facts(&from_prefix), facts(&full));
        assert!(from_prefix.segments().eq(full.segments()));
        assert_eq!(
            Elf::headers(&file[..len - 1], file.len() as u64, Machine::Aarch64).err(),
            Some(ElfError::Truncated)
        );
        assert_eq!(Elf::headers_len(&file[..63]), None);
        // e_phoff (offset 32) at the top of the address space: the sum overflows.
        assert_eq!(Elf::headers_len(&patched(&file, 32, &[0xff; 8])), None);
        // No program headers: the ELF header alone.
        assert_eq!(Elf::headers_len(&patched(&file, 56, &[0, 0])), Some(64));
    }

    fn patched(file: &[u8], off: usize, v: &[u8]) -> Vec<u8> {
        let mut f = file.to_vec();
        f[off..off + v.len()].copy_from_slice(v);
        f
    }

    #[test]
    fn header_errors() {
        let good = sample(&[], &[]);
        let p = |off, v: &[u8]| Elf::parse(&patched(&good, off, v), Machine::Aarch64).err();
        assert_eq!(p(0, b"\x7fELG"), Some(ElfError::BadMagic));
        assert_eq!(p(4, &[1]), Some(ElfError::NotElf64));
        assert_eq!(p(5, &[2]), Some(ElfError::NotLittleEndian));
        assert_eq!(p(20, &[2]), Some(ElfError::BadVersion));
        assert_eq!(p(16, &[2]), Some(ElfError::NotDyn { e_type: 2 }));
        assert_eq!(p(54, &[55]), Some(ElfError::BadPhentsize { found: 55 }));
        assert_eq!(p(56, &[200]), Some(ElfError::Truncated));
        assert_eq!(p(32, &[0xff; 8]), Some(ElfError::Truncated));
        assert_eq!(
            p(24, &[0; 8]),
            Some(ElfError::EntryOutsideImage { entry: 0 })
        );
        for n in 0..good.len() {
            assert!(
                Elf::parse(&good[..n], Machine::Aarch64).is_err(),
                "truncated to {n}"
            );
        }
        assert_eq!(
            Elf::parse(b"garbage", Machine::Aarch64).err(),
            Some(ElfError::Truncated)
        );
    }

    fn two(first: (u64, u64), second: (u64, u64)) -> Option<ElfError> {
        let seg = |(vaddr, memsz)| Seg {
            vaddr,
            data: vec![0; 8],
            memsz,
            flags: PF_R,
            align: PAGE_ALIGN,
        };
        let file = build(AARCH64, first.0, &[seg(first), seg(second)], &[]);
        Elf::parse(&file, Machine::Aarch64).err()
    }

    #[test]
    fn p_align_is_honoured_or_refused() {
        const MIB: u64 = 1 << 20;
        let headers = |vaddr: u64, align: u64| {
            let seg = Seg {
                vaddr,
                data: vec![0; 8],
                memsz: 0x10,
                flags: PF_R,
                align,
            };
            let file = build(AARCH64, vaddr, &[seg], &[]);
            Elf::headers(&file[..120], file.len() as u64, Machine::Aarch64).unwrap()
        };
        // The sample: 4 KiB pages at a 4 KiB-aligned base.
        let file = sample(&[], &[]);
        let h = Elf::headers(&file[..0x100], file.len() as u64, Machine::Aarch64).unwrap();
        assert_eq!((h.span(), h.align(), h.link_base()), (0x3000, 4096, BASE));
        assert_eq!(h.check_align(2 * MIB), Ok(()));
        // 64 KiB (aarch64 linkers' max-page-size) and 2 MiB at base 0: honoured.
        assert_eq!(headers(0, 0x1_0000).check_align(2 * MIB), Ok(()));
        assert_eq!(headers(0, 2 * MIB).check_align(2 * MIB), Ok(()));
        // Above the granule: refused, naming both.
        let e = headers(0, 4 * MIB).check_align(2 * MIB).unwrap_err();
        assert_eq!(
            e,
            ElfError::AlignAboveGranule {
                align: 4 * MIB,
                granule: 2 * MIB
            }
        );
        assert_eq!(
            e.to_string(),
            "segment alignment 0x400000 is above the 0x200000 the image is placed at"
        );
        // A base that is not a multiple of p_align would move the segment off it.
        assert_eq!(
            headers(0x1000, 0x1_0000).check_align(2 * MIB),
            Err(ElfError::LinkBaseMisaligned {
                link_base: 0x1000,
                align: 0x1_0000
            })
        );
        // p_align 0 and 1 mean no constraint: the page.
        assert_eq!(headers(0x1000, 0).align(), 4096);
        assert_eq!(headers(0x1000, 1).check_align(2 * MIB), Ok(()));
    }

    #[test]
    fn segment_errors() {
        assert_eq!(two((0, 0x100), (0x100, 0x100)), None);
        assert_eq!(
            two((0, 0x101), (0x100, 0x100)),
            Some(ElfError::SegmentsOverlap { vaddr: 0x100 })
        );
        assert_eq!(
            two((0x1000, 0x10), (0, 0x10)),
            Some(ElfError::SegmentsUnsorted { vaddr: 0 })
        );
        assert_eq!(
            two((0, 0x4), (0x100, 0x100)),
            Some(ElfError::FileszExceedsMemsz { vaddr: 0 })
        );
        assert_eq!(
            two((0, 0x10), (u64::MAX - 8, 0x10)),
            Some(ElfError::SegmentOutOfFile {
                vaddr: u64::MAX - 8
            })
        );
        let seg = |i: u64| Seg {
            vaddr: i * 0x1000,
            data: vec![],
            memsz: 0x10,
            flags: PF_R,
            align: PAGE_ALIGN,
        };
        let many: Vec<_> = (0..17).map(seg).collect();
        assert_eq!(
            Elf::parse(&build(AARCH64, 0, &many, &[]), Machine::Aarch64).err(),
            Some(ElfError::TooManySegments)
        );
        assert_eq!(
            Elf::parse(&build(AARCH64, 0, &[], &[]), Machine::Aarch64).err(),
            Some(ElfError::NoLoadSegments)
        );
    }

    #[test]
    fn dynamic_errors() {
        let seg = Seg {
            vaddr: 0,
            data: vec![0; 0x40],
            memsz: 0x40,
            flags: PF_R,
            align: PAGE_ALIGN,
        };
        let p = |d: &[(u64, u64)]| {
            Elf::parse(
                &build(AARCH64, 0, std::slice::from_ref(&seg), d),
                Machine::Aarch64,
            )
            .err()
        };
        assert_eq!(
            p(&[(DT_REL, 0)]),
            Some(ElfError::UnsupportedDynamic { tag: DT_REL })
        );
        assert_eq!(p(&[(DT_TEXTREL, 0)]), None);
        assert_eq!(p(&[(DT_FLAGS, DF_TEXTREL)]), None);
        assert_eq!(
            p(&[(DT_RELAENT, 16)]),
            Some(ElfError::BadRelaEnt { found: 16 })
        );
        assert_eq!(
            p(&[(DT_RELRENT, 4)]),
            Some(ElfError::BadRelrEnt { found: 4 })
        );
        assert_eq!(
            p(&[(DT_RELA, 0)]),
            Some(ElfError::MissingDynamic { tag: DT_RELA })
        );
        assert_eq!(
            p(&[(DT_RELRSZ, 8)]),
            Some(ElfError::MissingDynamic { tag: DT_RELRSZ })
        );
        assert_eq!(
            p(&[(DT_RELA, 0), (DT_RELASZ, 25)]),
            Some(ElfError::BadTableSize {
                tag: DT_RELASZ,
                size: 25
            })
        );
        // The segment's file bytes: 0x40 of data, then the two dynamic entries.
        assert_eq!(
            p(&[(DT_RELA, 0x50), (DT_RELASZ, 24)]),
            Some(ElfError::TableOutOfFile { vaddr: 0x50 })
        );
        assert_eq!(
            p(&[(DT_RELR, 0x60), (DT_RELRSZ, 8)]),
            Some(ElfError::TableOutOfFile { vaddr: 0x60 })
        );
        assert_eq!(p(&[(DT_RELR, 0x58), (DT_RELRSZ, 8)]), None);
        assert_eq!(
            p(&[(DT_RELR, 0x38), (DT_RELRSZ, 8), (DT_NULL, 0), (DT_REL, 0)]),
            None
        );
        assert_eq!(p(&[(DT_RELASZ, 0)]), None);
        // PT_DYNAMIC's file bytes not the ones its address loads: read where it loads
        // (in place, as ld.so does), it would be other bytes.
        let file = build(AARCH64, 0, std::slice::from_ref(&seg), &[(DT_NULL, 0)]);
        let dyn_offset = 64 + 56 + 8; // the second program header's p_offset
        let moved = u64::from_le_bytes(file[dyn_offset..dyn_offset + 8].try_into().unwrap()) - 8;
        assert_eq!(
            Elf::parse(
                &patched(&file, dyn_offset, &moved.to_le_bytes()),
                Machine::Aarch64
            )
            .err(),
            Some(ElfError::DynamicNotLoaded)
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(elf) = Elf::parse(&bytes, Machine::Aarch64) {
                let mut image = vec![0u8; elf.span().min(1 << 16) as usize];
                let _ = elf.load(&bytes, &mut image);
                let _ = elf.relocate(&mut image, 0x1000);
            }
        }

        #[test]
        fn mutated_file_never_panics(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)) {
            let w = BASE + 0x1000;
            let mut file = sample(&[rela(w, 1027, 5)], &[w + 8, 0b111]);
            for (i, b) in flips {
                let i = i.index(file.len());
                file[i] = b;
            }
            if let Ok(elf) = Elf::parse(&file, Machine::Aarch64) {
                let mut image = vec![0u8; elf.span().min(1 << 16) as usize];
                let _ = elf.load(&file, &mut image);
                let _ = elf.relocate(&mut image, 0x1000);
            }
        }
    }
}
