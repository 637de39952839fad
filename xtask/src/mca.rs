//! `cargo xtask mca`: what a real core makes of the shim's SHA-256 block functions,
//! which QEMU's `-icount` cannot tell (it counts instructions, not cycles). Takes one
//! block's instructions from the built shim and runs llvm-mca's model of each core on them.

use std::fmt::Write as _;
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::arch::Arch;
use crate::image::{self, BuildArgs};
use crate::{capture, deps};

#[derive(Args, Debug)]
pub struct McaArgs {
    /// Only this architecture [default: both].
    #[arg(long, value_enum)]
    pub arch: Option<Arch>,
}

/// A block function and the cores it is modelled on.
struct Function {
    arch: Arch,
    symbol: &'static str,
    /// How many times each inner loop runs for one block, as the assembly has it (the
    /// message schedule in three turns of four quads; the SHA-NI and ARMv8 code has none).
    inner_trips: u32,
    /// An instruction one block runs a known number of times, which checks the count:
    /// (text it contains, how many).
    per_block: (&'static str, usize),
    cpus: &'static [&'static str],
}

const FUNCTIONS: &[Function] = &[
    Function {
        arch: Arch::Aarch64,
        symbol: "shim_sha256_neon_blocks",
        inner_trips: 3,
        per_block: ("ldp\tw16, w17", 32), // W + K for two rounds
        // The Raspberry Pi 4's core, and the Pi 3's (in order).
        cpus: &["cortex-a72", "cortex-a53"],
    },
    Function {
        arch: Arch::Aarch64,
        symbol: "shim_sha256_armv8_blocks",
        inner_trips: 1,
        per_block: ("sha256h\t", 16), // four rounds
        cpus: &["cortex-a72", "neoverse-n1"],
    },
    Function {
        arch: Arch::X86_64,
        symbol: "shim_sha256_sse2_blocks",
        inner_trips: 3,
        per_block: ("(%rbp), %r", 64), // a round's W + K
        cpus: &["skylake", "znver3"],
    },
    Function {
        arch: Arch::X86_64,
        symbol: "shim_sha256_ni_blocks",
        inner_trips: 1,
        per_block: ("sha256rnds2", 32), // two rounds
        cpus: &["icelake-server", "znver3"],
    },
];

pub fn run(args: &McaArgs) -> Result<()> {
    let mca = deps::on_path("llvm-mca")
        .context("llvm-mca not found on $PATH (Debian: apt-get install llvm)")?;
    for arch in [Arch::Aarch64, Arch::X86_64] {
        if args.arch.is_some_and(|a| a != arch) {
            continue;
        }
        // The build adds the toolchain's components (llvm-tools among them) if missing.
        let built = image::build(&BuildArgs::demo(arch))?;
        let objdump = image::objcopy()?.with_file_name("llvm-objdump");
        for f in FUNCTIONS.iter().filter(|f| f.arch == arch) {
            let listing = capture(
                Command::new(&objdump)
                    .args(["-d", "--no-show-raw-insn"])
                    .arg(format!("--disassemble-symbols={}", f.symbol))
                    .arg(&built.shim_elf),
            )?;
            let block = one_block(&parse(&listing, comment(arch)), f.inner_trips)
                .with_context(|| format!("{}: no block loop found", f.symbol))?;
            let (text, expected) = f.per_block;
            let found = block.iter().filter(|i| i.contains(text)).count();
            if found != expected {
                bail!(
                    "{}: one block ran `{text}` {found} times, not {expected}: does its inner \
                     loop still run {} times?",
                    f.symbol,
                    f.inner_trips
                );
            }
            let source = target_dir_file(&format!("{}.s", f.symbol));
            std::fs::write(&source, block.join("\n") + "\n")?;
            for cpu in f.cpus {
                let triple = arch.target().name;
                let report = capture(
                    Command::new(&mca)
                        .arg(format!("-mtriple={triple}"))
                        .arg(format!("-mcpu={cpu}"))
                        .arg("-iterations=100")
                        .arg(&source),
                )?;
                println!("{}", summary(f.symbol, cpu, &report)?);
            }
        }
    }
    Ok(())
}

fn target_dir_file(name: &str) -> std::path::PathBuf {
    let dir = crate::target_dir().join("xtask").join("mca");
    let _ = std::fs::create_dir_all(&dir);
    dir.join(name)
}

/// What starts a comment in llvm-objdump's listing (`#` is an immediate on arm64).
fn comment(arch: Arch) -> &'static str {
    match arch {
        Arch::Aarch64 => "//",
        Arch::X86_64 => "#",
    }
}

/// `address: instruction` from llvm-objdump's listing, comments and symbol names cut.
fn parse(listing: &str, comment: &str) -> Vec<(u64, String)> {
    listing
        .lines()
        .filter_map(|line| {
            let (addr, text) = line.trim_start().split_once(':')?;
            let addr = u64::from_str_radix(addr, 16).ok()?;
            let text = text.split(comment).next()?;
            let text = text.split('<').next()?.trim();
            (!text.is_empty()).then(|| (addr, text.to_string()))
        })
        .collect()
}

/// The branch target of a conditional branch back (`b.ne 0x40`, `jne 0x40`), if this is one.
fn backward_target(addr: u64, text: &str) -> Option<u64> {
    let mut words = text.split_whitespace();
    let op = words.next()?;
    let conditional = op.starts_with("b.") || op.starts_with("cb") || op.starts_with('j');
    let target = u64::from_str_radix(words.next()?.trim_start_matches("0x"), 16).ok()?;
    (conditional && op != "jmp" && target < addr).then_some(target)
}

/// The instructions one block runs, in order: from the block loop's head (the target
/// of the function's last branch back) to that branch, each inner loop taken
/// `inner_trips` times; the branches themselves left out, as llvm-mca runs the list
/// as one loop.
fn one_block(code: &[(u64, String)], inner_trips: u32) -> Option<Vec<String>> {
    let (last, (outer_at, outer_text)) = code
        .iter()
        .enumerate()
        .rev()
        .find(|(_, (a, t))| backward_target(*a, t).is_some())?;
    let head = backward_target(*outer_at, outer_text)?;
    let mut i = code.iter().position(|(a, _)| *a == head)?;
    let mut out = Vec::new();
    let mut taken = 0;
    while i < last {
        let (addr, text) = &code[i];
        match backward_target(*addr, text) {
            Some(target) if taken + 1 < inner_trips => {
                taken += 1;
                i = code.iter().position(|(a, _)| *a == target)?;
            }
            Some(_) => {
                taken = 0;
                i += 1;
            }
            None => {
                out.push(text.clone());
                i += 1;
            }
        }
    }
    Some(out)
}

/// One line: the function, the core, cycles and instructions a block, and cycles a byte.
fn summary(symbol: &str, cpu: &str, report: &str) -> Result<String> {
    let field = |name: &str| -> Option<f64> {
        report
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    let (Some(iterations), Some(cycles), Some(instructions), Some(bound)) = (
        field("Iterations:"),
        field("Total Cycles:"),
        field("Instructions:"),
        field("Block RThroughput:"),
    ) else {
        bail!("llvm-mca's report has no totals:\n{report}");
    };
    let per_block = cycles / iterations;
    let mut out = String::new();
    let _ = write!(
        out,
        "{symbol} on {cpu}: {per_block:.0} cycles a block ({:.1} a byte), {:.0} instructions, \
         throughput bound {bound:.0}",
        per_block / 64.0,
        instructions / iterations,
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_block_unrolls_the_inner_loop_and_stops_at_the_outer_branch() {
        let listing = "\
0000000000001000 <f>:
    1000:      \tcbz\tx2, 0x1020 <f+0x20>
    1004:      \tld1\t{ v0.16b }, [x1], #16
    1008:      \tadd\tx3, x3, #1 // comment
    100c:      \tadr\tx20, 0x2000 <k>
    1010:      \tb.ne\t0x1008 <f+0x8>
    1014:      \tsubs\tx2, x2, #1
    1018:      \tb.ne\t0x1004 <f+0x4>
    101c:      \tret
";
        let code = parse(listing, "//");
        assert_eq!(code[3], (0x100c, "adr\tx20, 0x2000".to_string()));
        let block = one_block(&code, 3).unwrap();
        assert_eq!(
            block,
            [
                "ld1\t{ v0.16b }, [x1], #16",
                "add\tx3, x3, #1",
                "adr\tx20, 0x2000",
                "add\tx3, x3, #1",
                "adr\tx20, 0x2000",
                "add\tx3, x3, #1",
                "adr\tx20, 0x2000",
                "subs\tx2, x2, #1",
            ]
        );
        assert_eq!(one_block(&code, 1).unwrap().len(), 4);
    }

    #[test]
    fn x86_listings_parse_too() {
        let listing = "\
    2000:      \tpaddd\t%xmm1, %xmm0
    2004:      \tleaq\t0x10(%rip), %rax    # 0x3000 <k>
    2008:      \tjne\t0x2000 <g>
    200a:      \tjmp\t0x1000 <h>
";
        let code = parse(listing, "#");
        assert_eq!(code[1].1, "leaq\t0x10(%rip), %rax");
        assert_eq!(backward_target(code[2].0, &code[2].1), Some(0x2000));
        assert_eq!(backward_target(code[3].0, &code[3].1), None);
    }

    #[test]
    fn the_summary_reads_llvm_mca_totals() {
        let report = "Iterations:        100\nInstructions:      160300\n\
                      Total Cycles:      59080\nTotal uOps:        168800\n\n\
                      Dispatch Width:    3\nBlock RThroughput: 574.0\n";
        assert_eq!(
            summary("f", "cortex-a72", report).unwrap(),
            "f on cortex-a72: 591 cycles a block (9.2 a byte), 1603 instructions, \
             throughput bound 574"
        );
    }
}
