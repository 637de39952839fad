//! `cargo xtask bench`: fetches Debian's arm64 Image, runs the criterion benchmarks of
//! shim-bench on it (`cargo bench -p shim-bench`), then prints every group as ratios of
//! the shim's own path, all from this one run (criterion's `new` estimates, which the
//! run rewrites; stale ones are removed first).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use clap::Args;
use shim_bench::{Group, GROUPS};

use crate::{cargo, exec, linux, target_dir};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Criterion's --quick: a rough figure in seconds rather than minutes.
    #[arg(long)]
    pub quick: bool,
    /// Build the benchmarks at this opt-level [default: the release profile's, the
    /// shim's own "s"]; 3 is what the other crates' users usually build with.
    #[arg(long, value_name = "LEVEL")]
    pub opt_level: Option<String>,
}

/// One benchmark's figures.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Measured {
    /// Mean time per iteration, ns.
    mean_ns: f64,
    /// Bytes per iteration, where the benchmark declared them.
    bytes: Option<u64>,
    /// Elements per iteration, where the benchmark declared them.
    elements: Option<u64>,
}

pub fn run(args: &BenchArgs) -> Result<()> {
    let image = linux::image()?;
    let home = target_dir().join("criterion");
    for group in GROUPS {
        let dir = home.join(group.name);
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
    }
    let mut cmd = cargo();
    cmd.args(["bench", "-p", "shim-bench", "--bench", "boot"])
        .env(shim_bench::IMAGE_ENV, &image)
        .env("CRITERION_HOME", &home);
    if let Some(level) = &args.opt_level {
        cmd.env("CARGO_PROFILE_BENCH_OPT_LEVEL", level);
    }
    if args.quick {
        cmd.args(["--", "--quick"]);
    }
    exec(&mut cmd)?;

    let mut results = HashMap::new();
    for group in GROUPS {
        for member in group.members {
            let dir = home.join(group.name).join(member).join("new");
            if let Some(m) = read_measured(&dir)? {
                results.insert((group.name, *member), m);
            }
        }
    }
    let level = args.opt_level.as_deref().unwrap_or("s (release profile)");
    println!(
        "\nopt-level {level}; image {} ({} bytes)",
        image.display(),
        fs::metadata(&image)?.len()
    );
    print!("{}", report(&GROUPS, &results));
    Ok(())
}

/// A benchmark's `estimates.json` and `benchmark.json`; `None` if it did not run (no
/// SHA extensions on this CPU).
fn read_measured(dir: &Path) -> Result<Option<Measured>> {
    let estimates = dir.join("estimates.json");
    if !estimates.exists() {
        return Ok(None);
    }
    let read = |path: &Path| -> Result<serde_json::Value> {
        let text = fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    };
    let benchmark = read(&dir.join("benchmark.json"))?;
    parse_measured(&read(&estimates)?, &benchmark)
        .with_context(|| format!("criterion's figures in {}", dir.display()))
        .map(Some)
}

fn parse_measured(
    estimates: &serde_json::Value,
    benchmark: &serde_json::Value,
) -> Result<Measured> {
    let mean_ns = estimates["mean"]["point_estimate"]
        .as_f64()
        .context("no mean.point_estimate")?;
    let throughput = &benchmark["throughput"];
    Ok(Measured {
        mean_ns,
        bytes: throughput["Bytes"].as_u64(),
        elements: throughput["Elements"].as_u64(),
    })
}

/// A time in the unit that suits it.
fn time(ns: f64) -> String {
    match ns {
        ns if ns >= 1e9 => format!("{:.2} s", ns / 1e9),
        ns if ns >= 1e6 => format!("{:.2} ms", ns / 1e6),
        ns if ns >= 1e3 => format!("{:.2} us", ns / 1e3),
        ns => format!("{ns:.0} ns"),
    }
}

/// Per group: each member's mean time, its rate, and its time as a ratio of the
/// group's first member (the shim's path).
fn report(groups: &[&Group], results: &HashMap<(&str, &str), Measured>) -> String {
    let mut out = String::new();
    for group in groups {
        let _ = writeln!(out, "\n{}: {}", group.name, group.what);
        let base = group
            .members
            .first()
            .and_then(|m| results.get(&(group.name, *m)));
        for member in group.members {
            let Some(m) = results.get(&(group.name, *member)) else {
                let _ = writeln!(out, "  {member:<18} (not run)");
                continue;
            };
            let secs = m.mean_ns / 1e9;
            let rate = match (m.bytes, m.elements) {
                (Some(b), _) => format!("{:.0} MB/s", b as f64 / secs / 1e6),
                (_, Some(e)) => format!("{:.0} M/s", e as f64 / secs / 1e6),
                _ => String::new(),
            };
            let ratio = match base {
                Some(b) => format!("{:.3}", m.mean_ns / b.mean_ns),
                None => "-".into(),
            };
            let _ = writeln!(
                out,
                "  {member:<18} {:>10}  {rate:>10}  x{ratio} of {}",
                time(m.mean_ns),
                group.members.first().copied().unwrap_or_default()
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_criterion_figures() {
        let estimates = serde_json::json!({
            "mean": {"confidence_interval": {}, "point_estimate": 2.5e7, "standard_error": 1.0},
            "median": {"point_estimate": 2.4e7}
        });
        let bytes = serde_json::json!({"group_id": "sha256", "throughput": {"Bytes": 1000}});
        assert_eq!(
            parse_measured(&estimates, &bytes).unwrap(),
            Measured {
                mean_ns: 2.5e7,
                bytes: Some(1000),
                elements: None
            }
        );
        let none = serde_json::json!({"throughput": null});
        assert_eq!(parse_measured(&estimates, &none).unwrap().bytes, None);
        assert!(parse_measured(&serde_json::json!({}), &none).is_err());
    }

    #[test]
    fn ratios_are_of_the_first_member() {
        let group = Group {
            name: "g",
            what: "test",
            members: &["shim", "fast", "absent"],
        };
        let m = |mean_ns| Measured {
            mean_ns,
            bytes: Some(1_000_000),
            elements: None,
        };
        let results = HashMap::from([(("g", "shim"), m(4e6)), (("g", "fast"), m(1e6))]);
        let text = report(&[&group], &results);
        assert!(text.contains("  shim                  4.00 ms    250 MB/s  x1.000 of shim\n"));
        assert!(text.contains("  fast                  1.00 ms   1000 MB/s  x0.250 of shim\n"));
        assert!(text.contains("absent             (not run)"));
    }
}
