//! The kexec loader for x86_64 boot tests: Debian's cloud kernel boots with an
//! initramfs whose /init runs Debian's kexec-tools on the shim (`kexec -l`, then
//! `kexec -e`), so the shim is entered at its 64-bit entry. Downloads are cached.
//! For the e820 fault cases /init first adds entries to /sys/firmware/memmap (a tmpfs
//! copy mounted over it), which kexec-tools turns into the shim's e820 table and, past
//! 128 entries, a SETUP_E820_EXT node.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cpio::Cpio;
use crate::{capture, deb, deps, target_dir};

/// The kernel and initramfs that kexec into an image.
pub struct Guest {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// The guest's kernel command line: serial console, quiet, power off on panic.
pub const GUEST_APPEND: &str = "console=ttyS0 quiet panic=-1";

const INIT: &str = r#"#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
if [ -f /memmap-extra ]; then
    mkdir /memmap
    cp -r /sys/firmware/memmap/. /memmap/
    mount -t tmpfs memmap /sys/firmware/memmap
    cp -r /memmap/. /sys/firmware/memmap/
    n=$(ls /sys/firmware/memmap | wc -l)
    while read start end type; do
        mkdir /sys/firmware/memmap/$n
        echo "$start" > /sys/firmware/memmap/$n/start
        echo "$end" > /sys/firmware/memmap/$n/end
        echo "$type" > /sys/firmware/memmap/$n/type
        n=$((n + 1))
    done < /memmap-extra
    echo "kexec: /sys/firmware/memmap now lists $n entries"
fi
echo "kexec: loading the shim with kexec-tools $(kexec --version 2>&1)"
initrd=""
[ -f /shim-initrd.img ] && initrd="--initrd=/shim-initrd.img"
if kexec -c -l /shim.img $initrd --append="$(cat /append)"; then
    echo "kexec: executing"
    kexec -e
fi
echo "kexec: FAIL could not load or execute the shim"
poweroff -f
"#;

/// Entries the guest adds to the firmware memory map before kexec-tools reads it.
/// Each adds a reserved 64 KiB hole at every 2 MiB boundary of [`E820Edit::holes`],
/// overlapping the RAM entry there: every 2 MiB-aligned slot in that span is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum E820Edit {
    /// 64 holes (74 entries or so, in the zero page), and a second RAM entry lying
    /// inside the first: overlaps of both kinds.
    Overlaps,
    /// 256 holes: the table overflows the zero page into a SETUP_E820_EXT node, and
    /// RAM splits into more ranges than the shim's map holds.
    Many,
}

impl E820Edit {
    /// The span the holes cover; the shim is told `mem=` its end, so the only free
    /// slots lie below it.
    pub fn holes(self) -> std::ops::Range<u64> {
        const MIB: u64 = 1 << 20;
        match self {
            E820Edit::Overlaps => 64 * MIB..192 * MIB,
            E820Edit::Many => 64 * MIB..576 * MIB,
        }
    }

    /// `(start, end inclusive, type)` as /sys/firmware/memmap spells them.
    pub fn entries(self) -> Vec<(u64, u64, &'static str)> {
        const HOLE: u64 = 64 << 10;
        let holes = self.holes();
        let mut entries: Vec<_> = (holes.start..holes.end)
            .step_by(2 << 20)
            .map(|at| (at, at + HOLE - 1, "reserved"))
            .collect();
        if self == E820Edit::Overlaps {
            entries.push((32 << 20, (48 << 20) - 1, "System RAM"));
        }
        entries
    }

    /// The file /init reads: one `start end type` line per entry.
    fn file(self) -> String {
        self.entries()
            .iter()
            .map(|(start, end, typ)| format!("{start:#018x} {end:#018x} {typ}\n"))
            .collect()
    }
}

/// Builds (or reuses) the guest kernel and an initramfs that kexecs `image` with
/// `append` as the shim's command line (and `initrd` as its initrd), after adding
/// `e820`'s entries to the firmware memory map.
pub fn guest(
    image: &Path,
    append: &str,
    initrd: Option<&Path>,
    e820: Option<E820Edit>,
) -> Result<Guest> {
    deps::ensure_host_packages(&[
        ("kexec-tools", "/sbin/kexec"),
        ("busybox-static", "/bin/busybox"),
    ])?;
    let dir = target_dir().join("xtask").join("kexec");
    fs::create_dir_all(&dir)?;
    let kernel = debian_kernel(&dir)?;

    let mut cpio = Cpio::default();
    for d in [
        "/bin",
        "/sbin",
        "/proc",
        "/sys",
        "/dev",
        "/lib",
        "/lib64",
        "/lib/x86_64-linux-gnu",
    ] {
        cpio.dir(d);
    }
    cpio.file("/bin/busybox", 0o755, &read("/bin/busybox")?);
    cpio.symlink("/bin/sh", "busybox");
    cpio.file("/sbin/kexec", 0o755, &read("/sbin/kexec")?);
    for lib in shared_libraries("/sbin/kexec")? {
        let name = lib.to_string_lossy();
        cpio.file(&name, 0o755, &read(&lib)?);
    }
    cpio.file("/init", 0o755, INIT.as_bytes());
    cpio.file("/append", 0o644, append.as_bytes());
    cpio.file("/shim.img", 0o644, &read(image)?);
    if let Some(initrd) = initrd {
        cpio.file("/shim-initrd.img", 0o644, &read(initrd)?);
    }
    if let Some(edit) = e820 {
        cpio.file("/memmap-extra", 0o644, edit.file().as_bytes());
    }
    let initrd = dir.join("initrd.cpio");
    fs::write(&initrd, cpio.finish())?;
    Ok(Guest { kernel, initrd })
}

fn read(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    let path = path.as_ref();
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// The libraries (and dynamic loader) `binary` needs, from `ldd`: the guest runs the
/// host's Debian binaries, so it gets the host's copies at the same paths.
fn shared_libraries(binary: &str) -> Result<Vec<PathBuf>> {
    let out = capture(Command::new("ldd").arg(binary))?;
    let mut libs = Vec::new();
    for line in out.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(path));
        }
    }
    if libs.is_empty() {
        bail!("ldd found no libraries for {binary}");
    }
    Ok(libs)
}

/// Debian's current cloud kernel for amd64 (`linux-image-cloud-amd64` names it),
/// downloaded with apt-get and unpacked once into `dir`.
fn debian_kernel(dir: &Path) -> Result<PathBuf> {
    let kernel = dir.join("vmlinuz");
    if kernel.exists() {
        return Ok(kernel);
    }
    let meta = crate::linux_x86::KERNEL_METAPACKAGE;
    let depends = capture(Command::new("apt-cache").args(["depends", meta]))?;
    let abi = crate::linux_x86::kernel_abi(&depends)
        .with_context(|| format!("apt-cache names no kernel for {meta} (run apt-get update?)"))?;
    let package = format!("linux-image-{abi}");
    let work = dir.join("download");
    let _ = fs::remove_dir_all(&work);
    let (deb, _) = deb::download(&work, &package, crate::linux_x86::ARCH)?;
    let root = work.join("root");
    deb::unpack(&deb, &root)?;
    let vmlinuz = fs::read_dir(root.join("boot"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .context("the kernel package has no /boot/vmlinuz-*")?;
    fs::copy(&vmlinuz, &kernel)?;
    fs::remove_dir_all(&work)?;
    Ok(kernel)
}

#[cfg(test)]
mod tests {
    /// Boots the guest kexec'ing Debian's own kernel: proves the guest side works.
    /// Slow and downloads a kernel: `cargo test -p xtask -- --ignored kexec_guest`.
    #[test]
    #[ignore]
    fn kexec_guest_runs_kexec_tools() {
        let dir = crate::target_dir().join("xtask").join("kexec");
        std::fs::create_dir_all(&dir).unwrap();
        let kernel = super::debian_kernel(&dir).unwrap();
        let copy = dir.join("self.img");
        std::fs::copy(&kernel, &copy).unwrap();
        let g = super::guest(&copy, "console=ttyS0 panic=-1", None, None).unwrap();
        assert!(g.initrd.exists());
    }
}
