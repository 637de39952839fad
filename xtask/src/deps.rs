//! Checks for the tools the build and the boots need (the Rust targets, QEMU, U-Boot)
//! and installs missing ones: rustup for what rust-toolchain.toml lists (toolchain.rs) and,
//! as root on Debian, apt-get (QEMU from bookworm-backports on bookworm).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::arch::{Arch, Target};
use crate::exec;

const BACKPORTS: &str = "bookworm-backports";
const BACKPORTS_SOURCE: &str = "/etc/apt/sources.list.d/bookworm-backports.sources";
const BACKPORTS_STANZA: &str = "Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";

#[derive(Args, Debug)]
pub struct DepsArgs {
    /// The architecture to build for.
    #[arg(long, value_enum, default_value = "aarch64")]
    pub arch: Arch,
}

pub fn run(args: &DepsArgs) -> Result<()> {
    let target = args.arch.target();
    ensure_toolchain(target)?;
    ensure_qemu(target)?;
    eprintln!("xtask: everything {} needs is installed", target.name);
    Ok(())
}

/// Makes sure the toolchain rust-toolchain.toml pins has every target and component
/// it lists (toolchain.rs), `target`'s among them.
pub fn ensure_toolchain(target: &Target) -> Result<()> {
    crate::toolchain::ensure()
        .with_context(|| format!("installing the toolchain for {}", target.rust_target))
}

/// Makes sure QEMU and the firmware for `target` are there; installs the missing
/// Debian packages as root, or fails printing the commands that would.
pub fn ensure_qemu(target: &Target) -> Result<()> {
    let missing = missing_packages(target);
    if missing.is_empty() {
        return Ok(());
    }
    let bookworm = os_codename().as_deref() == Some("bookworm");
    let steps = install_steps(target, &missing, bookworm, !backports_configured());
    let apt = on_path("apt-get").is_some();
    if !apt || !is_root() {
        let mut msg = format!("missing: {}", missing.join(", "));
        if apt {
            msg.push_str("\ninstall them as root with:");
            for step in &steps {
                msg.push_str("\n    ");
                msg.push_str(&step.shell(true));
            }
        }
        bail!(msg);
    }
    for step in &steps {
        step.perform()?;
    }
    let still = missing_packages(target);
    if !still.is_empty() {
        bail!("still missing after apt-get install: {}", still.join(", "));
    }
    Ok(())
}

/// The Debian packages whose files `target` needs and are not there.
fn missing_packages(target: &Target) -> Vec<&'static str> {
    let mut missing = Vec::new();
    if on_path(target.qemu).is_none() {
        missing.push(target.qemu_package);
    }
    if !Path::new(target.firmware.bios).exists() {
        missing.push(target.firmware_package);
    }
    missing
}

/// One installation step.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Write an apt source file.
    Write {
        path: &'static str,
        text: &'static str,
    },
    /// Run apt-get with these arguments.
    AptGet(Vec<String>),
}

impl Step {
    fn shell(&self, sudo: bool) -> String {
        let sudo = if sudo { "sudo " } else { "" };
        match self {
            Step::Write { path, text } => {
                format!("printf '%s' '{text}' | {sudo}tee {path} >/dev/null")
            }
            Step::AptGet(args) => {
                format!(
                    "{sudo}env DEBIAN_FRONTEND=noninteractive apt-get {}",
                    args.join(" ")
                )
            }
        }
    }

    fn perform(&self) -> Result<()> {
        match self {
            Step::Write { path, text } => {
                eprintln!("xtask: writing {path}");
                fs::write(path, text).with_context(|| format!("writing {path}"))
            }
            Step::AptGet(args) => exec(
                Command::new("apt-get")
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .args(args),
            ),
        }
    }
}

/// The steps that install `missing`: QEMU comes from bookworm-backports on bookworm
/// (its own QEMU is too old), adding that suite to apt's sources if need be.
fn install_steps(
    target: &Target,
    missing: &[&str],
    bookworm: bool,
    add_backports: bool,
) -> Vec<Step> {
    let apt = |args: &[&str]| Step::AptGet(args.iter().map(|s| s.to_string()).collect());
    let mut steps = Vec::new();
    let backport_qemu = bookworm && missing.contains(&target.qemu_package);
    if backport_qemu && add_backports {
        steps.push(Step::Write {
            path: BACKPORTS_SOURCE,
            text: BACKPORTS_STANZA,
        });
    }
    steps.push(apt(&["update"]));
    for &package in missing {
        if backport_qemu && package == target.qemu_package {
            steps.push(apt(&["install", "-y", "-t", BACKPORTS, package]));
        } else {
            steps.push(apt(&["install", "-y", package]));
        }
    }
    steps
}

/// Whether any apt source already names bookworm-backports.
fn backports_configured() -> bool {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        files.extend(dir.flatten().map(|e| e.path()));
    }
    files.iter().any(|f| {
        let is_source = matches!(
            f.extension().and_then(|e| e.to_str()),
            Some("list" | "sources")
        );
        is_source && fs::read_to_string(f).is_ok_and(|text| text.contains(BACKPORTS))
    })
}

/// `VERSION_CODENAME` from /etc/os-release.
fn os_codename() -> Option<String> {
    let text = fs::read_to_string("/etc/os-release").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
}

/// Whether this process runs with effective uid 0.
pub fn is_root() -> bool {
    // The `Uid:` line lists the real, effective, saved and filesystem uids.
    fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|uids| uids.split_whitespace().nth(1).map(|euid| euid == "0"))
            .unwrap_or(false)
    })
}

/// The full path of an executable found on `$PATH`.
pub fn on_path(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Host tools a loader needs (GRUB's `grub-mkrescue`, Debian's kexec-tools): each
/// `(package, file)` whose file is missing gets its Debian package installed as root,
/// or the exact command is printed.
pub fn ensure_host_packages(wanted: &[(&'static str, &str)]) -> Result<()> {
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(_, file)| !Path::new(file).exists())
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut install = vec!["install", "-y"];
    install.extend(&missing);
    let steps = [
        Step::AptGet(vec!["update".into()]),
        Step::AptGet(install.iter().map(|s| s.to_string()).collect()),
    ];
    if on_path("apt-get").is_none() || !is_root() {
        let commands: Vec<String> = steps.iter().map(|s| s.shell(true)).collect();
        bail!(
            "missing: {}\ninstall them as root with:\n    {}",
            missing.join(", "),
            commands.join("\n    ")
        );
    }
    for step in &steps {
        step.perform()?;
    }
    Ok(())
}

/// Says which package `apt-get download <package>` is about to fetch and how big it
/// is, from `apt-get download --print-uris` (apt's own progress follows).
pub fn announce_download(package: &str) {
    let uris = crate::capture(Command::new("apt-get").args(["download", "--print-uris", package]));
    match uris.ok().as_deref().and_then(download_size) {
        Some((file, size)) => {
            eprintln!("xtask: downloading {package}: {file}, {}", human_size(size))
        }
        None => eprintln!("xtask: downloading {package} (size unknown)"),
    }
}

/// The file name and size from `apt-get download --print-uris` output: a line
/// `'URI' FILE SIZE HASH`.
fn download_size(out: &str) -> Option<(String, u64)> {
    out.lines().find_map(|line| {
        let mut words = line.rsplit(' ');
        let _hash = words.next()?;
        let size = words.next()?.parse().ok()?;
        let file = words.next()?.to_string();
        line.starts_with('\'').then_some((file, size))
    })
}

/// Bytes for people: `812.3 KiB`, `64.1 MiB`.
pub fn human_size(bytes: u64) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::AARCH64;

    fn shell(steps: &[Step]) -> Vec<String> {
        steps.iter().map(|s| s.shell(false)).collect()
    }

    #[test]
    fn bookworm_installs_qemu_from_backports() {
        let steps = install_steps(&AARCH64, &["qemu-system-arm", "u-boot-qemu"], true, true);
        assert_eq!(
            steps[0],
            Step::Write {
                path: BACKPORTS_SOURCE,
                text: BACKPORTS_STANZA
            }
        );
        assert_eq!(
            shell(&steps[1..]),
            [
                "env DEBIAN_FRONTEND=noninteractive apt-get update",
                "env DEBIAN_FRONTEND=noninteractive apt-get install -y -t bookworm-backports qemu-system-arm",
                "env DEBIAN_FRONTEND=noninteractive apt-get install -y u-boot-qemu",
            ]
        );
    }

    #[test]
    fn existing_backports_source_is_kept() {
        let steps = install_steps(&AARCH64, &["qemu-system-arm"], true, false);
        assert_eq!(steps.len(), 2);
        assert!(matches!(&steps[1], Step::AptGet(a) if a.contains(&"-t".to_string())));
    }

    #[test]
    fn firmware_alone_or_other_releases_need_no_backports() {
        let steps = install_steps(&AARCH64, &["u-boot-qemu"], true, true);
        assert_eq!(
            shell(&steps),
            [
                "env DEBIAN_FRONTEND=noninteractive apt-get update",
                "env DEBIAN_FRONTEND=noninteractive apt-get install -y u-boot-qemu",
            ]
        );
        let steps = install_steps(&AARCH64, &["qemu-system-arm"], false, true);
        assert_eq!(steps.len(), 2);
    }

    #[test]
    fn download_sizes() {
        let out = "'http://deb.example/pool/main/b/busybox/busybox-static_1.35.0-4_amd64.deb' \
                   busybox-static_1%3a1.35.0-4_amd64.deb 928188 SHA256:3d3f\n";
        assert_eq!(
            download_size(out),
            Some(("busybox-static_1%3a1.35.0-4_amd64.deb".into(), 928_188))
        );
        assert_eq!(download_size("E: Unable to locate package x\n"), None);
        assert_eq!(human_size(928_188), "906.4 KiB");
        assert_eq!(human_size(68_000_000), "64.8 MiB");
        assert_eq!(human_size(512), "512 bytes");
    }

    #[test]
    fn stanza_is_deb822() {
        for key in [
            "Types: deb",
            "URIs: ",
            "Suites: bookworm-backports",
            "Components: main",
            "Signed-By: ",
        ] {
            assert!(
                BACKPORTS_STANZA.lines().any(|l| l.starts_with(key)),
                "{key}"
            );
        }
    }
}
