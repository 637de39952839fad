//! The 4096-byte zero page (`struct boot_params`, zero-page.rst) and the checked view
//! of the one a loader passed, with the command line it points at.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{
    BootParamsError, E820Entry, SetupHeader, E820_ENTRY_SIZE, E820_MAX_ENTRIES_ZEROPAGE,
    HDRS_MAGIC, SETUP_HEADER_END, SETUP_HEADER_OFFSET,
};
use crate::memmap::Range;

/// Size of `struct boot_params`, the "zero page".
pub const ZERO_PAGE_SIZE: usize = 4096;

// Zero-page offsets outside the setup header (bootparam.h `struct boot_params`).
/// `u64 acpi_rsdp_addr`.
pub const ACPI_RSDP_ADDR: usize = 0x070;
/// `u32 ext_ramdisk_image`: bits 32..63 of `ramdisk_image`.
pub const EXT_RAMDISK_IMAGE: usize = 0x0c0;
/// `u32 ext_ramdisk_size`: bits 32..63 of `ramdisk_size`.
pub const EXT_RAMDISK_SIZE: usize = 0x0c4;
/// `u32 ext_cmd_line_ptr`: bits 32..63 of `cmd_line_ptr`.
pub const EXT_CMD_LINE_PTR: usize = 0x0c8;
/// `u8 e820_entries`: how many entries of the table are valid.
pub const E820_ENTRIES: usize = 0x1e8;
/// `u8 sentinel`: 0xff in the image; non-zero in boot_params means a loader copied more
/// than the setup header and the fields Linux does not preserve must be read as zero.
pub const SENTINEL: usize = 0x1ef;
/// `u32 edd_mbr_sig_buffer[EDD_MBR_SIG_MAX]`: the first field after the setup header's
/// hole, so no setup header can reach past it.
pub const EDD_MBR_SIG_BUFFER: usize = 0x290;
/// `EDD_MBR_SIG_MAX`.
pub const EDD_MBR_SIG_MAX: usize = 16;
/// `struct boot_e820_entry e820_table[128]`.
pub const E820_TABLE: usize = 0x2d0;

/// `struct boot_params` as bootparam.h lays it out, every field named (zero-page.rst
/// says who fills each); the structures the shim only carries over (`screen_info`,
/// `edid_info`, `efi_info`, EDD, ...) are kept as bytes.
#[repr(C, packed)]
#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct ZeroPage {
    /// `struct screen_info`: text mode or framebuffer.
    pub screen_info: [u8; 0x40],
    /// `struct apm_bios_info`.
    pub apm_bios_info: [u8; 0x14],
    _pad2: [u8; 4],
    /// PA of the tboot shared page.
    pub tboot_addr: U64,
    /// `struct ist_info`: Intel SpeedStep BIOS support.
    pub ist_info: [u8; 0x10],
    /// PA of the ACPI RSDP, 0 if unknown.
    pub acpi_rsdp_addr: U64,
    _pad3: [u8; 8],
    /// Obsolete.
    pub hd0_info: [u8; 0x10],
    /// Obsolete.
    pub hd1_info: [u8; 0x10],
    /// Obsolete.
    pub sys_desc_table: [u8; 0x10],
    pub olpc_ofw_header: [u8; 0x10],
    /// Bits 32..63 of `ramdisk_image`.
    pub ext_ramdisk_image: U32,
    /// Bits 32..63 of `ramdisk_size`.
    pub ext_ramdisk_size: U32,
    /// Bits 32..63 of `cmd_line_ptr`.
    pub ext_cmd_line_ptr: U32,
    _pad4: [u8; 0x70],
    /// PA of the confidential-computing blob.
    pub cc_blob_address: U32,
    /// `struct edid_info`.
    pub edid_info: [u8; 0x80],
    /// `struct efi_info`: system table and memory map.
    pub efi_info: [u8; 0x20],
    pub alt_mem_k: U32,
    /// For the kernel's own setup code.
    pub scratch: U32,
    /// How many entries of `e820_table` are valid.
    pub e820_entries: u8,
    pub eddbuf_entries: u8,
    pub edd_mbr_sig_buf_entries: u8,
    pub kbd_status: u8,
    pub secure_boot: u8,
    _pad5: [u8; 2],
    /// 0xff in the image; non-zero in boot_params means a loader copied more than the
    /// setup header, and `sanitize_boot_params` then zeroes what it does not trust.
    pub sentinel: u8,
    _pad6: [u8; 1],
    pub hdr: SetupHeader,
    _pad7: [u8; EDD_MBR_SIG_BUFFER - SETUP_HEADER_END],
    pub edd_mbr_sig_buffer: [U32; EDD_MBR_SIG_MAX],
    pub e820_table: [E820Entry; E820_MAX_ENTRIES_ZEROPAGE],
    _pad8: [u8; 48],
    /// `struct edd_info eddbuf[EDDMAXNR]`: 6 entries of 82 bytes.
    pub eddbuf: [u8; 0x1ec],
    _pad9: [u8; 276],
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<ZeroPage>() == ZERO_PAGE_SIZE);
    // The offsets of bootparam.h's comments and zero-page.rst's table.
    assert!(offset_of!(ZeroPage, apm_bios_info) == 0x040);
    assert!(offset_of!(ZeroPage, tboot_addr) == 0x058);
    assert!(offset_of!(ZeroPage, ist_info) == 0x060);
    assert!(offset_of!(ZeroPage, acpi_rsdp_addr) == ACPI_RSDP_ADDR);
    assert!(offset_of!(ZeroPage, hd0_info) == 0x080);
    assert!(offset_of!(ZeroPage, hd1_info) == 0x090);
    assert!(offset_of!(ZeroPage, sys_desc_table) == 0x0a0);
    assert!(offset_of!(ZeroPage, olpc_ofw_header) == 0x0b0);
    assert!(offset_of!(ZeroPage, ext_ramdisk_image) == EXT_RAMDISK_IMAGE);
    assert!(offset_of!(ZeroPage, ext_ramdisk_size) == EXT_RAMDISK_SIZE);
    assert!(offset_of!(ZeroPage, ext_cmd_line_ptr) == EXT_CMD_LINE_PTR);
    assert!(offset_of!(ZeroPage, cc_blob_address) == 0x13c);
    assert!(offset_of!(ZeroPage, edid_info) == 0x140);
    assert!(offset_of!(ZeroPage, efi_info) == 0x1c0);
    assert!(offset_of!(ZeroPage, alt_mem_k) == 0x1e0);
    assert!(offset_of!(ZeroPage, scratch) == 0x1e4);
    assert!(offset_of!(ZeroPage, e820_entries) == E820_ENTRIES);
    assert!(offset_of!(ZeroPage, eddbuf_entries) == 0x1e9);
    assert!(offset_of!(ZeroPage, edd_mbr_sig_buf_entries) == 0x1ea);
    assert!(offset_of!(ZeroPage, kbd_status) == 0x1eb);
    assert!(offset_of!(ZeroPage, secure_boot) == 0x1ec);
    assert!(offset_of!(ZeroPage, sentinel) == SENTINEL);
    assert!(offset_of!(ZeroPage, hdr) == SETUP_HEADER_OFFSET);
    assert!(offset_of!(ZeroPage, edd_mbr_sig_buffer) == EDD_MBR_SIG_BUFFER);
    assert!(offset_of!(ZeroPage, e820_table) == E820_TABLE);
    assert!(offset_of!(ZeroPage, eddbuf) == 0xd00);
    assert!(E820_TABLE + E820_MAX_ENTRIES_ZEROPAGE * E820_ENTRY_SIZE == 0xcd0);
};

/// A checked view of the zero page a loader passed (`%rsi`/`%esi` at entry).
#[derive(Clone, Copy)]
pub struct BootParams<'a> {
    zp: &'a ZeroPage,
}

impl<'a> BootParams<'a> {
    /// Needs at least [`ZERO_PAGE_SIZE`] bytes (extra bytes are ignored) and `"HdrS"` at
    /// 0x202. `boot_flag` is not required: a loader may fill only the fields it knows.
    pub fn new(zero_page: &'a [u8]) -> Result<BootParams<'a>, BootParamsError> {
        let (zp, _) =
            ZeroPage::ref_from_prefix(zero_page).map_err(|_| BootParamsError::Truncated {
                len: zero_page.len(),
            })?;
        let magic = zp.hdr.header.get();
        if magic != HDRS_MAGIC {
            return Err(BootParamsError::BadHeaderMagic(magic));
        }
        Ok(BootParams { zp })
    }

    /// The whole zero page, fields exactly as the loader left them.
    pub fn zero_page(&self) -> &'a ZeroPage {
        self.zp
    }

    pub fn header(&self) -> &'a SetupHeader {
        &self.zp.hdr
    }

    /// True when the sentinel at 0x1ef is non-zero: the loader copied more than the
    /// setup header, so (as Linux's `sanitize_boot_params`) the fields outside the
    /// header and the E820 table — `ext_*`, `acpi_rsdp_addr` — read as zero.
    pub fn sentinel_set(&self) -> bool {
        self.zp.sentinel != 0
    }

    /// A field outside the preserved set, zero when the sentinel is set.
    fn unpreserved(&self, v: u32) -> u64 {
        if self.sentinel_set() {
            0
        } else {
            u64::from(v)
        }
    }

    /// PA of the NUL-terminated command line, 0 for none:
    /// `cmd_line_ptr | ext_cmd_line_ptr << 32`.
    pub fn cmd_line_ptr(&self) -> u64 {
        u64::from(self.zp.hdr.cmd_line_ptr.get())
            | self.unpreserved(self.zp.ext_cmd_line_ptr.get()) << 32
    }

    /// The initrd, `ramdisk_image | ext_ramdisk_image << 32` with the size likewise;
    /// `None` when the size is 0. A range that would pass 2^64 is cut at `u64::MAX`
    /// (conservative for an avoid list: everything from its start up is avoided).
    pub fn initrd(&self) -> Option<Range> {
        let hdr = &self.zp.hdr;
        let start = u64::from(hdr.ramdisk_image.get())
            | self.unpreserved(self.zp.ext_ramdisk_image.get()) << 32;
        let size = u64::from(hdr.ramdisk_size.get())
            | self.unpreserved(self.zp.ext_ramdisk_size.get()) << 32;
        (size != 0).then(|| Range {
            start,
            end: start.saturating_add(size),
        })
    }

    /// PA of the first `setup_data` node, 0 for none (walk it with [`walk_setup_data`](super::walk_setup_data)).
    pub fn setup_data(&self) -> u64 {
        self.zp.hdr.setup_data.get()
    }

    /// PA of the ACPI RSDP if the loader knows it, else 0.
    pub fn acpi_rsdp_addr(&self) -> u64 {
        if self.sentinel_set() {
            0
        } else {
            self.zp.acpi_rsdp_addr.get()
        }
    }

    /// The `e820_entries` valid entries of the table as `(addr, size, type)`, in table
    /// order, unsanitised. More than 128 is an error, not clamped.
    pub fn e820(
        &self,
    ) -> Result<impl Iterator<Item = (u64, u64, u32)> + Clone + 'a, BootParamsError> {
        let count = self.zp.e820_entries;
        let entries = self
            .zp
            .e820_table
            .get(..usize::from(count))
            .ok_or(BootParamsError::TooManyE820 { count })?;
        Ok(entries.iter().map(E820Entry::get))
    }
}

/// Length of the NUL-terminated command line at the front of `bytes`, without the NUL;
/// `max` is the longest allowed (`SetupHeader::cmdline_max`), so the NUL must be among
/// the first `max + 1` bytes. A missing NUL is an error, not a truncation: the loader
/// broke the protocol or the pointer is wrong. The memory to avoid is `len + 1` bytes
/// from `cmd_line_ptr` (as kaslr.c does).
pub fn cmdline_len(bytes: &[u8], max: usize) -> Result<usize, BootParamsError> {
    let window = bytes.get(..max.saturating_add(1)).unwrap_or(bytes);
    window
        .iter()
        .position(|&b| b == 0)
        .ok_or(BootParamsError::CmdlineUnterminated { max })
}

/// The command line at `cmd_line_ptr`: its bytes without the NUL, and the range to
/// avoid, NUL included (Linux kaslr.c avoids strlen + 1). `read(pa, len)` may return
/// fewer than `len` bytes where readable memory ends. `None` when there is none.
pub fn command_line<'m>(
    bp: &BootParams<'_>,
    read: impl FnOnce(u64, u64) -> Option<&'m [u8]>,
) -> Result<Option<(&'m [u8], Range)>, BootParamsError> {
    let pa = match bp.cmd_line_ptr() {
        0 => return Ok(None),
        pa => pa,
    };
    let max = bp.header().cmdline_max() as usize;
    let bytes = (max as u64)
        .checked_add(1)
        .and_then(|n| read(pa, n))
        .ok_or(BootParamsError::CmdlineUnreadable { pa })?;
    let len = cmdline_len(bytes, max)?;
    // `len` indexes the NUL in `bytes`: `len + 1` is at most its length.
    let range = Range::from_base_size(pa, len.saturating_add(1) as u64)?;
    Ok(Some((bytes.get(..len).unwrap_or_default(), range)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootparams::testutil::*;
    use crate::bootparams::*;
    use crate::memmap::MemoryMap;
    use proptest::prelude::*;

    use zerocopy::little_endian::{U32, U64};
    use zerocopy::{FromBytes, FromZeros, IntoBytes};

    #[test]
    fn zero_page_fields_land_at_their_offsets() {
        let mut zp = ZeroPage::new_zeroed();
        zp.acpi_rsdp_addr = U64::new(0xf_5a40);
        zp.ext_ramdisk_image = U32::new(1);
        zp.ext_ramdisk_size = U32::new(2);
        zp.ext_cmd_line_ptr = U32::new(3);
        zp.e820_entries = 4;
        zp.sentinel = 5;
        zp.hdr.setup_sects = 6;
        zp.e820_table[0] = E820Entry::new(7, 8, 9);
        zp.e820_table[127] = E820Entry::new(10, 11, 12);
        let b = zp.as_bytes();
        assert_eq!(b.len(), ZERO_PAGE_SIZE);
        assert_eq!(b[0x70..0x78], 0xf_5a40u64.to_le_bytes());
        assert_eq!((b[0xc0], b[0xc4], b[0xc8]), (1, 2, 3));
        assert_eq!((b[0x1e8], b[0x1ef], b[0x1f1]), (4, 5, 6));
        assert_eq!(b[0x2d0..0x2e4], e820_bytes(&[(7, 8, 9)])[..]);
        assert_eq!(b[0xcbc..0xcd0], e820_bytes(&[(10, 11, 12)])[..]);
        assert_eq!(b[0xcd0..].iter().filter(|&&x| x != 0).count(), 0);
    }

    #[test]
    fn boot_params_checks() {
        let page = zero_page(&[]);
        assert_eq!(
            BootParams::new(&page[..4095]).err(),
            Some(BootParamsError::Truncated { len: 4095 })
        );
        assert_eq!(
            BootParams::new(&[]).err(),
            Some(BootParamsError::Truncated { len: 0 })
        );
        let mut longer = page.clone();
        longer.extend_from_slice(&[0xff; 100]);
        assert!(BootParams::new(&longer).is_ok(), "extra bytes ignored");

        let mut no_hdrs = page.clone();
        no_hdrs[0x202..0x206].copy_from_slice(b"HdrX");
        assert_eq!(
            BootParams::new(&no_hdrs).err(),
            Some(BootParamsError::BadHeaderMagic(0x5872_6448))
        );

        // boot_flag is not required.
        let mut no_flag = page.clone();
        no_flag[0x1fe..0x200].copy_from_slice(&[0, 0]);
        let bp = BootParams::new(&no_flag).unwrap();
        assert_eq!(bp.cmd_line_ptr(), 0);
        assert_eq!(bp.initrd(), None);
        assert_eq!(bp.setup_data(), 0);
        assert_eq!(bp.e820().unwrap().count(), 0);
    }

    #[test]
    fn pointers_combine_the_ext_fields() {
        let mut zp = ZeroPage::read_from_bytes(&zero_page(&[])).unwrap();
        zp.hdr.cmd_line_ptr = U32::new(0x0002_0000);
        zp.ext_cmd_line_ptr = U32::new(0x1);
        zp.hdr.ramdisk_image = U32::new(0x7f00_0000);
        zp.ext_ramdisk_image = U32::new(0x2);
        zp.hdr.ramdisk_size = U32::new(0x0010_0000);
        zp.ext_ramdisk_size = U32::new(0x1);
        zp.acpi_rsdp_addr = U64::new(0xf_5a40);
        let bytes = zp.as_bytes().to_vec();
        let bp = BootParams::new(&bytes).unwrap();
        assert!(!bp.sentinel_set());
        assert_eq!(bp.cmd_line_ptr(), 0x1_0002_0000);
        assert_eq!(
            bp.initrd(),
            Some(r(0x2_7f00_0000, 0x2_7f00_0000 + 0x1_0010_0000))
        );
        assert_eq!(bp.acpi_rsdp_addr(), 0xf_5a40);

        // A sloppy loader (sentinel still 0xff): the unpreserved fields read as zero.
        zp.sentinel = 0xff;
        let bytes = zp.as_bytes().to_vec();
        let bp = BootParams::new(&bytes).unwrap();
        assert!(bp.sentinel_set());
        assert_eq!(bp.cmd_line_ptr(), 0x2_0000);
        assert_eq!(bp.initrd(), Some(r(0x7f00_0000, 0x7f10_0000)));
        assert_eq!(bp.acpi_rsdp_addr(), 0);

        // Size 0 is no initrd, whatever the address; a wrap is cut at u64::MAX.
        zp.sentinel = 0;
        zp.hdr.ramdisk_size = U32::new(0);
        zp.ext_ramdisk_size = U32::new(0);
        let bytes = zp.as_bytes().to_vec();
        assert_eq!(BootParams::new(&bytes).unwrap().initrd(), None);
        zp.ext_ramdisk_image = U32::new(u32::MAX);
        zp.ext_ramdisk_size = U32::new(u32::MAX);
        let bytes = zp.as_bytes().to_vec();
        let initrd = BootParams::new(&bytes).unwrap().initrd().unwrap();
        assert_eq!(initrd.end, u64::MAX);
    }

    #[test]
    fn e820_count_is_checked() {
        let mut page = zero_page(&[(0, 0x9fc00, 1), (0x10_0000, 0x7ff0_0000, 1)]);
        let bp = BootParams::new(&page).unwrap();
        assert_eq!(
            bp.e820().unwrap().collect::<Vec<_>>(),
            [(0, 0x9fc00, 1), (0x10_0000, 0x7ff0_0000, 1)]
        );
        page[E820_ENTRIES] = 128;
        assert_eq!(BootParams::new(&page).unwrap().e820().unwrap().count(), 128);
        for count in [129u8, 200, 255] {
            page[E820_ENTRIES] = count;
            let bp = BootParams::new(&page).unwrap();
            assert_eq!(
                bp.e820().err(),
                Some(BootParamsError::TooManyE820 { count })
            );
        }
        assert_eq!(
            BootParamsError::TooManyE820 { count: 200 }.to_string(),
            "boot_params: e820_entries 200 exceeds 128"
        );
    }

    #[test]
    fn command_line_bounds() {
        let mut page = zero_page(&[]);
        page[0x238..0x23c].copy_from_slice(&15u32.to_le_bytes()); // cmdline_size
        let bp = BootParams::new(&page).unwrap();
        assert_eq!(super::command_line(&bp, |_, _| None), Ok(None));
        page[0x228..0x22c].copy_from_slice(&0x2_0000u32.to_le_bytes());
        let bp = BootParams::new(&page).unwrap();
        let line = b"nokaslr quiet\0garbage";
        let (bytes, range) = super::command_line(&bp, |pa, len| {
            assert_eq!((pa, len), (0x2_0000, 16));
            Some(&line[..])
        })
        .unwrap()
        .unwrap();
        assert_eq!(
            (bytes, range),
            (&b"nokaslr quiet"[..], r(0x2_0000, 0x2_0000 + 14))
        );
        let long = [b'x'; 40];
        assert_eq!(
            super::command_line(&bp, |_, _| Some(&long[..])),
            Err(BootParamsError::CmdlineUnterminated { max: 15 })
        );
        assert_eq!(
            super::command_line(&bp, |_, _| None),
            Err(BootParamsError::CmdlineUnreadable { pa: 0x2_0000 })
        );
    }

    #[test]
    fn command_line() {
        assert_eq!(cmdline_len(b"console=ttyS0\0junk", 2047), Ok(13));
        assert_eq!(cmdline_len(b"\0", 0), Ok(0));
        // The NUL may sit right after `max` characters ...
        assert_eq!(cmdline_len(b"abcd\0", 4), Ok(4));
        // ... but not later, nor be missing.
        let e = BootParamsError::CmdlineUnterminated { max: 3 };
        assert_eq!(cmdline_len(b"abcd\0", 3), Err(e));
        assert_eq!(cmdline_len(b"ab", 3), Err(e));
        assert_eq!(cmdline_len(b"", 3), Err(e));
        assert_eq!(cmdline_len(b"abcdefgh\0", usize::MAX), Ok(8));
        assert_eq!(
            e.to_string(),
            "command line has no NUL within cmdline_size 3 + 1 bytes"
        );
    }

    proptest! {
        #[test]
        fn random_zero_page_never_panics(
            mut bytes in proptest::collection::vec(any::<u8>(), 0..4200),
            hdrs in any::<bool>(),
        ) {
            if hdrs && bytes.len() >= 0x206 {
                bytes[0x202..0x206].copy_from_slice(b"HdrS");
            }
            if let Ok(bp) = BootParams::new(&bytes) {
                let _ = (bp.cmd_line_ptr(), bp.initrd(), bp.setup_data(), bp.acpi_rsdp_addr());
                let h = bp.header();
                let _ = (h.setup_sectors(), h.protected_mode_offset(), h.cmdline_max());
                if let Ok(e) = bp.e820() {
                    let mut out = MemoryMap::new();
                    let _ = ram_from_e820(e, &mut out);
                }
            }
        }

        #[test]
        fn random_cmdline_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            max in any::<usize>(),
        ) {
            match cmdline_len(&bytes, max) {
                Ok(n) => {
                    prop_assert!(n <= max && bytes[n] == 0);
                    prop_assert!(!bytes[..n].contains(&0));
                }
                Err(_) => prop_assert!(!bytes.iter().take(max.saturating_add(1)).any(|&b| b == 0)),
            }
        }
    }
}
