//! Per-board facts that xtask needs to pack and boot the shim for a board: where the
//! board's own U-Boot environment puts things, which device tree Debian ships for it,
//! which UART its tree names as the console, and the QEMU model of it where there is
//! one. Data only; the rules that use it (booti's layout, the boot scripts) live in
//! xtask. The shim itself uses none of this: one arm64 image serves every board and
//! finds its console in the device tree.
//!
//! The U-Boot facts are from U-Boot's own source at the v2026.07 release (commit
//! ece349ade297), each cited with its file; where older releases differ, the doc
//! comment says so. xtask's tests check that the entries are consistent (names unique,
//! no region overlapping another in a way `booti` or `bootm` would reject for a shim
//! of some MiB) and that each Debian tree names the console given here.
#![no_std]

/// The CPU architecture a board runs the shim on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Aarch64,
    X86_64,
}

/// One board.
#[derive(Clone, Copy, Debug)]
pub struct Board {
    /// The name `cargo xtask pack --board` takes.
    pub name: &'static str,
    pub arch: Arch,
    /// What the board boots with, or `None` where U-Boot does not boot it.
    pub uboot: Option<UBoot>,
    /// The board's device tree in Debian's arm64 kernel package
    /// (`linux-image-<abi>-arm64-unsigned`), relative to
    /// `/usr/lib/linux-image-<abi>-arm64/`. `None` where the firmware makes the tree
    /// (QEMU virt) or there is none (x86).
    pub debian_dtb: Option<&'static str>,
    pub console: Console,
    /// The QEMU machine that models the board, if there is one.
    pub qemu: Option<Qemu>,
}

/// A U-Boot environment variable and its default value on the board.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Var {
    pub name: &'static str,
    pub value: u64,
}

const fn var(name: &'static str, value: u64) -> Var {
    Var { name, value }
}

/// The board's U-Boot: its defconfig and the load addresses its default environment
/// gives boot scripts.
#[derive(Clone, Copy, Debug)]
pub struct UBoot {
    /// `configs/<defconfig>_defconfig` in U-Boot.
    pub defconfig: &'static str,
    /// Where scripts load the kernel (`kernel_addr_r`). `booti` moves an Image whose
    /// flags say "anywhere" to the next 2 MiB boundary at or above it.
    pub kernel: Var,
    /// Where scripts load a device tree of their own (`fdt_addr_r`, or `fdt_addr`
    /// where the environment has only that).
    pub fdt: Option<Var>,
    /// Where scripts load an initrd (`ramdisk_addr_r`, or the board's own name for it).
    pub ramdisk: Option<Var>,
    /// Where the distro boot scan loads `boot.scr` (`scriptaddr`); `None` where U-Boot
    /// reads the script into a buffer of its own (standard boot without `scriptaddr`).
    pub script: Option<Var>,
    /// The variable that holds the device tree U-Boot itself runs on, which a script
    /// hands on when it loads no tree of its own: `fdt_addr` where the firmware before
    /// U-Boot made the tree (the RPi firmware, QEMU), else `fdtcontroladdr` (the tree
    /// built into U-Boot, with U-Boot's fix-ups of /memory and /chosen).
    pub firmware_fdt: &'static str,
    /// `CONFIG_FIT`: whether `bootm` takes a FIT image.
    pub fit: bool,
    /// `CONFIG_SYS_BOOTM_LEN`: the most bytes `bootm` copies out of a FIT for a
    /// kernel, compressed or not (boot/image.c `image_decomp`). Where the board takes
    /// the ARM64 default, the smaller one of the releases in use: 64 MiB up to v2025.10
    /// (Debian's 2023.01 included), 128 MiB from v2026.01 (boot/Kconfig).
    pub bootm_len: u64,
}

/// The UART a board's console is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uart {
    /// ARM PL011.
    Pl011,
    /// An 8250/16550 in MMIO: registers `1 << reg_shift` bytes apart, `reg_io_width`
    /// bytes wide (Rockchip's dw-apb UART; the BCM2835 aux mini UART is one with
    /// shift 2 and width 4).
    Ns16550 { reg_shift: u8, reg_io_width: u8 },
    /// The i.MX UART.
    Imx,
    /// A PC 16550 in I/O port space (COM1 at port 0x3f8).
    PcCom,
}

/// The board's console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Console {
    /// `/chosen/stdout-path` in the board's device tree (Debian's, or the one QEMU
    /// makes); `None` without a device tree.
    pub stdout_path: Option<&'static str>,
    /// The node it names.
    pub node: &'static str,
    pub uart: Uart,
    /// The UART's CPU physical address (I/O port for `PcCom`).
    pub base: u64,
}

/// How QEMU models the board.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Qemu {
    /// The `-machine` name.
    pub machine: &'static str,
    /// The `-cpu` model, or `None` where the machine has one fixed CPU model and takes
    /// no `-cpu` (the raspi and i.MX machines).
    pub cpu: Option<&'static str>,
    /// `-m`: the machine's fixed size, or the size the tests boot with.
    pub mem: &'static str,
    /// Whether `-m` may be changed (raspi4b accepts only its 2 GiB).
    pub mem_fixed: bool,
    /// `-smp` where the machine has a fixed number of CPUs (raspi4b: 4), else `None`.
    pub cpus: Option<u32>,
    /// Which `-serial` (QEMU's `serial_hd(n)`) is the console UART: the runner connects
    /// this one to the console and the ones before it to `null`.
    pub console_serial: usize,
    /// Whether the demo payload can end QEMU: through PSCI SYSTEM_OFF on arm64 (QEMU
    /// gives the guest PSCI and the tree a /psci node), isa-debug-exit on x86.
    /// raspi4b starts its CPUs from spin tables and has no PSCI: the payload says so
    /// and parks.
    pub powers_off: bool,
    /// The board's U-Boot as QEMU runs it, where Debian builds one that does.
    pub uboot: Option<QemuUBoot>,
}

/// Debian's build of the board's U-Boot and how QEMU starts it and gives it a disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QemuUBoot {
    /// The Debian package (arm64) that holds it.
    pub package: &'static str,
    /// Its path in the package (and on a host that has it installed).
    pub file: &'static str,
    pub start: UBootStart,
    pub medium: Medium,
}

/// How QEMU starts U-Boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UBootStart {
    /// As the firmware, `-bios` (virt: QEMU's tree at the start of RAM).
    Bios,
    /// As the `-kernel` the machine's boot stub enters with the tree (`-dtb`) in x0,
    /// as the RPi firmware enters it (raspi).
    Kernel,
}

/// Where the boot disk goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Medium {
    /// A virtio-blk device (virtio-mmio).
    Virtio,
    /// The machine's SD card slot (its size must be a power of two).
    Sd,
}

/// QEMU `-machine virt` with U-Boot's `qemu_arm64` (Debian's `u-boot-qemu`).
/// Addresses: board/emulation/qemu-arm/qemu-arm.env (the same in Debian's U-Boot
/// 2023.01, include/configs/qemu-arm.h then). `fdt_addr` 0x4000_0000 is where QEMU puts
/// its tree (board/emulation/qemu-arm/qemu-arm.c `board_fdt_blob_setup`); there is no
/// `fdt_addr_r`, so a tree of one's own goes there too (U-Boot runs on a copy of
/// QEMU's, `fdtcontroladdr`, relocated to the top of RAM), below scriptaddr.
/// CONFIG_FIT=y in configs/qemu_arm64_defconfig; SYS_BOOTM_LEN is the ARM64 default.
/// QEMU (hw/arm/virt.c) makes the tree: stdout-path is the PL011 at 0x0900_0000, the
/// first -serial.
pub const QEMU_VIRT: Board = Board {
    name: "qemu-virt",
    arch: Arch::Aarch64,
    uboot: Some(UBoot {
        defconfig: "qemu_arm64",
        kernel: var("kernel_addr_r", 0x4040_0000),
        fdt: Some(var("fdt_addr", 0x4000_0000)),
        ramdisk: Some(var("ramdisk_addr_r", 0x4400_0000)),
        script: Some(var("scriptaddr", 0x4020_0000)),
        firmware_fdt: "fdtcontroladdr",
        fit: true,
        bootm_len: 0x400_0000,
    }),
    debian_dtb: None,
    console: Console {
        stdout_path: Some("/pl011@9000000"),
        node: "/pl011@9000000",
        uart: Uart::Pl011,
        base: 0x0900_0000,
    },
    qemu: Some(Qemu {
        machine: "virt",
        cpu: Some("max"),
        mem: "1G",
        mem_fixed: false,
        cpus: None,
        console_serial: 0,
        powers_off: true,
        uboot: Some(QemuUBoot {
            package: "u-boot-qemu",
            file: "/usr/lib/u-boot/qemu_arm64/u-boot.bin",
            start: UBootStart::Bios,
            medium: Medium::Virtio,
        }),
    }),
};

/// QEMU `-machine q35` (x86_64): SeaBIOS and QEMU's `-kernel`, GRUB or kexec load the
/// shim as a bzImage; no U-Boot and no device tree. The console is COM1.
pub const QEMU_Q35: Board = Board {
    name: "qemu-q35",
    arch: Arch::X86_64,
    uboot: None,
    debian_dtb: None,
    console: Console {
        stdout_path: None,
        node: "COM1",
        uart: Uart::PcCom,
        base: 0x3f8,
    },
    qemu: Some(Qemu {
        machine: "q35",
        cpu: Some("max"),
        mem: "1G",
        mem_fixed: false,
        cpus: None,
        console_serial: 0,
        powers_off: true,
        uboot: None,
    }),
};

/// Raspberry Pi 4 Model B, with U-Boot's `rpi_arm64` (or `rpi_4`) started by the
/// Pi's firmware.
/// Addresses: board/raspberrypi/rpi/rpi.env (kernel_addr_r 0x0008_0000, moved by
/// `booti` to 0x0020_0000; up to v2025.04, Debian's 2023.01 included, scriptaddr was
/// 0x0240_0000, fdt_addr_r 0x0260_0000 and ramdisk_addr_r 0x0270_0000, in
/// include/configs/rpi.h before v2023.10).
/// `fdt_addr` is the firmware's tree, set by board/raspberrypi/rpi/rpi.c
/// `set_fdt_addr`. No CONFIG_FIT in configs/rpi_arm64_defconfig nor from
/// arch/arm/mach-bcm283x. Debian's tree: stdout-path "serial1:115200n8", the aux mini
/// UART (/soc/serial@7e215040, CPU address 0xfe21_5040 through /soc's ranges), which
/// QEMU's raspi4b connects to its second -serial (the first is the PL011). raspi4b
/// has 2 GiB and no other size.
pub const RPI4: Board = Board {
    name: "rpi4",
    arch: Arch::Aarch64,
    uboot: Some(UBoot {
        defconfig: "rpi_arm64",
        kernel: var("kernel_addr_r", 0x0008_0000),
        fdt: Some(var("fdt_addr_r", 0x0560_0000)),
        ramdisk: Some(var("ramdisk_addr_r", 0x0570_0000)),
        script: Some(var("scriptaddr", 0x0540_0000)),
        firmware_fdt: "fdt_addr",
        fit: false,
        bootm_len: 0x400_0000,
    }),
    debian_dtb: Some("broadcom/bcm2711-rpi-4-b.dtb"),
    console: Console {
        stdout_path: Some("serial1:115200n8"),
        node: "/soc/serial@7e215040",
        uart: Uart::Ns16550 {
            reg_shift: 2,
            reg_io_width: 4,
        },
        base: 0xfe21_5040,
    },
    qemu: Some(Qemu {
        machine: "raspi4b",
        cpu: None,
        mem: "2G",
        mem_fixed: true,
        cpus: Some(4),
        console_serial: 1,
        powers_off: false,
        uboot: Some(QemuUBoot {
            package: "u-boot-rpi",
            file: "/usr/lib/u-boot/rpi_arm64/u-boot.bin",
            start: UBootStart::Kernel,
            medium: Medium::Sd,
        }),
    }),
};

/// NXP i.MX 8M Plus EVK, with U-Boot's `imx8mp_evk`.
/// Addresses: kernel_addr_r is CONFIG_SYS_LOAD_ADDR 0x4048_0000 (configs/
/// imx8mp_evk_defconfig; `booti` moves the shim to 0x4060_0000; U-Boot master after
/// v2026.07 loads at 0x4060_0000), fdt_addr_r 0x4300_0000 (board/nxp/imx8mp_evk/
/// imx8mp_evk.env). That environment defines no ramdisk_addr_r and no scriptaddr
/// (standard boot reads boot.scr into a buffer of its own); up to v2025.01,
/// include/configs/imx8mp_evk.h gave the initrd `initrd_addr=0x43800000`, used here.
/// CONFIG_FIT=y and SYS_BOOTM_LEN 0x200_0000 (32 MiB) in the defconfig. U-Boot runs on
/// its own tree (`fdtcontroladdr`). Debian's tree: stdout-path names UART2 by its path
/// (through /soc@0's and bus@30800000's ranges), QEMU's second -serial (the machine's
/// serial_hd(n) is UART n+1).
pub const IMX8MP_EVK: Board = Board {
    name: "imx8mp-evk",
    arch: Arch::Aarch64,
    uboot: Some(UBoot {
        defconfig: "imx8mp_evk",
        kernel: var("kernel_addr_r", 0x4048_0000),
        fdt: Some(var("fdt_addr_r", 0x4300_0000)),
        ramdisk: Some(var("initrd_addr", 0x4380_0000)),
        script: None,
        firmware_fdt: "fdtcontroladdr",
        fit: true,
        bootm_len: 0x200_0000,
    }),
    debian_dtb: Some("freescale/imx8mp-evk.dtb"),
    console: Console {
        stdout_path: Some("/soc@0/bus@30800000/serial@30890000"),
        node: "/soc@0/bus@30800000/serial@30890000",
        uart: Uart::Imx,
        base: 0x3089_0000,
    },
    qemu: Some(Qemu {
        machine: "imx8mp-evk",
        cpu: None,
        mem: "1G",
        mem_fixed: false,
        cpus: None,
        console_serial: 1,
        powers_off: true,
        uboot: None,
    }),
};

/// Pine64 RockPro64 (Rockchip RK3399), with U-Boot's `rockpro64-rk3399`.
/// Addresses: include/configs/rk3399_common.h `ENV_MEM_LAYOUT_SETTINGS` (scriptaddr
/// 0x00c0_0000, kernel_addr_r 0x0200_0000, fdt_addr_r 0x1200_0000, ramdisk_addr_r
/// 0x1218_0000). CONFIG_FIT is selected by ROCKCHIP_RK3399 (arch/arm/mach-rockchip/
/// Kconfig); SYS_BOOTM_LEN is the ARM64 default. U-Boot runs on its own tree
/// (`fdtcontroladdr`). Debian's tree: stdout-path "serial2:1500000n8", UART2
/// (/serial@ff1a0000, snps,dw-apb-uart, reg-shift 2, reg-io-width 4). No QEMU model.
pub const ROCKPRO64: Board = Board {
    name: "rockpro64",
    arch: Arch::Aarch64,
    uboot: Some(UBoot {
        defconfig: "rockpro64-rk3399",
        kernel: var("kernel_addr_r", 0x0200_0000),
        fdt: Some(var("fdt_addr_r", 0x1200_0000)),
        ramdisk: Some(var("ramdisk_addr_r", 0x1218_0000)),
        script: Some(var("scriptaddr", 0x00c0_0000)),
        firmware_fdt: "fdtcontroladdr",
        fit: true,
        bootm_len: 0x400_0000,
    }),
    debian_dtb: Some("rockchip/rk3399-rockpro64.dtb"),
    console: Console {
        stdout_path: Some("serial2:1500000n8"),
        node: "/serial@ff1a0000",
        uart: Uart::Ns16550 {
            reg_shift: 2,
            reg_io_width: 4,
        },
        base: 0xff1a_0000,
    },
    qemu: None,
};

/// Every board.
pub const BOARDS: &[Board] = &[QEMU_VIRT, QEMU_Q35, RPI4, IMX8MP_EVK, ROCKPRO64];

/// The board called `name`.
pub fn by_name(name: &str) -> Option<&'static Board> {
    BOARDS.iter().find(|b| b.name == name)
}
