//! Test helpers shared by the bootparams tests: zero pages, fake physical memory and
//! setup_data nodes built from plain values.

use std::collections::HashMap;
use std::vec::Vec;

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromZeros, IntoBytes};

use super::*;
use crate::memmap::{MemoryMap, Range};

pub fn r(start: u64, end: u64) -> Range {
    Range { start, end }
}

/// A zero page with "HdrS", version 2.15, and the given E820 table.
pub fn zero_page(e820: &[(u64, u64, u32)]) -> Vec<u8> {
    let mut zp = ZeroPage::new_zeroed();
    zp.hdr.header = U32::new(HDRS_MAGIC);
    zp.hdr.boot_flag = U16::new(BOOT_FLAG);
    zp.hdr.version = U16::new(0x020f);
    for (slot, &(a, s, t)) in zp.e820_table.iter_mut().zip(e820) {
        *slot = E820Entry::new(a, s, t);
    }
    zp.e820_entries = u8::try_from(e820.len()).unwrap();
    zp.as_bytes().to_vec()
}

pub fn ram(entries: &[(u64, u64, u32)]) -> Result<Vec<Range>, BootParamsError> {
    let mut out = MemoryMap::new();
    ram_from_e820(entries.iter().copied(), &mut out)?;
    Ok(out.as_slice().to_vec())
}

/// Fake physical memory: blobs keyed by their PA.
pub struct Memory(pub HashMap<u64, Vec<u8>>);

impl Memory {
    pub fn read(&self, pa: u64, len: u64) -> Option<&[u8]> {
        self.0.iter().find_map(|(&base, blob)| {
            let off = usize::try_from(pa.checked_sub(base)?).ok()?;
            let end = off.checked_add(usize::try_from(len).ok()?)?;
            blob.get(off..end)
        })
    }
}

pub fn node(next: u64, typ: u32, data: &[u8]) -> Vec<u8> {
    let header = SetupDataHeader {
        next: U64::new(next),
        typ: U32::new(typ),
        len: U32::new(u32::try_from(data.len()).unwrap()),
    };
    let mut v = header.as_bytes().to_vec();
    v.extend_from_slice(data);
    v
}

pub fn e820_bytes(entries: &[(u64, u64, u32)]) -> Vec<u8> {
    entries
        .iter()
        .flat_map(|&(a, s, t)| E820Entry::new(a, s, t).as_bytes().to_vec())
        .collect()
}
