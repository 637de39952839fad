//! The per-architecture table: Rust target, crates, image header, QEMU machine and
//! U-Boot loader details. Everything arch-specific that the other commands need is
//! here, so adding x86_64 is one more enum variant and one more `Target`.

use anyhow::{bail, Result};
use clap::ValueEnum;
use shim_boards::Board;

use crate::qemu::Loader;

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
    /// The `--loader` values that can boot this architecture's image.
    pub loaders: &'static [Loader],
    /// QEMU's exit status when the demo payload powers the machine off after
    /// `payload: ok`: 0 after PSCI SYSTEM_OFF on arm64; on x86 isa-debug-exit makes it
    /// `(value << 1) | 1`, 33 for the payload's 0x10 (a triple fault or a reset under
    /// `-no-reboot` exits 0, so 0 is no power-off there).
    pub poweroff_exit: i32,
}

impl Target {
    /// Refuses a loader this architecture's table does not list, naming those it does.
    pub fn check_loader(&self, loader: Loader) -> Result<()> {
        if self.loaders.contains(&loader) {
            return Ok(());
        }
        let names: Vec<String> = self.loaders.iter().map(|l| l.name()).collect();
        bail!(
            "--loader {} cannot boot {}: its loaders are {}",
            loader.name(),
            self.name,
            names.join(", ")
        )
    }
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
    loaders: &[
        Loader::Direct,
        Loader::UBoot,
        Loader::UBootScript,
        Loader::UBootFit,
    ],
    poweroff_exit: 0,
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
    loaders: &[Loader::Direct, Loader::Grub, Loader::Kexec],
    poweroff_exit: 33,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loaders_come_from_the_table() {
        assert!(AARCH64.check_loader(Loader::UBoot).is_ok());
        assert!(X86_64.check_loader(Loader::Kexec).is_ok());
        assert_eq!(
            AARCH64.check_loader(Loader::Grub).unwrap_err().to_string(),
            "--loader grub cannot boot aarch64: its loaders are direct, u-boot, \
             u-boot-script, u-boot-fit"
        );
        assert_eq!(
            X86_64.check_loader(Loader::UBoot).unwrap_err().to_string(),
            "--loader u-boot cannot boot x86_64: its loaders are direct, grub, kexec"
        );
        // Every loader boots some architecture.
        for loader in Loader::value_variants() {
            assert!(AARCH64.loaders.contains(loader) || X86_64.loaders.contains(loader));
        }
    }

    #[test]
    fn poweroff_exits() {
        assert_eq!((AARCH64.poweroff_exit, X86_64.poweroff_exit), (0, 33));
    }
}
