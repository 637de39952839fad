//! The payload container that xtask appends after the shim: an 80-byte little-endian
//! header, a table of the unpacked payload's zero runs, then the packed payload: a
//! prefix kept as it is (an ELF payload's headers, read before anything is unpacked),
//! then the rest stored, as zlib, as LZ4's legacy frame, or as a distribution's gzip
//! member as is. The header carries the SHA-256 of the unpacked payload, checked
//! before it runs; the zero runs are read, not hashed ([`crate::digest::ZeroRun`]).

use core::fmt;

pub use crate::inflate::{InflateFailure, Inflater};
use crate::lz4::{self, Lz4Failure};
use zerocopy::big_endian::U32 as U32Be;
use zerocopy::little_endian::{U16, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const MAGIC: [u8; 8] = *b"SHIMPAY1";
pub const VERSION: u16 = 4;
pub const HEADER_LEN: usize = 80;
/// Bytes of a [`RawZeroRun`].
pub const ZERO_RUN_LEN: usize = 80;
/// The shortest zero run xtask records: 64 blocks, hashed in some 6,400 instructions
/// with the ARMv8 SHA-256 instructions, read in some 1,000.
pub const MIN_ZERO_RUN: u64 = 4096;

/// The on-disk header (all integers little-endian).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Header {
    /// `b"SHIMPAY1"`.
    pub magic: [u8; 8],
    /// [`VERSION`].
    pub version: U16,
    /// [`HEADER_LEN`].
    pub header_len: U16,
    /// [`Format`] as a number.
    pub format: U16,
    /// [`Compression`] as a number.
    pub compression: U16,
    /// Bytes of packed data following the header, the kept prefix included.
    pub packed_size: U64,
    /// Bytes of the payload once unpacked.
    pub unpacked_size: U64,
    /// SHA-256 of the unpacked payload (of a bzImage: see [`Format::LinuxX86BzImage`]).
    pub sha256: [u8; 32],
    /// The payload's first bytes, kept as they are at the start of the packed data;
    /// what follows them is encoded as `compression` says.
    pub kept_size: U64,
    /// Entries in the zero-run table between the header and the packed data.
    pub zero_runs: U64,
}

/// A zero run on disk ([`crate::digest::ZeroRun`]): offset and length in the hashed
/// message, then SHA-256's chaining values before and after it, as big-endian words.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct RawZeroRun {
    pub start: U64,
    pub len: U64,
    pub before: [U32Be; 8],
    pub after: [U32Be; 8],
}

impl RawZeroRun {
    pub fn get(&self) -> crate::digest::ZeroRun {
        crate::digest::ZeroRun {
            start: self.start.get(),
            len: self.len.get(),
            before: self.before.map(U32Be::get),
            after: self.after.map(U32Be::get),
        }
    }

    #[cfg(any(test, feature = "alloc"))]
    fn new(run: &crate::digest::ZeroRun) -> RawZeroRun {
        RawZeroRun {
            start: U64::new(run.start),
            len: U64::new(run.len),
            before: run.before.map(U32Be::new),
            after: run.after.map(U32Be::new),
        }
    }
}

const _: () = assert!(core::mem::size_of::<Header>() == HEADER_LEN);
const _: () = assert!(core::mem::size_of::<RawZeroRun>() == ZERO_RUN_LEN);
const _: () = assert!(core::mem::offset_of!(Header, packed_size) == 16);
const _: () = assert!(core::mem::offset_of!(Header, sha256) == 32);

/// What the payload is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// 1: an ELF64 ET_DYN executable laid out as it loads, its headers kept
    /// ([`crate::elf::lay_out`]): it unpacks straight into its slot.
    Elf64Dyn = 1,
    /// 2: a Linux arm64 `Image` (see [`crate::image`]).
    LinuxArm64Image = 2,
    /// 3: a Linux x86 `bzImage`, stored as it is. Its digest is not the file's but that
    /// of what the shim runs from it ([`crate::boot::linux_x86_digest`]).
    LinuxX86BzImage = 3,
}

/// How the packed bytes are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// 0: stored as is.
    None = 0,
    /// 1: a zlib stream (RFC 1950).
    Zlib = 1,
    /// 2: one gzip member (RFC 1952), as distributions ship `Image.gz`. Its CRC-32 is
    /// not checked: the SHA-256 in the header covers the same bytes.
    Gzip = 2,
    /// 3: LZ4's legacy frame (`lz4 -l`, [`crate::lz4`]): larger than zlib, several
    /// times faster to decode.
    Lz4 = 3,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerError {
    /// Fewer bytes than the header needs, or than `packed_size` promises.
    Truncated {
        need: u64,
        have: u64,
    },
    BadMagic,
    BadVersion(u16),
    BadHeaderLen(u16),
    UnknownFormat(u16),
    UnknownCompression(u16),
    /// With no compression, `packed_size` must equal `unpacked_size`.
    SizeMismatch {
        packed: u64,
        unpacked: u64,
    },
    /// The kept prefix is longer than the packed data or the payload.
    KeptTooLong {
        kept: u64,
    },
    /// The output buffer is smaller than `unpacked_size`.
    OutputTooSmall {
        need: u64,
        have: u64,
    },
    /// The zlib stream is corrupt (or its Adler-32 does not match).
    Inflate(InflateFailure),
    /// The stream ended after producing `produced` bytes instead of `expected`.
    WrongUnpackedSize {
        expected: u64,
        produced: u64,
    },
    /// The zlib stream ended before the last packed byte.
    TrailingData {
        unused: u64,
    },
    /// The gzip member header is malformed (names what).
    BadGzip(&'static str),
    /// The LZ4 frame is malformed at packed byte `at`.
    Lz4 {
        at: u64,
        failure: Lz4Failure,
    },
    DigestMismatch {
        expected: [u8; 32],
        actual: [u8; 32],
    },
}

struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Display for ContainerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ContainerError as E;
        match self {
            E::Truncated { need, have } => {
                write!(
                    f,
                    "payload container truncated: need {need} bytes, have {have}"
                )
            }
            E::BadMagic => f.write_str("payload container magic is not SHIMPAY1"),
            E::BadVersion(v) => write!(
                f,
                "payload container version {v} unsupported (want {VERSION})"
            ),
            E::BadHeaderLen(n) => write!(
                f,
                "payload header length {n} unsupported (want {HEADER_LEN})"
            ),
            E::UnknownFormat(n) => write!(f, "payload format {n} unknown"),
            E::UnknownCompression(n) => write!(f, "payload compression {n} unknown"),
            E::SizeMismatch { packed, unpacked } => write!(
                f,
                "uncompressed payload: packed size {packed} differs from unpacked size {unpacked}"
            ),
            E::KeptTooLong { kept } => write!(
                f,
                "payload's kept prefix of {kept} bytes is longer than the packed data or the payload"
            ),
            E::OutputTooSmall { need, have } => {
                write!(f, "payload needs {need} bytes to unpack, buffer has {have}")
            }
            E::Inflate(InflateFailure::Truncated) => f.write_str("payload zlib stream truncated"),
            E::Inflate(InflateFailure::TooLong) => {
                f.write_str("payload zlib stream longer than its unpacked size")
            }
            E::Inflate(InflateFailure::Corrupt) => f.write_str("payload zlib stream corrupt"),
            E::WrongUnpackedSize { expected, produced } => {
                write!(
                    f,
                    "payload unpacked to {produced} bytes, header says {expected}"
                )
            }
            E::TrailingData { unused } => {
                write!(
                    f,
                    "payload zlib stream ends {unused} bytes before the packed data"
                )
            }
            E::BadGzip(what) => write!(f, "payload gzip member: {what}"),
            E::Lz4 { at, failure } => write!(f, "payload lz4 frame at byte {at:#x}: {failure}"),
            E::DigestMismatch { expected, actual } => write!(
                f,
                "payload digest mismatch: expected {} got {}",
                Hex(expected),
                Hex(actual)
            ),
        }
    }
}

/// A validated container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Payload<'a> {
    pub format: Format,
    pub compression: Compression,
    pub unpacked_size: u64,
    /// SHA-256 of the unpacked payload.
    pub digest: [u8; 32],
    /// Where the payload is all zeros, for the digest check to read, not hash.
    pub zero_runs: &'a [RawZeroRun],
    /// The payload's first `kept_size` bytes, as they are.
    pub kept: &'a [u8],
    /// The rest of the `packed_size` bytes: the encoded rest of the payload.
    pub packed: &'a [u8],
}

impl Payload<'_> {
    /// Bytes of the payload after the kept prefix: what `packed` unpacks to.
    pub fn body_size(&self) -> u64 {
        self.unpacked_size.saturating_sub(self.kept.len() as u64)
    }
}

fn truncated(need: u64, have: usize) -> ContainerError {
    ContainerError::Truncated {
        need,
        have: have as u64,
    }
}

/// Validates the header at the start of `bytes` and finds the packed data. Bytes after
/// the packed data are ignored.
pub fn parse(bytes: &[u8]) -> Result<Payload<'_>, ContainerError> {
    let (h, rest) =
        Header::ref_from_prefix(bytes).map_err(|_| truncated(HEADER_LEN as u64, bytes.len()))?;
    if h.magic != MAGIC {
        return Err(ContainerError::BadMagic);
    }
    if h.version.get() != VERSION {
        return Err(ContainerError::BadVersion(h.version.get()));
    }
    if usize::from(h.header_len.get()) != HEADER_LEN {
        return Err(ContainerError::BadHeaderLen(h.header_len.get()));
    }
    let format = match h.format.get() {
        1 => Format::Elf64Dyn,
        2 => Format::LinuxArm64Image,
        3 => Format::LinuxX86BzImage,
        n => return Err(ContainerError::UnknownFormat(n)),
    };
    let compression = match h.compression.get() {
        0 => Compression::None,
        1 => Compression::Zlib,
        2 => Compression::Gzip,
        3 => Compression::Lz4,
        n => return Err(ContainerError::UnknownCompression(n)),
    };
    let packed_size = h.packed_size.get();
    let unpacked_size = h.unpacked_size.get();
    if compression == Compression::None && packed_size != unpacked_size {
        return Err(ContainerError::SizeMismatch {
            packed: packed_size,
            unpacked: unpacked_size,
        });
    }
    let runs = h.zero_runs.get();
    let table_len = runs.saturating_mul(ZERO_RUN_LEN as u64);
    let need = |n: u64| (HEADER_LEN as u64).saturating_add(n);
    let (zero_runs, rest) = usize::try_from(runs)
        .ok()
        .and_then(|n| <[RawZeroRun]>::ref_from_prefix_with_elems(rest, n).ok())
        .ok_or_else(|| truncated(need(table_len), bytes.len()))?;
    let packed = usize::try_from(packed_size)
        .ok()
        .and_then(|n| rest.get(..n))
        .ok_or_else(|| truncated(need(table_len.saturating_add(packed_size)), bytes.len()))?;
    let kept_size = h.kept_size.get();
    let too_long = ContainerError::KeptTooLong { kept: kept_size };
    if kept_size > unpacked_size {
        return Err(too_long);
    }
    let kept = usize::try_from(kept_size).map_err(|_| too_long)?;
    let (kept, packed) = packed.split_at_checked(kept).ok_or(too_long)?;
    Ok(Payload {
        format,
        compression,
        unpacked_size,
        digest: h.sha256,
        zero_runs,
        kept,
        packed,
    })
}

/// Unpacks into the start of `out` and returns the number of bytes written, which is
/// always `unpacked_size`. `inflater` holds the inflater's tables (13-14 KiB), passed
/// in so the caller decides where they live (the shim's stack is small).
pub fn unpack(
    p: &Payload<'_>,
    out: &mut [u8],
    inflater: &mut Inflater,
) -> Result<usize, ContainerError> {
    let too_small = ContainerError::OutputTooSmall {
        need: p.unpacked_size,
        have: out.len() as u64,
    };
    let size = usize::try_from(p.unpacked_size).map_err(|_| too_small)?;
    let (kept, body) = out
        .get_mut(..size)
        .and_then(|o| o.split_at_mut_checked(p.kept.len()))
        .ok_or(too_small)?;
    kept.copy_from_slice(p.kept);
    unpack_body(p, body, inflater)?;
    Ok(size)
}

/// Unpacks what follows the kept prefix into the start of `out` (an ELF payload's
/// image, straight into its slot) and returns the number of bytes written, always
/// [`Payload::body_size`].
pub fn unpack_body(
    p: &Payload<'_>,
    out: &mut [u8],
    inflater: &mut Inflater,
) -> Result<usize, ContainerError> {
    let too_small = ContainerError::OutputTooSmall {
        need: p.body_size(),
        have: out.len() as u64,
    };
    let size = usize::try_from(p.body_size()).map_err(|_| too_small)?;
    let dest = out.get_mut(..size).ok_or(too_small)?;
    let wrong_size = |produced: usize| ContainerError::WrongUnpackedSize {
        expected: p.unpacked_size,
        produced: (p.kept.len() as u64).saturating_add(produced as u64),
    };
    match p.compression {
        Compression::None => {
            let src = p.packed.get(..size).ok_or(ContainerError::SizeMismatch {
                packed: p.packed.len() as u64,
                unpacked: p.body_size(),
            })?;
            dest.copy_from_slice(src);
            Ok(size)
        }
        Compression::Zlib | Compression::Gzip => {
            let (stream, trailer) = deflate_stream(p)?;
            let (consumed, produced) = inflate(stream, dest, inflater, true)?;
            if produced != size {
                return Err(wrong_size(produced));
            }
            // What follows the deflate data: zlib's 4-byte Adler-32, gzip's 8-byte
            // CRC-32 and ISIZE.
            let unused = stream.len().saturating_sub(consumed) as u64;
            match unused.checked_sub(trailer) {
                None if p.compression == Compression::Zlib => {
                    return Err(ContainerError::Inflate(InflateFailure::Truncated))
                }
                None => return Err(ContainerError::BadGzip("trailer truncated")),
                Some(0) => {}
                Some(unused) => return Err(ContainerError::TrailingData { unused }),
            }
            if p.compression == Compression::Gzip {
                let isize = stream
                    .get(consumed..)
                    .and_then(|b| b.get(4..))
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(u32::from_le_bytes);
                // RFC 1952: ISIZE is the input size modulo 2^32.
                if isize != Some(size as u32) {
                    return Err(ContainerError::BadGzip(
                        "ISIZE differs from the unpacked size",
                    ));
                }
            }
            Ok(size)
        }
        Compression::Lz4 => {
            let produced = lz4::decode_legacy(p.packed, dest, true).map_err(lz4_error)?;
            if produced != size {
                return Err(wrong_size(produced));
            }
            Ok(size)
        }
    }
}

fn lz4_error((at, failure): (usize, Lz4Failure)) -> ContainerError {
    ContainerError::Lz4 {
        at: at as u64,
        failure,
    }
}

/// Unpacks only the first `out.len()` bytes (fewer if the payload is shorter) and
/// returns how many: enough to read a kernel's header before choosing where the whole
/// payload goes. Nothing is verified yet; [`unpack`] and [`verify`] still must be.
pub fn unpack_prefix(
    p: &Payload<'_>,
    out: &mut [u8],
    inflater: &mut Inflater,
) -> Result<usize, ContainerError> {
    let want = usize::try_from(p.unpacked_size).map_or(out.len(), |n| n.min(out.len()));
    let kept = p.kept.len().min(want);
    let (head, out) = out.split_at_mut(kept);
    head.copy_from_slice(p.kept.get(..kept).unwrap_or_default());
    let want = want.saturating_sub(kept);
    if want == 0 {
        return Ok(kept);
    }
    let dest = out.get_mut(..want).unwrap_or_default();
    let n = match p.compression {
        Compression::None => {
            let src = p.packed.get(..want).ok_or(ContainerError::Truncated {
                need: want as u64,
                have: p.packed.len() as u64,
            })?;
            dest.copy_from_slice(src);
            want
        }
        Compression::Zlib | Compression::Gzip => {
            let (stream, _) = deflate_stream(p)?;
            inflate(stream, dest, inflater, false)?.1
        }
        // An LZ4 block decodes only whole: `out` must hold the first one.
        Compression::Lz4 => {
            let n = lz4::decode_first_block(p.packed, out).map_err(lz4_error)?;
            n.min(want)
        }
    };
    Ok(kept.saturating_add(n))
}

/// The first LZ4 block [`pack`] writes: enough for any payload's headers, so reading
/// them costs little.
pub const LZ4_HEAD: usize = 64 << 10;

/// How many bytes [`unpack_prefix`] needs for an LZ4 payload's kept prefix and first
/// block (a block is at most 8 MiB; [`LZ4_HEAD`] for what xtask packs); `None` for
/// the other encodings, which decode any prefix.
pub fn first_block_len(p: &Payload<'_>) -> Option<u64> {
    let block = p.body_size().min(lz4::LZ4_CHUNK as u64);
    (p.compression == Compression::Lz4).then(|| (p.kept.len() as u64).saturating_add(block))
}

/// The packed bytes the inflater reads, and how many must follow the deflate data.
fn deflate_stream<'a>(p: &Payload<'a>) -> Result<(&'a [u8], u64), ContainerError> {
    match p.compression {
        Compression::Gzip => Ok((gzip_body(p.packed)?, 8)),
        _ => Ok((zlib_body(p.packed)?, 4)),
    }
}

/// The deflate data and trailer of a zlib stream: what follows its 2-byte header
/// (RFC 1950 section 2.2: CMF, FLG). Deflate with at most a 32 KiB window, no preset
/// dictionary.
fn zlib_body(stream: &[u8]) -> Result<&[u8], ContainerError> {
    const FDICT: u8 = 1 << 5;
    let corrupt = ContainerError::Inflate(InflateFailure::Corrupt);
    let ([cmf, flg], rest) = stream
        .split_first_chunk::<2>()
        .map(|(h, rest)| (*h, rest))
        .ok_or(ContainerError::Inflate(InflateFailure::Truncated))?;
    let check = (u16::from(cmf) << 8 | u16::from(flg)) % 31;
    if cmf & 0x0f != 8 || cmf >> 4 > 7 || check != 0 || flg & FDICT != 0 {
        return Err(corrupt);
    }
    Ok(rest)
}

/// Inflates `stream` (raw deflate) into `dest`; returns (bytes consumed, bytes
/// produced). With `whole`, the stream must end exactly when `dest` is full; without,
/// filling `dest` is enough.
fn inflate(
    stream: &[u8],
    dest: &mut [u8],
    inflater: &mut Inflater,
    whole: bool,
) -> Result<(usize, usize), ContainerError> {
    // The zlib trailer's Adler-32 and gzip's CRC-32 are read, not checked: the SHA-256
    // of the output, checked before anything parses it, covers what they would.
    let done = inflater
        .inflate(stream, dest)
        .map_err(ContainerError::Inflate)?;
    let fail = |f| Err(ContainerError::Inflate(f));
    match (done.ended, done.produced == dest.len()) {
        (true, _) => {}
        // `dest` filled before the stream ended: a prefix, or, when `dest` is exactly
        // `unpacked_size` long, a stream longer than that.
        (false, true) if whole => return fail(InflateFailure::TooLong),
        (false, true) => {}
        (false, false) => return fail(InflateFailure::Truncated),
    }
    Ok((done.consumed, done.produced))
}

/// The deflate data and trailer of a gzip member: what follows its header (RFC 1952
/// section 2.3: ID1 ID2 CM FLG MTIME(4) XFL OS, then the optional fields FLG names).
fn gzip_body(member: &[u8]) -> Result<&[u8], ContainerError> {
    const FHCRC: u8 = 1 << 1;
    const FEXTRA: u8 = 1 << 2;
    const FNAME: u8 = 1 << 3;
    const FCOMMENT: u8 = 1 << 4;
    const RESERVED: u8 = 0xe0;
    let bad = ContainerError::BadGzip;
    let (head, mut rest) = member
        .split_first_chunk::<10>()
        .ok_or(bad("shorter than its header"))?;
    if head[..3] != [0x1f, 0x8b, 8] {
        return Err(bad("not a gzip member with deflate data"));
    }
    let flg = head[3];
    if flg & RESERVED != 0 {
        return Err(bad("reserved flag bits set"));
    }
    if flg & FEXTRA != 0 {
        let (xlen, tail) = rest
            .split_first_chunk::<2>()
            .ok_or(bad("FEXTRA truncated"))?;
        rest = tail
            .get(usize::from(u16::from_le_bytes(*xlen))..)
            .ok_or(bad("FEXTRA truncated"))?;
    }
    for (flag, what) in [
        (FNAME, "FNAME unterminated"),
        (FCOMMENT, "FCOMMENT unterminated"),
    ] {
        if flg & flag != 0 {
            // What follows the first NUL.
            rest = rest.splitn(2, |&b| b == 0).nth(1).ok_or(bad(what))?;
        }
    }
    if flg & FHCRC != 0 {
        rest = rest.get(2..).ok_or(bad("FHCRC truncated"))?;
    }
    Ok(rest)
}

/// Checks the SHA-256 of the first `unpacked_size` bytes of `unpacked`.
pub fn verify(p: &Payload<'_>, unpacked: &[u8]) -> Result<(), ContainerError> {
    verify_with(p, unpacked, crate::digest::portable).map(|_| ())
}

/// [`verify`] with the platform's SHA-256 block function; returns the bytes of zero
/// runs read rather than hashed.
pub fn verify_with(
    p: &Payload<'_>,
    unpacked: &[u8],
    compress: crate::digest::Compress,
) -> Result<u64, ContainerError> {
    let data = usize::try_from(p.unpacked_size)
        .ok()
        .and_then(|n| unpacked.get(..n))
        .ok_or(ContainerError::Truncated {
            need: p.unpacked_size,
            have: unpacked.len() as u64,
        })?;
    check_digest(p, &[data], compress)
}

/// Checks the SHA-256 of the kept prefix followed by the first
/// [`Payload::body_size`] bytes of `body`, what [`unpack_body`] wrote; returns the
/// bytes of zero runs read rather than hashed.
pub fn verify_body(
    p: &Payload<'_>,
    body: &[u8],
    compress: crate::digest::Compress,
) -> Result<u64, ContainerError> {
    let data = usize::try_from(p.body_size())
        .ok()
        .and_then(|n| body.get(..n))
        .ok_or(ContainerError::Truncated {
            need: p.body_size(),
            have: body.len() as u64,
        })?;
    check_digest(p, &[p.kept, data], compress)
}

/// Whether the SHA-256 of `parts`, one after the other, is `p`'s digest, its zero
/// runs read rather than hashed; returns how many bytes those were.
pub fn check_digest(
    p: &Payload<'_>,
    parts: &[&[u8]],
    compress: crate::digest::Compress,
) -> Result<u64, ContainerError> {
    let runs = p.zero_runs.iter().map(RawZeroRun::get);
    let (actual, zeros) = crate::digest::sha256_skipping(compress, parts, runs);
    let expected = p.digest;
    if actual != expected {
        return Err(ContainerError::DigestMismatch { expected, actual });
    }
    Ok(zeros)
}

/// Builds a container (header + packed bytes) around `payload`; `Gzip` compresses
/// it into a gzip member (see [`pack_gzip`] to keep an existing one as it is).
#[cfg(any(test, feature = "alloc"))]
pub fn pack(format: Format, compression: Compression, payload: &[u8]) -> alloc::vec::Vec<u8> {
    pack_kept(format, compression, payload, 0)
}

/// The container of an ELF payload (`file`, for `machine`): laid out as it loads
/// ([`crate::elf::lay_out`]), its headers kept as they are, so the shim reads them
/// before unpacking and unpacks the rest straight into the slot.
#[cfg(any(test, feature = "alloc"))]
pub fn pack_elf(
    compression: Compression,
    file: &[u8],
    machine: crate::elf::Machine,
) -> Result<alloc::vec::Vec<u8>, crate::elf::ElfError> {
    let (laid_out, headers) = crate::elf::lay_out(file, machine)?;
    Ok(pack_kept(Format::Elf64Dyn, compression, &laid_out, headers))
}

/// [`pack`] with the first `kept` bytes of `payload` kept as they are (all of it if
/// shorter), before the encoded rest.
#[cfg(any(test, feature = "alloc"))]
pub fn pack_kept(
    format: Format,
    compression: Compression,
    payload: &[u8],
    kept: usize,
) -> alloc::vec::Vec<u8> {
    let (head, body) = payload.split_at(kept.min(payload.len()));
    let packed = encode(compression, body);
    with_header(
        format,
        compression,
        [head, &packed].concat().as_slice(),
        payload,
        head.len(),
        &hashed(&[head, body]),
    )
}

/// The digest and zero runs of a payload the shim hashes as `parts`.
#[cfg(any(test, feature = "alloc"))]
pub fn hashed(parts: &[&[u8]]) -> crate::digest::Hashed {
    crate::digest::sha256_with_runs(parts, MIN_ZERO_RUN)
}

/// A container holding `payload` stored as it is, whose header records `hashed` rather
/// than the payload's own digest: what the shim checks is made from it (a bzImage's
/// kernel, decoded and laid out: [`crate::boot::linux_x86_digest`]).
#[cfg(any(test, feature = "alloc"))]
pub fn pack_stored(
    format: Format,
    payload: &[u8],
    hashed: &crate::digest::Hashed,
) -> alloc::vec::Vec<u8> {
    with_header(format, Compression::None, payload, payload, 0, hashed)
}

/// `payload` encoded as `compression` says.
#[cfg(any(test, feature = "alloc"))]
fn encode(compression: Compression, payload: &[u8]) -> alloc::vec::Vec<u8> {
    match compression {
        Compression::None => alloc::vec::Vec::from(payload),
        Compression::Zlib => miniz_oxide::deflate::compress_to_vec_zlib(payload, 10),
        Compression::Lz4 => lz4::encode_legacy(payload, LZ4_HEAD),
        Compression::Gzip => {
            let mut member = alloc::vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3];
            member.extend(miniz_oxide::deflate::compress_to_vec(payload, 10));
            // The CRC-32 is left 0: the shim checks the SHA-256 instead.
            member.extend([0; 4]);
            member.extend((payload.len() as u32).to_le_bytes());
            member
        }
    }
}

/// Builds a container around a gzip member as it is (a distribution's `Image.gz`):
/// the header records the size and SHA-256 of what it inflates to.
#[cfg(any(test, feature = "alloc"))]
pub fn pack_gzip(format: Format, member: &[u8]) -> Result<alloc::vec::Vec<u8>, ContainerError> {
    let body = gzip_body(member)?;
    let payload = miniz_oxide::inflate::decompress_to_vec(body)
        .map_err(|_| ContainerError::Inflate(InflateFailure::Corrupt))?;
    let c = with_header(
        format,
        Compression::Gzip,
        member,
        &payload,
        0,
        &hashed(&[&payload]),
    );
    // The same checks the shim makes: the whole member inflates to exactly this.
    let p = parse(&c)?;
    let mut out = alloc::vec![0; payload.len()];
    unpack(&p, &mut out, &mut Inflater::new())?;
    Ok(c)
}

#[cfg(any(test, feature = "alloc"))]
fn with_header(
    format: Format,
    compression: Compression,
    packed: &[u8],
    payload: &[u8],
    kept: usize,
    hashed: &crate::digest::Hashed,
) -> alloc::vec::Vec<u8> {
    let header = Header {
        magic: MAGIC,
        version: U16::new(VERSION),
        header_len: U16::new(HEADER_LEN as u16),
        format: U16::new(format as u16),
        compression: U16::new(compression as u16),
        packed_size: U64::new(packed.len() as u64),
        unpacked_size: U64::new(payload.len() as u64),
        sha256: hashed.digest,
        kept_size: U64::new(kept as u64),
        zero_runs: U64::new(hashed.runs.len() as u64),
    };
    let runs = hashed.runs.iter().map(RawZeroRun::new);
    let table: alloc::vec::Vec<RawZeroRun> = runs.collect();
    [header.as_bytes(), table.as_bytes(), packed].concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sha2::{Digest, Sha256};

    fn build(compression: Compression, payload: &[u8]) -> Vec<u8> {
        pack(Format::Elf64Dyn, compression, payload)
    }

    const ALL: [Compression; 4] = [
        Compression::None,
        Compression::Zlib,
        Compression::Gzip,
        Compression::Lz4,
    ];

    fn sample() -> Vec<u8> {
        (0..3000u32).map(|i| (i * 7 / 13) as u8).collect()
    }

    fn open(bytes: &[u8]) -> Result<Vec<u8>, ContainerError> {
        let p = parse(bytes)?;
        let mut out = vec![0u8; p.unpacked_size.min(1 << 20) as usize];
        let mut inflater = Box::<Inflater>::default();
        let n = unpack(&p, &mut out, &mut inflater)?;
        verify(&p, &out[..n])?;
        Ok(out)
    }

    /// A payload with 16 KiB of zeros from byte 8192, and 1 KiB (too short to record).
    fn sparse() -> Vec<u8> {
        let mut m = [sample(), sample()].concat();
        m.resize(8192, 0x5a);
        m.extend([0; 16384]);
        m.extend(sample());
        m.extend([0; 1024]);
        m.extend(sample());
        m
    }

    #[test]
    fn zero_runs_are_recorded_and_read_not_hashed() {
        let m = sparse();
        for c in ALL {
            let bytes = build(c, &m);
            let p = parse(&bytes).unwrap();
            assert_eq!(p.zero_runs.len(), 1, "{c:?}");
            let run = p.zero_runs[0].get();
            assert_eq!((run.start, run.len), (8192, 16384));
            assert_eq!(
                &bytes[HEADER_LEN..HEADER_LEN + ZERO_RUN_LEN],
                p.zero_runs[0].as_bytes()
            );
            assert_eq!(open(&bytes).unwrap(), m);
            // A changed byte anywhere, the run too, is refused.
            for at in [0, 8191, 8192, 8192 + 16383, 8192 + 16384, m.len() - 1] {
                let mut bad = m.clone();
                bad[at] ^= 1;
                assert!(
                    matches!(verify(&p, &bad), Err(ContainerError::DigestMismatch { .. })),
                    "{c:?} byte {at}"
                );
            }
        }
        // The table is part of the container: cut short, it is refused.
        let bytes = build(Compression::None, &m);
        assert_eq!(
            parse(&bytes[..HEADER_LEN + 40]),
            Err(ContainerError::Truncated {
                need: (HEADER_LEN + ZERO_RUN_LEN) as u64,
                have: (HEADER_LEN + 40) as u64
            })
        );
        // A run whose `after` is wrong: the payload is refused, not taken.
        let mut wrong = bytes.clone();
        wrong[HEADER_LEN + 48] ^= 1;
        let p = parse(&wrong).unwrap();
        assert!(matches!(
            verify(&p, &m),
            Err(ContainerError::DigestMismatch { .. })
        ));
        // An absurd count is a truncated container, not an overflow.
        let mut huge = bytes.clone();
        huge[72..80].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            parse(&huge),
            Err(ContainerError::Truncated { .. })
        ));
    }

    #[test]
    fn round_trip() {
        for c in ALL {
            let mut bytes = build(c, &sample());
            bytes.extend_from_slice(b"trailing bytes are fine");
            let p = parse(&bytes).unwrap();
            assert_eq!(
                (p.format, p.compression, p.unpacked_size),
                (Format::Elf64Dyn, c, 3000)
            );
            assert_eq!(open(&bytes).unwrap(), sample());
        }
        assert_eq!(
            open(&build(Compression::Zlib, &[])).unwrap(),
            Vec::<u8>::new()
        );
    }

    #[test]
    fn gzip_members_as_distributions_ship_them() {
        // What `gzip -9 -n` writes (FLG 0), and a member with every optional field.
        let body = miniz_oxide::deflate::compress_to_vec(&sample(), 9);
        let trailer = |m: &mut Vec<u8>| {
            m.extend(&body);
            m.extend([0xde, 0xad, 0xbe, 0xef]); // CRC-32: not checked
            m.extend(3000u32.to_le_bytes());
        };
        let mut plain = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3];
        trailer(&mut plain);
        let mut fancy = vec![0x1f, 0x8b, 8, 0b1_1110, 0, 0, 0, 0, 0, 3, 3, 0, 1, 2, 3];
        fancy.extend(b"Image\0a comment\0\x12\x34");
        trailer(&mut fancy);
        for member in [plain, fancy] {
            let c = pack_gzip(Format::LinuxArm64Image, &member).unwrap();
            assert_eq!(&c[HEADER_LEN..], &member[..], "kept as it is");
            let p = parse(&c).unwrap();
            assert_eq!(
                (p.format, p.compression),
                (Format::LinuxArm64Image, Compression::Gzip)
            );
            assert_eq!(open(&c).unwrap(), sample());
            let mut head = [0u8; 64];
            let n = unpack_prefix(&p, &mut head, &mut Inflater::new()).unwrap();
            assert_eq!((n, &head[..]), (64, &sample()[..64]));
        }
    }

    #[test]
    fn bad_gzip_members() {
        let good = pack(Format::LinuxArm64Image, Compression::Gzip, &sample());
        let at = |off: usize, v: u8| {
            let mut b = good.clone();
            b[HEADER_LEN + off] = v;
            open(&b).unwrap_err()
        };
        assert_eq!(
            at(2, 7),
            ContainerError::BadGzip("not a gzip member with deflate data")
        );
        assert_eq!(
            at(3, 0x20),
            ContainerError::BadGzip("reserved flag bits set")
        );
        // ISIZE is the last byte: a wrong size is refused even where the data inflates.
        let last = good.len() - HEADER_LEN - 1;
        assert_eq!(
            at(last, 1),
            ContainerError::BadGzip("ISIZE differs from the unpacked size")
        );
        assert!(pack_gzip(Format::LinuxArm64Image, &good[HEADER_LEN..good.len() - 9]).is_err());
    }

    /// The zlib header (RFC 1950) is checked before the deflate data is read; the
    /// Adler-32 after it must be there, but is not summed (the SHA-256 covers it).
    #[test]
    fn bad_zlib_streams() {
        let good = miniz_oxide::deflate::compress_to_vec_zlib(&sample(), 9);
        let unpack_zlib = |packed: &[u8]| {
            let p = Payload {
                format: Format::Elf64Dyn,
                compression: Compression::Zlib,
                unpacked_size: 3000,
                digest: [0; 32],
                zero_runs: &[],
                kept: &[],
                packed,
            };
            let mut out = vec![0; 3000];
            unpack(&p, &mut out, &mut Inflater::new()).map(|_| out)
        };
        assert_eq!(unpack_zlib(&good), Ok(sample()));
        let header = |cmf: u8, flg: u8| {
            let mut b = good.clone();
            b[..2].copy_from_slice(&[cmf, flg]);
            unpack_zlib(&b).unwrap_err()
        };
        let corrupt = ContainerError::Inflate(InflateFailure::Corrupt);
        // 0x78 0xda: deflate, 32 KiB window, FCHECK right; each field broken in turn.
        assert_eq!((good[0], good[1]), (0x78, 0xda));
        assert_eq!(header(0x79, 0xda), corrupt, "CM 9");
        assert_eq!(header(0x88, 0x1c), corrupt, "CINFO 8, a 64 KiB window");
        assert_eq!(header(0x78, 0xdb), corrupt, "FCHECK");
        assert_eq!(header(0x78, 0xbb), corrupt, "FDICT, FCHECK right");
        let truncated = ContainerError::Inflate(InflateFailure::Truncated);
        assert_eq!(unpack_zlib(&good[..1]).unwrap_err(), truncated);
        assert_eq!(unpack_zlib(&good[..good.len() - 1]).unwrap_err(), truncated);
        let mut wrong_sum = good.clone();
        *wrong_sum.last_mut().unwrap() ^= 1;
        assert_eq!(
            unpack_zlib(&wrong_sum),
            Ok(sample()),
            "the Adler-32 is not summed"
        );
    }

    /// The first bytes kept as they are, the rest encoded: `unpack` gives the whole
    /// payload, `unpack_body` the rest alone (what the shim unpacks into a slot),
    /// which `verify_body` checks with the kept bytes; a prefix spans both parts.
    #[test]
    fn a_kept_prefix_round_trips() {
        let payload = sample();
        let mut inflater = Box::<Inflater>::default();
        for c in ALL {
            for kept in [0, 1, 120, 2999, 3000] {
                let bytes = pack_kept(Format::Elf64Dyn, c, &payload, kept);
                let p = parse(&bytes).unwrap();
                assert_eq!(
                    (p.kept, p.body_size()),
                    (&payload[..kept], 3000 - kept as u64)
                );
                let mut out = vec![0u8; 3000];
                assert_eq!(unpack(&p, &mut out, &mut inflater), Ok(3000));
                assert_eq!(out, payload);
                assert_eq!(verify(&p, &out), Ok(()));
                let mut body = vec![0u8; 3000 - kept];
                assert_eq!(unpack_body(&p, &mut body, &mut inflater), Ok(3000 - kept));
                assert_eq!(body, payload[kept..]);
                assert_eq!(verify_body(&p, &body, crate::digest::portable), Ok(0));
                if let Some(b) = body.last_mut() {
                    *b ^= 1;
                    let e = verify_body(&p, &body, crate::digest::portable);
                    assert!(matches!(e, Err(ContainerError::DigestMismatch { .. })));
                }
                let len = first_block_len(&p).map_or(200, |n| n as usize);
                let mut head = vec![0u8; len];
                let n = unpack_prefix(&p, &mut head, &mut inflater).unwrap();
                assert_eq!(head[..n], payload[..n]);
                assert!(n >= len.min(3000) || c == Compression::Lz4);
            }
        }
    }

    #[test]
    fn a_prefix_needs_only_the_start_of_the_stream() {
        for c in ALL {
            let bytes = build(c, &sample());
            let p = parse(&bytes).unwrap();
            let mut inflater = Box::<Inflater>::default();
            // LZ4 decodes whole blocks: a buffer short of the first one is refused,
            // and first_block_len says how long it must be.
            if c == Compression::Lz4 {
                assert_eq!(first_block_len(&p), Some(sample().len() as u64));
                let mut short = [0u8; 100];
                assert!(unpack_prefix(&p, &mut short, &mut inflater).is_err());
                let mut block = vec![0u8; sample().len()];
                assert_eq!(unpack_prefix(&p, &mut block, &mut inflater), Ok(3000));
                assert_eq!(block, sample());
                continue;
            }
            assert_eq!(first_block_len(&p), None);
            let mut head = [0u8; 100];
            assert_eq!(unpack_prefix(&p, &mut head, &mut inflater), Ok(100));
            assert_eq!(&head[..], &sample()[..100]);
            let short = build(c, b"tiny");
            let p = parse(&short).unwrap();
            assert_eq!(unpack_prefix(&p, &mut head, &mut inflater), Ok(4));
            assert_eq!(&head[..4], b"tiny");
        }
    }

    #[test]
    fn header_errors() {
        let good = build(Compression::Zlib, &sample());
        let with = |off: usize, v: &[u8]| {
            let mut b = good.clone();
            b[off..off + v.len()].copy_from_slice(v);
            parse(&b).err()
        };
        assert_eq!(with(0, b"X"), Some(ContainerError::BadMagic));
        assert_eq!(
            with(8, &1u16.to_le_bytes()),
            Some(ContainerError::BadVersion(1))
        );
        assert_eq!(
            with(10, &64u16.to_le_bytes()),
            Some(ContainerError::BadHeaderLen(64))
        );
        // A kept prefix longer than the packed data, or than the payload.
        let packed = good.len() as u64 - HEADER_LEN as u64;
        for kept in [packed + 1, sample().len() as u64 + 1, u64::MAX] {
            assert_eq!(
                with(64, &kept.to_le_bytes()),
                Some(ContainerError::KeptTooLong { kept })
            );
        }
        assert_eq!(
            with(12, &4u16.to_le_bytes()),
            Some(ContainerError::UnknownFormat(4))
        );
        assert_eq!(
            with(14, &4u16.to_le_bytes()),
            Some(ContainerError::UnknownCompression(4))
        );
        assert_eq!(
            with(12, &2u16.to_le_bytes()),
            None,
            "reserved formats parse"
        );
        assert!(matches!(
            with(16, &u64::MAX.to_le_bytes()),
            Some(ContainerError::Truncated { .. })
        ));
        let none = build(Compression::None, b"abc");
        let mut b = none.clone();
        b[24] = 4;
        assert_eq!(
            parse(&b).err(),
            Some(ContainerError::SizeMismatch {
                packed: 3,
                unpacked: 4
            })
        );
    }

    #[test]
    fn unpack_size_errors() {
        let bytes = build(Compression::Zlib, &sample());
        let p = parse(&bytes).unwrap();
        let mut inflater = Box::<Inflater>::default();
        let mut small = vec![0u8; 2999];
        assert_eq!(
            unpack(&p, &mut small, &mut inflater),
            Err(ContainerError::OutputTooSmall {
                need: 3000,
                have: 2999
            })
        );
        let mut out = vec![0u8; 4000];
        let shorter = Payload {
            unpacked_size: 2000,
            ..p
        };
        assert_eq!(
            unpack(&shorter, &mut out, &mut inflater),
            Err(ContainerError::Inflate(InflateFailure::TooLong))
        );
        let longer = Payload {
            unpacked_size: 3001,
            ..p
        };
        assert!(matches!(
            unpack(&longer, &mut out, &mut inflater),
            Err(ContainerError::WrongUnpackedSize {
                expected: 3001,
                produced: 3000
            })
        ));
        let mut padded = p.packed.to_vec();
        padded.push(0);
        let trailing = Payload {
            packed: &padded,
            ..p
        };
        assert_eq!(
            unpack(&trailing, &mut out, &mut inflater),
            Err(ContainerError::TrailingData { unused: 1 })
        );
    }

    #[test]
    fn flipped_packed_byte_is_caught() {
        for c in ALL {
            let good = build(c, &sample());
            let mut harmless = 0;
            for i in HEADER_LEN..good.len() {
                for bit in 0..8 {
                    let mut b = good.clone();
                    b[i] ^= 1 << bit;
                    // `open` verifies the digest, so success means the exact payload came
                    // out: the flip hit bits the inflater ignores (the final byte's
                    // padding, an unused Huffman code length; gzip's MTIME, XFL, OS and
                    // CRC-32, 80 bits, and zlib's Adler-32, 32: the SHA-256 makes them
                    // redundant).
                    if open(&b).is_ok() {
                        harmless += 1;
                    }
                }
            }
            let ignored = match c {
                Compression::Gzip => 80,
                Compression::Zlib => 32,
                _ => 0,
            };
            assert!(
                harmless <= 16 + ignored,
                "{c:?}: {harmless} flips went unnoticed"
            );
        }
    }

    #[test]
    fn flipped_unpacked_byte_is_digest_mismatch() {
        let bytes = build(Compression::Zlib, &sample());
        let p = parse(&bytes).unwrap();
        let mut data = sample();
        data[1234] ^= 1;
        let err = verify(&p, &data).unwrap_err();
        let actual: [u8; 32] = Sha256::digest(&data).into();
        assert_eq!(
            err,
            ContainerError::DigestMismatch {
                expected: p.digest,
                actual
            }
        );
        let text = err.to_string();
        let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(
            text,
            format!(
                "payload digest mismatch: expected {} got {}",
                hex(&p.digest),
                hex(&actual)
            )
        );
        assert!(verify(&p, &data[..100]).is_err());
    }

    #[test]
    fn every_truncation_fails() {
        for c in ALL {
            let good = build(c, &sample());
            for n in 0..good.len() {
                assert!(
                    open(&good[..n]).is_err(),
                    "{c:?}: truncated to {n} accepted"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = open(&bytes);
        }

        #[test]
        fn random_bytes_after_valid_header(
            compression in 0u16..3, size in 0u64..600, body in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut b = build(Compression::None, &[]);
            b[14..16].copy_from_slice(&compression.to_le_bytes());
            b[16..24].copy_from_slice(&(body.len() as u64).to_le_bytes());
            b[24..32].copy_from_slice(&size.to_le_bytes());
            b.extend_from_slice(&body);
            let _ = open(&b);
        }
    }
}
