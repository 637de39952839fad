//! The 64-byte header at the start of a Linux arm64 `Image`
//! (Documentation/arch/arm64/booting.rst, arch/arm64/include/asm/image.h): where the
//! kernel wants to be placed and how much memory it needs.

use core::fmt;

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `"ARM\x64"` read as a little-endian u32.
pub const ARM64_MAGIC: u32 = 0x644d_5241;
/// "Where image_size is zero, text_offset can be assumed to be 0x80000."
pub const LEGACY_TEXT_OFFSET: u64 = 0x8_0000;

/// The header, as booting.rst lays it out.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Arm64Header {
    /// Executable code.
    pub code0: U32,
    pub code1: U32,
    /// "Image load offset, little endian".
    pub text_offset: U64,
    /// "Effective Image size, little endian".
    pub image_size: U64,
    /// "kernel flags, little endian".
    pub flags: U64,
    pub res2: U64,
    pub res3: U64,
    pub res4: U64,
    /// [`ARM64_MAGIC`].
    pub magic: U32,
    /// "reserved (used for PE COFF offset)".
    pub res5: U32,
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<Arm64Header>() == 64);
    assert!(offset_of!(Arm64Header, text_offset) == 0x08);
    assert!(offset_of!(Arm64Header, image_size) == 0x10);
    assert!(offset_of!(Arm64Header, flags) == 0x18);
    assert!(offset_of!(Arm64Header, magic) == 0x38);
};

/// `flags` bits (booting.rst).
pub mod flags {
    /// "Bit 0: Kernel endianness. 1 if BE, 0 if LE."
    pub const BIG_ENDIAN: u64 = 1 << 0;
    /// "Bit 1-2: Kernel Page size. 0 - Unspecified. 1 - 4K 2 - 16K 3 - 64K"
    pub const PAGE_SIZE_SHIFT: u32 = 1;
    pub const PAGE_SIZE_MASK: u64 = 0b11 << PAGE_SIZE_SHIFT;
    /// "Bit 3: Kernel physical placement. 0 - 2MB aligned base should be as close as
    /// possible to the base of DRAM [...] 1 - 2MB aligned base such that all image_size
    /// bytes counted from the start of the image are within the 48-bit addressable
    /// range of physical memory."
    pub const PHYS_PLACEMENT_48BIT: u64 = 1 << 3;
}

/// "The Image must be placed text_offset bytes from a 2MB aligned base address".
pub const BASE_ALIGN: u64 = 2 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSize {
    Unspecified,
    K4,
    K16,
    K64,
}

/// The memory the kernel needs from its load address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageSize {
    /// `image_size` bytes, bss and the initial page tables included.
    Known(u64),
    /// `image_size` is 0: a kernel older than v3.17, whose header does not say. The
    /// caller has to pick a bound (U-Boot assumes 16 MiB).
    Unknown,
}

/// What the header tells a loader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arm64Image {
    /// Bytes between the 2 MiB aligned base and the image; [`LEGACY_TEXT_OFFSET`] for
    /// pre-v3.17 kernels.
    pub text_offset: u64,
    pub image_size: ImageSize,
    pub page_size: PageSize,
    /// Flag bit 3: the base may be anywhere the image stays below 2^48, rather than as
    /// low in DRAM as possible.
    pub phys_anywhere: bool,
    /// The raw `flags` (0 for pre-v3.17 kernels, whose header has none).
    pub flags: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// Fewer than 64 bytes.
    Truncated,
    BadMagic {
        found: u32,
    },
    /// Flag bit 0 says the kernel is big-endian.
    BigEndian,
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageError::Truncated => f.write_str("arm64 Image shorter than its 64-byte header"),
            ImageError::BadMagic { found } => {
                write!(
                    f,
                    "arm64 Image magic is 0x{found:08x}, want 0x{ARM64_MAGIC:08x}"
                )
            }
            ImageError::BigEndian => f.write_str("arm64 Image is big-endian, unsupported"),
        }
    }
}

/// Reads the arm64 Image header at the start of `bytes`.
///
/// booting.rst: "Prior to v3.17, the endianness of text_offset was not specified. In
/// these cases image_size is zero and text_offset is 0x80000 in the endianness of the
/// kernel. Where image_size is non-zero image_size is little-endian and must be
/// respected. Where image_size is zero, text_offset can be assumed to be 0x80000."
pub fn parse_arm64(bytes: &[u8]) -> Result<Arm64Image, ImageError> {
    let (h, _) = Arm64Header::ref_from_prefix(bytes).map_err(|_| ImageError::Truncated)?;
    if h.magic.get() != ARM64_MAGIC {
        return Err(ImageError::BadMagic {
            found: h.magic.get(),
        });
    }
    let size = h.image_size.get();
    if size == 0 {
        return Ok(Arm64Image {
            text_offset: LEGACY_TEXT_OFFSET,
            image_size: ImageSize::Unknown,
            page_size: PageSize::Unspecified,
            phys_anywhere: false,
            flags: 0,
        });
    }
    let raw = h.flags.get();
    if raw & flags::BIG_ENDIAN != 0 {
        return Err(ImageError::BigEndian);
    }
    let page_size = match (raw & flags::PAGE_SIZE_MASK) >> flags::PAGE_SIZE_SHIFT {
        1 => PageSize::K4,
        2 => PageSize::K16,
        3 => PageSize::K64,
        _ => PageSize::Unspecified,
    };
    Ok(Arm64Image {
        text_offset: h.text_offset.get(),
        image_size: ImageSize::Known(size),
        page_size,
        phys_anywhere: raw & flags::PHYS_PLACEMENT_48BIT != 0,
        flags: raw,
    })
}

/// Where the shim's own arm64 image keeps its board's early UART, after the header
/// (arch/aarch64 entry.S `early_uart`, written by xtask for the board it packs for).
pub const EARLY_UART_OFFSET: usize = 0x40;

/// The 16 bytes xtask writes at [`EARLY_UART_OFFSET`] for `console`: base u64, kind
/// u32 (1 PL011, 2 8250/16550, 3 i.MX), register shift and width u8; `None` for a
/// register width the entry code does not write (only 1 and 4 bytes).
pub fn early_uart_slot(console: crate::fdt::Console) -> Option<[u8; 16]> {
    use crate::fdt::Uart;
    let (kind, shift, width) = match console.uart {
        Uart::Pl011 => (1u32, 0u8, 4u8),
        Uart::Ns16550 {
            reg_shift,
            reg_io_width,
        } => (2, reg_shift, reg_io_width),
        Uart::Imx => (3, 0, 4),
    };
    if !matches!(width, 1 | 4) {
        return None;
    }
    let mut slot = [0u8; 16];
    let (base, rest) = slot.split_at_mut(8);
    base.copy_from_slice(&console.base.to_le_bytes());
    let (k, rest) = rest.split_at_mut(4);
    k.copy_from_slice(&kind.to_le_bytes());
    if let [s, w, ..] = rest {
        (*s, *w) = (shift, width);
    }
    Some(slot)
}

/// The early UART in the shim's image, as [`early_uart_slot`] writes it, given as the
/// slot's two little-endian words: the entry code reads it with the MMU off, where only
/// aligned loads are allowed, so it is read as whole words and taken apart here.
/// `None` when none is written, or what is there is not one the shim drives.
pub fn early_uart(words: [u64; 2]) -> Option<crate::fdt::Console> {
    use crate::fdt::Uart;
    let [base, rest] = words;
    let [k0, k1, k2, k3, shift, width, ..] = rest.to_le_bytes();
    let uart = match u32::from_le_bytes([k0, k1, k2, k3]) {
        1 => Uart::Pl011,
        2 if matches!(width, 1 | 4) && shift < 8 => Uart::Ns16550 {
            reg_shift: shift,
            reg_io_width: width,
        },
        3 => Uart::Imx,
        _ => return None,
    };
    (base != 0).then_some(crate::fdt::Console { base, uart })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_early_uart_slot_as_xtask_writes_it() {
        use crate::fdt::{Console, Uart};
        let words = |slot: &[u8; 16]| {
            let (lo, hi) = slot.split_at(8);
            [lo, hi].map(|w| u64::from_le_bytes(w.try_into().unwrap()))
        };
        let mut slot = [0u8; 16];
        assert_eq!(early_uart(words(&slot)), None);
        slot[..8].copy_from_slice(&0xfe21_5040u64.to_le_bytes());
        slot[8] = 2;
        slot[12] = 2;
        slot[13] = 4;
        let mini = Uart::Ns16550 {
            reg_shift: 2,
            reg_io_width: 4,
        };
        assert_eq!(
            early_uart(words(&slot)),
            Some(Console {
                base: 0xfe21_5040,
                uart: mini
            })
        );
        slot[13] = 2;
        assert_eq!(early_uart(words(&slot)), None, "a 2-byte register width");
        slot[8] = 9;
        assert_eq!(early_uart(words(&slot)), None, "an unknown kind");
        slot[8] = 1;
        assert_eq!(early_uart(words(&slot)).map(|c| c.uart), Some(Uart::Pl011));
        // What xtask writes reads back as the same console.
        for uart in [Uart::Pl011, mini, Uart::Imx] {
            let c = Console {
                base: 0x0900_0000,
                uart,
            };
            assert_eq!(early_uart(words(&early_uart_slot(c).unwrap())), Some(c));
        }
        let wide = Uart::Ns16550 {
            reg_shift: 0,
            reg_io_width: 2,
        };
        assert_eq!(
            early_uart_slot(Console {
                base: 1,
                uart: wide
            }),
            None
        );
    }

    use super::*;

    fn header(text_offset: u64, image_size: u64, flags: u64) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[0..4].copy_from_slice(&0x1400_0000u32.to_le_bytes()); // b +0
        b[0x08..0x10].copy_from_slice(&text_offset.to_le_bytes());
        b[0x10..0x18].copy_from_slice(&image_size.to_le_bytes());
        b[0x18..0x20].copy_from_slice(&flags.to_le_bytes());
        b[0x38..0x3c].copy_from_slice(b"ARM\x64");
        b
    }

    #[test]
    fn modern_header() {
        let img = parse_arm64(&header(0, 0x1a3_0000, 0b1010)).unwrap();
        assert_eq!(
            img,
            Arm64Image {
                text_offset: 0,
                image_size: ImageSize::Known(0x1a3_0000),
                page_size: PageSize::K4,
                phys_anywhere: true,
                flags: 0b1010,
            }
        );
        assert_eq!(
            parse_arm64(&header(0x8_0000, 1, 3 << 1)).unwrap().page_size,
            PageSize::K64
        );
    }

    #[test]
    fn exact_offsets() {
        let b = header(0x1122_3344_5566_7788, 0x99, 0x4);
        let (h, _) = Arm64Header::ref_from_prefix(&b[..]).unwrap();
        assert_eq!(h.text_offset.get(), 0x1122_3344_5566_7788);
        assert_eq!(h.image_size.get(), 0x99);
        assert_eq!(h.flags.get(), 0x4);
        assert_eq!(h.magic.get(), ARM64_MAGIC);
        assert_eq!(h.code0.get(), 0x1400_0000);
    }

    #[test]
    fn legacy_header_is_explicit() {
        let img = parse_arm64(&header(0x12345, 0, 1)).unwrap();
        assert_eq!(img.image_size, ImageSize::Unknown);
        assert_eq!(img.text_offset, LEGACY_TEXT_OFFSET);
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse_arm64(&header(0, 1, 0)[..63]),
            Err(ImageError::Truncated)
        );
        assert_eq!(parse_arm64(&header(0, 1, 1)), Err(ImageError::BigEndian));
        let mut b = header(0, 1, 0);
        b[0x38] = b'X';
        assert_eq!(
            parse_arm64(&b),
            Err(ImageError::BadMagic { found: 0x644d_5258 })
        );
    }
}
