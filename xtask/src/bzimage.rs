//! The x86 bzImage (Documentation/arch/x86/boot.rst; Linux's arch/x86/boot/tools/build.c
//! does the same for Linux): the real-mode setup part, dumped from the shim's `.setup`
//! section and padded to whole 512-byte sectors, in front of the protected-mode part
//! (the flat shim and its payload container, packed by `image::assemble`). Every setup
//! header field is written here, through `shim_common::bootparams::SetupHeader`. Pure.
//!
//! ```text
//!  file offset 0          boot sector (zero; sentinel 0xff 0xff at 0x1ef)
//!              0x1f1      setup header (this file), jump at 0x200 (setup.S)
//!              0x1000     16-bit code: E820, A20, GDT, protected mode -> code32_start
//!  (setup_sects + 1) * 512  protected-mode part, loaded at code32_start (0x100000):
//!              +0x000     startup_32        +0x008 "SHIMX64\0"   +0x010 u64 size
//!              +0x200     startup_64
//!              +end       payload container (at __image_end)
//! ```

use anyhow::{ensure, Context, Result};
use shim_common::bootparams::{
    SetupHeader, BOOT_FLAG, HDRS_MAGIC, LOADED_HIGH, SENTINEL, SETUP_HEADER_END,
    SETUP_HEADER_OFFSET, XLF_CAN_BE_LOADED_ABOVE_4G, XLF_KERNEL_64,
};
use zerocopy::{FromBytes, IntoBytes};

const SECTOR: usize = 512;
/// Boot protocol 2.15: everything the shim uses (64-bit entry, above-4G loading,
/// setup_data, init_size, pref_address) exists from 2.12 on.
pub const VERSION: u16 = 0x020f;
/// Where 32-bit loaders put the protected-mode part, and jump.
pub const CODE32_START: u32 = 0x10_0000;
/// The shim runs anywhere, 2 MiB aligned preferred (`min_alignment` = 2^21).
pub const KERNEL_ALIGNMENT: u32 = 0x20_0000;
pub const MIN_ALIGNMENT: u8 = 21;
/// Linux's default LOAD_PHYSICAL_ADDR: a loader that honours it keeps the shim out of
/// the first 16 MiB.
pub const PREF_ADDRESS: u64 = 0x100_0000;
/// The longest command line the shim reads, without its NUL.
pub const CMDLINE_SIZE: u32 = 4095;
/// Linux's value: loaders put the initrd below 2 GiB unless XLF_CAN_BE_LOADED_ABOVE_4G.
pub const INITRD_ADDR_MAX: u32 = 0x7fff_ffff;
/// `vid_mode` NORMAL_VGA, Linux's default: a loader writes it only for `vga=`, and the
/// shim hands the loader's value on to a Linux payload.
pub const VID_MODE_NORMAL: u16 = 0xffff;
/// The setup part's offset of the jump field (`jmp` to the 16-bit code).
const JUMP_OFFSET: usize = 0x200;
/// Linux's `SETUP_SECT_MIN`: some loaders assume at least 4 sectors after the boot one.
const MIN_SECTORS: usize = 5;
/// `setup_sects` is a u8.
const MAX_SECTORS: usize = 256;

/// The bzImage: `setup` (the dumped `.setup` section) padded to sectors with its header
/// filled in, then `protected` (already padded to whole pages by `image::assemble`).
pub fn assemble(setup: &[u8], protected: &[u8]) -> Result<Vec<u8>> {
    ensure!(
        setup.len() > SETUP_HEADER_END,
        "the setup part is {:#x} bytes, shorter than its header",
        setup.len()
    );
    ensure!(
        setup[JUMP_OFFSET] == 0xeb,
        "the setup part has no short jmp at {JUMP_OFFSET:#x} (found {:#04x})",
        setup[JUMP_OFFSET]
    );
    let sectors = setup.len().div_ceil(SECTOR).max(MIN_SECTORS);
    ensure!(
        sectors <= MAX_SECTORS,
        "the setup part is {sectors} sectors, more than setup_sects can say"
    );
    ensure!(
        !protected.is_empty() && protected.len().is_multiple_of(16),
        "the protected-mode part is {:#x} bytes, not a non-empty multiple of 16",
        protected.len()
    );
    let init_size = u32::try_from(protected.len())
        .context("the protected-mode part is 4 GiB or more: init_size cannot say so")?;

    let mut image = Vec::with_capacity(sectors * SECTOR + protected.len());
    image.extend_from_slice(setup);
    image.resize(sectors * SECTOR, 0);
    let field = SETUP_HEADER_OFFSET..SETUP_HEADER_OFFSET + size_of::<SetupHeader>();
    let mut hdr = SetupHeader::read_from_bytes(&image[field.clone()])
        .map_err(|_| anyhow::anyhow!("setup header size mismatch"))?;
    hdr.setup_sects = (sectors - 1) as u8;
    hdr.syssize.set(init_size / 16);
    hdr.vid_mode.set(VID_MODE_NORMAL);
    hdr.boot_flag.set(BOOT_FLAG);
    hdr.header.set(HDRS_MAGIC);
    hdr.version.set(VERSION);
    // CAN_USE_HEAP and heap_end_ptr, type_of_loader, cmd_line_ptr, ramdisk_*: the
    // loader's to write (boot.rst marks them "write"/"modify").
    hdr.loadflags = LOADED_HIGH;
    hdr.code32_start.set(CODE32_START);
    hdr.initrd_addr_max.set(INITRD_ADDR_MAX);
    hdr.kernel_alignment.set(KERNEL_ALIGNMENT);
    hdr.relocatable_kernel = 1;
    hdr.min_alignment = MIN_ALIGNMENT;
    hdr.xloadflags
        .set(XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G);
    hdr.cmdline_size.set(CMDLINE_SIZE);
    hdr.pref_address.set(PREF_ADDRESS);
    // Everything the shim touches from its load address: image, bss, page tables,
    // stack and the container it unpacks from, which the protected part holds whole.
    hdr.init_size.set(init_size);
    image[field].copy_from_slice(hdr.as_bytes());
    // Linux's sentinel: a loader that copies the whole boot sector, not just the header,
    // leaves it non-zero, and the fields outside the header then read as zero.
    image[SENTINEL..SENTINEL + 2].copy_from_slice(&[0xff, 0xff]);
    image.extend_from_slice(protected);
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shim_common::bootparams::{
        build_linux_zero_page, BootParams, LinuxBootParams, ZeroPage, CAN_USE_HEAP, KASLR_FLAG,
        ZERO_PAGE_SIZE,
    };
    use shim_common::memmap::Range;
    use zerocopy::FromZeros;

    /// A setup part like setup.S's: zeros, the jmp at 0x200, code at 0x1000.
    fn setup(len: usize) -> Vec<u8> {
        let mut s = vec![0; len];
        s[0x200..0x202].copy_from_slice(&[0xeb, 0x6a]);
        if len > 0x1000 {
            s[0x1000] = 0xfa; // cli
        }
        s
    }

    fn protected(len: usize) -> Vec<u8> {
        let mut p: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        p[8..16].copy_from_slice(b"SHIMX64\0");
        p
    }

    fn header(image: &[u8]) -> SetupHeader {
        SetupHeader::read_from_prefix(&image[SETUP_HEADER_OFFSET..])
            .unwrap()
            .0
    }

    #[test]
    fn header_fields() {
        let image = assemble(&setup(0x111e), &protected(0x6_0000)).unwrap();
        let h = header(&image);
        // 0x111e bytes: 9 sectors, setup_sects 8; the protected part follows them.
        assert_eq!(h.setup_sects, 8);
        assert_eq!(h.protected_mode_offset(), 0x1200);
        assert_eq!(image.len(), 0x1200 + 0x6_0000);
        assert_eq!(&image[0x1200..], &protected(0x6_0000)[..]);
        assert_eq!(h.syssize.get(), 0x6_0000 / 16);
        assert_eq!(h.boot_flag.get(), 0xaa55);
        assert_eq!(&image[0x1fe..0x200], &[0x55, 0xaa]);
        assert_eq!(&image[0x1fa..0x1fc], &[0xff, 0xff], "vid_mode normal");
        assert_eq!(h.jump.get(), 0x6aeb);
        assert_eq!(&image[0x202..0x206], b"HdrS");
        assert_eq!(h.version.get(), 0x020f);
        assert_eq!(h.loadflags, 0x01);
        assert_eq!(h.code32_start.get(), 0x10_0000);
        assert_eq!(h.kernel_alignment.get(), 0x20_0000);
        assert_eq!(h.relocatable_kernel, 1);
        assert_eq!(h.min_alignment, 21);
        assert_eq!(h.xloadflags.get(), 0x3);
        assert_eq!(h.cmdline_size.get(), 4095);
        assert_eq!(h.pref_address.get(), 0x100_0000);
        assert_eq!(h.init_size.get(), 0x6_0000);
        assert_eq!(h.heap_end_ptr.get(), 0);
        assert_eq!(h.cmd_line_ptr.get(), 0);
        assert_eq!(h.setup_data.get(), 0);
        assert_eq!(&image[0x1ef..0x1f1], &[0xff, 0xff]);
        // Byte offsets as boot.rst lists them.
        assert_eq!(image[0x1f1], 8);
        assert_eq!(image[0x211], 0x01);
        assert_eq!(&image[0x214..0x218], &0x10_0000u32.to_le_bytes());
        assert_eq!(image[0x234], 1);
        assert_eq!(&image[0x236..0x238], &3u16.to_le_bytes());
        assert_eq!(&image[0x258..0x260], &0x100_0000u64.to_le_bytes());
        assert_eq!(&image[0x260..0x264], &0x6_0000u32.to_le_bytes());
        // The code and the rest of the zero page are untouched.
        assert_eq!(image[0x1000], 0xfa);
        assert!(image[0x26c..0x1000].iter().all(|&b| b == 0));
        assert!(image[..0x1ef].iter().all(|&b| b == 0));
    }

    /// In real mode the setup part's first 4 KiB are boot_params: the shim's parser
    /// accepts them as QEMU leaves them (no E820 entries yet, no ext_* fields).
    #[test]
    fn setup_part_is_a_valid_zero_page() {
        let image = assemble(&setup(0x111e), &protected(0x1000)).unwrap();
        let bp = BootParams::new(&image[..ZERO_PAGE_SIZE]).unwrap();
        assert_eq!(bp.e820().unwrap().count(), 0);
        assert_eq!(bp.cmd_line_ptr(), 0);
        assert_eq!(bp.initrd(), None);
        assert_eq!(bp.header().cmdline_max(), 4095);
    }

    #[test]
    fn small_setup_gets_the_minimum_sectors() {
        let image = assemble(&setup(0x300), &protected(0x1000)).unwrap();
        assert_eq!(header(&image).setup_sects, 4);
        assert_eq!(image.len(), 5 * 512 + 0x1000);
    }

    #[test]
    fn refuses_bad_parts() {
        let mut no_jump = setup(0x1100);
        no_jump[0x200] = 0xe9;
        assert!(assemble(&no_jump, &protected(0x1000)).is_err());
        assert!(assemble(&[0; 0x26c], &protected(0x1000)).is_err());
        assert!(assemble(&setup(257 * 512), &protected(0x1000)).is_err());
        assert!(assemble(&setup(0x1100), &protected(0x1001)).is_err());
        assert!(assemble(&setup(0x1100), &[]).is_err());
    }

    /// The shim's header is a real bzImage header: as the zero page QEMU's `-kernel`
    /// leaves (its writes at 0x210, 0x211, 0x224, 0x228) and as the kernel whose header
    /// a Linux zero page copies, it goes through `build_linux_zero_page`.
    #[test]
    fn header_through_the_linux_zero_page_builder() {
        let image = assemble(&setup(0x111e), &protected(0x6_0000)).unwrap();
        let kernel = &image[..header(&image).protected_mode_offset() as usize];
        let mut loader = image[..ZERO_PAGE_SIZE].to_vec();
        loader[0x210] = 0xb0;
        loader[0x211] |= CAN_USE_HEAP;
        loader[0x224..0x226].copy_from_slice(&0xfe00u16.to_le_bytes());
        loader[0x228..0x22c].copy_from_slice(&0x2_0000u32.to_le_bytes());
        let args = LinuxBootParams {
            loader: BootParams::new(&loader).unwrap(),
            kernel_setup: kernel,
            cmd_line_ptr: 0x2_0000,
            initrd: Some(Range {
                start: 0x7f00_0000,
                end: 0x7f80_0000,
            }),
            kaslr: true,
            setup_data: 0,
        };
        let mut out = ZeroPage::new_zeroed();
        build_linux_zero_page(&mut out, &args).unwrap();
        let page = zerocopy::IntoBytes::as_bytes(&out);
        assert_eq!(page[0x1ef], 0, "sentinel");
        assert_eq!(&page[0x1f1..0x1fa], &image[0x1f1..0x1fa]);
        assert_eq!(&page[0x1fa..0x1fc], &[0xff, 0xff], "the loader's vid_mode");
        assert_eq!(&page[0x1fc..0x210], &image[0x1fc..0x210]);
        assert_eq!(page[0x210], 0xb0);
        assert_eq!(page[0x211], LOADED_HIGH | KASLR_FLAG);
        assert_eq!(&page[0x224..0x226], &[0, 0], "no real-mode heap");
        assert_eq!(&page[0x22c..0x250], &image[0x22c..0x250]);
        assert_eq!(&page[0x258..0x26c], &image[0x258..0x26c]);
        let bp = BootParams::new(page).unwrap();
        assert_eq!(bp.cmd_line_ptr(), 0x2_0000);
        assert_eq!(bp.initrd(), args.initrd);
    }
}
