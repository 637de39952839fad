//! `cargo xtask size`: how big `shim.bin` is and what makes it so. Builds the image,
//! then sums the symbol sizes llvm-nm lists in the shim's ELF by crate (shim-common by
//! module), counting the formatting code and the panic paths apart.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::process::Command;

use anyhow::Result;
use clap::Args;

use crate::arch::Arch;
use crate::capture;
use crate::image::{self, BuildArgs};

/// The goal for `shim.bin`, per arch.
const GOAL: u64 = 64 * 1024;

#[derive(Args, Debug)]
pub struct SizeArgs {
    /// Only this architecture [default: both].
    #[arg(long, value_enum)]
    pub arch: Option<Arch>,
    /// How many of the largest groups to list.
    #[arg(long, default_value_t = 16)]
    pub top: usize,
}

pub fn run(args: &SizeArgs) -> Result<()> {
    let arches = match args.arch {
        Some(arch) => vec![arch],
        None => vec![Arch::Aarch64, Arch::X86_64],
    };
    for arch in arches {
        // The build adds the toolchain's components (llvm-tools among them) if missing.
        let built = image::build(&BuildArgs::demo(arch))?;
        let nm = image::objcopy()?.with_file_name("llvm-nm");
        let symbols = capture(
            Command::new(&nm)
                .args(["--size-sort", "-S"])
                .arg(&built.shim_elf),
        )?;
        let name = arch.target().name;
        print!(
            "{}",
            report(name, built.shim_bin_len, &groups(&symbols), args.top)
        );
    }
    Ok(())
}

/// What a symbol is counted under: formatting, panics, a crate, or a shim-common module.
fn group_of(symbol: &str) -> String {
    let name = format!("{:#}", rustc_demangle::demangle(symbol));
    if name.contains(" as core::fmt::") || name.starts_with("core::fmt") {
        return "formatting (core::fmt, Display and Debug impls)".into();
    }
    if name.starts_with("core::panicking") || name.contains("panic_bounds_check") {
        return "panics (core::panicking)".into();
    }
    // `<T as Trait>::f` is counted under T's crate; `<&T as ...>` likewise.
    let path = name.trim_start_matches(['<', '&']);
    let mut parts = path.split("::");
    match (parts.next(), parts.next()) {
        (Some("shim_common"), Some(module)) => format!("shim_common::{module}"),
        (Some(krate), Some(_)) => krate.to_string(),
        // No path: assembly, or compiler-builtins' C names (memcpy).
        _ => "assembly and C-named (memcpy)".into(),
    }
}

/// Bytes per group, largest first, from `llvm-nm --size-sort -S` lines
/// (`address size type name`): code, read-only data and data, not bss.
fn groups(nm: &str) -> Vec<(String, u64)> {
    let mut sums: HashMap<String, u64> = HashMap::new();
    for line in nm.lines() {
        let mut fields = line.splitn(4, ' ');
        let (Some(_), Some(size), Some(kind), Some(name)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Ok(size) = u64::from_str_radix(size, 16) else {
            continue;
        };
        if "tTrRdD".contains(kind) && kind.len() == 1 {
            *sums.entry(group_of(name)).or_default() += size;
        }
    }
    let mut out: Vec<_> = sums.into_iter().collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

fn report(arch: &str, bin: u64, groups: &[(String, u64)], top: usize) -> String {
    let named: u64 = groups.iter().map(|(_, n)| n).sum();
    let pct = |n: u64| 100.0 * n as f64 / bin.max(1) as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{arch} shim.bin: {bin} bytes, {}% of the {GOAL}-byte goal; symbols account for \
         {named}, the rest is strings, unnamed tables and alignment",
        100 * bin / GOAL
    );
    for (name, n) in groups.iter().take(top) {
        let _ = writeln!(out, "  {n:>7}  {:>4.1}%  {name}", pct(*n));
    }
    let rest: u64 = groups.iter().skip(top).map(|(_, n)| n).sum();
    if rest > 0 {
        let others = groups.len().saturating_sub(top);
        let _ = writeln!(out, "  {rest:>7}  {:>4.1}%  ({others} more)", pct(rest));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_are_grouped_by_crate_and_module() {
        let nm = "\
0000000000001000 0000000000000100 T _ZN11shim_common3fdt3Fdt3new17h0a7839ee523a56b0E
0000000000002000 0000000000000080 t _ZN11shim_common3fdt7Machine4read17he56f6394b70aa2bbE
0000000000003000 0000000000000040 T _ZN65_$LT$shim_common..fdt..FdtError$u20$as$u20$core..fmt..Display$GT$3fmt17h74d4318c92a6e085E
0000000000004000 0000000000000200 t _ZN11miniz_oxide7inflate4core10decompress17h4a795680bb7616a5E
0000000000005000 0000000000000020 T memcpy
0000000000006000 0000000000000010 T _ZN4core9panicking18panic_bounds_check17h1234567890abcdefE
0000000000007000 0000000000060000 b _ZN12shim_aarch643mmu4POOL17h29c0f914e4fa8192E
0000000000008000 0000000000000008 T _ZN4core3fmt5write17h0123456789abcdefE
";
        assert_eq!(
            groups(nm),
            [
                ("miniz_oxide".to_string(), 0x200),
                ("shim_common::fdt".to_string(), 0x180),
                (
                    "formatting (core::fmt, Display and Debug impls)".to_string(),
                    0x48
                ),
                ("assembly and C-named (memcpy)".to_string(), 0x20),
                ("panics (core::panicking)".to_string(), 0x10),
            ]
        );
    }
}
