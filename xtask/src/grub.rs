//! The GRUB loader for x86_64 boot tests: a BIOS (i386-pc) rescue ISO made by
//! grub-mkrescue whose grub.cfg boots the shim with `linux`, GRUB's 32-bit entry.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

use crate::{deps, exec, target_dir};

/// Builds `target/xtask/grub/shim.iso` booting `image` with `append`.
pub fn iso(image: &Path, append: &str) -> Result<PathBuf> {
    deps::ensure_host_packages(&[
        ("grub-common", "/usr/bin/grub-mkrescue"),
        ("grub-pc-bin", "/usr/lib/grub/i386-pc/linux.mod"),
        ("xorriso", "/usr/bin/xorriso"),
        ("mtools", "/usr/bin/mformat"),
    ])?;
    let dir = target_dir().join("xtask").join("grub");
    let root = dir.join("iso");
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(root.join("boot/grub"))?;
    fs::copy(image, root.join("boot/shim.img"))?;
    // No menu delay; GRUB's own output stays on the (absent) VGA console so the serial
    // console shows only the shim and the payload.
    let cfg = format!(
        "set timeout=0\nset default=0\nmenuentry shim {{\n    linux /boot/shim.img {append}\n    boot\n}}\n"
    );
    fs::write(root.join("boot/grub/grub.cfg"), cfg)?;
    let iso = dir.join("shim.iso");
    exec(
        Command::new("grub-mkrescue")
            .args(["-d", "/usr/lib/grub/i386-pc", "-o"])
            .arg(&iso)
            .arg(&root),
    )?;
    Ok(iso)
}
