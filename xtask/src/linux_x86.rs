//! Debian's x86_64 cloud kernel, for the x86 Linux payload: its bzImage (from
//! `linux-image-<abi>-cloud-amd64-unsigned`) and its System.map (from the `-dbg`
//! package: the image package's own /boot/System.map is a one-line stub). Fetched with
//! `apt-get download` (deb.rs), cached under
//! `target/xtask/linux-x86_64/{bzImage,System.map}`; the host test in
//! common/src/x86_linux reads that directory through `SHIM_LINUX_X86`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};
use shim_common::x86_linux::{self, Compression};

use crate::{capture, deb, target_dir};

/// The metapackage that names Debian's current cloud kernel for amd64.
pub const KERNEL_METAPACKAGE: &str = "linux-image-cloud-amd64";
pub const ARCH: &str = "amd64";
/// The environment variable the host test reads the directory from.
pub const ENV: &str = "SHIM_LINUX_X86";

/// The cache directory.
pub fn dir() -> PathBuf {
    target_dir().join("xtask").join("linux-x86_64")
}

/// The directory holding `bzImage` and `System.map`, downloading them once.
pub fn inputs() -> Result<PathBuf> {
    let dir = dir();
    let (bzimage, map, stamp) = (
        dir.join("bzImage"),
        dir.join("System.map"),
        dir.join("kernel-package"),
    );
    if !(bzimage.is_file() && map.is_file() && stamp.is_file()) {
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        fetch(&dir)?;
    }
    let label = fs::read_to_string(&stamp).unwrap_or_default();
    eprintln!(
        "xtask: Debian's x86_64 kernel {}: {}",
        label.trim(),
        dir.display()
    );
    Ok(dir)
}

/// The newest cloud kernel of Debian's bookworm-backports (6.12, zstd: a format the
/// shim leaves to Linux's own decompressor), its bzImage cached as
/// `target/xtask/linux-x86_64/bzImage-backports`.
pub fn backports_bzimage() -> Result<PathBuf> {
    let dir = dir();
    let path = dir.join("bzImage-backports");
    if path.is_file() {
        return Ok(path);
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // `apt-cache policy` lists the metapackage's versions; the backports one ends
    // in `~bpo<N>+<M>`.
    let meta = format!("{KERNEL_METAPACKAGE}:{ARCH}");
    let policy = capture(Command::new("apt-cache").args(["policy", &meta]))?;
    let version = policy
        .lines()
        .filter_map(|l| l.trim().trim_start_matches("***").split_whitespace().next())
        .find(|v| v.contains("~bpo"))
        .with_context(|| format!("`apt-cache policy {meta}` lists no bookworm-backports version"))?
        .to_string();
    let depends = capture(
        Command::new("apt-cache").args(["depends", &format!("{KERNEL_METAPACKAGE}={version}")]),
    )?;
    let abi = kernel_abi(&depends)
        .with_context(|| format!("{KERNEL_METAPACKAGE} {version} names no linux-image package"))?;
    let work = dir.join("download-backports");
    let _ = fs::remove_dir_all(&work);
    let (bytes, _) = download_bzimage(&work, &abi)?;
    fs::write(&path, &bytes)?;
    fs::remove_dir_all(&work)?;
    Ok(path)
}

/// Downloads the kernel and its debug package and keeps the two files.
fn fetch(dir: &Path) -> Result<()> {
    let meta = format!("{KERNEL_METAPACKAGE}:{ARCH}");
    let depends = capture(Command::new("apt-cache").args(["depends", &meta]))?;
    let abi = kernel_abi(&depends)
        .with_context(|| format!("`apt-cache depends {meta}` names no linux-image package"))?;
    let work = dir.join("download");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;

    let (bytes, version) = download_bzimage(&work, &abi)?;
    let compression = x86_linux::parse_bzimage(&bytes)
        .map(|bz| bz.compression)
        .map_err(|e| anyhow::anyhow!("{abi}: {e}"))?;
    if compression != Compression::Lz4 && compression != Compression::Gzip {
        eprintln!(
            "xtask: note: Debian's {abi} kernel is {compression}-compressed; the shim decodes only gzip and lz4"
        );
    }
    fs::write(dir.join("bzImage"), &bytes)?;

    // The real System.map is in the debug package (~280 MB): only it is extracted.
    let dbg_pkg = format!("linux-image-{abi}-dbg");
    let (dbg, _) = deb::download(&work, &dbg_pkg, ARCH)?;
    let dbg_root = work.join("dbg");
    deb::extract(&dbg, &dbg_root, &[format!("*/boot/System.map-{abi}")])?;
    let map_path = dbg_root.join(format!("usr/lib/debug/boot/System.map-{abi}"));
    let map = fs::read_to_string(&map_path)
        .with_context(|| format!("{dbg_pkg} has no {}", map_path.display()))?;
    check_system_map(&map).with_context(|| map_path.display().to_string())?;
    fs::write(dir.join("System.map"), &map)?;

    fs::write(
        dir.join("kernel-package"),
        format!("linux-image-{abi}-unsigned {version}\n"),
    )?;
    fs::remove_dir_all(&work)?;
    Ok(())
}

/// `linux-image-<abi>-unsigned:amd64` downloaded into `work`: its bzImage, checked as
/// the shim parses it, and the package's version.
fn download_bzimage(work: &Path, abi: &str) -> Result<(Vec<u8>, String)> {
    let image_pkg = format!("linux-image-{abi}-unsigned");
    let (deb, version) = deb::download(work, &image_pkg, ARCH)?;
    let root = work.join("image");
    deb::unpack(&deb, &root)?;
    let vmlinuz = root.join("boot").join(format!("vmlinuz-{abi}"));
    let bytes =
        fs::read(&vmlinuz).with_context(|| format!("{image_pkg} has no {}", vmlinuz.display()))?;
    x86_linux::parse_bzimage(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", vmlinuz.display()))?;
    Ok((bytes, version))
}

/// The ABI name `apt-cache depends linux-image-cloud-amd64` points at:
/// `Depends: linux-image-6.1.0-56-cloud-amd64` -> `6.1.0-56-cloud-amd64`.
pub fn kernel_abi(depends: &str) -> Option<String> {
    depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .map(|p| p.trim().trim_start_matches('<').trim_end_matches('>'))
        .map(|p| p.strip_suffix(&format!(":{ARCH}")).unwrap_or(p))
        .filter(|p| *p != KERNEL_METAPACKAGE)
        .filter_map(|p| p.strip_prefix("linux-image-"))
        .map(|abi| abi.strip_suffix("-unsigned").unwrap_or(abi))
        .find(|abi| abi.ends_with("-cloud-amd64") && abi.starts_with(|c: char| c.is_ascii_digit()))
        .map(String::from)
}

/// A real System.map names `_text`, `_end` and thousands of symbols (the image
/// package's stub has one line).
fn check_system_map(map: &str) -> Result<()> {
    let has = |name: &str| {
        map.lines()
            .any(|l| l.split_whitespace().nth(2) == Some(name))
    };
    ensure!(
        map.lines().count() > 1000 && has("_text") && has("_end"),
        "not a full System.map ({} lines)",
        map.lines().count()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_from_apt() {
        let depends = "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n";
        assert_eq!(kernel_abi(depends).as_deref(), Some("6.1.0-56-cloud-amd64"));
        let unsigned =
            "linux-image-cloud-amd64:amd64\n  Depends: <linux-image-6.12.38+deb13-cloud-amd64-unsigned:amd64>\n";
        assert_eq!(
            kernel_abi(unsigned).as_deref(),
            Some("6.12.38+deb13-cloud-amd64")
        );
        assert_eq!(kernel_abi("linux-image-cloud-amd64\n"), None);
        assert_eq!(
            kernel_abi("x\n  Depends: linux-image-cloud-amd64\n  Depends: kmod\n"),
            None
        );
    }

    #[test]
    fn system_map_check() {
        assert!(check_system_map(
            "ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n"
        )
        .is_err());
        let mut map = String::from("ffffffff81000000 T _text\nffffffff83e00000 B _end\n");
        for i in 0..1000 {
            map.push_str(&format!("ffffffff81{i:06x} t f{i}\n"));
        }
        assert!(check_system_map(&map).is_ok());
    }
}
