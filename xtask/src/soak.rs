//! `cargo xtask soak --boots N`: boots the demo payload N times, spread over both
//! architectures and every loader, and prints one table: boots, failures, distinct
//! placements, and the wall time of each boot (QEMU start to its exit: emulation time,
//! min/median/max).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;

use crate::arch::Arch;
use crate::deps;
use crate::image::{self, BuildArgs};
use crate::qemu::{self, Expect, Loader, Machine, Summary};

#[derive(Args, Debug)]
pub struct SoakArgs {
    /// Boots in all, shared out over the configurations.
    #[arg(long, default_value_t = 200)]
    pub boots: u32,
    /// Seconds each boot may take.
    #[arg(long, default_value_t = 90)]
    pub timeout: u64,
}

/// One line of the table: an architecture, a loader, and the exception level.
struct Config {
    arch: Arch,
    loader: Loader,
    el2: bool,
}

const CONFIGS: &[Config] = &[
    Config {
        arch: Arch::Aarch64,
        loader: Loader::Direct,
        el2: false,
    },
    Config {
        arch: Arch::Aarch64,
        loader: Loader::Direct,
        el2: true,
    },
    Config {
        arch: Arch::Aarch64,
        loader: Loader::UBoot,
        el2: false,
    },
    Config {
        arch: Arch::X86_64,
        loader: Loader::Direct,
        el2: false,
    },
    Config {
        arch: Arch::X86_64,
        loader: Loader::Grub,
        el2: false,
    },
    Config {
        arch: Arch::X86_64,
        loader: Loader::Kexec,
        el2: false,
    },
];

/// `boots` shared out: the first `boots % n` configurations get one more.
fn share(boots: u32, n: usize) -> Vec<u32> {
    let n32 = n as u32;
    (0..n32)
        .map(|i| boots / n32 + u32::from(i < boots % n32))
        .collect()
}

/// Minimum, median and maximum.
fn spread(seconds: &[f64]) -> Option<(f64, f64, f64)> {
    let mut s = seconds.to_vec();
    s.sort_by(f64::total_cmp);
    Some((*s.first()?, *s.get(s.len() / 2)?, *s.last()?))
}

pub fn run(args: &SoakArgs) -> Result<()> {
    let mut rows: Vec<(String, Summary)> = Vec::new();
    let mut images: Vec<(Arch, PathBuf)> = Vec::new();
    for (config, boots) in CONFIGS.iter().zip(share(args.boots, CONFIGS.len())) {
        if boots == 0 {
            continue;
        }
        let target = config.arch.target();
        deps::ensure_qemu(target)?;
        let image = match images.iter().find(|(a, _)| *a == config.arch) {
            Some((_, path)) => path.clone(),
            None => {
                let path = image::build(&BuildArgs::demo(config.arch))?.path;
                images.push((config.arch, path.clone()));
                path
            }
        };
        let qemu = qemu::board_qemu(target.board)?;
        let machine = Machine {
            target,
            board: target.board,
            qemu,
            loader: config.loader,
            mem: "1G",
            smp: 1,
            el2: config.el2,
            append: "shim.verbose",
            cpu: qemu.cpu,
            machine_opts: "",
            dtb: None,
            boot_dtb: None,
            initrd: None,
            e820: None,
        };
        let summary = qemu::boot_many(
            &machine,
            &image,
            Expect::Ok,
            boots,
            Duration::from_secs(args.timeout),
        )?;
        let name = format!(
            "{} {:?}{}",
            target.name,
            config.loader,
            if config.el2 { " EL2" } else { "" }
        );
        rows.push((name, summary));
    }
    println!("{}", table(&rows));
    let failed: u32 = rows.iter().map(|(_, s)| s.failed).sum();
    if failed > 0 {
        bail!("{failed} boots failed");
    }
    Ok(())
}

/// The table, one row per configuration and a total.
fn table(rows: &[(String, Summary)]) -> String {
    let mut out = String::from(
        "| configuration | boots | failed | distinct pa | distinct (pa,va) | wall s min / median / max |\n|---|---|---|---|---|---|\n",
    );
    let mut all = Vec::new();
    let (mut boots, mut failed) = (0, 0);
    for (name, s) in rows {
        let times = match spread(&s.seconds) {
            Some((lo, mid, hi)) => format!("{lo:.2} / {mid:.2} / {hi:.2}"),
            None => "-".into(),
        };
        out.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {times} |\n",
            s.passed + s.failed,
            s.failed,
            s.pas.len(),
            s.pairs.len()
        ));
        all.extend(&s.seconds);
        boots += s.passed + s.failed;
        failed += s.failed;
    }
    let times = match spread(&all) {
        Some((lo, mid, hi)) => format!("{lo:.2} / {mid:.2} / {hi:.2}"),
        None => "-".into(),
    };
    out.push_str(&format!("| all | {boots} | {failed} | | | {times} |"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boots_are_shared_out_fully() {
        assert_eq!(share(200, 6), [34, 34, 33, 33, 33, 33]);
        assert_eq!(share(4, 6), [1, 1, 1, 1, 0, 0]);
        assert_eq!(share(200, 6).iter().sum::<u32>(), 200);
    }

    #[test]
    fn the_table_has_a_row_each_and_a_total() {
        let s = Summary {
            passed: 3,
            seconds: vec![1.0, 3.0, 2.0],
            ..Default::default()
        };
        let t = table(&[("aarch64 Direct".into(), s)]);
        assert!(
            t.contains("| aarch64 Direct | 3 | 0 | 0 | 0 | 1.00 / 2.00 / 3.00 |"),
            "{t}"
        );
        assert!(
            t.ends_with("| all | 3 | 0 | | | 1.00 / 2.00 / 3.00 |"),
            "{t}"
        );
    }
}
