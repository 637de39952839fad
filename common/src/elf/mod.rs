//! ELF64 ET_DYN payloads: validation of the headers and program headers (`parse`),
//! laying the PT_LOAD segments out in memory (copied from the file, or unpacked there
//! already, `layout`), and applying the RELA and RELR relative relocations found through
//! PT_DYNAMIC (`reloc`), so the payload runs at any base.

use core::fmt;

#[cfg(test)]
pub(crate) mod builder;
mod layout;
mod parse;
mod reloc;

#[cfg(any(test, feature = "alloc"))]
pub use layout::lay_out;

pub(crate) use parse::{Ehdr, Phdr};
pub use parse::{Flags, Segment, MAX_SEGMENTS};
pub use reloc::RelocStats;

/// The CPU a payload is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Machine {
    /// EM_AARCH64 (183).
    Aarch64,
    /// EM_X86_64 (62).
    X86_64,
}

impl Machine {
    /// The machine an ELF header's `e_machine` names, if it is one of these.
    pub const fn from_e_machine(e_machine: u16) -> Option<Machine> {
        match e_machine {
            183 => Some(Machine::Aarch64),
            62 => Some(Machine::X86_64),
            _ => None,
        }
    }

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
    /// The largest `p_align` is above the `granule` the loader places images at.
    AlignAboveGranule {
        align: u64,
        granule: u64,
    },
    /// The image's first page is not aligned to its largest `p_align`.
    LinkBaseMisaligned {
        link_base: u64,
        align: u64,
    },
    EntryOutsideImage {
        entry: u64,
    },
    MultipleDynamic,
    DynamicOutOfFile,
    /// Unpacked in place, the dynamic table must lie in one PT_LOAD's file bytes.
    DynamicNotLoaded,
    /// Unpacked in place, a PT_LOAD's file offset is not its place in the image
    /// (`p_offset - headers == p_vaddr - link_base`), or the image is longer than the
    /// span.
    NotLaidOut {
        vaddr: u64,
    },
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
            E::AlignAboveGranule { align, granule } => write!(
                f,
                "segment alignment 0x{align:x} is above the 0x{granule:x} the image is placed at"
            ),
            E::LinkBaseMisaligned { link_base, align } => write!(
                f,
                "image base 0x{link_base:x} is not aligned to its segment alignment 0x{align:x}"
            ),
            E::EntryOutsideImage { entry } => {
                write!(f, "entry point 0x{entry:x} is outside the image")
            }
            E::MultipleDynamic => f.write_str("more than one PT_DYNAMIC"),
            E::DynamicOutOfFile => f.write_str("PT_DYNAMIC lies outside the file"),
            E::DynamicNotLoaded => f.write_str("PT_DYNAMIC is not inside a PT_LOAD's file bytes"),
            E::NotLaidOut { vaddr } => write!(
                f,
                "segment at 0x{vaddr:x} is not where it loads in the file (not laid out as packed)"
            ),
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

/// A validated ELF64 ET_DYN file's headers and relocation tables: plain data, so the
/// image the file describes can be written while this is read.
#[derive(Clone, Debug)]
pub struct Elf {
    machine: Machine,
    entry: u64,
    segments: [Segment; MAX_SEGMENTS],
    count: usize,
    link_base: u64,
    span: u64,
    align: u64,
    /// PT_DYNAMIC, once the file or the image it was read from has been read.
    dynamic: Option<Table>,
    /// Whole RELA entries, inside one segment's file bytes (empty if none).
    rela: Table,
    /// Whole RELR entries, inside one segment's file bytes (empty if none).
    relr: Table,
}

/// Bytes of the file that are also bytes of the image: at `offset` in the file, at
/// `vaddr` once loaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Table {
    vaddr: u64,
    offset: u64,
    len: u64,
}

/// `bytes.get(offset..offset + len)` with the arithmetic checked.
fn slice(bytes: &[u8], offset: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    bytes.get(start..end)
}

fn slice_mut(bytes: &mut [u8], offset: u64, len: u64) -> Option<&mut [u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    bytes.get_mut(start..end)
}
