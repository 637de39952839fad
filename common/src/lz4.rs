//! LZ4's legacy frame (`lz4 -l`), as Linux's unlz4() reads it for a compressed kernel
//! and as the shim's own container may pack a payload: blocks decoded one by one by
//! lz4_flex's safe block decoder, nothing written past the output slice.

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
        let n = lz4_flex::block::decompress_into(block, window).map_err(|e| match e {
            // Wanting more room than is left below the recorded size: the stream is
            // longer than the payload says. With 8 MiB left, the block itself is bad.
            lz4_flex::block::DecompressError::OutputTooSmall { .. } if window_len < LZ4_CHUNK => {
                (pos, Lz4Failure::TooLong)
            }
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
    lz4_flex::block::decompress_into(block, window).map_err(|_| (pos, Lz4Failure::Corrupt))
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
