//! The boot_params the shim hands a Linux x86_64 kernel it entered itself, built as
//! boot.rst's 64-bit boot protocol asks: a zeroed page, the kernel's own setup header,
//! the loader's firmware fields carried over, and the fields a loader owns written.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

use super::{
    BootParams, BootParamsError, SetupHeader, ZeroPage, HDRS_MAGIC, KASLR_FLAG, LOADED_HIGH,
    QUIET_FLAG, SETUP_HEADER_END, SETUP_HEADER_OFFSET, XLF_CAN_BE_LOADED_ABOVE_4G,
};
use crate::memmap::Range;

/// Boot protocol 2.12: `xloadflags` and the `ext_*` fields for 64-bit pointers exist
/// (kexec_file's `bzImage64_probe` asks for the same).
pub const MIN_LINUX_PROTOCOL: u16 = 0x020c;
/// The jump at 0x200 is `0xEB rel8` and its target ends the header: `0x202 + rel8`, a
/// forward jump, so at most 0x281 (boot.rst: the header is limited to 144 bytes).
pub const MAX_SETUP_HEADER_END: usize = 0x202 + 0x7f;
/// The header must reach past `setup_data` (0x250, 8 bytes), the last field written here.
const MIN_SETUP_HEADER_END: usize = 0x258;
/// `type_of_loader` for a loader without an assigned ID.
pub const LOADER_UNDEFINED: u8 = 0xff;

/// What the shim knows when it hands over to Linux.
#[derive(Clone, Copy)]
pub struct LinuxBootParams<'a> {
    /// The zero page as the loader handed it to the shim.
    pub loader: BootParams<'a>,
    /// The start of the kernel's bzImage: its setup area, `(setup_sects + 1) * 512`
    /// bytes (only the setup header is read).
    pub kernel_setup: &'a [u8],
    /// PA of the NUL-terminated command line Linux gets, 0 for none.
    pub cmd_line_ptr: u64,
    /// The initrd in memory, if any (an empty range is none).
    pub initrd: Option<Range>,
    /// True when the shim randomized the kernel's placement and `nokaslr` is absent.
    pub kaslr: bool,
    /// PA of the first setup_data node Linux gets, 0 for none.
    pub setup_data: u64,
}

/// The kernel's setup header: its bytes from 0x1f1 to where the jump says it ends, and
/// those bytes read as a [`SetupHeader`] (fields past the end read as zero).
fn kernel_header(setup: &[u8]) -> Result<(&[u8], SetupHeader), BootParamsError> {
    let truncated = |need| BootParamsError::KernelSetupTruncated {
        len: setup.len(),
        need,
    };
    // boot.rst: "The end of setup header can be calculated as 0x0202 + byte value at
    // offset 0x0201".
    let rel8 = *setup.get(0x201).ok_or(truncated(0x202))?;
    let end = 0x202 + usize::from(rel8);
    if !(MIN_SETUP_HEADER_END..=MAX_SETUP_HEADER_END).contains(&end) {
        return Err(BootParamsError::KernelHeaderEnd { end });
    }
    let bytes = setup.get(SETUP_HEADER_OFFSET..end).ok_or(truncated(end))?;
    let mut padded = [0u8; SETUP_HEADER_END - SETUP_HEADER_OFFSET];
    for (d, s) in padded.iter_mut().zip(bytes) {
        *d = *s;
    }
    let hdr = SetupHeader::read_from_bytes(&padded[..]).map_err(|_| truncated(end))?;
    if hdr.header.get() != HDRS_MAGIC {
        return Err(BootParamsError::KernelHeaderMagic(hdr.header.get()));
    }
    if hdr.version.get() < MIN_LINUX_PROTOCOL {
        return Err(BootParamsError::KernelProtocol {
            version: hdr.version.get(),
        });
    }
    Ok((bytes, hdr))
}

/// boot.rst, xloadflags bit 1: only a kernel with XLF_CAN_BE_LOADED_ABOVE_4G takes its
/// command line and ramdisk above 4 GiB.
fn below_4g(what: &'static str, last: u64, may_be_above: bool) -> Result<(), BootParamsError> {
    if may_be_above || last <= u64::from(u32::MAX) {
        Ok(())
    } else {
        Err(BootParamsError::Above4G { what, pa: last })
    }
}

/// Fills `out` with the boot_params for a Linux kernel the shim enters at its 64-bit
/// entry (Documentation/arch/x86/boot.rst, "64-bit Boot Protocol"). On error `out` is
/// untouched. Field by field, with the rule each follows:
///
/// - Everything starts at zero ("initialized to all zero"); the sentinel at 0x1ef stays
///   0, so `sanitize_boot_params` keeps every field.
/// - The setup header is the kernel's, 0x1f1 to `0x202 + byte[0x201]`, byte for byte
///   ("the setup header ... of kernel image on should be loaded into struct
///   boot_params"). The kernel must speak protocol 2.12 or later.
/// - Outside the header, the fields firmware and the loader fill (zero-page.rst:
///   `screen_info`, `apm_bios_info`, `tboot_addr`, `ist_info`, `acpi_rsdp_addr`, the
///   obsolete disk tables, `olpc_ofw_header`, `cc_blob_address`, `edid_info`,
///   `efi_info`, `alt_mem_k`, the EDD buffers and counts, `kbd_status`, `secure_boot`,
///   `e820_entries` and `e820_table`) come from the loader's page as Linux would read
///   it: when the loader's sentinel is set, only what `sanitize_boot_params` keeps.
///   `scratch` belongs to the kernel's own setup code and stays 0. More than 128 e820
///   entries is an error.
/// - `vid_mode` (modify, obligatory): the loader's, the mode it took from `vga=`.
/// - `type_of_loader` (write, obligatory): the loader's, or 0xff ("undefined") when it
///   wrote none (0 is reserved for pre-2.00 loaders); `ext_loader_ver` and
///   `ext_loader_type` (write): the loader's.
/// - `loadflags`: LOADED_HIGH (read) as the kernel has it; KASLR_FLAG (kernel internal,
///   "used ... to communicate KASLR status to kernel proper") exactly when `kaslr`;
///   QUIET_FLAG (write) the loader's; KEEP_SEGMENTS (obsolete) clear; CAN_USE_HEAP
///   (write) clear, and `heap_end_ptr` 0: they describe the real-mode setup heap, and
///   no real-mode code runs under the 64-bit protocol (kexec_file clears loadflags too).
/// - `ramdisk_image`/`ramdisk_size` (write, obligatory) and `ext_ramdisk_*`: the
///   initrd, low and high 32 bits; zero without one ("Leave at zero").
/// - `cmd_line_ptr` (write, obligatory) and `ext_cmd_line_ptr`: `cmd_line_ptr`, split.
///   Above 4 GiB only if the kernel sets XLF_CAN_BE_LOADED_ABOVE_4G; the initrd too.
/// - `hardware_subarch` (write, defaults to PC) and `hardware_subarch_data`: the
///   loader's (kexec_file carries the subarch over the same way).
/// - `setup_data` (write, special): `setup_data`.
/// - Every other header field (`root_flags`, `root_dev`, `code32_start`,
///   `realmode_swtch`, `kernel_alignment`, ...) is the kernel's: optional, obsolete,
///   about real-mode hooks, or for a loader that places the kernel, which the shim did.
pub fn build_linux_zero_page(
    out: &mut ZeroPage,
    args: &LinuxBootParams<'_>,
) -> Result<(), BootParamsError> {
    let (kernel_bytes, kernel) = kernel_header(args.kernel_setup)?;
    let loader = args.loader.zero_page();
    // Checked here so that a bad count is an error, not a short map.
    let _valid = args.loader.e820()?;

    let (ramdisk_image, ramdisk_size) = match args.initrd {
        Some(r) => (
            r.start,
            r.end
                .checked_sub(r.start)
                .ok_or(BootParamsError::BadInitrd {
                    start: r.start,
                    end: r.end,
                })?,
        ),
        None => (0, 0),
    };
    let (ramdisk_image, ramdisk_size) = match ramdisk_size {
        0 => (0, 0),
        n => (ramdisk_image, n),
    };
    let above = kernel.xloadflags.get() & XLF_CAN_BE_LOADED_ABOVE_4G != 0;
    below_4g("command line", args.cmd_line_ptr, above)?;
    if let Some(last_offset) = ramdisk_size.checked_sub(1) {
        let last = ramdisk_image
            .checked_add(last_offset)
            .ok_or(BootParamsError::BadInitrd {
                start: ramdisk_image,
                end: u64::MAX,
            })?;
        below_4g("initrd", last, above)?;
    }

    out.zero();

    // The loader's firmware fields; when its sentinel is set, Linux would keep only
    // the ones `sanitize_boot_params` lists, so only those are carried over.
    let trusted = loader.sentinel == 0;
    out.screen_info = loader.screen_info;
    out.apm_bios_info = loader.apm_bios_info;
    out.tboot_addr = loader.tboot_addr;
    out.ist_info = loader.ist_info;
    out.hd0_info = loader.hd0_info;
    out.hd1_info = loader.hd1_info;
    out.sys_desc_table = loader.sys_desc_table;
    out.olpc_ofw_header = loader.olpc_ofw_header;
    out.efi_info = loader.efi_info;
    out.alt_mem_k = loader.alt_mem_k;
    out.e820_entries = loader.e820_entries;
    out.eddbuf_entries = loader.eddbuf_entries;
    out.edd_mbr_sig_buf_entries = loader.edd_mbr_sig_buf_entries;
    out.secure_boot = loader.secure_boot;
    out.edd_mbr_sig_buffer = loader.edd_mbr_sig_buffer;
    out.e820_table = loader.e820_table;
    out.eddbuf = loader.eddbuf;
    if trusted {
        out.acpi_rsdp_addr = loader.acpi_rsdp_addr;
        out.cc_blob_address = loader.cc_blob_address;
        out.edid_info = loader.edid_info;
        out.kbd_status = loader.kbd_status;
    }

    // The kernel's header, byte for byte (it may reach past `SetupHeader`, up to 0x281).
    let page = out.as_mut_bytes();
    let dst = page
        .get_mut(SETUP_HEADER_OFFSET..)
        .and_then(|p| p.get_mut(..kernel_bytes.len()))
        .ok_or(BootParamsError::KernelHeaderEnd {
            end: SETUP_HEADER_OFFSET.saturating_add(kernel_bytes.len()),
        })?;
    dst.copy_from_slice(kernel_bytes);

    // The fields a loader owns.
    let from = &loader.hdr;
    let hdr = &mut out.hdr;
    hdr.vid_mode = from.vid_mode;
    hdr.type_of_loader = match from.type_of_loader {
        0 => LOADER_UNDEFINED,
        t => t,
    };
    hdr.ext_loader_ver = from.ext_loader_ver;
    hdr.ext_loader_type = from.ext_loader_type;
    hdr.loadflags = (kernel.loadflags & LOADED_HIGH)
        | (from.loadflags & QUIET_FLAG)
        | if args.kaslr { KASLR_FLAG } else { 0 };
    hdr.heap_end_ptr.set(0);
    hdr.hardware_subarch = from.hardware_subarch;
    hdr.hardware_subarch_data = from.hardware_subarch_data;
    hdr.setup_data = U64::new(args.setup_data);
    let (lo, hi) = split(args.cmd_line_ptr);
    hdr.cmd_line_ptr = lo;
    out.ext_cmd_line_ptr = hi;
    let (lo, hi) = split(ramdisk_image);
    out.hdr.ramdisk_image = lo;
    out.ext_ramdisk_image = hi;
    let (lo, hi) = split(ramdisk_size);
    out.hdr.ramdisk_size = lo;
    out.ext_ramdisk_size = hi;
    out.sentinel = 0;
    Ok(())
}

/// A 64-bit value as its low and high 32 bits, the way boot_params stores pointers.
fn split(v: u64) -> (U32, U32) {
    // Truncation is the point: each half is stored in its own field.
    (U32::new(v as u32), U32::new((v >> 32) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootparams::{
        E820Entry, BOOT_FLAG, CAN_USE_HEAP, E820_ENTRIES, E820_TYPE_ACPI, E820_TYPE_NVS,
        E820_TYPE_RAM, E820_TYPE_RESERVED, KEEP_SEGMENTS, SENTINEL, XLF_KERNEL_64, ZERO_PAGE_SIZE,
    };
    use proptest::prelude::*;
    use zerocopy::little_endian::U16;

    /// Linux's `sanitize_boot_params` (arch/x86/include/asm/bootparam_utils.h) as a
    /// model: with the sentinel set, every byte outside its `to_save` list is zeroed.
    /// The list is written out here from Linux, apart from the implementation's own.
    fn sanitize(page: &[u8]) -> Vec<u8> {
        const TO_SAVE: [(usize, usize); 19] = [
            (0x000, 0x40),  // screen_info
            (0x040, 0x14),  // apm_bios_info
            (0x058, 8),     // tboot_addr
            (0x060, 0x10),  // ist_info
            (0x080, 0x10),  // hd0_info
            (0x090, 0x10),  // hd1_info
            (0x0a0, 0x10),  // sys_desc_table
            (0x0b0, 0x10),  // olpc_ofw_header
            (0x1c0, 0x20),  // efi_info
            (0x1e0, 4),     // alt_mem_k
            (0x1e4, 4),     // scratch
            (0x1e8, 1),     // e820_entries
            (0x1e9, 1),     // eddbuf_entries
            (0x1ea, 1),     // edd_mbr_sig_buf_entries
            (0x290, 0x40),  // edd_mbr_sig_buffer
            (0x1ec, 1),     // secure_boot
            (0x1f1, 0x7b),  // hdr
            (0x2d0, 0xa00), // e820_table
            (0xd00, 0x1ec), // eddbuf
        ];
        if page[SENTINEL] == 0 {
            return page.to_vec();
        }
        let mut out = vec![0; page.len()];
        for (at, len) in TO_SAVE {
            out[at..at + len].copy_from_slice(&page[at..at + len]);
        }
        out
    }

    /// The e820 map SeaBIOS gave Linux on QEMU q35 with 6 GiB (tests/data/e820).
    fn q35_e820() -> Vec<(u64, u64, u32)> {
        include_str!("../../../tests/data/e820/q35-6G.dmesg")
            .lines()
            .filter_map(|l| l.split_once("BIOS-e820: [mem ")?.1.split_once(']'))
            .map(|(range, kind)| {
                let (a, b) = range.split_once('-').unwrap();
                let a = u64::from_str_radix(a.trim_start_matches("0x"), 16).unwrap();
                let b = u64::from_str_radix(b.trim_start_matches("0x"), 16).unwrap();
                let typ = match kind.trim() {
                    "usable" => E820_TYPE_RAM,
                    "reserved" => E820_TYPE_RESERVED,
                    "ACPI data" => E820_TYPE_ACPI,
                    "ACPI NVS" => E820_TYPE_NVS,
                    k => panic!("e820 type {k}"),
                };
                (a, b - a + 1, typ)
            })
            .collect()
    }

    /// The setup area of Debian's 6.1 cloud bzImage (linux-image-6.1.0-56-cloud-amd64),
    /// its header field for field as the image has it, and code bytes after it.
    fn debian_61_setup() -> Vec<u8> {
        let mut setup = vec![0u8; (39 + 1) * 512];
        setup[SENTINEL..SENTINEL + 2].copy_from_slice(&[0xff, 0xff]);
        let mut h = SetupHeader::new_zeroed();
        h.setup_sects = 39;
        h.root_flags = U16::new(1);
        h.syssize = U32::new(0xd_8220);
        h.vid_mode = U16::new(0xffff);
        h.boot_flag = U16::new(BOOT_FLAG);
        h.jump = U16::new(0x6aeb);
        h.header = U32::new(HDRS_MAGIC);
        h.version = U16::new(0x020f);
        h.start_sys_seg = U16::new(0x1000);
        h.kernel_version = U16::new(0x42c0);
        h.loadflags = LOADED_HIGH;
        h.setup_move_size = U16::new(0x8000);
        h.code32_start = U32::new(0x10_0000);
        h.heap_end_ptr = U16::new(0x5be0);
        h.initrd_addr_max = U32::new(0x7fff_ffff);
        h.kernel_alignment = U32::new(0x20_0000);
        h.relocatable_kernel = 1;
        h.min_alignment = 21;
        h.xloadflags = U16::new(0x7f);
        h.cmdline_size = U32::new(2047);
        h.payload_offset = U32::new(0x2cc);
        h.payload_length = U32::new(0xd6_96cc);
        h.pref_address = U64::new(0x100_0000);
        h.init_size = U32::new(0x337_8000);
        h.handover_offset = U32::new(0xd7_2f10);
        h.kernel_info_offset = U32::new(0xd7_f91c);
        setup[SETUP_HEADER_OFFSET..SETUP_HEADER_END].copy_from_slice(h.as_bytes());
        // The real-mode code the jump lands on (`start_of_setup`), then more code.
        for (i, b) in setup[SETUP_HEADER_END..].iter_mut().enumerate() {
            *b = (i % 251) as u8 | 1;
        }
        setup
    }

    /// The shim's own setup area as xtask's bzimage.rs writes it (sentinel 0xff 0xff),
    /// after QEMU's `-kernel` loader wrote its fields (hw/i386/x86-common.c: 0xb0,
    /// CAN_USE_HEAP with the heap up to the command line at 0x20000, the initrd, its
    /// RNG seed node) and the shim's real-mode code filled the e820 table from the BIOS.
    fn qemu_loader_page() -> ZeroPage {
        let mut zp = ZeroPage::new_zeroed();
        zp.sentinel = 0xff;
        zp.as_mut_bytes()[SENTINEL + 1] = 0xff;
        let h = &mut zp.hdr;
        h.setup_sects = 8;
        h.syssize = U32::new(0x9_0000 / 16);
        h.boot_flag = U16::new(BOOT_FLAG);
        h.jump = U16::new(0x6aeb);
        h.header = U32::new(HDRS_MAGIC);
        h.version = U16::new(0x020f);
        h.code32_start = U32::new(0x10_0000);
        h.initrd_addr_max = U32::new(0x7fff_ffff);
        h.kernel_alignment = U32::new(0x20_0000);
        h.relocatable_kernel = 1;
        h.min_alignment = 21;
        h.xloadflags = U16::new(XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G);
        h.cmdline_size = U32::new(4095);
        h.pref_address = U64::new(0x100_0000);
        h.init_size = U32::new(0x9_0000);
        // QEMU's writes.
        h.type_of_loader = 0xb0;
        h.loadflags = LOADED_HIGH | CAN_USE_HEAP;
        h.heap_end_ptr = U16::new(0xfe00); // 0x20000 - 0x10000 - 0x200
        h.cmd_line_ptr = U32::new(0x2_0000);
        h.ramdisk_image = U32::new(0x7f6b_2000);
        h.ramdisk_size = U32::new(0x94_d000);
        h.setup_data = U64::new(0x7f6a_1000);
        let map = q35_e820();
        for (slot, &(a, s, t)) in zp.e820_table.iter_mut().zip(&map) {
            *slot = E820Entry::new(a, s, t);
        }
        zp.e820_entries = map.len() as u8;
        zp
    }

    /// A zero page as Linux's kexec_file builds it for the next kernel (sentinel 0,
    /// firmware fields carried over, type 0xd0, loadflags 0), here for the shim.
    fn kexec_loader_page() -> ZeroPage {
        let mut zp = qemu_loader_page();
        zp.sentinel = 0;
        zp.as_mut_bytes()[SENTINEL + 1] = 0;
        zp.hdr.type_of_loader = 0xd0;
        zp.hdr.loadflags = 0;
        zp.hdr.heap_end_ptr = U16::new(0);
        zp.hdr.hardware_subarch = U32::new(0);
        zp.screen_info[0x0f] = 0x22; // orig_video_isVGA: VIDEO_TYPE_VLFB
        zp.screen_info[0x18..0x1c].copy_from_slice(&0xfd00_0000u32.to_le_bytes());
        zp.acpi_rsdp_addr = U64::new(0xf_5a40);
        zp.alt_mem_k = U32::new(0x1f_7b7c);
        zp.edid_info[0] = 0x13;
        zp.cc_blob_address = U32::new(0);
        zp.kbd_status = 1;
        zp.eddbuf_entries = 1;
        zp.eddbuf[0] = 0x80;
        zp.edd_mbr_sig_buf_entries = 1;
        zp.edd_mbr_sig_buffer[0] = U32::new(0x1234_5678);
        zp.ext_cmd_line_ptr = U32::new(1);
        zp
    }

    fn args<'a>(loader: &'a [u8], kernel: &'a [u8]) -> LinuxBootParams<'a> {
        LinuxBootParams {
            loader: BootParams::new(loader).unwrap(),
            kernel_setup: kernel,
            cmd_line_ptr: 0x1_7fff_e000,
            initrd: Some(Range {
                start: 0x1_2340_0000,
                end: 0x1_2340_0000 + 0x1_0000_1000,
            }),
            kaslr: true,
            setup_data: 0x1_7fff_d000,
        }
    }

    /// Header bytes the builder overlays on the kernel's: vid_mode, type_of_loader,
    /// loadflags, ramdisk_*, heap_end_ptr, ext_loader_*, cmd_line_ptr,
    /// hardware_subarch(_data), setup_data.
    const OVERLAID: [(usize, usize); 9] = [
        (0x1fa, 0x1fc),
        (0x210, 0x211),
        (0x211, 0x212),
        (0x218, 0x220),
        (0x224, 0x226),
        (0x226, 0x228),
        (0x228, 0x22c),
        (0x23c, 0x248),
        (0x250, 0x258),
    ];

    /// Everything the brief promises of one build.
    fn check(out: &ZeroPage, a: &LinuxBootParams<'_>) {
        let page = out.as_bytes();
        let kernel = a.kernel_setup;
        let loader = a.loader.zero_page();
        let end = 0x202 + usize::from(kernel[0x201]);
        // The kernel's header byte for byte where no loader field lies.
        for b in SETUP_HEADER_OFFSET..end {
            if !OVERLAID.iter().any(|&(s, e)| (s..e).contains(&b)) {
                assert_eq!(page[b], kernel[b], "header byte {b:#x}");
            }
        }
        assert!(
            page[end..0x290].iter().all(|&b| b == 0),
            "nothing past the header"
        );
        // The loader's fields.
        let h = &out.hdr;
        assert_eq!(h.vid_mode.get(), loader.hdr.vid_mode.get());
        let tol = match loader.hdr.type_of_loader {
            0 => 0xff,
            t => t,
        };
        assert_eq!(h.type_of_loader, tol);
        assert_eq!(h.ext_loader_ver, loader.hdr.ext_loader_ver);
        assert_eq!(h.ext_loader_type, loader.hdr.ext_loader_type);
        assert_eq!(h.hardware_subarch.get(), loader.hdr.hardware_subarch.get());
        assert_eq!(
            h.hardware_subarch_data.get(),
            loader.hdr.hardware_subarch_data.get()
        );
        // loadflags: the kernel's LOADED_HIGH, the loader's QUIET, our KASLR, no heap.
        assert_eq!(h.loadflags & LOADED_HIGH, kernel[0x211] & LOADED_HIGH);
        assert_eq!(h.loadflags & QUIET_FLAG, loader.hdr.loadflags & QUIET_FLAG);
        assert_eq!(h.loadflags & KASLR_FLAG != 0, a.kaslr);
        assert_eq!(h.loadflags & (KEEP_SEGMENTS | CAN_USE_HEAP), 0);
        assert_eq!(h.heap_end_ptr.get(), 0);
        // Pointers split low/high, and read back whole by the shim's own parser.
        assert_eq!(h.cmd_line_ptr.get(), a.cmd_line_ptr as u32);
        assert_eq!(out.ext_cmd_line_ptr.get(), (a.cmd_line_ptr >> 32) as u32);
        let r = a.initrd.filter(|r| !r.is_empty()).unwrap_or(Range::EMPTY);
        assert_eq!(h.ramdisk_image.get(), r.start as u32);
        assert_eq!(out.ext_ramdisk_image.get(), (r.start >> 32) as u32);
        assert_eq!(h.ramdisk_size.get(), r.len() as u32);
        assert_eq!(out.ext_ramdisk_size.get(), (r.len() >> 32) as u32);
        assert_eq!(h.setup_data.get(), a.setup_data);
        let bp = BootParams::new(page).unwrap();
        assert_eq!(bp.cmd_line_ptr(), a.cmd_line_ptr);
        assert_eq!(bp.initrd(), a.initrd.filter(|r| !r.is_empty()));
        assert_eq!(bp.setup_data(), a.setup_data);
        // e820 carried over whole.
        assert_eq!(out.e820_entries, loader.e820_entries);
        assert_eq!(
            bp.e820().unwrap().collect::<Vec<_>>(),
            a.loader.e820().unwrap().collect::<Vec<_>>()
        );
        assert_eq!(out.e820_table.as_bytes(), loader.e820_table.as_bytes());
        // Outside the header: what Linux would have kept of the loader's page, the
        // kernel setup code's scratch field zero, and our pointers' high halves.
        let mut want = sanitize(loader.as_bytes());
        want[0x1e4..0x1e8].fill(0);
        want[SENTINEL] = 0;
        want[0xc0..0xcc].copy_from_slice(&page[0xc0..0xcc]);
        for (b, (&got, &want)) in page.iter().zip(&want).enumerate() {
            if !(SETUP_HEADER_OFFSET..0x290).contains(&b) {
                assert_eq!(got, want, "zero page byte {b:#x}");
            }
        }
        // Linux will keep all of it.
        assert_eq!(out.sentinel, 0);
        assert_eq!(sanitize(page), page);
    }

    fn build(a: &LinuxBootParams<'_>) -> Result<ZeroPage, BootParamsError> {
        let mut out = ZeroPage::new_zeroed();
        out.as_mut_bytes().fill(0xa5); // whatever was in that memory before
        build_linux_zero_page(&mut out, a).map(|()| out)
    }

    #[test]
    fn debian_kernel_from_qemu() {
        let loader = qemu_loader_page();
        let kernel = debian_61_setup();
        let a = args(loader.as_bytes(), &kernel);
        let out = build(&a).unwrap();
        check(&out, &a);
        assert_eq!(out.hdr.type_of_loader, 0xb0);
        assert_eq!(out.hdr.loadflags, LOADED_HIGH | KASLR_FLAG);
        assert_eq!(out.hdr.cmd_line_ptr.get(), 0x7fff_e000);
        assert_eq!(out.ext_cmd_line_ptr.get(), 1);
        assert_eq!(
            (out.hdr.ramdisk_image.get(), out.ext_ramdisk_image.get()),
            (0x2340_0000, 1)
        );
        assert_eq!(
            (out.hdr.ramdisk_size.get(), out.ext_ramdisk_size.get()),
            (0x1000, 1)
        );
        assert_eq!(out.hdr.setup_data.get(), 0x1_7fff_d000);
        assert_eq!(out.hdr.version.get(), 0x020f);
        assert_eq!(out.hdr.setup_sects, 39);
        assert_eq!(
            out.hdr.vid_mode.get(),
            0,
            "QEMU wrote no vga=: the shim's 0"
        );
        assert_eq!(out.hdr.root_flags.get(), 1, "the kernel's default");
        assert_eq!(out.hdr.init_size.get(), 0x337_8000);
        assert_eq!(out.hdr.xloadflags.get(), 0x7f);
        assert_eq!(out.e820_entries, 10);
        assert_eq!(out.e820_table[8].get(), (0x1_0000_0000, 0x1_0000_0000, 1));
        assert_eq!(out.as_bytes()[0x26c], 0, "the kernel's code is not copied");

        // Without KASLR the flag is clear, and the loader's QUIET_FLAG passes.
        let mut quiet = loader;
        quiet.hdr.loadflags |= QUIET_FLAG | KEEP_SEGMENTS;
        let mut a = args(quiet.as_bytes(), &kernel);
        a.kaslr = false;
        let out = build(&a).unwrap();
        check(&out, &a);
        assert_eq!(out.hdr.loadflags, LOADED_HIGH | QUIET_FLAG);
    }

    #[test]
    fn sentinel_set_loader_fields_are_read_as_linux_reads_them() {
        // A loader that copied the whole boot sector: the sentinel says the fields
        // outside the header cannot be trusted, so ext_* and acpi_rsdp_addr are junk.
        let mut loader = qemu_loader_page();
        loader.acpi_rsdp_addr = U64::new(0xdead_beef);
        loader.ext_ramdisk_image = U32::new(0xdead);
        loader.edid_info[3] = 7;
        loader.kbd_status = 1;
        loader.scratch = U32::new(0x55);
        loader.screen_info[0] = 9;
        let kernel = debian_61_setup();
        let a = args(loader.as_bytes(), &kernel);
        let out = build(&a).unwrap();
        check(&out, &a);
        assert_eq!(out.acpi_rsdp_addr.get(), 0);
        assert_eq!(out.edid_info, [0; 0x80]);
        assert_eq!((out.kbd_status, out.scratch.get()), (0, 0));
        assert_eq!(out.screen_info[0], 9, "screen_info is kept");
    }

    #[test]
    fn kexec_loader_fields_are_carried_over() {
        let loader = kexec_loader_page();
        let kernel = debian_61_setup();
        let mut a = args(loader.as_bytes(), &kernel);
        a.cmd_line_ptr = 0x9_1000;
        a.initrd = None;
        a.setup_data = 0;
        let out = build(&a).unwrap();
        check(&out, &a);
        assert_eq!(out.hdr.type_of_loader, 0xd0);
        assert_eq!(out.acpi_rsdp_addr.get(), 0xf_5a40);
        assert_eq!(out.screen_info, loader.screen_info);
        assert_eq!(out.edid_info[0], 0x13);
        assert_eq!(out.kbd_status, 1);
        assert_eq!(out.alt_mem_k.get(), 0x1f_7b7c);
        assert_eq!(out.eddbuf_entries, 1);
        assert_eq!(out.edd_mbr_sig_buffer[0].get(), 0x1234_5678);
        // The loader's own pointers are not: ours replace them.
        assert_eq!(out.ext_cmd_line_ptr.get(), 0);
        assert_eq!(out.hdr.cmd_line_ptr.get(), 0x9_1000);
        assert_eq!(out.hdr.ramdisk_image.get(), 0);
        assert_eq!(out.hdr.ramdisk_size.get(), 0);
        assert_eq!(out.hdr.setup_data.get(), 0);
    }

    #[test]
    fn loader_without_an_id_is_undefined() {
        let mut loader = kexec_loader_page();
        loader.hdr.type_of_loader = 0;
        let kernel = debian_61_setup();
        let out = build(&args(loader.as_bytes(), &kernel)).unwrap();
        assert_eq!(out.hdr.type_of_loader, LOADER_UNDEFINED);
        // An extended ID is kept with its extension fields.
        loader.hdr.type_of_loader = 0xe4;
        loader.hdr.ext_loader_type = 0x05;
        loader.hdr.ext_loader_ver = 0x23;
        let out = build(&args(loader.as_bytes(), &kernel)).unwrap();
        assert_eq!(
            (
                out.hdr.type_of_loader,
                out.hdr.ext_loader_type,
                out.hdr.ext_loader_ver
            ),
            (0xe4, 0x05, 0x23)
        );
        // hardware_subarch is the loader's.
        loader.hdr.hardware_subarch = U32::new(2);
        loader.hdr.hardware_subarch_data = U64::new(0x1234);
        let a = args(loader.as_bytes(), &kernel);
        let out = build(&a).unwrap();
        check(&out, &a);
        assert_eq!(out.hdr.hardware_subarch.get(), 2);
    }

    #[test]
    fn a_longer_header_is_copied_to_its_end() {
        // A future kernel whose header runs to 0x281 (the most a forward jump allows).
        let mut kernel = debian_61_setup();
        kernel[0x201] = 0x7f;
        let loader = qemu_loader_page();
        let a = args(loader.as_bytes(), &kernel);
        let out = build(&a).unwrap();
        check(&out, &a);
        assert_eq!(out.as_bytes()[0x26c..0x281], kernel[0x26c..0x281]);
        assert_eq!(out.as_bytes()[0x281], 0);
        // A protocol 2.12 kernel (Linux 3.8): its header ends at 0x268.
        let mut kernel = debian_61_setup();
        kernel[0x201] = 0x66;
        kernel[0x206] = 0x0c;
        let a = args(loader.as_bytes(), &kernel);
        let out = build(&a).unwrap();
        check(&out, &a);
        assert_eq!(out.hdr.kernel_info_offset.get(), 0);
    }

    #[test]
    fn refusals_leave_out_untouched() {
        let loader = qemu_loader_page();
        let good = debian_61_setup();
        let mut cases: Vec<(LinuxBootParams<'_>, BootParamsError)> = Vec::new();
        let short = &good[..0x200];
        cases.push((
            args(loader.as_bytes(), short),
            BootParamsError::KernelSetupTruncated {
                len: 0x200,
                need: 0x202,
            },
        ));
        let short = &good[..0x260];
        cases.push((
            args(loader.as_bytes(), short),
            BootParamsError::KernelSetupTruncated {
                len: 0x260,
                need: 0x26c,
            },
        ));
        let mut bad = [good.clone(), good.clone(), good.clone(), good.clone()];
        bad[0][0x202..0x206].copy_from_slice(b"HdrX");
        bad[1][0x206..0x208].copy_from_slice(&0x020bu16.to_le_bytes());
        bad[2][0x201] = 0x80; // a backward jump
        bad[3][0x201] = 0x50; // ends at 0x252, inside setup_data
        for (k, e) in bad.iter().zip([
            BootParamsError::KernelHeaderMagic(0x5872_6448),
            BootParamsError::KernelProtocol { version: 0x020b },
            BootParamsError::KernelHeaderEnd { end: 0x282 },
            BootParamsError::KernelHeaderEnd { end: 0x252 },
        ]) {
            cases.push((args(loader.as_bytes(), k), e));
        }
        let mut many = loader;
        many.as_mut_bytes()[E820_ENTRIES] = 129;
        cases.push((
            args(many.as_bytes(), &good),
            BootParamsError::TooManyE820 { count: 129 },
        ));
        let mut a = args(loader.as_bytes(), &good);
        a.initrd = Some(Range { start: 2, end: 1 });
        cases.push((a, BootParamsError::BadInitrd { start: 2, end: 1 }));
        // A kernel that cannot take pointers above 4 GiB.
        let mut low = good.clone();
        low[0x236] &= !(XLF_CAN_BE_LOADED_ABOVE_4G as u8);
        cases.push((
            args(loader.as_bytes(), &low),
            BootParamsError::Above4G {
                what: "command line",
                pa: 0x1_7fff_e000,
            },
        ));
        let mut a = args(loader.as_bytes(), &low);
        a.cmd_line_ptr = 0x2_0000;
        a.initrd = Some(Range {
            start: 0xffff_f000,
            end: 0x1_0000_0001,
        });
        cases.push((
            a,
            BootParamsError::Above4G {
                what: "initrd",
                pa: 0x1_0000_0000,
            },
        ));
        for (a, e) in cases {
            let mut out = ZeroPage::new_zeroed();
            out.as_mut_bytes().fill(0x5a);
            assert_eq!(build_linux_zero_page(&mut out, &a), Err(e));
            assert!(out.as_bytes().iter().all(|&b| b == 0x5a), "{e}");
        }
        // Ending exactly at 4 GiB is fine for such a kernel; so is an empty initrd.
        let mut a = args(loader.as_bytes(), &low);
        a.cmd_line_ptr = 0x2_0000;
        a.initrd = Some(Range {
            start: 0xffff_f000,
            end: 0x1_0000_0000,
        });
        check(&build(&a).unwrap(), &a);
        a.initrd = Some(Range {
            start: 0x5_0000_0000,
            end: 0x5_0000_0000,
        });
        let out = build(&a).unwrap();
        check(&out, &a);
        assert_eq!(out.hdr.ramdisk_image.get(), 0);
    }

    /// Debian's x86_64 kernel, when `SHIM_LINUX_X86` names a directory holding its
    /// `bzImage`: the same checks on the real setup area.
    #[test]
    fn real_bzimage_header() {
        let Some(image) = crate::x86_linux::debian_file("bzImage") else {
            return;
        };
        let hdr = SetupHeader::read_from_prefix(&image[SETUP_HEADER_OFFSET..])
            .unwrap()
            .0;
        let setup = &image[..hdr.protected_mode_offset() as usize];
        for loader in [qemu_loader_page(), kexec_loader_page()] {
            for kaslr in [false, true] {
                let mut a = args(loader.as_bytes(), setup);
                a.kaslr = kaslr;
                let out = build(&a).unwrap();
                check(&out, &a);
                assert_eq!(out.hdr.init_size.get(), hdr.init_size.get());
                assert_eq!(out.hdr.payload_offset.get(), hdr.payload_offset.get());
            }
        }
    }

    proptest! {
        #[test]
        fn random_inputs_never_panic(
            kernel in proptest::collection::vec(any::<u8>(), 0..0x300),
            loader in proptest::collection::vec(any::<u8>(), ZERO_PAGE_SIZE),
            hdrs in any::<bool>(),
            cmd in any::<u64>(),
            initrd in any::<(u64, u64)>(),
            kaslr in any::<bool>(),
            setup_data in any::<u64>(),
        ) {
            let mut kernel = kernel;
            let mut loader = loader;
            if hdrs && kernel.len() >= 0x208 {
                kernel[0x202..0x206].copy_from_slice(b"HdrS");
                kernel[0x207] = 2;
                kernel[0x201] &= 0x7f;
            }
            loader[0x202..0x206].copy_from_slice(b"HdrS");
            loader[E820_ENTRIES] &= 0x7f;
            let a = LinuxBootParams {
                loader: BootParams::new(&loader).unwrap(),
                kernel_setup: &kernel,
                cmd_line_ptr: cmd,
                initrd: Some(Range { start: initrd.0, end: initrd.1 }),
                kaslr,
                setup_data,
            };
            if let Ok(out) = build(&a) {
                prop_assert_eq!(out.sentinel, 0);
                prop_assert_eq!(sanitize(out.as_bytes()), out.as_bytes());
                prop_assert_eq!(out.hdr.loadflags & KASLR_FLAG != 0, kaslr);
            }
        }
    }
}
