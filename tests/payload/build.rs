//! Build script: writes the static pointer table (`table.rs` in `OUT_DIR`) and, for the
//! bare-metal targets (aarch64 and x86_64 alike), passes the link arguments that make
//! the payload a PIE ET_DYN linked at 0 by `linker.ld`, with RELR-packed relative
//! relocations.

use std::{env, fmt::Write as _, fs, path::PathBuf};

/// Functions in `FNS` and references in `REFS`: 2 * N relocated pointers.
const N: usize = 600;

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));

    let mut t = String::new();
    writeln!(
        t,
        "/// Entries in each generated table.\nconst N: usize = {N};"
    )
    .unwrap();
    for i in 0..N {
        writeln!(t, "fn f{i}() -> u32 {{ {i} }}").unwrap();
    }
    let list = |f: &dyn Fn(usize) -> String| (0..N).map(f).collect::<Vec<_>>().join(", ");
    writeln!(
        t,
        "static FNS: [fn() -> u32; N] = [{}];",
        list(&|i| format!("f{i}"))
    )
    .unwrap();
    writeln!(t, "static DATA: [u32; N] = [{}];", list(&|i| i.to_string())).unwrap();
    writeln!(
        t,
        "static REFS: [&u32; N] = [{}];",
        list(&|i| format!("&DATA[{i}]"))
    )
    .unwrap();
    fs::write(out.join("table.rs"), t).expect("write table.rs");

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=linker.ld");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        let script = format!("-T{}", manifest.join("linker.ld").display());
        let args = [
            script.as_str(),
            "-pie",
            "--no-dynamic-linker",
            "-zpack-relative-relocs",
            // aarch64-unknown-none's prebuilt libcore is compiled non-PIC: its .rodata
            // holds absolute pointers, which must become load-time relocations in a
            // read-only segment. (x86_64-unknown-none's is PIC and needs none.)
            "-znotext",
            "-zmax-page-size=4096",
        ];
        for arg in args {
            println!("cargo:rustc-link-arg-bins={arg}");
        }
    }
}
