//! The per-architecture table: Rust target, crates, image header, QEMU machine and
//! U-Boot loader details. Everything arch-specific that the other commands need is
//! here, so adding x86_64 is one more enum variant and one more `Target`.

use clap::ValueEnum;
use shim_boards::Board;

/// The `--arch` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Arch {
    Aarch64,
    #[value(name = "x86_64")]
    X86_64,
}

impl Arch {
    pub fn target(self) -> &'static Target {
        match self {
            Arch::Aarch64 => &AARCH64,
            Arch::X86_64 => &X86_64,
        }
    }
}

/// Where the packed image keeps its own total size, so loaders reserve the whole file.
pub struct ImageHeader {
    /// Offset and bytes of the magic that identifies the header.
    pub magic_offset: usize,
    pub magic: &'static [u8],
    /// Offset of the little-endian u64 that holds, as linked, the offset the container
    /// must start at and, once packed, the image's total length.
    pub size_offset: usize,
}

/// How the flat shim and its container become the file a loader boots.
pub enum Packing {
    /// The arm64 Image: the flat shim, then the container.
    Image,
    /// An x86 bzImage (bzimage.rs): the real-mode setup part, dumped from this ELF
    /// section of the shim, in front of the flat shim and the container.
    BzImage { setup_section: &'static str },
}

/// How a firmware loader boots the image (the `--loader u-boot` path).
pub struct Firmware {
    /// The firmware passed to QEMU's `-bios`.
    pub bios: &'static str,
    /// Where QEMU's generic loader puts the image before the firmware runs.
    pub load_addr: u64,
    /// Where QEMU's generic loader puts an initrd (U-Boot's `ramdisk_addr_r`).
    pub initrd_addr: u64,
    /// The firmware's boot command; `{addr}` becomes `load_addr` in hex, `{initrd}`
    /// `<initrd_addr>:<size>` in hex, or `-` without an initrd.
    pub boot_cmd: &'static str,
}

/// Everything xtask needs to know about one architecture.
pub struct Target {
    /// The `--arch` spelling and the directory under `target/xtask/`.
    pub name: &'static str,
    pub rust_target: &'static str,
    pub shim_package: &'static str,
    pub payload_package: &'static str,
    pub header: ImageHeader,
    pub packing: Packing,
    pub qemu: &'static str,
    /// The board QEMU boots by default: its machine, CPU and console (boards crate).
    pub board: &'static Board,
    /// Machine option that starts the guest in the hypervisor level (`--el2`; QEMU
    /// virt only).
    pub el2_option: &'static str,
    /// More QEMU arguments every boot gets (devices the payload uses).
    pub qemu_args: &'static [&'static str],
    pub firmware: Firmware,
    /// Debian packages that provide `qemu` and `firmware.bios`.
    pub qemu_package: &'static str,
    pub firmware_package: &'static str,
}

/// U-Boot on QEMU virt (the boards table).
const QEMU_VIRT_UBOOT: shim_boards::UBoot = match shim_boards::QEMU_VIRT.uboot {
    Some(uboot) => uboot,
    None => panic!("qemu-virt boots with U-Boot"),
};

pub const AARCH64: Target = Target {
    name: "aarch64",
    rust_target: "aarch64-unknown-none",
    shim_package: "shim-aarch64",
    payload_package: "demo-payload",
    header: ImageHeader {
        magic_offset: 0x38,
        magic: b"ARM\x64",
        size_offset: 0x10,
    },
    packing: Packing::Image,
    qemu: "qemu-system-aarch64",
    board: &shim_boards::QEMU_VIRT,
    el2_option: "virtualization=on",
    qemu_args: &[],
    firmware: Firmware {
        bios: "/usr/lib/u-boot/qemu_arm64/u-boot.bin",
        // U-Boot's qemu-arm environment: kernel_addr_r, ramdisk_addr_r.
        load_addr: QEMU_VIRT_UBOOT.kernel.value,
        initrd_addr: match QEMU_VIRT_UBOOT.ramdisk {
            Some(var) => var.value,
            None => panic!("qemu-virt has a ramdisk_addr_r"),
        },
        boot_cmd: "booti {addr} {initrd} ${fdtcontroladdr}",
    },
    qemu_package: "qemu-system-arm",
    firmware_package: "u-boot-qemu",
};

/// x86_64: a bzImage (boot protocol 2.15) whose protected-mode part starts with a small
/// header of its own (arch/x86_64/src/entry.S): magic at 0x08, image size at 0x10.
/// `-kernel` goes through SeaBIOS and QEMU's linuxboot option ROM, which enter the
/// real-mode setup; the payload ends QEMU through isa-debug-exit (status 33 = ok).
pub const X86_64: Target = Target {
    name: "x86_64",
    rust_target: "x86_64-unknown-none",
    shim_package: "shim-x86_64",
    payload_package: "demo-payload",
    header: ImageHeader {
        magic_offset: 0x08,
        magic: b"SHIMX64\0",
        size_offset: 0x10,
    },
    packing: Packing::BzImage {
        setup_section: ".setup",
    },
    qemu: "qemu-system-x86_64",
    board: &shim_boards::QEMU_Q35,
    el2_option: "",
    qemu_args: &["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"],
    // No U-Boot: SeaBIOS is the firmware QEMU's -kernel needs.
    firmware: Firmware {
        bios: "/usr/share/seabios/bios-256k.bin",
        load_addr: 0,
        initrd_addr: 0,
        boot_cmd: "",
    },
    qemu_package: "qemu-system-x86",
    firmware_package: "seabios",
};
