//! `cargo xtask fuzz`: every libFuzzer target in `fuzz/` run with `cargo +nightly fuzz
//! run`, from seed corpora of real inputs (fuzz_seeds.rs), each ending in one line of
//! executions and executions per second. `cargo xtask test` runs a short pass of each.
//! Installs the nightly toolchain and cargo-fuzz when missing, as it installs the rest.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::{announce, display, exec, fuzz_seeds, target_dir, workspace_root};

/// Every target, as fuzz/Cargo.toml names its binaries and fuzz/src/checks/mod.rs its
/// checks (a test keeps the three lists equal).
pub const TARGETS: &[&str] = &[
    "fdt",
    "place",
    "elf",
    "container",
    "bootparams",
    "cmdline",
    "arm64_image",
    "x86_bzimage",
    "x86_vmlinux",
];

/// The toolchain cargo-fuzz needs (`-Zsanitizer`).
const NIGHTLY: &str = "nightly";

#[derive(Args, Debug)]
pub struct FuzzArgs {
    /// Seconds to fuzz each target.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Only this target (fdt, place, elf, container, bootparams, cmdline,
    /// arm64_image, x86_bzimage, x86_vmlinux); may be given more than once [default:
    /// all].
    #[arg(long = "target", value_name = "NAME")]
    pub targets: Vec<String>,
}

pub fn run(args: &FuzzArgs) -> Result<()> {
    let targets = selected(&args.targets)?;
    prepare(&targets)?;
    let mut failed = Vec::new();
    for &name in &targets {
        match run_target(name, args.seconds) {
            Ok(stats) => println!("fuzz/{name}: {stats}"),
            Err(why) => {
                eprintln!("xtask: fuzz/{name}: {why:#}");
                println!("fuzz/{name}: FAIL");
                failed.push(name);
            }
        }
    }
    if !failed.is_empty() {
        bail!("fuzz targets failed: {}", failed.join(", "));
    }
    Ok(())
}

/// The targets `names` asks for (all without names), refusing unknown ones.
pub fn selected(names: &[String]) -> Result<Vec<&'static str>> {
    if names.is_empty() {
        return Ok(TARGETS.to_vec());
    }
    names
        .iter()
        .map(|n| {
            TARGETS.iter().copied().find(|t| t == n).with_context(|| {
                format!("no fuzz target {n:?}; the targets: {}", TARGETS.join(", "))
            })
        })
        .collect()
}

/// Everything a run needs, once: the tools, the seed corpora, the built targets.
pub fn prepare(targets: &[&str]) -> Result<()> {
    ensure_tools()?;
    fuzz_seeds::write_all(targets)?;
    exec(cargo_fuzz().arg("build"))
}

/// `cargo +nightly fuzz`, started in fuzz/.
fn cargo_fuzz() -> Command {
    // The rustup proxy, not the cargo running xtask (which is the pinned toolchain's
    // own binary and does not take `+nightly`); the pinned channel's environment
    // must not leak into the nightly build.
    let mut cmd = Command::new("cargo");
    cmd.current_dir(workspace_root().join("fuzz"))
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .arg(format!("+{NIGHTLY}"))
        .arg("fuzz");
    cmd
}

/// Whether `cmd` runs and exits with status 0 (quietly).
fn works(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs the nightly toolchain and cargo-fuzz if either is missing.
fn ensure_tools() -> Result<()> {
    let nightly = || {
        let mut cmd = Command::new("rustup");
        cmd.env_remove("RUSTUP_TOOLCHAIN")
            .args(["run", NIGHTLY, "rustc", "--version"]);
        cmd
    };
    if !works(&mut nightly()) {
        eprintln!("xtask: cargo-fuzz needs a nightly toolchain; installing it");
        exec(Command::new("rustup").env_remove("RUSTUP_TOOLCHAIN").args([
            "toolchain",
            "install",
            NIGHTLY,
            "--profile",
            "minimal",
        ]))?;
    }
    if !works(cargo_fuzz().arg("--version")) {
        eprintln!("xtask: cargo-fuzz is missing; installing it");
        exec(Command::new("cargo").current_dir(workspace_root()).args([
            "install",
            "--locked",
            "cargo-fuzz",
        ]))?;
        if !works(cargo_fuzz().arg("--version")) {
            bail!(
                "`{}` still fails after installing",
                display(cargo_fuzz().arg("--version"))
            );
        }
    }
    Ok(())
}

/// Where a target's files go: the corpus it grows, its crash inputs and its log.
pub fn dir() -> PathBuf {
    target_dir().join("xtask").join("fuzz")
}

/// What one run did, from libFuzzer's final statistics.
#[derive(Debug, Default, PartialEq)]
pub struct Stats {
    pub runs: u64,
    pub per_second: u64,
    pub seconds: u64,
    pub corpus: usize,
    pub peak_rss_mb: u64,
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} runs in {} s ({} exec/s), corpus {} inputs, peak RSS {} MiB, no failure",
            self.runs, self.seconds, self.per_second, self.corpus, self.peak_rss_mb
        )
    }
}

/// Reads libFuzzer's `-print_final_stats=1` lines and its `Done N runs in S second(s)`.
pub fn parse_stats(log: &str) -> Stats {
    let mut stats = Stats::default();
    for line in log.lines() {
        let num = |s: &str| s.trim().parse::<u64>().unwrap_or(0);
        if let Some(v) = line.strip_prefix("stat::number_of_executed_units:") {
            stats.runs = num(v);
        } else if let Some(v) = line.strip_prefix("stat::average_exec_per_sec:") {
            stats.per_second = num(v);
        } else if let Some(v) = line.strip_prefix("stat::peak_rss_mb:") {
            stats.peak_rss_mb = num(v);
        } else if let Some(rest) = line.strip_prefix("Done ") {
            // "Done 1530874 runs in 41 second(s)"
            let words: Vec<&str> = rest.split_whitespace().collect();
            if let [runs, "runs", "in", secs, ..] = words.as_slice() {
                stats.runs = num(runs);
                stats.seconds = num(secs);
            }
        }
    }
    stats
}

/// Fuzzes `name` for `seconds` from its corpus and seeds; an error names every input
/// libFuzzer failed on, with the command that replays it.
pub fn run_target(name: &str, seconds: u64) -> Result<Stats> {
    let dir = dir();
    let corpus = dir.join("corpus").join(name);
    let artifacts = dir.join("artifacts").join(name);
    let seeds = fuzz_seeds::dir(name);
    for d in [&corpus, &artifacts] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let log_path = dir.join(format!("{name}.log"));
    let log =
        fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let started = SystemTime::now();
    let mut cmd = cargo_fuzz();
    cmd.args(["run", name])
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        // A single input taking this long is a finding too.
        .arg("-timeout=20")
        .arg("-print_final_stats=1")
        .stdout(log.try_clone()?)
        .stderr(log);
    announce(&cmd);
    eprintln!(
        "xtask: fuzz/{name}: {seconds} s, output in {}",
        log_path.display()
    );
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {}", display(&cmd)))?;
    let text = fs::read_to_string(&log_path).unwrap_or_default();
    let mut stats = parse_stats(&text);
    stats.corpus = fs::read_dir(&corpus).map(|d| d.count()).unwrap_or(0);
    if status.success() {
        return Ok(stats);
    }
    for line in failure_lines(&text) {
        eprintln!("xtask: fuzz/{name}: {line}");
    }
    let found = new_files(&artifacts, started);
    if found.is_empty() {
        bail!(
            "`{}` failed ({status}) without a crash input; see {}",
            display(&cmd),
            log_path.display()
        );
    }
    for file in &found {
        let hex = write_hex(name, file)?;
        eprintln!(
            "xtask: fuzz/{name}: input {}\n    replay: cd fuzz && cargo +{NIGHTLY} fuzz run {name} {}\n    keep it as a regression test: cp {} common/tests/data/fuzz/{name}/",
            file.display(),
            file.display(),
            hex.display()
        );
    }
    bail!("{} failing input(s) after {} runs", found.len(), stats.runs)
}

/// What libFuzzer's log says about a failure: the panic with its message (up to the
/// backtrace), and libFuzzer's error and summary lines.
fn failure_lines(log: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut in_panic = false;
    for line in log.lines() {
        if line.contains("panicked at") {
            in_panic = true;
        } else if line.starts_with("stack backtrace:") || line.starts_with("note: ") {
            in_panic = false;
        }
        if in_panic || line.contains("ERROR: libFuzzer") || line.starts_with("SUMMARY:") {
            out.push(line);
        }
    }
    out
}

/// The files in `dir` written since `since`, without the `.hex` copies.
fn new_files(dir: &Path, since: SystemTime) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since)
        })
        .map(|e| e.path())
        .filter(|p| p.extension().is_none_or(|e| e != "hex"))
        .collect();
    files.sort();
    files
}

/// Writes `file` as the `.hex` text common/tests/fuzz.rs replays, beside it.
fn write_hex(name: &str, file: &Path) -> Result<PathBuf> {
    let bytes = fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let hex = file.with_extension("hex");
    let file_name = file.file_name().unwrap_or_default().to_string_lossy();
    fs::write(&hex, to_hex(name, &file_name, &bytes))
        .with_context(|| format!("writing {}", hex.display()))?;
    Ok(hex)
}

/// Hex text, 32 bytes a line, under a comment to replace with what went wrong.
pub fn to_hex(target: &str, origin: &str, bytes: &[u8]) -> String {
    let mut text = format!(
        "# {target}: {origin} ({} bytes): say what it broke and where it was fixed\n",
        bytes.len()
    );
    for line in bytes.chunks(32) {
        for b in line {
            text.push_str(&format!("{b:02x}"));
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// fuzz/Cargo.toml builds exactly these targets and fuzz/src/checks/mod.rs checks
    /// exactly these, so none is left out of a run.
    #[test]
    fn every_target_is_run() {
        let root = workspace_root();
        let manifest = fs::read_to_string(root.join("fuzz/Cargo.toml")).unwrap();
        let mut bins: Vec<&str> = manifest
            .lines()
            .filter_map(|l| l.strip_prefix("name = \""))
            .filter_map(|l| l.strip_suffix('"'))
            .filter(|n| *n != "shim-fuzz")
            .collect();
        let checks = fs::read_to_string(root.join("fuzz/src/checks/mod.rs")).unwrap();
        let mut checked: Vec<&str> = checks
            .lines()
            .filter_map(|l| l.trim().strip_prefix("(\""))
            .filter_map(|l| l.split('"').next())
            .collect();
        let mut ours = TARGETS.to_vec();
        for list in [&mut bins, &mut checked, &mut ours] {
            list.sort_unstable();
        }
        assert_eq!(bins, ours, "fuzz/Cargo.toml [[bin]]s");
        assert_eq!(checked, ours, "fuzz/src/checks/mod.rs TARGETS");
        for name in TARGETS {
            assert!(root.join(format!("fuzz/fuzz_targets/{name}.rs")).is_file());
        }
    }

    #[test]
    fn reads_libfuzzer_statistics() {
        let log = "#1530874\tDONE   cov: 913 ft: 1993 corp: 368/23Kb exec/s: 37338 rss: 354Mb\n\
                   Done 1530874 runs in 41 second(s)\n\
                   stat::number_of_executed_units: 1530874\n\
                   stat::average_exec_per_sec:     37338\n\
                   stat::new_units_added:          12\n\
                   stat::slowest_unit_time_sec:    0\n\
                   stat::peak_rss_mb:              354\n";
        let stats = parse_stats(log);
        assert_eq!(
            stats,
            Stats {
                runs: 1530874,
                per_second: 37338,
                seconds: 41,
                corpus: 0,
                peak_rss_mb: 354
            }
        );
    }

    #[test]
    fn failures_are_told_with_their_message() {
        let log = "#1 INITED\nthread '<unnamed>' (1) panicked at src/checks/place.rs:206:13:\n\
                   kernel at 0x400000000 and initrd share no window\n\
                   stack backtrace:\n   0: rust_begin_unwind\n\
                   ==1== ERROR: libFuzzer: deadly signal\nSUMMARY: libFuzzer: deadly signal\n";
        assert_eq!(
            failure_lines(log),
            [
                "thread '<unnamed>' (1) panicked at src/checks/place.rs:206:13:",
                "kernel at 0x400000000 and initrd share no window",
                "==1== ERROR: libFuzzer: deadly signal",
                "SUMMARY: libFuzzer: deadly signal",
            ]
        );
    }

    #[test]
    fn unknown_targets_are_refused() {
        assert_eq!(selected(&[]).unwrap(), TARGETS);
        assert_eq!(selected(&["fdt".into()]).unwrap(), ["fdt"]);
        assert!(selected(&["fd".into()]).is_err());
    }

    #[test]
    fn hex_copies_read_back() {
        let text = to_hex("elf", "crash-1", &[0, 1, 0xab, 0xff]);
        assert!(text.starts_with("# elf: crash-1 (4 bytes)"));
        assert!(text.ends_with("0001abff\n"));
    }
}
