//! `cargo xtask qemu`: builds the image and boots it in QEMU, directly (`-kernel`) or
//! through U-Boot's `booti` driven over QEMU's stdin, streaming the console, with a
//! timeout per boot; judges each boot by what the shim and the payload printed (for a
//! Linux payload: what the kernel and the test initramfs of linux.rs printed).

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use shim_boards::{Board, Medium, Qemu, UBootStart};

use crate::arch::Target;
use crate::console::{parse_line, Console, Event, Kernel, LinuxTest, Placed};
use crate::image::{self, BuildArgs, PayloadKind};
use crate::{announce, deps, disk, dtbs, firmware, pack};
use crate::{grub, kexec, linux};

/// How long the runner lets QEMU go on after a line that decides the boot...
const GRACE: Duration = Duration::from_secs(2);
/// ...and after `payload: ok`, for the payload to power the machine off.
const POWEROFF_GRACE: Duration = Duration::from_secs(10);
/// What U-Boot prints while it counts down to its default boot.
const AUTOBOOT: &str = "Hit any key to stop autoboot";
/// U-Boot's prompt, alone on the unfinished last line.
const PROMPT: &str = "=> ";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Loader {
    /// QEMU's own arm64 Image loader: `-kernel shim.img -append ...`.
    Direct,
    /// U-Boot as firmware: the image is preloaded and started with `booti`.
    UBoot,
    /// U-Boot as firmware and a FAT disk as the boot medium (virtio-blk): U-Boot's own
    /// distro boot finds boot.scr, which loads shim.img (and the initrd and tree) and
    /// `booti`s it, as `cargo xtask pack` wrote them.
    UBootScript,
    /// The same with `cargo xtask pack --fit`: boot.scr loads shim.fit and `bootm`s it.
    UBootFit,
    /// x86_64: GRUB from a BIOS rescue ISO boots the image with `linux` (32-bit entry).
    Grub,
    /// x86_64: a Debian Linux guest runs kexec-tools on the image (64-bit entry).
    Kexec,
}

impl Loader {
    /// The `--loader` spelling.
    pub fn name(self) -> String {
        self.to_possible_value()
            .map_or_else(|| format!("{self:?}"), |v| v.get_name().to_string())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Expect {
    /// The payload reports `payload: ok` and powers QEMU off.
    Ok,
    /// The payload reports `payload: ok`, then that it cannot power off (no /psci)
    /// and parks; the runner stops QEMU (boards without PSCI, e.g. raspi4b).
    OkParked,
    /// The shim reports `shim: payload digest mismatch` and no payload runs.
    DigestMismatch,
    /// The shim stops with a `shim: error: ...` line and no payload runs.
    ShimError,
    /// A Linux payload boots with the test initramfs (linux.rs): `linux-test: done`,
    /// the kernel powers QEMU off, /data.bin's digest is right, no `shim.` option
    /// reached /proc/cmdline, and "Kernel code" lies in the slot the shim reported.
    Linux,
    /// The same without the shim (the kernel booted by QEMU itself): every check but
    /// the slot and the command line's `shim.` options.
    LinuxNoShim,
}

#[derive(Args, Debug)]
pub struct QemuArgs {
    #[command(flatten)]
    pub build: BuildArgs,
    /// How the image is booted; each architecture has its own list (arch.rs).
    #[arg(long, value_enum, default_value = "direct")]
    pub loader: Loader,
    /// Guest memory, as QEMU's -m takes it [default: the board's, 1G for QEMU virt].
    #[arg(long)]
    pub mem: Option<String>,
    /// Guest CPUs, as QEMU's -smp takes them.
    #[arg(long, default_value_t = 1)]
    pub smp: u32,
    /// Start the guest at EL2 (virtualization=on).
    #[arg(long)]
    pub el2: bool,
    /// The kernel command line the shim sees.
    #[arg(long, default_value = "shim.verbose", allow_hyphen_values = true)]
    pub append: String,
    /// An initrd: QEMU's -initrd (direct), or preloaded at the firmware's ramdisk
    /// address and passed to `booti` (u-boot).
    #[arg(long, value_name = "FILE")]
    pub initrd: Option<PathBuf>,
    /// The QEMU CPU model [default: the architecture's, `max`]. Linux under TCG boots
    /// much faster with `max,pauth-impdef=on`.
    #[arg(long, value_name = "NAME")]
    pub cpu: Option<String>,
    /// More machine options, appended to `-machine virt[,virtualization=on]`, e.g.
    /// `dtb-randomness=off`.
    #[arg(long, value_name = "A=B,C=D")]
    pub machine_opts: Option<String>,
    /// A device tree for QEMU's -dtb instead of the one QEMU generates (or, with
    /// --board, Debian's for the board): the firmware's tree.
    #[arg(long, value_name = "FILE")]
    pub dtb: Option<PathBuf>,
    /// u-boot-script, u-boot-fit: a tree the boot script (or the FIT) hands on instead
    /// of the one U-Boot runs on.
    #[arg(long, value_name = "FILE")]
    pub boot_dtb: Option<PathBuf>,
    /// How many times to boot the same image.
    #[arg(long, default_value_t = 1)]
    pub boots: u32,
    /// Seconds each boot may take before QEMU is killed and the boot failed.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// What a passing boot shows [default: ok (ok-parked on a board without PSCI),
    /// or linux for a Linux payload, or digest-mismatch with --corrupt-payload].
    #[arg(long, value_enum)]
    pub expect: Option<Expect>,
    /// Boot this ready-made image instead of building one.
    #[arg(long, value_name = "IMG", conflicts_with_all = ["payload", "corrupt_payload"])]
    pub image: Option<PathBuf>,
}

/// The `--board` values.
pub fn board_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(shim_boards::BOARDS.iter().map(|b| b.name))
}

/// The board `--board` names for `target` (its default without one), with its QEMU
/// model; fails for a board of another architecture or without one.
pub fn qemu_board(target: &'static Target, name: Option<&str>) -> Result<&'static Board> {
    let board = match name {
        Some(name) => shim_boards::by_name(name).with_context(|| format!("no board {name}"))?,
        None => target.board,
    };
    if board.arch != target.board.arch {
        bail!("{} is not an {} board", board.name, target.name);
    }
    if board.qemu.is_none() {
        bail!("{} has no QEMU model", board.name);
    }
    Ok(board)
}

pub fn run(args: &QemuArgs) -> Result<()> {
    let target = args.build.arch.target();
    let board = qemu_board(target, args.build.board.as_deref())?;
    let on_default = std::ptr::eq(board, target.board);
    if args.el2 && (target.el2_option.is_empty() || !on_default) {
        bail!("--el2 is for QEMU virt (aarch64) only");
    }
    target.check_loader(args.loader)?;
    if args.loader == Loader::UBoot && !on_default {
        bail!("--loader u-boot is for QEMU virt only (U-Boot's qemu_arm64 build)");
    }
    if args.loader.packs() && board.qemu.and_then(|q| q.uboot).is_none() {
        bail!(
            "no U-Boot for {}'s QEMU model to boot from a disk",
            board.name
        );
    }
    if args.boot_dtb.is_some() && !args.loader.packs() {
        bail!("--boot-dtb is for the u-boot-script and u-boot-fit loaders");
    }
    deps::ensure_qemu(target)?;
    let (image, kind) = match &args.image {
        Some(image) => (image.clone(), None),
        None => {
            let built = image::build(&args.build)?;
            (built.path, Some(built.kind))
        }
    };
    let initrd = args.initrd.as_deref().map(Initrd::of).transpose()?;
    let qemu = board_qemu(board)?;
    let mem = args.mem.as_deref().unwrap_or(qemu.mem);
    if qemu.mem_fixed && mem != qemu.mem {
        bail!(
            "QEMU's {} has {} of RAM and no other size",
            qemu.machine,
            qemu.mem
        );
    }
    let debian_dtb = match (&args.dtb, board.debian_dtb) {
        (None, Some(_)) => dtbs::of(board)?,
        _ => None,
    };
    let machine = Machine {
        target,
        board,
        qemu,
        loader: args.loader,
        mem,
        smp: args.smp,
        el2: args.el2,
        append: &args.append,
        cpu: args.cpu.as_deref().or(qemu.cpu),
        machine_opts: args.machine_opts.as_deref().unwrap_or(""),
        dtb: args.dtb.as_deref().or(debian_dtb.as_deref()),
        boot_dtb: args.boot_dtb.as_deref(),
        initrd,
        e820: None,
    };
    let linux = matches!(
        kind,
        Some(PayloadKind::Arm64Image(_) | PayloadKind::Arm64ImageGz { .. })
    );
    let expect = args.expect.unwrap_or(if args.build.corrupt_payload {
        Expect::DigestMismatch
    } else if linux {
        Expect::Linux
    } else if qemu.powers_off {
        Expect::Ok
    } else {
        Expect::OkParked
    });
    let summary = boot_many(
        &machine,
        &image,
        expect,
        args.boots,
        Duration::from_secs(args.timeout),
    )?;
    println!("{}", summary.line());
    if summary.failed > 0 {
        bail!("{} of {} boots failed", summary.failed, args.boots);
    }
    Ok(())
}

impl Loader {
    /// Whether the loader reads the boot files from a disk, `pack`ed: the tree goes
    /// there too, not to QEMU's -dtb.
    pub fn packs(self) -> bool {
        matches!(self, Loader::UBootScript | Loader::UBootFit)
    }
}

/// An initrd file and its length (which `booti` needs).
#[derive(Clone, Copy, Debug)]
pub struct Initrd<'a> {
    pub path: &'a Path,
    pub size: u64,
}

impl<'a> Initrd<'a> {
    pub fn of(path: &'a Path) -> Result<Self> {
        let size = std::fs::metadata(path)
            .with_context(|| format!("initrd {}", path.display()))?
            .len();
        Ok(Initrd { path, size })
    }
}

/// The QEMU model of a board that has one.
pub fn board_qemu(board: &Board) -> Result<&Qemu> {
    board
        .qemu
        .as_ref()
        .with_context(|| format!("{} has no QEMU model", board.name))
}

/// One QEMU configuration.
pub struct Machine<'a> {
    pub target: &'a Target,
    pub board: &'a Board,
    /// The board's QEMU model: machine, fixed CPU count, which -serial is the console.
    pub qemu: &'a Qemu,
    pub loader: Loader,
    pub mem: &'a str,
    /// `-smp`, unless the machine has a fixed number of CPUs.
    pub smp: u32,
    pub el2: bool,
    pub append: &'a str,
    /// The `-cpu` model, or `None` for the machine's own.
    pub cpu: Option<&'a str>,
    /// Appended to `-machine` (after the EL2 option); empty for none.
    pub machine_opts: &'a str,
    /// QEMU's -dtb: the tree the firmware (or QEMU's own loader) hands over.
    pub dtb: Option<&'a Path>,
    /// A tree the U-Boot disk's boot script or FIT hands on instead of U-Boot's.
    pub boot_dtb: Option<&'a Path>,
    pub initrd: Option<Initrd<'a>>,
    /// kexec: entries the guest adds to the firmware memory map first.
    pub e820: Option<kexec::E820Edit>,
}

/// QEMU virt's own device tree (`-cpu max`, `-m mem`, `-smp smp`, the machine options
/// after `virt,`, e.g. `virtualization=on`) written to `out` (`dumpdtb=`).
pub fn dump_virt_dtb(opts: &str, mem: &str, smp: u32, out: &Path) -> Result<()> {
    let opts = if opts.is_empty() {
        String::new()
    } else {
        format!("{opts},")
    };
    crate::exec(Command::new(crate::arch::AARCH64.qemu).args([
        "-machine",
        &format!("virt,{opts}dumpdtb={}", qemu_value(out)),
        "-cpu",
        "max",
        "-m",
        mem,
        "-smp",
        &smp.to_string(),
        "-display",
        "none",
    ]))
}

/// Commas in a QEMU option value are escaped by doubling them.
fn qemu_value(path: &Path) -> String {
    path.to_string_lossy().replace(',', ",,")
}

impl Machine<'_> {
    /// The QEMU command line that boots `image`.
    fn command(&self, image: &Path) -> Result<Command> {
        let t = self.target;
        let q = self.qemu;
        let mut cmd = self.base_command(&self.machine_arg());
        cmd.args(t.qemu_args).args(["-display", "none"]);
        // The console is the board's console UART on stdio (the serial ports before it
        // go nowhere); no monitor, no window. A guest reset ends QEMU like a power-off.
        for _ in 0..q.console_serial {
            cmd.args(["-serial", "null"]);
        }
        cmd.args(["-serial", "stdio", "-monitor", "none"])
            .arg("-no-reboot");
        if let Some(dtb) = self.dtb {
            cmd.arg("-dtb").arg(dtb);
        }
        match self.loader {
            Loader::Direct => {
                cmd.arg("-kernel").arg(image).args(["-append", self.append]);
                if let Some(initrd) = &self.initrd {
                    cmd.arg("-initrd").arg(initrd.path);
                }
            }
            Loader::UBoot => {
                let fw = &t.firmware;
                cmd.args(["-bios", fw.bios]).args([
                    "-device",
                    &format!(
                        "loader,file={},addr={:#x},force-raw=on",
                        qemu_value(image),
                        fw.load_addr
                    ),
                ]);
                if let Some(initrd) = &self.initrd {
                    // The image must end before the initrd starts.
                    if let Ok(meta) = std::fs::metadata(image) {
                        let end = fw.load_addr.saturating_add(meta.len());
                        if end > fw.initrd_addr {
                            bail!(
                                "the image ({:#x} bytes at {:#x}) overlaps the initrd at {:#x}",
                                meta.len(),
                                fw.load_addr,
                                fw.initrd_addr
                            );
                        }
                    }
                    cmd.args([
                        "-device",
                        &format!(
                            "loader,file={},addr={:#x},force-raw=on",
                            qemu_value(initrd.path),
                            fw.initrd_addr
                        ),
                    ]);
                }
            }
            Loader::UBootScript | Loader::UBootFit => {
                let fw = q
                    .uboot
                    .with_context(|| format!("no U-Boot for QEMU's {}", q.machine))?;
                let disk = self.boot_disk(image, fw.medium == Medium::Sd)?;
                let u_boot = firmware::u_boot(&fw)?;
                match fw.start {
                    UBootStart::Bios => cmd.arg("-bios").arg(u_boot),
                    UBootStart::Kernel => cmd.arg("-kernel").arg(u_boot),
                };
                // No network: a script that fails must not end in a DHCP boot.
                cmd.args(["-nic", "none"]);
                let file = qemu_value(&disk);
                match fw.medium {
                    Medium::Virtio => cmd
                        .args(["-drive", &format!("if=none,format=raw,id=boot,file={file}")])
                        .args(["-device", "virtio-blk-device,drive=boot"]),
                    Medium::Sd => cmd.args(["-drive", &format!("if=sd,format=raw,file={file}")]),
                };
            }
            Loader::Grub => {
                let iso = grub::iso(image, self.append, self.initrd.map(|i| i.path))?;
                cmd.arg("-cdrom").arg(iso).args(["-boot", "d"]);
            }
            Loader::Kexec => {
                let initrd = self.initrd.map(|i| i.path);
                let guest = kexec::guest(image, self.append, initrd, self.e820)?;
                cmd.arg("-kernel").arg(&guest.kernel);
                cmd.arg("-initrd").arg(&guest.initrd);
                cmd.args(["-append", kexec::GUEST_APPEND]);
            }
        }
        Ok(cmd)
    }

    /// `-machine` with the EL2 option and the extra options.
    fn machine_arg(&self) -> String {
        let mut machine = self.qemu.machine.to_string();
        if self.el2 {
            machine = format!("{machine},{}", self.target.el2_option);
        }
        if !self.machine_opts.is_empty() {
            machine = format!("{machine},{}", self.machine_opts);
        }
        machine
    }

    /// QEMU with the machine, CPU, memory and CPU count.
    fn base_command(&self, machine: &str) -> Command {
        let mut cmd = Command::new(self.target.qemu);
        cmd.args(["-machine", machine]);
        if let Some(cpu) = self.cpu {
            cmd.args(["-cpu", cpu]);
        }
        cmd.args(["-m", self.mem])
            .args(["-smp", &self.qemu.cpus.unwrap_or(self.smp).to_string()]);
        cmd
    }

    /// Writes QEMU's own device tree for this configuration to `out` (`dumpdtb=`),
    /// for a loader that hands on a tree of its own. The firmware is part of the
    /// configuration: with one, QEMU virt leaves out the PL061 GPIO, and a tree that
    /// names it sends Linux to a device that is not there.
    pub fn dump_dtb(&self, out: &Path) -> Result<()> {
        let machine = format!("{},dumpdtb={}", self.machine_arg(), qemu_value(out));
        let mut cmd = self.base_command(&machine);
        match (self.loader, self.qemu.uboot) {
            (Loader::UBoot, _) => {
                cmd.args(["-bios", self.target.firmware.bios]);
            }
            (l, Some(fw)) if l.packs() && fw.start == UBootStart::Bios => {
                cmd.arg("-bios").arg(firmware::u_boot(&fw)?);
            }
            _ => {}
        }
        crate::exec(cmd.args(["-display", "none"]))
    }

    /// The FAT disk U-Boot boots from: `pack` for QEMU virt with this image, the
    /// initrd, the tree and the command line, then disk.rs.
    fn boot_disk(&self, image: &Path, power_of_two: bool) -> Result<PathBuf> {
        let fit = self.loader == Loader::UBootFit;
        let dir = crate::target_dir()
            .join("xtask")
            .join("u-boot-disk")
            .join(if fit { "fit" } else { "script" });
        let _ = std::fs::remove_dir_all(&dir);
        let packed = pack::pack(&pack::Spec {
            board: self.board,
            shim: image,
            initrd: self.initrd.map(|i| i.path),
            dtb: self.boot_dtb,
            fit,
            append: Some(self.append).filter(|a| !a.is_empty()),
            out: &dir,
        })?;
        eprintln!("xtask: {}", packed.summary);
        let disk = dir.with_extension("img");
        disk::fat(&packed.files, "SHIMBOOT", &disk, power_of_two)?;
        Ok(disk)
    }

    /// The U-Boot commands that boot the preloaded image, one per prompt.
    fn uboot_commands(&self) -> VecDeque<String> {
        let fw = &self.target.firmware;
        let bootargs = if self.append.is_empty() {
            "setenv bootargs".to_string()
        } else {
            format!("setenv bootargs \"{}\"", self.append)
        };
        let initrd = match &self.initrd {
            Some(initrd) => format!("{:#x}:{:#x}", fw.initrd_addr, initrd.size),
            None => "-".into(),
        };
        let boot = fw
            .boot_cmd
            .replace("{addr}", &format!("{:#x}", fw.load_addr))
            .replace("{initrd}", &initrd);
        VecDeque::from([bootargs, boot])
    }
}

/// How a boot's QEMU ended.
#[derive(Debug)]
pub enum End {
    /// QEMU exited by itself (the guest powered off or reset).
    Exited(ExitStatus),
    /// The runner stopped QEMU after the deciding line and a grace period.
    Stopped,
    /// The per-boot timeout ran out and QEMU was killed.
    TimedOut,
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::Exited(status) => write!(f, "QEMU exited: {status}"),
            End::Stopped => f.write_str("stopped by the runner"),
            End::TimedOut => f.write_str("timed out"),
        }
    }
}

/// The value of the first `name` field (`total=`) in a line of space-separated fields.
fn field(line: &str, name: &str) -> Option<String> {
    line.split_whitespace()
        .find_map(|f| f.strip_prefix(name))
        .map(|v| v.trim_end_matches(';').to_string())
}

/// What one boot showed.
#[derive(Debug)]
pub struct Boot {
    pub placed: Option<Placed>,
    /// `(va, pa)` from `payload: ok`.
    pub payload_ok: Option<(u64, u64)>,
    pub payload_fail: Option<String>,
    /// The payload said it cannot power off and parks (`payload: ... parking`).
    pub parked: bool,
    pub payload_lines: usize,
    pub digest_mismatch: bool,
    /// The first `shim: error: ...` line, without `shim: `.
    pub shim_error: Option<String>,
    pub shim_lines: Vec<String>,
    pub linux: LinuxBoot,
    /// `payload: ok` said it searched RAM for the planted seed (`residue-scan=`).
    pub residue_scanned: bool,
    /// `total=` as the payload read it from boot-info, and as the shim's `timing`
    /// line printed it: the same figure.
    pub payload_total: Option<String>,
    pub shim_total: Option<String>,
    /// `bits=` from `payload: ok`: the boot-info's kaslr_bits.
    pub payload_bits: Option<u32>,
    /// The SHA-256 block function the shim said it verified with (`sha256=` in its
    /// verbose timing line): `sha-ni` or `sse2` (x86), `armv8-sha256` or `neon` (arm64).
    pub sha256: Option<String>,
    /// Bytes of zero runs the digest check read rather than hashed (`zeros=` in the
    /// timing line).
    pub zeros: Option<u64>,
    /// The last non-empty console line, for messages.
    pub last_line: Option<String>,
    pub end: End,
    /// QEMU's exit status when the payload powers off after `payload: ok`
    /// (`Target::poweroff_exit`): any other exit is not the payload's own.
    pub ok_exit: i32,
}

/// What a Linux payload and the test initramfs showed.
#[derive(Debug, Default)]
pub struct LinuxBoot {
    /// `linux-test: done` was printed.
    pub done: bool,
    /// /proc/cmdline.
    pub cmdline: Option<String>,
    /// /proc/iomem's "Kernel code" range (start, inclusive end).
    pub kernel_code: Option<(u64, u64)>,
    /// /data.bin's digest.
    pub sha256: Option<String>,
    /// `_stext` in /proc/kallsyms: the kernel's virtual base.
    pub text: Option<u64>,
    /// `KASLR enabled` (true) or `KASLR disabled ...` (false) in the kernel log.
    pub kaslr: Option<bool>,
    /// N from `CPU: All CPU(s) started at ELN`.
    pub started_at: Option<u8>,
    /// `Kernel panic - not syncing: ...`.
    pub panic: Option<String>,
    /// How many `linux-test: ` lines.
    pub lines: usize,
    /// `Booting Linux on physical CPU ...`.
    pub booting: bool,
}

impl LinuxBoot {
    /// Whether anything shows that a Linux kernel ran.
    pub fn ran(&self) -> bool {
        self.booting
            || self.lines > 0
            || self.kaslr.is_some()
            || self.started_at.is_some()
            || self.panic.is_some()
    }

    /// Whether the kernel said all CPUs started at EL2.
    pub fn started_at_el2(&self) -> bool {
        self.started_at == Some(2)
    }
}

impl Boot {
    /// A boot that has shown nothing yet.
    fn new(end: End) -> Self {
        Boot {
            placed: None,
            payload_ok: None,
            payload_fail: None,
            parked: false,
            payload_lines: 0,
            digest_mismatch: false,
            shim_error: None,
            shim_lines: Vec::new(),
            linux: LinuxBoot::default(),
            residue_scanned: false,
            payload_total: None,
            shim_total: None,
            payload_bits: None,
            sha256: None,
            zeros: None,
            last_line: None,
            end,
            ok_exit: 0,
        }
    }

    /// Takes one console line.
    fn line(&mut self, line: &str) {
        if !line.trim().is_empty() {
            self.last_line = Some(line.trim_end().to_string());
        }
        if let Some(event) = parse_line(line) {
            self.note(event);
        }
    }

    /// Why this boot is not the Linux boot `expect` asks for, if it is not.
    fn judge_linux(&self, with_shim: bool) -> std::result::Result<(), String> {
        let l = &self.linux;
        if self.digest_mismatch {
            return Err("the shim refused the payload's digest".into());
        }
        if let Some(error) = &self.shim_error {
            return Err(format!("shim: {error}"));
        }
        if self.payload_lines > 0 {
            return Err("a demo payload ran instead of Linux".into());
        }
        if let Some(panic) = &l.panic {
            return Err(panic.clone());
        }
        if !l.done {
            let last = self.last_line.as_deref().unwrap_or("(no output)");
            return Err(format!(
                "no `linux-test: done` line ({}); last line: {last}",
                self.end
            ));
        }
        match self.end {
            End::Exited(_) => {}
            End::Stopped => {
                return Err("QEMU did not exit after `linux-test: done` (no power-off)".into())
            }
            End::TimedOut => {
                return Err("timed out: QEMU did not exit after `linux-test: done`".into())
            }
        }
        let want = linux::data_sha256();
        match &l.sha256 {
            Some(sha) if *sha == want => {}
            Some(sha) => return Err(format!("/data.bin sha256 is {sha}, want {want}")),
            None => return Err("no `linux-test: sha256` line".into()),
        }
        let Some(cmdline) = &l.cmdline else {
            return Err("no `linux-test: cmdline` line".into());
        };
        let Some((start, end)) = l.kernel_code else {
            return Err("/proc/iomem has no Kernel code line".into());
        };
        if !with_shim {
            return Ok(());
        }
        if let Some(option) = cmdline.split_whitespace().find(|w| w.starts_with("shim.")) {
            return Err(format!(
                "the shim left its option {option} in the kernel's command line: {cmdline}"
            ));
        }
        let Some(placed) = &self.placed else {
            return Err("no `shim: placed` line (is shim.verbose on the command line?)".into());
        };
        let Some(size) = placed.size else {
            return Err(format!(
                "the shim's placed line has no size= ({})",
                placed.brief()
            ));
        };
        // Linux's own decompressor ran from the shim's slot and chose the kernel's
        // place itself (a bzImage the shim does not decode).
        if placed.own_decompressor {
            return Ok(());
        }
        let slot_end = placed.pa.saturating_add(size);
        if start < placed.pa || end >= slot_end {
            return Err(format!(
                "Kernel code {start:#x}-{end:#x} is not inside the shim's slot \
                 {:#x}-{:#x}",
                placed.pa,
                slot_end - 1
            ));
        }
        Ok(())
    }

    /// `Ok` if the boot showed what `expect` asks for, else why not.
    pub fn judge(&self, expect: Expect) -> std::result::Result<(), String> {
        match expect {
            Expect::Ok | Expect::OkParked => {
                if let Some(why) = &self.payload_fail {
                    return Err(format!("payload: FAIL {why}"));
                }
                if self.digest_mismatch {
                    return Err("the shim refused the payload's digest".into());
                }
                if self.payload_ok.is_none() {
                    return Err(match self.shim_lines.last() {
                        Some(last) => {
                            format!(
                                "no `payload: ok` line ({}); last shim line: {last}",
                                self.end
                            )
                        }
                        None => format!("no `payload: ok` line and no shim line ({})", self.end),
                    });
                }
                if let (Some(payload), Some(shim)) = (&self.payload_total, &self.shim_total) {
                    if payload != shim {
                        return Err(format!(
                            "the payload read total={payload} from boot-info, the shim \
                             printed total={shim}"
                        ));
                    }
                }
                match (expect, self.parked, &self.end) {
                    (Expect::Ok, false, End::Exited(status))
                        if status.code() == Some(self.ok_exit) =>
                    {
                        Ok(())
                    }
                    (Expect::Ok, false, End::Exited(status)) => Err(format!(
                        "QEMU {status} after `payload: ok`, not with status {} as the \
                         payload's power-off makes it",
                        self.ok_exit
                    )),
                    (Expect::Ok, true, _) => {
                        Err("the payload parked: no /psci to power off with".into())
                    }
                    (Expect::Ok, false, End::Stopped) => {
                        Err("QEMU did not exit after `payload: ok`".into())
                    }
                    (Expect::Ok, false, End::TimedOut) => {
                        Err("timed out: QEMU did not exit after `payload: ok`".into())
                    }
                    (_, false, _) => Err(format!(
                        "no `payload: ... parking` line after `payload: ok` ({})",
                        self.end
                    )),
                    (_, true, End::Stopped) => Ok(()),
                    (_, true, End::Exited(status)) => Err(format!(
                        "QEMU exited ({status}) although the payload parked"
                    )),
                    (_, true, End::TimedOut) => {
                        Err("timed out: the runner did not stop QEMU after parking".into())
                    }
                }
            }
            Expect::DigestMismatch => {
                if self.payload_lines > 0 || self.linux.ran() {
                    Err("a payload ran although its digest was wrong".into())
                } else if !self.digest_mismatch {
                    Err(format!(
                        "no `shim: payload digest mismatch` line ({})",
                        self.end
                    ))
                } else {
                    Ok(())
                }
            }
            Expect::ShimError => {
                let ran = self.payload_lines > 0 || self.linux.ran();
                match (&self.shim_error, ran) {
                    (_, true) => Err("a payload ran although the shim should have stopped".into()),
                    (None, false) => Err(format!("no `shim: error:` line ({})", self.end)),
                    (Some(_), false) => Ok(()),
                }
            }
            Expect::Linux => self.judge_linux(true),
            Expect::LinuxNoShim => self.judge_linux(false),
        }
    }

    fn note(&mut self, event: Event) {
        if let Event::Shim(text) | Event::DigestMismatch(text) = &event {
            if text.starts_with("error:") && self.shim_error.is_none() {
                self.shim_error = Some(text.clone());
            }
        }
        match event {
            Event::PayloadOk { va, pa, rest } => {
                self.payload_lines += 1;
                self.payload_ok.get_or_insert((va, pa));
                self.residue_scanned |= rest
                    .split_whitespace()
                    .any(|f| f.starts_with("residue-scan="));
                if let Some(total) = field(&rest, "total=") {
                    self.payload_total.get_or_insert(total);
                }
                if let Some(bits) = field(&rest, "bits=").and_then(|b| b.parse().ok()) {
                    self.payload_bits.get_or_insert(bits);
                }
            }
            Event::PayloadFail(why) => {
                self.payload_lines += 1;
                self.payload_fail.get_or_insert(why);
            }
            Event::PayloadParked(_) => {
                self.payload_lines += 1;
                self.parked = true;
            }
            Event::Payload(_) => self.payload_lines += 1,
            Event::ShimPlaced(placed) => {
                self.shim_lines.push(format!("placed {}", placed.brief()));
                self.placed.get_or_insert(placed);
            }
            Event::DigestMismatch(text) => {
                self.digest_mismatch = true;
                self.shim_lines.push(text);
            }
            Event::Shim(text) => {
                if let Some(name) = text
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("sha256="))
                {
                    self.sha256.get_or_insert(name.to_string());
                }
                if text.starts_with("timing ") {
                    if let Some(total) = field(&text, "total=") {
                        self.shim_total.get_or_insert(total);
                    }
                    if let Some(zeros) = field(&text, "zeros=").and_then(|z| z.parse().ok()) {
                        self.zeros.get_or_insert(zeros);
                    }
                }
                self.shim_lines.push(text);
            }
            Event::LinuxTest(test) => {
                let l = &mut self.linux;
                l.lines += 1;
                match test {
                    LinuxTest::Done => l.done = true,
                    LinuxTest::Cmdline(cmdline) => {
                        l.cmdline.get_or_insert(cmdline);
                    }
                    LinuxTest::Sha256(sha) => {
                        l.sha256.get_or_insert(sha);
                    }
                    LinuxTest::Iomem(iomem) if iomem.name == "Kernel code" => {
                        l.kernel_code.get_or_insert((iomem.start, iomem.end));
                    }
                    LinuxTest::Text(va) => {
                        l.text.get_or_insert(va);
                    }
                    LinuxTest::Iomem(_) | LinuxTest::Other(_) => {}
                }
            }
            Event::Kernel(Kernel::Kaslr(on)) => {
                self.linux.kaslr.get_or_insert(on);
            }
            Event::Kernel(Kernel::StartedAt(el)) => {
                self.linux.started_at.get_or_insert(el);
            }
            Event::Kernel(Kernel::Panic(text)) => {
                self.linux.panic.get_or_insert(text);
            }
            Event::Kernel(Kernel::Booting) => self.linux.booting = true,
        }
    }

    /// Whether the console has shown enough to decide the boot: if so, how long QEMU
    /// may go on to exit by itself before the runner stops it.
    fn decided(&self, expect: Expect) -> Option<Duration> {
        // The shim halts after a `shim: error: ...` or `shim: panic: ...` line.
        let shim_panicked = self
            .shim_lines
            .iter()
            .any(|l| l.starts_with("panic") || l.starts_with("error:"));
        let settled = match expect {
            // Parked, the payload never powers off; expected, it is the end.
            Expect::Ok | Expect::OkParked => {
                self.payload_fail.is_some() || self.digest_mismatch || shim_panicked || self.parked
            }
            Expect::DigestMismatch => {
                self.digest_mismatch || self.payload_lines > 0 || self.linux.ran()
            }
            Expect::ShimError => {
                self.shim_error.is_some() || self.payload_lines > 0 || self.linux.ran()
            }
            Expect::Linux | Expect::LinuxNoShim => {
                self.linux.panic.is_some()
                    || self.digest_mismatch
                    || shim_panicked
                    || self.payload_lines > 0
            }
        };
        if settled {
            Some(GRACE)
        } else if self.payload_ok.is_some() || self.linux.done {
            Some(POWEROFF_GRACE)
        } else {
            None
        }
    }
}

/// Boots `image` `boots` times and judges every boot.
pub fn boot_many(
    machine: &Machine,
    image: &Path,
    expect: Expect,
    boots: u32,
    timeout: Duration,
) -> Result<Summary> {
    let mut summary = Summary::default();
    for n in 1..=boots {
        eprintln!("xtask: boot {n}/{boots}");
        let started = Instant::now();
        let result = boot(machine, image, expect, timeout)?;
        let seconds = started.elapsed().as_secs_f64();
        let verdict = result.judge(expect);
        let mut placement = match (&result.payload_ok, &result.placed) {
            (Some((va, pa)), _) => format!(" pa={pa:#x} va={va:#x}"),
            (None, Some(p)) => format!(" (shim placed {})", p.brief()),
            (None, None) => String::new(),
        };
        let l = &result.linux;
        if let Some((start, _)) = l.kernel_code {
            placement.push_str(&format!(" Kernel code={start:#x}"));
        }
        if let Some(on) = l.kaslr {
            placement.push_str(if on { " KASLR=on" } else { " KASLR=off" });
        }
        if let Some(el) = l.started_at {
            placement.push_str(&format!(" EL{el}"));
        }
        match &verdict {
            Ok(()) => eprintln!("xtask: boot {n}/{boots}: pass in {seconds:.1}s{placement}"),
            Err(why) => {
                eprintln!("xtask: boot {n}/{boots}: FAIL in {seconds:.1}s{placement}: {why}")
            }
        }
        summary.add(&result, verdict.is_ok());
        summary.seconds.push(seconds);
    }
    Ok(summary)
}

/// The tally of several boots.
#[derive(Debug, Default)]
pub struct Summary {
    pub passed: u32,
    pub failed: u32,
    /// Distinct `(pa, va)` from `payload: ok` lines, and distinct `pa` and `va`.
    pub pairs: BTreeSet<(u64, u64)>,
    pub pas: BTreeSet<u64>,
    pub vas: BTreeSet<u64>,
    /// Every boot's `shim: error:` line.
    pub errors: Vec<String>,
    /// Linux boots: distinct "Kernel code" start addresses, and how many boots logged
    /// `KASLR enabled`, `KASLR disabled` and all CPUs started at EL2.
    pub kernel_code: BTreeSet<u64>,
    /// Distinct `_stext` virtual addresses.
    pub text: BTreeSet<u64>,
    pub kaslr_enabled: u32,
    pub kaslr_disabled: u32,
    pub el2: u32,
    /// Boots whose payload searched RAM for the planted seed and found none.
    pub residue_scans: u32,
    /// Passing boots that showed the shim's `placed` line.
    pub shim_placed: u32,
    /// Each passing boot's SHA-256 block function, as the shim named it ("none" if
    /// it did not).
    pub sha256: Vec<String>,
    /// Each passing boot's bytes of zero runs read, not hashed (0 if not said).
    pub zeros: Vec<u64>,
    /// Each boot's wall time in seconds, QEMU start to end (emulation time).
    pub seconds: Vec<f64>,
    /// Each passing boot's shim lines, one string per boot.
    pub shim_said: Vec<String>,
    /// Each passing boot's boot-info kaslr_bits, as the payload reported it.
    pub payload_bits: Vec<u32>,
}

impl Summary {
    fn add(&mut self, boot: &Boot, pass: bool) {
        if pass {
            self.passed += 1;
            self.shim_said.push(boot.shim_lines.join("\n"));
            self.payload_bits.extend(boot.payload_bits);
        } else {
            self.failed += 1;
        }
        self.errors.extend(boot.shim_error.clone());
        if let Some((va, pa)) = boot.payload_ok {
            self.pairs.insert((pa, va));
            self.pas.insert(pa);
            self.vas.insert(va);
        }
        let l = &boot.linux;
        if let Some((start, _)) = l.kernel_code {
            self.kernel_code.insert(start);
        }
        self.text.extend(l.text);
        match l.kaslr {
            Some(true) => self.kaslr_enabled += 1,
            Some(false) => self.kaslr_disabled += 1,
            None => {}
        }
        if l.started_at_el2() {
            self.el2 += 1;
        }
        if pass && boot.residue_scanned {
            self.residue_scans += 1;
        }
        if pass && boot.placed.is_some() {
            self.shim_placed += 1;
        }
        if pass {
            let name = boot.sha256.as_deref().unwrap_or("none");
            self.sha256.push(name.to_string());
            self.zeros.push(boot.zeros.unwrap_or(0));
        }
    }

    pub fn line(&self) -> String {
        let mut line = format!("boots: {} passed, {} failed", self.passed, self.failed);
        // Linux boots have no (pa, va): their figures replace those.
        if self.kernel_code.is_empty() || !self.pairs.is_empty() {
            line.push_str(&format!(
                "; {} distinct (pa,va) pairs, {} distinct pa, {} distinct va",
                self.pairs.len(),
                self.pas.len(),
                self.vas.len()
            ));
        }
        if !self.kernel_code.is_empty() {
            line.push_str(&format!(
                "; {} distinct Kernel code, {} distinct _stext, KASLR enabled {} / disabled {}, EL2 {}",
                self.kernel_code.len(),
                self.text.len(),
                self.kaslr_enabled,
                self.kaslr_disabled,
                self.el2
            ));
        }
        line
    }
}

/// Boots once: starts QEMU, streams its console to stdout, drives U-Boot if it is the
/// loader, and stops QEMU on timeout or once the boot is decided.
pub fn boot(machine: &Machine, image: &Path, expect: Expect, timeout: Duration) -> Result<Boot> {
    let mut cmd = machine.command(image)?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    announce(&cmd);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", machine.target.qemu))?;
    let result = drive(machine, expect, timeout, &mut child);
    // Whatever happened, leave no QEMU behind.
    if !matches!(child.try_wait(), Ok(Some(_))) {
        let _ = child.kill();
        let _ = child.wait();
    }
    result
}

fn drive(machine: &Machine, expect: Expect, timeout: Duration, child: &mut Child) -> Result<Boot> {
    let mut stdin = child.stdin.take().context("QEMU has no stdin pipe")?;
    let mut stdout = child.stdout.take().context("QEMU has no stdout pipe")?;
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let reader = thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });

    let deadline = Instant::now() + timeout;
    let mut console = Console::default();
    let mut uboot = (machine.loader == Loader::UBoot).then(|| UBoot::new(machine.uboot_commands()));
    // Until QEMU is seen to exit or is stopped early, the boot counts as timed out.
    let mut boot = Boot::new(End::TimedOut);
    boot.ok_exit = machine.target.poweroff_exit;
    let mut stop_at: Option<Instant> = None;
    let mut out = std::io::stdout();

    // Read until QEMU closes its stdout, the boot times out, or it is decided.
    let mut eof = false;
    while !eof {
        let now = Instant::now();
        let until = stop_at.map_or(deadline, |s| s.min(deadline));
        if now >= until {
            break;
        }
        match rx.recv_timeout(until - now) {
            Ok(chunk) => {
                out.write_all(&chunk)?;
                out.flush()?;
                for line in console.push(&chunk) {
                    boot.line(&line);
                }
                if let Some(uboot) = &mut uboot {
                    uboot.step(&console, &mut stdin)?;
                }
                if let (None, Some(grace)) = (stop_at, boot.decided(expect)) {
                    stop_at = Some(Instant::now() + grace);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => eof = true,
        }
    }
    if let Some(line) = console.finish() {
        boot.line(&line);
    }

    // Its stdout closed: QEMU is exiting; give it until the deadline to do so.
    if eof {
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                boot.end = End::Exited(status);
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
    } else if let Some(status) = child.try_wait()? {
        boot.end = End::Exited(status);
    }
    if matches!(boot.end, End::TimedOut) {
        let timed_out = Instant::now() >= deadline;
        let _ = child.kill();
        let _ = child.wait();
        if timed_out {
            eprintln!(
                "\nxtask: timed out after {}s, killed QEMU",
                timeout.as_secs()
            );
        } else {
            boot.end = End::Stopped;
            eprintln!("\nxtask: boot decided, stopped QEMU");
        }
    }
    drop(rx);
    let _ = reader.join();
    if let End::Exited(status) = &boot.end {
        eprintln!("\nxtask: QEMU exited: {status}");
    }
    Ok(boot)
}

/// Drives U-Boot's console: interrupts autoboot, then types one command per prompt.
struct UBoot {
    commands: VecDeque<String>,
    interrupted: bool,
    /// Stream position when the runner last typed: a prompt must come after it.
    typed_at: usize,
}

impl UBoot {
    fn new(commands: VecDeque<String>) -> Self {
        UBoot {
            commands,
            interrupted: false,
            typed_at: 0,
        }
    }

    fn step(&mut self, console: &Console, stdin: &mut ChildStdin) -> Result<()> {
        if !self.interrupted {
            // The countdown line stays unfinished until it reaches 0.
            if console.partial().contains(AUTOBOOT) {
                eprintln!("\nxtask: interrupting U-Boot's autoboot");
                self.type_line(console, stdin, "")?;
                self.interrupted = true;
            }
            return Ok(());
        }
        if console.partial() == PROMPT && console.received() > self.typed_at {
            if let Some(command) = self.commands.pop_front() {
                self.type_line(console, stdin, &command)?;
            }
        }
        Ok(())
    }

    fn type_line(&mut self, console: &Console, stdin: &mut ChildStdin, line: &str) -> Result<()> {
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .context("writing to QEMU's stdin")?;
        self.typed_at = console.received();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::AARCH64;

    fn machine(loader: Loader, el2: bool) -> Machine<'static> {
        Machine {
            target: &AARCH64,
            board: &shim_boards::QEMU_VIRT,
            qemu: shim_boards::QEMU_VIRT.qemu.as_ref().unwrap(),
            loader,
            mem: "1G",
            smp: 2,
            el2,
            append: "shim.verbose nokaslr",
            cpu: Some("max"),
            machine_opts: "",
            dtb: None,
            boot_dtb: None,
            initrd: None,
            e820: None,
        }
    }

    #[test]
    fn direct_command_line() {
        let cmd = machine(Loader::Direct, true)
            .command(Path::new("/t/shim.img"))
            .unwrap();
        assert_eq!(
            crate::display(&cmd),
            "qemu-system-aarch64 -machine virt,virtualization=on -cpu max -m 1G -smp 2 \
             -display none -serial stdio -monitor none -no-reboot -kernel /t/shim.img \
             -append 'shim.verbose nokaslr'"
        );
    }

    #[test]
    fn uboot_command_line_and_script() {
        let m = machine(Loader::UBoot, false);
        let cmd = m.command(Path::new("/t,x/shim.img")).unwrap();
        let text = crate::display(&cmd);
        assert!(text.starts_with("qemu-system-aarch64 -machine virt -cpu max"));
        assert!(text.ends_with(
            "-bios /usr/lib/u-boot/qemu_arm64/u-boot.bin \
             -device loader,file=/t,,x/shim.img,addr=0x40400000,force-raw=on"
        ));
        assert_eq!(
            m.uboot_commands(),
            [
                "setenv bootargs \"shim.verbose nokaslr\"",
                "booti 0x40400000 - ${fdtcontroladdr}"
            ]
        );
    }

    #[test]
    fn initrd_cpu_machine_options_and_dtb() {
        let initrd = Initrd {
            path: Path::new("/t/initrd.cpio"),
            size: 0x2a_1234,
        };
        let m = Machine {
            cpu: Some("cortex-a72"),
            machine_opts: "dtb-randomness=off",
            dtb: Some(Path::new("/t/virt.dtb")),
            initrd: Some(initrd),
            ..machine(Loader::Direct, false)
        };
        assert_eq!(
            crate::display(&m.command(Path::new("/t/shim.img")).unwrap()),
            "qemu-system-aarch64 -machine virt,dtb-randomness=off -cpu cortex-a72 -m 1G -smp 2 \
             -display none -serial stdio -monitor none -no-reboot -dtb /t/virt.dtb \
             -kernel /t/shim.img -append 'shim.verbose nokaslr' -initrd /t/initrd.cpio"
        );
        // EL2 comes first, then the extra options.
        let m = Machine {
            machine_opts: "a=b,c=d",
            cpu: Some("max,pauth-impdef=on"),
            ..machine(Loader::Direct, true)
        };
        let text = crate::display(&m.command(Path::new("/t/shim.img")).unwrap());
        assert!(text.starts_with(
            "qemu-system-aarch64 -machine virt,virtualization=on,a=b,c=d -cpu max,pauth-impdef=on "
        ));
        assert!(!text.contains("-initrd") && !text.contains("-dtb"));
    }

    #[test]
    fn a_board_model_its_cpus_and_its_console_uart() {
        let rpi4 = shim_boards::RPI4.qemu.as_ref().unwrap();
        let m = Machine {
            qemu: rpi4,
            mem: rpi4.mem,
            cpu: rpi4.cpu,
            dtb: Some(Path::new("/t/bcm2711-rpi-4-b.dtb")),
            ..machine(Loader::Direct, false)
        };
        // raspi4b: its own CPU model and 4 CPUs; the console is the second UART.
        assert_eq!(
            crate::display(&m.command(Path::new("/t/shim.img")).unwrap()),
            "qemu-system-aarch64 -machine raspi4b -m 2G -smp 4 -display none \
             -serial null -serial stdio -monitor none -no-reboot \
             -dtb /t/bcm2711-rpi-4-b.dtb -kernel /t/shim.img -append 'shim.verbose nokaslr'"
        );
        let imx = shim_boards::IMX8MP_EVK.qemu.as_ref().unwrap();
        let m = Machine {
            qemu: imx,
            mem: imx.mem,
            cpu: imx.cpu,
            ..machine(Loader::Direct, false)
        };
        let text = crate::display(&m.command(Path::new("/t/shim.img")).unwrap());
        assert!(
            text.starts_with(
                "qemu-system-aarch64 -machine imx8mp-evk -m 1G -smp 2 -display none \
                 -serial null -serial stdio -monitor none"
            ),
            "{text}"
        );
    }

    #[test]
    fn judging_a_parked_payload() {
        let parked = [
            "shim: placed pa=0x19a00000 va=0xffff3a2806c00000 slots=477 entropy=33 sources=counter",
            "payload: ok va=0xffff3a2806c00000 pa=0x19a00000 ptrs=1201 sources=10 bits=33",
            "payload: no /psci in the device tree: parking",
        ];
        let boot = boot_of(&parked, End::Stopped);
        assert!(boot.parked);
        assert_eq!(boot.judge(Expect::OkParked), Ok(()));
        // Parking is the end: the runner stops QEMU shortly after, expected or not.
        assert_eq!(boot.decided(Expect::OkParked), Some(GRACE));
        assert_eq!(boot.decided(Expect::Ok), Some(GRACE));
        assert!(boot.judge(Expect::Ok).unwrap_err().contains("parked"));
        // Not parked, or parked without `ok`, or a QEMU that exited anyway.
        let ok_only = boot_of(&parked[..2], End::Stopped);
        assert!(ok_only
            .judge(Expect::OkParked)
            .unwrap_err()
            .contains("parking"));
        assert_eq!(ok_only.decided(Expect::OkParked), Some(POWEROFF_GRACE));
        assert!(boot_of(&[parked[0], parked[2]], End::Stopped)
            .judge(Expect::OkParked)
            .unwrap_err()
            .contains("no `payload: ok`"));
        assert!(boot_of(&parked, exited())
            .judge(Expect::OkParked)
            .unwrap_err()
            .contains("exited"));
        assert!(boot_of(&parked, End::TimedOut)
            .judge(Expect::OkParked)
            .is_err());
        let failed = boot_of(&["payload: FAIL bss not zero", parked[2]], End::Stopped);
        assert!(failed.judge(Expect::OkParked).unwrap_err().contains("FAIL"));
        // The summary counts the shim's placed lines.
        let mut s = Summary::default();
        s.add(&boot, true);
        s.add(&boot_of(&parked[1..], End::Stopped), true);
        assert_eq!((s.passed, s.shim_placed), (2, 1));
    }

    #[test]
    fn the_payload_reads_the_shims_total_from_boot_info() {
        let ok = |payload: &str| {
            boot_of(
                &[
                    "shim: timing total=78149us entry=660us",
                    &format!("payload: ok va=0xffff2642dbc00000 pa=0x53200000 ptrs=1201 sources=17 bits=33 {payload}"),
                ],
                exited(),
            )
        };
        assert_eq!(ok("total=78149us").judge(Expect::Ok), Ok(()));
        assert!(ok("total=0us")
            .judge(Expect::Ok)
            .unwrap_err()
            .contains("boot-info"));
    }

    #[test]
    fn the_sha256_path_is_read_from_the_timing_line() {
        let lines = [
            "shim: timing place=17738us unpack=2082us verify=6158us sha256=sha-ni load=1294us \
             relocate=230us (79560 bytes, 1220 relocations)",
            "payload: ok va=0xffff9e41dac00000 pa=0x1c600000 ptrs=1201 sources=1c bits=33",
        ];
        let boot = boot_of(&lines, exited());
        assert_eq!(boot.sha256.as_deref(), Some("sha-ni"));
        let linux = boot_of(
            &["shim: timing verify=273000us zeros=1583424 sha256=armv8-sha256 total=1114000us entry=500us"],
            End::Stopped,
        );
        assert_eq!(linux.sha256.as_deref(), Some("armv8-sha256"));
        assert_eq!((boot.zeros, linux.zeros), (None, Some(1583424)));
        let mut s = Summary::default();
        s.add(&boot, true);
        s.add(&boot_of(&lines[1..], exited()), true);
        s.add(&linux, false);
        assert_eq!(s.sha256, ["sha-ni", "none"]);
        assert_eq!(s.zeros, [0, 0]);
    }

    #[test]
    fn uboot_preloads_the_initrd_and_passes_it_to_booti() {
        let m = Machine {
            initrd: Some(Initrd {
                path: Path::new("/t/a,b.cpio"),
                size: 0x2a_1234,
            }),
            ..machine(Loader::UBoot, true)
        };
        let text = crate::display(&m.command(Path::new("/t/shim.img")).unwrap());
        assert!(text.ends_with(
            "-device loader,file=/t/shim.img,addr=0x40400000,force-raw=on \
             -device loader,file=/t/a,,b.cpio,addr=0x44000000,force-raw=on"
        ));
        assert!(!text.contains("-initrd"));
        assert_eq!(
            m.uboot_commands(),
            [
                "setenv bootargs \"shim.verbose nokaslr\"",
                "booti 0x40400000 0x44000000:0x2a1234 ${fdtcontroladdr}"
            ]
        );
    }

    fn boot_of(lines: &[&str], end: End) -> Boot {
        let mut boot = Boot::new(end);
        for line in lines {
            boot.line(line);
        }
        boot
    }

    /// The console of a good Linux boot through the shim, shortened.
    fn linux_console(sha: &str) -> Vec<String> {
        [
            "shim: placed pa=0x5c600000 size=0x1ab0000 slots=482 entropy=8 sources=kaslr-seed,counter",
            "[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x000f0510]",
            "[    0.000000] KASLR enabled",
            "[    0.112233] CPU: All CPU(s) started at EL2",
            "linux-test: start 6.1.0-56-cloud-arm64 aarch64",
            "linux-test: cmdline console=ttyAMA0 panic=-1",
            "linux-test: iomem 40000000-7fffffff : System RAM",
            "linux-test: iomem   5c610000-5d2dffff : Kernel code",
            "linux-test: iomem   5d2e0000-5d7fffff : reserved",
            &format!("linux-test: sha256 {sha}"),
            "linux-test: done",
            "[   20.5] reboot: Power down",
        ]
        .map(String::from)
        .to_vec()
    }

    fn linux_boot(lines: &[String], end: End) -> Boot {
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        boot_of(&lines, end)
    }

    #[test]
    fn judging_linux() {
        let good = linux_console(&linux::data_sha256());
        let boot = linux_boot(&good, exited());
        assert_eq!(boot.judge(Expect::Linux), Ok(()));
        assert_eq!(boot.judge(Expect::LinuxNoShim), Ok(()));
        assert!(boot.judge(Expect::Ok).is_err());
        let l = &boot.linux;
        assert_eq!(l.kernel_code, Some((0x5c61_0000, 0x5d2d_ffff)));
        assert_eq!((l.kaslr, l.started_at_el2()), (Some(true), true));
        assert_eq!(boot.placed.as_ref().and_then(|p| p.size), Some(0x1ab_0000));
        assert_eq!(boot.decided(Expect::Linux), Some(POWEROFF_GRACE));

        let judge = |lines: &[String], end| linux_boot(lines, end).judge(Expect::Linux);
        // QEMU must exit by itself after `done`.
        assert!(judge(&good, End::Stopped)
            .unwrap_err()
            .contains("did not exit"));
        assert!(judge(&good, End::TimedOut).is_err());
        // Wrong digest.
        let bad_sha = linux_console(&"0".repeat(64));
        assert!(judge(&bad_sha, exited()).unwrap_err().contains("sha256"));
        // A shim. option reached the kernel.
        let leaked: Vec<String> = good
            .iter()
            .map(|l| l.replace("cmdline console", "cmdline shim.verbose console"))
            .collect();
        assert!(judge(&leaked, exited())
            .unwrap_err()
            .contains("shim.verbose"));
        // Kernel code outside the reported slot (it ends at 0x5e0affff).
        for code in ["5c400000-5c50ffff", "5d000000-5e0b0000"] {
            let moved: Vec<String> = good
                .iter()
                .map(|l| l.replace("5c610000-5d2dffff", code))
                .collect();
            let why = judge(&moved, exited()).unwrap_err();
            assert!(why.contains("not inside the shim's slot"), "{why}");
            assert_eq!(
                linux_boot(&moved, exited()).judge(Expect::LinuxNoShim),
                Ok(())
            );
        }
        // Exactly the slot is fine.
        let edge: Vec<String> = good
            .iter()
            .map(|l| l.replace("5c610000-5d2dffff", "5c600000-5e0affff"))
            .collect();
        assert_eq!(judge(&edge, exited()), Ok(()));
        // No placed line, or one without size=.
        let unplaced: Vec<String> = good[1..].to_vec();
        assert!(judge(&unplaced, exited())
            .unwrap_err()
            .contains("no `shim: placed`"));
        assert_eq!(
            linux_boot(&unplaced, exited()).judge(Expect::LinuxNoShim),
            Ok(())
        );
        let mut sizeless = good.clone();
        sizeless[0] = "shim: placed pa=0x5c600000 slots=482".into();
        assert!(judge(&sizeless, exited()).unwrap_err().contains("no size="));
        // No done line: the last line is named.
        let cut = good[..6].to_vec();
        let why = judge(&cut, End::TimedOut).unwrap_err();
        assert!(
            why.contains("no `linux-test: done`") && why.contains("cmdline"),
            "{why}"
        );
        // Missing pieces.
        let no_iomem: Vec<String> = good
            .iter()
            .filter(|l| !l.contains("Kernel code"))
            .cloned()
            .collect();
        assert!(judge(&no_iomem, exited())
            .unwrap_err()
            .contains("Kernel code"));
    }

    #[test]
    fn linux_failures_decide_early() {
        let panic = linux_boot(
            &[
                "[    2.0] Kernel panic - not syncing: VFS: Unable to mount root fs".to_string(),
                "[    2.0] ---[ end Kernel panic - not syncing: VFS ]---".to_string(),
            ],
            exited(),
        );
        assert_eq!(panic.decided(Expect::Linux), Some(GRACE));
        let why = panic.judge(Expect::Linux).unwrap_err();
        assert!(why.starts_with("Kernel panic - not syncing: VFS"), "{why}");
        let refused = boot_of(
            &["shim: error: payload format LinuxArm64Image not supported yet"],
            End::Stopped,
        );
        assert_eq!(refused.decided(Expect::Linux), Some(GRACE));
        assert!(refused
            .judge(Expect::Linux)
            .unwrap_err()
            .contains("not supported yet"));
        assert_eq!(
            boot_of(&["[ 0.0] Booting Linux"], End::TimedOut).decided(Expect::Linux),
            None
        );
    }

    fn exited() -> End {
        use std::os::unix::process::ExitStatusExt;
        End::Exited(ExitStatus::from_raw(0))
    }

    #[test]
    fn judging_ok() {
        let ok = [
            "shim: placed pa=0x48000000 va=0xffff800000000000 slots=9 entropy=3 sources=rndr",
            "payload: ok va=0xffff800000000000 pa=0x48000000 ptrs=3 sources=0x4 bits=3",
        ];
        let boot = boot_of(&ok, exited());
        assert_eq!(boot.judge(Expect::Ok), Ok(()));
        assert_eq!(boot.payload_ok, Some((0xffff_8000_0000_0000, 0x4800_0000)));
        assert_eq!(boot.placed.as_ref().map(|p| p.slots), Some(Some(9)));
        assert_eq!(
            boot.placed.as_ref().map(|p| p.va),
            Some(Some(0xffff_8000_0000_0000))
        );
        assert!(boot.judge(Expect::DigestMismatch).is_err());
        assert!(boot_of(&ok, End::TimedOut).judge(Expect::Ok).is_err());
        // Only the payload's own power-off counts: on x86 isa-debug-exit's 33, not a
        // triple fault's or reset's 0, nor FAIL's 35; on arm64 PSCI's 0.
        use std::os::unix::process::ExitStatusExt;
        let status = |code: i32| End::Exited(ExitStatus::from_raw(code << 8));
        let mut x86 = boot_of(&ok, status(33));
        x86.ok_exit = crate::arch::X86_64.poweroff_exit;
        assert_eq!(x86.judge(Expect::Ok), Ok(()));
        for code in [0, 1, 35] {
            let mut other = boot_of(&ok, status(code));
            other.ok_exit = crate::arch::X86_64.poweroff_exit;
            let why = other.judge(Expect::Ok).unwrap_err();
            assert!(why.contains("not with status 33"), "{why}");
        }
        let mut arm = boot_of(&ok, status(33));
        arm.ok_exit = crate::arch::AARCH64.poweroff_exit;
        assert!(arm.judge(Expect::Ok).is_err());
        assert!(boot_of(&ok, End::Stopped).judge(Expect::Ok).is_err());
        assert!(boot_of(&["payload: FAIL bad"], exited())
            .judge(Expect::Ok)
            .is_err());
        assert!(boot_of(&["shim: no memory"], exited())
            .judge(Expect::Ok)
            .is_err());
    }

    #[test]
    fn judging_digest_mismatch() {
        let refused = boot_of(&["shim: payload digest mismatch"], End::Stopped);
        assert_eq!(refused.judge(Expect::DigestMismatch), Ok(()));
        assert_eq!(refused.decided(Expect::DigestMismatch), Some(GRACE));
        assert!(refused.judge(Expect::Ok).is_err());
        let ran = boot_of(
            &["shim: payload digest mismatch", "payload: ok va=0x1 pa=0x2"],
            exited(),
        );
        assert!(ran.judge(Expect::DigestMismatch).is_err());
        assert!(boot_of(&[], End::TimedOut)
            .judge(Expect::DigestMismatch)
            .is_err());
        // A kernel that starts after the mismatch line is a failure too.
        let linux_ran = boot_of(
            &[
                "shim: payload digest mismatch",
                "[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x000f0510]",
            ],
            exited(),
        );
        assert!(linux_ran.judge(Expect::DigestMismatch).is_err());
        let stopped = boot_of(
            &[
                "shim: error: cannot place payload",
                "[    0.1] KASLR enabled",
            ],
            exited(),
        );
        assert!(stopped.judge(Expect::ShimError).is_err());
    }

    #[test]
    fn summary_counts_distinct_placements() {
        let mut s = Summary::default();
        for (va, pa) in [(1, 10), (2, 10), (1, 10), (3, 30)] {
            let line = format!("payload: ok va={va:#x} pa={pa:#x}");
            s.add(&boot_of(&[&line], exited()), true);
        }
        s.add(&boot_of(&[], End::TimedOut), false);
        assert_eq!((s.passed, s.failed), (4, 1));
        assert_eq!((s.pairs.len(), s.pas.len(), s.vas.len()), (3, 2, 3));
        assert!(s.kernel_code.is_empty());
        assert!(!s.line().contains("Kernel code"));
    }

    #[test]
    fn summary_counts_linux_boots() {
        let mut s = Summary::default();
        for (code, kaslr, el, text) in [
            ("40210000", "enabled", 2, "ffff800008010000"),
            ("5c610000", "enabled", 1, "ffffb3f2c5410000"),
            (
                "40210000",
                "disabled on command line",
                2,
                "ffff800008010000",
            ),
        ] {
            let lines = [
                format!("[ 0.0] KASLR {kaslr}"),
                format!("[ 0.1] CPU: All CPU(s) started at EL{el}"),
                format!("linux-test: iomem   {code}-5fffffff : Kernel code"),
                format!("linux-test: text {text}"),
            ];
            s.add(&linux_boot(&lines, exited()), true);
        }
        assert_eq!(s.kernel_code.len(), 2);
        assert_eq!(s.text.len(), 2);
        assert_eq!((s.kaslr_enabled, s.kaslr_disabled, s.el2), (2, 1, 2));
        assert!(s.line().ends_with(
            "2 distinct Kernel code, 2 distinct _stext, KASLR enabled 2 / disabled 1, EL2 2"
        ));
    }
}
