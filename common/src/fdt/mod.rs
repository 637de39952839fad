//! Reads a flattened device tree (Devicetree Specification v0.4, chapter 5) into the
//! facts the shim needs: RAM, what must not be overwritten and `/chosen`; `console`
//! finds the UART `stdout-path` names, `edit` rebuilds the tree for the next stage.
//! A small checked walker of its own: the `fdt` crate (0.1.5) panics on malformed blobs.

use crate::memmap::{Avoid, MemError, MemoryMap, Range};

mod console;
pub mod edit;

pub use console::{stdout, Console, Uart};

/// `0xd00dfeed`, big-endian at offset 0.
pub const MAGIC: u32 = 0xd00d_feed;
/// Size of the header fields this reader uses (version 17 header is 40 bytes).
pub const HEADER_SIZE: usize = 40;
/// Nodes nest at most this deep; real trees stay under 10.
const MAX_DEPTH: usize = 16;

const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// What is wrong with a device tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdtError {
    /// The blob is shorter than its header or its `totalsize`.
    Truncated,
    BadMagic(u32),
    /// `last_comp_version` newer than 17, or `version` older than 16.
    BadVersion(u32),
    /// A header offset or size points outside `totalsize` (names the field).
    BadHeader(&'static str),
    /// An unexpected token at this offset of the structure block.
    BadToken {
        offset: usize,
        token: u32,
    },
    /// A node name or property name that is not a NUL-terminated UTF-8 string.
    BadName {
        offset: usize,
    },
    TooDeep,
    /// A property we read has the wrong length (names the property).
    BadProperty(&'static str),
    /// No `/memory` node with a non-empty `reg`.
    NoMemory,
    /// More memory or reserved ranges than the fixed tables hold.
    Memory(MemError),
    /// The buffer for an edited copy is too small.
    NoRoom,
    /// More duplicate seed properties in `/chosen` than the shim keeps to wipe.
    TooManySeeds,
}

impl core::fmt::Display for FdtError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FdtError::Truncated => write!(f, "device tree truncated"),
            FdtError::BadMagic(m) => write!(f, "device tree bad magic {m:#x}"),
            FdtError::BadVersion(v) => write!(f, "device tree version {v} not supported"),
            FdtError::BadHeader(field) => {
                write!(f, "device tree header field {field} out of range")
            }
            FdtError::BadToken { offset, token } => {
                write!(
                    f,
                    "device tree bad token {token:#x} at struct offset {offset:#x}"
                )
            }
            FdtError::BadName { offset } => write!(f, "device tree bad name at offset {offset:#x}"),
            FdtError::TooDeep => write!(f, "device tree nested deeper than {MAX_DEPTH}"),
            FdtError::BadProperty(name) => write!(f, "device tree property {name} malformed"),
            FdtError::NoMemory => write!(f, "device tree has no memory node"),
            FdtError::Memory(e) => write!(f, "device tree memory: {e}"),
            FdtError::NoRoom => write!(f, "no room for the edited device tree"),
            FdtError::TooManySeeds => write!(
                f,
                "device tree /chosen repeats its seeds more than {MAX_OTHER_SEEDS} times"
            ),
        }
    }
}

impl From<MemError> for FdtError {
    fn from(e: MemError) -> Self {
        FdtError::Memory(e)
    }
}

fn be32(bytes: &[u8], at: usize) -> Result<u32, FdtError> {
    let b = at
        .checked_add(4)
        .and_then(|end| bytes.get(at..end))
        .ok_or(FdtError::Truncated)?;
    Ok(u32::from_be_bytes(
        b.try_into().map_err(|_| FdtError::Truncated)?,
    ))
}

/// The bytes before the first NUL, if there is one.
fn until_nul(bytes: &[u8]) -> Option<&[u8]> {
    bytes.get(..memchr::memchr(0, bytes)?)
}

/// A `#address-cells` or `#size-cells` that is not one cell.
const CELLS: FdtError = FdtError::BadProperty("#address-cells");

/// `at + n`: an offset that overflows lies past any blob, so it is a truncation.
fn past(at: usize, n: usize) -> Result<usize, FdtError> {
    at.checked_add(n).ok_or(FdtError::Truncated)
}

/// Reads a big-endian number of `cells` 32-bit cells (1 or 2) from the front of `bytes`.
fn cells(bytes: &[u8], cells: u32) -> Option<(u64, &[u8])> {
    let n = (cells as usize).checked_mul(4)?;
    let (num, rest) = (bytes.get(..n)?, bytes.get(n..)?);
    if cells > 2 {
        return None;
    }
    Some((
        num.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
        rest,
    ))
}

/// The header fields, checked against `totalsize`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub totalsize: usize,
    structs: core::ops::Range<usize>,
    strings: core::ops::Range<usize>,
    rsvmap: usize,
}

impl Header {
    /// Reads the header; `bytes` need only hold the first [`HEADER_SIZE`] bytes.
    pub fn read(bytes: &[u8]) -> Result<Header, FdtError> {
        let magic = be32(bytes, 0)?;
        if magic != MAGIC {
            return Err(FdtError::BadMagic(magic));
        }
        let field = |i: usize| {
            let at = i.checked_mul(4).ok_or(FdtError::Truncated)?;
            be32(bytes, at).map(|v| v as usize)
        };
        let totalsize = field(1)?;
        let (off_struct, off_strings, off_rsvmap) = (field(2)?, field(3)?, field(4)?);
        let (version, last_comp) = (field(5)?, field(6)?);
        let (size_strings, size_struct) = (field(8)?, field(9)?);
        if version < 16 || last_comp > 17 {
            return Err(FdtError::BadVersion(version as u32));
        }
        let within = |start: usize, len: usize, name| {
            let end = start.checked_add(len).ok_or(FdtError::BadHeader(name))?;
            if start < HEADER_SIZE || end > totalsize {
                return Err(FdtError::BadHeader(name));
            }
            Ok(start..end)
        };
        let structs = within(off_struct, size_struct, "off_dt_struct")?;
        let strings = within(off_strings, size_strings, "off_dt_strings")?;
        within(off_rsvmap, 16, "off_mem_rsvmap")?;
        if off_struct % 4 != 0 || off_rsvmap % 8 != 0 {
            return Err(FdtError::BadHeader("alignment"));
        }
        Ok(Header {
            totalsize,
            structs,
            strings,
            rsvmap: off_rsvmap,
        })
    }
}

/// One step of the walk over the structure block.
#[derive(Clone, Copy, Debug)]
enum Event<'a> {
    /// `cells` are the parent's: what this node's own `reg` is read with.
    Begin {
        name: &'a [u8],
        cells: Cells,
    },
    /// `cells` are the parent's `#address-cells`/`#size-cells`: what this node's
    /// `reg` is read with.
    Prop {
        name: &'a [u8],
        value: &'a [u8],
        offset: usize,
        cells: Cells,
        /// Where `name` lies in the strings block.
        nameoff: usize,
    },
    End,
}

/// What a walk does with the node an [`Event::Begin`] opened (the answer to any other
/// event is not read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Visit {
    /// Its properties and subnodes come as events.
    Enter,
    /// Passed over to its end, with its tokens checked but no events: only its
    /// [`Event::End`] comes.
    Skip,
}

/// [`Visit::Enter`] if `enter`, else [`Visit::Skip`].
fn enter_if(enter: bool) -> Visit {
    match enter {
        true => Visit::Enter,
        false => Visit::Skip,
    }
}

/// `#address-cells` and `#size-cells` in force for a node's children (DTSpec 2.3.5:
/// 2 and 1 when the node does not say).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cells {
    address: u32,
    size: u32,
}

impl Default for Cells {
    fn default() -> Self {
        Cells {
            address: 2,
            size: 1,
        }
    }
}

/// A checked device tree blob, exactly `totalsize` bytes long.
#[derive(Clone, Debug)]
pub struct Fdt<'a> {
    blob: &'a [u8],
    header: Header,
}

impl<'a> Fdt<'a> {
    /// Checks the header and the whole structure block (tokens, names, nesting).
    pub fn new(bytes: &'a [u8]) -> Result<Fdt<'a>, FdtError> {
        let header = Header::read(bytes)?;
        let blob = bytes.get(..header.totalsize).ok_or(FdtError::Truncated)?;
        let fdt = Fdt { blob, header };
        fdt.walk_checked(true, &mut |_, _| Ok(Visit::Enter))?;
        Ok(fdt)
    }

    /// The blob (its `totalsize` bytes).
    pub fn bytes(&self) -> &'a [u8] {
        self.blob
    }

    /// Walks the structure block, calling `f(depth, event)`; depth 0 is the root node.
    /// A node `f` answers [`Visit::Skip`] is passed over: no events but its end.
    /// Names were checked (UTF-8) once, by [`Fdt::new`]: the blob cannot have changed.
    fn walk(
        &self,
        mut f: impl FnMut(usize, Event<'a>) -> Result<Visit, FdtError>,
    ) -> Result<(), FdtError> {
        self.walk_checked(false, &mut f)
    }

    /// [`Fdt::walk`], and with `check_names` every node and property name must be UTF-8.
    /// One copy of the loop serves every walk: `f` is called through a vtable (a few
    /// hundred events a tree), not inlined into a copy per caller.
    fn walk_checked(
        &self,
        check_names: bool,
        f: &mut dyn FnMut(usize, Event<'a>) -> Result<Visit, FdtError>,
    ) -> Result<(), FdtError> {
        let utf8 = |name: &[u8], offset: usize| match check_names {
            true if name.is_ascii() || core::str::from_utf8(name).is_ok() => Ok(()),
            true => Err(FdtError::BadName { offset }),
            false => Ok(()),
        };
        let structs = self
            .blob
            .get(self.header.structs.clone())
            .ok_or(FdtError::Truncated)?;
        let strings = self
            .blob
            .get(self.header.strings.clone())
            .ok_or(FdtError::Truncated)?;
        let base = self.header.structs.start;
        let mut at = 0usize;
        let mut depth = 0usize;
        let mut seen_root = false;
        // cells[d]: what the children of the open node at depth d - 1 use.
        let mut cells = [Cells::default(); MAX_DEPTH + 1];
        // The depth of the node being passed over, if one is.
        let mut skipping: Option<usize> = None;
        // Reads fail as Options, made errors where they are taken: the walk runs a few
        // thousand of them a boot.
        let word = |at: usize| -> Option<u32> {
            let (w, _) = structs.get(at..)?.split_first_chunk::<4>()?;
            Some(u32::from_be_bytes(*w))
        };
        let align4 = |n: usize| Some(n.checked_add(3)? & !3);
        loop {
            let offset = at;
            let Some(token) = word(at) else {
                return Err(FdtError::Truncated);
            };
            at = at.wrapping_add(4);
            match token {
                FDT_BEGIN_NODE => {
                    if depth == 0 && seen_root {
                        return Err(FdtError::BadToken { offset, token });
                    }
                    let tail = structs.get(at..).unwrap_or_default();
                    let Some(name) = until_nul(tail) else {
                        return Err(FdtError::BadName { offset });
                    };
                    // The name and its NUL lie inside the block, which a usize spans.
                    at = align4(at.wrapping_add(name.len()).wrapping_add(1))
                        .ok_or(FdtError::Truncated)?;
                    if depth >= MAX_DEPTH {
                        return Err(FdtError::TooDeep);
                    }
                    if skipping.is_none() {
                        utf8(name, offset)?;
                        let cells = cells.get(depth).copied().unwrap_or_default();
                        if f(depth, Event::Begin { name, cells })? == Visit::Skip {
                            skipping = Some(depth);
                        }
                    }
                    // Below MAX_DEPTH.
                    depth = depth.wrapping_add(1);
                    seen_root = true;
                    if let Some(c) = cells.get_mut(depth) {
                        *c = Cells::default();
                    }
                }
                FDT_END_NODE => {
                    let Some(up) = depth.checked_sub(1) else {
                        return Err(FdtError::BadToken { offset, token });
                    };
                    depth = up;
                    match skipping {
                        Some(skipped) if skipped < depth => {}
                        _ => {
                            skipping = None;
                            f(depth, Event::End)?;
                        }
                    }
                }
                FDT_PROP => {
                    // The depth of the node the property is in: there must be one.
                    let Some(node) = depth.checked_sub(1) else {
                        return Err(FdtError::BadToken { offset, token });
                    };
                    let read = || {
                        let len = word(at)? as usize;
                        let nameoff = word(at.checked_add(4)?)? as usize;
                        let start = at.checked_add(8)?;
                        let value = structs.get(start..)?.get(..len)?;
                        Some((nameoff, start, value))
                    };
                    let Some((nameoff, start, value)) = read() else {
                        return Err(FdtError::Truncated);
                    };
                    // The value lies inside the block.
                    at = align4(start.wrapping_add(value.len())).ok_or(FdtError::Truncated)?;
                    if skipping.is_some() {
                        continue;
                    }
                    let Some(name) = strings.get(nameoff..).and_then(until_nul) else {
                        return Err(FdtError::BadName { offset: nameoff });
                    };
                    utf8(name, nameoff)?;
                    if let (Some(b'#'), Some(c)) = (name.first(), cells.get_mut(depth)) {
                        match name {
                            b"#address-cells" => c.address = cells_of(value).ok_or(CELLS)?,
                            b"#size-cells" => c.size = cells_of(value).ok_or(CELLS)?,
                            _ => {}
                        }
                    }
                    let node_cells = cells.get(node).copied().unwrap_or_default();
                    let prop = Event::Prop {
                        name,
                        value,
                        offset: past(base, start)?,
                        cells: node_cells,
                        nameoff,
                    };
                    f(node, prop)?;
                }
                FDT_NOP => {}
                FDT_END if depth == 0 && seen_root => return Ok(()),
                _ => return Err(FdtError::BadToken { offset, token }),
            }
        }
    }

    /// The `/memreserve/` block: (address, size) pairs up to the (0, 0) terminator.
    pub fn memreserve(&self) -> impl Iterator<Item = Result<Range, FdtError>> + 'a {
        let mut rest = self.blob.get(self.header.rsvmap..).unwrap_or_default();
        core::iter::from_fn(move || {
            let Some((entry, tail)) = rest.split_first_chunk::<16>() else {
                return Some(Err(FdtError::Truncated));
            };
            rest = tail;
            match cells(entry, 2).and_then(|(a, rest)| Some((a, cells(rest, 2)?.0))) {
                Some((0, 0)) => None,
                Some((addr, size)) => Some(Range::from_base_size(addr, size).map_err(Into::into)),
                None => Some(Err(FdtError::Truncated)),
            }
        })
    }
}

/// Everything the shim reads from the device tree.
#[derive(Debug)]
pub struct Machine<'a> {
    /// Every `reg` entry of every top-level node whose `device_type` is "memory"
    /// (what Linux's early_init_dt_scan_memory reads), normalised.
    pub ram: MemoryMap,
    /// `/reserved-memory` children with a `reg`, and `/memreserve/` entries.
    pub reserved: Avoid,
    /// The `/reserved-memory` children marked `no-map`: the OS must not map them at all
    /// (firmware-owned memory a speculative access may fault on). Also in `reserved`.
    pub no_map: MemoryMap,
    /// `/chosen/bootargs` (its first copy, as libfdt reads it) without its NUL.
    pub bootargs: &'a [u8],
    /// `/chosen/linux,initrd-start` .. `linux,initrd-end` (their first copies).
    pub initrd: Option<Range>,
    /// `/chosen/kaslr-seed` (big-endian u64) and the blob offset of its value.
    pub kaslr_seed: Option<(u64, usize)>,
    /// The length of a `/chosen/kaslr-seed` that is not 8 bytes: Linux ignores such a
    /// seed, and so does the shim (it says so).
    pub bad_kaslr_seed: Option<usize>,
    /// Seed properties `/chosen` holds besides the last of each name (a duplicated
    /// property, a kaslr-seed of the wrong length): their bytes and offsets, so that
    /// they too are mixed in and wiped.
    other_seeds: [(&'a [u8], usize); MAX_OTHER_SEEDS],
    n_other_seeds: usize,
    /// The blob read, for the seeds' bytes.
    blob: &'a [u8],
    /// `/chosen/rng-seed` bytes and the blob offset of its value.
    pub rng_seed: Option<(&'a [u8], usize)>,
}

/// The top-level node whose properties the walk is in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Top {
    Other,
    Reserved,
    Chosen,
    /// A top-level `chosen` or `chosen@<unit>` after the first: no one reads it as
    /// `/chosen`, but seeds in it are wiped all the same.
    LaterChosen,
}

/// Whether a top-level node named `name` is a `/chosen` candidate. libfdt's
/// `fdt_path_offset(fdt, "/chosen")`, through which Linux (early_init_dt_scan_chosen,
/// the arm64 `pi/` code) and U-Boot read it, matches `chosen` and `chosen@<unit>`
/// alike and takes the first in tree order; the reader, `stdout` and the editor take
/// that same node.
fn is_chosen(name: &[u8]) -> bool {
    base_name(name) == b"chosen"
}

/// A node name without its unit address (DTSpec 2.2.1: `name@unit-address`).
fn base_name(name: &[u8]) -> &[u8] {
    name.split(|&b| b == b'@').next().unwrap_or(name)
}

/// Seed properties kept besides the last of each name.
const MAX_OTHER_SEEDS: usize = 8;

impl<'a> Machine<'a> {
    /// Every seed property's bytes and blob offset (kaslr-seed as its 8 bytes), the
    /// duplicates and wrong-length ones too: all are mixed in, all are wiped.
    pub fn seeds(&self) -> impl Iterator<Item = (&'a [u8], usize)> + '_ {
        let blob = self.blob;
        let at =
            move |o: usize, n: usize| blob.get(o..).and_then(|b| b.get(..n)).unwrap_or_default();
        let kaslr = self.kaslr_seed.map(|(_, o)| (at(o, 8), o));
        kaslr
            .into_iter()
            .chain(self.rng_seed)
            .chain(self.other_seeds.iter().take(self.n_other_seeds).copied())
    }

    /// The seed properties besides the last kaslr-seed and rng-seed: duplicates, and a
    /// kaslr-seed of the wrong length. Mixed in like the others.
    pub fn other_seeds(&self) -> impl Iterator<Item = (&'a [u8], usize)> + '_ {
        self.other_seeds.iter().take(self.n_other_seeds).copied()
    }

    /// Keeps a seed property (blob offset and length) the walk saw but no longer names
    /// in `kaslr_seed` or `rng_seed`. More than the table holds is an error: a seed
    /// the shim does not know of is one it cannot wipe.
    fn keep_other_seed(&mut self, seed: Option<(usize, usize)>) -> Result<(), FdtError> {
        let Some((offset, len)) = seed else {
            return Ok(());
        };
        let bytes = self
            .blob
            .get(offset..)
            .and_then(|b| b.get(..len))
            .unwrap_or_default();
        let slot = self
            .other_seeds
            .get_mut(self.n_other_seeds)
            .ok_or(FdtError::TooManySeeds)?;
        *slot = (bytes, offset);
        self.n_other_seeds = self
            .n_other_seeds
            .checked_add(1)
            .ok_or(FdtError::TooManySeeds)?;
        Ok(())
    }

    /// Reads the machine description from a checked blob.
    pub fn read(fdt: &Fdt<'a>) -> Result<Machine<'a>, FdtError> {
        let mut m = Machine {
            ram: MemoryMap::new(),
            reserved: Avoid::new(),
            no_map: MemoryMap::new(),
            bootargs: &[],
            initrd: None,
            kaslr_seed: None,
            bad_kaslr_seed: None,
            other_seeds: [(&[], 0); MAX_OTHER_SEEDS],
            n_other_seeds: 0,
            blob: fdt.bytes(),
            rng_seed: None,
        };
        let mut top = Top::Other;
        // Memory nodes: `device_type` may come after `reg`, so keep `reg` until the end.
        let (mut mem_reg, mut mem_cells, mut is_memory) = (&[][..], Cells::default(), false);
        // A /reserved-memory child's `no-map` may come after its `reg`, likewise.
        let (mut res_reg, mut res_cells, mut no_map) = (&[][..], Cells::default(), false);
        let (mut initrd_start, mut initrd_end) = (None, None);
        let mut bootargs = None;
        let mut seen_chosen = false;

        fdt.walk(|depth, event| {
            match event {
                Event::Begin { name, .. } if depth == 1 => {
                    top = match base_name(name) {
                        b"reserved-memory" => Top::Reserved,
                        _ if is_chosen(name) && !seen_chosen => Top::Chosen,
                        _ if is_chosen(name) => Top::LaterChosen,
                        _ => Top::Other,
                    };
                    seen_chosen |= top == Top::Chosen;
                    (mem_reg, is_memory) = (&[], false);
                }
                // A /reserved-memory child; nothing else below a top-level node
                // is read.
                Event::Begin { .. } if depth == 2 && top == Top::Reserved => {
                    (res_reg, no_map) = (&[], false)
                }
                Event::Begin { .. } => return Ok(enter_if(depth == 0)),
                Event::Prop {
                    name,
                    value,
                    offset,
                    cells,
                    ..
                } => match (top, depth, name) {
                    // The root's cells describe CPU addresses: at most 64 bits.
                    (_, 0, b"#address-cells" | b"#size-cells") if cells_of(value) > Some(2) => {
                        return Err(FdtError::BadProperty("#address-cells"));
                    }
                    (_, 1, b"reg") => (mem_reg, mem_cells) = (value, cells),
                    (_, 1, b"device_type") => is_memory = value == b"memory\0",
                    (Top::Reserved, 2, b"reg") => (res_reg, res_cells) = (value, cells),
                    (Top::Reserved, 2, b"no-map") => no_map = true,
                    // The first copy of a property, as libfdt's fdt_getprop (so Linux
                    // and U-Boot) reads it; later copies are never seen.
                    (Top::Chosen, 1, b"bootargs") if bootargs.is_none() => {
                        bootargs = Some(value.split(|&b| b == 0).next().unwrap_or_default())
                    }
                    (Top::Chosen, 1, b"linux,initrd-start") if initrd_start.is_none() => {
                        initrd_start = Some(number(value, "linux,initrd-start")?)
                    }
                    (Top::Chosen, 1, b"linux,initrd-end") if initrd_end.is_none() => {
                        initrd_end = Some(number(value, "linux,initrd-end")?)
                    }
                    (Top::Chosen, 1, b"kaslr-seed") => {
                        // arch/arm64/kernel/pi/kaslr_early.c reads exactly a u64.
                        let earlier = match value.len() {
                            8 => m
                                .kaslr_seed
                                .replace((number(value, "kaslr-seed")?, offset))
                                .map(|(_, at)| (at, 8)),
                            len => {
                                m.bad_kaslr_seed = Some(len);
                                Some((offset, len))
                            }
                        };
                        m.keep_other_seed(earlier)?;
                    }
                    (Top::Chosen, 1, b"rng-seed") => {
                        let earlier = m.rng_seed.replace((value, offset));
                        m.keep_other_seed(earlier.map(|(v, at)| (at, v.len())))?;
                    }
                    (Top::LaterChosen, 1, b"kaslr-seed" | b"rng-seed") => {
                        m.keep_other_seed(Some((offset, value.len())))?
                    }
                    _ => {}
                },
                Event::End if depth == 1 => {
                    if is_memory {
                        for r in regs(mem_reg, mem_cells, "memory reg") {
                            m.ram.insert(r?)?;
                        }
                    }
                    top = Top::Other;
                }
                Event::End if depth == 2 && top == Top::Reserved => {
                    for r in regs(res_reg, res_cells, "reserved-memory reg") {
                        let r = r?;
                        m.reserved.push(r, "reserved-memory")?;
                        if no_map {
                            m.no_map.insert(r)?;
                        }
                    }
                }
                Event::End => {}
            }
            Ok(Visit::Enter)
        })?;

        m.bootargs = bootargs.unwrap_or_default();
        for r in fdt.memreserve() {
            m.reserved.push(r?, "memreserve")?;
        }
        if m.ram.is_empty() {
            return Err(FdtError::NoMemory);
        }
        m.initrd = match (initrd_start, initrd_end) {
            (Some(start), Some(end)) if end >= start => Some(Range { start, end }),
            (None, None) => None,
            _ => return Err(FdtError::BadProperty("linux,initrd-end")),
        };
        Ok(m)
    }
}

/// A 4-byte cell count, if the value is one.
fn cells_of(value: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(value).ok().map(u32::from_be_bytes)
}

/// A 4- or 8-byte big-endian property value.
fn number(value: &[u8], name: &'static str) -> Result<u64, FdtError> {
    match value.len() {
        4 => cells(value, 1),
        8 => cells(value, 2),
        _ => None,
    }
    .map(|(n, _)| n)
    .ok_or(FdtError::BadProperty(name))
}

/// The (address, size) pairs of a `reg` value, read with the parent's cell sizes.
fn regs<'v>(
    mut value: &'v [u8],
    sizes: Cells,
    name: &'static str,
) -> impl Iterator<Item = Result<Range, FdtError>> + 'v {
    core::iter::from_fn(move || {
        if value.is_empty() {
            return None;
        }
        let entry = cells(value, sizes.address).and_then(|(addr, rest)| {
            cells(rest, sizes.size).map(|(size, rest)| (addr, size, rest))
        });
        match entry {
            Some((addr, size, rest)) if sizes.size > 0 => {
                value = rest;
                Some(Range::from_base_size(addr, size).map_err(Into::into))
            }
            _ => {
                value = &[];
                Some(Err(FdtError::BadProperty(name)))
            }
        }
    })
}

/// How PSCI calls reach the firmware (`/psci` `method`, DTSpec bindings arm/psci.yaml).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciConduit {
    Hvc,
    Smc,
}

/// The PSCI conduit `/psci` names; `None` when there is no `/psci` (spin-table boards
/// such as the Raspberry Pi 4) or its method is neither "hvc" nor "smc".
pub fn psci(fdt: &Fdt<'_>) -> Result<Option<PsciConduit>, FdtError> {
    let (mut in_psci, mut conduit) = (false, None);
    fdt.walk(|depth, event| {
        match event {
            Event::Begin { name, .. } if depth == 1 => {
                in_psci = base_name(name) == b"psci";
                return Ok(enter_if(in_psci));
            }
            Event::Begin { .. } => return Ok(enter_if(depth == 0)),
            Event::Prop {
                name: b"method",
                value,
                ..
            } if depth == 1 && in_psci => {
                conduit = match value.split(|&b| b == 0).next() {
                    Some(b"hvc") => Some(PsciConduit::Hvc),
                    Some(b"smc") => Some(PsciConduit::Smc),
                    _ => None,
                };
            }
            _ => {}
        }
        Ok(Visit::Enter)
    })?;
    Ok(conduit)
}

/// Zeroes the values at these (offset, length) places of the blob, as Linux zeroes
/// the seeds it consumes, so the next stage cannot read what chose our placement.
pub fn wipe_seeds(blob: &mut [u8], seeds: impl IntoIterator<Item = (usize, usize)>) {
    for (offset, len) in seeds {
        if let Some(bytes) = offset
            .checked_add(len)
            .and_then(|end| blob.get_mut(offset..end))
        {
            bytes.fill(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn dtb(name: &str) -> Vec<u8> {
        let path = format!("{}/../tests/data/dtb/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// A tree written token by token, for shapes QEMU never makes: `begin`/`prop`/`end`
    /// in DTSpec 5.4 order, then `finish` lays out header, reservations, structure
    /// and strings.
    #[derive(Default)]
    pub(crate) struct Tree {
        structs: Vec<u8>,
        strings: Vec<u8>,
    }

    impl Tree {
        pub(crate) fn begin(mut self, name: &str) -> Tree {
            self.structs
                .extend_from_slice(&FDT_BEGIN_NODE.to_be_bytes());
            self.structs.extend_from_slice(name.as_bytes());
            self.structs.push(0);
            self.pad();
            self
        }

        pub(crate) fn prop(mut self, name: &str, value: &[u8]) -> Tree {
            let nameoff = self.strings.len() as u32;
            self.strings.extend_from_slice(name.as_bytes());
            self.strings.push(0);
            for word in [FDT_PROP, value.len() as u32, nameoff] {
                self.structs.extend_from_slice(&word.to_be_bytes());
            }
            self.structs.extend_from_slice(value);
            self.pad();
            self
        }

        pub(crate) fn end(mut self) -> Tree {
            self.structs.extend_from_slice(&FDT_END_NODE.to_be_bytes());
            self
        }

        /// A root with 2-cell addresses and sizes and 1 GiB of RAM at 1 GiB.
        pub(crate) fn with_ram() -> Tree {
            Tree::default()
                .begin("")
                .prop("#address-cells", &2u32.to_be_bytes())
                .prop("#size-cells", &2u32.to_be_bytes())
                .begin("memory@40000000")
                .prop("device_type", b"memory\0")
                .prop(
                    "reg",
                    &[0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0],
                )
                .end()
        }

        pub(crate) fn finish(mut self) -> Vec<u8> {
            self.structs.extend_from_slice(&FDT_END.to_be_bytes());
            let off_struct = HEADER_SIZE + 16;
            let off_strings = off_struct + self.structs.len();
            let total = off_strings + self.strings.len();
            let mut blob = Vec::new();
            for word in [
                MAGIC,
                total as u32,
                off_struct as u32,
                off_strings as u32,
                HEADER_SIZE as u32,
                17,
                16,
                0,
                self.strings.len() as u32,
                self.structs.len() as u32,
            ] {
                blob.extend_from_slice(&word.to_be_bytes());
            }
            blob.extend_from_slice(&[0; 16]);
            blob.extend_from_slice(&self.structs);
            blob.extend_from_slice(&self.strings);
            blob
        }

        fn pad(&mut self) {
            while !self.structs.len().is_multiple_of(4) {
                self.structs.push(0);
            }
        }
    }

    fn ram(m: &Machine<'_>) -> Vec<(u64, u64)> {
        m.ram.iter().map(|r| (r.start, r.end)).collect()
    }

    #[test]
    fn qemu_virt_memory_matches_dash_m() {
        const GIB: u64 = 1 << 30;
        for (file, size) in [
            ("virt-512M-smp2.dtb", GIB / 2),
            ("virt-1G-smp1.dtb", GIB),
            ("virt-el2-2G-smp2.dtb", 2 * GIB),
            ("virt-3G-smp8.dtb", 3 * GIB),
            ("virt-4G-smp4.dtb", 4 * GIB),
            ("virt-numa-2x1G-smp2.dtb", 2 * GIB),
        ] {
            let blob = dtb(file);
            let fdt = Fdt::new(&blob).unwrap();
            let m = Machine::read(&fdt).unwrap();
            assert_eq!(ram(&m), vec![(0x4000_0000, 0x4000_0000 + size)], "{file}");
            assert_eq!(
                stdout(&fdt),
                Ok(Some(Console {
                    base: 0x0900_0000,
                    uart: Uart::Pl011
                })),
                "{file}"
            );
            assert!(m.kaslr_seed.is_some() && m.rng_seed.is_some(), "{file}");
            assert_eq!(m.reserved.iter().count(), 0, "{file}");
            assert_eq!(m.initrd, None);
        }
    }

    #[test]
    fn agrees_with_the_fdt_crate_on_qemu_trees() {
        for file in [
            "virt-1G-smp1.dtb",
            "virt-4G-smp4.dtb",
            "virt-numa-2x1G-smp2.dtb",
        ] {
            let blob = dtb(file);
            let m = Machine::read(&Fdt::new(&blob).unwrap()).unwrap();
            let oracle = ::fdt::Fdt::new(&blob).unwrap();
            let chosen = oracle.find_node("/chosen").unwrap();
            let seed = chosen.property("kaslr-seed").unwrap().as_usize().unwrap() as u64;
            assert_eq!(m.kaslr_seed.map(|s| s.0), Some(seed));
            let rng = chosen.property("rng-seed").unwrap().value;
            assert_eq!(m.rng_seed.map(|s| s.0), Some(rng));
            let total: u64 = oracle
                .all_nodes()
                .filter(|n| n.name.starts_with("memory@"))
                .flat_map(|n| n.reg().unwrap())
                .map(|r| r.size.unwrap() as u64)
                .sum();
            assert_eq!(m.ram.total(), total);
        }
    }

    #[test]
    fn synthetic_tree_with_reserved_memory_and_initrd() {
        let blob = dtb("synthetic-reserved.dtb");
        let m = Machine::read(&Fdt::new(&blob).unwrap()).unwrap();
        // Two memory nodes, out of order, one with two entries: merged and sorted.
        assert_eq!(
            ram(&m),
            vec![(0x4000_0000, 0xc000_0000), (0x1_0000_0000, 0x1_8000_0000)]
        );
        let reserved: Vec<_> = m
            .reserved
            .iter()
            .map(|(r, l)| (r.start, r.end, l))
            .collect();
        assert_eq!(
            reserved,
            vec![
                (0x4000_0000, 0x4020_0000, "reserved-memory"),
                (0x7e00_0000, 0x7e80_0000, "reserved-memory"),
                (0x4800_0000, 0x4801_0000, "memreserve"),
                (0x7ff0_0000, 0x8000_0000, "memreserve"),
            ]
        );
        // Only secmon is no-map; the framebuffer may be mapped.
        let no_map: Vec<_> = m.no_map.iter().map(|r| (r.start, r.end)).collect();
        assert_eq!(no_map, vec![(0x4000_0000, 0x4020_0000)]);
        assert_eq!(
            m.initrd,
            Some(Range {
                start: 0x4400_0000,
                end: 0x4420_0000
            })
        );
        assert_eq!(m.bootargs, b"console=ttyAMA0 shim.verbose");
        assert_eq!(m.kaslr_seed.map(|s| s.0), Some(0x0123_4567_89ab_cdef));
        assert_eq!(m.rng_seed.map(|s| s.0.len()), Some(16));
        assert_eq!(
            stdout(&Fdt::new(&blob).unwrap()),
            Ok(Some(Console {
                base: 0x0900_0000,
                uart: Uart::Pl011
            }))
        );
    }

    #[test]
    fn duplicated_seeds_are_all_found_and_wiped() {
        let blob = dtb("virt-1G-smp1.dtb");
        assert_eq!(
            Machine::read(&Fdt::new(&blob).unwrap())
                .unwrap()
                .seeds()
                .count(),
            2
        );
        // Rename the string "stdout-path" to "rng-seed": /chosen then holds two.
        let mut twice = blob.clone();
        let at = twice
            .windows(12)
            .position(|w| w == b"stdout-path\0")
            .unwrap();
        twice[at..at + 12].copy_from_slice(b"rng-seed\0\0\0\0");
        let (seeds, others): (Vec<_>, Vec<_>) = {
            let m = Machine::read(&Fdt::new(&twice).unwrap()).unwrap();
            (
                m.seeds().map(|(v, o)| (o, v.len())).collect(),
                m.other_seeds().map(|(v, _)| v.to_vec()).collect(),
            )
        };
        assert_eq!(seeds.len(), 3);
        assert_eq!(others.len(), 1);
        wipe_seeds(&mut twice, seeds.iter().copied());
        let m = Machine::read(&Fdt::new(&twice).unwrap()).unwrap();
        assert!(m.seeds().all(|(v, _)| v.iter().all(|&b| b == 0)));
    }

    /// Found by the fdt fuzz target: a top-level `chosen@<unit>` before `chosen` is the
    /// node libfdt (so Linux and U-Boot) reads as `/chosen`; the reader took the
    /// properties of both, last one winning. Now it reads the first, and still wipes
    /// the seeds of the second.
    #[test]
    fn chosen_is_the_first_chosen_or_chosen_at_unit() {
        let mut blob = dtb("virt-1G-smp1.dtb");
        let at = blob
            .windows(15)
            .position(|w| w == b"fw-cfg@9020000\0")
            .unwrap();
        blob[at..at + 6].copy_from_slice(b"chosen");
        let fdt = Fdt::new(&blob).unwrap();
        let m = Machine::read(&fdt).unwrap();
        assert_eq!(
            (m.kaslr_seed, m.rng_seed, m.bootargs),
            (None, None, &b""[..])
        );
        assert_eq!(stdout(&fdt), Ok(None));
        // The real /chosen's two seeds are still found, to be mixed in and wiped.
        assert_eq!(m.seeds().count(), 2);
        assert_eq!(m.other_seeds().count(), 2);
        let oracle = ::fdt::Fdt::new(&blob).unwrap();
        assert_eq!(oracle.find_node("/chosen").unwrap().name, "chosen@9020000");
    }

    /// What the fdt fuzz target's wipe check asserts: past eight extra copies, seeds were
    /// neither mixed in nor wiped, and nothing said so. Now that is an error.
    #[test]
    fn more_seeds_than_the_shim_can_wipe_is_an_error() {
        let tree = |n: usize| {
            let mut t = Tree::with_ram().begin("chosen");
            for i in 0..n {
                t = t.prop("rng-seed", &[i as u8 + 1; 16]);
            }
            t.end().end().finish()
        };
        // The last rng-seed and eight earlier ones.
        let most = tree(MAX_OTHER_SEEDS + 1);
        let m = Machine::read(&Fdt::new(&most).unwrap()).unwrap();
        assert_eq!(m.seeds().count(), MAX_OTHER_SEEDS + 1);
        let too_many = tree(MAX_OTHER_SEEDS + 2);
        assert_eq!(
            Machine::read(&Fdt::new(&too_many).unwrap()).unwrap_err(),
            FdtError::TooManySeeds
        );
    }

    /// Linux and U-Boot read a property through libfdt's fdt_getprop, which returns
    /// its first copy; the reader took the last bootargs and initrd. With repeated copies,
    /// the shim then avoided an initrd Linux does not use and could overwrite the one
    /// it does. (The fdt fuzz target compares with the first copy now.)
    /// A node the callback skips gives no events but its end, whatever it holds; the
    /// walk goes on after it as before, and still finds a corrupt token inside it.
    #[test]
    fn a_skipped_node_gives_only_its_end() {
        let tree = || {
            Tree::with_ram()
                .begin("skipped")
                .prop("a", b"1")
                .begin("child")
                .prop("b", b"2")
                .end()
                .end()
                .begin("after")
                .prop("c", b"3")
                .end()
        };
        let blob = tree().end().finish();
        let fdt = Fdt::new(&blob).unwrap();
        let mut seen = Vec::new();
        fdt.walk(|depth, event| {
            let (what, visit) = match event {
                Event::Begin { name, .. } => (name.to_vec(), enter_if(name != b"skipped")),
                Event::Prop { name, .. } => (name.to_vec(), Visit::Enter),
                Event::End => (b"end".to_vec(), Visit::Enter),
            };
            seen.push((depth, String::from_utf8(what).unwrap()));
            Ok(visit)
        })
        .unwrap();
        let want = [
            (0, ""),
            (0, "#address-cells"),
            (0, "#size-cells"),
            (1, "memory@40000000"),
            (1, "device_type"),
            (1, "reg"),
            (1, "end"),
            (1, "skipped"),
            (1, "end"),
            (1, "after"),
            (1, "c"),
            (1, "end"),
            (0, "end"),
        ];
        let want: Vec<(usize, String)> = want.iter().map(|&(d, n)| (d, n.into())).collect();
        assert_eq!(seen, want);

        // A bad token inside the skipped node: Fdt::new refuses the tree, and a
        // skipping walk still reports it.
        let mut bad = tree().end().finish();
        let at = bad.windows(5).position(|w| w == b"child").unwrap() - 4;
        bad[at..at + 4].copy_from_slice(&7u32.to_be_bytes());
        assert!(Fdt::new(&bad).is_err());
        let unchecked = Fdt {
            header: Header::read(&bad).unwrap(),
            blob: &bad,
        };
        let skip_all = unchecked.walk(|depth, _| Ok(enter_if(depth == 0)));
        assert!(matches!(skip_all, Err(FdtError::BadToken { token: 7, .. })));
    }

    /// Only the children of `/reserved-memory` are reservations (what Linux's
    /// fdt_scan_reserved_mem reads): a subnode of one neither drops its `reg` nor adds
    /// its own, and nodes below other top-level nodes are passed over whatever they
    /// hold.
    #[test]
    fn only_reserved_memory_children_are_read() {
        let cells = |v: u32| v.to_be_bytes();
        let reg = |base: u32, size: u32| [0, base, 0, size].map(u32::to_be_bytes).concat();
        let blob = Tree::with_ram()
            .begin("soc")
            .prop("#address-cells", &cells(1))
            .begin("memory@50000000")
            .prop("device_type", b"memory\0")
            .prop("reg", &cells(0x5000_0000))
            .end()
            .end()
            .begin("reserved-memory")
            .prop("#address-cells", &cells(2))
            .prop("#size-cells", &cells(2))
            .prop("ranges", &[])
            .begin("fw@48000000")
            .prop("reg", &reg(0x4800_0000, 0x10_0000))
            .begin("part@0")
            .prop("reg", &reg(0x4900_0000, 0x1000))
            .prop("no-map", &[])
            .end()
            .end()
            .end()
            .begin("chosen")
            .prop("bootargs", b"quiet\0")
            .end()
            .end()
            .finish();
        let m = Machine::read(&Fdt::new(&blob).unwrap()).unwrap();
        let reserved: Vec<Range> = m.reserved.iter().map(|(r, _)| r).collect();
        let fw = Range::from_base_size(0x4800_0000, 0x10_0000).unwrap();
        assert_eq!(reserved, [fw]);
        assert!(m.no_map.is_empty());
        let gib = Range::from_base_size(0x4000_0000, 0x4000_0000).unwrap();
        assert_eq!(m.ram.iter().collect::<Vec<_>>(), [gib]);
        assert_eq!(m.bootargs, b"quiet");
    }

    #[test]
    fn duplicated_chosen_properties_are_read_as_libfdt_reads_them() {
        let blob = Tree::with_ram()
            .begin("chosen")
            .prop("bootargs", b"console=ttyAMA0 mem=512M\0")
            .prop("linux,initrd-start", &0x4800_0000u32.to_be_bytes())
            .prop("linux,initrd-end", &0x4810_0000u32.to_be_bytes())
            .prop("bootargs", b"quiet\0")
            .prop("linux,initrd-start", &0x5000_0000u64.to_be_bytes())
            .prop("linux,initrd-end", &0x5010_0000u64.to_be_bytes())
            .end()
            .end()
            .finish();
        let m = Machine::read(&Fdt::new(&blob).unwrap()).unwrap();
        assert_eq!(m.bootargs, b"console=ttyAMA0 mem=512M");
        assert_eq!(
            m.initrd,
            Some(Range {
                start: 0x4800_0000,
                end: 0x4810_0000
            })
        );
        let oracle = ::fdt::Fdt::new(&blob).unwrap();
        let chosen = oracle.find_node("/chosen").unwrap();
        assert_eq!(
            chosen.property("bootargs").unwrap().value,
            b"console=ttyAMA0 mem=512M\0"
        );
    }

    #[test]
    fn wipe_seeds_zeroes_exactly_the_values() {
        let mut blob = dtb("virt-1G-smp1.dtb");
        let before = blob.clone();
        let (k, r) = {
            let m = Machine::read(&Fdt::new(&before).unwrap()).unwrap();
            (
                m.kaslr_seed.unwrap().1,
                m.rng_seed.map(|(v, o)| (o, v.len())).unwrap(),
            )
        };
        wipe_seeds(&mut blob, [(k, 8), r]);
        let m = Machine::read(&Fdt::new(&blob).unwrap()).unwrap();
        assert_eq!(m.kaslr_seed.unwrap().0, 0);
        assert!(m.rng_seed.unwrap().0.iter().all(|&b| b == 0));
        let changed = blob.iter().zip(&before).filter(|(a, b)| a != b).count();
        assert!(changed <= 8 + r.1 && changed > 0);
    }

    #[test]
    fn corrupt_trees_are_errors_not_panics() {
        let good = dtb("synthetic-reserved.dtb");
        assert_eq!(Fdt::new(&good[..10]).unwrap_err(), FdtError::Truncated);
        let mut bad = good.clone();
        bad[0] ^= 1;
        assert!(matches!(Fdt::new(&bad), Err(FdtError::BadMagic(_))));
        // Every truncation and every single-byte flip: an error or a tree, never a panic.
        for len in 0..good.len() {
            let _ = Fdt::new(&good[..len]).and_then(|f| Machine::read(&f).map(|_| ()));
        }
        for i in 0..good.len() {
            for bit in [0x01, 0x80, 0xff] {
                let mut b = good.clone();
                b[i] ^= bit;
                let _ = Fdt::new(&b).and_then(|f| Machine::read(&f).map(|_| ()));
            }
        }
    }

    #[test]
    fn a_kaslr_seed_of_the_wrong_length_is_ignored_not_fatal() {
        let blob = dtb("virt-1G-smp1.dtb");
        let fdt = Fdt::new(&blob).unwrap();
        let short = edit::Edit::Set("kaslr-seed", &[1, 2, 3, 4]);
        let mut out = vec![0; edit::rebuilt_size(&fdt, &[short])];
        let n = edit::rebuild(&fdt, &[short], &mut out).unwrap();
        let m = Machine::read(&Fdt::new(&out[..n]).unwrap()).unwrap();
        assert_eq!((m.kaslr_seed, m.bad_kaslr_seed), (None, Some(4)));
        assert!(m.rng_seed.is_some());
    }

    #[test]
    fn psci_conduit() {
        let blob = dtb("virt-1G-smp1.dtb");
        assert_eq!(psci(&Fdt::new(&blob).unwrap()), Ok(Some(PsciConduit::Hvc)));
        let blob = dtb("virt-el2-2G-smp2.dtb");
        assert_eq!(psci(&Fdt::new(&blob).unwrap()), Ok(Some(PsciConduit::Smc)));
        let mut none = dtb("virt-1G-smp1.dtb");
        let at = none.windows(5).position(|w| w == b"psci\0").unwrap();
        none[at] = b'x';
        assert_eq!(psci(&Fdt::new(&none).unwrap()), Ok(None));
    }

    #[test]
    fn a_tree_without_memory_is_an_error() {
        let blob = dtb("virt-1G-smp1.dtb");
        let mut bad = blob.clone();
        // Change the device_type value so no node is a memory node.
        let at = bad.windows(7).position(|w| w == b"memory\0").unwrap();
        bad[at] = b'x';
        assert_eq!(
            Machine::read(&Fdt::new(&bad).unwrap()).unwrap_err(),
            FdtError::NoMemory
        );
    }
}
