//! Unpacking a bzImage's payload into the start of the slot: gzip through the inflater
//! the payload container already uses, LZ4's legacy frame (lib/decompress_unlz4.c)
//! through crate::lz4. Nothing is written past the output slice.

use core::fmt;

use super::bzimage::{BzImage, Compression};
use crate::container::{self, ContainerError, Format, Inflater, Payload};
use crate::lz4::{self, Lz4Failure};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecompressError {
    /// No decoder in the shim for this format (xz, zstd, bzip2, lzma, lzo, unknown).
    Unsupported(Compression),
    /// `out` is shorter than the payload's recorded size.
    OutputTooSmall { need: u64, have: u64 },
    /// The gzip member is malformed or does not inflate (the container's checks).
    Gzip(ContainerError),
    /// The LZ4 stream is malformed at byte `at` of the payload.
    Lz4 { at: u64, failure: Lz4Failure },
    /// The stream ended after `produced` bytes, not the recorded `expected`.
    WrongLength { expected: u64, produced: u64 },
}

impl fmt::Display for DecompressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DecompressError as E;
        match self {
            E::Unsupported(c) => write!(f, "kernel compressed with {c}: no decoder for it"),
            E::OutputTooSmall { need, have } => write!(
                f,
                "kernel unpacks to {need:#x} bytes, the buffer has {have:#x}"
            ),
            E::Gzip(e) => write!(f, "gzip kernel: {e}"),
            E::Lz4 { at, failure } => write!(f, "lz4 kernel at payload byte {at:#x}: {failure}"),
            E::WrongLength { expected, produced } => write!(
                f,
                "kernel unpacked to {produced:#x} bytes, its payload records {expected:#x}"
            ),
        }
    }
}

/// Whether [`decompress`] decodes `c`. A kernel in another format is left to Linux's
/// own decompressor.
pub fn decodes(c: Compression) -> bool {
    matches!(c, Compression::Gzip | Compression::Lz4)
}

/// Unpacks `bz.payload` into the start of `out` and returns its length, always
/// `bz.decompressed_len`. `inflater` is used for gzip only (the caller decides where its
/// tables live, as for [`container::unpack`]). Bytes of `out` past the returned length
/// are left alone.
pub fn decompress(
    bz: &BzImage<'_>,
    out: &mut [u8],
    inflater: &mut Inflater,
) -> Result<usize, DecompressError> {
    let too_small = DecompressError::OutputTooSmall {
        need: bz.decompressed_len,
        have: out.len() as u64,
    };
    let len = usize::try_from(bz.decompressed_len).map_err(|_| too_small)?;
    let dest = out.get_mut(..len).ok_or(too_small)?;
    let produced = match bz.compression {
        Compression::Gzip => gunzip(bz, dest, inflater)?,
        Compression::Lz4 => {
            // The last 4 bytes are the size, not LZ4 (misc.c hands unlz4 `in_len - 4`).
            let stream = bz
                .payload
                .get(..bz.payload.len().saturating_sub(4))
                .unwrap_or_default();
            unlz4(stream, dest)?
        }
        other => return Err(DecompressError::Unsupported(other)),
    };
    if produced != len {
        return Err(DecompressError::WrongLength {
            expected: bz.decompressed_len,
            produced: produced as u64,
        });
    }
    Ok(produced)
}

/// One gzip member (`gzip -n -9`), checked as the container checks a shipped
/// `Image.gz`: header flags, whole stream, trailer, ISIZE. The CRC-32 is not checked
/// (as there; the loader's own digest covers the file).
fn gunzip(
    bz: &BzImage<'_>,
    dest: &mut [u8],
    inflater: &mut Inflater,
) -> Result<usize, DecompressError> {
    let member = Payload {
        format: Format::LinuxX86BzImage,
        compression: container::Compression::Gzip,
        unpacked_size: bz.decompressed_len,
        digest: [0; 32],
        zero_runs: &[],
        kept: &[],
        packed: bz.payload,
    };
    container::unpack(&member, dest, inflater).map_err(|e| match e {
        ContainerError::WrongUnpackedSize { expected, produced } => {
            DecompressError::WrongLength { expected, produced }
        }
        ContainerError::OutputTooSmall { need, have } => {
            DecompressError::OutputTooSmall { need, have }
        }
        e => DecompressError::Gzip(e),
    })
}

/// The legacy frame as Linux's unlz4() reads it (crate::lz4), its failures placed.
fn unlz4(stream: &[u8], dest: &mut [u8]) -> Result<usize, DecompressError> {
    lz4::decode_legacy(stream, dest, false).map_err(|(at, failure)| DecompressError::Lz4 {
        at: at as u64,
        failure,
    })
}

#[cfg(test)]
mod tests {
    use super::super::bzimage::{parse_bzimage, tests::image};
    use super::*;
    use crate::lz4::LZ4_LEGACY_MAGIC;

    /// `data` as `lz4 -l` frames it: magic, then 8 MiB blocks (the last shorter), then
    /// the size trailer misc.c reads.
    pub fn lz4_legacy(data: &[u8]) -> Vec<u8> {
        let mut s = crate::lz4::encode_legacy(data, crate::lz4::LZ4_CHUNK);
        s.extend((data.len() as u32).to_le_bytes());
        s
    }

    /// One gzip member as `gzip -n -9` writes it (CRC-32 left 0: not checked).
    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut m = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3];
        m.extend(miniz_oxide::deflate::compress_to_vec(data, 9));
        m.extend([0; 4]);
        m.extend((data.len() as u32).to_le_bytes());
        m
    }

    /// 20 MiB that compress well but not trivially (three LZ4 blocks, the last short),
    /// its LZ4 payload and a gzip payload of its first MiB; built once.
    fn sample() -> &'static (Vec<u8>, Vec<u8>, Vec<u8>) {
        static SAMPLE: std::sync::OnceLock<(Vec<u8>, Vec<u8>, Vec<u8>)> =
            std::sync::OnceLock::new();
        SAMPLE.get_or_init(|| {
            let data: Vec<u8> = (0..20u32 << 20)
                .map(|i| ((i / 7) ^ (i >> 13)).wrapping_mul(31) as u8)
                .collect();
            // gzip over 1 MiB only: miniz_oxide's level 9 is slow unoptimized.
            let (lz4, gz) = (lz4_legacy(&data), gzip(&data[..1 << 20]));
            (data, lz4, gz)
        })
    }

    fn run(payload: &[u8], out_len: usize) -> Result<Vec<u8>, DecompressError> {
        let f = image(payload);
        let bz = parse_bzimage(&f).unwrap();
        let mut out = vec![0xa5u8; out_len];
        let n = decompress(&bz, &mut out, &mut Inflater::new())?;
        assert!(out[n..].iter().all(|&b| b == 0xa5), "wrote past the output");
        out.truncate(n);
        Ok(out)
    }

    #[test]
    fn lz4_and_gzip_round_trip() {
        let (data, lz4, gz) = sample();
        for (data, payload) in [(&data[..], lz4), (&data[..1 << 20], gz)] {
            assert_eq!(run(payload, data.len() + 100).unwrap(), data);
        }
        // A repeated magic between blocks is skipped, as unlz4() does.
        let mut repeated = lz4.clone();
        let first = 8 + u32::from_le_bytes(repeated[4..8].try_into().unwrap()) as usize;
        repeated.splice(first..first, LZ4_LEGACY_MAGIC.to_le_bytes());
        assert_eq!(run(&repeated, data.len()).unwrap(), *data);
        // An end marker (csize 0) ends it.
        let mut ended = lz4.clone();
        let at = ended.len() - 4;
        ended.splice(at..at, [0; 4]);
        assert_eq!(run(&ended, data.len()).unwrap(), *data);
    }

    #[test]
    fn output_too_small_writes_nothing() {
        let (data, lz4, gz) = sample();
        for (data, payload) in [(&data[..], lz4), (&data[..1 << 20], gz)] {
            assert_eq!(
                run(payload, data.len() - 1),
                Err(DecompressError::OutputTooSmall {
                    need: data.len() as u64,
                    have: data.len() as u64 - 1
                })
            );
        }
    }

    #[test]
    fn unsupported_formats_are_named() {
        for (magic, c) in [
            (&b"\xfd7zXZ\0"[..], Compression::Xz),
            (b"\x28\xb5\x2f\xfd", Compression::Zstd),
            (b"BZh9", Compression::Bzip2),
            (b"\x7fELF", Compression::Unknown(*b"\x7fELF")),
        ] {
            let mut p = magic.to_vec();
            p.extend([0x10, 0, 0, 0]);
            assert_eq!(run(&p, 0x100), Err(DecompressError::Unsupported(c)));
        }
        assert_eq!(
            DecompressError::Unsupported(Compression::Zstd).to_string(),
            "kernel compressed with zstd: no decoder for it"
        );
    }

    #[test]
    fn a_wrong_recorded_size_is_refused() {
        let (data, lz4, gz) = sample();
        for (data, payload) in [(&data[..], lz4), (&data[..1 << 20], gz)] {
            let len = data.len() as u32;
            let n = payload.len();
            let mut shorter = payload.clone();
            shorter[n - 4..].copy_from_slice(&(len - 1).to_le_bytes());
            let mut longer = payload.clone();
            longer[n - 4..].copy_from_slice(&(len + 1).to_le_bytes());
            let short = run(&shorter, data.len() + 8).unwrap_err();
            let long = run(&longer, data.len() + 8).unwrap_err();
            if payload[0] == 0x1f {
                assert!(matches!(short, DecompressError::Gzip(_)), "{short:?}");
            } else {
                assert!(
                    matches!(
                        short,
                        DecompressError::Lz4 {
                            failure: Lz4Failure::TooLong,
                            ..
                        }
                    ),
                    "{short:?}"
                );
            }
            assert!(
                matches!(
                    long,
                    DecompressError::WrongLength { produced, .. } | DecompressError::Gzip(ContainerError::WrongUnpackedSize { produced, .. })
                    if produced == u64::from(len)
                ),
                "{long:?}"
            );
        }
    }

    #[test]
    fn malformed_lz4_streams() {
        let (data, good, _) = sample();
        let lz4_err = |p: &[u8]| match run(p, data.len()) {
            Err(DecompressError::Lz4 { at, failure }) => (at, failure),
            other => panic!("{other:?}"),
        };
        let mut bad_magic = good.clone();
        bad_magic[3] = 0x19;
        // No longer LZ4 by magic at all.
        assert!(matches!(
            run(&bad_magic, data.len()),
            Err(DecompressError::Unsupported(Compression::Unknown(_)))
        ));
        let csize0 = u32::from_le_bytes(good[4..8].try_into().unwrap()) as usize;
        // A block size past the end.
        let mut past = good.clone();
        past[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            lz4_err(&past),
            (4, Lz4Failure::BlockPastEnd { csize: u32::MAX })
        );
        // A block cut one byte short: it no longer decodes (or decodes short and is not
        // the last).
        let mut cut = good.clone();
        cut[4..8].copy_from_slice(&(csize0 as u32 - 1).to_le_bytes());
        assert!(matches!(
            lz4_err(&cut).1,
            Lz4Failure::Corrupt | Lz4Failure::ShortBlockNotLast | Lz4Failure::TrailingBytes
        ));
        // Stray bytes after the last block.
        let mut stray = good.clone();
        let at = stray.len() - 4;
        stray.splice(at..at, [1, 2]);
        assert_eq!(lz4_err(&stray), (at as u64, Lz4Failure::TrailingBytes));
        // Data after the end marker.
        let mut after = good.clone();
        after.splice(at..at, [0, 0, 0, 0, 9, 9, 9, 9]);
        assert_eq!(lz4_err(&after), (at as u64, Lz4Failure::DataAfterEnd));
        // A short first block followed by another.
        let mut two = lz4_legacy(&data[..1000]);
        two.truncate(two.len() - 4);
        let second = lz4_legacy(&data[1000..2000]);
        two.extend(&second[4..]);
        let two_len = two.len();
        two[two_len - 4..].copy_from_slice(&2000u32.to_le_bytes());
        let f = image(&two);
        let bz = parse_bzimage(&f).unwrap();
        assert_eq!(
            decompress(&bz, &mut [0; 2000], &mut Inflater::new()),
            Err(DecompressError::Lz4 {
                at: 8 + u32::from_le_bytes(two[4..8].try_into().unwrap()) as u64,
                failure: Lz4Failure::ShortBlockNotLast
            })
        );
    }

    #[test]
    fn every_truncation_and_flip_is_caught_or_harmless() {
        // Small inputs keep this quick; each cut or flipped payload must fail or, where a
        // flip happens to decode, stay within the output.
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 / 13) as u8).collect();
        for good in [lz4_legacy(&data), gzip(&data)] {
            for n in 0..good.len() {
                let mut cut = good[..n].to_vec();
                if n >= 4 {
                    let len = cut.len();
                    cut[len - 4..].copy_from_slice(&5000u32.to_le_bytes());
                }
                let f = image(&cut);
                if let Ok(bz) = parse_bzimage(&f) {
                    let mut out = vec![0u8; 6000];
                    let r = decompress(&bz, &mut out, &mut Inflater::new());
                    assert!(r.is_err(), "cut to {n} accepted");
                }
            }
            for i in 0..good.len() - 4 {
                let mut b = good.clone();
                b[i] ^= 0x40;
                let _ = run(&b, 6000);
            }
        }
    }
}
