//! `cargo xtask inspect FILE`: what an image holds and whether it is valid. It reads a
//! shim image (an arm64 Image or an x86 bzImage with the payload container after the
//! shim), a plain Linux arm64 Image, an Image.gz, a Linux x86 bzImage and ELF64
//! payloads, through shim-common's own parsers (image, bootparams, container, elf).
//! Everything but reading the file is pure: `inspect` turns bytes into a report whose
//! lines the formatting functions below build, each unit-tested.

use std::fs;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use shim_common::bootparams::{
    SetupHeader, CAN_USE_HEAP, HDRS_MAGIC, KASLR_FLAG, KEEP_SEGMENTS, LOADED_HIGH, QUIET_FLAG,
    SETUP_HEADER_OFFSET, XLF_CAN_BE_LOADED_ABOVE_4G, XLF_EFI_HANDOVER_32, XLF_EFI_HANDOVER_64,
    XLF_EFI_KEXEC, XLF_KERNEL_64,
};
use shim_common::container::{self, Compression, Format, Inflater, MAGIC};
use shim_common::elf::{Elf, Machine};
use shim_common::image::{self as arm64, flags, Arm64Header, ARM64_MAGIC};
use zerocopy::FromBytes;

use crate::deps::human_size;
use crate::image::{detect, gunzip};

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The file: a shim image (arm64 Image or x86 bzImage with its payload container),
    /// a Linux arm64 Image or Image.gz, a Linux x86 bzImage, or an ELF64 payload.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

pub fn run(args: &InspectArgs) -> Result<()> {
    let path = args.file.display();
    let bytes = fs::read(&args.file).with_context(|| format!("reading {path}"))?;
    let report = inspect(&bytes);
    println!("{path}:");
    for line in &report.lines {
        println!("  {line}");
    }
    match report.problems.as_slice() {
        [] => {
            println!("  valid: yes");
            Ok(())
        }
        problems => {
            for p in problems {
                println!("  invalid: {p}");
            }
            bail!("{path}: {}", problems.join("; "))
        }
    }
}

/// What `inspect` found: lines to print, and what makes the file invalid.
#[derive(Debug, Default)]
pub struct Report {
    pub lines: Vec<String>,
    pub problems: Vec<String>,
}

impl Report {
    fn line(&mut self, line: impl Into<String>) {
        self.lines.push(line.into());
    }

    fn problem(&mut self, problem: impl Into<String>) {
        self.problems.push(problem.into());
    }

    /// Another report's lines, indented, and its problems, prefixed with `what`.
    fn nest(&mut self, what: &str, inner: Report) {
        self.lines
            .extend(inner.lines.into_iter().map(|l| format!("  {l}")));
        self.problems
            .extend(inner.problems.into_iter().map(|p| format!("{what}: {p}")));
    }
}

/// The biggest payload `inspect` inflates (a kernel is tens of MiB).
const MAX_UNPACKED: u64 = 1 << 30;
/// The arm64 Image magic's offset, and the x86 setup header's "HdrS".
const ARM64_MAGIC_AT: usize = 0x38;
const HDRS_AT: usize = 0x202;
/// The x86 shim's own header in its protected-mode part (arch/x86_64/src/entry.S).
const SHIM_X86_MAGIC: &[u8] = b"SHIMX64\0";
const PAGE: usize = 4096;

/// Reads any file `xtask inspect` knows.
pub fn inspect(bytes: &[u8]) -> Report {
    let mut r = Report::default();
    if bytes.starts_with(b"\x7fELF") {
        r.line(format!("file: ELF, {}", size(bytes.len() as u64)));
        elf_report(bytes, &mut r);
    } else if bytes.starts_with(&[0x1f, 0x8b]) {
        r.line(format!("file: gzip, {} packed", size(bytes.len() as u64)));
        match gunzip(bytes) {
            Ok(inner) => {
                r.line(format!("inflated: {}", size(inner.len() as u64)));
                r.nest("inflated", inspect(&inner));
            }
            Err(e) => r.problem(format!("gzip: {e:#}")),
        }
    } else if bytes.get(ARM64_MAGIC_AT..ARM64_MAGIC_AT + 4) == Some(&ARM64_MAGIC.to_le_bytes()) {
        arm64_report(bytes, &mut r);
    } else if bytes.get(HDRS_AT..HDRS_AT + 4) == Some(&HDRS_MAGIC.to_le_bytes()) {
        bzimage_report(bytes, &mut r);
    } else {
        let what = match detect(bytes) {
            Err(e) => format!("{e:#}"),
            Ok(kind) => kind.to_string(),
        };
        r.problem(format!("not an image xtask knows: {what}"));
    }
    r
}

fn size(bytes: u64) -> String {
    format!("{bytes:#x} bytes ({})", human_size(bytes))
}

/// An arm64 Image, the shim's or Linux's.
fn arm64_report(bytes: &[u8], r: &mut Report) {
    let Ok((h, _)) = Arm64Header::ref_from_prefix(bytes) else {
        r.problem("arm64 Image shorter than its 64-byte header");
        return;
    };
    let container = find_container(bytes, 0);
    let shim = container.is_some();
    r.line(format!(
        "file: {}, {}",
        if shim {
            "shim image (arm64 Image header, payload container after the shim)"
        } else {
            "Linux arm64 Image"
        },
        size(bytes.len() as u64)
    ));
    if bytes.starts_with(b"MZ") {
        r.line(format!(
            "PE/COFF header: yes (EFI stub), PE header at {:#x}",
            h.res5.get()
        ));
    }
    r.lines.extend(arm64_header_lines(h));
    if let Err(e) = arm64::parse_arm64(bytes) {
        r.problem(e.to_string());
    }
    if let Some(at) = container {
        // assemble() records the whole file, container included, in image_size.
        if h.image_size.get() != bytes.len() as u64 {
            r.problem(format!(
                "image_size {:#x} is not the file's length {:#x}: a loader would not reserve the container",
                h.image_size.get(),
                bytes.len()
            ));
        }
        r.line(format!("shim: {} before the container", size(at as u64)));
        container_report(bytes, at, 0, Machine::Aarch64, r);
    }
}

/// The header fields of an arm64 Image, flags decoded (booting.rst).
pub fn arm64_header_lines(h: &Arm64Header) -> Vec<String> {
    let image_size = h.image_size.get();
    let mut lines = vec![
        format!("entry: file offset 0 (code0 {:#010x})", h.code0.get()),
        format!("text_offset: {:#x}", h.text_offset.get()),
    ];
    if image_size == 0 {
        lines.push(
            "image_size: 0 (a kernel before v3.17: text_offset 0x80000 assumed, flags unset)"
                .into(),
        );
    } else {
        lines.push(format!("image_size: {}", size(image_size)));
        lines.push(format!(
            "flags: {:#x} ({})",
            h.flags.get(),
            arm64_flags(h.flags.get())
        ));
    }
    lines
}

/// booting.rst's flag bits in words.
pub fn arm64_flags(raw: u64) -> String {
    let endian = if raw & flags::BIG_ENDIAN != 0 {
        "big-endian"
    } else {
        "little-endian"
    };
    let page = match (raw & flags::PAGE_SIZE_MASK) >> flags::PAGE_SIZE_SHIFT {
        1 => "4K pages",
        2 => "16K pages",
        3 => "64K pages",
        _ => "page size unspecified",
    };
    let placement = if raw & flags::PHYS_PLACEMENT_48BIT != 0 {
        "2 MiB-aligned base anywhere below 2^48"
    } else {
        "base as close as possible to the start of DRAM"
    };
    let mut text = format!("{endian}, {page}, {placement}");
    let rest = raw & !0xf;
    if rest != 0 {
        text.push_str(&format!(", reserved bits {rest:#x}"));
    }
    text
}

/// The payload container of a shim image, either arch: its header as parsed.
pub fn shim_container(bytes: &[u8]) -> Option<container::Payload<'_>> {
    let part = match SetupHeader::read_from_prefix(bytes.get(SETUP_HEADER_OFFSET..)?) {
        Ok((h, _)) if bytes.get(HDRS_AT..HDRS_AT + 4) == Some(&HDRS_MAGIC.to_le_bytes()) => {
            bytes.get(h.protected_mode_offset() as usize..)?
        }
        _ => bytes,
    };
    let at = find_container(part, 0)?;
    container::parse(part.get(at..)?).ok()
}

/// The first page-aligned offset at or after `from` (counted from `from`) holding a
/// container that parses.
fn find_container(bytes: &[u8], from: usize) -> Option<usize> {
    (from + PAGE..bytes.len())
        .step_by(PAGE)
        .find(|&at| bytes[at..].starts_with(&MAGIC) && container::parse(&bytes[at..]).is_ok())
}

/// The container at `at`: its header, then the payload inflated, its digest checked
/// and the payload itself read.
fn container_report(bytes: &[u8], at: usize, base: usize, machine: Machine, r: &mut Report) {
    let p = match container::parse(&bytes[at..]) {
        Ok(p) => p,
        Err(e) => return r.problem(e.to_string()),
    };
    r.lines.extend(container_lines(base + at, &p));
    if p.unpacked_size > MAX_UNPACKED {
        return r.problem(format!(
            "the payload would unpack to {}, more than inspect inflates",
            size(p.unpacked_size)
        ));
    }
    let mut out = vec![0u8; p.unpacked_size as usize];
    let mut inflater = Box::<Inflater>::default();
    if let Err(e) = container::unpack(&p, &mut out, &mut inflater) {
        return r.problem(e.to_string());
    }
    if p.format == Format::LinuxX86BzImage {
        // Its digest is of the kernel laid out, as the shim checks it before the jump.
        let recorded: Vec<_> = p.zero_runs.iter().map(|r| r.get()).collect();
        match shim_common::boot::linux_x86_digest(&out) {
            Ok(d) if d.digest == p.digest && d.runs == recorded => r.line(
                "digest: ok (the SHA-256 of the setup code and the kernel laid out matches the header)",
            ),
            Ok(d) if d.digest == p.digest => {
                r.problem("the zero runs differ from those of the kernel laid out")
            }
            Ok(d) => r.problem(
                container::ContainerError::DigestMismatch {
                    expected: p.digest,
                    actual: d.digest,
                }
                .to_string(),
            ),
            Err(e) => r.problem(e.to_string()),
        }
    } else {
        match container::verify(&p, &out) {
            Ok(()) => r.line("digest: ok (the unpacked payload's SHA-256 matches the header)"),
            Err(e) => r.problem(e.to_string()),
        }
    }
    let mut inner = Report::default();
    match p.format {
        Format::Elf64Dyn => {
            inner.line(format!("payload: ELF64 ET_DYN, {}", size(out.len() as u64)));
            elf_report(&out, &mut inner);
            if let Some(found) = elf_machine(&out).filter(|&m| m != machine) {
                inner.problem(format!("an ELF for {found:?} in a {machine:?} shim"));
            }
        }
        Format::LinuxArm64Image => {
            inner.line(format!(
                "payload: Linux arm64 Image, {}",
                size(out.len() as u64)
            ));
            match Arm64Header::ref_from_prefix(&out[..]) {
                Ok((h, _)) => inner.lines.extend(arm64_header_lines(h)),
                Err(_) => inner.problem("shorter than an arm64 Image header"),
            }
            if let Err(e) = arm64::parse_arm64(&out) {
                inner.problem(e.to_string());
            }
        }
        Format::LinuxX86BzImage => {
            bzimage_report(&out, &mut inner);
            kernel_bzimage_lines(&out, &mut inner);
        }
    }
    r.nest("payload", inner);
}

/// The container header in words.
pub fn container_lines(at: usize, p: &container::Payload<'_>) -> Vec<String> {
    let compression = match p.compression {
        Compression::None => "none",
        Compression::Zlib => "zlib",
        Compression::Gzip => "gzip member",
        Compression::Lz4 => "lz4 legacy frame",
    };
    let digest: String = p.digest.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        format!("container: at file offset {at:#x}, magic SHIMPAY1"),
        format!("payload format: {:?}, compression: {compression}", p.format),
        format!(
            "packed: {} ({} kept as they are), unpacked: {}",
            size((p.kept.len() + p.packed.len()) as u64),
            size(p.kept.len() as u64),
            size(p.unpacked_size)
        ),
        format!("sha256 (header): {digest}"),
        format!(
            "zero runs: {}, {} read, not hashed",
            p.zero_runs.len(),
            size(p.zero_runs.iter().map(|r| r.get().len).sum())
        ),
    ]
}

fn elf_machine(bytes: &[u8]) -> Option<Machine> {
    let e_machine = bytes
        .get(18..20)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))?;
    Machine::from_e_machine(e_machine)
}

/// An ELF64 payload through shim-common's loader: segments, entry, relocations by type.
fn elf_report(bytes: &[u8], r: &mut Report) {
    let Some(machine) = elf_machine(bytes) else {
        let m = bytes.get(18..20).map(|b| u16::from_le_bytes([b[0], b[1]]));
        return r.problem(format!(
            "ELF machine {m:?} is neither aarch64 (183) nor x86_64 (62)"
        ));
    };
    let elf = match Elf::parse(bytes, machine) {
        Ok(elf) => elf,
        Err(e) => return r.problem(format!("ELF: {e}")),
    };
    r.line(format!("machine: {machine:?}"));
    r.line(format!(
        "entry: {:#x} (image offset {:#x})",
        elf.entry(),
        elf.entry().wrapping_sub(elf.link_base())
    ));
    r.line(format!(
        "link base: {:#x}, span: {}, alignment: {:#x}",
        elf.link_base(),
        size(elf.span()),
        elf.align()
    ));
    for s in elf.segments() {
        let f = s.flags;
        let perm: String = [(f.read, 'R'), (f.write, 'W'), (f.exec, 'X')]
            .iter()
            .map(|&(on, c)| if on { c } else { '-' })
            .collect();
        r.line(format!(
            "PT_LOAD {perm} vaddr {:#x} memsz {:#x} filesz {:#x}",
            s.vaddr, s.memsz, s.filesz
        ));
    }
    let (rela, relr) = elf.reloc_entries();
    let types: Vec<u32> = elf.rela_types(bytes).collect();
    r.line(reloc_line(
        machine,
        rela,
        &types,
        relr,
        elf.relr_words(bytes),
    ));
    if let Some(t) = types.iter().find(|&&t| t != 0 && t != machine.relative()) {
        r.problem(format!(
            "relocation type {t} ({}): the shim applies only RELATIVE",
            reloc_name(machine, *t)
        ));
    }
}

/// RELA entries counted by type, and the RELR table.
pub fn reloc_line(
    machine: Machine,
    rela: usize,
    types: &[u32],
    relr: usize,
    relr_words: usize,
) -> String {
    let mut counts: Vec<(u32, usize)> = Vec::new();
    for &t in types {
        match counts.iter_mut().find(|(k, _)| *k == t) {
            Some((_, n)) => *n += 1,
            None => counts.push((t, 1)),
        }
    }
    counts.sort();
    let by_type: Vec<String> = counts
        .iter()
        .map(|&(t, n)| format!("{} {n}", reloc_name(machine, t)))
        .collect();
    let by_type = if by_type.is_empty() {
        String::new()
    } else {
        format!(" ({})", by_type.join(", "))
    };
    format!("relocations: RELA {rela}{by_type}; RELR {relr} entries, {relr_words} words")
}

/// The names of the relocation types a payload may show.
pub fn reloc_name(machine: Machine, t: u32) -> String {
    let name = match (machine, t) {
        (_, 0) => "NONE",
        (Machine::Aarch64, 257) => "R_AARCH64_ABS64",
        (Machine::Aarch64, 1025) => "R_AARCH64_GLOB_DAT",
        (Machine::Aarch64, 1026) => "R_AARCH64_JUMP_SLOT",
        (Machine::Aarch64, 1027) => "R_AARCH64_RELATIVE",
        (Machine::X86_64, 1) => "R_X86_64_64",
        (Machine::X86_64, 6) => "R_X86_64_GLOB_DAT",
        (Machine::X86_64, 7) => "R_X86_64_JUMP_SLOT",
        (Machine::X86_64, 8) => "R_X86_64_RELATIVE",
        _ => return format!("type {t}"),
    };
    name.to_string()
}

/// An x86 bzImage, the shim's or Linux's.
fn bzimage_report(bytes: &[u8], r: &mut Report) {
    let Ok((h, _)) = SetupHeader::read_from_prefix(&bytes[SETUP_HEADER_OFFSET..]) else {
        return r.problem("bzImage shorter than its setup header");
    };
    let pm = h.protected_mode_offset() as usize;
    let protected = bytes.get(pm..).unwrap_or_default();
    let shim = protected.get(8..16) == Some(SHIM_X86_MAGIC);
    r.line(format!(
        "file: {}, {}",
        if shim {
            "shim image (x86 bzImage, payload container after the shim)"
        } else {
            "Linux x86 bzImage"
        },
        size(bytes.len() as u64)
    ));
    if bytes.starts_with(b"MZ") {
        r.line("PE/COFF header: yes (EFI stub)");
    }
    r.lines.extend(setup_header_lines(&h, bytes.len() as u64));
    if protected.is_empty() {
        return r.problem(format!(
            "the protected-mode part at {pm:#x} lies beyond the file's end"
        ));
    }
    if shim {
        let recorded = protected
            .get(0x10..0x18)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
            .unwrap_or(0);
        r.line(format!(
            "shim header: SHIMX64 at +0x8, size field {:#x} (protected part {:#x})",
            recorded,
            protected.len()
        ));
        if recorded != protected.len() as u64 {
            r.problem("the shim header's size is not the protected-mode part's length");
        }
        if u64::from(h.init_size.get()) < protected.len() as u64 {
            r.problem("init_size is smaller than the protected-mode part");
        }
        match find_container(protected, 0) {
            Some(at) => container_report(protected, at, pm, Machine::X86_64, r),
            None => r.problem("no payload container after the shim"),
        }
    } else {
        let (off, len) = (
            h.payload_offset.get() as usize,
            h.payload_length.get() as usize,
        );
        match protected.get(off..off.saturating_add(len)) {
            Some(payload) if len > 0 => r.line(format!(
                "payload: {} at protected-mode offset {off:#x}, compression {}",
                size(len as u64),
                compression_by_magic(payload).unwrap_or("unknown (no known magic)")
            )),
            Some(_) => r.line("payload: none recorded (payload_length 0)"),
            None => r.problem(format!(
                "payload_offset {off:#x} + payload_length {len:#x} runs past the protected-mode part"
            )),
        }
    }
}

/// What the x86 shim reads of a Linux bzImage it carries (common::x86_linux).
fn kernel_bzimage_lines(bytes: &[u8], r: &mut Report) {
    match shim_common::x86_linux::parse_bzimage(bytes) {
        Ok(bz) => {
            let version = String::from_utf8_lossy(bz.version_string);
            r.line(format!("kernel: {}", version.trim_end_matches('\0')));
            let path = match shim_common::x86_linux::decodes(bz.compression) {
                true => "decoded by the shim",
                false => "not decoded by the shim: Linux's own decompressor runs",
            };
            r.line(format!(
                "kernel payload: {}, {} decoded, {path}; the shim's slot {}",
                bz.compression,
                size(bz.decompressed_len),
                size(shim_common::x86_linux::slot_size(&bz))
            ));
        }
        Err(e) => r.problem(format!("the shim cannot boot this bzImage: {e}")),
    }
}

/// Boot protocol fields and entry points of a setup header (boot.rst).
pub fn setup_header_lines(h: &SetupHeader, file_len: u64) -> Vec<String> {
    let version = h.version.get();
    let pm = h.protected_mode_offset();
    let xl = h.xloadflags.get();
    let jump = h.jump.get();
    let mut lines = vec![
        format!("boot protocol: {}.{:02}", version >> 8, version & 0xff),
        format!(
            "setup: {} sectors + boot sector, protected-mode part at file offset {pm:#x}, {}",
            h.setup_sectors(),
            size(file_len.saturating_sub(pm))
        ),
        format!(
            "loadflags: {:#04x} ({})",
            h.loadflags,
            loadflags(h.loadflags)
        ),
        format!("xloadflags: {xl:#06x} ({})", xloadflags(xl)),
        format!(
            "kernel_alignment: {:#x}, relocatable: {}, min_alignment: 2^{}",
            h.kernel_alignment.get(),
            if h.relocatable_kernel != 0 {
                "yes"
            } else {
                "no"
            },
            h.min_alignment
        ),
        format!(
            "init_size: {}, pref_address: {:#x}",
            size(u64::from(h.init_size.get())),
            h.pref_address.get()
        ),
        format!(
            "cmdline_size: {}, initrd_addr_max: {:#x}",
            h.cmdline_max(),
            h.initrd_addr_max.get()
        ),
        format!(
            "payload_offset: {:#x}, payload_length: {:#x}",
            h.payload_offset.get(),
            h.payload_length.get()
        ),
    ];
    // `jmp rel8` at 0x200: 0xeb, then the displacement from 0x202.
    if jump & 0xff == 0xeb {
        lines.push(format!(
            "entry 16-bit: setup offset {:#x} (jmp at 0x200)",
            0x202 + (jump >> 8)
        ));
    }
    lines.push(format!(
        "entry 32-bit: code32_start {:#x} (protected-mode part offset 0)",
        h.code32_start.get()
    ));
    if xl & XLF_KERNEL_64 != 0 {
        lines.push("entry 64-bit: protected-mode part offset 0x200".into());
    }
    if xl & (XLF_EFI_HANDOVER_32 | XLF_EFI_HANDOVER_64) != 0 {
        lines.push(format!(
            "entry EFI handover: protected-mode part offset {:#x}",
            u64::from(h.handover_offset.get())
                + if xl & XLF_EFI_HANDOVER_64 != 0 {
                    0x200
                } else {
                    0
                }
        ));
    }
    lines
}

/// boot.rst's loadflags in words.
pub fn loadflags(f: u8) -> String {
    let names = [
        (LOADED_HIGH, "LOADED_HIGH"),
        (KASLR_FLAG, "KASLR_FLAG"),
        (QUIET_FLAG, "QUIET_FLAG"),
        (KEEP_SEGMENTS, "KEEP_SEGMENTS"),
        (CAN_USE_HEAP, "CAN_USE_HEAP"),
    ];
    bit_names(u32::from(f), &names.map(|(b, n)| (u32::from(b), n)))
}

/// boot.rst's xloadflags in words.
pub fn xloadflags(f: u16) -> String {
    let names = [
        (XLF_KERNEL_64, "KERNEL_64"),
        (XLF_CAN_BE_LOADED_ABOVE_4G, "CAN_BE_LOADED_ABOVE_4G"),
        (XLF_EFI_HANDOVER_32, "EFI_HANDOVER_32"),
        (XLF_EFI_HANDOVER_64, "EFI_HANDOVER_64"),
        (XLF_EFI_KEXEC, "EFI_KEXEC"),
        (1 << 5, "5LEVEL"),
        (1 << 6, "5LEVEL_ENABLED"),
        (1 << 7, "MEM_ENCRYPTION"),
    ];
    bit_names(u32::from(f), &names.map(|(b, n)| (u32::from(b), n)))
}

fn bit_names(value: u32, names: &[(u32, &str)]) -> String {
    let mut out: Vec<String> = names
        .iter()
        .filter(|(bit, _)| value & bit != 0)
        .map(|(_, n)| n.to_string())
        .collect();
    let known = names.iter().fold(0, |acc, (bit, _)| acc | bit);
    if value & !known != 0 {
        out.push(format!("unknown {:#x}", value & !known));
    }
    if out.is_empty() {
        "none".into()
    } else {
        out.join(" | ")
    }
}

/// The compression a Linux bzImage payload uses, by its magic (scripts/Makefile.lib's
/// compressors).
pub fn compression_by_magic(bytes: &[u8]) -> Option<&'static str> {
    let magics: [(&[u8], &str); 7] = [
        (b"\x1f\x8b", "gzip"),
        (b"\xfd7zXZ\0", "xz"),
        (b"\x28\xb5\x2f\xfd", "zstd"),
        (b"\x02\x21\x4c\x18", "lz4 (legacy frame)"),
        (b"BZh", "bzip2"),
        (b"\x5d\x00", "lzma"),
        (b"\x89LZO", "lzo"),
    ];
    magics
        .iter()
        .find(|(m, _)| bytes.starts_with(m))
        .map(|&(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{AARCH64, X86_64};
    use crate::{bzimage, image};

    fn arm64_header(text_offset: u64, image_size: u64, flags: u64) -> Vec<u8> {
        let mut b = vec![0u8; 0x40];
        b[0..4].copy_from_slice(&0x1400_0010u32.to_le_bytes());
        b[0x08..0x10].copy_from_slice(&text_offset.to_le_bytes());
        b[0x10..0x18].copy_from_slice(&image_size.to_le_bytes());
        b[0x18..0x20].copy_from_slice(&flags.to_le_bytes());
        b[0x38..0x3c].copy_from_slice(b"ARM\x64");
        b
    }

    /// A tiny valid ELF payload: the demo payload is not at hand in unit tests, so a
    /// header-only ELF64 ET_DYN with one PT_LOAD.
    fn tiny_elf(machine: u16) -> Vec<u8> {
        let mut e = vec![0u8; 0x1000];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[6] = 1;
        e[16..18].copy_from_slice(&3u16.to_le_bytes());
        e[18..20].copy_from_slice(&machine.to_le_bytes());
        e[20..24].copy_from_slice(&1u32.to_le_bytes());
        e[24..32].copy_from_slice(&0x10u64.to_le_bytes());
        e[32..40].copy_from_slice(&64u64.to_le_bytes());
        e[52..54].copy_from_slice(&64u16.to_le_bytes());
        e[54..56].copy_from_slice(&56u16.to_le_bytes());
        e[56..58].copy_from_slice(&1u16.to_le_bytes());
        let ph = &mut e[64..120];
        ph[0..4].copy_from_slice(&1u32.to_le_bytes());
        ph[4..8].copy_from_slice(&5u32.to_le_bytes());
        ph[32..40].copy_from_slice(&0x1000u64.to_le_bytes());
        ph[40..48].copy_from_slice(&0x2000u64.to_le_bytes());
        ph[48..56].copy_from_slice(&0x1000u64.to_le_bytes());
        e
    }

    fn text(r: &Report) -> String {
        r.lines.join("\n")
    }

    #[test]
    fn arm64_flags_in_words() {
        assert_eq!(
            arm64_flags(0xa),
            "little-endian, 4K pages, 2 MiB-aligned base anywhere below 2^48"
        );
        assert_eq!(
            arm64_flags(0x5),
            "big-endian, 16K pages, base as close as possible to the start of DRAM"
        );
        assert!(arm64_flags(0x10e).ends_with("reserved bits 0x100"));
    }

    #[test]
    fn linux_arm64_image() {
        let mut img = arm64_header(0, 0x1ab_0000, 0xa);
        img.resize(0x3000, 0x11);
        let r = inspect(&img);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        let t = text(&r);
        assert!(
            t.starts_with("file: Linux arm64 Image, 0x3000 bytes"),
            "{t}"
        );
        assert!(t.contains("image_size: 0x1ab0000 bytes (26.7 MiB)"), "{t}");
        assert!(
            t.contains("flags: 0xa (little-endian, 4K pages, 2 MiB-aligned"),
            "{t}"
        );
        let legacy = inspect(&arm64_header(0x80000, 0, 0));
        assert!(text(&legacy).contains("image_size: 0 (a kernel before v3.17"));
        let be = inspect(&arm64_header(0, 0x1000, 1));
        assert_eq!(be.problems, ["arm64 Image is big-endian, unsupported"]);
    }

    #[test]
    fn shim_image_with_elf_payload() {
        let mut flat = arm64_header(0, 0x2000, 0xa);
        flat.resize(0x1800, 0);
        let elf = tiny_elf(183);
        let container = image::container_for(&image::detect(&elf).unwrap(), &elf, false).unwrap();
        let img = image::assemble(&AARCH64.header, &flat, &container).unwrap();
        let r = inspect(&img);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        let t = text(&r);
        for want in [
            "file: shim image (arm64 Image header",
            "container: at file offset 0x2000, magic SHIMPAY1",
            "payload format: Elf64Dyn, compression: zlib",
            "(0x78 bytes (120 bytes) kept as they are), unpacked: 0x1078 bytes",
            "digest: ok",
            "  payload: ELF64 ET_DYN",
            "  machine: Aarch64",
            "  PT_LOAD R-X vaddr 0x0 memsz 0x2000 filesz 0x1000",
            "  relocations: RELA 0; RELR 0 entries, 0 words",
        ] {
            assert!(t.contains(want), "{want} in\n{t}");
        }
        // A payload byte flipped under the original digest: named, invalid.
        let bad = image::container_for(&image::detect(&elf).unwrap(), &elf, true).unwrap();
        let img = image::assemble(&AARCH64.header, &flat, &bad).unwrap();
        let r = inspect(&img);
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert!(r.problems[0].starts_with("payload digest mismatch"));
        // An x86 ELF in an arm64 shim.
        let x86 = tiny_elf(62);
        let c = image::container_for(&image::detect(&x86).unwrap(), &x86, false).unwrap();
        let r = inspect(&image::assemble(&AARCH64.header, &flat, &c).unwrap());
        assert!(r
            .problems
            .iter()
            .any(|p| p.contains("X86_64 in a Aarch64 shim")));
    }

    fn setup_part() -> Vec<u8> {
        let mut s = vec![0; 0x1100];
        s[0x200..0x202].copy_from_slice(&[0xeb, 0x6a]);
        s
    }

    #[test]
    fn x86_shim_bzimage() {
        let mut flat = vec![0u8; 0x1800];
        flat[8..16].copy_from_slice(SHIM_X86_MAGIC);
        flat[0x10..0x18].copy_from_slice(&0x2000u64.to_le_bytes());
        let elf = tiny_elf(62);
        let c = image::container_for(&image::detect(&elf).unwrap(), &elf, false).unwrap();
        let protected = image::assemble(&X86_64.header, &flat, &c).unwrap();
        let img = bzimage::assemble(&setup_part(), &protected).unwrap();
        let r = inspect(&img);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        let t = text(&r);
        for want in [
            "file: shim image (x86 bzImage",
            "boot protocol: 2.15",
            "loadflags: 0x01 (LOADED_HIGH)",
            "xloadflags: 0x0003 (KERNEL_64 | CAN_BE_LOADED_ABOVE_4G)",
            "entry 16-bit: setup offset 0x26c",
            "entry 32-bit: code32_start 0x100000",
            "entry 64-bit: protected-mode part offset 0x200",
            "digest: ok",
            "  machine: X86_64",
        ] {
            assert!(t.contains(want), "{want} in\n{t}");
        }
    }

    #[test]
    fn linux_bzimage_payload_compression() {
        let mut protected = vec![0u8; 0x2000];
        protected[0x100..0x106].copy_from_slice(b"\xfd7zXZ\0");
        let mut img = bzimage::assemble(&setup_part(), &protected).unwrap();
        img[0x248..0x24c].copy_from_slice(&0x100u32.to_le_bytes());
        img[0x24c..0x250].copy_from_slice(&0x800u32.to_le_bytes());
        let r = inspect(&img);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert!(text(&r).contains(
            "payload: 0x800 bytes (2.0 KiB) at protected-mode offset 0x100, compression xz"
        ));
        img[0x24c..0x250].copy_from_slice(&0x8000u32.to_le_bytes());
        assert!(inspect(&img).problems[0].contains("runs past"));
    }

    #[test]
    fn magics_and_flag_words() {
        for (bytes, name) in [
            (&b"\x1f\x8b\x08"[..], "gzip"),
            (b"\xfd7zXZ\0\0", "xz"),
            (b"\x28\xb5\x2f\xfd", "zstd"),
            (b"\x02\x21\x4c\x18", "lz4 (legacy frame)"),
            (b"BZh9", "bzip2"),
            (b"\x5d\x00\x00\x80", "lzma"),
        ] {
            assert_eq!(compression_by_magic(bytes), Some(name));
        }
        assert_eq!(compression_by_magic(b"\0\0"), None);
        assert_eq!(loadflags(0x81), "LOADED_HIGH | CAN_USE_HEAP");
        assert_eq!(loadflags(0), "none");
        assert_eq!(xloadflags(0x7f), "KERNEL_64 | CAN_BE_LOADED_ABOVE_4G | EFI_HANDOVER_32 | EFI_HANDOVER_64 | EFI_KEXEC | 5LEVEL | 5LEVEL_ENABLED");
        assert_eq!(xloadflags(0x300), "unknown 0x300");
    }

    #[test]
    fn relocations_by_type() {
        assert_eq!(
            reloc_line(Machine::Aarch64, 3, &[1027, 0, 1027], 4, 5),
            "relocations: RELA 3 (NONE 1, R_AARCH64_RELATIVE 2); RELR 4 entries, 5 words"
        );
        assert_eq!(reloc_name(Machine::X86_64, 8), "R_X86_64_RELATIVE");
        assert_eq!(reloc_name(Machine::X86_64, 99), "type 99");
    }

    #[test]
    fn garbage_is_named() {
        let r = inspect(b"\x28\xb5\x2f\xfd\0\0\0\0");
        assert_eq!(r.problems.len(), 1);
        assert!(
            r.problems[0].starts_with("not an image xtask knows: zstd compressed data"),
            "{:?}",
            r.problems
        );
        assert!(inspect(b"").problems[0].contains("an empty file"));
        let r = inspect(&[0x1f, 0x8b, 8, 0, 0]);
        assert!(r.problems[0].starts_with("gzip:"), "{:?}", r.problems);
    }
}
