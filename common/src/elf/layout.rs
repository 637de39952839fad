//! Laying an ELF payload's segments out in memory: copied from the file ([`Elf::load`]),
//! or unpacked there already from a file packed as it loads ([`lay_out`], then
//! [`Elf::laid_out`] and [`Elf::clear_gaps`]), so the shim never copies the payload.

use super::{slice, slice_mut, Elf, ElfError};

impl Elf {
    /// `image[..span]`, or an error if the destination is too small.
    pub(super) fn window<'i>(&self, image: &'i mut [u8]) -> Result<&'i mut [u8], ElfError> {
        let have = image.len() as u64;
        let too_small = ElfError::ImageTooSmall {
            need: self.span,
            have,
        };
        let span = usize::try_from(self.span).map_err(|_| too_small)?;
        image.get_mut(..span).ok_or(too_small)
    }

    /// Lays the segments of `file` out in `image`, whose byte 0 is `link_base`:
    /// copies each segment's file bytes and zero-fills the rest of `image[..span]`
    /// (gaps and bss). Bytes past `span` are left alone.
    pub fn load(&self, file: &[u8], image: &mut [u8]) -> Result<(), ElfError> {
        self.clear_gaps(image)?;
        let image = self.window(image)?;
        for s in self.segments() {
            let src = slice(file, s.offset, s.filesz);
            let dst = s
                .vaddr
                .checked_sub(self.link_base)
                .and_then(|at| slice_mut(image, at, s.filesz));
            match (src, dst) {
                (Some(src), Some(dst)) => dst.copy_from_slice(src),
                _ => return Err(ElfError::SegmentOutOfFile { vaddr: s.vaddr }),
            }
        }
        Ok(())
    }

    /// Whether a file whose first `headers` bytes are its ELF and program headers
    /// and whose length is `file_len` is laid out as it loads: every segment's file
    /// bytes at `headers + (p_vaddr - link_base)` (PT_DYNAMIC is in one of them, as
    /// the parse checked), and no more than `span` bytes after the headers. Then
    /// those bytes, unpacked to the image's place, are the loaded segments but for
    /// the gaps ([`Elf::clear_gaps`]); returns how many there are.
    pub fn laid_out(&self, headers: u64, file_len: u64) -> Result<u64, ElfError> {
        for s in self.segments().filter(|s| s.filesz > 0) {
            if s.offset.checked_sub(headers) != s.vaddr.checked_sub(self.link_base) {
                return Err(ElfError::NotLaidOut { vaddr: s.vaddr });
            }
        }
        let image = file_len.checked_sub(headers).filter(|&n| n <= self.span);
        image.ok_or(ElfError::NotLaidOut {
            vaddr: self.link_base,
        })
    }

    /// Zero-fills every byte of `image[..span]` that is not a segment's file bytes:
    /// the page before the first segment, the gaps between segments, and bss. What
    /// makes a laid-out image, whatever its packer left there, the loaded one.
    pub fn clear_gaps(&self, image: &mut [u8]) -> Result<(), ElfError> {
        self.clear_gaps_with(image, &mut |bytes| bytes.fill(0))
    }

    /// [`Elf::clear_gaps`], zero-filling each stretch with `zero`.
    pub fn clear_gaps_with(
        &self,
        image: &mut [u8],
        zero: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(), ElfError> {
        let image = self.window(image)?;
        let mut from = 0u64;
        for s in self.segments() {
            let out = ElfError::SegmentOutOfFile { vaddr: s.vaddr };
            let at = s.vaddr.checked_sub(self.link_base).ok_or(out)?;
            // Sorted and apart (checked by the parse): `at` is never below `from`.
            let gap = at.checked_sub(from).ok_or(out)?;
            zero(slice_mut(image, from, gap).ok_or(out)?);
            from = at.checked_add(s.filesz).ok_or(out)?;
        }
        let rest = self.span.checked_sub(from);
        let tail = rest.and_then(|n| slice_mut(image, from, n));
        zero(tail.ok_or(ElfError::SegmentOutOfFile { vaddr: from })?);
        Ok(())
    }
}

/// `file` laid out as it loads, as the shim unpacks ELF payloads straight into their
/// slot: its ELF header and the PT_LOAD and PT_DYNAMIC program headers, then the
/// image from `link_base` to the end of the last segment's file bytes (gaps zero),
/// every `p_offset` moved to match. The result is an ELF file of its own that
/// [`Elf::parse`] reads as it read `file`; returns it and the length of its headers.
#[cfg(any(test, feature = "alloc"))]
pub fn lay_out(
    file: &[u8],
    machine: super::Machine,
) -> Result<(alloc::vec::Vec<u8>, usize), ElfError> {
    use super::parse::{Ehdr, Phdr, PT_DYNAMIC, PT_LOAD};
    use zerocopy::little_endian::{U16, U64};
    use zerocopy::{FromBytes, IntoBytes};

    let elf = Elf::parse(file, machine)?;
    let (eh, _) = Ehdr::read_from_prefix(file).map_err(|_| ElfError::Truncated)?;
    let phoff = usize::try_from(eh.e_phoff.get()).map_err(|_| ElfError::Truncated)?;
    let count = usize::from(eh.e_phnum.get());
    let (phdrs, _) = file
        .get(phoff..)
        .and_then(|b| <[Phdr]>::ref_from_prefix_with_elems(b, count).ok())
        .ok_or(ElfError::Truncated)?;
    let kept: alloc::vec::Vec<&Phdr> = phdrs
        .iter()
        .filter(|p| matches!(p.p_type.get(), PT_LOAD | PT_DYNAMIC))
        .collect();
    // At most 64 KiB program headers (e_phnum is 16 bits), in a file.
    let headers = size_of::<Ehdr>().saturating_add(kept.len().saturating_mul(size_of::<Phdr>()));
    // Every segment lies in the span (the parse checked).
    let image_len = elf
        .segments()
        .map(|s| s.vaddr.wrapping_sub(elf.link_base).saturating_add(s.filesz))
        .max()
        .unwrap_or(0);
    let span = usize::try_from(elf.span()).map_err(|_| ElfError::Truncated)?;
    let mut image = alloc::vec![0u8; span];
    elf.load(file, &mut image)?;
    image.truncate(image_len as usize);

    // A segment with no file bytes keeps an offset inside the file.
    let total = headers.saturating_add(image.len()) as u64;
    let moved = |vaddr: u64| {
        let at = vaddr.wrapping_sub(elf.link_base);
        (headers as u64).saturating_add(at).min(total)
    };
    let mut out = alloc::vec::Vec::with_capacity(total as usize);
    let mut eh = eh;
    eh.e_phoff = U64::new(size_of::<Ehdr>() as u64);
    eh.e_phnum = U16::new(kept.len() as u16);
    eh.e_shoff = U64::new(0);
    eh.e_shnum = U16::new(0);
    eh.e_shstrndx = U16::new(0);
    out.extend_from_slice(eh.as_bytes());
    for ph in kept {
        let mut ph = Phdr::read_from_bytes(ph.as_bytes()).map_err(|_| ElfError::Truncated)?;
        ph.p_offset = U64::new(moved(ph.p_vaddr.get()));
        out.extend_from_slice(ph.as_bytes());
    }
    out.extend_from_slice(&image);
    // What the shim will check: the result parses, is laid out, and its dynamic table
    // is in a segment.
    let again = Elf::parse(&out, machine)?;
    again.laid_out(headers as u64, out.len() as u64)?;
    Ok((out, headers))
}

#[cfg(test)]
mod tests {
    use crate::elf::builder::*;
    use crate::elf::*;
    use proptest::prelude::*;

    /// The shim's path: the headers alone, the rest over junk in the slot, gaps
    /// cleared, tables read from the image, relocated to `virt`.
    fn in_place(file: &[u8], virt: u64) -> Result<Vec<u8>, ElfError> {
        let (laid, kept) = lay_out(file, Machine::Aarch64)?;
        let mut elf = Elf::headers(&laid[..kept], laid.len() as u64, Machine::Aarch64)?;
        let body = elf.laid_out(kept as u64, laid.len() as u64)? as usize;
        let mut image = vec![0x5a; elf.span() as usize];
        image[..body].copy_from_slice(&laid[kept..]);
        elf.clear_gaps(&mut image)?;
        elf.read_tables(&image)?;
        elf.relocate(&mut image, virt)?;
        Ok(image)
    }

    /// The file loaded by copying its segments, and relocated.
    fn copied(file: &[u8], virt: u64) -> Result<Vec<u8>, ElfError> {
        let elf = Elf::parse(file, Machine::Aarch64)?;
        let mut image = vec![0xa5; elf.span() as usize];
        elf.load(file, &mut image)?;
        elf.relocate(&mut image, virt)?;
        Ok(image)
    }

    #[test]
    fn a_laid_out_file_is_its_image_after_its_headers() {
        let file = sample(&[rela(BASE + 0x1008, 1027, 0x80)], &[BASE + 0x1010]);
        let (laid, kept) = lay_out(&file, Machine::Aarch64).unwrap();
        assert_eq!(
            kept,
            64 + 3 * 56,
            "the ELF header, two PT_LOADs, PT_DYNAMIC"
        );
        let elf = Elf::parse(&laid, Machine::Aarch64).unwrap();
        let body = elf.laid_out(kept as u64, laid.len() as u64).unwrap();
        assert_eq!(body as usize, laid.len() - kept);
        // Text, the gap to the data page zero, the data (words and tables).
        assert!(laid[kept..kept + 0x100].iter().all(|&b| b == 0xaa));
        assert!(laid[kept + 0x100..kept + 0x1000].iter().all(|&b| b == 0));
        assert_eq!(word(&laid[kept..], BASE + 0x1018), BASE + 0x1018);
        // The original is not laid out: its segments follow its headers.
        let orig = Elf::parse(&file, Machine::Aarch64).unwrap();
        let headers = Elf::headers_len(&file).unwrap();
        assert_eq!(
            orig.laid_out(headers, file.len() as u64),
            Err(ElfError::NotLaidOut {
                vaddr: BASE + 0x1000
            })
        );
        // More bytes after the headers than the span: refused.
        assert_eq!(
            elf.laid_out(kept as u64, kept as u64 + 0x3001),
            Err(ElfError::NotLaidOut { vaddr: BASE })
        );
        let virt = 0xffff_8000_0020_0000;
        assert_eq!(in_place(&file, virt), copied(&file, virt));
    }

    #[test]
    fn clearing_gaps_zeroes_all_but_file_bytes() {
        let file = sample(&[], &[]);
        let elf = Elf::parse(&file, Machine::Aarch64).unwrap();
        let mut image = vec![0x5a; 0x3000 + 16];
        elf.clear_gaps(&mut image).unwrap();
        let data_end = elf.segments().nth(1).map(|s| s.filesz as usize).unwrap();
        assert!(image[..0x100].iter().all(|&b| b == 0x5a), "text kept");
        assert!(image[0x100..0x1000].iter().all(|&b| b == 0), "gap");
        assert!(image[0x1000..0x1000 + data_end].iter().all(|&b| b == 0x5a));
        assert!(
            image[0x1000 + data_end..0x3000].iter().all(|&b| b == 0),
            "bss"
        );
        assert!(image[0x3000..].iter().all(|&b| b == 0x5a), "past span");
        assert!(matches!(
            elf.clear_gaps(&mut image[..0x2fff]),
            Err(ElfError::ImageTooSmall { .. })
        ));
    }

    proptest! {
        /// Whatever a file holds, laid out and unpacked in place it loads and
        /// relocates as copying its segments does.
        #[test]
        fn in_place_is_the_copy(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
            virt in any::<u64>(),
        ) {
            let w = BASE + 0x1000;
            let mut file = sample(&[rela(w, 1027, 5), rela(w + 0x40, 1027, 9)], &[w + 8, 0b111]);
            for (i, b) in flips {
                let i = i.index(file.len());
                file[i] = b;
            }
            if Elf::parse(&file, Machine::Aarch64).is_ok_and(|e| e.span() <= 1 << 20) {
                prop_assert_eq!(in_place(&file, virt), copied(&file, virt));
            }
        }
    }
}
