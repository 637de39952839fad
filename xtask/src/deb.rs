//! Debian packages as test inputs: `apt-get download` one package for one architecture
//! into a work directory, then unpack it whole (`dpkg-deb -x`) or take only the files
//! matching some patterns (`dpkg-deb --fsys-tarfile | tar -x --wildcards`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::{announce, capture, deps, exec};

/// `apt-get download <package>:<arch>` into `work`, saying first how big it is;
/// returns the .deb and the package's version.
pub fn download(work: &Path, package: &str, arch: &str) -> Result<(PathBuf, String)> {
    fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    let spec = format!("{package}:{arch}");
    deps::announce_download(&spec);
    exec(
        Command::new("apt-get")
            .args(["download", &spec])
            .current_dir(work),
    )?;
    let prefix = format!("{package}_");
    let deb = fs::read_dir(work)?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.extension().is_some_and(|e| e == "deb")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        })
        .with_context(|| format!("apt-get download {spec} left no .deb"))?;
    let version = capture(
        Command::new("dpkg-deb")
            .arg("--field")
            .arg(&deb)
            .arg("Version"),
    )?;
    Ok((deb, version.trim().to_string()))
}

/// The whole package under `root` (`dpkg-deb -x`).
pub fn unpack(deb: &Path, root: &Path) -> Result<()> {
    exec(Command::new("dpkg-deb").arg("-x").arg(deb).arg(root))
}

/// Only the package's files matching the tar `patterns` under `root`; fails if any
/// pattern matches nothing.
pub fn extract(deb: &Path, root: &Path, patterns: &[String]) -> Result<()> {
    fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let mut dpkg = Command::new("dpkg-deb");
    dpkg.arg("--fsys-tarfile").arg(deb).stdout(Stdio::piped());
    announce(&dpkg);
    let mut dpkg = dpkg.spawn().context("cannot start dpkg-deb")?;
    let stdout = dpkg.stdout.take().context("dpkg-deb has no stdout")?;
    let mut tar = Command::new("tar");
    tar.arg("-x")
        .arg("-C")
        .arg(root)
        .arg("--wildcards")
        .args(patterns)
        .stdin(Stdio::from(stdout));
    announce(&tar);
    let tar_status = tar.status().context("cannot start tar")?;
    let dpkg_status = dpkg.wait()?;
    if !dpkg_status.success() || !tar_status.success() {
        bail!(
            "extracting {} from {} failed (dpkg-deb: {dpkg_status}, tar: {tar_status})",
            patterns.join(" "),
            deb.display()
        );
    }
    Ok(())
}
