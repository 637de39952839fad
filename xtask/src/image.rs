//! `cargo xtask build`: builds the shim and the payload, flattens the shim with
//! llvm-objcopy and appends the payload container, giving `target/xtask/<arch>/shim.img`.
//! The packing arithmetic (`assemble`, `corrupt_container`) is pure and unit-tested.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use sha2::{Digest, Sha256};
use shim_common::container::{self, Compression, Format, Header, HEADER_LEN, MAGIC};

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
    /// Pack this ELF instead of the demo payload.
    #[arg(long, value_name = "ELF")]
    pub payload: Option<PathBuf>,
    /// Pack the payload with one byte flipped under the original's digest (written to
    /// shim-corrupt.img): the shim must refuse it.
    #[arg(long)]
    pub corrupt_payload: bool,
    /// Build optimized (the default).
    #[arg(long, conflicts_with = "debug")]
    pub release: bool,
    /// Build the shim and the demo payload unoptimized.
    #[arg(long)]
    pub debug: bool,
}

impl BuildArgs {
    fn profile(&self) -> &'static str {
        if self.debug {
            "debug"
        } else {
            "release"
        }
    }
}

/// Builds everything and writes the image; returns its path.
pub fn build(args: &BuildArgs) -> Result<PathBuf> {
    let target = args.arch.target();
    deps::ensure_toolchain(target)?;

    // A given payload is checked before anything is built.
    let payload_elf = match &args.payload {
        Some(path) => path.clone(),
        None => cargo_build(target, target.payload_package, args)?,
    };
    let payload = read(&payload_elf)?;
    ensure!(
        payload.starts_with(b"\x7fELF") && payload.get(4) == Some(&2),
        "{} is not a 64-bit ELF file",
        payload_elf.display()
    );
    let shim_elf = cargo_build(target, target.shim_package, args)?;

    let out_dir = target_dir().join("xtask").join(target.name);
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    // The loader needs the program headers and the dynamic section, not the debug
    // information (90% of a release build): pack the payload without it.
    let stripped = out_dir.join("payload.elf");
    exec(
        Command::new(objcopy()?)
            .arg("--strip-debug")
            .arg(&payload_elf)
            .arg(&stripped),
    )?;
    let payload = read(&stripped)?;
    let flat_path = out_dir.join("shim.bin");
    exec(
        Command::new(objcopy()?)
            .args(["-O", "binary"])
            .arg(&shim_elf)
            .arg(&flat_path),
    )?;
    let flat = read(&flat_path)?;

    let container = if args.corrupt_payload {
        corrupt_container(&payload)?
    } else {
        pack(&payload)
    };
    let mut image = assemble(&target.header, &flat, &container)
        .with_context(|| format!("packing {}", shim_elf.display()))?;
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

    let name = if args.corrupt_payload {
        "shim-corrupt.img"
    } else {
        "shim.img"
    };
    let path = out_dir.join(name);
    fs::write(&path, &image).with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "xtask: {}: shim {} bytes + container {} bytes ({} byte payload{}) = {} bytes",
        path.display(),
        flat.len(),
        container.len(),
        payload.len(),
        if args.corrupt_payload {
            ", corrupted"
        } else {
            ""
        },
        image.len()
    );
    Ok(path)
}

/// `cargo build -p <package> --target <rust_target> [--release]`; returns the ELF's path.
fn cargo_build(target: &Target, package: &str, args: &BuildArgs) -> Result<PathBuf> {
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
fn objcopy() -> Result<PathBuf> {
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
pub fn pack(payload: &[u8]) -> Vec<u8> {
    container::pack(Format::Elf64Dyn, Compression::Zlib, payload)
}

/// A container that decompresses fine but whose data is the payload with its middle
/// byte flipped, under the digest of the unflipped payload.
pub fn corrupt_container(payload: &[u8]) -> Result<Vec<u8>> {
    ensure!(!payload.is_empty(), "empty payload");
    let mut flipped = payload.to_vec();
    let middle = flipped.len() / 2;
    if let Some(byte) = flipped.get_mut(middle) {
        *byte ^= 0xff;
    }
    let mut packed = pack(&flipped);
    ensure!(
        packed.len() >= HEADER_LEN && packed.starts_with(&MAGIC),
        "container::pack did not produce a container header"
    );
    packed[DIGEST_OFFSET..DIGEST_OFFSET + 32].copy_from_slice(&Sha256::digest(payload));
    Ok(packed)
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

    #[test]
    fn corrupt_container_keeps_the_original_digest() {
        let payload: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let good = pack(&payload);
        let bad = corrupt_container(&payload).unwrap();
        assert_eq!(good[..8], MAGIC);
        // Same digest field, different packed data.
        assert_eq!(&bad[32..64], &Sha256::digest(&payload)[..]);
        assert_eq!(&good[32..64], &bad[32..64]);
        assert_ne!(good[64..], bad[64..]);
        // Its data is exactly the payload with the middle byte flipped.
        let mut flipped = payload.clone();
        flipped[5000] ^= 0xff;
        let honest = pack(&flipped);
        assert_eq!(bad[64..], honest[64..]);
        assert_eq!(bad[..32], honest[..32]);

        // The shim's own checks: it unpacks fine and then fails verification.
        let mut inflater = Box::<container::DecompressorOxide>::default();
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
}
