//! The fuzz targets' checks (fuzz/src/checks, included here by path) on every input
//! a fuzz run found a bug with (`tests/data/fuzz/<target>/`, one file each, kept as
//! regression tests), and on the repository's own device trees and e820 map, so the
//! checks themselves stay in step with the code they check.

#[allow(dead_code)]
#[path = "../../fuzz/src/checks/mod.rs"]
mod checks;

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    };
    files.retain(|p| p.is_file() && p.extension().is_none_or(|e| e != "md"));
    files.sort();
    files
}

/// A committed input: hex digits, whitespace and `#` comments to the end of a line
/// (`cargo xtask fuzz` writes them so from libFuzzer's crash files).
fn hex(path: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(path).unwrap();
    let digits: Vec<u8> = text
        .lines()
        .flat_map(|line| line.split('#').next().unwrap_or_default().bytes())
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    assert!(
        digits.len().is_multiple_of(2),
        "{}: odd number of hex digits",
        path.display()
    );
    digits
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).unwrap();
            u8::from_str_radix(pair, 16)
                .unwrap_or_else(|_| panic!("{}: {pair:?} is not hex", path.display()))
        })
        .collect()
}

/// Every committed crash input still passes its target's checks.
#[test]
fn regressions() {
    let dir = root().join("tests/data/fuzz");
    for (name, check) in checks::TARGETS {
        for file in files(&dir.join(name)) {
            assert!(
                file.extension().is_some_and(|e| e == "hex"),
                "{}: inputs are committed as .hex text",
                file.display()
            );
            eprintln!("{name}: {}", file.display());
            check(&hex(&file));
        }
    }
    // Nothing but target directories there.
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        assert!(
            name == "README.md" || checks::TARGETS.iter().any(|(t, _)| *t == name),
            "tests/data/fuzz/{name} is not a fuzz target"
        );
    }
}

/// The QEMU trees through the fdt checks, and as machines to place on (what the
/// fuzz corpus is seeded with).
#[test]
fn qemu_trees_pass_the_checks() {
    let dtbs: Vec<PathBuf> = files(&root().join("../tests/data/dtb"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "dtb"))
        .collect();
    assert!(!dtbs.is_empty());
    for path in dtbs {
        let blob = std::fs::read(&path).unwrap();
        checks::tree::run(&blob);
        let mut input = vec![0u8; checks::place::CONTROL];
        input[0] = checks::place::DTB;
        input.extend_from_slice(&blob);
        checks::place::run(&input);
    }
}
