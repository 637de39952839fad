//! `cargo xtask build`: builds the shim and the payload, flattens the shim with
//! llvm-objcopy and appends the payload container, giving `target/xtask/<arch>/shim.img`.
//! The payload is an ELF64 file or a Linux arm64 Image (raw, or a gzip member kept as
//! it is); `detect` tells which from its bytes. The packing arithmetic (`detect`,
//! `container_for`, `assemble`, `corrupt_container`) is pure and unit-tested.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, ensure, Context, Result};
use clap::Args;
use sha2::{Digest, Sha256};
use shim_common::boot;
use shim_common::container::{self, Compression, Format, Header, Inflater, HEADER_LEN, MAGIC};
use shim_common::elf::{self, Machine};
use shim_common::image::{self, Arm64Image, ImageSize};

use crate::arch::{Arch, ImageHeader, Packing, Target};
use crate::{bzimage, capture, cargo, deps, exec, target_dir, workspace_root};

/// Loaders map and copy the image in pages; the container starts on one and the
/// total length is rounded up to one.
const PAGE: usize = 4096;
/// Where the container header keeps the SHA-256 of the unpacked payload.
const DIGEST_OFFSET: usize = core::mem::offset_of!(Header, sha256);

#[derive(Args, Clone, Debug)]
pub struct BuildArgs {
    /// The architecture to build for.
    #[arg(long, value_enum, default_value = "aarch64")]
    pub arch: Arch,
    /// Pack this payload instead of the demo one: an ELF64 file, (aarch64) a Linux
    /// arm64 Image, raw or gzip-compressed (Image.gz), or (x86_64) a Linux bzImage.
    #[arg(long, value_name = "FILE")]
    pub payload: Option<PathBuf>,
    /// Pack the payload with one byte flipped under the original's digest (written to
    /// shim-corrupt.img): the shim must refuse it.
    #[arg(long)]
    pub corrupt_payload: bool,
    /// Write the image here [default: target/xtask/<arch>/shim.img, or
    /// shim-corrupt.img with --corrupt-payload].
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Build the shim and the demo payload unoptimized [default: optimized, cargo's
    /// release profile].
    #[arg(long)]
    pub debug: bool,
    /// How the shim's container packs an ELF payload or a raw Image (an Image.gz is
    /// kept as its gzip member, a bzImage as it is).
    #[arg(long, value_enum, default_value = "zlib")]
    pub compress: Compress,
    /// The board [default: qemu-virt, or qemu-q35 for x86_64]. The arm64 image names
    /// its console UART for the lines said before the device tree is read (an
    /// incomplete image, say); `qemu` boots the board's QEMU model (machine, CPU,
    /// memory, console UART), its Debian device tree as the -dtb.
    #[arg(long, value_name = "NAME", value_parser = crate::qemu::board_names())]
    pub board: Option<String>,
}

/// The container's encodings xtask writes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compress {
    /// zlib at level 10 (miniz_oxide's best).
    Zlib,
    /// One gzip member, as distributions ship Image.gz.
    Gzip,
    /// LZ4's legacy frame (`lz4 -l`): larger, several times faster to decode.
    Lz4,
    /// Stored: nothing to inflate, the loader reads every byte.
    None,
}

impl Compress {
    /// The container encoding it names.
    pub fn compression(self) -> Compression {
        match self {
            Compress::Zlib => Compression::Zlib,
            Compress::Gzip => Compression::Gzip,
            Compress::Lz4 => Compression::Lz4,
            Compress::None => Compression::None,
        }
    }
}

impl BuildArgs {
    /// What `cargo xtask build --arch <arch>` builds: the demo payload, optimized, in a
    /// zlib container, for the arch's default board.
    pub fn demo(arch: Arch) -> BuildArgs {
        BuildArgs {
            arch,
            payload: None,
            corrupt_payload: false,
            output: None,
            debug: false,
            compress: Compress::Zlib,
            board: None,
        }
    }

    fn profile(&self) -> &'static str {
        if self.debug {
            "debug"
        } else {
            "release"
        }
    }
}

/// A written image.
#[derive(Debug)]
pub struct Built {
    pub path: PathBuf,
    /// What its payload is.
    pub kind: PayloadKind,
    /// The shim's ELF as cargo built it, with its symbols.
    pub shim_elf: PathBuf,
    /// Bytes of `shim.bin`: the shim's flat image, without payload.
    pub shim_bin_len: u64,
}

/// Builds everything and writes the image.
pub fn build(args: &BuildArgs) -> Result<Built> {
    let target = args.arch.target();
    deps::ensure_toolchain(target)?;

    // A given payload is checked before anything is built.
    let payload_path = match &args.payload {
        Some(path) => path.clone(),
        None => cargo_build(target, target.payload_package, args)?,
    };
    let original = read(&payload_path)?;
    let kind = detect(&original)
        .and_then(|kind| kind.check_arch(args.arch).map(|()| kind))
        .with_context(|| format!("payload {}", payload_path.display()))?;
    let shim_elf = cargo_build(target, target.shim_package, args)?;
    check_self_relocations(args.arch, &read(&shim_elf)?)
        .with_context(|| format!("checking {}", shim_elf.display()))?;

    let out_dir = target_dir().join("xtask").join(target.name);
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let payload = match kind {
        // The loader needs the program headers and the dynamic section, not the debug
        // information (90% of a release build): pack the payload without it.
        PayloadKind::Elf64 { .. } => {
            let stripped = out_dir.join("payload.elf");
            exec(
                Command::new(objcopy()?)
                    .arg("--strip-debug")
                    .arg(&payload_path)
                    .arg(&stripped),
            )?;
            read(&stripped)?
        }
        _ => original,
    };
    let flat_path = out_dir.join("shim.bin");
    exec(
        Command::new(objcopy()?)
            .args(["-O", "binary"])
            .arg(&shim_elf)
            .arg(&flat_path),
    )?;
    let flat = read(&flat_path)?;
    // Beside the image, for inspection and the fault cases (x86 rewrites it below).
    fs::copy(&shim_elf, out_dir.join("shim.elf"))
        .with_context(|| format!("copying {}", shim_elf.display()))?;

    let container = match kind {
        PayloadKind::Elf64 { .. } => {
            container_with(&kind, &payload, args.corrupt_payload, args.compress)
        }
        // A kernel takes seconds to compress in an unoptimized xtask: once per input.
        _ => cached_container(
            &out_dir.join("containers"),
            &kind,
            &payload,
            args.corrupt_payload,
            args.compress,
        ),
    }
    .with_context(|| format!("packing {}", payload_path.display()))?;
    let mut image = assemble(&target.header, &flat, &container)
        .with_context(|| format!("packing {}", shim_elf.display()))?;
    if let Packing::Image = target.packing {
        let board = match &args.board {
            Some(name) => {
                shim_boards::by_name(name).with_context(|| format!("no board called {name}"))?
            }
            None => target.board,
        };
        write_early_uart(&mut image, &board.console)?;
    }
    if let Packing::BzImage { setup_section } = target.packing {
        let setup_path = out_dir.join("setup.bin");
        exec(
            Command::new(objcopy()?)
                .arg(format!(
                    "--dump-section={setup_section}={}",
                    setup_path.display()
                ))
                .arg(&shim_elf)
                .arg(out_dir.join("shim.elf")),
        )?;
        image = bzimage::assemble(&read(&setup_path)?, &image)
            .with_context(|| format!("making a bzImage of {}", shim_elf.display()))?;
    }

    let path = match &args.output {
        Some(path) => path.clone(),
        None if args.corrupt_payload => out_dir.join("shim-corrupt.img"),
        None => out_dir.join("shim.img"),
    };
    fs::write(&path, &image).with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "xtask: {}: shim {} bytes + container {} bytes ({} byte {}{}) = {} bytes",
        path.display(),
        flat.len(),
        container.len(),
        payload.len(),
        kind,
        if args.corrupt_payload {
            ", corrupted"
        } else {
            ""
        },
        image.len()
    );
    Ok(Built {
        path,
        kind,
        shim_elf,
        shim_bin_len: flat.len() as u64,
    })
}

/// What a payload file is, as `detect` reads it from its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadKind {
    /// An ELF64 file (`machine` is its `e_machine`); the shim loads an ET_DYN one.
    Elf64 { machine: u16 },
    /// A Linux arm64 Image: "ARM\x64" at 0x38.
    Arm64Image(Arm64Image),
    /// One gzip member that inflates to a Linux arm64 Image of `size` bytes.
    Arm64ImageGz { header: Arm64Image, size: u64 },
    /// An x86 bzImage: "HdrS" at 0x202.
    BzImage,
}

/// `e_machine` values of the architectures the shim runs on.
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
/// Where an arm64 Image keeps its magic, and an x86 bzImage its setup header's.
const ARM64_MAGIC_AT: usize = 0x38;
const HDRS_AT: usize = 0x202;

impl PayloadKind {
    /// Whether the shim of `arch` can carry this payload; if not, why.
    pub fn check_arch(&self, arch: Arch) -> Result<()> {
        match (self, arch) {
            (PayloadKind::Elf64 { machine }, _) => {
                let want = match arch {
                    Arch::Aarch64 => EM_AARCH64,
                    Arch::X86_64 => EM_X86_64,
                };
                ensure!(
                    *machine == want,
                    "an ELF64 file for machine {machine} ({}), not {}",
                    machine_name(*machine),
                    arch.target().name
                );
                Ok(())
            }
            (PayloadKind::Arm64Image(_) | PayloadKind::Arm64ImageGz { .. }, Arch::Aarch64) => {
                Ok(())
            }
            (PayloadKind::Arm64Image(_) | PayloadKind::Arm64ImageGz { .. }, Arch::X86_64) => {
                bail!("a Linux arm64 Image: an x86_64 shim cannot carry it")
            }
            (PayloadKind::BzImage, Arch::X86_64) => Ok(()),
            (PayloadKind::BzImage, Arch::Aarch64) => {
                bail!("an x86 bzImage (HdrS at {HDRS_AT:#x}): an aarch64 shim cannot carry it")
            }
        }
    }
}

impl fmt::Display for PayloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header = |f: &mut fmt::Formatter<'_>, h: &Arm64Image| {
            let size = match h.image_size {
                ImageSize::Known(size) => format!("{size:#x}"),
                ImageSize::Unknown => "unknown".into(),
            };
            write!(
                f,
                "text_offset={:#x} image_size={size} flags={:#x}",
                h.text_offset, h.flags
            )
        };
        match self {
            PayloadKind::Elf64 { machine } => write!(f, "ELF64 {}", machine_name(*machine)),
            PayloadKind::Arm64Image(h) => {
                f.write_str("Linux arm64 Image, ")?;
                header(f, h)
            }
            PayloadKind::Arm64ImageGz { header: h, size } => {
                write!(
                    f,
                    "gzip member kept as is, inflating to a {size} byte Linux arm64 Image, "
                )?;
                header(f, h)
            }
            PayloadKind::BzImage => f.write_str("x86 bzImage"),
        }
    }
}

fn machine_name(machine: u16) -> &'static str {
    match machine {
        EM_AARCH64 => "aarch64",
        EM_X86_64 => "x86_64",
        _ => "other",
    }
}

/// Tells what a payload file is from its bytes: an ELF64 file, a Linux arm64 Image
/// (its header checked), a gzip member that inflates to one, or an x86 bzImage.
/// Anything else is one error naming what was found.
pub fn detect(bytes: &[u8]) -> Result<PayloadKind> {
    if bytes.starts_with(b"\x7fELF") {
        return match bytes.get(4) {
            Some(2) => {
                let machine = bytes
                    .get(18..20)
                    .map(|b| u16::from_le_bytes([b[0], b[1]]))
                    .context("an ELF64 file shorter than its header")?;
                Ok(PayloadKind::Elf64 { machine })
            }
            Some(1) => bail!("a 32-bit ELF file (the shim loads ELF64)"),
            class => bail!("an ELF file of unknown class {class:?}"),
        };
    }
    if bytes.get(ARM64_MAGIC_AT..ARM64_MAGIC_AT + 4) == Some(b"ARM\x64") {
        let header = image::parse_arm64(bytes).map_err(|e| anyhow!("a Linux arm64 Image: {e}"))?;
        return Ok(PayloadKind::Arm64Image(header));
    }
    if bytes.starts_with(&[0x1f, 0x8b]) {
        // The same checks the shim makes: one whole member, inflating to exactly the
        // size the header will record.
        let packed = container::pack_gzip(Format::LinuxArm64Image, bytes)
            .map_err(|e| anyhow!("gzip data that does not unpack: {e}"))?;
        let parsed = container::parse(&packed).map_err(|e| anyhow!("gzip data: {e}"))?;
        let mut head = [0u8; 0x400];
        let mut inflater = Box::<Inflater>::default();
        let n = container::unpack_prefix(&parsed, &mut head, &mut inflater)
            .map_err(|e| anyhow!("gzip data: {e}"))?;
        let head = &head[..n];
        if head.get(ARM64_MAGIC_AT..ARM64_MAGIC_AT + 4) != Some(b"ARM\x64") {
            bail!(
                "gzip data that inflates to something else than an arm64 Image: {}",
                describe(head)
            );
        }
        let header = image::parse_arm64(head)
            .map_err(|e| anyhow!("gzip data inflating to a Linux arm64 Image: {e}"))?;
        return Ok(PayloadKind::Arm64ImageGz {
            header,
            size: parsed.unpacked_size,
        });
    }
    if bytes.get(HDRS_AT..HDRS_AT + 4) == Some(b"HdrS") {
        // The shim's own checks: protocol 2.12+, relocatable, a 64-bit entry, a payload.
        shim_common::x86_linux::parse_bzimage(bytes)
            .map_err(|e| anyhow!("an x86 bzImage the shim cannot boot: {e}"))?;
        return Ok(PayloadKind::BzImage);
    }
    bail!("{}", describe(bytes))
}

/// Names the kind of bytes that are no payload, for an error message.
fn describe(bytes: &[u8]) -> String {
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    if bytes.is_empty() {
        return "an empty file".into();
    }
    if starts(b"MZ") {
        // EFI zboot (Linux drivers/firmware/efi/libstub/zboot-header.S): "zimg" at 4,
        // the compression's name at 0x18.
        if bytes.get(4..8) == Some(b"zimg") {
            let name = bytes
                .get(0x18..0x20)
                .map(|b| {
                    String::from_utf8_lossy(b)
                        .trim_end_matches('\0')
                        .to_string()
                })
                .unwrap_or_default();
            return format!(
                "an EFI zboot image ({name}-compressed Image inside a PE/COFF file): \
                 unpack its Image first"
            );
        }
        return "a PE/COFF file without an arm64 Image header".into();
    }
    if bytes.get(HDRS_AT..HDRS_AT + 4) == Some(b"HdrS") {
        return format!("an x86 bzImage (HdrS at {HDRS_AT:#x})");
    }
    let compressed = [
        (&b"\x28\xb5\x2f\xfd"[..], "zstd"),
        (b"\xfd7zXZ\0", "xz"),
        (b"\x04\x22\x4d\x18", "lz4"),
        (b"\x02\x21\x4c\x18", "lz4 (legacy)"),
        (b"BZh", "bzip2"),
        (b"\x89LZO", "lzo"),
        (b"\x5d\x00\x00", "lzma"),
        (b"\x1f\x8b", "gzip"),
    ];
    if let Some((_, name)) = compressed.iter().find(|(magic, _)| starts(magic)) {
        return format!(
            "{name} compressed data (only gzip is unpacked, and only around an arm64 Image)"
        );
    }
    if starts(b"\x7fELF") {
        return "an ELF file".into();
    }
    if starts(b"070701") || starts(b"070702") {
        return "a cpio archive (an initramfs, not a kernel)".into();
    }
    let first: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("unknown format (first bytes {})", first.join(" "))
}

/// The container for a payload of this kind: zlib for an ELF or a raw Image, a gzip
/// member kept as it is. `corrupt` flips the middle byte of the unpacked payload
/// under the original's digest (a gzip one is compressed afresh).
#[cfg(test)]
pub fn container_for(kind: &PayloadKind, payload: &[u8], corrupt: bool) -> Result<Vec<u8>> {
    container_with(kind, payload, corrupt, Compress::Zlib)
}

/// `container_for` with an ELF payload or a raw Image packed as `compress` says.
pub fn container_with(
    kind: &PayloadKind,
    payload: &[u8],
    corrupt: bool,
    compress: Compress,
) -> Result<Vec<u8>> {
    let c = compress.compression();
    match (kind, corrupt) {
        (PayloadKind::Elf64 { machine }, corrupt) => {
            // Laid out as it loads, its headers kept: the shim unpacks it in its slot.
            let machine = Machine::from_e_machine(*machine)
                .with_context(|| format!("an ELF64 file for machine {machine}"))?;
            let elf_error = |e| anyhow!("ELF: {e}");
            match corrupt {
                false => container::pack_elf(c, payload, machine).map_err(elf_error),
                true => {
                    let (laid, kept) = elf::lay_out(payload, machine).map_err(elf_error)?;
                    corrupt_container(Format::Elf64Dyn, c, &laid, kept)
                }
            }
        }
        (PayloadKind::Arm64Image(_), false) => {
            Ok(container::pack(Format::LinuxArm64Image, c, payload))
        }
        (PayloadKind::Arm64Image(_), true) => {
            corrupt_container(Format::LinuxArm64Image, c, payload, 0)
        }
        (PayloadKind::Arm64ImageGz { .. }, false) => {
            container::pack_gzip(Format::LinuxArm64Image, payload)
                .map_err(|e| anyhow!("gzip member: {e}"))
        }
        (PayloadKind::Arm64ImageGz { .. }, true) => {
            let inflated = gunzip(payload)?;
            corrupt_container(Format::LinuxArm64Image, Compression::Gzip, &inflated, 0)
        }
        // Stored as it is: its kernel is compressed already, and the shim decodes it.
        // The digest is of the kernel laid out as the shim checks it before the jump.
        (PayloadKind::BzImage, corrupt) => {
            let digest = boot::linux_x86_digest(payload).map_err(|e| anyhow!("{e}"))?;
            let packed = match corrupt {
                false => payload.to_vec(),
                true => corrupt_bzimage(payload)?,
            };
            Ok(container::pack_stored(
                Format::LinuxX86BzImage,
                &packed,
                &digest,
            ))
        }
    }
}

/// `container_with`, kept in `dir` under the payload's SHA-256 (whether it is
/// corrupted, how it is packed): the container is a function of those alone.
fn cached_container(
    dir: &Path,
    kind: &PayloadKind,
    payload: &[u8],
    corrupt: bool,
    compress: Compress,
) -> Result<Vec<u8>> {
    let sum = Sha256::digest(payload);
    let digest: String = sum.iter().map(|b| format!("{b:02x}")).collect();
    // An LZ4 container's layout depends on its first block's size too.
    let lz4_head = match compress {
        Compress::Lz4 => format!("-{}", container::LZ4_HEAD),
        _ => String::new(),
    };
    let name = format!(
        "{}{}-{compress:?}{lz4_head}.bin",
        &digest[..32],
        if corrupt { "-corrupt" } else { "" }
    )
    .to_lowercase();
    let path = dir.join(name);
    if let Ok(cached) = fs::read(&path) {
        // Only a container that still parses: of this container version, whose
        // digest means what the shim checks (for a gzip member or a bzImage, not the
        // file's own, so the name keys the cache, not the digest).
        let fits = container::parse(&cached).is_ok();
        if fits {
            eprintln!("xtask: reusing {}", path.display());
            return Ok(cached);
        }
    }
    let packed = container_with(kind, payload, corrupt, compress)?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::write(&path, &packed).with_context(|| format!("writing {}", path.display()))?;
    Ok(packed)
}

/// What a gzip member inflates to, through the container code the shim runs.
pub fn gunzip(member: &[u8]) -> Result<Vec<u8>> {
    let packed = container::pack_gzip(Format::LinuxArm64Image, member)
        .map_err(|e| anyhow!("gzip member: {e}"))?;
    let parsed = container::parse(&packed).map_err(|e| anyhow!("gzip member: {e}"))?;
    let size = usize::try_from(parsed.unpacked_size)?;
    let mut out = vec![0; size];
    let mut inflater = Box::<Inflater>::default();
    container::unpack(&parsed, &mut out, &mut inflater).map_err(|e| anyhow!("gzip member: {e}"))?;
    Ok(out)
}

/// The shim relocates itself in its first instructions (entry.S), which apply
/// RELATIVE entries only and cannot report anything else: refuse at build time a shim
/// whose linker left another type, or a RELR table entry.S does not read.
pub fn check_self_relocations(arch: Arch, elf: &[u8]) -> Result<()> {
    let (machine, relative) = match arch {
        Arch::Aarch64 => (shim_common::elf::Machine::Aarch64, 1027),
        Arch::X86_64 => (shim_common::elf::Machine::X86_64, 8),
    };
    let (file, elf) = (
        elf,
        shim_common::elf::Elf::parse(elf, machine).map_err(|e| anyhow!("{e}"))?,
    );
    if let Some(other) = elf.rela_types(file).find(|&t| t != relative) {
        bail!("the shim has a relocation of type {other}; its entry code applies only type {relative} (RELATIVE)");
    }
    ensure!(
        elf.relr_words(file) == 0,
        "the shim has RELR relocations; its entry code applies only RELA"
    );
    Ok(())
}

/// `cargo build -p <package> --target <rust_target> [--release]`; returns the ELF's path.
pub fn cargo_build(target: &Target, package: &str, args: &BuildArgs) -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.args(["build", "-p", package, "--target", target.rust_target]);
    if !args.debug {
        cmd.arg("--release");
    }
    exec(&mut cmd)?;
    Ok(target_dir()
        .join(target.rust_target)
        .join(args.profile())
        .join(package))
}

/// The toolchain's llvm-objcopy (from the `llvm-tools` component).
pub fn objcopy() -> Result<PathBuf> {
    let root = workspace_root();
    let sysroot = capture(
        Command::new("rustc")
            .current_dir(&root)
            .args(["--print", "sysroot"]),
    )?;
    let version = capture(Command::new("rustc").current_dir(&root).arg("-vV"))?;
    let host = version
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .context("`rustc -vV` printed no host line")?;
    let path = Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(host.trim())
        .join("bin/llvm-objcopy");
    ensure!(
        path.exists(),
        "{} is missing: run `rustup component add llvm-tools` in {}",
        path.display(),
        root.display()
    );
    Ok(path)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// The payload as a zlib-compressed ELF64 container.
#[cfg(test)]
pub fn pack(payload: &[u8]) -> Vec<u8> {
    container::pack(Format::Elf64Dyn, Compression::Zlib, payload)
}

/// A container that decompresses fine but whose data is the payload with its middle
/// byte flipped, under the digest of the unflipped payload (its first `kept` bytes
/// kept as they are).
pub fn corrupt_container(
    format: Format,
    compression: Compression,
    payload: &[u8],
    kept: usize,
) -> Result<Vec<u8>> {
    ensure!(!payload.is_empty(), "empty payload");
    let mut flipped = payload.to_vec();
    let middle = flipped.len() / 2;
    if let Some(byte) = flipped.get_mut(middle) {
        *byte ^= 0xff;
    }
    let mut packed = container::pack_kept(format, compression, &flipped, kept);
    ensure!(
        packed.len() >= HEADER_LEN && packed.starts_with(&MAGIC),
        "container::pack did not produce a container header"
    );
    packed[DIGEST_OFFSET..DIGEST_OFFSET + 32].copy_from_slice(&Sha256::digest(payload));
    Ok(packed)
}

/// The bzImage with one byte of its kernel changed where the change still decodes: a
/// literal of its LZ4 payload's first block that lands in the kernel's text (vmlinux
/// file offset 0x201000 on; later matches may copy it), so the shim decodes and lays it
/// out and only the digest can refuse it. Other formats: a byte of the setup code (0x300, past the header),
/// which the digest covers too.
fn corrupt_bzimage(file: &[u8]) -> Result<Vec<u8>> {
    use shim_common::x86_linux::{self, Compression as Kernel};
    let bz = x86_linux::parse_bzimage(file).map_err(|e| anyhow!("{e}"))?;
    let at = match bz.compression {
        Kernel::Lz4 => {
            let literal = lz4_literal_at(bz.payload, 0x20_1000)?;
            bz.setup.len() + bz.payload_offset as usize + literal
        }
        _ => 0x300,
    };
    let mut bad = file.to_vec();
    bad[at] ^= 0xff;
    Ok(bad)
}

/// The offset in `frame` (LZ4's legacy frame: magic, then blocks, each after its
/// 4-byte length) of the first literal byte its first block decodes to `out` or later.
fn lz4_literal_at(frame: &[u8], out: usize) -> Result<usize> {
    let byte = |at: usize| frame.get(at).copied().context("the LZ4 block ends early");
    ensure!(
        frame.get(..4) == Some(&[0x02, 0x21, 0x4c, 0x18][..]),
        "not LZ4's legacy frame"
    );
    let len = u32::from_le_bytes(frame.get(4..8).context("no LZ4 block")?.try_into()?) as usize;
    let end = 8 + len;
    let (mut at, mut pos) = (8, 0);
    // A longer length goes on in bytes while they are 255 (lz4_Block_format.md).
    let length = |at: &mut usize, mut n: usize| -> Result<usize> {
        if n == 15 {
            loop {
                let b = byte(*at)?;
                *at += 1;
                n += usize::from(b);
                if b != 255 {
                    break;
                }
            }
        }
        Ok(n)
    };
    while at < end {
        let token = byte(at)?;
        at += 1;
        let literals = length(&mut at, usize::from(token >> 4))?;
        if literals > 0 && pos + literals > out {
            return Ok(at + out.saturating_sub(pos));
        }
        at += literals;
        pos += literals;
        if at >= end {
            break;
        }
        let offset = u16::from_le_bytes([byte(at)?, byte(at + 1)?]);
        ensure!(offset != 0, "LZ4 match offset 0");
        at += 2;
        pos += length(&mut at, usize::from(token & 15))? + 4;
    }
    bail!("no literal at decoded byte {out:#x} or later in the first LZ4 block")
}

/// Writes `console`'s UART into the arm64 image's early-UART slot
/// (`shim_common::image::early_uart_slot`), which must be zero as linked (so it is
/// that slot, not code).
pub fn write_early_uart(image: &mut [u8], console: &shim_boards::Console) -> Result<()> {
    use shim_boards::Uart as Board;
    use shim_common::fdt::{self, Uart};
    use shim_common::image::{early_uart_slot, EARLY_UART_OFFSET};
    let uart = match console.uart {
        Board::Pl011 => Uart::Pl011,
        Board::Ns16550 {
            reg_shift,
            reg_io_width,
        } => Uart::Ns16550 {
            reg_shift,
            reg_io_width,
        },
        Board::Imx => Uart::Imx,
        Board::PcCom => bail!("a PC COM port is not an arm64 board's UART"),
    };
    let bytes = early_uart_slot(fdt::Console {
        base: console.base,
        uart,
    })
    .context("a UART register width the entry code does not write")?;
    let slot = image
        .get_mut(EARLY_UART_OFFSET..EARLY_UART_OFFSET + 16)
        .context("the image is shorter than its header")?;
    ensure!(
        slot.iter().all(|&b| b == 0),
        "no empty early-UART slot at {EARLY_UART_OFFSET:#x}"
    );
    slot.copy_from_slice(&bytes);
    Ok(())
}

/// Lays out the image: the flat shim zero-padded to the offset its header's size
/// field names (as linked), the container, zeros up to a whole page; then stores the
/// total length in that size field.
pub fn assemble(header: &ImageHeader, flat: &[u8], container: &[u8]) -> Result<Vec<u8>> {
    let magic_end = header.magic_offset + header.magic.len();
    ensure!(
        flat.get(header.magic_offset..magic_end) == Some(header.magic),
        "the flat shim has no image header (magic {:?} at {:#x})",
        String::from_utf8_lossy(header.magic),
        header.magic_offset
    );
    let size_field = header.size_offset..header.size_offset + 8;
    let linked = flat
        .get(size_field.clone())
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
        .context("the flat shim is shorter than its header")?;
    let start = usize::try_from(linked)?;
    ensure!(
        start % PAGE == 0,
        "the header's image size {start:#x} is not {PAGE}-byte aligned"
    );
    if flat.len() > start {
        bail!(
            "the flat shim is {:#x} bytes, longer than the {start:#x} its header reserves",
            flat.len()
        );
    }
    let total = (start + container.len()).next_multiple_of(PAGE);
    let mut image = Vec::with_capacity(total);
    image.extend_from_slice(flat);
    image.resize(start, 0);
    image.extend_from_slice(container);
    image.resize(total, 0);
    image[size_field].copy_from_slice(&(total as u64).to_le_bytes());
    Ok(image)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_early_uart_is_written_where_the_entry_code_reads_it() {
        let mut image = vec![0u8; 0x100];
        write_early_uart(&mut image, &shim_boards::RPI4.console).unwrap();
        assert_eq!(&image[0x40..0x48], &0xfe21_5040u64.to_le_bytes());
        assert_eq!(&image[0x48..0x4c], &2u32.to_le_bytes());
        assert_eq!(image[0x4c..0x50], [2, 4, 0, 0]);
        // Once only: a slot that is not zero is not the slot.
        assert!(write_early_uart(&mut image, &shim_boards::RPI4.console).is_err());
        let mut image = vec![0u8; 0x100];
        write_early_uart(&mut image, &shim_boards::QEMU_VIRT.console).unwrap();
        assert_eq!(
            &image[0x40..0x50],
            &[0, 0, 0, 9, 0, 0, 0, 0, 1, 0, 0, 0, 0, 4, 0, 0]
        );
        assert!(write_early_uart(&mut image, &shim_boards::QEMU_Q35.console).is_err());
    }

    use super::*;
    use crate::arch::AARCH64;

    /// A flat binary with an arm64 Image header whose size field is `image_size`.
    fn flat(len: usize, image_size: u64) -> Vec<u8> {
        let mut flat = vec![0xaa; len];
        flat[0x10..0x18].copy_from_slice(&image_size.to_le_bytes());
        flat[0x38..0x3c].copy_from_slice(b"ARM\x64");
        flat
    }

    fn size_field(image: &[u8]) -> u64 {
        u64::from_le_bytes(image[0x10..0x18].try_into().unwrap())
    }

    #[test]
    fn pads_appends_and_records_total() {
        let container = vec![0x55; 5000];
        let image = assemble(&AARCH64.header, &flat(0x1234, 0x3000), &container).unwrap();
        // 0x3000 + 5000 = 17288, rounded up to 20480.
        assert_eq!(image.len(), 0x5000);
        assert_eq!(size_field(&image), 0x5000);
        assert!(image[0x40..0x1234].iter().all(|&b| b == 0xaa));
        assert!(image[0x1234..0x3000].iter().all(|&b| b == 0));
        assert_eq!(&image[0x3000..0x3000 + 5000], &container[..]);
        assert!(image[0x3000 + 5000..].iter().all(|&b| b == 0));
        assert_eq!(&image[0x38..0x3c], b"ARM\x64");
    }

    #[test]
    fn exact_fit_needs_no_padding() {
        let image = assemble(&AARCH64.header, &flat(0x2000, 0x2000), &[7; 0x1000]).unwrap();
        assert_eq!(image.len(), 0x3000);
        assert_eq!(size_field(&image), 0x3000);
        assert_eq!(image[0x2000], 7);
    }

    #[test]
    fn refuses_a_shim_longer_than_its_reservation() {
        assert!(assemble(&AARCH64.header, &flat(0x2001, 0x2000), &[1]).is_err());
    }

    #[test]
    fn refuses_an_unaligned_reservation() {
        assert!(assemble(&AARCH64.header, &flat(0x100, 0x2100), &[1]).is_err());
    }

    #[test]
    fn refuses_a_missing_header() {
        let mut bad = flat(0x100, 0x1000);
        bad[0x38] = 0;
        assert!(assemble(&AARCH64.header, &bad, &[1]).is_err());
        assert!(assemble(&AARCH64.header, &[0; 0x20], &[1]).is_err());
    }

    /// With the literal found flipped the frame still decodes, to the same length; the
    /// first changed byte is the one asked for or later (later matches may copy it).
    #[test]
    fn a_flipped_lz4_literal_still_decodes() {
        use shim_common::lz4;
        let data: Vec<u8> = (0..300_000u32)
            .map(|i| ((i / 5) ^ (i % 97)) as u8)
            .collect();
        let frame = lz4::encode_legacy(&data, lz4::LZ4_CHUNK);
        for want in [0, 1000, 100_000] {
            let at = lz4_literal_at(&frame, want).unwrap();
            let mut bad = frame.clone();
            bad[at] ^= 0xff;
            let mut out = vec![0; data.len()];
            assert_eq!(lz4::decode_legacy(&bad, &mut out, false), Ok(data.len()));
            let first = (0..data.len()).find(|&i| out[i] != data[i]).unwrap();
            assert!(first >= want, "{first} < {want}");
        }
        assert!(lz4_literal_at(&frame, data.len()).is_err());
        assert!(lz4_literal_at(b"not lz4", 0).is_err());
    }

    #[test]
    fn corrupt_container_keeps_the_original_digest() {
        let payload: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let good = pack(&payload);
        let bad = corrupt_container(Format::Elf64Dyn, Compression::Zlib, &payload, 0).unwrap();
        assert_eq!(good[..8], MAGIC);
        // Same digest field, different packed data.
        assert_eq!(&bad[32..64], &Sha256::digest(&payload)[..]);
        assert_eq!(&good[32..64], &bad[32..64]);
        assert_ne!(good[HEADER_LEN..], bad[HEADER_LEN..]);
        // Its data is exactly the payload with the middle byte flipped.
        let mut flipped = payload.clone();
        flipped[5000] ^= 0xff;
        let honest = pack(&flipped);
        assert_eq!(bad[HEADER_LEN..], honest[HEADER_LEN..]);
        assert_eq!(bad[..32], honest[..32]);

        // The shim's own checks: it unpacks fine and then fails verification.
        let mut inflater = Box::<container::Inflater>::default();
        let mut out = vec![0; payload.len()];
        let parsed = container::parse(&bad).unwrap();
        assert_eq!(
            container::unpack(&parsed, &mut out, &mut inflater),
            Ok(payload.len())
        );
        assert!(matches!(
            container::verify(&parsed, &out),
            Err(container::ContainerError::DigestMismatch { .. })
        ));
        let parsed = container::parse(&good).unwrap();
        container::unpack(&parsed, &mut out, &mut inflater).unwrap();
        assert_eq!(container::verify(&parsed, &out), Ok(()));
    }

    /// A fake arm64 Image: a header (text_offset 0, image_size, flags LE 4K anywhere)
    /// and `len` bytes in all.
    fn arm64_image(len: usize) -> Vec<u8> {
        let mut b: Vec<u8> = (0..len as u32).map(|i| (i * 13 % 251) as u8).collect();
        b[0..2].copy_from_slice(b"MZ");
        b[0x08..0x10].copy_from_slice(&0u64.to_le_bytes());
        b[0x10..0x18].copy_from_slice(&0x1ab_0000u64.to_le_bytes());
        b[0x18..0x20].copy_from_slice(&0xau64.to_le_bytes());
        b[0x38..0x3c].copy_from_slice(b"ARM\x64");
        b
    }

    /// A gzip member around `data`, made by the container's own packer.
    fn gzip(data: &[u8]) -> Vec<u8> {
        container::pack(Format::LinuxArm64Image, Compression::Gzip, data)[HEADER_LEN..].to_vec()
    }

    fn error(bytes: &[u8]) -> String {
        format!("{:#}", detect(bytes).unwrap_err())
    }

    #[test]
    fn detects_elf64() {
        let mut elf = vec![0; 64];
        elf[..5].copy_from_slice(b"\x7fELF\x02");
        elf[18..20].copy_from_slice(&183u16.to_le_bytes());
        let kind = detect(&elf).unwrap();
        assert_eq!(kind, PayloadKind::Elf64 { machine: 183 });
        assert!(kind.check_arch(Arch::Aarch64).is_ok());
        assert!(kind.check_arch(Arch::X86_64).is_err());
        elf[4] = 1;
        assert!(error(&elf).contains("32-bit ELF"));
        assert!(error(b"\x7fELF\x02").contains("shorter"));
    }

    #[test]
    fn detects_a_raw_arm64_image() {
        let img = arm64_image(0x1000);
        let kind = detect(&img).unwrap();
        let PayloadKind::Arm64Image(h) = kind else {
            panic!("{kind:?}")
        };
        assert_eq!(h.image_size, ImageSize::Known(0x1ab_0000));
        assert_eq!((h.text_offset, h.flags), (0, 0xa));
        assert!(kind.check_arch(Arch::Aarch64).is_ok());
        assert!(kind.check_arch(Arch::X86_64).is_err());
        assert_eq!(
            kind.to_string(),
            "Linux arm64 Image, text_offset=0x0 image_size=0x1ab0000 flags=0xa"
        );
        // Big-endian kernels are refused by the header check.
        let mut be = img.clone();
        be[0x18] |= 1;
        assert!(error(&be).contains("big-endian"));
    }

    #[test]
    fn detects_a_gzipped_arm64_image() {
        let img = arm64_image(0x3000);
        let kind = detect(&gzip(&img)).unwrap();
        assert!(matches!(
            kind,
            PayloadKind::Arm64ImageGz { size: 0x3000, header } if header.flags == 0xa
        ));
        assert!(kind.check_arch(Arch::Aarch64).is_ok());
        assert_eq!(gunzip(&gzip(&img)).unwrap(), img);
        // gzip around something else, or broken gzip, is an error naming it.
        let elf = gzip(b"\x7fELF\x02\x01\x01 and more bytes than that");
        assert!(
            error(&elf).contains("inflates to something else"),
            "{}",
            error(&elf)
        );
        assert!(error(&elf).contains("an ELF file"));
        let mut cut = gzip(&img);
        cut.truncate(cut.len() / 2);
        assert!(error(&cut).contains("does not unpack"), "{}", error(&cut));
    }

    #[test]
    fn names_what_it_refuses() {
        let mut bz = vec![0; 0x300];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert_eq!(
            error(&bz),
            "an x86 bzImage the shim cannot boot: boot protocol 0.00, need 2.12 or later (xloadflags)"
        );
        let kind = PayloadKind::BzImage;
        let on_arm = format!("{:#}", kind.check_arch(Arch::Aarch64).unwrap_err());
        assert_eq!(
            on_arm,
            "an x86 bzImage (HdrS at 0x202): an aarch64 shim cannot carry it"
        );
        assert!(kind.check_arch(Arch::X86_64).is_ok());

        let mut pe = vec![0; 0x80];
        pe[..2].copy_from_slice(b"MZ");
        assert_eq!(error(&pe), "a PE/COFF file without an arm64 Image header");
        pe[4..8].copy_from_slice(b"zimg");
        pe[0x18..0x1c].copy_from_slice(b"zstd");
        assert!(error(&pe).starts_with("an EFI zboot image (zstd-compressed"));

        assert!(error(b"\x28\xb5\x2f\xfd\x00\x00").starts_with("zstd compressed data"));
        assert!(error(b"\xfd7zXZ\0\0\0").starts_with("xz compressed data"));
        assert!(error(b"\x04\x22\x4d\x18\0").starts_with("lz4 compressed data"));
        assert_eq!(
            error(b"\x01\x02\x03\x04\x05\x06\x07\x08\x09"),
            "unknown format (first bytes 01 02 03 04 05 06 07 08)"
        );
        assert_eq!(error(b""), "an empty file");
        assert_eq!(
            error(b"07070100000001"),
            "a cpio archive (an initramfs, not a kernel)"
        );
    }

    #[test]
    fn containers_by_kind() {
        let img = arm64_image(0x2000);
        let raw = container_for(&detect(&img).unwrap(), &img, false).unwrap();
        let p = container::parse(&raw).unwrap();
        assert_eq!(
            (p.format, p.compression, p.unpacked_size),
            (Format::LinuxArm64Image, Compression::Zlib, 0x2000)
        );
        let gz = gzip(&img);
        let kept = container_for(&detect(&gz).unwrap(), &gz, false).unwrap();
        let p = container::parse(&kept).unwrap();
        assert_eq!((p.compression, p.packed), (Compression::Gzip, &gz[..]));
        assert_eq!(&p.digest[..], &Sha256::digest(&img)[..]);

        // Corrupt Linux payloads unpack fine and fail verification.
        let mut inflater = Box::<container::Inflater>::default();
        for (bytes, compression) in [(&img, Compression::Zlib), (&gz, Compression::Gzip)] {
            let bad = container_for(&detect(bytes).unwrap(), bytes, true).unwrap();
            let p = container::parse(&bad).unwrap();
            assert_eq!(p.compression, compression);
            let mut out = vec![0; img.len()];
            container::unpack(&p, &mut out, &mut inflater).unwrap();
            assert_eq!(out[0x1000], img[0x1000] ^ 0xff);
            assert!(matches!(
                container::verify(&p, &out),
                Err(container::ContainerError::DigestMismatch { .. })
            ));
        }
    }
}
