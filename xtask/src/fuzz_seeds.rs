//! The fuzz targets' seed corpora, made from real inputs into
//! `target/xtask/fuzz/seeds/<target>/` (never committed): QEMU's device trees
//! (`dumpdtb=`, virt and raspi4b), the boards' Debian trees (dtbs.rs), Debian's kernel
//! headers, QEMU's e820 map in a zero page, the demo payload as ELF and in containers,
//! real command lines, and the committed regression inputs. A source that cannot be
//! had is said, and the others are used.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, Context, Result};
use shim_common::bootparams::{
    SETUP_E820_EXT, SETUP_HEADER_OFFSET, SETUP_RNG_SEED, ZERO_PAGE_SIZE,
};
use shim_common::container::{self, Compression, Format};
use shim_common::fdt::edit;
use shim_common::fdt::Fdt;

use crate::arch::{Arch, AARCH64};
use crate::image::{self, BuildArgs};
use crate::{dtbs, exec, linux, simulate, target_dir, workspace_root};

/// Where the place target's machine starts and what its first byte says (the
/// control block of fuzz/src/checks/place.rs: all zero means the defaults).
const PLACE_CONTROL: usize = 64;
const PLACE_DTB: u8 = 1;
const PLACE_BOOT_PARAMS_X86: u8 = 2 | 4;
/// The physical address of the bootparams target's first byte
/// (fuzz/src/checks/bootparams.rs `BASE`).
const BOOT_PARAMS_BASE: u64 = 0x1000;

/// A target's seed directory.
pub fn dir(target: &str) -> PathBuf {
    crate::fuzz::dir().join("seeds").join(target)
}

/// The inputs seeds are made from, each `None` where it could not be had.
struct Sources {
    /// (name, blob) of every device tree.
    dtbs: Vec<(String, Vec<u8>)>,
    /// Debian's arm64 Image: its name and first 4 KiB, and its size.
    linux_image: Option<(Vec<u8>, u64)>,
    /// x86 bzImages' first KiB (Debian's, the shim's own), by name.
    bzimages: Vec<(String, Vec<u8>)>,
    /// The shim's own arm64 Image header.
    shim_image: Option<Vec<u8>>,
    /// The demo payload of each architecture.
    payloads: Vec<(String, Vec<u8>)>,
    e820: Vec<(u64, u64, u32)>,
}

/// Writes the seeds of `targets` afresh.
pub fn write_all(targets: &[&str]) -> Result<()> {
    let s = gather();
    for &target in targets {
        let seeds = seeds_for(target, &s)?;
        let dir = dir(target);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, bytes) in &seeds {
            fs::write(dir.join(name), bytes)?;
        }
        eprintln!(
            "xtask: fuzz/{target}: {} seeds in {}",
            seeds.len(),
            dir.display()
        );
    }
    Ok(())
}

/// Says what a source could not give, and goes on without it.
fn or_say<T>(what: &str, r: Result<T>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(why) => {
            eprintln!("xtask: fuzz seeds: no {what}: {why:#}");
            None
        }
    }
}

fn gather() -> Sources {
    let mut dtbs = committed_dtbs();
    dtbs.extend(or_say("QEMU virt device trees", qemu_virt_dtbs()).unwrap_or_default());
    let boards = or_say("board device trees", dtbs::all());
    if let Some(dir) = &boards {
        for board in shim_boards::BOARDS {
            if let Some(file) = board.debian_dtb {
                if let Some(blob) = or_say(file, read(&dir.join(file))) {
                    dtbs.push((format!("{}.dtb", board.name), blob));
                }
            }
        }
        let rpi = shim_boards::RPI4.debian_dtb.map(|f| dir.join(f));
        if let Some(rpi) = rpi {
            dtbs.extend(or_say("QEMU raspi4b device tree", qemu_raspi4b_dtb(&rpi)));
        }
    }
    let dtbs = dtbs.into_iter().map(|(n, b)| (n, compact(b))).collect();

    let linux_image = or_say("Debian arm64 kernel", debian_image());
    let mut bzimages = Vec::new();
    for (name, path) in [
        (
            "debian-kexec-vmlinuz",
            target_dir().join("xtask/kexec/vmlinuz"),
        ),
        (
            "debian-bzImage",
            target_dir().join("xtask/linux-x86_64/bzImage"),
        ),
    ] {
        if let Ok(bytes) = fs::read(&path) {
            bzimages.push((name.to_string(), head(&bytes, 1024)));
        } else {
            eprintln!("xtask: fuzz seeds: no {} (not downloaded)", path.display());
        }
    }
    let mut payloads = Vec::new();
    let mut shim_image = None;
    for arch in [Arch::Aarch64, Arch::X86_64] {
        let name = arch.target().name;
        if let Some((payload, image)) = or_say(&format!("{name} demo payload"), built(arch)) {
            payloads.push((format!("payload-{name}.elf"), payload));
            match arch {
                Arch::Aarch64 => shim_image = Some(head(&image, 64)),
                Arch::X86_64 => bzimages.push((format!("shim-{name}"), head(&image, 1024))),
            }
        }
    }
    let e820 = or_say("QEMU q35 e820 map", q35_e820()).unwrap_or_default();
    Sources {
        dtbs,
        linux_image,
        bzimages,
        shim_image,
        payloads,
        e820,
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn head(bytes: &[u8], n: usize) -> Vec<u8> {
    bytes[..n.min(bytes.len())].to_vec()
}

/// A tree rebuilt without padding (QEMU pads its dump to 1 MiB), or as it was.
fn compact(blob: Vec<u8>) -> Vec<u8> {
    let Ok(fdt) = Fdt::new(&blob) else {
        return blob;
    };
    let mut out = vec![0; edit::rebuilt_size(&fdt, &[])];
    match edit::rebuild(&fdt, &[], &mut out) {
        Ok(n) => {
            out.truncate(n);
            out
        }
        Err(_) => blob,
    }
}

/// tests/data/dtb/*.dtb.
fn committed_dtbs() -> Vec<(String, Vec<u8>)> {
    let dir = workspace_root().join("tests/data/dtb");
    let mut out: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "dtb"))
        .filter_map(|p| {
            Some((
                p.file_name()?.to_string_lossy().into_owned(),
                fs::read(&p).ok()?,
            ))
        })
        .collect();
    out.sort();
    out
}

/// QEMU virt's own tree in a few configurations: memory sizes, CPUs, EL2, EL3.
fn qemu_virt_dtbs() -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for (name, opts, mem, smp) in [
        ("qemu-virt-1G", "", "1G", 1),
        ("qemu-virt-6G-smp4", "", "6G", 4),
        ("qemu-virt-el2-2G", "virtualization=on", "2G", 2),
        ("qemu-virt-el3-1G", "secure=on", "1G", 1),
    ] {
        let path = dump_dir()?.join(format!("{name}.dtb"));
        crate::qemu::dump_virt_dtb(opts, mem, smp, &path)?;
        out.push((format!("{name}.dtb"), read(&path)?));
    }
    Ok(out)
}

/// QEMU raspi4b's tree: Debian's RPi 4 tree as QEMU hands it on (memory, /chosen).
fn qemu_raspi4b_dtb(board_dtb: &Path) -> Result<(String, Vec<u8>)> {
    let path = dump_dir()?.join("qemu-raspi4b.dtb");
    exec(
        Command::new(AARCH64.qemu)
            .args(["-machine", &format!("raspi4b,dumpdtb={}", path.display())])
            .args(["-m", "2G", "-display", "none", "-dtb"])
            .arg(board_dtb),
    )?;
    Ok(("qemu-raspi4b.dtb".into(), read(&path)?))
}

fn dump_dir() -> Result<PathBuf> {
    let dir = crate::fuzz::dir().join("dumps");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Debian's arm64 Image (downloaded once by linux.rs): its first 4 KiB and its size.
fn debian_image() -> Result<(Vec<u8>, u64)> {
    let cached = linux::dir().join("Image");
    let path = if cached.is_file() {
        cached
    } else {
        linux::inputs()?.image
    };
    let bytes = read(&path)?;
    Ok((head(&bytes, 4096), bytes.len() as u64))
}

/// The demo payload (stripped) and the shim image of `arch`, built if absent.
fn built(arch: Arch) -> Result<(Vec<u8>, Vec<u8>)> {
    let dir = target_dir().join("xtask").join(arch.target().name);
    let (payload, image) = (dir.join("payload.elf"), dir.join("shim.img"));
    if !payload.is_file() || !image.is_file() {
        image::build(&BuildArgs::demo(arch))?;
    }
    Ok((read(&payload)?, read(&image)?))
}

fn q35_e820() -> Result<Vec<(u64, u64, u32)>> {
    let path = workspace_root().join("tests/data/e820/q35-6G.dmesg");
    simulate::parse_e820(
        &fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
    )
}

fn seeds_for(target: &str, s: &Sources) -> Result<Vec<(String, Vec<u8>)>> {
    let mut seeds = match target {
        "fdt" => s.dtbs.clone(),
        "place" => place(s),
        "elf" => s.payloads.clone(),
        "container" => containers(s),
        "bootparams" => boot_params(s),
        "cmdline" => command_lines(s),
        "arm64_image" => arm64_images(s),
        "x86_bzimage" => s.bzimages.clone(),
        // ELF64 files for a start; vmlinux's own layout comes from mutation.
        "x86_vmlinux" => s.payloads.clone(),
        _ => return Err(anyhow!("no seeds for fuzz target {target:?}")),
    };
    seeds.extend(regressions(target)?);
    Ok(seeds)
}

/// The committed regression inputs (common/tests/data/fuzz/<target>/*.hex).
fn regressions(target: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let dir = workspace_root().join("common/tests/data/fuzz").join(target);
    let mut out = Vec::new();
    for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "hex") {
            let text = fs::read_to_string(&path)?;
            let bytes = from_hex(&text).with_context(|| format!("reading {}", path.display()))?;
            let name = path.file_stem().unwrap_or_default().to_string_lossy();
            out.push((format!("regression-{name}"), bytes));
        }
    }
    Ok(out)
}

/// Hex text with `#` comments, as common/tests/fuzz.rs reads it.
pub fn from_hex(text: &str) -> Result<Vec<u8>> {
    let digits: Vec<u8> = text
        .lines()
        .flat_map(|l| l.split('#').next().unwrap_or_default().bytes())
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if !digits.len().is_multiple_of(2) {
        anyhow::bail!("an odd number of hex digits");
    }
    digits
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair)?;
            u8::from_str_radix(pair, 16).with_context(|| format!("{pair:?} is not a hex byte"))
        })
        .collect()
}

/// Each tree and each zero page behind the place target's default control block.
fn place(s: &Sources) -> Vec<(String, Vec<u8>)> {
    let with = |flags: u8, machine: &[u8]| {
        let mut input = vec![0u8; PLACE_CONTROL];
        input[0] = flags;
        input.extend_from_slice(machine);
        input
    };
    let mut out: Vec<_> = s
        .dtbs
        .iter()
        .map(|(name, blob)| (name.clone(), with(PLACE_DTB, blob)))
        .collect();
    out.extend(
        boot_params(s)
            .into_iter()
            .map(|(name, bp)| (name, with(PLACE_BOOT_PARAMS_X86, &bp))),
    );
    out
}

/// The demo payloads packed as the shim packs them, and the start of Debian's Image
/// in each compression.
fn containers(s: &Sources) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, elf) in &s.payloads {
        let e_machine = u16::from_le_bytes([elf[18], elf[19]]);
        let machine = shim_common::elf::Machine::from_e_machine(e_machine)
            .expect("a demo payload for one of the shim's machines");
        for (c, tag) in [
            (Compression::None, "stored"),
            (Compression::Zlib, "zlib"),
            (Compression::Lz4, "lz4"),
        ] {
            out.push((
                format!("{name}-{tag}"),
                container::pack_elf(c, elf, machine).expect("a demo payload lays out"),
            ));
        }
    }
    // A zero run: its table entry between the header and the packed data.
    let mut sparse = vec![0x5a; 4096];
    sparse.extend([0; 8192]);
    sparse.extend([0xa5; 100]);
    out.push((
        "zero-run-zlib".into(),
        container::pack(Format::LinuxArm64Image, Compression::Zlib, &sparse),
    ));
    if let Some((image, _)) = &s.linux_image {
        let f = Format::LinuxArm64Image;
        out.push((
            "linux-head-zlib".into(),
            container::pack(f, Compression::Zlib, image),
        ));
        out.push((
            "linux-head-lz4".into(),
            container::pack(f, Compression::Lz4, image),
        ));
        let zlib = container::pack(f, Compression::Zlib, image);
        if let Some(member) = container::parse(&zlib)
            .ok()
            .and_then(|p| gzip_of(p.packed, image))
        {
            if let Ok(packed) = container::pack_gzip(f, &member) {
                out.push(("linux-head-gzip".into(), packed));
            }
        }
    }
    out
}

/// A gzip member (RFC 1952) around the deflate stream inside a zlib stream.
fn gzip_of(zlib: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    let deflate = zlib.get(2..zlib.len().checked_sub(4)?)?;
    let mut member = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    member.extend_from_slice(deflate);
    member.extend_from_slice(&crc32(data).to_le_bytes());
    member.extend_from_slice(&(data.len() as u32).to_le_bytes());
    Some(member)
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// Zero pages as a loader fills them: a bzImage's setup header copied in, QEMU q35's
/// e820 map, a command line, and (in some) an initrd and a setup_data chain with an
/// RNG seed and an E820_EXT node. Laid out as fuzz/src/checks/bootparams.rs reads
/// its input: physical memory from 0x1000, the zero page first.
fn boot_params(s: &Sources) -> Vec<(String, Vec<u8>)> {
    let mut headers: Vec<(String, Vec<u8>)> = s.bzimages.clone();
    headers.push(("minimal".into(), minimal_header()));
    let mut out = Vec::new();
    for (name, header) in &headers {
        for (variant, initrd, chain) in [("plain", false, false), ("full", true, true)] {
            out.push((
                format!("{name}-{variant}"),
                zero_page(header, &s.e820, initrd, chain),
            ));
        }
    }
    out
}

/// The smallest setup header the parsers take: boot_flag, "HdrS", version 2.15.
fn minimal_header() -> Vec<u8> {
    let mut h = vec![0u8; 0x270];
    h[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    h[0x201] = 0x6a; // jump: the header ends at 0x202 + 0x6a
    h[0x202..0x206].copy_from_slice(b"HdrS");
    h[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    h[0x238..0x23c].copy_from_slice(&2047u32.to_le_bytes());
    h
}

fn put(mem: &mut [u8], at: usize, bytes: &[u8]) {
    mem[at..at + bytes.len()].copy_from_slice(bytes);
}

fn zero_page(header: &[u8], e820: &[(u64, u64, u32)], initrd: bool, chain: bool) -> Vec<u8> {
    const CMDLINE: usize = 0x1000;
    const RNG_NODE: usize = 0x1400;
    const EXT_NODE: usize = 0x1800;
    let mut mem = vec![0u8; 0x2000];
    // The setup header, from 0x1f1 to 0x202 + the jump's offset byte (boot.rst).
    let end = header.get(0x201).map_or(0x202, |&b| 0x202 + usize::from(b));
    let end = end.min(header.len()).min(ZERO_PAGE_SIZE);
    if end > SETUP_HEADER_OFFSET {
        put(
            &mut mem,
            SETUP_HEADER_OFFSET,
            &header[SETUP_HEADER_OFFSET..end],
        );
    }
    // e820_entries at 0x1e8, e820_table at 0x2d0 (zero-page.rst).
    let n = e820.len().min(128);
    mem[0x1e8] = n as u8;
    for (i, &(addr, size, typ)) in e820.iter().take(n).enumerate() {
        let at = 0x2d0 + 20 * i;
        put(&mut mem, at, &addr.to_le_bytes());
        put(&mut mem, at + 8, &size.to_le_bytes());
        put(&mut mem, at + 16, &typ.to_le_bytes());
    }
    // type_of_loader (0x210): QEMU; cmd_line_ptr (0x228).
    mem[0x210] = 0xb0;
    put(&mut mem, CMDLINE, b"console=ttyS0 shim.verbose panic=-1\0");
    let pa = |offset: usize| BOOT_PARAMS_BASE + offset as u64;
    put(&mut mem, 0x228, &(pa(CMDLINE) as u32).to_le_bytes());
    if initrd {
        // ramdisk_image, ramdisk_size: where QEMU puts an initrd below 2 GiB.
        put(&mut mem, 0x218, &0x7f5a_0000u32.to_le_bytes());
        put(&mut mem, 0x21c, &0x0004_0000u32.to_le_bytes());
    }
    if chain {
        // setup_data (0x250): an RNG seed, then E820_EXT with RAM above 8 GiB.
        put(&mut mem, 0x250, &pa(RNG_NODE).to_le_bytes());
        let node = |next: u64, typ: u32, data: &[u8]| {
            let mut n = next.to_le_bytes().to_vec();
            n.extend_from_slice(&typ.to_le_bytes());
            n.extend_from_slice(&(data.len() as u32).to_le_bytes());
            n.extend_from_slice(data);
            n
        };
        put(
            &mut mem,
            RNG_NODE,
            &node(pa(EXT_NODE), SETUP_RNG_SEED, &[0x5a; 32]),
        );
        let mut ext = Vec::new();
        for (addr, size) in [
            (0x2_0000_0000u64, 0x4000_0000u64),
            (0x3_0000_0000, 0x20_0000),
        ] {
            ext.extend_from_slice(&addr.to_le_bytes());
            ext.extend_from_slice(&size.to_le_bytes());
            ext.extend_from_slice(&1u32.to_le_bytes());
        }
        put(&mut mem, EXT_NODE, &node(0, SETUP_E820_EXT, &ext));
    }
    mem
}

/// Command lines the shim meets: the test matrix's, Debian's defaults, the memory
/// options in each form the parser takes, and the trees' own bootargs.
fn command_lines(s: &Sources) -> Vec<(String, Vec<u8>)> {
    let mut lines: Vec<String> = [
        linux::APPEND,
        "shim.verbose",
        "console=ttyAMA0 shim.verbose shim.offset=0x200000",
        "console=ttyS0,115200n8 root=/dev/vda1 ro quiet splash",
        "BOOT_IMAGE=/boot/vmlinuz-6.1.0-56-cloud-amd64 root=UUID=0b6b1b6c ro console=tty0 console=ttyS0,115200 earlyprintk=ttyS0,115200 consoleblank=0",
        "nokaslr mem=512M",
        "kaslr mem=0x40000000 shim.weak=fixed",
        "memmap=exactmap memmap=640K@0 memmap=1G@1M memmap=64M$0x50000000",
        "memmap=0x10000000%0x40000000-1+12 memmap=100M!4G memmap=2G#0x100000000",
        "memmap=512M",
        "a=\"quoted shim.verbose value\" shim.verbose -- init args shim.offset=x",
    ]
    .iter()
    .map(|l| l.to_string())
    .collect();
    for (_, blob) in &s.dtbs {
        if let Some(args) = Fdt::new(blob)
            .ok()
            .and_then(|f| {
                shim_common::fdt::Machine::read(&f)
                    .ok()
                    .map(|m| m.bootargs.to_vec())
            })
            .filter(|a| !a.is_empty())
        {
            lines.push(String::from_utf8_lossy(&args).into_owned());
        }
    }
    lines.sort();
    lines.dedup();
    lines
        .into_iter()
        .enumerate()
        .map(|(i, l)| (format!("line-{i}"), l.into_bytes()))
        .collect()
}

/// arm64 Image headers (Debian's kernel, the shim's own), each followed by the
/// target's tail: where RAM starts, the file size and an initrd.
fn arm64_images(s: &Sources) -> Vec<(String, Vec<u8>)> {
    let tail = |file_size: u64, initrd: Option<(u64, u64)>| {
        let (start, size) = initrd.unwrap_or((0, 0));
        [0x4000_0000u64, file_size, start, size]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>()
    };
    let mut out = Vec::new();
    if let Some((image, size)) = &s.linux_image {
        let h = head(image, 64);
        out.push((
            "debian-image".into(),
            [h.clone(), tail(*size, None)].concat(),
        ));
        let initrd = Some((0x4800_0000, 0x20_0000));
        out.push((
            "debian-image-initrd".into(),
            [h, tail(*size, initrd)].concat(),
        ));
    }
    if let Some(h) = &s.shim_image {
        out.push((
            "shim-image".into(),
            [h.clone(), tail(0xcb000, None)].concat(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use shim_common::bootparams::BootParams;

    #[test]
    fn zero_pages_parse_with_their_e820_and_chain() {
        let e820 = q35_e820().unwrap();
        let mem = zero_page(&minimal_header(), &e820, true, true);
        let bp = BootParams::new(&mem).unwrap();
        assert_eq!(bp.e820().unwrap().count(), e820.len());
        assert_eq!(bp.cmd_line_ptr(), BOOT_PARAMS_BASE + 0x1000);
        assert!(bp.initrd().is_some());
        let read = |pa: u64, len: u64| {
            let at = usize::try_from(pa.checked_sub(BOOT_PARAMS_BASE)?).ok()?;
            mem.get(at..at + usize::try_from(len).ok()?)
        };
        let m = shim_common::bootparams::Machine::read(BOOT_PARAMS_BASE, &bp, read).unwrap();
        assert_eq!(m.rng_seeds().count(), 1);
        assert!(m.ram.total() > 6 << 30);
    }

    #[test]
    fn gzip_members_inflate() {
        let data = b"the quick brown fox jumps over the lazy dog".repeat(20);
        let zlib = container::pack(Format::LinuxArm64Image, Compression::Zlib, &data);
        let packed = container::parse(&zlib).unwrap().packed;
        let member = gzip_of(packed, &data).unwrap();
        let c = container::pack_gzip(Format::LinuxArm64Image, &member).unwrap();
        let p = container::parse(&c).unwrap();
        assert_eq!(p.compression, Compression::Gzip);
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn hex_reads_comments_and_lines() {
        assert_eq!(from_hex("# x\n00ff # y\n 1a\n").unwrap(), [0, 0xff, 0x1a]);
        assert!(from_hex("0g").is_err() && from_hex("abc").is_err());
    }
}
