//! Real Linux inputs for the arm64 Linux boot cases, written by nobody here: Debian's
//! cloud arm64 kernel, as its raw `Image` and as `Image.gz` made by Debian's own
//! `gzip -9 -n`, and an initramfs around Debian's static arm64 busybox whose /init
//! prints what the judge checks (`linux-test: ...` lines, see `INIT`) and powers off.
//! The packages come from `apt-get download` (arm64 as a foreign architecture) and are
//! cached under `target/xtask/linux-arm64/`. `data`, `initramfs` and the apt output
//! parsing are pure and unit-tested.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context, Result};
use sha2::{Digest, Sha256};

use crate::cpio::Cpio;
use crate::image::{self, PayloadKind};
use crate::{capture, deb, deps, exec, target_dir};

/// The metapackage that names Debian's current cloud kernel for arm64.
pub const KERNEL_METAPACKAGE: &str = "linux-image-cloud-arm64";
const BUSYBOX_PACKAGE: &str = "busybox-static";
pub const ARCH: &str = "arm64";
/// The size of /data.bin, whose SHA-256 /init prints.
pub const DATA_LEN: usize = 256 * 1024;

/// The kernel command line the Linux cases start from: the PL011 console, and a panic
/// reboots at once, which ends QEMU (`-no-reboot`) so a broken boot fails fast.
pub const APPEND: &str = "console=ttyAMA0 shim.verbose panic=-1";
/// The same for x86_64, on the first 16550 (COM1); with the early console too, where
/// the kernel says "Memory KASLR using ..." exactly when KASLR_FLAG let it randomize
/// its memory regions (arch/x86/lib/kaslr.c prints it through debug_putstr).
pub const X86_APPEND: &str = "console=ttyS0 earlyprintk=serial shim.verbose panic=-1";

/// The test initramfs's /init. Every line the judge reads starts with `linux-test: `;
/// `poweroff -f` is PSCI SYSTEM_OFF, which ends QEMU with status 0.
const INIT: &str = r#"#!/bin/sh
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "linux-test: start $(uname -r) $(uname -m)"
echo "linux-test: cmdline $(cat /proc/cmdline)"
sed 's/^/linux-test: iomem /' /proc/iomem
echo "linux-test: text $(grep -m 1 ' _stext$' /proc/kallsyms | cut -d ' ' -f 1)"
echo "linux-test: sha256 $(sha256sum /data.bin | cut -d ' ' -f 1)"
[ -x /bin/rdtsc ] && echo "linux-test: tsc $(/bin/rdtsc | od -An -tu8 | tr -d ' ')"
echo "linux-test: uptime $(cut -d ' ' -f 1 /proc/uptime)"
echo "linux-test: done"
poweroff -f
echo "linux-test: FAIL poweroff -f returned"
"#;

/// The cached inputs.
#[derive(Debug)]
pub struct Inputs {
    /// The raw arm64 Image.
    pub image: PathBuf,
    /// The same Image compressed by `gzip -9 -n`.
    pub image_gz: PathBuf,
    /// The test initramfs (newc cpio, uncompressed).
    pub initrd: PathBuf,
}

/// The directory everything is cached in.
pub fn dir() -> PathBuf {
    target_dir().join("xtask").join("linux-arm64")
}

/// Downloads (once) and builds the inputs; the initramfs is rebuilt every time.
pub fn inputs() -> Result<Inputs> {
    let dir = dir();
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (image, image_gz, kernel_package) = kernel(&dir)?;
    let (busybox, busybox_package) = busybox(&dir)?;
    let initrd = dir.join("initrd.cpio");
    let cpio = initramfs(&read(&busybox)?, &[]);
    fs::write(&initrd, cpio).with_context(|| format!("writing {}", initrd.display()))?;
    eprintln!(
        "xtask: Linux inputs: {kernel_package}, {busybox_package}; {}",
        dir.display()
    );
    Ok(Inputs {
        image,
        image_gz,
        initrd,
    })
}

/// The x86_64 Linux inputs: Debian's cloud amd64 bzImage (linux_x86.rs) as `image`
/// (there is no separately compressed form: `image_gz` is the same file) and the test
/// initramfs around Debian's static amd64 busybox, cached in the same directory.
pub fn x86_inputs() -> Result<Inputs> {
    let dir = crate::linux_x86::inputs()?;
    let (busybox, busybox_package) = busybox_for(&dir, crate::linux_x86::ARCH, 62)?;
    let initrd = dir.join("initrd.cpio");
    let cpio = initramfs(&read(&busybox)?, &[("/bin/rdtsc", &rdtsc_elf())]);
    fs::write(&initrd, cpio).with_context(|| format!("writing {}", initrd.display()))?;
    eprintln!(
        "xtask: x86_64 Linux inputs: {busybox_package}; {}",
        dir.display()
    );
    let image = dir.join("bzImage");
    Ok(Inputs {
        image_gz: image.clone(),
        image,
        initrd,
    })
}

/// /data.bin: 256 KiB of SHA-256 in counter mode over a fixed label, so xtask knows
/// its digest without keeping a copy.
pub fn data() -> Vec<u8> {
    let mut out = Vec::with_capacity(DATA_LEN);
    let mut counter = 0u64;
    while out.len() < DATA_LEN {
        let mut h = Sha256::new();
        h.update(b"shim linux-test data.bin");
        h.update(counter.to_le_bytes());
        out.extend_from_slice(&h.finalize());
        counter += 1;
    }
    out.truncate(DATA_LEN);
    out
}

/// The SHA-256 of `data()` in lowercase hex, as `sha256sum` prints it.
pub fn data_sha256() -> String {
    hex(&Sha256::digest(data()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// x86_64 Linux: a static ELF that writes the TSC's 8 bytes to stdout and exits. Under
/// QEMU's `-icount shift=0` the TSC counts guest nanoseconds since reset, so /init's
/// `linux-test: tsc` line is the time from QEMU's start to userspace, shim included.
pub fn rdtsc_elf() -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    const CODE_AT: u64 = 64 + 56;
    #[rustfmt::skip]
    let code: &[u8] = &[
        0x0f, 0x31,                         // rdtsc
        0x48, 0xc1, 0xe2, 0x20,             // shl rdx, 32
        0x48, 0x09, 0xd0,                   // or rax, rdx
        0x50,                               // push rax
        0x48, 0x89, 0xe6,                   // mov rsi, rsp
        0xba, 0x08, 0x00, 0x00, 0x00,       // mov edx, 8
        0xbf, 0x01, 0x00, 0x00, 0x00,       // mov edi, 1 (stdout)
        0xb8, 0x01, 0x00, 0x00, 0x00,       // mov eax, 1 (write)
        0x0f, 0x05,                         // syscall
        0xb8, 0x3c, 0x00, 0x00, 0x00,       // mov eax, 60 (exit)
        0x31, 0xff,                         // xor edi, edi
        0x0f, 0x05,                         // syscall
    ];
    let mut elf = Vec::new();
    elf.extend(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0"); // ELF64, LE, SysV
    elf.extend(2u16.to_le_bytes()); // ET_EXEC
    elf.extend(62u16.to_le_bytes()); // EM_X86_64
    elf.extend(1u32.to_le_bytes());
    elf.extend((BASE + CODE_AT).to_le_bytes()); // e_entry
    elf.extend(64u64.to_le_bytes()); // e_phoff
    elf.extend(0u64.to_le_bytes()); // e_shoff
    elf.extend(0u32.to_le_bytes());
    for half in [64u16, 56, 1, 0, 0, 0] {
        elf.extend(half.to_le_bytes()); // ehsize, phentsize, phnum, shentsize, shnum, shstrndx
    }
    let size = CODE_AT + code.len() as u64;
    elf.extend(1u32.to_le_bytes()); // PT_LOAD
    elf.extend(5u32.to_le_bytes()); // R+X
    for word in [0, BASE, BASE, size, size, 0x1000] {
        elf.extend(word.to_le_bytes()); // offset, vaddr, paddr, filesz, memsz, align
    }
    elf.extend(code);
    elf
}

/// The initramfs: busybox (with /bin/sh), the device node the kernel opens as init's
/// console, the mount points, /init, /data.bin and the `extra` executables.
pub fn initramfs(busybox: &[u8], extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut cpio = Cpio::default();
    for d in ["/bin", "/sbin", "/dev", "/proc", "/sys", "/tmp"] {
        cpio.dir(d);
    }
    cpio.char_device("/dev/console", 0o600, 5, 1);
    cpio.file("/bin/busybox", 0o755, busybox);
    cpio.symlink("/bin/sh", "busybox");
    cpio.file("/init", 0o755, INIT.as_bytes());
    cpio.file("/data.bin", 0o644, &data());
    for (path, bytes) in extra {
        cpio.file(path, 0o755, bytes);
    }
    cpio.finish()
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Debian's raw arm64 Image alone (downloaded once), for `cargo xtask bench`.
pub fn image() -> Result<PathBuf> {
    let dir = dir();
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (image, _, package) = kernel(&dir)?;
    eprintln!("xtask: Linux Image: {package}; {}", image.display());
    Ok(image)
}

/// The raw Image, the Image.gz and the package they came from, downloading and
/// unpacking the kernel package once.
fn kernel(dir: &Path) -> Result<(PathBuf, PathBuf, String)> {
    let image = dir.join("Image");
    let image_gz = dir.join("Image.gz");
    let stamp = dir.join("kernel-package");
    if image.exists() && image_gz.exists() {
        if let Ok(package) = fs::read_to_string(&stamp) {
            return Ok((image, image_gz, package.trim().to_string()));
        }
    }
    ensure_arm64_apt()?;
    let depends = capture(
        Command::new("apt-cache").args(["depends", &format!("{KERNEL_METAPACKAGE}:{ARCH}")]),
    )?;
    let package = kernel_package(&depends).with_context(|| {
        format!("`apt-cache depends {KERNEL_METAPACKAGE}:{ARCH}` names no linux-image package")
    })?;
    let (root, version) = download(dir, &package)?;
    let vmlinuz = fs::read_dir(root.join("boot"))
        .with_context(|| format!("reading {}/boot", root.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .with_context(|| format!("{package} has no /boot/vmlinuz-*"))?;
    let bytes = read(&vmlinuz)?;
    // Debian's arm64 vmlinuz is a raw Image (with its EFI stub: "MZ" at 0 and
    // "ARM\x64" at 0x38); older kernels or other builds may ship gzip or EFI zboot.
    let kind = image::detect(&bytes).with_context(|| format!("{}", vmlinuz.display()))?;
    let raw = match kind {
        PayloadKind::Arm64Image(_) => bytes,
        PayloadKind::Arm64ImageGz { .. } => {
            eprintln!(
                "xtask: {} is gzip-compressed; inflating it",
                vmlinuz.display()
            );
            image::gunzip(&bytes)?
        }
        other => bail!("{} is {other}, not a Linux arm64 Image", vmlinuz.display()),
    };
    eprintln!("xtask: {}: {kind}", vmlinuz.display());
    fs::write(&image, &raw).with_context(|| format!("writing {}", image.display()))?;
    gzip(&image, &image_gz)?;
    let label = format!("{package} {version}");
    fs::write(&stamp, &label)?;
    fs::remove_dir_all(dir.join("download"))?;
    Ok((image, image_gz, label))
}

/// `gzip -9 -n -c image > gz`, with Debian's gzip: an Image.gz as distributions make it.
fn gzip(image: &Path, gz: &Path) -> Result<()> {
    deps::ensure_host_packages(&[("gzip", "/bin/gzip")])?;
    let out = fs::File::create(gz).with_context(|| format!("creating {}", gz.display()))?;
    exec(
        Command::new("gzip")
            .args(["-9", "-n", "-c"])
            .arg(image)
            .stdout(Stdio::from(out)),
    )?;
    let kind = image::detect(&read(gz)?).with_context(|| format!("{}", gz.display()))?;
    ensure!(
        matches!(kind, PayloadKind::Arm64ImageGz { .. }),
        "{} is {kind}, not a gzipped arm64 Image",
        gz.display()
    );
    Ok(())
}

/// Debian's static arm64 busybox, downloaded once; its path and package.
fn busybox(dir: &Path) -> Result<(PathBuf, String)> {
    ensure_arm64_apt()?;
    busybox_for(dir, ARCH, 183)
}

/// Debian's static busybox for `arch` (ELF `machine`), downloaded once.
fn busybox_for(dir: &Path, arch: &str, machine: u16) -> Result<(PathBuf, String)> {
    let path = dir.join("busybox");
    let stamp = dir.join("busybox-package");
    if path.exists() {
        if let Ok(package) = fs::read_to_string(&stamp) {
            return Ok((path, package.trim().to_string()));
        }
    }
    let (root, version) = download_for(dir, BUSYBOX_PACKAGE, arch)?;
    let binary = root.join("bin/busybox");
    let bytes = read(&binary)?;
    check_static(&bytes, machine).with_context(|| format!("{}", binary.display()))?;
    fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    let label = format!("{BUSYBOX_PACKAGE} {version}");
    fs::write(&stamp, &label)?;
    fs::remove_dir_all(dir.join("download"))?;
    Ok((path, label))
}

/// The initramfs has no libraries: busybox must be an ELF64 for `machine` without
/// PT_INTERP.
fn check_static(elf: &[u8], machine: u16) -> Result<()> {
    const PT_INTERP: u32 = 3;
    let kind = image::detect(elf)?;
    ensure!(
        kind == PayloadKind::Elf64 { machine },
        "not an ELF64 file for machine {machine} but {kind}"
    );
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let phoff = elf
        .get(0x20..0x28)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
        .context("ELF header truncated")?;
    let (entsize, count) = (
        u16_at(0x36).context("ELF header truncated")?,
        u16_at(0x38).context("ELF header truncated")?,
    );
    for i in 0..usize::from(count) {
        let at = usize::try_from(phoff)
            .ok()
            .and_then(|off| off.checked_add(i * usize::from(entsize)))
            .context("program header table out of range")?;
        let kind = elf
            .get(at..at.saturating_add(4))
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes)
            .context("program header table truncated")?;
        ensure!(kind != PT_INTERP, "dynamically linked (has PT_INTERP)");
    }
    Ok(())
}

/// The kernel package `apt-cache depends <metapackage>:arm64` names, without `:arm64`.
pub fn kernel_package(depends: &str) -> Option<String> {
    depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .map(|p| p.trim().trim_start_matches('<').trim_end_matches('>'))
        .map(|p| p.strip_suffix(&format!(":{ARCH}")).unwrap_or(p))
        .find(|p| p.starts_with("linux-image-") && *p != KERNEL_METAPACKAGE)
        .map(String::from)
}

/// `apt-get download <package>:arm64` into a fresh `dir/download`, unpacked with
/// `dpkg-deb -x`; returns the unpacked tree and the package's version.
pub fn download(dir: &Path, package: &str) -> Result<(PathBuf, String)> {
    download_for(dir, package, ARCH)
}

/// `download` for Debian architecture `arch` (`arm64`, `amd64`).
fn download_for(dir: &Path, package: &str, arch: &str) -> Result<(PathBuf, String)> {
    let work = dir.join("download");
    let _ = fs::remove_dir_all(&work);
    let (deb, version) = deb::download(&work, package, arch)?;
    let root = work.join("root");
    deb::unpack(&deb, &root)?;
    fs::remove_file(&deb)?;
    Ok((root, version))
}

/// Makes sure apt knows arm64 packages: arm64 added as a foreign architecture and the
/// package lists updated, as root; otherwise fails printing the commands.
pub fn ensure_arm64_apt() -> Result<()> {
    let foreign = capture(Command::new("dpkg").arg("--print-foreign-architectures"))?;
    let added = foreign.lines().any(|l| l.trim() == ARCH);
    if added && candidate_known(BUSYBOX_PACKAGE)? {
        return Ok(());
    }
    let steps = arm64_apt_steps(added);
    if !deps::is_root() {
        bail!(
            "apt does not know {ARCH} packages yet; as root, run:\n    {}",
            steps
                .iter()
                .map(|s| format!("sudo {}", s.join(" ")))
                .collect::<Vec<_>>()
                .join("\n    ")
        );
    }
    for step in &steps {
        exec(Command::new(&step[0]).args(&step[1..]))?;
    }
    ensure!(
        candidate_known(BUSYBOX_PACKAGE)?,
        "apt still has no {BUSYBOX_PACKAGE}:{ARCH} after `apt-get update`"
    );
    Ok(())
}

/// The commands that make apt list arm64 packages.
fn arm64_apt_steps(added: bool) -> Vec<Vec<String>> {
    let mut steps = Vec::new();
    if !added {
        steps.push(vec![
            "dpkg".into(),
            "--add-architecture".into(),
            ARCH.into(),
        ]);
    }
    steps.push(vec!["apt-get".into(), "update".into()]);
    steps
}

/// Whether `apt-cache policy <package>:arm64` shows an installable version.
fn candidate_known(package: &str) -> Result<bool> {
    let policy = capture(Command::new("apt-cache").args(["policy", &format!("{package}:{ARCH}")]))?;
    Ok(has_candidate(&policy))
}

fn has_candidate(policy: &str) -> bool {
    policy
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Candidate:"))
        .any(|c| c.trim() != "(none)" && !c.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_deterministic() {
        let d = data();
        assert_eq!(d.len(), DATA_LEN);
        assert_eq!(d, data());
        assert_eq!(
            d[..32],
            Sha256::digest(b"shim linux-test data.bin\0\0\0\0\0\0\0\0")[..]
        );
        let digest = data_sha256();
        assert_eq!(digest.len(), 64);
        assert!(digest
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }

    #[test]
    fn initramfs_holds_what_init_needs() {
        let rdtsc = rdtsc_elf();
        assert!(check_static(&rdtsc, 62).is_ok());
        // On an x86_64 host it runs: eight bytes of a counter that moves.
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = std::env::temp_dir().join(format!("rdtsc-{}", std::process::id()));
            fs::write(&path, &rdtsc).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
            let read = || {
                let out = Command::new(&path).output().unwrap();
                assert!(out.status.success());
                u64::from_le_bytes(out.stdout.try_into().unwrap())
            };
            let (a, b) = (read(), read());
            fs::remove_file(&path).unwrap();
            assert!(b > a, "{a} then {b}");
        }
        let cpio = initramfs(b"\x7fELF fake busybox", &[]);
        let has = |s: &[u8]| cpio.windows(s.len()).any(|w| w == s);
        for name in [
            &b"init\0"[..],
            b"bin/busybox\0",
            b"bin/sh\0",
            b"dev/console\0",
            b"data.bin\0",
            b"TRAILER!!!\0",
        ] {
            assert!(has(name), "{}", String::from_utf8_lossy(name));
        }
        assert!(has(b"linux-test: done"));
        assert!(has(&data()[..64]));
        assert!(INIT.starts_with("#!/bin/sh\n"));
        assert!(INIT.contains("poweroff -f"));
    }

    #[test]
    fn apt_output() {
        let depends =
            "linux-image-cloud-arm64:arm64\n  Depends: linux-image-6.1.0-56-cloud-arm64:arm64\n";
        assert_eq!(
            kernel_package(depends).as_deref(),
            Some("linux-image-6.1.0-56-cloud-arm64")
        );
        assert_eq!(kernel_package("linux-image-cloud-arm64:arm64\n"), None);
        assert!(has_candidate(
            "busybox-static:arm64:\n  Installed: (none)\n  Candidate: 1:1.35.0-4+b1\n"
        ));
        assert!(!has_candidate(
            "busybox-static:arm64:\n  Installed: (none)\n  Candidate: (none)\n"
        ));
        assert!(!has_candidate(""));
        assert_eq!(
            arm64_apt_steps(false),
            [
                vec!["dpkg", "--add-architecture", "arm64"],
                vec!["apt-get", "update"]
            ]
        );
        assert_eq!(arm64_apt_steps(true), [vec!["apt-get", "update"]]);
    }

    #[test]
    fn static_check() {
        let mut elf = vec![0u8; 0x100];
        elf[..5].copy_from_slice(b"\x7fELF\x02");
        elf[18..20].copy_from_slice(&183u16.to_le_bytes());
        elf[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
        elf[0x40] = 1; // PT_LOAD
        elf[0x40 + 56] = 6; // PT_PHDR
        assert!(check_static(&elf, 183).is_ok());
        elf[0x40 + 56] = 3; // PT_INTERP
        assert!(check_static(&elf, 183).is_err());
        elf[18] = 62;
        assert!(check_static(&elf, 183).is_err());
        elf[18] = 183;
        elf[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(check_static(&elf, 183).is_err());
    }
}
