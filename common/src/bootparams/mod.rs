//! The x86 Linux boot protocol as the shim receives it (Documentation/arch/x86/boot.rst,
//! arch/x86/include/uapi/asm/bootparam.h): the setup header, the 4096-byte zero page,
//! the E820 memory map, the `setup_data` list and the command line, all checked.

use core::fmt;
use core::marker::PhantomData;

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::memmap::{Avoid, MemError, MemoryMap, Range, RangeSet, MAX_RANGES};

mod build;

pub use build::{
    build_linux_zero_page, write_rng_seed_node, write_setup_data_node, LinuxBootParams,
    LOADER_UNDEFINED, MAX_SETUP_HEADER_END, MIN_LINUX_PROTOCOL,
};

/// Size of `struct boot_params`, the "zero page".
pub const ZERO_PAGE_SIZE: usize = 4096;
/// Offset of [`SetupHeader`] in the zero page and in the kernel (here: shim) image.
pub const SETUP_HEADER_OFFSET: usize = 0x1f1;
/// First byte after [`SetupHeader`] (`kernel_info_offset` ends here).
pub const SETUP_HEADER_END: usize = 0x26c;

/// `"HdrS"` read as a little-endian u32, at 0x202.
pub const HDRS_MAGIC: u32 = 0x5372_6448;
/// At 0x1fe.
pub const BOOT_FLAG: u16 = 0xAA55;

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
/// `E820_MAX_ENTRIES_ZEROPAGE`.
pub const E820_MAX_ENTRIES_ZEROPAGE: usize = 128;
/// Bytes of one packed [`E820Entry`].
pub const E820_ENTRY_SIZE: usize = 20;

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

// setup_data types (arch/x86/include/uapi/asm/setup_data.h).
pub const SETUP_NONE: u32 = 0;
/// More E820 entries than the zero page holds, as a packed [`E820Entry`] array.
pub const SETUP_E820_EXT: u32 = 1;
pub const SETUP_DTB: u32 = 2;
pub const SETUP_PCI: u32 = 3;
pub const SETUP_EFI: u32 = 4;
pub const SETUP_APPLE_PROPERTIES: u32 = 5;
pub const SETUP_JAILHOUSE: u32 = 6;
pub const SETUP_CC_BLOB: u32 = 7;
pub const SETUP_IMA: u32 = 8;
/// Random bytes from the loader (QEMU >= 7.1, kexec_file).
pub const SETUP_RNG_SEED: u32 = 9;
pub const SETUP_KEXEC_KHO: u32 = 10;
/// The node's data is a [`SetupIndirect`] pointing at the real data elsewhere.
pub const SETUP_INDIRECT: u32 = 1 << 31;

/// Size of the `struct setup_data` header (`next`, `type`, `len`) before the data.
pub const SETUP_DATA_HEADER_SIZE: u64 = 16;
/// The longest `setup_data` list accepted; more is reported as a loop.
pub const MAX_SETUP_DATA_NODES: usize = 64;

// E820 types (arch/x86/include/asm/e820/types.h). Only `E820_TYPE_RAM` is usable.
pub const E820_TYPE_RAM: u32 = 1;
pub const E820_TYPE_RESERVED: u32 = 2;
pub const E820_TYPE_ACPI: u32 = 3;
pub const E820_TYPE_NVS: u32 = 4;
pub const E820_TYPE_UNUSABLE: u32 = 5;
pub const E820_TYPE_PMEM: u32 = 7;
/// Legacy persistent memory (`memmap=nn!ss`).
pub const E820_TYPE_PRAM: u32 = 12;
/// EFI "specific purpose" memory.
pub const E820_TYPE_SOFT_RESERVED: u32 = 0xefff_ffff;

/// What is wrong with the boot parameters the loader handed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootParamsError {
    /// The zero page is shorter than [`ZERO_PAGE_SIZE`] bytes.
    Truncated { len: usize },
    /// No `"HdrS"` at 0x202: not boot_params built from a boot-protocol header.
    BadHeaderMagic(u32),
    /// `e820_entries` above 128.
    TooManyE820 { count: u8 },
    /// E820 entry `index` (counted across every source given) ends beyond 2^64.
    E820Overflow {
        index: usize,
        addr: u64,
        size: u64,
        typ: u32,
    },
    /// A `SETUP_E820_EXT` payload whose length is not a multiple of 20.
    BadE820Ext { len: usize },
    /// The `setup_data` list revisits a node or is longer than [`MAX_SETUP_DATA_NODES`].
    SetupDataLoop,
    /// A `setup_data` node (header or data) the caller could not read.
    SetupDataUnreadable { pa: u64, len: u64 },
    /// A `setup_data` node at `pa` whose `len` runs past 2^64.
    SetupDataOverflow { pa: u64, len: u32 },
    /// A `SETUP_INDIRECT` node at `pa` too short or pointing past 2^64.
    BadSetupIndirect { pa: u64 },
    /// No NUL within `max + 1` bytes of the command line (`max` = `cmdline_size`).
    CmdlineUnterminated { max: usize },
    /// The command line at `pa` lies outside memory the caller can read.
    CmdlineUnreadable { pa: u64 },
    /// The memory map does not fit the fixed-size range sets.
    Memory(MemError),
    /// The kernel's setup area is `len` bytes, shorter than the `need` its header takes.
    KernelSetupTruncated { len: usize, need: usize },
    /// No `"HdrS"` in the kernel's setup header: not a bzImage.
    KernelHeaderMagic(u32),
    /// The kernel speaks boot protocol `version`, older than 2.12.
    KernelProtocol { version: u16 },
    /// The jump at 0x200 ends the kernel's setup header at `end`, before `setup_data`
    /// or past 0x281.
    KernelHeaderEnd { end: usize },
    /// `what` reaches `pa`, above 4 GiB, and the kernel lacks XLF_CAN_BE_LOADED_ABOVE_4G.
    Above4G { what: &'static str, pa: u64 },
    /// An initrd range that ends before it starts or past 2^64.
    BadInitrd { start: u64, end: u64 },
    /// A setup_data node of `need` bytes does not fit in `have`.
    SetupDataNoRoom { need: usize, have: usize },
    /// setup_data of `len` bytes: more than its u32 `len` field can say.
    SetupDataTooLong { len: usize },
}

impl fmt::Display for BootParamsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootParamsError::Truncated { len } => {
                write!(f, "boot_params: {len} bytes, need {ZERO_PAGE_SIZE}")
            }
            BootParamsError::BadHeaderMagic(m) => {
                write!(f, "boot_params: header magic {m:#x} is not HdrS")
            }
            BootParamsError::TooManyE820 { count } => write!(
                f,
                "boot_params: e820_entries {count} exceeds {E820_MAX_ENTRIES_ZEROPAGE}"
            ),
            BootParamsError::E820Overflow {
                index,
                addr,
                size,
                typ,
            } => write!(
                f,
                "e820 entry {index} (addr {addr:#x} size {size:#x} type {typ}) overflows 64 bits"
            ),
            BootParamsError::BadE820Ext { len } => write!(
                f,
                "setup_data E820_EXT length {len} is not a multiple of {E820_ENTRY_SIZE}"
            ),
            BootParamsError::SetupDataLoop => write!(
                f,
                "setup_data list loops or is longer than {MAX_SETUP_DATA_NODES} nodes"
            ),
            BootParamsError::SetupDataUnreadable { pa, len } => {
                write!(f, "setup_data: cannot read {len:#x} bytes at {pa:#x}")
            }
            BootParamsError::CmdlineUnreadable { pa } => {
                write!(f, "command line at {pa:#x} is outside memory")
            }
            BootParamsError::SetupDataOverflow { pa, len } => {
                write!(
                    f,
                    "setup_data node at {pa:#x} len {len:#x} overflows 64 bits"
                )
            }
            BootParamsError::BadSetupIndirect { pa } => {
                write!(f, "setup_data indirect node at {pa:#x} malformed")
            }
            BootParamsError::CmdlineUnterminated { max } => write!(
                f,
                "command line has no NUL within cmdline_size {max} + 1 bytes"
            ),
            BootParamsError::Memory(e) => write!(f, "e820: {e}"),
            BootParamsError::KernelSetupTruncated { len, need } => write!(
                f,
                "kernel setup area is {len:#x} bytes, its header needs {need:#x}"
            ),
            BootParamsError::KernelHeaderMagic(m) => {
                write!(f, "kernel header magic {m:#x} is not HdrS: not a bzImage")
            }
            BootParamsError::KernelProtocol { version } => write!(
                f,
                "kernel boot protocol {}.{:02} is older than 2.12",
                version >> 8,
                version & 0xff
            ),
            BootParamsError::KernelHeaderEnd { end } => {
                write!(
                    f,
                    "kernel setup header ends at {end:#x}, outside 0x258..=0x281"
                )
            }
            BootParamsError::Above4G { what, pa } => write!(
                f,
                "{what} reaches {pa:#x}, above 4 GiB, and the kernel cannot take it there"
            ),
            BootParamsError::BadInitrd { start, end } => {
                write!(f, "initrd range {start:#x}..{end:#x} is malformed")
            }
            BootParamsError::SetupDataNoRoom { need, have } => write!(
                f,
                "setup_data node needs {need:#x} bytes, {have:#x} available"
            ),
            BootParamsError::SetupDataTooLong { len } => {
                write!(
                    f,
                    "setup_data of {len:#x} bytes does not fit its u32 length"
                )
            }
        }
    }
}

impl From<MemError> for BootParamsError {
    fn from(e: MemError) -> Self {
        BootParamsError::Memory(e)
    }
}

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
        assert!(core::mem::offset_of!(SetupHeader, $field) + SETUP_HEADER_OFFSET == $abs)
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
        (u64::from(self.setup_sectors()) + 1) * 512
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

/// `struct boot_e820_entry`: 20 packed bytes.
#[repr(C, packed)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned,
)]
pub struct E820Entry {
    pub addr: U64,
    pub size: U64,
    /// `E820_TYPE_*`.
    pub typ: U32,
}

const _: () = assert!(core::mem::size_of::<E820Entry>() == E820_ENTRY_SIZE);

impl E820Entry {
    pub fn new(addr: u64, size: u64, typ: u32) -> E820Entry {
        E820Entry {
            addr: U64::new(addr),
            size: U64::new(size),
            typ: U32::new(typ),
        }
    }

    /// `(addr, size, type)`, what [`ram_from_e820`] takes.
    pub fn get(&self) -> (u64, u64, u32) {
        (self.addr.get(), self.size.get(), self.typ.get())
    }
}

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

    /// PA of the first `setup_data` node, 0 for none (walk it with [`walk_setup_data`]).
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

/// Usable RAM from an E820 map: the union of every `E820_TYPE_RAM` entry minus every
/// other entry, whatever their order. Duplicates, overlaps and zero-length entries are
/// fine; where a non-RAM entry overlaps RAM the non-RAM entry wins (conservative, as
/// Linux's `e820__update_table` prefers the higher type). Pass every source at once
/// (the zero-page table chained with each `SETUP_E820_EXT` node) so a reserved entry in
/// one trims RAM from another. `out` is replaced only on success.
///
/// An entry whose `addr + size` passes 2^64 is an error naming it (Linux gives up on
/// such a table too); ending exactly at `u64::MAX` is fine.
pub fn ram_from_e820(
    entries: impl Iterator<Item = (u64, u64, u32)>,
    out: &mut MemoryMap,
) -> Result<(), BootParamsError> {
    let mut ram = MemoryMap::new();
    let mut other = RangeSet::<MAX_RANGES>::new();
    for (index, (addr, size, typ)) in entries.enumerate() {
        let r = Range::from_base_size(addr, size).map_err(|_| BootParamsError::E820Overflow {
            index,
            addr,
            size,
            typ,
        })?;
        if typ == E820_TYPE_RAM {
            ram.insert(r)?;
        } else {
            other.insert(r)?;
        }
    }
    for r in other.iter() {
        ram.remove(r)?;
    }
    *out = ram;
    Ok(())
}

/// The entries of a `SETUP_E820_EXT` node's data: a packed [`E820Entry`] array whose
/// length must be a multiple of 20.
pub fn e820_ext(
    data: &[u8],
) -> Result<impl Iterator<Item = (u64, u64, u32)> + Clone + '_, BootParamsError> {
    let entries = <[E820Entry]>::ref_from_bytes(data)
        .map_err(|_| BootParamsError::BadE820Ext { len: data.len() })?;
    Ok(entries.iter().map(E820Entry::get))
}

/// `struct setup_data` without its data.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct SetupDataHeader {
    /// PA of the next node, 0 at the end.
    pub next: U64,
    /// `SETUP_*`.
    pub typ: U32,
    /// Bytes of data following this header.
    pub len: U32,
}

const _: () = assert!(core::mem::size_of::<SetupDataHeader>() as u64 == SETUP_DATA_HEADER_SIZE);

/// `struct setup_indirect`: the data of a [`SETUP_INDIRECT`] node.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct SetupIndirect {
    /// `SETUP_INDIRECT | SETUP_*` of the data it points at.
    pub typ: U32,
    pub reserved: U32,
    pub len: U64,
    pub addr: U64,
}

const _: () = assert!(core::mem::size_of::<SetupIndirect>() == 24);

/// One `setup_data` node, read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetupData<'m> {
    /// PA of the node (its header).
    pub pa: u64,
    /// `SETUP_*`.
    pub typ: u32,
    /// The `len` bytes after the header.
    pub data: &'m [u8],
}

impl SetupData<'_> {
    /// The node as memory to avoid: header and data, as kaslr.c does.
    pub fn range(&self) -> Range {
        let len = u64::try_from(self.data.len()).unwrap_or(u64::MAX);
        Range {
            start: self.pa,
            end: self
                .pa
                .saturating_add(SETUP_DATA_HEADER_SIZE)
                .saturating_add(len),
        }
    }

    /// For a [`SETUP_INDIRECT`] node, the memory its [`SetupIndirect`] points at (also to
    /// be avoided, as kaslr.c does); `None` for other nodes or an empty target.
    pub fn indirect(&self) -> Result<Option<Range>, BootParamsError> {
        if self.typ != SETUP_INDIRECT {
            return Ok(None);
        }
        let bad = BootParamsError::BadSetupIndirect { pa: self.pa };
        let (ind, _) = SetupIndirect::read_from_prefix(self.data).map_err(|_| bad)?;
        // kaslr.c skips an indirect node that points at another indirect one.
        if ind.typ.get() == SETUP_INDIRECT {
            return Ok(None);
        }
        let r = Range::from_base_size(ind.addr.get(), ind.len.get()).map_err(|_| bad)?;
        Ok((!r.is_empty()).then_some(r))
    }
}

/// Walks the `setup_data` list from `first` (0: empty). `read(pa, len)` returns the
/// `len` bytes of physical memory at `pa`, or `None` when it cannot; it is called for
/// each node's 16-byte header and then for its data (not at all for empty data).
///
/// Yields each node in list order; stops after the node whose `next` is 0. After an
/// error (unreadable node, `len` past 2^64, a node seen twice or more than
/// [`MAX_SETUP_DATA_NODES`] nodes) it yields nothing more.
pub fn walk_setup_data<'m, F>(first: u64, read: F) -> SetupDataIter<'m, F>
where
    F: FnMut(u64, u64) -> Option<&'m [u8]>,
{
    SetupDataIter {
        next: first,
        read,
        seen: [0; MAX_SETUP_DATA_NODES],
        count: 0,
        failed: false,
        _memory: PhantomData,
    }
}

/// The iterator of [`walk_setup_data`].
pub struct SetupDataIter<'m, F> {
    next: u64,
    read: F,
    seen: [u64; MAX_SETUP_DATA_NODES],
    count: usize,
    failed: bool,
    _memory: PhantomData<&'m [u8]>,
}

impl<'m, F> SetupDataIter<'m, F>
where
    F: FnMut(u64, u64) -> Option<&'m [u8]>,
{
    fn step(&mut self) -> Result<SetupData<'m>, BootParamsError> {
        let pa = self.next;
        let seen = self.seen.get(..self.count).unwrap_or(&[]);
        if seen.contains(&pa) {
            return Err(BootParamsError::SetupDataLoop);
        }
        let slot = self
            .seen
            .get_mut(self.count)
            .ok_or(BootParamsError::SetupDataLoop)?;
        *slot = pa;
        self.count += 1;

        let unreadable = |pa, len| BootParamsError::SetupDataUnreadable { pa, len };
        let header_bytes = (self.read)(pa, SETUP_DATA_HEADER_SIZE)
            .ok_or(unreadable(pa, SETUP_DATA_HEADER_SIZE))?;
        let (header, _) = SetupDataHeader::read_from_prefix(header_bytes)
            .map_err(|_| unreadable(pa, SETUP_DATA_HEADER_SIZE))?;
        let len = header.len.get();
        let data_pa = pa
            .checked_add(SETUP_DATA_HEADER_SIZE)
            .filter(|d| d.checked_add(u64::from(len)).is_some())
            .ok_or(BootParamsError::SetupDataOverflow { pa, len })?;
        let data = if len == 0 {
            &[]
        } else {
            let n = usize::try_from(len).map_err(|_| unreadable(data_pa, u64::from(len)))?;
            (self.read)(data_pa, u64::from(len))
                .and_then(|d| d.get(..n))
                .ok_or(unreadable(data_pa, u64::from(len)))?
        };
        self.next = header.next.get();
        Ok(SetupData {
            pa,
            typ: header.typ.get(),
            data,
        })
    }
}

impl<'m, F> Iterator for SetupDataIter<'m, F>
where
    F: FnMut(u64, u64) -> Option<&'m [u8]>,
{
    type Item = Result<SetupData<'m>, BootParamsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.next == 0 {
            return None;
        }
        let r = self.step();
        if r.is_err() {
            self.failed = true;
        }
        Some(r)
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

/// The command line itself (without its NUL), checked as [`cmdline_len`] does.
pub fn cmdline(bytes: &[u8], max: usize) -> Result<&[u8], BootParamsError> {
    let len = cmdline_len(bytes, max)?;
    bytes
        .get(..len)
        .ok_or(BootParamsError::CmdlineUnterminated { max })
}

/// What the shim reads from boot_params and the memory it points at: the x86
/// counterpart of `fdt::Machine`.
#[derive(Debug)]
pub struct Machine<'m> {
    /// The e820 table and every SETUP_E820_EXT node, reserved beating RAM.
    pub ram: MemoryMap,
    /// boot_params itself, every setup_data node (and what a SETUP_INDIRECT node
    /// points at), the initrd.
    pub avoid: Avoid,
    /// Every SETUP_RNG_SEED node (kexec passes one): its bytes, and the physical
    /// address of the node, whose data and `len` the shim zeroes once it has them.
    rng_seeds: [(&'m [u8], u64); MAX_SETUP_DATA_NODES],
    n_rng_seeds: usize,
}

impl<'m> Machine<'m> {
    /// Reads boot_params at `bp_pa` and walks its setup_data list through `read(pa,
    /// len)`, which returns exactly `len` bytes of physical memory or `None`.
    pub fn read(
        bp_pa: u64,
        bp: &BootParams<'_>,
        mut read: impl FnMut(u64, u64) -> Option<&'m [u8]>,
    ) -> Result<Machine<'m>, BootParamsError> {
        let mut avoid = Avoid::new();
        avoid.push(
            Range::from_base_size(bp_pa, ZERO_PAGE_SIZE as u64)?,
            "boot_params",
        )?;
        if let Some(initrd) = bp.initrd() {
            avoid.push(initrd, "initrd")?;
        }
        let mut ext: [&[u8]; MAX_SETUP_DATA_NODES] = [&[]; MAX_SETUP_DATA_NODES];
        let mut n_ext = 0;
        let mut rng_seeds = [(&[][..], 0u64); MAX_SETUP_DATA_NODES];
        let mut n_rng_seeds = 0;
        for node in walk_setup_data(bp.setup_data(), &mut read) {
            let node = node?;
            avoid.push(node.range(), "setup_data")?;
            if let Some(target) = node.indirect()? {
                avoid.push(target, "setup_data indirect")?;
            }
            match node.typ {
                SETUP_E820_EXT => {
                    // A malformed node stops the boot here, not silently in the chain.
                    let _valid = e820_ext(node.data)?;
                    if let Some(slot) = ext.get_mut(n_ext) {
                        *slot = node.data;
                        n_ext += 1;
                    }
                }
                SETUP_RNG_SEED => {
                    if let Some(slot) = rng_seeds.get_mut(n_rng_seeds) {
                        *slot = (node.data, node.pa);
                        n_rng_seeds += 1;
                    }
                }
                _ => {}
            }
        }
        let extra = ext
            .iter()
            .take(n_ext)
            .flat_map(|data| e820_ext(data).into_iter().flatten());
        let mut ram = MemoryMap::new();
        ram_from_e820(bp.e820()?.chain(extra), &mut ram)?;
        Ok(Machine {
            ram,
            avoid,
            rng_seeds,
            n_rng_seeds,
        })
    }

    /// Every SETUP_RNG_SEED node: its bytes and the node's physical address.
    pub fn rng_seeds(&self) -> impl Iterator<Item = (&'m [u8], u64)> + '_ {
        self.rng_seeds.iter().take(self.n_rng_seeds).copied()
    }
}

/// Where a setup_data node's `len` field and data lie: what consuming it zeroes, as
/// Linux's `parse_setup_data` does (`memzero_explicit(data, len); len = 0`).
pub fn consumed_fields(node_pa: u64, data_len: u64) -> (Range, Range) {
    let len = Range {
        start: node_pa.saturating_add(12),
        end: node_pa.saturating_add(16),
    };
    let data = Range {
        start: node_pa.saturating_add(SETUP_DATA_HEADER_SIZE),
        end: node_pa
            .saturating_add(SETUP_DATA_HEADER_SIZE)
            .saturating_add(data_len),
    };
    (len, data)
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
    let bytes = read(pa, max as u64 + 1).ok_or(BootParamsError::CmdlineUnreadable { pa })?;
    let len = cmdline_len(bytes, max)?;
    let range = Range::from_base_size(pa, len as u64 + 1)?;
    Ok(Some((bytes.get(..len).unwrap_or_default(), range)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use zerocopy::FromZeros;

    fn r(start: u64, end: u64) -> Range {
        Range { start, end }
    }

    /// A zero page with "HdrS", version 2.15, and the given E820 table.
    fn zero_page(e820: &[(u64, u64, u32)]) -> Vec<u8> {
        let mut zp = ZeroPage::new_zeroed();
        zp.hdr.header = U32::new(HDRS_MAGIC);
        zp.hdr.boot_flag = U16::new(BOOT_FLAG);
        zp.hdr.version = U16::new(0x020f);
        for (slot, &(a, s, t)) in zp.e820_table.iter_mut().zip(e820) {
            *slot = E820Entry::new(a, s, t);
        }
        zp.e820_entries = u8::try_from(e820.len()).unwrap();
        zp.as_bytes().to_vec()
    }

    fn ram(entries: &[(u64, u64, u32)]) -> Result<Vec<Range>, BootParamsError> {
        let mut out = MemoryMap::new();
        ram_from_e820(entries.iter().copied(), &mut out)?;
        Ok(out.as_slice().to_vec())
    }

    /// Fake physical memory: blobs keyed by their PA.
    struct Memory(HashMap<u64, Vec<u8>>);

    impl Memory {
        fn read(&self, pa: u64, len: u64) -> Option<&[u8]> {
            self.0.iter().find_map(|(&base, blob)| {
                let off = usize::try_from(pa.checked_sub(base)?).ok()?;
                let end = off.checked_add(usize::try_from(len).ok()?)?;
                blob.get(off..end)
            })
        }
    }

    fn node(next: u64, typ: u32, data: &[u8]) -> Vec<u8> {
        let header = SetupDataHeader {
            next: U64::new(next),
            typ: U32::new(typ),
            len: U32::new(u32::try_from(data.len()).unwrap()),
        };
        let mut v = header.as_bytes().to_vec();
        v.extend_from_slice(data);
        v
    }

    fn e820_bytes(entries: &[(u64, u64, u32)]) -> Vec<u8> {
        entries
            .iter()
            .flat_map(|&(a, s, t)| E820Entry::new(a, s, t).as_bytes().to_vec())
            .collect()
    }

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
    fn qemu_like_map() {
        // Shaped like SeaBIOS's map for QEMU q35 with 2 GiB, in BIOS order.
        let map = [
            (0, 0x9fc00, E820_TYPE_RAM),
            (0x9fc00, 0x400, E820_TYPE_RESERVED),
            (0xf0000, 0x10000, E820_TYPE_RESERVED),
            (0x10_0000, 0x7fee_0000, E820_TYPE_RAM),
            (0x7ffe_0000, 0x2_0000, E820_TYPE_RESERVED),
            (0xb000_0000, 0x1000_0000, E820_TYPE_RESERVED),
            (0xfed1_c000, 0x4000, E820_TYPE_RESERVED),
            (0xfeff_c000, 0x4000, E820_TYPE_RESERVED),
            (0xfffc_0000, 0x4_0000, E820_TYPE_RESERVED),
            (0xfd_0000_0000, 0x3_0000_0000, E820_TYPE_RESERVED),
        ];
        let page = zero_page(&map);
        let bp = BootParams::new(&page).unwrap();
        let mut out = MemoryMap::new();
        ram_from_e820(bp.e820().unwrap(), &mut out).unwrap();
        assert_eq!(out.as_slice(), [r(0, 0x9fc00), r(0x10_0000, 0x7ffe_0000)]);
    }

    #[test]
    fn e820_normalisation() {
        const RAM: u32 = E820_TYPE_RAM;
        const RES: u32 = E820_TYPE_RESERVED;
        // Unsorted, duplicated, adjacent RAM merges.
        assert_eq!(
            ram(&[
                (0x3000, 0x1000, RAM),
                (0x1000, 0x1000, RAM),
                (0x2000, 0x1000, RAM),
                (0x1000, 0x1000, RAM),
                (0x9000, 0x1000, RAM),
            ]),
            Ok(vec![r(0x1000, 0x4000), r(0x9000, 0xa000)])
        );
        // Reserved wins over RAM, whichever comes first, for every non-RAM type.
        for typ in [
            RES,
            E820_TYPE_ACPI,
            E820_TYPE_NVS,
            E820_TYPE_UNUSABLE,
            E820_TYPE_PMEM,
            E820_TYPE_PRAM,
            E820_TYPE_SOFT_RESERVED,
            6,
            0,
            0xdead,
        ] {
            assert_eq!(
                ram(&[(0x1800, 0x1000, typ), (0x1000, 0x4000, RAM)]),
                Ok(vec![r(0x1000, 0x1800), r(0x2800, 0x5000)]),
                "type {typ}"
            );
            assert_eq!(
                ram(&[(0x1000, 0x4000, RAM), (0x800, 0x1000, typ)]),
                Ok(vec![r(0x1800, 0x5000)]),
                "type {typ}"
            );
        }
        // Reserved covering all RAM: nothing left.
        assert_eq!(ram(&[(0x1000, 0x1000, RAM), (0, 0x10000, RES)]), Ok(vec![]));
        // Zero-length entries are ignored, even at addresses that would overflow.
        assert_eq!(
            ram(&[
                (0x1000, 0x1000, RAM),
                (0x1800, 0, RES),
                (u64::MAX, 0, RAM),
                (0x5000, 0, RAM)
            ]),
            Ok(vec![r(0x1000, 0x2000)])
        );
        // An entry ending exactly at u64::MAX is fine.
        assert_eq!(
            ram(&[(u64::MAX - 0x1000, 0x1000, RAM), (0, 0x1000, RAM)]),
            Ok(vec![r(0, 0x1000), r(u64::MAX - 0x1000, u64::MAX)])
        );
        // One byte further overflows: an error naming the entry.
        let e = ram(&[(0, 0x1000, RAM), (u64::MAX - 0xfff, 0x1000, RES)]).unwrap_err();
        assert_eq!(
            e,
            BootParamsError::E820Overflow {
                index: 1,
                addr: u64::MAX - 0xfff,
                size: 0x1000,
                typ: RES
            }
        );
        assert_eq!(
            e.to_string(),
            "e820 entry 1 (addr 0xfffffffffffff000 size 0x1000 type 2) overflows 64 bits"
        );
        // `out` is untouched on error.
        let mut out = MemoryMap::new();
        out.insert(r(1, 2)).unwrap();
        assert!(ram_from_e820([(u64::MAX, 2, RAM)].into_iter(), &mut out).is_err());
        assert_eq!(out.as_slice(), [r(1, 2)]);
        // ... and replaced on success.
        ram_from_e820([(0x10, 0x10, RAM)].into_iter(), &mut out).unwrap();
        assert_eq!(out.as_slice(), [r(0x10, 0x20)]);
    }

    #[test]
    fn e820_too_many_ranges_is_an_error() {
        let holes: Vec<_> = (0..200u64).map(|i| (i * 0x2000, 0x1000, 1)).collect();
        assert_eq!(
            ram(&holes),
            Err(BootParamsError::Memory(MemError::TooManyRanges))
        );
    }

    #[test]
    fn every_rng_seed_node_is_kept() {
        let mut page = zero_page(&[(0x10_0000, 0x3ff0_0000, E820_TYPE_RAM)]);
        page[0x250..0x258].copy_from_slice(&0x9_0000u64.to_le_bytes());
        let mut mem = Memory(HashMap::new());
        mem.0
            .insert(0x9_0000, node(0x9_1000, SETUP_RNG_SEED, &[1; 32]));
        mem.0
            .insert(0x9_1000, node(0x9_2000, SETUP_RNG_SEED, &[2; 16]));
        mem.0.insert(0x9_2000, node(0, SETUP_RNG_SEED, &[3; 8]));
        let bp = BootParams::new(&page).unwrap();
        let m = Machine::read(0x8_0000, &bp, |pa, len| mem.read(pa, len)).unwrap();
        let seeds: Vec<_> = m.rng_seeds().map(|(d, pa)| (d.len(), pa)).collect();
        assert_eq!(seeds, [(32, 0x9_0000), (16, 0x9_1000), (8, 0x9_2000)]);
    }

    #[test]
    fn more_than_128_entries_via_e820_ext() {
        // 128 RAM pages in the table, shuffled; they merge into [0, 0x80000).
        let mut table: Vec<_> = (0..128u64)
            .map(|i| ((i * 37 % 128) * 0x1000, 0x1000, E820_TYPE_RAM))
            .collect();
        table.rotate_left(5);
        let page = zero_page(&table);
        // 10 more in a SETUP_E820_EXT node: 8 RAM pages above, and two reserved pages,
        // one of them inside RAM from the zero-page table.
        let mut ext: Vec<_> = (0..8u64)
            .map(|j| (0x80000 + j * 0x1000, 0x1000, E820_TYPE_RAM))
            .collect();
        ext.push((0x1000, 0x1000, E820_TYPE_RESERVED));
        ext.push((0x84000, 0x1000, E820_TYPE_ACPI));
        let mut mem = Memory(HashMap::new());
        mem.0
            .insert(0x9_0000, node(0x9_1000, SETUP_RNG_SEED, &[7; 32]));
        mem.0
            .insert(0x9_1000, node(0, SETUP_E820_EXT, &e820_bytes(&ext)));

        let mut page = page;
        page[0x250..0x258].copy_from_slice(&0x9_0000u64.to_le_bytes());
        let bp = BootParams::new(&page).unwrap();
        assert_eq!(bp.setup_data(), 0x9_0000);

        let nodes: Vec<_> = walk_setup_data(bp.setup_data(), |pa, len| mem.read(pa, len))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].typ, SETUP_RNG_SEED);
        assert_eq!(nodes[0].data, [7; 32]);
        assert_eq!(nodes[0].range(), r(0x9_0000, 0x9_0000 + 16 + 32));
        assert_eq!(nodes[1].range(), r(0x9_1000, 0x9_1000 + 16 + 200));
        assert_eq!(nodes[1].indirect(), Ok(None));

        assert_eq!(bp.e820().unwrap().count(), 128);
        let mut chained: Vec<(u64, u64, u32)> = bp.e820().unwrap().collect();
        for n in nodes.iter().filter(|n| n.typ == SETUP_E820_EXT) {
            chained.extend(e820_ext(n.data).unwrap());
        }
        assert_eq!(chained.len(), 138, "every entry counted");
        let mut out = MemoryMap::new();
        ram_from_e820(chained.into_iter(), &mut out).unwrap();
        assert_eq!(
            out.as_slice(),
            [r(0, 0x1000), r(0x2000, 0x84000), r(0x85000, 0x88000)]
        );
    }

    #[test]
    fn machine_gathers_ram_avoid_and_seed_from_every_source() {
        let mut page = zero_page(&[
            (0, 0x9fc00, E820_TYPE_RAM),
            (0x10_0000, 0x3ff0_0000, E820_TYPE_RAM),
        ]);
        page[0x250..0x258].copy_from_slice(&0x9_0000u64.to_le_bytes()); // setup_data
        page[0x218..0x21c].copy_from_slice(&0x3000_0000u32.to_le_bytes()); // ramdisk_image
        page[0x21c..0x220].copy_from_slice(&0x10_0000u32.to_le_bytes()); // ramdisk_size
        let mut mem = Memory(HashMap::new());
        let ext = e820_bytes(&[
            (0x1_0000_0000, 0x4000_0000, E820_TYPE_RAM),
            (0x2000_0000, 0x1000, E820_TYPE_RESERVED),
        ]);
        mem.0
            .insert(0x9_0000, node(0x9_1000, SETUP_RNG_SEED, &[9; 32]));
        mem.0.insert(0x9_1000, node(0, SETUP_E820_EXT, &ext));
        let bp = BootParams::new(&page).unwrap();
        let m = Machine::read(0x8_0000, &bp, |pa, len| mem.read(pa, len)).unwrap();
        assert_eq!(
            m.ram.as_slice(),
            [
                r(0, 0x9fc00),
                r(0x10_0000, 0x2000_0000),
                r(0x2000_1000, 0x4000_0000),
                r(0x1_0000_0000, 0x1_4000_0000)
            ]
        );
        let avoided: Vec<_> = m.avoid.iter().map(|(r, l)| (r.start, r.end, l)).collect();
        assert_eq!(
            avoided,
            [
                (0x8_0000, 0x8_1000, "boot_params"),
                (0x3000_0000, 0x3010_0000, "initrd"),
                (0x9_0000, 0x9_0000 + 16 + 32, "setup_data"),
                (0x9_1000, 0x9_1000 + 16 + 40, "setup_data"),
            ]
        );
        assert_eq!(
            m.rng_seeds().collect::<Vec<_>>(),
            [(&[9u8; 32][..], 0x9_0000)]
        );
        let (len, data) = consumed_fields(0x9_0000, 32);
        assert_eq!(
            (len.start, len.end, data.start, data.end),
            (0x9_000c, 0x9_0010, 0x9_0010, 0x9_0030)
        );
        // A malformed E820_EXT node is an error, not a shorter map.
        mem.0.insert(0x9_1000, node(0, SETUP_E820_EXT, &ext[..30]));
        let e = Machine::read(0x8_0000, &bp, |pa, len| mem.read(pa, len)).unwrap_err();
        assert_eq!(e, BootParamsError::BadE820Ext { len: 30 });
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
    fn e820_ext_length() {
        assert_eq!(e820_ext(&[]).unwrap().count(), 0);
        let two = e820_bytes(&[(1, 2, 3), (4, 5, 6)]);
        assert_eq!(
            e820_ext(&two).unwrap().collect::<Vec<_>>(),
            [(1, 2, 3), (4, 5, 6)]
        );
        assert_eq!(
            e820_ext(&two[..39]).err(),
            Some(BootParamsError::BadE820Ext { len: 39 })
        );
        assert_eq!(
            e820_ext(&[0; 21]).err(),
            Some(BootParamsError::BadE820Ext { len: 21 })
        );
    }

    #[test]
    fn setup_data_walk_errors() {
        // Empty list.
        assert_eq!(walk_setup_data(0, |_, _| None::<&[u8]>).count(), 0);

        // A cycle of three: three nodes, then the error, then nothing.
        let mut mem = Memory(HashMap::new());
        mem.0.insert(0x1000, node(0x2000, SETUP_DTB, b"dtb"));
        mem.0.insert(0x2000, node(0x3000, SETUP_PCI, b""));
        mem.0.insert(0x3000, node(0x1000, SETUP_EFI, b"efi"));
        let got: Vec<_> = walk_setup_data(0x1000, |pa, len| mem.read(pa, len)).collect();
        assert_eq!(got.len(), 4);
        assert!(got[..3].iter().all(Result::is_ok));
        assert_eq!(got[1].unwrap().data, b"");
        assert_eq!(got[1].unwrap().range(), r(0x2000, 0x2010));
        assert_eq!(got[3], Err(BootParamsError::SetupDataLoop));

        // A node pointing at itself.
        let mut mem = Memory(HashMap::new());
        mem.0.insert(0x1000, node(0x1000, SETUP_DTB, b"x"));
        let got: Vec<_> = walk_setup_data(0x1000, |pa, len| mem.read(pa, len)).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], Err(BootParamsError::SetupDataLoop));

        // 64 distinct nodes are fine; 65 are a loop.
        for (n, ok) in [(64u64, true), (65, false)] {
            let mut mem = Memory(HashMap::new());
            for i in 1..=n {
                let next = if i == n { 0 } else { (i + 1) * 0x100 };
                mem.0.insert(i * 0x100, node(next, SETUP_NONE, &[i as u8]));
            }
            let got: Result<Vec<_>, _> =
                walk_setup_data(0x100, |pa, len| mem.read(pa, len)).collect();
            if ok {
                assert_eq!(got.unwrap().len(), 64);
            } else {
                assert_eq!(got.err(), Some(BootParamsError::SetupDataLoop));
            }
        }

        // Unreadable header, unreadable or short data.
        let mut mem = Memory(HashMap::new());
        mem.0.insert(0x1000, node(0x5000, SETUP_DTB, b"abc"));
        let mut data_short = node(0, SETUP_DTB, b"abcdef");
        data_short.truncate(16 + 3);
        mem.0.insert(0x2000, data_short);
        let got: Vec<_> = walk_setup_data(0x1000, |pa, len| mem.read(pa, len)).collect();
        assert_eq!(
            got[1],
            Err(BootParamsError::SetupDataUnreadable {
                pa: 0x5000,
                len: 16
            })
        );
        assert_eq!(got.len(), 2);
        let got: Vec<_> = walk_setup_data(0x2000, |pa, len| mem.read(pa, len)).collect();
        assert_eq!(
            got,
            [Err(BootParamsError::SetupDataUnreadable {
                pa: 0x2010,
                len: 6
            })]
        );
        // A reader returning fewer bytes than asked for is unreadable, more is cut.
        let hdr = node(0, SETUP_DTB, &[0; 8]);
        let got: Vec<_> = walk_setup_data(0x10, |_, len| hdr.get(..len as usize - 1)).collect();
        assert!(matches!(
            got[..],
            [Err(BootParamsError::SetupDataUnreadable {
                pa: 0x10,
                len: 16
            })]
        ));
        let big = [0u8; 64];
        let got: Vec<_> = walk_setup_data(0x10, |pa, _| {
            if pa == 0x10 {
                Some(&hdr[..16])
            } else {
                Some(&big[..])
            }
        })
        .collect();
        assert_eq!(got[0].unwrap().data.len(), 8);

        // A node whose len runs past 2^64.
        let top = u64::MAX - 0x20;
        let mut mem = Memory(HashMap::new());
        mem.0.insert(top, node(0, SETUP_DTB, b"")[..16].to_vec());
        let mut h = SetupDataHeader::read_from_bytes(&mem.0[&top][..16]).unwrap();
        h.len = U32::new(0x100);
        mem.0.insert(top, h.as_bytes().to_vec());
        let got: Vec<_> = walk_setup_data(top, |pa, len| mem.read(pa, len)).collect();
        assert_eq!(
            got,
            [Err(BootParamsError::SetupDataOverflow {
                pa: top,
                len: 0x100
            })]
        );
        assert!(got[0].unwrap_err().to_string().contains("overflows"));
    }

    #[test]
    fn setup_indirect() {
        let ind = |typ: u32, len: u64, addr: u64| {
            SetupIndirect {
                typ: U32::new(typ),
                reserved: U32::new(0),
                len: U64::new(len),
                addr: U64::new(addr),
            }
            .as_bytes()
            .to_vec()
        };
        let data = ind(SETUP_INDIRECT | SETUP_E820_EXT, 0x100, 0x8000);
        let node = |data| SetupData {
            pa: 0x1000,
            typ: SETUP_INDIRECT,
            data,
        };
        assert_eq!(node(&data).indirect(), Ok(Some(r(0x8000, 0x8100))));
        assert_eq!(node(&data).range(), r(0x1000, 0x1000 + 16 + 24));
        let data = ind(SETUP_INDIRECT, 0x100, 0x8000);
        assert_eq!(node(&data).indirect(), Ok(None));
        let data = ind(SETUP_INDIRECT | SETUP_DTB, 0, 0x8000);
        assert_eq!(node(&data).indirect(), Ok(None));
        let bad = Err(BootParamsError::BadSetupIndirect { pa: 0x1000 });
        assert_eq!(node(&data[..23]).indirect(), bad);
        let data = ind(SETUP_INDIRECT | SETUP_DTB, 2, u64::MAX);
        assert_eq!(node(&data).indirect(), bad);
    }

    #[test]
    fn command_line() {
        assert_eq!(cmdline_len(b"console=ttyS0\0junk", 2047), Ok(13));
        assert_eq!(
            cmdline(b"console=ttyS0\0junk", 2047),
            Ok(&b"console=ttyS0"[..])
        );
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

    #[test]
    fn error_lines_are_single_lines() {
        let all = [
            BootParamsError::Truncated { len: 12 },
            BootParamsError::BadHeaderMagic(0),
            BootParamsError::TooManyE820 { count: 200 },
            BootParamsError::E820Overflow {
                index: 0,
                addr: 1,
                size: 2,
                typ: 3,
            },
            BootParamsError::BadE820Ext { len: 3 },
            BootParamsError::SetupDataLoop,
            BootParamsError::SetupDataUnreadable { pa: 1, len: 2 },
            BootParamsError::SetupDataOverflow { pa: 1, len: 2 },
            BootParamsError::BadSetupIndirect { pa: 1 },
            BootParamsError::CmdlineUnterminated { max: 1 },
            BootParamsError::Memory(MemError::TooManyRanges),
            BootParamsError::KernelSetupTruncated { len: 1, need: 2 },
            BootParamsError::KernelHeaderMagic(0),
            BootParamsError::KernelProtocol { version: 0x20b },
            BootParamsError::KernelHeaderEnd { end: 0x300 },
            BootParamsError::Above4G {
                what: "initrd",
                pa: 1 << 32,
            },
            BootParamsError::BadInitrd { start: 2, end: 1 },
            BootParamsError::SetupDataNoRoom { need: 2, have: 1 },
            BootParamsError::SetupDataTooLong { len: 1 << 32 },
        ];
        for e in all {
            let s = e.to_string();
            assert!(!s.is_empty() && !s.contains('\n'), "{s}");
        }
    }

    /// The model of [`ram_from_e820`]: a byte is RAM when a RAM entry covers it and no
    /// other entry does.
    fn model(entries: &[(u64, u64, u32)]) -> [bool; 320] {
        let mut ram = [false; 320];
        let mut other = [false; 320];
        for &(a, s, t) in entries {
            for b in a..a + s {
                if t == E820_TYPE_RAM {
                    ram[b as usize] = true;
                } else {
                    other[b as usize] = true;
                }
            }
        }
        core::array::from_fn(|i| ram[i] && !other[i])
    }

    proptest! {
        #[test]
        fn e820_matches_model(entries in proptest::collection::vec(
            (0u64..256, 0u64..64, prop::sample::select(vec![1u32, 1, 1, 2, 3, 4, 5, 7, 12])), 0..40)
        ) {
            let got = ram(&entries).unwrap();
            for w in got.windows(2) {
                prop_assert!(w[0].end < w[1].start);
            }
            let want = model(&entries);
            for (b, &is_ram) in want.iter().enumerate() {
                let b = b as u64;
                prop_assert_eq!(is_ram, got.iter().any(|x| x.start <= b && b < x.end), "byte {}", b);
            }
        }

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
        fn random_setup_data_never_panics(
            mem in proptest::collection::vec(any::<u8>(), 0..600),
            first in 0u64..700,
            links in proptest::collection::vec(0u64..700, 0..8),
        ) {
            // Fake memory at [0, len); sprinkle in-range `next` pointers so walks go on.
            let mut mem = mem;
            for (i, l) in links.iter().enumerate() {
                if let Some(w) = mem.get_mut(i * 40..i * 40 + 8) {
                    w.copy_from_slice(&l.to_le_bytes());
                }
                if let Some(w) = mem.get_mut(i * 40 + 12..i * 40 + 16) {
                    w.copy_from_slice(&((l % 24) as u32).to_le_bytes());
                }
            }
            let read = |pa: u64, len: u64| {
                let s = usize::try_from(pa).ok()?;
                mem.get(s..s.checked_add(usize::try_from(len).ok()?)?)
            };
            let mut n = 0;
            for node in walk_setup_data(first, read) {
                n += 1;
                prop_assert!(n <= MAX_SETUP_DATA_NODES + 1);
                if let Ok(node) = node {
                    let _ = node.range();
                    let _ = node.indirect();
                    if let Ok(e) = e820_ext(node.data) {
                        let mut out = MemoryMap::new();
                        let _ = ram_from_e820(e, &mut out);
                    }
                }
            }
        }

        #[test]
        fn random_e820_never_panics(
            entries in proptest::collection::vec((any::<u64>(), any::<u64>(), any::<u32>()), 0..200),
            raw in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut out = MemoryMap::new();
            let _ = ram_from_e820(entries.into_iter(), &mut out);
            if let Ok(e) = e820_ext(&raw) {
                let _ = ram_from_e820(e, &mut out);
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
