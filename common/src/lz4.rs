//! LZ4's legacy frame (`lz4 -l`), as Linux's unlz4() reads it for a compressed kernel
//! and as the shim's own container may pack a payload, and the block decoder: safe
//! Rust, every bound checked, nothing written past the output slice. A run of one byte
//! (an offset-1 match: half of what Debian's x86 kernel decodes to) is a fill.

/// What each LZ4 legacy block decodes to, except the last
/// (LZ4_DEFAULT_UNCOMPRESSED_CHUNK_SIZE, lib/decompress_unlz4.c).
pub const LZ4_CHUNK: usize = 8 << 20;
/// ARCHIVE_MAGICNUMBER: the legacy frame's magic, little-endian.
pub const LZ4_LEGACY_MAGIC: u32 = 0x184c_2102;

/// Why an LZ4 legacy stream was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lz4Failure {
    /// The stream does not start with 0x184C2102.
    BadMagic,
    /// 1 to 3 bytes are left where a block size or the end belongs.
    TrailingBytes,
    /// A block's compressed size runs past the end of the stream.
    BlockPastEnd { csize: u32 },
    /// The block is not valid LZ4 (or decodes to more than 8 MiB).
    Corrupt,
    /// A block decoded to less than 8 MiB and was not the last.
    ShortBlockNotLast,
    /// Bytes follow the 0 that ends the stream.
    DataAfterEnd,
    /// The stream holds more than the payload's recorded size.
    TooLong,
}

impl core::fmt::Display for Lz4Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Lz4Failure::BadMagic => "no legacy frame magic 0x184c2102",
            Lz4Failure::TrailingBytes => "1-3 stray bytes where a block belongs",
            Lz4Failure::BlockPastEnd { .. } => "block runs past the end of the payload",
            Lz4Failure::Corrupt => "corrupt block",
            Lz4Failure::ShortBlockNotLast => "a block under 8 MiB that is not the last",
            Lz4Failure::DataAfterEnd => "data after the end marker",
            Lz4Failure::TooLong => "more data than the recorded size",
        })
    }
}

/// A failure: the stream offset where it was found, and what.
type Failure = (usize, Lz4Failure);

/// The blocks of a legacy frame, each with the offset of its size word: the magic
/// first, then `[LE u32 csize][csize bytes]` repeated; a repeated magic is skipped, a
/// csize of 0 or the end of the stream ends it. 1-3 leftover bytes and bytes after
/// the 0 are refused (unlz4() stops silently there).
struct Blocks<'a> {
    stream: &'a [u8],
    pos: usize,
}

impl<'a> Blocks<'a> {
    fn new(stream: &'a [u8]) -> Result<Blocks<'a>, Failure> {
        match stream.first_chunk::<4>().map(|w| u32::from_le_bytes(*w)) {
            Some(LZ4_LEGACY_MAGIC) => Ok(Blocks { stream, pos: 4 }),
            _ => Err((0, Lz4Failure::BadMagic)),
        }
    }

    fn next_block(&mut self) -> Result<Option<(usize, &'a [u8])>, Failure> {
        let stream = self.stream;
        while let Some(rest) = stream.get(self.pos..).filter(|r| !r.is_empty()) {
            let pos = self.pos;
            let csize = rest
                .first_chunk::<4>()
                .map(|w| u32::from_le_bytes(*w))
                .ok_or((pos, Lz4Failure::TrailingBytes))?;
            // Just read, so inside the stream.
            let data = pos.checked_add(4).ok_or((pos, Lz4Failure::TrailingBytes))?;
            match csize {
                LZ4_LEGACY_MAGIC => self.pos = data,
                0 if data != stream.len() => return Err((pos, Lz4Failure::DataAfterEnd)),
                0 => break,
                _ => {
                    let past_end = (pos, Lz4Failure::BlockPastEnd { csize });
                    let block = usize::try_from(csize)
                        .ok()
                        .and_then(|n| stream.get(data..)?.get(..n))
                        .ok_or(past_end)?;
                    self.pos = data.checked_add(block.len()).ok_or(past_end)?;
                    return Ok(Some((pos, block)));
                }
            }
        }
        self.pos = stream.len();
        Ok(None)
    }
}

/// The legacy frame as unlz4() reads it ([`Blocks`]). Each block decodes on its own to
/// 8 MiB, except the last. Stricter than unlz4(): a short block before the last is
/// refused (Linux's pre-boot decoder, LZ4_decompress_fast with exactly 8 MiB per
/// block, could not decode such a stream either).
///
/// With `short_first`, the first block may be shorter too (the shim's container packs
/// a small first block so a payload's headers decode cheaply; `lz4 -d` reads it).
pub fn decode_legacy(stream: &[u8], dest: &mut [u8], short_first: bool) -> Result<usize, Failure> {
    let mut blocks = Blocks::new(stream)?;
    let mut written: usize = 0;
    let mut short_block = false;
    let mut first = true;
    while let Some((pos, block)) = blocks.next_block()? {
        if short_block {
            return Err((pos, Lz4Failure::ShortBlockNotLast));
        }
        let rest = dest.get_mut(written..).unwrap_or_default();
        let window_len = rest.len().min(LZ4_CHUNK);
        let window = rest.get_mut(..window_len).unwrap_or_default();
        let n = decode_block(block, window).map_err(|e| match e {
            // Wanting more room than is left below the recorded size: the stream is
            // longer than the payload says. With 8 MiB left, the block itself is bad.
            BlockError::OutputTooSmall if window_len < LZ4_CHUNK => (pos, Lz4Failure::TooLong),
            _ => (pos, Lz4Failure::Corrupt),
        })?;
        // `n` is at most what is left of `dest`.
        written = written.checked_add(n).ok_or((pos, Lz4Failure::TooLong))?;
        short_block = n < LZ4_CHUNK && !(first && short_first);
        first = false;
    }
    Ok(written)
}

/// The first block of a legacy frame decoded into `dest` (at most [`LZ4_CHUNK`] bytes
/// are needed): enough to read a payload's headers before choosing where the whole of
/// it goes. Returns the bytes decoded (0 for a frame without blocks).
pub fn decode_first_block(stream: &[u8], dest: &mut [u8]) -> Result<usize, Failure> {
    let Some((pos, block)) = Blocks::new(stream)?.next_block()? else {
        return Ok(0);
    };
    let window_len = dest.len().min(LZ4_CHUNK);
    let window = dest.get_mut(..window_len).unwrap_or_default();
    decode_block(block, window).map_err(|_| (pos, Lz4Failure::Corrupt))
}

/// Why a block did not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockError {
    /// It decodes to more than the output holds.
    OutputTooSmall,
    /// It is not a valid block: cut short, an offset of 0 or before the output's
    /// start, or input left after a match with no token for it.
    Corrupt,
}

/// One LZ4 block (lz4_Block_format.md: sequences of a token, literals, a 2-byte
/// offset and a match, the last one literals only) decoded into the start of `out`;
/// returns the bytes written. It accepts exactly what lz4_flex's decoder accepts (the
/// tests check it against that), and like it writes scratch past what it has decoded
/// so far (at most 15 bytes, inside `out`), where later sequences write.
pub fn decode_block(mut input: &[u8], out: &mut [u8]) -> Result<usize, BlockError> {
    use BlockError::{Corrupt, OutputTooSmall};
    if input.is_empty() {
        return Err(Corrupt);
    }
    let mut o = 0usize;
    loop {
        let (&token, rest) = input.split_first().ok_or(Corrupt)?;
        input = rest;
        let (literals, len) = (
            usize::from(token >> 4),
            usize::from(token & 15).wrapping_add(4),
        );
        // Most sequences: both lengths in the token, far from both ends. One 16-byte
        // literal copy into a 34-byte window, then one 18-byte match copy from before
        // it, or (overlapping) byte by byte.
        if literals < 15 && len < 19 {
            let head = input.first_chunk::<19>();
            let split = out.split_at_mut_checked(o);
            if let (Some(head), Some((done, ahead))) = (head, split) {
                if let Some(win) = ahead.first_chunk_mut::<34>() {
                    if let (Some(d), Some(s)) = (win.first_chunk_mut::<16>(), head.first_chunk()) {
                        *d = *s;
                    }
                    let offset = match head.get(literals..literals.wrapping_add(2)) {
                        Some(&[lo, hi]) => usize::from(u16::from_le_bytes([lo, hi])),
                        _ => return Err(Corrupt),
                    };
                    input = input.get(literals.wrapping_add(2)..).unwrap_or_default();
                    let at = o.wrapping_add(literals);
                    if offset == 0 || offset > at {
                        return Err(Corrupt);
                    }
                    let src = match offset >= literals.wrapping_add(18) {
                        true => done
                            .get(at.wrapping_sub(offset)..)
                            .and_then(|s| s.first_chunk::<18>()),
                        false => None,
                    };
                    let dst = win.get_mut(literals..literals.wrapping_add(18));
                    match (src, dst) {
                        (Some(s), Some(d)) => d.copy_from_slice(s),
                        _ => overlapping(out, at, offset, len),
                    }
                    o = at.wrapping_add(len);
                    continue;
                }
            }
        }

        let mut literals = literals;
        if literals == 15 {
            literals = literals.saturating_add(length(&mut input)?);
        }
        if literals > input.len() {
            return Err(Corrupt);
        }
        if literals > out.len().saturating_sub(o) {
            return Err(OutputTooSmall);
        }
        // 16 bytes a step where both sides have room for the last step, else exact.
        let wild = literals.next_multiple_of(16);
        match (
            out.get_mut(o..).and_then(|d| d.get_mut(..wild)),
            input.get(..wild),
        ) {
            (Some(d), Some(s)) => {
                let pairs = d
                    .as_chunks_mut::<16>()
                    .0
                    .iter_mut()
                    .zip(s.as_chunks::<16>().0);
                pairs.for_each(|(d, s)| *d = *s);
            }
            _ => {
                let dst = out.get_mut(o..).and_then(|d| d.get_mut(..literals));
                let src = input.get(..literals).ok_or(Corrupt)?;
                dst.ok_or(OutputTooSmall)?.copy_from_slice(src);
            }
        }
        let (_, rest) = input.split_at_checked(literals).ok_or(Corrupt)?;
        input = rest;
        o = o.wrapping_add(literals);
        if input.is_empty() {
            return Ok(o);
        }

        let (&[lo, hi], rest) = input.split_first_chunk::<2>().ok_or(Corrupt)?;
        input = rest;
        let offset = usize::from(u16::from_le_bytes([lo, hi]));
        let mut len = len;
        if len == 19 {
            len = len.saturating_add(length(&mut input)?);
        }
        if offset == 0 || offset > o {
            return Err(Corrupt);
        }
        if len > out.len().saturating_sub(o) {
            return Err(OutputTooSmall);
        }
        copy_match(out, o, offset, len);
        o = o.wrapping_add(len);
        if input.is_empty() {
            return Err(Corrupt);
        }
    }
}

/// The rest of a literal or match length: bytes added up to the first under 255.
fn length(input: &mut &[u8]) -> Result<usize, BlockError> {
    let mut n = 0usize;
    loop {
        let (&b, rest) = input.split_first().ok_or(BlockError::Corrupt)?;
        *input = rest;
        n = n.saturating_add(usize::from(b));
        if b != 255 {
            return Ok(n);
        }
    }
}

/// A short match whose source may overlap what it writes: byte by byte, as the format
/// defines a match. (Eight bytes a step where the offset allows saved 3% on arm64 and
/// cost 2% on x86.)
fn overlapping(out: &mut [u8], o: usize, offset: usize, len: usize) {
    for at in o..o.saturating_add(len) {
        if let Some(b) = out.get(at.wrapping_sub(offset)).copied() {
            if let Some(d) = out.get_mut(at) {
                *d = b;
            }
        }
    }
}

/// `out[o..o + len]` = the `len` bytes from `offset` back, which the copy may overlap:
/// offset 1 is a fill; 16 or more, 16-byte copies (scratch past the match, inside
/// `out`); otherwise doubling copies, each from the start of the periodic run. The
/// caller checked `0 < offset <= o` and `o + len <= out.len()`.
fn copy_match(out: &mut [u8], o: usize, offset: usize, len: usize) {
    let from = o.wrapping_sub(offset);
    if offset == 1 {
        let byte = out.get(from).copied().unwrap_or_default();
        out.get_mut(o..o.wrapping_add(len))
            .unwrap_or_default()
            .fill(byte);
        return;
    }
    // 16 bytes a step, each source ending at or before its destination, where there
    // is room for the last step.
    let end = o.wrapping_add(len.next_multiple_of(16));
    if offset >= 16 && end <= out.len() {
        let mut at = o;
        while at < o.wrapping_add(len) {
            let Some((done, ahead)) = out.split_at_mut_checked(at) else {
                return;
            };
            let src = done
                .get(at.wrapping_sub(offset)..)
                .and_then(|s| s.first_chunk::<16>());
            if let Some((s, d)) = src.zip(ahead.first_chunk_mut::<16>()) {
                *d = *s;
            }
            at = at.wrapping_add(16);
        }
        return;
    }
    // [from, o + done) repeats with period `offset`; while `done` is a multiple of it,
    // its first `offset + done` bytes may be copied to `o + done` whole.
    let mut done = 0usize;
    while done < len {
        let n = offset.wrapping_add(done).min(len.wrapping_sub(done));
        let Some((run, ahead)) = out.split_at_mut_checked(o.wrapping_add(done)) else {
            return;
        };
        if let Some((s, d)) = run.get(from..from.wrapping_add(n)).zip(ahead.get_mut(..n)) {
            d.copy_from_slice(s);
        }
        done = done.wrapping_add(n);
    }
}

/// `data` as `lz4 -l` frames it: the magic, then 8 MiB blocks (the last shorter). With
/// `first` under 8 MiB, the first block holds only that many bytes (see
/// [`decode_legacy`]'s `short_first`).
#[cfg(any(test, feature = "alloc"))]
pub fn encode_legacy(data: &[u8], first: usize) -> alloc::vec::Vec<u8> {
    let mut s = alloc::vec::Vec::from(LZ4_LEGACY_MAGIC.to_le_bytes());
    let (head, rest) = data.split_at(first.min(LZ4_CHUNK).min(data.len()));
    let chunks = core::iter::once(head)
        .filter(|h| !h.is_empty())
        .chain(rest.chunks(LZ4_CHUNK));
    for chunk in chunks {
        let mut block = alloc::vec![0u8; lz4_flex::block::get_maximum_output_size(chunk.len())];
        // The buffer is the encoder's own worst case: it cannot be too small.
        let n = lz4_flex::block::compress_into(chunk, &mut block).unwrap_or(0);
        s.extend((n as u32).to_le_bytes());
        s.extend(block.get(..n).unwrap_or_default());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 9 MiB that compress well but not trivially.
    fn data() -> Vec<u8> {
        (0..9u32 << 20)
            .map(|i| ((i / 5) ^ (i >> 11)).wrapping_mul(29) as u8)
            .collect()
    }

    /// lz4_flex's decoder, the oracle: the same bytes, or an error of the same kind.
    fn agrees_with_lz4_flex(block: &[u8], room: usize) {
        let mut ours = vec![0u8; room];
        let mut theirs = vec![0u8; room];
        let a = decode_block(block, &mut ours);
        let b = lz4_flex::block::decompress_into(block, &mut theirs);
        match (a, b) {
            (Ok(n), Ok(m)) => {
                assert_eq!(n, m);
                assert_eq!(ours[..n], theirs[..m]);
            }
            (Err(BlockError::OutputTooSmall), Err(e)) => assert!(
                matches!(e, lz4_flex::block::DecompressError::OutputTooSmall { .. }),
                "{e:?}"
            ),
            (Err(BlockError::Corrupt), Err(e)) => assert!(
                !matches!(e, lz4_flex::block::DecompressError::OutputTooSmall { .. }),
                "{e:?}"
            ),
            (a, b) => panic!("ours {a:?}, lz4_flex {b:?}"),
        }
    }

    /// A sequence: literals, then (offset, match length) unless it is the last.
    fn sequence(out: &mut Vec<u8>, literals: &[u8], m: Option<(u16, usize)>) {
        let lit = literals.len();
        let ml = m.map_or(0, |(_, n)| n - 4);
        out.push((lit.min(15) as u8) << 4 | ml.min(15) as u8);
        let ext = |out: &mut Vec<u8>, mut n: usize| {
            while n >= 255 {
                out.push(255);
                n -= 255;
            }
            out.push(n as u8);
        };
        if lit >= 15 {
            ext(out, lit - 15);
        }
        out.extend_from_slice(literals);
        if let Some((offset, _)) = m {
            out.extend(offset.to_le_bytes());
            if ml >= 15 {
                ext(out, ml - 15);
            }
        }
    }

    #[test]
    fn every_kind_of_match_decodes_as_lz4_flex_decodes_it() {
        // Offsets 1 to 40 (fills, doubling copies, whole copies), lengths 4 to 300,
        // near the output's end and far from it.
        for offset in 1u16..40 {
            for len in [4, 5, 15, 16, 17, 18, 19, 31, 33, 64, 100, 300] {
                let lits: Vec<u8> = (1..=offset as u8).collect();
                let mut block = Vec::new();
                sequence(&mut block, &lits, Some((offset, len)));
                sequence(&mut block, b"the tail of the block, long enough", None);
                let want: Vec<u8> = lits
                    .iter()
                    .copied()
                    .cycle()
                    .take(lits.len() + len)
                    .chain(*b"the tail of the block, long enough")
                    .collect();
                let mut out = vec![0u8; want.len()];
                assert_eq!(decode_block(&block, &mut out), Ok(want.len()));
                assert_eq!(out, want, "offset {offset} len {len}");
                for room in [want.len(), want.len() + 40, want.len() - 1] {
                    agrees_with_lz4_flex(&block, room);
                }
            }
        }
    }

    #[test]
    fn bad_blocks_are_refused_as_lz4_flex_refuses_them() {
        let mut good = Vec::new();
        sequence(&mut good, b"abcdefgh", Some((8, 40)));
        sequence(&mut good, b"end", None);
        let far = [[0x10u8, b'a', 9, 0].as_slice(), &[0; 40]].concat();
        let cases: [&[u8]; 9] = [
            &[],
            &[0x10],                // a literal cut short
            &[0x00, 1],             // a match offset cut short
            &[0x10, b'a', 0, 0],    // offset 0
            &[0x10, b'a', 2, 0, 0], // offset past the start
            &far,                   // the same, where the fast path reads it
            &[0xf0, 255],           // a length cut short
            &[0x10, b'a', 1, 0],    // a match with no token after it
            &good,
        ];
        for block in cases {
            for room in [0, 10, 64, 200] {
                agrees_with_lz4_flex(block, room);
            }
        }
    }

    proptest::proptest! {
        /// Any bytes, and lz4_flex's encoding of any data, decode as lz4_flex decodes
        /// them, into any room.
        #[test]
        fn any_block_decodes_as_lz4_flex_decodes_it(
            junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            runs in proptest::collection::vec((0u8..4, 1usize..300), 0..20),
            room in 0usize..3000,
        ) {
            agrees_with_lz4_flex(&junk, room);
            let data: Vec<u8> = runs.iter().flat_map(|&(b, n)| core::iter::repeat_n(b, n)).collect();
            let mut block = vec![0u8; lz4_flex::block::get_maximum_output_size(data.len())];
            let n = lz4_flex::block::compress_into(&data, &mut block).unwrap();
            block.truncate(n);
            agrees_with_lz4_flex(&block, room);
            agrees_with_lz4_flex(&block, data.len());
        }
    }

    /// Debian's x86 kernel (`SHIM_LINUX_X86`, which `cargo xtask test` sets): every
    /// block of its LZ4 stream decodes as lz4_flex decodes it.
    #[test]
    fn debians_kernel_decodes_as_lz4_flex_decodes_it() {
        let Some(file) = crate::x86_linux::debian_file("bzImage") else {
            return;
        };
        let bz = crate::x86_linux::parse_bzimage(&file).unwrap();
        // The last 4 bytes are the size, not LZ4.
        let mut blocks = Blocks::new(&bz.payload[..bz.payload.len() - 4]).unwrap();
        let (mut ours, mut theirs) = (vec![0u8; LZ4_CHUNK], vec![0u8; LZ4_CHUNK]);
        let mut total = 0;
        while let Some((_, block)) = blocks.next_block().unwrap() {
            let n = decode_block(block, &mut ours).unwrap();
            let m = lz4_flex::block::decompress_into(block, &mut theirs).ok();
            assert_eq!(m, Some(n));
            assert!(ours[..n] == theirs[..n], "block at {total:#x} differs");
            total += n;
        }
        assert_eq!(total as u64, bz.decompressed_len);
    }

    #[test]
    fn a_short_first_block_is_the_containers_and_not_linuxs() {
        let data = data();
        let framed = encode_legacy(&data, 64 << 10);
        let mut out = vec![0u8; data.len()];
        assert_eq!(decode_legacy(&framed, &mut out, true), Ok(data.len()));
        assert_eq!(out, data);
        // Linux's pre-boot decoder takes 8 MiB a block: a short first one is refused
        // where the second block starts.
        let second = 8 + u32::from_le_bytes(framed[4..8].try_into().unwrap()) as usize;
        assert_eq!(
            decode_legacy(&framed, &mut out, false),
            Err((second, Lz4Failure::ShortBlockNotLast))
        );
        // The first block alone is the head.
        let mut head = vec![0u8; LZ4_CHUNK];
        assert_eq!(decode_first_block(&framed, &mut head), Ok(64 << 10));
        assert_eq!(head[..64 << 10], data[..64 << 10]);
        // 8 MiB blocks throughout decode either way.
        let plain = encode_legacy(&data, LZ4_CHUNK);
        for short_first in [false, true] {
            out.fill(0);
            assert_eq!(decode_legacy(&plain, &mut out, short_first), Ok(data.len()));
            assert_eq!(out, data);
        }
    }
}
