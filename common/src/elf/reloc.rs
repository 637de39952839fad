//! Applying an ELF payload's relative relocations for the base it runs at: the RELA
//! table (RELATIVE and NONE only) and the RELR bitmap encoding, every write inside the
//! image.

use zerocopy::little_endian::U64;
use zerocopy::{FromBytes, Immutable, KnownLayout};

use super::{slice, slice_mut, Elf, ElfError, Table};

pub(super) const RELA_SIZE: usize = 24;
pub(super) const RELR_SIZE: usize = 8;

#[repr(C)]
#[derive(FromBytes, KnownLayout, Immutable)]
struct Rela {
    r_offset: U64,
    /// `ELF64_R_TYPE(info) = info & 0xffffffff`.
    r_info: U64,
    /// Signed; two's complement makes `wrapping_add` right.
    r_addend: U64,
}

const _: () = assert!(core::mem::size_of::<Rela>() == RELA_SIZE);

/// Relocation counts: words patched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelocStats {
    pub rela: usize,
    pub relr: usize,
}

impl Elf {
    /// Number of RELA and RELR table entries.
    pub fn reloc_entries(&self) -> (usize, usize) {
        let entries = |t: Table, size: usize| t.len.checked_div(size as u64).unwrap_or(0) as usize;
        (entries(self.rela, RELA_SIZE), entries(self.relr, RELR_SIZE))
    }

    /// The bytes of `table` in `file`, the file this was parsed from.
    fn in_file<'f>(&self, file: &'f [u8], table: Table) -> &'f [u8] {
        slice(file, table.offset, table.len).unwrap_or_default()
    }

    /// The type (`ELF64_R_TYPE`, the low 32 bits of `r_info`) of each RELA entry of
    /// `file`, in table order: what a report counts by type, before
    /// [`Elf::relocate`] refuses any type but RELATIVE and NONE.
    pub fn rela_types<'f>(&self, file: &'f [u8]) -> impl Iterator<Item = u32> + 'f {
        self.in_file(file, self.rela)
            .chunks_exact(RELA_SIZE)
            .filter_map(|c| Rela::ref_from_bytes(c).ok())
            .map(|r| (r.r_info.get() & 0xffff_ffff) as u32)
    }

    /// How many words the RELR table of `file` relocates: one per address entry, one
    /// per set bit 1..=63 of each bitmap entry (what [`Elf::relocate`] reports as
    /// `relr`).
    pub fn relr_words(&self, file: &[u8]) -> usize {
        self.in_file(file, self.relr)
            .chunks_exact(RELR_SIZE)
            .filter_map(|c| U64::ref_from_bytes(c).ok())
            .map(|e| match e.get() {
                w if w & 1 == 0 => 1,
                w => (w >> 1).count_ones() as usize,
            })
            .sum()
    }

    /// Where `table` lies in the loaded image, as a range of indices into it.
    fn in_image(&self, table: Table) -> Result<core::ops::Range<usize>, ElfError> {
        let out = ElfError::TableOutOfFile { vaddr: table.vaddr };
        let start = table.vaddr.checked_sub(self.link_base).ok_or(out)?;
        let end = start.checked_add(table.len).ok_or(out)?;
        Ok(usize::try_from(start).map_err(|_| out)?..usize::try_from(end).map_err(|_| out)?)
    }

    /// Applies the relative relocations to a loaded `image` that will run with
    /// `link_base` at `virt_base`. The tables are read from the image itself (they
    /// lie in segments' file bytes), each entry before the words it names are
    /// written; only words inside `image[..span]` are ever written.
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
        Ok(RelocStats {
            rela: self.apply_rela(image, disp)?,
            relr: self.apply_relr(image, disp)?,
        })
    }

    /// The RELA table applied to `image` for displacement `disp`: how many words it
    /// relocated.
    fn apply_rela(&self, image: &mut [u8], disp: u64) -> Result<usize, ElfError> {
        let relas = self.in_image(self.rela)?;
        let table_out = ElfError::TableOutOfFile {
            vaddr: self.rela.vaddr,
        };
        let relative = self.machine.relative();
        let mut none = 0usize;
        // The hot loop of a large kernel: one compare for the type, one for the place
        // (an offset below link_base wraps far past the image), counts kept outside.
        for at in relas.step_by(RELA_SIZE) {
            let entry = image.get(at..).and_then(|b| Rela::read_from_prefix(b).ok());
            let (r, _) = entry.ok_or(table_out)?;
            let offset = r.r_offset.get();
            let r_type = r.r_info.get() as u32;
            if r_type != relative {
                if r_type == 0 {
                    none = none.saturating_add(1); // R_*_NONE
                    continue;
                }
                return Err(ElfError::UnsupportedRelocation { r_type, offset });
            }
            let at = offset.wrapping_sub(self.link_base) as usize;
            let place = image
                .get_mut(at..)
                .and_then(|rest| rest.first_chunk_mut::<8>());
            let place = place.ok_or(ElfError::RelocOutOfImage { offset })?;
            *place = r.r_addend.get().wrapping_add(disp).to_le_bytes();
        }
        Ok(self.reloc_entries().0.saturating_sub(none))
    }

    /// The RELR table applied to `image` for displacement `disp`: how many words it
    /// relocated.
    fn apply_relr(&self, image: &mut [u8], disp: u64) -> Result<usize, ElfError> {
        let mut relocated = 0usize;
        let relrs = self.in_image(self.relr)?;
        let table_out = ElfError::TableOutOfFile {
            vaddr: self.relr.vaddr,
        };
        let mut place: Option<u64> = None;
        for at in relrs.step_by(RELR_SIZE) {
            let entry = image.get(at..).and_then(|b| b.first_chunk::<8>());
            let entry = u64::from_le_bytes(*entry.ok_or(table_out)?);
            if entry & 1 == 0 {
                self.add(image, entry, disp)?;
                relocated = relocated.saturating_add(1);
                place = Some(entry.wrapping_add(8));
            } else {
                // Bit i is the word at `where + (i - 1) * 8`; then `where` moves on 63
                // words.
                let at = place.ok_or(ElfError::RelrBitmapFirst)?;
                let bits = entry >> 1;
                match self.words(image, at, 63) {
                    // The whole window inside the image: one check, then only the set
                    // bits are visited.
                    // Every word (a table of pointers): one straight pass.
                    Some(words) if bits == u64::MAX >> 1 => {
                        // Four words a turn: a loop of one word a turn spent three
                        // of its four instructions on the loop itself.
                        let add = |w: &mut U64| *w = U64::new(w.get().wrapping_add(disp));
                        let (quads, rest) = words.as_chunks_mut::<4>();
                        for [a, b, c, d] in quads {
                            add(a);
                            add(b);
                            add(c);
                            add(d);
                        }
                        rest.iter_mut().for_each(add);
                        relocated = relocated.saturating_add(63);
                    }
                    Some(words) => {
                        let mut left = bits;
                        while left != 0 {
                            let k = left.trailing_zeros() as usize;
                            if let Some(w) = words.get_mut(k) {
                                *w = U64::new(w.get().wrapping_add(disp));
                            }
                            left &= left.wrapping_sub(1);
                        }
                        relocated = relocated.saturating_add(bits.count_ones() as usize);
                    }
                    // A window reaching past the image: each word checked, wrapped or not.
                    None => {
                        let mut word_at = at;
                        for k in 0..63u32 {
                            if (bits >> k) & 1 != 0 {
                                self.add(image, word_at, disp)?;
                                relocated = relocated.saturating_add(1);
                            }
                            word_at = word_at.wrapping_add(8);
                        }
                    }
                }
                place = Some(at.wrapping_add(63 * 8));
            }
        }
        Ok(relocated)
    }

    /// The little-endian word at link address `offset`, if it lies inside `image`.
    fn word<'i>(&self, image: &'i mut [u8], offset: u64) -> Result<&'i mut U64, ElfError> {
        let out = ElfError::RelocOutOfImage { offset };
        let at = offset.checked_sub(self.link_base).ok_or(out)?;
        let bytes = slice_mut(image, at, 8).ok_or(out)?;
        U64::mut_from_bytes(bytes).map_err(|_| out)
    }

    /// The `n` little-endian words from link address `offset`, if all lie inside
    /// `image`.
    fn words<'i>(&self, image: &'i mut [u8], offset: u64, n: u64) -> Option<&'i mut [U64]> {
        let at = offset.checked_sub(self.link_base)?;
        let bytes = slice_mut(image, at, n.checked_mul(8)?)?;
        <[U64]>::mut_from_bytes(bytes).ok()
    }

    fn add(&self, image: &mut [u8], offset: u64, disp: u64) -> Result<(), ElfError> {
        let w = self.word(image, offset)?;
        *w = U64::new(w.get().wrapping_add(disp));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::builder::*;
    use crate::elf::*;
    use proptest::prelude::*;

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
        assert_eq!(elf.rela_types(&file).collect::<Vec<_>>(), [1027, 0, 1027]);
        assert_eq!(elf.relr_words(&file), 5);
        let mut image = vec![0u8; 0x3000];
        elf.load(&file, &mut image).unwrap();
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
        elf.load(&file, &mut again).unwrap();
        elf.relocate(&mut again, 0x1000).unwrap();
        assert_eq!(word(&again, w(2)), w(2) - BASE + 0x1000);
    }

    #[test]
    fn a_full_bitmap_relocates_all_63_words() {
        let file = sample(&[], &[BASE + 0x1000, u64::MAX]);
        let elf = Elf::parse(&file, Machine::Aarch64).unwrap();
        let mut image = vec![0u8; 0x3000];
        elf.load(&file, &mut image).unwrap();
        let before: Vec<u64> = (0..66)
            .map(|i| word(&image, BASE + 0x1000 + 8 * i))
            .collect();
        assert_eq!(elf.relocate(&mut image, BASE + 0x40).unwrap().relr, 64);
        for (i, was) in before.iter().enumerate() {
            let want = if i < 64 { was.wrapping_add(0x40) } else { *was };
            assert_eq!(word(&image, BASE + 0x1000 + 8 * i as u64), want, "word {i}");
        }
    }

    #[test]
    fn a_bitmap_reaching_past_the_image_relocates_the_words_inside() {
        // The window of 63 words after 0x2fe8 runs past the image; its set bits
        // (0x2ff0, 0x2ff8) do not.
        let file = sample(&[], &[BASE + 0x2fe8, 1 | (1 << 1) | (1 << 2)]);
        let elf = Elf::parse(&file, Machine::Aarch64).unwrap();
        let mut image = vec![0u8; 0x3000];
        elf.load(&file, &mut image).unwrap();
        let stats = elf.relocate(&mut image, BASE + 0x100).unwrap();
        assert_eq!(stats.relr, 3);
        for at in [0x2fe8, 0x2ff0, 0x2ff8] {
            assert_eq!(word(&image, BASE + at), 0x100, "word at {at:#x}");
        }
    }

    #[test]
    fn unsupported_relocation_names_type_and_offset() {
        let file = sample(&[rela(BASE + 0x1000, 257, 0)], &[]);
        let elf = Elf::parse(&file, Machine::Aarch64).unwrap();
        let mut image = vec![0u8; 0x3000];
        elf.load(&file, &mut image).unwrap();
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
            elf.load(&file, &mut image).unwrap();
            let err = elf.relocate(&mut image, 0x8000_0000).unwrap_err();
            assert!(matches!(err, ElfError::RelocOutOfImage { .. }), "{err:?}");
            assert!(image[0x3000..].iter().all(|&b| b == 0));
        }
        let file = sample(&[], &[0b11]);
        let elf = Elf::parse(&file, Machine::Aarch64).unwrap();
        let mut image = vec![0; 0x3000];
        elf.load(&file, &mut image).unwrap();
        assert_eq!(elf.relocate(&mut image, 0), Err(ElfError::RelrBitmapFirst));
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
            elf.load(&file, &mut image).unwrap();
            let _ = elf.relocate(&mut image, virt);
            prop_assert!(image[0x3000..].iter().all(|&b| b == 0x5a));
            let mut exact = vec![0u8; 0x3000];
            elf.load(&file, &mut exact).unwrap();
            let _ = elf.relocate(&mut exact, virt);
        }
    }
}
