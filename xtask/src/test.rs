//! `cargo xtask test`: the host tests, then the QEMU boot matrix of each architecture,
//! then a short pass of every fuzz target (fuzz.rs), printing `case <name>: pass|FAIL`
//! per case and `N passed, M failed` at the end.
//! The matrix is one table per architecture; on arm64 it includes Debian's kernel as
//! the payload (linux.rs), booted with the test initramfs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use clap::{Args, ValueEnum};

use crate::arch::Arch;
use crate::image::{self, BuildArgs, Compress};
use crate::kexec::E820Edit;
use crate::qemu::{self, Expect, Initrd, Loader, Machine, Summary};
use crate::{cargo, deps, dtbs, exec, fuzz, linux, linux_x86, residue, target_dir};
use shim_boards::Board;

#[derive(Args, Debug)]
pub struct TestArgs {
    /// Only the host tests (cargo test) and the fuzz pass.
    #[arg(long, conflicts_with = "qemu_only")]
    pub host_only: bool,
    /// Only the QEMU boot matrix.
    #[arg(long)]
    pub qemu_only: bool,
    /// Only this architecture's matrix [default: all].
    #[arg(long, value_enum)]
    pub arch: Option<Arch>,
    /// Seconds each boot may take [default: the case's own, 60 or 180 for Linux].
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Only the cases named this, or whose name contains it (names are
    /// `<arch>/<case>`, `host-tests` and `fuzz/<target>`); may be given more than once.
    #[arg(long = "case", value_name = "NAME")]
    pub cases: Vec<String>,
    /// Seconds each fuzz target runs (`fuzz/<target>` cases, after the boot matrix);
    /// 0 leaves them out, saying so.
    #[arg(long, default_value_t = FUZZ_SECONDS)]
    pub fuzz_seconds: u64,
}

/// A short pass per fuzz target: seven targets stay under two minutes.
const FUZZ_SECONDS: u64 = 15;

/// Seconds a boot may take unless its case says otherwise.
const DEFAULT_TIMEOUT: u64 = 60;
/// Linux under TCG reaches userspace in tens of seconds; U-Boot adds a few.
const LINUX_TIMEOUT: u64 = 180;
/// `-cpu max` emulates pointer authentication slowly (QARMA); QEMU's own
/// implementation-defined algorithm is much faster for a kernel that uses it.
const LINUX_CPU: &str = "max,pauth-impdef=on";

/// What tells one case's image from another's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ImageKey {
    payload: Payload,
    corrupt: bool,
    compress: Compress,
    board: Option<&'static str>,
}

impl ImageKey {
    fn of(case: &Case) -> ImageKey {
        ImageKey {
            payload: case.payload,
            corrupt: case.corrupt,
            compress: case.compress,
            board: case.board.map(|b| b.name),
        }
    }
}

/// What a case packs after the shim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Payload {
    /// The demo payload (tests/payload), an ELF.
    Demo,
    /// Debian's arm64 kernel as a raw Image (zlib in the container).
    LinuxImage,
    /// The same as Image.gz, the gzip member kept in the container as it is.
    LinuxImageGz,
    /// tests/residue: a Linux-protocol Image that searches RAM for the planted seed.
    ResidueScanner,
    /// Debian's x86_64 cloud kernel, its bzImage stored in the container as it is.
    LinuxBzImage,
    /// Debian's bookworm-backports x86_64 cloud kernel (zstd: Linux's own
    /// decompressor runs).
    LinuxBzImageZstd,
}

/// What a case asks of its boots, beyond each passing its expectation.
#[derive(Clone, Copy, Debug)]
enum Check {
    /// Every boot reaches `payload: ok`.
    Ok,
    /// Every boot reaches `payload: ok` at one and the same (pa, va).
    SamePlacement,
    /// Every boot reaches `payload: ok`, with at least `pairs` distinct (pa, va) and
    /// `pas` distinct pa.
    Distinct { pairs: usize, pas: usize },
    /// The shim refuses a payload whose digest does not match.
    Refused,
    /// Every boot lands exactly here (a loader-chosen image offset).
    Placed { pa: u64, va: u64 },
    /// The shim stops every boot with a `shim: error:` line containing this.
    Error(&'static str),
    /// Every boot runs Linux to the test initramfs's `linux-test: done`, checked as
    /// `Expect::Linux` says.
    Linux,
    /// As `Linux`, and every kernel says all CPUs started at EL2.
    LinuxEl2,
    /// As `Linux`, with at least this many distinct "Kernel code" addresses.
    LinuxDistinct(usize),
    /// As `Linux`, all at one "Kernel code" address, with KASLR disabled.
    LinuxSame,
    /// As `Linux`, and every kernel says `KASLR enabled`.
    LinuxKaslr,
    /// x86: as `LinuxDistinct`, every kernel randomized its memory layout (KASLR_FLAG
    /// set: "Memory KASLR"), and at least one was placed above 4 GiB.
    LinuxX86Random(usize),
    /// x86: as `LinuxSame`, and no kernel randomized its memory layout (KASLR_FLAG
    /// clear).
    LinuxX86Fixed,
    /// Every boot reaches `payload: ok` having searched all RAM for the seed planted in
    /// the device tree (`residue-scan=`) without finding it.
    Residue,
    /// Every boot reaches `payload: ok`, and the shim says it verified the payload with
    /// this SHA-256 block function (`sha256=` in its timing line).
    Hashed(&'static str),
    /// As `Linux`, and the shim says it verified the kernel with this SHA-256 block
    /// function.
    LinuxHashed(&'static str),
    /// Every boot reaches `payload: ok` with only the counter for entropy, and the shim
    /// says so: a weak random placement, or (`fixed`, `shim.weak=fixed`) the lowest
    /// slot every boot.
    Weak { fixed: bool },
    /// Every boot reaches `payload: ok` placed clear of the reserved holes the guest
    /// added to the firmware map (below them: `mem=` ends where they do), and, with
    /// `says`, the shim printed a line containing it.
    ClearOf {
        edit: E820Edit,
        says: Option<&'static str>,
    },
    /// On a board's own console UART, every boot shows the shim's `placed` line and
    /// `payload: ok`; with `parked`, the payload then says it has no PSCI and parks,
    /// and the runner stops QEMU.
    Console { parked: bool },
}

/// One row of the boot matrix.
struct Case {
    name: &'static str,
    /// The board QEMU models, with its Debian device tree as -dtb [default: the
    /// architecture's, QEMU virt or q35, with QEMU's own tree].
    board: Option<&'static Board>,
    loader: Loader,
    mem: &'static str,
    el2: bool,
    append: &'static str,
    boots: u32,
    corrupt: bool,
    check: Check,
    payload: Payload,
    /// Boot with the Linux test initramfs (linux.rs) as the initrd.
    initrd: bool,
    /// `-cpu` [default: the architecture's].
    cpu: Option<&'static str>,
    /// Appended to `-machine`.
    machine_opts: &'static str,
    /// Seconds each boot may take [default: DEFAULT_TIMEOUT].
    timeout: Option<u64>,
    /// Boot with QEMU virt's tree changed (residue.rs): a planted kaslr-seed, or a
    /// fault.
    tree: Option<residue::Tree>,
    /// Give QEMU's own tree, dumped, to a loader that hands on a tree of its own (the
    /// U-Boot disk's boot.scr or FIT).
    own_dtb: bool,
    /// Boot the image cut short here, as a loader that read only part of it would.
    cut: Option<Cut>,
    /// kexec: entries the guest adds to the firmware memory map first.
    e820: Option<E820Edit>,
    /// How the container packs the payload (`--compress`).
    compress: Compress,
}

/// Where a fault case cuts the image short.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// Halfway through the shim's code.
    Code,
    /// Halfway through the shim's own relocations.
    Relocations,
    /// Inside the payload container's header.
    ContainerHeader,
    /// Halfway through the packed payload.
    Payload,
}

impl Cut {
    /// The offset in `image` to cut at; `elf` is the shim's ELF, linked at 0 (its
    /// addresses are offsets in the protected-mode part, which starts at `base`).
    fn offset(self, image: &[u8], elf: &[u8], base: usize) -> Result<usize> {
        let middle = |name: &str| -> Result<usize> {
            let (addr, size) = section(elf, name)
                .with_context(|| format!("the shim's ELF has no {name} section"))?;
            Ok(base + usize::try_from(addr + size / 2)?)
        };
        // The container starts at __image_end: the stack's end, page-aligned.
        let container = || -> Result<usize> {
            let (addr, size) = section(elf, ".stack").context("the shim's ELF has no .stack")?;
            let at = base + usize::try_from((addr + size).next_multiple_of(4096))?;
            ensure!(
                image.get(at..at + 8) == Some(&shim_common::container::MAGIC[..]),
                "no payload container at {at:#x}"
            );
            Ok(at)
        };
        match self {
            Cut::Code => middle(".text"),
            Cut::Relocations => middle(".rela.dyn"),
            Cut::ContainerHeader => Ok(container()? + 32),
            Cut::Payload => {
                let at = container()?;
                let p = shim_common::container::parse(&image[at..]).map_err(|e| anyhow!("{e}"))?;
                // The middle of the packed data, past the header and the zero-run table.
                let packed_at = p.packed.as_ptr() as usize - image[at..].as_ptr() as usize;
                Ok(at + packed_at + p.packed.len() / 2)
            }
        }
    }
}

/// A section's address and size, from the ELF64 section headers.
fn section(elf: &[u8], name: &str) -> Option<(u64, u64)> {
    let u16_at = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(elf.get(at..at + 8)?.try_into().ok()?));
    let shoff = usize::try_from(u64_at(0x28)?).ok()?;
    let (entsize, count, names) = (
        usize::from(u16_at(0x3a)?),
        usize::from(u16_at(0x3c)?),
        usize::from(u16_at(0x3e)?),
    );
    let header = |i: usize| shoff + i * entsize;
    let strtab = usize::try_from(u64_at(header(names) + 0x18)?).ok()?;
    (0..count).find_map(|i| {
        let at = strtab + usize::try_from(u32_at(header(i))?).ok()?;
        let end = at + elf.get(at..)?.iter().position(|&b| b == 0)?;
        (elf.get(at..end)? == name.as_bytes())
            .then(|| Some((u64_at(header(i) + 0x10)?, u64_at(header(i) + 0x20)?)))?
    })
}

const fn case(name: &'static str, check: Check) -> Case {
    Case {
        name,
        board: None,
        loader: Loader::Direct,
        mem: "1G",
        el2: false,
        append: "shim.verbose",
        boots: 1,
        corrupt: false,
        check,
        payload: Payload::Demo,
        initrd: false,
        cpu: None,
        machine_opts: "",
        timeout: None,
        tree: None,
        own_dtb: false,
        cut: None,
        e820: None,
        compress: Compress::Zlib,
    }
}

/// A residue case: the tree with a planted kaslr-seed, given as it is (no QEMU seeds),
/// 512 MiB of RAM, and a payload that searches all of it for the seed.
const fn residue_case(name: &'static str, payload: Payload) -> Case {
    Case {
        mem: residue::MEM,
        append: "shim.verbose residue-scan",
        machine_opts: "dtb-randomness=off",
        tree: Some(residue::Tree::PlantedSeed),
        payload,
        ..case(name, Check::Residue)
    }
}

/// A board case: the demo payload on the board's QEMU model with Debian's tree for it,
/// judged on the board's console UART.
const fn board_case(name: &'static str, board: &'static Board) -> Case {
    let Some(qemu) = board.qemu else {
        panic!("a board case needs a QEMU model");
    };
    board_case_checked(
        name,
        board,
        Check::Console {
            parked: !qemu.powers_off,
        },
    )
}

/// A case on a board's QEMU model, with its Debian tree, checked as `check` says.
const fn board_case_checked(name: &'static str, board: &'static Board, check: Check) -> Case {
    let Some(qemu) = board.qemu else {
        panic!("a board case needs a QEMU model");
    };
    Case {
        board: Some(board),
        mem: qemu.mem,
        ..case(name, check)
    }
}

/// A Linux case: Debian's kernel as a raw Image with the test initramfs.
const fn linux_case(name: &'static str, check: Check) -> Case {
    Case {
        append: linux::APPEND,
        payload: Payload::LinuxImage,
        initrd: true,
        cpu: Some(LINUX_CPU),
        timeout: Some(LINUX_TIMEOUT),
        ..case(name, check)
    }
}

/// An x86_64 Linux case: Debian's cloud amd64 bzImage with the test initramfs.
const fn linux_x86_case(name: &'static str, check: Check) -> Case {
    Case {
        append: linux::X86_APPEND,
        payload: Payload::LinuxBzImage,
        initrd: true,
        mem: "2G",
        timeout: Some(LINUX_TIMEOUT),
        ..case(name, check)
    }
}

/// Eight copies of a string literal, at compile time.
macro_rules! x8 {
    ($s:expr) => {
        concat!($s, $s, $s, $s, $s, $s, $s, $s)
    };
}

/// 4 KiB of command line the shim must get through: quotes, `=`, tabs, options it
/// reads with odd neighbours (`kaslr`, `nokaslr`, `mem=` limits far above RAM), words
/// it must skip, and `--` with `shim.`-looking words after it (init's, not the shim's).
const GARBAGE_CMDLINE: &str = concat!(
    "shim.verbose ",
    x8!(x8!("a=\"b c\"\t=x \"q r\" kaslr nokaslr mem=64G z=1=2 ")),
    " -- shim.bogus init args"
);

const AARCH64_CASES: &[Case] = &[
    case("direct-el1-1g", Check::Ok),
    Case {
        el2: true,
        ..case("direct-el2-1g", Check::Ok)
    },
    Case {
        loader: Loader::UBoot,
        ..case("u-boot-booti-1g", Check::Ok)
    },
    // U-Boot's own distro boot from a FAT disk (virtio) with what `cargo xtask pack`
    // writes for QEMU virt: boot.scr loads and booti's shim.img, handing on U-Boot's
    // tree, or also loads QEMU's tree and an initrd; with --fit, it bootm's a FIT
    // holding the shim (and the tree and the initrd).
    Case {
        loader: Loader::UBootScript,
        ..case("u-boot-disk-script", Check::Ok)
    },
    Case {
        loader: Loader::UBootScript,
        own_dtb: true,
        initrd: true,
        ..case("u-boot-disk-script-dtb-initrd", Check::Ok)
    },
    Case {
        loader: Loader::UBootFit,
        ..case("u-boot-disk-fit", Check::Ok)
    },
    Case {
        loader: Loader::UBootFit,
        own_dtb: true,
        initrd: true,
        ..case("u-boot-disk-fit-dtb-initrd", Check::Ok)
    },
    Case {
        mem: "4G",
        ..case("direct-4g", Check::Ok)
    },
    Case {
        append: "shim.verbose nokaslr",
        boots: 3,
        ..case("nokaslr-3-boots", Check::SamePlacement)
    },
    // 4 GiB gives 2045 slots: two physical collisions in ten draws have odds near
    // 1 in 4000 (with 1 GiB's 509 slots, near 1 in 250).
    Case {
        boots: 10,
        mem: "4G",
        ..case("kaslr-10-boots", Check::Distinct { pairs: 9, pas: 9 })
    },
    Case {
        corrupt: true,
        ..case("corrupt-payload", Check::Refused)
    },
    // An image offset from the loader (x1, or shim.offset= for loaders that cannot set
    // registers): phys = DRAM base + offset, virt = PAGE_OFFSET + offset.
    Case {
        append: "shim.verbose shim.offset=0x10000000",
        ..case(
            "loader-offset",
            Check::Placed {
                pa: 0x5000_0000,
                va: 0xffff_0000_1000_0000,
            },
        )
    },
    // A misaligned offset is refused with a message; the shim chooses and still boots.
    Case {
        append: "shim.verbose shim.offset=0x10001000",
        ..case("bad-loader-offset", Check::Ok)
    },
    // mem=3M leaves one 2 MiB window below the shim: the payload unpacks in its slot
    // and needs no other memory, so it still boots.
    Case {
        append: "shim.verbose mem=3M",
        ..case("one-window", Check::Ok)
    },
    // mem= (an amount of memory on arm64) keeps RAM's first 64 KiB, below the shim at
    // 2 MiB: too little for the 136 KiB payload anywhere, and one clear line.
    Case {
        append: "shim.verbose mem=64K",
        ..case("no-room", Check::Error("cannot place payload"))
    },
    Case {
        append: "shim.verbose shim.bogus",
        ..case("unknown-shim-option", Check::Error("bad command line"))
    },
    // Debian's cloud kernel as the payload, with an initramfs around Debian's busybox
    // that prints /proc/cmdline, /proc/iomem and a digest, then powers off.
    linux_case("linux-direct-image", Check::Linux),
    // The same Image in the shim's own LZ4 container (`--compress lz4`): its first
    // block is decoded apart to read the header before the slot is chosen.
    Case {
        compress: Compress::Lz4,
        ..linux_case("linux-direct-image-lz4", Check::Linux)
    },
    Case {
        payload: Payload::LinuxImageGz,
        ..linux_case("linux-direct-gz", Check::Linux)
    },
    // Debian's 27 MB Image checked without the SHA-256 instructions, as on a Pi 4.
    Case {
        payload: Payload::LinuxImageGz,
        append: "console=ttyAMA0 shim.verbose panic=-1 shim.sha256=portable",
        ..linux_case("linux-sha256-neon", Check::LinuxHashed("neon"))
    },
    Case {
        el2: true,
        ..linux_case("linux-direct-el2", Check::LinuxEl2)
    },
    Case {
        loader: Loader::UBoot,
        ..linux_case("linux-u-boot", Check::Linux)
    },
    Case {
        loader: Loader::UBoot,
        el2: true,
        ..linux_case("linux-u-boot-el2", Check::LinuxEl2)
    },
    // The whole board flow with a real kernel: U-Boot's distro boot runs boot.scr
    // from the disk, which bootm's a FIT holding the shim (Debian's kernel inside),
    // QEMU's tree and the test initramfs.
    Case {
        loader: Loader::UBootFit,
        own_dtb: true,
        ..linux_case("linux-fit-from-disk", Check::Linux)
    },
    // Five draws from some 480 slots of 1 GiB: two collisions have odds near 1 in 5000.
    Case {
        boots: 5,
        ..linux_case("linux-kaslr-5-boots", Check::LinuxDistinct(4))
    },
    Case {
        boots: 2,
        append: "console=ttyAMA0 shim.verbose panic=-1 nokaslr",
        ..linux_case("linux-nokaslr", Check::LinuxSame)
    },
    // The ARMv8 SHA-256 instructions where ID_AA64ISAR0_EL1 has them: QEMU's
    // cortex-a72 has them (and, unlike `max`, no RNDR).
    Case {
        cpu: Some("cortex-a72"),
        ..case("sha256-armv8-a72", Check::Hashed("armv8-sha256"))
    },
    // The code without them (sha256_neon.S), which CPUs without the instructions run
    // (the Pi 4's; every QEMU arm64 model has them): `shim.sha256=portable`.
    Case {
        append: "shim.verbose shim.sha256=portable",
        ..case("sha256-neon-forced", Check::Hashed("neon"))
    },
    // No kaslr-seed or rng-seed from QEMU and no RNDR: only the counter.
    Case {
        cpu: Some("cortex-a72"),
        machine_opts: "dtb-randomness=off",
        boots: 2,
        ..case("counter-only", Check::Weak { fixed: false })
    },
    Case {
        cpu: Some("cortex-a72"),
        machine_opts: "dtb-randomness=off",
        boots: 2,
        append: "shim.verbose shim.weak=fixed",
        ..case("counter-only-weak-fixed", Check::Weak { fixed: true })
    },
    // The container stored and as a gzip member (`--compress`), besides zlib.
    Case {
        compress: Compress::None,
        ..case("compress-none", Check::Ok)
    },
    Case {
        compress: Compress::Gzip,
        ..case("compress-gzip", Check::Ok)
    },
    Case {
        compress: Compress::Lz4,
        ..case("compress-lz4", Check::Ok)
    },
    // No kaslr-seed from QEMU (dtb-randomness=off) and no RNDR (cortex-a72): only the
    // seed the shim hands over can make Linux randomize itself.
    Case {
        cpu: Some("cortex-a72"),
        machine_opts: "dtb-randomness=off",
        ..linux_case("linux-no-seed", Check::LinuxKaslr)
    },
    Case {
        payload: Payload::LinuxImageGz,
        corrupt: true,
        ..linux_case("linux-corrupt-gz", Check::Refused)
    },
    // Fault injection: each ends in one `shim: error:` line and a halt, or a boot.
    // (A tree without a memory node is host-tested only: QEMU and U-Boot both put
    // one back into any tree they are given.)
    Case {
        mem: residue::MEM,
        machine_opts: "dtb-randomness=off",
        tree: Some(residue::Tree::ShortKaslrSeed),
        ..case("fault-short-kaslr-seed", Check::Ok)
    },
    Case {
        append: GARBAGE_CMDLINE,
        ..case("fault-garbage-cmdline", Check::Ok)
    },
    // A tree that names no console: the shim's line still reaches the board's UART,
    // the one xtask wrote into the image.
    Case {
        mem: residue::MEM,
        machine_opts: "dtb-randomness=off",
        tree: Some(residue::Tree::NoStdoutPath),
        append: "shim.verbose shim.bogus",
        ..case("fault-no-stdout-path", Check::Error("bad command line"))
    },
    // What a loader that leaves junk in x1 gives: refused (out of RAM), said, and the
    // shim chooses.
    Case {
        append: "shim.verbose shim.offset=0xdeadbeef000",
        ..case("fault-junk-offset", Check::Ok)
    },
    // Nothing secret left behind: the firmware's kaslr-seed, planted in the tree, has
    // no copy anywhere in RAM when an ELF payload runs, nor when a kernel is entered
    // (MMU off: what memory holds, not what the caches do), at EL1 and at EL2.
    residue_case("residue-elf", Payload::Demo),
    // The one image on other boards' QEMU models, with Debian's trees for them: the
    // shim and the payload find the console UART from stdout-path (the RPi 4's aux
    // mini UART, the i.MX 8M Plus's UART2: both QEMU's second serial port). raspi4b
    // has no PSCI: the payload says so and parks.
    board_case("rpi4-raspi4b", &shim_boards::RPI4),
    board_case("imx8mp-evk", &shim_boards::IMX8MP_EVK),
    // An incomplete image on those boards: the entry code's one line on the UART
    // xtask wrote for the board (the mini UART, a 16550 with 32-bit registers; the
    // i.MX UART), before any device tree is read.
    Case {
        cut: Some(Cut::Code),
        ..board_case_checked(
            "rpi4-fault-cut-in-code",
            &shim_boards::RPI4,
            Check::Error("image is incomplete"),
        )
    },
    Case {
        cut: Some(Cut::Code),
        ..board_case_checked(
            "imx8mp-evk-fault-cut-in-code",
            &shim_boards::IMX8MP_EVK,
            Check::Error("image is incomplete"),
        )
    },
    // Debian's U-Boot for the Pi (rpi_arm64) started as the Pi's firmware starts it,
    // with Debian's tree, finds boot.scr on the SD card (`cargo xtask pack --board
    // rpi4`), which loads the shim at kernel_addr_r 0x80000; booti moves it to 2 MiB
    // and hands on the firmware's tree (${fdt_addr}).
    Case {
        loader: Loader::UBootScript,
        ..board_case("rpi4-u-boot-sd", &shim_boards::RPI4)
    },
    residue_case("residue-linux-el1", Payload::ResidueScanner),
    Case {
        el2: true,
        ..residue_case("residue-linux-el2", Payload::ResidueScanner)
    },
];

/// x86_64: the payload exits QEMU through isa-debug-exit (status 33 after `payload: ok`).
const X86_64_CASES: &[Case] = &[
    Case {
        mem: "512M",
        ..case("direct-512m", Check::Ok)
    },
    Case {
        mem: "3G",
        ..case("direct-3g", Check::Ok)
    },
    // RAM above 4 GiB (q35 keeps 2 GiB below the PCI hole): the identity map and the
    // slots reach it.
    Case {
        mem: "6G",
        ..case("direct-6g", Check::Ok)
    },
    Case {
        append: "shim.verbose nokaslr",
        boots: 3,
        ..case("nokaslr-3-boots", Check::SamePlacement)
    },
    // 3 GiB: 1534 slots, so two physical collisions in ten draws are rare.
    Case {
        boots: 10,
        mem: "3G",
        ..case("kaslr-10-boots", Check::Distinct { pairs: 9, pas: 9 })
    },
    Case {
        corrupt: true,
        ..case("corrupt-payload", Check::Refused)
    },
    // mem= leaves only the first 2 MiB, which the first MiB and the shim fill.
    Case {
        append: "shim.verbose mem=2M",
        ..case("no-room", Check::Error("cannot place payload"))
    },
    // GRUB's `linux` on i386-pc: the 32-bit entry with GRUB's boot_params and e820.
    Case {
        loader: Loader::Grub,
        ..case("grub-linux", Check::Ok)
    },
    // Debian's kexec-tools from a Debian kernel: the 64-bit entry.
    Case {
        loader: Loader::Kexec,
        ..case("kexec", Check::Ok)
    },
    // e820 faults through kexec-tools: reserved holes at every 2 MiB of 64-192 MiB
    // overlapping the RAM entry, and a RAM entry inside another; with mem=192M the only
    // free slots lie below 64 MiB.
    Case {
        loader: Loader::Kexec,
        boots: 3,
        append: "shim.verbose mem=192M",
        e820: Some(E820Edit::Overlaps),
        ..case(
            "kexec-e820-overlaps",
            Check::ClearOf {
                edit: E820Edit::Overlaps,
                says: None,
            },
        )
    },
    // 256 holes: past 128 entries kexec-tools writes a SETUP_E820_EXT node, and RAM
    // splits into more ranges than the shim's map holds: it keeps the largest.
    Case {
        loader: Loader::Kexec,
        boots: 3,
        append: "shim.verbose mem=576M",
        e820: Some(E820Edit::Many),
        ..case(
            "kexec-e820-256-holes",
            Check::ClearOf {
                edit: E820Edit::Many,
                says: Some("more ranges than"),
            },
        )
    },
    // The payload's SHA-256 with the SHA extensions where CPUID has them (QEMU's TCG
    // emulates them for `max`), and in portable code on CPU models without: Nehalem
    // has SSSE3 and SSE4.1 but not SHA, qemu64 none of the three.
    // No seed from the loader and, on qemu64, no RDRAND or RDSEED: only the counter.
    Case {
        cpu: Some("qemu64"),
        boots: 2,
        ..case("counter-only", Check::Weak { fixed: false })
    },
    Case {
        cpu: Some("qemu64"),
        boots: 2,
        append: "shim.verbose shim.weak=fixed",
        ..case("counter-only-weak-fixed", Check::Weak { fixed: true })
    },
    // The container stored and as a gzip member (`--compress`), besides zlib.
    Case {
        compress: Compress::None,
        ..case("compress-none", Check::Ok)
    },
    Case {
        compress: Compress::Gzip,
        ..case("compress-gzip", Check::Ok)
    },
    Case {
        compress: Compress::Lz4,
        ..case("compress-lz4", Check::Ok)
    },
    Case {
        cpu: Some("max"),
        ..case("sha256-sha-ni", Check::Hashed("sha-ni"))
    },
    // Without the SHA extensions, SSE2 (arch/x86-sha256/src/sha256_sse2.S): Nehalem
    // has SSSE3 and SSE4.2, qemu64 neither.
    Case {
        cpu: Some("Nehalem"),
        ..case("sha256-sse2-nehalem", Check::Hashed("sse2"))
    },
    Case {
        cpu: Some("qemu64"),
        ..case("sha256-sse2-qemu64", Check::Hashed("sse2"))
    },
    Case {
        cpu: Some("max"),
        append: "shim.verbose shim.sha256=portable",
        ..case("sha256-sse2-forced", Check::Hashed("sse2"))
    },
    // Debian's cloud amd64 kernel (LZ4) as the payload: the shim decodes, places and
    // relocates it and enters startup_64, through each loader, with the test initramfs.
    linux_x86_case("linux-direct", Check::Linux),
    // The same kernel checked without the SHA extensions (the digest covers its 50 MB
    // laid out), as on the many x86 CPUs that lack them.
    Case {
        append: "console=ttyS0 earlyprintk=serial shim.verbose panic=-1 shim.sha256=portable",
        ..linux_x86_case("linux-sha256-sse2", Check::LinuxHashed("sse2"))
    },
    Case {
        loader: Loader::Grub,
        ..linux_x86_case("linux-grub", Check::Linux)
    },
    Case {
        loader: Loader::Kexec,
        ..linux_x86_case("linux-kexec", Check::Linux)
    },
    // q35 with 6 GiB keeps 2 GiB below the PCI hole and 4 GiB above 4 GiB: about two
    // thirds of the slots are high, so eight boots all low has odds near 1 in 6,500
    // (five, 1 in 250, did happen once in CI).
    Case {
        boots: 8,
        mem: "6G",
        ..linux_x86_case("linux-kaslr-8-boots", Check::LinuxX86Random(4))
    },
    Case {
        boots: 2,
        append: "console=ttyS0 earlyprintk=serial shim.verbose panic=-1 nokaslr",
        ..linux_x86_case("linux-nokaslr", Check::LinuxX86Fixed)
    },
    Case {
        corrupt: true,
        ..linux_x86_case("linux-corrupt", Check::Refused)
    },
    // A zstd kernel (bookworm-backports' 6.12): no decoder in the shim, so Linux's own
    // decompressor runs from the shim's slot and places the kernel itself.
    Case {
        payload: Payload::LinuxBzImageZstd,
        ..linux_x86_case("linux-zstd-own-decompressor", Check::Linux)
    },
];

/// Both architectures: the image cut short, as a loader that read only part of it would
/// leave it. Cut in the shim's own code or relocations, one line comes from the entry
/// code (arm64: on the board's early UART, virt's PL011 as xtask writes it into the
/// image; x86: straight to COM1, before relocation); cut in the container, one line
/// from the container checks.
const CUT_CASES: &[Case] = &[
    Case {
        cut: Some(Cut::Code),
        ..case("fault-cut-in-code", Check::Error("image is incomplete"))
    },
    Case {
        cut: Some(Cut::Relocations),
        ..case(
            "fault-cut-in-relocations",
            Check::Error("image is incomplete"),
        )
    },
    Case {
        cut: Some(Cut::ContainerHeader),
        ..case(
            "fault-cut-in-container-header",
            Check::Error("bad payload container"),
        )
    },
    Case {
        cut: Some(Cut::Payload),
        ..case("fault-cut-in-payload", Check::Error("payload"))
    },
];

/// The matrix of each architecture: its own cases, then the shared ones.
fn matrix(arch: Arch) -> impl Iterator<Item = &'static Case> {
    let own = match arch {
        Arch::Aarch64 => AARCH64_CASES,
        Arch::X86_64 => X86_64_CASES,
    };
    own.iter().chain(CUT_CASES)
}

/// Whether `name` is selected by the `--case` filters (all are without filters).
fn selected(filters: &[String], name: &str) -> bool {
    filters.is_empty()
        || filters
            .iter()
            .any(|f| name == f || name.contains(f.as_str()))
}

pub fn run(args: &TestArgs) -> Result<()> {
    let mut results: Vec<(String, bool)> = Vec::new();
    let mut record = |name: String, outcome: Result<()>| {
        let pass = match outcome {
            Ok(()) => true,
            Err(why) => {
                eprintln!("xtask: case {name}: {why:#}");
                false
            }
        };
        println!("case {name}: {}", if pass { "pass" } else { "FAIL" });
        results.push((name, pass));
    };
    let filters = &args.cases;

    if !args.qemu_only && selected(filters, "host-tests") {
        // The board DTB and Debian x86 kernel tests skip without their directories;
        // here they must run, so a download that fails fails the step.
        let outcome = dtbs::all()
            .context("getting the boards' device trees for the host tests")
            .and_then(|dtbs| {
                let x86 = linux_x86::inputs()
                    .context("getting Debian's x86_64 kernel for the host tests")?;
                let mut cmd = cargo();
                cmd.args([
                    "test",
                    "-p",
                    "shim-common",
                    "-p",
                    "shim-x86-sha256",
                    "-p",
                    "shim-bench",
                    "-p",
                    "xtask",
                ])
                .env(dtbs::ENV, dtbs)
                .env(linux_x86::ENV, x86);
                exec(&mut cmd)
            });
        record("host-tests".into(), outcome);
    }
    // shim-common's lints (lib.rs): no unwrap, panic, indexing or unchecked
    // arithmetic in the code that reads firmware data and payloads.
    if !args.qemu_only && selected(filters, "lint") {
        let mut cmd = cargo();
        cmd.args([
            "clippy",
            "-p",
            "shim-common",
            "--lib",
            "--",
            "-D",
            "warnings",
        ]);
        record("lint".into(), exec(&mut cmd));
    }
    if !args.host_only {
        let arches = match args.arch {
            Some(arch) => vec![arch],
            None => Arch::value_variants().to_vec(),
        };
        for arch in arches {
            // Downloaded and built once, for every Linux case of this architecture.
            let mut linux_inputs: Option<Result<linux::Inputs, String>> = None;
            let target = arch.target();
            let cases: Vec<&Case> = matrix(arch)
                .filter(|c| selected(filters, &format!("{}/{}", target.name, c.name)))
                .collect();
            if cases.is_empty() {
                continue;
            }
            if let Err(why) = deps::ensure_qemu(target) {
                record(format!("{}/deps", target.name), Err(why));
                continue;
            }
            // Each image is built once, for every case that boots it, to a file of its
            // own: what it packs, how, and the board whose early UART it names.
            let mut images: HashMap<ImageKey, Result<PathBuf, String>> = HashMap::new();
            for case in cases {
                let name = format!("{}/{}", target.name, case.name);
                eprintln!("\nxtask: ===== case {name} =====");
                let linux = if matches!(case.payload, Payload::Demo | Payload::ResidueScanner)
                    && !case.initrd
                {
                    None
                } else {
                    Some(
                        linux_inputs
                            .get_or_insert_with(|| {
                                match arch {
                                    Arch::Aarch64 => linux::inputs(),
                                    Arch::X86_64 => linux::x86_inputs(),
                                }
                                .map_err(|e| format!("{e:#}"))
                            })
                            .as_ref()
                            .map_err(|why| anyhow!("preparing the Linux inputs failed: {why}")),
                    )
                };
                let linux = match linux.transpose() {
                    Ok(linux) => linux,
                    Err(why) => {
                        record(name, Err(why));
                        continue;
                    }
                };
                let image = images
                    .entry(ImageKey::of(case))
                    .or_insert_with(|| build_image(arch, case, linux));
                let timeout =
                    Duration::from_secs(args.timeout.or(case.timeout).unwrap_or(DEFAULT_TIMEOUT));
                let outcome = match image {
                    Ok(image) => run_case(arch, case, image, linux, timeout),
                    Err(why) => Err(anyhow!("building the image failed: {why}")),
                };
                record(name, outcome);
            }
        }
    }

    // The fuzz targets last: their seeds come from what the cases above downloaded
    // and built (board trees, Debian's kernel, the demo payloads).
    if !args.qemu_only {
        let names: Vec<&str> = fuzz::TARGETS
            .iter()
            .copied()
            .filter(|t| selected(filters, &format!("fuzz/{t}")))
            .collect();
        if !names.is_empty() && args.fuzz_seconds == 0 {
            println!("fuzz: {} targets left out (--fuzz-seconds 0)", names.len());
        } else if !names.is_empty() {
            eprintln!(
                "\nxtask: ===== fuzz: {} s per target =====",
                args.fuzz_seconds
            );
            match fuzz::prepare(&names) {
                Ok(()) => {
                    for name in names {
                        let outcome = fuzz::run_target(name, args.fuzz_seconds).map(|stats| {
                            println!("fuzz/{name}: {stats}");
                        });
                        record(format!("fuzz/{name}"), outcome);
                    }
                }
                Err(why) => record("fuzz/prepare".into(), Err(why)),
            }
        }
    }

    if results.is_empty() {
        bail!("no case matches --case {}", filters.join(" --case "));
    }
    let passed = results.iter().filter(|(_, pass)| *pass).count();
    let failed = results.len() - passed;
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        bail!("{failed} of {} cases failed", results.len());
    }
    Ok(())
}

/// Builds the image a case boots: the demo payload, or Debian's kernel.
fn build_image(arch: Arch, case: &Case, linux: Option<&linux::Inputs>) -> Result<PathBuf, String> {
    let (payload, stem) = match (case.payload, linux) {
        (Payload::Demo, _) => (None, Some("shim")),
        (Payload::ResidueScanner, _) => (
            Some(residue::scanner_image().map_err(|e| format!("{e:#}"))?),
            Some("shim-residue"),
        ),
        (Payload::LinuxImage, Some(l)) => (Some(l.image.clone()), Some("shim-linux-image")),
        (Payload::LinuxImageGz, Some(l)) => (Some(l.image_gz.clone()), Some("shim-linux-gz")),
        (Payload::LinuxBzImage, Some(l)) => (Some(l.image.clone()), Some("shim-linux-bzimage")),
        (Payload::LinuxBzImageZstd, Some(_)) => (
            Some(crate::linux_x86::backports_bzimage().map_err(|e| format!("{e:#}"))?),
            Some("shim-linux-bzimage-zstd"),
        ),
        (_, None) => return Err("no Linux inputs".into()),
    };
    let output = stem.map(|stem| {
        let corrupt = if case.corrupt { "-corrupt" } else { "" };
        let compress = match case.compress {
            Compress::Zlib => String::new(),
            other => format!("-{other:?}").to_lowercase(),
        };
        let board = case
            .board
            .map(|b| format!("-{}", b.name))
            .unwrap_or_default();
        target_dir()
            .join("xtask")
            .join(arch.target().name)
            .join(format!("{stem}{corrupt}{compress}{board}.img"))
    });
    let build = BuildArgs {
        arch,
        payload,
        corrupt_payload: case.corrupt,
        output,
        debug: false,
        compress: case.compress,
        board: case.board.map(|b| b.name.to_string()),
    };
    let path = image::build(&build)
        .map(|built| built.path)
        .map_err(|e| format!("{e:#}"))?;
    // The container is packed as the case asks (where `--compress` applies).
    if matches!(case.payload, Payload::Demo | Payload::LinuxImage) {
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let found = crate::inspect::shim_container(&bytes).map(|p| p.compression);
        if found != Some(case.compress.compression()) {
            return Err(format!(
                "{} holds a {found:?} container, not the {:?} asked for",
                path.display(),
                case.compress
            ));
        }
    }
    Ok(path)
}

fn run_case(
    arch: Arch,
    case: &Case,
    image: &Path,
    linux: Option<&linux::Inputs>,
    timeout: Duration,
) -> Result<()> {
    let target = arch.target();
    let initrd = match (case.initrd, linux) {
        (true, Some(l)) => Some(Initrd::of(&l.initrd)?),
        (true, None) => bail!("the case needs the Linux test initramfs"),
        (false, _) => None,
    };
    let cut_image;
    let image = match case.cut {
        Some(cut) => {
            let bytes = std::fs::read(image)?;
            let elf_path = image.with_file_name("shim.elf");
            let elf = std::fs::read(&elf_path)
                .with_context(|| format!("reading {}", elf_path.display()))?;
            // x86: the protected-mode part follows the setup sectors (boot.rst).
            let base = match arch {
                Arch::Aarch64 => 0,
                Arch::X86_64 => (usize::from(bytes[0x1f1].max(4)) + 1) * 512,
            };
            let at = cut.offset(&bytes, &elf, base)?;
            eprintln!(
                "xtask: the image cut at {at:#x} of {:#x} ({cut:?})",
                bytes.len()
            );
            cut_image = image.with_file_name(format!("shim-cut-{cut:?}.img").to_lowercase());
            std::fs::write(&cut_image, &bytes[..at])?;
            cut_image.as_path()
        }
        None => image,
    };
    let planted = case.tree.map(residue::dtb).transpose()?;
    let board = case.board.unwrap_or(target.board);
    let qemu = qemu::board_qemu(board)?;
    let debian_dtb = match case.board {
        Some(board) => dtbs::of(board)?,
        None => None,
    };
    let dumped = target_dir()
        .join("xtask")
        .join("u-boot-disk")
        .join("virt.dtb");
    let mut machine = Machine {
        target,
        board,
        qemu,
        loader: case.loader,
        mem: case.mem,
        smp: 1,
        el2: case.el2,
        append: case.append,
        cpu: case.cpu.or(qemu.cpu),
        machine_opts: case.machine_opts,
        dtb: planted.as_deref().or(debian_dtb.as_deref()),
        boot_dtb: None,
        initrd,
        e820: case.e820,
    };
    if case.own_dtb {
        std::fs::create_dir_all(dumped.parent().unwrap_or(&dumped))?;
        machine.dump_dtb(&dumped)?;
        machine.boot_dtb = Some(&dumped);
    }
    let expect = match case.check {
        Check::Refused => Expect::DigestMismatch,
        Check::Error(_) => Expect::ShimError,
        Check::Linux
        | Check::LinuxEl2
        | Check::LinuxDistinct(_)
        | Check::LinuxSame
        | Check::LinuxKaslr
        | Check::LinuxHashed(_)
        | Check::LinuxX86Random(_)
        | Check::LinuxX86Fixed => Expect::Linux,
        Check::Ok
        | Check::SamePlacement
        | Check::Distinct { .. }
        | Check::Placed { .. }
        | Check::Residue
        | Check::Hashed(_)
        | Check::ClearOf { .. }
        | Check::Weak { .. }
        | Check::Console { parked: false } => Expect::Ok,
        Check::Console { parked: true } => Expect::OkParked,
    };
    let summary = qemu::boot_many(&machine, image, expect, case.boots, timeout)?;
    eprintln!("xtask: {}", summary.line());
    check(case.check, &summary)
}

/// Whether a case's boots, all judged already, meet its check.
fn check(want: Check, s: &Summary) -> Result<()> {
    if s.failed > 0 {
        bail!("{} of {} boots failed", s.failed, s.failed + s.passed);
    }
    match want {
        Check::Ok | Check::Refused | Check::Linux => Ok(()),
        Check::Console { .. } => {
            if s.shim_placed != s.passed {
                bail!(
                    "expected the shim's `placed` line on the console every boot, {} of {} had it",
                    s.shim_placed,
                    s.passed
                );
            }
            Ok(())
        }
        Check::Hashed(engine) | Check::LinuxHashed(engine) => {
            if s.sha256.len() as u32 != s.passed || s.sha256.iter().any(|name| name != engine) {
                bail!(
                    "expected the shim to hash with {engine} every boot, it said: {}",
                    s.sha256.join(" ")
                );
            }
            // Debian's kernels have zero runs (arm64's Image 1.5 MiB, x86's laid out
            // 15.6 MiB): the check reads them rather than hashing them.
            let linux = matches!(want, Check::LinuxHashed(_));
            if linux && s.zeros.iter().any(|&z| z < 1 << 20) {
                bail!(
                    "expected the check to read at least 1 MiB of zero runs, it said zeros={:?}",
                    s.zeros
                );
            }
            Ok(())
        }
        Check::Weak { fixed } => {
            let want = match fixed {
                true => "shim.weak=fixed and no strong entropy source",
                false => "warning: no strong entropy source, only the counter",
            };
            let said = s.shim_said.iter().filter(|b| b.contains(want)).count() as u32;
            if said != s.passed {
                bail!(
                    "expected \"{want}\" every boot, {said} of {} said it",
                    s.passed
                );
            }
            // In numbers too: boot-info credits no bits to a counter.
            if s.payload_bits.len() as u32 != s.passed || s.payload_bits.iter().any(|&b| b != 0) {
                bail!(
                    "expected kaslr_bits=0 in every payload's boot-info, saw {:?}",
                    s.payload_bits
                );
            }
            if fixed && s.pairs.len() != 1 {
                bail!(
                    "expected one placement, saw {}: {:x?}",
                    s.pairs.len(),
                    s.pairs
                );
            }
            Ok(())
        }
        Check::ClearOf { edit, says } => {
            let holes = edit.holes();
            if let Some(pa) = s.pas.iter().find(|pa| holes.contains(pa)) {
                bail!(
                    "the payload was placed at {pa:#x}, among the reserved holes {:#x}-{:#x}",
                    holes.start,
                    holes.end
                );
            }
            if s.pas.len() as u32 > s.passed || s.pas.is_empty() {
                bail!("no payload placement seen");
            }
            if let Some(want) = says {
                if s.shim_said.iter().filter(|b| b.contains(want)).count() as u32 != s.passed {
                    bail!("expected the shim to say \"{want}\" every boot");
                }
            }
            Ok(())
        }
        Check::Residue => {
            if s.residue_scans != s.passed {
                bail!(
                    "expected every payload to search RAM (residue-scan=), {} of {} did",
                    s.residue_scans,
                    s.passed
                );
            }
            Ok(())
        }
        Check::LinuxEl2 => {
            if s.el2 != s.passed {
                bail!(
                    "expected every kernel to start at EL2, {} of {} did",
                    s.el2,
                    s.passed
                );
            }
            Ok(())
        }
        Check::LinuxDistinct(want) => {
            if s.kernel_code.len() < want {
                bail!(
                    "expected at least {want} distinct Kernel code addresses, saw {}: {}",
                    s.kernel_code.len(),
                    kernel_code(s)
                );
            }
            // The virtual base is drawn apart from the physical one: it varies too.
            if s.text.len() < 2 {
                bail!(
                    "expected the kernel's _stext to vary, saw {} distinct: {:x?}",
                    s.text.len(),
                    s.text
                );
            }
            Ok(())
        }
        Check::LinuxSame => {
            if s.kernel_code.len() != 1 {
                bail!(
                    "expected one Kernel code address, saw {}: {}",
                    s.kernel_code.len(),
                    kernel_code(s)
                );
            }
            if s.text.len() != 1 {
                bail!(
                    "expected one _stext address, saw {}: {:x?}",
                    s.text.len(),
                    s.text
                );
            }
            if s.kaslr_disabled != s.passed {
                bail!(
                    "expected every kernel to say `KASLR disabled`, {} of {} did",
                    s.kaslr_disabled,
                    s.passed
                );
            }
            Ok(())
        }
        Check::LinuxX86Random(distinct) => {
            check(Check::LinuxDistinct(distinct), s)?;
            if s.kaslr_enabled != s.passed {
                bail!(
                    "expected every kernel to randomize its memory layout (Memory KASLR), {} of {} did",
                    s.kaslr_enabled,
                    s.passed
                );
            }
            if !s.kernel_code.iter().any(|&a| a >= 1 << 32) {
                bail!("expected a kernel above 4 GiB among {}", kernel_code(s));
            }
            Ok(())
        }
        Check::LinuxX86Fixed => {
            if s.kernel_code.len() != 1 || s.text.len() != 1 {
                bail!(
                    "expected one Kernel code and one _stext, saw {} and {}: {}",
                    s.kernel_code.len(),
                    s.text.len(),
                    kernel_code(s)
                );
            }
            if s.kaslr_enabled != 0 {
                bail!("expected no kernel to randomize its memory layout (KASLR_FLAG clear)");
            }
            Ok(())
        }
        Check::LinuxKaslr => {
            if s.kaslr_enabled != s.passed {
                bail!(
                    "expected every kernel to say `KASLR enabled`, {} of {} did",
                    s.kaslr_enabled,
                    s.passed
                );
            }
            Ok(())
        }
        Check::Error(text) => {
            if s.errors.len() as u32 != s.passed || !s.errors.iter().all(|e| e.contains(text)) {
                bail!(
                    "expected `shim: error: ...{text}...` every boot, saw {:?}",
                    s.errors
                );
            }
            Ok(())
        }
        Check::Placed { pa, va } => {
            if s.pairs.iter().any(|&pair| pair != (pa, va)) {
                bail!("expected every boot at ({pa:#x},{va:#x}), saw {}", pairs(s));
            }
            Ok(())
        }
        Check::SamePlacement => {
            if s.pairs.len() != 1 {
                bail!(
                    "expected one placement, saw {} (pa,va) pairs: {}",
                    s.pairs.len(),
                    pairs(s)
                );
            }
            Ok(())
        }
        Check::Distinct {
            pairs: want_pairs,
            pas,
        } => {
            if s.pairs.len() < want_pairs || s.pas.len() < pas {
                bail!(
                    "expected at least {want_pairs} distinct (pa,va) pairs and {pas} distinct pa, \
                     saw {} and {}: {}",
                    s.pairs.len(),
                    s.pas.len(),
                    pairs(s)
                );
            }
            Ok(())
        }
    }
}

fn kernel_code(s: &Summary) -> String {
    s.kernel_code
        .iter()
        .map(|a| format!("{a:#x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn pairs(s: &Summary) -> String {
    s.pairs
        .iter()
        .map(|(pa, va)| format!("({pa:#x},{va:#x})"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(placements: &[(u64, u64)], failed: u32) -> Summary {
        let mut s = Summary {
            passed: placements.len() as u32,
            failed,
            ..Summary::default()
        };
        for &(pa, va) in placements {
            s.pairs.insert((pa, va));
            s.pas.insert(pa);
            s.vas.insert(va);
        }
        s
    }

    #[test]
    fn checks() {
        assert!(check(Check::Ok, &summary(&[(1, 2)], 0)).is_ok());
        assert!(check(Check::Ok, &summary(&[(1, 2)], 1)).is_err());
        assert!(check(Check::SamePlacement, &summary(&[(1, 2), (1, 2)], 0)).is_ok());
        assert!(check(Check::SamePlacement, &summary(&[(1, 2), (1, 3)], 0)).is_err());
        let distinct = Check::Distinct { pairs: 3, pas: 3 };
        assert!(check(distinct, &summary(&[(1, 1), (2, 1), (3, 1)], 0)).is_ok());
        assert!(check(distinct, &summary(&[(1, 1), (1, 2), (3, 3)], 0)).is_err());
    }

    #[test]
    fn hashed_checks() {
        let hashed = |names: &[&str]| Summary {
            passed: names.len() as u32,
            sha256: names.iter().map(|n| n.to_string()).collect(),
            ..Summary::default()
        };
        assert!(check(Check::Hashed("sha-ni"), &hashed(&["sha-ni", "sha-ni"])).is_ok());
        assert!(check(Check::Hashed("sha-ni"), &hashed(&["sha-ni", "portable"])).is_err());
        assert!(check(Check::Hashed("portable"), &hashed(&["none"])).is_err());
        let mut short = hashed(&["portable"]);
        short.passed = 2;
        assert!(check(Check::Hashed("portable"), &short).is_err());
        // A Debian kernel's check reads its zero runs: zeros= of at least 1 MiB.
        let linux = |zeros: &[u64]| Summary {
            zeros: zeros.to_vec(),
            ..hashed(&vec!["neon"; zeros.len()])
        };
        assert!(check(Check::LinuxHashed("neon"), &linux(&[1583424, 1583424])).is_ok());
        assert!(check(Check::LinuxHashed("neon"), &linux(&[1583424, 0])).is_err());
        assert!(check(Check::Hashed("neon"), &linux(&[0])).is_ok());
    }

    #[test]
    fn linux_checks() {
        // Each boot's _stext differs from its Kernel code by one fixed amount.
        let linux = |codes: &[u64], kaslr: (u32, u32), el2: u32| {
            let mut s = summary(&[], 0);
            s.passed = codes.len() as u32;
            s.kernel_code.extend(codes);
            s.text
                .extend(codes.iter().map(|c| c + 0xffff_8000_0000_0000));
            (s.kaslr_enabled, s.kaslr_disabled) = kaslr;
            s.el2 = el2;
            s
        };
        assert!(check(Check::Linux, &linux(&[1], (1, 0), 0)).is_ok());
        assert!(check(Check::LinuxEl2, &linux(&[1], (1, 0), 1)).is_ok());
        assert!(check(Check::LinuxEl2, &linux(&[1], (1, 0), 0)).is_err());
        let five = [1, 2, 3, 4, 4];
        assert!(check(Check::LinuxDistinct(4), &linux(&five, (5, 0), 0)).is_ok());
        assert!(check(Check::LinuxDistinct(4), &linux(&[1, 2, 3, 3, 3], (5, 0), 0)).is_err());
        let mut fixed_text = linux(&five, (5, 0), 0);
        fixed_text.text = [0xffff_8000_0801_0000].into();
        assert!(check(Check::LinuxDistinct(4), &fixed_text).is_err());
        let mut moved_text = linux(&[7, 7], (0, 2), 0);
        moved_text.text.insert(1);
        assert!(check(Check::LinuxSame, &moved_text).is_err());
        assert!(check(Check::LinuxSame, &linux(&[7, 7], (0, 2), 0)).is_ok());
        assert!(check(Check::LinuxSame, &linux(&[7, 8], (0, 2), 0)).is_err());
        assert!(check(Check::LinuxSame, &linux(&[7, 7], (1, 1), 0)).is_err());
        assert!(check(Check::LinuxKaslr, &linux(&[7], (1, 0), 0)).is_ok());
        assert!(check(Check::LinuxKaslr, &linux(&[7], (0, 1), 0)).is_err());
        // A failed boot fails every check.
        let mut failed = linux(&[1], (1, 0), 1);
        failed.failed = 1;
        assert!(check(Check::Linux, &failed).is_err());
    }

    #[test]
    fn case_filters() {
        assert!(selected(&[], "aarch64/linux-direct-image"));
        let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(selected(&f(&["linux"]), "aarch64/linux-nokaslr"));
        assert!(!selected(&f(&["linux"]), "aarch64/nokaslr-3-boots"));
        assert!(selected(
            &f(&["aarch64/nokaslr-3-boots"]),
            "aarch64/nokaslr-3-boots"
        ));
        assert!(selected(&f(&["x", "host-tests"]), "host-tests"));
        let linux_cases: Vec<_> = AARCH64_CASES
            .iter()
            .filter(|c| selected(&f(&["linux-u-boot"]), &format!("aarch64/{}", c.name)))
            .map(|c| c.name)
            .collect();
        assert_eq!(linux_cases, ["linux-u-boot", "linux-u-boot-el2"]);
    }

    #[test]
    fn linux_cases_have_their_inputs() {
        let linux = |c: &&Case| matches!(c.payload, Payload::LinuxImage | Payload::LinuxImageGz);
        for case in AARCH64_CASES.iter().filter(linux) {
            assert!(case.initrd, "{}", case.name);
            assert!(case.append.contains("console=ttyAMA0"), "{}", case.name);
            assert!(case.append.contains("panic=-1"), "{}", case.name);
            assert!(case.timeout.is_some(), "{}", case.name);
        }
        for case in X86_64_CASES.iter() {
            let kernel = matches!(
                case.payload,
                Payload::LinuxBzImage | Payload::LinuxBzImageZstd
            );
            assert!(kernel || case.payload == Payload::Demo, "{}", case.name);
            assert_eq!(case.initrd, kernel, "{}", case.name);
            if kernel {
                assert!(case.append.contains("console=ttyS0"), "{}", case.name);
                assert!(case.append.contains("panic=-1"), "{}", case.name);
                assert!(case.timeout.is_some(), "{}", case.name);
            }
        }
        for case in AARCH64_CASES
            .iter()
            .filter(|c| matches!(c.check, Check::Residue))
        {
            assert!(
                case.tree == Some(residue::Tree::PlantedSeed) && case.mem == residue::MEM,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn board_cases_boot_their_boards() {
        let boards: Vec<_> = AARCH64_CASES
            .iter()
            .filter_map(|c| c.board.map(|b| (c.name, b.name, c.mem, c.check)))
            .map(|(case, board, mem, check)| (case, board, mem, format!("{check:?}")))
            .collect();
        assert_eq!(
            boards,
            [
                (
                    "rpi4-raspi4b",
                    "rpi4",
                    "2G",
                    "Console { parked: true }".into()
                ),
                (
                    "imx8mp-evk",
                    "imx8mp-evk",
                    "1G",
                    "Console { parked: false }".into()
                ),
                (
                    "rpi4-fault-cut-in-code",
                    "rpi4",
                    "2G",
                    "Error(\"image is incomplete\")".into()
                ),
                (
                    "imx8mp-evk-fault-cut-in-code",
                    "imx8mp-evk",
                    "1G",
                    "Error(\"image is incomplete\")".into()
                ),
                (
                    "rpi4-u-boot-sd",
                    "rpi4",
                    "2G",
                    "Console { parked: true }".into()
                ),
            ]
        );
        let mut s = Summary {
            passed: 2,
            shim_placed: 2,
            ..Summary::default()
        };
        assert!(check(Check::Console { parked: true }, &s).is_ok());
        s.shim_placed = 1;
        assert!(check(Check::Console { parked: false }, &s).is_err());
    }

    #[test]
    fn own_trees_go_to_loaders_that_hand_them_on() {
        let disk: Vec<_> = AARCH64_CASES
            .iter()
            .filter(|c| c.loader.packs())
            .map(|c| (c.name, c.own_dtb, c.initrd))
            .collect();
        assert_eq!(disk.len(), 6);
        assert!(disk.iter().any(|&(_, dtb, initrd)| dtb && initrd));
        assert!(disk.iter().any(|&(_, dtb, initrd)| !dtb && !initrd));
        for case in AARCH64_CASES.iter().chain(X86_64_CASES).chain(CUT_CASES) {
            assert!(!case.own_dtb || case.loader.packs(), "{}", case.name);
            // The loaders that pack boot boards with a U-Boot for their QEMU model.
            let board = case.board.unwrap_or(&shim_boards::QEMU_VIRT);
            let qemu = board.qemu.unwrap();
            assert!(
                !case.loader.packs() || qemu.uboot.is_some(),
                "{}",
                case.name
            );
            assert!(!(case.own_dtb && case.tree.is_some()), "{}", case.name);
        }
    }

    #[test]
    fn matrix_names_are_unique() {
        for arch in Arch::value_variants() {
            let mut names: Vec<_> = matrix(*arch).map(|c| c.name).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), matrix(*arch).count());
        }
    }
}
