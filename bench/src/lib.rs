//! The inputs of the boot-time benchmarks (`benches/boot.rs`, run by `cargo xtask
//! bench`): Debian's arm64 Image packed as xtask packs it, ELF files with a million
//! RELA entries or the equivalent RELR, a memory map of a thousand regions. Host code;
//! none of it reaches the shim.

use std::path::PathBuf;

use shim_common::container::{self, Compression, Format};
use shim_common::memmap::{Range, RangeSet};
use shim_common::slot::Request;

/// The environment variable naming the Image (xtask sets it).
pub const IMAGE_ENV: &str = "SHIM_BENCH_IMAGE";

/// A criterion group: its name and its members' names, the first being the shim's own
/// path, which `cargo xtask bench` gives the others' times as ratios of.
pub struct Group {
    pub name: &'static str,
    /// What is measured, for the report.
    pub what: &'static str,
    pub members: &'static [&'static str],
}

pub const INFLATE: Group = Group {
    name: "inflate",
    what: "Debian's arm64 Image from its zlib container as xtask packs it (and from its LZ4 \
           one; and from `zstd -19`, which the shim does not decode)",
    members: &[
        "shim-sirocco",
        "zlib-rs",
        "miniz_oxide",
        "libdeflate",
        "shim-lz4",
        "zstd-zero",
        "libzstd",
        "memcpy-output",
    ],
};
pub const SHA256: Group = Group {
    name: "sha256",
    what: "SHA-256 of Debian's arm64 Image",
    members: &["shim-portable", "shim-sse2", "shim-sha-ni", "sha2-sha-ni"],
};
pub const RELOCATE: Group = Group {
    name: "relocate",
    what: "1,000,000 RELATIVE relocations through shim-common's Elf::relocate; memcpy of \
           the 8 MB of words they write, and of those words with the 24 MB RELA table",
    members: &["rela", "relr", "memcpy-touched", "memcpy-with-table"],
};
pub const SLOT: Group = Group {
    name: "slot",
    what: "a 26.7 MiB image, 2 MiB aligned, over 1,000 free regions",
    members: &["choose", "count"],
};
/// Every group, in the order of the report.
pub const GROUPS: [&Group; 4] = [&INFLATE, &SHA256, &RELOCATE, &SLOT];

/// How many relocations the relocation group applies.
pub const RELOCATIONS: usize = 1_000_000;
/// How many free regions the slot group's map has.
pub const REGIONS: usize = 1000;

/// The Linux arm64 Image to inflate and hash: `$SHIM_BENCH_IMAGE`, or where xtask
/// caches Debian's.
pub fn image_path() -> PathBuf {
    match std::env::var_os(IMAGE_ENV) {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/xtask/linux-arm64/Image"),
    }
}

/// The Image's bytes and its container as xtask packs it (zlib, miniz_oxide level 10).
pub fn image_and_container() -> (Vec<u8>, Vec<u8>) {
    let path = image_path();
    let image = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e} (`cargo xtask bench` downloads Debian's Image)",
            path.display()
        )
    });
    let packed = container::pack(Format::LinuxArm64Image, Compression::Zlib, &image);
    (image, packed)
}

/// The link-time base of the relocation images, and where their relocated words start.
const WORDS_AT: u64 = 0x1000;
const R_X86_64_RELATIVE: u64 = 8;
const DT_NULL: u64 = 0;
const DT_RELA: u64 = 7;
const DT_RELASZ: u64 = 8;
const DT_RELAENT: u64 = 9;
const DT_RELRSZ: u64 = 35;
const DT_RELR: u64 = 36;
const DT_RELRENT: u64 = 37;

/// The relocation table of [`relocation_image`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    Rela,
    Relr,
}

/// An x86_64 ELF64 ET_DYN with one RW PT_LOAD holding `words` consecutive pointers
/// (each holding its own link address, as a table of pointers does) and a table that
/// relocates every one of them: `words` RELATIVE RELA entries (24 bytes each), or RELR
/// (one address, then bitmaps of 63 words: 8 bytes per 63 pointers).
pub fn relocation_image(table: Table, words: usize) -> Vec<u8> {
    let mut file = vec![0u8; WORDS_AT as usize];
    for i in 0..words as u64 {
        file.extend((WORDS_AT + 8 * i).to_le_bytes());
    }
    let table_at = file.len() as u64;
    match table {
        Table::Rela => {
            for i in 0..words as u64 {
                file.extend((WORDS_AT + 8 * i).to_le_bytes()); // r_offset
                file.extend(R_X86_64_RELATIVE.to_le_bytes()); // r_info
                file.extend((WORDS_AT + 8 * i).to_le_bytes()); // r_addend
            }
        }
        Table::Relr => {
            if words > 0 {
                file.extend(WORDS_AT.to_le_bytes());
            }
            let mut left = words.saturating_sub(1);
            while left > 0 {
                let n = left.min(63);
                // Bit 0 marks a bitmap; bits 1..=n relocate the next n words.
                let bits = if n == 63 {
                    u64::MAX
                } else {
                    (1 << (n + 1)) - 1
                };
                file.extend(bits.to_le_bytes());
                left -= n;
            }
        }
    }
    let table_len = file.len() as u64 - table_at;
    let dynamic_at = file.len() as u64;
    let dynamic = match table {
        Table::Rela => [
            (DT_RELA, table_at),
            (DT_RELASZ, table_len),
            (DT_RELAENT, 24),
        ],
        Table::Relr => [(DT_RELR, table_at), (DT_RELRSZ, table_len), (DT_RELRENT, 8)],
    };
    for (tag, value) in dynamic.into_iter().chain([(DT_NULL, 0)]) {
        file.extend(tag.to_le_bytes());
        file.extend(value.to_le_bytes());
    }
    let dynamic_len = file.len() as u64 - dynamic_at;

    let len = file.len() as u64;
    let mut header = Vec::with_capacity(64 + 2 * 56);
    header.extend(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    header.extend(3u16.to_le_bytes()); // ET_DYN
    header.extend(62u16.to_le_bytes()); // EM_X86_64
    header.extend(1u32.to_le_bytes()); // EV_CURRENT
    header.extend(WORDS_AT.to_le_bytes()); // e_entry
    header.extend(64u64.to_le_bytes()); // e_phoff
    header.extend(0u64.to_le_bytes()); // e_shoff
    header.extend(0u32.to_le_bytes()); // e_flags
    for half in [64u16, 56, 2, 64, 0, 0] {
        // e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
        header.extend(half.to_le_bytes());
    }
    let phdr = |p_type: u32, p_flags: u32, offset: u64, filesz: u64, align: u64| {
        let mut ph = Vec::with_capacity(56);
        ph.extend(p_type.to_le_bytes());
        ph.extend(p_flags.to_le_bytes());
        for word in [offset, offset, offset, filesz, filesz, align] {
            // p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align
            ph.extend(word.to_le_bytes());
        }
        ph
    };
    header.extend(phdr(1, 6, 0, len, 0x1000)); // PT_LOAD, RW
    header.extend(phdr(2, 6, dynamic_at, dynamic_len, 8)); // PT_DYNAMIC
    file[..header.len()].copy_from_slice(&header);
    file
}

/// Free memory of `regions` ranges, as firmware with many holes reports it: every
/// 128 MiB from 1 GiB a range of 16 to 63 MiB starting a few pages off 2 MiB.
pub fn fragmented_map<const N: usize>(regions: usize) -> RangeSet<N> {
    const MIB: u64 = 1 << 20;
    let mut map = RangeSet::new();
    for i in 0..regions as u64 {
        let start = (1 << 30) + i * 128 * MIB + (i % 5) * 0x1000;
        let len = (16 + (i * 7) % 48) * MIB;
        map.insert(Range {
            start,
            end: start + len,
        })
        .unwrap_or_else(|e| panic!("region {i}: {e}"));
    }
    map
}

/// What the slot benchmark places: Debian's arm64 Image's reservation, 2 MiB aligned.
pub const SLOT_REQUEST: Request = Request {
    size: 0x1ab_0000,
    align: 2 << 20,
    min_addr: 0,
    max_end: u64::MAX,
};

#[cfg(test)]
mod tests {
    use super::*;
    use shim_common::elf::{Elf, Machine};
    use shim_common::slot;

    fn relocated(table: Table, words: usize, base: u64) -> Vec<u8> {
        let file = relocation_image(table, words);
        let elf = Elf::parse(&file, Machine::X86_64).unwrap();
        let mut image = vec![0u8; elf.span() as usize];
        elf.load(&file, &mut image).unwrap();
        let stats = elf.relocate(&mut image, base).unwrap();
        assert_eq!(stats.rela + stats.relr, words, "{table:?}");
        image
    }

    #[test]
    fn rela_and_relr_relocate_the_same_words() {
        for words in [1, 2, 63, 64, 65, 127, 1000] {
            let base = 0xffff_8000_0000_0000;
            let rela = relocated(Table::Rela, words, base);
            let relr = relocated(Table::Relr, words, base);
            let at = WORDS_AT as usize;
            let word = |image: &[u8], i: usize| {
                u64::from_le_bytes(image[at + 8 * i..at + 8 * i + 8].try_into().unwrap())
            };
            for i in 0..words {
                let want = base + WORDS_AT + 8 * i as u64;
                assert_eq!(word(&rela, i), want, "RELA word {i} of {words}");
                assert_eq!(word(&relr, i), want, "RELR word {i} of {words}");
            }
        }
    }

    #[test]
    fn relr_is_a_bitmap_per_63_words() {
        let rela = relocation_image(Table::Rela, 1_000_000);
        let relr = relocation_image(Table::Relr, 1_000_000);
        let table = |file: &[u8]| file.len() - 0x1000 - 8 * 1_000_000 - 4 * 16;
        assert_eq!(table(&rela), 24 * 1_000_000);
        // One address, then ceil(999_999 / 63) bitmaps.
        assert_eq!(table(&relr), 8 * (1 + 999_999usize.div_ceil(63)));
    }

    #[test]
    fn the_map_has_its_regions_and_slots_in_most() {
        let map = fragmented_map::<1024>(1000);
        assert_eq!(map.len(), 1000);
        let slots = slot::count(&map, &SLOT_REQUEST).unwrap();
        // A 26.7 MiB image fits in the ranges of 28 MiB and more, in 1 to 17 slots.
        assert!(slots > 1000 && slots < 17 * 1000, "{slots}");
    }
}
