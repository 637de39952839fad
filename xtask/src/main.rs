//! `cargo xtask`: builds the shim image, boots it in QEMU and runs the test matrix.
//! This file holds the command line and the helpers every subcommand shares: the
//! workspace paths and running a child command after printing it.

mod arch;
mod bench;
mod bzimage;
mod console;
mod cpio;
mod deb;
mod deps;
mod disk;
mod dtbs;
mod firmware;
mod fuzz;
mod fuzz_seeds;
mod grub;
mod image;
mod inspect;
mod kexec;
mod linux;
mod linux_models;
mod linux_x86;
mod mca;
mod pack;
mod qemu;
mod residue;
mod simulate;
mod size;
mod soak;
mod test;
mod toolchain;

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Build, pack and boot the shim")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the shim and the payload and pack them into target/xtask/<arch>/shim.img.
    Build(image::BuildArgs),
    /// Build the image and boot it in QEMU, one or more times.
    Qemu(Box<qemu::QemuArgs>),
    /// Run the host tests, then the QEMU boot matrix.
    Test(test::TestArgs),
    /// Write a board's boot partition files for its U-Boot: the shim image and a
    /// boot.scr that boots it (or a FIT image and a boot.scr that bootm's it).
    Pack(pack::PackArgs),
    /// Check for (and, as root, install) QEMU, U-Boot and the Rust targets.
    Deps(deps::DepsArgs),
    /// Tell what an image or payload holds (headers, entry points, payload, digest)
    /// and whether it is valid.
    Inspect(inspect::InspectArgs),
    /// Run the shim's placement on a machine's memory map (a DTB or an e820 table),
    /// beside Linux's own rules, with a histogram of draws and an optional SVG.
    Simulate(simulate::SimulateArgs),
    /// Boot the demo payload many times over both arches and every loader and print
    /// boots, failures, distinct placements and boot times.
    Soak(soak::SoakArgs),
    /// Run every fuzz target (cargo +nightly fuzz run) from seeds made of real inputs,
    /// each asserting its invariants; print executions per second.
    Fuzz(fuzz::FuzzArgs),
    /// Run the criterion benchmarks (inflate, SHA-256, relocation, slot choice) on
    /// Debian's arm64 Image and print each as ratios of the shim's own path.
    Bench(bench::BenchArgs),
    /// Build the image and tell how big shim.bin is, by crate and module.
    Size(size::SizeArgs),
    /// Run llvm-mca's models of real cores (Cortex-A72, Skylake, ...) on one block of
    /// each SHA-256 block function in the built shim: cycles a block and a byte.
    Mca(mca::McaArgs),
}

fn main() -> ExitCode {
    match dispatch(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Cmd) -> Result<()> {
    match command {
        Cmd::Build(args) => {
            let built = image::build(&args)?;
            println!("{}", built.path.display());
            Ok(())
        }
        Cmd::Qemu(args) => qemu::run(&args),
        Cmd::Test(args) => test::run(&args),
        Cmd::Pack(args) => pack::run(&args),
        Cmd::Deps(args) => deps::run(&args),
        Cmd::Inspect(args) => inspect::run(&args),
        Cmd::Simulate(args) => simulate::run(&args),
        Cmd::Soak(args) => soak::run(&args),
        Cmd::Fuzz(args) => fuzz::run(&args),
        Cmd::Bench(args) => bench::run(&args),
        Cmd::Size(args) => size::run(&args),
        Cmd::Mca(args) => mca::run(&args),
    }
}

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` if set, else `<root>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// A `cargo` command: the cargo that runs xtask, started in the workspace root.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

/// The command line as a shell would take it, for printing.
pub fn display(cmd: &Command) -> String {
    let quote = |s: &OsStr| {
        let s = s.to_string_lossy();
        let plain = !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=,:+@%".contains(c));
        if plain {
            s.into_owned()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    };
    let envs = cmd.get_envs().filter_map(|(key, value)| {
        let value = value?;
        Some(format!("{}={}", key.to_string_lossy(), quote(value)))
    });
    let words = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(quote);
    envs.chain(words).collect::<Vec<_>>().join(" ")
}

/// Prints a command (to stderr, so stdout stays the result) before it runs.
pub fn announce(cmd: &Command) {
    eprintln!("$ {}", display(cmd));
}

/// Runs a command to completion; fails unless it exits with status 0.
pub fn exec(cmd: &mut Command) -> Result<()> {
    announce(cmd);
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {}", cmd.get_program().to_string_lossy()))?;
    if !status.success() {
        bail!("`{}` failed: {status}", display(cmd));
    }
    Ok(())
}

/// Runs a command and returns its stdout; fails unless it exits with status 0.
pub fn capture(cmd: &mut Command) -> Result<String> {
    announce(cmd);
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {}", cmd.get_program().to_string_lossy()))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}\n{}",
            display(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).context("command printed non-UTF-8 output")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's own checks of every subcommand (unique names, valid defaults), which it
    /// otherwise makes only when that subcommand is parsed.
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    use clap::CommandFactory;

    /// `cargo xtask <cmd> --help` shows a line for every option of every subcommand.
    #[test]
    fn every_option_has_help() {
        let cli = super::Cli::command();
        for sub in cli.get_subcommands() {
            assert!(sub.get_about().is_some(), "{} has no about", sub.get_name());
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" {
                    continue;
                }
                assert!(
                    arg.get_help().is_some() || arg.get_long_help().is_some(),
                    "cargo xtask {} --{id} has no help",
                    sub.get_name()
                );
            }
        }
    }
}
