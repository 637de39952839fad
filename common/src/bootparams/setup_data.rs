//! The `setup_data` list (boot.rst, arch/x86/include/uapi/asm/setup_data.h): node
//! types, the checked walk, and what consuming a node zeroes.

use core::marker::PhantomData;

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::BootParamsError;
use crate::memmap::Range;

// setup_data types (arch/x86/include/uapi/asm/setup_data.h).
pub const SETUP_NONE: u32 = 0;
/// More E820 entries than the zero page holds, as a packed [`E820Entry`](super::E820Entry) array.
pub const SETUP_E820_EXT: u32 = 1;
pub const SETUP_DTB: u32 = 2;
pub const SETUP_PCI: u32 = 3;
pub const SETUP_EFI: u32 = 4;
pub const SETUP_APPLE_PROPERTIES: u32 = 5;
pub const SETUP_JAILHOUSE: u32 = 6;
pub const SETUP_CC_BLOB: u32 = 7;
pub const SETUP_IMA: u32 = 8;
/// Random bytes from the loader (QEMU >= 7.1, kexec_file).
pub const SETUP_RNG_SEED: u32 = 9;
pub const SETUP_KEXEC_KHO: u32 = 10;
/// The node's data is a [`SetupIndirect`] pointing at the real data elsewhere.
pub const SETUP_INDIRECT: u32 = 1 << 31;

/// Size of the `struct setup_data` header (`next`, `type`, `len`) before the data.
pub const SETUP_DATA_HEADER_SIZE: u64 = 16;
/// The longest `setup_data` list accepted; more is reported as a loop.
pub const MAX_SETUP_DATA_NODES: usize = 64;

/// `struct setup_data` without its data.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct SetupDataHeader {
    /// PA of the next node, 0 at the end.
    pub next: U64,
    /// `SETUP_*`.
    pub typ: U32,
    /// Bytes of data following this header.
    pub len: U32,
}

const _: () = assert!(core::mem::size_of::<SetupDataHeader>() as u64 == SETUP_DATA_HEADER_SIZE);

/// `struct setup_indirect`: the data of a [`SETUP_INDIRECT`] node.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct SetupIndirect {
    /// `SETUP_INDIRECT | SETUP_*` of the data it points at.
    pub typ: U32,
    pub reserved: U32,
    pub len: U64,
    pub addr: U64,
}

const _: () = assert!(core::mem::size_of::<SetupIndirect>() == 24);

/// One `setup_data` node, read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetupData<'m> {
    /// PA of the node (its header).
    pub pa: u64,
    /// `SETUP_*`.
    pub typ: u32,
    /// The `len` bytes after the header.
    pub data: &'m [u8],
}

impl SetupData<'_> {
    /// The node as memory to avoid: header and data, as kaslr.c does.
    pub fn range(&self) -> Range {
        let len = u64::try_from(self.data.len()).unwrap_or(u64::MAX);
        Range {
            start: self.pa,
            end: self
                .pa
                .saturating_add(SETUP_DATA_HEADER_SIZE)
                .saturating_add(len),
        }
    }

    /// For a [`SETUP_INDIRECT`] node, the memory its [`SetupIndirect`] points at (also to
    /// be avoided, as kaslr.c does); `None` for other nodes or an empty target.
    pub fn indirect(&self) -> Result<Option<Range>, BootParamsError> {
        if self.typ != SETUP_INDIRECT {
            return Ok(None);
        }
        let bad = BootParamsError::BadSetupIndirect { pa: self.pa };
        let (ind, _) = SetupIndirect::read_from_prefix(self.data).map_err(|_| bad)?;
        // kaslr.c skips an indirect node that points at another indirect one.
        if ind.typ.get() == SETUP_INDIRECT {
            return Ok(None);
        }
        let r = Range::from_base_size(ind.addr.get(), ind.len.get()).map_err(|_| bad)?;
        Ok((!r.is_empty()).then_some(r))
    }
}

/// Walks the `setup_data` list from `first` (0: empty). `read(pa, len)` returns the
/// `len` bytes of physical memory at `pa`, or `None` when it cannot; it is called for
/// each node's 16-byte header and then for its data (not at all for empty data).
///
/// Yields each node in list order; stops after the node whose `next` is 0. After an
/// error (unreadable node, `len` past 2^64, a node seen twice or more than
/// [`MAX_SETUP_DATA_NODES`] nodes) it yields nothing more.
pub fn walk_setup_data<'m, F>(first: u64, read: F) -> SetupDataIter<'m, F>
where
    F: FnMut(u64, u64) -> Option<&'m [u8]>,
{
    SetupDataIter {
        next: first,
        read,
        seen: [0; MAX_SETUP_DATA_NODES],
        count: 0,
        failed: false,
        _memory: PhantomData,
    }
}

/// The iterator of [`walk_setup_data`].
pub struct SetupDataIter<'m, F> {
    next: u64,
    read: F,
    seen: [u64; MAX_SETUP_DATA_NODES],
    count: usize,
    failed: bool,
    _memory: PhantomData<&'m [u8]>,
}

impl<'m, F> SetupDataIter<'m, F>
where
    F: FnMut(u64, u64) -> Option<&'m [u8]>,
{
    fn step(&mut self) -> Result<SetupData<'m>, BootParamsError> {
        let pa = self.next;
        let seen = self.seen.get(..self.count).unwrap_or(&[]);
        if seen.contains(&pa) {
            return Err(BootParamsError::SetupDataLoop);
        }
        let slot = self
            .seen
            .get_mut(self.count)
            .ok_or(BootParamsError::SetupDataLoop)?;
        *slot = pa;
        self.count = self
            .count
            .checked_add(1)
            .ok_or(BootParamsError::SetupDataLoop)?;

        let unreadable = |pa, len| BootParamsError::SetupDataUnreadable { pa, len };
        let header_bytes = (self.read)(pa, SETUP_DATA_HEADER_SIZE)
            .ok_or(unreadable(pa, SETUP_DATA_HEADER_SIZE))?;
        let (header, _) = SetupDataHeader::read_from_prefix(header_bytes)
            .map_err(|_| unreadable(pa, SETUP_DATA_HEADER_SIZE))?;
        let len = header.len.get();
        let data_pa = pa
            .checked_add(SETUP_DATA_HEADER_SIZE)
            .filter(|d| d.checked_add(u64::from(len)).is_some())
            .ok_or(BootParamsError::SetupDataOverflow { pa, len })?;
        let data = if len == 0 {
            &[]
        } else {
            let n = usize::try_from(len).map_err(|_| unreadable(data_pa, u64::from(len)))?;
            (self.read)(data_pa, u64::from(len))
                .and_then(|d| d.get(..n))
                .ok_or(unreadable(data_pa, u64::from(len)))?
        };
        self.next = header.next.get();
        Ok(SetupData {
            pa,
            typ: header.typ.get(),
            data,
        })
    }
}

impl<'m, F> Iterator for SetupDataIter<'m, F>
where
    F: FnMut(u64, u64) -> Option<&'m [u8]>,
{
    type Item = Result<SetupData<'m>, BootParamsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.next == 0 {
            return None;
        }
        let r = self.step();
        if r.is_err() {
            self.failed = true;
        }
        Some(r)
    }
}

/// Where a setup_data node's `len` field and data lie: what consuming it zeroes, as
/// Linux's `parse_setup_data` does (`memzero_explicit(data, len); len = 0`).
pub fn consumed_fields(node_pa: u64, data_len: u64) -> (Range, Range) {
    let len = Range {
        start: node_pa.saturating_add(12),
        end: node_pa.saturating_add(16),
    };
    let data = Range {
        start: node_pa.saturating_add(SETUP_DATA_HEADER_SIZE),
        end: node_pa
            .saturating_add(SETUP_DATA_HEADER_SIZE)
            .saturating_add(data_len),
    };
    (len, data)
}

/// Writes a `struct setup_data` node (`{u64 next; u32 type; u32 len; u8 data[len]}`)
/// at the start of `out`; returns the bytes written, `16 + data.len()`.
pub fn write_setup_data_node(
    out: &mut [u8],
    next: u64,
    typ: u32,
    data: &[u8],
) -> Result<usize, BootParamsError> {
    let len = u32::try_from(data.len())
        .map_err(|_| BootParamsError::SetupDataTooLong { len: data.len() })?;
    let header = SETUP_DATA_HEADER_SIZE as usize;
    let need = header
        .checked_add(data.len())
        .ok_or(BootParamsError::SetupDataTooLong { len: data.len() })?;
    let have = out.len();
    let node = out
        .get_mut(..need)
        .ok_or(BootParamsError::SetupDataNoRoom { need, have })?;
    let (head, body) = node.split_at_mut(header);
    let h = SetupDataHeader {
        next: U64::new(next),
        typ: U32::new(typ),
        len: U32::new(len),
    };
    head.copy_from_slice(h.as_bytes());
    body.copy_from_slice(data);
    Ok(need)
}

/// A SETUP_RNG_SEED node (type 9) holding `seed`, linking to `next` (the rest of the
/// chain, 0 for none). Linux's `parse_setup_data` credits the bytes as entropy and
/// then zeroes them. Returns the bytes written.
pub fn write_rng_seed_node(
    out: &mut [u8],
    next: u64,
    seed: &[u8],
) -> Result<usize, BootParamsError> {
    write_setup_data_node(out, next, SETUP_RNG_SEED, seed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootparams::testutil::*;
    use crate::bootparams::*;
    use crate::memmap::MemoryMap;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use zerocopy::little_endian::{U32, U64};
    use zerocopy::{FromBytes, IntoBytes};

    #[test]
    fn setup_data_walk_errors() {
        // Empty list.
        assert_eq!(walk_setup_data(0, |_, _| None::<&[u8]>).count(), 0);

        // A cycle of three: three nodes, then the error, then nothing.
        let mut mem = Memory(HashMap::new());
        mem.0.insert(0x1000, node(0x2000, SETUP_DTB, b"dtb"));
        mem.0.insert(0x2000, node(0x3000, SETUP_PCI, b""));
        mem.0.insert(0x3000, node(0x1000, SETUP_EFI, b"efi"));
        let got: Vec<_> = walk_setup_data(0x1000, |pa, len| mem.read(pa, len)).collect();
        assert_eq!(got.len(), 4);
        assert!(got[..3].iter().all(Result::is_ok));
        assert_eq!(got[1].unwrap().data, b"");
        assert_eq!(got[1].unwrap().range(), r(0x2000, 0x2010));
        assert_eq!(got[3], Err(BootParamsError::SetupDataLoop));

        // A node pointing at itself.
        let mut mem = Memory(HashMap::new());
        mem.0.insert(0x1000, node(0x1000, SETUP_DTB, b"x"));
        let got: Vec<_> = walk_setup_data(0x1000, |pa, len| mem.read(pa, len)).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], Err(BootParamsError::SetupDataLoop));

        // 64 distinct nodes are fine; 65 are a loop.
        for (n, ok) in [(64u64, true), (65, false)] {
            let mut mem = Memory(HashMap::new());
            for i in 1..=n {
                let next = if i == n { 0 } else { (i + 1) * 0x100 };
                mem.0.insert(i * 0x100, node(next, SETUP_NONE, &[i as u8]));
            }
            let got: Result<Vec<_>, _> =
                walk_setup_data(0x100, |pa, len| mem.read(pa, len)).collect();
            if ok {
                assert_eq!(got.unwrap().len(), 64);
            } else {
                assert_eq!(got.err(), Some(BootParamsError::SetupDataLoop));
            }
        }

        // Unreadable header, unreadable or short data.
        let mut mem = Memory(HashMap::new());
        mem.0.insert(0x1000, node(0x5000, SETUP_DTB, b"abc"));
        let mut data_short = node(0, SETUP_DTB, b"abcdef");
        data_short.truncate(16 + 3);
        mem.0.insert(0x2000, data_short);
        let got: Vec<_> = walk_setup_data(0x1000, |pa, len| mem.read(pa, len)).collect();
        assert_eq!(
            got[1],
            Err(BootParamsError::SetupDataUnreadable {
                pa: 0x5000,
                len: 16
            })
        );
        assert_eq!(got.len(), 2);
        let got: Vec<_> = walk_setup_data(0x2000, |pa, len| mem.read(pa, len)).collect();
        assert_eq!(
            got,
            [Err(BootParamsError::SetupDataUnreadable {
                pa: 0x2010,
                len: 6
            })]
        );
        // A reader returning fewer bytes than asked for is unreadable, more is cut.
        let hdr = node(0, SETUP_DTB, &[0; 8]);
        let got: Vec<_> = walk_setup_data(0x10, |_, len| hdr.get(..len as usize - 1)).collect();
        assert!(matches!(
            got[..],
            [Err(BootParamsError::SetupDataUnreadable {
                pa: 0x10,
                len: 16
            })]
        ));
        let big = [0u8; 64];
        let got: Vec<_> = walk_setup_data(0x10, |pa, _| {
            if pa == 0x10 {
                Some(&hdr[..16])
            } else {
                Some(&big[..])
            }
        })
        .collect();
        assert_eq!(got[0].unwrap().data.len(), 8);

        // A node whose len runs past 2^64.
        let top = u64::MAX - 0x20;
        let mut mem = Memory(HashMap::new());
        mem.0.insert(top, node(0, SETUP_DTB, b"")[..16].to_vec());
        let mut h = SetupDataHeader::read_from_bytes(&mem.0[&top][..16]).unwrap();
        h.len = U32::new(0x100);
        mem.0.insert(top, h.as_bytes().to_vec());
        let got: Vec<_> = walk_setup_data(top, |pa, len| mem.read(pa, len)).collect();
        assert_eq!(
            got,
            [Err(BootParamsError::SetupDataOverflow {
                pa: top,
                len: 0x100
            })]
        );
        assert!(got[0].unwrap_err().to_string().contains("overflows"));
    }

    #[test]
    fn setup_indirect() {
        let ind = |typ: u32, len: u64, addr: u64| {
            SetupIndirect {
                typ: U32::new(typ),
                reserved: U32::new(0),
                len: U64::new(len),
                addr: U64::new(addr),
            }
            .as_bytes()
            .to_vec()
        };
        let data = ind(SETUP_INDIRECT | SETUP_E820_EXT, 0x100, 0x8000);
        let node = |data| SetupData {
            pa: 0x1000,
            typ: SETUP_INDIRECT,
            data,
        };
        assert_eq!(node(&data).indirect(), Ok(Some(r(0x8000, 0x8100))));
        assert_eq!(node(&data).range(), r(0x1000, 0x1000 + 16 + 24));
        let data = ind(SETUP_INDIRECT, 0x100, 0x8000);
        assert_eq!(node(&data).indirect(), Ok(None));
        let data = ind(SETUP_INDIRECT | SETUP_DTB, 0, 0x8000);
        assert_eq!(node(&data).indirect(), Ok(None));
        let bad = Err(BootParamsError::BadSetupIndirect { pa: 0x1000 });
        assert_eq!(node(&data[..23]).indirect(), bad);
        let data = ind(SETUP_INDIRECT | SETUP_DTB, 2, u64::MAX);
        assert_eq!(node(&data).indirect(), bad);
    }

    #[test]
    fn rng_seed_node_links_into_the_chain() {
        // Two nodes in one buffer at PA 0x9_0000: the seed first, then a DTB node.
        let mut mem = vec![0u8; 0x100];
        let seed: Vec<u8> = (0..32).collect();
        let n = write_rng_seed_node(&mut mem, 0x9_0080, &seed).unwrap();
        assert_eq!(n, 48);
        assert_eq!(mem[..8], 0x9_0080u64.to_le_bytes());
        assert_eq!(mem[8..12], 9u32.to_le_bytes());
        assert_eq!(mem[12..16], 32u32.to_le_bytes());
        assert_eq!(mem[16..48], seed[..]);
        assert!(mem[48..].iter().all(|&b| b == 0));
        let m = write_setup_data_node(&mut mem[0x80..], 0, SETUP_DTB, b"dtb").unwrap();
        assert_eq!(m, 19);
        let read = |pa: u64, len: u64| {
            let s = usize::try_from(pa.checked_sub(0x9_0000)?).ok()?;
            mem.get(s..s + len as usize)
        };
        let nodes: Vec<_> = walk_setup_data(0x9_0000, read)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!((nodes[0].typ, nodes[0].data), (SETUP_RNG_SEED, &seed[..]));
        assert_eq!(nodes[1].data, b"dtb");

        // Exactly enough room is enough; one byte less is an error, nothing written.
        let mut exact = [0u8; 16 + 8];
        assert_eq!(write_rng_seed_node(&mut exact, 0, &[7; 8]), Ok(24));
        let mut short = [0xeeu8; 16 + 7];
        assert_eq!(
            write_rng_seed_node(&mut short, 0, &[7; 8]),
            Err(BootParamsError::SetupDataNoRoom { need: 24, have: 23 })
        );
        assert!(short.iter().all(|&b| b == 0xee));
    }

    proptest! {
        #[test]
        fn random_setup_data_never_panics(
            mem in proptest::collection::vec(any::<u8>(), 0..600),
            first in 0u64..700,
            links in proptest::collection::vec(0u64..700, 0..8),
        ) {
            // Fake memory at [0, len); sprinkle in-range `next` pointers so walks go on.
            let mut mem = mem;
            for (i, l) in links.iter().enumerate() {
                if let Some(w) = mem.get_mut(i * 40..i * 40 + 8) {
                    w.copy_from_slice(&l.to_le_bytes());
                }
                if let Some(w) = mem.get_mut(i * 40 + 12..i * 40 + 16) {
                    w.copy_from_slice(&((l % 24) as u32).to_le_bytes());
                }
            }
            let read = |pa: u64, len: u64| {
                let s = usize::try_from(pa).ok()?;
                mem.get(s..s.checked_add(usize::try_from(len).ok()?)?)
            };
            let mut n = 0;
            for node in walk_setup_data(first, read) {
                n += 1;
                prop_assert!(n <= MAX_SETUP_DATA_NODES + 1);
                if let Ok(node) = node {
                    let _ = node.range();
                    let _ = node.indirect();
                    if let Ok(e) = e820_ext(node.data) {
                        let mut out = MemoryMap::new();
                        let _ = ram_from_e820(e, &mut out);
                    }
                }
            }
        }
    }
}
