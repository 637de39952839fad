//! The bzImage file as Documentation/arch/x86/boot.rst describes it: the setup header
//! at 0x1f1, the real-mode setup, the protected-mode part and, inside it, the compressed
//! kernel (`payload_offset`, `payload_length`) whose last 4 bytes are its unpacked size.

use core::fmt;

use zerocopy::FromBytes;

use crate::bootparams::{
    SetupHeader, BOOT_FLAG, HDRS_MAGIC, LOADED_HIGH, SETUP_HEADER_END, SETUP_HEADER_OFFSET,
    XLF_KERNEL_64,
};

use super::MIN_KERNEL_ALIGN;

/// The oldest boot protocol taken: 2.12 is the first with `xloadflags` (and so
/// `XLF_KERNEL_64`); 2.08 added the payload fields, 2.10 `pref_address` and `init_size`.
const MIN_PROTOCOL: u16 = 0x020c;
/// Where "HdrS" lies in the file.
const HDRS_AT: usize = 0x202;

/// The payload's format, told by its first bytes (boot.rst: "determined using the
/// standard magic numbers"; the kernel's scripts/Makefile.lib writes them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// `1F 8B` (or the old `1F 9E` boot.rst still lists).
    Gzip,
    /// The LZ4 legacy frame `lz4 -l` writes: LE magic 0x184C2102.
    Lz4,
    /// `FD '7zXZ' 00`.
    Xz,
    /// `28 B5 2F FD`.
    Zstd,
    /// `'BZh'`.
    Bzip2,
    /// `5D 00`.
    Lzma,
    /// `89 'LZO'`.
    Lzo,
    /// None of these: the first four bytes.
    Unknown([u8; 4]),
}

impl Compression {
    /// The format whose magic `payload` starts with.
    pub fn by_magic(payload: &[u8]) -> Compression {
        const MAGICS: [(&[u8], Compression); 8] = [
            (b"\x1f\x8b", Compression::Gzip),
            (b"\x1f\x9e", Compression::Gzip),
            (b"\x02\x21\x4c\x18", Compression::Lz4),
            (b"\xfd7zXZ\0", Compression::Xz),
            (b"\x28\xb5\x2f\xfd", Compression::Zstd),
            (b"BZh", Compression::Bzip2),
            (b"\x5d\x00", Compression::Lzma),
            (b"\x89LZO", Compression::Lzo),
        ];
        if let Some(&(_, c)) = MAGICS.iter().find(|(m, _)| payload.starts_with(m)) {
            return c;
        }
        let mut first = [0u8; 4];
        for (d, s) in first.iter_mut().zip(payload) {
            *d = *s;
        }
        Compression::Unknown(first)
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::Gzip => f.write_str("gzip"),
            Compression::Lz4 => f.write_str("lz4 (legacy frame)"),
            Compression::Xz => f.write_str("xz"),
            Compression::Zstd => f.write_str("zstd"),
            Compression::Bzip2 => f.write_str("bzip2"),
            Compression::Lzma => f.write_str("lzma"),
            Compression::Lzo => f.write_str("lzo"),
            Compression::Unknown(m) => write!(
                f,
                "unknown (first bytes {:02x} {:02x} {:02x} {:02x})",
                m[0], m[1], m[2], m[3]
            ),
        }
    }
}

/// `major.minor.patch` from the start of the header's version string
/// ("6.1.0-28-cloud-amd64 (debian-kernel@...) #1 SMP ..."). Debian's strings carry the
/// ABI name, so the patch level is Debian's `0`, not the upstream stable release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KernelVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl KernelVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> KernelVersion {
        KernelVersion {
            major,
            minor,
            patch,
        }
    }

    /// Reads `major.minor[.patch]` at the start of `s`; the patch level is 0 when absent
    /// (`6.15-rc1`). `None` unless the string starts with two dot-separated numbers.
    pub fn parse(s: &[u8]) -> Option<KernelVersion> {
        let mut rest = s;
        let major = number(&mut rest)?;
        rest = rest.strip_prefix(b".")?;
        let minor = number(&mut rest)?;
        let patch = match rest.strip_prefix(b".") {
            Some(mut tail) => number(&mut tail).unwrap_or(0),
            None => 0,
        };
        Some(KernelVersion::new(major, minor, patch))
    }
}

/// A decimal number at the start of `s` (advanced past it); `None` if there is none or
/// it overflows.
fn number(s: &mut &[u8]) -> Option<u32> {
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    let (num, rest) = s.split_at_checked(digits)?;
    if num.is_empty() {
        return None;
    }
    let mut v: u32 = 0;
    for d in num {
        v = v
            .checked_mul(10)?
            .checked_add(char::from(*d).to_digit(10)?)?;
    }
    *s = rest;
    Some(v)
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BzImageError {
    /// No "HdrS" at 0x202 (or the file ends before it).
    NotBzImage,
    /// The file ends before `what` does.
    Truncated {
        what: &'static str,
        need: u64,
        have: u64,
    },
    /// Boot protocol older than 2.12 (`major << 8 | minor`).
    ProtocolTooOld {
        found: u16,
    },
    BadBootFlag {
        found: u16,
    },
    /// loadflags lacks LOADED_HIGH: a zImage, loaded at 0x10000.
    NotLoadedHigh {
        loadflags: u8,
    },
    /// relocatable_kernel is 0: the kernel runs only at its link address.
    NotRelocatable,
    /// xloadflags lacks XLF_KERNEL_64: no 64-bit kernel.
    Not64Bit {
        xloadflags: u16,
    },
    /// kernel_alignment is not a power of two of at least 2 MiB.
    BadKernelAlignment {
        found: u32,
    },
    /// `[payload_offset, + payload_length)` is not inside the protected-mode part.
    PayloadOutOfFile {
        offset: u32,
        length: u32,
        protected_len: u64,
    },
    /// A payload too short to end in its 4-byte size.
    PayloadTooShort {
        length: u32,
    },
    /// The version string pointer lies outside the setup code, or the string has no NUL.
    BadVersionString {
        pointer: u16,
    },
}

impl fmt::Display for BzImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use BzImageError as E;
        match *self {
            E::NotBzImage => f.write_str("not a bzImage: no HdrS magic at 0x202"),
            E::Truncated { what, need, have } => write!(
                f,
                "bzImage truncated: {what} needs {need:#x} bytes, the file has {have:#x}"
            ),
            E::ProtocolTooOld { found } => write!(
                f,
                "boot protocol {}.{:02}, need 2.12 or later (xloadflags)",
                found >> 8,
                found & 0xff
            ),
            E::BadBootFlag { found } => write!(f, "boot_flag {found:#06x}, want 0xaa55"),
            E::NotLoadedHigh { loadflags } => write!(
                f,
                "loadflags {loadflags:#04x} lacks LOADED_HIGH: a zImage, not a bzImage"
            ),
            E::NotRelocatable => f.write_str("relocatable_kernel is 0: not a relocatable kernel"),
            E::Not64Bit { xloadflags } => write!(
                f,
                "xloadflags {xloadflags:#06x} lacks XLF_KERNEL_64: not a 64-bit kernel"
            ),
            E::BadKernelAlignment { found } => write!(
                f,
                "kernel_alignment {found:#x} is not a power of two of at least 2 MiB"
            ),
            E::PayloadOutOfFile {
                offset,
                length,
                protected_len,
            } => write!(
                f,
                "payload at {offset:#x}+{length:#x} runs past the protected-mode part ({protected_len:#x} bytes)"
            ),
            E::PayloadTooShort { length } => {
                write!(f, "payload of {length} bytes cannot end in its size")
            }
            E::BadVersionString { pointer } => write!(
                f,
                "kernel_version pointer {pointer:#x} does not lead to a NUL-terminated string in the setup code"
            ),
        }
    }
}

/// A checked bzImage: the parts of the file and the header fields the loader needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BzImage<'a> {
    /// The boot sector and real-mode setup: the first `(setup_sects + 1) * 512` bytes
    /// (`setup_sects` 0 meaning 4); it holds the setup header at 0x1f1.
    pub setup: &'a [u8],
    /// The rest of the file: the protected-mode part.
    pub protected: &'a [u8],
    /// The compressed kernel, inside `protected`.
    pub payload: &'a [u8],
    /// `payload_offset`: where `payload` starts in `protected`.
    pub payload_offset: u32,
    pub compression: Compression,
    /// The payload's last 4 bytes, little-endian: vmlinux.bin + vmlinux.relocs unpacked
    /// (gzip's ISIZE; `size_append` in scripts/Makefile.lib for the other formats).
    pub decompressed_len: u64,
    /// Memory the kernel asks for from its start (boot.rst `init_size`).
    pub init_size: u64,
    /// `kernel_alignment` (CONFIG_PHYSICAL_ALIGN): a power of two, at least 2 MiB.
    pub kernel_alignment: u64,
    /// `pref_address`: the kernel's LOAD_PHYSICAL_ADDR.
    pub pref_address: u64,
    /// The longest command line the kernel reads, without its NUL (`cmdline_size`).
    pub cmdline_max: u32,
    /// Boot protocol version, `major << 8 | minor`.
    pub protocol: u16,
    pub loadflags: u8,
    pub xloadflags: u16,
    /// The header's version string without its NUL (empty when the pointer is 0).
    pub version_string: &'a [u8],
    /// `major.minor.patch` from `version_string`, if it starts with one.
    pub version: Option<KernelVersion>,
}

/// Whether `bytes` carries a setup header ("HdrS" at 0x202): a Linux bzImage or the
/// shim's own image. [`parse_bzimage`] tells which are loadable.
pub fn is_bzimage(bytes: &[u8]) -> bool {
    bytes.get(HDRS_AT..HDRS_AT + 4) == Some(HDRS_MAGIC.to_le_bytes().as_slice())
}

fn truncated(what: &'static str, need: u64, bytes: &[u8]) -> BzImageError {
    BzImageError::Truncated {
        what,
        need,
        have: bytes.len() as u64,
    }
}

/// Checks that `bytes` is a bzImage the shim can load as Linux's EFI stub does: boot
/// protocol 2.12 or later, loaded high, relocatable, with a 64-bit kernel; and finds its
/// parts.
pub fn parse_bzimage(bytes: &[u8]) -> Result<BzImage<'_>, BzImageError> {
    if !is_bzimage(bytes) {
        return Err(BzImageError::NotBzImage);
    }
    let h = bytes
        .get(SETUP_HEADER_OFFSET..)
        .and_then(|b| SetupHeader::read_from_prefix(b).ok())
        .map(|(h, _)| h)
        .ok_or(truncated(
            "the setup header",
            SETUP_HEADER_END as u64,
            bytes,
        ))?;
    let protocol = h.version.get();
    if protocol < MIN_PROTOCOL {
        return Err(BzImageError::ProtocolTooOld { found: protocol });
    }
    if h.boot_flag.get() != BOOT_FLAG {
        return Err(BzImageError::BadBootFlag {
            found: h.boot_flag.get(),
        });
    }
    if h.loadflags & LOADED_HIGH == 0 {
        return Err(BzImageError::NotLoadedHigh {
            loadflags: h.loadflags,
        });
    }
    if h.relocatable_kernel == 0 {
        return Err(BzImageError::NotRelocatable);
    }
    let xloadflags = h.xloadflags.get();
    if xloadflags & XLF_KERNEL_64 == 0 {
        return Err(BzImageError::Not64Bit { xloadflags });
    }
    let align = h.kernel_alignment.get();
    if !align.is_power_of_two() || u64::from(align) < MIN_KERNEL_ALIGN {
        return Err(BzImageError::BadKernelAlignment { found: align });
    }

    let setup_len = h.protected_mode_offset();
    let (setup, protected) = usize::try_from(setup_len)
        .ok()
        .and_then(|n| bytes.split_at_checked(n))
        .ok_or(truncated("the setup code", setup_len, bytes))?;

    let (offset, length) = (h.payload_offset.get(), h.payload_length.get());
    let out_of_file = BzImageError::PayloadOutOfFile {
        offset,
        length,
        protected_len: protected.len() as u64,
    };
    let start = usize::try_from(offset).map_err(|_| out_of_file)?;
    let end = usize::try_from(length)
        .ok()
        .and_then(|l| start.checked_add(l))
        .ok_or(out_of_file)?;
    let payload = protected.get(start..end).ok_or(out_of_file)?;
    let size = payload
        .last_chunk::<4>()
        .ok_or(BzImageError::PayloadTooShort { length })?;

    let version_string = version_string(setup, h.kernel_version.get())?;
    Ok(BzImage {
        setup,
        protected,
        payload,
        payload_offset: offset,
        compression: Compression::by_magic(payload),
        decompressed_len: u64::from(u32::from_le_bytes(*size)),
        init_size: u64::from(h.init_size.get()),
        kernel_alignment: u64::from(align),
        pref_address: h.pref_address.get(),
        cmdline_max: h.cmdline_max(),
        protocol,
        loadflags: h.loadflags,
        xloadflags,
        version_string,
        version: KernelVersion::parse(version_string),
    })
}

/// The NUL-terminated string at `pointer + 0x200` (boot.rst `kernel_version`: "less
/// 0x200"), which must lie in the setup code; empty for a 0 pointer.
fn version_string(setup: &[u8], pointer: u16) -> Result<&[u8], BzImageError> {
    if pointer == 0 {
        return Ok(&[]);
    }
    let bad = BzImageError::BadVersionString { pointer };
    let tail = setup.get(usize::from(pointer) + 0x200..).ok_or(bad)?;
    let nul = tail.iter().position(|&b| b == 0).ok_or(bad)?;
    tail.get(..nul).ok_or(bad)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal bzImage: `setup_sects` 3 (2 KiB of setup), protocol 2.15, the version
    /// string at 0x400, and `payload` at protected-mode offset 0x40 followed by 0x20
    /// bytes of padding.
    pub fn image(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 0x800 + 0x40];
        f[0x1f1] = 3;
        f[0x1fe..0x200].copy_from_slice(&BOOT_FLAG.to_le_bytes());
        f[0x200] = 0xeb;
        f[0x201] = 0x6a;
        f[0x202..0x206].copy_from_slice(&HDRS_MAGIC.to_le_bytes());
        f[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        f[0x20e..0x210].copy_from_slice(&0x200u16.to_le_bytes());
        f[0x211] = LOADED_HIGH | 0x80;
        f[0x230..0x234].copy_from_slice(&0x20_0000u32.to_le_bytes());
        f[0x234] = 1;
        f[0x235] = 21;
        f[0x236..0x238].copy_from_slice(&0x7fu16.to_le_bytes());
        f[0x248..0x24c].copy_from_slice(&0x40u32.to_le_bytes());
        f[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        f[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes());
        f[0x260..0x264].copy_from_slice(&0x300_0000u32.to_le_bytes());
        let v = b"6.1.0-28-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP\0";
        f[0x400..0x400 + v.len()].copy_from_slice(v);
        f.extend_from_slice(payload);
        f.extend_from_slice(&[0xcc; 0x20]);
        f
    }

    fn with(f: &[u8], at: usize, v: &[u8]) -> Vec<u8> {
        let mut f = f.to_vec();
        f[at..at + v.len()].copy_from_slice(v);
        f
    }

    const PAYLOAD: &[u8] = b"\x02\x21\x4c\x18compressed\x78\x56\x34\x12";

    #[test]
    fn fields() {
        let f = image(PAYLOAD);
        let bz = parse_bzimage(&f).unwrap();
        assert_eq!(bz.setup.len(), 0x800);
        assert_eq!(bz.protected.len(), 0x40 + PAYLOAD.len() + 0x20);
        assert_eq!(bz.payload, PAYLOAD);
        assert_eq!(bz.compression, Compression::Lz4);
        assert_eq!(bz.decompressed_len, 0x1234_5678);
        assert_eq!(bz.init_size, 0x300_0000);
        assert_eq!(bz.kernel_alignment, 0x20_0000);
        assert_eq!(bz.pref_address, 0x100_0000);
        assert_eq!(bz.protocol, 0x020f);
        assert_eq!(bz.version, Some(KernelVersion::new(6, 1, 0)));
        assert!(bz.version_string.starts_with(b"6.1.0-28-cloud-amd64 ("));
        assert!(is_bzimage(&f));
        // setup_sects 0 means 4.
        let mut four = with(&f, 0x1f1, &[0]);
        four.splice(0x800..0x800, [0u8; 0x200]);
        assert_eq!(parse_bzimage(&four).unwrap().setup.len(), 0xa00);
        // No version string.
        let none = with(&f, 0x20e, &[0, 0]);
        let bz = parse_bzimage(&none).unwrap();
        assert_eq!((bz.version, bz.version_string), (None, &b""[..]));
    }

    #[test]
    fn errors_name_what_was_found() {
        let f = image(PAYLOAD);
        let err = |b: &[u8]| parse_bzimage(b).unwrap_err();
        assert_eq!(err(&[0u8; 0x1000]), BzImageError::NotBzImage);
        assert_eq!(err(b"MZ"), BzImageError::NotBzImage);
        assert_eq!(
            err(&f[..0x250]),
            BzImageError::Truncated {
                what: "the setup header",
                need: 0x26c,
                have: 0x250
            }
        );
        assert_eq!(
            err(&with(&f, 0x206, &0x020bu16.to_le_bytes())),
            BzImageError::ProtocolTooOld { found: 0x020b }
        );
        assert_eq!(
            err(&with(&f, 0x206, &0x020bu16.to_le_bytes())).to_string(),
            "boot protocol 2.11, need 2.12 or later (xloadflags)"
        );
        assert_eq!(
            err(&with(&f, 0x1fe, &[0x55, 0xab])),
            BzImageError::BadBootFlag { found: 0xab55 }
        );
        assert_eq!(
            err(&with(&f, 0x211, &[0x80])),
            BzImageError::NotLoadedHigh { loadflags: 0x80 }
        );
        assert_eq!(err(&with(&f, 0x234, &[0])), BzImageError::NotRelocatable);
        assert_eq!(
            err(&with(&f, 0x236, &[0x7e, 0])),
            BzImageError::Not64Bit { xloadflags: 0x7e }
        );
        for bad in [0u32, 0x1000, 0x30_0000] {
            assert_eq!(
                err(&with(&f, 0x230, &bad.to_le_bytes())),
                BzImageError::BadKernelAlignment { found: bad }
            );
        }
        assert_eq!(
            err(&with(&f, 0x1f1, &[200])),
            BzImageError::Truncated {
                what: "the setup code",
                need: 201 * 512,
                have: f.len() as u64
            }
        );
        let len = PAYLOAD.len() as u32;
        assert_eq!(
            err(&with(&f, 0x248, &0x61u32.to_le_bytes())),
            BzImageError::PayloadOutOfFile {
                offset: 0x61,
                length: len,
                protected_len: 0x40 + u64::from(len) + 0x20
            }
        );
        assert!(matches!(
            err(&with(&f, 0x248, &u32::MAX.to_le_bytes())),
            BzImageError::PayloadOutOfFile { .. }
        ));
        assert_eq!(
            err(&with(&f, 0x24c, &3u32.to_le_bytes())),
            BzImageError::PayloadTooShort { length: 3 }
        );
        assert_eq!(
            err(&with(&f, 0x20e, &0x700u16.to_le_bytes())),
            BzImageError::BadVersionString { pointer: 0x700 }
        );
        // A string that runs to the end of the setup code without a NUL.
        let mut unterminated = f.clone();
        unterminated[0x400..0x800].fill(b'x');
        assert_eq!(
            err(&unterminated),
            BzImageError::BadVersionString { pointer: 0x200 }
        );
    }

    #[test]
    fn every_truncation_fails_cleanly() {
        let f = image(PAYLOAD);
        // The payload ends 0x20 bytes before the file does.
        for n in 0..f.len() - 0x20 {
            assert!(parse_bzimage(&f[..n]).is_err(), "truncated to {n}");
        }
        for n in f.len() - 0x20..=f.len() {
            assert!(parse_bzimage(&f[..n]).is_ok(), "truncated to {n}");
        }
    }

    #[test]
    fn compression_by_magic() {
        let cases: [(&[u8], Compression); 9] = [
            (b"\x1f\x8b\x08\x00", Compression::Gzip),
            (b"\x1f\x9e", Compression::Gzip),
            (b"\x02\x21\x4c\x18", Compression::Lz4),
            (b"\xfd7zXZ\0\0", Compression::Xz),
            (b"\x28\xb5\x2f\xfd", Compression::Zstd),
            (b"BZh9", Compression::Bzip2),
            (b"\x5d\x00\x00\x80", Compression::Lzma),
            (b"\x89LZO\0", Compression::Lzo),
            (
                b"\x02\x21\x4c\x19",
                Compression::Unknown([2, 0x21, 0x4c, 0x19]),
            ),
        ];
        for (bytes, c) in cases {
            assert_eq!(Compression::by_magic(bytes), c, "{bytes:02x?}");
        }
        assert_eq!(
            Compression::by_magic(b"\x7f"),
            Compression::Unknown([0x7f, 0, 0, 0])
        );
        assert_eq!(
            Compression::Unknown(*b"\x7fELF").to_string(),
            "unknown (first bytes 7f 45 4c 46)"
        );
    }

    #[test]
    fn kernel_versions() {
        let v = |s: &[u8]| KernelVersion::parse(s);
        assert_eq!(
            v(b"6.1.0-28-cloud-amd64 (x)"),
            Some(KernelVersion::new(6, 1, 0))
        );
        assert_eq!(
            v(b"6.12.117+deb12-amd64"),
            Some(KernelVersion::new(6, 12, 117))
        );
        assert_eq!(v(b"6.15-rc1"), Some(KernelVersion::new(6, 15, 0)));
        assert_eq!(v(b"6.15.0-rc1"), Some(KernelVersion::new(6, 15, 0)));
        assert_eq!(v(b"4.19"), Some(KernelVersion::new(4, 19, 0)));
        assert_eq!(v(b"6.x"), None);
        assert_eq!(v(b"6"), None);
        assert_eq!(v(b"v6.1"), None);
        assert_eq!(v(b""), None);
        assert_eq!(v(b"99999999999.1"), None);
        assert!(KernelVersion::new(6, 14, 99) < KernelVersion::new(6, 15, 0));
        assert_eq!(KernelVersion::new(6, 1, 0).to_string(), "6.1.0");
    }
}
