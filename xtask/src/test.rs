//! `cargo xtask test`: the host tests, then the QEMU boot matrix of each architecture,
//! printing `case <name>: pass|FAIL` per case and `N passed, M failed` at the end.
//! The matrix is one table per architecture.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};

use crate::arch::Arch;
use crate::image::{self, BuildArgs};
use crate::qemu::{self, Expect, Loader, Machine, Summary};
use crate::{cargo, deps, exec};

#[derive(Args, Debug)]
pub struct TestArgs {
    /// Only the host tests (cargo test).
    #[arg(long, conflicts_with = "qemu_only")]
    pub host_only: bool,
    /// Only the QEMU boot matrix.
    #[arg(long)]
    pub qemu_only: bool,
    /// Only this architecture's matrix [default: all].
    #[arg(long, value_enum)]
    pub arch: Option<Arch>,
    /// Seconds each boot may take.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

/// What a case asks of its boots, beyond each passing its expectation.
#[derive(Clone, Copy, Debug)]
enum Check {
    /// Every boot reaches `payload: ok`.
    Ok,
    /// Every boot reaches `payload: ok` at one and the same (pa, va).
    SamePlacement,
    /// Every boot reaches `payload: ok`, with at least `pairs` distinct (pa, va) and
    /// `pas` distinct pa.
    Distinct { pairs: usize, pas: usize },
    /// The shim refuses a payload whose digest does not match.
    Refused,
    /// Every boot lands exactly here (a loader-chosen image offset).
    Placed { pa: u64, va: u64 },
    /// The shim stops every boot with a `shim: error:` line containing this.
    Error(&'static str),
}

/// One row of the boot matrix.
struct Case {
    name: &'static str,
    loader: Loader,
    mem: &'static str,
    el2: bool,
    append: &'static str,
    boots: u32,
    corrupt: bool,
    check: Check,
}

const fn case(name: &'static str, check: Check) -> Case {
    Case {
        name,
        loader: Loader::Direct,
        mem: "1G",
        el2: false,
        append: "shim.verbose",
        boots: 1,
        corrupt: false,
        check,
    }
}

const AARCH64_CASES: &[Case] = &[
    case("direct-el1-1g", Check::Ok),
    Case {
        el2: true,
        ..case("direct-el2-1g", Check::Ok)
    },
    Case {
        loader: Loader::UBoot,
        ..case("u-boot-booti-1g", Check::Ok)
    },
    Case {
        mem: "4G",
        ..case("direct-4g", Check::Ok)
    },
    Case {
        append: "shim.verbose nokaslr",
        boots: 3,
        ..case("nokaslr-3-boots", Check::SamePlacement)
    },
    // 4 GiB gives 2045 slots: two physical collisions in ten draws have odds near
    // 1 in 4000 (with 1 GiB's 509 slots, near 1 in 250).
    Case {
        boots: 10,
        mem: "4G",
        ..case("kaslr-10-boots", Check::Distinct { pairs: 9, pas: 9 })
    },
    Case {
        corrupt: true,
        ..case("corrupt-payload", Check::Refused)
    },
    // An image offset from the loader (x1, or shim.offset= for loaders that cannot set
    // registers): phys = DRAM base + offset, virt = PAGE_OFFSET + offset.
    Case {
        append: "shim.verbose shim.offset=0x10000000",
        ..case(
            "loader-offset",
            Check::Placed {
                pa: 0x5000_0000,
                va: 0xffff_0000_1000_0000,
            },
        )
    },
    // A misaligned offset is refused with a message; the shim chooses and still boots.
    Case {
        append: "shim.verbose shim.offset=0x10001000",
        ..case("bad-loader-offset", Check::Ok)
    },
    // mem= leaves 2 MiB beside the shim: no room to unpack, and one clear line.
    Case {
        append: "shim.verbose mem=0x40300000",
        ..case("no-room", Check::Error("cannot place payload"))
    },
    Case {
        append: "shim.verbose shim.bogus",
        ..case("unknown-shim-option", Check::Error("bad command line"))
    },
];

/// x86_64: the payload exits QEMU through isa-debug-exit (status 33 after `payload: ok`).
const X86_64_CASES: &[Case] = &[
    Case {
        mem: "512M",
        ..case("direct-512m", Check::Ok)
    },
    Case {
        mem: "3G",
        ..case("direct-3g", Check::Ok)
    },
    // RAM above 4 GiB (q35 keeps 2 GiB below the PCI hole): the identity map and the
    // slots reach it.
    Case {
        mem: "6G",
        ..case("direct-6g", Check::Ok)
    },
    Case {
        append: "shim.verbose nokaslr",
        boots: 3,
        ..case("nokaslr-3-boots", Check::SamePlacement)
    },
    // 3 GiB: 1534 slots, so two physical collisions in ten draws are rare.
    Case {
        boots: 10,
        mem: "3G",
        ..case("kaslr-10-boots", Check::Distinct { pairs: 9, pas: 9 })
    },
    Case {
        corrupt: true,
        ..case("corrupt-payload", Check::Refused)
    },
    // mem= leaves only the first 2 MiB, which the first MiB and the shim fill.
    Case {
        append: "shim.verbose mem=2M",
        ..case("no-room", Check::Error("cannot place payload"))
    },
    // GRUB's `linux` on i386-pc: the 32-bit entry with GRUB's boot_params and e820.
    Case {
        loader: Loader::Grub,
        ..case("grub-linux", Check::Ok)
    },
    // Debian's kexec-tools from a Debian kernel: the 64-bit entry.
    Case {
        loader: Loader::Kexec,
        ..case("kexec", Check::Ok)
    },
];

/// The matrix of each architecture.
fn matrix(arch: Arch) -> &'static [Case] {
    match arch {
        Arch::Aarch64 => AARCH64_CASES,
        Arch::X86_64 => X86_64_CASES,
    }
}

pub fn run(args: &TestArgs) -> Result<()> {
    let mut results: Vec<(String, bool)> = Vec::new();
    let mut record = |name: String, outcome: Result<()>| {
        let pass = match outcome {
            Ok(()) => true,
            Err(why) => {
                eprintln!("xtask: case {name}: {why:#}");
                false
            }
        };
        println!("case {name}: {}", if pass { "pass" } else { "FAIL" });
        results.push((name, pass));
    };

    if !args.qemu_only {
        let mut cmd = cargo();
        cmd.args(["test", "-p", "shim-common", "-p", "xtask"]);
        record("host-tests".into(), exec(&mut cmd));
    }
    if !args.host_only {
        let arches = match args.arch {
            Some(arch) => vec![arch],
            None => Arch::value_variants().to_vec(),
        };
        for arch in arches {
            let target = arch.target();
            if let Err(why) = deps::ensure_qemu(target) {
                record(format!("{}/deps", target.name), Err(why));
                continue;
            }
            // Each image is built once, for every case that boots it.
            let mut images: HashMap<bool, Result<PathBuf, String>> = HashMap::new();
            for case in matrix(arch) {
                let name = format!("{}/{}", target.name, case.name);
                eprintln!("\nxtask: ===== case {name} =====");
                let image = images.entry(case.corrupt).or_insert_with(|| {
                    let build = BuildArgs {
                        arch,
                        payload: None,
                        corrupt_payload: case.corrupt,
                        release: true,
                        debug: false,
                    };
                    image::build(&build).map_err(|e| format!("{e:#}"))
                });
                let outcome = match image {
                    Ok(image) => run_case(arch, case, image, Duration::from_secs(args.timeout)),
                    Err(why) => Err(anyhow::anyhow!("building the image failed: {why}")),
                };
                record(name, outcome);
            }
        }
    }

    let passed = results.iter().filter(|(_, pass)| *pass).count();
    let failed = results.len() - passed;
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        bail!("{failed} of {} cases failed", results.len());
    }
    Ok(())
}

fn run_case(arch: Arch, case: &Case, image: &Path, timeout: Duration) -> Result<()> {
    let machine = Machine {
        target: arch.target(),
        loader: case.loader,
        mem: case.mem,
        smp: 1,
        el2: case.el2,
        append: case.append,
    };
    let expect = match case.check {
        Check::Refused => Expect::DigestMismatch,
        Check::Error(_) => Expect::ShimError,
        _ => Expect::Ok,
    };
    let summary = qemu::boot_many(&machine, image, expect, case.boots, timeout)?;
    eprintln!("xtask: {}", summary.line());
    check(case.check, &summary)
}

/// Whether a case's boots, all judged already, meet its check.
fn check(check: Check, s: &Summary) -> Result<()> {
    if s.failed > 0 {
        bail!("{} of {} boots failed", s.failed, s.failed + s.passed);
    }
    match check {
        Check::Ok | Check::Refused => Ok(()),
        Check::Error(text) => {
            if s.errors.len() as u32 != s.passed || !s.errors.iter().all(|e| e.contains(text)) {
                bail!(
                    "expected `shim: error: ...{text}...` every boot, saw {:?}",
                    s.errors
                );
            }
            Ok(())
        }
        Check::Placed { pa, va } => {
            if s.pairs.iter().any(|&pair| pair != (pa, va)) {
                bail!("expected every boot at ({pa:#x},{va:#x}), saw {}", pairs(s));
            }
            Ok(())
        }
        Check::SamePlacement => {
            if s.pairs.len() != 1 {
                bail!(
                    "expected one placement, saw {} (pa,va) pairs: {}",
                    s.pairs.len(),
                    pairs(s)
                );
            }
            Ok(())
        }
        Check::Distinct {
            pairs: want_pairs,
            pas,
        } => {
            if s.pairs.len() < want_pairs || s.pas.len() < pas {
                bail!(
                    "expected at least {want_pairs} distinct (pa,va) pairs and {pas} distinct pa, \
                     saw {} and {}: {}",
                    s.pairs.len(),
                    s.pas.len(),
                    pairs(s)
                );
            }
            Ok(())
        }
    }
}

fn pairs(s: &Summary) -> String {
    s.pairs
        .iter()
        .map(|(pa, va)| format!("({pa:#x},{va:#x})"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(placements: &[(u64, u64)], failed: u32) -> Summary {
        let mut s = Summary {
            passed: placements.len() as u32,
            failed,
            ..Summary::default()
        };
        for &(pa, va) in placements {
            s.pairs.insert((pa, va));
            s.pas.insert(pa);
            s.vas.insert(va);
        }
        s
    }

    #[test]
    fn checks() {
        assert!(check(Check::Ok, &summary(&[(1, 2)], 0)).is_ok());
        assert!(check(Check::Ok, &summary(&[(1, 2)], 1)).is_err());
        assert!(check(Check::SamePlacement, &summary(&[(1, 2), (1, 2)], 0)).is_ok());
        assert!(check(Check::SamePlacement, &summary(&[(1, 2), (1, 3)], 0)).is_err());
        let distinct = Check::Distinct { pairs: 3, pas: 3 };
        assert!(check(distinct, &summary(&[(1, 1), (2, 1), (3, 1)], 0)).is_ok());
        assert!(check(distinct, &summary(&[(1, 1), (1, 2), (3, 3)], 0)).is_err());
    }

    #[test]
    fn matrix_names_are_unique() {
        for arch in Arch::value_variants() {
            let mut names: Vec<_> = matrix(*arch).iter().map(|c| c.name).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), matrix(*arch).len());
        }
    }
}
