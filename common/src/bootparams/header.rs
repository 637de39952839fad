//! The setup header (boot.rst, "The Real-Mode Kernel Header"): the table at 0x1f1 of
//! both a bzImage and the zero page, its magic numbers and its flag words.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Offset of [`SetupHeader`] in the zero page and in the kernel (here: shim) image.
pub const SETUP_HEADER_OFFSET: usize = 0x1f1;
/// First byte after [`SetupHeader`] (`kernel_info_offset` ends here).
pub const SETUP_HEADER_END: usize = 0x26c;

/// `"HdrS"` read as a little-endian u32, at 0x202.
pub const HDRS_MAGIC: u32 = 0x5372_6448;
/// At 0x1fe.
pub const BOOT_FLAG: u16 = 0xAA55;

// loadflags (0x211).
/// The protected-mode code is loaded at 0x100000.
pub const LOADED_HIGH: u8 = 1 << 0;
/// Set by the kernel's decompressor when it randomised its position.
pub const KASLR_FLAG: u8 = 1 << 1;
/// Suppress early messages.
pub const QUIET_FLAG: u8 = 1 << 5;
/// Obsolete (protocol 2.07): do not reload the segment registers.
pub const KEEP_SEGMENTS: u8 = 1 << 6;
/// `heap_end_ptr` is valid.
pub const CAN_USE_HEAP: u8 = 1 << 7;

// xloadflags (0x236).
/// A 64-bit entry point at load address + 0x200.
pub const XLF_KERNEL_64: u16 = 1 << 0;
/// The kernel, boot_params, command line and ramdisk may be above 4 GiB.
pub const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 1 << 1;
pub const XLF_EFI_HANDOVER_32: u16 = 1 << 2;
pub const XLF_EFI_HANDOVER_64: u16 = 1 << 3;
pub const XLF_EFI_KEXEC: u16 = 1 << 4;

/// `struct setup_header`, at 0x1f1 of both the image and the zero page (boot.rst's
/// table; all fields little-endian, no padding).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct SetupHeader {
    /// Size of the real-mode setup in 512-byte sectors; 0 means 4.
    pub setup_sects: u8,
    pub root_flags: U16,
    pub syssize: U32,
    pub ram_size: U16,
    pub vid_mode: U16,
    pub root_dev: U16,
    /// [`BOOT_FLAG`].
    pub boot_flag: U16,
    /// `0xEB rel8`: the jump over the header; `0x202 + rel8` is where the header ends.
    pub jump: U16,
    /// [`HDRS_MAGIC`].
    pub header: U32,
    /// Boot protocol version, `major << 8 | minor`.
    pub version: U16,
    pub realmode_swtch: U32,
    pub start_sys_seg: U16,
    pub kernel_version: U16,
    /// Written by the loader (QEMU: 0xb0).
    pub type_of_loader: u8,
    pub loadflags: u8,
    pub setup_move_size: U16,
    pub code32_start: U32,
    pub ramdisk_image: U32,
    pub ramdisk_size: U32,
    pub bootsect_kludge: U32,
    pub heap_end_ptr: U16,
    pub ext_loader_ver: u8,
    pub ext_loader_type: u8,
    pub cmd_line_ptr: U32,
    pub initrd_addr_max: U32,
    pub kernel_alignment: U32,
    pub relocatable_kernel: u8,
    /// log2 of the minimum alignment.
    pub min_alignment: u8,
    pub xloadflags: U16,
    /// Maximum command line length without the NUL (protocol 2.06+).
    pub cmdline_size: U32,
    pub hardware_subarch: U32,
    pub hardware_subarch_data: U64,
    pub payload_offset: U32,
    pub payload_length: U32,
    /// PA of the first `setup_data` node, 0 for none.
    pub setup_data: U64,
    pub pref_address: U64,
    /// Memory the kernel needs from its load address.
    pub init_size: U32,
    pub handover_offset: U32,
    pub kernel_info_offset: U32,
}

/// Checks the relative offset of a [`SetupHeader`] field against its boot_params offset.
macro_rules! at {
    ($field:ident, $abs:expr) => {
        assert!(core::mem::offset_of!(SetupHeader, $field) == $abs - SETUP_HEADER_OFFSET)
    };
}

const _: () = {
    assert!(core::mem::size_of::<SetupHeader>() == SETUP_HEADER_END - SETUP_HEADER_OFFSET);
    // Every offset of SPEC.md section 4.
    at!(setup_sects, 0x1f1);
    at!(boot_flag, 0x1fe);
    at!(jump, 0x200);
    at!(header, 0x202);
    at!(version, 0x206);
    at!(type_of_loader, 0x210);
    at!(loadflags, 0x211);
    at!(code32_start, 0x214);
    at!(ramdisk_image, 0x218);
    at!(ramdisk_size, 0x21c);
    at!(heap_end_ptr, 0x224);
    at!(cmd_line_ptr, 0x228);
    at!(initrd_addr_max, 0x22c);
    at!(kernel_alignment, 0x230);
    at!(relocatable_kernel, 0x234);
    at!(min_alignment, 0x235);
    at!(xloadflags, 0x236);
    at!(cmdline_size, 0x238);
    at!(payload_offset, 0x248);
    at!(payload_length, 0x24c);
    at!(setup_data, 0x250);
    at!(pref_address, 0x258);
    at!(init_size, 0x260);
    at!(handover_offset, 0x264);
    // And the rest of boot.rst's table.
    at!(root_flags, 0x1f2);
    at!(syssize, 0x1f4);
    at!(ram_size, 0x1f8);
    at!(vid_mode, 0x1fa);
    at!(root_dev, 0x1fc);
    at!(realmode_swtch, 0x208);
    at!(start_sys_seg, 0x20c);
    at!(kernel_version, 0x20e);
    at!(setup_move_size, 0x212);
    at!(bootsect_kludge, 0x220);
    at!(ext_loader_ver, 0x226);
    at!(ext_loader_type, 0x227);
    at!(hardware_subarch, 0x23c);
    at!(hardware_subarch_data, 0x240);
    at!(kernel_info_offset, 0x268);
};

impl SetupHeader {
    /// `setup_sects`, where 0 means 4 (boot.rst).
    pub fn setup_sectors(&self) -> u32 {
        match self.setup_sects {
            0 => 4,
            n => u32::from(n),
        }
    }

    /// File offset of the protected-mode code: `(setup_sects + 1) * 512`.
    pub fn protected_mode_offset(&self) -> u64 {
        // From a u8: at most 256 * 512, nowhere near saturating.
        u64::from(self.setup_sectors())
            .saturating_add(1)
            .saturating_mul(512)
    }

    /// The longest command line without its NUL: `cmdline_size` from protocol 2.06,
    /// 255 before.
    pub fn cmdline_max(&self) -> u32 {
        if self.version.get() >= 0x0206 {
            self.cmdline_size.get()
        } else {
            255
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::bootparams::*;

    use zerocopy::little_endian::{U16, U32, U64};
    use zerocopy::{FromBytes, FromZeros};

    #[test]
    fn writes_through_the_header_land_at_the_spec_offsets() {
        let mut page = vec![0u8; ZERO_PAGE_SIZE];
        let hdr = SetupHeader::mut_from_bytes(
            page.get_mut(SETUP_HEADER_OFFSET..SETUP_HEADER_END).unwrap(),
        )
        .unwrap();
        hdr.setup_sects = 0x1b;
        hdr.boot_flag = U16::new(BOOT_FLAG);
        hdr.header = U32::new(HDRS_MAGIC);
        hdr.version = U16::new(0x020f);
        hdr.loadflags = LOADED_HIGH | CAN_USE_HEAP;
        hdr.cmd_line_ptr = U32::new(0x2_0000);
        hdr.xloadflags = U16::new(XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G);
        hdr.cmdline_size = U32::new(2047);
        hdr.setup_data = U64::new(0x1122_3344_5566_7788);
        hdr.init_size = U32::new(0x0123_4567);
        hdr.kernel_info_offset = U32::new(0xdead_beef);
        assert_eq!(page[0x1f1], 0x1b);
        assert_eq!(page[0x1fe..0x200], [0x55, 0xaa]);
        assert_eq!(&page[0x202..0x206], b"HdrS");
        assert_eq!(page[0x206..0x208], [0x0f, 0x02]);
        assert_eq!(page[0x211], 0x81);
        assert_eq!(page[0x228..0x22c], [0, 0, 2, 0]);
        assert_eq!(page[0x236..0x238], [3, 0]);
        assert_eq!(page[0x238..0x23c], 2047u32.to_le_bytes());
        assert_eq!(page[0x250..0x258], 0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(page[0x260..0x264], 0x0123_4567u32.to_le_bytes());
        assert_eq!(page[0x268..0x26c], 0xdead_beefu32.to_le_bytes());
        assert_eq!(page[0x26c], 0, "nothing past the header");

        let bp = BootParams::new(&page).unwrap();
        assert_eq!(bp.header().setup_sectors(), 0x1b);
        assert_eq!(bp.header().protected_mode_offset(), 0x1c * 512);
        assert_eq!(bp.header().cmdline_max(), 2047);
        assert_eq!(bp.setup_data(), 0x1122_3344_5566_7788);
        assert_eq!(bp.cmd_line_ptr(), 0x2_0000);
    }

    #[test]
    fn header_edge_cases() {
        let mut h = SetupHeader::new_zeroed();
        assert_eq!(h.setup_sectors(), 4, "0 means 4");
        assert_eq!(h.protected_mode_offset(), 0xa00);
        h.version = U16::new(0x0205);
        h.cmdline_size = U32::new(4096);
        assert_eq!(h.cmdline_max(), 255, "no cmdline_size before 2.06");
        h.version = U16::new(0x0206);
        assert_eq!(h.cmdline_max(), 4096);
    }
}
