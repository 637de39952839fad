//! The real boards' device trees, as Debian ships them: taken from the full arm64 kernel
//! package `linux-image-<abi>-arm64-unsigned` of the same ABI as the cloud kernel
//! linux.rs boots (the cloud package has no DTBs). Only the trees the board table
//! names are extracted (deb.rs), and cached under
//! `target/xtask/board-dtbs/<vendor>/<board>.dtb`, the layout the host test
//! `the_boards_own_device_trees` reads through `SHIM_BOARD_DTBS`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use shim_boards::{Board, BOARDS};

use crate::{capture, deb, linux, target_dir};

/// The environment variable the host test reads the directory from.
pub const ENV: &str = "SHIM_BOARD_DTBS";

/// The cache directory.
pub fn dir() -> PathBuf {
    target_dir().join("xtask").join("board-dtbs")
}

/// Every board's Debian tree, downloading them once; returns the directory.
pub fn all() -> Result<PathBuf> {
    let dir = dir();
    let wanted: Vec<&str> = BOARDS.iter().filter_map(|b| b.debian_dtb).collect();
    let stamp = dir.join("package");
    let cached = wanted.iter().all(|f| dir.join(f).is_file()) && stamp.is_file();
    if !cached {
        fetch(&dir, &wanted)?;
    }
    let package = fs::read_to_string(&stamp).unwrap_or_default();
    eprintln!(
        "xtask: board device trees from {}: {}",
        package.trim(),
        dir.display()
    );
    Ok(dir)
}

/// The board's Debian tree (downloaded once), or `None` if it has none.
pub fn of(board: &Board) -> Result<Option<PathBuf>> {
    match board.debian_dtb {
        Some(file) => Ok(Some(all()?.join(file))),
        None => Ok(None),
    }
}

/// Downloads the full kernel package and extracts `files` into `dir`.
fn fetch(dir: &Path, files: &[&str]) -> Result<()> {
    linux::ensure_arm64_apt()?;
    let cloud = cloud_package()?;
    let package = full_package(&cloud)
        .with_context(|| format!("{cloud} is not a linux-image-<abi>-cloud-arm64 package"))?;
    let work = dir.join("download");
    let _ = fs::remove_dir_all(&work);
    let (deb, version) = deb::download(&work, &package, linux::ARCH)?;
    let root = work.join("root");
    let patterns: Vec<String> = files.iter().map(|f| format!("*/{f}")).collect();
    deb::extract(&deb, &root, &patterns)?;
    // ./usr/lib/linux-image-<abi>-arm64/<vendor>/<file>.dtb
    let lib = root.join("usr/lib");
    let tree = fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("linux-image-"))
        })
        .with_context(|| format!("{package} has no /usr/lib/linux-image-*"))?;
    for file in files {
        let to = dir.join(file);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::copy(tree.join(file), &to)
            .with_context(|| format!("{package} has no {}", tree.join(file).display()))?;
    }
    fs::write(dir.join("package"), format!("{package} {version}\n"))?;
    fs::remove_dir_all(&work)?;
    Ok(())
}

/// The cloud kernel linux.rs uses: the one it cached, else the one apt names now.
fn cloud_package() -> Result<String> {
    if let Ok(stamp) = fs::read_to_string(linux::dir().join("kernel-package")) {
        if let Some(name) = stamp.split_whitespace().next() {
            return Ok(name.to_string());
        }
    }
    let meta = format!("{}:{}", linux::KERNEL_METAPACKAGE, linux::ARCH);
    let depends = capture(Command::new("apt-cache").args(["depends", &meta]))?;
    linux::kernel_package(&depends)
        .with_context(|| format!("`apt-cache depends {meta}` names no linux-image package"))
}

/// `linux-image-6.1.0-56-cloud-arm64` -> `linux-image-6.1.0-56-arm64-unsigned`: the
/// full kernel of the same ABI, which carries the DTBs.
pub fn full_package(cloud: &str) -> Option<String> {
    let abi = cloud
        .strip_prefix("linux-image-")?
        .strip_suffix("-cloud-arm64")?;
    (!abi.is_empty()).then(|| format!("linux-image-{abi}-arm64-unsigned"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_package_of_the_cloud_one() {
        assert_eq!(
            full_package("linux-image-6.1.0-56-cloud-arm64").as_deref(),
            Some("linux-image-6.1.0-56-arm64-unsigned")
        );
        assert_eq!(full_package("linux-image-6.1.0-56-arm64"), None);
        assert_eq!(full_package("linux-image--cloud-arm64"), None);
    }

    /// The board table's console is the one each Debian tree names (read with the
    /// shim's own reader). Runs where `SHIM_BOARD_DTBS` is set, as `cargo xtask test`
    /// sets it.
    #[test]
    fn the_table_names_each_trees_console() {
        use shim_boards::Uart;
        use shim_common::fdt::{self, Fdt};
        let Some(dir) = std::env::var_os(ENV) else {
            eprintln!("{ENV} unset: board DTBs not checked (cargo xtask test sets it)");
            return;
        };
        for board in BOARDS {
            let Some(file) = board.debian_dtb else {
                continue;
            };
            let path = Path::new(&dir).join(file);
            let blob = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let console = fdt::stdout(&Fdt::new(&blob).unwrap()).unwrap().unwrap();
            let uart = match console.uart {
                fdt::Uart::Pl011 => Uart::Pl011,
                fdt::Uart::Ns16550 {
                    reg_shift,
                    reg_io_width,
                } => Uart::Ns16550 {
                    reg_shift,
                    reg_io_width,
                },
                fdt::Uart::Imx => Uart::Imx,
            };
            assert_eq!(
                (console.base, uart),
                (board.console.base, board.console.uart),
                "{}",
                board.name
            );
            let path_in_tree = blob
                .windows(board.console.stdout_path.unwrap().len() + 1)
                .any(|w| w[..w.len() - 1] == *board.console.stdout_path.unwrap().as_bytes());
            assert!(
                path_in_tree,
                "{}: no {:?}",
                board.name, board.console.stdout_path
            );
        }
    }

    #[test]
    fn the_test_reads_what_the_table_names() {
        // common/src/fdt/console.rs `the_boards_own_device_trees` opens these.
        let mut files: Vec<&str> = BOARDS.iter().filter_map(|b| b.debian_dtb).collect();
        files.sort();
        assert_eq!(
            files,
            [
                "broadcom/bcm2711-rpi-4-b.dtb",
                "freescale/imx8mp-evk.dtb",
                "rockchip/rk3399-rockpro64.dtb"
            ]
        );
    }
}
