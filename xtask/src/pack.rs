//! `cargo xtask pack`: what goes on a board's boot partition for its U-Boot. The shim
//! image (built with the payload, as `build` does), a `boot.scr` that U-Boot's distro
//! boot or standard boot finds on the partition and that loads and `booti`s the shim
//! (and an initrd, and a device tree if given, else the one U-Boot runs on), or, with
//! `--fit`, a FIT image holding them that the script `bootm`s.
//!
//! Addresses come from the board's own U-Boot environment (the boards crate), written
//! into the script as numbers so that what `check` accepted is what runs. `check`
//! applies U-Boot's rules: `booti` moves an Image whose flags say "anywhere" to the
//! next 2 MiB boundary (arch/arm/lib/image.c `booti_setup`) and refuses a ramdisk or
//! device tree overlapping the image there (boot/bootm.c `bootm_find_images`); `bootm`
//! refuses a kernel that overwrites the FIT it comes from or is longer than
//! CONFIG_SYS_BOOTM_LEN (boot/bootm.c `bootm_load_os`, boot/image.c `image_decomp`),
//! and U-Boot grows a tree it edits in place by CONFIG_SYS_FDT_PAD. The generators
//! (`Layout::of`, `check`, `boot_cmd`, `its`) are pure and unit-tested.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use shim_boards::{Arch as BoardArch, Board, UBoot, Var, BOARDS};
use shim_common::image::{parse_arm64, ImageSize, BASE_ALIGN};

use crate::arch::Arch;
use crate::image::{self, BuildArgs, Compress};
use crate::{deps, exec, target_dir};

/// The names on the boot partition.
pub const SHIM: &str = "shim.img";
pub const INITRD: &str = "initrd.img";
pub const DTB: &str = "shim.dtb";
pub const FIT: &str = "shim.fit";
pub const SCRIPT: &str = "boot.scr";
pub const SCRIPT_SOURCE: &str = "boot.cmd";
/// The FIT configuration's name (`bootm <addr>#boot`).
const FIT_CONFIG: &str = "boot";

/// CONFIG_SYS_FDT_PAD (boot/image-fdt.c): what U-Boot adds to a tree it edits.
const FDT_PAD: u64 = 0x3000;
/// What a boot script may take where the distro scan loads it: standard boot reads at
/// most 64 KiB (boot/bootmeth_script.c).
const SCRIPT_MAX: u64 = 0x1_0000;

#[derive(Args, Debug)]
pub struct PackArgs {
    /// The board (the boards crate's names).
    #[arg(long, value_name = "NAME", value_parser = board_names())]
    pub board: String,
    /// The payload: an ELF64 file or a Linux arm64 Image (raw or .gz) [default: the
    /// demo payload].
    #[arg(long, value_name = "FILE")]
    pub payload: Option<PathBuf>,
    /// An initrd to load and hand on (`booti`'s second argument, or in the FIT).
    #[arg(long, value_name = "FILE")]
    pub initrd: Option<PathBuf>,
    /// A device tree to load and hand on [default: the one U-Boot runs on].
    #[arg(long, value_name = "FILE")]
    pub dtb: Option<PathBuf>,
    /// Pack shim, device tree and initrd into one FIT image that the script `bootm`s.
    #[arg(long)]
    pub fit: bool,
    /// The command line: the script sets `bootargs` to it [default: leave U-Boot's].
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    pub append: Option<String>,
    /// The directory to write into (created if need be).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

fn board_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(BOARDS.iter().map(|b| b.name))
}

pub fn run(args: &PackArgs) -> Result<()> {
    let board = shim_boards::by_name(&args.board).context("no such board")?;
    ensure!(
        board.arch == BoardArch::Aarch64 && board.uboot.is_some(),
        "{} does not boot with U-Boot: nothing to pack for it",
        board.name
    );
    let work = work_dir(board);
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let built = image::build(&BuildArgs {
        arch: Arch::Aarch64,
        payload: args.payload.clone(),
        corrupt_payload: false,
        output: Some(work.join(SHIM)),
        debug: false,
        compress: Compress::Zlib,
        board: Some(board.name.to_string()),
    })?;
    let packed = pack(&Spec {
        board,
        shim: &built.path,
        initrd: args.initrd.as_deref(),
        dtb: args.dtb.as_deref(),
        fit: args.fit,
        append: args.append.as_deref(),
        out: &args.out,
    })?;
    for file in &packed.files {
        println!("{}", file.display());
    }
    eprintln!("xtask: {}", packed.summary);
    Ok(())
}

/// What to pack.
pub struct Spec<'a> {
    pub board: &'a Board,
    /// A built shim image.
    pub shim: &'a Path,
    pub initrd: Option<&'a Path>,
    pub dtb: Option<&'a Path>,
    pub fit: bool,
    pub append: Option<&'a str>,
    pub out: &'a Path,
}

/// What was written.
pub struct Packed {
    /// Every file written into the output directory.
    pub files: Vec<PathBuf>,
    /// One line: where things go.
    pub summary: String,
}

/// Where `cargo xtask pack` builds and where mkimage reads the FIT's parts.
fn work_dir(board: &Board) -> PathBuf {
    target_dir().join("xtask").join("pack").join(board.name)
}

/// Writes the boot partition's files for `spec` into `spec.out`.
pub fn pack(spec: &Spec) -> Result<Packed> {
    let board = spec.board;
    let uboot = board
        .uboot
        .as_ref()
        .with_context(|| format!("{} does not boot with U-Boot", board.name))?;
    if let Some(append) = spec.append {
        check_append(append)?;
    }
    let mut tools = vec![("u-boot-tools", "/usr/bin/mkimage")];
    if spec.fit {
        tools.push(("device-tree-compiler", "/usr/bin/dtc"));
    }
    deps::ensure_host_packages(&tools)?;

    let shim_bytes = fs::read(spec.shim).with_context(|| format!("{}", spec.shim.display()))?;
    let shim = Shim::of(&shim_bytes).with_context(|| format!("{}", spec.shim.display()))?;
    let size = |path: Option<&Path>| -> Result<Option<u64>> {
        path.map(|p| {
            fs::metadata(p)
                .map(|m| m.len())
                .with_context(|| format!("{}", p.display()))
        })
        .transpose()
    };
    let mut parts = Parts {
        shim,
        dtb: size(spec.dtb)?,
        initrd: size(spec.initrd)?,
        fit: None,
    };
    let mode = if spec.fit { Mode::Fit } else { Mode::Booti };
    let layout = Layout::of(uboot, mode, &parts).map_err(|why| anyhow::anyhow!("{why}"))?;
    fs::create_dir_all(spec.out).with_context(|| format!("creating {}", spec.out.display()))?;
    let mut files = Vec::new();
    let mut put = |name: &str, from: &Path| -> Result<()> {
        let to = spec.out.join(name);
        fs::copy(from, &to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        files.push(to);
        Ok(())
    };
    if spec.fit {
        // mkimage reads the parts the .its names from the .its's own directory.
        let work = work_dir(board).join("fit");
        let _ = fs::remove_dir_all(&work);
        fs::create_dir_all(&work)?;
        fs::write(work.join(SHIM), &shim_bytes)?;
        for (name, from) in [(DTB, spec.dtb), (INITRD, spec.initrd)] {
            if let Some(from) = from {
                fs::copy(from, work.join(name))
                    .with_context(|| format!("copying {}", from.display()))?;
            }
        }
        let its_path = work.join("shim.its");
        fs::write(&its_path, its(board, &layout, &parts))?;
        let fit_path = work.join(FIT);
        exec(
            Command::new("mkimage")
                .arg("-f")
                .arg(&its_path)
                .arg(&fit_path)
                .current_dir(&work),
        )?;
        parts.fit = Some(fs::metadata(&fit_path)?.len());
        put(FIT, &fit_path)?;
    } else {
        put(SHIM, spec.shim)?;
        if let Some(dtb) = spec.dtb {
            put(DTB, dtb)?;
        }
        if let Some(initrd) = spec.initrd {
            put(INITRD, initrd)?;
        }
    }
    check(uboot, &layout, &parts)
        .map_err(|why| anyhow::anyhow!("{}'s U-Boot would not boot this: {why}", board.name))?;
    let source = boot_cmd(board, uboot, &layout, &parts, spec.append);
    let cmd_path = spec.out.join(SCRIPT_SOURCE);
    fs::write(&cmd_path, &source)?;
    files.push(cmd_path.clone());
    let scr_path = spec.out.join(SCRIPT);
    exec(
        Command::new("mkimage")
            .args(["-A", "arm64", "-O", "linux", "-T", "script", "-C", "none"])
            .args(["-n", &format!("shim boot script for {}", board.name)])
            .arg("-d")
            .arg(&cmd_path)
            .arg(&scr_path),
    )?;
    files.push(scr_path);
    Ok(Packed {
        files,
        summary: layout.summary(&parts),
    })
}

/// The command line goes into the script in double quotes.
fn check_append(append: &str) -> Result<()> {
    if let Some(c) = append
        .chars()
        .find(|c| matches!(c, '"' | '\\' | '\n' | '\r'))
    {
        bail!("--append cannot hold {c:?}: the boot script quotes it with \"...\"");
    }
    Ok(())
}

/// What the shim's Image header tells a loader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shim {
    /// The file's length.
    pub file: u64,
    /// `image_size`: what the loader must leave free from the image's start.
    pub image_size: u64,
    pub text_offset: u64,
}

impl Shim {
    pub fn of(bytes: &[u8]) -> Result<Shim> {
        let header =
            parse_arm64(bytes).map_err(|e| anyhow::anyhow!("not an arm64 Image: {e:?}"))?;
        let ImageSize::Known(image_size) = header.image_size else {
            bail!("the Image header has no image_size");
        };
        // The shim's header says "anywhere"; an image that must sit at the start of RAM
        // would need the board's RAM base, which the table does not hold.
        ensure!(
            header.phys_anywhere,
            "the Image's flags do not say it may be placed anywhere (bit 3)"
        );
        Ok(Shim {
            file: bytes.len() as u64,
            image_size,
            text_offset: header.text_offset,
        })
    }
}

/// The sizes of what is packed.
#[derive(Clone, Copy, Debug)]
pub struct Parts {
    pub shim: Shim,
    pub dtb: Option<u64>,
    pub initrd: Option<u64>,
    /// The FIT image's length, once made.
    pub fit: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `load` each file, then `booti`.
    Booti,
    /// `load` the FIT, then `bootm` it.
    Fit,
}

/// Where everything goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub mode: Mode,
    /// Where the script loads the shim (Booti), or the FIT kernel's load/entry (Fit).
    pub shim_load: u64,
    /// Where the shim runs: `booti` moves it to the next 2 MiB boundary.
    pub shim_run: u64,
    /// Where a given device tree goes (loaded there, or the FIT's fdt load address).
    pub dtb: Option<Var>,
    /// Where the initrd is loaded (Booti; in a FIT it stays in place).
    pub initrd: Option<Var>,
    /// Where the script loads the FIT.
    pub fit: Option<Var>,
    /// Where the distro scan loaded the script itself.
    pub script: Option<Var>,
    /// The variable holding the tree to hand on when no tree is given.
    pub firmware_fdt: &'static str,
}

/// `booti_setup`'s relocation for an Image whose flags say "anywhere".
fn booti_run(load: u64, text_offset: u64) -> Option<u64> {
    let base = load.checked_sub(text_offset)?;
    base.checked_next_multiple_of(BASE_ALIGN)?
        .checked_add(text_offset)
}

impl Layout {
    /// The addresses for `uboot` (sizes are `check`'s business).
    pub fn of(uboot: &UBoot, mode: Mode, parts: &Parts) -> Result<Layout, String> {
        let t = parts.shim.text_offset;
        let run = booti_run(uboot.kernel.value, t)
            .ok_or_else(|| format!("{} is below text_offset", uboot.kernel.name))?;
        let missing =
            |what: &str| format!("U-Boot's {} environment has no {what}", uboot.defconfig);
        let dtb = match parts.dtb {
            Some(_) => Some(
                uboot
                    .fdt
                    .ok_or_else(|| missing("address for a device tree"))?,
            ),
            None => None,
        };
        let layout = match mode {
            Mode::Booti => Layout {
                mode,
                shim_load: uboot.kernel.value,
                shim_run: run,
                dtb,
                initrd: match parts.initrd {
                    Some(_) => Some(uboot.ramdisk.ok_or_else(|| missing("ramdisk_addr_r"))?),
                    None => None,
                },
                fit: None,
                script: uboot.script,
                firmware_fdt: uboot.firmware_fdt,
            },
            Mode::Fit => {
                if !uboot.fit {
                    return Err(format!(
                        "U-Boot's {} has no CONFIG_FIT: use the plain boot.scr",
                        uboot.defconfig
                    ));
                }
                // The FIT goes where the initrd would: the free rest of RAM. The kernel
                // is copied out of it to where booti would run it.
                Layout {
                    mode,
                    shim_load: run,
                    shim_run: run,
                    dtb,
                    initrd: None,
                    fit: Some(uboot.ramdisk.ok_or_else(|| missing("ramdisk_addr_r"))?),
                    script: uboot.script,
                    firmware_fdt: uboot.firmware_fdt,
                }
            }
        };
        Ok(layout)
    }

    /// One line for the console.
    pub fn summary(&self, parts: &Parts) -> String {
        let mut line = match self.mode {
            Mode::Booti => format!(
                "booti: {SHIM} ({:#x} bytes) loaded at {:#x}, runs at {:#x}",
                parts.shim.file, self.shim_load, self.shim_run
            ),
            Mode::Fit => format!(
                "bootm: {FIT} ({:#x} bytes) loaded at {:#x}, the shim runs at {:#x}",
                parts.fit.unwrap_or(0),
                self.fit.map_or(0, |v| v.value),
                self.shim_run
            ),
        };
        match (self.dtb, parts.dtb) {
            (Some(at), Some(size)) => {
                let _ = write!(line, "; device tree ({size:#x} bytes) at {:#x}", at.value);
            }
            _ => {
                let _ = write!(line, "; U-Boot's device tree (${{{}}})", self.firmware_fdt);
            }
        }
        match (self.initrd, parts.initrd) {
            (Some(at), Some(size)) => {
                let _ = write!(line, "; initrd ({size:#x} bytes) at {:#x}", at.value);
            }
            (None, Some(size)) => {
                let _ = write!(line, "; initrd ({size:#x} bytes) in the FIT");
            }
            _ => {}
        }
        line
    }
}

/// A range some step of the boot writes or reads.
#[derive(Clone, Copy, Debug)]
struct Region {
    what: &'static str,
    start: u64,
    size: u64,
    /// The shim as loaded and where it runs: booti moves the one over the other.
    shim: bool,
}

impl Region {
    fn end(&self) -> u64 {
        self.start.saturating_add(self.size)
    }

    fn overlaps(&self, other: &Region) -> bool {
        self.size > 0 && other.size > 0 && self.start < other.end() && other.start < self.end()
    }
}

/// Whether `uboot` boots `parts` laid out as `layout`; if not, why.
pub fn check(uboot: &UBoot, layout: &Layout, parts: &Parts) -> Result<(), String> {
    let shim = parts.shim;
    let region = |what, start: u64, size| Region {
        what,
        start,
        size,
        shim: false,
    };
    let mut regions = Vec::new();
    if let Some(script) = layout.script {
        regions.push(region("boot.scr at scriptaddr", script.value, SCRIPT_MAX));
    }
    let run = Region {
        shim: true,
        ..region(
            "the shim where it runs (image_size)",
            layout.shim_run,
            shim.image_size,
        )
    };
    match layout.mode {
        Mode::Booti => {
            regions.push(Region {
                shim: true,
                ..region("shim.img as loaded", layout.shim_load, shim.file)
            });
            regions.push(run);
            if let (Some(at), Some(size)) = (layout.initrd, parts.initrd) {
                regions.push(region("the initrd", at.value, size));
            }
        }
        Mode::Fit => {
            let fit_size = parts.fit.ok_or("the FIT is not made yet")?;
            if shim.file > uboot.bootm_len {
                return Err(format!(
                    "the shim ({:#x} bytes) is longer than bootm copies out of a FIT \
                     (CONFIG_SYS_BOOTM_LEN {:#x})",
                    shim.file, uboot.bootm_len
                ));
            }
            let fit = layout.fit.ok_or("no FIT address")?;
            regions.push(region("shim.fit as loaded", fit.value, fit_size));
            regions.push(run);
        }
    }
    if let (Some(at), Some(size)) = (layout.dtb, parts.dtb) {
        regions.push(region(
            "the device tree with U-Boot's padding",
            at.value,
            size + FDT_PAD,
        ));
    }
    for (i, a) in regions.iter().enumerate() {
        for b in &regions[i + 1..] {
            if a.overlaps(b) && !(a.shim && b.shim) {
                return Err(format!(
                    "{} ({:#x}..{:#x}) overlaps {} ({:#x}..{:#x})",
                    a.what,
                    a.start,
                    a.end(),
                    b.what,
                    b.start,
                    b.end()
                ));
            }
        }
    }
    Ok(())
}

/// `load ${devtype} ${devnum}:${distro_bootpart} <addr> ${prefix}<name>`: the load the
/// distro boot scripts use; U-Boot's scan sets those variables to where it found
/// boot.scr.
fn load(addr: u64, name: &str) -> String {
    format!("load ${{devtype}} ${{devnum}}:${{distro_bootpart}} {addr:#x} ${{prefix}}{name}")
}

/// The loads, then the boot command if every load worked (U-Boot's hush does not
/// stop a script at `exit`: the boot command sits in an `if`), then a line that
/// says why the script ended if the boot command returned.
fn load_and_boot(s: &mut String, loads: &[String], boot: &str, what: &str) {
    let _ = writeln!(
        s,
        "if {}; then\n\t{boot}\nfi\n\
         echo \"boot.scr: cannot load or boot {what} from ${{devtype}} ${{devnum}}:${{distro_bootpart}}\"",
        loads.join(" && ")
    );
}

/// The script source (boot.cmd) for `layout`.
pub fn boot_cmd(
    board: &Board,
    uboot: &UBoot,
    layout: &Layout,
    parts: &Parts,
    append: Option<&str>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# The shim on {}: made by `cargo xtask pack`; boot.scr is this file through\n\
         # `mkimage -A arm64 -O linux -T script -C none`. U-Boot's distro boot (or standard\n\
         # boot) finds boot.scr on the boot partition and sets devtype, devnum,\n\
         # distro_bootpart and prefix to where it found it.\n\
         # Addresses: U-Boot's {}_defconfig environment:",
        board.name, uboot.defconfig
    );
    let mut vars = vec![uboot.kernel];
    vars.extend(layout.dtb);
    vars.extend(layout.initrd);
    vars.extend(layout.fit);
    for v in vars {
        let _ = writeln!(s, "#   {}={:#x}", v.name, v.value);
    }
    match layout.mode {
        Mode::Booti => {
            let _ = writeln!(
                s,
                "# booti runs the shim at {:#x}, {} rounded up to 2 MiB (image_size {:#x}).",
                layout.shim_run, uboot.kernel.name, parts.shim.image_size
            );
        }
        Mode::Fit => {
            let _ = writeln!(
                s,
                "# {FIT} is loaded at {}; bootm copies the shim to {:#x}.",
                layout.fit.map_or("?", |v| v.name),
                layout.shim_run
            );
        }
    }
    if let Some(append) = append {
        let _ = writeln!(s, "setenv bootargs \"{append}\"");
    }
    let fdt_arg = match layout.dtb {
        Some(at) => format!("{:#x}", at.value),
        None => format!("${{{}}}", layout.firmware_fdt),
    };
    match layout.mode {
        Mode::Booti => {
            let mut loads = vec![load(layout.shim_load, SHIM)];
            if let Some(at) = layout.dtb {
                loads.push(load(at.value, DTB));
            }
            // The initrd is loaded last: booti takes its size from ${filesize}.
            let initrd = match layout.initrd {
                Some(at) => {
                    loads.push(load(at.value, INITRD));
                    format!("{:#x}:${{filesize}}", at.value)
                }
                None => "-".into(),
            };
            let boot = format!("booti {:#x} {initrd} {fdt_arg}", layout.shim_load);
            load_and_boot(&mut s, &loads, &boot, SHIM);
        }
        Mode::Fit => {
            let fit = layout.fit.map_or(0, |v| v.value);
            let conf = format!("{fit:#x}#{FIT_CONFIG}");
            let boot = match (layout.dtb, parts.initrd) {
                // The configuration names the tree (and the initrd).
                (Some(_), _) => format!("bootm {conf}"),
                // The initrd from the configuration, the tree U-Boot runs on.
                (None, Some(_)) => format!("bootm {conf} {conf} {fdt_arg}"),
                (None, None) => format!("bootm {conf} - {fdt_arg}"),
            };
            load_and_boot(&mut s, &[load(fit, FIT)], &boot, FIT);
        }
    }
    s
}

/// An address as FIT cells: one where every address fits 32 bits, else two.
fn cells(value: u64, two: bool) -> String {
    if two {
        format!("<{:#x} {:#x}>", value >> 32, value & 0xffff_ffff)
    } else {
        format!("<{value:#x}>")
    }
}

/// The FIT source (.its) for `layout`, naming the parts by their boot partition names.
pub fn its(board: &Board, layout: &Layout, parts: &Parts) -> String {
    let two = [Some(layout.shim_run), layout.dtb.map(|v| v.value)]
        .into_iter()
        .flatten()
        .any(|a| a > u64::from(u32::MAX));
    let load = cells(layout.shim_run, two);
    let mut s = format!(
        "/dts-v1/;\n\
         \n\
         / {{\n\
         \tdescription = \"The shim for {board}, by cargo xtask pack\";\n\
         \t#address-cells = <{cells}>;\n\
         \n\
         \timages {{\n\
         \t\tshim {{\n\
         \t\t\tdescription = \"shim\";\n\
         \t\t\tdata = /incbin/(\"{SHIM}\");\n\
         \t\t\ttype = \"kernel\";\n\
         \t\t\tarch = \"arm64\";\n\
         \t\t\tos = \"linux\";\n\
         \t\t\tcompression = \"none\";\n\
         \t\t\tload = {load};\n\
         \t\t\tentry = {load};\n\
         \t\t\thash-1 {{\n\t\t\t\talgo = \"sha256\";\n\t\t\t}};\n\
         \t\t}};\n",
        board = board.name,
        cells = if two { 2 } else { 1 },
    );
    if parts.dtb.is_some() {
        let _ = write!(
            s,
            "\t\tfdt {{\n\
             \t\t\tdescription = \"device tree\";\n\
             \t\t\tdata = /incbin/(\"{DTB}\");\n\
             \t\t\ttype = \"flat_dt\";\n\
             \t\t\tarch = \"arm64\";\n\
             \t\t\tcompression = \"none\";\n"
        );
        if let Some(at) = layout.dtb {
            let _ = writeln!(s, "\t\t\tload = {};", cells(at.value, two));
        }
        let _ = write!(
            s,
            "\t\t\thash-1 {{\n\t\t\t\talgo = \"sha256\";\n\t\t\t}};\n\t\t}};\n"
        );
    }
    if parts.initrd.is_some() {
        let _ = write!(
            s,
            "\t\tinitrd {{\n\
             \t\t\tdescription = \"initrd\";\n\
             \t\t\tdata = /incbin/(\"{INITRD}\");\n\
             \t\t\ttype = \"ramdisk\";\n\
             \t\t\tarch = \"arm64\";\n\
             \t\t\tos = \"linux\";\n\
             \t\t\tcompression = \"none\";\n\
             \t\t\thash-1 {{\n\t\t\t\talgo = \"sha256\";\n\t\t\t}};\n\
             \t\t}};\n"
        );
    }
    let _ = write!(
        s,
        "\t}};\n\
         \n\
         \tconfigurations {{\n\
         \t\tdefault = \"{FIT_CONFIG}\";\n\
         \t\t{FIT_CONFIG} {{\n\
         \t\t\tdescription = \"shim\";\n\
         \t\t\tkernel = \"shim\";\n"
    );
    if parts.dtb.is_some() {
        s.push_str("\t\t\tfdt = \"fdt\";\n");
    }
    if parts.initrd.is_some() {
        s.push_str("\t\t\tramdisk = \"initrd\";\n");
    }
    s.push_str("\t\t};\n\t};\n};\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use shim_boards::{IMX8MP_EVK, QEMU_VIRT, ROCKPRO64, RPI4};

    const MIB: u64 = 1 << 20;

    fn uboot(board: &Board) -> &UBoot {
        board.uboot.as_ref().unwrap()
    }

    /// The demo payload's shim: 0xc9000 bytes, image_size the whole file.
    fn parts(dtb: Option<u64>, initrd: Option<u64>) -> Parts {
        Parts {
            shim: Shim {
                file: 0xc_9000,
                image_size: 0xc_9000,
                text_offset: 0,
            },
            dtb,
            initrd,
            fit: None,
        }
    }

    fn shim_of(mib: u64) -> Shim {
        Shim {
            file: mib * MIB,
            image_size: mib * MIB,
            text_offset: 0,
        }
    }

    const HEADER: &str = "\
# The shim on {board}: made by `cargo xtask pack`; boot.scr is this file through
# `mkimage -A arm64 -O linux -T script -C none`. U-Boot's distro boot (or standard
# boot) finds boot.scr on the boot partition and sets devtype, devnum,
# distro_bootpart and prefix to where it found it.
# Addresses: U-Boot's {defconfig}_defconfig environment:
";
    const LOAD: &str = "load ${devtype} ${devnum}:${distro_bootpart}";

    fn header(board: &Board) -> String {
        HEADER
            .replace("{board}", board.name)
            .replace("{defconfig}", uboot(board).defconfig)
    }

    #[test]
    fn rpi4_script_with_tree_and_initrd() {
        let p = parts(Some(0xc000), Some(0x20_0000));
        let layout = Layout::of(uboot(&RPI4), Mode::Booti, &p).unwrap();
        // booti moves the shim from 0x80000 to the next 2 MiB boundary.
        assert_eq!((layout.shim_load, layout.shim_run), (0x8_0000, 0x20_0000));
        assert_eq!(check(uboot(&RPI4), &layout, &p), Ok(()));
        let text = boot_cmd(
            &RPI4,
            uboot(&RPI4),
            &layout,
            &p,
            Some("console=ttyS1,115200 shim.verbose"),
        );
        let want = header(&RPI4)
            + "\
#   kernel_addr_r=0x80000
#   fdt_addr_r=0x5600000
#   ramdisk_addr_r=0x5700000
# booti runs the shim at 0x200000, kernel_addr_r rounded up to 2 MiB (image_size 0xc9000).
setenv bootargs \"console=ttyS1,115200 shim.verbose\"
if {LOAD} 0x80000 ${prefix}shim.img && {LOAD} 0x5600000 ${prefix}shim.dtb && {LOAD} 0x5700000 ${prefix}initrd.img; then
\tbooti 0x80000 0x5700000:${filesize} 0x5600000
fi
echo \"boot.scr: cannot load or boot shim.img from ${devtype} ${devnum}:${distro_bootpart}\"
";
        assert_eq!(text, want.replace("{LOAD}", LOAD));
    }

    #[test]
    fn script_with_the_firmware_tree() {
        let p = parts(None, None);
        for (board, fdt) in [
            (&RPI4, "${fdt_addr}"),
            (&QEMU_VIRT, "${fdtcontroladdr}"),
            (&ROCKPRO64, "${fdtcontroladdr}"),
            (&IMX8MP_EVK, "${fdtcontroladdr}"),
        ] {
            let layout = Layout::of(uboot(board), Mode::Booti, &p).unwrap();
            let text = boot_cmd(board, uboot(board), &layout, &p, None);
            let kernel = uboot(board).kernel.value;
            let want = format!(
                "if {LOAD} {kernel:#x} ${{prefix}}shim.img; then\n\tbooti {kernel:#x} - {fdt}\nfi\n"
            );
            assert!(text.contains(&want), "{}:\n{text}", board.name);
            assert!(!text.contains("bootargs"), "{}", board.name);
        }
    }

    #[test]
    fn fit_script_and_its() {
        let mut p = parts(Some(0x10_0000), Some(0x20_3464));
        let u = uboot(&QEMU_VIRT);
        let layout = Layout::of(u, Mode::Fit, &p).unwrap();
        assert_eq!(layout.shim_run, 0x4040_0000);
        assert_eq!(layout.fit.map(|v| v.value), Some(0x4400_0000));
        assert!(check(u, &layout, &p).is_err(), "no FIT size yet");
        p.fit = Some(0x3c_cbf8);
        assert_eq!(check(u, &layout, &p), Ok(()));
        let text = boot_cmd(&QEMU_VIRT, u, &layout, &p, Some("shim.verbose"));
        let want = header(&QEMU_VIRT)
            + "\
#   kernel_addr_r=0x40400000
#   fdt_addr=0x40000000
#   ramdisk_addr_r=0x44000000
# shim.fit is loaded at ramdisk_addr_r; bootm copies the shim to 0x40400000.
setenv bootargs \"shim.verbose\"
if {LOAD} 0x44000000 ${prefix}shim.fit; then
\tbootm 0x44000000#boot
fi
echo \"boot.scr: cannot load or boot shim.fit from ${devtype} ${devnum}:${distro_bootpart}\"
";
        assert_eq!(text, want.replace("{LOAD}", LOAD));
        let source = its(&QEMU_VIRT, &layout, &p);
        let want = "\
/dts-v1/;

/ {
\tdescription = \"The shim for qemu-virt, by cargo xtask pack\";
\t#address-cells = <1>;

\timages {
\t\tshim {
\t\t\tdescription = \"shim\";
\t\t\tdata = /incbin/(\"shim.img\");
\t\t\ttype = \"kernel\";
\t\t\tarch = \"arm64\";
\t\t\tos = \"linux\";
\t\t\tcompression = \"none\";
\t\t\tload = <0x40400000>;
\t\t\tentry = <0x40400000>;
\t\t\thash-1 {
\t\t\t\talgo = \"sha256\";
\t\t\t};
\t\t};
\t\tfdt {
\t\t\tdescription = \"device tree\";
\t\t\tdata = /incbin/(\"shim.dtb\");
\t\t\ttype = \"flat_dt\";
\t\t\tarch = \"arm64\";
\t\t\tcompression = \"none\";
\t\t\tload = <0x40000000>;
\t\t\thash-1 {
\t\t\t\talgo = \"sha256\";
\t\t\t};
\t\t};
\t\tinitrd {
\t\t\tdescription = \"initrd\";
\t\t\tdata = /incbin/(\"initrd.img\");
\t\t\ttype = \"ramdisk\";
\t\t\tarch = \"arm64\";
\t\t\tos = \"linux\";
\t\t\tcompression = \"none\";
\t\t\thash-1 {
\t\t\t\talgo = \"sha256\";
\t\t\t};
\t\t};
\t};

\tconfigurations {
\t\tdefault = \"boot\";
\t\tboot {
\t\t\tdescription = \"shim\";
\t\t\tkernel = \"shim\";
\t\t\tfdt = \"fdt\";
\t\t\tramdisk = \"initrd\";
\t\t};
\t};
};
";
        assert_eq!(source, want);
    }

    #[test]
    fn fit_without_a_tree_hands_on_u_boots() {
        let u = uboot(&ROCKPRO64);
        let mut p = parts(None, Some(0x1000));
        p.fit = Some(0x10_0000);
        let layout = Layout::of(u, Mode::Fit, &p).unwrap();
        let text = boot_cmd(&ROCKPRO64, u, &layout, &p, None);
        assert!(text.contains("\tbootm 0x12180000#boot 0x12180000#boot ${fdtcontroladdr}\n"));
        let source = its(&ROCKPRO64, &layout, &p);
        assert!(source.contains("load = <0x2000000>;") && !source.contains("fdt"));
        p.initrd = None;
        let text = boot_cmd(&ROCKPRO64, u, &layout, &p, None);
        assert!(text.contains("\tbootm 0x12180000#boot - ${fdtcontroladdr}\n"));
        // Addresses above 4 GiB take two cells.
        let high = Layout {
            shim_run: 0x1_0020_0000,
            ..layout
        };
        let source = its(&ROCKPRO64, &high, &p);
        assert!(source.contains("#address-cells = <2>;"));
        assert!(source.contains("load = <0x1 0x200000>;"));
    }

    #[test]
    fn what_u_boot_would_refuse() {
        // qemu-virt: the initrd at 0x44000000 leaves the shim 60 MiB.
        let u = uboot(&QEMU_VIRT);
        let mut p = parts(None, Some(MIB));
        p.shim = shim_of(60);
        let layout = Layout::of(u, Mode::Booti, &p).unwrap();
        assert_eq!(check(u, &layout, &p), Ok(()));
        p.shim.image_size += 1;
        let why = check(u, &layout, &p).unwrap_err();
        assert!(why.contains("the initrd"), "{why}");
        // A tree at fdt_addr runs into scriptaddr past 2 MiB with U-Boot's padding.
        let mut p = parts(Some(2 * MIB - FDT_PAD), None);
        let layout = Layout::of(u, Mode::Booti, &p).unwrap();
        assert_eq!(check(u, &layout, &p), Ok(()));
        p.dtb = Some(2 * MIB - FDT_PAD + 1);
        assert!(check(u, &layout, &p).unwrap_err().contains("boot.scr"));
        // imx8mp-evk: bootm copies at most 32 MiB out of a FIT.
        let u = uboot(&IMX8MP_EVK);
        let mut p = parts(None, None);
        p.shim = shim_of(32);
        p.fit = Some(33 * MIB);
        let layout = Layout::of(u, Mode::Fit, &p).unwrap();
        assert_eq!(layout.shim_run, 0x4060_0000);
        assert_eq!(check(u, &layout, &p), Ok(()));
        p.shim.file += 1;
        assert!(check(u, &layout, &p)
            .unwrap_err()
            .contains("CONFIG_SYS_BOOTM_LEN"));
        // The RPi's U-Boot has no FIT support; qemu-virt's environment has no place
        // for a tree besides QEMU's own, which a FIT's tree also takes.
        let why = Layout::of(uboot(&RPI4), Mode::Fit, &parts(None, None)).unwrap_err();
        assert!(why.contains("CONFIG_FIT"), "{why}");
        assert!(check_append("a \"b\"").is_err());
        assert!(check_append("console=ttyS1,115200 ${bootargs}").is_ok());
    }

    /// The board table: unique names; U-Boot boards are arm64 with 2 MiB-aligned load
    /// places where it matters; and for each, a shim of 32 MiB (Debian's kernel packed)
    /// with a 256 KiB tree and a 64 MiB initrd fits every way U-Boot takes it.
    #[test]
    fn the_board_table_is_consistent() {
        let mut names: Vec<_> = BOARDS.iter().map(|b| b.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), BOARDS.len());
        for board in BOARDS {
            if let Some(q) = board.qemu {
                assert!(q.mem_fixed || q.mem.ends_with('G'), "{}", board.name);
            }
            let Some(u) = &board.uboot else {
                continue;
            };
            assert_eq!(board.arch, BoardArch::Aarch64, "{}", board.name);
            assert!(
                ["fdt_addr", "fdtcontroladdr"].contains(&u.firmware_fdt),
                "{}",
                board.name
            );
            let mut p = parts(Some(256 << 10), Some(64 * MIB));
            p.shim = shim_of(32);
            let layout = Layout::of(u, Mode::Booti, &p).unwrap();
            assert_eq!(check(u, &layout, &p), Ok(()), "{} booti", board.name);
            if u.fit {
                p.fit = Some(32 * MIB + (256 << 10) + 64 * MIB + 0x1000);
                let layout = Layout::of(u, Mode::Fit, &p).unwrap();
                assert_eq!(layout.shim_run % BASE_ALIGN, 0, "{}", board.name);
                assert_eq!(check(u, &layout, &p), Ok(()), "{} FIT", board.name);
            }
        }
    }

    #[test]
    fn the_shims_header() {
        let mut img = vec![0u8; 0x2000];
        img[0x10..0x18].copy_from_slice(&0x2000u64.to_le_bytes());
        img[0x18..0x20].copy_from_slice(&0xau64.to_le_bytes()); // LE, 4K, anywhere
        img[0x38..0x3c].copy_from_slice(b"ARM\x64");
        assert_eq!(
            Shim::of(&img).unwrap(),
            Shim {
                file: 0x2000,
                image_size: 0x2000,
                text_offset: 0
            }
        );
        img[0x18] = 0x2; // not "anywhere"
        assert!(Shim::of(&img).is_err());
        assert_eq!(booti_run(0x8_0000, 0), Some(0x20_0000));
        assert_eq!(booti_run(0x4040_0000, 0), Some(0x4040_0000));
        assert_eq!(booti_run(0x4048_0000, 0x8_0000), Some(0x4048_0000));
    }
}
