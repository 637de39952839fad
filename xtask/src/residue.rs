//! Device trees for the tests, made from QEMU virt's own (dumped, then rebuilt with
//! shim-common's editor): one with a known kaslr-seed planted in it for the residue
//! test, one with a kaslr-seed of the wrong length for the fault-injection cases. Also the residue test's
//! Linux-protocol scanner Image (tests/residue): the shim must leave no copy of the
//! planted seed anywhere a payload or a kernel can read.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};
use shim_common::fdt::edit::{self, Edit};
use shim_common::fdt::Fdt;

use crate::arch::AARCH64;
use crate::image::{self, BuildArgs};
use crate::{exec, target_dir};

/// The planted kaslr-seed; tests/payload (`checks::planted_seed`) and tests/residue
/// (`scan.S`) build the same value from immediates.
pub const PLANTED_SEED: u64 = 0x5eed_c0de_a5a5_1234;
/// The scanners search the first 512 MiB of RAM: boot with this much.
pub const MEM: &str = "512M";

/// How a test's tree differs from QEMU virt's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tree {
    /// `PLANTED_SEED` as `/chosen/kaslr-seed`.
    PlantedSeed,
    /// A 4-byte `/chosen/kaslr-seed`: Linux ignores it, the shim must too.
    ShortKaslrSeed,
    /// No `/chosen/stdout-path`: the tree names no console.
    NoStdoutPath,
}

impl Tree {
    fn name(self) -> &'static str {
        match self {
            Tree::PlantedSeed => "planted",
            Tree::ShortKaslrSeed => "short-kaslr-seed",
            Tree::NoStdoutPath => "no-stdout-path",
        }
    }
}

/// QEMU virt's device tree for `-m 512M`, changed as `tree` says (rebuilt compactly:
/// QEMU's own dump is padded to 1 MiB and QEMU pads it again).
pub fn dtb(tree: Tree) -> Result<PathBuf> {
    let dir = target_dir().join("xtask").join("residue");
    fs::create_dir_all(&dir)?;
    let dumped = dir.join("virt.dtb");
    crate::qemu::dump_virt_dtb("dtb-randomness=off", MEM, 1, &dumped)?;
    let blob = fs::read(&dumped).with_context(|| format!("reading {}", dumped.display()))?;
    let fdt = Fdt::new(&blob).map_err(|e| anyhow::anyhow!("QEMU's dumped tree: {e}"))?;
    let seed = PLANTED_SEED.to_be_bytes();
    let edits: &[Edit<'_>] = match tree {
        Tree::PlantedSeed => &[Edit::Set("kaslr-seed", &seed)],
        Tree::ShortKaslrSeed => &[Edit::Set("kaslr-seed", &seed[..4])],
        Tree::NoStdoutPath => &[Edit::Remove("stdout-path")],
    };
    let mut out = vec![0; edit::rebuilt_size(&fdt, edits)];
    let n = edit::rebuild(&fdt, edits, &mut out).map_err(|e| anyhow::anyhow!("{e}"))?;
    out.truncate(n);
    let path = dir.join(format!("{}.dtb", tree.name()));
    fs::write(&path, &out).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// tests/residue as a flat arm64 Image (its own header, no relocations).
pub fn scanner_image() -> Result<PathBuf> {
    let args = BuildArgs::demo(crate::arch::Arch::Aarch64);
    let elf = image::cargo_build(&AARCH64, "residue-image", &args)?;
    let dir = target_dir().join("xtask").join("residue");
    fs::create_dir_all(&dir)?;
    let out = dir.join("Image");
    exec(
        Command::new(image::objcopy()?)
            .args(["-O", "binary"])
            .arg(&elf)
            .arg(&out),
    )?;
    Ok(out)
}
