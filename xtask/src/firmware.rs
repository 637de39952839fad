//! U-Boot for the QEMU machines the boards table runs it on (`boards::QemuUBoot`):
//! the host's installed copy (u-boot-qemu, which `deps` installs), else the file taken
//! from Debian's arm64 package with `apt-get download`, cached under
//! `target/xtask/u-boot/<package>/`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use shim_boards::QemuUBoot;

use crate::{linux, target_dir};

/// The U-Boot binary, downloading its package once if the host has none.
pub fn u_boot(fw: &QemuUBoot) -> Result<PathBuf> {
    let installed = Path::new(fw.file);
    if installed.is_file() {
        return Ok(installed.to_path_buf());
    }
    let dir = target_dir().join("xtask").join("u-boot").join(fw.package);
    let cached = dir.join(fw.file.trim_start_matches('/'));
    if cached.is_file() {
        return Ok(cached);
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    linux::ensure_arm64_apt()?;
    let (root, version) = linux::download(&dir, fw.package)?;
    let from = root.join(fw.file.trim_start_matches('/'));
    if let Some(parent) = cached.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::copy(&from, &cached)
        .with_context(|| format!("{} {version} has no {}", fw.package, fw.file))?;
    fs::remove_dir_all(dir.join("download"))?;
    eprintln!("xtask: {} from {} {version}", cached.display(), fw.package);
    Ok(cached)
}
