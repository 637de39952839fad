//! ELF64 ET_DYN payloads: validation of the headers, loading the PT_LOAD segments into
//! a destination slice, and applying the RELA and RELR relative relocations found
//! through PT_DYNAMIC, so the payload runs at any base.

use core::fmt;

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, KnownLayout};

const PAGE: u64 = 4096;
/// At most this many PT_LOAD segments.
pub const MAX_SEGMENTS: usize = 16;

const ET_DYN: u16 = 3;
const EV_CURRENT: u8 = 1;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;

const DT_NULL: u64 = 0;
const DT_RELA: u64 = 7;
const DT_RELASZ: u64 = 8;
const DT_RELAENT: u64 = 9;
const DT_REL: u64 = 17;
#[cfg(test)]
const DT_TEXTREL: u64 = 22;
#[cfg(test)]
const DT_FLAGS: u64 = 30;
#[cfg(test)]
const DF_TEXTREL: u64 = 0x4;
const DT_RELRSZ: u64 = 35;
const DT_RELR: u64 = 36;
const DT_RELRENT: u64 = 37;

const RELA_SIZE: usize = 24;
const RELR_SIZE: usize = 8;

/// The CPU a payload is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Machine {
    /// EM_AARCH64 (183).
    Aarch64,
    /// EM_X86_64 (62).
    X86_64,
}

impl Machine {
    pub const fn e_machine(self) -> u16 {
        match self {
            Machine::Aarch64 => 183,
            Machine::X86_64 => 62,
        }
    }

    /// R_AARCH64_RELATIVE (1027) or R_X86_64_RELATIVE (8): both "B + A".
    pub const fn relative(self) -> u32 {
        match self {
            Machine::Aarch64 => 1027,
            Machine::X86_64 => 8,
        }
    }
}

#[repr(C)]
#[derive(FromBytes, KnownLayout, Immutable)]
struct Ehdr {
    e_ident: [u8; 16],
    e_type: U16,
    e_machine: U16,
    e_version: U32,
    e_entry: U64,
    e_phoff: U64,
    e_shoff: U64,
    e_flags: U32,
    e_ehsize: U16,
    e_phentsize: U16,
    e_phnum: U16,
    e_shentsize: U16,
    e_shnum: U16,
    e_shstrndx: U16,
}

#[repr(C)]
#[derive(FromBytes, KnownLayout, Immutable)]
struct Phdr {
    p_type: U32,
    p_flags: U32,
    p_offset: U64,
    p_vaddr: U64,
    p_paddr: U64,
    p_filesz: U64,
    p_memsz: U64,
    p_align: U64,
}

#[repr(C)]
#[derive(FromBytes, KnownLayout, Immutable)]
struct Dyn {
    d_tag: U64,
    d_val: U64,
}

#[repr(C)]
#[derive(FromBytes, KnownLayout, Immutable)]
struct Rela {
    r_offset: U64,
    /// `ELF64_R_TYPE(info) = info & 0xffffffff`.
    r_info: U64,
    /// Signed; two's complement makes `wrapping_add` right.
    r_addend: U64,
}

const _: () = {
    use core::mem::size_of;
    assert!(size_of::<Ehdr>() == 64);
    assert!(size_of::<Phdr>() == 56);
    assert!(size_of::<Dyn>() == 16);
    assert!(size_of::<Rela>() == RELA_SIZE);
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// The file is shorter than its headers say.
    Truncated,
    BadMagic,
    NotElf64,
    NotLittleEndian,
    BadVersion,
    NotDyn {
        e_type: u16,
    },
    WrongMachine {
        expected: u16,
        found: u16,
    },
    BadPhentsize {
        found: u16,
    },
    NoLoadSegments,
    TooManySegments,
    /// A PT_LOAD's file bytes lie outside the file, or its addresses wrap.
    SegmentOutOfFile {
        vaddr: u64,
    },
    FileszExceedsMemsz {
        vaddr: u64,
    },
    /// PT_LOAD segments must be sorted by vaddr ("ascending order, sorted on the
    /// p_vaddr member").
    SegmentsUnsorted {
        vaddr: u64,
    },
    SegmentsOverlap {
        vaddr: u64,
    },
    BadSegmentAlign {
        align: u64,
    },
    EntryOutsideImage {
        entry: u64,
    },
    MultipleDynamic,
    DynamicOutOfFile,
    /// The verified file's program headers differ from the ones read before it was
    /// unpacked (the slot was chosen by those).
    HeadersChanged,
    /// DT_REL (only RELA and RELR are supported).
    UnsupportedDynamic {
        tag: u64,
    },
    /// A table address without its size, or the reverse.
    MissingDynamic {
        tag: u64,
    },
    BadRelaEnt {
        found: u64,
    },
    BadRelrEnt {
        found: u64,
    },
    /// A table size that is not a whole number of entries.
    BadTableSize {
        tag: u64,
        size: u64,
    },
    /// A relocation table is not entirely inside one PT_LOAD's file bytes.
    TableOutOfFile {
        vaddr: u64,
    },
    /// A RELR bitmap entry with no address entry before it.
    RelrBitmapFirst,
    ImageTooSmall {
        need: u64,
        have: u64,
    },
    UnsupportedRelocation {
        r_type: u32,
        offset: u64,
    },
    RelocOutOfImage {
        offset: u64,
    },
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ElfError as E;
        match self {
            E::Truncated => f.write_str("file truncated"),
            E::BadMagic => f.write_str("bad magic"),
            E::NotElf64 => f.write_str("not ELFCLASS64"),
            E::NotLittleEndian => f.write_str("not little-endian"),
            E::BadVersion => f.write_str("version is not EV_CURRENT"),
            E::NotDyn { e_type } => write!(f, "e_type {e_type} is not ET_DYN (3)"),
            E::WrongMachine { expected, found } => {
                write!(f, "e_machine {found}, want {expected}")
            }
            E::BadPhentsize { found } => write!(f, "e_phentsize {found}, want 56"),
            E::NoLoadSegments => f.write_str("no PT_LOAD segment"),
            E::TooManySegments => write!(f, "more than {MAX_SEGMENTS} PT_LOAD segments"),
            E::SegmentOutOfFile { vaddr } => {
                write!(f, "segment at 0x{vaddr:x} lies outside the file or wraps")
            }
            E::FileszExceedsMemsz { vaddr } => {
                write!(f, "segment at 0x{vaddr:x} has p_filesz > p_memsz")
            }
            E::SegmentsUnsorted { vaddr } => {
                write!(f, "PT_LOAD at 0x{vaddr:x} is out of vaddr order")
            }
            E::SegmentsOverlap { vaddr } => {
                write!(f, "PT_LOAD at 0x{vaddr:x} overlaps the previous one")
            }
            E::BadSegmentAlign { align } => {
                write!(f, "segment alignment 0x{align:x} is not a power of two")
            }
            E::EntryOutsideImage { entry } => {
                write!(f, "entry point 0x{entry:x} is outside the image")
            }
            E::MultipleDynamic => f.write_str("more than one PT_DYNAMIC"),
            E::DynamicOutOfFile => f.write_str("PT_DYNAMIC lies outside the file"),
            E::HeadersChanged => f.write_str("program headers changed after unpacking"),
            E::UnsupportedDynamic { tag } => {
                write!(f, "unsupported dynamic entry (tag {tag}: REL or TEXTREL)")
            }
            E::MissingDynamic { tag } => {
                write!(f, "dynamic tag {tag} lacks its address or size partner")
            }
            E::BadRelaEnt { found } => write!(f, "DT_RELAENT {found}, want 24"),
            E::BadRelrEnt { found } => write!(f, "DT_RELRENT {found}, want 8"),
            E::BadTableSize { tag, size } => {
                write!(
                    f,
                    "dynamic tag {tag} size {size} is not a whole number of entries"
                )
            }
            E::TableOutOfFile { vaddr } => write!(
                f,
                "relocation table at 0x{vaddr:x} is not inside one segment's file bytes"
            ),
            E::RelrBitmapFirst => f.write_str("RELR table starts with a bitmap"),
            E::ImageTooSmall { need, have } => {
                write!(
                    f,
                    "image needs 0x{need:x} bytes, destination has 0x{have:x}"
                )
            }
            E::UnsupportedRelocation { r_type, offset } => {
                write!(
                    f,
                    "unsupported relocation type {r_type} at offset 0x{offset:x}"
                )
            }
            E::RelocOutOfImage { offset } => {
                write!(f, "relocation at 0x{offset:x} falls outside the image")
            }
        }
    }
}

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

/// Relocation counts: words patched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelocStats {
    pub rela: usize,
    pub relr: usize,
}

/// What [`Elf::headers`] tells before the file is unpacked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Headers {
    /// As [`Elf::span`].
    pub span: u64,
    /// As [`Elf::align`].
    pub align: u64,
}

/// A validated ELF64 ET_DYN file.
#[derive(Clone, Debug)]
pub struct Elf<'a> {
    file: &'a [u8],
    machine: Machine,
    entry: u64,
    segments: [Segment; MAX_SEGMENTS],
    count: usize,
    link_base: u64,
    span: u64,
    align: u64,
    /// Whole RELA entries, from the file.
    rela: &'a [u8],
    /// Whole RELR entries, from the file.
    relr: &'a [u8],
}

/// `bytes.get(offset..offset + len)` with the arithmetic checked.
fn slice(bytes: &[u8], offset: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    bytes.get(start..end)
}

fn align_up(x: u64, align: u64) -> Option<u64> {
    Some(x.checked_add(align - 1)? & !(align - 1))
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
        (Some(a), Some(s)) if s % entry as u64 == 0 => Ok(Some((a, s))),
        (Some(_), Some(s)) => Err(ElfError::BadTableSize {
            tag: size_tag,
            size: s,
        }),
    }
}

impl<'a> Elf<'a> {
    /// Validates `file` as an ELF64 little-endian ET_DYN for `machine`.
    pub fn parse(file: &'a [u8], machine: Machine) -> Result<Elf<'a>, ElfError> {
        Elf::parse_in(file, file.len() as u64, machine)
    }

    /// What the loaded image will span and need, from the first bytes of a file of
    /// `file_len` bytes that hold its ELF and program headers: enough to choose where
    /// it goes before it is unpacked. The same checks as [`Elf::parse`], except that
    /// segments and the dynamic table are checked against `file_len`, not read.
    pub fn headers(prefix: &'a [u8], file_len: u64, machine: Machine) -> Result<Headers, ElfError> {
        let elf = Elf::parse_in(prefix, file_len, machine)?;
        Ok(Headers {
            span: elf.span,
            align: elf.align,
        })
    }

    /// `parse`, with `file` possibly only the first bytes of a `file_len`-byte file:
    /// then the dynamic table is not read (the relocation tables stay empty).
    fn parse_in(file: &'a [u8], file_len: u64, machine: Machine) -> Result<Elf<'a>, ElfError> {
        let whole = file_len == file.len() as u64;
        // Whether `[offset, offset + len)` lies in the file (read or not).
        let in_file =
            |offset: u64, len: u64| offset.checked_add(len).is_some_and(|e| e <= file_len);
        let (eh, _) = Ehdr::ref_from_prefix(file).map_err(|_| ElfError::Truncated)?;
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
            .and_then(|off| file.get(off..))
            .ok_or(ElfError::Truncated)?;
        let (phdrs, _) =
            <[Phdr]>::ref_from_prefix_with_elems(phdr_bytes, usize::from(eh.e_phnum.get()))
                .map_err(|_| ElfError::Truncated)?;

        let mut segments = [Segment::default(); MAX_SEGMENTS];
        let mut count: usize = 0;
        let mut align = PAGE;
        let mut prev_end: Option<u64> = None;
        let mut dynamic: Option<&[u8]> = None;
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
                    dynamic = Some(match whole {
                        true => slice(file, offset, len).ok_or(ElfError::DynamicOutOfFile)?,
                        false => &[],
                    });
                }
                PT_LOAD => {
                    let (filesz, memsz, offset) =
                        (ph.p_filesz.get(), ph.p_memsz.get(), ph.p_offset.get());
                    if filesz > memsz {
                        return Err(ElfError::FileszExceedsMemsz { vaddr });
                    }
                    let end = vaddr.checked_add(memsz).and_then(|e| align_up(e, PAGE));
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
                    count += 1;
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
            .and_then(|e| align_up(e, PAGE))
            .ok_or(ElfError::SegmentOutOfFile { vaddr: last.vaddr })?;
        let span = top - link_base;
        let entry = eh.e_entry.get();
        if entry < link_base || entry >= top {
            return Err(ElfError::EntryOutsideImage { entry });
        }

        let mut elf = Elf {
            file,
            machine,
            entry,
            segments,
            count,
            link_base,
            span,
            align,
            rela: &[],
            relr: &[],
        };
        if let Some(bytes) = dynamic.filter(|_| whole) {
            let d = Dynamic::read(bytes)?;
            if let Some((a, s)) = table(d.rela, d.relasz, (DT_RELA, DT_RELASZ), RELA_SIZE)? {
                elf.rela = elf
                    .file_bytes(a, s)
                    .ok_or(ElfError::TableOutOfFile { vaddr: a })?;
            }
            if let Some((a, s)) = table(d.relr, d.relrsz, (DT_RELR, DT_RELRSZ), RELR_SIZE)? {
                elf.relr = elf
                    .file_bytes(a, s)
                    .ok_or(ElfError::TableOutOfFile { vaddr: a })?;
            }
        }
        Ok(elf)
    }

    /// The file bytes backing `[vaddr, vaddr + len)`, which must lie inside one
    /// segment's file bytes.
    fn file_bytes(&self, vaddr: u64, len: u64) -> Option<&'a [u8]> {
        let end = vaddr.checked_add(len)?;
        let seg = self.segments().find(|s| {
            s.vaddr <= vaddr && s.vaddr.checked_add(s.filesz).is_some_and(|e| end <= e)
        })?;
        slice(self.file, seg.offset.checked_add(vaddr - seg.vaddr)?, len)
    }

    pub fn machine(&self) -> Machine {
        self.machine
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

    /// Number of RELA and RELR table entries.
    pub fn reloc_entries(&self) -> (usize, usize) {
        (self.rela.len() / RELA_SIZE, self.relr.len() / RELR_SIZE)
    }

    /// The type (`ELF64_R_TYPE`, the low 32 bits of `r_info`) of each RELA entry, in
    /// table order: what a report counts by type, before [`Elf::relocate`] refuses
    /// any type but RELATIVE and NONE.
    pub fn rela_types(&self) -> impl Iterator<Item = u32> + 'a {
        self.rela
            .chunks_exact(RELA_SIZE)
            .filter_map(|c| Rela::ref_from_bytes(c).ok())
            .map(|r| (r.r_info.get() & 0xffff_ffff) as u32)
    }

    /// How many words the RELR table relocates: one per address entry, one per set
    /// bit 1..=63 of each bitmap entry (what [`Elf::relocate`] reports as `relr`).
    pub fn relr_words(&self) -> usize {
        self.relr
            .chunks_exact(RELR_SIZE)
            .filter_map(|c| U64::ref_from_bytes(c).ok())
            .map(|e| match e.get() {
                w if w & 1 == 0 => 1,
                w => (w >> 1).count_ones() as usize,
            })
            .sum()
    }

    /// `image[..span]`, or an error if the destination is too small.
    fn window<'i>(&self, image: &'i mut [u8]) -> Result<&'i mut [u8], ElfError> {
        let have = image.len() as u64;
        let too_small = ElfError::ImageTooSmall {
            need: self.span,
            have,
        };
        let span = usize::try_from(self.span).map_err(|_| too_small)?;
        image.get_mut(..span).ok_or(too_small)
    }

    /// Lays the segments out in `image`, whose byte 0 is `link_base`: zero-fills
    /// `image[..span]` (gaps and bss), then copies each segment's file bytes. Bytes
    /// past `span` are left alone.
    pub fn load(&self, image: &mut [u8]) -> Result<(), ElfError> {
        let image = self.window(image)?;
        image.fill(0);
        for s in self.segments() {
            let src = slice(self.file, s.offset, s.filesz);
            let dst = slice_mut(image, s.vaddr - self.link_base, s.filesz);
            match (src, dst) {
                (Some(src), Some(dst)) => dst.copy_from_slice(src),
                _ => return Err(ElfError::SegmentOutOfFile { vaddr: s.vaddr }),
            }
        }
        Ok(())
    }

    /// Applies the relative relocations to a loaded `image` that will run with
    /// `link_base` at `virt_base`. The tables are read from the file; only words
    /// inside `image[..span]` are ever written.
    ///
    /// RELA (as arch/arm64/kernel/pi/relocate.c): for the machine's RELATIVE type,
    /// `*(u64 *)(image + r_offset - link_base) = r_addend + displacement`.
    /// RELR: "an even entry is an address: relocate the word there and move `where` to
    /// the next word; an odd entry is a bitmap: bit i (1..=63) relocates
    /// `where + (i - 1) * 8`, then `where` advances by 63 words". Relocating adds the
    /// displacement to the word.
    pub fn relocate(&self, image: &mut [u8], virt_base: u64) -> Result<RelocStats, ElfError> {
        let image = self.window(image)?;
        let disp = virt_base.wrapping_sub(self.link_base);
        let mut stats = RelocStats::default();

        let relas = <[Rela]>::ref_from_bytes(self.rela).map_err(|_| ElfError::Truncated)?;
        for r in relas {
            let offset = r.r_offset.get();
            let r_type = (r.r_info.get() & 0xffff_ffff) as u32;
            if r_type == 0 {
                continue; // R_*_NONE
            }
            if r_type != self.machine.relative() {
                return Err(ElfError::UnsupportedRelocation { r_type, offset });
            }
            *self.word(image, offset)? = U64::new(r.r_addend.get().wrapping_add(disp));
            stats.rela += 1;
        }

        let relrs = <[U64]>::ref_from_bytes(self.relr).map_err(|_| ElfError::Truncated)?;
        let mut place: Option<u64> = None;
        for entry in relrs.iter().map(|e| e.get()) {
            if entry & 1 == 0 {
                self.add(image, entry, disp)?;
                stats.relr += 1;
                place = Some(entry.wrapping_add(8));
            } else {
                let base = place.ok_or(ElfError::RelrBitmapFirst)?;
                for bit in 1..64u64 {
                    if (entry >> bit) & 1 != 0 {
                        self.add(image, base.wrapping_add((bit - 1) * 8), disp)?;
                        stats.relr += 1;
                    }
                }
                place = Some(base.wrapping_add(63 * 8));
            }
        }
        Ok(stats)
    }

    /// The little-endian word at link address `offset`, if it lies inside `image`.
    fn word<'i>(&self, image: &'i mut [u8], offset: u64) -> Result<&'i mut U64, ElfError> {
        let out = ElfError::RelocOutOfImage { offset };
        let at = offset.checked_sub(self.link_base).ok_or(out)?;
        let bytes = slice_mut(image, at, 8).ok_or(out)?;
        U64::mut_from_bytes(bytes).map_err(|_| out)
    }

    fn add(&self, image: &mut [u8], offset: u64, disp: u64) -> Result<(), ElfError> {
        let w = self.word(image, offset)?;
        *w = U64::new(w.get().wrapping_add(disp));
        Ok(())
    }
}

fn slice_mut(bytes: &mut [u8], offset: u64, len: u64) -> Option<&mut [u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    bytes.get_mut(start..end)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A PT_LOAD to build: `data` at `vaddr`, `memsz` bytes in memory.
    #[derive(Clone)]
    struct Seg {
        vaddr: u64,
        data: Vec<u8>,
        memsz: u64,
        flags: u32,
    }

    /// Builds an ELF64 ET_DYN: header, program headers (PT_LOADs, then PT_DYNAMIC if
    /// `dynamic` is non-empty), segment data, the dynamic table.
    fn build(em: u16, entry: u64, segs: &[Seg], dynamic: &[(u64, u64)]) -> Vec<u8> {
        let nph = segs.len() + usize::from(!dynamic.is_empty());
        let mut data_off = 64 + 56 * nph;
        let mut out = vec![0u8; 64];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = 2;
        out[5] = 1;
        out[6] = 1;
        let put =
            |out: &mut Vec<u8>, off: usize, v: &[u8]| out[off..off + v.len()].copy_from_slice(v);
        put(&mut out, 16, &3u16.to_le_bytes());
        put(&mut out, 18, &em.to_le_bytes());
        put(&mut out, 20, &1u32.to_le_bytes());
        put(&mut out, 24, &entry.to_le_bytes());
        put(&mut out, 32, &64u64.to_le_bytes());
        put(&mut out, 52, &64u16.to_le_bytes());
        put(&mut out, 54, &56u16.to_le_bytes());
        put(&mut out, 56, &(nph as u16).to_le_bytes());
        let mut blobs = Vec::new();
        let phdr = |t: u32, flags: u32, off: usize, vaddr: u64, filesz: usize, memsz: u64| {
            [
                &t.to_le_bytes()[..],
                &flags.to_le_bytes(),
                &(off as u64).to_le_bytes(),
                &vaddr.to_le_bytes(),
                &vaddr.to_le_bytes(),
                &(filesz as u64).to_le_bytes(),
                &memsz.to_le_bytes(),
                &4096u64.to_le_bytes(),
            ]
            .concat()
        };
        for s in segs {
            out.extend(phdr(1, s.flags, data_off, s.vaddr, s.data.len(), s.memsz));
            blobs.extend_from_slice(&s.data);
            data_off += s.data.len();
        }
        if !dynamic.is_empty() {
            let d: Vec<u8> = dynamic
                .iter()
                .flat_map(|(t, v)| [t.to_le_bytes(), v.to_le_bytes()].concat())
                .collect();
            out.extend(phdr(2, 4, data_off, 0, d.len(), d.len() as u64));
            blobs.extend(d);
        }
        out.extend(blobs);
        out
    }

    const AARCH64: u16 = 183;
    pub(crate) const BASE: u64 = 0x40_0000;

    pub(crate) fn rela(offset: u64, r_type: u32, addend: u64) -> Vec<u8> {
        [
            offset.to_le_bytes(),
            u64::from(r_type).to_le_bytes(),
            addend.to_le_bytes(),
        ]
        .concat()
    }

    /// Text at BASE (0x100 bytes), data segment at BASE + 0x1000 holding 32 words
    /// (each its own link address), then the RELA table at BASE + 0x1100 and the RELR
    /// table after it; bss to BASE + 0x3000.
    pub(crate) fn sample(relas: &[Vec<u8>], relrs: &[u64]) -> Vec<u8> {
        let text = Seg {
            vaddr: BASE,
            data: vec![0xaa; 0x100],
            memsz: 0x100,
            flags: PF_R | PF_X,
        };
        let mut data: Vec<u8> = (0..32u64)
            .flat_map(|i| (BASE + 0x1000 + 8 * i).to_le_bytes())
            .collect();
        let rela_at = BASE + 0x1000 + data.len() as u64;
        let rela_bytes = relas.concat();
        data.extend(&rela_bytes);
        let relr_at = BASE + 0x1000 + data.len() as u64;
        data.extend(relrs.iter().flat_map(|w| w.to_le_bytes()));
        let data = Seg {
            vaddr: BASE + 0x1000,
            data,
            memsz: 0x2000,
            flags: PF_R | PF_W,
        };
        let dynamic = [
            (DT_RELA, rela_at),
            (DT_RELASZ, rela_bytes.len() as u64),
            (DT_RELAENT, 24),
            (DT_RELR, relr_at),
            (DT_RELRSZ, 8 * relrs.len() as u64),
            (DT_RELRENT, 8),
            (DT_NULL, 0),
        ];
        build(AARCH64, BASE + 0x10, &[text, data], &dynamic)
    }

    fn word(image: &[u8], link: u64) -> u64 {
        let at = (link - BASE) as usize;
        u64::from_le_bytes(image[at..at + 8].try_into().unwrap())
    }

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
        elf.load(&mut image).unwrap();
        assert!(image[..0x100].iter().all(|&b| b == 0xaa));
        assert!(image[0x100..0x1000].iter().all(|&b| b == 0));
        assert_eq!(word(&image, BASE + 0x1008), BASE + 0x1008);
        assert!(image[0x2000..0x3000].iter().all(|&b| b == 0), "bss zeroed");
        assert!(
            image[0x3000..].iter().all(|&b| b == 0x55),
            "past span untouched"
        );
        assert_eq!(
            elf.load(&mut image[..0x2fff]),
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
    fn applies_rela_and_relr() {
        let w = |i: u64| BASE + 0x1000 + 8 * i;
        let relas = [
            rela(w(0), 1027, 0x1234),
            rela(w(1), 0, 0),
            rela(BASE + 0x2ff8, 1027, 7),
        ];
        // Address entry for word 2, then a bitmap for words 3, 5 and (3 + 62) = 65:
        // out of the 32 data words but still in bss, so legal.
        let relr = [w(2), 1 | (1 << 1) | (1 << 3), w(10), 1 | (1 << 63)];
        let file = sample(&relas, &relr);
        let elf = Elf::parse(&file, Machine::Aarch64).unwrap();
        assert_eq!(elf.reloc_entries(), (3, 4));
        assert_eq!(elf.rela_types().collect::<Vec<_>>(), [1027, 0, 1027]);
        assert_eq!(elf.relr_words(), 5);
        let mut image = vec![0u8; 0x3000];
        elf.load(&mut image).unwrap();
        let virt = 0xffff_8000_1000_0000;
        let disp = virt - BASE;
        let stats = elf.relocate(&mut image, virt).unwrap();
        assert_eq!(stats, RelocStats { rela: 2, relr: 5 });
        assert_eq!(word(&image, w(0)), 0x1234 + disp);
        assert_eq!(word(&image, w(1)), w(1), "R_AARCH64_NONE skipped");
        assert_eq!(word(&image, BASE + 0x2ff8), 7 + disp);
        for i in [2, 3, 5, 10] {
            assert_eq!(word(&image, w(i)), w(i) + disp, "word {i}");
        }
        for i in [4, 6, 9, 11, 12] {
            assert_eq!(word(&image, w(i)), w(i), "word {i} untouched");
        }
        assert_eq!(
            word(&image, w(11 + 62)),
            disp,
            "bitmap bit 63 patched a bss word"
        );
        // Relocating down (virt below link base) wraps correctly.
        let mut again = vec![0u8; 0x3000];
        elf.load(&mut again).unwrap();
        elf.relocate(&mut again, 0x1000).unwrap();
        assert_eq!(word(&again, w(2)), w(2) - BASE + 0x1000);
    }

    #[test]
    fn unsupported_relocation_names_type_and_offset() {
        let file = sample(&[rela(BASE + 0x1000, 257, 0)], &[]);
        let elf = Elf::parse(&file, Machine::Aarch64).unwrap();
        let mut image = vec![0u8; 0x3000];
        let err = elf.relocate(&mut image, 0).unwrap_err();
        assert_eq!(
            err,
            ElfError::UnsupportedRelocation {
                r_type: 257,
                offset: BASE + 0x1000
            }
        );
        assert_eq!(
            err.to_string(),
            "unsupported relocation type 257 at offset 0x401000"
        );
    }

    #[test]
    fn relocation_outside_image() {
        for (relas, relr) in [
            (vec![rela(BASE + 0x2ff9, 1027, 0)], vec![]),
            (vec![rela(BASE - 8, 1027, 0)], vec![]),
            (vec![rela(u64::MAX - 3, 1027, 0)], vec![]),
            (vec![], vec![BASE + 0x3000]),
            (vec![], vec![BASE + 0x2ff0, 0b101]),
            (vec![], vec![u64::MAX - 7, 0b11]),
        ] {
            let file = sample(&relas, &relr);
            let elf = Elf::parse(&file, Machine::Aarch64).unwrap();
            let mut image = vec![0u8; 0x3100];
            elf.load(&mut image).unwrap();
            let err = elf.relocate(&mut image, 0x8000_0000).unwrap_err();
            assert!(matches!(err, ElfError::RelocOutOfImage { .. }), "{err:?}");
            assert!(image[0x3000..].iter().all(|&b| b == 0));
        }
        let file = sample(&[], &[0b11]);
        let elf = Elf::parse(&file, Machine::Aarch64).unwrap();
        assert_eq!(
            elf.relocate(&mut vec![0; 0x3000], 0),
            Err(ElfError::RelrBitmapFirst)
        );
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
        };
        let file = build(AARCH64, first.0, &[seg(first), seg(second)], &[]);
        Elf::parse(&file, Machine::Aarch64).err()
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
        assert_eq!(
            p(&[(DT_RELA, 0x30), (DT_RELASZ, 24)]),
            Some(ElfError::TableOutOfFile { vaddr: 0x30 })
        );
        assert_eq!(
            p(&[(DT_RELR, 0x40), (DT_RELRSZ, 8)]),
            Some(ElfError::TableOutOfFile { vaddr: 0x40 })
        );
        assert_eq!(
            p(&[(DT_RELR, 0x38), (DT_RELRSZ, 8), (DT_NULL, 0), (DT_REL, 0)]),
            None
        );
        assert_eq!(p(&[(DT_RELASZ, 0)]), None);
    }

    proptest! {
        #[test]
        fn random_relocations_stay_inside(
            relas in proptest::collection::vec((0u64..0x3100, prop::sample::select(vec![0u32, 1027, 1027, 1027, 8, 1026])), 0..20),
            relr in proptest::collection::vec(any::<u64>().prop_map(|w| if w & 1 == 0 { BASE - 0x100 + w % 0x3200 } else { w }), 0..20),
            virt in any::<u64>(),
        ) {
            let relas: Vec<_> = relas.iter().map(|&(o, t)| rela(BASE - 0x80 + o, t, o)).collect();
            let file = sample(&relas, &relr);
            let elf = Elf::parse(&file, Machine::Aarch64).unwrap();
            let mut image = vec![0x5au8; 0x3000 + 64];
            elf.load(&mut image).unwrap();
            let _ = elf.relocate(&mut image, virt);
            prop_assert!(image[0x3000..].iter().all(|&b| b == 0x5a));
            let mut exact = vec![0u8; 0x3000];
            elf.load(&mut exact).unwrap();
            let _ = elf.relocate(&mut exact, virt);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(elf) = Elf::parse(&bytes, Machine::Aarch64) {
                let mut image = vec![0u8; elf.span().min(1 << 16) as usize];
                let _ = elf.load(&mut image);
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
                let _ = elf.load(&mut image);
                let _ = elf.relocate(&mut image, 0x1000);
            }
        }
    }
}
