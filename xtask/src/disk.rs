//! A boot medium for U-Boot in QEMU: a disk image with an MBR and one bootable FAT32
//! partition (made by mtools' `mformat` and filled by `mcopy`, no loop devices) holding
//! the files `cargo xtask pack` wrote, so that U-Boot's own distro boot finds boot.scr
//! and runs it, as it would on a board's SD card. `mbr` is pure and unit-tested.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::{deps, exec};

const SECTOR: u64 = 512;
/// The partition starts at 1 MiB, as partitioning tools place it.
const FIRST_LBA: u64 = 2048;
/// mformat makes FAT32 from about 32 MiB on; 64 MiB leaves room.
const MIN_PARTITION: u64 = 64 << 20;
/// MBR partition type: FAT32 with LBA addressing.
const FAT32_LBA: u8 = 0x0c;

/// The MBR: one bootable (active) partition of `sectors` from `first_lba`, the other
/// three entries empty. CHS fields hold the "use LBA" values (0xfe, 0xff, 0xff).
pub fn mbr(first_lba: u32, sectors: u32, kind: u8) -> [u8; 512] {
    let mut mbr = [0u8; 512];
    let entry = &mut mbr[446..462];
    entry[0] = 0x80;
    entry[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
    entry[4] = kind;
    entry[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    entry[8..12].copy_from_slice(&first_lba.to_le_bytes());
    entry[12..16].copy_from_slice(&sectors.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    mbr
}

/// The partition size for `bytes` of files: room for FAT's overhead, whole MiB, at
/// least `MIN_PARTITION`.
pub fn partition_size(bytes: u64) -> u64 {
    let want = bytes + bytes / 8 + (8 << 20);
    want.next_multiple_of(1 << 20).max(MIN_PARTITION)
}

/// The disk's and the partition's sizes for `bytes` of files; an SD card's size is a
/// power of two (QEMU refuses others).
pub fn sizes(bytes: u64, power_of_two: bool) -> (u64, u64) {
    let start = FIRST_LBA * SECTOR;
    let part = partition_size(bytes);
    match power_of_two {
        false => (start + part, part),
        true => {
            let disk = (start + part).next_power_of_two();
            (disk, disk - start)
        }
    }
}

/// Writes `out`: a sparse disk image whose one FAT32 partition holds `files` in its
/// root directory, under their own names; its size a power of two for an SD card.
pub fn fat(files: &[PathBuf], label: &str, out: &Path, power_of_two: bool) -> Result<()> {
    deps::ensure_host_packages(&[("mtools", "/usr/bin/mformat")])?;
    let mut bytes = 0;
    for f in files {
        bytes += fs::metadata(f)
            .with_context(|| format!("{}", f.display()))?
            .len();
    }
    let (disk, part) = sizes(bytes, power_of_two);
    let sectors = part / SECTOR;
    let _ = fs::remove_file(out);
    let file = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    file.set_len(disk)?;
    drop(file);
    let table = mbr(FIRST_LBA as u32, sectors as u32, FAT32_LBA);
    {
        use std::io::Write;
        let mut f = fs::OpenOptions::new().write(true).open(out)?;
        f.write_all(&table)?;
    }
    // mtools addresses the partition as `image@@offset`.
    let at = format!("{}@@{}", out.display(), FIRST_LBA * SECTOR);
    exec(
        Command::new("mformat")
            .args(["-i", &at, "-F", "-v", label])
            .args(["-H", &FIRST_LBA.to_string(), "-T", &sectors.to_string()])
            .args(["-h", "64", "-s", "32", "::"]),
    )?;
    exec(
        Command::new("mcopy")
            .args(["-i", &at])
            .args(files)
            .arg("::/"),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bootable_partition() {
        let m = mbr(2048, 131_072, FAT32_LBA);
        assert_eq!(&m[510..], [0x55, 0xaa]);
        assert_eq!(m[446], 0x80);
        assert_eq!(m[450], 0x0c);
        assert_eq!(u32::from_le_bytes(m[454..458].try_into().unwrap()), 2048);
        assert_eq!(u32::from_le_bytes(m[458..462].try_into().unwrap()), 131_072);
        // The other three entries and the boot code are empty.
        assert!(m[462..510].iter().all(|&b| b == 0));
        assert!(m[..446].iter().all(|&b| b == 0));
    }

    #[test]
    fn disk_and_partition_sizes() {
        assert_eq!(partition_size(0), 64 << 20);
        assert_eq!(partition_size(1 << 20), 64 << 20);
        // A Linux payload and its initramfs: 80 MiB + 10 + 8, in whole MiB.
        assert_eq!(partition_size(80 << 20), 98 << 20);
        assert_eq!(partition_size((80 << 20) + 1) % (1 << 20), 0);
        assert_eq!(sizes(0, false), (65 << 20, 64 << 20));
        // An SD card: 128 MiB, the partition from 1 MiB to the end.
        assert_eq!(sizes(0, true), (128 << 20, 127 << 20));
        assert_eq!(sizes(80 << 20, true), (128 << 20, 127 << 20));
        assert_eq!(sizes(120 << 20, true), (256 << 20, 255 << 20));
    }
}
