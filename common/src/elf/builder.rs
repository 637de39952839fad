//! A builder of small ELF64 ET_DYN files for tests, so that every test of a payload
//! (the parser's, the relocator's, the boot sequence's) builds its ELF one way.

use super::parse::{
    DT_NULL, DT_RELA, DT_RELAENT, DT_RELASZ, DT_RELR, DT_RELRENT, DT_RELRSZ, PF_R, PF_W, PF_X,
};

/// A PT_LOAD to build: `data` at `vaddr`, `memsz` bytes in memory, `p_align` `align`.
#[derive(Clone)]
pub struct Seg {
    pub vaddr: u64,
    pub data: Vec<u8>,
    pub memsz: u64,
    pub flags: u32,
    pub align: u64,
}

/// The `p_align` of a page-aligned segment.
pub const PAGE_ALIGN: u64 = 4096;

/// Builds an ELF64 ET_DYN: header, program headers (PT_LOADs, then PT_DYNAMIC if
/// `dynamic` is non-empty), segment data, with the dynamic table at the end of the
/// last segment's file bytes, as linkers put it (in the RW segment).
pub fn build(em: u16, entry: u64, segs: &[Seg], dynamic: &[(u64, u64)]) -> Vec<u8> {
    let d: Vec<u8> = dynamic
        .iter()
        .flat_map(|(t, v)| [t.to_le_bytes(), v.to_le_bytes()].concat())
        .collect();
    let mut segs = segs.to_vec();
    // (vaddr, offset within the segment data) of the dynamic table in the last segment.
    let mut loaded_at = None;
    if let (false, Some(last)) = (d.is_empty(), segs.last_mut()) {
        loaded_at = Some((last.vaddr + last.data.len() as u64, last.data.len()));
        last.data.extend(&d);
        last.memsz = last.memsz.max(last.data.len() as u64);
    }
    let nph = segs.len() + usize::from(!dynamic.is_empty());
    let mut data_off = 64 + 56 * nph;
    let mut out = vec![0u8; 64];
    out[..4].copy_from_slice(b"\x7fELF");
    out[4] = 2;
    out[5] = 1;
    out[6] = 1;
    let put = |out: &mut Vec<u8>, off: usize, v: &[u8]| out[off..off + v.len()].copy_from_slice(v);
    put(&mut out, 16, &3u16.to_le_bytes());
    put(&mut out, 18, &em.to_le_bytes());
    put(&mut out, 20, &1u32.to_le_bytes());
    put(&mut out, 24, &entry.to_le_bytes());
    put(&mut out, 32, &64u64.to_le_bytes());
    put(&mut out, 52, &64u16.to_le_bytes());
    put(&mut out, 54, &56u16.to_le_bytes());
    put(&mut out, 56, &(nph as u16).to_le_bytes());
    let mut blobs = Vec::new();
    let phdr =
        |t: u32, flags: u32, off: usize, vaddr: u64, filesz: usize, memsz: u64, align: u64| {
            [
                &t.to_le_bytes()[..],
                &flags.to_le_bytes(),
                &(off as u64).to_le_bytes(),
                &vaddr.to_le_bytes(),
                &vaddr.to_le_bytes(),
                &(filesz as u64).to_le_bytes(),
                &memsz.to_le_bytes(),
                &align.to_le_bytes(),
            ]
            .concat()
        };
    let last_off = data_off
        + segs
            .iter()
            .rev()
            .skip(1)
            .map(|s| s.data.len())
            .sum::<usize>();
    for s in &segs {
        out.extend(phdr(
            1,
            s.flags,
            data_off,
            s.vaddr,
            s.data.len(),
            s.memsz,
            s.align,
        ));
        blobs.extend_from_slice(&s.data);
        data_off += s.data.len();
    }
    match loaded_at {
        Some((vaddr, at)) => {
            out.extend(phdr(2, 4, last_off + at, vaddr, d.len(), d.len() as u64, 8))
        }
        None if !d.is_empty() => {
            out.extend(phdr(2, 4, data_off, 0, d.len(), d.len() as u64, 8));
            blobs.extend(d);
        }
        None => {}
    }
    out.extend(blobs);
    out
}

pub const AARCH64: u16 = 183;
pub const BASE: u64 = 0x40_0000;

pub fn rela(offset: u64, r_type: u32, addend: u64) -> Vec<u8> {
    [
        offset.to_le_bytes(),
        u64::from(r_type).to_le_bytes(),
        addend.to_le_bytes(),
    ]
    .concat()
}

/// Text at BASE (0x100 bytes), data segment at BASE + 0x1000 holding 32 words
/// (each its own link address), then the RELA table at BASE + 0x1100, the RELR
/// table and the dynamic table after it; bss to BASE + 0x3000.
pub fn sample(relas: &[Vec<u8>], relrs: &[u64]) -> Vec<u8> {
    let text = Seg {
        vaddr: BASE,
        data: vec![0xaa; 0x100],
        memsz: 0x100,
        flags: PF_R | PF_X,
        align: PAGE_ALIGN,
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
        align: PAGE_ALIGN,
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

pub fn word(image: &[u8], link: u64) -> u64 {
    let at = (link - BASE) as usize;
    u64::from_le_bytes(image[at..at + 8].try_into().unwrap())
}
